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
use hybrid_ctap::{
    Approval, Authenticator, GetAssertionRequest, MakeCredentialRequest, RelyingParty,
    RequestContext, VerifyError,
};
use hybrid_initiator::{AdvertSource, Channel, Desktop, Error, Resolver, Stage, UserVerification};
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
    auth: Authenticator<TestEnv>,
    decoy: bool,
) -> Authenticator<TestEnv> {
    mini_phone_with(uri, base, adverts, auth, decoy, false)
        .await
        .0
}

/// [`mini_phone`]; with `no_uv`, a phone that does no user verification and
/// ignores the `uv` option (as webauthn-rs's `SoftToken` does): the person
/// only confirms presence. Also returns the `uv` option of each request.
async fn mini_phone_with(
    uri: String,
    base: String,
    adverts: UnboundedSender<Vec<u8>>,
    mut auth: Authenticator<TestEnv>,
    decoy: bool,
    no_uv: bool,
) -> (Authenticator<TestEnv>, Vec<Option<bool>>) {
    if no_uv {
        auth.env_mut().user.default_answer = Ok(Approval {
            user_present: true,
            user_verified: false,
        });
    }
    let mut asked_uv = Vec::new();
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
            Frame::Ctap(mut req) => {
                match req.split_first() {
                    Some((&0x01, body)) => {
                        let mut r = MakeCredentialRequest::from_cbor(body).unwrap();
                        asked_uv.push(r.options.uv);
                        if no_uv {
                            r.options.uv = None;
                            req = r.to_frame();
                        }
                    }
                    Some((&0x02, body)) => {
                        let mut r = GetAssertionRequest::from_cbor(body).unwrap();
                        asked_uv.push(r.options.uv);
                        if no_uv {
                            r.options.uv = None;
                            req = r.to_frame();
                        }
                    }
                    _ => {}
                }
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
    (auth, asked_uv)
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
    let (mut ch, phone) = establish(&server, auth, false, &mut rng).await;
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

/// A new QR, a [`mini_phone_with`] (no decoys) answering it, and the
/// desktop's channel to it.
async fn establish(
    server: &ServerHandle,
    auth: Authenticator<TestEnv>,
    no_uv: bool,
    rng: &mut SeededRng,
) -> (
    Channel,
    tokio::task::JoinHandle<(Authenticator<TestEnv>, Vec<Option<bool>>)>,
) {
    let resolver = Resolver::fixed(&server.base_url());
    let desktop = Desktop::new(rng).unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let phone = tokio::spawn(mini_phone_with(
        desktop.qr_uri(),
        server.base_url(),
        tx,
        auth,
        false,
        no_uv,
    ));
    let mut source = AdvertSource::channel(rx);
    let ch = desktop
        .establish(
            &mut source,
            Duration::from_secs(5),
            &resolver,
            &ClientOptions::default(),
            rng,
        )
        .await
        .unwrap();
    (ch, phone)
}

/// One session with a phone that does no user verification: the desktop
/// connects, `uv` is set as given, then `act` runs on the channel.
async fn no_uv_session<T>(
    auth: Authenticator<TestEnv>,
    uv: UserVerification,
    act: impl AsyncFnOnce(&mut Channel) -> T,
) -> (T, Authenticator<TestEnv>, Vec<Option<bool>>) {
    let server = server().await;
    let (mut ch, phone) = establish(&server, auth, true, &mut SeededRng::new(5)).await;
    ch.set_user_verification(uv);
    let out = act(&mut ch).await;
    ch.shutdown().await.unwrap();
    let (auth, asked) = phone.await.unwrap();
    server.shutdown().await;
    (out, auth, asked)
}

#[tokio::test]
async fn answers_without_uv_are_accepted_only_when_uv_is_discouraged() {
    let rp = RelyingParty::new("example.com", "Example");
    let user = || UserEntity {
        id: vec![9],
        name: Some("bob".into()),
        display_name: None,
    };

    // Default (UV required): the request asks for UV, and the answer
    // without the UV flag is refused.
    let (r, auth, asked) = no_uv_session(test_authenticator(8), UserVerification::Required, {
        let rp = rp.clone();
        async move |ch: &mut Channel| ch.register(&rp, [1; 32], user(), false).await
    })
    .await;
    assert!(
        matches!(
            r,
            Err(Error::Ctap(hybrid_ctap::Error::Verify(
                VerifyError::UserVerification
            )))
        ),
        "{r:?}"
    );
    assert_eq!(asked, [Some(true)]);

    // Explicitly discouraged: no `uv` in the request; registration and a
    // sign-in (allow list) are accepted and still verified.
    let (r, auth, asked) = no_uv_session(auth, UserVerification::Discouraged, {
        let rp = rp.clone();
        async move |ch: &mut Channel| ch.register(&rp, [2; 32], user(), false).await
    })
    .await;
    let (cred, resp) = r.unwrap();
    let ad = hybrid_ctap::AuthenticatorData::parse(&resp.auth_data).unwrap();
    assert_eq!(ad.flags & hybrid_ctap::response::FLAG_UV, 0, "no UV flag");
    assert_eq!(asked, [None]);
    let mut creds = vec![cred];
    let allow = vec![creds[0].id.clone()];
    let (r, _, asked) = no_uv_session(auth, UserVerification::Discouraged, {
        let rp = rp.clone();
        async move |ch: &mut Channel| {
            let r = ch.authenticate(&rp, &mut creds, [3; 32], &allow).await;
            (r.map(|(i, _)| i), creds)
        }
    })
    .await;
    let (index, creds) = r;
    assert_eq!(index.unwrap(), 0);
    assert_eq!(creds[0].sign_count, 1, "the counter was checked and kept");
    assert_eq!(asked, [None]);
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
