//! The tunnel WebSocket client (hybrid-protocol.md §4.2), used by the phone
//! (`/cable/new/…`) and by our test desktop (`/cable/connect/…`).
//!
//! Each step of opening a tunnel fails with its own [`ClientError`] variant
//! (DNS, TCP, TLS, HTTP status, subprotocol, routing id, timeout), so the
//! daemon can tell the user what went wrong. Once open, a [`Tunnel`] carries
//! one binary WebSocket message per protocol message (§4.2 last bullet).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::http::{HeaderValue, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::names::{HEADER_ROUTING_ID, SUBPROTOCOL};
use crate::stream::{ring_provider, MaybeTls};
use crate::{RoutingId, TunnelBase, TunnelError, TunnelId};

/// Chromium's cap on an incoming tunnel message (§4.2: "caps incoming
/// messages at 1 MiB").
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;
/// Default bound on DNS + TCP + TLS + WebSocket upgrade.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on waiting for the peer's close frame in [`Tunnel::close`].
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How to open a tunnel connection.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Bound on the whole opening: DNS, TCP connect, TLS and the WebSocket
    /// upgrade. Default 10 s.
    pub connect_timeout: Duration,
    /// An extra CA certificate file (PEM, one or more certificates) trusted
    /// for `wss://`, e.g. the CA of a self-hosted tunnel server.
    pub extra_ca_file: Option<PathBuf>,
    /// Trust the Mozilla root set (webpki-roots) for `wss://`. Default true.
    pub webpki_roots: bool,
    /// Largest incoming message accepted; larger ones fail [`Tunnel::recv`]
    /// with [`ClientError::MessageTooLarge`]. Default 1 MiB like Chromium (§4.2).
    pub max_message_size: usize,
    /// Bound on waiting for the peer's close reply in [`Tunnel::close`]. Default 2 s.
    pub close_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            extra_ca_file: None,
            webpki_roots: true,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
        }
    }
}

/// Why opening or using a tunnel connection failed. The texts are shown to
/// the user by the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The tunnel base, routing id or tunnel id was invalid.
    #[error(transparent)]
    Name(#[from] TunnelError),
    /// The URL could not be split into scheme, host and port.
    #[error("tunnel URL {0:?} is not a valid ws:// or wss:// URL")]
    BadUrl(String),
    /// The host name did not resolve.
    #[error("could not resolve tunnel server host {host:?}: {source}")]
    Dns {
        /// The host name looked up.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// No address of the host accepted a TCP connection (refused, unreachable).
    #[error("could not connect to tunnel server {addr}: {source}")]
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The extra CA file could not be read or held no certificate.
    #[error("could not load the extra CA file {path:?}: {reason}")]
    CaFile {
        /// The file named in [`ClientOptions::extra_ca_file`].
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The TLS handshake failed (untrusted or mismatched certificate, …).
    #[error("TLS with tunnel server {host:?} failed: {source}")]
    Tls {
        /// The server name verified.
        host: String,
        /// The TLS error (a `rustls::Error` inside when it is a TLS alert/verification failure).
        #[source]
        source: io::Error,
    },
    /// HTTP 400 (Google's server answers it without the `fido.cable`
    /// subprotocol or with a malformed id, §4.2).
    #[error("tunnel server refused the request (bad subprotocol/tunnel id)")]
    BadRequest,
    /// HTTP 404: nothing waits under that routing id / tunnel id.
    #[error("no such tunnel (the other side is not connected)")]
    NoSuchTunnel,
    /// HTTP 410 on `/cable/contact/` (§4.2): the pairing is dead.
    #[error("contact id is gone")]
    ContactGone,
    /// Any other non-101 HTTP status.
    #[error("tunnel server answered HTTP {0} instead of a WebSocket upgrade")]
    HttpStatus(u16),
    /// The 101 response did not select the `fido.cable` subprotocol (§4.2;
    /// Chromium refuses such a response too).
    #[error("tunnel server did not select the fido.cable WebSocket subprotocol")]
    NoSubprotocol,
    /// `/cable/new/` answered without an `X-caBLE-Routing-ID` header (§4.2).
    #[error("tunnel server did not specify a routing id")]
    NoRoutingId,
    /// The `X-caBLE-Routing-ID` value was not exactly 3 bytes of hex (§4.2).
    #[error(
        "tunnel server did not specify a routing id (header value {0:?} is not 3 bytes of hex)"
    )]
    BadRoutingId(String),
    /// The WebSocket upgrade failed in some other way (bad accept key, …).
    #[error("WebSocket upgrade with tunnel server failed: {0}")]
    Handshake(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The server closed the connection before the upgrade completed.
    #[error("tunnel server closed the connection before the WebSocket upgrade completed")]
    ClosedEarly,
    /// DNS + TCP + TLS + upgrade took longer than [`ClientOptions::connect_timeout`].
    #[error("timed out after {0:?} connecting to the tunnel server")]
    Timeout(Duration),
    /// The peer sent a text frame; the tunnel carries binary messages only (§4.2).
    #[error("the tunnel peer sent a text frame (only binary messages are allowed)")]
    TextFrame,
    /// An incoming message exceeded [`ClientOptions::max_message_size`].
    #[error("the tunnel peer sent a message larger than {max} bytes")]
    MessageTooLarge {
        /// The limit in force.
        max: usize,
    },
    /// The open connection failed (reset, protocol violation, …).
    #[error("tunnel connection failed: {0}")]
    Connection(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ClientError {
    /// The HTTP status the server answered instead of 101, if that is what happened.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::BadRequest => Some(400),
            Self::NoSuchTunnel => Some(404),
            Self::ContactGone => Some(410),
            Self::HttpStatus(s) => Some(*s),
            _ => None,
        }
    }

    fn from_status(status: u16) -> Self {
        match status {
            400 => Self::BadRequest,
            404 => Self::NoSuchTunnel,
            410 => Self::ContactGone,
            s => Self::HttpStatus(s),
        }
    }
}

/// An open tunnel connection, either role: one binary WebSocket message per
/// protocol message (§4.2).
#[derive(Debug)]
pub struct Tunnel {
    ws: WebSocketStream<MaybeTls>,
    max_message_size: usize,
    close_timeout: Duration,
    close_reason: Option<(u16, String)>,
}

/// The phone's end (`/cable/new/`).
pub type PhoneTunnel = Tunnel;
/// The desktop's end (`/cable/connect/`).
pub type DesktopTunnel = Tunnel;

/// Phone, QR mode: `GET /cable/new/<tunnel id>` (§4.2). Returns the tunnel
/// and the routing id the server assigned (from `X-caBLE-Routing-ID`).
pub async fn connect_new(
    base: &TunnelBase,
    tunnel_id: &TunnelId,
    opts: &ClientOptions,
) -> Result<(PhoneTunnel, RoutingId), ClientError> {
    open_new(&base.new_url(tunnel_id)?, &base.origin()?, opts).await
}

/// Phone, QR mode, with the `/cable/new/` URL and `Origin` already built
/// (a session that derived them from its [`TunnelBase`] hands them over;
/// nothing is rebuilt). Returns the tunnel and the routing id.
pub async fn open_new(
    url: &str,
    origin: &str,
    opts: &ClientOptions,
) -> Result<(PhoneTunnel, RoutingId), ClientError> {
    let (tunnel, response) = open(url, origin, opts).await?;
    let routing_id = routing_id_of(&response)?;
    Ok((tunnel, routing_id))
}

/// Desktop, QR mode: `GET /cable/connect/<routing id>/<tunnel id>` (§4.2).
pub async fn connect_desktop(
    base: &TunnelBase,
    routing_id: &RoutingId,
    tunnel_id: &TunnelId,
    opts: &ClientOptions,
) -> Result<DesktopTunnel, ClientError> {
    let url = base.connect_url(routing_id, tunnel_id)?;
    let (tunnel, _) = open(&url, &base.origin()?, opts).await?;
    Ok(tunnel)
}

/// The routing id of a `/cable/new/` 101 response: header name matched
/// case-insensitively, exactly 3 bytes of hex (§4.2).
fn routing_id_of<B>(response: &Response<B>) -> Result<RoutingId, ClientError> {
    let value = response
        .headers()
        .get(HEADER_ROUTING_ID)
        .ok_or(ClientError::NoRoutingId)?;
    let text = value
        .to_str()
        .map_err(|_| ClientError::BadRoutingId(format!("{value:?}")))?;
    RoutingId::from_header(text).map_err(|_| ClientError::BadRoutingId(text.to_owned()))
}

/// Where a `ws://` / `wss://` URL points.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    tls: bool,
    /// Host without IPv6 brackets.
    host: String,
    port: u16,
}

impl Target {
    fn parse(url: &str) -> Result<Self, ClientError> {
        let bad = || ClientError::BadUrl(url.to_owned());
        let (tls, rest) = if let Some(r) = url.strip_prefix("wss://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("ws://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => default_port,
                None => return Err(bad()),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

/// Opens `url` as a `fido.cable` WebSocket, bounded by the connect timeout.
async fn open(
    url: &str,
    origin: &str,
    opts: &ClientOptions,
) -> Result<(Tunnel, Response<Option<Vec<u8>>>), ClientError> {
    match tokio::time::timeout(opts.connect_timeout, open_unbounded(url, origin, opts)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout(opts.connect_timeout)),
    }
}

async fn open_unbounded(
    url: &str,
    origin: &str,
    opts: &ClientOptions,
) -> Result<(Tunnel, Response<Option<Vec<u8>>>), ClientError> {
    let target = Target::parse(url)?;
    // Build the TLS config first: a bad CA file is a local error, no need to dial.
    let tls = if target.tls {
        Some(client_tls_config(opts)?)
    } else {
        None
    };

    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|source| ClientError::Dns {
            host: target.host.clone(),
            source,
        })?
        .collect();
    let tcp = tcp_connect(&target, &addrs).await?;
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("could not set TCP_NODELAY: {e}");
    }

    let stream = match tls {
        None => MaybeTls::Plain(tcp),
        Some(config) => {
            let tls_err = |source| ClientError::Tls {
                host: target.host.clone(),
                source,
            };
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| tls_err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
            let connector = tokio_rustls::TlsConnector::from(config);
            let s = connector.connect(name, tcp).await.map_err(tls_err)?;
            MaybeTls::Client(Box::new(s))
        }
    };

    let mut request = url
        .into_client_request()
        .map_err(|_| ClientError::BadUrl(url.to_owned()))?;
    let headers = request.headers_mut();
    headers.insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    // §4.2: Chromium and webauthn-rs send `Origin: wss://<host>`.
    let origin = HeaderValue::from_str(origin).map_err(|_| ClientError::BadUrl(url.to_owned()))?;
    headers.insert("Origin", origin);

    let config = ws_config(opts.max_message_size);
    let (ws, response) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(map_handshake_error)?;
    // tungstenite already refuses a 101 without (or with another) subprotocol;
    // check again so the rule of §4.2 does not hang on a library detail.
    let selected = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok());
    if selected.map(str::trim) != Some(SUBPROTOCOL) {
        return Err(ClientError::NoSubprotocol);
    }
    Ok((
        Tunnel {
            ws,
            max_message_size: opts.max_message_size,
            close_timeout: opts.close_timeout,
            close_reason: None,
        },
        response,
    ))
}

async fn tcp_connect(target: &Target, addrs: &[SocketAddr]) -> Result<TcpStream, ClientError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(source) => {
                last = Some(ClientError::Connect {
                    addr: *addr,
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| ClientError::Dns {
        host: target.host.clone(),
        source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
    }))
}

/// tungstenite's read buffer: its codec zero-fills the buffer's whole spare
/// capacity before every socket read (`FrameCodec::read_in`), so the default
/// 128 KiB cost a 128 KiB `memset` per read — 3 % of the phone daemon's CPU
/// per ceremony (docs/performance.md, "Phone: third round") and 128 KiB of
/// heap per tunnel. Hybrid messages are a few hundred bytes to a few KiB
/// (CTAP messages inside the Noise framing); a longer message just takes
/// more reads, and the message-size limits below are unchanged.
const READ_BUFFER_SIZE: usize = 4 * 1024;

fn ws_config(max: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

fn client_tls_config(
    opts: &ClientOptions,
) -> Result<std::sync::Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    if opts.webpki_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(path) = &opts.extra_ca_file {
        let ca_err = |reason: String| ClientError::CaFile {
            path: path.clone(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| ca_err(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ca_err(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_err("no CERTIFICATE block found".to_owned()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls {
            host: String::new(),
            source: io::Error::other(e),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

fn map_handshake_error(e: WsError) -> ClientError {
    match e {
        WsError::Http(response) => ClientError::from_status(response.status().as_u16()),
        WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(_)) => {
            ClientError::NoSubprotocol
        }
        WsError::Protocol(ProtocolError::HandshakeIncomplete)
        | WsError::ConnectionClosed
        | WsError::AlreadyClosed => ClientError::ClosedEarly,
        WsError::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
            ) =>
        {
            ClientError::ClosedEarly
        }
        other => ClientError::Handshake(Box::new(other)),
    }
}

impl Tunnel {
    /// Sends one protocol message as one binary WebSocket message (§4.2).
    pub async fn send(&mut self, msg: Vec<u8>) -> Result<(), ClientError> {
        self.send_all(vec![msg]).await
    }

    /// Sends `msgs` in order, each as one binary WebSocket message, in one
    /// write to the socket (tungstenite buffers each frame; the flush
    /// writes them together): one TCP segment instead of one per message.
    pub async fn send_all(&mut self, msgs: Vec<Vec<u8>>) -> Result<(), ClientError> {
        for msg in msgs {
            self.ws
                .feed(Message::Binary(msg.into()))
                .await
                .map_err(|e| ClientError::Connection(Box::new(e)))?;
        }
        self.ws
            .flush()
            .await
            .map_err(|e| ClientError::Connection(Box::new(e)))
    }

    /// Receives the next binary message. `Ok(None)` means the peer (or the
    /// server on its behalf) closed the tunnel; [`Tunnel::close_reason`] then
    /// tells the close code and reason, if any. Pings are answered and
    /// pongs skipped transparently. A text frame is an error (§4.2: Chromium
    /// closes on text frames), and so is a message over the size limit.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        loop {
            let Some(next) = self.ws.next().await else {
                return Ok(None);
            };
            match next {
                Ok(Message::Binary(data)) => {
                    if data.len() > self.max_message_size {
                        return Err(ClientError::MessageTooLarge {
                            max: self.max_message_size,
                        });
                    }
                    return Ok(Some(data.to_vec()));
                }
                Ok(Message::Text(_)) => return Err(ClientError::TextFrame),
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Ok(Message::Close(frame)) => {
                    self.close_reason = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                    // Let tungstenite complete the closing handshake (reply is queued).
                    let _ = tokio::time::timeout(self.close_timeout, self.ws.flush()).await;
                    return Ok(None);
                }
                Err(WsError::Capacity(CapacityError::MessageTooLong { .. })) => {
                    return Err(ClientError::MessageTooLarge {
                        max: self.max_message_size,
                    })
                }
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => return Ok(None),
                Err(e) => return Err(ClientError::Connection(Box::new(e))),
            }
        }
    }

    /// The close code and reason the peer sent, once [`Tunnel::recv`] returned `Ok(None)`.
    pub fn close_reason(&self) -> Option<(u16, &str)> {
        self.close_reason.as_ref().map(|(c, r)| (*c, r.as_str()))
    }

    /// Closes the tunnel with a normal closure and waits (bounded by
    /// [`ClientOptions::close_timeout`]) for the peer's reply. The phone
    /// never needs to send anything else to end a session (§6.3).
    pub async fn close(mut self) -> Result<(), ClientError> {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let wait = async {
            match self.ws.close(Some(frame)).await {
                Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {}
                Err(e) => return Err(ClientError::Connection(Box::new(e))),
            }
            // Drain until the peer's close reply (or EOF).
            while let Some(m) = self.ws.next().await {
                if m.is_err() {
                    break;
                }
            }
            Ok(())
        };
        match tokio::time::timeout(self.close_timeout, wait).await {
            Ok(r) => r,
            Err(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("ws://127.0.0.1:8080/cable/new/AB").unwrap();
        assert_eq!(
            t,
            Target {
                tls: false,
                host: "127.0.0.1".into(),
                port: 8080
            }
        );
        let t = Target::parse("wss://cable.ua5v.com/cable/new/AB").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port),
            (true, "cable.ua5v.com", 443)
        );
        let t = Target::parse("wss://[::1]:9/x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
        let t = Target::parse("ws://[::1]/x").unwrap();
        assert_eq!(t.port, 80);
        for bad in [
            "http://x/",
            "ws://",
            "ws://:80/",
            "ws://a@b/",
            "ws://h:port/",
            "ws://[::1/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_variants() {
        assert!(matches!(
            ClientError::from_status(400),
            ClientError::BadRequest
        ));
        assert!(matches!(
            ClientError::from_status(404),
            ClientError::NoSuchTunnel
        ));
        assert!(matches!(
            ClientError::from_status(410),
            ClientError::ContactGone
        ));
        assert_eq!(ClientError::from_status(503).http_status(), Some(503));
        assert_eq!(
            ClientError::NoSuchTunnel.to_string(),
            "no such tunnel (the other side is not connected)"
        );
    }
}
