//! The one ceremony core: what happens between "here is a `FIDO:/` URI"
//! and "this is how it ended", for the daemon, `hybridd scan --standalone`,
//! the demo and the tests alike.
//!
//! [`Ceremony::run`] parses the QR **once** and checks it before any
//! network use — validity (hybrid-protocol.md §1.4), freshness and the
//! replay policy ([`crate::replay`]: a QR whose secret already reached a
//! handshake is refused as `qr_replayed`) — then drives the sans-IO
//! [`hybrid_session::PhoneSession`] (the driver): the tunnel as the data
//! channel, the radio, the CTAP authenticator ([`Authenticate`]) and the
//! person ([`crate::approval::User`]), racing each wait against the
//! session's deadlines. It returns one typed [`Report`] — the session's
//! outcome and phase times, and what the last CTAP reply was and why —
//! from which the control protocol's `done` message is made
//! ([`Report::done`]). Progress goes out typed ([`SessionEvent`]) to a
//! [`Progress`] sink as it happens.
//!
//! Every protocol rule — what to send, when to stop, what counts as a
//! failure — lives in `hybrid-session` and `hybrid-ctap`; this module
//! only executes their actions. Logs name the phase and outcome, never
//! keys, PINs, QR secrets or the QR URI.

mod driver;
mod l2cap;
mod report;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hybrid_ble::Advertiser;
use hybrid_ctap::{Approval, RequestContext, Step, UserError};
use hybrid_session::{FailReason, SessionConfig};
use hybrid_tunnel::client::ClientOptions;
use tokio::sync::{mpsc, watch};

use crate::approval::User;
use crate::error::Error;
use crate::replay::{QrDigest, ReplaySet};
use crate::BoxFuture;

pub use driver::{DataChannel, Tunnel};
pub use l2cap::{Accepting, BluezL2cap, L2capRadio};
pub use report::{ReplySummary, Report, RequestTimes, SentTimes, SessionEvent};

/// The CTAP authenticator as the ceremony sees it: the step API of
/// [`hybrid_ctap::Authenticator`], asynchronous because the daemon's runs
/// on the vault worker ([`crate::vault::VaultWorker`]).
pub trait Authenticate: Send {
    /// The getInfo response CBOR (no status byte) for the post-handshake
    /// message (§6.2).
    fn get_info(&self) -> Vec<u8>;
    /// [`hybrid_ctap::Authenticator::process`].
    fn process(
        &mut self,
        request: Vec<u8>,
        ctx: RequestContext,
    ) -> BoxFuture<'_, Result<Step, Error>>;
    /// [`hybrid_ctap::Authenticator::resume`].
    fn resume(&mut self, answer: Result<Approval, UserError>)
        -> BoxFuture<'_, Result<Step, Error>>;
    /// The session ended: forget per-session state (and lock the vault).
    fn end_session(&mut self) -> BoxFuture<'_, ()>;
}

/// An in-process authenticator (tests, fuzzing doubles): each step runs
/// inline.
impl<E: hybrid_ctap::Env + Send> Authenticate for hybrid_ctap::Authenticator<E> {
    fn get_info(&self) -> Vec<u8> {
        hybrid_ctap::Authenticator::get_info(self).to_cbor()
    }

    fn process(
        &mut self,
        request: Vec<u8>,
        ctx: RequestContext,
    ) -> BoxFuture<'_, Result<Step, Error>> {
        let step = hybrid_ctap::Authenticator::process(self, &request, &ctx);
        Box::pin(std::future::ready(Ok(step)))
    }

    fn resume(
        &mut self,
        answer: Result<Approval, UserError>,
    ) -> BoxFuture<'_, Result<Step, Error>> {
        let step = hybrid_ctap::Authenticator::resume(self, answer);
        Box::pin(std::future::ready(Ok(step)))
    }

    fn end_session(&mut self) -> BoxFuture<'_, ()> {
        hybrid_ctap::Authenticator::end_session(self);
        Box::pin(std::future::ready(()))
    }
}

/// Where progress goes, in order, as it happens.
pub trait Progress: Send + Sync {
    /// One event.
    fn event(&self, event: &SessionEvent);
}

/// No sink.
impl Progress for () {
    fn event(&self, _: &SessionEvent) {}
}

/// A channel of events (tests, the demo's timing table).
impl Progress for mpsc::UnboundedSender<SessionEvent> {
    fn event(&self, event: &SessionEvent) {
        let _ = self.send(event.clone());
    }
}

/// Why a QR without a timestamp is refused, and the opt-in.
pub const NO_TIMESTAMP: &str = "the QR code carries no timestamp (key 3), so its age is \
     unknown; ask the desktop for a new one, or set `allow_qr_without_timestamp = true`";

/// Cancellation input: the ceremony is cancelled when the watched value
/// becomes `true`. A dropped sender cancels nothing.
pub type CancelSignal = watch::Receiver<bool>;

/// Everything a ceremony needs besides its peers.
#[derive(Debug, Clone, Default)]
pub struct CeremonyOptions {
    /// Session policy: tunnel server, waits (approval included), command
    /// count, getInfo (taken from the authenticator when empty).
    pub session: SessionConfig,
    /// How to reach the tunnel server (timeouts, extra CA, size limit).
    pub client: ClientOptions,
    /// QR key-3 freshness policy (conformance checklist "QR freshness").
    pub freshness: hybrid_qr::Freshness,
    /// Accept a QR without a key-3 timestamp (whose age cannot be known).
    /// `false` (the default): such a QR is refused as `qr_stale` (issue 16).
    pub allow_qr_without_timestamp: bool,
}

/// One ceremony's peers and signals.
pub struct Ceremony<'a> {
    /// The radio that broadcasts the advert.
    pub radio: &'a mut dyn Advertiser,
    /// The CTAP authenticator.
    pub authenticator: &'a mut dyn Authenticate,
    /// The person.
    pub user: &'a mut dyn User,
    /// The QRs that reached a handshake (replay policy).
    pub replay: &'a mut ReplaySet,
    /// Where progress goes.
    pub progress: &'a dyn Progress,
    /// Cancellation (client gone, shutdown, Ctrl-C).
    pub cancel: Option<CancelSignal>,
    /// CTAP 2.3's BLE L2CAP listener, when the radio has one: offered to
    /// desktops whose QR asks for it (`hybrid-ble-l2cap.md`).
    pub l2cap: Option<&'a dyn L2capRadio>,
}

impl std::fmt::Debug for Ceremony<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ceremony").finish_non_exhaustive()
    }
}

/// The wall clock in Unix seconds (0 before 1970).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The ceremony's clock: tokio's, so tests on a paused clock see the same
/// time the session's deadlines are measured in.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Ceremony<'_> {
    /// Runs one ceremony for the scanned `uri` (surrounding whitespace is
    /// ignored). Order (hybrid-protocol.md §10): parse the URI, check
    /// freshness and replay — refusals end as `qr_invalid` / `qr_stale` /
    /// `qr_replayed` without any network use — then open the tunnel,
    /// advertise, answer the handshake and the CTAP request(s), close. A QR
    /// whose session got as far as the desktop's first message (successful
    /// or not) is inserted in the replay set as soon as that message
    /// arrives, before the session acts on it (so a persisted set's record
    /// is saved before the handshake reply and any CTAP answer). The authenticator's
    /// `end_session` is called once, whatever happened.
    ///
    /// Dropping the future mid-session cannot stop the radio (stopping is
    /// async); cancel through [`Ceremony::cancel`] instead.
    pub async fn run(self, uri: &str, opts: &CeremonyOptions) -> Report {
        let received = now();
        let refuse = |reason: FailReason| Report::refused(reason, received);
        let report = match hybrid_qr::parse(uri.trim()) {
            Err(e) => refuse(FailReason::QrInvalid(e.to_string())),
            Ok(qr) => {
                let now_unix = unix_now();
                match opts.freshness.check(&qr, now_unix) {
                    Err(e) => refuse(FailReason::QrStale(e.to_string())),
                    Ok(None) if !opts.allow_qr_without_timestamp => {
                        refuse(FailReason::QrStale(NO_TIMESTAMP.to_owned()))
                    }
                    Ok(age) => {
                        let digest = QrDigest::of_secret(qr.secret());
                        let stale_after = qr
                            .timestamp()
                            .map(|t| t.saturating_add(opts.freshness.max_age_secs));
                        if self.replay.contains(&digest, now_unix) {
                            refuse(FailReason::QrReplayed)
                        } else {
                            return driver::drive(
                                qr,
                                age,
                                received,
                                opts,
                                driver::Peers {
                                    radio: self.radio,
                                    authenticator: &mut *self.authenticator,
                                    user: self.user,
                                    progress: self.progress,
                                    cancel: self.cancel,
                                    l2cap: self.l2cap,
                                },
                                driver::Replay::new(self.replay, digest, stale_after),
                            )
                            .await;
                        }
                    }
                }
            }
        };
        tracing::info!(
            outcome = report.outcome.code(),
            "phone session refused: {}",
            report.outcome
        );
        self.authenticator.end_session().await;
        self.progress.event(&SessionEvent::Finished {
            outcome: report.outcome.clone(),
            at: now(),
        });
        report
    }
}
