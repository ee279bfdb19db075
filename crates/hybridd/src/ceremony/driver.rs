//! The tokio half of [`hybrid_session::PhoneSession`] (quinn's role to
//! quinn-proto): executes the session's actions and feeds it what happens
//! — data-channel messages, radio results, CTAP replies, the person's
//! answers, the clock (`sleep_until` on the session's one deadline) and
//! cancellation. On every exit path the advert is stopped, the channel
//! closed and the authenticator's session ended.

use std::time::{Duration, Instant};

use hybrid_ble::{Advertiser, L2capFraming};
use hybrid_ctap::{Approval, ApprovalRequest, Ctap2Status, RequestContext, Step, UserError};
use hybrid_qr::QrCode;
use hybrid_session::{Action, DataPath, Outcome, PhoneSession};
use hybrid_tunnel::client::{self, ClientOptions};
use rand_core::OsRng;

use crate::approval::User;
use crate::ceremony::l2cap::{self, Channels, L2capRadio};
use crate::ceremony::report::{ReplySummary, Report, RequestTimes, SessionEvent};
use crate::ceremony::{now, Authenticate, CancelSignal, CeremonyOptions, Progress};
use crate::error::Error;
use crate::replay::{QrDigest, ReplaySet};
use crate::BoxFuture;

/// A channel the session's messages travel on: one protocol message per
/// call. The tunnel, or CTAP 2.3's BLE L2CAP channel (framed by
/// `hybrid_ble::L2capDecoder`).
pub trait DataChannel: Send {
    /// Sends one message.
    fn send(&mut self, message: Vec<u8>) -> BoxFuture<'_, Result<(), Error>>;
    /// Sends `messages` in order; a channel that can puts them in one write
    /// (the handshake reply and the post-handshake message leave together).
    fn send_all(&mut self, messages: Vec<Vec<u8>>) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            for m in messages {
                self.send(m).await?;
            }
            Ok(())
        })
    }
    /// The next message; `Ok(None)` when the peer closed. Cancel-safe (it
    /// sits in a `select!` with the session's deadline).
    fn recv(&mut self) -> BoxFuture<'_, Result<Option<Vec<u8>>, Error>>;
    /// Closes the channel (bounded).
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
    /// The L2CAP framing the desktop uses, once known; `None` for the tunnel.
    fn framing(&self) -> Option<L2capFraming> {
        None
    }
    /// CRLF framing: the last message did not decrypt; deliver it again
    /// extended to the next `0D 0A` (`hybrid_ble::L2capDecoder::extend_candidate`).
    fn extend_candidate(&mut self) -> Result<(), Error> {
        Err(Error::Tunnel(client::ClientError::ClosedEarly))
    }
}

/// The phone's tunnel (`/cable/new/`, hybrid-protocol.md §4.2).
pub type Tunnel = client::PhoneTunnel;

impl DataChannel for Tunnel {
    fn send(&mut self, message: Vec<u8>) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { Ok(client::Tunnel::send(self, message).await?) })
    }

    fn send_all(&mut self, messages: Vec<Vec<u8>>) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { Ok(client::Tunnel::send_all(self, messages).await?) })
    }

    fn recv(&mut self) -> BoxFuture<'_, Result<Option<Vec<u8>>, Error>> {
        Box::pin(async move { Ok(client::Tunnel::recv(self).await?) })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = client::Tunnel::close(*self).await;
        })
    }
}

/// The longest the L2CAP listener or one L2CAP read or write may wait: a
/// day (the session's own deadlines end it sooner).
const MAX_L2CAP_WAIT: Duration = Duration::from_secs(24 * 3600);

/// What the driver talks to.
pub(super) struct Peers<'a> {
    pub radio: &'a mut dyn Advertiser,
    pub authenticator: &'a mut dyn Authenticate,
    pub user: &'a mut dyn User,
    pub progress: &'a dyn Progress,
    pub cancel: Option<CancelSignal>,
    pub l2cap: Option<&'a dyn L2capRadio>,
}

/// The replay set and the session's QR, inserted once the desktop's first
/// message arrived (replay policy, `crate::replay`).
pub(super) struct Replay<'a> {
    set: &'a mut ReplaySet,
    digest: QrDigest,
    stale_after_unix: Option<u64>,
    inserted: bool,
}

impl<'a> Replay<'a> {
    pub(super) fn new(
        set: &'a mut ReplaySet,
        digest: QrDigest,
        stale_after_unix: Option<u64>,
    ) -> Self {
        Replay {
            set,
            digest,
            stale_after_unix,
            inserted: false,
        }
    }

    /// Makes the inserted record durable before the phone's first answer
    /// leaves, and when the session ends ([`ReplaySet::sync`]). When the
    /// person was asked for a PIN, the vault's counted attempt has
    /// committed the record already (`VaultWorker::carry_replay`) and
    /// nothing is left to sync; otherwise the replay file's `fdatasync`
    /// runs here.
    fn settle(&mut self) {
        if self.inserted {
            self.set.sync();
        }
    }

    /// Inserts the QR once the session has seen a desktop message (called
    /// after every input, before the session's next actions run): the
    /// record is in the file (in the page cache, so it survives the daemon
    /// being killed) before the phone answers msg1, and durable
    /// ([`Replay::settle`]) before the phone answers a request.
    fn note(&mut self, session: &PhoneSession<OsRng>) {
        if !self.inserted && session.phases().desktop_message.is_some() {
            self.inserted = true;
            self.set
                .insert(self.digest, self.stale_after_unix, super::unix_now());
        }
    }
}

/// Runs the session for an accepted `qr` and reports.
pub(super) async fn drive<'a>(
    qr: QrCode,
    qr_age_secs: Option<u64>,
    received: Instant,
    opts: &CeremonyOptions,
    peers: Peers<'a>,
    replay: Replay<'a>,
) -> Report {
    let hint = qr.hint().map(str::to_owned);
    let accepted = now();
    peers.progress.event(&SessionEvent::QrAccepted {
        age_secs: qr_age_secs,
        at: accepted,
    });
    let mut config = opts.session.clone();
    if config.get_info.is_empty() {
        config.get_info = peers.authenticator.get_info();
    }
    let domain_id = config.tunnel.domain_id();
    // `debug`: the "phone session ended" line says all of it at `info`,
    // once per ceremony (each line costs the daemon a write and its reader
    // a wake-up; docs/performance.md, "Phone: thirteenth round").
    tracing::debug!(
        qr_age_secs = ?qr_age_secs,
        hint = ?hint,
        domain_id,
        "phone session started"
    );
    let mut report = Report::refused(hybrid_session::FailReason::Cancelled, received);
    report.qr_age_secs = qr_age_secs;
    report.hint = hint.clone();
    // Capped: configured durations may be "no practical limit" (issue 16),
    // and the L2CAP channel adds them to `Instant`s.
    let io_timeout = config
        .wait_for_desktop
        .max(config.command_timeout)
        .max(config.approval_timeout)
        .saturating_add(Duration::from_secs(30))
        .min(MAX_L2CAP_WAIT);
    let accept_wait = config.wait_for_desktop.min(MAX_L2CAP_WAIT);
    let mut session = PhoneSession::new(qr, config, accepted, OsRng);
    session.set_l2cap_capable(peers.l2cap.is_some());
    let mut driver = Driver {
        session,
        channels: Channels::default(),
        accept_wait,
        io_timeout,
        advertising: false,
        handshake_reported: false,
        pending_status: None,
        last_answer: None,
        ctx: RequestContext { qr_age_secs, hint },
        domain_id,
        client: &opts.client,
        report,
        peers,
        replay,
    };
    let outcome = driver.run().await;
    driver.finish(outcome).await
}

struct Driver<'a, 'o> {
    session: PhoneSession<OsRng>,
    channels: Channels,
    /// How long the L2CAP listener waits for a desktop.
    accept_wait: Duration,
    /// The bound of each L2CAP read and write (longer than any session wait:
    /// the session's own deadlines end it first).
    io_timeout: Duration,
    advertising: bool,
    handshake_reported: bool,
    /// The status of the reply handed to the session, until it is sent.
    pending_status: Option<Ctap2Status>,
    /// The person's last answer for the request being processed.
    last_answer: Option<Result<Approval, UserError>>,
    ctx: RequestContext,
    /// The tunnel domain the QR chose (for the log).
    domain_id: u16,
    client: &'o ClientOptions,
    report: Report,
    peers: Peers<'a>,
    replay: Replay<'a>,
}

impl Driver<'_, '_> {
    /// Executes actions and feeds events until the session finishes.
    async fn run(&mut self) -> Outcome {
        loop {
            while let Some(action) = self.session.poll_action() {
                if let Some(outcome) = self.execute(action).await {
                    return outcome;
                }
            }
            self.wait().await;
        }
    }

    async fn execute(&mut self, action: Action) -> Option<Outcome> {
        match action {
            Action::OpenTunnel { url, origin, .. } => {
                // `debug`: "phone session ended … path=tunnel" says it at
                // `info`.
                tracing::debug!("opening tunnel");
                let connect = client::open_new(&url, &origin, self.client);
                tokio::select! {
                    r = connect => match r {
                        Ok((tunnel, routing_id)) => {
                            let at = now();
                            self.channels.tunnel = Some(Box::new(tunnel));
                            self.report.routing_id = Some(routing_id);
                            tracing::debug!(routing_id = %routing_id.to_hex(), "tunnel open");
                            self.peers.progress.event(&SessionEvent::TunnelOpen { routing_id, at });
                            self.session.on_tunnel_open(routing_id, at);
                        }
                        Err(e) => self.session.on_tunnel_error(e.to_string(), now()),
                    },
                    () = cancelled(&mut self.peers.cancel) => self.session.cancel(now()),
                }
            }
            Action::StartAdvert(advert) => {
                self.report.advert = Some(advert);
                match self.peers.radio.start(&advert).await {
                    Ok(()) => {
                        self.advertising = true;
                        let at = now();
                        self.session.on_advert_started(at);
                        tracing::debug!("advertising");
                        self.peers
                            .progress
                            .event(&SessionEvent::AdvertStarted { advert, at });
                    }
                    Err(e) => self.session.on_advert_error(e.to_string(), now()),
                }
            }
            Action::ListenL2cap => {
                let listening = match self.peers.l2cap {
                    Some(radio) => l2cap::listen(radio, self.accept_wait, self.io_timeout).await,
                    // The session only asks when told the radio can.
                    None => Err(Error::Tunnel(client::ClientError::ClosedEarly)),
                };
                match listening {
                    Ok((psm, accepting)) => {
                        self.channels.accepting = Some(accepting);
                        self.session.on_l2cap_listening(psm, now());
                    }
                    Err(e) => {
                        tracing::warn!("no L2CAP channel, the tunnel only: {e}");
                        self.session.on_l2cap_unavailable(&e.to_string(), now());
                    }
                }
            }
            Action::StartAdvertWithPsm { advert, psm } => {
                self.report.advert = Some(advert);
                match self.peers.radio.start_with_psm(&advert, psm).await {
                    Ok(()) => {
                        self.advertising = true;
                        let at = now();
                        self.session.on_advert_started(at);
                        tracing::info!(psm, "advertising with the L2CAP PSM");
                        self.peers
                            .progress
                            .event(&SessionEvent::AdvertStarted { advert, at });
                    }
                    Err(e) => {
                        tracing::warn!("cannot advertise the L2CAP PSM, the tunnel only: {e}");
                        self.session.on_l2cap_unavailable(&e.to_string(), now());
                    }
                }
            }
            Action::UsePath(path) => {
                let framing = self.channels.l2cap.as_ref().and_then(|c| c.framing());
                tracing::debug!(
                    path = path.name(),
                    framing = framing.map(L2capFraming::name),
                    "data path chosen"
                );
                match path {
                    DataPath::L2cap => self.channels.close_tunnel().await,
                    DataPath::Tunnel => self.channels.close_l2cap().await,
                }
            }
            Action::CloseL2cap => self.channels.close_l2cap().await,
            Action::ExtendCandidate => {
                let extended = match self.channels.l2cap.as_mut() {
                    Some(c) => c.extend_candidate(),
                    None => Err(Error::Tunnel(client::ClientError::ClosedEarly)),
                };
                if let Err(e) = extended {
                    self.session.on_l2cap_closed(Some(e.to_string()), now());
                }
            }
            Action::StopAdvert => self.stop_advert().await,
            Action::Send(first) => {
                // Messages queued back to back leave in one write.
                let mut batch = vec![first];
                while matches!(self.session.peek_action(), Some(Action::Send(_))) {
                    if let Some(Action::Send(next)) = self.session.poll_action() {
                        batch.push(next);
                    }
                }
                self.send(batch).await;
            }
            Action::Ctap { request } => {
                let command = request.first().copied().unwrap_or(0);
                self.report.commands.push(command);
                let at = now();
                self.report.sent.requests.push(RequestTimes {
                    command,
                    received: at,
                    sent: None,
                    user_wait: self.session.phases().user_wait,
                });
                tracing::debug!(command, "CTAP request received");
                self.peers
                    .progress
                    .event(&SessionEvent::CommandReceived { command, at });
                self.last_answer = None;
                let step = self
                    .peers
                    .authenticator
                    .process(request, self.ctx.clone())
                    .await;
                self.on_step(step).await;
            }
            Action::UserTimedOut => {
                self.peers.user.timed_out().await;
                let answer = Err(UserError::Timeout);
                self.last_answer = Some(answer);
                let step = self.peers.authenticator.resume(answer).await;
                self.on_step(step).await;
            }
            Action::Close => self.close_channel().await,
            Action::Finished(outcome) => return Some(outcome),
        }
        None
    }

    /// Sends `batch` (one message, or several the session queued back to
    /// back) and notes the times of the handshake reply, the post-handshake
    /// message and responses as the messages leave.
    async fn send(&mut self, batch: Vec<Vec<u8>>) {
        if self.pending_status.is_some() {
            // A CTAP response is in the batch: nothing is answered before
            // the QR's record is durable.
            self.replay.settle();
        }
        let count = batch.len();
        let on_l2cap = self.session.path() == Some(DataPath::L2cap);
        let channel = if on_l2cap {
            self.channels.l2cap.as_mut()
        } else {
            self.channels.tunnel.as_mut()
        };
        let sent = match channel {
            Some(c) => c.send_all(batch).await,
            None => Err(Error::Tunnel(client::ClientError::ClosedEarly)),
        };
        let at = now();
        if let Err(e) = sent {
            if on_l2cap {
                self.session.on_l2cap_closed(Some(e.to_string()), at);
            } else {
                self.session.on_tunnel_error(e.to_string(), at);
            }
            return;
        }
        for _ in 0..count {
            let sent = &mut self.report.sent;
            if sent.handshake_reply.is_some() && sent.post_handshake.is_none() {
                sent.post_handshake = Some(at);
            }
            if !self.handshake_reported && self.session.handshake_done() {
                self.handshake_reported = true;
                self.report.sent.handshake_reply = Some(at);
                tracing::debug!("handshake done");
                self.peers
                    .progress
                    .event(&SessionEvent::HandshakeDone { at });
            }
        }
        if let Some(status) = self.pending_status.take() {
            let user_wait = self.session.phases().user_wait;
            if let Some(r) = self.report.sent.requests.last_mut() {
                r.sent = Some(at);
                // The wait before the request is not its own.
                r.user_wait = user_wait.saturating_sub(r.user_wait);
            }
            tracing::debug!(status = status.byte(), "response sent");
            self.peers
                .progress
                .event(&SessionEvent::ResponseSent { status, at });
        }
    }

    /// Follows the authenticator's steps to a reply, asking the person
    /// whenever it needs them; hands the reply to the session. Returns
    /// early when the session ends or the approval deadline passes while
    /// the person is asked (the session then says `UserTimedOut`).
    async fn on_step(&mut self, mut step: Result<Step, Error>) {
        loop {
            match step {
                Ok(Step::NeedsUser(question)) => {
                    self.session.on_user_needed(now());
                    let Some(answer) = self.ask(&question).await else {
                        return;
                    };
                    self.session.on_user_answered(now());
                    self.last_answer = Some(answer);
                    step = self.peers.authenticator.resume(answer).await;
                }
                Ok(Step::Reply(reply)) => {
                    self.reply(reply.command, reply.status);
                    self.session
                        .on_ctap_response(reply.bytes, reply.follow_ups, now());
                    return;
                }
                Err(e) => {
                    tracing::warn!("CTAP handler failed: {e}");
                    let status = Ctap2Status::Other;
                    self.reply(None, status);
                    self.session.on_ctap_response(vec![status.byte()], 0, now());
                    return;
                }
            }
        }
    }

    fn reply(&mut self, command: Option<u8>, status: Ctap2Status) {
        self.pending_status = Some(status);
        self.report.last_reply = Some(ReplySummary {
            command: command.or(self.report.commands.last().copied()),
            status,
            user: self.last_answer,
        });
    }

    /// Asks the person, while the data channel, the session's deadline and
    /// cancellation keep being served. `None` when the session stopped
    /// waiting for the answer (approval deadline, peer gone, cancelled).
    async fn ask(&mut self, question: &ApprovalRequest) -> Option<Result<Approval, UserError>> {
        let Driver {
            session,
            channels,
            peers,
            replay,
            ..
        } = self;
        let mut answer = peers.user.approve(question);
        loop {
            let deadline = session.poll_timeout();
            tokio::select! {
                a = &mut answer => return Some(a),
                i = channels.next() => channels.feed(session, i).await,
                () = sleep_until(deadline) => session.handle_timeout(now()),
                () = cancelled(&mut peers.cancel) => session.cancel(now()),
            }
            replay.note(session);
            if !session.is_waiting_for_user() {
                return None;
            }
        }
    }

    /// Waits for the next input: a channel message or close, the session's
    /// deadline, or cancellation.
    async fn wait(&mut self) {
        let deadline = self.session.poll_timeout();
        tokio::select! {
            i = self.channels.next() => self.channels.feed(&mut self.session, i).await,
            () = sleep_until(deadline) => self.session.handle_timeout(now()),
            () = cancelled(&mut self.peers.cancel) => self.session.cancel(now()),
        }
        self.replay.note(&self.session);
    }

    async fn stop_advert(&mut self) {
        if self.advertising {
            self.advertising = false;
            match self.peers.radio.stop().await {
                Ok(()) => tracing::debug!("advert stopped"),
                Err(e) => tracing::warn!("could not stop the advert: {e}"),
            }
        }
    }

    async fn close_channel(&mut self) {
        self.channels.close_l2cap().await;
        self.channels.close_tunnel().await;
    }

    /// Cleans up whatever is left (advert, channel, CTAP state) and builds
    /// the report.
    async fn finish(mut self, outcome: Outcome) -> Report {
        // Inputs all pass `note` already; this keeps the rule in one place
        // should a desktop message ever arrive another way.
        self.replay.note(&self.session);
        self.replay.settle();
        self.stop_advert().await;
        self.close_channel().await;
        self.peers.authenticator.end_session().await;
        let at = now();
        let mut report = self.report;
        report.outcome = outcome.clone();
        report.phases = Some(*self.session.phases());
        report.path = self.session.path();
        tracing::info!(
            outcome = outcome.code(),
            path = report.path.map_or("none", DataPath::name),
            commands = report.commands.len(),
            last_status = ?report.last_reply.map(|r| r.status.byte()),
            elapsed_ms = at.saturating_duration_since(report.received).as_millis() as u64,
            qr_age_secs = ?self.ctx.qr_age_secs,
            hint = ?self.ctx.hint,
            domain_id = self.domain_id,
            "phone session ended: {outcome}"
        );
        report.log_timings();
        self.peers
            .progress
            .event(&SessionEvent::Finished { outcome, at });
        report
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// Completes when the cancel signal turns true; never if there is none or
/// its sender is gone.
async fn cancelled(cancel: &mut Option<CancelSignal>) {
    let Some(rx) = cancel.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
