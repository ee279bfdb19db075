//! `hybridd doctor`'s online tunnel check against a real `hybridd
//! tunnel-server` on loopback (a `/cable/new/` upgrade, closed at once), and
//! against a port nobody listens on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use common::{text, Home};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tunnel_line(out: &str) -> String {
    let lines: Vec<_> = out.lines().filter(|l| l.contains("tunnel:")).collect();
    assert_eq!(lines.len(), 1, "{out}");
    lines[0].to_owned()
}

#[test]
fn doctor_reaches_a_live_tunnel_server() {
    let h = Home::new();
    h.init_vault("1234");
    let mut ts = h
        .cmd()
        .args([
            "tunnel-server",
            "--listen",
            "127.0.0.1:0",
            "--routing-id",
            "a1b2c3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(ts.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let _ts = Killed(ts);
    let o = h.run(&["doctor", "--tunnel-url", url.trim()]);
    let out = text(&o.stdout);
    let line = tunnel_line(&out);
    assert!(line.starts_with("ok   tunnel:"), "{out}");
    assert!(line.contains("reachable"), "{line}");
    // The routing id came back from the server's X-caBLE-Routing-ID header.
    assert!(line.to_lowercase().contains("routing id a1b2c3"), "{line}");
}

#[test]
fn doctor_names_an_unreachable_tunnel_server_and_the_fix() {
    let h = Home::new();
    h.init_vault("1234");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("ws://127.0.0.1:{port}");
    let o = h.run(&["doctor", "--tunnel-url", &url]);
    assert!(!o.status.success());
    let out = text(&o.stdout);
    let line = tunnel_line(&out);
    assert!(line.starts_with("FAIL tunnel:"), "{out}");
    assert!(line.contains(&url), "{line}");
    assert!(out.contains("tunnel_url"), "no fix named:\n{out}");
}
