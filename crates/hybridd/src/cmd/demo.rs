//! `hybridd demo`: the whole hybrid transaction in one process on loopback
//! (`docs/demo.md`): a tunnel server on 127.0.0.1, the phone (the same
//! session driver `hybridd run` uses) with a file radio and a throwaway
//! vault, and the desktop from `hybrid-initiator`. Registers a passkey
//! (makeCredential, discoverable, UV), signs in with it in a second session
//! with a new QR (getAssertion, empty allowList), verifies both as a
//! relying party and prints a per-phase timing table.
//!
//! Approval is automatic (the demo's vault PIN is fixed and known): this is
//! a demonstration, never a configuration for real use. Nothing leaves
//! 127.0.0.1 and the vault is deleted at exit.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use hybrid_ctap::types::UserEntity;
use hybrid_ctap::{
    Approval, ApprovalRequest, Authenticator, Clock, Env, RegisteredCredential, RelyingParty,
    UserError, UserInterface,
};
use hybrid_initiator::{AdvertSource, Desktop, Resolver, Timeline};
use hybrid_qr::RequestType;
use hybrid_tunnel::client::ClientOptions;
use hybrid_tunnel::server::{ServerConfig, ServerHandle, TunnelServer};
use hybrid_tunnel::TunnelBase;
use hybrid_vault::{KdfParams, Vault};
use rand_core::OsRng;
use tokio::sync::mpsc;

use crate::phone::{run_phone_session, PhoneOptions, SessionEvent};

/// The demo vault's PIN. Public on purpose: the vault is thrown away.
const DEMO_PIN: &str = "demo-pin-1234";
/// The demo relying party.
const RP_ID: &str = "demo.hybridd.invalid";

/// Arguments of `hybridd demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many register + sign-in rounds to run (each round: two sessions,
    /// each with a new QR code).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rounds: u32,
    /// Use Argon2's minimum cost for the throwaway vault instead of the
    /// default (m = 64 MiB, t = 3): faster start, no protection.
    #[arg(long)]
    pub fast_kdf: bool,
    /// Print the registration QR code in the terminal.
    #[arg(long)]
    pub show_qr: bool,
}

/// Runs `hybridd demo`: exit 0 when every ceremony verified, 1 otherwise.
pub fn run(args: Args) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hybridd demo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(demo(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hybridd demo: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A wall and monotonic clock.
#[derive(Debug)]
struct SystemClock(Instant);

impl Clock for SystemClock {
    fn monotonic_ms(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
    fn unix_secs(&self) -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// Approves everything, verified: the demo vault is unlocked with its
/// fixed PIN, which stands for user verification. Demo only.
#[derive(Debug, Default)]
struct AutoApprove {
    shown: Vec<String>,
}

impl UserInterface for AutoApprove {
    fn approve(&mut self, request: &ApprovalRequest) -> Result<Approval, UserError> {
        self.shown
            .push(format!("{:?} for {}", request.command, request.rp_id));
        Ok(Approval {
            user_present: true,
            user_verified: true,
        })
    }
}

/// The demo's authenticator environment: the vault as store.
struct DemoEnv {
    vault: Vault,
    user: AutoApprove,
    clock: SystemClock,
    rng: OsRng,
}

impl Env for DemoEnv {
    type Store = Vault;
    type User = AutoApprove;
    type Clock = SystemClock;
    type Rng = OsRng;
    fn store(&mut self) -> &mut Vault {
        &mut self.vault
    }
    fn user(&mut self) -> &mut AutoApprove {
        &mut self.user
    }
    fn clock(&self) -> &SystemClock {
        &self.clock
    }
    fn rng(&mut self) -> &mut OsRng {
        &mut self.rng
    }
}

/// What one session measured, in the order of hybrid-protocol.md §0.
#[derive(Debug, Clone, Copy, Default)]
struct SessionTimes {
    /// Phone: URI parsed and freshness-checked.
    qr_parsed: Duration,
    /// Phone: `/cable/new/` opened, routing ID known.
    tunnel_open: Duration,
    /// Phone: advert published on the (file) radio.
    advert_out: Duration,
    /// Desktop: advert seen → `/cable/connect/` open → msg2 verified.
    handshake: Duration,
    /// Desktop: post-handshake message decrypted, getInfo parsed.
    get_info: Duration,
    /// Desktop: the CTAP command's round trip, approval included.
    command: Duration,
    /// Whole session, from the QR URI handed to the phone until the phone's
    /// session ended.
    total: Duration,
}

/// Everything the rounds share.
struct World {
    server: ServerHandle,
    _dir: tempfile::TempDir,
    advert_file: PathBuf,
    resolver: Resolver,
    phone: PhoneOptions,
    client: ClientOptions,
}

async fn demo(args: &Args) -> Result<(), String> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("hybridd-demo-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let server = TunnelServer::bind(ServerConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ServerConfig::default()
    })
    .await
    .map_err(|e| format!("cannot start the loopback tunnel server: {e}"))?
    .spawn();
    let base = server.base_url();
    println!("hybridd demo: everything on loopback, in one process");
    println!("  tunnel server   {base}");
    let advert_file = dir.path().join("advert");
    println!("  file radio      {}", advert_file.display());

    let (params, kdf_note) = if args.fast_kdf {
        (
            KdfParams::INSECURE_FOR_TESTS,
            "Argon2id minimum cost (--fast-kdf; no protection)",
        )
    } else {
        (KdfParams::DEFAULT, "Argon2id m=64 MiB, t=3")
    };
    let t = Instant::now();
    let vault_path = dir.path().join("vault").join("vault.db");
    let vault = Vault::create(&vault_path, DEMO_PIN, params)
        .map_err(|e| format!("cannot create the demo vault: {e}"))?;
    println!(
        "  vault           {} ({kdf_note}; created and unlocked in {} ms)",
        vault_path.display(),
        t.elapsed().as_millis()
    );
    println!("  approval        automatic (demo only: the vault PIN is fixed)");
    let tunnel = TunnelBase::url(&base, 0).map_err(|e| e.to_string())?;
    let world = World {
        resolver: Resolver::fixed(&base),
        phone: phone_options(tunnel),
        client: ClientOptions {
            connect_timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        },
        advert_file,
        server,
        _dir: dir,
    };
    let mut auth = Authenticator::new(
        hybrid_ctap::Config::default(),
        DemoEnv {
            vault,
            user: AutoApprove::default(),
            clock: SystemClock(Instant::now()),
            rng: OsRng,
        },
    );
    let rp = RelyingParty::new(RP_ID, "hybridd demo");
    let mut registered = Vec::new();
    let mut rows = Vec::new();
    for round in 1..=args.rounds {
        let user = UserEntity {
            id: format!("user-{round}").into_bytes(),
            name: Some(format!("demo{round}@{RP_ID}")),
            display_name: Some(format!("Demo user {round}")),
        };
        let (reg, a) = register(&world, auth, &rp, user, args.show_qr && round == 1).await?;
        auth = a;
        registered.push(reg.0);
        let (sign, a) = sign_in(&world, auth, &rp, &mut registered).await?;
        auth = a;
        if args.rounds == 1 || round == 1 {
            println!(
                "round {round}: registered credential {}… (counter {}), signed in as {:?} (counter {})",
                hex::encode(registered.last().and_then(|c| c.id.get(..8)).unwrap_or(&[])),
                reg.1,
                sign.1,
                registered.last().map(|c| c.sign_count).unwrap_or(0),
            );
        }
        rows.push((reg.2, sign.2));
    }
    let stored = auth.env_mut().vault.count().map_err(|e| e.to_string())?;
    if stored != u64::from(args.rounds) {
        return Err(format!(
            "the vault holds {stored} credentials, expected {}",
            args.rounds
        ));
    }
    print_table(&rows);
    world.server.shutdown().await;
    println!(
        "ok: {} passkey(s) registered and used, every response verified as a relying party ({} ms in all)",
        args.rounds,
        started.elapsed().as_millis()
    );
    Ok(())
}

type DemoAuth = Authenticator<DemoEnv>;

/// One session: the phone gets the desktop's QR URI, the desktop waits for
/// the advert in the radio file, connects, handshakes and runs `action`.
async fn one_session<T, F, Fut>(
    world: &World,
    auth: DemoAuth,
    desktop: &Desktop,
    action: F,
) -> Result<(T, SessionTimes, DemoAuth), String>
where
    F: FnOnce(hybrid_initiator::Channel) -> Fut,
    Fut: std::future::Future<
        Output = Result<(T, hybrid_initiator::Channel), hybrid_initiator::Error>,
    >,
{
    let uri = desktop.qr_uri();
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    let t0 = Instant::now();
    let path = world.advert_file.clone();
    let phone = async move {
        let mut radio = hybrid_ble::FileRadio::to_file(&path);
        run_phone_session(
            &uri,
            &world.phone,
            &mut radio,
            auth,
            Some(events_tx),
            Some(cancel_rx),
        )
        .await
    };
    let desk = async {
        let mut source = AdvertSource::file(&world.advert_file);
        let r = async {
            let channel = desktop
                .establish(
                    &mut source,
                    Duration::from_secs(10),
                    &world.resolver,
                    &world.client,
                    &mut OsRng,
                )
                .await?;
            let (value, channel) = action(channel).await?;
            let (timeline, _closed) = channel.shutdown().await?;
            Ok::<_, hybrid_initiator::Error>((value, timeline))
        }
        .await;
        if r.is_err() {
            let _ = cancel_tx.send(true);
        }
        r
    };
    let ((report, auth), desk) = tokio::join!(phone, desk);
    let total = t0.elapsed();
    let (value, timeline) =
        desk.map_err(|e| format!("desktop: {e} (phone: {})", report.outcome))?;
    if !report.outcome.is_completed() {
        return Err(format!("phone: {}", report.outcome));
    }
    let mut times = SessionTimes {
        total,
        ..SessionTimes::default()
    };
    let mut last = t0;
    while let Ok(ev) = events_rx.try_recv() {
        match ev {
            SessionEvent::QrAccepted { at, .. } => {
                times.qr_parsed = at.saturating_duration_since(last);
                last = at;
            }
            SessionEvent::TunnelOpen { at, .. } => {
                times.tunnel_open = at.saturating_duration_since(last);
                last = at;
            }
            SessionEvent::AdvertStarted { at, .. } => {
                times.advert_out = at.saturating_duration_since(last);
                last = at;
            }
            _ => {}
        }
    }
    fill_desktop_times(&mut times, &timeline);
    Ok((value, times, auth))
}

fn fill_desktop_times(times: &mut SessionTimes, timeline: &Timeline) {
    let get = |n: &str| timeline.get(n).unwrap_or_default();
    times.handshake = get("tunnel") + get("handshake");
    times.get_info = get("getInfo");
    times.command = get("makeCredential") + get("getAssertion");
}

/// Session 1: makeCredential (discoverable, UV) with a fresh QR (hint "mc").
async fn register(
    world: &World,
    auth: DemoAuth,
    rp: &RelyingParty,
    user: UserEntity,
    show_qr: bool,
) -> Result<((RegisteredCredential, u32, SessionTimes), DemoAuth), String> {
    let desktop = Desktop::new(&mut OsRng)
        .map_err(|e| e.to_string())?
        .with_request_type(RequestType::MakeCredential);
    if show_qr {
        println!("{}", desktop.qr_terminal().map_err(|e| e.to_string())?);
    }
    let cdh = client_data_hash();
    let ((cred, _resp), times, auth) = one_session(world, auth, &desktop, |mut ch| async move {
        let r = ch.register(rp, cdh, user, true).await?;
        Ok((r, ch))
    })
    .await
    .map_err(|e| format!("registration: {e}"))?;
    let count = cred.sign_count;
    Ok(((cred, count, times), auth))
}

/// Session 2: a new QR (hint "ga"), getAssertion with an empty allowList.
async fn sign_in(
    world: &World,
    auth: DemoAuth,
    rp: &RelyingParty,
    registered: &mut [RegisteredCredential],
) -> Result<((usize, String, SessionTimes), DemoAuth), String> {
    let desktop = Desktop::new(&mut OsRng)
        .map_err(|e| e.to_string())?
        .with_request_type(RequestType::GetAssertion);
    let cdh = client_data_hash();
    let ((index, user), times, auth) = one_session(world, auth, &desktop, |mut ch| async move {
        let (i, resp) = ch.authenticate(rp, registered, cdh, &[]).await?;
        let name = resp.user.and_then(|u| u.name).unwrap_or_default();
        Ok(((i, name), ch))
    })
    .await
    .map_err(|e| format!("sign-in: {e}"))?;
    Ok(((index, user, times), auth))
}

/// A fresh random clientDataHash: the demo has no browser building
/// clientDataJSON, and the authenticator only signs over the hash.
fn client_data_hash() -> [u8; 32] {
    use rand_core::RngCore;
    let mut h = [0u8; 32];
    OsRng.fill_bytes(&mut h);
    h
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Reads one phase out of a session's times.
type Column = fn(&SessionTimes) -> Duration;

fn print_table(rows: &[(SessionTimes, SessionTimes)]) {
    let phases: [(&str, Column); 7] = [
        ("QR parsed", |t| t.qr_parsed),
        ("tunnel open", |t| t.tunnel_open),
        ("advert out", |t| t.advert_out),
        ("handshake", |t| t.handshake),
        ("getInfo", |t| t.get_info),
        ("command", |t| t.command),
        ("session total", |t| t.total),
    ];
    println!();
    if rows.len() == 1 {
        println!(
            "{:<16} {:>16} {:>16}",
            "phase (ms)", "makeCredential", "getAssertion"
        );
        for (name, f) in phases {
            if let Some((r, s)) = rows.first() {
                println!("{:<16} {:>16} {:>16}", name, ms(f(r)), ms(f(s)));
            }
        }
    } else {
        println!(
            "{:<16} {:>10} {:>10} {:>10} {:>10}   ({} rounds)",
            "phase (ms)",
            "mc median",
            "mc max",
            "ga median",
            "ga max",
            rows.len()
        );
        for (name, f) in phases {
            let (mut a, mut b): (Vec<Duration>, Vec<Duration>) =
                rows.iter().map(|(r, s)| (f(r), f(s))).unzip();
            a.sort();
            b.sort();
            let med = |v: &[Duration]| v.get(v.len() / 2).copied().unwrap_or_default();
            let max = |v: &[Duration]| v.last().copied().unwrap_or_default();
            println!(
                "{:<16} {:>10} {:>10} {:>10} {:>10}",
                name,
                ms(med(&a)),
                ms(max(&a)),
                ms(med(&b)),
                ms(max(&b))
            );
        }
    }
    println!();
}

fn phone_options(tunnel: TunnelBase) -> PhoneOptions {
    let mut session = hybrid_session::SessionConfig::new(tunnel, Vec::new());
    session.wait_for_desktop = Duration::from_secs(10);
    session.command_timeout = Duration::from_secs(30);
    session.shutdown_grace = Duration::from_secs(2);
    PhoneOptions {
        session,
        client: ClientOptions {
            connect_timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        },
        freshness: hybrid_qr::Freshness::default(),
    }
}
