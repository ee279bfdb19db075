//! The initiator against a minimal in-test phone (built from the protocol
//! crates directly) over the loopback tunnel server: independent of the
//! daemon's session driver, so a bug there cannot hide one here.
#![allow(missing_docs)]
// Helpers outside #[test] fns are not covered by clippy.toml's test exemptions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use hybrid_ble::{EidKey, EidPlaintext};
use hybrid_ctap::testing::{test_authenticator, SeededRng, TestEnv};
use hybrid_ctap::types::UserEntity;
use hybrid_ctap::{Authenticator, RelyingParty, RequestContext};
use hybrid_initiator::{AdvertSource, Desktop, Error, Resolver, Stage};
use hybrid_noise::{Ephemeral, Frame, PostHandshakeMessage, Responder};
use hybrid_tunnel::client::{connect_new, ClientOptions};
use hybrid_tunnel::server::{ServerConfig, ServerHandle, TunnelServer};
use hybrid_tunnel::{TunnelBase, TunnelId};
use tokio::sync::mpsc::UnboundedSender;

async fn server() -> ServerHandle {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    TunnelServer::bind(config).await.unwrap().spawn()
}

/// A phone that answers one transaction; `decoy` adverts (made for another
/// QR) are published before the real one.
async fn mini_phone(
    uri: String,
    base: String,
    adverts: UnboundedSender<Vec<u8>>,
    mut auth: Authenticator<TestEnv>,
    decoy: bool,
) -> Authenticator<TestEnv> {
    let qr = hybrid_qr::parse(&uri).unwrap();
    let mut rng = SeededRng::new(99);
    let base = TunnelBase::url(&base, 0).unwrap();
    let tid = TunnelId(hybrid_ble::tunnel_id(qr.secret()));
    let (mut tunnel, routing_id) = connect_new(&base, &tid, &ClientOptions::default())
        .await
        .unwrap();
    if decoy {
        let other = EidKey::from_secret(&[0x55; 16]);
        let p = EidPlaintext::random(&mut rng, routing_id.0, 0);
        adverts
            .send(hybrid_ble::encrypt(&other, &p).to_vec())
            .unwrap();
        adverts.send(b"garbage".to_vec()).unwrap();
    }
    let plain = EidPlaintext::random(&mut rng, routing_id.0, 0);
    let eid = EidKey::from_secret(qr.secret());
    adverts
        .send(hybrid_ble::encrypt(&eid, &plain).to_vec())
        .unwrap();
    let psk = hybrid_ble::psk(qr.secret(), &plain);
    let msg1 = tunnel.recv().await.unwrap().unwrap();
    let (msg2, est) = Responder::qr(psk.as_bytes(), &qr.peer_public_key().unwrap())
        .respond(&msg1, Ephemeral::Random(&mut rng))
        .unwrap();
    tunnel.send(msg2).await.unwrap();
    let (mut crypter, _) = est.into_parts();
    let phm = PostHandshakeMessage::ctap(auth.get_info().to_cbor()).encode();
    tunnel.send(crypter.encrypt(&phm).unwrap()).await.unwrap();
    while let Ok(Some(ct)) = tunnel.recv().await {
        let plain = crypter.decrypt(&ct).unwrap();
        match Frame::parse(&plain).unwrap() {
            Frame::Ctap(req) => {
                let resp = auth.process_scripted(&req, &RequestContext::default());
                let frame = Frame::Ctap(resp).encode();
                tunnel.send(crypter.encrypt(&frame).unwrap()).await.unwrap();
            }
            Frame::Shutdown => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let _ = tunnel.close().await;
    auth.end_session();
    auth
}

#[tokio::test]
async fn register_then_sign_in_over_loopback() {
    let server = server().await;
    let resolver = Resolver::fixed(&server.base_url());
    let rp = RelyingParty::new("example.com", "Example");
    let mut rng = SeededRng::new(1);
    let mut auth = test_authenticator(7);

    // Session 1: register (with decoy adverts that must be skipped).
    let desktop = Desktop::new(&mut rng).unwrap();
    assert!(desktop.qr_terminal().unwrap().lines().count() > 10);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let phone = tokio::spawn(mini_phone(
        desktop.qr_uri(),
        server.base_url(),
        tx,
        auth,
        true,
    ));
    let mut source = AdvertSource::channel(rx);
    let advert = desktop
        .await_advert(&mut source, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        advert.ignored, 2,
        "the other QR's advert and the garbage are skipped"
    );
    let conn = desktop
        .connect(&advert, &resolver, &ClientOptions::default())
        .await
        .unwrap();
    let mut ch = conn.handshake(&mut rng).await.unwrap();
    assert!(ch
        .get_info()
        .unwrap()
        .versions
        .contains(&"FIDO_2_1".to_owned()));
    let user = UserEntity {
        id: vec![1, 2, 3],
        name: Some("alice".into()),
        display_name: Some("Alice".into()),
    };
    let (cred, _) = ch.register(&rp, [3; 32], user, true).await.unwrap();
    let (timeline, closed) = ch.shutdown().await.unwrap();
    assert!(closed);
    let names: Vec<_> = timeline.phases().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["tunnel", "handshake", "getInfo", "makeCredential"]);
    auth = phone.await.unwrap();

    // Session 2: a new QR, discoverable sign-in.
    let desktop = Desktop::new(&mut rng).unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let phone = tokio::spawn(mini_phone(
        desktop.qr_uri(),
        server.base_url(),
        tx,
        auth,
        false,
    ));
    let mut source = AdvertSource::channel(rx);
    let mut ch = desktop
        .establish(
            &mut source,
            Duration::from_secs(5),
            &resolver,
            &ClientOptions::default(),
            &mut rng,
        )
        .await
        .unwrap();
    let mut creds = vec![cred];
    let (i, resp) = ch
        .authenticate(&rp, &mut creds, [4; 32], &[])
        .await
        .unwrap();
    assert_eq!(i, 0);
    assert_eq!(resp.user.unwrap().id, vec![1, 2, 3]);
    ch.shutdown().await.unwrap();
    phone.await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn advert_for_another_qr_times_out() {
    let desktop = Desktop::new(&mut SeededRng::new(2)).unwrap();
    let other = Desktop::new(&mut SeededRng::new(3)).unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let p = EidPlaintext::new([1; 10], [1, 2, 3], 0);
    let key = EidKey::from_secret(other.qr().secret());
    tx.send(hybrid_ble::encrypt(&key, &p).to_vec()).unwrap();
    let mut source = AdvertSource::channel(rx);
    let err = desktop
        .await_advert(&mut source, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(Stage::Advert, _)), "{err}");
    // The other desktop accepts it.
    assert!(other.match_advert(&hybrid_ble::encrypt(&key, &p)).is_ok());
}

#[tokio::test]
async fn file_source_skips_stale_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("advert");
    let desktop = Desktop::new(&mut SeededRng::new(4)).unwrap();
    let stale = EidKey::from_secret(&[9; 16]);
    let p = EidPlaintext::new([1; 10], [1, 2, 3], 1);
    std::fs::write(
        &path,
        hybrid_ble::advert_line(&hybrid_ble::encrypt(&stale, &p)),
    )
    .unwrap();
    let mut source = AdvertSource::file(&path);
    // The content already there is offered once (it is another QR's)…
    let stale_candidate = source.next_candidate().await.unwrap();
    assert!(desktop.match_advert(&stale_candidate).is_err());
    // …then the phone replaces the file (an event, not a sleep: issue 16),
    // and only the new content is offered: the stale one is not seen again.
    let key = EidKey::from_secret(desktop.qr().secret());
    let line = hybrid_ble::advert_line(&hybrid_ble::encrypt(&key, &p));
    std::fs::write(&path, line).unwrap();
    let m = desktop
        .await_advert(&mut source, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(m.plaintext, p);
    assert_eq!(m.ignored, 0, "the stale content was offered again");
}

#[tokio::test]
async fn reader_source_skips_other_lines() {
    let desktop = Desktop::new(&mut SeededRng::new(5)).unwrap();
    let key = EidKey::from_secret(desktop.qr().secret());
    let p = EidPlaintext::new([2; 10], [4, 5, 6], 0);
    let text = format!(
        "hello\n{}",
        hybrid_ble::advert_line(&hybrid_ble::encrypt(&key, &p))
    );
    let mut source = AdvertSource::reader(std::io::Cursor::new(text.into_bytes()));
    let m = desktop
        .await_advert(&mut source, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(m.plaintext.routing_id(), [4, 5, 6]);
    let err = desktop
        .await_advert(&mut source, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AdvertSourceEnded(_)));
}

#[test]
fn resolver_maps_ids() {
    let r = Resolver::fixed("ws://127.0.0.1:9");
    assert_eq!(
        r.resolve(0).unwrap().base_url().unwrap(),
        "ws://127.0.0.1:9"
    );
    assert_eq!(r.resolve(1).unwrap().domain_id(), 1);
    assert!(r.resolve(7).is_err());
    assert_eq!(
        Resolver::domains().resolve(0).unwrap().base_url().unwrap(),
        "wss://cable.ua5v.com"
    );
}
