//! What a ceremony reports: typed progress while it runs
//! ([`SessionEvent`]) and one [`Report`] at the end.

use std::time::{Duration, Instant};

use hybrid_ble::ADVERT_LEN;
use hybrid_ctap::command::{CMD_GET_ASSERTION, CMD_GET_NEXT_ASSERTION, CMD_MAKE_CREDENTIAL};
use hybrid_ctap::{Approval, Ctap2Status, UserError};
use hybrid_session::{DataPath, FailReason, Outcome, Phases};
use hybrid_tunnel::RoutingId;

use crate::control::Done;

/// Progress of a ceremony, for a UI. Each carries the moment it happened.
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
        /// Its command byte (`hybrid_ctap::command::CMD_*`).
        command: u8,
        /// When.
        at: Instant,
    },
    /// The answer went out.
    ResponseSent {
        /// Its CTAP status.
        status: Ctap2Status,
        /// When.
        at: Instant,
    },
    /// The ceremony is over.
    Finished {
        /// How it ended.
        outcome: Outcome,
        /// When.
        at: Instant,
    },
}

/// The last CTAP reply of a ceremony and why it is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplySummary {
    /// The request's command byte.
    pub command: Option<u8>,
    /// The reply's status.
    pub status: Ctap2Status,
    /// The person's last answer for this request, if it asked: an approval,
    /// or why there was none (declined — by the person or after too many
    /// wrong PINs —, no answer in time, cancelled).
    pub user: Option<Result<Approval, UserError>>,
}

/// How one ceremony went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// How it ended (a QR refused before any network use included).
    pub outcome: Outcome,
    /// When the URI was handed over (before it was parsed).
    pub received: Instant,
    /// The session's phase times — the one timing record (QR accepted =
    /// [`Phases::started`], tunnel, advert, msg1, handshake, request, time
    /// with the user, reply, end); `None` when the QR was refused.
    pub phases: Option<Phases>,
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
    /// The last CTAP reply sent, if any.
    pub last_reply: Option<ReplySummary>,
    /// The data path the desktop's handshake came over (tunnel or CTAP
    /// 2.3's BLE L2CAP channel), once it did.
    pub path: Option<DataPath>,
    /// When messages actually left (after the send completed), for the
    /// timing record ([`Report::log_timings`]).
    pub sent: SentTimes,
}

/// When the phone's messages left, measured after each send completed
/// (the session's [`Phases`] record when they were produced).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentTimes {
    /// msg2 (the handshake reply, hybrid-protocol.md §5.3) was sent.
    pub handshake_reply: Option<Instant>,
    /// The post-handshake message (§6.2) was sent.
    pub post_handshake: Option<Instant>,
    /// One entry per CTAP request, in order.
    pub requests: Vec<RequestTimes>,
}

/// One CTAP request's times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimes {
    /// Its command byte.
    pub command: u8,
    /// It arrived (decrypted, handed to the authenticator).
    pub received: Instant,
    /// Its response was sent, if it was.
    pub sent: Option<Instant>,
    /// Time with the person (prompt → answer, PIN check included) while
    /// it was processed: `sent − received − user_wait` is the phone's own
    /// CTAP time.
    pub user_wait: Duration,
}

impl Report {
    /// A ceremony refused before its session began.
    pub(crate) fn refused(reason: FailReason, received: Instant) -> Report {
        Report {
            outcome: Outcome::Failed(reason),
            received,
            phases: None,
            qr_age_secs: None,
            hint: None,
            routing_id: None,
            advert: None,
            commands: Vec::new(),
            last_reply: None,
            path: None,
            sent: SentTimes::default(),
        }
    }

    /// Logs the ceremony's phase times in microseconds at debug level under
    /// the target `hybridd::timing` — what `hybrid-bench ceremony` reads
    /// (docs/performance.md). Off unless asked for with
    /// `RUST_LOG=…,hybridd::timing=debug`.
    ///
    /// One `ceremony timings` line per session, which also carries the
    /// first CTAP request's times (`command`, `ctap_us`, `user_us`; `-1`
    /// without a request); each further request gets a `request timings`
    /// line of its own, before it. One line for the usual one-request
    /// session: every line costs the daemon a write and its reader a
    /// wake-up, and these exist only to be measured.
    pub fn log_timings(&self) {
        if !tracing::enabled!(target: "hybridd::timing", tracing::Level::DEBUG) {
            return;
        }
        let Some(p) = self.phases else { return };
        let us = |from: Option<Instant>, to: Option<Instant>| match (from, to) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_micros() as i64,
            _ => -1,
        };
        let mut requests = self.sent.requests.iter().map(|r| {
            let total = us(Some(r.received), r.sent);
            let user = r.user_wait.as_micros() as i64;
            let ctap = if total < 0 {
                -1
            } else {
                total.saturating_sub(user)
            };
            (i64::from(r.command), ctap, user)
        });
        let (command, ctap_us, user_us) = requests.next().unwrap_or((-1, -1, -1));
        for (command, ctap_us, user_us) in requests {
            tracing::debug!(
                target: "hybridd::timing",
                command,
                ctap_us,
                user_us,
                "request timings"
            );
        }
        let start = Some(p.started);
        tracing::debug!(
            target: "hybridd::timing",
            tunnel_open_us = us(start, p.tunnel_open),
            first_advert_us = us(start, p.advert_out),
            handshake_reply_us = us(p.desktop_message, self.sent.handshake_reply),
            post_handshake_us = us(p.desktop_message, self.sent.post_handshake),
            command,
            ctap_us,
            user_us,
            "ceremony timings"
        );
    }

    /// Whether the desktop's first message (msg1) arrived: the QR reached
    /// a handshake, whatever its result (the replay policy keys on this).
    pub fn reached_handshake(&self) -> bool {
        self.phases.is_some_and(|p| p.desktop_message.is_some())
    }

    /// Time from [`Report::received`] to `at`.
    pub fn since_received(&self, at: Option<Instant>) -> Option<Duration> {
        at.map(|t| t.saturating_duration_since(self.received))
    }

    fn last_status(&self) -> Option<Ctap2Status> {
        self.last_reply.map(|r| r.status)
    }

    /// Completed, and the last answer was a CTAP success.
    pub fn succeeded(&self) -> bool {
        self.outcome.is_completed() && self.last_status() == Some(Ctap2Status::Ok)
    }

    /// The last answer was "declined" (`CTAP2_ERR_OPERATION_DENIED`).
    pub fn declined(&self) -> bool {
        self.last_status() == Some(Ctap2Status::OperationDenied)
    }

    /// The last answer was "user action timeout".
    pub fn user_timed_out(&self) -> bool {
        self.last_status() == Some(Ctap2Status::UserActionTimeout)
    }

    /// The control protocol's `done`: the session's failure code; else
    /// success named by the command; else why the person's approval was
    /// missing (`declined`, `timeout`, `cancelled`); else the CTAP status
    /// (`declined` / `timeout` for the statuses that mean it, `ctap_error`
    /// for any other).
    pub fn done(&self) -> Done {
        let done = |ok, outcome: &str, message: String| Done {
            ok,
            outcome: outcome.to_owned(),
            message,
        };
        if let Outcome::Failed(r) = &self.outcome {
            return done(false, r.code(), r.to_string());
        }
        let Some(reply) = self.last_reply else {
            return done(false, "ctap_error", "no request was answered".into());
        };
        if reply.status == Ctap2Status::Ok {
            let what = match reply.command {
                Some(CMD_MAKE_CREDENTIAL) => "passkey created",
                Some(CMD_GET_ASSERTION | CMD_GET_NEXT_ASSERTION) => "signed in",
                _ => "request answered",
            };
            return done(true, "completed", what.into());
        }
        match (reply.user, reply.status) {
            (Some(Err(UserError::Declined)), _) => done(
                false,
                "declined",
                "the request was declined (by you, or after too many wrong PINs)".into(),
            ),
            (Some(Err(UserError::Timeout)), _) | (_, Ctap2Status::UserActionTimeout) => {
                done(false, "timeout", "no approval in time".into())
            }
            (Some(Err(_)), _) => done(false, "cancelled", "the approval was cancelled".into()),
            (_, Ctap2Status::OperationDenied) => {
                done(false, "declined", "the request was declined".into())
            }
            (_, status) => done(
                false,
                "ctap_error",
                format!(
                    "the authenticator answered {status:?} (0x{:02X})",
                    status.byte()
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completed(
        command: u8,
        status: Ctap2Status,
        user: Option<Result<Approval, UserError>>,
    ) -> Report {
        let mut r = Report::refused(FailReason::Cancelled, Instant::now());
        r.outcome = Outcome::Completed { commands: 1 };
        r.last_reply = Some(ReplySummary {
            command: Some(command),
            status,
            user,
        });
        r
    }

    #[test]
    fn done_names_what_happened() {
        let verified = Some(Ok(Approval {
            user_present: true,
            user_verified: true,
        }));
        let d = completed(0x01, Ctap2Status::Ok, verified).done();
        assert_eq!(
            (d.ok, d.outcome.as_str(), d.message.as_str()),
            (true, "completed", "passkey created")
        );
        assert_eq!(
            completed(0x08, Ctap2Status::Ok, None).done().message,
            "signed in"
        );
        let d = completed(
            0x02,
            Ctap2Status::OperationDenied,
            Some(Err(UserError::Declined)),
        )
        .done();
        assert_eq!(d.outcome, "declined");
        assert!(d.message.contains("too many wrong PINs"));
        let d = completed(
            0x02,
            Ctap2Status::UserActionTimeout,
            Some(Err(UserError::Timeout)),
        )
        .done();
        assert_eq!(
            (d.outcome.as_str(), d.message.as_str()),
            ("timeout", "no approval in time")
        );
        let d = completed(
            0x02,
            Ctap2Status::KeepaliveCancel,
            Some(Err(UserError::Cancelled)),
        )
        .done();
        assert_eq!(d.outcome, "cancelled");
        // No user error: the status decides (a ".dummy" request, a locked store).
        let d = completed(0x01, Ctap2Status::OperationDenied, None).done();
        assert_eq!(
            (d.outcome.as_str(), d.message.as_str()),
            ("declined", "the request was declined")
        );
        let d = completed(0x02, Ctap2Status::NoCredentials, verified).done();
        assert_eq!(d.outcome, "ctap_error");
        assert_eq!(d.message, "the authenticator answered NoCredentials (0x2E)");
        let mut r = completed(0x02, Ctap2Status::Ok, None);
        r.last_reply = None;
        assert_eq!(r.done().message, "no request was answered");
        let d = Report::refused(FailReason::QrReplayed, Instant::now()).done();
        assert_eq!((d.ok, d.outcome.as_str()), (false, "qr_replayed"));
    }
}
