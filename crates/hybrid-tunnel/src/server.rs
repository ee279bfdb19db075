//! A self-hostable caBLE tunnel server (hybrid-protocol.md §4), protocol
//! compatible with Chromium's and webauthn-rs's clients.
//!
//! * `GET /cable/new/<tunnel id>` — the phone opens a tunnel and learns this
//!   instance's routing id from `X-caBLE-Routing-ID` (§4.2).
//! * `GET /cable/connect/<routing id>/<tunnel id>` — the desktop joins it.
//! * Binary messages are then relayed verbatim, in order, both ways (§4.2
//!   last bullet); what the phone sends before the desktop arrives is queued.
//! * `GET /healthz`, `GET /metrics` (Prometheus text).
//!
//! Status codes: 400 for a missing `fido.cable` subprotocol (as Google's
//! server, §4.2), a malformed tunnel id or a non-WebSocket request; 404 for
//! an unknown path, an unknown tunnel or another instance's routing id; 409
//! for a second `new` on a tunnel id that is already open and for a second
//! desktop on a paired tunnel; 403 when the optional `Origin` check fails;
//! 405 for a method other than GET. `/cable/contact/` (state-assisted, §9)
//! is not implemented and answers 404.
//!
//! A text frame, a message over the size limit, more messages than allowed
//! from one side, or the end of the tunnel's lifetime (counted from the
//! phone's `new`) closes both sides; so does one side closing.
//!
//! The HTTP request head is read and answered here (bounded size and time);
//! the upgraded stream is handed to tokio-tungstenite.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::names::{HEADER_ROUTING_ID, SUBPROTOCOL};
use crate::stream::{ring_provider, MaybeTls};
use crate::{RoutingId, TunnelId};

/// Largest HTTP request head accepted (request line + headers).
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Most request headers parsed.
const MAX_HEADERS: usize = 32;
/// Bound on each closing step when a tunnel ends.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Bound on waiting for tunnels to wind down after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Certificate and key files for serving `wss://` directly.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Configuration of a [`TunnelServer`]. Every field has a default
/// (`ServerConfig::default()`; in serde form every field may be omitted).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The routing id naming this instance (§4.2): sent in
    /// `X-caBLE-Routing-ID` on `new`, required in `connect` paths. A proxy
    /// in front of several instances routes `/cable/connect/<routing id>/…`
    /// by it. Serde form: 6 hex characters. Default: random at start-up.
    #[serde(deserialize_with = "de_routing_id")]
    pub routing_id: Option<RoutingId>,
    /// Lifetime of a tunnel in seconds, counted from the phone's `new`;
    /// both sides are closed when it ends. Default 120.
    pub ttl_secs: u64,
    /// Largest message relayed, in bytes; a larger one ends the tunnel.
    /// Default 16 KiB (hybrid messages are small; Chromium's own cap is 1 MiB).
    pub max_message_bytes: usize,
    /// Most messages one side may send over the tunnel's life (queued ones
    /// count); one more ends the tunnel. Default 16.
    pub max_messages_per_side: u32,
    /// Most simultaneous connections (waiting, paired or still in their HTTP
    /// handshake); more are dropped at accept. Default 1024.
    pub max_connections: usize,
    /// Bound in seconds on TLS accept + reading the request head + answering it. Default 10.
    pub handshake_timeout_secs: u64,
    /// Serve `wss://` with this certificate; without it the server speaks
    /// plain `ws://` (for loopback tests or behind a TLS-terminating proxy).
    pub tls: Option<TlsFiles>,
    /// When set, the `Origin` header's host (scheme and port ignored) must
    /// equal this, case-insensitively, else 403. Chromium and webauthn-rs
    /// send `Origin: wss://<host>` (§4.2); microG sends none, so this is off
    /// by default.
    pub origin_host: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            routing_id: None,
            ttl_secs: 120,
            max_message_bytes: 16 * 1024,
            max_messages_per_side: 16,
            max_connections: 1024,
            handshake_timeout_secs: 10,
            tls: None,
            origin_host: None,
        }
    }
}

fn de_routing_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<RoutingId>, D::Error> {
    let s: Option<String> = serde::Deserialize::deserialize(d)?;
    s.map(|s| RoutingId::from_header(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The certificate or key could not be loaded or do not match.
    #[error("could not set up TLS from {path:?}: {reason}")]
    Tls {
        /// The file at fault (certificate or key).
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A configuration value is unusable.
    #[error("invalid tunnel server configuration: {0}")]
    Config(&'static str),
}

/// Why a request was refused (the `reason` label of
/// `hybrid_tunnel_rejections_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reject {
    TooManyConnections,
    TlsHandshake,
    Timeout,
    BadRequest,
    HeadTooLarge,
    Method,
    NotFound,
    NotWebSocket,
    NoSubprotocol,
    BadTunnelId,
    Origin,
    DuplicateTunnel,
    NoSuchTunnel,
    WrongRoutingId,
    AlreadyPaired,
}

impl Reject {
    const ALL: [Reject; 15] = [
        Reject::TooManyConnections,
        Reject::TlsHandshake,
        Reject::Timeout,
        Reject::BadRequest,
        Reject::HeadTooLarge,
        Reject::Method,
        Reject::NotFound,
        Reject::NotWebSocket,
        Reject::NoSubprotocol,
        Reject::BadTunnelId,
        Reject::Origin,
        Reject::DuplicateTunnel,
        Reject::NoSuchTunnel,
        Reject::WrongRoutingId,
        Reject::AlreadyPaired,
    ];

    fn label(self) -> &'static str {
        match self {
            Reject::TooManyConnections => "too_many_connections",
            Reject::TlsHandshake => "tls_handshake",
            Reject::Timeout => "timeout",
            Reject::BadRequest => "bad_request",
            Reject::HeadTooLarge => "head_too_large",
            Reject::Method => "method",
            Reject::NotFound => "not_found",
            Reject::NotWebSocket => "not_websocket",
            Reject::NoSubprotocol => "no_subprotocol",
            Reject::BadTunnelId => "bad_tunnel_id",
            Reject::Origin => "origin",
            Reject::DuplicateTunnel => "duplicate_tunnel",
            Reject::NoSuchTunnel => "no_such_tunnel",
            Reject::WrongRoutingId => "wrong_routing_id",
            Reject::AlreadyPaired => "already_paired",
        }
    }

    /// The HTTP status answered, when there is still a connection to answer on.
    fn status(self) -> u16 {
        match self {
            Reject::BadRequest
            | Reject::NotWebSocket
            | Reject::NoSubprotocol
            | Reject::BadTunnelId => 400,
            Reject::Origin => 403,
            Reject::NotFound | Reject::NoSuchTunnel | Reject::WrongRoutingId => 404,
            Reject::Method => 405,
            Reject::DuplicateTunnel | Reject::AlreadyPaired => 409,
            Reject::HeadTooLarge => 431,
            Reject::TooManyConnections => 503,
            Reject::TlsHandshake | Reject::Timeout => 408,
        }
    }
}

/// How a tunnel ended (the `reason` label of `hybrid_tunnel_tunnels_ended_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    PhoneClosed,
    DesktopClosed,
    DesktopFailed,
    TextFrame,
    Oversize,
    TooManyMessages,
    ProtocolError,
    Ttl,
    Shutdown,
}

impl End {
    const ALL: [End; 9] = [
        End::PhoneClosed,
        End::DesktopClosed,
        End::DesktopFailed,
        End::TextFrame,
        End::Oversize,
        End::TooManyMessages,
        End::ProtocolError,
        End::Ttl,
        End::Shutdown,
    ];

    fn label(self) -> &'static str {
        match self {
            End::PhoneClosed => "phone_closed",
            End::DesktopClosed => "desktop_closed",
            End::DesktopFailed => "desktop_failed",
            End::TextFrame => "text_frame",
            End::Oversize => "oversize",
            End::TooManyMessages => "too_many_messages",
            End::ProtocolError => "protocol_error",
            End::Ttl => "ttl",
            End::Shutdown => "shutdown",
        }
    }

    /// The close frame sent to the sides when the tunnel ends this way.
    fn close_frame(self) -> CloseFrame {
        let (code, reason) = match self {
            End::PhoneClosed | End::DesktopClosed => (CloseCode::Normal, "peer closed"),
            End::DesktopFailed => (CloseCode::Away, "peer failed to connect"),
            End::TextFrame => (CloseCode::Unsupported, "text frames are not allowed"),
            End::Oversize => (CloseCode::Size, "message too large"),
            End::TooManyMessages => (CloseCode::Policy, "too many messages"),
            End::ProtocolError => (CloseCode::Protocol, "WebSocket protocol error"),
            End::Ttl => (CloseCode::Policy, "tunnel lifetime exceeded"),
            End::Shutdown => (CloseCode::Away, "server shutting down"),
        };
        CloseFrame {
            code,
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Default)]
struct Metrics {
    connections_total: AtomicU64,
    tunnels_open: AtomicI64,
    tunnels_created: AtomicU64,
    tunnels_paired: AtomicU64,
    messages_relayed: AtomicU64,
    bytes_relayed: AtomicU64,
    rejections: [AtomicU64; Reject::ALL.len()],
    ended: [AtomicU64; End::ALL.len()],
}

impl Metrics {
    fn reject(&self, r: Reject) {
        if let Some(c) = self.rejections.get(r as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn ended(&self, e: End) {
        if let Some(c) = self.ended.get(e as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn relayed(&self, bytes: usize) {
        self.messages_relayed.fetch_add(1, Ordering::Relaxed);
        self.bytes_relayed
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Prometheus text exposition format 0.0.4.
    fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        metric(
            "hybrid_tunnel_tunnels_open",
            "gauge",
            "Tunnels currently open (waiting for a desktop or paired).",
            self.tunnels_open.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "hybrid_tunnel_connections_total",
            "counter",
            "TCP connections accepted.",
            get(&self.connections_total),
        );
        metric(
            "hybrid_tunnel_tunnels_created_total",
            "counter",
            "Tunnels opened by a phone (/cable/new/).",
            get(&self.tunnels_created),
        );
        metric(
            "hybrid_tunnel_tunnels_paired_total",
            "counter",
            "Tunnels joined by a desktop (/cable/connect/).",
            get(&self.tunnels_paired),
        );
        metric(
            "hybrid_tunnel_messages_relayed_total",
            "counter",
            "Binary messages delivered to the other side.",
            get(&self.messages_relayed),
        );
        metric(
            "hybrid_tunnel_bytes_relayed_total",
            "counter",
            "Payload bytes delivered to the other side.",
            get(&self.bytes_relayed),
        );
        let _ = write!(
            out,
            "# HELP hybrid_tunnel_rejections_total Requests refused, by reason.\n\
             # TYPE hybrid_tunnel_rejections_total counter\n"
        );
        for (r, c) in Reject::ALL.iter().zip(&self.rejections) {
            let _ = writeln!(
                out,
                "hybrid_tunnel_rejections_total{{reason=\"{}\"}} {}",
                r.label(),
                c.load(Ordering::Relaxed)
            );
        }
        let _ = write!(
            out,
            "# HELP hybrid_tunnel_tunnels_ended_total Tunnels ended, by reason.\n\
             # TYPE hybrid_tunnel_tunnels_ended_total counter\n"
        );
        for (e, c) in End::ALL.iter().zip(&self.ended) {
            let _ = writeln!(
                out,
                "hybrid_tunnel_tunnels_ended_total{{reason=\"{}\"}} {}",
                e.label(),
                c.load(Ordering::Relaxed)
            );
        }
        out
    }
}

type Ws = WebSocketStream<MaybeTls>;

/// A desktop handed to the phone's task; the permit keeps its connection counted.
struct Joined {
    ws: Ws,
    _permit: OwnedSemaphorePermit,
}

/// A tunnel in the table: the sender is taken by the (one) desktop.
struct Slot {
    desktop_tx: Option<oneshot::Sender<Joined>>,
}

struct Inner {
    config: ServerConfig,
    routing_id: RoutingId,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tunnels: Mutex<HashMap<TunnelId, Slot>>,
    metrics: Metrics,
    connections: Arc<Semaphore>,
}

impl Inner {
    fn ws_config(&self) -> WebSocketConfig {
        let max = self.config.max_message_bytes;
        WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max))
            .max_write_buffer_size(max.saturating_mul(4).max(256 * 1024))
    }

    fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.config.handshake_timeout_secs)
    }

    fn tunnels(&self) -> std::sync::MutexGuard<'_, HashMap<TunnelId, Slot>> {
        // A poisoned lock only means another task panicked mid-update of a
        // plain map; the map itself is still consistent.
        self.tunnels.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a tunnel from the table when its phone task ends.
struct SlotGuard {
    inner: Arc<Inner>,
    id: TunnelId,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.inner.tunnels().remove(&self.id);
        self.inner
            .metrics
            .tunnels_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A bound, not yet running tunnel server.
pub struct TunnelServer {
    listener: TcpListener,
    inner: Arc<Inner>,
}

impl core::fmt::Debug for TunnelServer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TunnelServer")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("routing_id", &self.inner.routing_id)
            .finish_non_exhaustive()
    }
}

/// A server running on its own task.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    routing_id: RoutingId,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    inner: Arc<Inner>,
}

impl core::fmt::Debug for Inner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Inner")
            .field("routing_id", &self.routing_id)
            .finish_non_exhaustive()
    }
}

impl TunnelServer {
    /// Binds the listen address and loads the TLS certificate, if any.
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        if config.max_connections == 0 {
            return Err(ServerError::Config("max_connections must be at least 1"));
        }
        if config.max_message_bytes == 0 {
            return Err(ServerError::Config("max_message_bytes must be at least 1"));
        }
        let tls = match &config.tls {
            Some(files) => Some(tokio_rustls::TlsAcceptor::from(server_tls_config(files)?)),
            None => None,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let routing_id = config.routing_id.unwrap_or_else(random_routing_id);
        let connections = Arc::new(Semaphore::new(config.max_connections));
        Ok(Self {
            listener,
            inner: Arc::new(Inner {
                config,
                routing_id,
                tls,
                tunnels: Mutex::new(HashMap::new()),
                metrics: Metrics::default(),
                connections,
            }),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The routing id of this instance.
    pub fn routing_id(&self) -> RoutingId {
        self.inner.routing_id
    }

    /// The `/metrics` text as it is now.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render()
    }

    /// Serves until `shutdown` completes, then closes every tunnel (close
    /// code 1001) and waits a bounded time for connections to wind down.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        self.inner.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
                        match self.inner.connections.clone().try_acquire_owned() {
                            Ok(permit) => {
                                tasks.spawn(handle_connection(self.inner.clone(), tcp, peer, permit, stop_rx.clone()));
                            }
                            Err(_) => {
                                self.inner.metrics.reject(Reject::TooManyConnections);
                                tracing::warn!(%peer, "connection limit reached; dropping connection");
                                drop(tcp);
                            }
                        }
                    }
                    Err(e) => {
                        // E.g. EMFILE: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(self.listener);
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
        }
    }

    /// Runs the server on a new task; [`ServerHandle::shutdown`] stops it.
    pub fn spawn(self) -> ServerHandle {
        let (stop, stopped) = oneshot::channel::<()>();
        let local_addr = self
            .listener
            .local_addr()
            .unwrap_or_else(|_| self.inner.config.listen);
        let routing_id = self.inner.routing_id;
        let inner = self.inner.clone();
        let task = tokio::spawn(self.run(async move {
            let _ = stopped.await;
        }));
        ServerHandle {
            local_addr,
            routing_id,
            stop: Some(stop),
            task,
            inner,
        }
    }
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The routing id of this instance.
    pub fn routing_id(&self) -> RoutingId {
        self.routing_id
    }

    /// `ws://<local addr>` (or `wss://` when TLS is configured).
    pub fn base_url(&self) -> String {
        let scheme = if self.inner.tls.is_some() {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{}", self.local_addr)
    }

    /// The `/metrics` text as it is now.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render()
    }

    /// Stops accepting, closes every tunnel and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

fn random_routing_id() -> RoutingId {
    use rand_core::RngCore;
    let mut id = [0u8; 3];
    rand_core::OsRng.fill_bytes(&mut id);
    RoutingId(id)
}

fn server_tls_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let cert_err = |reason: String| ServerError::Tls {
        path: files.cert.clone(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_err("no CERTIFICATE block found".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| ServerError::Tls {
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| cert_err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| cert_err(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

// ---------------------------------------------------------------------------
// HTTP request head

/// The parts of a request head the server looks at.
#[derive(Debug, Default)]
struct RequestHead {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl RequestHead {
    fn header<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether `fido.cable` is among the offered subprotocols (§4.2).
    /// Subprotocol names are case-sensitive (RFC 6455 §4.1).
    fn offers_subprotocol(&self) -> bool {
        self.header("Sec-WebSocket-Protocol")
            .flat_map(|v| v.split(','))
            .any(|t| t.trim() == SUBPROTOCOL)
    }
}

/// Parses a complete request head; `Ok(None)` when more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, Reject> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let head = RequestHead {
                method: req.method.unwrap_or("").to_owned(),
                path: req.path.unwrap_or("").to_owned(),
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect(),
            };
            Ok(Some((head, len)))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Reject::HeadTooLarge),
        Err(_) => Err(Reject::BadRequest),
    }
}

/// Reads a request head (at most [`MAX_REQUEST_HEAD`] bytes); returns it and
/// any bytes read past it.
async fn read_head(stream: &mut MaybeTls) -> Result<(RequestHead, Vec<u8>), Option<Reject>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let room = MAX_REQUEST_HEAD.saturating_sub(buf.len());
        if room == 0 {
            return Err(Some(Reject::HeadTooLarge));
        }
        let want = room.min(chunk.len());
        let n = stream
            .read(chunk.get_mut(..want).unwrap_or(&mut []))
            .await
            .map_err(|_| None)?;
        if n == 0 {
            // The client went away before sending a whole head; nothing to answer.
            return Err(None);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        if let Some((head, len)) = parse_head(&buf).map_err(Some)? {
            let rest = buf.get(len..).map(<[u8]>::to_vec).unwrap_or_default();
            return Ok((head, rest));
        }
    }
}

/// Where a request path leads.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Healthz,
    Metrics,
    New(TunnelId),
    Connect(RoutingId, TunnelId),
    Refuse(Reject),
}

/// Routes a request path (query string ignored).
fn route(path: &str) -> Route {
    let path = path.split(['?', '#']).next().unwrap_or("");
    match path {
        "/healthz" => return Route::Healthz,
        "/metrics" => return Route::Metrics,
        _ => {}
    }
    if let Some(id) = path.strip_prefix("/cable/new/") {
        return match TunnelId::from_hex(id) {
            Ok(id) => Route::New(id),
            Err(_) => Route::Refuse(Reject::BadTunnelId),
        };
    }
    if let Some(rest) = path.strip_prefix("/cable/connect/") {
        let Some((routing, tunnel)) = rest.split_once('/') else {
            return Route::Refuse(Reject::NotFound);
        };
        let Ok(routing) = routing_id_from_path(routing) else {
            return Route::Refuse(Reject::WrongRoutingId);
        };
        return match TunnelId::from_hex(tunnel) {
            Ok(id) => Route::Connect(routing, id),
            Err(_) => Route::Refuse(Reject::BadTunnelId),
        };
    }
    Route::Refuse(Reject::NotFound)
}

/// Exactly 6 hex characters (no whitespace in a path).
fn routing_id_from_path(s: &str) -> Result<RoutingId, crate::TunnelError> {
    if s.len() != 6 {
        return Err(crate::TunnelError::BadRoutingId);
    }
    RoutingId::from_header(s)
}

/// Checks what every tunnel request needs: a WebSocket upgrade offering
/// `fido.cable` (§4.2), and the configured `Origin` host if any.
fn check_upgrade(head: &RequestHead, origin_host: Option<&str>) -> Result<String, Reject> {
    let key = head.header("Sec-WebSocket-Key").next();
    let version_ok = head
        .header("Sec-WebSocket-Version")
        .any(|v| v.trim() == "13");
    let (Some(key), true, true, true) = (
        key,
        version_ok,
        head.has_token("Upgrade", "websocket"),
        head.has_token("Connection", "upgrade"),
    ) else {
        return Err(Reject::NotWebSocket);
    };
    if !head.offers_subprotocol() {
        return Err(Reject::NoSubprotocol);
    }
    if let Some(want) = origin_host {
        let ok = head
            .header("Origin")
            .next()
            .is_some_and(|o| origin_host_matches(o, want));
        if !ok {
            return Err(Reject::Origin);
        }
    }
    Ok(derive_accept_key(key.trim().as_bytes()))
}

/// `scheme://host[:port]` → compares `host` case-insensitively.
fn origin_host_matches(origin: &str, want: &str) -> bool {
    let Some((_, authority)) = origin.trim().split_once("://") else {
        return false;
    };
    let authority = authority.trim_end_matches('/');
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case(want.trim_start_matches('[').trim_end_matches(']'))
}

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes a plain (non-upgrade) response and closes our sending side.
async fn respond(stream: &mut MaybeTls, status: u16, content_type: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        status_text(status),
        body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    let _ = stream.write_all(&bytes).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

async fn refuse(inner: &Inner, stream: &mut MaybeTls, r: Reject) {
    inner.metrics.reject(r);
    let status = r.status();
    let body = format!("{} {}\n", status_text(status), r.label());
    respond(stream, status, "text/plain; charset=utf-8", &body).await;
}

/// Writes the 101 answer: `fido.cable` selected, plus the routing id on `new` (§4.2).
async fn switch_protocols(
    stream: &mut MaybeTls,
    accept: &str,
    routing_id: Option<RoutingId>,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {SUBPROTOCOL}\r\n"
    );
    if let Some(id) = routing_id {
        head.push_str(&format!("{HEADER_ROUTING_ID}: {}\r\n", id.to_hex()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await
}

// ---------------------------------------------------------------------------
// Connections

/// What the HTTP phase of a connection decided.
enum Next {
    Phone(TunnelId, String),
    Desktop(TunnelId, String),
}

async fn handle_connection(
    inner: Arc<Inner>,
    tcp: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    stop: watch::Receiver<bool>,
) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, "could not set TCP_NODELAY: {e}");
    }
    let timeout = inner.handshake_timeout();
    let http = async {
        let mut stream = match &inner.tls {
            None => MaybeTls::Plain(tcp),
            Some(acceptor) => match acceptor.accept(tcp).await {
                Ok(s) => MaybeTls::Server(Box::new(s)),
                Err(e) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    inner.metrics.reject(Reject::TlsHandshake);
                    return None;
                }
            },
        };
        let (head, rest) = match read_head(&mut stream).await {
            Ok(x) => x,
            Err(Some(r)) => {
                refuse(&inner, &mut stream, r).await;
                return None;
            }
            Err(None) => return None,
        };
        let next = answer(&inner, &mut stream, &head).await?;
        Some((stream, rest, next))
    };
    let (stream, rest, next) = match tokio::time::timeout(timeout, http).await {
        Ok(Some(x)) => x,
        Ok(None) => return,
        Err(_) => {
            inner.metrics.reject(Reject::Timeout);
            return;
        }
    };
    match next {
        Next::Phone(id, accept) => phone(inner, stream, rest, id, accept, permit, stop).await,
        Next::Desktop(id, accept) => desktop(inner, stream, rest, id, accept, permit).await,
    }
}

/// Answers `/healthz`, `/metrics` and refusals; passes tunnel requests on.
async fn answer(inner: &Inner, stream: &mut MaybeTls, head: &RequestHead) -> Option<Next> {
    if head.method != "GET" {
        refuse(inner, stream, Reject::Method).await;
        return None;
    }
    let origin = inner.config.origin_host.as_deref();
    match route(&head.path) {
        Route::Healthz => {
            respond(stream, 200, "text/plain; charset=utf-8", "ok\n").await;
            None
        }
        Route::Metrics => {
            let body = inner.metrics.render();
            respond(
                stream,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
            .await;
            None
        }
        Route::Refuse(r) => {
            refuse(inner, stream, r).await;
            None
        }
        Route::New(id) => match check_upgrade(head, origin) {
            Ok(accept) => Some(Next::Phone(id, accept)),
            Err(r) => {
                refuse(inner, stream, r).await;
                None
            }
        },
        Route::Connect(routing, id) => {
            let accept = match check_upgrade(head, origin) {
                Ok(a) => a,
                Err(r) => {
                    refuse(inner, stream, r).await;
                    return None;
                }
            };
            if routing != inner.routing_id {
                refuse(inner, stream, Reject::WrongRoutingId).await;
                return None;
            }
            Some(Next::Desktop(id, accept))
        }
    }
}

/// `/cable/new/<id>`: registers the tunnel, answers 101, then owns the tunnel.
async fn phone(
    inner: Arc<Inner>,
    mut stream: MaybeTls,
    rest: Vec<u8>,
    id: TunnelId,
    accept: String,
    _permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) {
    let deadline = Instant::now() + Duration::from_secs(inner.config.ttl_secs);
    let (tx, rx) = oneshot::channel();
    let inserted = {
        let mut tunnels = inner.tunnels();
        match tunnels.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Slot {
                    desktop_tx: Some(tx),
                });
                true
            }
        }
    };
    if !inserted {
        refuse(&inner, &mut stream, Reject::DuplicateTunnel).await;
        return;
    }
    inner.metrics.tunnels_open.fetch_add(1, Ordering::Relaxed);
    // Dropped before the closing handshakes, so the id is free (and the
    // gauge down) as soon as the tunnel has ended.
    let guard = SlotGuard {
        inner: inner.clone(),
        id,
    };
    let wrote = tokio::time::timeout(
        inner.handshake_timeout(),
        switch_protocols(&mut stream, &accept, Some(inner.routing_id)),
    )
    .await;
    if !matches!(wrote, Ok(Ok(()))) {
        return;
    }
    inner
        .metrics
        .tunnels_created
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(tunnel = ?id, "phone connected");
    let mut phone =
        WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(inner.ws_config()))
            .await;

    let limits = Limits {
        max_bytes: inner.config.max_message_bytes,
        max_count: inner.config.max_messages_per_side,
    };
    let mut phone_count = 0u32;
    let mut queued: VecDeque<Vec<u8>> = VecDeque::new();

    // Phase 1: wait for the desktop, queueing what the phone sends.
    let waiting = async {
        let mut rx = rx;
        loop {
            tokio::select! {
                joined = &mut rx => return joined.map_err(|_| End::DesktopFailed),
                m = phone.next() => match classify(m, &limits, &mut phone_count) {
                    Event::Message(data) => queued.push_back(data),
                    Event::Ignore => {}
                    Event::Closed => return Err(End::PhoneClosed),
                    Event::Violation(end) => return Err(end),
                }
            }
        }
    };
    let joined = match bounded(deadline, &mut stop, waiting).await {
        Ok(j) => j,
        Err(end) => {
            drop(guard);
            finish(&inner, id, end, Some(&mut phone), None).await;
            return;
        }
    };
    inner.metrics.tunnels_paired.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(tunnel = ?id, "desktop connected");
    let mut desktop = joined.ws;

    // Phase 2: deliver the queue, then relay both ways.
    let relaying = async {
        while let Some(data) = queued.pop_front() {
            let len = data.len();
            if desktop.send(Message::Binary(data.into())).await.is_err() {
                return End::DesktopClosed;
            }
            inner.metrics.relayed(len);
        }
        let mut desktop_count = 0u32;
        loop {
            tokio::select! {
                m = phone.next() => match classify(m, &limits, &mut phone_count) {
                    Event::Message(data) => {
                        let len = data.len();
                        if desktop.send(Message::Binary(data.into())).await.is_err() {
                            return End::DesktopClosed;
                        }
                        inner.metrics.relayed(len);
                    }
                    Event::Ignore => {}
                    Event::Closed => return End::PhoneClosed,
                    Event::Violation(end) => return end,
                },
                m = desktop.next() => match classify(m, &limits, &mut desktop_count) {
                    Event::Message(data) => {
                        let len = data.len();
                        if phone.send(Message::Binary(data.into())).await.is_err() {
                            return End::PhoneClosed;
                        }
                        inner.metrics.relayed(len);
                    }
                    Event::Ignore => {}
                    Event::Closed => return End::DesktopClosed,
                    Event::Violation(end) => return end,
                },
            }
        }
    };
    let end = bounded(deadline, &mut stop, async { Ok::<_, End>(relaying.await) })
        .await
        .unwrap_or_else(|e| e);
    drop(guard);
    finish(&inner, id, end, Some(&mut phone), Some(&mut desktop)).await;
}

/// `/cable/connect/<routing id>/<id>`: claims the waiting tunnel, answers
/// 101 and hands the WebSocket to the phone's task.
async fn desktop(
    inner: Arc<Inner>,
    mut stream: MaybeTls,
    rest: Vec<u8>,
    id: TunnelId,
    accept: String,
    permit: OwnedSemaphorePermit,
) {
    let claimed = {
        let mut tunnels = inner.tunnels();
        match tunnels.get_mut(&id) {
            None => Err(Reject::NoSuchTunnel),
            Some(slot) => slot.desktop_tx.take().ok_or(Reject::AlreadyPaired),
        }
    };
    let tx = match claimed {
        Ok(tx) => tx,
        Err(r) => {
            refuse(&inner, &mut stream, r).await;
            return;
        }
    };
    // If this fails, dropping `tx` ends the phone's wait (End::DesktopFailed).
    let wrote = tokio::time::timeout(
        inner.handshake_timeout(),
        switch_protocols(&mut stream, &accept, None),
    )
    .await;
    if !matches!(wrote, Ok(Ok(()))) {
        return;
    }
    let ws =
        WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(inner.ws_config()))
            .await;
    if let Err(mut joined) = tx.send(Joined {
        ws,
        _permit: permit,
    }) {
        // The phone left in between.
        close_ws(&mut joined.ws, End::PhoneClosed.close_frame()).await;
    }
}

/// Runs `fut` until it finishes, the tunnel's deadline passes or the server stops.
async fn bounded<T>(
    deadline: Instant,
    stop: &mut watch::Receiver<bool>,
    fut: impl Future<Output = Result<T, End>>,
) -> Result<T, End> {
    tokio::select! {
        r = fut => r,
        () = tokio::time::sleep_until(deadline) => Err(End::Ttl),
        _ = stop.wait_for(|s| *s) => Err(End::Shutdown),
    }
}

/// Ends a tunnel: counts it and closes whichever sides are connected.
async fn finish(
    inner: &Inner,
    id: TunnelId,
    end: End,
    phone: Option<&mut Ws>,
    desktop: Option<&mut Ws>,
) {
    tracing::debug!(tunnel = ?id, reason = end.label(), "tunnel ended");
    inner.metrics.ended(end);
    let frame = end.close_frame();
    let close_phone = async {
        if let Some(ws) = phone {
            close_ws(ws, frame.clone()).await;
        }
    };
    let close_desktop = async {
        if let Some(ws) = desktop {
            close_ws(ws, frame.clone()).await;
        }
    };
    tokio::join!(close_phone, close_desktop);
}

/// Sends a close frame and waits briefly for the peer's reply; bounded.
async fn close_ws(ws: &mut Ws, frame: CloseFrame) {
    let _ = tokio::time::timeout(CLOSE_WAIT, ws.close(Some(frame))).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

struct Limits {
    max_bytes: usize,
    max_count: u32,
}

/// One incoming WebSocket event, judged against the limits.
#[derive(Debug)]
enum Event {
    Message(Vec<u8>),
    Ignore,
    Closed,
    Violation(End),
}

fn classify(next: Option<Result<Message, WsError>>, limits: &Limits, count: &mut u32) -> Event {
    match next {
        None | Some(Ok(Message::Close(_))) => Event::Closed,
        Some(Ok(Message::Binary(data))) => {
            if data.len() > limits.max_bytes {
                return Event::Violation(End::Oversize);
            }
            *count = count.saturating_add(1);
            if *count > limits.max_count {
                return Event::Violation(End::TooManyMessages);
            }
            Event::Message(data.to_vec())
        }
        Some(Ok(Message::Text(_))) => Event::Violation(End::TextFrame),
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Event::Ignore,
        Some(Err(WsError::Capacity(_))) => Event::Violation(End::Oversize),
        Some(Err(
            WsError::ConnectionClosed
            | WsError::AlreadyClosed
            | WsError::Io(_)
            | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
        )) => Event::Closed,
        Some(Err(_)) => Event::Violation(End::ProtocolError),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let t = "ab".repeat(16);
        assert_eq!(
            route(&format!("/cable/new/{t}")),
            Route::New(TunnelId([0xab; 16]))
        );
        assert_eq!(
            route(&format!("/cable/new/{}", t.to_uppercase())),
            Route::New(TunnelId([0xab; 16]))
        );
        assert_eq!(route("/cable/new/abcd"), Route::Refuse(Reject::BadTunnelId));
        assert_eq!(
            route(&format!("/cable/connect/0A0B0c/{t}?x=1")),
            Route::Connect(RoutingId([10, 11, 12]), TunnelId([0xab; 16]))
        );
        assert_eq!(
            route(&format!("/cable/connect/0A0B/{t}")),
            Route::Refuse(Reject::WrongRoutingId)
        );
        assert_eq!(
            route(&format!("/cable/connect/%200A0B0C/{t}")),
            Route::Refuse(Reject::WrongRoutingId)
        );
        assert_eq!(
            route("/cable/connect/0A0B0C"),
            Route::Refuse(Reject::NotFound)
        );
        assert_eq!(route("/cable/contact/abc"), Route::Refuse(Reject::NotFound));
        assert_eq!(route("/"), Route::Refuse(Reject::NotFound));
        assert_eq!(route("/healthz"), Route::Healthz);
        assert_eq!(route("/metrics?x"), Route::Metrics);
    }

    fn head(headers: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: "GET".into(),
            path: "/".into(),
            headers: headers
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
        }
    }

    const WS: [(&str, &str); 4] = [
        ("Upgrade", "WebSocket"),
        ("connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn upgrade_checks() {
        let mut h = WS.to_vec();
        assert_eq!(check_upgrade(&head(&h), None), Err(Reject::NoSubprotocol));
        h.push(("Sec-WebSocket-Protocol", "chat, fido.cable"));
        // RFC 6455 §1.3 example key.
        assert_eq!(
            check_upgrade(&head(&h), None).as_deref(),
            Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        assert_eq!(
            check_upgrade(&head(&h), Some("example.com")),
            Err(Reject::Origin)
        );
        h.push(("Origin", "wss://Example.com:443"));
        assert!(check_upgrade(&head(&h), Some("example.com")).is_ok());
        assert_eq!(
            check_upgrade(&head(&h), Some("other.com")),
            Err(Reject::Origin)
        );
        let no_key: Vec<_> = h
            .iter()
            .filter(|(n, _)| *n != "Sec-WebSocket-Key")
            .copied()
            .collect();
        assert_eq!(
            check_upgrade(&head(&no_key), None),
            Err(Reject::NotWebSocket)
        );
        let upper = [WS.as_slice(), &[("Sec-WebSocket-Protocol", "FIDO.CABLE")]].concat();
        assert_eq!(
            check_upgrade(&head(&upper), None),
            Err(Reject::NoSubprotocol)
        );
    }

    #[test]
    fn origin_hosts() {
        assert!(origin_host_matches("wss://cable.example", "cable.example"));
        assert!(origin_host_matches("https://[::1]:8443", "::1"));
        assert!(!origin_host_matches("cable.example", "cable.example"));
        assert!(!origin_host_matches("null", "cable.example"));
    }

    #[test]
    fn head_parsing() {
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Ok(None)
        ));
        let (h, len) = parse_head(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.method.as_str(), h.path.as_str(), len),
            ("GET", "/healthz", 34)
        );
        assert!(matches!(
            parse_head(b"\x00\x01garbage\r\n\r\n"),
            Err(Reject::BadRequest)
        ));
        let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(
            parse_head(req.as_bytes()),
            Err(Reject::HeadTooLarge)
        ));
    }

    #[test]
    fn classify_limits() {
        let limits = Limits {
            max_bytes: 4,
            max_count: 2,
        };
        let mut n = 0;
        let bin = |b: &[u8]| Some(Ok(Message::Binary(b.to_vec().into())));
        assert!(matches!(
            classify(bin(b"abcd"), &limits, &mut n),
            Event::Message(_)
        ));
        assert!(matches!(
            classify(bin(b"abcde"), &limits, &mut n),
            Event::Violation(End::Oversize)
        ));
        assert!(matches!(
            classify(bin(b""), &limits, &mut n),
            Event::Message(_)
        ));
        assert!(matches!(
            classify(bin(b"a"), &limits, &mut n),
            Event::Violation(End::TooManyMessages)
        ));
        assert!(matches!(
            classify(Some(Ok(Message::Text("x".into()))), &limits, &mut n),
            Event::Violation(End::TextFrame)
        ));
        assert!(matches!(classify(None, &limits, &mut n), Event::Closed));
    }

    #[test]
    fn config_from_json() {
        let c: ServerConfig =
            serde_json::from_str(r#"{"listen":"127.0.0.1:0","routing_id":"0a0b0c","ttl_secs":5}"#)
                .unwrap();
        assert_eq!(c.routing_id, Some(RoutingId([10, 11, 12])));
        assert_eq!(c.ttl_secs, 5);
        assert_eq!(c.max_messages_per_side, 16);
        assert!(serde_json::from_str::<ServerConfig>(r#"{"routing_id":"0a0b"}"#).is_err());
        assert!(serde_json::from_str::<ServerConfig>(r#"{"bogus":1}"#).is_err());
    }

    #[test]
    fn metrics_render() {
        let m = Metrics::default();
        m.reject(Reject::NoSubprotocol);
        m.ended(End::Ttl);
        m.relayed(10);
        let text = m.render();
        assert!(text.contains("hybrid_tunnel_rejections_total{reason=\"no_subprotocol\"} 1\n"));
        assert!(text.contains("hybrid_tunnel_tunnels_ended_total{reason=\"ttl\"} 1\n"));
        assert!(text.contains("hybrid_tunnel_bytes_relayed_total 10\n"));
        assert!(text.contains("# TYPE hybrid_tunnel_tunnels_open gauge\n"));
    }
}
