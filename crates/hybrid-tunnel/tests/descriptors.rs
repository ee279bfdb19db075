//! The tunnel server when the process runs out of file descriptors: accept
//! fails with EMFILE, the server backs off instead of spinning, counts each
//! failure in `/metrics`, and serves again once descriptors are free.
//!
//! Its own test binary (one process, one test): it lowers this process's
//! RLIMIT_NOFILE. Under a paused clock moved on in 1 ms steps, the count of
//! failures over 10 s of virtual time measures the backoff exactly (a busy
//! loop would starve the test task: it would hang rather than pass).
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use hybrid_tunnel::server::ServerConfig;
use rustix::process::{getrlimit, setrlimit, Resource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn accept_errors(m: &str) -> u64 {
    metric(
        m,
        "hybrid_tunnel_accept_errors_total{reason=\"descriptors\"}",
    )
}

/// The descriptors open now (numbers).
fn open_fds() -> Vec<u64> {
    let mut fds: Vec<u64> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd must be readable for this test")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .collect();
    // The directory listing itself had one open.
    fds.sort_unstable();
    fds
}

/// Moves the paused clock on by `total` in 1 ms steps, so that every timer
/// in between fires at its own virtual time (one jump would fire them all
/// at once).
async fn pass(total: Duration) {
    let mut left = total;
    while !left.is_zero() {
        let step = left.min(Duration::from_millis(1));
        tokio::time::advance(step).await;
        left -= step;
    }
}

/// Runs the server (and this test's clients) until `cond` holds; bounded
/// by 10 s of virtual time.
async fn until(mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        pass(Duration::from_millis(1)).await;
    }
    panic!("condition not reached within 10 s of virtual time");
}

#[tokio::test(start_paused = true)]
async fn accept_backs_off_when_descriptors_run_out() {
    let server = start(ServerConfig {
        max_connections: Some(100_000),
        ..loopback_config()
    })
    .await;
    let saved = getrlimit(Resource::Nofile);
    // An odd number of free descriptors (holes below the highest count
    // too): client/server pairs take two each, so the last one goes to a
    // client and the server's accept fails.
    let fds = open_fds();
    let highest = fds.last().copied().unwrap();
    let mut limit = highest + 1 + 7;
    // (`fds` includes the listing's own descriptor, closed by now: one more free.)
    let free = limit - (fds.len() as u64 - 1);
    if free % 2 == 0 {
        limit += 1;
    }
    let mut lowered = saved;
    lowered.current = Some(limit);
    setrlimit(Resource::Nofile, lowered).unwrap();

    // Clients until the server's accept fails (each connection takes one
    // descriptor here and one in the server, which shares this process).
    let mut clients = Vec::new();
    for _ in 0..2 * limit {
        let before = server.metrics_text();
        let Ok(c) = tokio::net::TcpStream::connect(server.local_addr()).await else {
            break;
        };
        clients.push(c);
        let total = metric(&before, "hybrid_tunnel_connections_total");
        until(|| {
            let m = server.metrics_text();
            accept_errors(&m) > 0 || metric(&m, "hybrid_tunnel_connections_total") > total
        })
        .await;
        if accept_errors(&server.metrics_text()) > 0 {
            break;
        }
    }
    let first = accept_errors(&server.metrics_text());
    assert!(first >= 1, "accept never failed");

    // 10 s with a connection still waiting in the backlog: pauses of
    // 10 ms doubling to 1 s allow about 16 attempts, a busy loop millions.
    pass(Duration::from_secs(10)).await;
    let failures = accept_errors(&server.metrics_text()) - first;
    assert!(
        (5..=20).contains(&failures),
        "{failures} failed accepts in 10 s"
    );

    // Descriptors back: the server serves again.
    setrlimit(Resource::Nofile, saved).unwrap();
    let mut c = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), c.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(out.starts_with(b"HTTP/1.1 200 "), "{out:?}");
    drop(clients);
    server.shutdown().await;
}
