//! The user side of the authenticator: approval prompts, the PIN, and the
//! [`hybrid_ctap::Env`] the daemon builds its [`Authenticator`] with.
//!
//! The CTAP core asks [`hybrid_ctap::UserInterface::approve`] with an
//! [`ApprovalRequest`] describing the command *actually received* (never the
//! QR hint; conformance checklist, hybrid layer). [`VaultUser`] shows it
//! through an [`Approver`] (terminal, control-socket client, or automatic),
//! takes the PIN, and unlocks the vault with it: a correct PIN is user
//! verification (`uv`), a wrong one is reported with the retries left and
//! may be retried up to `pin_attempts` times within the approval timeout.
//! The vault is shared between the store and the user
//! ([`SharedVault`]) and locked again when the session ends
//! ([`DaemonAuthenticator::end_session`]).
//!
//! PINs live in [`Zeroizing`] strings and are never logged.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hybrid_ctap::store::{CredentialMeta, CredentialSecrets, CredentialStore, StoreError};
use hybrid_ctap::{
    Approval, ApprovalRequest, Authenticator, Clock, Command, Env, RequestContext, UserError,
    UserInterface,
};
use hybrid_vault::{Vault, VaultError};
use rand_core::OsRng;
use zeroize::Zeroizing;

/// The vault, shared by the credential store and the PIN check.
#[derive(Clone)]
pub struct SharedVault(Arc<Mutex<Vault>>);

impl std::fmt::Debug for SharedVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedVault { .. }")
    }
}

impl SharedVault {
    /// Wraps an opened vault.
    pub fn new(vault: Vault) -> Self {
        SharedVault(Arc::new(Mutex::new(vault)))
    }

    /// Locks the mutex (a poisoned mutex is recovered: the vault itself has
    /// no invariant a panic elsewhere could break).
    pub fn guard(&self) -> MutexGuard<'_, Vault> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the vault key.
    pub fn lock_vault(&self) {
        self.guard().lock();
    }
}

impl CredentialStore for SharedVault {
    fn find(
        &self,
        rp_id: &str,
        ids: Option<&[Vec<u8>]>,
    ) -> Result<Vec<CredentialMeta>, StoreError> {
        self.guard().find(rp_id, ids)
    }

    fn insert(
        &mut self,
        meta: &CredentialMeta,
        secrets: &CredentialSecrets,
    ) -> Result<(), StoreError> {
        self.guard().insert(meta, secrets)
    }

    fn secrets(&self, id: &[u8]) -> Result<CredentialSecrets, StoreError> {
        CredentialStore::secrets(&*self.guard(), id)
    }

    fn next_sign_count(&mut self, id: &[u8], now_unix: u64) -> Result<u32, StoreError> {
        self.guard().next_sign_count(id, now_unix)
    }
}

/// What the person is shown: the request plus, on a retry, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The CTAP core's request.
    pub request: ApprovalRequest,
    /// Whether a PIN is asked for (not for presence-only confirmations).
    pub needs_pin: bool,
    /// Set on a retry: e.g. "wrong PIN: 7 attempt(s) left …".
    pub notice: Option<String>,
}

impl Prompt {
    /// "create a passkey", "sign in" or "confirm presence".
    pub fn action(&self) -> &'static str {
        action_text(self.request.command)
    }

    /// A multi-line human description (no secrets: RP, names, QR age).
    pub fn describe(&self) -> String {
        let r = &self.request;
        let mut s = format!("A computer asks to {} for {}", self.action(), r.rp_id);
        if let Some(n) = &r.rp_name {
            s.push_str(&format!(" ({n})"));
        }
        s.push('\n');
        match (&r.user_name, &r.user_display_name) {
            (Some(n), Some(d)) if n != d => s.push_str(&format!("  account: {d} <{n}>\n")),
            (Some(n), _) | (None, Some(n)) => s.push_str(&format!("  account: {n}\n")),
            (None, None) => {}
        }
        if let Some(age) = r.qr_age_secs {
            s.push_str(&format!("  QR code scanned {age} s after it was shown\n"));
        }
        if let Some(n) = &self.notice {
            s.push_str(&format!("  {n}\n"));
        }
        s
    }
}

/// Human text for a CTAP command.
pub fn action_text(c: Command) -> &'static str {
    match c {
        Command::MakeCredential => "create a passkey",
        Command::GetAssertion => "sign in",
        _ => "confirm presence",
    }
}

/// The person's answer.
pub enum Answer {
    /// Approved, with the PIN when one was asked for.
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

/// Where prompts go and answers come from.
pub trait Approver: Send {
    /// Shows `prompt` and waits at most `within` for the answer.
    /// `Err(Timeout)` when no answer came in time, `Err(Cancelled)` when the
    /// other end went away.
    fn ask(&mut self, prompt: &Prompt, within: Duration) -> Result<Answer, UserError>;
    /// Tells the person something (wrong PIN, vault locked) without asking.
    fn notify(&mut self, _message: &str) {}
}

/// Approves everything with a PIN read from a file (`approval = "auto"`).
/// **For tests only**: any desktop that scans a QR code this daemon answers
/// gets a passkey created or a signature, with no person involved.
#[derive(Clone)]
pub struct AutoApprover {
    pin: Zeroizing<String>,
}

impl std::fmt::Debug for AutoApprover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AutoApprover { .. }")
    }
}

impl AutoApprover {
    /// Reads the PIN (first line, trimmed) from `path`.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        Ok(AutoApprover {
            pin: read_pin_file(path)?,
        })
    }
}

/// Reads a PIN file: the first line, without its line ending.
pub fn read_pin_file(path: &Path) -> Result<Zeroizing<String>, String> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read PIN file {}: {e}", path.display()))?,
    );
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(format!("PIN file {} is empty", path.display()));
    }
    Ok(Zeroizing::new(line.to_owned()))
}

impl Approver for AutoApprover {
    fn ask(&mut self, prompt: &Prompt, _within: Duration) -> Result<Answer, UserError> {
        if prompt.notice.is_some() {
            // The file's PIN was wrong once already: retrying it only burns attempts.
            return Err(UserError::Declined);
        }
        tracing::info!(action = prompt.action(), rp = %prompt.request.rp_id, "automatic approval");
        Ok(Answer::Approve(Some(self.pin.clone())))
    }
}

/// Asks on the controlling terminal (`/dev/tty`, else stdin/stderr): y/N,
/// then the PIN without echo (`rpassword`).
#[derive(Debug, Default)]
pub struct TerminalApprover;

impl Approver for TerminalApprover {
    fn ask(&mut self, prompt: &Prompt, within: Duration) -> Result<Answer, UserError> {
        let text = prompt.describe();
        let needs_pin = prompt.needs_pin;
        let (tx, rx) = mpsc::channel();
        // A terminal read cannot be interrupted; it runs on its own thread and
        // is abandoned on timeout.
        std::thread::spawn(move || {
            let _ = tx.send(terminal_exchange(&text, needs_pin));
        });
        match rx.recv_timeout(within) {
            Ok(answer) => answer,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                eprintln!("\nno answer in time");
                Err(UserError::Timeout)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(UserError::Cancelled),
        }
    }

    fn notify(&mut self, message: &str) {
        eprintln!("{message}");
    }
}

/// The y/N + PIN exchange on the terminal (blocking).
pub fn terminal_exchange(text: &str, needs_pin: bool) -> Result<Answer, UserError> {
    eprint!("{text}Approve? [y/N] ");
    let _ = std::io::stderr().flush();
    let line = read_tty_line().map_err(|_| UserError::Cancelled)?;
    if !matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        return Ok(Answer::Decline);
    }
    if !needs_pin {
        return Ok(Answer::Approve(None));
    }
    let pin = rpassword::prompt_password("PIN: ").map_err(|_| UserError::Cancelled)?;
    Ok(Answer::Approve(Some(Zeroizing::new(pin))))
}

fn read_tty_line() -> std::io::Result<String> {
    let mut line = String::new();
    let n = match std::fs::File::open("/dev/tty") {
        Ok(tty) => std::io::BufReader::new(tty).read_line(&mut line)?,
        Err(_) => std::io::stdin().lock().read_line(&mut line)?,
    };
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line)
}

/// The [`UserInterface`] over the vault: shows the prompt through an
/// [`Approver`], checks the PIN by unlocking the vault.
pub struct VaultUser {
    vault: SharedVault,
    approver: Box<dyn Approver>,
    timeout: Duration,
    pin_attempts: u32,
    last_error: Option<UserError>,
}

impl std::fmt::Debug for VaultUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultUser")
            .field("timeout", &self.timeout)
            .field("pin_attempts", &self.pin_attempts)
            .finish_non_exhaustive()
    }
}

impl VaultUser {
    /// A user answering through `approver` within `timeout`, allowed
    /// `pin_attempts` wrong PINs per approval.
    pub fn new(
        vault: SharedVault,
        approver: Box<dyn Approver>,
        timeout: Duration,
        pin_attempts: u32,
    ) -> Self {
        VaultUser {
            vault,
            approver,
            timeout,
            pin_attempts: pin_attempts.max(1),
            last_error: None,
        }
    }

    /// Why the last approval failed (reset by [`VaultUser::take_last_error`]).
    pub fn take_last_error(&mut self) -> Option<UserError> {
        self.last_error.take()
    }

    fn approve_inner(&mut self, request: &ApprovalRequest) -> Result<Approval, UserError> {
        let deadline = Instant::now() + self.timeout;
        let needs_pin = matches!(
            request.command,
            Command::MakeCredential | Command::GetAssertion
        );
        let mut prompt = Prompt {
            request: request.clone(),
            needs_pin,
            notice: None,
        };
        let mut wrong = 0u32;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(UserError::Timeout);
            }
            let pin = match self.approver.ask(&prompt, left)? {
                Answer::Decline => return Err(UserError::Declined),
                Answer::Approve(pin) => pin,
            };
            if !needs_pin {
                return Ok(Approval {
                    user_present: true,
                    user_verified: false,
                });
            }
            let Some(pin) = pin else {
                prompt.notice = Some("a PIN is required".to_owned());
                continue;
            };
            let result = self.vault.guard().unlock(&pin, SystemTime::now());
            match result {
                Ok(()) => {
                    return Ok(Approval {
                        user_present: true,
                        user_verified: true,
                    })
                }
                Err(VaultError::WrongPin {
                    retries_left,
                    retry_after,
                }) => {
                    wrong += 1;
                    tracing::warn!(retries_left, "wrong PIN");
                    let msg = format!(
                        "wrong PIN: {retries_left} attempt(s) left before the vault locks for good"
                    );
                    if wrong >= self.pin_attempts || retries_left == 0 {
                        self.approver.notify(&format!("{msg}; request declined"));
                        return Err(UserError::Declined);
                    }
                    // The vault refuses a new attempt before the delay; wait it out.
                    let left = deadline.saturating_duration_since(Instant::now());
                    std::thread::sleep(retry_after.min(left));
                    prompt.notice = Some(format!("{msg}; try again"));
                }
                Err(VaultError::TooSoon { retry_after }) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    std::thread::sleep(retry_after.min(left));
                    prompt.notice = Some("too soon after a wrong PIN; try again".to_owned());
                }
                Err(e) => {
                    // Locked for good, IO trouble: nothing the person can fix by retrying.
                    tracing::error!(error = %e, "vault unlock failed");
                    self.approver
                        .notify(&format!("cannot unlock the vault: {e}"));
                    return Err(UserError::Declined);
                }
            }
        }
    }
}

impl UserInterface for VaultUser {
    fn approve(&mut self, request: &ApprovalRequest) -> Result<Approval, UserError> {
        let r = self.approve_inner(request);
        if let Err(e) = &r {
            tracing::info!(outcome = %e, action = action_text(request.command), "approval not given");
            self.last_error = Some(*e);
        }
        r
    }
}

/// Wall clock and a monotonic clock from process start.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn monotonic_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn unix_secs(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// The daemon's [`Env`]: the shared vault, the approving user, the system
/// clock and the OS RNG.
#[derive(Debug)]
pub struct DaemonEnv {
    store: SharedVault,
    user: VaultUser,
    clock: SystemClock,
    rng: OsRng,
}

impl Env for DaemonEnv {
    type Store = SharedVault;
    type User = VaultUser;
    type Clock = SystemClock;
    type Rng = OsRng;

    fn store(&mut self) -> &mut SharedVault {
        &mut self.store
    }

    fn user(&mut self) -> &mut VaultUser {
        &mut self.user
    }

    fn clock(&self) -> &SystemClock {
        &self.clock
    }

    fn rng(&mut self) -> &mut OsRng {
        &mut self.rng
    }
}

/// The authenticator a session runs: [`Authenticator`] over [`DaemonEnv`],
/// locking the vault when the session ends.
#[derive(Debug)]
pub struct DaemonAuthenticator {
    inner: Authenticator<DaemonEnv>,
    vault: SharedVault,
}

impl DaemonAuthenticator {
    /// Builds the authenticator (AAGUID from the config; real clock; `OsRng`).
    pub fn new(
        vault: SharedVault,
        approver: Box<dyn Approver>,
        aaguid: [u8; 16],
        approval_timeout: Duration,
        pin_attempts: u32,
    ) -> Self {
        let user = VaultUser::new(vault.clone(), approver, approval_timeout, pin_attempts);
        let env = DaemonEnv {
            store: vault.clone(),
            user,
            clock: SystemClock::default(),
            rng: OsRng,
        };
        let config = hybrid_ctap::Config {
            aaguid,
            ..hybrid_ctap::Config::default()
        };
        DaemonAuthenticator {
            inner: Authenticator::new(config, env),
            vault,
        }
    }

    /// The getInfo CBOR (for the post-handshake message, §6.2).
    pub fn get_info_cbor(&self) -> Vec<u8> {
        self.inner.get_info().to_cbor()
    }

    /// Runs one CTAP request.
    pub fn process(&mut self, request: &[u8], ctx: &RequestContext) -> Vec<u8> {
        self.inner.process(request, ctx)
    }

    /// Why the last approval failed, if it did.
    pub fn take_user_error(&mut self) -> Option<UserError> {
        self.inner.env_mut().user.take_last_error()
    }

    /// Ends the session: forgets per-session CTAP state and locks the vault.
    pub fn end_session(&mut self) {
        self.inner.end_session();
        self.vault.lock_vault();
    }
}

impl crate::phone::CtapHandler for DaemonAuthenticator {
    fn handle(&mut self, request: &[u8], ctx: &RequestContext) -> Vec<u8> {
        self.process(request, ctx)
    }

    fn end_session(&mut self) {
        DaemonAuthenticator::end_session(self);
    }

    fn get_info(&mut self) -> Option<Vec<u8>> {
        Some(self.get_info_cbor())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hybrid_vault::KdfParams;

    struct Scripted(Vec<Result<Answer, UserError>>, Vec<Prompt>);

    impl Approver for Scripted {
        fn ask(&mut self, prompt: &Prompt, _within: Duration) -> Result<Answer, UserError> {
            self.1.push(prompt.clone());
            if self.0.is_empty() {
                return Err(UserError::Timeout);
            }
            self.0.remove(0)
        }
    }

    fn vault() -> (tempfile::TempDir, SharedVault) {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::create(
            dir.path().join("private").join("v.db"),
            "1234",
            KdfParams::INSECURE_FOR_TESTS,
        )
        .unwrap();
        let shared = SharedVault::new(v);
        shared.lock_vault();
        (dir, shared)
    }

    fn req(command: Command) -> ApprovalRequest {
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

    fn pin(p: &str) -> Result<Answer, UserError> {
        Ok(Answer::Approve(Some(Zeroizing::new(p.to_owned()))))
    }

    #[test]
    fn right_pin_unlocks_and_verifies() {
        let (_d, v) = vault();
        let mut u = VaultUser::new(
            v.clone(),
            Box::new(Scripted(vec![pin("1234")], vec![])),
            Duration::from_secs(5),
            3,
        );
        let a = u.approve(&req(Command::GetAssertion)).unwrap();
        assert!(a.user_present && a.user_verified);
        assert!(v.guard().is_unlocked());
    }

    #[test]
    fn wrong_then_right_pin_retries_with_notice() {
        let (_d, v) = vault();
        let mut u = VaultUser::new(
            v,
            Box::new(Scripted(vec![pin("9999"), pin("1234")], vec![])),
            Duration::from_secs(10),
            3,
        );
        assert!(
            u.approve(&req(Command::MakeCredential))
                .unwrap()
                .user_verified
        );
    }

    #[test]
    fn too_many_wrong_pins_is_declined() {
        let (_d, v) = vault();
        let mut u = VaultUser::new(
            v.clone(),
            Box::new(Scripted(vec![pin("9999")], vec![])),
            Duration::from_secs(5),
            1,
        );
        assert_eq!(
            u.approve(&req(Command::MakeCredential)),
            Err(UserError::Declined)
        );
        assert_eq!(u.take_last_error(), Some(UserError::Declined));
        assert!(!v.guard().is_unlocked());
    }

    #[test]
    fn decline_and_timeout() {
        let (_d, v) = vault();
        let mut u = VaultUser::new(
            v.clone(),
            Box::new(Scripted(vec![Ok(Answer::Decline)], vec![])),
            Duration::from_secs(5),
            3,
        );
        assert_eq!(
            u.approve(&req(Command::GetAssertion)),
            Err(UserError::Declined)
        );
        let mut u = VaultUser::new(
            v,
            Box::new(Scripted(vec![], vec![])),
            Duration::from_secs(5),
            3,
        );
        assert_eq!(
            u.approve(&req(Command::GetAssertion)),
            Err(UserError::Timeout)
        );
    }

    #[test]
    fn presence_only_needs_no_pin() {
        let (_d, v) = vault();
        let mut u = VaultUser::new(
            v,
            Box::new(Scripted(vec![Ok(Answer::Approve(None))], vec![])),
            Duration::from_secs(5),
            3,
        );
        let a = u.approve(&req(Command::ExcludedCredential)).unwrap();
        assert!(a.user_present && !a.user_verified);
    }

    #[test]
    fn prompt_text_names_action_rp_user_age() {
        let p = Prompt {
            request: req(Command::MakeCredential),
            needs_pin: true,
            notice: None,
        };
        let t = p.describe();
        assert!(t.contains("create a passkey for example.com"), "{t}");
        assert!(t.contains("alice") && t.contains("3 s"), "{t}");
    }

    #[test]
    fn auto_approver_gives_up_after_a_wrong_pin() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pin");
        std::fs::write(&f, "1234\n").unwrap();
        let mut a = AutoApprover::from_file(&f).unwrap();
        let mut p = Prompt {
            request: req(Command::GetAssertion),
            needs_pin: true,
            notice: None,
        };
        assert!(
            matches!(a.ask(&p, Duration::from_secs(1)), Ok(Answer::Approve(Some(ref s))) if s.as_str() == "1234")
        );
        p.notice = Some("wrong".into());
        assert!(matches!(
            a.ask(&p, Duration::from_secs(1)),
            Err(UserError::Declined)
        ));
    }

    #[test]
    fn end_session_locks_the_vault() {
        let (_d, v) = vault();
        let mut auth = DaemonAuthenticator::new(
            v.clone(),
            Box::new(Scripted(vec![], vec![])),
            hybrid_ctap::DEFAULT_AAGUID,
            Duration::from_secs(1),
            3,
        );
        v.guard().unlock("1234", SystemTime::now()).unwrap();
        auth.end_session();
        assert!(!v.guard().is_unlocked());
        assert!(!auth.get_info_cbor().is_empty());
    }
}
