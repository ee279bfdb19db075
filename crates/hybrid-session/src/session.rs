//! The phone session state machine (quinn-proto style: inputs with `now`,
//! outputs pulled with [`PhoneSession::poll_action`] and
//! [`PhoneSession::poll_timeout`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hybrid_ble::{EidKey, EidPlaintext, L2capFraming, Psk, ADVERT_LEN};
use hybrid_ctap::command::CMD_GET_NEXT_ASSERTION;
use hybrid_noise::post_handshake::PostHandshakeMessage;
use hybrid_noise::{Crypter, Ephemeral, Frame, MessageType, Responder};
use hybrid_qr::QrCode;
use hybrid_tunnel_names::{RoutingId, TunnelId};
use p256::PublicKey;
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::config::SessionConfig;
use crate::outcome::{FailReason, Outcome};

/// What the session asks its driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open the phone's tunnel: `GET /cable/new/<tunnel id>` on
    /// [`SessionConfig::tunnel`] (§4.2, §10 step 3) — `url`, with `origin`
    /// as the `Origin` header; then call [`PhoneSession::on_tunnel_open`]
    /// or [`PhoneSession::on_tunnel_error`].
    OpenTunnel {
        /// The `/cable/new/` URL, to open as it is.
        url: String,
        /// The `Origin` header to send (the tunnel server's base, §4.2).
        origin: String,
        /// The tunnel ID derived from the QR secret (§2.2 purpose 2).
        tunnel_id: TunnelId,
    },
    /// Broadcast this 20-byte advert (§3, §10 step 4): non-connectable,
    /// exactly 20 bytes of service data — the only advert for a QR that does
    /// not offer the BLE L2CAP channel.
    StartAdvert([u8; ADVERT_LEN]),
    /// The QR offered CTAP 2.3's BLE L2CAP data channel and the radio can do
    /// it (`hybrid-ble-l2cap.md` §8 step 1): listen on an LE credit-based
    /// channel with a dynamic PSM and no security, then call
    /// [`PhoneSession::on_l2cap_listening`] or
    /// [`PhoneSession::on_l2cap_unavailable`]. Accept at most one desktop
    /// and report it with [`PhoneSession::on_l2cap_connected`].
    ListenL2cap,
    /// Broadcast the connectable CTAP 2.3 advert: service data `advert ‖
    /// {1: psm}` (`hybrid_ble::service_data_with_psm`, §2). Only ever issued
    /// for a QR that offered the channel. If the radio cannot, call
    /// [`PhoneSession::on_l2cap_unavailable`]: the session falls back to
    /// [`Action::StartAdvert`].
    StartAdvertWithPsm {
        /// The 20-byte EID.
        advert: [u8; ADVERT_LEN],
        /// The listener's PSM.
        psm: u16,
    },
    /// The desktop's handshake arrived on `DataPath` first: from now on every
    /// [`Action::Send`] goes there. Close the other path — the tunnel, or the
    /// L2CAP listener and any L2CAP connection (§6: first handshake wins).
    UsePath(DataPath),
    /// Stop listening for and close any L2CAP connection; the session goes
    /// on over the tunnel (fallback, §6 step 3).
    CloseL2cap,
    /// The last L2CAP message did not decrypt and the channel frames with
    /// `0D 0A`: its terminator was part of the ciphertext. Extend the
    /// candidate (`hybrid_ble::L2capDecoder::extend_candidate`) and deliver
    /// it again with [`PhoneSession::on_l2cap_message`] (§4 (b)).
    ExtendCandidate,
    /// Stop broadcasting.
    StopAdvert,
    /// Send one message on the data path in use: a binary WebSocket message
    /// on the tunnel, a framed message on the L2CAP channel (before
    /// [`Action::UsePath`], the tunnel).
    Send(Vec<u8>),
    /// Run this CTAP request (`command byte || CBOR`) and hand the answer to
    /// [`PhoneSession::on_ctap_response`]. If the request needs the user,
    /// say so with [`PhoneSession::on_user_needed`]: the approval deadline
    /// starts then.
    Ctap {
        /// The request.
        request: Vec<u8>,
    },
    /// The user did not answer within [`SessionConfig::approval_timeout`]:
    /// stop asking and answer the request as timed out (the CTAP handler's
    /// `CTAP2_ERR_USER_ACTION_TIMEOUT`), then hand that reply to
    /// [`PhoneSession::on_ctap_response`] as usual.
    UserTimedOut,
    /// Close the tunnel (normal closure), the L2CAP channel and listener,
    /// whatever is open. Never preceded by a shutdown frame (§6.3: the phone
    /// never sends `00`).
    Close,
    /// The session is over; nothing follows.
    Finished(Outcome),
}

/// Which channel carries a session's messages once the desktop's handshake
/// arrived (`hybrid-ble-l2cap.md` §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataPath {
    /// The WebSocket tunnel through the tunnel server (§4).
    Tunnel,
    /// CTAP 2.3's BLE L2CAP channel, straight to the desktop.
    L2cap,
}

impl DataPath {
    /// `"tunnel"` or `"l2cap"` (logs, reports).
    pub fn name(self) -> &'static str {
        match self {
            DataPath::Tunnel => "tunnel",
            DataPath::L2cap => "l2cap",
        }
    }
}

/// How often msg2 is made again, with a fresh ephemeral key, until it holds
/// no `0D 0A` for a CRLF-framing desktop (§4 (a)); each try fails with
/// probability ≈ 80 / 65536.
const MSG2_TRIES: usize = 16;

/// The L2CAP side of a session whose QR offered the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L2cap {
    /// Not offered by the QR, not possible on this radio, or given up.
    Off,
    /// `ListenL2cap` issued; the advert waits for the PSM.
    Listening,
    /// The PSM is advertised; no desktop connected yet.
    Advertised,
    /// One desktop connected; its handshake has not arrived.
    Connected,
}

/// When each phase of the session happened, for timing tables. Absent
/// phases were not reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    /// The session was created (QR accepted).
    pub started: Instant,
    /// The tunnel opened ([`PhoneSession::on_tunnel_open`]).
    pub tunnel_open: Option<Instant>,
    /// The advert was handed out (`StartAdvert`), or the driver's report of
    /// the radio starting ([`PhoneSession::on_advert_started`]).
    pub advert_out: Option<Instant>,
    /// The desktop's first message (msg1, §5.3) arrived — the QR reached a
    /// handshake, whatever its result (hybridd's replay policy keys on this).
    pub desktop_message: Option<Instant>,
    /// msg2 and the post-handshake message were produced.
    pub handshake_done: Option<Instant>,
    /// The first CTAP request arrived.
    pub first_command: Option<Instant>,
    /// Time spent waiting for the user (prompt shown → answer known,
    /// including the PIN check), summed over the session's approvals; the
    /// CTAP processing time is `reply_sent − first_command − user_wait`.
    pub user_wait: Duration,
    /// How many times the user was asked.
    pub approvals: u32,
    /// The (last) CTAP reply was handed out.
    pub reply_sent: Option<Instant>,
    /// `Finished` was produced.
    pub finished: Option<Instant>,
}

impl Phases {
    /// Elapsed time from `started` to `at`, if reached.
    pub fn since_start(&self, at: Option<Instant>) -> Option<Duration> {
        at.map(|t| t.saturating_duration_since(self.started))
    }
}

/// The QR-derived secrets kept until the handshake; zeroized on drop.
struct Secrets {
    qr_secret: Zeroizing<[u8; hybrid_qr::SECRET_SIZE]>,
    eid_key: EidKey,
    desktop_identity: PublicKey,
}

/// The outstanding request is waiting for the user.
#[derive(Debug, Clone, Copy)]
struct UserWait {
    since: Instant,
    deadline: Instant,
}

enum State {
    /// `OpenTunnel` was issued; waiting for the tunnel.
    OpeningTunnel { deadline: Instant },
    /// The advert is out; waiting for msg1 (§5.3).
    Advertising { psk: Psk, deadline: Instant },
    /// Handshake done; the ready loop (§6.3, §10 step 8).
    Ready {
        crypter: Crypter,
        /// Requests received so far that count toward
        /// [`SessionConfig::max_commands`] (follow-ups do not).
        received: usize,
        /// Requests answered so far, follow-ups included.
        answered: usize,
        /// Whether a request is with the CTAP handler.
        outstanding: bool,
        /// How many `authenticatorGetNextAssertion` follow-ups the CTAP
        /// handler's last reply left open (CTAP 2.1 §6.3).
        follow_ups: usize,
        /// The command timeout (none while a request is outstanding) or,
        /// once every allowed command is answered, the shutdown grace.
        deadline: Option<Instant>,
        /// While the outstanding request waits for the user: when that
        /// wait began and when it ends (the approval deadline).
        user: Option<UserWait>,
    },
    /// `Finished` issued; every input is ignored.
    Done,
}

/// One phone-side hybrid transaction in QR mode (hybrid-protocol.md §0,
/// §10), without IO. Create it with an accepted QR, then loop:
/// [`poll_action`](Self::poll_action) until `None`, wait for IO or
/// [`poll_timeout`](Self::poll_timeout), feed the event in.
pub struct PhoneSession<R: CryptoRngCore> {
    config: SessionConfig,
    /// The advert's nonce and the EID. The Noise ephemeral is generated by
    /// AWS-LC inside the handshake ([`Ephemeral::Fresh`]).
    rng: R,
    secrets: Option<Secrets>,
    tunnel_id: TunnelId,
    routing_id: Option<RoutingId>,
    advert: Option<[u8; ADVERT_LEN]>,
    state: State,
    actions: VecDeque<Action>,
    phases: Phases,
    outcome: Option<Outcome>,
    advertising: bool,
    tunnel_requested: bool,
    /// The tunnel reported closed or failed before the handshake while the
    /// L2CAP channel could still carry it.
    tunnel_gone: bool,
    /// The QR offered the L2CAP channel (key 6 contains 1) and the driver
    /// said the radio can ([`PhoneSession::set_l2cap_capable`]).
    l2cap_offered: bool,
    l2cap_capable: bool,
    l2cap: L2cap,
    /// How a desktop's L2CAP channel ended after it connected and before
    /// its handshake, reported instead of `DesktopNeverConnected` if no
    /// handshake comes at all ([`PhoneSession::no_handshake`]).
    l2cap_lost: Option<FailReason>,
    path: Option<DataPath>,
}

impl<R: CryptoRngCore> std::fmt::Debug for PhoneSession<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneSession")
            .field("state", &self.state_name())
            .field("routing_id", &self.routing_id)
            .field("phases", &self.phases)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

/// Longest deadline a configured duration can set: about a century. A
/// larger [`SessionConfig`] duration (even [`Duration::MAX`]) means "no
/// practical limit", never an overflow panic (issue 16).
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + d`, capped at [`FAR_FUTURE`] from `now`: configured durations
/// never overflow `Instant`.
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d.min(FAR_FUTURE)).unwrap_or(now)
}

impl<R: CryptoRngCore> PhoneSession<R> {
    /// Starts a session for `qr`, which the caller has already parsed and
    /// checked for freshness. The first action is `OpenTunnel` (§10 steps
    /// 2–3); the tunnel must open within `wait_for_desktop`.
    pub fn new(qr: QrCode, config: SessionConfig, now: Instant, rng: R) -> Self {
        let tunnel_id = TunnelId(hybrid_ble::tunnel_id(qr.secret()));
        let mut session = PhoneSession {
            rng,
            secrets: None,
            tunnel_id,
            routing_id: None,
            advert: None,
            state: State::OpeningTunnel {
                deadline: after(now, config.wait_for_desktop),
            },
            actions: VecDeque::new(),
            phases: Phases {
                started: now,
                tunnel_open: None,
                advert_out: None,
                desktop_message: None,
                handshake_done: None,
                first_command: None,
                user_wait: Duration::ZERO,
                approvals: 0,
                reply_sent: None,
                finished: None,
            },
            outcome: None,
            advertising: false,
            tunnel_requested: false,
            tunnel_gone: false,
            l2cap_offered: qr.offers_ble_l2cap(),
            l2cap_capable: false,
            l2cap: L2cap::Off,
            l2cap_lost: None,
            path: None,
            config,
        };
        let Some(desktop_identity) = qr.peer_public_key() else {
            // hybrid-qr validated key 0 already; refuse rather than panic.
            session.fail(
                now,
                FailReason::QrInvalid("identity key is not a P-256 point".into()),
            );
            return session;
        };
        session.secrets = Some(Secrets {
            qr_secret: Zeroizing::new(*qr.secret()),
            eid_key: EidKey::from_secret(qr.secret()),
            desktop_identity,
        });
        drop(qr);
        let tunnel = &session.config.tunnel;
        match tunnel
            .new_url(&tunnel_id)
            .and_then(|url| Ok((url, tunnel.origin()?)))
        {
            Ok((url, origin)) => {
                session.tunnel_requested = true;
                session.actions.push_back(Action::OpenTunnel {
                    url,
                    origin,
                    tunnel_id,
                });
            }
            Err(e) => session.fail(now, FailReason::TunnelUnreachable(e.to_string())),
        }
        session
    }

    /// The next thing to do, if any. After `Finished` this returns `None`.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The action [`poll_action`](Self::poll_action) would return next,
    /// left in place (a driver batching sends looks ahead with it).
    pub fn peek_action(&self) -> Option<&Action> {
        self.actions.front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next:
    /// the approval deadline while the user is asked; `None` while a CTAP
    /// request is with the handler otherwise, and once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::OpeningTunnel { deadline } | State::Advertising { deadline, .. } => {
                Some(*deadline)
            }
            State::Ready {
                user: Some(wait), ..
            } => Some(wait.deadline),
            State::Ready { deadline, .. } => *deadline,
            State::Done => None,
        }
    }

    /// Fires the current timeout if `now` has reached it:
    /// * tunnel not open → `TunnelUnreachable`;
    /// * no msg1 → advert stopped, tunnel closed, `DesktopNeverConnected`
    ///   (§5.3 "Failure handling": a timeout is handled like an early close);
    /// * the user did not answer in time → `UserTimedOut` (the session goes
    ///   on: the handler answers the request as timed out);
    /// * no request after the handshake → `CommandTimeout`;
    /// * grace after the last reply over → close, `Completed`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        if let State::Ready { user, .. } = &mut self.state {
            if let Some(wait) = user.take() {
                self.phases.user_wait += now.saturating_duration_since(wait.since);
                self.actions.push_back(Action::UserTimedOut);
                return;
            }
        }
        match &self.state {
            State::OpeningTunnel { .. } => {
                let why = format!(
                    "no answer within {} s",
                    self.config.wait_for_desktop.as_secs()
                );
                self.fail(now, FailReason::TunnelUnreachable(why));
            }
            State::Advertising { .. } => {
                let reason = self.no_handshake();
                self.fail(now, reason)
            }
            State::Ready { answered, .. } => {
                // Grace after the last reply over, or more commands were
                // allowed but none came: the answered ones stand.
                let answered = *answered;
                if answered > 0 {
                    self.complete(now, answered);
                } else {
                    self.fail(now, FailReason::CommandTimeout);
                }
            }
            State::Done => {}
        }
    }

    /// The tunnel opened with `routing_id` (§4.2). Builds the EID plaintext
    /// `00 ‖ nonce ‖ routing_id ‖ LE16(domain)`, derives the PSK from it
    /// (§5.3) and issues `StartAdvert` (§10 steps 4–5). The desktop has
    /// `wait_for_desktop` from now to send msg1.
    pub fn on_tunnel_open(&mut self, routing_id: RoutingId, now: Instant) {
        if !matches!(self.state, State::OpeningTunnel { .. }) {
            return;
        }
        let Some(secrets) = &self.secrets else {
            return;
        };
        let plaintext =
            EidPlaintext::random(&mut self.rng, routing_id.0, self.config.tunnel.domain_id());
        let advert = hybrid_ble::encrypt(&secrets.eid_key, &plaintext);
        let psk = hybrid_ble::psk(secrets.qr_secret.as_slice(), &plaintext);
        self.routing_id = Some(routing_id);
        self.advert = Some(advert);
        self.phases.tunnel_open = Some(now);
        self.phases.advert_out = Some(now);
        if self.l2cap_offered && self.l2cap_capable {
            // The listener must exist before its PSM is advertised (§3).
            self.l2cap = L2cap::Listening;
            self.actions.push_back(Action::ListenL2cap);
        } else {
            self.advertising = true;
            self.actions.push_back(Action::StartAdvert(advert));
        }
        self.state = State::Advertising {
            psk,
            deadline: after(now, self.config.wait_for_desktop),
        };
    }

    /// Says whether the radio can offer CTAP 2.3's BLE L2CAP channel
    /// (connectable adverts and an LE credit-based listener). Call before
    /// [`on_tunnel_open`](Self::on_tunnel_open); off by default. The channel
    /// is offered only when the QR asks for it too.
    pub fn set_l2cap_capable(&mut self, capable: bool) {
        self.l2cap_capable = capable;
    }

    /// The L2CAP listener answered `ListenL2cap`: advertise its PSM.
    pub fn on_l2cap_listening(&mut self, psm: u16, now: Instant) {
        let _ = now;
        if self.l2cap != L2cap::Listening || !matches!(self.state, State::Advertising { .. }) {
            return;
        }
        let Some(advert) = self.advert else {
            return;
        };
        self.l2cap = L2cap::Advertised;
        self.advertising = true;
        self.actions
            .push_back(Action::StartAdvertWithPsm { advert, psm });
    }

    /// The L2CAP channel cannot be offered (no listener, or the radio could
    /// not advertise the PSM): the session goes on with the plain 20-byte
    /// advert and the tunnel alone.
    pub fn on_l2cap_unavailable(&mut self, reason: &str, now: Instant) {
        let _ = (reason, now);
        if !matches!(self.l2cap, L2cap::Listening | L2cap::Advertised)
            || !matches!(self.state, State::Advertising { .. })
        {
            return;
        }
        let Some(advert) = self.advert else {
            return;
        };
        if self.l2cap == L2cap::Advertised {
            self.actions.push_back(Action::CloseL2cap);
        }
        self.l2cap = L2cap::Off;
        self.advertising = true;
        self.actions.push_back(Action::StartAdvert(advert));
    }

    /// A desktop connected to the L2CAP listener. The first one is taken —
    /// the advert stops (its job is done) — and `true` returned; any other
    /// (a second central, or one while the channel is not offered) gets
    /// `false`: close it (one connection per transaction, §3).
    pub fn on_l2cap_connected(&mut self, now: Instant) -> bool {
        let _ = now;
        if self.l2cap != L2cap::Advertised || !matches!(self.state, State::Advertising { .. }) {
            return false;
        }
        self.l2cap = L2cap::Connected;
        self.stop_advert();
        true
    }

    /// One message from the L2CAP channel, unwrapped with the `framing` the
    /// desktop uses (`hybrid_ble::L2capDecoder`). The first is msg1, as on
    /// the tunnel ([`on_message`](Self::on_message)); in the CRLF framing a
    /// message that does not decrypt is a candidate cut at a `0D 0A` inside
    /// the ciphertext and is asked for again, longer
    /// ([`Action::ExtendCandidate`]; the decoder bounds how often).
    pub fn on_l2cap_message(&mut self, bytes: &[u8], framing: L2capFraming, now: Instant) {
        match &self.state {
            State::Advertising { .. } if self.l2cap == L2cap::Connected => {
                self.on_msg1(bytes, DataPath::L2cap, Some(framing), now)
            }
            State::Ready { .. } if self.path == Some(DataPath::L2cap) => {
                self.on_transport(bytes, Some(framing), now)
            }
            _ => {}
        }
    }

    /// The L2CAP channel (or listener) ended: `error` is why, `None` for a
    /// clean close. Once the channel carries the session this is handled as
    /// the tunnel's close or failure is ([`on_tunnel_closed`](Self::on_tunnel_closed),
    /// [`on_tunnel_error`](Self::on_tunnel_error)); before, the session falls
    /// back to the tunnel ([`Action::CloseL2cap`]) — or, if the tunnel is
    /// gone too, ends: `DesktopNeverConnected` when no desktop had
    /// connected, else how its channel ended ([`PhoneSession::no_handshake`]).
    pub fn on_l2cap_closed(&mut self, error: Option<String>, now: Instant) {
        if self.path == Some(DataPath::L2cap) {
            return match error {
                None => self.path_closed(now),
                Some(e) => self.path_failed(format!("L2CAP channel: {e}"), now),
            };
        }
        if self.l2cap == L2cap::Off || !matches!(self.state, State::Advertising { .. }) {
            return;
        }
        let advertised = self.l2cap != L2cap::Listening;
        if self.l2cap == L2cap::Connected {
            // The desktop reached us over Bluetooth: "never connected"
            // would send its user looking at the wrong thing.
            self.l2cap_lost = Some(match error {
                Some(e) => FailReason::TunnelFailed(format!(
                    "L2CAP channel: {e} (before the computer's handshake)"
                )),
                None => FailReason::PeerClosedEarly,
            });
        }
        self.l2cap = L2cap::Off;
        if self.tunnel_gone {
            let reason = self.no_handshake();
            return self.fail(now, reason);
        }
        self.actions.push_back(Action::CloseL2cap);
        if !advertised {
            // Never advertised: fall back to the plain advert.
            if let Some(advert) = self.advert {
                self.advertising = true;
                self.actions.push_back(Action::StartAdvert(advert));
            }
        }
    }

    /// Why the session ends without a desktop handshake: the way a
    /// desktop's L2CAP channel ended before its msg1, if one connected
    /// (an error: `TunnelFailed` naming the channel; a clean close:
    /// `PeerClosedEarly`), else `DesktopNeverConnected` (§5.3 "Failure
    /// handling").
    fn no_handshake(&mut self) -> FailReason {
        self.l2cap_lost
            .take()
            .unwrap_or(FailReason::DesktopNeverConnected)
    }

    /// The data path the desktop's handshake arrived on, once it did.
    pub fn path(&self) -> Option<DataPath> {
        self.path
    }

    /// Whether the L2CAP channel may still carry this session's handshake
    /// (listening, advertised or connected, before any handshake).
    fn l2cap_pending(&self) -> bool {
        self.path.is_none() && self.l2cap != L2cap::Off
    }

    /// The radio reports the advert is on air (optional; refines
    /// [`Phases::advert_out`]).
    pub fn on_advert_started(&mut self, now: Instant) {
        if matches!(self.state, State::Advertising { .. }) {
            self.phases.advert_out = Some(now);
        }
    }

    /// The radio could not broadcast: the session fails
    /// ([`FailReason::AdvertFailed`]).
    pub fn on_advert_error(&mut self, reason: String, now: Instant) {
        if matches!(self.state, State::Advertising { .. }) {
            self.fail(now, FailReason::AdvertFailed(reason));
        }
    }

    /// Opening the tunnel failed, or the open tunnel failed (reset, text
    /// frame, oversize message). Before the tunnel opened this is
    /// `TunnelUnreachable`; after every allowed reply went out it is
    /// harmless (`Completed`); otherwise `TunnelFailed`.
    ///
    /// While the L2CAP channel may still carry the handshake, a tunnel that
    /// fails before it is only noted: the desktop can still connect over
    /// L2CAP. Once the handshake went over L2CAP the tunnel is irrelevant.
    pub fn on_tunnel_error(&mut self, reason: String, now: Instant) {
        if !self.tunnel_irrelevant() {
            self.path_failed(reason, now);
        }
    }

    /// The data path in use failed.
    fn path_failed(&mut self, reason: String, now: Instant) {
        match &self.state {
            State::Done => {}
            State::OpeningTunnel { .. } => {
                self.tunnel_requested = false;
                self.fail(now, FailReason::TunnelUnreachable(reason));
            }
            State::Ready {
                answered,
                outstanding: false,
                ..
            } if *answered > 0 => {
                let answered = *answered;
                self.complete(now, answered);
            }
            _ => self.fail(now, FailReason::TunnelFailed(reason)),
        }
    }

    /// The tunnel closed (the desktop or the server on its behalf). Before
    /// msg1: `DesktopNeverConnected`; after the handshake with no answered
    /// request or with one outstanding: `PeerClosedEarly` (§6.3, Chromium's
    /// `UNEXPECTED_EOF` / `EOF_WHILE_PROCESSING`); after a reply: `Completed`.
    ///
    /// As for [`on_tunnel_error`](Self::on_tunnel_error), a pending L2CAP
    /// channel keeps the session going.
    pub fn on_tunnel_closed(&mut self, now: Instant) {
        if !self.tunnel_irrelevant() {
            self.path_closed(now);
        }
    }

    /// The data path in use closed.
    fn path_closed(&mut self, now: Instant) {
        match &self.state {
            State::Done => {}
            State::OpeningTunnel { .. } => {
                self.fail(now, FailReason::TunnelUnreachable("tunnel closed".into()))
            }
            State::Advertising { .. } => {
                let reason = self.no_handshake();
                self.fail(now, reason)
            }
            State::Ready {
                answered,
                outstanding,
                ..
            } => {
                let answered = *answered;
                if answered > 0 && !*outstanding {
                    self.complete(now, answered);
                } else {
                    self.fail(now, FailReason::PeerClosedEarly);
                }
            }
        }
    }

    /// Whether a tunnel close or failure is to be ignored: the session runs
    /// on L2CAP, or may still (the tunnel is then marked gone).
    fn tunnel_irrelevant(&mut self) -> bool {
        if self.path == Some(DataPath::L2cap) {
            return true;
        }
        if matches!(self.state, State::Advertising { .. }) && self.l2cap_pending() {
            self.tunnel_gone = true;
            return true;
        }
        false
    }

    /// The user or daemon gives up. After every allowed reply went out this
    /// still counts as `Completed`; otherwise `Cancelled`.
    pub fn cancel(&mut self, now: Instant) {
        match &self.state {
            State::Done => {}
            State::Ready {
                received,
                answered,
                outstanding: false,
                ..
            } if *received >= self.max_commands() => {
                let answered = *answered;
                self.complete(now, answered);
            }
            _ => self.fail(now, FailReason::Cancelled),
        }
    }

    /// One binary message from the tunnel.
    ///
    /// The first is msg1 (§5.3): the responder `KNpsk0` handshake runs; on
    /// success the advert stops and msg2 and the encrypted post-handshake
    /// message `{1: getInfo, 3: ["ctap"]}` are sent (§6.1, §6.2); on failure
    /// nothing is sent, the advert stops, the tunnel closes and the session
    /// ends with `HandshakeFailed` — no retry.
    ///
    /// Later messages are decrypted and framed (§6.3): CTAP → `Ctap`
    /// action; a valid update → ignored; shutdown → close; anything else
    /// (decrypt failure, empty, type > 3, JSON, invalid update) → close
    /// with the named failure. Nothing the session sends is ever a shutdown
    /// frame.
    ///
    /// This is the tunnel's input; the L2CAP channel's is
    /// [`on_l2cap_message`](Self::on_l2cap_message). Once the handshake
    /// arrived over L2CAP, tunnel messages are ignored.
    pub fn on_message(&mut self, bytes: &[u8], now: Instant) {
        match &self.state {
            State::Done | State::OpeningTunnel { .. } => {}
            State::Advertising { .. } if !self.tunnel_gone => {
                self.on_msg1(bytes, DataPath::Tunnel, None, now)
            }
            State::Ready { .. } if self.path == Some(DataPath::Tunnel) => {
                self.on_transport(bytes, None, now)
            }
            _ => {}
        }
    }

    /// The outstanding request needs the user (the CTAP handler yielded an
    /// approval request): the approval deadline,
    /// [`SessionConfig::approval_timeout`], runs from `now` (each approval
    /// of a request gets its own). Ignored unless a request is outstanding.
    pub fn on_user_needed(&mut self, now: Instant) {
        let timeout = self.config.approval_timeout;
        if let State::Ready {
            outstanding: true,
            user,
            ..
        } = &mut self.state
        {
            if let Some(old) = user.take() {
                self.phases.user_wait += now.saturating_duration_since(old.since);
            }
            self.phases.approvals += 1;
            *user = Some(UserWait {
                since: now,
                deadline: after(now, timeout),
            });
        }
    }

    /// The user's answer is known (approved, declined, or the PIN check
    /// done): the approval deadline stops. Ignored when none runs.
    pub fn on_user_answered(&mut self, now: Instant) {
        if let State::Ready { user, .. } = &mut self.state {
            if let Some(wait) = user.take() {
                self.phases.user_wait += now.saturating_duration_since(wait.since);
            }
        }
    }

    /// Whether the outstanding request waits for the user (between
    /// [`on_user_needed`](Self::on_user_needed) and the answer or
    /// `UserTimedOut`).
    pub fn is_waiting_for_user(&self) -> bool {
        matches!(self.state, State::Ready { user: Some(_), .. })
    }

    /// The CTAP handler's answer (`status || CBOR`) to the outstanding
    /// request: sent as `enc(01 ‖ response)` (§6.3). When the allowed number
    /// of commands is answered, the session waits `shutdown_grace` for the
    /// desktop's shutdown or close, then closes; otherwise it waits
    /// `command_timeout` for the next request.
    ///
    /// `follow_ups` is how many `authenticatorGetNextAssertion` requests the
    /// handler still serves for this ceremony (`numberOfCredentials` − 1
    /// after a discovery getAssertion, CTAP 2.1 §6.2.2 step 13, counting
    /// down; `hybrid_ctap::Reply::follow_ups`). The desktop may send that
    /// many in the same session, within the same shutdown grace, without
    /// counting toward [`SessionConfig::max_commands`]: the assertions
    /// belong to the one ceremony the user approved. Chromium's
    /// `GetAssertionTask` (`device/fido/get_assertion_task.cc`) and
    /// libwebauthn both fetch them.
    pub fn on_ctap_response(&mut self, response: Vec<u8>, follow_ups: usize, now: Instant) {
        let max = self.max_commands();
        let (command_timeout, grace) = (self.config.command_timeout, self.config.shutdown_grace);
        let State::Ready {
            crypter,
            received,
            answered,
            outstanding,
            follow_ups: open,
            deadline,
            user,
        } = &mut self.state
        else {
            return;
        };
        if !*outstanding {
            return;
        }
        if let Some(wait) = user.take() {
            self.phases.user_wait += now.saturating_duration_since(wait.since);
        }
        *open = follow_ups;
        let mut frame = Zeroizing::new(Vec::with_capacity(response.len() + 1));
        frame.push(MessageType::Ctap as u8);
        frame.extend_from_slice(&response);
        drop(Zeroizing::new(response));
        match crypter.encrypt(&frame) {
            Ok(wire) => {
                *outstanding = false;
                *answered += 1;
                *deadline = Some(if *received >= max {
                    after(now, grace)
                } else {
                    after(now, command_timeout)
                });
                self.phases.reply_sent = Some(now);
                self.actions.push_back(Action::Send(wire));
            }
            Err(e) => self.fail(now, FailReason::Internal(e.to_string())),
        }
    }

    /// The advert this session broadcasts, once the tunnel opened.
    pub fn advert(&self) -> Option<[u8; ADVERT_LEN]> {
        self.advert
    }

    /// The tunnel ID (§2.2 purpose 2).
    pub fn tunnel_id(&self) -> TunnelId {
        self.tunnel_id
    }

    /// The routing ID the tunnel server assigned, once open.
    pub fn routing_id(&self) -> Option<RoutingId> {
        self.routing_id
    }

    /// When each phase happened.
    pub fn phases(&self) -> &Phases {
        &self.phases
    }

    /// The outcome, once `Finished` was issued.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Whether `Finished` was issued.
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }

    /// Whether the session has handed out an advert that is not stopped yet.
    pub fn is_advertising(&self) -> bool {
        self.advertising
    }

    /// Whether the Noise handshake completed.
    pub fn handshake_done(&self) -> bool {
        self.phases.handshake_done.is_some()
    }

    /// A short name of the current state (logs).
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::OpeningTunnel { .. } => "opening-tunnel",
            State::Advertising { .. } => "advertising",
            State::Ready { user: Some(_), .. } => "waiting-for-user",
            State::Ready {
                outstanding: true, ..
            } => "processing",
            State::Ready { .. } => "ready",
            State::Done => "done",
        }
    }

    fn max_commands(&self) -> usize {
        self.config.max_commands.max(1)
    }

    fn on_msg1(
        &mut self,
        msg1: &[u8],
        path: DataPath,
        framing: Option<L2capFraming>,
        now: Instant,
    ) {
        let State::Advertising { psk, .. } = &self.state else {
            return;
        };
        self.phases.desktop_message.get_or_insert(now);
        let Some(secrets) = &self.secrets else {
            return;
        };
        let crlf = framing == Some(L2capFraming::Crlf);
        let mut result = Responder::qr(psk.as_bytes(), &secrets.desktop_identity)
            .respond(msg1, Ephemeral::Fresh);
        if crlf {
            // §4 (a): a libwebauthn ≤ 0.10 desktop cuts msg2 at its first
            // 0D 0A; nothing is sent yet, so make it again with a fresh key.
            for _ in 1..MSG2_TRIES {
                match &result {
                    Ok((msg2, _)) if !L2capFraming::Crlf.is_sendable(msg2) => {}
                    _ => break,
                }
                result = Responder::qr(psk.as_bytes(), &secrets.desktop_identity)
                    .respond(msg1, Ephemeral::Fresh);
            }
        }
        let (msg2, established) = match result {
            Ok(ok) => ok,
            Err(_) if crlf => {
                // §4 (b): the 0D 0A that ended this candidate may be part of
                // msg1; the decoder bounds the extensions.
                self.actions.push_back(Action::ExtendCandidate);
                return;
            }
            Err(e) => {
                // The handshake is over: stop advertising (§10 step 6).
                self.stop_advert();
                return self.fail(now, FailReason::HandshakeFailed(e.to_string()));
            }
        };
        // The handshake is over: stop advertising (§10 step 6).
        self.stop_advert();
        let (mut crypter, _hash) = established.into_parts();
        let post =
            Zeroizing::new(PostHandshakeMessage::ctap(self.config.get_info.clone()).encode());
        let post_wire = match crypter.encrypt(&post) {
            Ok(w) => w,
            Err(e) => return self.fail(now, FailReason::Internal(e.to_string())),
        };
        // The QR secret, EID key and PSK are no longer needed.
        self.secrets = None;
        self.phases.handshake_done = Some(now);
        // First handshake wins (hybrid-ble-l2cap.md §6): drop the other path.
        self.path = Some(path);
        match path {
            DataPath::L2cap => self.tunnel_requested = false,
            DataPath::Tunnel => self.l2cap = L2cap::Off,
        }
        if self.l2cap_offered && self.l2cap_capable {
            self.actions.push_back(Action::UsePath(path));
        }
        self.actions.push_back(Action::Send(msg2));
        self.actions.push_back(Action::Send(post_wire));
        self.state = State::Ready {
            crypter,
            received: 0,
            answered: 0,
            outstanding: false,
            follow_ups: 0,
            deadline: Some(after(now, self.config.command_timeout)),
            user: None,
        };
    }

    fn on_transport(&mut self, bytes: &[u8], framing: Option<L2capFraming>, now: Instant) {
        let max = self.max_commands();
        let State::Ready {
            crypter,
            received,
            answered,
            outstanding,
            follow_ups,
            deadline,
            ..
        } = &mut self.state
        else {
            return;
        };
        let plain = match crypter.decrypt(bytes) {
            Ok(p) => Zeroizing::new(p),
            // §4 (b): a failed decryption does not advance the read counter;
            // the candidate may end at a 0D 0A inside the ciphertext.
            Err(_) if framing == Some(L2capFraming::Crlf) => {
                self.actions.push_back(Action::ExtendCandidate);
                return;
            }
            Err(_) => return self.fail(now, FailReason::DecryptFailed),
        };
        let frame = match Frame::parse(&plain) {
            Ok(f) => f,
            Err(e) => return self.fail(now, FailReason::BadFrame(e.to_string())),
        };
        match frame {
            Frame::Ctap(request) => {
                if *outstanding {
                    return self.fail(
                        now,
                        FailReason::BadFrame(
                            "a CTAP request arrived while another was being processed".into(),
                        ),
                    );
                }
                let command = request.first().copied().unwrap_or(0);
                if command == CMD_GET_NEXT_ASSERTION && *follow_ups > 0 {
                    *follow_ups -= 1;
                } else if *received >= max {
                    return self.fail(now, FailReason::SecondCommand);
                } else {
                    *received += 1;
                    *follow_ups = 0;
                }
                *outstanding = true;
                *deadline = None;
                self.phases.first_command.get_or_insert(now);
                self.actions.push_back(Action::Ctap { request });
            }
            // §6.3: Chromium's phone only checks the update parses as CBOR
            // (Frame::parse did) and otherwise ignores it.
            Frame::Update(_) => {}
            Frame::Shutdown => {
                if *answered > 0 && !*outstanding {
                    let answered = *answered;
                    self.complete(now, answered);
                } else {
                    self.fail(now, FailReason::PeerClosedEarly);
                }
            }
            Frame::Json(_) => self.fail(
                now,
                FailReason::BadFrame("JSON messages (feature \"dc\") are not supported".into()),
            ),
        }
    }

    fn stop_advert(&mut self) {
        if self.advertising {
            self.advertising = false;
            self.actions.push_back(Action::StopAdvert);
        }
    }

    fn complete(&mut self, now: Instant, commands: usize) {
        self.end(now, Outcome::Completed { commands });
    }

    fn fail(&mut self, now: Instant, reason: FailReason) {
        self.end(now, Outcome::Failed(reason));
    }

    /// Stop the advert, close the tunnel, report — and drop every key
    /// (Crypter, PSK, EID key, QR secret: all zeroize on drop).
    fn end(&mut self, now: Instant, outcome: Outcome) {
        if matches!(self.state, State::Done) {
            return;
        }
        self.stop_advert();
        let l2cap_open = self.l2cap != L2cap::Off || self.path == Some(DataPath::L2cap);
        if self.tunnel_requested || l2cap_open {
            self.tunnel_requested = false;
            self.l2cap = L2cap::Off;
            self.actions.push_back(Action::Close);
        }
        self.state = State::Done;
        self.secrets = None;
        self.phases.finished = Some(now);
        self.outcome = Some(outcome.clone());
        self.actions.push_back(Action::Finished(outcome));
    }
}
