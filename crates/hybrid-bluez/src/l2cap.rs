//! The phone's end of the CTAP 2.3 BLE L2CAP data channel
//! (`hybrid-ble-l2cap.md` §3): an LE credit-based L2CAP listener on the
//! chosen adapter, and the message channel over the accepted connection.
//!
//! * [`L2capListener`]: binds an L2CAP stream socket to the adapter's LE
//!   address with PSM 0, so the kernel assigns a free dynamic LE PSM
//!   (0x80..=0xFF) — the "server PSM" that goes into the advert suffix —
//!   at `BT_SECURITY_LOW` (no pairing, no encryption: what Android's
//!   `listenUsingInsecureL2capChannel` offers and libwebauthn/pxp connect
//!   with, `l2cap.rs` `connect`). An LE address makes the kernel use LE
//!   credit-based flow control (not ECFC). [`accept`](L2capListener::accept)
//!   takes one connection within a bound and closes the listener: one
//!   central per transaction, a second is refused by the kernel.
//! * [`L2capChannel`]: the framing of `hybrid_ble::L2capDecoder` over any
//!   byte stream (the L2CAP socket; a socketpair in tests), each read and
//!   write bounded in time. EOF, `ECONNRESET` and `EPIPE` with nothing
//!   buffered are a clean end, as desktops treat them (libwebauthn commit
//!   d0e3499: phones drop the link without an L2CAP disconnect).
//!
//! Sockets come from `bluer` with only its `l2cap` feature (no D-Bus
//! through bluer; the adapter's address comes from our zbus
//! `Adapter1.Address`/`AddressType`).

use std::str::FromStr;
use std::time::Duration;

use bluer::l2cap::{Security, SecurityLevel, SocketAddr, StreamListener};
use hybrid_ble::{L2capDecoder, L2capFraming};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zbus::Connection;

use crate::adapter::{probe, AdapterInfo};
use crate::BluezError;

/// The receive MTU the listener offers: libwebauthn sends its 85-byte first
/// frame as one SDU once it knows the MTU, and later frames can be larger
/// (`hybrid-ble-l2cap.md` §3 asks for at least 512). Reassembly does not
/// depend on it.
pub const L2CAP_RECV_MTU: u16 = 2048;

/// How many bytes one read takes from the socket.
const READ_CHUNK: usize = 4096;

/// An LE credit-based L2CAP listener on one adapter, with a kernel-assigned
/// dynamic PSM and no security demanded (module docs).
#[derive(Debug)]
pub struct L2capListener {
    listener: StreamListener,
    local: SocketAddr,
    adapter: String,
}

fn io_detail(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => format!("{e} (errno {n})"),
        None => e.to_string(),
    }
}

impl L2capListener {
    /// Listens on the adapter hybridd would use (`adapter`: a name such as
    /// `hci1`, or `None` for the first powered one), at its address and
    /// address type as BlueZ reports them (`Adapter1.Address`,
    /// `Adapter1.AddressType`).
    pub async fn on_adapter(conn: &Connection, adapter: Option<&str>) -> Result<Self, BluezError> {
        let info = probe(conn, adapter).await?;
        if !info.powered {
            return Err(BluezError::PoweredOff { adapter: info.name });
        }
        Self::bind(&info)
    }

    /// Listens on `adapter`'s LE address (see [`L2capListener::on_adapter`]).
    pub fn bind(adapter: &AdapterInfo) -> Result<Self, BluezError> {
        let no_addr = || BluezError::L2capNoAddress {
            adapter: adapter.name.clone(),
        };
        let addr = adapter
            .address
            .as_deref()
            .and_then(|a| bluer::Address::from_str(a).ok())
            .ok_or_else(no_addr)?;
        let addr_type = match adapter.address_type.as_deref() {
            Some("random") => bluer::AddressType::LeRandom,
            // BlueZ reports "public" for controllers with a public address;
            // older bluetoothd omit the property.
            Some("public") | None => bluer::AddressType::LePublic,
            Some(_) => return Err(no_addr()),
        };
        let setup = |what: &'static str| {
            move |e: std::io::Error| BluezError::L2capSetup {
                what,
                detail: io_detail(&e),
            }
        };
        let socket = bluer::l2cap::Socket::new_stream().map_err(|e| {
            // EAFNOSUPPORT / EPROTONOSUPPORT: no Bluetooth in this kernel.
            BluezError::L2capUnavailable {
                detail: io_detail(&e),
            }
        })?;
        socket
            .set_security(Security {
                level: SecurityLevel::Low,
                key_size: 0,
            })
            .map_err(setup("setting BT_SECURITY_LOW"))?;
        socket
            .bind(SocketAddr::new(addr, addr_type, 0))
            .map_err(setup("binding to the adapter's LE address"))?;
        if let Err(e) = socket.set_recv_mtu(L2CAP_RECV_MTU) {
            // The kernel default (672) is fine too.
            tracing::debug!(error = %e, "could not set the L2CAP receive MTU");
        }
        let local = socket
            .local_addr()
            .map_err(setup("reading the assigned PSM"))?;
        let listener = socket.listen(1).map_err(setup("listening"))?;
        if local.psm == 0 {
            return Err(BluezError::L2capSetup {
                what: "reading the assigned PSM",
                detail: "the kernel assigned no PSM".to_owned(),
            });
        }
        tracing::info!(
            adapter = %adapter.name,
            address = %addr,
            psm = local.psm,
            "listening on an LE L2CAP channel"
        );
        Ok(Self {
            listener,
            local,
            adapter: adapter.name.clone(),
        })
    }

    /// The dynamically assigned PSM to advertise (`hybrid_ble::service_data_with_psm`).
    pub fn psm(&self) -> u16 {
        self.local.psm
    }

    /// The adapter's name (`hci1`).
    pub fn adapter(&self) -> &str {
        &self.adapter
    }

    /// The local address and address type the listener is bound to.
    pub fn local_address(&self) -> String {
        format!("{} ({:?})", self.local.addr, self.local.addr_type)
    }

    /// Waits up to `wait` for one desktop to connect, then stops listening
    /// (the listener is consumed and closed: a second central is refused).
    /// Returns the channel, bounded per operation by `io_timeout`, and the
    /// desktop's address.
    pub async fn accept(
        self,
        wait: Duration,
        io_timeout: Duration,
    ) -> Result<(L2capChannel<bluer::l2cap::Stream>, String), BluezError> {
        let (stream, peer) = match tokio::time::timeout(wait, self.listener.accept()).await {
            Err(_) => {
                return Err(BluezError::L2capTimeout {
                    what: "a desktop to connect",
                    secs: wait.as_secs(),
                })
            }
            Ok(Err(e)) => {
                return Err(BluezError::L2capIo {
                    what: "accept",
                    detail: io_detail(&e),
                })
            }
            Ok(Ok(v)) => v,
        };
        let sec = stream.as_ref().security().ok();
        let mtu = (
            stream.as_ref().recv_mtu().ok(),
            stream.as_ref().send_mtu().ok(),
        );
        tracing::info!(
            peer = %peer.addr,
            peer_type = ?peer.addr_type,
            psm = self.local.psm,
            security = ?sec.map(|s| s.level),
            recv_mtu = ?mtu.0,
            send_mtu = ?mtu.1,
            "desktop connected over L2CAP"
        );
        Ok((
            L2capChannel::new(stream, io_timeout),
            format!("{} ({:?})", peer.addr, peer.addr_type),
        ))
    }
}

/// Hybrid messages over a byte stream, framed as the desktop frames them
/// (`hybrid-ble-l2cap.md` §4; `hybrid_ble::L2capDecoder`). Every read and
/// write is bounded by the channel's I/O timeout.
#[derive(Debug)]
pub struct L2capChannel<S> {
    stream: S,
    decoder: L2capDecoder,
    io_timeout: Duration,
    eof: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> L2capChannel<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S, io_timeout: Duration) -> Self {
        Self {
            stream,
            decoder: L2capDecoder::new(),
            io_timeout,
            eof: false,
        }
    }

    /// The variant the desktop speaks, known after its first bytes.
    pub fn framing(&self) -> Option<L2capFraming> {
        self.decoder.framing()
    }

    /// The next message from the desktop (a candidate in the CRLF variant:
    /// if it does not decrypt, call [`extend_candidate`](Self::extend_candidate)
    /// and `recv` again). `Ok(None)` when the desktop closed the channel
    /// cleanly; an error when it closed mid-message, broke the framing or
    /// sent nothing whole within the I/O timeout.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, BluezError> {
        let deadline = tokio::time::Instant::now() + self.io_timeout;
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            if let Some(m) = self
                .decoder
                .next_message()
                .map_err(BluezError::L2capFraming)?
            {
                return Ok(Some(m));
            }
            if self.eof {
                self.decoder.finish().map_err(BluezError::L2capFraming)?;
                return Ok(None);
            }
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => {
                    return Err(BluezError::L2capTimeout {
                        what: "the desktop's next message",
                        secs: self.io_timeout.as_secs(),
                    })
                }
                Ok(Ok(n)) => n,
                Ok(Err(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    0
                }
                Ok(Err(e)) => {
                    return Err(BluezError::L2capIo {
                        what: "read",
                        detail: io_detail(&e),
                    })
                }
            };
            match chunk.get(..n) {
                Some(bytes) if n > 0 => {
                    self.decoder.push(bytes).map_err(BluezError::L2capFraming)?
                }
                _ => self.eof = true,
            }
        }
    }

    /// CRLF variant: the last message did not decrypt; the next
    /// [`recv`](Self::recv) returns it extended to the next `0D 0A`.
    pub fn extend_candidate(&mut self) -> Result<(), BluezError> {
        self.decoder
            .extend_candidate()
            .map_err(BluezError::L2capFraming)
    }

    /// Sends one message in the desktop's variant, in one write. Fails before
    /// the desktop has spoken (its first byte decides the variant).
    pub async fn send(&mut self, msg: &[u8]) -> Result<(), BluezError> {
        let framing = self.framing().ok_or(BluezError::L2capIo {
            what: "send",
            detail: "the desktop has not spoken yet, so its framing is unknown".to_owned(),
        })?;
        let wire = framing.encode(msg).map_err(BluezError::L2capFraming)?;
        match tokio::time::timeout(self.io_timeout, async {
            self.stream.write_all(&wire).await?;
            self.stream.flush().await
        })
        .await
        {
            Err(_) => Err(BluezError::L2capTimeout {
                what: "a write to the desktop",
                secs: self.io_timeout.as_secs(),
            }),
            Ok(Err(e)) => Err(BluezError::L2capIo {
                what: "write",
                detail: io_detail(&e),
            }),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Closes our side, bounded by the I/O timeout (errors are irrelevant
    /// then: the channel is done).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(self.io_timeout, self.stream.shutdown()).await;
    }

    /// The underlying stream (e.g. for its peer address).
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The underlying stream; bytes already read but not returned are lost.
    pub fn into_inner(self) -> S {
        self.stream
    }
}
