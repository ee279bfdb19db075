//! `hybridd scan --standalone` on a real terminal: the ceremony runs in the
//! scan process, the question and the PIN prompt go to the controlling
//! terminal, the answer "y" and the PIN are typed there, and the PIN is not
//! echoed. The terminal is a pseudo-terminal made by `script(1)` (util-linux,
//! Debian package bsdutils; the test is skipped with a message where it is
//! missing, and fails instead under `HYBRIDD_REQUIRE_TOOLS=1`, as in CI). The desktop is
//! hybrid-initiator in the test; the tunnel is `hybridd tunnel-server`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{start_tunnel_server, text, Home, Killed};
use hybrid_ctap::types::UserEntity;
use hybrid_ctap::RelyingParty;
use hybrid_initiator::{AdvertSource, Desktop, Resolver};
use hybrid_qr::RequestType;
use hybrid_tunnel::client::ClientOptions;
use rand_core::OsRng;

/// Shell-quotes one argument for `script -c`.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Waits until the terminal output contains `needle`.
fn wait_for(out: &Arc<Mutex<Vec<u8>>>, needle: &str, from: usize) -> usize {
    let t0 = Instant::now();
    loop {
        let buf = out.lock().unwrap().clone();
        let s = text(&buf);
        if let Some(i) = s[from.min(s.len())..].find(needle) {
            return from + i + needle.len();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "terminal never showed {needle:?}; it showed:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_scan_asks_on_the_terminal_without_echoing_the_pin() {
    if !common::tool_or_skip(
        "standalone_scan_asks_on_the_terminal_without_echoing_the_pin",
        "script",
        "bsdutils",
    ) {
        return;
    }
    const PIN: &str = "97531";
    let h = Home::new();
    h.init_vault(PIN);
    let advert_file = h.path().join("adverts");

    let (_ts, url) = start_tunnel_server(&h);

    let desktop = Desktop::new(&mut OsRng)
        .unwrap()
        .with_request_type(RequestType::MakeCredential);
    let inner = [
        env!("CARGO_BIN_EXE_hybridd"),
        "scan",
        "--standalone",
        &desktop.qr_uri(),
        "--tunnel-url",
        &url,
        "--advert-file",
        advert_file.to_str().unwrap(),
    ]
    .iter()
    .map(|a| q(a))
    .collect::<Vec<_>>()
    .join(" ");
    // `script` gives the command a new session whose controlling terminal
    // is the pty; what the test writes to script's stdin is typed there.
    let template = h.cmd();
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-f", "-c", &inner, "/dev/null"]);
    script.env_clear();
    for (k, v) in template.get_envs() {
        if let Some(v) = v {
            script.env(k, v);
        }
    }
    script.env("RUST_LOG", "warn");
    let child = script
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let mut stdin = child.0.stdin.take().unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.0.stdout.take().unwrap();
    let sink = Arc::clone(&out);
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });

    // The person at the terminal: answers the question, then types the PIN.
    let typist_out = Arc::clone(&out);
    let typist = std::thread::spawn(move || {
        let at = wait_for(&typist_out, "Approve? [y/N]", 0);
        stdin.write_all(b"y\n").unwrap();
        wait_for(&typist_out, "PIN: ", at);
        stdin.write_all(format!("{PIN}\n").as_bytes()).unwrap();
        stdin
    });

    let rp = RelyingParty::new("example.com", "Example");
    let mut source = AdvertSource::file(&advert_file);
    let mut ch = desktop
        .establish(
            &mut source,
            Duration::from_secs(30),
            &Resolver::fixed(&url),
            &ClientOptions::default(),
            &mut OsRng,
        )
        .await
        .unwrap();
    let user = UserEntity {
        id: b"tty-user".to_vec(),
        name: Some("tty@example.com".into()),
        display_name: Some("TTY".into()),
    };
    let (cred, _) = ch.register(&rp, [7u8; 32], user, true).await.unwrap();
    let _ = ch.shutdown().await;
    let _stdin = typist.join().unwrap();

    let status = tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        loop {
            if let Some(s) = child.0.try_wait().unwrap() {
                return s;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "scan did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let shown = text(&out.lock().unwrap());
    assert!(status.success(), "scan --standalone: {status:?}\n{shown}");
    assert!(!cred.id.is_empty());
    // What was asked, on the terminal.
    for needle in ["example.com", "tty@example.com", "Approve? [y/N]", "PIN: "] {
        assert!(shown.contains(needle), "missing {needle:?} in:\n{shown}");
    }
    assert!(
        shown.to_lowercase().contains("create"),
        "no 'create' in:\n{shown}"
    );
    // The answer "y" is echoed like any typed line; the PIN is not.
    assert!(!shown.contains(PIN), "the PIN was echoed:\n{shown}");
    assert!(shown.contains("passkey created"), "{shown}");
}

/// With `HYBRIDD_REQUIRE_TOOLS=1` (CI), a missing `script(1)` fails the
/// terminal test instead of skipping it silently (issue 16).
#[test]
fn script_missing_is_an_error_when_tools_are_required() {
    let (failed, output) =
        common::run_without_tools("standalone_scan_asks_on_the_terminal_without_echoing_the_pin");
    assert!(
        failed && output.contains("script is not installed"),
        "the terminal test passed without script(1):\n{output}"
    );
}
