//! The person behind the ceremony.
//!
//! The CTAP core never waits for anyone: a request that needs the user
//! yields a [`hybrid_ctap::ApprovalRequest`], and the ceremony asks its
//! [`User`] — asynchronously, racing the session's approval deadline, so
//! no thread waits and every timeout is the session's
//! ([`hybrid_session::SessionConfig::approval_timeout`]).
//!
//! The daemon's [`User`] is [`Approvals`] ([`flow`]): it separates
//! **consent** (the person says yes or no to the [`crate::prompt::Prompt`],
//! through a front-end) from **verification** (the PIN, checked by a
//! [`Verifier`] — the vault unlocking with it), with the wrong-PIN policy a
//! pure function of the attempts, the vault's answer and the time
//! ([`flow::after_refusal`]). The front-ends sit behind one trait,
//! [`Approver`], one file each: the terminal ([`terminal`]), the control
//! socket's client ([`socket`]), and automatic approval for tests
//! ([`auto`]). A front-end that collects consent and the PIN in one
//! exchange (all three today) answers both in its [`Answer`]; one that
//! only gives consent (a desktop notification, [`desktop`]) answers
//! `Answer::Approve(None)` and leaves verification to a
//! [`desktop::Verification`]: the PIN through pinentry, or a fingerprint
//! through fprintd against the vault session.

pub mod auto;
pub mod desktop;
pub mod flow;
pub mod socket;
pub mod terminal;
pub mod tty;

use hybrid_ctap::{Approval, ApprovalRequest, Command, UserError};
use zeroize::Zeroizing;

use crate::prompt::{Notice, Prompt};
use crate::BoxFuture;

pub use auto::{read_pin_file, AutoApprover};
pub use desktop::{
    FingerprintVerification, NotificationApprover, PinentryVerification, Verification, Verified,
};
pub use flow::{Approvals, Verifier};
pub use socket::SocketApprover;
pub use terminal::TerminalApprover;
pub use tty::Tty;

/// The person's answer to a [`Prompt`].
pub enum Answer {
    /// Consent, with the PIN when one was asked for (verification).
    Approve(Option<Zeroizing<String>>),
    /// Declined.
    Decline,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Approve(p) => write!(
                f,
                "Approve(pin: {})",
                if p.is_some() { "<set>" } else { "none" }
            ),
            Answer::Decline => f.write_str("Decline"),
        }
    }
}

/// An approval front-end: where prompts go and answers come from.
pub trait Approver: Send {
    /// Shows `prompt` and waits for the answer: `Err(Cancelled)` when the
    /// other end went away. There is no timeout here: the caller drops the
    /// future when the approval deadline passes (a front-end must leave
    /// nothing behind then — e.g. the terminal restores echo).
    fn ask<'a>(&'a mut self, prompt: &'a Prompt) -> BoxFuture<'a, Result<Answer, UserError>>;

    /// Tells the person something (wrong PIN, no answer in time) without asking.
    fn notify<'a>(&'a mut self, notice: &'a Notice) -> BoxFuture<'a, ()>;
}

/// What the ceremony asks when the CTAP core needs the user.
pub trait User: Send {
    /// Consent, and verification when the command needs it, for `request`.
    /// Dropped when the session's approval deadline passes or the session
    /// ends.
    fn approve<'a>(
        &'a mut self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<Approval, UserError>>;

    /// The approval deadline passed: tell the person.
    fn timed_out(&mut self) -> BoxFuture<'_, ()>;
}

/// Any closure answering approvals is a [`User`] (tests, the demo's
/// scripted desktops).
impl<F> User for F
where
    F: FnMut(&ApprovalRequest) -> Result<Approval, UserError> + Send,
{
    fn approve<'a>(
        &'a mut self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<Approval, UserError>> {
        let answer = self(request);
        Box::pin(std::future::ready(answer))
    }

    fn timed_out(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// Whether `command` needs user verification (a PIN) besides consent: a
/// phone always verifies for a registration or a sign-in; a presence-only
/// touch (excludeList hit, zero-length `pinUvAuthParam`) does not.
pub fn needs_verification(command: Command) -> bool {
    matches!(command, Command::MakeCredential | Command::GetAssertion)
}
