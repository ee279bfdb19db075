//! Issue 16, "consent and display": a relying party whose rp.name and
//! user.name carry `ESC [2J`, CR, LF and U+202E (the attack string from the
//! issue) cannot rewrite what the person sees — not in the control socket's
//! prompt event, not on the `hybridd scan` terminal, not in `hybridd
//! credentials list` (table or JSON). Through the binary: tunnel server on
//! loopback, the daemon with the file radio, a desktop in the test.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::{cdh, scan_output, start_tunnel_server, text, wait_daemon_ready, Home, Killed};
use hybrid_ctap::types::UserEntity;
use hybrid_ctap::RelyingParty;
use hybrid_initiator::{AdvertSource, Desktop, Resolver};
use hybrid_qr::RequestType;
use hybrid_tunnel::client::ClientOptions;
use hybridd::control::{Client, ClientMsg, DaemonMsg};
use hybridd::peer_text::is_unsafe;
use rand_core::OsRng;

/// The attack: clears the screen, returns to column 0, forges an
/// approval line, then reverses what follows.
const ATTACK: &str = "mallory\u{1b}[2J\rApprove: bank.example\nok\u{202e}evil";

/// Raw control or bidi characters in `out`, line breaks aside (each output
/// line is checked not to be forged separately).
fn raw_unsafe(out: &str) -> Vec<char> {
    out.chars().filter(|&c| c != '\n' && is_unsafe(c)).collect()
}

fn hostile_user(id: &[u8]) -> UserEntity {
    UserEntity {
        id: id.to_vec(),
        name: Some(ATTACK.into()),
        display_name: Some(format!("{ATTACK}\u{9b}2J")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_text_hostile_names_never_reach_prompt_terminal_or_credentials_list() {
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
    let socket = h.socket();
    wait_daemon_ready(&mut daemon, &socket, &daemon_log).await;
    let rp = RelyingParty::new("example.com", ATTACK);
    let resolver = Resolver::fixed(&url);
    let opts = ClientOptions::default();

    // --- The control socket's prompt event: approved, so the hostile
    // names are stored in the vault.
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
                    prompts.push(p);
                    client
                        .send(&ClientMsg::Approve {
                            approve: true,
                            pin: Some("1234".to_owned().into()),
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
    ch.register(&rp, cdh(), hostile_user(b"u1"), true)
        .await
        .unwrap();
    let _ = ch.shutdown().await;
    let (prompts, done) = answers.await.unwrap();
    assert!(done.ok, "{done:?}");
    let [p] = prompts.as_slice() else {
        panic!("{prompts:?}")
    };
    assert_eq!(p.rp_id, "example.com");
    for field in [&p.rp_name, &p.user_name, &p.user_display_name] {
        let field = field.as_deref().unwrap();
        assert!(
            raw_unsafe(field).is_empty() && !field.contains('\n'),
            "{field:?}"
        );
        assert!(field.starts_with("mallory\\x1b[2J\\rApprove"), "{field:?}");
    }
    let described = p.describe();
    assert!(raw_unsafe(&described).is_empty(), "{described:?}");
    assert!(
        described.starts_with("A computer asks to create a passkey\n  site: example.com\n"),
        "{described}"
    );

    // --- The terminal: `hybridd scan` without a controlling terminal
    // (setsid), answering "n" on standard input; the prompt is on stderr.
    let d2 = Desktop::new(&mut OsRng)
        .unwrap()
        .with_request_type(RequestType::MakeCredential);
    let mut scan = std::process::Command::new("setsid");
    scan.arg(env!("CARGO_BIN_EXE_hybridd"))
        .args(["scan", &d2.qr_uri()])
        .env_clear()
        .envs(h.cmd().get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut scan = scan.spawn().unwrap();
    scan.stdin.take().unwrap().write_all(b"n\n").unwrap();
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
    let declined = ch.register(&rp, cdh(), hostile_user(b"u2"), true).await;
    assert!(declined.is_err(), "declined on the terminal, yet created");
    let _ = ch.shutdown().await;
    let o = scan_output(scan).await;
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(!o.status.success(), "{out}{err}");
    assert!(err.contains("  site: example.com\n"), "{err}");
    assert!(
        err.contains("mallory\\x1b[2J\\rApprove: bank.example\\nok\\u{202e}evil"),
        "{err}"
    );
    for stream in [&out, &err] {
        assert!(raw_unsafe(stream).is_empty(), "{stream:?}");
        assert!(
            !stream.lines().any(|l| l.starts_with("Approve: ")),
            "{stream}"
        );
    }

    // --- `hybridd credentials list`: one passkey, one line, nothing raw.
    let o = h.run(&["credentials", "list"]);
    let table = text(&o.stdout);
    assert!(o.status.success(), "{table}{}", text(&o.stderr));
    assert!(raw_unsafe(&table).is_empty(), "{table:?}");
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(
        table.lines().nth(1).unwrap().starts_with("example.com "),
        "{table}"
    );
    let o = h.run(&["credentials", "list", "--json"]);
    let json = text(&o.stdout);
    assert!(raw_unsafe(&json).is_empty(), "{json:?}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    // JSON stays exact: the stored names, escaped only as JSON.
    assert_eq!(v[0]["user_name"], ATTACK);
    assert_eq!(v[0]["rp_name"], ATTACK);
}
