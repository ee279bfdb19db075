//! What the person is shown, written once: the [`Prompt`] built from the
//! CTAP core's [`ApprovalRequest`] (the command *actually received*, never
//! the QR hint — conformance checklist, hybrid layer), its text
//! ([`Prompt::describe`]), and the [`Notice`]s said between prompts.
//!
//! Every front-end renders with [`Prompt::describe`]: the terminal, the
//! `hybridd scan` client (which receives the same struct over the control
//! socket) and the logs. The RP ID, RP name and account names come from
//! the desktop or from what a desktop stored earlier — peer text: they
//! enter here, in [`Prompt::new`], and nowhere else, and pass the one
//! sanitizer ([`crate::peer_text`]) there; [`Prompt::describe`] renders them
//! through it again (idempotent), because the `hybridd scan` client renders
//! a prompt it received over the control socket. The RP ID is always the
//! second line, `  site: <rp id>`, on its own: no peer string can contain a
//! line break once sanitized, so none can forge or displace it.

use std::fmt;

use hybrid_ctap::{ApprovalRequest, Command};
use serde::{Deserialize, Serialize};

use crate::peer_text;

/// Cap for a notice (daemon text, which may quote an error).
const MAX_NOTICE_CHARS: usize = 512;

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
            rp_id: peer_text::rp_id(&request.rp_id),
            rp_name: request.rp_name.as_deref().map(peer_text::name),
            user_display_name: request.user_display_name.as_deref().map(peer_text::name),
            user_name: request.user_name.as_deref().map(peer_text::name),
            uv_required: request.uv_required,
        }
    }

    /// A multi-line human description (no secrets: RP, names, QR age,
    /// notice). Every line but the first is indented; the first names the
    /// action only and the second the RP ID, so neither depends on a string
    /// the peer chose freely (the RP ID is checked against the web origin
    /// by the browser; rp.name and the account names are not). Every
    /// string is rendered through [`peer_text`].
    pub fn describe(&self) -> String {
        let mut s = format!("A computer asks to {}\n", self.action);
        s.push_str(&format!("  site: {}\n", peer_text::rp_id(&self.rp_id)));
        if let Some(n) = &self.rp_name {
            s.push_str(&format!("  site name: {}\n", peer_text::name(n)));
        }
        let user_name = self.user_name.as_deref().map(peer_text::name);
        let display_name = self.user_display_name.as_deref().map(peer_text::name);
        match (user_name, display_name) {
            (Some(n), Some(d)) if n != d => s.push_str(&format!("  account: {d} <{n}>\n")),
            (Some(n), _) | (None, Some(n)) => s.push_str(&format!("  account: {n}\n")),
            (None, None) => {}
        }
        if let Some(age) = self.qr_age_secs {
            s.push_str(&format!("  QR code scanned {age} s after it was shown\n"));
        }
        if let Some(n) = &self.notice {
            s.push_str(&format!(
                "  {}\n",
                peer_text::for_terminal(n, MAX_NOTICE_CHARS)
            ));
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
        assert!(
            t.starts_with("A computer asks to create a passkey\n  site: example.com\n"),
            "{t}"
        );
        assert!(t.contains("alice") && t.contains("3 s"), "{t}");
        let mut p = Prompt::new(&req(Command::ExcludedCredential), false);
        p.rp_name = Some("Example".into());
        p.user_display_name = Some("Alice".into());
        p.notice = Some(Notice::TooSoon.to_string());
        let t = p.describe();
        assert!(
            t.starts_with(
                "A computer asks to confirm presence\n  site: example.com\n  site name: Example\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("account: Alice <alice>") && t.contains("too soon"),
            "{t}"
        );
    }

    /// The issue-16 attack in every peer string: sanitized on entry, and
    /// again when a received prompt is rendered; the RP ID keeps its own
    /// line, the first line and the `site:` line cannot be forged.
    #[test]
    fn peer_text_prompt_escapes_hostile_names_and_keeps_the_rp_line() {
        const ATTACK: &str = "mallory\u{1b}[2J\rApprove: bank.example\nok\u{202e}evil";
        let mut request = req(Command::MakeCredential);
        request.rp_id = "evil.example\n  site: bank.example".to_owned();
        request.rp_name = Some(ATTACK.into());
        request.user_name = Some(ATTACK.into());
        request.user_display_name = Some(format!("{ATTACK}\u{9b}2J"));
        let p = Prompt::new(&request, true);
        for field in [
            &p.rp_id,
            p.rp_name.as_ref().unwrap(),
            p.user_name.as_ref().unwrap(),
        ] {
            assert!(!field.chars().any(peer_text::is_unsafe), "{field:?}");
        }
        // A prompt as a client might receive it (raw fields): still safe.
        let mut raw = p.clone();
        raw.rp_name = Some(ATTACK.into());
        raw.user_name = Some(ATTACK.into());
        raw.notice = Some(ATTACK.into());
        for t in [p.describe(), raw.describe()] {
            assert!(
                !t.chars().any(|c| c != '\n' && peer_text::is_unsafe(c)),
                "{t:?}"
            );
            let lines: Vec<&str> = t.lines().collect();
            assert_eq!(lines[0], "A computer asks to create a passkey", "{t}");
            assert_eq!(
                lines[1], "  site: evil.example\\n  site: bank.example",
                "{t}"
            );
            assert!(
                lines
                    .iter()
                    .skip(2)
                    .all(|l| l.starts_with("  ") && !l.starts_with("  site: ")),
                "{t}"
            );
            assert!(!lines.iter().any(|l| l.starts_with("Approve")), "{t}");
        }
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
