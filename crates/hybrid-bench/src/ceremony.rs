//! `hybrid-bench ceremony`: whole hybrid ceremonies against a phone process
//! (`hybridd run`, or another phone given as a command, [`crate::phone`]),
//! driven by our desktop side (`hybrid-initiator`) over a tunnel server in
//! this process, on loopback.
//!
//! A run sets up every phone side by side, each with its own tunnel server,
//! directory and throwaway vault (cheapest KDF: the PIN key derivation is
//! not what is measured), reads their idle memory, runs each one's `warmup`
//! ceremonies, then their `ceremonies` ceremonies in turns of `turn`
//! (makeCredential when even, getAssertion of the passkey registered just
//! before when odd, with an allow list), one ceremony at a time across all
//! phones, each bounded by `timeout`. Each round of turns starts with the
//! next phone. Taking turns puts a change in the host's load on every phone
//! alike: one after the other, two byte-identical phones differed by
//! ±56 µs per ceremony on this project's 2-core VM, in turns of 25 by
//! ±10 µs (docs/performance.md, "Phone: thirteenth round"). Read from
//! `/proc/<pid>`: CPU (`utime + stime`) over the phone's own turns,
//! `VmRSS`/`RssAnon` idle and after, `VmHWM` (peak).
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

use crate::phone::{Phone, Places, Timing, SESSION_LINE};
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
    /// Measured ceremonies a phone runs before the next phone's turn.
    pub turn: usize,
}

impl Default for CeremonyOptions {
    fn default() -> Self {
        CeremonyOptions {
            ceremonies: 200,
            warmup: 2,
            timeout: Duration::from_secs(20),
            settle: Duration::from_secs(1),
            turn: 25,
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

/// One phone of a run and what our desktop checks of it.
#[derive(Debug, Clone)]
pub struct Contender {
    /// Its name and command.
    pub spec: ServerSpec,
    /// What the desktop asks of it and accepts.
    pub checks: PhoneChecks,
}

/// Everything the ceremonies of one phone share.
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

/// One phone with its own tunnel server, directory and vault, started.
struct Stage {
    name: String,
    phone: Phone,
    world: World,
    server: hybrid_tunnel::server::ServerHandle,
    /// Removed when the stage is dropped.
    _dir: tempfile::TempDir,
}

impl Stage {
    async fn set_up(c: &Contender, opts: &CeremonyOptions) -> Result<Stage, BenchError> {
        let io = |what| move |source| BenchError::Io { what, source };
        let dir = tempfile::Builder::new()
            .prefix("hybrid-bench-")
            .tempdir()
            .map_err(io("a temporary directory"))?;
        {
            use std::os::unix::fs::PermissionsExt;
            // The vault refuses a directory others can read.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
                .map_err(io("the temporary directory's mode"))?;
        }
        let server = TunnelServer::bind(ServerConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ..ServerConfig::default()
        })
        .await
        .map_err(|e| BenchError::Options(format!("the tunnel server: {e}")))?
        .spawn();
        let base = server.base_url();
        let places = Places {
            tunnel: base.clone(),
            advert: dir.path().join("advert"),
            socket: dir.path().join("control.sock"),
            vault: dir.path().join("vault.db"),
            pin: dir.path().join("pin"),
            dir: dir.path().join("phone"),
        };
        let prepared = std::fs::create_dir(&places.dir)
            .map_err(io("the phone's directory"))
            .and_then(|()| write_private(&places.pin, PIN).map_err(io("the PIN file")))
            .and_then(|()| {
                Vault::create(&places.vault, PIN, KdfParams::INSECURE_FOR_TESTS)
                    .map(drop)
                    .map_err(|e| BenchError::Options(format!("the throwaway vault: {e}")))
            });
        let phone = match prepared {
            Ok(()) => Phone::start(&c.spec, &places).await,
            Err(e) => Err(e),
        };
        let phone = match phone {
            Ok(p) => p,
            Err(e) => {
                server.shutdown().await;
                return Err(e);
            }
        };
        Ok(Stage {
            name: c.spec.name.clone(),
            phone,
            world: World {
                places,
                resolver: Resolver::fixed(&base),
                client: ClientOptions {
                    connect_timeout: Duration::from_secs(5),
                    ..ClientOptions::default()
                },
                rp: RelyingParty::new(RP_ID, "hybrid-bench").with_attestation(c.checks.attestation),
                timeout: opts.timeout,
                user_verification: c.checks.user_verification,
                registered: Vec::new(),
            },
            server,
            _dir: dir,
        })
    }

    async fn tear_down(self, failed: bool) {
        if failed {
            for l in self.phone.last_lines() {
                eprintln!("[bench]   {}: {l}", self.name);
            }
        }
        self.phone.stop().await;
        self.server.shutdown().await;
    }
}

/// One run: every phone of `contenders` set up side by side (each with its
/// own tunnel server, vault and directory), then their ceremonies in turns
/// of `opts.turn` ceremonies each, one ceremony at a time across all phones,
/// so that a change in the host's load during the run falls on every phone
/// alike. A phone's CPU is counted over its own turns only.
///
/// The phones are set up (and take their first turns) in the order of
/// `contenders` rotated left by `rotation`: give each run of a series the
/// next rotation, so that every phone is set up first, second, … equally
/// often. Where a phone sits in that order matters on a small VM (two
/// byte-identical phones set up second and fourth of four differed by
/// 20 µs per ceremony, lower in 8 of 9 runs; docs/performance.md, "Phone:
/// thirteenth round"). Results are in the order of `contenders`.
pub async fn run(
    contenders: &[Contender],
    opts: &CeremonyOptions,
    rotation: usize,
) -> Result<Vec<RunResult>, BenchError> {
    let n = contenders.len();
    let order: Vec<usize> = (0..n).map(|k| (k + rotation) % n.max(1)).collect();
    let mut stages = Vec::with_capacity(n);
    for c in order.iter().filter_map(|&i| contenders.get(i)) {
        match Stage::set_up(c, opts).await {
            Ok(s) => stages.push(s),
            Err(e) => {
                for s in stages {
                    s.tear_down(false).await;
                }
                return Err(e);
            }
        }
    }
    let result = measure(&mut stages, opts).await;
    let failed = result.is_err();
    for s in stages {
        s.tear_down(failed).await;
    }
    // Back to the order of `contenders`.
    let mut by_contender: Vec<(usize, RunResult)> = order.into_iter().zip(result?).collect();
    by_contender.sort_by_key(|(i, _)| *i);
    Ok(by_contender.into_iter().map(|(_, r)| r).collect())
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

/// What one phone's measured ceremonies gave so far.
#[derive(Default)]
struct Tally {
    /// Ceremonies started (the next one's index).
    started: usize,
    /// Desktop-side times of the successful ones, µs.
    times: Vec<u64>,
    /// CPU ticks over its turns.
    cpu_ticks: u64,
    failures: Failures,
    in_a_row: usize,
    /// Stopped after too many failures in a row.
    gave_up: bool,
}

async fn measure(
    stages: &mut [Stage],
    opts: &CeremonyOptions,
) -> Result<Vec<RunResult>, BenchError> {
    let mut outs: Vec<RunResult> = stages.iter().map(|_| RunResult::default()).collect();
    tokio::time::sleep(opts.settle).await;
    let mut idle = Vec::with_capacity(stages.len());
    for s in stages.iter() {
        idle.push(sample(s.phone.pid)?);
    }
    let mut tallies: Vec<Tally> = stages.iter().map(|_| Tally::default()).collect();
    for ((s, out), tally) in stages.iter_mut().zip(&mut outs).zip(&mut tallies) {
        for i in 0..opts.warmup {
            match one(&mut s.phone, &mut s.world, i).await {
                Ok(t) if i == 0 => {
                    out.metrics
                        .insert(Metric::FirstCeremonyMs, t.as_micros() as f64 / 1000.0);
                }
                Ok(_) => {}
                Err(e) => tally.failures.add(format!("warm-up: {e}")),
            }
        }
        if tally.failures.total() as usize == opts.warmup && opts.warmup > 0 {
            return Err(BenchError::Options(format!(
                "{}: every warm-up ceremony failed: {:?}",
                s.name, tally.failures.0
            )));
        }
        // The warm-up's timing lines, so that none of them is counted below.
        let _ = s
            .phone
            .wait_timings(opts.warmup, Duration::from_millis(500))
            .await;
    }
    let turn = opts.turn.max(1);
    let phones = stages.len();
    let mut round = 0;
    while tallies
        .iter()
        .any(|t| !t.gave_up && t.started < opts.ceremonies)
    {
        // Each round starts with the next phone: what the host did just
        // before a turn (the slow reference phone mostly waits) falls on
        // every phone alike.
        for k in 0..phones {
            let at = (round + k) % phones;
            let (Some(s), Some(tally)) = (stages.get_mut(at), tallies.get_mut(at)) else {
                continue;
            };
            let n = turn.min(opts.ceremonies - tally.started);
            if tally.gave_up || n == 0 {
                continue;
            }
            let before = sample(s.phone.pid)?;
            for _ in 0..n {
                let i = tally.started;
                tally.started += 1;
                match one(&mut s.phone, &mut s.world, i).await {
                    Ok(t) => {
                        tally.in_a_row = 0;
                        tally.times.push(t.as_micros() as u64);
                    }
                    Err(e) => {
                        tally.in_a_row += 1;
                        tally.failures.add(e);
                        if tally.in_a_row >= MAX_FAILURES_IN_A_ROW {
                            tally.failures.add(format!(
                                "gave up after {} failures in a row",
                                tally.in_a_row
                            ));
                            tally.gave_up = true;
                            break;
                        }
                    }
                }
            }
            let after = sample(s.phone.pid)?;
            tally.cpu_ticks += after.cpu_ticks.saturating_sub(before.cpu_ticks);
        }
        round += 1;
    }
    // The last timing lines may still be in the pipes; a phone that writes
    // none gives up quickly.
    let mut timings = Vec::with_capacity(stages.len());
    for (s, tally) in stages.iter_mut().zip(&tallies) {
        timings.push(
            s.phone
                .wait_timings(tally.times.len(), Duration::from_millis(500))
                .await,
        );
    }
    tokio::time::sleep(opts.settle).await;
    for ((((s, out), tally), idle), timings) in stages
        .iter()
        .zip(&mut outs)
        .zip(tallies)
        .zip(idle)
        .zip(timings)
    {
        let after = sample(s.phone.pid)?;
        let Tally {
            mut times,
            cpu_ticks,
            failures,
            ..
        } = tally;
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
            let cpu = ticks_to_duration(cpu_ticks);
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
    }
    Ok(outs)
}

/// Medians and p99s of the phone's own phase times.
fn phases(timings: &[Timing], m: &mut std::collections::BTreeMap<Metric, f64>) {
    // A request's times are in any line with its `command`: the session's
    // line (its first request) or a `request timings` line (a further one).
    let collect = |message: Option<&str>, field: &str, command: Option<i64>| {
        let mut v: Vec<u64> = timings
            .iter()
            .filter(|t| message.is_none_or(|m| t.message == m))
            .filter(|t| command.is_none() || t.get("command") == command)
            .filter_map(|t| t.get(field))
            .filter_map(|x| u64::try_from(x).ok())
            .collect();
        v.sort_unstable();
        v
    };
    let rows = [
        (
            collect(Some(SESSION_LINE), "tunnel_open_us", None),
            Metric::TunnelOpenP50Us,
            Metric::TunnelOpenP99Us,
        ),
        (
            collect(Some(SESSION_LINE), "first_advert_us", None),
            Metric::FirstAdvertP50Us,
            Metric::FirstAdvertP99Us,
        ),
        (
            collect(Some(SESSION_LINE), "handshake_reply_us", None),
            Metric::HandshakeReplyP50Us,
            Metric::HandshakeReplyP99Us,
        ),
        (
            collect(Some(SESSION_LINE), "post_handshake_us", None),
            Metric::PostHandshakeP50Us,
            Metric::PostHandshakeP99Us,
        ),
        (
            collect(None, "ctap_us", Some(CMD_MAKE_CREDENTIAL)),
            Metric::MakeCredentialP50Us,
            Metric::MakeCredentialP99Us,
        ),
        (
            collect(None, "ctap_us", Some(CMD_GET_ASSERTION)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line(message: &str, fields: &[(&str, i64)]) -> Timing {
        Timing {
            message: message.into(),
            fields: fields.iter().map(|(k, v)| ((*k).into(), *v)).collect(),
        }
    }

    #[test]
    fn a_request_counts_from_the_session_line_and_from_its_own() {
        let session = |command, ctap_us| {
            line(
                SESSION_LINE,
                &[
                    ("tunnel_open_us", 100),
                    ("first_advert_us", 120),
                    ("handshake_reply_us", 200),
                    ("post_handshake_us", 210),
                    ("command", command),
                    ("ctap_us", ctap_us),
                    ("user_us", 5),
                ],
            )
        };
        let timings = vec![
            session(CMD_MAKE_CREDENTIAL, 600),
            session(CMD_GET_ASSERTION, 400),
            // A second request of one session, logged before its session line.
            line(
                "request timings",
                &[("command", CMD_GET_ASSERTION), ("ctap_us", 300)],
            ),
            session(CMD_GET_ASSERTION, 500),
            // A session without a request.
            session(-1, -1),
        ];
        let mut m = std::collections::BTreeMap::new();
        phases(&timings, &mut m);
        assert_eq!(m[&Metric::MakeCredentialP50Us], 600.0);
        assert_eq!(m[&Metric::GetAssertionP50Us], 400.0);
        assert_eq!(m[&Metric::GetAssertionP99Us], 500.0);
        assert_eq!(m[&Metric::TunnelOpenP50Us], 100.0);
    }

    #[test]
    fn an_older_phone_with_two_lines_per_session_still_counts() {
        let timings = vec![
            line(SESSION_LINE, &[("tunnel_open_us", 90)]),
            line(
                "request timings",
                &[("command", CMD_MAKE_CREDENTIAL), ("ctap_us", 700)],
            ),
        ];
        let mut m = std::collections::BTreeMap::new();
        phases(&timings, &mut m);
        assert_eq!(m[&Metric::MakeCredentialP50Us], 700.0);
        assert_eq!(m[&Metric::TunnelOpenP50Us], 90.0);
        assert!(!m.contains_key(&Metric::GetAssertionP50Us));
    }
}
