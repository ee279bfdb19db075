//! `hybridd doctor`'s online tunnel check against a real `hybridd
//! tunnel-server` on loopback (a `/cable/new/` upgrade, closed at once), and
//! against a port nobody listens on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{start_tunnel_server_with, text, Home};

fn tunnel_line(out: &str) -> String {
    let lines: Vec<_> = out.lines().filter(|l| l.contains("tunnel:")).collect();
    assert_eq!(lines.len(), 1, "{out}");
    lines[0].to_owned()
}

#[test]
fn doctor_reaches_a_live_tunnel_server() {
    let h = Home::new();
    h.init_vault("1234");
    let (_ts, url) = start_tunnel_server_with(&h, &["--routing-id", "a1b2c3"]);
    let o = h.run(&["doctor", "--tunnel-url", &url]);
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
