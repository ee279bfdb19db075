//! The ceremony core (`hybridd::ceremony`) end to end on loopback: a real
//! tunnel server, a file radio, the CTAP authenticator with test doubles, a
//! scripted person, and a minimal desktop written here from the protocol
//! crates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hybrid_ble::{EidKey, FileRadio};
use hybrid_ctap::rp::RelyingParty;
use hybrid_ctap::testing::{test_authenticator, TestEnv};
use hybrid_ctap::types::UserEntity;
use hybrid_ctap::{Approval, ApprovalRequest, Authenticator, Ctap2Status, UserError};
use hybrid_noise::post_handshake::PostHandshakeMessage;
use hybrid_noise::{derive_p256_from_secret, Crypter, Ephemeral, Frame, Initiator};
use hybrid_qr::QrCode;
use hybrid_session::SessionConfig;
use hybrid_session::{FailReason, Outcome};
use hybrid_tunnel::client::{connect_desktop, ClientOptions, DesktopTunnel};
use hybrid_tunnel::server::{ServerConfig, ServerHandle, TunnelServer};
use hybrid_tunnel::{RoutingId, TunnelBase, TunnelId};
use hybridd::approval::User;
use hybridd::ceremony::{Ceremony, CeremonyOptions, Report, SessionEvent};
use hybridd::replay::ReplaySet;
use hybridd::BoxFuture;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::SecretKey;
use rand_core::OsRng;
use tokio::sync::{mpsc, watch};

const SECRET: [u8; 16] = [0x5a; 16];

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Setup {
    server: ServerHandle,
    dir: tempfile::TempDir,
    identity: SecretKey,
}

impl Setup {
    async fn new() -> Self {
        let server = TunnelServer::bind(ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        })
        .await
        .unwrap()
        .spawn();
        Setup {
            server,
            dir: tempfile::tempdir().unwrap(),
            identity: derive_p256_from_secret(b"phone driver test desktop").unwrap(),
        }
    }

    fn base(&self) -> TunnelBase {
        TunnelBase::url(&self.server.base_url(), 0).unwrap()
    }

    fn advert_path(&self) -> PathBuf {
        self.dir.path().join("advert")
    }

    fn qr_uri(&self, timestamp: u64) -> String {
        let compressed: [u8; 33] = self
            .identity
            .public_key()
            .to_encoded_point(true)
            .as_bytes()
            .try_into()
            .unwrap();
        QrCode::new(compressed, SECRET)
            .unwrap()
            .with_timestamp(timestamp)
            .with_hint("mc")
            .to_uri()
    }

    fn options(&self, wait_for_desktop: Duration) -> CeremonyOptions {
        CeremonyOptions {
            session: SessionConfig {
                tunnel: self.base(),
                wait_for_desktop,
                command_timeout: Duration::from_secs(10),
                approval_timeout: Duration::from_secs(10),
                max_commands: 1,
                shutdown_grace: Duration::from_secs(2),
                get_info: Vec::new(), // taken from the authenticator
            },
            client: ClientOptions::default(),
            freshness: hybrid_qr::Freshness::default(),
            allow_qr_without_timestamp: false,
        }
    }

    fn metric(&self, name: &str) -> u64 {
        let text = self.server.metrics_text();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing in\n{text}"))
    }
}

/// Waits for the file radio's advert line and connects like a desktop.
async fn desktop_connect(setup_base: TunnelBase, path: &Path) -> DesktopTunnel {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let advert = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no advert in {} within 30 s",
            path.display()
        );
        if let Ok(line) = std::fs::read_to_string(path) {
            if let Ok(bytes) = hex::decode(line.trim()) {
                if bytes.len() == 20 {
                    break bytes;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let plain = hybrid_ble::decrypt(&EidKey::from_secret(&SECRET), &advert).unwrap();
    connect_desktop(
        &setup_base,
        &RoutingId(plain.routing_id()),
        &TunnelId(hybrid_ble::tunnel_id(&SECRET)),
        &ClientOptions::default(),
    )
    .await
    .unwrap()
}

fn psk_from_advert(path: &Path) -> [u8; 32] {
    let line = std::fs::read_to_string(path).unwrap();
    let advert = hex::decode(line.trim()).unwrap();
    let plain = hybrid_ble::decrypt(&EidKey::from_secret(&SECRET), &advert).unwrap();
    *hybrid_ble::psk(&SECRET, &plain).as_bytes()
}

/// The desktop's whole makeCredential transaction; returns the CTAP reply.
async fn desktop_make_credential(
    base: TunnelBase,
    path: PathBuf,
    identity: SecretKey,
    request: Vec<u8>,
) -> Vec<u8> {
    let mut tunnel = desktop_connect(base, &path).await;
    let psk = psk_from_advert(&path);
    let (waiting, msg1) = Initiator::qr(&psk, &identity)
        .start(Ephemeral::Random(&mut OsRng))
        .unwrap();
    tunnel.send(msg1).await.unwrap();
    let msg2 = tunnel.recv().await.unwrap().unwrap();
    let (mut crypter, _): (Crypter, _) = waiting.finish(&msg2).unwrap().into_parts();
    let post = crypter
        .decrypt(&tunnel.recv().await.unwrap().unwrap())
        .unwrap();
    let (post, _) = PostHandshakeMessage::decode(&post).unwrap();
    assert!(!post.require_ctap().unwrap().is_empty());
    assert!(post.linking.is_none());
    let mut frame = vec![0x01];
    frame.extend_from_slice(&request);
    tunnel.send(crypter.encrypt(&frame).unwrap()).await.unwrap();
    let reply = crypter
        .decrypt(&tunnel.recv().await.unwrap().unwrap())
        .unwrap();
    let Frame::Ctap(reply) = Frame::parse_from_phone(&reply).unwrap() else {
        panic!("not a CTAP reply");
    };
    // Done: shutdown, then wait for the phone to close (it never sends 00).
    tunnel
        .send(crypter.encrypt(&[0x00]).unwrap())
        .await
        .unwrap();
    assert_eq!(tunnel.recv().await.unwrap(), None);
    reply
}

fn mc_request(rp: &RelyingParty, cdh: [u8; 32]) -> Vec<u8> {
    rp.make_credential_request(
        cdh,
        UserEntity {
            id: vec![7; 16],
            name: Some("alice".into()),
            display_name: Some("Alice".into()),
        },
        true,
    )
    .to_frame()
}

/// The person approves, verified.
fn approve(_: &ApprovalRequest) -> Result<Approval, UserError> {
    Ok(Approval {
        user_present: true,
        user_verified: true,
    })
}

/// A person who never answers.
struct Silent;

impl User for Silent {
    fn approve<'a>(
        &'a mut self,
        _: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<Approval, UserError>> {
        Box::pin(std::future::pending())
    }
    fn timed_out(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

async fn run_as(
    uri: &str,
    opts: &CeremonyOptions,
    radio: &mut FileRadio,
    mut auth: Authenticator<TestEnv>,
    user: &mut dyn User,
    cancel: Option<watch::Receiver<bool>>,
) -> (Report, Authenticator<TestEnv>, Vec<SessionEvent>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let report = Ceremony {
        radio,
        authenticator: &mut auth,
        user,
        replay: &mut ReplaySet::default(),
        progress: &tx,
        cancel,
        l2cap: None,
    }
    .run(uri, opts)
    .await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (report, auth, events)
}

async fn run(
    setup: &Setup,
    uri: &str,
    opts: &CeremonyOptions,
    radio: &mut FileRadio,
    auth: Authenticator<TestEnv>,
) -> (Report, Authenticator<TestEnv>, Vec<SessionEvent>) {
    let _ = setup;
    run_as(uri, opts, radio, auth, &mut approve, None).await
}

#[tokio::test]
async fn make_credential_completes_and_verifies() {
    let setup = Setup::new().await;
    let opts = setup.options(Duration::from_secs(10));
    let mut radio = FileRadio::to_file(setup.advert_path());
    let rp = RelyingParty::new("example.com", "Example");
    let cdh = [0x11; 32];
    let desktop = tokio::spawn(desktop_make_credential(
        setup.base(),
        setup.advert_path(),
        setup.identity.clone(),
        mc_request(&rp, cdh),
    ));
    // Surrounding whitespace is trimmed.
    let uri = format!("  {}\n", setup.qr_uri(unix_now()));
    let (report, auth, events) = run(&setup, &uri, &opts, &mut radio, test_authenticator(1)).await;
    let reply = desktop.await.unwrap();

    assert_eq!(report.outcome, Outcome::Completed { commands: 1 });
    assert_eq!(report.commands, vec![0x01]);
    assert_eq!(report.last_reply.map(|r| r.status), Some(Ctap2Status::Ok));
    assert!(report.succeeded() && !report.declined());
    assert_eq!(report.hint.as_deref(), Some("mc"));
    assert!(report.qr_age_secs.unwrap() <= 2);
    let (cred, _) = rp.verify_registration(&cdh, &reply, true).unwrap();
    assert!(auth.env().store.meta(&cred.id).is_some());
    assert!(!radio.is_advertising());

    let p = report.phases.unwrap();
    let order = [
        Some(report.received),
        Some(p.started),
        p.tunnel_open,
        p.advert_out,
        p.desktop_message,
        p.handshake_done,
        p.first_command,
        p.reply_sent,
        p.finished,
    ];
    assert!(order.iter().all(Option::is_some), "{p:?}");
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{p:?}");
    assert_eq!(p.approvals, 1, "one approval");
    assert!(p.user_wait <= p.reply_sent.unwrap() - p.first_command.unwrap());
    eprintln!(
        "phases (ms from start): {:?}",
        order.map(|t| report.since_received(t).unwrap().as_secs_f64() * 1e3)
    );

    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            SessionEvent::QrAccepted { .. } => "qr",
            SessionEvent::TunnelOpen { .. } => "tunnel",
            SessionEvent::AdvertStarted { .. } => "advert",
            SessionEvent::HandshakeDone { .. } => "handshake",
            SessionEvent::CommandReceived { .. } => "command",
            SessionEvent::ResponseSent { .. } => "response",
            SessionEvent::Finished { .. } => "finished",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "qr",
            "tunnel",
            "advert",
            "handshake",
            "command",
            "response",
            "finished"
        ]
    );
    assert_eq!(setup.metric("hybrid_tunnel_tunnels_paired_total"), 1);
}

/// A makeCredential ceremony answered by `user`; the desktop's reply, the
/// report and the authenticator.
async fn make_credential_as(
    setup: &Setup,
    opts: &CeremonyOptions,
    user: &mut dyn User,
    seed: u8,
) -> (Vec<u8>, Report, Authenticator<TestEnv>) {
    let mut radio = FileRadio::to_file(setup.advert_path());
    let rp = RelyingParty::new("example.com", "Example");
    let desktop = tokio::spawn(desktop_make_credential(
        setup.base(),
        setup.advert_path(),
        setup.identity.clone(),
        mc_request(&rp, [seed; 32]),
    ));
    let uri = setup.qr_uri(unix_now());
    let auth = test_authenticator(u64::from(seed));
    let (report, auth, _) = run_as(&uri, opts, &mut radio, auth, user, None).await;
    (desktop.await.unwrap(), report, auth)
}

#[tokio::test]
async fn declined_is_reported() {
    let setup = Setup::new().await;
    let opts = setup.options(Duration::from_secs(10));
    let mut decline = |_: &ApprovalRequest| Err(UserError::Declined);
    let (reply, report, _) = make_credential_as(&setup, &opts, &mut decline, 0x22).await;
    assert_eq!(reply, vec![0x27]);
    assert_eq!(report.outcome, Outcome::Completed { commands: 1 });
    assert!(report.declined());
    assert!(!report.succeeded());
    let done = report.done();
    assert_eq!((done.ok, done.outcome.as_str()), (false, "declined"));
}

/// The person never answers: the session's approval deadline ends the
/// wait, the desktop gets `CTAP2_ERR_USER_ACTION_TIMEOUT`, and the report
/// says why. (The deadline's exactness is pinned without sleeping in
/// hybrid-session's tests; here only that it is wired through.)
#[tokio::test]
async fn no_answer_in_time_is_a_timeout() {
    let setup = Setup::new().await;
    let mut opts = setup.options(Duration::from_secs(10));
    opts.session.approval_timeout = Duration::from_secs(1);
    let (reply, report, auth) = make_credential_as(&setup, &opts, &mut Silent, 0x33).await;
    assert_eq!(reply, vec![0x2F]);
    assert!(report.user_timed_out());
    assert_eq!(
        report.last_reply.unwrap().user,
        Some(Err(UserError::Timeout))
    );
    let done = report.done();
    assert_eq!(
        (done.outcome.as_str(), done.message.as_str()),
        ("timeout", "no approval in time")
    );
    let p = report.phases.unwrap();
    assert!(p.user_wait >= Duration::from_secs(1));
    assert!(auth.env().store.credentials.is_empty());
    assert!(!auth.is_waiting_for_user(), "the session's end cleared it");
}

#[tokio::test]
async fn desktop_never_connects() {
    let setup = Setup::new().await;
    let opts = setup.options(Duration::from_secs(1));
    let mut radio = FileRadio::to_file(setup.advert_path());
    let t = std::time::Instant::now();
    let (report, _, _) = run(
        &setup,
        &setup.qr_uri(unix_now()),
        &opts,
        &mut radio,
        test_authenticator(3),
    )
    .await;
    assert_eq!(
        report.outcome,
        Outcome::Failed(FailReason::DesktopNeverConnected)
    );
    assert!(report.advert.is_some(), "the advert went out");
    assert!(!radio.is_advertising(), "and was stopped");
    // No desktop message: the QR did not reach a handshake (replay policy).
    assert!(!report.reached_handshake());
    // The configured wait was honoured (a lower bound only: an upper bound
    // would be a timing assertion on a shared, noisy machine; the sans-IO
    // session tests pin the exact deadline without sleeping).
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert_eq!(setup.metric("hybrid_tunnel_tunnels_created_total"), 1);
    // The tunnel was closed by the phone.
    for _ in 0..100 {
        if setup.metric("hybrid_tunnel_tunnels_open") == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("tunnel still open");
}

#[tokio::test]
async fn garbage_msg1_fails_the_handshake() {
    let setup = Setup::new().await;
    let opts = setup.options(Duration::from_secs(10));
    let mut radio = FileRadio::to_file(setup.advert_path());
    let (base, path) = (setup.base(), setup.advert_path());
    let desktop = tokio::spawn(async move {
        let mut tunnel = desktop_connect(base, &path).await;
        tunnel.send(vec![0x04; 81]).await.unwrap();
        // Nothing comes back: the phone just closes (§5.3).
        tunnel.recv().await.unwrap()
    });
    let (report, _, _) = run(
        &setup,
        &setup.qr_uri(unix_now()),
        &opts,
        &mut radio,
        test_authenticator(4),
    )
    .await;
    assert_eq!(desktop.await.unwrap(), None);
    assert!(
        matches!(
            report.outcome,
            Outcome::Failed(FailReason::HandshakeFailed(_))
        ),
        "{:?}",
        report.outcome
    );
    assert!(!radio.is_advertising());
    // A failed handshake still counts as reaching one (replay policy).
    assert!(report.reached_handshake());
    assert_eq!(report.phases.unwrap().handshake_done, None);
}

#[tokio::test]
async fn stale_or_invalid_qr_never_touches_the_network() {
    let setup = Setup::new().await;
    let opts = setup.options(Duration::from_secs(10));
    let mut radio = FileRadio::to_file(setup.advert_path());
    let (report, _, events) = run(
        &setup,
        &setup.qr_uri(unix_now() - 3600),
        &opts,
        &mut radio,
        test_authenticator(5),
    )
    .await;
    let Outcome::Failed(FailReason::QrStale(why)) = &report.outcome else {
        panic!("{:?}", report.outcome);
    };
    assert!(why.contains("3600"), "{why}");
    assert!(matches!(&events[..], [SessionEvent::Finished { .. }]));

    let (report, _, _) = run(
        &setup,
        "FIDO:/12345",
        &opts,
        &mut radio,
        test_authenticator(6),
    )
    .await;
    assert!(matches!(
        report.outcome,
        Outcome::Failed(FailReason::QrInvalid(_))
    ));

    assert_eq!(setup.metric("hybrid_tunnel_connections_total"), 0);
    assert_eq!(setup.metric("hybrid_tunnel_tunnels_created_total"), 0);
    assert!(!setup.advert_path().exists(), "no advert either");
}

#[tokio::test]
async fn cancel_while_advertising() {
    let setup = Setup::new().await;
    let opts = setup.options(Duration::from_secs(30));
    let mut radio = FileRadio::to_file(setup.advert_path());
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let path = setup.advert_path();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !path.exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no advert within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = cancel_tx.send(true);
        // Keep the sender alive until the session saw it.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let uri = setup.qr_uri(unix_now());
    let (report, _, _) = run_as(
        &uri,
        &opts,
        &mut radio,
        test_authenticator(7),
        &mut approve,
        Some(cancel_rx),
    )
    .await;
    assert_eq!(report.outcome, Outcome::Failed(FailReason::Cancelled));
    assert!(!radio.is_advertising());
}
