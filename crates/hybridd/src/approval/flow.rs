//! The approval flow: consent through a front-end, then verification by
//! PIN through a [`Verifier`], with the wrong-PIN policy as a pure function.
//!
//! Nothing here sleeps a thread or reads a clock it was not given: the
//! vault computes the back-off delay after a wrong PIN (1 s, 2 s, 4 s, …,
//! `hybrid_vault`), [`after_refusal`] turns it into "ask again from time
//! T" or "give up", and the flow waits for T with a tokio timer that the
//! session's approval deadline cancels.

use std::time::Instant;

use hybrid_ctap::{Approval, ApprovalRequest, UserError};
use hybrid_vault::VaultError;
use zeroize::Zeroizing;

use crate::approval::desktop::{Verification, Verified};
use crate::approval::{needs_verification, Answer, Approver, User};
use crate::error::Error;
use crate::prompt::{Action, Notice, Prompt};
use crate::BoxFuture;

/// Checks a PIN: the vault unlocks with it (user verification).
pub trait Verifier: Send {
    /// Verifies `pin`; the vault stays unlocked until the session ends.
    fn verify_pin(&mut self, pin: Zeroizing<String>) -> BoxFuture<'_, Result<(), Error>>;
}

/// What to do after the vault refused a PIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterRefusal {
    /// Ask again, not before `at` (the vault's back-off), saying `notice`.
    RetryAt {
        /// When the vault accepts the next attempt.
        at: Instant,
        /// Shown with the next prompt.
        notice: Notice,
    },
    /// Decline the request and tell the person `notice`.
    GiveUp(Notice),
}

/// The wrong-PIN policy: a pure function of the wrong PINs given for this
/// approval so far (`wrong`, counting this one when the PIN was wrong), the
/// most allowed per approval (`max_attempts`, config `pin_attempts`), the
/// vault's refusal and the time.
///
/// * wrong PIN → ask again after the vault's delay, unless this approval
///   used up its attempts or the vault has none left → declined;
/// * too soon after an earlier wrong PIN (another session's) → ask again
///   when the vault allows, not counted;
/// * anything else (locked for good, a PIN the policy refuses, IO) →
///   declined: nothing the person can fix by retrying.
pub fn after_refusal(wrong: u32, max_attempts: u32, refusal: &Error, now: Instant) -> AfterRefusal {
    match refusal {
        Error::Vault(VaultError::WrongPin {
            retries_left,
            retry_after,
        }) => {
            let retrying = wrong < max_attempts && *retries_left > 0;
            let notice = Notice::WrongPin {
                retries_left: *retries_left,
                retrying,
            };
            if retrying {
                AfterRefusal::RetryAt {
                    at: now + *retry_after,
                    notice,
                }
            } else {
                AfterRefusal::GiveUp(notice)
            }
        }
        Error::Vault(VaultError::TooSoon { retry_after }) => AfterRefusal::RetryAt {
            at: now + *retry_after,
            notice: Notice::TooSoon,
        },
        other => AfterRefusal::GiveUp(Notice::CannotUnlock(other.to_string())),
    }
}

/// The daemon's [`User`]: a front-end for consent and the PIN, a verifier
/// for the PIN, and how many wrong PINs one approval may take.
pub struct Approvals<V> {
    front_end: Box<dyn Approver>,
    verifier: V,
    pin_attempts: u32,
    /// Verification after a consent without a PIN (pinentry, fingerprint).
    verification: Option<Box<dyn Verification>>,
}

impl<V> std::fmt::Debug for Approvals<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("pin_attempts", &self.pin_attempts)
            .finish_non_exhaustive()
    }
}

impl<V: Verifier> Approvals<V> {
    /// Approvals through `front_end`, PINs checked by `verifier`, at most
    /// `pin_attempts` wrong PINs per approval (at least 1).
    pub fn new(front_end: Box<dyn Approver>, verifier: V, pin_attempts: u32) -> Self {
        Approvals {
            front_end,
            verifier,
            pin_attempts: pin_attempts.max(1),
            verification: None,
        }
    }

    /// Verifies through `verification` once the front-end consented (the
    /// front-end is then not asked for the PIN, and a wrong PIN asks
    /// `verification` again, not the front-end).
    pub fn with_verification(mut self, verification: Option<Box<dyn Verification>>) -> Self {
        self.verification = verification;
        self
    }

    async fn flow(&mut self, request: &ApprovalRequest) -> Result<Approval, UserError> {
        // An excludeList hit on a credProtect level-3 credential asks for
        // verification too (`uv_required`): without it the hit does not
        // count (CTAP 2.1 §6.1.2 step 12.1.1).
        let needs_pin = needs_verification(request.command) || request.uv_required;
        let mut prompt = Prompt::new(request, needs_pin && self.verification.is_none());
        let mut wrong = 0u32;
        let mut consented = false;
        loop {
            // Consent (and, from front-ends that ask both at once, the PIN);
            // asked once when a verification follows.
            let pin = if consented && self.verification.is_some() {
                None
            } else {
                match self.front_end.ask(&prompt).await? {
                    Answer::Decline => return Err(UserError::Declined),
                    Answer::Approve(pin) => pin,
                }
            };
            consented = true;
            if !needs_pin {
                return Ok(Approval {
                    user_present: true,
                    user_verified: false,
                });
            }
            let pin = match (pin, &mut self.verification) {
                (Some(pin), _) => pin,
                (None, Some(v)) => match v.verify(&prompt).await? {
                    Verified::Pin(pin) => pin,
                    Verified::Fingerprint => {
                        return Ok(Approval {
                            user_present: true,
                            user_verified: true,
                        })
                    }
                },
                (None, None) => {
                    prompt.notice = Some(Notice::PinRequired.to_string());
                    continue;
                }
            };
            // Verification.
            let refusal = match self.verifier.verify_pin(pin).await {
                Ok(()) => {
                    return Ok(Approval {
                        user_present: true,
                        user_verified: true,
                    })
                }
                Err(e) => e,
            };
            let wrong_pin = matches!(refusal, Error::Vault(VaultError::WrongPin { .. }));
            if wrong_pin {
                wrong += 1;
                tracing::warn!("wrong PIN");
            }
            let now = tokio::time::Instant::now().into_std();
            match after_refusal(wrong, self.pin_attempts, &refusal, now) {
                AfterRefusal::RetryAt { at, notice } => {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                    prompt.notice = Some(notice.to_string());
                }
                AfterRefusal::GiveUp(notice) => {
                    if !wrong_pin {
                        tracing::error!(error = %refusal, "vault unlock failed");
                    }
                    self.front_end.notify(&notice).await;
                    return Err(UserError::Declined);
                }
            }
        }
    }
}

impl<V: Verifier> User for Approvals<V> {
    fn approve<'a>(
        &'a mut self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<Approval, UserError>> {
        Box::pin(async move {
            let r = self.flow(request).await;
            if let Err(e) = &r {
                let action = Action::of(request.command);
                tracing::info!(outcome = %e, %action, "approval not given");
            }
            r
        })
    }

    fn timed_out(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            tracing::info!(outcome = %UserError::Timeout, "approval not given");
            self.front_end.notify(&Notice::NoAnswerInTime).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use hybrid_ctap::Command;

    use super::*;

    /// A front-end answering from a script; records prompts and notices.
    #[derive(Clone, Default)]
    struct Scripted {
        answers: Arc<Mutex<VecDeque<Result<Answer, UserError>>>>,
        prompts: Arc<Mutex<Vec<Prompt>>>,
        notices: Arc<Mutex<Vec<Notice>>>,
    }

    impl Approver for Scripted {
        fn ask<'a>(&'a mut self, prompt: &'a Prompt) -> BoxFuture<'a, Result<Answer, UserError>> {
            self.prompts.lock().unwrap().push(prompt.clone());
            let next = self.answers.lock().unwrap().pop_front();
            Box::pin(async move {
                match next {
                    Some(a) => a,
                    // No more answers: wait forever (the deadline's job).
                    None => std::future::pending().await,
                }
            })
        }
        fn notify<'a>(&'a mut self, notice: &'a Notice) -> BoxFuture<'a, ()> {
            self.notices.lock().unwrap().push(notice.clone());
            Box::pin(std::future::ready(()))
        }
    }

    /// A vault stand-in: refuses PINs other than "1234" the way the vault
    /// does (1 s, 2 s, … back-off), counting attempts.
    struct FakeVault {
        failures: u32,
        attempts: Arc<Mutex<Vec<Instant>>>,
        locked_for_good: bool,
    }

    impl Verifier for FakeVault {
        fn verify_pin(&mut self, pin: Zeroizing<String>) -> BoxFuture<'_, Result<(), Error>> {
            self.attempts
                .lock()
                .unwrap()
                .push(tokio::time::Instant::now().into_std());
            let r = if self.locked_for_good {
                Err(VaultError::Locked(8).into())
            } else if pin.as_str() == "1234" {
                self.failures = 0;
                Ok(())
            } else {
                self.failures += 1;
                Err(VaultError::WrongPin {
                    retries_left: 8 - self.failures,
                    retry_after: hybrid_vault::delay_after(self.failures),
                }
                .into())
            };
            Box::pin(std::future::ready(r))
        }
    }

    fn req(command: Command) -> ApprovalRequest {
        crate::prompt::sample_request(command)
    }

    fn pin(p: &str) -> Result<Answer, UserError> {
        Ok(Answer::Approve(Some(Zeroizing::new(p.to_owned()))))
    }

    fn setup(
        answers: Vec<Result<Answer, UserError>>,
        attempts: u32,
    ) -> (Approvals<FakeVault>, Scripted, Arc<Mutex<Vec<Instant>>>) {
        let fe = Scripted::default();
        fe.answers.lock().unwrap().extend(answers);
        let tried = Arc::new(Mutex::new(Vec::new()));
        let vault = FakeVault {
            failures: 0,
            attempts: tried.clone(),
            locked_for_good: false,
        };
        (
            Approvals::new(Box::new(fe.clone()), vault, attempts),
            fe,
            tried,
        )
    }

    #[test]
    fn refusal_policy_is_a_function_of_attempts_and_time() {
        let now = Instant::now();
        let wrong = |left| {
            Error::Vault(VaultError::WrongPin {
                retries_left: left,
                retry_after: Duration::from_secs(2),
            })
        };
        assert_eq!(
            after_refusal(1, 3, &wrong(6), now),
            AfterRefusal::RetryAt {
                at: now + Duration::from_secs(2),
                notice: Notice::WrongPin {
                    retries_left: 6,
                    retrying: true
                }
            }
        );
        assert_eq!(
            after_refusal(3, 3, &wrong(6), now),
            AfterRefusal::GiveUp(Notice::WrongPin {
                retries_left: 6,
                retrying: false
            })
        );
        assert!(matches!(
            after_refusal(1, 3, &wrong(0), now),
            AfterRefusal::GiveUp(_)
        ));
        let soon = Error::Vault(VaultError::TooSoon {
            retry_after: Duration::from_millis(1500),
        });
        assert_eq!(
            after_refusal(0, 3, &soon, now),
            AfterRefusal::RetryAt {
                at: now + Duration::from_millis(1500),
                notice: Notice::TooSoon
            }
        );
        assert!(matches!(
            after_refusal(0, 3, &VaultError::Locked(8).into(), now),
            AfterRefusal::GiveUp(Notice::CannotUnlock(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn right_pin_verifies() {
        let (mut a, fe, _) = setup(vec![pin("1234")], 3);
        let r = a.approve(&req(Command::GetAssertion)).await.unwrap();
        assert!(r.user_present && r.user_verified);
        let prompts = fe.prompts.lock().unwrap();
        assert!(prompts[0].needs_pin && prompts[0].notice.is_none());
    }

    /// The second prompt comes only after the vault's back-off — waited
    /// for on tokio's paused clock, never by sleeping a thread.
    #[tokio::test(start_paused = true)]
    async fn wrong_then_right_pin_waits_out_the_back_off() {
        let (mut a, fe, tried) = setup(vec![pin("9999"), pin("1234")], 3);
        let r = a.approve(&req(Command::MakeCredential)).await.unwrap();
        assert!(r.user_verified);
        let tried = tried.lock().unwrap();
        assert_eq!(tried.len(), 2);
        assert!(tried[1] - tried[0] >= Duration::from_secs(1));
        let prompts = fe.prompts.lock().unwrap();
        let notice = prompts[1].notice.as_deref().unwrap();
        assert!(notice.contains("wrong PIN: 7 attempt(s) left") && notice.ends_with("try again"));
    }

    #[tokio::test(start_paused = true)]
    async fn too_many_wrong_pins_is_declined_with_a_notice() {
        let (mut a, fe, _) = setup(vec![pin("9999")], 1);
        assert_eq!(
            a.approve(&req(Command::MakeCredential)).await,
            Err(UserError::Declined)
        );
        let notices = fe.notices.lock().unwrap();
        assert!(notices[0].to_string().ends_with("request declined"));
    }

    #[tokio::test(start_paused = true)]
    async fn decline_missing_pin_presence_and_cancel() {
        let (mut a, _, _) = setup(vec![Ok(Answer::Decline)], 3);
        assert_eq!(
            a.approve(&req(Command::GetAssertion)).await,
            Err(UserError::Declined)
        );
        // An approval without the PIN it needs is asked again.
        let (mut a, fe, _) = setup(vec![Ok(Answer::Approve(None)), pin("1234")], 3);
        assert!(a.approve(&req(Command::GetAssertion)).await.is_ok());
        assert_eq!(
            fe.prompts.lock().unwrap()[1].notice.as_deref(),
            Some("a PIN is required")
        );
        // A presence-only touch needs no PIN and does not verify.
        let (mut a, fe, tried) = setup(vec![Ok(Answer::Approve(None))], 3);
        let r = a.approve(&req(Command::ExcludedCredential)).await.unwrap();
        assert!(r.user_present && !r.user_verified);
        assert!(!fe.prompts.lock().unwrap()[0].needs_pin);
        assert!(tried.lock().unwrap().is_empty());
        let (mut a, _, _) = setup(vec![Err(UserError::Cancelled)], 3);
        assert_eq!(
            a.approve(&req(Command::GetAssertion)).await,
            Err(UserError::Cancelled)
        );
    }

    /// Issue 16: the excludeList prompt for a credProtect level-3 hit
    /// (`uv_required`) collects the PIN and verifies it, so the CTAP core
    /// answers CREDENTIAL_EXCLUDED instead of going on to create a duplicate.
    #[tokio::test(start_paused = true)]
    async fn cred_protect3_exclude_prompt_collects_uv() {
        let mut request = req(Command::ExcludedCredential);
        request.uv_required = true;
        let (mut a, fe, tried) = setup(vec![Ok(Answer::Approve(None)), pin("1234")], 3);
        let r = a.approve(&request).await.unwrap();
        assert!(r.user_present && r.user_verified);
        let prompts = fe.prompts.lock().unwrap();
        assert!(prompts[0].needs_pin);
        assert_eq!(prompts[1].notice.as_deref(), Some("a PIN is required"));
        assert_eq!(tried.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_vault_locked_for_good_declines_at_once() {
        let (mut a, fe, _) = setup(vec![pin("1234")], 3);
        a.verifier.locked_for_good = true;
        assert_eq!(
            a.approve(&req(Command::GetAssertion)).await,
            Err(UserError::Declined)
        );
        assert!(matches!(
            fe.notices.lock().unwrap()[0],
            Notice::CannotUnlock(_)
        ));
    }

    /// A verification answering from a script, counting its calls.
    struct ScriptedVerification {
        answers: VecDeque<Result<Verified, UserError>>,
        asked: Arc<Mutex<Vec<Option<String>>>>,
    }

    impl Verification for ScriptedVerification {
        fn verify<'a>(
            &'a mut self,
            prompt: &'a Prompt,
        ) -> BoxFuture<'a, Result<Verified, UserError>> {
            self.asked.lock().unwrap().push(prompt.notice.clone());
            let next = self.answers.pop_front().unwrap_or(Err(UserError::Declined));
            Box::pin(std::future::ready(next))
        }
    }

    type Asked = Arc<Mutex<Vec<Option<String>>>>;

    fn with_verification(
        answers: Vec<Result<Verified, UserError>>,
    ) -> (
        Approvals<FakeVault>,
        Scripted,
        Asked,
        Arc<Mutex<Vec<Instant>>>,
    ) {
        let (a, fe, tried) = setup(vec![Ok(Answer::Approve(None))], 3);
        let asked = Arc::new(Mutex::new(Vec::new()));
        let v = ScriptedVerification {
            answers: answers.into(),
            asked: asked.clone(),
        };
        (a.with_verification(Some(Box::new(v))), fe, asked, tried)
    }

    #[tokio::test(start_paused = true)]
    async fn consent_once_then_the_verification_retries_a_wrong_pin() {
        let p = |s: &str| Ok(Verified::Pin(Zeroizing::new(s.to_owned())));
        let (mut a, fe, asked, tried) = with_verification(vec![p("9999"), p("1234")]);
        let r = a.approve(&req(Command::MakeCredential)).await.unwrap();
        assert!(r.user_verified);
        // The notification (front-end) asked once, without a PIN field.
        let prompts = fe.prompts.lock().unwrap();
        assert_eq!(prompts.len(), 1);
        assert!(!prompts[0].needs_pin);
        let asked = asked.lock().unwrap();
        assert_eq!(asked.len(), 2);
        assert!(asked[1].as_deref().unwrap().contains("wrong PIN"));
        assert_eq!(tried.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fingerprint_verifies_without_a_pin_and_a_refusal_declines() {
        let (mut a, _, _, tried) = with_verification(vec![Ok(Verified::Fingerprint)]);
        let r = a.approve(&req(Command::GetAssertion)).await.unwrap();
        assert!(r.user_present && r.user_verified);
        assert!(tried.lock().unwrap().is_empty(), "no PIN was checked");
        let (mut a, _, _, _) = with_verification(vec![Err(UserError::Declined)]);
        assert_eq!(
            a.approve(&req(Command::GetAssertion)).await,
            Err(UserError::Declined)
        );
        // A presence-only touch needs no verification.
        let (mut a, _, asked, _) = with_verification(vec![]);
        let r = a.approve(&req(Command::ExcludedCredential)).await.unwrap();
        assert!(!r.user_verified && asked.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn timed_out_tells_the_person() {
        let (mut a, fe, _) = setup(vec![], 3);
        a.timed_out().await;
        assert_eq!(fe.notices.lock().unwrap()[0], Notice::NoAnswerInTime);
    }
}
