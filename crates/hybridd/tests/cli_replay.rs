//! The QR replay policy (conformance checklist "QR replay", `hybridd::replay`)
//! through the binary: `hybridd tunnel-server`, `hybridd run --approval auto`
//! with the file radio, `hybridd scan`, and a desktop in the test
//! (hybrid-initiator).
//!
//! * A QR that completed a ceremony is refused when scanned again — however
//!   the URI's prefix is spelled — with `qr_replayed`, exit status 1 (the
//!   class of `qr_invalid` / `qr_stale`), before any network use.
//! * A QR whose first session ended before the desktop connected (the
//!   desktop never came) is accepted again and completes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // helpers of tests

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::{cdh, scan_output, start_tunnel_server, text, wait_daemon_ready, Home, Killed};
use hybrid_ctap::types::UserEntity;
use hybrid_ctap::RelyingParty;
use hybrid_initiator::{AdvertSource, Desktop, Resolver};
use hybrid_qr::RequestType;
use hybrid_tunnel::client::ClientOptions;
use rand_core::OsRng;

/// A tunnel server and a daemon (file radio, automatic approval).
struct World {
    h: Home,
    url: String,
    advert_file: std::path::PathBuf,
    log: std::path::PathBuf,
    _ts: Killed,
    _daemon: Option<Killed>,
}

impl World {
    /// Kills the daemon (SIGKILL: nothing saved at exit) and starts a new
    /// one on the same home.
    async fn restart(&mut self, wait_for_desktop_secs: u64) {
        let log = self.h.path().join("daemon-2.log");
        self._daemon = None;
        let daemon = start_daemon(
            &self.h,
            &self.url,
            &self.advert_file,
            &log,
            wait_for_desktop_secs,
        );
        self._daemon = Some(daemon.await);
        self.log = log;
    }
}

/// `hybridd run` on `h` (file radio, automatic approval), ready.
async fn start_daemon(h: &Home, url: &str, advert_file: &Path, log: &Path, wait: u64) -> Killed {
    let pin = h.pin_file("auto-pin", "1234");
    let daemon = h
        .cmd()
        .args(["run", "--tunnel-url", url, "--advert-file"])
        .arg(advert_file)
        .args(["--approval", "auto", "--pin-file"])
        .arg(&pin)
        .args(["--wait-for-desktop-secs", &wait.to_string()])
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut daemon = Killed(daemon);
    wait_daemon_ready(&mut daemon, &h.socket(), log).await;
    daemon
}

async fn world(wait_for_desktop_secs: u64) -> World {
    let h = Home::new();
    h.init_vault("1234");
    let advert_file = h.path().join("adverts");
    let log = h.path().join("daemon.log");
    let (ts, url) = start_tunnel_server(&h);
    let daemon = start_daemon(&h, &url, &advert_file, &log, wait_for_desktop_secs).await;
    World {
        h,
        url,
        advert_file,
        log,
        _ts: ts,
        _daemon: Some(daemon),
    }
}

impl World {
    /// `hybridd scan uri` (output piped) and `desktop` connected to it:
    /// returns once the phone's handshake reply arrived.
    async fn scan_and_connect(
        &self,
        desktop: &Desktop,
        uri: &str,
    ) -> (std::process::Child, hybrid_initiator::Channel) {
        // The file radio leaves the last advert in place; a desktop scanning
        // the same QR again must only see the new one.
        let _ = std::fs::remove_file(&self.advert_file);
        let scan = self
            .h
            .cmd()
            .args(["scan", uri])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut source = AdvertSource::file(&self.advert_file);
        let ch = desktop
            .establish(
                &mut source,
                Duration::from_secs(20),
                &Resolver::fixed(&self.url),
                &ClientOptions::default(),
                &mut OsRng,
            )
            .await
            .unwrap();
        (scan, ch)
    }

    /// `hybridd scan uri` while `desktop` answers it with a makeCredential.
    async fn register(&self, desktop: &Desktop, uri: &str) -> Output {
        let (scan, mut ch) = self.scan_and_connect(desktop, uri).await;
        let user = UserEntity {
            id: b"user-1".to_vec(),
            name: Some("alice@example.com".into()),
            display_name: None,
        };
        let rp = RelyingParty::new("example.com", "Example");
        ch.register(&rp, cdh(), user, true).await.unwrap();
        let _ = ch.shutdown().await;
        scan_output(scan).await
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn assert_ok(o: &Output) {
    assert!(
        o.status.success() && text(&o.stdout).contains("passkey created"),
        "{:?}: {}{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
}

fn assert_replayed(o: &Output) {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("failed [qr_replayed]"), "{err}");
    assert!(err.contains("already used"), "{err}");
    assert!(err.contains("new one"), "{err}");
}

fn count(log: &str, what: &str) -> usize {
    log.matches(what).count()
}

fn lowercase_prefix(uri: &str) -> String {
    format!("fido:/{}", uri.strip_prefix("FIDO:/").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_that_completed_a_ceremony_is_refused_when_scanned_again() {
    let w = world(30).await;
    let d = Desktop::new(&mut OsRng)
        .unwrap()
        .with_request_type(RequestType::MakeCredential);
    let uri = d.qr_uri();
    assert_ok(&w.register(&d, &uri).await);
    let tunnels_before = count(&w.log(), "opening tunnel");
    assert_eq!(tunnels_before, 1, "{}", w.log());

    // The same QR again, spelled as it was and with a lower-case prefix
    // (§1.1: case-insensitive; the secrets are compared, not the text).
    for again in [uri.clone(), lowercase_prefix(&uri)] {
        let o = w.h.run(&["scan", &again]);
        assert_replayed(&o);
    }
    // Refused before any network use: no tunnel was asked for.
    let log = w.log();
    assert_eq!(count(&log, "opening tunnel"), tunnels_before, "{log}");
    assert_eq!(count(&log, "this QR code was already used"), 2, "{log}");
    assert!(
        !log.contains("FIDO:/") && !log.contains("fido:/"),
        "QR logged"
    );

    // The daemon serves the next (new) QR as usual.
    let d2 = Desktop::new(&mut OsRng)
        .unwrap()
        .with_request_type(RequestType::MakeCredential);
    assert_ok(&w.register(&d2, &d2.qr_uri()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_whose_desktop_never_connected_may_be_scanned_again() {
    let w = world(2).await;
    let d = Desktop::new(&mut OsRng)
        .unwrap()
        .with_request_type(RequestType::MakeCredential);
    let uri = d.qr_uri();

    // First attempt: the desktop never connects; the session ends by itself.
    let o = w.h.run(&["scan", &uri]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("failed [desktop_never_connected]"), "{err}");
    assert!(Path::new(&w.advert_file).exists(), "the advert went out");

    // Second attempt with the same QR: accepted, and the ceremony completes.
    assert_ok(&w.register(&d, &uri).await);
    // Now it has reached a handshake: a third scan is refused.
    assert_replayed(&w.h.run(&["scan", &uri]));
}

/// Issue 16: the replay memory survives a daemon restart (even a SIGKILL):
/// a QR used before the restart is still refused after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_replay_memory_survives_a_daemon_restart() {
    let mut w = world(30).await;
    let d = Desktop::new(&mut OsRng)
        .unwrap()
        .with_request_type(RequestType::MakeCredential);
    let uri = d.qr_uri();
    assert_ok(&w.register(&d, &uri).await);
    let file =
        w.h.vault()
            .parent()
            .unwrap()
            .join(hybridd::replay::FILE_NAME);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    w.restart(30).await;
    assert_replayed(&w.h.run(&["scan", &uri]));
    assert_eq!(count(&w.log(), "opening tunnel"), 0, "{}", w.log());
}

/// A QR answered after a PIN is committed in the vault with the counted
/// attempt (the replay file's line is then not synced by itself): a power
/// loss that drops the file's unsynced lines — here, the whole file is
/// gone — does not make it good again; the next start reads it back from
/// the vault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_committed_with_the_pin_attempt_is_refused_even_if_the_file_lost_it() {
    let mut w = world(30).await;
    let desktop = || {
        Desktop::new(&mut OsRng)
            .unwrap()
            .with_request_type(RequestType::MakeCredential)
    };
    // A daemon's first record rewrites the file whole (synced); the
    // second is appended, and carried by the vault.
    let first = desktop();
    assert_ok(&w.register(&first, &first.qr_uri()).await);
    let d = desktop();
    let uri = d.qr_uri();
    assert_ok(&w.register(&d, &uri).await);
    w._daemon = None;
    let file =
        w.h.vault()
            .parent()
            .unwrap()
            .join(hybridd::replay::FILE_NAME);
    std::fs::remove_file(&file).unwrap();
    w.restart(30).await;
    assert_replayed(&w.h.run(&["scan", &uri]));
    assert_eq!(count(&w.log(), "opening tunnel"), 0, "{}", w.log());
    assert!(
        w.log().contains("recovered entries from the vault"),
        "{}",
        w.log()
    );
}

/// A daemon killed mid-session — handshake done, no request answered yet —
/// still refuses the QR after a restart: the record is saved when the
/// desktop's first message arrives, before the phone answers it, not when
/// the session ends (as it was until 2026-12-03).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_is_remembered_from_its_handshake_on_even_if_the_daemon_dies_mid_session() {
    let mut w = world(30).await;
    let d = Desktop::new(&mut OsRng)
        .unwrap()
        .with_request_type(RequestType::MakeCredential);
    let uri = d.qr_uri();
    // Returns once the phone's handshake reply arrived: msg1 was handled.
    let (scan, ch) = w.scan_and_connect(&d, &uri).await;
    let scan = Killed(scan);
    // SIGKILL while the session waits for the desktop's request; a QR
    // that was not remembered would open a tunnel again and wait 2 s.
    w.restart(2).await;
    drop((ch, scan));
    assert_replayed(&w.h.run(&["scan", &uri]));
    assert_eq!(count(&w.log(), "opening tunnel"), 0, "{}", w.log());
}

/// Issue 16: a QR without a timestamp (key 3) is refused before any
/// network use, unless `allow_qr_without_timestamp = true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_without_timestamp_is_refused_unless_configured() {
    let mut w = world(1).await;
    let stamped = hybrid_qr::parse(&Desktop::new(&mut OsRng).unwrap().qr_uri()).unwrap();
    let bare = hybrid_qr::QrCode::new(*stamped.identity_key_compressed(), *stamped.secret())
        .unwrap()
        .with_request_type(RequestType::MakeCredential);
    assert_eq!(bare.timestamp(), None);
    let o = w.h.run(&["scan", &bare.to_uri()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("failed [qr_stale]") && err.contains("no timestamp"),
        "{err}"
    );
    assert!(err.contains("allow_qr_without_timestamp"), "{err}");
    assert_eq!(count(&w.log(), "opening tunnel"), 0, "{}", w.log());

    w.h.write_config("allow_qr_without_timestamp = true\n");
    w.restart(1).await;
    let o = w.h.run(&["scan", &bare.to_uri()]);
    let err = text(&o.stderr);
    assert!(
        err.contains("failed [desktop_never_connected]"),
        "accepted, then nobody came: {err}"
    );
}
