//! `hybrid-bench ceremony`: whole hybrid ceremonies against a phone process
//! (`hybridd run`, or another phone given as a command, [`crate::phone`]),
//! driven by our desktop side (`hybrid-initiator`) over a tunnel server in
//! this process, on loopback.
//!
//! One run per phone: a throwaway vault (cheapest KDF: the PIN key
//! derivation is not what is measured), the phone started, its idle memory
//! read, `warmup` ceremonies, then `ceremonies` ceremonies alternating
//! makeCredential (even) and getAssertion of the passkey registered just
//! before (odd, with an allow list), one at a time, each bounded by
//! `timeout`. Read from `/proc/<pid>`: CPU (`utime + stime`) over the
//! measured ceremonies, `VmRSS`/`RssAnon` idle and after, `VmHWM` (peak).
//! Phase times are the phone's own (`hybridd::timing` log lines, see
//! `hybridd::ceremony::Report::log_timings`), never guessed from outside;
//! the ceremony time seen by the desktop (URI handed over → both sides
//! done) is measured for every phone.

use std::time::Duration;

use hybrid_ctap::types::UserEntity;
use hybrid_initiator::{
    AdvertSource, AttestationPolicy, Desktop, RegisteredCredential, RelyingParty, Resolver,
    UserVerification,
};
use hybrid_qr::RequestType;
use hybrid_tunnel::client::ClientOptions;
use hybrid_tunnel::server::{ServerConfig, TunnelServer};
use hybrid_vault::{KdfParams, Vault};
use rand_core::{OsRng, RngCore};
use tokio::time::Instant;

use crate::phone::{Phone, Places, Timing};
use crate::procfs::{sample, ticks_to_duration};
use crate::server::ServerSpec;
use crate::stats::{percentile, Failures};
use crate::BenchError;

/// The throwaway vault's PIN.
const PIN: &str = "bench-pin-2468";
/// The relying party of every ceremony.
const RP_ID: &str = "bench.hybridd.invalid";
/// Consecutive failed ceremonies after which a run gives up.
const MAX_FAILURES_IN_A_ROW: usize = 5;
/// CTAP command bytes (CTAP 2.2 §6).
const CMD_MAKE_CREDENTIAL: i64 = 0x01;
const CMD_GET_ASSERTION: i64 = 0x02;

/// What to run.
#[derive(Debug, Clone)]
pub struct CeremonyOptions {
    /// Measured ceremonies.
    pub ceremonies: usize,
    /// Ceremonies before the measured ones (not counted).
    pub warmup: usize,
    /// Bound on one ceremony.
    pub timeout: Duration,
    /// Pause before the idle and the after readings.
    pub settle: Duration,
}

impl Default for CeremonyOptions {
    fn default() -> Self {
        CeremonyOptions {
            ceremonies: 200,
            warmup: 2,
            timeout: Duration::from_secs(20),
            settle: Duration::from_secs(1),
        }
    }
}

/// What our desktop asks of one phone and accepts from it, beyond what it
/// always checks (rpIdHash, UP, the attestation signature, the assertion
/// signature and the counter). The default is what Chrome asks of a phone
/// and what hybridd answers: UV required, self attestation only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhoneChecks {
    /// `uv` in the requests and the UV flag in the answers.
    pub user_verification: UserVerification,
    /// `packed` attestation statements accepted.
    pub attestation: AttestationPolicy,
}

/// One row of the ceremony table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// Ceremonies that succeeded (of the measured ones).
    Completed,
    /// Ceremony seen by the desktop, median, ms.
    CeremonyP50Ms,
    /// Ceremony seen by the desktop, p99, ms.
    CeremonyP99Ms,
    /// The first warm-up ceremony after the phone started, seen by the
    /// desktop, ms: what the first user after a start waits (one-time
    /// initialisation shows here and nowhere else).
    FirstCeremonyMs,
    /// Phone CPU per ceremony, µs.
    CpuPerCeremonyUs,
    /// `VmRSS` idle (before the first ceremony), KiB.
    IdleRssKib,
    /// `RssAnon` idle, KiB.
    IdleAnonKib,
    /// `VmHWM` at the end, KiB.
    PeakRssKib,
    /// `VmRSS` after the ceremonies, KiB.
    AfterRssKib,
    /// `RssAnon` after the ceremonies, KiB.
    AfterAnonKib,
    /// Scan accepted → tunnel open, median µs (phone's own).
    TunnelOpenP50Us,
    /// … p99.
    TunnelOpenP99Us,
    /// Scan accepted → first advert, median µs.
    FirstAdvertP50Us,
    /// … p99.
    FirstAdvertP99Us,
    /// Desktop's handshake message received → reply sent, median µs.
    HandshakeReplyP50Us,
    /// … p99.
    HandshakeReplyP99Us,
    /// Desktop's handshake message received → post-handshake sent, median µs.
    PostHandshakeP50Us,
    /// … p99.
    PostHandshakeP99Us,
    /// makeCredential received → response sent, person excluded, median µs.
    MakeCredentialP50Us,
    /// … p99.
    MakeCredentialP99Us,
    /// getAssertion received → response sent, person excluded, median µs.
    GetAssertionP50Us,
    /// … p99.
    GetAssertionP99Us,
    /// Failed ceremonies.
    Failures,
}

impl crate::report::Metric for Metric {
    const ALL: &'static [Metric] = &[
        Metric::Completed,
        Metric::CeremonyP50Ms,
        Metric::CeremonyP99Ms,
        Metric::FirstCeremonyMs,
        Metric::CpuPerCeremonyUs,
        Metric::IdleRssKib,
        Metric::IdleAnonKib,
        Metric::PeakRssKib,
        Metric::AfterRssKib,
        Metric::AfterAnonKib,
        Metric::TunnelOpenP50Us,
        Metric::TunnelOpenP99Us,
        Metric::FirstAdvertP50Us,
        Metric::FirstAdvertP99Us,
        Metric::HandshakeReplyP50Us,
        Metric::HandshakeReplyP99Us,
        Metric::PostHandshakeP50Us,
        Metric::PostHandshakeP99Us,
        Metric::MakeCredentialP50Us,
        Metric::MakeCredentialP99Us,
        Metric::GetAssertionP50Us,
        Metric::GetAssertionP99Us,
        Metric::Failures,
    ];

    fn label(self) -> &'static str {
        match self {
            Metric::Completed => "ceremonies completed",
            Metric::CeremonyP50Ms => "ceremony seen by the desktop p50 (ms)",
            Metric::CeremonyP99Ms => "ceremony seen by the desktop p99 (ms)",
            Metric::FirstCeremonyMs => "first ceremony after start, seen by the desktop (ms)",
            Metric::CpuPerCeremonyUs => "phone CPU per ceremony (µs)",
            Metric::IdleRssKib => "phone RSS idle (KiB)",
            Metric::IdleAnonKib => "phone RssAnon idle (KiB)",
            Metric::PeakRssKib => "phone RSS peak, VmHWM (KiB)",
            Metric::AfterRssKib => "phone RSS after (KiB)",
            Metric::AfterAnonKib => "phone RssAnon after (KiB)",
            Metric::TunnelOpenP50Us => "scan accepted → tunnel open p50 (µs)",
            Metric::TunnelOpenP99Us => "scan accepted → tunnel open p99 (µs)",
            Metric::FirstAdvertP50Us => "scan accepted → first advert p50 (µs)",
            Metric::FirstAdvertP99Us => "scan accepted → first advert p99 (µs)",
            Metric::HandshakeReplyP50Us => "handshake msg received → reply sent p50 (µs)",
            Metric::HandshakeReplyP99Us => "handshake msg received → reply sent p99 (µs)",
            Metric::PostHandshakeP50Us => "handshake msg received → post-handshake sent p50 (µs)",
            Metric::PostHandshakeP99Us => "handshake msg received → post-handshake sent p99 (µs)",
            Metric::MakeCredentialP50Us => "makeCredential received → sent p50 (µs)",
            Metric::MakeCredentialP99Us => "makeCredential received → sent p99 (µs)",
            Metric::GetAssertionP50Us => "getAssertion received → sent p50 (µs)",
            Metric::GetAssertionP99Us => "getAssertion received → sent p99 (µs)",
            Metric::Failures => "failed ceremonies",
        }
    }

    fn decimals(self) -> usize {
        match self {
            Metric::CeremonyP50Ms | Metric::CeremonyP99Ms | Metric::FirstCeremonyMs => 2,
            _ => 0,
        }
    }
}

/// The numbers of one run against one phone.
pub type RunResult = crate::report::RunResult<Metric>;

/// Everything the ceremonies of one run share.
struct World {
    places: Places,
    resolver: Resolver,
    client: ClientOptions,
    rp: RelyingParty,
    timeout: Duration,
    user_verification: UserVerification,
    /// Passkeys registered so far (the sign-ins use the last).
    registered: Vec<RegisteredCredential>,
}

/// Runs the ceremonies against the phone `spec`, checking its answers as
/// `checks` says.
pub async fn run(
    spec: &ServerSpec,
    opts: &CeremonyOptions,
    checks: PhoneChecks,
) -> Result<RunResult, BenchError> {
    let io = |what| move |source| BenchError::Io { what, source };
    let dir = tempfile::Builder::new()
        .prefix("hybrid-bench-")
        .tempdir()
        .map_err(io("a temporary directory"))?;
    let server = TunnelServer::bind(ServerConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ServerConfig::default()
    })
    .await
    .map_err(|e| BenchError::Options(format!("the tunnel server: {e}")))?
    .spawn();
    let base = server.base_url();
    {
        use std::os::unix::fs::PermissionsExt;
        // The vault refuses a directory others can read.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(io("the temporary directory's mode"))?;
    }
    let places = Places {
        tunnel: base.clone(),
        advert: dir.path().join("advert"),
        socket: dir.path().join("control.sock"),
        vault: dir.path().join("vault.db"),
        pin: dir.path().join("pin"),
        dir: dir.path().join("phone"),
    };
    std::fs::create_dir(&places.dir).map_err(io("the phone's directory"))?;
    write_private(&places.pin, PIN).map_err(io("the PIN file"))?;
    Vault::create(&places.vault, PIN, KdfParams::INSECURE_FOR_TESTS)
        .map_err(|e| BenchError::Options(format!("the throwaway vault: {e}")))?;
    let mut world = World {
        places,
        resolver: Resolver::fixed(&base),
        client: ClientOptions {
            connect_timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        },
        rp: RelyingParty::new(RP_ID, "hybrid-bench").with_attestation(checks.attestation),
        timeout: opts.timeout,
        user_verification: checks.user_verification,
        registered: Vec::new(),
    };
    let mut phone = Phone::start(spec, &world.places).await?;
    let result = measure(&mut phone, &mut world, opts).await;
    if result.is_err() {
        for l in phone.last_lines() {
            eprintln!("[bench]   {}: {l}", spec.name);
        }
    }
    phone.stop().await;
    server.shutdown().await;
    result
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

async fn measure(
    phone: &mut Phone,
    world: &mut World,
    opts: &CeremonyOptions,
) -> Result<RunResult, BenchError> {
    let mut out = RunResult::default();
    tokio::time::sleep(opts.settle).await;
    let idle = sample(phone.pid)?;
    let mut failures = Failures::default();
    let mut in_a_row = 0;
    for i in 0..opts.warmup {
        match one(phone, world, i).await {
            Ok(t) if i == 0 => {
                out.metrics
                    .insert(Metric::FirstCeremonyMs, t.as_micros() as f64 / 1000.0);
            }
            Ok(_) => {}
            Err(e) => failures.add(format!("warm-up: {e}")),
        }
    }
    if failures.total() as usize == opts.warmup && opts.warmup > 0 {
        out.failures = failures;
        return Err(BenchError::Options(format!(
            "every warm-up ceremony failed: {:?}",
            out.failures.0
        )));
    }
    // The warm-up's timing lines (one ceremony line and one request line
    // each), so that none of them is counted below.
    let _ = phone
        .wait_timings(0, 2 * opts.warmup, Duration::from_millis(500))
        .await;
    let before = sample(phone.pid)?;
    let mut times = Vec::new();
    for i in 0..opts.ceremonies {
        match one(phone, world, i).await {
            Ok(t) => {
                in_a_row = 0;
                times.push(t.as_micros() as u64);
            }
            Err(e) => {
                in_a_row += 1;
                failures.add(e);
                if in_a_row >= MAX_FAILURES_IN_A_ROW {
                    failures.add(format!("gave up after {in_a_row} failures in a row"));
                    break;
                }
            }
        }
    }
    let cpu_after = sample(phone.pid)?;
    // The last timing lines may still be in the pipe; a phone that writes
    // none gives up quickly.
    let expect = 2 * times.len();
    let timings = phone
        .wait_timings(0, expect, Duration::from_millis(500))
        .await;
    tokio::time::sleep(opts.settle).await;
    let after = sample(phone.pid)?;

    let m = &mut out.metrics;
    m.insert(Metric::Completed, times.len() as f64);
    times.sort_unstable();
    let ms = |v: Option<u64>| v.map(|us| us as f64 / 1000.0);
    if let Some(v) = ms(percentile(&times, 50)) {
        m.insert(Metric::CeremonyP50Ms, v);
    }
    if let Some(v) = ms(percentile(&times, 99)) {
        m.insert(Metric::CeremonyP99Ms, v);
    }
    if !times.is_empty() {
        let cpu = ticks_to_duration(cpu_after.cpu_ticks.saturating_sub(before.cpu_ticks));
        m.insert(
            Metric::CpuPerCeremonyUs,
            cpu.as_micros() as f64 / times.len() as f64,
        );
    }
    m.insert(Metric::IdleRssKib, idle.rss_kib as f64);
    m.insert(Metric::IdleAnonKib, idle.anon_kib as f64);
    m.insert(Metric::PeakRssKib, after.hwm_kib as f64);
    m.insert(Metric::AfterRssKib, after.rss_kib as f64);
    m.insert(Metric::AfterAnonKib, after.anon_kib as f64);
    phases(&timings, m);
    m.insert(Metric::Failures, failures.total() as f64);
    out.failures = failures;
    Ok(out)
}

/// Medians and p99s of the phone's own phase times.
fn phases(timings: &[Timing], m: &mut std::collections::BTreeMap<Metric, f64>) {
    let collect = |message: &str, field: &str, command: Option<i64>| {
        let mut v: Vec<u64> = timings
            .iter()
            .filter(|t| t.message == message)
            .filter(|t| command.is_none() || t.get("command") == command)
            .filter_map(|t| t.get(field))
            .filter_map(|x| u64::try_from(x).ok())
            .collect();
        v.sort_unstable();
        v
    };
    let rows = [
        (
            collect("ceremony timings", "tunnel_open_us", None),
            Metric::TunnelOpenP50Us,
            Metric::TunnelOpenP99Us,
        ),
        (
            collect("ceremony timings", "first_advert_us", None),
            Metric::FirstAdvertP50Us,
            Metric::FirstAdvertP99Us,
        ),
        (
            collect("ceremony timings", "handshake_reply_us", None),
            Metric::HandshakeReplyP50Us,
            Metric::HandshakeReplyP99Us,
        ),
        (
            collect("ceremony timings", "post_handshake_us", None),
            Metric::PostHandshakeP50Us,
            Metric::PostHandshakeP99Us,
        ),
        (
            collect("request timings", "ctap_us", Some(CMD_MAKE_CREDENTIAL)),
            Metric::MakeCredentialP50Us,
            Metric::MakeCredentialP99Us,
        ),
        (
            collect("request timings", "ctap_us", Some(CMD_GET_ASSERTION)),
            Metric::GetAssertionP50Us,
            Metric::GetAssertionP99Us,
        ),
    ];
    for (values, p50, p99) in rows {
        if let (Some(a), Some(b)) = (percentile(&values, 50), percentile(&values, 99)) {
            m.insert(p50, a as f64);
            m.insert(p99, b as f64);
        }
    }
}

/// Ceremony `i`: makeCredential when even, getAssertion of the last
/// registered passkey when odd. Returns the time the desktop saw.
async fn one(phone: &mut Phone, world: &mut World, i: usize) -> Result<Duration, String> {
    let register = i % 2 == 0 || world.registered.is_empty();
    let kind = if register {
        RequestType::MakeCredential
    } else {
        RequestType::GetAssertion
    };
    let desktop = Desktop::new(&mut OsRng)
        .map_err(|e| format!("desktop: {e}"))?
        .with_request_type(kind);
    let uri = desktop.qr_uri();
    let mut cdh = [0u8; 32];
    OsRng.fill_bytes(&mut cdh);
    let started = Instant::now();
    let World {
        places,
        resolver,
        client,
        rp,
        timeout,
        user_verification,
        registered,
    } = world;
    let desktop_side = async {
        let mut source = AdvertSource::file(&places.advert);
        let mut ch = desktop
            .establish(&mut source, *timeout, resolver, client, &mut OsRng)
            .await
            .map_err(|e| format!("desktop: {e}"))?;
        ch.set_user_verification(*user_verification);
        if register {
            let user = UserEntity {
                id: format!("user-{i}").into_bytes(),
                name: Some(format!("bench{i}@{RP_ID}")),
                display_name: Some(format!("Bench user {i}")),
            };
            let (cred, _) = ch
                .register(rp, cdh, user, false)
                .await
                .map_err(|e| format!("makeCredential: {e}"))?;
            registered.push(cred);
        } else {
            let allow: Vec<Vec<u8>> = registered
                .last()
                .map(|c| c.id.clone())
                .into_iter()
                .collect();
            let n = registered.len();
            let last = registered
                .get_mut(n.saturating_sub(1)..)
                .ok_or("no passkey registered")?;
            ch.authenticate(rp, last, cdh, &allow)
                .await
                .map_err(|e| format!("getAssertion: {e}"))?;
        }
        ch.shutdown().await.map_err(|e| format!("shutdown: {e}"))?;
        Ok::<(), String>(())
    };
    // The first failure ends both sides (a dropped control connection
    // cancels hybridd's session).
    let both = async { tokio::try_join!(phone.ceremony(uri), desktop_side) };
    match tokio::time::timeout(*timeout, both).await {
        Ok(Ok(((), ()))) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no end within {timeout:?}")),
    }
}
