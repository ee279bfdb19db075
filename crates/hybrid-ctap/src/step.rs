//! What processing a request yields (sans-IO, in the style of rustls'
//! `process_new_packets`): either the reply, or a question for the user
//! that the caller answers later with [`crate::Authenticator::resume`].
//!
//! A request that needs the user (CTAP 2.1 §6.1.2 steps 1, 12, 14–16 and
//! §6.2.2 steps 1, 6, 9) never blocks inside the core: the parsed request
//! stays in the authenticator as pending state, and the caller — who owns
//! the clock, the prompt and the deadline — comes back with the answer.

use crate::env::ApprovalRequest;
use crate::status::Ctap2Status;

/// The result of [`crate::Authenticator::process`] or
/// [`crate::Authenticator::resume`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Step {
    /// The request is answered.
    Reply(Reply),
    /// The request needs the user: show this, then call
    /// [`crate::Authenticator::resume`] with the answer (or
    /// `Err(UserError::Timeout)` when the caller's deadline passes).
    NeedsUser(ApprovalRequest),
}

/// A finished CTAP reply and what the caller needs to know about it.
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    /// The response as sent: `status byte || CBOR`.
    pub bytes: Vec<u8>,
    /// The command byte of the request (`None` for an empty request).
    pub command: Option<u8>,
    /// The status, [`Reply::bytes`]' first byte.
    pub status: Ctap2Status,
    /// How many `authenticatorGetNextAssertion` requests the desktop may
    /// still send for this ceremony (CTAP 2.1 §6.3): `numberOfCredentials`
    /// − 1 after a discovery getAssertion, counting down with each
    /// follow-up, 0 once the list is exhausted, expired or any other command
    /// came.
    pub follow_ups: usize,
}

impl core::fmt::Debug for Reply {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The body may carry user names and signatures: lengths only.
        f.debug_struct("Reply")
            .field("command", &self.command)
            .field("status", &self.status)
            .field("len", &self.bytes.len())
            .field("follow_ups", &self.follow_ups)
            .finish()
    }
}

impl Reply {
    /// Whether the status is `CTAP2_OK`.
    pub fn is_ok(&self) -> bool {
        self.status == Ctap2Status::Ok
    }
}

impl Step {
    /// The reply, if this step is one.
    pub fn reply(self) -> Option<Reply> {
        match self {
            Step::Reply(r) => Some(r),
            Step::NeedsUser(_) => None,
        }
    }
}
