//! The session driven by hand: a desktop played by `hybrid_noise::Initiator`
//! and `now` advanced explicitly — no sleeping, no sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use hybrid_ble::{EidKey, ADVERT_LEN};
use hybrid_noise::post_handshake::PostHandshakeMessage;
use hybrid_noise::{derive_p256_from_secret, Crypter, Ephemeral, Frame, Initiator};
use hybrid_qr::QrCode;
use hybrid_tunnel_names::{RoutingId, TunnelBase, TunnelId};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::SecretKey;
use rand_core::OsRng;

use crate::{Action, FailReason, Outcome, PhoneSession, SessionConfig};

const SECRET: [u8; 16] = [0x42; 16];
const ROUTING: RoutingId = RoutingId([0xab, 0xcd, 0xef]);
const GET_INFO: &[u8] = &[
    0xa1, 0x01, 0x81, 0x68, b'F', b'I', b'D', b'O', b'_', b'2', b'_', b'0',
];

struct Desktop {
    identity: SecretKey,
    qr: QrCode,
}

impl Desktop {
    fn new() -> Self {
        let identity = derive_p256_from_secret(b"session test desktop").unwrap();
        let compressed: [u8; 33] = identity
            .public_key()
            .to_encoded_point(true)
            .as_bytes()
            .try_into()
            .unwrap();
        let qr = QrCode::new(compressed, SECRET).unwrap();
        Desktop { identity, qr }
    }

    /// Decrypts the advert like a desktop (§3.3) and builds msg1 (§5.3).
    fn msg1(
        &self,
        advert: &[u8; ADVERT_LEN],
    ) -> (hybrid_noise::InitiatorAwaitingResponse, Vec<u8>) {
        let plain = hybrid_ble::decrypt(&EidKey::from_secret(&SECRET), advert).unwrap();
        assert_eq!(plain.routing_id(), ROUTING.0);
        let psk = hybrid_ble::psk(&SECRET, &plain);
        Initiator::qr(psk.as_bytes(), &self.identity)
            .start(Ephemeral::Random(&mut OsRng))
            .unwrap()
    }
}

fn config() -> SessionConfig {
    SessionConfig {
        tunnel: TunnelBase::url("ws://127.0.0.1:1", 0).unwrap(),
        wait_for_desktop: Duration::from_secs(120),
        command_timeout: Duration::from_secs(60),
        approval_timeout: Duration::from_secs(30),
        max_commands: 1,
        shutdown_grace: Duration::from_secs(5),
        get_info: GET_INFO.to_vec(),
    }
}

fn drain<R: rand_core::CryptoRngCore>(s: &mut PhoneSession<R>) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

struct Harness {
    t0: Instant,
    desktop: Desktop,
    session: PhoneSession<OsRng>,
}

impl Harness {
    fn new(config: SessionConfig) -> Self {
        let t0 = Instant::now();
        let desktop = Desktop::new();
        let mut session = PhoneSession::new(desktop.qr.clone(), config, t0, OsRng);
        let actions = drain(&mut session);
        let tunnel_id = TunnelId(hybrid_ble::tunnel_id(&SECRET));
        assert_eq!(
            actions,
            vec![Action::OpenTunnel {
                url: format!("ws://127.0.0.1:1/cable/new/{}", tunnel_id.to_hex()),
                origin: "ws://127.0.0.1:1".into(),
                tunnel_id
            }]
        );
        Harness {
            t0,
            desktop,
            session,
        }
    }

    fn at(&self, secs: u64) -> Instant {
        self.t0 + Duration::from_secs(secs)
    }

    /// Opens the tunnel at t0+1 and returns the advert.
    fn open(&mut self) -> [u8; ADVERT_LEN] {
        self.session.on_tunnel_open(ROUTING, self.at(1));
        let actions = drain(&mut self.session);
        let [Action::StartAdvert(advert)] = actions[..] else {
            panic!("expected StartAdvert, got {actions:?}");
        };
        assert_eq!(self.session.advert(), Some(advert));
        advert
    }

    /// Opens the tunnel and completes the handshake at t0+2; returns the
    /// desktop's Crypter after checking msg2 and the post-handshake message.
    fn handshake(&mut self) -> Crypter {
        let advert = self.open();
        let (waiting, msg1) = self.desktop.msg1(&advert);
        self.session.on_message(&msg1, self.at(2));
        let actions = drain(&mut self.session);
        let [Action::StopAdvert, Action::Send(msg2), Action::Send(post)] = &actions[..] else {
            panic!("expected StopAdvert, Send, Send; got {actions:?}");
        };
        assert_eq!(msg2.len(), 81);
        let (mut crypter, _) = waiting.finish(msg2).unwrap().into_parts();
        let plain = crypter.decrypt(post).unwrap();
        let (msg, _) = PostHandshakeMessage::decode(&plain).unwrap();
        assert_eq!(msg.require_ctap().unwrap(), GET_INFO);
        assert_eq!(msg.features, vec!["ctap".to_owned()]);
        assert!(msg.linking.is_none(), "never a linking map");
        crypter
    }

    fn finished(&mut self) -> Vec<Action> {
        let actions = drain(&mut self.session);
        assert!(
            matches!(actions.last(), Some(Action::Finished(_))),
            "{actions:?}"
        );
        assert!(self.session.poll_timeout().is_none());
        actions
    }
}

fn ends_with(actions: &[Action], outcome: Outcome) {
    let n = actions.len();
    assert!(n >= 2, "{actions:?}");
    assert_eq!(actions[n - 2], Action::Close, "{actions:?}");
    assert_eq!(actions[n - 1], Action::Finished(outcome), "{actions:?}");
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Send(_))),
        "nothing may be sent when ending: {actions:?}"
    );
}

#[test]
fn happy_path_one_command_then_shutdown() {
    let mut h = Harness::new(config());
    let mut desktop = h.handshake();
    assert_eq!(h.session.poll_timeout(), Some(h.at(62)));

    // A valid update is ignored (§6.3).
    let update = desktop.encrypt(&[0x02, 0xa0]).unwrap();
    h.session.on_message(&update, h.at(3));
    assert!(drain(&mut h.session).is_empty());

    let req = desktop.encrypt(&[0x01, 0x04]).unwrap();
    h.session.on_message(&req, h.at(4));
    assert_eq!(
        drain(&mut h.session),
        vec![Action::Ctap {
            request: vec![0x04]
        }]
    );
    assert_eq!(
        h.session.poll_timeout(),
        None,
        "no timeout while processing"
    );
    h.session.on_ctap_response(vec![0x00, 0xa0], 0, h.at(10));
    let actions = drain(&mut h.session);
    let [Action::Send(reply)] = &actions[..] else {
        panic!("{actions:?}");
    };
    assert_eq!(
        Frame::parse(&desktop.decrypt(reply).unwrap()).unwrap(),
        Frame::Ctap(vec![0x00, 0xa0])
    );
    assert_eq!(h.session.poll_timeout(), Some(h.at(15)), "shutdown grace");

    let shutdown = desktop.encrypt(&[0x00]).unwrap();
    h.session.on_message(&shutdown, h.at(11));
    let actions = h.finished();
    ends_with(&actions, Outcome::Completed { commands: 1 });

    let p = *h.session.phases();
    assert_eq!(p.tunnel_open, Some(h.at(1)));
    assert_eq!(p.advert_out, Some(h.at(1)));
    assert_eq!(p.handshake_done, Some(h.at(2)));
    assert_eq!(p.first_command, Some(h.at(4)));
    assert_eq!(p.reply_sent, Some(h.at(10)));
    assert_eq!(p.finished, Some(h.at(11)));

    // Every later input is ignored.
    h.session.on_message(&[1, 2, 3], h.at(12));
    h.session.on_tunnel_closed(h.at(12));
    h.session.cancel(h.at(12));
    h.session.handle_timeout(h.at(1000));
    h.session.on_ctap_response(vec![0], 0, h.at(12));
    assert!(drain(&mut h.session).is_empty());
}

#[test]
fn reply_then_peer_close_completes() {
    let mut h = Harness::new(config());
    let mut desktop = h.handshake();
    h.session
        .on_message(&desktop.encrypt(&[0x01, 0x04]).unwrap(), h.at(3));
    drain(&mut h.session);
    h.session.on_ctap_response(vec![0x27], 0, h.at(4));
    drain(&mut h.session);
    h.session.on_tunnel_closed(h.at(5));
    ends_with(&h.finished(), Outcome::Completed { commands: 1 });
}

#[test]
fn shutdown_grace_expires_then_close() {
    let mut h = Harness::new(config());
    let mut desktop = h.handshake();
    h.session
        .on_message(&desktop.encrypt(&[0x01, 0x04]).unwrap(), h.at(3));
    drain(&mut h.session);
    h.session.on_ctap_response(vec![0x00], 0, h.at(4));
    drain(&mut h.session);
    h.session.handle_timeout(h.at(8));
    assert!(drain(&mut h.session).is_empty(), "grace not over at 4 s");
    h.session.handle_timeout(h.at(9));
    ends_with(&h.finished(), Outcome::Completed { commands: 1 });
}

#[test]
fn desktop_never_connects_exactly_at_wait() {
    let mut h = Harness::new(config());
    h.open();
    // Deadline = tunnel open (t0+1) + 120 s.
    assert_eq!(h.session.poll_timeout(), Some(h.at(121)));
    h.session
        .handle_timeout(h.at(121) - Duration::from_millis(1));
    assert!(drain(&mut h.session).is_empty());
    h.session.handle_timeout(h.at(121));
    let actions = h.finished();
    assert_eq!(
        actions,
        vec![
            Action::StopAdvert,
            Action::Close,
            Action::Finished(Outcome::Failed(FailReason::DesktopNeverConnected))
        ]
    );
    assert!(!h.session.is_advertising());
}

#[test]
fn tunnel_never_opens() {
    let mut h = Harness::new(config());
    assert_eq!(h.session.poll_timeout(), Some(h.at(120)));
    h.session.handle_timeout(h.at(120));
    let actions = h.finished();
    assert!(matches!(
        &actions[..],
        [
            Action::Close,
            Action::Finished(Outcome::Failed(FailReason::TunnelUnreachable(_)))
        ]
    ));
}

#[test]
fn tunnel_error_before_open() {
    let mut h = Harness::new(config());
    h.session
        .on_tunnel_error("connection refused".into(), h.at(0));
    assert_eq!(
        h.finished(),
        vec![Action::Finished(Outcome::Failed(
            FailReason::TunnelUnreachable("connection refused".into())
        ))]
    );
}

#[test]
fn tunnel_closed_before_msg1() {
    let mut h = Harness::new(config());
    h.open();
    h.session.on_tunnel_closed(h.at(5));
    assert_eq!(
        h.finished(),
        vec![
            Action::StopAdvert,
            Action::Close,
            Action::Finished(Outcome::Failed(FailReason::DesktopNeverConnected))
        ]
    );
}

fn handshake_fails(msg1: &[u8]) {
    let mut h = Harness::new(config());
    h.open();
    h.session.on_message(msg1, h.at(2));
    let actions = h.finished();
    assert_eq!(actions.len(), 3, "{actions:?}");
    assert_eq!(actions[0], Action::StopAdvert);
    assert_eq!(actions[1], Action::Close);
    assert!(
        matches!(
            &actions[2],
            Action::Finished(Outcome::Failed(FailReason::HandshakeFailed(_)))
        ),
        "{actions:?}"
    );
    assert!(!h.session.is_advertising());
}

#[test]
fn handshake_failures_send_nothing() {
    handshake_fails(&[]);
    handshake_fails(&[0x04; 64]); // shorter than a point
    handshake_fails(&[0x04; 81]); // not on the curve
                                  // A valid msg1 for a different PSK: AEAD failure.
    let h = Harness::new(config());
    let other_psk = [9u8; 32];
    let (_, msg1) = Initiator::qr(&other_psk, &h.desktop.identity)
        .start(Ephemeral::Random(&mut OsRng))
        .unwrap();
    handshake_fails(&msg1);
    // Right point, tag truncated.
    let mut h2 = Harness::new(config());
    let advert = h2.open();
    let (_, msg1) = h2.desktop.msg1(&advert);
    h2.session.on_message(&msg1[..70], h2.at(2));
    assert!(matches!(
        h2.finished().last(),
        Some(Action::Finished(Outcome::Failed(
            FailReason::HandshakeFailed(_)
        )))
    ));
}

#[test]
fn handshake_failure_is_final() {
    // No retry: a second, valid msg1 after a failure is ignored.
    let mut h = Harness::new(config());
    let advert = h.open();
    h.session.on_message(&[0u8; 10], h.at(2));
    h.finished();
    let (_, msg1) = h.desktop.msg1(&advert);
    h.session.on_message(&msg1, h.at(3));
    assert!(drain(&mut h.session).is_empty());
}

#[test]
fn command_timeout() {
    let mut h = Harness::new(config());
    let _desktop = h.handshake();
    h.session.handle_timeout(h.at(61));
    assert!(drain(&mut h.session).is_empty());
    h.session.handle_timeout(h.at(62));
    ends_with(&h.finished(), Outcome::Failed(FailReason::CommandTimeout));
}

fn after_handshake_message(plaintext: Option<&[u8]>, expect: fn(&FailReason) -> bool) {
    let mut h = Harness::new(config());
    let mut desktop = h.handshake();
    let wire = match plaintext {
        Some(p) => desktop.encrypt(p).unwrap(),
        None => vec![0x55; 48], // does not decrypt
    };
    h.session.on_message(&wire, h.at(3));
    let actions = h.finished();
    let Some(Action::Finished(Outcome::Failed(reason))) = actions.last() else {
        panic!("{actions:?}");
    };
    assert!(expect(reason), "{reason:?}");
    assert_eq!(actions[actions.len() - 2], Action::Close);
    assert!(!actions.iter().any(|a| matches!(a, Action::Send(_))));
}

#[test]
fn transport_failures_close() {
    after_handshake_message(None, |r| *r == FailReason::DecryptFailed);
    after_handshake_message(Some(&[]), |r| matches!(r, FailReason::BadFrame(_)));
    after_handshake_message(Some(&[0x04]), |r| matches!(r, FailReason::BadFrame(_)));
    after_handshake_message(Some(&[0xff, 1, 2]), |r| {
        matches!(r, FailReason::BadFrame(_))
    });
    after_handshake_message(Some(b"\x03{}"), |r| matches!(r, FailReason::BadFrame(_)));
    after_handshake_message(Some(&[0x00, 0x00]), |r| {
        matches!(r, FailReason::BadFrame(_))
    });
    // Invalid update payloads: trailing bytes, empty, not CBOR.
    after_handshake_message(Some(&[0x02, 0x01, 0x02, 0x03, 0x04]), |r| {
        matches!(r, FailReason::BadFrame(_))
    });
    after_handshake_message(Some(&[0x02]), |r| matches!(r, FailReason::BadFrame(_)));
    after_handshake_message(Some(&[0x02, 0xff]), |r| {
        matches!(r, FailReason::BadFrame(_))
    });
    // Shutdown before any request.
    after_handshake_message(Some(&[0x00]), |r| *r == FailReason::PeerClosedEarly);
}

#[test]
fn ctap_while_outstanding_closes() {
    let mut h = Harness::new(config());
    let mut desktop = h.handshake();
    h.session
        .on_message(&desktop.encrypt(&[0x01, 0x04]).unwrap(), h.at(3));
    drain(&mut h.session);
    h.session
        .on_message(&desktop.encrypt(&[0x01, 0x04]).unwrap(), h.at(4));
    let actions = h.finished();
    assert!(matches!(
        actions.last(),
        Some(Action::Finished(Outcome::Failed(FailReason::BadFrame(_))))
    ));
    // The late answer is dropped.
    h.session.on_ctap_response(vec![0], 0, h.at(5));
    assert!(drain(&mut h.session).is_empty());
}

#[test]
fn second_command_closes_without_shutdown() {
    let mut h = Harness::new(config());
    let mut desktop = h.handshake();
    h.session
        .on_message(&desktop.encrypt(&[0x01, 0x04]).unwrap(), h.at(3));
    drain(&mut h.session);
    h.session.on_ctap_response(vec![0x00], 0, h.at(4));
    drain(&mut h.session);
    h.session
        .on_message(&desktop.encrypt(&[0x01, 0x04]).unwrap(), h.at(5));
    ends_with(&h.finished(), Outcome::Failed(FailReason::SecondCommand));
}

#[test]
fn two_commands_allowed() {
    let mut h = Harness::new(SessionConfig {
        max_commands: 2,
        ..config()
    });
    let mut desktop = h.handshake();
    for (i, t) in [(1u64, 3u64), (2, 5)] {
        h.session
            .on_message(&desktop.encrypt(&[0x01, 0x04]).unwrap(), h.at(t));
        drain(&mut h.session);
        h.session.on_ctap_response(vec![0x00], 0, h.at(t + 1));
        let actions = drain(&mut h.session);
        assert!(matches!(&actions[..], [Action::Send(_)]));
        let expect = if i == 1 { h.at(t + 61) } else { h.at(t + 6) };
        assert_eq!(h.session.poll_timeout(), Some(expect));
    }
    h.session.on_tunnel_closed(h.at(7));
    ends_with(&h.finished(), Outcome::Completed { commands: 2 });
}

/// `00 || {1: credential, 2: authData, 3: signature, 5: n}`: a
/// getAssertion success announcing `n` credentials (CTAP 2.1 §6.2.2 step
/// 13). Raw CBOR so that a negative `n` can be written too.
fn assertion_reply(n: Option<i64>) -> Vec<u8> {
    use hybrid_cbor::Value;
    let int = |k: i64| Value::Integer(k.into());
    let mut entries = vec![
        (
            int(1),
            Value::Map(vec![
                (Value::Text("id".into()), Value::Bytes(vec![1, 2, 3])),
                (Value::Text("type".into()), Value::Text("public-key".into())),
            ]),
        ),
        (int(2), Value::Bytes(vec![0; 37])),
        (int(3), Value::Bytes(vec![0x30, 0x00])),
    ];
    if let Some(n) = n {
        entries.push((int(5), int(n)));
    }
    let mut out = vec![0x00];
    out.extend(hybrid_cbor::to_canonical_vec(&Value::Map(entries)));
    out
}

/// Sends one CTAP request at `t` and answers it at `t + 1` with `reply`,
/// the CTAP handler saying `follow_ups` getNextAssertions remain; the reply
/// must go out and the grace deadline follow.
fn serve(
    h: &mut Harness,
    desktop: &mut Crypter,
    request: &[u8],
    reply: Vec<u8>,
    follow_ups: usize,
    t: u64,
) {
    let mut frame = vec![0x01];
    frame.extend_from_slice(request);
    h.session
        .on_message(&desktop.encrypt(&frame).unwrap(), h.at(t));
    let actions = drain(&mut h.session);
    assert_eq!(
        actions,
        vec![Action::Ctap {
            request: request.to_vec()
        }]
    );
    h.session.on_ctap_response(reply, follow_ups, h.at(t + 1));
    let actions = drain(&mut h.session);
    assert!(matches!(&actions[..], [Action::Send(_)]), "{actions:?}");
    assert_eq!(h.session.poll_timeout(), Some(h.at(t + 6)));
}

/// A session past the handshake whose first request, a getAssertion, was
/// answered at t0+4 with an assertion announcing `n` credentials.
fn after_get_assertion(n: Option<i64>) -> (Harness, Crypter) {
    let mut h = Harness::new(config());
    let mut desktop = h.handshake();
    let follow_ups = n.map_or(0, |n| usize::try_from(n - 1).unwrap());
    serve(
        &mut h,
        &mut desktop,
        &[0x02, 0xa0],
        assertion_reply(n),
        follow_ups,
        3,
    );
    (h, desktop)
}

/// Sends the one-byte CTAP request `command` at `t`; the session must end
/// with `SecondCommand`.
fn refused_as_second_command(h: &mut Harness, desktop: &mut Crypter, command: u8, t: u64) {
    h.session
        .on_message(&desktop.encrypt(&[0x01, command]).unwrap(), h.at(t));
    ends_with(&h.finished(), Outcome::Failed(FailReason::SecondCommand));
}

#[test]
fn get_next_assertion_follow_ups_are_served() {
    let (mut h, mut desktop) = after_get_assertion(Some(3));
    serve(&mut h, &mut desktop, &[0x08], assertion_reply(None), 1, 5);
    serve(&mut h, &mut desktop, &[0x08], assertion_reply(None), 0, 7);
    // All three announced assertions were fetched: a fourth is refused.
    refused_as_second_command(&mut h, &mut desktop, 0x08, 9);
}

#[test]
fn follow_ups_complete_on_close_and_need_the_announcement() {
    // The desktop may take fewer than announced and close: still Completed.
    let (mut h, _) = after_get_assertion(Some(2));
    h.session.on_tunnel_closed(h.at(5));
    ends_with(&h.finished(), Outcome::Completed { commands: 1 });

    // Without numberOfCredentials, getNextAssertion is a second command.
    let (mut h, mut desktop) = after_get_assertion(None);
    refused_as_second_command(&mut h, &mut desktop, 0x08, 5);

    // Only getNextAssertion may use announced follow-ups, and only as many
    // as the handler says remain (none after a makeCredential).
    for (request, follow_ups, next) in [([0x01, 0xa0], 0, 0x08), ([0x02, 0xa0], 1, 0x02)] {
        let mut h = Harness::new(config());
        let mut desktop = h.handshake();
        let reply = assertion_reply(Some(2));
        serve(&mut h, &mut desktop, &request, reply, follow_ups, 3);
        refused_as_second_command(&mut h, &mut desktop, next, 5);
    }
}

#[test]
fn a_failed_follow_up_ends_the_list() {
    let (mut h, mut desktop) = after_get_assertion(Some(5));
    // CTAP2_ERR_NOT_ALLOWED (e.g. the 30 s window passed): none remain.
    serve(&mut h, &mut desktop, &[0x08], vec![0x30], 0, 5);
    refused_as_second_command(&mut h, &mut desktop, 0x08, 7);
}

/// A session whose one request (makeCredential) was handed out at t0+3.
fn with_request_out() -> (Harness, Crypter) {
    let mut h = Harness::new(config());
    let mut desktop = h.handshake();
    h.session
        .on_message(&desktop.encrypt(&[0x01, 0x01, 0xa0]).unwrap(), h.at(3));
    let actions = drain(&mut h.session);
    assert!(matches!(&actions[..], [Action::Ctap { .. }]), "{actions:?}");
    assert_eq!(
        h.session.poll_timeout(),
        None,
        "no deadline while processing"
    );
    (h, desktop)
}

#[test]
fn approval_deadline_runs_from_the_question_exactly() {
    let (mut h, _d) = with_request_out();
    h.session.on_user_needed(h.at(4));
    assert!(h.session.is_waiting_for_user());
    assert_eq!(h.session.state_name(), "waiting-for-user");
    assert_eq!(h.session.poll_timeout(), Some(h.at(34)));
    // Not a moment early.
    h.session
        .handle_timeout(h.at(34) - Duration::from_millis(1));
    assert!(drain(&mut h.session).is_empty());
    h.session.handle_timeout(h.at(34));
    assert_eq!(drain(&mut h.session), vec![Action::UserTimedOut]);
    assert!(!h.session.is_waiting_for_user());
    assert_eq!(h.session.poll_timeout(), None, "the handler answers next");
    // The handler's timeout reply goes out; the session completes as usual.
    h.session.on_ctap_response(vec![0x2f], 0, h.at(34));
    assert!(matches!(&drain(&mut h.session)[..], [Action::Send(_)]));
    assert_eq!(h.session.poll_timeout(), Some(h.at(39)));
    h.session.handle_timeout(h.at(39));
    ends_with(&h.finished(), Outcome::Completed { commands: 1 });
    let p = h.session.phases();
    assert_eq!((p.approvals, p.user_wait), (1, Duration::from_secs(30)));
}

#[test]
fn answered_in_time_stops_the_deadline_and_counts_the_wait() {
    let (mut h, _d) = with_request_out();
    h.session.on_user_needed(h.at(4));
    h.session.on_user_answered(h.at(9));
    assert_eq!(h.session.poll_timeout(), None);
    h.session.handle_timeout(h.at(100));
    assert!(
        drain(&mut h.session).is_empty(),
        "no timeout after the answer"
    );
    // A second question for the same request (excludeList hit, then
    // consent) gets its own full deadline.
    h.session.on_user_needed(h.at(10));
    assert_eq!(h.session.poll_timeout(), Some(h.at(40)));
    h.session.on_ctap_response(vec![0x00], 0, h.at(12));
    assert!(matches!(&drain(&mut h.session)[..], [Action::Send(_)]));
    let p = h.session.phases();
    assert_eq!((p.approvals, p.user_wait), (2, Duration::from_secs(7)));
    assert_eq!(p.first_command, Some(h.at(3)));
    assert_eq!(p.reply_sent, Some(h.at(12)));
    assert_eq!(p.desktop_message, Some(h.at(2)));
}

#[test]
fn user_needed_only_counts_with_a_request_out() {
    let mut h = Harness::new(config());
    let _d = h.handshake();
    h.session.on_user_needed(h.at(3));
    assert!(!h.session.is_waiting_for_user());
    assert_eq!(h.session.poll_timeout(), Some(h.at(62)), "command timeout");
}

#[test]
fn peer_close_or_cancel_while_the_user_is_asked() {
    let (mut h, _d) = with_request_out();
    h.session.on_user_needed(h.at(4));
    h.session.on_tunnel_closed(h.at(5));
    ends_with(&h.finished(), Outcome::Failed(FailReason::PeerClosedEarly));
    let (mut h, _d) = with_request_out();
    h.session.on_user_needed(h.at(4));
    h.session.cancel(h.at(5));
    ends_with(&h.finished(), Outcome::Failed(FailReason::Cancelled));
}

#[test]
fn peer_close_while_processing() {
    let mut h = Harness::new(config());
    let mut desktop = h.handshake();
    h.session
        .on_message(&desktop.encrypt(&[0x01, 0x04]).unwrap(), h.at(3));
    drain(&mut h.session);
    h.session.on_tunnel_closed(h.at(4));
    ends_with(&h.finished(), Outcome::Failed(FailReason::PeerClosedEarly));
}

#[test]
fn peer_close_after_handshake_without_request() {
    let mut h = Harness::new(config());
    let _d = h.handshake();
    h.session.on_tunnel_closed(h.at(4));
    ends_with(&h.finished(), Outcome::Failed(FailReason::PeerClosedEarly));
}

#[test]
fn cancel_in_every_phase() {
    let mut h = Harness::new(config());
    h.session.cancel(h.at(0));
    ends_with(&h.finished(), Outcome::Failed(FailReason::Cancelled));

    let mut h = Harness::new(config());
    h.open();
    h.session.cancel(h.at(2));
    assert_eq!(
        h.finished(),
        vec![
            Action::StopAdvert,
            Action::Close,
            Action::Finished(Outcome::Failed(FailReason::Cancelled))
        ]
    );

    let mut h = Harness::new(config());
    let mut desktop = h.handshake();
    h.session
        .on_message(&desktop.encrypt(&[0x01, 0x04]).unwrap(), h.at(3));
    drain(&mut h.session);
    h.session.cancel(h.at(4));
    ends_with(&h.finished(), Outcome::Failed(FailReason::Cancelled));

    // After the reply, cancelling just ends the grace period.
    let mut h = Harness::new(config());
    let mut desktop = h.handshake();
    h.session
        .on_message(&desktop.encrypt(&[0x01, 0x04]).unwrap(), h.at(3));
    drain(&mut h.session);
    h.session.on_ctap_response(vec![0], 0, h.at(4));
    drain(&mut h.session);
    h.session.cancel(h.at(5));
    ends_with(&h.finished(), Outcome::Completed { commands: 1 });
}

#[test]
fn advert_error_fails() {
    let mut h = Harness::new(config());
    h.open();
    h.session.on_advert_error("no adapter".into(), h.at(2));
    ends_with(
        &h.finished(),
        Outcome::Failed(FailReason::AdvertFailed("no adapter".into())),
    );
}

#[test]
fn adverts_are_fresh_and_carry_the_domain() {
    let cfg = SessionConfig {
        tunnel: TunnelBase::url("ws://127.0.0.1:1", 257).unwrap(),
        ..config()
    };
    let mut a = Harness::new(cfg.clone());
    let mut b = Harness::new(cfg);
    let (xa, xb) = (a.open(), b.open());
    assert_ne!(xa, xb, "a fresh nonce per session");
    let plain = hybrid_ble::decrypt(&EidKey::from_secret(&SECRET), &xa).unwrap();
    assert_eq!(plain.domain_id(), 257);
    assert_eq!(plain.as_bytes()[0], 0);
}

#[test]
fn outcome_texts() {
    for r in [
        FailReason::QrInvalid("x".into()),
        FailReason::QrStale("x".into()),
        FailReason::QrReplayed,
        FailReason::TunnelUnreachable("x".into()),
        FailReason::TunnelFailed("x".into()),
        FailReason::AdvertFailed("x".into()),
        FailReason::DesktopNeverConnected,
        FailReason::HandshakeFailed("x".into()),
        FailReason::DecryptFailed,
        FailReason::BadFrame("x".into()),
        FailReason::PeerClosedEarly,
        FailReason::CommandTimeout,
        FailReason::SecondCommand,
        FailReason::Cancelled,
        FailReason::Internal("x".into()),
    ] {
        assert!(!r.to_string().is_empty());
        assert!(!r.code().is_empty());
        assert!(Outcome::Failed(r).to_string().starts_with("failed: "));
    }
    assert_eq!(
        Outcome::Completed { commands: 1 }.to_string(),
        "completed (1 request answered)"
    );
}

/// Issue 16: configured durations are added with checked arithmetic — the
/// largest `Duration` sets a far deadline, never an overflow panic.
#[test]
fn huge_configured_durations_never_panic() {
    let huge = SessionConfig {
        wait_for_desktop: Duration::MAX,
        command_timeout: Duration::MAX,
        approval_timeout: Duration::MAX,
        shutdown_grace: Duration::MAX,
        ..config()
    };
    let mut h = Harness::new(huge);
    let far = h.at(365 * 24 * 3600);
    assert!(h.session.poll_timeout().unwrap() > far);
    let mut desktop = h.handshake();
    assert!(h.session.poll_timeout().unwrap() > far);
    h.session
        .on_message(&desktop.encrypt(&[0x01, 0x01, 0xa0]).unwrap(), h.at(3));
    let _ = drain(&mut h.session);
    h.session.on_user_needed(h.at(4));
    assert!(h.session.poll_timeout().unwrap() > far);
    h.session.handle_timeout(far);
    assert!(drain(&mut h.session).is_empty(), "no deadline passed");
    h.session.on_user_answered(h.at(5));
    h.session.on_ctap_response(vec![0x00, 0xa0], 0, h.at(6));
    assert!(matches!(&drain(&mut h.session)[..], [Action::Send(_)]));
    assert!(h.session.poll_timeout().unwrap() > far);
}

mod l2cap;
