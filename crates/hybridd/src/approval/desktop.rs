//! The desktop front-ends (`hybrid-desktop`): consent through a desktop
//! notification, verification through pinentry or fprintd.
//!
//! * [`NotificationApprover`] — an [`Approver`] asking through
//!   `org.freedesktop.Notifications` (summary, body, Approve/Deny, expiring
//!   with the approval timeout). It only gives consent
//!   (`Answer::Approve(None)`); the PIN or fingerprint comes from a
//!   [`Verification`]. No server, a server without actions, or any other
//!   D-Bus failure is logged with the fix (and sent to the `hybridd scan`
//!   client when there is one) and **declines**: never an approval.
//! * [`PinentryVerification`] — the vault PIN through the configured
//!   pinentry (Assuan over its stdin/stdout; never argv, env or a log).
//! * [`FingerprintVerification`] — fprintd (claim, verify, release) when a
//!   vault session is open ([`crate::vault`]); without one, the PIN through
//!   pinentry opens it ("pinentry at the first request"); a reader that is
//!   missing or `fingerprint_attempts` fingers that do not match lead to
//!   the configured fallback (pinentry or decline).
//!
//! Every peer string shown goes through [`crate::peer_text`] here, in
//! [`render`]: `for_notification_markup` when the server parses markup,
//! `for_terminal` otherwise (and for pinentry).

use std::time::Duration;

use hybrid_ctap::UserError;
use hybrid_desktop::{
    ConsentRequest, DesktopError, Fprint, Notifier, PinOutcome, PinRequest, PinentryConfig,
    VerifyEvent, VerifyOutcome, VerifyPolicy,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::approval::{Answer, Approver};
use crate::config::{FingerprintFallback, PinentrySettings};
use crate::control::DaemonMsg;
use crate::peer_text;
use crate::prompt::{Action, Notice, Prompt};
use crate::vault::VaultWorker;
use crate::BoxFuture;

/// How long connecting to a bus and asking a service may take at most
/// (bounded again by the approval deadline).
const SERVICE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a verification after consent gave.
pub enum Verified {
    /// A PIN to check against the vault.
    Pin(Zeroizing<String>),
    /// A fingerprint matched, with the vault session open.
    Fingerprint,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verified::Pin(_) => f.write_str("Pin(<redacted>)"),
            Verified::Fingerprint => f.write_str("Fingerprint"),
        }
    }
}

/// User verification after a consent that came without a PIN.
pub trait Verification: Send {
    /// Verifies the person for `prompt` (whose `notice` says why, on a
    /// retry). Dropped when the approval deadline passes.
    fn verify<'a>(&'a mut self, prompt: &'a Prompt) -> BoxFuture<'a, Result<Verified, UserError>>;
}

/// The summary and body of a prompt, every peer string sanitized: the body
/// escaped for markup when `markup` (the server's `body-markup`).
pub fn render(prompt: &Prompt, markup: bool) -> (String, String) {
    let field = |text: &str, max: usize| {
        if markup {
            peer_text::for_notification_markup(text, max)
        } else {
            peer_text::for_terminal(text, max)
        }
    };
    let rp = peer_text::rp_id(&prompt.rp_id);
    let summary = match prompt.action {
        Action::CreatePasskey => format!("Create a passkey for {rp}?"),
        Action::SignIn => format!("Sign in to {rp}?"),
        Action::ConfirmPresence => format!("Confirm your presence for {rp}?"),
    };
    let mut body = format!(
        "A computer asks to {} for {}",
        prompt.action,
        field(&prompt.rp_id, peer_text::MAX_RP_ID_CHARS)
    );
    if let Some(n) = &prompt.rp_name {
        body.push_str(&format!(" ({})", field(n, peer_text::MAX_NAME_CHARS)));
    }
    body.push('\n');
    let name = |n: &str| field(n, peer_text::MAX_NAME_CHARS);
    match (&prompt.user_name, &prompt.user_display_name) {
        (Some(n), Some(d)) if n != d => {
            body.push_str(&format!("account: {} ({})\n", name(d), name(n)));
        }
        (Some(n), _) | (None, Some(n)) => body.push_str(&format!("account: {}\n", name(n))),
        (None, None) => {}
    }
    if let Some(age) = prompt.qr_age_secs {
        body.push_str(&format!("QR code scanned {age} s after it was shown\n"));
    }
    if let Some(n) = &prompt.notice {
        body.push_str(&field(n, 200));
        body.push('\n');
    }
    (summary, body.trim_end().to_owned())
}

/// Consent through the session bus's notification server.
pub struct NotificationApprover {
    timeout: Duration,
    events: Option<mpsc::UnboundedSender<DaemonMsg>>,
}

impl std::fmt::Debug for NotificationApprover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationApprover")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl NotificationApprover {
    /// Asks with notifications expiring after `timeout` (the approval
    /// timeout); failures are also sent on `events` (a `hybridd scan` client).
    pub fn new(timeout: Duration, events: Option<mpsc::UnboundedSender<DaemonMsg>>) -> Self {
        NotificationApprover { timeout, events }
    }

    fn tell(&self, text: String) {
        if let Some(events) = &self.events {
            let _ = events.send(DaemonMsg::Notice(text));
        }
    }

    async fn consent(&self, prompt: &Prompt) -> Result<hybrid_desktop::Consent, DesktopError> {
        let deadline = Instant::now() + self.timeout;
        let setup = (Instant::now() + SERVICE_TIMEOUT).min(deadline);
        let conn = hybrid_desktop::session_bus(setup).await?;
        let notifier = Notifier::connect(&conn, setup).await?;
        let (summary, body) = render(prompt, notifier.server().body_markup());
        let request = ConsentRequest::new(&summary, &body);
        let pending = notifier.ask(&request, deadline).await?;
        tracing::info!(id = pending.id(), action = %prompt.action, "asking through a notification");
        Ok(pending.wait().await)
    }
}

impl Approver for NotificationApprover {
    fn ask<'a>(&'a mut self, prompt: &'a Prompt) -> BoxFuture<'a, Result<Answer, UserError>> {
        Box::pin(async move {
            match self.consent(prompt).await {
                Ok(c) if c.is_approved() => Ok(Answer::Approve(None)),
                Ok(c) => {
                    tracing::info!(answer = ?c, "notification not approved");
                    Ok(Answer::Decline)
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot ask through a notification; declined");
                    self.tell(format!("cannot ask through a notification: {e}; declined"));
                    Ok(Answer::Decline)
                }
            }
        })
    }

    fn notify<'a>(&'a mut self, notice: &'a Notice) -> BoxFuture<'a, ()> {
        tracing::info!(%notice, "notice");
        self.tell(notice.to_string());
        Box::pin(std::future::ready(()))
    }
}

/// The vault PIN through the configured pinentry.
#[derive(Debug, Clone)]
pub struct PinentryVerification {
    config: PinentryConfig,
    timeout: Duration,
}

impl PinentryVerification {
    /// pinentry per `settings`; each request may take `timeout`.
    pub fn new(settings: &PinentrySettings, timeout: Duration) -> Self {
        let mut config = PinentryConfig::new(settings.program.clone());
        config.ttyname = settings.tty.clone();
        if config.ttyname.is_some() {
            config.ttytype = Some("dumb".to_owned());
        }
        PinentryVerification { config, timeout }
    }

    /// Asks for the PIN with `description` (already sanitized) and, on a
    /// retry, `error`.
    pub async fn pin(
        &self,
        description: &str,
        error: Option<&str>,
    ) -> Result<Zeroizing<String>, UserError> {
        let request = PinRequest {
            title: "hybridd",
            description,
            prompt: "PIN:",
            error,
        };
        let deadline = Instant::now() + self.timeout;
        match hybrid_desktop::get_pin(&self.config, &request, deadline).await {
            Ok(PinOutcome::Pin(pin)) => Ok(pin),
            Ok(PinOutcome::Cancelled) => Err(UserError::Declined),
            Ok(PinOutcome::TimedOut) => Err(UserError::Timeout),
            Err(e) => {
                tracing::error!(error = %e, "cannot ask for the PIN through pinentry; declined");
                Err(UserError::Declined)
            }
        }
    }
}

/// What pinentry shows for `prompt`: the rendered request, plain text.
fn describe(prompt: &Prompt) -> String {
    let (summary, body) = render(prompt, false);
    let mut text = format!("{summary}\n{body}");
    // The notice is pinentry's error line, not the description's.
    if let Some(n) = &prompt.notice {
        let notice = peer_text::for_terminal(n, 200);
        if let Some(stripped) = text.strip_suffix(&notice) {
            text = stripped.trim_end().to_owned();
        }
    }
    text
}

impl Verification for PinentryVerification {
    fn verify<'a>(&'a mut self, prompt: &'a Prompt) -> BoxFuture<'a, Result<Verified, UserError>> {
        Box::pin(async move {
            let error = prompt.notice.as_deref();
            self.pin(&describe(prompt), error).await.map(Verified::Pin)
        })
    }
}

/// A fingerprint through fprintd, against the vault session.
#[derive(Debug)]
pub struct FingerprintVerification {
    vault: VaultWorker,
    pinentry: PinentryVerification,
    fallback: FingerprintFallback,
    attempts: u32,
    timeout: Duration,
}

impl FingerprintVerification {
    /// Verifies with fprintd (at most `attempts` fingers) while `vault` has
    /// a session; otherwise, or failing that, `fallback` (`pinentry`).
    pub fn new(
        vault: VaultWorker,
        pinentry: PinentryVerification,
        fallback: FingerprintFallback,
        attempts: u32,
        timeout: Duration,
    ) -> Self {
        FingerprintVerification {
            vault,
            pinentry,
            fallback,
            attempts,
            timeout,
        }
    }

    async fn finger(&self) -> Result<VerifyOutcome, DesktopError> {
        let deadline = Instant::now() + self.timeout;
        let setup = (Instant::now() + SERVICE_TIMEOUT).min(deadline);
        let conn = hybrid_desktop::system_bus(setup).await?;
        let device = Fprint::new(conn).default_device(setup).await?;
        let policy = VerifyPolicy {
            max_attempts: self.attempts,
        };
        let mut progress = |e: VerifyEvent| match e {
            VerifyEvent::Ready { attempt } => {
                tracing::info!(attempt, reader = %device.name(), "touch the fingerprint reader");
            }
            VerifyEvent::NoMatch { attempt, left } => {
                tracing::info!(attempt, left, "the finger did not match");
            }
            VerifyEvent::Retry { result } => tracing::info!(%result, "scan again"),
        };
        device.verify(policy, deadline, &mut progress).await
    }
}

impl Verification for FingerprintVerification {
    fn verify<'a>(&'a mut self, prompt: &'a Prompt) -> BoxFuture<'a, Result<Verified, UserError>> {
        Box::pin(async move {
            if prompt.notice.is_none() && self.vault.session_open().await {
                let why = match self.finger().await {
                    Ok(VerifyOutcome::Verified { failed }) => {
                        tracing::info!(failed, "fingerprint verified");
                        return Ok(Verified::Fingerprint);
                    }
                    Ok(VerifyOutcome::TimedOut { .. }) => return Err(UserError::Timeout),
                    Ok(VerifyOutcome::NoMatch { attempts }) => {
                        format!("{attempts} finger(s) did not match")
                    }
                    Err(e) => e.to_string(),
                };
                match self.fallback {
                    FingerprintFallback::Decline => {
                        tracing::warn!(%why, "fingerprint not verified; declined (fingerprint_fallback = \"decline\")");
                        return Err(UserError::Declined);
                    }
                    FingerprintFallback::Pinentry => {
                        tracing::warn!(%why, "fingerprint not verified; asking for the PIN through pinentry");
                    }
                }
            } else if prompt.notice.is_none() {
                tracing::info!("no vault session: the PIN through pinentry opens one");
            }
            self.pinentry.verify(prompt).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::sample_request;
    use hybrid_ctap::Command;

    #[test]
    fn rendered_peer_text_has_no_raw_control_or_bidi_character() {
        let mut request = sample_request(Command::MakeCredential);
        request.user_name = Some("al\u{1b}[2Jice\r\nroot\u{202e}moc.evil".into());
        request.rp_name = Some("<b>Bank</b> & \u{1b}]8;;x\u{7}".into());
        request.user_display_name = Some("Alice".into());
        for markup in [false, true] {
            let (summary, body) = render(&Prompt::new(&request, false), markup);
            for text in [&summary, &body] {
                let lines: Vec<&str> = text.split('\n').collect();
                for line in &lines {
                    assert!(
                        !line.chars().any(peer_text::is_unsafe),
                        "raw unsafe character in {line:?}"
                    );
                }
            }
            assert_eq!(body.lines().count(), 3, "{body}");
            assert!(summary.starts_with("Create a passkey for example.com"));
            assert!(body.contains("QR code scanned 3 s"));
            assert!(
                body.contains("\\x1b[2J") && body.contains("\\u{202e}"),
                "{body}"
            );
            if markup {
                assert!(body.contains("&lt;b&gt;Bank&lt;/b&gt; &amp;"), "{body}");
            } else {
                assert!(body.contains("<b>Bank</b> &"), "{body}");
            }
        }
    }

    #[test]
    fn pinentry_description_leaves_the_notice_to_the_error_line() {
        let mut p = Prompt::new(&sample_request(Command::GetAssertion), false);
        p.notice = Some("wrong PIN".into());
        let d = describe(&p);
        assert!(d.starts_with("Sign in to example.com?\n") && !d.contains("wrong PIN"));
    }
}
