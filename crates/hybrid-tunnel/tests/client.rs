//! Client error surfacing against tiny fake servers and TLS with a test CA,
//! on 127.0.0.1 only.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use hybrid_tunnel::client::{connect_desktop, connect_new, ClientError, ClientOptions};
use hybrid_tunnel::server::{ServerConfig, TlsFiles};
use hybrid_tunnel::{RoutingId, TunnelBase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// A one-shot fake tunnel server: reads one request head and answers with
/// `answer(accept_key)` (or closes without answering when it returns None),
/// then keeps the socket open for a moment.
async fn fake_server(answer: fn(&str) -> Option<String>) -> TunnelBase {
    fake_server_reporting(answer, None).await
}

/// [`fake_server`], handing the bytes of its first read after the answer
/// to `first_read`.
async fn fake_server_reporting(
    answer: fn(&str) -> Option<String>,
    first_read: Option<tokio::sync::oneshot::Sender<Vec<u8>>>,
) -> TunnelBase {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut chunk).await.unwrap();
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let lower = head.to_ascii_lowercase();
        assert!(
            lower.contains("\r\nsec-websocket-protocol: fido.cable\r\n"),
            "{head}"
        );
        assert!(lower.contains("\r\norigin: ws://127.0.0.1:"), "{head}");
        let key = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("sec-websocket-key:"))
            .and_then(|l| l.split_once(':'))
            .unwrap()
            .1
            .trim()
            .to_owned();
        if let Some(response) = answer(&derive_accept_key(key.as_bytes())) {
            s.write_all(response.as_bytes()).await.unwrap();
            // Hold the connection until the client is done with it.
            let mut big = vec![0u8; 64 * 1024];
            let n = s.read(&mut big).await.unwrap_or(0);
            if let Some(tx) = first_read {
                let _ = tx.send(big[..n].to_vec());
            }
        }
    });
    TunnelBase::url(&format!("ws://{addr}"), 0).unwrap()
}

fn switching(accept: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn connection_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let b = TunnelBase::url(&format!("ws://{addr}"), 0).unwrap();
    let e = connect_new(&b, &tid(1), &opts()).await.unwrap_err();
    match &e {
        ClientError::Connect { addr: a, source } => {
            assert_eq!(*a, addr);
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("{other:?}"),
    }
    assert!(e
        .to_string()
        .starts_with("could not connect to tunnel server 127.0.0.1:"));
}

#[tokio::test]
async fn http_statuses() {
    let b =
        fake_server(|_| Some("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into())).await;
    let e = connect_desktop(&b, &RoutingId([1, 2, 3]), &tid(1), &opts())
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::NoSuchTunnel), "{e:?}");

    let b =
        fake_server(|_| Some("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".into())).await;
    let e = connect_new(&b, &tid(1), &opts()).await.unwrap_err();
    assert!(matches!(e, ClientError::BadRequest), "{e:?}");
    assert_eq!(
        e.to_string(),
        "tunnel server refused the request (bad subprotocol/tunnel id)"
    );

    let b = fake_server(|_| Some("HTTP/1.1 410 Gone\r\nContent-Length: 0\r\n\r\n".into())).await;
    let e = connect_new(&b, &tid(1), &opts()).await.unwrap_err();
    assert!(matches!(e, ClientError::ContactGone), "{e:?}");

    let b = fake_server(|_| Some("HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n".into())).await;
    let e = connect_new(&b, &tid(1), &opts()).await.unwrap_err();
    assert!(matches!(e, ClientError::HttpStatus(503)), "{e:?}");
}

#[tokio::test]
async fn subprotocol_not_echoed() {
    let b = fake_server(|k| Some(switching(k, "X-caBLE-Routing-ID: 010203\r\n"))).await;
    let e = connect_new(&b, &tid(1), &opts()).await.unwrap_err();
    assert!(matches!(e, ClientError::NoSubprotocol), "{e:?}");

    let b = fake_server(|k| Some(switching(k, "Sec-WebSocket-Protocol: chat\r\n"))).await;
    let e = connect_new(&b, &tid(1), &opts()).await.unwrap_err();
    assert!(matches!(e, ClientError::NoSubprotocol), "{e:?}");
}

#[tokio::test]
async fn routing_id_header_rules() {
    let b = fake_server(|k| Some(switching(k, "Sec-WebSocket-Protocol: fido.cable\r\n"))).await;
    let e = connect_new(&b, &tid(1), &opts()).await.unwrap_err();
    assert!(matches!(e, ClientError::NoRoutingId), "{e:?}");
    assert_eq!(e.to_string(), "tunnel server did not specify a routing id");

    let b = fake_server(|k| {
        Some(switching(
            k,
            "Sec-WebSocket-Protocol: fido.cable\r\nX-caBLE-Routing-ID: 0102\r\n",
        ))
    })
    .await;
    let e = connect_new(&b, &tid(1), &opts()).await.unwrap_err();
    assert!(
        matches!(e, ClientError::BadRoutingId(ref v) if v == "0102"),
        "{e:?}"
    );

    // Header name case-insensitive, hex either case (microG's spelling).
    let b = fake_server(|k| {
        Some(switching(
            k,
            "Sec-WebSocket-Protocol: fido.cable\r\nx-cable-routing-id: 0a0B0c\r\n",
        ))
    })
    .await;
    let (_t, rid) = connect_new(&b, &tid(1), &opts()).await.unwrap();
    assert_eq!(rid, RoutingId([10, 11, 12]));
}

/// `send_all` puts its messages in one write: the server's first read holds
/// both frames (the phone's handshake reply and post-handshake message
/// leave in one TCP segment, docs/performance.md, "Phone: sixth round").
#[tokio::test]
async fn send_all_writes_its_messages_together() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let b = fake_server_reporting(
        |k| {
            Some(switching(
                k,
                "Sec-WebSocket-Protocol: fido.cable\r\nX-caBLE-Routing-ID: 0a0b0c\r\n",
            ))
        },
        Some(tx),
    )
    .await;
    let (mut t, _) = connect_new(&b, &tid(1), &opts()).await.unwrap();
    t.send_all(vec![vec![1; 10], vec![2; 20]]).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    // Two masked binary frames: 2 header bytes, 4 mask bytes, the payload.
    assert_eq!(got.len(), (2 + 4 + 10) + (2 + 4 + 20), "{got:02x?}");
    assert_eq!(&got[..2], &[0x82, 0x80 | 10]);
    assert_eq!(&got[16..18], &[0x82, 0x80 | 20]);
}

#[tokio::test]
async fn closed_early() {
    let b = fake_server(|_| None).await;
    let e = connect_new(&b, &tid(1), &opts()).await.unwrap_err();
    assert!(matches!(e, ClientError::ClosedEarly), "{e:?}");
}

/// Under a paused clock: the client's own timeout is the only timer, so
/// virtual time moves straight to it.
#[tokio::test(start_paused = true)]
async fn timeout_when_the_server_never_answers() {
    // Accepts TCP (the kernel does) but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = TunnelBase::url(&format!("ws://{}", listener.local_addr().unwrap()), 0).unwrap();
    let opts = ClientOptions {
        connect_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let started = tokio::time::Instant::now();
    let e = connect_new(&b, &tid(1), &opts).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Timeout(d) if d == Duration::from_millis(300)),
        "{e:?}"
    );
    // Virtual time: exactly the configured bound passed, no more.
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    drop(listener);
}

#[tokio::test]
async fn bad_urls_and_ca_file() {
    let b = TunnelBase::Url {
        base: "ws://".into(),
        domain_id: 0,
    };
    let e = connect_new(&b, &tid(1), &opts()).await.unwrap_err();
    assert!(matches!(e, ClientError::BadUrl(_)), "{e:?}");

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let b = TunnelBase::url("wss://127.0.0.1:1", 0).unwrap();
    let opts = ClientOptions {
        extra_ca_file: Some(empty),
        ..opts()
    };
    let e = connect_new(&b, &tid(1), &opts).await.unwrap_err();
    assert!(matches!(e, ClientError::CaFile { .. }), "{e:?}");
}

/// A test CA and a server certificate for 127.0.0.1 / localhost it signed,
/// written as PEM files into `dir`. Returns (ca, cert, key) paths.
fn make_pki(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "hybridd test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "hybridd test tunnel");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();

    let (ca_path, cert_path, key_path) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, leaf.pem()).unwrap();
    std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
    (ca_path, cert_path, key_path)
}

#[tokio::test]
async fn wss_with_test_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_pki(dir.path());
    let config = ServerConfig {
        tls: Some(TlsFiles { cert, key }),
        ..loopback_config()
    };
    let server = start(config).await;
    assert!(server.base_url().starts_with("wss://127.0.0.1:"));
    let b = base(&server);

    // Trusting the test CA (and not the web roots): a full relay over TLS.
    let trusting = ClientOptions {
        extra_ca_file: Some(ca),
        webpki_roots: false,
        ..opts()
    };
    let (mut phone, rid) = within(connect_new(&b, &tid(1), &trusting)).await.unwrap();
    let mut desktop = within(connect_desktop(&b, &rid, &tid(1), &trusting))
        .await
        .unwrap();
    phone.send(b"over tls".to_vec()).await.unwrap();
    assert_eq!(
        within(desktop.recv()).await.unwrap(),
        Some(b"over tls".to_vec())
    );
    desktop.send(vec![0xaa; 1000]).await.unwrap();
    assert_eq!(within(phone.recv()).await.unwrap(), Some(vec![0xaa; 1000]));
    within(phone.close()).await.unwrap();
    assert_eq!(within(desktop.recv()).await.unwrap(), None);

    // Not trusting it: a TLS error, distinct from the others.
    let e = within(connect_new(&b, &tid(2), &opts())).await.unwrap_err();
    match &e {
        ClientError::Tls { host, .. } => assert_eq!(host, "127.0.0.1"),
        other => panic!("{other:?}"),
    }
    let text = e.to_string();
    assert!(text.contains("invalid peer certificate"), "{text}");

    // Plain ws:// against the TLS port is not a TLS error on our side but a failed upgrade.
    let plain = TunnelBase::url(&format!("ws://{}", server.local_addr()), 0).unwrap();
    let e = within(connect_new(&plain, &tid(3), &opts()))
        .await
        .unwrap_err();
    assert!(!matches!(e, ClientError::Tls { .. }), "{e:?}");

    let m = server.metrics_text();
    assert!(
        metric(
            &m,
            "hybrid_tunnel_rejections_total{reason=\"tls_handshake\"}"
        ) >= 1
    );
    server.shutdown().await;
}

/// `plain_listen`: a phone on plain `ws://` and a desktop on `wss://` meet
/// in the same tunnel table (the local-browser set-up of docs/interop.md).
#[tokio::test]
async fn plain_listener_shares_tunnels_with_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_pki(dir.path());
    let config = ServerConfig {
        tls: Some(TlsFiles { cert, key }),
        plain_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..loopback_config()
    };
    let server = start(config).await;
    let plain_url = server.plain_base_url().unwrap();
    assert!(plain_url.starts_with("ws://127.0.0.1:"), "{plain_url}");
    assert_ne!(plain_url, format!("ws://{}", server.local_addr()));
    let plain = TunnelBase::url(&plain_url, 0).unwrap();
    let tls = base(&server);
    let trusting = ClientOptions {
        extra_ca_file: Some(ca),
        webpki_roots: false,
        ..opts()
    };

    let (mut phone, rid) = within(connect_new(&plain, &tid(9), &opts())).await.unwrap();
    let mut desktop = within(connect_desktop(&tls, &rid, &tid(9), &trusting))
        .await
        .unwrap();
    phone.send(b"plain to tls".to_vec()).await.unwrap();
    assert_eq!(
        within(desktop.recv()).await.unwrap(),
        Some(b"plain to tls".to_vec())
    );
    desktop.send(vec![1, 2, 3]).await.unwrap();
    assert_eq!(within(phone.recv()).await.unwrap(), Some(vec![1, 2, 3]));

    // The plain listener does not speak TLS, and the TLS one does not speak plain.
    let e = within(connect_new(
        &TunnelBase::url(&plain_url.replace("ws://", "wss://"), 0).unwrap(),
        &tid(10),
        &trusting,
    ))
    .await
    .unwrap_err();
    assert!(matches!(e, ClientError::Tls { .. }), "{e:?}");
    server.shutdown().await;
}
