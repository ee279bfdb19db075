//! What the person is shown, written once: the [`Prompt`] built from the
//! CTAP core's [`ApprovalRequest`] (the command *actually received*, never
//! the QR hint — conformance checklist, hybrid layer), its text
//! ([`Prompt::describe`]), and the [`Notice`]s said between prompts.
//!
//! Every front-end renders with [`Prompt::describe`]: the terminal, the
//! `hybridd scan` client (which receives the same struct over the control
//! socket) and the logs. The RP ID, RP name and account names come from
//! the desktop or from what a desktop stored earlier — peer text: they
//! enter here, in [`Prompt::new`], and nowhere else.

use std::fmt;

use hybrid_ctap::{ApprovalRequest, Command};
use serde::{Deserialize, Serialize};

/// The operation, in words (the control protocol's `"action"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// makeCredential.
    #[serde(rename = "create a passkey")]
    CreatePasskey,
    /// getAssertion.
    #[serde(rename = "sign in")]
    SignIn,
    /// An excludeList hit or a zero-length `pinUvAuthParam`: a touch only.
    #[serde(rename = "confirm presence")]
    ConfirmPresence,
}

impl Action {
    /// The action for a CTAP command.
    pub fn of(command: Command) -> Action {
        match command {
            Command::MakeCredential => Action::CreatePasskey,
            Command::GetAssertion => Action::SignIn,
            _ => Action::ConfirmPresence,
        }
    }

    /// "create a passkey", "sign in" or "confirm presence".
    pub fn text(self) -> &'static str {
        match self {
            Action::CreatePasskey => "create a passkey",
            Action::SignIn => "sign in",
            Action::ConfirmPresence => "confirm presence",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// One question to the person: the request, whether a PIN is asked for,
/// and on a retry why. Also the control protocol's prompt message (field
/// names as in `docs/operations.md`; declared in alphabetical order, the
/// order the protocol has always written them in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    /// What is asked.
    pub action: Action,
    /// Whether a PIN must come with the approval (user verification).
    pub needs_pin: bool,
    /// Set on a retry: e.g. "wrong PIN: 7 attempt(s) left …".
    pub notice: Option<String>,
    /// Age of the QR code that started the session.
    pub qr_age_secs: Option<u64>,
    /// The RP ID the operation is for.
    pub rp_id: String,
    /// The RP's display name, if known.
    pub rp_name: Option<String>,
    /// The account display name, if known.
    pub user_display_name: Option<String>,
    /// The account name, if known.
    pub user_name: Option<String>,
    /// Whether the operation fails unless the user is verified.
    pub uv_required: bool,
}

impl Prompt {
    /// The prompt for `request`, asking for a PIN when `needs_pin`. The one
    /// place peer-supplied names enter what the person sees.
    pub fn new(request: &ApprovalRequest, needs_pin: bool) -> Prompt {
        Prompt {
            action: Action::of(request.command),
            needs_pin,
            notice: None,
            qr_age_secs: request.qr_age_secs,
            rp_id: request.rp_id.clone(),
            rp_name: request.rp_name.clone(),
            user_display_name: request.user_display_name.clone(),
            user_name: request.user_name.clone(),
            uv_required: request.uv_required,
        }
    }

    /// A multi-line human description (no secrets: RP, names, QR age,
    /// notice).
    pub fn describe(&self) -> String {
        let mut s = format!("A computer asks to {} for {}", self.action, self.rp_id);
        if let Some(n) = &self.rp_name {
            s.push_str(&format!(" ({n})"));
        }
        s.push('\n');
        match (&self.user_name, &self.user_display_name) {
            (Some(n), Some(d)) if n != d => s.push_str(&format!("  account: {d} <{n}>\n")),
            (Some(n), _) | (None, Some(n)) => s.push_str(&format!("  account: {n}\n")),
            (None, None) => {}
        }
        if let Some(age) = self.qr_age_secs {
            s.push_str(&format!("  QR code scanned {age} s after it was shown\n"));
        }
        if let Some(n) = &self.notice {
            s.push_str(&format!("  {n}\n"));
        }
        s
    }
}

/// What the person is told without being asked (a prompt's `notice`, or
/// the control protocol's `{"event": "notice"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// A wrong PIN; `retrying`: the prompt comes again, else the request
    /// is declined.
    WrongPin {
        /// Wrong PINs the vault still accepts before it locks for good.
        retries_left: u32,
        /// Whether the person may try again now.
        retrying: bool,
    },
    /// A PIN came before the vault's back-off delay ran out.
    TooSoon,
    /// The approval came without the PIN it needs.
    PinRequired,
    /// The vault cannot be unlocked at all (locked for good, IO trouble).
    CannotUnlock(String),
    /// The approval deadline passed.
    NoAnswerInTime,
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::WrongPin {
                retries_left,
                retrying,
            } => write!(
                f,
                "wrong PIN: {retries_left} attempt(s) left before the vault locks for good; {}",
                if *retrying {
                    "try again"
                } else {
                    "request declined"
                }
            ),
            Notice::TooSoon => f.write_str("too soon after a wrong PIN; try again"),
            Notice::PinRequired => f.write_str("a PIN is required"),
            Notice::CannotUnlock(why) => write!(f, "cannot unlock the vault: {why}"),
            Notice::NoAnswerInTime => f.write_str("no answer in time"),
        }
    }
}

/// A request for `example.com`, account `alice`, QR 3 s old (unit tests).
#[cfg(test)]
pub(crate) fn sample_request(command: Command) -> ApprovalRequest {
    ApprovalRequest {
        command,
        rp_id: "example.com".into(),
        rp_name: None,
        user_name: Some("alice".into()),
        user_display_name: None,
        uv_required: false,
        qr_age_secs: Some(3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(command: Command) -> ApprovalRequest {
        sample_request(command)
    }

    #[test]
    fn prompt_text_names_action_rp_user_age() {
        let p = Prompt::new(&req(Command::MakeCredential), true);
        let t = p.describe();
        assert!(t.contains("create a passkey for example.com"), "{t}");
        assert!(t.contains("alice") && t.contains("3 s"), "{t}");
        let mut p = Prompt::new(&req(Command::ExcludedCredential), false);
        p.rp_name = Some("Example".into());
        p.user_display_name = Some("Alice".into());
        p.notice = Some(Notice::TooSoon.to_string());
        let t = p.describe();
        assert!(t.starts_with("A computer asks to confirm presence for example.com (Example)\n"));
        assert!(
            t.contains("account: Alice <alice>") && t.contains("too soon"),
            "{t}"
        );
    }

    #[test]
    fn notices_read_as_before() {
        let n = Notice::WrongPin {
            retries_left: 7,
            retrying: true,
        };
        assert_eq!(
            n.to_string(),
            "wrong PIN: 7 attempt(s) left before the vault locks for good; try again"
        );
        assert_eq!(Notice::NoAnswerInTime.to_string(), "no answer in time");
    }
}
