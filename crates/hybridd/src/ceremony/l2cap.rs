//! CTAP 2.3's BLE L2CAP data path in the ceremony (`hybrid-ble-l2cap.md`
//! §3, §6, §8): the radio's listener ([`L2capRadio`], BlueZ's in
//! [`BluezL2cap`]), the framed channel as a [`DataChannel`], and
//! [`Channels`] — the tunnel, the pending accept and the L2CAP connection
//! the driver waits on together, each event handed to the session, which
//! decides (first handshake wins, fallback to the tunnel).

use std::time::Duration;

use hybrid_ble::L2capFraming;
use hybrid_bluez::{L2capChannel, L2capListener};
use hybrid_session::PhoneSession;
use rand_core::OsRng;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::ceremony::driver::DataChannel;
use crate::ceremony::now;
use crate::error::Error;
use crate::BoxFuture;

/// A pending accept: the first desktop to connect, as a channel. Dropping it
/// closes the listener (no second central gets in).
pub type Accepting = BoxFuture<'static, Result<Box<dyn DataChannel>, Error>>;

/// How long setting up a listener may take (an adapter probe over D-Bus and
/// a few socket calls).
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A radio that can take CTAP 2.3's BLE L2CAP channel: an LE credit-based
/// listener with a dynamic PSM and no security demanded (§3).
pub trait L2capRadio: Send + Sync {
    /// Starts listening; returns the PSM to advertise and the pending
    /// accept, which gives up after `accept_wait`. The channel's reads and
    /// writes are each bounded by `io_timeout`.
    fn listen(
        &self,
        accept_wait: Duration,
        io_timeout: Duration,
    ) -> BoxFuture<'_, Result<(u16, Accepting), Error>>;
}

/// The BlueZ adapter's L2CAP listener (`hybrid_bluez::L2capListener`).
#[derive(Debug, Clone)]
pub struct BluezL2cap {
    conn: hybrid_bluez::Connection,
    adapter: Option<String>,
    refuse: bool,
}

impl BluezL2cap {
    /// On the system bus, for `adapter` (`None`: the first powered one).
    pub async fn system(adapter: Option<String>) -> Result<Self, Error> {
        Ok(Self {
            conn: hybrid_bluez::system_bus().await?,
            adapter,
            refuse: false,
        })
    }

    /// **Tests only** (`HYBRIDD_TEST_L2CAP_REFUSE=1`): advertise the PSM but
    /// close the listener at once, so a desktop's L2CAP connect is refused
    /// and it must fall back to the tunnel (`tests/ble-vm`).
    pub fn refusing_connections(mut self) -> Self {
        self.refuse = true;
        self
    }
}

impl L2capRadio for BluezL2cap {
    fn listen(
        &self,
        accept_wait: Duration,
        io_timeout: Duration,
    ) -> BoxFuture<'_, Result<(u16, Accepting), Error>> {
        Box::pin(async move {
            let listener = L2capListener::on_adapter(&self.conn, self.adapter.as_deref()).await?;
            let psm = listener.psm();
            if self.refuse {
                drop(listener);
                tracing::warn!(
                    psm,
                    "HYBRIDD_TEST_L2CAP_REFUSE: the L2CAP listener is closed, connects are refused"
                );
                let never: Accepting = Box::pin(async move {
                    tokio::time::sleep(accept_wait).await;
                    Err(Error::Bluetooth(hybrid_bluez::BluezError::L2capTimeout {
                        what: "a desktop to connect",
                        secs: accept_wait.as_secs(),
                    }))
                });
                return Ok((psm, never));
            }
            let accepting: Accepting = Box::pin(async move {
                let (channel, peer) = listener.accept(accept_wait, io_timeout).await?;
                tracing::info!(peer = %peer, "desktop connected over L2CAP");
                Ok(Box::new(channel) as Box<dyn DataChannel>)
            });
            Ok((psm, accepting))
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> DataChannel for L2capChannel<S> {
    fn send(&mut self, message: Vec<u8>) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { Ok(L2capChannel::send(self, &message).await?) })
    }

    fn recv(&mut self) -> BoxFuture<'_, Result<Option<Vec<u8>>, Error>> {
        Box::pin(async move { Ok(L2capChannel::recv(self).await?) })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(L2capChannel::close(*self))
    }

    fn framing(&self) -> Option<L2capFraming> {
        L2capChannel::framing(self)
    }

    fn extend_candidate(&mut self) -> Result<(), Error> {
        Ok(L2capChannel::extend_candidate(self)?)
    }
}

/// Sets up the listener for `ListenL2cap`, bounded.
pub(super) async fn listen(
    radio: &dyn L2capRadio,
    accept_wait: Duration,
    io_timeout: Duration,
) -> Result<(u16, Accepting), Error> {
    match tokio::time::timeout(LISTEN_TIMEOUT, radio.listen(accept_wait, io_timeout)).await {
        Ok(r) => r,
        Err(_) => Err(Error::Bluetooth(hybrid_bluez::BluezError::L2capTimeout {
            what: "the L2CAP listener to start",
            secs: LISTEN_TIMEOUT.as_secs(),
        })),
    }
}

/// What one of the session's data channels delivered.
pub(super) enum Input {
    Tunnel(Result<Option<Vec<u8>>, Error>),
    L2cap(Result<Option<Vec<u8>>, Error>, Option<L2capFraming>),
    Accepted(Result<Box<dyn DataChannel>, Error>),
}

/// The session's data channels: the tunnel, the pending L2CAP accept and
/// the L2CAP connection. A channel that ended stays (so it is closed
/// properly) but is no longer read.
#[derive(Default)]
pub(super) struct Channels {
    pub tunnel: Option<Box<dyn DataChannel>>,
    tunnel_ended: bool,
    pub l2cap: Option<Box<dyn DataChannel>>,
    l2cap_ended: bool,
    pub accepting: Option<Accepting>,
}

impl Channels {
    /// The next event of any channel (cancel-safe). Pending forever when
    /// there is nothing to wait on.
    pub async fn next(&mut self) -> Input {
        let tunnel = if self.tunnel_ended {
            None
        } else {
            self.tunnel.as_mut()
        };
        let l2cap = if self.l2cap_ended {
            None
        } else {
            self.l2cap.as_mut()
        };
        let accepting = self.accepting.as_mut();
        tokio::select! {
            r = recv(tunnel) => Input::Tunnel(r),
            (r, f) = recv_framed(l2cap) => Input::L2cap(r, f),
            r = async { match accepting { Some(a) => a.await, None => std::future::pending().await } } => Input::Accepted(r),
        }
    }

    /// Hands `input` to the session.
    pub async fn feed(&mut self, session: &mut PhoneSession<OsRng>, input: Input) {
        let at = now();
        match input {
            Input::Tunnel(Ok(Some(msg))) => session.on_message(&msg, at),
            Input::Tunnel(Ok(None)) => {
                self.tunnel_ended = true;
                session.on_tunnel_closed(at);
            }
            Input::Tunnel(Err(e)) => {
                self.tunnel_ended = true;
                session.on_tunnel_error(e.to_string(), at);
            }
            Input::L2cap(Ok(Some(msg)), Some(framing)) => {
                session.on_l2cap_message(&msg, framing, at)
            }
            Input::L2cap(Ok(Some(_)), None) => {
                self.l2cap_ended = true;
                session.on_l2cap_closed(Some("unknown framing".to_owned()), at);
            }
            Input::L2cap(Ok(None), _) => {
                self.l2cap_ended = true;
                session.on_l2cap_closed(None, at);
            }
            Input::L2cap(Err(e), _) => {
                self.l2cap_ended = true;
                session.on_l2cap_closed(Some(e.to_string()), at);
            }
            Input::Accepted(r) => {
                self.accepting = None;
                match r {
                    Ok(channel) if session.on_l2cap_connected(at) => {
                        self.l2cap = Some(channel);
                        self.l2cap_ended = false;
                    }
                    Ok(channel) => {
                        tracing::info!("a second L2CAP connection refused");
                        channel.close().await;
                    }
                    Err(e) => session.on_l2cap_closed(Some(e.to_string()), at),
                }
            }
        }
    }

    /// Stops listening and closes the L2CAP connection, if any.
    pub async fn close_l2cap(&mut self) {
        self.accepting = None;
        if let Some(c) = self.l2cap.take() {
            c.close().await;
            tracing::debug!("L2CAP channel closed");
        }
    }

    /// Closes the tunnel, if open.
    pub async fn close_tunnel(&mut self) {
        if let Some(c) = self.tunnel.take() {
            c.close().await;
            tracing::debug!("tunnel closed");
        }
    }
}

async fn recv(channel: Option<&mut Box<dyn DataChannel>>) -> Result<Option<Vec<u8>>, Error> {
    match channel {
        Some(c) => c.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_framed(
    channel: Option<&mut Box<dyn DataChannel>>,
) -> (Result<Option<Vec<u8>>, Error>, Option<L2capFraming>) {
    match channel {
        Some(c) => {
            let r = c.recv().await;
            (r, c.framing())
        }
        None => std::future::pending().await,
    }
}
