//! `hybrid-bench tunnel`: a load generator for caBLE tunnel servers
//! (hybrid-protocol.md §4.2), ours or anyone's, on loopback.
//!
//! Phases, each against one server process whose pid is known:
//!
//! 1. **memory**: after a warm-up (32 tunnels opened and closed, so the
//!    code that serves them is paged in and counted in the baseline), open
//!    `tunnels` tunnels (phone `GET /cable/new/<id>`, then
//!    desktop `GET /cable/connect/<routing id>/<id>`, subprotocol
//!    `fido.cable`, one small message each way) at a bounded ramp, hold them,
//!    read the server's resident memory, close them all (phone sends Close,
//!    both legs read to EOF) and read it again after a pause;
//! 2. **relay**: open `relay_tunnels` tunnels and run an **open-loop**
//!    schedule of `rate` round trips per second for `duration`, spread
//!    round-robin over the tunnels: the desktop sends `size` bytes, the phone
//!    echoes them, the round trip is timed from the desktop's send;
//! 3. **pairs**: `pair_workers` workers, spread over `pair_threads`
//!    generator threads, set up and tear down new+connect pairs (phone sends
//!    Close, both legs read to EOF) for `pair_duration`.
//!
//! Server CPU is `utime + stime` of the server process over each phase.
//! Source addresses are spread over 127.0.0.1..=127.0.0.`sources` (phone and
//! desktop of one tunnel from different ones). Every step has a bound
//! (`step_timeout`), every loop a count or a deadline.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hybrid_tunnel::names::{HEADER_ROUTING_ID, SUBPROTOCOL};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::procfs::{sample, ticks_to_duration, Sample};
use crate::stats::{percentile, Failures};
use crate::BenchError;

type Ws = WebSocketStream<TcpStream>;

/// What to run and how hard.
#[derive(Debug, Clone)]
pub struct TunnelOptions {
    /// Tunnels held open in the memory phase (0 skips the phase).
    pub tunnels: usize,
    /// Tunnels opened per second at most while ramping up.
    pub open_rate: u32,
    /// Tunnel openings in flight at most.
    pub open_concurrency: usize,
    /// Tunnels carrying the relay phase (0 skips the phase).
    pub relay_tunnels: usize,
    /// Round trips per second, open loop.
    pub rate: u32,
    /// Length of the relay phase.
    pub duration: Duration,
    /// Message size of the relay phase, bytes.
    pub size: usize,
    /// Workers of the pairs phase (0 skips the phase).
    pub pair_workers: usize,
    /// Length of the pairs phase.
    pub pair_duration: Duration,
    /// Generator threads of the pairs phase, the workers spread over them.
    pub pair_threads: usize,
    /// The WebSocket client of the pairs phase.
    pub pair_client: PairClient,
    /// Source addresses 127.0.0.1..=127.0.0.`sources`.
    pub sources: u8,
    /// Pause before each memory reading.
    pub settle: Duration,
    /// Pause after all tunnels closed before the last memory reading.
    pub after_close: Duration,
    /// Bound on each connection step (connect + upgrade, one message, a close).
    pub step_timeout: Duration,
}

impl Default for TunnelOptions {
    fn default() -> Self {
        Self {
            tunnels: 9_950,
            open_rate: 2_000,
            open_concurrency: 64,
            relay_tunnels: 1_000,
            rate: 2_000,
            duration: Duration::from_secs(10),
            size: 1024,
            pair_workers: 32,
            pair_duration: Duration::from_secs(5),
            pair_threads: 2,
            pair_client: PairClient::Lean,
            sources: 16,
            settle: Duration::from_secs(2),
            after_close: Duration::from_secs(5),
            step_timeout: Duration::from_secs(10),
        }
    }
}

/// The WebSocket client the pairs phase connects with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PairClient {
    /// Our minimal client (`lean_ws`): the generator's CPU per pair is
    /// small next to the server's, so the rate says more about the server.
    Lean,
    /// tokio-tungstenite's client, as the memory and relay phases use.
    Tungstenite,
}

/// One measurement of a run, in the order the report prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// Resident memory before anything happened, KiB.
    ColdRssKib,
    /// Resident memory after the warm-up, KiB: the baseline of the ratios.
    IdleRssKib,
    /// Tunnels that opened in the memory phase.
    TunnelsOpen,
    /// Resident memory with them open, KiB.
    OpenRssKib,
    /// (open − idle) / tunnels, KiB.
    KibPerTunnel,
    /// Resident memory after all closed and the pause, KiB.
    AfterCloseRssKib,
    /// After-close / idle.
    AfterCloseRatio,
    /// The same for anonymous memory only (`RssAnon`: heap and stacks).
    AfterCloseAnonRatio,
    /// Server CPU per tunnel opened (both legs, one message each way), µs.
    CpuPerTunnelUs,
    /// Relay round-trip percentiles, µs.
    RelayP50Us,
    /// 90th percentile.
    RelayP90Us,
    /// 99th percentile.
    RelayP99Us,
    /// Slowest round trip.
    RelayMaxUs,
    /// Round trips done per second over the window.
    RelayRate,
    /// Server CPU per round trip (two relayed messages), µs.
    CpuPerRoundTripUs,
    /// 99th percentile of how late the generator sent (a saturated generator shows here).
    SendLagP99Us,
    /// Pairs set up and torn down per second.
    PairsPerSec,
    /// Median time of one pair, ms.
    PairP50Ms,
    /// Slowest pair, ms.
    PairMaxMs,
    /// Server CPU per pair, µs.
    CpuPerPairUs,
    /// The generator's own CPU per pair, µs (all its threads).
    GenCpuPerPairUs,
    /// Failures of all phases.
    Failures,
}

impl crate::report::Metric for Metric {
    const ALL: &'static [Metric] = &[
        Metric::ColdRssKib,
        Metric::IdleRssKib,
        Metric::TunnelsOpen,
        Metric::OpenRssKib,
        Metric::KibPerTunnel,
        Metric::AfterCloseRssKib,
        Metric::AfterCloseRatio,
        Metric::AfterCloseAnonRatio,
        Metric::CpuPerTunnelUs,
        Metric::RelayP50Us,
        Metric::RelayP90Us,
        Metric::RelayP99Us,
        Metric::RelayMaxUs,
        Metric::RelayRate,
        Metric::CpuPerRoundTripUs,
        Metric::SendLagP99Us,
        Metric::PairsPerSec,
        Metric::PairP50Ms,
        Metric::PairMaxMs,
        Metric::CpuPerPairUs,
        Metric::GenCpuPerPairUs,
        Metric::Failures,
    ];

    /// Row title.
    fn label(self) -> &'static str {
        match self {
            Metric::ColdRssKib => "memory: RSS at start (KiB)",
            Metric::IdleRssKib => "memory: idle RSS after a warm-up (KiB)",
            Metric::TunnelsOpen => "memory: tunnels open",
            Metric::OpenRssKib => "memory: RSS with them open (KiB)",
            Metric::KibPerTunnel => "memory: resident per open tunnel (KiB)",
            Metric::AfterCloseRssKib => "memory: RSS after all closed (KiB)",
            Metric::AfterCloseRatio => "memory: after-close RSS / idle RSS",
            Metric::AfterCloseAnonRatio => "memory: the same, anonymous RSS only (no code pages)",
            Metric::CpuPerTunnelUs => "memory: server CPU per tunnel opened (µs)",
            Metric::RelayP50Us => "relay: round trip p50 (µs)",
            Metric::RelayP90Us => "relay: round trip p90 (µs)",
            Metric::RelayP99Us => "relay: round trip p99 (µs)",
            Metric::RelayMaxUs => "relay: round trip max (µs)",
            Metric::RelayRate => "relay: round trips per second done",
            Metric::CpuPerRoundTripUs => "relay: server CPU per round trip (µs)",
            Metric::SendLagP99Us => "relay: generator send lag p99 (µs)",
            Metric::PairsPerSec => "pairs: set up + torn down per second",
            Metric::PairP50Ms => "pairs: one pair p50 (ms)",
            Metric::PairMaxMs => "pairs: one pair max (ms)",
            Metric::CpuPerPairUs => "pairs: server CPU per pair (µs)",
            Metric::GenCpuPerPairUs => "pairs: generator CPU per pair (µs)",
            Metric::Failures => "failures (all phases)",
        }
    }

    fn decimals(self) -> usize {
        match self {
            Metric::KibPerTunnel | Metric::PairP50Ms | Metric::PairMaxMs => 1,
            Metric::AfterCloseRatio | Metric::AfterCloseAnonRatio => 2,
            _ => 0,
        }
    }
}

/// The numbers of one run against one server.
pub type RunResult = crate::report::RunResult<Metric>;

/// The server under test, as the load generator sees it.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Where it listens (plain `ws://`).
    pub addr: SocketAddr,
    /// Its process, for `/proc`.
    pub pid: u32,
}

/// Runs every enabled phase against `target`.
pub async fn run(target: Target, opts: &TunnelOptions) -> Result<RunResult, BenchError> {
    let mut out = RunResult::default();
    let ids = IdGen::new();
    if opts.tunnels > 0 {
        memory_phase(target, opts, &ids, &mut out).await?;
    }
    if opts.relay_tunnels > 0 && opts.rate > 0 && !opts.duration.is_zero() {
        relay_phase(target, opts, &ids, &mut out).await?;
    }
    if opts.pair_workers > 0 && !opts.pair_duration.is_zero() {
        pairs_phase(target, opts, &ids, &mut out).await?;
    }
    out.metrics
        .insert(Metric::Failures, out.failures.total() as f64);
    Ok(out)
}

/// Tunnels opened and closed before the memory baseline is read.
const WARM_UP: usize = 32;

fn cpu_us(before: Sample, after: Sample) -> f64 {
    ticks_to_duration(after.cpu_ticks.saturating_sub(before.cpu_ticks)).as_secs_f64() * 1e6
}

async fn memory_phase(
    target: Target,
    opts: &TunnelOptions,
    ids: &IdGen,
    out: &mut RunResult,
) -> Result<(), BenchError> {
    tokio::time::sleep(opts.settle).await;
    let cold = sample(target.pid)?;
    let warm = open_many(target, opts, WARM_UP, ids, &mut out.failures).await;
    close_many(warm, opts, &mut out.failures).await;
    tokio::time::sleep(opts.settle).await;
    let idle = sample(target.pid)?;
    let pairs = open_many(target, opts, opts.tunnels, ids, &mut out.failures).await;
    let opened = sample(target.pid)?;
    tokio::time::sleep(opts.settle).await;
    let held = sample(target.pid)?;
    let n = pairs.len();
    close_many(pairs, opts, &mut out.failures).await;
    tokio::time::sleep(opts.after_close).await;
    let after = sample(target.pid)?;
    let m = &mut out.metrics;
    m.insert(Metric::ColdRssKib, cold.rss_kib as f64);
    m.insert(Metric::IdleRssKib, idle.rss_kib as f64);
    m.insert(Metric::TunnelsOpen, n as f64);
    m.insert(Metric::OpenRssKib, held.rss_kib as f64);
    m.insert(Metric::AfterCloseRssKib, after.rss_kib as f64);
    if idle.rss_kib > 0 {
        m.insert(
            Metric::AfterCloseRatio,
            after.rss_kib as f64 / idle.rss_kib as f64,
        );
    }
    if idle.anon_kib > 0 {
        m.insert(
            Metric::AfterCloseAnonRatio,
            after.anon_kib as f64 / idle.anon_kib as f64,
        );
    }
    if n > 0 {
        m.insert(
            Metric::KibPerTunnel,
            (held.rss_kib as f64 - idle.rss_kib as f64) / n as f64,
        );
        m.insert(Metric::CpuPerTunnelUs, cpu_us(idle, opened) / n as f64);
    }
    Ok(())
}

async fn relay_phase(
    target: Target,
    opts: &TunnelOptions,
    ids: &IdGen,
    out: &mut RunResult,
) -> Result<(), BenchError> {
    let pairs = open_many(target, opts, opts.relay_tunnels, ids, &mut out.failures).await;
    if pairs.is_empty() {
        return Ok(());
    }
    tokio::time::sleep(opts.settle.min(Duration::from_secs(1))).await;
    let total = (u128::from(opts.rate) * opts.duration.as_millis() / 1000) as u64;
    let interval_ns = 1_000_000_000 / u64::from(opts.rate.max(1));
    let payload = Bytes::from(vec![0x5a; opts.size]);
    let t = pairs.len() as u64;
    let before = sample(target.pid)?;
    let start = Instant::now() + Duration::from_millis(100);
    let mut tasks = tokio::task::JoinSet::new();
    for (idx, pair) in pairs.into_iter().enumerate() {
        let payload = payload.clone();
        let step = opts.step_timeout;
        tasks.spawn(async move {
            let mut pair = pair;
            let mut lat = Vec::new();
            let mut lag = Vec::new();
            let mut failures = Failures::default();
            let mut k = idx as u64;
            while k < total {
                let at = start + Duration::from_nanos(k.saturating_mul(interval_ns));
                tokio::time::sleep_until(at).await;
                let sent = Instant::now();
                lag.push(micros(sent.saturating_duration_since(at)));
                match tokio::time::timeout(step, pair.round_trip(payload.clone())).await {
                    Ok(Ok(())) => lat.push(micros(sent.elapsed())),
                    Ok(Err(e)) => {
                        failures.add(format!("relay: {e}"));
                        break;
                    }
                    Err(_) => {
                        failures.add("relay: timeout");
                        break;
                    }
                }
                k += t;
            }
            (pair, lat, lag, failures)
        });
    }
    let mut lat = Vec::new();
    let mut lag = Vec::new();
    let mut pairs = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((pair, l, g, f)) = joined {
            pairs.push(pair);
            lat.extend(l);
            lag.extend(g);
            out.failures.merge(&f);
        }
    }
    let window = start.elapsed();
    let after = sample(target.pid)?;
    close_many(pairs, opts, &mut out.failures).await;
    lat.sort_unstable();
    lag.sort_unstable();
    let m = &mut out.metrics;
    for (metric, q) in [
        (Metric::RelayP50Us, 50),
        (Metric::RelayP90Us, 90),
        (Metric::RelayP99Us, 99),
        (Metric::RelayMaxUs, 100),
    ] {
        if let Some(v) = percentile(&lat, q) {
            m.insert(metric, v as f64);
        }
    }
    if let Some(v) = percentile(&lag, 99) {
        m.insert(Metric::SendLagP99Us, v as f64);
    }
    if !lat.is_empty() {
        m.insert(
            Metric::RelayRate,
            lat.len() as f64 / window.as_secs_f64().max(1e-9),
        );
        m.insert(
            Metric::CpuPerRoundTripUs,
            cpu_us(before, after) / lat.len() as f64,
        );
    }
    Ok(())
}

async fn pairs_phase(
    target: Target,
    opts: &TunnelOptions,
    ids: &IdGen,
    out: &mut RunResult,
) -> Result<(), BenchError> {
    let before = sample(target.pid)?;
    let gen_before = sample(std::process::id())?;
    let started = Instant::now();
    let deadline = started + opts.pair_duration;
    // Each thread runs its share of the workers on a runtime of its own: a
    // pair costs the generator more than the server (on loopback the
    // connecting side's `connect` runs the whole three-way handshake, both
    // ends, in its own system call), so one generator thread would bound
    // the rate whatever the server (docs/performance.md).
    let threads = opts.pair_threads.clamp(1, opts.pair_workers.max(1));
    let mut done = Vec::with_capacity(threads);
    for t in 0..threads {
        let workers: Vec<usize> = (t..opts.pair_workers).step_by(threads).collect();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (ids, opts) = (ids.clone(), opts.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("pairs-{t}"))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| rt.block_on(pair_workers(target, &opts, &ids, workers, deadline)));
                let _ = tx.send(result);
            });
        match spawned {
            Ok(_) => done.push(rx),
            Err(e) => out.failures.add(format!("pairs: thread: {:?}", e.kind())),
        }
    }
    let mut times = Vec::new();
    for rx in done {
        match rx.await {
            Ok(Ok((t, f))) => {
                times.extend(t);
                out.failures.merge(&f);
            }
            Ok(Err(e)) => out.failures.add(format!("pairs: runtime: {:?}", e.kind())),
            Err(_) => out.failures.add("pairs: thread failed"),
        }
    }
    let elapsed = started.elapsed();
    let after = sample(target.pid)?;
    let gen_after = sample(std::process::id())?;
    times.sort_unstable();
    let m = &mut out.metrics;
    m.insert(
        Metric::PairsPerSec,
        times.len() as f64 / elapsed.as_secs_f64().max(1e-9),
    );
    if let Some(v) = percentile(&times, 50) {
        m.insert(Metric::PairP50Ms, v as f64 / 1000.0);
    }
    if let Some(v) = percentile(&times, 100) {
        m.insert(Metric::PairMaxMs, v as f64 / 1000.0);
    }
    if !times.is_empty() {
        m.insert(
            Metric::CpuPerPairUs,
            cpu_us(before, after) / times.len() as f64,
        );
        m.insert(
            Metric::GenCpuPerPairUs,
            cpu_us(gen_before, gen_after) / times.len() as f64,
        );
    }
    Ok(())
}

/// The pair workers `workers` (their numbers) of one generator thread,
/// until `deadline`: pair times in µs and failures.
async fn pair_workers(
    target: Target,
    opts: &TunnelOptions,
    ids: &IdGen,
    workers: Vec<usize>,
    deadline: Instant,
) -> (Vec<u64>, Failures) {
    let mut tasks = tokio::task::JoinSet::new();
    for w in workers {
        let ids = ids.clone();
        let opts = opts.clone();
        tasks.spawn(async move {
            let mut times = Vec::new();
            let mut failures = Failures::default();
            let mut n = w;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let id = ids.next();
                match tokio::time::timeout(
                    opts.step_timeout.saturating_mul(3),
                    pair_once(target.addr, id, n, &opts),
                )
                .await
                {
                    Ok(Ok(())) => times.push(micros(t0.elapsed())),
                    Ok(Err(e)) => failures.add(format!("pairs: {e}")),
                    Err(_) => failures.add("pairs: timeout"),
                }
                n = n.wrapping_add(opts.pair_workers);
            }
            (times, failures)
        });
    }
    let mut times = Vec::new();
    let mut failures = Failures::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((t, f)) => {
                times.extend(t);
                failures.merge(&f);
            }
            Err(_) => failures.add("pairs: task failed"),
        }
    }
    (times, failures)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Unique tunnel ids for one run: a per-run salt and a counter.
#[derive(Debug, Clone)]
struct IdGen {
    salt: u64,
    counter: Arc<std::sync::atomic::AtomicU64>,
}

impl IdGen {
    fn new() -> Self {
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(32);
        Self {
            salt,
            counter: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    fn next(&self) -> [u8; 16] {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.salt.to_be_bytes());
        id[8..].copy_from_slice(&n.to_be_bytes());
        id
    }
}

/// Both legs of one tunnel.
struct Pair {
    phone: Ws,
    desktop: Ws,
}

impl Pair {
    /// Desktop sends, phone echoes, desktop receives the same bytes.
    async fn round_trip(&mut self, payload: Bytes) -> Result<(), String> {
        let len = payload.len();
        self.desktop
            .send(Message::Binary(payload))
            .await
            .map_err(|e| format!("desktop send: {}", ws_reason(&e)))?;
        let got = recv_binary(&mut self.phone)
            .await
            .map_err(|e| format!("phone recv: {e}"))?;
        if got.len() != len {
            return Err("phone recv: wrong length".into());
        }
        self.phone
            .send(Message::Binary(got))
            .await
            .map_err(|e| format!("phone send: {}", ws_reason(&e)))?;
        let back = recv_binary(&mut self.desktop)
            .await
            .map_err(|e| format!("desktop recv: {e}"))?;
        if back.len() != len {
            return Err("desktop recv: wrong length".into());
        }
        Ok(())
    }

    /// Phone sends Close and reads to EOF; then the desktop reads to EOF.
    /// One after the other, as two independent peers would: a server that
    /// holds one side's end hostage to the other's shows here.
    async fn close(mut self) {
        let _ = self.phone.close(None).await;
        drain(&mut self.phone).await;
        drain(&mut self.desktop).await;
    }
}

async fn drain(ws: &mut Ws) {
    while let Some(Ok(_)) = ws.next().await {}
}

async fn recv_binary(ws: &mut Ws) -> Result<Bytes, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => return Ok(b),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(f))) => {
                return Err(match f {
                    Some(f) => format!("closed {}", u16::from(f.code)),
                    None => "closed".into(),
                })
            }
            Some(Ok(_)) => return Err("unexpected message type".into()),
            Some(Err(e)) => return Err(ws_reason(&e)),
            None => return Err("eof".into()),
        }
    }
}

/// A short, aggregatable reason for a WebSocket error.
fn ws_reason(e: &WsError) -> String {
    match e {
        WsError::Http(r) => format!("http {}", r.status().as_u16()),
        WsError::Io(e) => format!("io {:?}", e.kind()),
        WsError::ConnectionClosed | WsError::AlreadyClosed => "closed".into(),
        WsError::Protocol(p) => format!("protocol ({p})"),
        other => {
            let mut s = other.to_string();
            s.truncate(60);
            s
        }
    }
}

fn source(sources: u8, n: usize) -> Ipv4Addr {
    let s = sources.max(1);
    let last = 1 + (n % usize::from(s)) as u8;
    Ipv4Addr::new(127, 0, 0, last)
}

/// The desktop leg's source for pair `n`: another address than its phone's.
fn desktop_source(sources: u8, n: usize) -> Ipv4Addr {
    source(sources, n.wrapping_add(usize::from(sources.max(2)) / 2))
}

/// A TCP connection from `src` to `addr`, `TCP_NODELAY` set (both clients).
pub(crate) async fn connect_from(addr: SocketAddr, src: Ipv4Addr) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {:?}", e.kind()))?;
    socket
        .bind(SocketAddr::from((src, 0)))
        .map_err(|e| format!("bind {src}: {:?}", e.kind()))?;
    let tcp = socket
        .connect(addr)
        .await
        .map_err(|e| format!("tcp {:?}", e.kind()))?;
    tcp.set_nodelay(true)
        .map_err(|e| format!("nodelay: {:?}", e.kind()))?;
    Ok(tcp)
}

/// Small client buffers: the generator holds as many sockets as the server.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
}

/// One WebSocket with `fido.cable` from `src` to `addr`; returns it and the
/// routing id header, if any.
async fn open_ws(
    addr: SocketAddr,
    src: Ipv4Addr,
    path: &str,
) -> Result<(Ws, Option<String>), String> {
    let tcp = connect_from(addr, src).await?;
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .map_err(|e| ws_reason(&e))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tokio_tungstenite::tungstenite::http::HeaderValue::from_static(SUBPROTOCOL),
    );
    let (ws, response) =
        tokio_tungstenite::client_async_with_config(request, tcp, Some(client_config()))
            .await
            .map_err(|e| ws_reason(&e))?;
    let routing = response
        .headers()
        .get(HEADER_ROUTING_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((ws, routing))
}

/// Phone `new`, then desktop `connect` with the routing id it was given.
async fn open_pair(addr: SocketAddr, id: [u8; 16], n: usize, sources: u8) -> Result<Pair, String> {
    let id = hex::encode_upper(id);
    let (phone, routing) = open_ws(addr, source(sources, n), &format!("/cable/new/{id}"))
        .await
        .map_err(|e| format!("new: {e}"))?;
    let routing = routing.ok_or_else(|| "new: no routing id".to_owned())?;
    let (desktop, _) = open_ws(
        addr,
        desktop_source(sources, n),
        &format!("/cable/connect/{routing}/{id}"),
    )
    .await
    .map_err(|e| format!("connect: {e}"))?;
    Ok(Pair { phone, desktop })
}

/// A tunnel for holding: opened, then one small message each way.
async fn open_tunnel(
    addr: SocketAddr,
    id: [u8; 16],
    n: usize,
    sources: u8,
) -> Result<Pair, String> {
    let mut pair = open_pair(addr, id, n, sources).await?;
    let m = Bytes::from_static(&[7; 32]);
    pair.phone
        .send(Message::Binary(m.clone()))
        .await
        .map_err(|e| format!("first message: {}", ws_reason(&e)))?;
    recv_binary(&mut pair.desktop)
        .await
        .map_err(|e| format!("first message: {e}"))?;
    pair.round_trip(m)
        .await
        .map_err(|e| format!("first message: {e}"))?;
    Ok(pair)
}

async fn pair_once(
    addr: SocketAddr,
    id: [u8; 16],
    n: usize,
    opts: &TunnelOptions,
) -> Result<(), String> {
    if opts.pair_client == PairClient::Lean {
        return lean_pair_once(addr, id, n, opts).await;
    }
    let pair = tokio::time::timeout(opts.step_timeout, open_pair(addr, id, n, opts.sources))
        .await
        .map_err(|_| "open timeout".to_owned())??;
    tokio::time::timeout(opts.step_timeout, pair.close())
        .await
        .map_err(|_| "close timeout".to_owned())
}

/// [`pair_once`] with the lean client: phone `new`, desktop `connect`,
/// phone sends Close and reads to the end, then the desktop reads to the end.
async fn lean_pair_once(
    addr: SocketAddr,
    id: [u8; 16],
    n: usize,
    opts: &TunnelOptions,
) -> Result<(), String> {
    let id = hex::encode_upper(id);
    let sources = opts.sources;
    let open = async {
        let (phone, routing) =
            crate::lean_ws::open(addr, source(sources, n), &format!("/cable/new/{id}"))
                .await
                .map_err(|e| format!("new: {e}"))?;
        let routing = routing.ok_or_else(|| "new: no routing id".to_owned())?;
        let (desktop, _) = crate::lean_ws::open(
            addr,
            desktop_source(sources, n),
            &format!("/cable/connect/{routing}/{id}"),
        )
        .await
        .map_err(|e| format!("connect: {e}"))?;
        Ok::<_, String>((phone, desktop))
    };
    let (mut phone, mut desktop) = tokio::time::timeout(opts.step_timeout, open)
        .await
        .map_err(|_| "open timeout".to_owned())??;
    tokio::time::timeout(opts.step_timeout, async {
        crate::lean_ws::close(&mut phone)
            .await
            .map_err(|e| format!("phone: {e}"))?;
        crate::lean_ws::read_to_close(&mut desktop)
            .await
            .map_err(|e| format!("desktop: {e}"))
    })
    .await
    .map_err(|_| "close timeout".to_owned())?
}

/// Opens `n` tunnels at most `open_rate` per second and `open_concurrency`
/// at a time; failures are counted, the rest returned.
async fn open_many(
    target: Target,
    opts: &TunnelOptions,
    n: usize,
    ids: &IdGen,
    failures: &mut Failures,
) -> Vec<Pair> {
    let gate = Arc::new(Semaphore::new(opts.open_concurrency.max(1)));
    let interval_ns = 1_000_000_000 / u64::from(opts.open_rate.max(1));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut pairs = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(start + Duration::from_nanos((i as u64) * interval_ns)).await;
        let Ok(permit) = gate.clone().acquire_owned().await else {
            break;
        };
        let id = ids.next();
        let (step, sources) = (opts.step_timeout, opts.sources);
        tasks.spawn(async move {
            let r = tokio::time::timeout(step, open_tunnel(target.addr, id, i, sources)).await;
            drop(permit);
            r.unwrap_or_else(|_| Err("open: timeout".into()))
        });
        // Collect finished ones as we go so the set stays small.
        while let Some(done) = tasks.try_join_next() {
            collect(done, failures, &mut pairs);
        }
    }
    while let Some(done) = tasks.join_next().await {
        collect(done, failures, &mut pairs);
    }
    pairs
}

fn collect(
    done: Result<Result<Pair, String>, tokio::task::JoinError>,
    failures: &mut Failures,
    pairs: &mut Vec<Pair>,
) {
    match done {
        Ok(Ok(p)) => pairs.push(p),
        Ok(Err(e)) => failures.add(e),
        Err(_) => failures.add("open: task failed"),
    }
}

/// Closes every pair (phone sends Close, both read to EOF), many at a time, bounded.
async fn close_many(pairs: Vec<Pair>, opts: &TunnelOptions, failures: &mut Failures) {
    let gate = Arc::new(Semaphore::new(1024));
    let mut tasks = tokio::task::JoinSet::new();
    for pair in pairs {
        let Ok(permit) = gate.clone().acquire_owned().await else {
            break;
        };
        let step = opts.step_timeout;
        tasks.spawn(async move {
            let r = tokio::time::timeout(step, pair.close()).await;
            drop(permit);
            r.is_ok()
        });
    }
    while let Some(done) = tasks.join_next().await {
        if !matches!(done, Ok(true)) {
            failures.add("close: timeout");
        }
    }
}
