//! Channel choice for CTAP 2.3's BLE L2CAP data path
//! (`hybrid-ble-l2cap.md` §6, §8): the QR's key 6 and the radio decide
//! whether it is offered; the first handshake — tunnel or L2CAP — wins.

use hybrid_ble::L2capFraming;
use hybrid_qr::Key6;

use super::*;
use crate::DataPath;

const PSM: u16 = 0x0081;

/// A session whose QR carries `key6`, with the radio's L2CAP ability set,
/// after the tunnel opened: its first actions.
fn opened(key6: Key6, capable: bool) -> (Harness, Vec<Action>) {
    let mut h = Harness::new(config());
    h.desktop.qr = h.desktop.qr.clone().with_key6(key6);
    h.session = PhoneSession::new(h.desktop.qr.clone(), config(), h.t0, OsRng);
    drain(&mut h.session);
    h.session.set_l2cap_capable(capable);
    h.session.on_tunnel_open(ROUTING, h.at(1));
    let actions = drain(&mut h.session);
    (h, actions)
}

/// Offered and capable: listening, then the PSM advertised. Returns the EID.
fn advertised() -> (Harness, [u8; ADVERT_LEN]) {
    let (mut h, actions) = opened(Key6::Channels(vec![0, 1]), true);
    assert_eq!(actions, vec![Action::ListenL2cap]);
    assert!(!h.session.is_advertising(), "no advert before the listener");
    h.session.on_l2cap_listening(PSM, h.at(1));
    let actions = drain(&mut h.session);
    let [Action::StartAdvertWithPsm { advert, psm }] = actions[..] else {
        panic!("expected StartAdvertWithPsm, got {actions:?}");
    };
    assert_eq!(psm, PSM);
    assert_eq!(h.session.advert(), Some(advert));
    (h, advert)
}

/// The desktop's msg1 over L2CAP in `framing`; checks msg2 and the
/// post-handshake message and returns the desktop's Crypter.
fn l2cap_handshake(h: &mut Harness, advert: &[u8; ADVERT_LEN], framing: L2capFraming) -> Crypter {
    assert!(h.session.on_l2cap_connected(h.at(2)));
    assert_eq!(drain(&mut h.session), vec![Action::StopAdvert]);
    let (waiting, msg1) = h.desktop.msg1(advert);
    h.session.on_l2cap_message(&msg1, framing, h.at(2));
    let actions = drain(&mut h.session);
    let [Action::UsePath(DataPath::L2cap), Action::Send(msg2), Action::Send(post)] = &actions[..]
    else {
        panic!("expected UsePath(L2cap), Send, Send; got {actions:?}");
    };
    assert!(framing.is_sendable(msg2));
    let (mut crypter, _) = waiting.finish(msg2).unwrap().into_parts();
    let plain = crypter.decrypt(post).unwrap();
    let (msg, _) = PostHandshakeMessage::decode(&plain).unwrap();
    assert_eq!(msg.require_ctap().unwrap(), GET_INFO);
    assert_eq!(h.session.path(), Some(DataPath::L2cap));
    crypter
}

#[test]
fn only_a_qr_offering_l2cap_and_a_capable_radio_listen() {
    for (key6, capable) in [
        (Key6::Absent, true),
        (Key6::Bool(true), true),
        (Key6::Channels(vec![0]), true),
        (Key6::Other, true),
        (Key6::Channels(vec![0, 1]), false),
    ] {
        let (h, actions) = opened(key6.clone(), capable);
        let [Action::StartAdvert(_)] = actions[..] else {
            panic!("{key6:?} capable={capable}: expected the plain advert, got {actions:?}");
        };
        assert!(h.session.is_advertising());
    }
    let (_, actions) = opened(Key6::Channels(vec![1, 7]), true);
    assert_eq!(actions, vec![Action::ListenL2cap]);
}

#[test]
fn l2cap_ceremony_in_both_framings() {
    for framing in [L2capFraming::LengthPrefix, L2capFraming::Crlf] {
        let (mut h, advert) = advertised();
        let mut desktop = l2cap_handshake(&mut h, &advert, framing);
        // A second central is refused; the tunnel is ignored from now on.
        assert!(!h.session.on_l2cap_connected(h.at(3)));
        // (garbage that would fail the session if it were decrypted)
        h.session.on_message(&[0u8; 40], h.at(3));
        h.session.on_tunnel_closed(h.at(3));
        assert_eq!(drain(&mut h.session), vec![]);
        let request = desktop.encrypt(&[1, 4]).unwrap();
        h.session.on_l2cap_message(&request, framing, h.at(3));
        assert_eq!(
            drain(&mut h.session),
            vec![Action::Ctap { request: vec![4] }]
        );
        h.session.on_ctap_response(vec![0, 0xa0], 0, h.at(4));
        let actions = drain(&mut h.session);
        let [Action::Send(reply)] = &actions[..] else {
            panic!("{actions:?}");
        };
        assert_eq!(desktop.decrypt(reply).unwrap(), vec![1, 0, 0xa0]);
        h.session.on_l2cap_closed(None, h.at(5));
        ends_with(&h.finished(), Outcome::Completed { commands: 1 });
    }
}

#[test]
fn tunnel_handshake_first_wins() {
    let (mut h, advert) = advertised();
    let (waiting, msg1) = h.desktop.msg1(&advert);
    h.session.on_message(&msg1, h.at(2));
    let actions = drain(&mut h.session);
    let [Action::StopAdvert, Action::UsePath(DataPath::Tunnel), Action::Send(msg2), Action::Send(_)] =
        &actions[..]
    else {
        panic!("{actions:?}");
    };
    waiting.finish(msg2).unwrap();
    assert_eq!(h.session.path(), Some(DataPath::Tunnel));
    // L2CAP is gone: a late connection is refused, its messages ignored,
    // its close changes nothing.
    assert!(!h.session.on_l2cap_connected(h.at(3)));
    h.session
        .on_l2cap_message(&msg1, L2capFraming::LengthPrefix, h.at(3));
    h.session.on_l2cap_closed(Some("reset".into()), h.at(3));
    assert_eq!(drain(&mut h.session), vec![]);
    assert_eq!(h.session.state_name(), "ready");
}

#[test]
fn l2cap_trouble_before_the_handshake_falls_back_to_the_tunnel() {
    // No listener: the plain advert.
    let (mut h, actions) = opened(Key6::Channels(vec![0, 1]), true);
    assert_eq!(actions, vec![Action::ListenL2cap]);
    h.session.on_l2cap_unavailable("no LE address", h.at(1));
    let actions = drain(&mut h.session);
    let [Action::StartAdvert(_)] = actions[..] else {
        panic!("{actions:?}");
    };
    // The PSM advert failed: close the listener, the plain advert.
    let (mut h, advert) = advertised();
    h.session.on_l2cap_unavailable("not connectable", h.at(1));
    assert_eq!(
        drain(&mut h.session),
        vec![Action::CloseL2cap, Action::StartAdvert(advert)]
    );
    // A desktop connected and the channel broke before its msg1: the tunnel
    // still carries the handshake.
    let (mut h, advert) = advertised();
    assert!(h.session.on_l2cap_connected(h.at(2)));
    drain(&mut h.session);
    h.session
        .on_l2cap_closed(Some("connection reset".into()), h.at(2));
    assert_eq!(drain(&mut h.session), vec![Action::CloseL2cap]);
    let (_, msg1) = h.desktop.msg1(&advert);
    h.session.on_message(&msg1, h.at(3));
    let actions = drain(&mut h.session);
    assert!(
        matches!(
            &actions[..],
            [
                Action::UsePath(DataPath::Tunnel),
                Action::Send(_),
                Action::Send(_)
            ]
        ),
        "{actions:?}"
    );
}

#[test]
fn tunnel_loss_waits_for_l2cap_and_both_lost_is_never_connected() {
    let (mut h, advert) = advertised();
    h.session.on_tunnel_error("reset".into(), h.at(2));
    h.session.on_tunnel_closed(h.at(2));
    assert_eq!(drain(&mut h.session), vec![]);
    // A tunnel message after the loss is not a handshake.
    let (_, msg1) = h.desktop.msg1(&advert);
    h.session.on_message(&msg1, h.at(2));
    assert_eq!(drain(&mut h.session), vec![]);
    l2cap_handshake(&mut h, &advert, L2capFraming::LengthPrefix);

    let (mut h, _) = advertised();
    h.session.on_tunnel_closed(h.at(2));
    h.session
        .on_l2cap_closed(Some("accept failed".into()), h.at(3));
    let actions = h.finished();
    assert_eq!(actions[0], Action::StopAdvert);
    ends_with(&actions, Outcome::Failed(FailReason::DesktopNeverConnected));
}

/// A desktop that connected over L2CAP and lost its channel before its
/// handshake is not reported as never connected: the link's error (or the
/// desktop's close) is the reason, whether the tunnel was gone already or
/// the wait ran out afterwards.
#[test]
fn a_connected_desktop_whose_channel_drops_is_not_never_connected() {
    let (mut h, _) = advertised();
    h.session.on_tunnel_closed(h.at(2));
    assert!(h.session.on_l2cap_connected(h.at(2)));
    drain(&mut h.session);
    h.session
        .on_l2cap_closed(Some("connection reset".into()), h.at(3));
    let Outcome::Failed(FailReason::TunnelFailed(why)) = h.session.outcome().unwrap().clone()
    else {
        panic!("{:?}", h.session.outcome());
    };
    assert!(why.contains("L2CAP channel: connection reset"), "{why}");

    // Closed cleanly by the desktop, the tunnel still up: the session
    // falls back to the tunnel, and when nothing comes the close stands.
    let (mut h, _) = advertised();
    assert!(h.session.on_l2cap_connected(h.at(2)));
    drain(&mut h.session);
    h.session.on_l2cap_closed(None, h.at(3));
    assert_eq!(drain(&mut h.session), vec![Action::CloseL2cap]);
    h.session.handle_timeout(h.at(121));
    ends_with(&h.finished(), Outcome::Failed(FailReason::PeerClosedEarly));

    // A listener that failed before any desktop connected is still
    // "never connected" (above).
}

#[test]
fn never_connected_closes_the_listener_too() {
    let (mut h, _) = advertised();
    assert_eq!(h.session.poll_timeout(), Some(h.at(121)));
    h.session.handle_timeout(h.at(121));
    let actions = h.finished();
    assert_eq!(actions[0], Action::StopAdvert);
    ends_with(&actions, Outcome::Failed(FailReason::DesktopNeverConnected));
}

#[test]
fn crlf_candidates_that_do_not_decrypt_are_extended() {
    let (mut h, advert) = advertised();
    assert!(h.session.on_l2cap_connected(h.at(2)));
    drain(&mut h.session);
    let (_, msg1) = h.desktop.msg1(&advert);
    // msg1 cut at a 0D 0A inside it: ask for more, fail nothing.
    h.session
        .on_l2cap_message(&msg1[..40], L2capFraming::Crlf, h.at(2));
    assert_eq!(drain(&mut h.session), vec![Action::ExtendCandidate]);
    assert!(!h.session.is_finished());
    let mut desktop = l2cap_after_connect(&mut h, &advert, L2capFraming::Crlf);
    let request = desktop.encrypt(&[1, 4]).unwrap();
    h.session
        .on_l2cap_message(&request[..20], L2capFraming::Crlf, h.at(3));
    assert_eq!(drain(&mut h.session), vec![Action::ExtendCandidate]);
    h.session
        .on_l2cap_message(&request, L2capFraming::Crlf, h.at(3));
    assert_eq!(
        drain(&mut h.session),
        vec![Action::Ctap { request: vec![4] }]
    );
    // With a length prefix there is no ambiguity: a bad message is fatal.
    let (mut h, advert) = advertised();
    let _ = l2cap_handshake(&mut h, &advert, L2capFraming::LengthPrefix);
    h.session
        .on_l2cap_message(&[0u8; 40], L2capFraming::LengthPrefix, h.at(3));
    ends_with(&h.finished(), Outcome::Failed(FailReason::DecryptFailed));
}

/// [`l2cap_handshake`] for a desktop already connected.
fn l2cap_after_connect(
    h: &mut Harness,
    advert: &[u8; ADVERT_LEN],
    framing: L2capFraming,
) -> Crypter {
    let (waiting, msg1) = h.desktop.msg1(advert);
    h.session.on_l2cap_message(&msg1, framing, h.at(2));
    let actions = drain(&mut h.session);
    let [Action::UsePath(DataPath::L2cap), Action::Send(msg2), Action::Send(_)] = &actions[..]
    else {
        panic!("{actions:?}");
    };
    waiting.finish(msg2).unwrap().into_parts().0
}

#[test]
fn crlf_msg2_never_holds_a_terminator() {
    // ≈ 1 in 800 msg2s holds 0D 0A: 300 handshakes meet one about a third
    // of the time (a debug build's P-256 is too slow for more here).
    for _ in 0..300 {
        let (mut h, advert) = advertised();
        let _ = l2cap_handshake(&mut h, &advert, L2capFraming::Crlf);
    }
}
