//! Scale-out with an existing load balancer (issue 13; docs/tunnel-server.md
//! "Several instances behind one balancer"): three `hybridd tunnel-server`
//! processes, each with its own routing id, behind Debian's HAProxy running
//! the shipped `dist/haproxy/hybridd-tunnel.cfg` (TLS terminated there,
//! private ports through the environment), two phones (`hybridd run
//! --approval auto` with the file radio, fed by `hybridd scan`) and desktops
//! in the test (hybrid-initiator, verified as a relying party).
//!
//! * ceremonies through the balancer land on every instance;
//! * one instance stopped mid-ceremony: its tunnel ends with a clear reason
//!   (1001 "server shutting down" reaches the desktop through the proxy),
//!   a ceremony on another instance at the same time completes;
//! * new ceremonies go to the live instances; a desktop asking for the
//!   stopped instance's routing id gets 503 from the balancer.
//!
//! Needs `haproxy` (Debian package). Without it the test says so loudly and
//! passes, unless `HYBRIDD_REQUIRE_TOOLS=1` (set by .ci/run), where it fails.
// Helpers outside #[test] fns are not covered by clippy.toml's test exemptions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{cdh, scan_output, start_tunnel_server_with, text, wait_daemon_ready, Home, Killed};
use hybrid_ctap::types::UserEntity;
use hybrid_ctap::{RegisteredCredential, RelyingParty};
use hybrid_initiator::{AdvertSource, Channel, Desktop, Resolver};
use hybrid_qr::RequestType;
use hybrid_tunnel::client::{connect_desktop, ClientOptions};
use hybrid_tunnel::{RoutingId, TunnelBase, TunnelId};
use rand_core::OsRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUTING_IDS: [&str; 3] = ["0A0001", "0A0002", "0A0003"];

/// A test CA and, for `localhost` / 127.0.0.1, the certificate and key
/// HAProxy serves (one PEM file, as its `crt` wants). Returns (ca, bundle).
fn make_pki(dir: &Path) -> (PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "hybridd balancer test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "hybridd balancer test");
    let leaf = params.signed_by(&key, &ca).unwrap();
    let (ca_path, bundle) = (dir.join("ca.pem"), dir.join("haproxy.pem"));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&bundle, format!("{}{}", leaf.pem(), key.serialize_pem())).unwrap();
    (ca_path, bundle)
}

/// One instance's metric, read from its own /metrics (not through the proxy).
async fn metric(instance: &str, series: &str) -> u64 {
    let mut s = tokio::net::TcpStream::connect(instance).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut body))
        .await
        .unwrap()
        .unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} not in {body}"))
        .trim()
        .parse()
        .unwrap()
}

async fn paired_per_instance(instances: &[String]) -> Vec<u64> {
    let mut v = Vec::new();
    for i in instances {
        v.push(metric(i, "hybrid_tunnel_tunnels_paired_total").await);
    }
    v
}

async fn open_per_instance(instances: &[String]) -> Vec<u64> {
    let mut v = Vec::new();
    for i in instances {
        v.push(metric(i, "hybrid_tunnel_tunnels_open").await);
    }
    v
}

/// A phone: `hybridd run` in its own home, file radio, automatic approval.
struct Phone {
    home: Home,
    adverts: PathBuf,
    _daemon: Killed,
}

impl Phone {
    async fn start(base: &str, ca: &Path) -> Phone {
        let home = Home::new();
        home.init_vault("1234");
        let pin = home.pin_file("auto-pin", "1234");
        let adverts = home.path().join("adverts");
        let log = home.path().join("daemon.log");
        let daemon = home
            .cmd()
            .args(["run", "--tunnel-url", base, "--extra-ca"])
            .arg(ca)
            .arg("--advert-file")
            .arg(&adverts)
            .args(["--approval", "auto", "--pin-file"])
            .arg(&pin)
            .args(["--wait-for-desktop-secs", "30"])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut daemon = Killed(daemon);
        wait_daemon_ready(&mut daemon, &home.socket(), &log).await;
        Phone {
            home,
            adverts,
            _daemon: daemon,
        }
    }

    /// `hybridd scan` of a new QR and the desktop's channel to this phone.
    async fn open(
        &self,
        kind: RequestType,
        resolver: &Resolver,
        opts: &ClientOptions,
    ) -> (std::process::Child, Channel) {
        let desktop = Desktop::new(&mut OsRng).unwrap().with_request_type(kind);
        let scan = self
            .home
            .cmd()
            .args(["scan", &desktop.qr_uri()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut source = AdvertSource::file(&self.adverts);
        let ch = desktop
            .establish(
                &mut source,
                Duration::from_secs(20),
                resolver,
                opts,
                &mut OsRng,
            )
            .await
            .unwrap();
        (scan, ch)
    }
}

fn user(n: u8) -> UserEntity {
    UserEntity {
        id: vec![n; 8],
        name: Some(format!("user{n}@example.com")),
        display_name: None,
    }
}

async fn assert_scan_ok(scan: std::process::Child, what: &str) {
    let o = scan_output(scan).await;
    assert!(
        o.status.success(),
        "{what}: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceremonies_through_haproxy_reach_every_instance_and_survive_one_stopping() {
    if !common::tool_or_skip("balancer", "haproxy", "haproxy") {
        return;
    }
    let lab = Home::new();
    let (ca, bundle) = make_pki(lab.path());
    let conf = lab.path().join("tunnel-server.toml");
    std::fs::write(&conf, "trusted_proxies = [\"127.0.0.1\"]\n").unwrap();
    let mut servers = Vec::new();
    let mut instances = Vec::new();
    for rid in ROUTING_IDS {
        let (ts, url) = start_tunnel_server_with(
            &lab,
            &["--routing-id", rid, "--config", conf.to_str().unwrap()],
        );
        instances.push(url.trim_start_matches("ws://").to_owned());
        servers.push(Some(ts));
    }

    // The balancer's listening socket is made here and handed to HAProxy
    // as its stdin (`bind fd@0`): it accepts from the first moment, no
    // waiting for HAProxy to come up.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../dist/haproxy/hybridd-tunnel.cfg"
    );
    let haproxy_log = lab.path().join("haproxy.log");
    let haproxy_cmd = |args: &[&str], bind: &str| {
        let mut c = std::process::Command::new("haproxy");
        c.args(args)
            .arg(cfg)
            .env(
                "CABLE_BIND",
                format!("{bind} ssl crt {} alpn http/1.1", bundle.display()),
            )
            .env("CABLE_TUNNEL_1", &instances[0])
            .env("CABLE_TUNNEL_2", &instances[1])
            .env("CABLE_TUNNEL_3", &instances[2]);
        c
    };
    let check = haproxy_cmd(&["-c", "-f"], "127.0.0.1:443")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "the shipped HAProxy configuration does not load: {}",
        text(&check.stderr)
    );
    let haproxy = haproxy_cmd(&["-db", "-f"], "fd@0")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(listener)))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&haproxy_log).unwrap())
        .spawn()
        .unwrap();
    let _haproxy = Killed(haproxy);

    let base = format!("wss://localhost:{port}");
    let resolver = Resolver::fixed(&base);
    let opts = ClientOptions {
        extra_ca_file: Some(ca.clone()),
        webpki_roots: false,
        ..ClientOptions::default()
    };
    let rp = RelyingParty::new("example.com", "Example");
    let (p1, p2) = tokio::join!(Phone::start(&base, &ca), Phone::start(&base, &ca));

    // --- Three ceremonies, one after the other: one on each instance.
    let mut creds: Vec<RegisteredCredential> = Vec::new();
    for n in 0..3u8 {
        let (scan, mut ch) = p1.open(RequestType::MakeCredential, &resolver, &opts).await;
        let (cred, _) = ch.register(&rp, cdh(), user(n), true).await.unwrap();
        creds.push(cred);
        let _ = ch.shutdown().await;
        assert_scan_ok(scan, "registration through the balancer").await;
    }
    let paired = paired_per_instance(&instances).await;
    assert!(
        paired.iter().all(|&n| n >= 1),
        "every instance carried a ceremony: {paired:?}"
    );

    // --- Two ceremonies at once, on two instances; one instance stops.
    let (scan1, mut ch1) = p1.open(RequestType::GetAssertion, &resolver, &opts).await;
    let open = open_per_instance(&instances).await;
    let x = open
        .iter()
        .position(|&n| n == 1)
        .expect("ceremony 1's instance");
    let (scan2, mut ch2) = p2.open(RequestType::MakeCredential, &resolver, &opts).await;
    let open = open_per_instance(&instances).await;
    let y = open
        .iter()
        .enumerate()
        .position(|(i, &n)| i != x && n == 1)
        .expect("ceremony 2 went to another instance");

    let stopped = servers[x].take().unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &stopped.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    // Ceremony 1's tunnel ends, and the desktop is told why.
    assert!(
        ch1.wait_closed(Duration::from_secs(10)).await,
        "tunnel 1 not closed"
    );
    assert_eq!(ch1.close_reason(), Some((1001, "server shutting down")));
    let o = scan_output(scan1).await;
    assert!(
        !o.status.success(),
        "phone 1 must fail: {}",
        text(&o.stdout)
    );
    eprintln!(
        "phone 1 after its tunnel server stopped: {}",
        text(&o.stderr).trim()
    );
    drop(stopped);

    // Ceremony 2 carries on, on its instance.
    assert_eq!(metric(&instances[y], "hybrid_tunnel_tunnels_open").await, 1);
    ch2.register(&rp, cdh(), user(9), true).await.unwrap();
    let _ = ch2.shutdown().await;
    assert_scan_ok(scan2, "the ceremony on a live instance").await;

    // --- New tunnels go to the live instances.
    let live: Vec<String> = instances
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != x)
        .map(|(_, a)| a.clone())
        .collect();
    let before: u64 = paired_per_instance(&live).await.iter().sum();
    for _ in 0..3 {
        let (scan, mut ch) = p1.open(RequestType::GetAssertion, &resolver, &opts).await;
        let (i, _) = ch.authenticate(&rp, &mut creds, cdh(), &[]).await.unwrap();
        assert!(i < creds.len());
        let _ = ch.shutdown().await;
        assert_scan_ok(scan, "a ceremony after one instance stopped").await;
    }
    let after: u64 = paired_per_instance(&live).await.iter().sum();
    assert_eq!(
        after - before,
        3,
        "the live instances carried the new ceremonies"
    );

    // A desktop asking for the stopped instance: the balancer answers 503.
    let rid = RoutingId::from_header(ROUTING_IDS[x]).unwrap();
    let e = connect_desktop(
        &TunnelBase::url(&base, 0).unwrap(),
        &rid,
        &TunnelId([7; 16]),
        &opts,
    )
    .await
    .unwrap_err();
    assert_eq!(e.http_status(), Some(503), "{e}");
}
