//! The async driver of one phone session: the tokio half of
//! [`hybrid_session::PhoneSession`] (quinn's role to quinn-proto).
//!
//! [`run_phone_session`] checks the QR (hybrid-protocol.md §1.4 and the
//! freshness policy) **before any network use**, then moves bytes and time
//! between the sans-IO session and the world: the tunnel client
//! (`hybrid_tunnel::client`), the radio ([`hybrid_ble::Advertiser`]), the
//! CTAP handler (on tokio's blocking pool, because approvals block) and the
//! clock (`tokio::time::sleep_until` on the session's deadline). Every
//! protocol rule — what to send, when to stop, what counts as failure —
//! lives in `hybrid-session`; this module only executes its actions.
//!
//! On every exit path the advert is stopped and the tunnel closed; the
//! handler's `end_session` is called once. Logs (tracing, `info`) name the
//! phase and outcome, never keys, PINs, QR secrets or the QR URI.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hybrid_ble::{Advertiser, ADVERT_LEN};
use hybrid_ctap::RequestContext;
use hybrid_session::{Action, FailReason, Outcome, PhoneSession};
use hybrid_tunnel::client::{self, ClientOptions, PhoneTunnel};
use hybrid_tunnel::RoutingId;
use rand_core::OsRng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use hybrid_session::SessionConfig;

/// CTAP status `CTAP2_ERR_OPERATION_DENIED`: the user declined.
pub const STATUS_DECLINED: u8 = 0x27;
/// CTAP status `CTAP2_ERR_USER_ACTION_TIMEOUT`: the user did not answer.
pub const STATUS_USER_TIMEOUT: u8 = 0x2F;

/// Runs CTAP requests; may block (user approval), so the driver calls it on
/// tokio's blocking pool.
pub trait CtapHandler: Send + 'static {
    /// Answers one request (`command || CBOR`) with `status || CBOR`.
    fn handle(&mut self, request: &[u8], ctx: &RequestContext) -> Vec<u8>;

    /// The session ended (called once, whatever the outcome): forget
    /// per-session state.
    fn end_session(&mut self) {}

    /// The getInfo response CBOR (no status byte) for the post-handshake
    /// message (§6.2), used when [`SessionConfig::get_info`] is empty.
    fn get_info(&mut self) -> Option<Vec<u8>> {
        None
    }
}

impl<E: hybrid_ctap::Env + Send + 'static> CtapHandler for hybrid_ctap::Authenticator<E> {
    fn handle(&mut self, request: &[u8], ctx: &RequestContext) -> Vec<u8> {
        self.process(request, ctx)
    }

    fn end_session(&mut self) {
        hybrid_ctap::Authenticator::end_session(self);
    }

    fn get_info(&mut self) -> Option<Vec<u8>> {
        Some(hybrid_ctap::Authenticator::get_info(self).to_cbor())
    }
}

/// Everything [`run_phone_session`] needs besides the QR and the peers.
#[derive(Debug, Clone, Default)]
pub struct PhoneOptions {
    /// Session policy: tunnel server, waits, command count, getInfo.
    pub session: SessionConfig,
    /// How to reach the tunnel server (timeouts, extra CA, size limit).
    pub client: ClientOptions,
    /// QR key-3 freshness policy (conformance checklist "QR freshness").
    pub freshness: hybrid_qr::Freshness,
}

/// Progress of a session, for a UI. Each carries the moment it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The QR parsed and is fresh; `age_secs` from its key 3, if present.
    QrAccepted {
        /// The QR's age in seconds.
        age_secs: Option<u64>,
        /// When.
        at: Instant,
    },
    /// The tunnel server opened the tunnel.
    TunnelOpen {
        /// The routing ID it assigned.
        routing_id: RoutingId,
        /// When.
        at: Instant,
    },
    /// The radio broadcasts the advert.
    AdvertStarted {
        /// The 20 advert bytes (public: they are on air).
        advert: [u8; ADVERT_LEN],
        /// When.
        at: Instant,
    },
    /// The desktop's handshake succeeded; msg2 and getInfo are sent.
    HandshakeDone {
        /// When.
        at: Instant,
    },
    /// A CTAP request arrived.
    CommandReceived {
        /// Its command byte (0x01 makeCredential, 0x02 getAssertion, …).
        command: u8,
        /// When.
        at: Instant,
    },
    /// The answer went out.
    ResponseSent {
        /// Its CTAP status byte (0x00 success, 0x27 declined, …).
        status: u8,
        /// When.
        at: Instant,
    },
    /// The session is over.
    Finished {
        /// How it ended.
        outcome: Outcome,
        /// When.
        at: Instant,
    },
}

/// Time from the start of [`run_phone_session`] to each phase; `None` when
/// the phase was not reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    /// QR parsed and checked.
    pub qr_accepted: Option<Duration>,
    /// Tunnel open (routing ID known).
    pub tunnel_open: Option<Duration>,
    /// Advert on air.
    pub advert_out: Option<Duration>,
    /// The desktop's first message (its handshake msg1, §5.3) arrived: the
    /// QR reached a handshake, whatever the handshake's result (the replay
    /// policy, `crate::replay`, keys on this).
    pub desktop_message: Option<Duration>,
    /// msg2 produced.
    pub handshake_done: Option<Duration>,
    /// First CTAP request received.
    pub first_command: Option<Duration>,
    /// (Last) reply handed to the tunnel.
    pub reply_sent: Option<Duration>,
    /// Session over (tunnel closed, advert stopped).
    pub finished: Option<Duration>,
}

/// What [`run_phone_session`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReport {
    /// How the session ended.
    pub outcome: Outcome,
    /// When each phase happened.
    pub phases: Phases,
    /// The QR's age in seconds, if it carried a timestamp.
    pub qr_age_secs: Option<u64>,
    /// The QR's request-type hint, if any (informational, §1.5).
    pub hint: Option<String>,
    /// The routing ID of the tunnel, once open.
    pub routing_id: Option<RoutingId>,
    /// The advert broadcast, once the tunnel opened.
    pub advert: Option<[u8; ADVERT_LEN]>,
    /// Command bytes of the CTAP requests received, in order.
    pub commands: Vec<u8>,
    /// The status byte of the last CTAP answer sent (0x27: declined, 0x2F:
    /// the user did not answer in time).
    pub last_status: Option<u8>,
}

impl SessionReport {
    fn new(outcome: Outcome) -> Self {
        SessionReport {
            outcome,
            phases: Phases::default(),
            qr_age_secs: None,
            hint: None,
            routing_id: None,
            advert: None,
            commands: Vec::new(),
            last_status: None,
        }
    }

    /// The session completed and the last answer was "declined" (0x27).
    pub fn declined(&self) -> bool {
        self.last_status == Some(STATUS_DECLINED)
    }

    /// The last answer was "user action timeout" (0x2F).
    pub fn user_timed_out(&self) -> bool {
        self.last_status == Some(STATUS_USER_TIMEOUT)
    }

    /// Completed, and the last answer was a CTAP success (0x00).
    pub fn succeeded(&self) -> bool {
        self.outcome.is_completed() && self.last_status == Some(0)
    }
}

/// Cancellation input: the session is cancelled when the watched value
/// becomes `true`. A dropped sender cancels nothing.
pub type CancelSignal = watch::Receiver<bool>;

/// Runs one phone session for the scanned `uri` and returns its report and
/// the handler (whatever happened).
///
/// Order (hybrid-protocol.md §10): trim and parse the URI, check freshness
/// — refusals are [`FailReason::QrInvalid`] / [`FailReason::QrStale`]
/// without any network use —, then open the tunnel on
/// `opts.session.tunnel`, advertise, answer the handshake, the CTAP
/// request(s), close. If the session ends while a request is still with
/// the handler (peer closed, cancel), the driver waits for the handler to
/// return before it reports, so the handler can be given back.
///
/// Dropping the returned future mid-session cannot stop the radio
/// (stopping is async); cancel through `cancel` instead.
pub async fn run_phone_session<H: CtapHandler>(
    uri: &str,
    opts: &PhoneOptions,
    advertiser: &mut dyn Advertiser,
    mut handler: H,
    events: Option<mpsc::UnboundedSender<SessionEvent>>,
    cancel: Option<CancelSignal>,
) -> (SessionReport, H) {
    let start = Instant::now();
    let emit = |e: SessionEvent| {
        if let Some(tx) = &events {
            let _ = tx.send(e);
        }
    };
    let finish_early = |reason: FailReason, handler: &mut H| {
        let mut report = SessionReport::new(Outcome::Failed(reason));
        report.phases.finished = Some(start.elapsed());
        tracing::info!(
            outcome = report.outcome.code(),
            "phone session refused: {}",
            report.outcome
        );
        handler.end_session();
        emit(SessionEvent::Finished {
            outcome: report.outcome.clone(),
            at: Instant::now(),
        });
        report
    };

    // 1. The QR, before any network use (§1.4, checklist "QR" and "QR freshness").
    let qr = match hybrid_qr::parse(uri.trim()) {
        Ok(qr) => qr,
        Err(e) => {
            let report = finish_early(FailReason::QrInvalid(e.to_string()), &mut handler);
            return (report, handler);
        }
    };
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let qr_age_secs = match opts.freshness.check(&qr, now_unix) {
        Ok(age) => age,
        Err(e) => {
            let report = finish_early(FailReason::QrStale(e.to_string()), &mut handler);
            return (report, handler);
        }
    };
    let hint = qr.hint().map(str::to_owned);
    let accepted = Instant::now();
    emit(SessionEvent::QrAccepted {
        age_secs: qr_age_secs,
        at: accepted,
    });

    let mut config = opts.session.clone();
    if config.get_info.is_empty() {
        match handler.get_info() {
            Some(gi) => config.get_info = gi,
            None => {
                let reason = FailReason::Internal("no getInfo response configured".into());
                let report = finish_early(reason, &mut handler);
                return (report, handler);
            }
        }
    }
    tracing::info!(
        qr_age_secs = ?qr_age_secs,
        hint = ?hint,
        domain_id = config.tunnel.domain_id(),
        "phone session started"
    );

    let ctx = RequestContext {
        qr_age_secs,
        hint: hint.clone(),
    };
    let tunnel_base = config.tunnel.clone();
    let session = PhoneSession::new(qr, config, accepted, OsRng);
    let mut driver = Driver {
        session,
        tunnel: None,
        advertising: false,
        handler: Arc::new(Mutex::new(handler)),
        processing: None,
        pending_status: None,
        handshake_reported: false,
        report: SessionReport::new(Outcome::Failed(FailReason::Cancelled)),
        events,
        cancel,
        ctx,
        start,
    };
    driver.report.qr_age_secs = qr_age_secs;
    driver.report.hint = hint;
    driver.report.phases.qr_accepted = Some(accepted.saturating_duration_since(start));

    let outcome = driver.run(advertiser, &tunnel_base, &opts.client).await;
    driver.finish(advertiser, outcome).await
}

/// The driver's mutable state between actions.
struct Driver<H: CtapHandler> {
    session: PhoneSession<OsRng>,
    tunnel: Option<PhoneTunnel>,
    advertising: bool,
    handler: Arc<Mutex<H>>,
    processing: Option<JoinHandle<Vec<u8>>>,
    pending_status: Option<u8>,
    handshake_reported: bool,
    report: SessionReport,
    events: Option<mpsc::UnboundedSender<SessionEvent>>,
    cancel: Option<CancelSignal>,
    ctx: RequestContext,
    start: Instant,
}

impl<H: CtapHandler> Driver<H> {
    fn emit(&self, e: SessionEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }

    /// Executes actions and feeds events until the session finishes.
    async fn run(
        &mut self,
        advertiser: &mut dyn Advertiser,
        base: &hybrid_tunnel::TunnelBase,
        client_opts: &ClientOptions,
    ) -> Outcome {
        loop {
            while let Some(action) = self.session.poll_action() {
                if let Some(outcome) = self.execute(action, advertiser, base, client_opts).await {
                    return outcome;
                }
            }
            self.wait().await;
        }
    }

    async fn execute(
        &mut self,
        action: Action,
        advertiser: &mut dyn Advertiser,
        base: &hybrid_tunnel::TunnelBase,
        client_opts: &ClientOptions,
    ) -> Option<Outcome> {
        match action {
            Action::OpenTunnel { tunnel_id, .. } => {
                tracing::info!("opening tunnel");
                let connect = client::connect_new(base, &tunnel_id, client_opts);
                let cancelled = cancelled(&mut self.cancel);
                tokio::select! {
                    r = connect => match r {
                        Ok((tunnel, routing_id)) => {
                            self.tunnel = Some(tunnel);
                            let now = Instant::now();
                            self.report.routing_id = Some(routing_id);
                            self.report.phases.tunnel_open = Some(now - self.start);
                            tracing::info!(routing_id = %routing_id.to_hex(), "tunnel open");
                            self.emit(SessionEvent::TunnelOpen { routing_id, at: now });
                            self.session.on_tunnel_open(routing_id, now);
                        }
                        Err(e) => self.session.on_tunnel_error(e.to_string(), Instant::now()),
                    },
                    () = cancelled => self.session.cancel(Instant::now()),
                }
            }
            Action::StartAdvert(advert) => {
                self.report.advert = Some(advert);
                match advertiser.start(&advert).await {
                    Ok(()) => {
                        self.advertising = true;
                        let now = Instant::now();
                        self.session.on_advert_started(now);
                        self.report.phases.advert_out = Some(now - self.start);
                        tracing::info!("advertising");
                        self.emit(SessionEvent::AdvertStarted { advert, at: now });
                    }
                    Err(e) => self.session.on_advert_error(e.to_string(), Instant::now()),
                }
            }
            Action::StopAdvert => self.stop_advert(advertiser).await,
            Action::Send(bytes) => {
                let sent = match self.tunnel.as_mut() {
                    Some(t) => t.send(bytes).await.map_err(|e| e.to_string()),
                    None => Err("tunnel not open".to_owned()),
                };
                let now = Instant::now();
                if let Err(e) = sent {
                    self.session.on_tunnel_error(e, now);
                    return None;
                }
                if !self.handshake_reported && self.session.handshake_done() {
                    self.handshake_reported = true;
                    self.report.phases.handshake_done = Some(now - self.start);
                    tracing::info!("handshake done");
                    self.emit(SessionEvent::HandshakeDone { at: now });
                }
                if let Some(status) = self.pending_status.take() {
                    self.report.phases.reply_sent = Some(now - self.start);
                    self.report.last_status = Some(status);
                    tracing::info!(status, "response sent");
                    self.emit(SessionEvent::ResponseSent { status, at: now });
                }
            }
            Action::Ctap { request } => {
                let now = Instant::now();
                let command = request.first().copied().unwrap_or(0);
                self.report.commands.push(command);
                self.report
                    .phases
                    .first_command
                    .get_or_insert(now - self.start);
                tracing::info!(command, "CTAP request received");
                self.emit(SessionEvent::CommandReceived { command, at: now });
                let handler = Arc::clone(&self.handler);
                let ctx = self.ctx.clone();
                self.processing = Some(tokio::task::spawn_blocking(move || {
                    let mut h = handler.lock().unwrap_or_else(|p| p.into_inner());
                    h.handle(&request, &ctx)
                }));
            }
            Action::Close => self.close_tunnel().await,
            Action::Finished(outcome) => return Some(outcome),
        }
        None
    }

    /// Waits for the next input: a tunnel message or close, the CTAP
    /// answer, the session's deadline, or cancellation.
    async fn wait(&mut self) {
        let deadline = self.session.poll_timeout();
        let Driver {
            tunnel,
            processing,
            cancel,
            session,
            pending_status,
            report,
            start,
            ..
        } = self;
        tokio::select! {
            r = recv(tunnel) => {
                let now = Instant::now();
                match r {
                    Ok(Some(msg)) => {
                        report
                            .phases
                            .desktop_message
                            .get_or_insert(now.saturating_duration_since(*start));
                        session.on_message(&msg, now);
                    }
                    Ok(None) => session.on_tunnel_closed(now),
                    Err(e) => session.on_tunnel_error(e, now),
                }
            }
            r = join(processing) => {
                *processing = None;
                let response = r.unwrap_or_else(|e| {
                    tracing::warn!("CTAP handler failed: {e}");
                    // CTAP1_ERR_OTHER: the handler panicked.
                    vec![0x7F]
                });
                *pending_status = response.first().copied();
                session.on_ctap_response(response, Instant::now());
            }
            () = sleep_until(deadline) => session.handle_timeout(Instant::now()),
            () = cancelled(cancel) => session.cancel(Instant::now()),
        }
    }

    async fn stop_advert(&mut self, advertiser: &mut dyn Advertiser) {
        if self.advertising {
            self.advertising = false;
            if let Err(e) = advertiser.stop().await {
                tracing::warn!("could not stop the advert: {e}");
            } else {
                tracing::info!("advert stopped");
            }
        }
    }

    async fn close_tunnel(&mut self) {
        if let Some(t) = self.tunnel.take() {
            let _ = t.close().await;
            tracing::info!("tunnel closed");
        }
    }

    /// Cleans up whatever is left (advert, tunnel, a running handler call)
    /// and builds the report.
    async fn finish(
        mut self,
        advertiser: &mut dyn Advertiser,
        outcome: Outcome,
    ) -> (SessionReport, H) {
        self.stop_advert(advertiser).await;
        self.close_tunnel().await;
        if let Some(task) = self.processing.take() {
            tracing::info!("waiting for the CTAP handler to return");
            let _ = task.await;
        }
        let now = Instant::now();
        self.report.outcome = outcome.clone();
        self.report.phases.finished = Some(now - self.start);
        // The blocking task (the only other owner) was awaited above, so
        // this succeeds at once; yield rather than panic if it ever did not.
        let mut shared = self.handler;
        let mut handler = loop {
            match Arc::try_unwrap(shared) {
                Ok(m) => break m.into_inner().unwrap_or_else(|p| p.into_inner()),
                Err(again) => {
                    shared = again;
                    tokio::task::yield_now().await;
                }
            }
        };
        handler.end_session();
        tracing::info!(
            outcome = outcome.code(),
            commands = self.report.commands.len(),
            last_status = ?self.report.last_status,
            elapsed_ms = (now - self.start).as_millis() as u64,
            "phone session ended: {outcome}"
        );
        if let Some(tx) = &self.events {
            let _ = tx.send(SessionEvent::Finished { outcome, at: now });
        }
        (self.report, handler)
    }
}

async fn recv(tunnel: &mut Option<PhoneTunnel>) -> Result<Option<Vec<u8>>, String> {
    match tunnel.as_mut() {
        Some(t) => t.recv().await.map_err(|e| e.to_string()),
        None => std::future::pending().await,
    }
}

async fn join(task: &mut Option<JoinHandle<Vec<u8>>>) -> Result<Vec<u8>, tokio::task::JoinError> {
    match task.as_mut() {
        Some(t) => t.await,
        None => std::future::pending().await,
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
