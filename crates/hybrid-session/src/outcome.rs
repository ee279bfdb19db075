//! How a session ended: [`Outcome`] and its failure causes [`FailReason`].
//!
//! One outcome type for the whole phone session, from the QR check the
//! driver does before any network use to the tunnel close, so the CLI and
//! the daemon's control socket have one thing to print.

use std::fmt;

/// Why a session failed. Every variant's `Display` is a sentence a user can
/// read (no keys, no QR contents).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailReason {
    /// The scanned text is not a valid `FIDO:/` QR code (hybrid-protocol.md
    /// §1.4); refused before any network use.
    QrInvalid(String),
    /// The QR's key-3 timestamp is too old or too far in the future
    /// (hybridd freshness policy, conformance checklist "QR freshness");
    /// refused before any network use.
    QrStale(String),
    /// The QR's secret already served a session that reached the handshake
    /// (hybridd replay policy, conformance checklist "QR replay"): one QR
    /// is good for one handshake. Refused before any network use.
    QrReplayed,
    /// The tunnel server could not be reached, refused the request, or did
    /// not open the tunnel in time (§4.2, §10 step 3).
    TunnelUnreachable(String),
    /// The tunnel failed after it had opened (reset, text frame, oversize
    /// message, …; conformance checklist "Tunnel").
    TunnelFailed(String),
    /// The radio could not broadcast the advert (§3.4).
    AdvertFailed(String),
    /// No desktop sent a handshake message before the wait ran out, or the
    /// tunnel closed before one did (§5.3 "Failure handling", checklist
    /// "Desktop never connects").
    DesktopNeverConnected,
    /// The desktop's msg1 was refused: too short, not a point, AEAD failure
    /// or a non-empty payload (§5.3 "Failure handling"). Nothing was sent
    /// back and there is no retry.
    HandshakeFailed(String),
    /// A transport message did not decrypt (§5.5, §10 step 8).
    DecryptFailed,
    /// A decrypted frame broke the framing rules: empty, type > 3, shutdown
    /// with payload, an update that is not one CBOR item, a JSON request, or
    /// a CTAP request while one was outstanding (§6.3).
    BadFrame(String),
    /// The desktop closed (or sent shutdown) before a request was answered
    /// (§6.3: Chromium's `UNEXPECTED_EOF` / `EOF_WHILE_PROCESSING`).
    PeerClosedEarly,
    /// No CTAP request arrived within the command timeout after the handshake.
    CommandTimeout,
    /// A further CTAP request arrived after the allowed number of commands
    /// had been answered (§8.3: phones answer one command; checklist "The
    /// phone never sends a shutdown frame").
    SecondCommand,
    /// The user (or the daemon) cancelled the session.
    Cancelled,
    /// A local failure that is not the peer's doing (e.g. the transport
    /// sequence counter ran out, §5.5).
    Internal(String),
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::QrInvalid(why) => write!(f, "not a valid FIDO QR code: {why}"),
            FailReason::QrStale(why) => write!(f, "QR code refused: {why}"),
            FailReason::QrReplayed => {
                f.write_str("this QR code was already used; ask the computer for a new one")
            }
            FailReason::TunnelUnreachable(why) => {
                write!(f, "could not open the tunnel to the tunnel server: {why}")
            }
            FailReason::TunnelFailed(why) => write!(f, "the tunnel connection failed: {why}"),
            FailReason::AdvertFailed(why) => {
                write!(f, "could not broadcast the Bluetooth advert: {why}")
            }
            FailReason::DesktopNeverConnected => f.write_str(
                "the computer never connected (is its Bluetooth on and is it close enough?)",
            ),
            FailReason::HandshakeFailed(why) => {
                write!(f, "the secure handshake with the computer failed: {why}")
            }
            FailReason::DecryptFailed => {
                f.write_str("a message from the computer could not be decrypted")
            }
            FailReason::BadFrame(why) => {
                write!(f, "the computer sent an invalid message: {why}")
            }
            FailReason::PeerClosedEarly => {
                f.write_str("the computer closed the connection before the request was answered")
            }
            FailReason::CommandTimeout => {
                f.write_str("the computer connected but sent no request in time")
            }
            FailReason::SecondCommand => f.write_str(
                "the computer sent another request after the answer (only one is served)",
            ),
            FailReason::Cancelled => f.write_str("cancelled"),
            FailReason::Internal(why) => write!(f, "internal error: {why}"),
        }
    }
}

impl std::error::Error for FailReason {}

impl FailReason {
    /// A short, stable, machine-readable name (logs, JSON status).
    pub fn code(&self) -> &'static str {
        match self {
            FailReason::QrInvalid(_) => "qr_invalid",
            FailReason::QrStale(_) => "qr_stale",
            FailReason::QrReplayed => "qr_replayed",
            FailReason::TunnelUnreachable(_) => "tunnel_unreachable",
            FailReason::TunnelFailed(_) => "tunnel_failed",
            FailReason::AdvertFailed(_) => "advert_failed",
            FailReason::DesktopNeverConnected => "desktop_never_connected",
            FailReason::HandshakeFailed(_) => "handshake_failed",
            FailReason::DecryptFailed => "decrypt_failed",
            FailReason::BadFrame(_) => "bad_frame",
            FailReason::PeerClosedEarly => "peer_closed_early",
            FailReason::CommandTimeout => "command_timeout",
            FailReason::SecondCommand => "second_command",
            FailReason::Cancelled => "cancelled",
            FailReason::Internal(_) => "internal",
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// At least the session ran to its end without a protocol failure:
    /// `commands` CTAP requests were answered (the answers may still be CTAP
    /// errors such as "declined", which the driver reports separately).
    Completed {
        /// CTAP requests answered.
        commands: usize,
    },
    /// The session failed.
    Failed(FailReason),
}

impl Outcome {
    /// Whether the session completed.
    pub fn is_completed(&self) -> bool {
        matches!(self, Outcome::Completed { .. })
    }

    /// The failure, if any.
    pub fn failure(&self) -> Option<&FailReason> {
        match self {
            Outcome::Completed { .. } => None,
            Outcome::Failed(r) => Some(r),
        }
    }

    /// A short, stable, machine-readable name: `completed` or the
    /// [`FailReason::code`].
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Completed { .. } => "completed",
            Outcome::Failed(r) => r.code(),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Completed { commands: 1 } => f.write_str("completed (1 request answered)"),
            Outcome::Completed { commands } => {
                write!(f, "completed ({commands} requests answered)")
            }
            Outcome::Failed(r) => write!(f, "failed: {r}"),
        }
    }
}
