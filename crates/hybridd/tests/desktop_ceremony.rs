//! Whole ceremonies through the desktop front-ends, with the real
//! components on private buses (`hybrid_desktop::testing`): `hybridd
//! tunnel-server`, `hybridd run` with the file radio, `hybridd scan` (or
//! `xdg-open` with `dist/hybridd.desktop`) handing it the QR, and a desktop
//! in the test (hybrid-initiator, verifying as the RP: UV is required).
//! Each test's name says the component it exercises: `notification_`
//! (dunst under Xvfb, answered with `dunstctl`), `fprintd_` (fprintd with
//! libfprint's virtual device), `pinentry_` (pinentry-tty in a
//! pseudo-terminal), `logind_` (a fake org.freedesktop.login1), `xdg_open_`.
//!
//! A missing component skips its test loudly, or fails it under
//! `HYBRIDD_REQUIRE_DESKTOP=1` (as `.ci/run` sets).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{cdh, start_tunnel_server, text, wait_daemon_ready, Home, Killed};
use hybrid_ctap::types::UserEntity;
use hybrid_ctap::RelyingParty;
use hybrid_desktop::notify::{ACTION_APPROVE, ACTION_DENY};
use hybrid_desktop::testing::{
    find_program, or_skip, private_bus, Dunst, DunstOptions, FakeLogind, FakeLogindOptions,
    Fprintd, FprintdOptions, PolkitAllowAll, PrivateBus, Pty, Xvfb,
};
use hybrid_initiator::{AdvertSource, Desktop, Resolver};
use hybrid_qr::RequestType;
use hybrid_tunnel::client::ClientOptions;
use hybridd::control::{Client, ClientMsg, DaemonMsg};
use rand_core::OsRng;

/// The most any one test may take, whatever happens.
const TEST_LIMIT: Duration = Duration::from_secs(150);
/// How long a bounded wait for the daemon or a component may take.
const WAIT: Duration = Duration::from_secs(30);
const FINGER: &str = "right-index-finger";
const ENROLLED: &str = "alice-right-index";
const STRANGER: &str = "mallory-thumb";
const PIN: &str = "1234";

async fn bounded<F: Future<Output = ()>>(test: &str, body: F) {
    if tokio::time::timeout(TEST_LIMIT, body).await.is_err() {
        panic!("{test}: did not finish within {} s", TEST_LIMIT.as_secs());
    }
}

/// The session side: a private session bus with dunst on an Xvfb display.
struct SessionSide {
    bus: PrivateBus,
    x: Xvfb,
    dunst: Option<Dunst>,
}

async fn session_side(test: &str, with_dunst: bool) -> Option<SessionSide> {
    let bus = or_skip(test, private_bus())?;
    let x = or_skip(test, Xvfb::start())?;
    let dunst = if with_dunst {
        Some(or_skip(
            test,
            Dunst::start(bus.address(), x.display(), DunstOptions::default()).await,
        )?)
    } else {
        None
    };
    Some(SessionSide { bus, x, dunst })
}

/// The system side: a private system bus with a polkit stand-in and, when
/// asked, fprintd (a finger enrolled) or a fake logind.
struct SystemSide {
    bus: PrivateBus,
    _polkit: PolkitAllowAll,
    fprintd: Option<Fprintd>,
    logind: Option<FakeLogind>,
}

async fn system_side(test: &str, fprintd: bool, logind: bool) -> Option<SystemSide> {
    let bus = or_skip(test, private_bus())?;
    let polkit = PolkitAllowAll::start(bus.address()).await.unwrap();
    let fprintd = if fprintd {
        let f = or_skip(
            test,
            Fprintd::start(bus.address(), FprintdOptions::default()).await,
        )?;
        let conn = hybrid_desktop::bus_at(
            bus.address(),
            tokio::time::Instant::now() + Duration::from_secs(10),
        )
        .await
        .unwrap();
        f.enroll(&conn, FINGER, ENROLLED).await.unwrap();
        Some(f)
    } else {
        None
    };
    let logind = if logind {
        Some(
            FakeLogind::start(bus.address(), FakeLogindOptions::default())
                .await
                .unwrap(),
        )
    } else {
        None
    };
    Some(SystemSide {
        bus,
        _polkit: polkit,
        fprintd,
        logind,
    })
}

fn pinentry_tty(test: &str) -> Option<PathBuf> {
    or_skip(test, find_program("pinentry-tty", "pinentry-tty"))
}

/// A running daemon with its home, tunnel server and buses.
struct Rig {
    h: Home,
    _ts: Killed,
    url: String,
    _daemon: Killed,
    log: PathBuf,
    adverts: PathBuf,
    session: Option<SessionSide>,
    system: Option<SystemSide>,
}

impl Rig {
    /// Starts `hybridd run` with `config` (TOML) on the given buses; a
    /// missing system side is an address nobody answers on, so the host's
    /// fprintd and logind are never touched.
    async fn start(config: &str, session: Option<SessionSide>, system: Option<SystemSide>) -> Rig {
        let h = Home::new();
        h.init_vault(PIN);
        h.write_config(config);
        let (ts, url) = start_tunnel_server(&h);
        let adverts = h.path().join("adverts");
        let log = h.path().join("daemon.log");
        let mut cmd = h.cmd();
        cmd.args(["run", "--tunnel-url", &url, "--advert-file"])
            .arg(&adverts)
            .args(["--wait-for-desktop-secs", "30"])
            .stderr(std::fs::File::create(&log).unwrap());
        Self::buses(&mut cmd, session.as_ref(), system.as_ref());
        let mut daemon = Killed(cmd.spawn().unwrap());
        wait_daemon_ready(&mut daemon, &h.socket(), &log).await;
        Rig {
            h,
            _ts: ts,
            url,
            _daemon: daemon,
            log,
            adverts,
            session,
            system,
        }
    }

    fn buses(
        cmd: &mut std::process::Command,
        session: Option<&SessionSide>,
        system: Option<&SystemSide>,
    ) {
        let nobody = "unix:path=/nonexistent/hybridd-test-bus";
        cmd.env(
            "DBUS_SESSION_BUS_ADDRESS",
            session.map_or(nobody, |s| s.bus.address()),
        )
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            system.map_or(nobody, |s| s.bus.address()),
        );
        if let Some(s) = session {
            cmd.env("DISPLAY", s.x.display());
        }
    }

    fn dunst(&self) -> &Dunst {
        self.session.as_ref().unwrap().dunst.as_ref().unwrap()
    }

    fn fprintd(&self) -> &Fprintd {
        self.system.as_ref().unwrap().fprintd.as_ref().unwrap()
    }

    /// The daemon's log, without colour codes.
    fn log_text(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw.as_str();
        while let Some(i) = rest.find('\u{1b}') {
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            rest = rest.find('m').map_or("", |m| &rest[m + 1..]);
        }
        out.push_str(rest);
        out
    }

    /// Waits for the daemon's `n`-th consent notification and returns its id.
    async fn notification(&self, n: usize) -> u32 {
        const SHOWN: &str = "asking through a notification id=";
        self.wait_log(SHOWN, n).await;
        let log = self.log_text();
        let (_, after) = log
            .match_indices(SHOWN)
            .nth(n - 1)
            .map(|(i, _)| log.split_at(i + SHOWN.len()))
            .unwrap();
        let id = after.split(' ').next().unwrap().parse().unwrap();
        self.dunst().wait_displayed(1).await.unwrap();
        id
    }

    /// Waits until the daemon's log holds `needle` `n` times.
    async fn wait_log(&self, needle: &str, n: usize) {
        let t0 = Instant::now();
        while self.log_text().matches(needle).count() < n {
            assert!(
                t0.elapsed() < WAIT,
                "the daemon never logged {needle:?} {n} time(s): {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `hybridd scan` for `desktop`'s QR (these daemons ask through the
    /// desktop whatever the scan's terminal).
    fn scan(&self, desktop: &Desktop) -> std::process::Child {
        self.h
            .cmd()
            .args(["scan", &desktop.qr_uri()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The desktop's side of a registration of `user` with `rp`: the
    /// result of makeCredential (verified as the RP, UV required).
    fn register(
        &self,
        desktop: Desktop,
        rp: RelyingParty,
        user: UserEntity,
    ) -> tokio::task::JoinHandle<Result<(), String>> {
        let url = self.url.clone();
        let adverts = self.adverts.clone();
        tokio::spawn(async move {
            let resolver = Resolver::fixed(&url);
            let mut source = AdvertSource::file(&adverts);
            let mut ch = desktop
                .establish(
                    &mut source,
                    WAIT,
                    &resolver,
                    &ClientOptions::default(),
                    &mut OsRng,
                )
                .await
                .map_err(|e| e.to_string())?;
            let r = ch.register(&rp, cdh(), user, true).await;
            let _ = ch.shutdown().await;
            r.map(|_| ()).map_err(|e| e.to_string())
        })
    }

    /// Whether the daemon says a vault session is open.
    async fn vault_session(&self) -> bool {
        let mut c = Client::connect(&self.h.socket()).await.unwrap();
        c.send(&ClientMsg::Ping).await.unwrap();
        match c.recv().await.unwrap() {
            Some(DaemonMsg::Pong(p)) => p.vault_session,
            other => panic!("{other:?}"),
        }
    }

    async fn wait_vault_session(&self, open: bool) {
        let t0 = Instant::now();
        while self.vault_session().await != open {
            assert!(
                t0.elapsed() < WAIT,
                "vault session never became {open}: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The daemon's locked memory (`VmLck`, kB): the vault key and the
    /// metadata key share hybrid-secmem's locked pool page, which stays
    /// (wiped, as the pool's spare) once they are dropped.
    fn daemon_locked_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self._daemon.0.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmLck:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmLck in the daemon's status: {status}"))
    }

    /// `hybridd unlock --pin-file` with the vault PIN.
    fn unlock(&self) {
        let f = self.h.pin_file("unlock-pin", PIN);
        let o = self.h.run(&["unlock", "--pin-file", f.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "unlock: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        assert!(text(&o.stdout).contains("vault session open"));
    }
}

fn new_desktop() -> Desktop {
    Desktop::new(&mut OsRng)
        .unwrap()
        .with_request_type(RequestType::MakeCredential)
}

fn alice() -> UserEntity {
    UserEntity {
        id: b"user-1".to_vec(),
        name: Some("alice@example.com".into()),
        display_name: Some("Alice".into()),
    }
}

fn rp() -> RelyingParty {
    RelyingParty::new("example.com", "Example")
}

/// Types `PIN` into the pseudo-terminal once pinentry-tty asks there.
async fn type_pin(pty: Pty) -> (String, Pty) {
    tokio::task::spawn_blocking(move || {
        let mut pty = pty;
        let shown = pty.read_until(b"PIN:", WAIT).unwrap();
        pty.type_in(format!("{PIN}\n").as_bytes()).unwrap();
        (String::from_utf8_lossy(&shown).into_owned(), pty)
    })
    .await
    .unwrap()
}

/// The config of a notification + pinentry-tty daemon.
fn pinentry_config(verify: &str, program: &Path, pty: &Pty, extra: &str) -> String {
    format!(
        "approval = \"notification\"\nverify = \"{verify}\"\npinentry = \"{}\"\n\
         pinentry_tty = \"{}\"\n{extra}",
        program.display(),
        pty.path().display()
    )
}

async fn scan_result(child: std::process::Child) -> (bool, String) {
    let o = common::scan_output(child).await;
    (
        o.status.success(),
        format!("{}{}", text(&o.stdout), text(&o.stderr)),
    )
}

/// A makeCredential being asked through dunst, by a daemon whose PIN
/// comes through pinentry-tty on `pty`.
struct Asked {
    rig: Rig,
    pty: Pty,
    scan: std::process::Child,
    reg: tokio::task::JoinHandle<Result<(), String>>,
    /// The notification's id.
    id: u32,
}

async fn asked_with_pinentry(test: &str) -> Option<Asked> {
    let program = pinentry_tty(test)?;
    let session = session_side(test, true).await?;
    let pty = Pty::open().unwrap();
    let config = pinentry_config("pin", &program, &pty, "");
    let rig = Rig::start(&config, Some(session), None).await;
    let d = new_desktop();
    let scan = rig.scan(&d);
    let reg = rig.register(d, rp(), alice());
    let id = rig.notification(1).await;
    Some(Asked {
        rig,
        pty,
        scan,
        reg,
        id,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_dunst_approve_then_pinentry_tty_pin_registers() {
    let test = "notification_dunst_approve_then_pinentry_tty_pin_registers";
    bounded(test, async {
        let Some(Asked {
            rig,
            pty,
            scan,
            reg,
            id,
        }) = asked_with_pinentry(test).await
        else {
            return;
        };
        rig.dunst().invoke(id, ACTION_APPROVE).unwrap();
        let (shown, _pty) = type_pin(pty).await;
        assert!(
            shown.contains("Create a passkey for example.com?"),
            "{shown}"
        );
        reg.await.unwrap().unwrap();
        let (ok, out) = scan_result(scan).await;
        assert!(ok && out.contains("passkey created"), "{out}");
        // What the notification said.
        let history = rig.dunst().history().unwrap();
        assert!(
            history.contains("Create a passkey for example.com?")
                && history.contains("account: Alice (alice@example.com)"),
            "{history}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_dunst_deny_declines_without_asking_a_pin() {
    let test = "notification_dunst_deny_declines_without_asking_a_pin";
    bounded(test, async {
        let Some(Asked {
            rig,
            pty,
            scan,
            reg,
            id,
        }) = asked_with_pinentry(test).await
        else {
            return;
        };
        rig.dunst().invoke(id, ACTION_DENY).unwrap();
        drop(pty);
        let err = reg.await.unwrap().unwrap_err();
        assert!(
            err.contains("OperationDenied") || err.contains("0x27") || err.contains("denied"),
            "{err}"
        );
        let (ok, out) = scan_result(scan).await;
        assert!(!ok && out.contains("declined"), "{out}");
        assert!(!rig.log_text().contains("pinentry"), "{}", rig.log_text());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_body_has_no_raw_control_or_bidi_character() {
    let test = "notification_body_has_no_raw_control_or_bidi_character";
    bounded(test, async {
        let Some(session) = session_side(test, true).await else {
            return;
        };
        let rig = Rig::start("approval = \"notification\"\n", Some(session), None).await;
        let hostile = "al\u{1b}[2Jice\rroot\nx\u{202e}moc.live";
        let d = new_desktop();
        let scan = rig.scan(&d);
        let user = UserEntity {
            id: b"user-2".to_vec(),
            name: Some(hostile.into()),
            display_name: None,
        };
        let reg = rig.register(d, RelyingParty::new("example.com", hostile), user);
        let id = rig.notification(1).await;
        rig.dunst().invoke(id, ACTION_DENY).unwrap();
        assert!(reg.await.unwrap().is_err());
        let _ = scan_result(scan).await;
        let history: serde_json::Value =
            serde_json::from_str(&rig.dunst().history().unwrap()).unwrap();
        let entry = &history["data"][0][0];
        let summary = entry["summary"]["data"].as_str().unwrap();
        let body = entry["body"]["data"].as_str().unwrap();
        for text in [summary, body] {
            // Our own line breaks only: none of the peer's.
            for line in text.split('\n') {
                assert!(
                    !line.chars().any(hybridd::peer_text::is_unsafe),
                    "raw control/bidi character in {line:?}"
                );
            }
        }
        assert_eq!(body.lines().count(), 3, "{body}");
        assert!(
            body.contains("al\\x1b[2Jice\\rroot\\nx\\u{202e}moc.live"),
            "{body}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_server_missing_declines_with_the_fix() {
    let test = "notification_server_missing_declines_with_the_fix";
    bounded(test, async {
        let Some(session) = session_side(test, false).await else {
            return;
        };
        let rig = Rig::start("approval = \"notification\"\n", Some(session), None).await;
        let d = new_desktop();
        let scan = rig.scan(&d);
        let reg = rig.register(d, rp(), alice());
        assert!(reg.await.unwrap().is_err());
        let (ok, out) = scan_result(scan).await;
        assert!(!ok && out.contains("declined"), "{out}");
        assert!(
            out.contains("no notification server") && out.contains("dunst"),
            "{out}"
        );
        assert!(rig.log_text().contains("cannot ask through a notification"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fprintd_finger_matched_after_unlock_sets_uv() {
    let test = "fprintd_finger_matched_after_unlock_sets_uv";
    bounded(test, async {
        let Some(session) = session_side(test, true).await else {
            return;
        };
        let Some(system) = system_side(test, true, false).await else {
            return;
        };
        let config = "approval = \"notification\"\nverify = \"fingerprint\"\n\
                      fingerprint_fallback = \"decline\"\n";
        let rig = Rig::start(config, Some(session), Some(system)).await;
        assert!(!rig.vault_session().await);
        rig.unlock();
        assert!(rig.vault_session().await);
        for round in 1..=2u32 {
            let d = new_desktop();
            let scan = rig.scan(&d);
            let user = UserEntity {
                id: vec![u8::try_from(round).unwrap()],
                ..alice()
            };
            let reg = rig.register(d, rp(), user);
            let id = rig.notification(round as usize).await;
            rig.dunst().invoke(id, ACTION_APPROVE).unwrap();
            rig.wait_log("touch the fingerprint reader", round as usize)
                .await;
            rig.fprintd().scan(ENROLLED).unwrap();
            reg.await.unwrap().unwrap();
            let (ok, out) = scan_result(scan).await;
            assert!(ok, "{out}");
            rig.dunst().wait_displayed(0).await.unwrap();
        }
        assert_eq!(rig.log_text().matches("fingerprint verified").count(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fprintd_wrong_finger_declines_after_the_retries() {
    let test = "fprintd_wrong_finger_declines_after_the_retries";
    bounded(test, async {
        let Some(session) = session_side(test, true).await else {
            return;
        };
        let Some(system) = system_side(test, true, false).await else {
            return;
        };
        let config = "approval = \"notification\"\nverify = \"fingerprint\"\n\
                      fingerprint_fallback = \"decline\"\nfingerprint_attempts = 2\n";
        let rig = Rig::start(config, Some(session), Some(system)).await;
        rig.unlock();
        let d = new_desktop();
        let scan = rig.scan(&d);
        let reg = rig.register(d, rp(), alice());
        let id = rig.notification(1).await;
        rig.dunst().invoke(id, ACTION_APPROVE).unwrap();
        for attempt in 1..=2 {
            rig.wait_log("touch the fingerprint reader", attempt).await;
            rig.fprintd().scan(STRANGER).unwrap();
        }
        assert!(reg.await.unwrap().is_err());
        let (ok, out) = scan_result(scan).await;
        assert!(!ok && out.contains("declined"), "{out}");
        let log = rig.log_text();
        // Two fingers tried (the first reported on the way), then the fallback.
        assert_eq!(
            log.matches("touch the fingerprint reader").count(),
            2,
            "{log}"
        );
        assert!(
            log.contains("2 finger(s) did not match")
                && log.contains("fingerprint_fallback = \"decline\""),
            "{log}"
        );
        assert!(!log.contains("pinentry"), "{log}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fprintd_missing_falls_back_to_pinentry_tty() {
    let test = "fprintd_missing_falls_back_to_pinentry_tty";
    bounded(test, async {
        let Some(program) = pinentry_tty(test) else {
            return;
        };
        let Some(session) = session_side(test, true).await else {
            return;
        };
        // A system bus without fprintd.
        let Some(system) = system_side(test, false, false).await else {
            return;
        };
        let pty = Pty::open().unwrap();
        let config = pinentry_config("fingerprint", &program, &pty, "");
        let rig = Rig::start(&config, Some(session), Some(system)).await;
        rig.unlock();
        let d = new_desktop();
        let scan = rig.scan(&d);
        let reg = rig.register(d, rp(), alice());
        let id = rig.notification(1).await;
        rig.dunst().invoke(id, ACTION_APPROVE).unwrap();
        let (shown, _pty) = type_pin(pty).await;
        assert!(shown.contains("Create a passkey"), "{shown}");
        reg.await.unwrap().unwrap();
        let (ok, out) = scan_result(scan).await;
        assert!(ok, "{out}");
        assert!(
            rig.log_text()
                .contains("asking for the PIN through pinentry"),
            "{}",
            rig.log_text()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinentry_tty_unlock_without_a_terminal_opens_the_vault_session() {
    let test = "pinentry_tty_unlock_without_a_terminal_opens_the_vault_session";
    bounded(test, async {
        let Some(program) = pinentry_tty(test) else {
            return;
        };
        let Some(setsid) = or_skip(test, find_program("setsid", "util-linux")) else {
            return;
        };
        let pty = Pty::open().unwrap();
        let config = format!(
            "verify = \"fingerprint\"\npinentry = \"{}\"\npinentry_tty = \"{}\"\n",
            program.display(),
            pty.path().display()
        );
        let rig = Rig::start(&config, None, None).await;
        // `hybridd unlock` with neither a terminal nor a PIN file: the
        // daemon asks through its pinentry; the PIN never passes argv or env.
        let cmd = rig.h.cmd();
        let mut unlock = std::process::Command::new(&setsid);
        unlock
            .args(["-w", env!("CARGO_BIN_EXE_hybridd"), "unlock"])
            .env_clear()
            .envs(
                cmd.get_envs()
                    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = unlock.spawn().unwrap();
        let (shown, _pty) = type_pin(pty).await;
        assert!(shown.contains("Unlock the hybridd vault"), "{shown}");
        let o = common::scan_output(child).await;
        assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
        assert!(rig.vault_session().await);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logind_lock_and_suspend_drop_the_vault_session() {
    let test = "logind_lock_and_suspend_drop_the_vault_session";
    bounded(test, async {
        let Some(system) = system_side(test, false, true).await else {
            return;
        };
        let rig = Rig::start("verify = \"fingerprint\"\n", None, Some(system)).await;
        let logind = rig.system.as_ref().unwrap().logind.as_ref().unwrap();
        assert!(
            rig.log_text().contains("watching logind"),
            "{}",
            rig.log_text()
        );
        // Session.Lock. While the session is open its keys sit in locked
        // memory (two keys in one page of hybrid-secmem's pool); once it
        // ends they are wiped and that page, all zero, stays locked as the
        // pool's spare: no more locked memory than while open
        // (crates/hybrid-secmem/tests/pool.rs checks the wipe).
        assert_eq!(rig.daemon_locked_kb(), 0);
        rig.unlock();
        rig.wait_vault_session(true).await;
        let open = rig.daemon_locked_kb();
        assert!(open >= 4, "VmLck {open} kB");
        logind.lock().await.unwrap();
        rig.wait_vault_session(false).await;
        assert_eq!(rig.daemon_locked_kb(), open);
        // PrepareForSleep(true).
        rig.unlock();
        rig.wait_vault_session(true).await;
        logind.prepare_for_sleep(true).await.unwrap();
        rig.wait_vault_session(false).await;
        // Another session's lock does not count; `hybridd lock` does.
        rig.unlock();
        logind.lock_other_session().await.unwrap();
        assert!(rig.vault_session().await);
        let o = rig.h.run(&["lock"]);
        assert!(o.status.success() && text(&o.stdout).contains("vault session closed"));
        assert!(!rig.vault_session().await);
        let log = rig.log_text();
        for reason in [
            "the login session locked",
            "the machine is suspending",
            "hybridd lock",
        ] {
            assert!(log.contains(reason), "{reason}: {log}");
        }
    })
    .await;
}

/// The processes (pid and command) whose arguments contain `needle`.
fn processes_with_argument(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // Gone meanwhile, or not readable: not ours.
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xdg_open_hands_the_qr_to_the_daemon_which_asks_through_dunst() {
    let test = "xdg_open_hands_the_qr_to_the_daemon_which_asks_through_dunst";
    bounded(test, async {
        let Some(xdg_open) = or_skip(test, find_program("xdg-open", "xdg-utils")) else {
            return;
        };
        let Some(setsid) = or_skip(test, find_program("setsid", "util-linux")) else {
            return;
        };
        let Some(session) = session_side(test, true).await else {
            return;
        };
        // The default approval ("interactive"): a request without a
        // terminal is asked through the notification.
        let rig = Rig::start("", Some(session), None).await;
        // `hybridd setup desktop` installs the shipped desktop entry for
        // this home's user and makes it the default with xdg-mime.
        let empty = rig.h.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let generic = |c: &mut std::process::Command| {
            c.env("XDG_DATA_DIRS", &empty)
                .env("XDG_CONFIG_DIRS", &empty)
                .env("XDG_CURRENT_DESKTOP", "X-Generic");
        };
        let mut setup = rig.h.cmd();
        generic(&mut setup);
        let o = setup.args(["setup", "desktop"]).output().unwrap();
        assert!(
            o.status.success(),
            "setup desktop: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        let entry = std::fs::read_to_string(rig.h.path().join("data/applications/hybridd.desktop"))
            .unwrap();
        let exe = Path::new(env!("CARGO_BIN_EXE_hybridd"))
            .canonicalize()
            .unwrap();
        assert!(
            entry.contains(&format!("\nExec={} scan --detach %u\n", exe.display())),
            "{entry}"
        );
        let mimeapps = std::fs::read_to_string(rig.h.path().join("config/mimeapps.list")).unwrap();
        assert!(
            mimeapps.contains("x-scheme-handler/fido=hybridd.desktop"),
            "{mimeapps}"
        );
        let d = new_desktop();
        let uri = d.qr_uri();
        let reg = rig.register(d, rp(), alice());
        // xdg-open in a new session: no controlling terminal, as from a
        // browser or a QR scanner app.
        let cmd = rig.h.cmd();
        let mut open = std::process::Command::new(&setsid);
        open.args(["-w"])
            .arg(&xdg_open)
            .arg(&uri)
            .env_clear()
            .envs(
                cmd.get_envs()
                    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
            )
            // hybridd is not on PATH: the entry names it by its full path.
            .env("PATH", "/usr/bin:/bin")
            .env("DISPLAY", rig.session.as_ref().unwrap().x.display())
            .env("BROWSER", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        generic(&mut open);
        Rig::buses(&mut open, rig.session.as_ref(), None);
        let mut opener = Killed(open.spawn().unwrap());
        // The scan that xdg-open started (`--detach`) had no terminal: the
        // daemon asks through the notification.
        let id = rig.notification(1).await;
        let log = rig.log_text();
        assert!(log.contains("terminal=false detached=true"), "{log}");
        // xdg-open and `hybridd scan --detach` have returned while the
        // question is still open, so no process shows the QR code in its
        // arguments any more (`/proc/PID/cmdline` is readable by every
        // local user).
        let t0 = Instant::now();
        let status = loop {
            if let Some(st) = opener.0.try_wait().unwrap() {
                break st;
            }
            assert!(
                t0.elapsed() < WAIT,
                "xdg-open did not return: {}",
                rig.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "xdg-open: {status}");
        let holders = processes_with_argument(&uri);
        assert!(
            holders.is_empty(),
            "the QR code is in the arguments of {holders:?}"
        );
        assert!(!rig.log_text().contains("outcome="), "{}", rig.log_text());
        rig.dunst().invoke(id, ACTION_DENY).unwrap();
        assert!(reg.await.unwrap().is_err());
        rig.wait_log("outcome=declined", 1).await;
        drop(opener);
    })
    .await;
}
