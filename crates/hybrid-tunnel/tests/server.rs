//! The tunnel server driven by our client, on 127.0.0.1 only.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use hybrid_tunnel::client::{connect_desktop, connect_new, ClientError};
use hybrid_tunnel::server::ServerConfig;
use hybrid_tunnel::{RoutingId, TunnelId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn relay_both_ways_in_order() {
    let server = start(loopback_config()).await;
    let b = base(&server);
    let (mut phone, rid) = within(connect_new(&b, &tid(1), &opts())).await.unwrap();
    assert_eq!(rid, server.routing_id());

    // Queued before the desktop arrives.
    for i in 0..3u8 {
        phone.send(vec![i; 81]).await.unwrap();
    }
    let mut desktop = within(connect_desktop(&b, &rid, &tid(1), &opts()))
        .await
        .unwrap();
    for i in 0..3u8 {
        assert_eq!(within(desktop.recv()).await.unwrap(), Some(vec![i; 81]));
    }
    for i in 10..15u8 {
        desktop.send(vec![i; usize::from(i)]).await.unwrap();
    }
    for i in 10..15u8 {
        assert_eq!(
            within(phone.recv()).await.unwrap(),
            Some(vec![i; usize::from(i)])
        );
    }
    phone.send(Vec::new()).await.unwrap();
    assert_eq!(within(desktop.recv()).await.unwrap(), Some(Vec::new()));

    // One side closing closes the other.
    within(desktop.close()).await.unwrap();
    assert_eq!(within(phone.recv()).await.unwrap(), None);
    assert_eq!(phone.close_reason().map(|r| r.0), Some(1000));

    let m = server.metrics_text();
    assert_eq!(metric(&m, "hybrid_tunnel_messages_relayed_total"), 9);
    assert_eq!(
        metric(&m, "hybrid_tunnel_bytes_relayed_total"),
        3 * 81 + 10 + 11 + 12 + 13 + 14
    );
    server.shutdown().await;
}

#[tokio::test]
async fn routing_id_header_round_trip() {
    let config = ServerConfig {
        routing_id: Some(RoutingId([0x0a, 0xbc, 0xde])),
        ..loopback_config()
    };
    let server = start(config).await;
    let (_phone, rid) = within(connect_new(&base(&server), &tid(2), &opts()))
        .await
        .unwrap();
    assert_eq!(rid, RoutingId([0x0a, 0xbc, 0xde]));

    // On the wire: 101, the subprotocol echoed and upper-case hex (§4.2).
    let path = format!("/cable/new/{}", "cd".repeat(16));
    let head = raw_http(&server, &upgrade_request(&path, Some("fido.cable"))).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("\r\nSec-WebSocket-Protocol: fido.cable\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nX-caBLE-Routing-ID: 0ABCDE\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn refusals() {
    let server = start(loopback_config()).await;
    let t = "ab".repeat(16);
    let rid = server.routing_id().to_hex();

    // 400 without the subprotocol, on both endpoints (§4.2).
    let r = raw_http(&server, &upgrade_request(&format!("/cable/new/{t}"), None)).await;
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    let r = raw_http(
        &server,
        &upgrade_request(&format!("/cable/new/{t}"), Some("chat")),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    let r = raw_http(
        &server,
        &upgrade_request(&format!("/cable/connect/{rid}/{t}"), None),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    // Malformed tunnel id.
    let r = raw_http(
        &server,
        &upgrade_request("/cable/new/abcd", Some("fido.cable")),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    // Unknown path, wrong method, not a WebSocket upgrade.
    assert!(get(&server, "/nope").await.starts_with("HTTP/1.1 404 "));
    assert!(get(&server, "/cable/contact/AAAA")
        .await
        .starts_with("HTTP/1.1 404 "));
    let r = raw_http(
        &server,
        "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
    assert!(get(&server, &format!("/cable/new/{t}"))
        .await
        .starts_with("HTTP/1.1 400 "));
    // Garbage and an oversized head.
    assert!(raw_http(&server, "\x01\x02\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 400 "));
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    assert!(raw_http(&server, &big).await.starts_with("HTTP/1.1 431 "));

    // 404 for connect with no phone and with another instance's routing id.
    let b = base(&server);
    let e = within(connect_desktop(&b, &server.routing_id(), &tid(3), &opts()))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::NoSuchTunnel), "{e:?}");
    let (_phone, rid) = within(connect_new(&b, &tid(3), &opts())).await.unwrap();
    let other = RoutingId([rid.0[0] ^ 1, rid.0[1], rid.0[2]]);
    let e = within(connect_desktop(&b, &other, &tid(3), &opts()))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::NoSuchTunnel), "{e:?}");
    assert_eq!(e.http_status(), Some(404));

    // A second phone on the same tunnel id, a second desktop: 409.
    let e = within(connect_new(&b, &tid(3), &opts())).await.unwrap_err();
    assert!(matches!(e, ClientError::HttpStatus(409)), "{e:?}");
    let _desktop = within(connect_desktop(&b, &rid, &tid(3), &opts()))
        .await
        .unwrap();
    let e = within(connect_desktop(&b, &rid, &tid(3), &opts()))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::HttpStatus(409)), "{e:?}");

    let m = server.metrics_text();
    assert_eq!(
        metric(
            &m,
            "hybrid_tunnel_rejections_total{reason=\"no_subprotocol\"}"
        ),
        3
    );
    assert_eq!(
        metric(
            &m,
            "hybrid_tunnel_rejections_total{reason=\"no_such_tunnel\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "hybrid_tunnel_rejections_total{reason=\"wrong_routing_id\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "hybrid_tunnel_rejections_total{reason=\"duplicate_tunnel\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "hybrid_tunnel_rejections_total{reason=\"already_paired\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "hybrid_tunnel_rejections_total{reason=\"not_websocket\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "hybrid_tunnel_rejections_total{reason=\"bad_tunnel_id\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "hybrid_tunnel_rejections_total{reason=\"head_too_large\"}"
        ),
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn text_frame_ends_both() {
    let server = start(loopback_config()).await;
    let b = base(&server);
    let (mut phone, rid) = within(connect_new(&b, &tid(4), &opts())).await.unwrap();
    let mut desktop = within(raw_ws(&b.connect_url(&rid, &tid(4)).unwrap())).await;
    desktop.send(Message::text("hello")).await.unwrap();
    assert_eq!(within(phone.recv()).await.unwrap(), None);
    assert_eq!(phone.close_reason().map(|r| r.0), Some(1003));
    match within(desktop.next()).await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1003),
        other => panic!("desktop got {other:?}"),
    }
    let m = server.metrics_text();
    assert_eq!(
        metric(
            &m,
            "hybrid_tunnel_tunnels_ended_total{reason=\"text_frame\"}"
        ),
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn text_frame_from_waiting_phone_ends_tunnel() {
    let server = start(loopback_config()).await;
    let b = base(&server);
    let mut phone = within(raw_ws(&b.new_url(&tid(5)).unwrap())).await;
    phone.send(Message::text("hello")).await.unwrap();
    match within(phone.next()).await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1003),
        other => panic!("phone got {other:?}"),
    }
    // The tunnel is gone: a desktop finds nothing.
    let e = within(connect_desktop(&b, &server.routing_id(), &tid(5), &opts()))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::NoSuchTunnel), "{e:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn oversize_ends_both() {
    let server = start(loopback_config()).await;
    let b = base(&server);
    let (mut phone, rid) = within(connect_new(&b, &tid(6), &opts())).await.unwrap();
    let mut desktop = within(connect_desktop(&b, &rid, &tid(6), &opts()))
        .await
        .unwrap();
    // Exactly the limit passes, one more byte ends the tunnel.
    desktop.send(vec![7; 16 * 1024]).await.unwrap();
    assert_eq!(
        within(phone.recv()).await.unwrap().map(|m| m.len()),
        Some(16 * 1024)
    );
    desktop.send(vec![7; 16 * 1024 + 1]).await.unwrap();
    assert_eq!(within(phone.recv()).await.unwrap(), None);
    assert_eq!(phone.close_reason().map(|r| r.0), Some(1009));
    assert!(matches!(within(desktop.recv()).await, Ok(None) | Err(_)));
    let m = server.metrics_text();
    assert_eq!(
        metric(&m, "hybrid_tunnel_tunnels_ended_total{reason=\"oversize\"}"),
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn too_many_messages_ends_both() {
    let config = ServerConfig {
        max_messages_per_side: 3,
        ..loopback_config()
    };
    let server = start(config).await;
    let b = base(&server);
    let (mut phone, rid) = within(connect_new(&b, &tid(7), &opts())).await.unwrap();
    let mut desktop = within(connect_desktop(&b, &rid, &tid(7), &opts()))
        .await
        .unwrap();
    // The phone's queued-before-pairing messages would count the same way;
    // here the desktop exceeds its budget of 3.
    for i in 0..3u8 {
        desktop.send(vec![i]).await.unwrap();
        assert_eq!(within(phone.recv()).await.unwrap(), Some(vec![i]));
    }
    desktop.send(vec![3]).await.unwrap();
    assert_eq!(within(phone.recv()).await.unwrap(), None);
    assert_eq!(phone.close_reason().map(|r| r.0), Some(1008));
    assert_eq!(within(desktop.recv()).await.unwrap(), None);
    assert_eq!(desktop.close_reason(), Some((1008, "too many messages")));

    // Queued messages count: 4 sent before the desktop arrives end the tunnel.
    let (mut phone, _) = within(connect_new(&b, &tid(8), &opts())).await.unwrap();
    for i in 0..4u8 {
        phone.send(vec![i]).await.unwrap();
    }
    assert_eq!(within(phone.recv()).await.unwrap(), None);
    let m = server.metrics_text();
    assert_eq!(
        metric(
            &m,
            "hybrid_tunnel_tunnels_ended_total{reason=\"too_many_messages\"}"
        ),
        2
    );
    server.shutdown().await;
}

/// The lifetime (1 s here) ends waiting and paired tunnels alike; the close
/// reasons, not a stopwatch, show which deadline ended them.
#[tokio::test]
async fn ttl_ends_waiting_and_paired_tunnels() {
    let config = ServerConfig {
        ttl_secs: 1,
        ..loopback_config()
    };
    let server = start(config).await;
    let b = base(&server);
    let (mut waiting, _) = within(connect_new(&b, &tid(9), &opts())).await.unwrap();
    let (mut phone, rid) = within(connect_new(&b, &tid(10), &opts())).await.unwrap();
    let mut desktop = within(connect_desktop(&b, &rid, &tid(10), &opts()))
        .await
        .unwrap();
    assert_eq!(within(waiting.recv()).await.unwrap(), None);
    assert_eq!(within(phone.recv()).await.unwrap(), None);
    assert_eq!(within(desktop.recv()).await.unwrap(), None);
    assert_eq!(
        desktop.close_reason(),
        Some((1008, "tunnel lifetime exceeded"))
    );
    // The waiting phone's wait (60 s by default) is capped by the lifetime.
    assert_eq!(
        waiting.close_reason(),
        Some((1008, "tunnel lifetime exceeded"))
    );
    let m = server.metrics_text();
    assert_eq!(
        metric(&m, "hybrid_tunnel_tunnels_ended_total{reason=\"ttl\"}"),
        2
    );
    assert_eq!(metric(&m, "hybrid_tunnel_tunnels_open"), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn healthz_and_metrics() {
    let server = start(loopback_config()).await;
    let r = get(&server, "/healthz").await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.ends_with("\r\n\r\nok\n"), "{r}");

    let b = base(&server);
    let (mut p1, rid) = within(connect_new(&b, &tid(11), &opts())).await.unwrap();
    let (_p2, _) = within(connect_new(&b, &tid(12), &opts())).await.unwrap();
    let mut d1 = within(connect_desktop(&b, &rid, &tid(11), &opts()))
        .await
        .unwrap();
    p1.send(b"abc".to_vec()).await.unwrap();
    assert_eq!(within(d1.recv()).await.unwrap(), Some(b"abc".to_vec()));

    let r = get(&server, "/metrics").await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
    let body = r.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(metric(body, "hybrid_tunnel_tunnels_open"), 2);
    assert_eq!(metric(body, "hybrid_tunnel_tunnels_created_total"), 2);
    assert_eq!(metric(body, "hybrid_tunnel_tunnels_paired_total"), 1);
    assert_eq!(metric(body, "hybrid_tunnel_messages_relayed_total"), 1);
    assert_eq!(metric(body, "hybrid_tunnel_bytes_relayed_total"), 3);
    assert!(body.contains("# TYPE hybrid_tunnel_rejections_total counter\n"));

    within(p1.close()).await.unwrap();
    assert_eq!(within(d1.recv()).await.unwrap(), None);
    // The tunnel leaves the table before its sides are sent their close
    // frames, so the desktop seeing the close means the gauge is down.
    let m = server.metrics_text();
    assert_eq!(metric(&m, "hybrid_tunnel_tunnels_open"), 1);
    assert_eq!(
        metric(
            &m,
            "hybrid_tunnel_tunnels_ended_total{reason=\"phone_closed\"}"
        ),
        1
    );
    server.shutdown().await;
}

/// Shutdown closes every tunnel with 1001 and stops listening; neither
/// client answers the close frames while it runs, so its bounded waits are
/// what end it (`within` only guards against a hang).
#[tokio::test]
async fn shutdown_closes_tunnels() {
    let server = start(loopback_config()).await;
    let b = base(&server);
    let (mut phone, rid) = within(connect_new(&b, &tid(13), &opts())).await.unwrap();
    let mut desktop = within(connect_desktop(&b, &rid, &tid(13), &opts()))
        .await
        .unwrap();
    let addr = server.local_addr();
    within(server.shutdown()).await;
    assert_eq!(within(phone.recv()).await.unwrap(), None);
    assert_eq!(phone.close_reason().map(|r| r.0), Some(1001));
    assert_eq!(within(desktop.recv()).await.unwrap(), None);
    // No longer listening.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn connection_limit() {
    let config = ServerConfig {
        max_connections: Some(2),
        ..loopback_config()
    };
    let server = start(config).await;
    let b = base(&server);
    let (_p1, _) = within(connect_new(&b, &tid(14), &opts())).await.unwrap();
    let (_p2, _) = within(connect_new(&b, &tid(15), &opts())).await.unwrap();
    let e = within(connect_new(&b, &tid(16), &opts()))
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), Some(503), "{e:?}");
    let m = server.metrics_text();
    assert_eq!(
        metric(
            &m,
            "hybrid_tunnel_rejections_total{reason=\"too_many_connections\"}"
        ),
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn origin_check() {
    let config = ServerConfig {
        origin_host: Some("127.0.0.1".into()),
        ..loopback_config()
    };
    let server = start(config).await;
    // Our client sends Origin = the base URL (ws://127.0.0.1:PORT), host matches.
    let (_p, _) = within(connect_new(&base(&server), &tid(17), &opts()))
        .await
        .unwrap();
    let t = "ef".repeat(16);
    let r = raw_http(
        &server,
        &upgrade_request(&format!("/cable/new/{t}"), Some("fido.cable")),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 403 "), "{r}");
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// A tunnel server on a public address (issue 16), operator defaults (issue 13).

fn ended(m: &str, reason: &str) -> u64 {
    metric(
        m,
        &format!("hybrid_tunnel_tunnels_ended_total{{reason=\"{reason}\"}}"),
    )
}

fn rejected(m: &str, reason: &str) -> u64 {
    metric(
        m,
        &format!("hybrid_tunnel_rejections_total{{reason=\"{reason}\"}}"),
    )
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Default settings: 128 open connections per source address. The 129th
/// from the same address is refused (429) and counted; another address is
/// still served.
#[tokio::test]
async fn per_source_limit_on_open_connections() {
    let server = start(loopback_config()).await;
    let mut held = Vec::new();
    for _ in 0..128 {
        held.push(tcp_from(&server, [127, 0, 0, 1]).await);
    }
    let r = raw_http_from(&server, [127, 0, 0, 1], HEALTHZ).await;
    assert!(r.starts_with("HTTP/1.1 429 "), "{r}");
    let r = raw_http_from(&server, [127, 0, 0, 2], HEALTHZ).await;
    assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
    let m = server.metrics_text();
    assert_eq!(rejected(&m, "too_many_from_source"), 1);
    drop(held);
    server.shutdown().await;
}

/// Default settings: 32 tunnels per source address may wait for a desktop;
/// the 33rd `new` is refused (429) and counted, a desktop joining one frees
/// a place, and another address is not affected.
#[tokio::test]
async fn per_source_limit_on_waiting_tunnels() {
    let server = start(loopback_config()).await;
    let b = base(&server);
    let mut phones = Vec::new();
    for n in 0..32u8 {
        phones.push(
            within(connect_new(&b, &tid(100 + n), &opts()))
                .await
                .unwrap(),
        );
    }
    let new = |n: u8| upgrade_request(&format!("/cable/new/{}", hex_id(n)), Some("fido.cable"));
    let r = raw_http_from(&server, [127, 0, 0, 1], &new(200)).await;
    assert!(r.starts_with("HTTP/1.1 429 "), "{r}");
    let r = raw_http_from(&server, [127, 0, 0, 3], &new(201)).await;
    assert!(r.starts_with("HTTP/1.1 101 "), "{r}");

    // Pair the first: once a message went through, it no longer waits.
    let (phone, rid) = &mut phones[0];
    let mut desktop = within(connect_desktop(&b, rid, &tid(100), &opts()))
        .await
        .unwrap();
    phone.send(b"paired".to_vec()).await.unwrap();
    assert_eq!(
        within(desktop.recv()).await.unwrap(),
        Some(b"paired".to_vec())
    );
    let r = raw_http_from(&server, [127, 0, 0, 1], &new(202)).await;
    assert!(r.starts_with("HTTP/1.1 101 "), "{r}");
    let m = server.metrics_text();
    assert_eq!(rejected(&m, "too_many_waiting_from_source"), 1);
    server.shutdown().await;
}

/// Settings that `main` lacked are given as JSON, so this file compiles
/// against older servers and fails there at run time instead.
fn json_config(extra: &str) -> ServerConfig {
    serde_json::from_str(&format!(r#"{{"listen":"127.0.0.1:0",{extra}}}"#))
        .expect("a setting this server does not know")
}

/// A phone nobody joins is closed after `wait_secs` with its own reason,
/// while a paired tunnel opened at the same time carries on until its
/// lifetime (`ttl_secs`) ends. (Defaults: 60 s and 120 s, see the config
/// unit test.) The close reasons tell which deadline ended each.
#[tokio::test]
async fn unpaired_phone_waits_less_than_a_paired_tunnel() {
    let server = start(json_config(r#""wait_secs":1,"ttl_secs":3"#)).await;
    let b = base(&server);
    let (mut waiting, _) = within(connect_new(&b, &tid(20), &opts())).await.unwrap();
    let (mut phone, rid) = within(connect_new(&b, &tid(21), &opts())).await.unwrap();
    let mut desktop = within(connect_desktop(&b, &rid, &tid(21), &opts()))
        .await
        .unwrap();

    assert_eq!(within(waiting.recv()).await.unwrap(), None);
    assert_eq!(
        waiting.close_reason(),
        Some((1008, "no desktop connected in time"))
    );
    // The paired tunnel outlives the unpaired one's wait.
    phone.send(b"still open".to_vec()).await.unwrap();
    assert_eq!(
        within(desktop.recv()).await.unwrap(),
        Some(b"still open".to_vec())
    );
    assert_eq!(within(desktop.recv()).await.unwrap(), None);
    assert_eq!(
        desktop.close_reason(),
        Some((1008, "tunnel lifetime exceeded"))
    );
    let m = server.metrics_text();
    assert_eq!(ended(&m, "wait_expired"), 1);
    assert_eq!(ended(&m, "ttl"), 1);
    server.shutdown().await;
}

/// A client that sends part of its request head and stops is cut off
/// (`handshake_timeout_secs`); a side that sends part of a WebSocket frame
/// and stops ends the tunnel for both with 1008 (`frame_timeout_secs`,
/// counted from the frame's first byte: that clock itself is tested in
/// memory under a paused clock in `server::frame`). Each is counted.
#[tokio::test]
async fn slow_client_protection_head_and_frames() {
    let server = start(json_config(
        r#""handshake_timeout_secs":1,"frame_timeout_secs":1,"ttl_secs":60"#,
    ))
    .await;

    // The request head.
    let mut slow = tcp_from(&server, [127, 0, 0, 1]).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 1")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = within(slow.read(&mut buf)).await.unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert_eq!(rejected(&server.metrics_text(), "timeout"), 1);

    // A frame: a header announcing 100 bytes, 10 of them sent.
    let b = base(&server);
    let (mut phone, rid) = within(connect_new(&b, &tid(22), &opts())).await.unwrap();
    let mut desktop = within(raw_ws(&b.connect_url(&rid, &tid(22)).unwrap())).await;
    let mut partial = vec![0x82, 0x80 | 100, 1, 2, 3, 4];
    partial.extend_from_slice(&[0; 10]);
    desktop.get_mut().write_all(&partial).await.unwrap();
    assert_eq!(within(phone.recv()).await.unwrap(), None);
    assert_eq!(
        phone.close_reason(),
        Some((1008, "frame not received in time"))
    );
    assert_eq!(ended(&server.metrics_text(), "slow_frame"), 1);
    server.shutdown().await;
}

/// A configured duration too large for the clock is refused at start with
/// the setting's name (it used to be accepted, then panic the tunnel's task
/// at the first `new` when the deadline overflowed).
#[tokio::test]
async fn huge_configured_duration_is_a_config_error() {
    for config in [
        ServerConfig {
            ttl_secs: u64::MAX,
            ..loopback_config()
        },
        ServerConfig {
            handshake_timeout_secs: u64::MAX,
            ..loopback_config()
        },
        ServerConfig {
            ttl_secs: 0,
            ..loopback_config()
        },
    ] {
        let e = hybrid_tunnel::server::TunnelServer::bind(config.clone())
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string();
        let name = if config.handshake_timeout_secs == u64::MAX {
            "handshake_timeout_secs"
        } else {
            "ttl_secs"
        };
        assert!(e.contains(name), "{e}");
    }
}

/// A ceremony never hits the default message limit: here 300 messages each
/// way (a discoverable getAssertion with hundreds of getNextAssertion
/// follow-ups would need about one per account).
#[tokio::test]
async fn default_message_limit_fits_a_long_ceremony() {
    let server = start(loopback_config()).await;
    let b = base(&server);
    let (mut phone, rid) = within(connect_new(&b, &tid(24), &opts())).await.unwrap();
    let mut desktop = within(connect_desktop(&b, &rid, &tid(24), &opts()))
        .await
        .unwrap();
    for i in 0..300u16 {
        desktop.send(i.to_be_bytes().to_vec()).await.unwrap();
        assert_eq!(
            within(phone.recv()).await.unwrap(),
            Some(i.to_be_bytes().to_vec())
        );
        phone.send(i.to_le_bytes().to_vec()).await.unwrap();
        assert_eq!(
            within(desktop.recv()).await.unwrap(),
            Some(i.to_le_bytes().to_vec())
        );
    }
    assert_eq!(ended(&server.metrics_text(), "too_many_messages"), 0);
    server.shutdown().await;
}

/// The phone closing is answered and its connection dropped while the
/// server still waits for the desktop's closing handshake (a desktop that
/// does not read yet): one side never holds the other's connection open.
/// (Both used to be held until the desktop answered or the 1 s close wait
/// ran out: 32 pairs per second in the benchmark.) The desktop gets the
/// close frame and the end of the stream together (the server closes the
/// TCP connection first, RFC 6455 §7.1.1), while the server still reads the
/// desktop's reply before dropping the connection.
#[tokio::test]
async fn one_side_closing_does_not_wait_for_the_other() {
    let server = start(loopback_config()).await;
    let b = base(&server);
    let (phone, rid) = within(connect_new(&b, &tid(25), &opts())).await.unwrap();
    let mut desktop = within(raw_ws(&b.connect_url(&rid, &tid(25)).unwrap())).await;
    within(phone.close()).await.unwrap();
    // The phone saw its connection end; the desktop gets a close frame,
    // then the end of the stream.
    let tcp = desktop.get_mut();
    let mut got = Vec::new();
    within(tcp.read_to_end(&mut got)).await.unwrap();
    assert!(
        !got.is_empty() && got[0] == 0x88,
        "a close frame first: {got:?}"
    );
    // The server has not dropped the desktop: it waits for the reply.
    let open = |s: &hybrid_tunnel::server::ServerHandle| {
        metric(&s.metrics_text(), "hybrid_tunnel_connections_open")
    };
    assert_eq!(open(&server), 1, "the desktop's connection is still held");
    // The reply (masked, empty) is read and the connection then dropped.
    within(tcp.write_all(&[0x88, 0x80, 1, 2, 3, 4]))
        .await
        .unwrap();
    within(async {
        while open(&server) != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    server.shutdown().await;
}

/// Without a configured limit, the connection limit is the soft descriptor
/// limit minus a reserve (it used to be a fixed 1 024).
#[tokio::test]
async fn default_connection_limit_follows_the_descriptor_limit() {
    let server = start(loopback_config()).await;
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1_000_064);
    let m = server.metrics_text();
    assert_eq!(
        metric(&m, "hybrid_tunnel_connection_limit"),
        soft.saturating_sub(64).max(1)
    );
    server.shutdown().await;
}

/// Behind a proxy listed in `trusted_proxies`, the per-source limits count
/// the client it names in `X-Forwarded-For`, not the proxy.
#[tokio::test]
async fn per_source_limits_count_the_client_behind_a_trusted_proxy() {
    let config = ServerConfig {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        max_waiting_per_source: 1,
        ..loopback_config()
    };
    let server = start(config).await;
    let via_proxy = |n: u8, client: &str| {
        upgrade_request(&format!("/cable/new/{}", hex_id(n)), Some("fido.cable")).replace(
            "\r\n\r\n",
            &format!("\r\nX-Forwarded-For: {client}\r\n\r\n"),
        )
    };
    let mut open = Vec::new();
    for (n, client, status) in [
        (30, "192.0.2.1", "101"),
        (31, "192.0.2.1", "429"),
        (32, "203.0.113.9, 192.0.2.2", "101"),
        (33, "192.0.2.2", "429"),
    ] {
        let mut s = tcp_from(&server, [127, 0, 0, 1]).await;
        s.write_all(via_proxy(n, client).as_bytes()).await.unwrap();
        let mut buf = [0u8; 12];
        within(s.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf[9..12], status.as_bytes(), "{client}");
        open.push(s);
    }
    // Not trusted: its own address counts, the header is ignored.
    let untrusted = ServerConfig {
        max_waiting_per_source: 1,
        ..loopback_config()
    };
    let server2 = start(untrusted).await;
    for (n, client, status) in [(40, "192.0.2.7", "101"), (41, "192.0.2.8", "429")] {
        let mut s = tcp_from(&server2, [127, 0, 0, 5]).await;
        s.write_all(via_proxy(n, client).as_bytes()).await.unwrap();
        let mut buf = [0u8; 12];
        within(s.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf[9..12], status.as_bytes(), "{client}");
        open.push(s);
    }
    server.shutdown().await;
    server2.shutdown().await;
}

/// A desktop whose 101 crosses the phone's Close still gets a close frame
/// before its stream ends, never a bare end of stream (found by the pairs
/// benchmark's client, docs/performance.md "Tunnel: follow-up 5"). The
/// crossing is a race between the desktop's task and the phone's, so it is
/// provoked many times: the phone's Close is written right behind the
/// desktop's request, on a runtime with two workers. A desktop may also be
/// refused (the phone was gone first) or see the close frame after the
/// hand-over; all three are fine, a 101 with nothing after it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desktop_crossing_the_phones_close_gets_a_close_frame() {
    let server = start(loopback_config()).await;
    let addr = server.local_addr();
    let (mut answered, mut refused) = (0u32, 0u32);
    for n in 0..600u32 {
        let id = TunnelId(
            [n.to_be_bytes(), [7; 4], [9; 4], [11; 4]]
                .concat()
                .try_into()
                .unwrap(),
        );
        // Every step of one pair, bounded together.
        let got = within(async {
            let mut phone = TcpStream::connect(addr).await.unwrap();
            let new = format!("/cable/new/{}", id.to_hex());
            phone
                .write_all(upgrade_request(&new, Some("fido.cable")).as_bytes())
                .await
                .unwrap();
            let head = read_response(&mut phone).await;
            let rid = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(hybrid_tunnel::names::HEADER_ROUTING_ID)
                        .then(|| v.trim().to_owned())
                })
                .expect("a routing id");
            let mut desktop = TcpStream::connect(addr).await.unwrap();
            let connect = format!("/cable/connect/{rid}/{}", id.to_hex());
            desktop
                .write_all(upgrade_request(&connect, Some("fido.cable")).as_bytes())
                .await
                .unwrap();
            phone.write_all(&[0x88, 0x80, 1, 2, 3, 4]).await.unwrap();
            let mut got = Vec::new();
            desktop.read_to_end(&mut got).await.unwrap();
            got
        })
        .await;
        if got.starts_with(b"HTTP/1.1 101") {
            let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            assert_eq!(
                got.get(end),
                Some(&0x88),
                "pair {n}: a 101 must be followed by a close frame, got {:?}",
                String::from_utf8_lossy(&got)
            );
            answered += 1;
        } else {
            refused += 1;
        }
    }
    eprintln!("answered {answered}, refused {refused}");
    server.shutdown().await;
}
