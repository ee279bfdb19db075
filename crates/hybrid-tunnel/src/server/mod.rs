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

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

use crate::stream::{ring_provider, MaybeTls};
use crate::{RoutingId, TunnelId};

mod http;
mod metrics;
mod relay;

use metrics::{Metrics, Reject};
use relay::handle_connection;

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
    /// A second listen address that always speaks plain `ws://`, sharing
    /// the tunnel table with the main one. Meant for a phone on the same
    /// host (loopback) while desktops reach the main address over `wss://`,
    /// e.g. a local test where an unmodified browser needs TLS but
    /// `hybridd run --tunnel-url ws://127.0.0.1:PORT` does not. Default: none.
    pub plain_listen: Option<SocketAddr>,
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
            plain_listen: None,
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
    plain_listener: Option<TcpListener>,
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
    plain_addr: Option<SocketAddr>,
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
        let plain_listener = match config.plain_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Bind { addr, source })?,
            ),
            None => None,
        };
        let routing_id = config.routing_id.unwrap_or_else(random_routing_id);
        let connections = Arc::new(Semaphore::new(config.max_connections));
        Ok(Self {
            listener,
            plain_listener,
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

    /// The address of the plain `ws://` listener
    /// ([`ServerConfig::plain_listen`]), if one is configured.
    pub fn plain_local_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.plain_listener.as_ref().map(TcpListener::local_addr)
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
                accepted = accept_either(&self.listener, self.plain_listener.as_ref()) => match accepted {
                    Ok((tcp, peer, plain)) => {
                        self.inner.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
                        match self.inner.connections.clone().try_acquire_owned() {
                            Ok(permit) => {
                                tasks.spawn(handle_connection(self.inner.clone(), tcp, peer, permit, stop_rx.clone(), plain));
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
        drop(self.plain_listener);
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
        let plain_addr = self
            .plain_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok());
        let routing_id = self.inner.routing_id;
        let inner = self.inner.clone();
        let task = tokio::spawn(self.run(async move {
            let _ = stopped.await;
        }));
        ServerHandle {
            local_addr,
            plain_addr,
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

    /// `ws://<plain addr>` when [`ServerConfig::plain_listen`] is set.
    pub fn plain_base_url(&self) -> Option<String> {
        self.plain_addr.map(|a| format!("ws://{a}"))
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

/// Accepts from the main listener or, when configured, the plain one; the
/// flag says whether the connection came in on the plain listener.
async fn accept_either(
    main: &TcpListener,
    plain: Option<&TcpListener>,
) -> io::Result<(tokio::net::TcpStream, SocketAddr, bool)> {
    match plain {
        None => main.accept().await.map(|(t, p)| (t, p, false)),
        Some(plain) => tokio::select! {
            r = main.accept() => r.map(|(t, p)| (t, p, false)),
            r = plain.accept() => r.map(|(t, p)| (t, p, true)),
        },
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
