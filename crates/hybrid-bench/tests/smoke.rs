//! The load generator against our tunnel server in this process, with tiny
//! numbers: every phase runs, nothing fails, every number is produced. (No
//! timing is asserted; the numbers themselves belong in docs/performance.md.)
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use hybrid_bench::tunnel::{run, Metric, Target, TunnelOptions};
use hybrid_tunnel::server::{ServerConfig, TunnelServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_phase_runs_against_our_server() {
    let server = TunnelServer::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_messages_per_side: 100,
        ..ServerConfig::default()
    })
    .await
    .unwrap()
    .spawn();
    let opts = TunnelOptions {
        tunnels: 20,
        relay_tunnels: 5,
        rate: 100,
        duration: Duration::from_millis(300),
        pair_workers: 2,
        pair_duration: Duration::from_millis(100),
        sources: 4,
        settle: Duration::ZERO,
        after_close: Duration::ZERO,
        ..TunnelOptions::default()
    };
    let target = Target {
        addr: server.local_addr(),
        pid: std::process::id(),
    };
    let result = tokio::time::timeout(Duration::from_secs(60), run(target, &opts))
        .await
        .expect("bounded")
        .unwrap();
    assert_eq!(result.failures.total(), 0, "{:?}", result.failures);
    assert_eq!(result.metrics.get(&Metric::TunnelsOpen), Some(&20.0));
    for m in [
        Metric::IdleRssKib,
        Metric::KibPerTunnel,
        Metric::RelayP50Us,
        Metric::RelayP99Us,
        Metric::CpuPerRoundTripUs,
        Metric::PairsPerSec,
    ] {
        assert!(result.metrics.contains_key(&m), "{m:?} missing");
    }
    let m = server.metrics_text();
    assert!(m.contains("hybrid_tunnel_tunnels_paired_total"), "{m}");
    server.shutdown().await;
}
