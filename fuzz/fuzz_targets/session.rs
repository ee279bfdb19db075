#![no_main]
//! The phone session state machine (hybrid-session) under an arbitrary
//! sequence of events — tunnel open/error/close, raw messages, a real
//! desktop's msg1 and encrypted frames, CTAP answers, timeouts, cancel, and
//! CTAP 2.3's BLE L2CAP path (QR key 6 offered or not, listener up or not,
//! connects, messages in either framing, closes) —
//! must never panic, and must end with exactly one `Finished` after which
//! nothing more comes out. Randomness is a fixed SplitMix64 so runs replay.
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use hybrid_ble::{EidKey, L2capFraming};
use hybrid_noise::{derive_p256_from_secret, Crypter, Ephemeral, Initiator};
use hybrid_qr::{Key6, QrCode};
use hybrid_session::{Action, PhoneSession, SessionConfig};
use hybrid_tunnel_names::{RoutingId, TunnelBase};
use libfuzzer_sys::fuzz_target;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{CryptoRng, RngCore};

struct SplitMix(u64);
impl RngCore for SplitMix {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = self.next_u64() as u8;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for SplitMix {}

#[derive(Debug, Arbitrary)]
enum Event {
    Open([u8; 3]),
    TunnelError,
    Closed,
    Raw(Vec<u8>),
    /// msg1 from a desktop that decrypted the advert (if one is out).
    GoodMsg1,
    /// Encrypt this plaintext with the desktop's Crypter (once established).
    Frame(Vec<u8>),
    CtapResponse(Vec<u8>, u8),
    UserNeeded,
    UserAnswered,
    AdvertStarted,
    AdvertError,
    Advance(u16),
    Cancel,
    L2capListening(u16),
    L2capUnavailable,
    L2capConnected,
    /// A raw L2CAP message (`true`: CRLF framing).
    L2capRaw(Vec<u8>, bool),
    /// The good msg1 over L2CAP.
    L2capGoodMsg1(bool),
    /// A frame from the desktop's Crypter over L2CAP.
    L2capFrame(Vec<u8>, bool),
    L2capClosed(bool),
}

fn framing(crlf: bool) -> L2capFraming {
    if crlf {
        L2capFraming::Crlf
    } else {
        L2capFraming::LengthPrefix
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    max_commands: u8,
    offer_l2cap: bool,
    l2cap_capable: bool,
    seed: u64,
    events: Vec<Event>,
}

const SECRET: [u8; 16] = [7; 16];

fuzz_target!(|input: Input| {
    let desktop = derive_p256_from_secret(b"fuzz desktop").expect("derive");
    let desktop_eph = derive_p256_from_secret(b"fuzz desktop ephemeral").expect("derive");
    let compressed: [u8; 33] = desktop
        .public_key()
        .to_encoded_point(true)
        .as_bytes()
        .try_into()
        .expect("33 bytes");
    let mut qr = QrCode::new(compressed, SECRET).expect("qr");
    if input.offer_l2cap {
        qr = qr.with_key6(Key6::Channels(vec![0, 1]));
    }
    let config = SessionConfig {
        tunnel: TunnelBase::Domain(0),
        wait_for_desktop: Duration::from_secs(120),
        command_timeout: Duration::from_secs(60),
        approval_timeout: Duration::from_secs(30),
        max_commands: usize::from(input.max_commands % 4),
        shutdown_grace: Duration::from_secs(5),
        get_info: vec![0xa0],
    };
    let mut now = Instant::now();
    let mut session = PhoneSession::new(qr, config, now, SplitMix(input.seed));
    session.set_l2cap_capable(input.l2cap_capable);
    let offered = input.offer_l2cap && input.l2cap_capable;
    let mut advert: Option<[u8; 20]> = None;
    let mut pending_init = None;
    let mut crypter: Option<Crypter> = None;
    let mut finished = false;
    for event in input.events {
        match event {
            Event::Open(r) => session.on_tunnel_open(RoutingId(r), now),
            Event::TunnelError => session.on_tunnel_error("fuzz".into(), now),
            Event::Closed => session.on_tunnel_closed(now),
            Event::Raw(b) => session.on_message(&b, now),
            Event::GoodMsg1 | Event::L2capGoodMsg1(_) => {
                let over = match event {
                    Event::L2capGoodMsg1(crlf) => Some(framing(crlf)),
                    _ => None,
                };
                if let Some(a) = advert {
                    if let Ok(plain) = hybrid_ble::decrypt(&EidKey::from_secret(&SECRET), &a) {
                        let psk = hybrid_ble::psk(&SECRET, &plain);
                        if let Ok((wait, msg1)) = Initiator::qr(psk.as_bytes(), &desktop)
                            .start(Ephemeral::Fixed(&desktop_eph))
                        {
                            pending_init = Some(wait);
                            match over {
                                Some(f) => session.on_l2cap_message(&msg1, f, now),
                                None => session.on_message(&msg1, now),
                            }
                        }
                    }
                }
            }
            Event::Frame(p) => {
                if let Some(c) = crypter.as_mut() {
                    if let Ok(wire) = c.encrypt(&p) {
                        session.on_message(&wire, now);
                    }
                }
            }
            Event::CtapResponse(r, follow_ups) => {
                session.on_ctap_response(r, usize::from(follow_ups % 4), now)
            }
            Event::UserNeeded => session.on_user_needed(now),
            Event::UserAnswered => session.on_user_answered(now),
            Event::AdvertStarted => session.on_advert_started(now),
            Event::AdvertError => session.on_advert_error("fuzz".into(), now),
            Event::Advance(s) => {
                now += Duration::from_secs(u64::from(s));
                session.handle_timeout(now);
            }
            Event::Cancel => session.cancel(now),
            Event::L2capListening(psm) => session.on_l2cap_listening(psm, now),
            Event::L2capUnavailable => session.on_l2cap_unavailable("fuzz", now),
            Event::L2capConnected => {
                let _ = session.on_l2cap_connected(now);
            }
            Event::L2capRaw(b, crlf) => session.on_l2cap_message(&b, framing(crlf), now),
            Event::L2capFrame(p, crlf) => {
                if let Some(c) = crypter.as_mut() {
                    if let Ok(wire) = c.encrypt(&p) {
                        session.on_l2cap_message(&wire, framing(crlf), now);
                    }
                }
            }
            Event::L2capClosed(clean) => {
                session.on_l2cap_closed((!clean).then(|| "fuzz".to_owned()), now)
            }
        }
        while let Some(action) = session.poll_action() {
            assert!(!finished, "action after Finished: {action:?}");
            match action {
                Action::StartAdvert(a) => advert = Some(a),
                Action::StartAdvertWithPsm { advert: a, .. } => {
                    // Never a PSM for a QR without the offer.
                    assert!(offered, "PSM advert without the offer");
                    advert = Some(a);
                }
                Action::ListenL2cap => assert!(offered, "listening without the offer"),
                Action::Send(bytes) => {
                    if let Some(wait) = pending_init.take() {
                        if let Ok(est) = wait.finish(&bytes) {
                            crypter = Some(est.into_parts().0);
                        }
                    } else if let Some(c) = crypter.as_mut() {
                        let _ = c.decrypt(&bytes);
                    }
                }
                Action::Finished(_) => finished = true,
                Action::UserTimedOut => assert!(!session.is_waiting_for_user()),
                _ => {}
            }
        }
        assert_eq!(finished, session.is_finished());
        if let Some(t) = session.poll_timeout() {
            assert!(!finished);
            let _ = t;
        }
    }
});
