//! End-to-end faults on loopback: each ends the phone session with its
//! named failure (hybrid-protocol.md §5.3 "Failure handling", §6.3, §10),
//! and the next session on the same phone setup succeeds.
#![allow(missing_docs)]
// Helpers outside #[test] fns are not covered by clippy.toml's test exemptions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{auth, rp, short_wait, user, World};
use hybrid_session::{FailReason, Outcome};

fn failed(outcome: &Outcome) -> &FailReason {
    match outcome {
        Outcome::Failed(r) => r,
        other => panic!("expected a failure, got {other}"),
    }
}

/// After a failure, a whole registration on the same world and
/// authenticator must succeed.
async fn next_session_succeeds(world: &mut World, a: common::TestAuth) {
    let (_cred, _a) = world.register(a, 42).await;
}

#[tokio::test]
async fn advert_for_another_qr_never_leads_to_a_connection() {
    let mut world = World::new().await;
    let desktop = world.desktop();
    let other = world.desktop();
    // The phone answers `other`'s QR; our desktop watches the same radio file.
    let phone = world.start_phone_with(&other, auth(1), short_wait(&world));
    let mut source = world.source();
    let err = desktop
        .await_advert(&mut source, Duration::from_millis(1500))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            hybrid_initiator::Error::Timeout(hybrid_initiator::Stage::Advert, _)
        ),
        "{err}"
    );
    let (report, a) = phone.finish().await;
    assert!(
        matches!(failed(&report.outcome), FailReason::DesktopNeverConnected),
        "{}",
        report.outcome
    );
    next_session_succeeds(&mut world, a).await;
}

#[tokio::test]
async fn desktop_never_connects() {
    let mut world = World::new().await;
    let desktop = world.desktop();
    let phone = world.start_phone_with(&desktop, auth(2), short_wait(&world));
    // The session ends by itself (`finish` bounds the wait); *when* it ends
    // — exactly at wait_for_desktop — is hybrid-session's sans-IO test with
    // an injected clock, not a wall-clock assertion here (issue 16).
    let (report, a) = phone.finish().await;
    assert!(
        matches!(failed(&report.outcome), FailReason::DesktopNeverConnected),
        "{}",
        report.outcome
    );
    let phases = report.phases.expect("the session started");
    assert!(phases.advert_out.is_some(), "the advert never went up");
    assert!(
        phases.desktop_message.is_none(),
        "a desktop message arrived"
    );
    next_session_succeeds(&mut world, a).await;
}

/// Connects, sends `first` instead of a valid msg1, and expects
/// HandshakeFailed with the phone closing and sending nothing.
async fn bad_first_message(
    first: impl FnOnce(&mut World, &hybrid_initiator::Connection) -> Vec<u8>,
) {
    let mut world = World::new().await;
    let desktop = world.desktop();
    let phone = world.start_phone(&desktop, auth(3));
    let mut source = world.source();
    let advert = desktop
        .await_advert(&mut source, Duration::from_secs(5))
        .await
        .unwrap();
    let mut conn = desktop
        .connect(&advert, &world.resolver, &world.client)
        .await
        .unwrap();
    let bytes = first(&mut world, &conn);
    conn.send_raw(bytes).await.unwrap();
    // §5.3: the phone sends nothing back and closes.
    let r = conn.recv_raw().await;
    assert!(
        matches!(r, Err(hybrid_initiator::Error::Closed(_))),
        "{r:?}"
    );
    let (report, a) = phone.finish().await;
    assert!(
        matches!(failed(&report.outcome), FailReason::HandshakeFailed(_)),
        "{}",
        report.outcome
    );
    next_session_succeeds(&mut world, a).await;
}

#[tokio::test]
async fn garbage_instead_of_msg1() {
    bad_first_message(|_, _| {
        b"GET / HTTP/1.1 this is not noise at all, but it is long enough to be parsed as msg1...."
            .to_vec()
    })
    .await;
}

#[tokio::test]
async fn truncated_msg1() {
    bad_first_message(|w, c| {
        let (_, msg1) = c.msg1(&mut w.rng).unwrap();
        msg1[..40].to_vec()
    })
    .await;
}

#[tokio::test]
async fn msg1_with_a_corrupted_tag() {
    bad_first_message(|w, c| {
        let (_, mut msg1) = c.msg1(&mut w.rng).unwrap();
        *msg1.last_mut().unwrap() ^= 1;
        msg1
    })
    .await;
}

/// A msg1 recorded from an earlier session (another QR, another advert) is
/// replayed into a new one: the PSK differs, so the AEAD fails.
#[tokio::test]
async fn replayed_msg1_from_another_session() {
    let mut world = World::new().await;
    // Record a msg1 in session A (which then completes normally).
    let desktop_a = world.desktop();
    let phone_a = world.start_phone(&desktop_a, auth(4));
    let mut source = world.source();
    let advert = desktop_a
        .await_advert(&mut source, Duration::from_secs(5))
        .await
        .unwrap();
    let conn = desktop_a
        .connect(&advert, &world.resolver, &world.client)
        .await
        .unwrap();
    let (pending, msg1) = conn.msg1(&mut world.rng).unwrap();
    let mut conn = conn;
    conn.send_raw(msg1.clone()).await.unwrap();
    let mut ch = conn.finish_handshake(pending).await.unwrap();
    ch.register(&rp(), [1; 32], user(1), true).await.unwrap();
    ch.shutdown().await.unwrap();
    let (report, a) = phone_a.finish().await;
    assert!(report.outcome.is_completed());
    // Session B: replay A's msg1.
    let desktop_b = world.desktop();
    let phone_b = world.start_phone(&desktop_b, a);
    let mut source = world.source();
    let advert = desktop_b
        .await_advert(&mut source, Duration::from_secs(5))
        .await
        .unwrap();
    let mut conn = desktop_b
        .connect(&advert, &world.resolver, &world.client)
        .await
        .unwrap();
    conn.send_raw(msg1).await.unwrap();
    assert!(conn.recv_raw().await.is_err());
    let (report, a) = phone_b.finish().await;
    assert!(
        matches!(failed(&report.outcome), FailReason::HandshakeFailed(_)),
        "{}",
        report.outcome
    );
    next_session_succeeds(&mut world, a).await;
}

/// The same msg1 sent twice in one session: the second one arrives after the
/// handshake, where it is a transport frame that fails to decrypt.
#[tokio::test]
async fn msg1_sent_twice_in_one_session() {
    let mut world = World::new().await;
    let desktop = world.desktop();
    let phone = world.start_phone(&desktop, auth(5));
    let mut source = world.source();
    let advert = desktop
        .await_advert(&mut source, Duration::from_secs(5))
        .await
        .unwrap();
    let mut conn = desktop
        .connect(&advert, &world.resolver, &world.client)
        .await
        .unwrap();
    let (pending, msg1) = conn.msg1(&mut world.rng).unwrap();
    conn.send_raw(msg1.clone()).await.unwrap();
    let mut ch = conn.finish_handshake(pending).await.unwrap();
    ch.send_raw(msg1).await.unwrap();
    assert!(ch.wait_closed(Duration::from_secs(5)).await);
    let (report, a) = phone.finish().await;
    assert!(
        matches!(failed(&report.outcome), FailReason::DecryptFailed),
        "{}",
        report.outcome
    );
    next_session_succeeds(&mut world, a).await;
}

/// After the handshake, `inject` misbehaves; the phone must close with `expect`.
async fn after_handshake(
    seed: u64,
    inject: impl for<'a> FnOnce(
        &'a mut hybrid_initiator::Channel,
    )
        -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>,
    expect: fn(&FailReason) -> bool,
) {
    let mut world = World::new().await;
    let desktop = world.desktop();
    let phone = world.start_phone(&desktop, auth(seed));
    let mut ch = world.establish(&desktop).await;
    inject(&mut ch).await;
    assert!(
        ch.wait_closed(Duration::from_secs(5)).await,
        "the phone closes the tunnel"
    );
    let (report, a) = phone.finish().await;
    assert!(expect(failed(&report.outcome)), "{}", report.outcome);
    next_session_succeeds(&mut world, a).await;
}

#[tokio::test]
async fn frame_that_fails_to_decrypt() {
    after_handshake(
        6,
        |ch| Box::pin(async move { ch.send_corrupted(&[1, 4]).await.unwrap() }),
        |r| matches!(r, FailReason::DecryptFailed),
    )
    .await;
}

#[tokio::test]
async fn unknown_message_type() {
    after_handshake(
        7,
        |ch| Box::pin(async move { ch.send_frame(&[7, 1, 2, 3]).await.unwrap() }),
        |r| matches!(r, FailReason::BadFrame(_)),
    )
    .await;
}

#[tokio::test]
async fn update_that_is_not_cbor() {
    after_handshake(
        8,
        |ch| Box::pin(async move { ch.send_frame(&[2, 1, 2, 3, 4]).await.unwrap() }),
        |r| matches!(r, FailReason::BadFrame(_)),
    )
    .await;
}

#[tokio::test]
async fn tunnel_server_killed_mid_session() {
    let mut world = World::new().await;
    let desktop = world.desktop();
    let phone = world.start_phone(&desktop, auth(9));
    let mut ch = world.establish(&desktop).await;
    world.server.take().unwrap().shutdown().await;
    let r = ch.register(&rp(), [1; 32], user(1), true).await;
    assert!(r.is_err(), "no reply through a dead tunnel server");
    let (report, a) = phone.finish().await;
    assert!(!report.outcome.is_completed(), "{}", report.outcome);
    // A new server (new port) for the next session: the phone setup is reused.
    let mut world2 = World::new().await;
    next_session_succeeds(&mut world2, a).await;
}
