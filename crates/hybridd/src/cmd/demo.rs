//! `hybridd demo`: the whole hybrid transaction in one process on loopback
//! (`docs/demo.md`): a tunnel server on 127.0.0.1, the phone (the same
//! session driver `hybridd run` uses) with a file radio and a throwaway
//! vault, and the desktop from `hybrid-initiator`. Registers a passkey
//! (makeCredential, discoverable, UV), signs in with it in a second session
//! with a new QR (getAssertion, empty allowList), verifies both as a
//! relying party and prints a per-phase timing table.
//!
//! Approval is automatic (the demo's vault PIN is fixed and known): this is
//! a demonstration, never a configuration for real use. Otherwise the phone
//! is the daemon's: the vault worker as authenticator, the PIN unlocking
//! the vault as user verification. Nothing leaves 127.0.0.1 and the vault
//! is deleted at exit.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hybrid_ctap::types::UserEntity;
use hybrid_initiator::{
    AdvertSource, Desktop, RegisteredCredential, RelyingParty, Resolver, Timeline,
};
use hybrid_qr::RequestType;
use hybrid_tunnel::client::ClientOptions;
use hybrid_tunnel::server::{ServerConfig, ServerHandle, TunnelServer};
use hybrid_tunnel::TunnelBase;
use hybrid_vault::{KdfParams, Vault};
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::approval::{Approvals, AutoApprover};
use crate::ceremony::{Ceremony, CeremonyOptions, Report};
use crate::error::{DemoError, Error};
use crate::replay::ReplaySet;
use crate::vault::VaultWorker;

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
    let result = crate::cmd::runtime().and_then(|rt| rt.block_on(demo(&args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hybridd demo: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The phone: the daemon's vault worker (authenticator and PIN check) and
/// automatic approval with the demo PIN (user verification = the vault
/// unlocking with it, as in the daemon).
struct Phone {
    authenticator: VaultWorker,
    user: Approvals<VaultWorker>,
    replay: ReplaySet,
}

/// One session's measurements: the phone's report (its phase times) and
/// the desktop's timeline (what the desktop saw: tunnel, handshake,
/// getInfo, the command's round trip), and the whole session's time.
struct Row {
    phone: Report,
    desktop: Timeline,
    total: Duration,
}

/// Everything the rounds share.
struct World {
    server: ServerHandle,
    _dir: tempfile::TempDir,
    advert_file: PathBuf,
    resolver: Resolver,
    phone: CeremonyOptions,
    client: ClientOptions,
}

async fn demo(args: &Args) -> Result<(), Error> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("hybridd-demo-")
        .tempdir()
        .map_err(DemoError::TempDir)?;
    let server = TunnelServer::bind(ServerConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ServerConfig::default()
    })
    .await?
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
    let vault = Vault::create(&vault_path, DEMO_PIN, params)?;
    println!(
        "  vault           {} ({kdf_note}; created and unlocked in {} ms)",
        vault_path.display(),
        t.elapsed().as_millis()
    );
    println!("  approval        automatic (demo only: the vault PIN is fixed)");
    let tunnel = TunnelBase::url(&base, 0)?;
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
    let worker = VaultWorker::spawn(vault, hybrid_ctap::DEFAULT_AAGUID)?;
    let auto = AutoApprover::new(Zeroizing::new(DEMO_PIN.to_owned()));
    let mut phone = Phone {
        authenticator: worker.clone(),
        user: Approvals::new(Box::new(auto), worker.clone(), 1),
        replay: ReplaySet::default(),
    };
    let rp = RelyingParty::new(RP_ID, "hybridd demo");
    let mut registered = Vec::new();
    let mut rows = Vec::new();
    for round in 1..=args.rounds {
        let user = UserEntity {
            id: format!("user-{round}").into_bytes(),
            name: Some(format!("demo{round}@{RP_ID}")),
            display_name: Some(format!("Demo user {round}")),
        };
        let reg = register(&world, &mut phone, &rp, user, args.show_qr && round == 1).await?;
        registered.push(reg.0);
        let sign = sign_in(&world, &mut phone, &rp, &mut registered).await?;
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
    let stored = worker.count().await?;
    if stored != u64::from(args.rounds) {
        return Err(DemoError::Count {
            stored,
            expected: u64::from(args.rounds),
        }
        .into());
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

/// One session: the phone gets the desktop's QR URI, the desktop waits for
/// the advert in the radio file, connects, handshakes and runs `action`.
async fn one_session<T, F, Fut>(
    world: &World,
    phone: &mut Phone,
    desktop: &Desktop,
    stage: &'static str,
    action: F,
) -> Result<(T, Row), Error>
where
    F: FnOnce(hybrid_initiator::Channel) -> Fut,
    Fut: std::future::Future<
        Output = Result<(T, hybrid_initiator::Channel), hybrid_initiator::Error>,
    >,
{
    let uri = desktop.qr_uri();
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    let t0 = Instant::now();
    let phone_side = async {
        let mut radio = hybrid_ble::FileRadio::to_file(&world.advert_file);
        Ceremony {
            radio: &mut radio,
            authenticator: &mut phone.authenticator,
            user: &mut phone.user,
            replay: &mut phone.replay,
            progress: &(),
            cancel: Some(cancel_rx),
            l2cap: None,
        }
        .run(&uri, &world.phone)
        .await
    };
    let desktop_side = async {
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
    let (report, desk) = tokio::join!(phone_side, desktop_side);
    let total = t0.elapsed();
    let (value, desktop) = desk.map_err(|source| DemoError::Desktop {
        stage,
        source,
        phone: report.outcome.clone(),
    })?;
    if !report.outcome.is_completed() {
        return Err(DemoError::Phone {
            stage,
            outcome: report.outcome,
        }
        .into());
    }
    let row = Row {
        phone: report,
        desktop,
        total,
    };
    Ok((value, row))
}

/// Session 1: makeCredential (discoverable, UV) with a fresh QR (hint "mc").
async fn register(
    world: &World,
    phone: &mut Phone,
    rp: &RelyingParty,
    user: UserEntity,
    show_qr: bool,
) -> Result<(RegisteredCredential, u32, Row), Error> {
    let desktop = Desktop::new(&mut OsRng)
        .map_err(DemoError::Initiator)?
        .with_request_type(RequestType::MakeCredential);
    if show_qr {
        println!("{}", desktop.qr_terminal().map_err(DemoError::Initiator)?);
    }
    let cdh = client_data_hash();
    let ((cred, _resp), row) = one_session(
        world,
        phone,
        &desktop,
        "registration",
        |mut ch| async move {
            let r = ch.register(rp, cdh, user, true).await?;
            Ok((r, ch))
        },
    )
    .await?;
    let count = cred.sign_count;
    Ok((cred, count, row))
}

/// Session 2: a new QR (hint "ga"), getAssertion with an empty allowList.
async fn sign_in(
    world: &World,
    phone: &mut Phone,
    rp: &RelyingParty,
    registered: &mut [RegisteredCredential],
) -> Result<(usize, String, Row), Error> {
    let desktop = Desktop::new(&mut OsRng)
        .map_err(DemoError::Initiator)?
        .with_request_type(RequestType::GetAssertion);
    let cdh = client_data_hash();
    let ((index, user), row) =
        one_session(world, phone, &desktop, "sign-in", |mut ch| async move {
            let (i, resp) = ch.authenticate(rp, registered, cdh, &[]).await?;
            let name = resp.user.and_then(|u| u.name).unwrap_or_default();
            Ok(((i, name), ch))
        })
        .await?;
    Ok((index, user, row))
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

/// Reads one phase out of a session's row.
type Column = fn(&Row) -> Duration;

/// Time between two phone phases, zero if either was not reached.
fn between(a: Option<Instant>, b: Option<Instant>) -> Duration {
    match (a, b) {
        (Some(a), Some(b)) => b.saturating_duration_since(a),
        _ => Duration::ZERO,
    }
}

/// The desktop's time for the named phases of its timeline.
fn desktop(r: &Row, names: &[&str]) -> Duration {
    names.iter().filter_map(|n| r.desktop.get(n)).sum()
}

fn print_table(rows: &[(Row, Row)]) {
    let phases: [(&str, Column); 7] = [
        ("QR parsed", |r| {
            between(Some(r.phone.received), r.phone.phases.map(|p| p.started))
        }),
        ("tunnel open", |r| {
            let p = r.phone.phases;
            between(p.map(|p| p.started), p.and_then(|p| p.tunnel_open))
        }),
        ("advert out", |r| {
            let p = r.phone.phases;
            between(p.and_then(|p| p.tunnel_open), p.and_then(|p| p.advert_out))
        }),
        ("handshake", |r| desktop(r, &["tunnel", "handshake"])),
        ("getInfo", |r| desktop(r, &["getInfo"])),
        ("command", |r| {
            desktop(r, &["makeCredential", "getAssertion"])
        }),
        ("session total", |r| r.total),
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

fn phone_options(tunnel: TunnelBase) -> CeremonyOptions {
    let mut session = hybrid_session::SessionConfig::new(tunnel, Vec::new());
    session.wait_for_desktop = Duration::from_secs(10);
    session.command_timeout = Duration::from_secs(30);
    session.shutdown_grace = Duration::from_secs(2);
    CeremonyOptions {
        session,
        client: ClientOptions {
            connect_timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        },
        freshness: hybrid_qr::Freshness::default(),
        allow_qr_without_timestamp: false,
    }
}
