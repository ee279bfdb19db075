//! The product end to end, through the binary: `hybridd tunnel-server` on
//! loopback, `hybridd run --approval auto` with the file radio, `hybridd
//! scan` handing it QR codes, and a desktop in the test (hybrid-initiator:
//! advert filter, `/cable/connect/`, KNpsk0 initiator, RP verification).
//! Covers: busy answer (exit 75), client disconnect frees the daemon,
//! makeCredential then getAssertion in a second session with a new QR
//! verified against the registered key, a bad QR, SIGTERM shutdown.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    cdh, daemon_busy, exit_status, scan_output, start_tunnel_server, text, wait_daemon_ready, Home,
    Killed,
};
use hybrid_ctap::types::UserEntity;
use hybrid_ctap::RelyingParty;
use hybrid_initiator::{AdvertSource, Desktop, Resolver};
use hybrid_qr::RequestType;
use hybrid_tunnel::client::ClientOptions;
use hybridd::control::{Client, ClientMsg, DaemonMsg};
use rand_core::OsRng;

async fn wait_busy(socket: &Path, want: bool) {
    let t0 = Instant::now();
    while daemon_busy(socket).await != Some(want) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "daemon never became busy={want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_scan_register_then_sign_in() {
    let h = Home::new();
    h.init_vault("1234");
    let pin = h.pin_file("auto-pin", "1234");
    let advert_file = h.path().join("adverts");
    let daemon_log = h.path().join("daemon.log");

    let (_ts, url) = start_tunnel_server(&h);

    let daemon = h
        .cmd()
        .args(["run", "--tunnel-url", &url, "--advert-file"])
        .arg(&advert_file)
        .args(["--approval", "auto", "--pin-file"])
        .arg(&pin)
        .args(["--wait-for-desktop-secs", "30"])
        .stderr(std::fs::File::create(&daemon_log).unwrap())
        .spawn()
        .unwrap();
    let mut daemon = Killed(daemon);
    let socket = h.socket();
    wait_daemon_ready(&mut daemon, &socket, &daemon_log).await;

    // --- Busy: a session waits for a desktop that never comes.
    let lonely = Desktop::new(&mut OsRng).unwrap();
    let scan_a = h
        .cmd()
        .args(["scan", &lonely.qr_uri()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let scan_a = Killed(scan_a);
    wait_busy(&socket, true).await;
    let o = h.run(&["scan", &Desktop::new(&mut OsRng).unwrap().qr_uri()]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("a session is already running"),
        "{}",
        text(&o.stderr)
    );
    // The first client goes away: its session is cancelled, the daemon is free again.
    drop(scan_a);
    wait_busy(&socket, false).await;

    let rp = RelyingParty::new("example.com", "Example");
    let resolver = Resolver::fixed(&url);
    let opts = ClientOptions::default();

    // --- Session 1: makeCredential.
    let d1 = Desktop::new(&mut OsRng)
        .unwrap()
        .with_request_type(RequestType::MakeCredential);
    let scan1 = h
        .cmd()
        .args(["scan", &d1.qr_uri()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut source = AdvertSource::file(&advert_file);
    let mut ch = d1
        .establish(
            &mut source,
            Duration::from_secs(20),
            &resolver,
            &opts,
            &mut OsRng,
        )
        .await
        .unwrap();
    let user = UserEntity {
        id: b"user-1".to_vec(),
        name: Some("alice@example.com".into()),
        display_name: Some("Alice".into()),
    };
    let (cred, _) = ch.register(&rp, cdh(), user, true).await.unwrap();
    let _ = ch.shutdown().await;
    let o = scan_output(scan1).await;
    assert!(
        o.status.success(),
        "scan 1: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(
        text(&o.stdout).contains("passkey created"),
        "{}",
        text(&o.stdout)
    );
    let mut registered = vec![cred];

    // --- Session 2: a new QR, getAssertion (discoverable), verified against the key.
    let d2 = Desktop::new(&mut OsRng)
        .unwrap()
        .with_request_type(RequestType::GetAssertion);
    let scan2 = h
        .cmd()
        .args(["scan", &d2.qr_uri()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut source = AdvertSource::file(&advert_file);
    let mut ch = d2
        .establish(
            &mut source,
            Duration::from_secs(20),
            &resolver,
            &opts,
            &mut OsRng,
        )
        .await
        .unwrap();
    let (i, resp) = ch
        .authenticate(&rp, &mut registered, cdh(), &[])
        .await
        .unwrap();
    assert_eq!(i, 0);
    assert_eq!(
        resp.user.and_then(|u| u.name).as_deref(),
        Some("alice@example.com")
    );
    let _ = ch.shutdown().await;
    let o = scan_output(scan2).await;
    assert!(
        o.status.success(),
        "scan 2: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(text(&o.stdout).contains("signed in"), "{}", text(&o.stdout));

    // The vault holds the one passkey, used once.
    let o = h.run(&["credentials", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["rp_id"], "example.com");
    assert!(v[0]["last_used_unix"].is_u64());

    // A bad QR is refused with its reason; the daemon carries on.
    let o = h.run(&["scan", "FIDO:/123"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("qr_invalid"),
        "{}",
        text(&o.stderr)
    );

    // SIGTERM: clean exit, socket removed.
    let pid = daemon.0.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = exit_status(daemon).await;
    assert!(status.success(), "daemon exit {status:?}");
    assert!(!socket.exists(), "socket left behind");

    let log = std::fs::read_to_string(&daemon_log).unwrap();
    eprintln!("{log}");
    assert!(log.contains("automatic approval is enabled"), "{log}");
    assert!(
        !log.contains(&d1.qr_uri()) && !log.contains(&d2.qr_uri()),
        "QR URI logged"
    );
    assert!(!log.contains("FIDO:/"), "QR URI logged");
}

/// Interactive approval over the control socket (the test plays `hybridd
/// scan`): a wrong PIN is re-prompted with a notice, the right one passes;
/// a decline ends in `declined` and the desktop sees OPERATION_DENIED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_prompt_wrong_pin_then_decline() {
    let h = Home::new();
    h.init_vault("1234");
    let advert_file = h.path().join("adverts");
    let daemon_log = h.path().join("daemon.log");
    let (_ts, url) = start_tunnel_server(&h);
    let daemon = h
        .cmd()
        .args(["run", "--tunnel-url", &url, "--advert-file"])
        .arg(&advert_file)
        .stderr(std::fs::File::create(&daemon_log).unwrap())
        .spawn()
        .unwrap();
    let mut daemon = Killed(daemon);
    wait_daemon_ready(&mut daemon, &h.socket(), &daemon_log).await;
    let socket = h.socket();
    let rp = RelyingParty::new("example.com", "Example");
    let resolver = Resolver::fixed(&url);
    let opts = ClientOptions::default();

    // Register: wrong PIN, then the right one.
    let d1 = Desktop::new(&mut OsRng)
        .unwrap()
        .with_request_type(RequestType::MakeCredential);
    let mut client = Client::connect(&socket).await.unwrap();
    client
        .send(&ClientMsg::Scan(d1.qr_uri().into()))
        .await
        .unwrap();
    let answers = tokio::spawn(async move {
        let mut prompts = Vec::new();
        loop {
            match client.recv().await.unwrap().unwrap() {
                DaemonMsg::Prompt(p) => {
                    let pin = if prompts.is_empty() { "9999" } else { "1234" };
                    prompts.push(p);
                    client
                        .send(&ClientMsg::Approve {
                            approve: true,
                            pin: Some(pin.to_owned().into()),
                        })
                        .await
                        .unwrap();
                }
                DaemonMsg::Done(d) => return (prompts, d),
                _ => {}
            }
        }
    });
    let mut source = AdvertSource::file(&advert_file);
    let mut ch = d1
        .establish(
            &mut source,
            Duration::from_secs(20),
            &resolver,
            &opts,
            &mut OsRng,
        )
        .await
        .unwrap();
    let user = UserEntity {
        id: b"u".to_vec(),
        name: Some("bob".into()),
        display_name: None,
    };
    let (cred, _) = ch.register(&rp, cdh(), user, true).await.unwrap();
    let _ = ch.shutdown().await;
    let (prompts, done) = answers.await.unwrap();
    assert!(done.ok, "{done:?}");
    assert_eq!(prompts.len(), 2);
    assert_eq!(prompts[0].action.text(), "create a passkey");
    assert_eq!(prompts[0].rp_id, "example.com");
    assert_eq!(prompts[0].user_name.as_deref(), Some("bob"));
    assert!(prompts[0].qr_age_secs.is_some());
    assert!(
        prompts[1].notice.as_deref().unwrap().contains("wrong PIN"),
        "{:?}",
        prompts[1]
    );

    // Sign in, declined.
    let d2 = Desktop::new(&mut OsRng)
        .unwrap()
        .with_request_type(RequestType::GetAssertion);
    let mut client = Client::connect(&socket).await.unwrap();
    client
        .send(&ClientMsg::Scan(d2.qr_uri().into()))
        .await
        .unwrap();
    let answers = tokio::spawn(async move {
        loop {
            match client.recv().await.unwrap().unwrap() {
                DaemonMsg::Prompt(p) => {
                    assert_eq!(p.action.text(), "sign in");
                    client
                        .send(&ClientMsg::Approve {
                            approve: false,
                            pin: None,
                        })
                        .await
                        .unwrap();
                }
                DaemonMsg::Done(d) => return d,
                _ => {}
            }
        }
    });
    let mut source = AdvertSource::file(&advert_file);
    let mut ch = d2
        .establish(
            &mut source,
            Duration::from_secs(20),
            &resolver,
            &opts,
            &mut OsRng,
        )
        .await
        .unwrap();
    let mut registered = vec![cred];
    let r = ch.authenticate(&rp, &mut registered, cdh(), &[]).await;
    assert!(r.is_err(), "a declined sign-in verified");
    let _ = ch.shutdown().await;
    let done = answers.await.unwrap();
    assert!(!done.ok);
    assert_eq!(done.outcome, "declined", "{done:?}");
}
