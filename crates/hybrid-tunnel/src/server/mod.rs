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
//! the upgraded stream is served by the relay's own WebSocket code
//! (`ws.rs`: one read and one write per message, a small read buffer,
//! [`READ_BUFFER`]), behind a guard that bounds the time each frame may
//! take to arrive ([`ServerConfig::frame_timeout_secs`]).
//!
//! Admission, for a server on a public address: a connection limit derived
//! from the descriptor limit ([`default_max_connections`]), per-source
//! limits on open connections and on tunnels waiting for a desktop (an IPv4
//! address or an IPv6 /64; behind a proxy listed in
//! [`ServerConfig::trusted_proxies`], the client address it appends to
//! `X-Forwarded-For`), a shorter wait for an unpaired phone
//! ([`ServerConfig::wait_secs`]) than the tunnel's lifetime, and a backoff
//! when `accept` fails (descriptors exhausted). Every refusal is counted in
//! `/metrics`. docs/tunnel-server.md has the operator's view.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::stream::ring_provider;
use crate::{RoutingId, TunnelId};

mod frame;
mod http;
mod limits;
mod metrics;
mod relay;
mod ws;

pub use frame::FrameTracker;
pub use limits::{default_max_connections, raise_descriptor_limit, RESERVED_DESCRIPTORS};

use limits::{SourceGuard, SourceKey, Sources};
use metrics::{AcceptError, Metrics, Reject};
use relay::handle_connection;

/// Largest HTTP request head accepted (request line + headers).
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Most request headers parsed.
const MAX_HEADERS: usize = 32;
/// Bound on each closing step when a tunnel ends.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Bound on waiting for tunnels to wind down after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Read buffer of each WebSocket, allocated at its first read and never
/// zero-filled (tungstenite's default was 128 KiB, eagerly allocated and
/// zero-filled on every read: 256 KiB and a 128 KiB memset per message for
/// every tunnel, measured with heaptrack and perf, see docs/performance.md).
/// Hybrid messages are a few hundred bytes to a few KiB; a larger frame
/// grows the buffer to its size, and it shrinks back once that frame is
/// relayed (`ws.rs`).
pub const READ_BUFFER: usize = 2 * 1024;
/// Largest value any `*_secs` setting may have (one day): a larger one is a
/// configuration error, never an overflow.
pub const MAX_CONFIG_SECS: u64 = 24 * 3600;
/// Bytes a phone may send before its desktop arrives (the queue it fills).
/// The phone is the Noise responder (§5.3) and normally sends nothing
/// before the desktop's first message.
pub const MAX_QUEUED_BYTES: usize = 64 * 1024;
/// How often the server checks whether to give freed memory back.
const TRIM_CHECK: Duration = Duration::from_secs(2);
/// First and last pause after a failed `accept` (doubling in between).
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

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
    /// both sides are closed when it ends. Default 120. At most
    /// [`MAX_CONFIG_SECS`], like every `*_secs` setting.
    pub ttl_secs: u64,
    /// How long a phone may wait for its desktop, in seconds from `new`
    /// (capped by `ttl_secs`); an unpaired tunnel is closed with 1008 after
    /// it. Default 60: a desktop that saw the advert connects within
    /// seconds, and a waiting tunnel is what an attacker holds cheaply.
    pub wait_secs: u64,
    /// Largest message relayed, in bytes; a larger one ends the tunnel.
    /// Default 16 KiB (hybrid messages are small; Chromium's own cap is 1 MiB).
    pub max_message_bytes: usize,
    /// Most messages one side may send over the tunnel's life (queued ones
    /// count); one more ends the tunnel. Default 1024: a ceremony takes
    /// about 4 per side plus one per getNextAssertion and update message
    /// (§6.3), so even an account list of a thousand fits.
    pub max_messages_per_side: u32,
    /// Most simultaneous connections (waiting, paired or still in their HTTP
    /// handshake); more are refused at accept. Default: the soft
    /// descriptor limit at `bind` minus [`RESERVED_DESCRIPTORS`]
    /// ([`default_max_connections`]; `hybridd tunnel-server` raises the
    /// soft limit to the hard one first).
    pub max_connections: Option<usize>,
    /// Most connections open at once from one source (an IPv4 address or an
    /// IPv6 /64). Default 128.
    pub max_connections_per_source: u32,
    /// Most tunnels from one source waiting for a desktop at once; more
    /// `new` requests get 429. Default 32.
    pub max_waiting_per_source: u32,
    /// Bound in seconds on TLS accept + reading the request head + answering it. Default 10.
    pub handshake_timeout_secs: u64,
    /// Bound in seconds on receiving one WebSocket frame, from its first
    /// byte to its last; a slower one ends the tunnel (1008). Default 10.
    pub frame_timeout_secs: u64,
    /// Reverse proxies whose `X-Forwarded-For` is believed: a connection
    /// from one of these addresses counts against the source limits of the
    /// last address in that header (the one the proxy appended) instead of
    /// the proxy's. Default: none.
    pub trusted_proxies: Vec<IpAddr>,
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
            wait_secs: 60,
            max_message_bytes: 16 * 1024,
            max_messages_per_side: 1024,
            max_connections: None,
            max_connections_per_source: 128,
            max_waiting_per_source: 32,
            handshake_timeout_secs: 10,
            frame_timeout_secs: 10,
            trusted_proxies: Vec::new(),
            tls: None,
            plain_listen: None,
            origin_host: None,
        }
    }
}

impl ServerConfig {
    /// Checks every value a server cannot work with; [`TunnelServer::bind`]
    /// calls it.
    pub fn validate(&self) -> Result<(), ServerError> {
        for (name, secs) in [
            ("ttl_secs", self.ttl_secs),
            ("wait_secs", self.wait_secs),
            ("handshake_timeout_secs", self.handshake_timeout_secs),
            ("frame_timeout_secs", self.frame_timeout_secs),
        ] {
            if secs == 0 || secs > MAX_CONFIG_SECS {
                return Err(ServerError::Duration {
                    name,
                    secs,
                    max: MAX_CONFIG_SECS,
                });
            }
        }
        if self.max_connections == Some(0) {
            return Err(ServerError::Config("max_connections must be at least 1"));
        }
        if self.max_connections_per_source == 0 {
            return Err(ServerError::Config(
                "max_connections_per_source must be at least 1",
            ));
        }
        if self.max_waiting_per_source == 0 {
            return Err(ServerError::Config(
                "max_waiting_per_source must be at least 1",
            ));
        }
        if self.max_message_bytes == 0 {
            return Err(ServerError::Config("max_message_bytes must be at least 1"));
        }
        Ok(())
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
    /// A `*_secs` setting is 0 or larger than [`MAX_CONFIG_SECS`].
    #[error(
        "invalid tunnel server configuration: {name} = {secs} must be between 1 and {max} seconds"
    )]
    Duration {
        /// The setting.
        name: &'static str,
        /// Its value.
        secs: u64,
        /// The largest accepted.
        max: u64,
    },
}

/// What keeps a connection counted (globally and for its source) while it
/// is open: dropped together with the connection.
struct Admission {
    _permit: OwnedSemaphorePermit,
    /// `None` only until a trusted proxy's request head names the client.
    source: Option<SourceGuard>,
    inner: Arc<Inner>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.inner
            .metrics
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// One side's WebSocket and its admission, dropped together.
struct Leg {
    ws: ws::Conn,
    _admission: Admission,
}

/// A tunnel in the table: the sender is taken by the (one) desktop.
struct Slot {
    desktop_tx: Option<oneshot::Sender<Leg>>,
}

struct Inner {
    config: ServerConfig,
    routing_id: RoutingId,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tunnels: Mutex<HashMap<TunnelId, Slot>>,
    metrics: Metrics,
    connections: Arc<Semaphore>,
    sources: Arc<Sources>,
    /// Most connections open at once since memory was last given back.
    connections_peak: std::sync::atomic::AtomicI64,
}

impl Inner {
    fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.config.handshake_timeout_secs)
    }

    fn frame_timeout(&self) -> Duration {
        Duration::from_secs(self.config.frame_timeout_secs)
    }

    /// After a burst has closed, hands the freed memory back to the kernel
    /// (the allocator would keep it: docs/performance.md).
    fn maybe_release_memory(&self) {
        let open = self.metrics.connections_open.load(Ordering::Relaxed);
        let peak = self.connections_peak.load(Ordering::Relaxed);
        if should_release(peak, open) {
            self.connections_peak.store(open, Ordering::Relaxed);
            // Inline, not on a blocking thread: a new thread would start an
            // allocator arena of its own. It takes about a millisecond per
            // 10 MB of heap, once after a burst.
            let started = std::time::Instant::now();
            let released = hybrid_trim::release_free_memory();
            tracing::debug!(
                released,
                took = ?started.elapsed(),
                peak,
                open,
                "gave freed memory back after connections closed"
            );
        }
    }

    fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.config
            .trusted_proxies
            .iter()
            .any(|p| p.to_canonical() == ip)
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
        let mut tunnels = self.inner.tunnels();
        tunnels.remove(&self.id);
        // Give memory back after a burst (a map never shrinks by itself).
        if tunnels.capacity() > 1024 && tunnels.len() < tunnels.capacity() / 4 {
            let keep = tunnels.len() * 2;
            tunnels.shrink_to(keep);
        }
        drop(tunnels);
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
    /// Checks the configuration, binds the listen address and loads the TLS
    /// certificate, if any.
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        config.validate()?;
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
        let max_connections = config
            .max_connections
            .unwrap_or_else(default_max_connections)
            .min(Semaphore::MAX_PERMITS);
        let descriptors = default_max_connections();
        if max_connections > descriptors {
            tracing::warn!(
                max_connections,
                descriptors,
                "max_connections exceeds the open-file limit (minus {RESERVED_DESCRIPTORS} reserved): \
                 accept will fail with EMFILE before the limit is reached; raise `ulimit -n` \
                 (LimitNOFILE= under systemd) or lower max_connections"
            );
        }
        let metrics = Metrics::default();
        metrics
            .connection_limit
            .store(max_connections as u64, Ordering::Relaxed);
        let sources = Arc::new(Sources::new(
            config.max_connections_per_source,
            config.max_waiting_per_source,
        ));
        Ok(Self {
            listener,
            plain_listener,
            inner: Arc::new(Inner {
                config,
                routing_id,
                tls,
                tunnels: Mutex::new(HashMap::new()),
                metrics,
                connections: Arc::new(Semaphore::new(max_connections)),
                sources,
                connections_peak: std::sync::atomic::AtomicI64::new(0),
            }),
        })
    }

    /// The connection limit in force (configured, or derived from the descriptor limit).
    pub fn max_connections(&self) -> usize {
        self.inner.metrics.connection_limit.load(Ordering::Relaxed) as usize
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
        let mut backoff = ACCEPT_BACKOFF.0;
        let mut trim_check = tokio::time::interval(TRIM_CHECK);
        trim_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = trim_check.tick() => self.inner.maybe_release_memory(),
                accepted = accept_either(&self.listener, self.plain_listener.as_ref()) => match accepted {
                    Ok((tcp, peer, plain)) => {
                        backoff = ACCEPT_BACKOFF.0;
                        if let Some(admission) = self.admit(&tcp, peer, plain) {
                            tasks.spawn(handle_connection(self.inner.clone(), tcp, peer, admission, stop_rx.clone(), plain));
                        }
                    }
                    Err(e) => {
                        // EMFILE/ENFILE leave the connection in the backlog:
                        // accepting again at once would spin. Pause (doubling,
                        // bounded), still serving shutdown and finished tasks.
                        let reason = AcceptError::of(&e);
                        self.inner.metrics.accept_failed(reason);
                        tracing::warn!(pause = ?backoff, "accept failed ({}): {e}", reason.label());
                        let pause = tokio::time::sleep(backoff);
                        tokio::pin!(pause);
                        loop {
                            tokio::select! {
                                () = &mut pause => break,
                                () = &mut shutdown => break,
                                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                            }
                        }
                        backoff = backoff.saturating_mul(2).min(ACCEPT_BACKOFF.1);
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

    /// Counts a fresh connection in, or refuses it (global limit, then its
    /// source's, unless it comes from a trusted proxy: those are counted
    /// once the head names the client).
    fn admit(
        &self,
        tcp: &tokio::net::TcpStream,
        peer: SocketAddr,
        plain: bool,
    ) -> Option<Admission> {
        let inner = &self.inner;
        inner
            .metrics
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        let Ok(permit) = inner.connections.clone().try_acquire_owned() else {
            inner.metrics.reject(Reject::TooManyConnections);
            tracing::warn!(%peer, "connection limit reached; refusing connection");
            refuse_now(
                tcp,
                plain || inner.tls.is_none(),
                Reject::TooManyConnections,
            );
            return None;
        };
        let source = if inner.is_trusted_proxy(peer.ip()) {
            None
        } else {
            match inner.sources.admit_connection(SourceKey::of(peer.ip())) {
                Some(g) => Some(g),
                None => {
                    inner.metrics.reject(Reject::TooManyFromSource);
                    tracing::debug!(%peer, "per-source connection limit reached; refusing connection");
                    refuse_now(tcp, plain || inner.tls.is_none(), Reject::TooManyFromSource);
                    return None;
                }
            }
        };
        let open = inner
            .metrics
            .connections_open
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        inner.connections_peak.fetch_max(open, Ordering::Relaxed);
        Some(Admission {
            _permit: permit,
            source,
            inner: inner.clone(),
        })
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

/// Entry points for the fuzz target `fuzz/fuzz_targets/tunnel_server.rs`:
/// everything a client's bytes reach before a tunnel exists, and the frame
/// tracker that follows them after. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use super::frame::FrameTracker;
    use super::http::{check_upgrade, forwarded_for, parse_head, route};

    /// Parses a request head as the server does, then routes it, checks the
    /// upgrade and reads `X-Forwarded-For`. Must never panic.
    pub fn request(bytes: &[u8]) {
        if let Ok(Some((head, len))) = parse_head(bytes) {
            assert!(len <= bytes.len());
            let _ = route(&head.path);
            let _ = check_upgrade(&head, Some("cable.example"));
            let _ = check_upgrade(&head, None);
            let _ = forwarded_for(&head);
        }
    }

    /// Feeds `bytes` to a frame tracker whole and cut at `cuts`: both must
    /// end in the same state.
    pub fn frames(bytes: &[u8], cuts: &[usize]) {
        let mut whole = FrameTracker::new();
        whole.feed(bytes);
        let mut pieces = FrameTracker::new();
        let mut rest = bytes;
        for &cut in cuts {
            let (a, b) = rest.split_at(cut.min(rest.len()));
            pieces.feed(a);
            rest = b;
        }
        pieces.feed(rest);
        assert_eq!(whole, pieces);
    }

    /// Feeds `bytes` to the relay's WebSocket reader (limit `max`) whole
    /// and cut at `cuts`: both must give the same events; every message is
    /// within the limit and re-framed in place as exactly the server frame
    /// of its payload; the buffer never holds more than a frame's worth.
    pub fn websocket(bytes: &[u8], cuts: &[usize], max: usize) {
        let whole = websocket_events(&[bytes], max);
        let mut pieces = Vec::new();
        let mut rest = bytes;
        for &cut in cuts {
            let (a, b) = rest.split_at(cut.min(rest.len()));
            pieces.push(a);
            rest = b;
        }
        pieces.push(rest);
        assert_eq!(whole, websocket_events(&pieces, max));
    }

    fn websocket_events(pieces: &[&[u8]], max: usize) -> Vec<(super::ws::Step, Vec<u8>)> {
        use super::ws::{frame, Reader, Step};
        let mut r = Reader::new(Vec::new(), max);
        let mut events = Vec::new();
        for piece in pieces {
            r.feed(piece);
            loop {
                let step = r.step();
                match step {
                    Step::Need(n) => {
                        assert!(n > 0);
                        break;
                    }
                    Step::Message => {
                        let m = r.message().to_vec();
                        assert!(m.len() <= max);
                        assert_eq!(r.framed(), &frame(0x2, &m)[..]);
                        events.push((step, m));
                    }
                    Step::Ping => events.push((step, r.pong())),
                    Step::Fail(_) => {
                        events.push((step, Vec::new()));
                        return events;
                    }
                    s => events.push((s, Vec::new())),
                }
            }
            // Unparsed: at most one frame's header and payload.
            assert!(r.buffered().0 <= max.max(125) + 14);
        }
        events
    }
}

/// Whether to give memory back: at least [`RELEASE_AFTER`] connections
/// have closed since the peak, and at least half of them.
fn should_release(peak: i64, open: i64) -> bool {
    let closed = peak.saturating_sub(open);
    closed >= RELEASE_AFTER && closed.saturating_mul(2) >= peak
}

/// Connections that must have closed since the peak before memory is given
/// back (each held about 6 KiB; fewer are not worth walking the heap for).
const RELEASE_AFTER: i64 = 512;

/// Answers a refused plain-HTTP connection without waiting: one
/// non-blocking write of a fixed response (lost if the socket is not
/// writable), then the caller drops the socket.
fn refuse_now(tcp: &tokio::net::TcpStream, plain_http: bool, r: Reject) {
    if plain_http {
        let _ = tcp.try_write(http::fixed_response(r).as_bytes());
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
    fn memory_is_given_back_after_a_large_drop_only() {
        assert!(!should_release(0, 0));
        assert!(!should_release(100, 0), "too few to matter");
        assert!(should_release(20_000, 0));
        assert!(should_release(20_000, 10_000));
        assert!(!should_release(20_000, 10_001), "less than half closed");
        assert!(!should_release(20_000, 20_000));
    }

    #[test]
    fn config_from_json() {
        let c: ServerConfig =
            serde_json::from_str(r#"{"listen":"127.0.0.1:0","routing_id":"0a0b0c","ttl_secs":5}"#)
                .unwrap();
        assert_eq!(c.routing_id, Some(RoutingId([10, 11, 12])));
        assert_eq!(c.ttl_secs, 5);
        assert_eq!(c.max_messages_per_side, 1024);
        assert_eq!(c.max_connections, None);
        // An unpaired phone waits less than a paired tunnel lives (issue 16).
        let d = ServerConfig::default();
        assert!(d.wait_secs < d.ttl_secs);
        assert!(d.validate().is_ok());
        assert!(serde_json::from_str::<ServerConfig>(r#"{"routing_id":"0a0b"}"#).is_err());
        assert!(serde_json::from_str::<ServerConfig>(r#"{"bogus":1}"#).is_err());
    }
}
