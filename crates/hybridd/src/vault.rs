//! The vault adapter: the daemon's CTAP environment ([`DaemonEnv`]: the
//! SQLite vault as credential store, the system clock, the OS RNG) and the
//! **vault worker** that owns it.
//!
//! The vault does blocking work — SQLite with `fsync` on every credential
//! and counter write, and the Argon2id key derivation of a PIN (64 MiB,
//! hundreds of milliseconds) — and its connection is not shareable across
//! threads. So one dedicated thread owns the vault and the
//! [`Authenticator`] over it, and the async ceremony talks to it over a
//! channel ([`VaultWorker`], cheap to clone): `process`/`resume` a CTAP
//! request, `verify_pin` (unlock), `end_session` (forget CTAP state and
//! lock the vault). No mutex, no blocking call on the async runtime, and
//! the CTAP core's step API means the worker never waits for the user.
//! The daemon and `hybridd demo` run the same worker.
//!
//! **Vault session** (`verify = "fingerprint"`, `docs/threat-model.md`):
//! a worker started with [`VaultWorker::spawn_with_sessions`] keeps the
//! vault unlocked after a correct PIN — across ceremonies — so that a
//! fingerprint can stand for the PIN. The key stays inside the worker's
//! [`Vault`] (zeroized on lock, never copied out); the session ends on
//! [`VaultWorker::close_session`] (`hybridd lock`, logind's lock and
//! suspend signals) and after `idle` without a request, checked on every
//! job and by [`VaultWorker::session_open`].

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hybrid_ctap::{Approval, Authenticator, Clock, EnvParts, RequestContext, Step, UserError};
use hybrid_vault::{Vault, VaultError};
use rand_core::OsRng;
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use crate::approval::Verifier;
use crate::ceremony::Authenticate;
use crate::error::Error;
use crate::BoxFuture;

/// Wall clock and a monotonic clock from the worker's start.
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

/// The daemon's (and the demo's) [`hybrid_ctap::Env`]: the vault, the
/// system clock and the OS RNG (the one environment struct,
/// [`EnvParts`], with the daemon's parts).
pub type DaemonEnv = EnvParts<Vault, SystemClock, OsRng>;

/// The daemon's environment over an opened vault.
pub fn daemon_env(vault: Vault) -> DaemonEnv {
    EnvParts {
        store: vault,
        clock: SystemClock::default(),
        rng: OsRng,
        user: (),
    }
}

/// A job for the worker, with where its answer goes.
enum Job {
    Process(Vec<u8>, RequestContext, oneshot::Sender<Step>),
    Resume(Result<Approval, UserError>, oneshot::Sender<Step>),
    Unlock(Zeroizing<String>, oneshot::Sender<Result<(), VaultError>>),
    /// Forget per-session CTAP state and lock (unless a vault session is
    /// open). Nobody waits for it: the queue is FIFO, so every later job
    /// sees its effect.
    EndSession,
    Count(oneshot::Sender<Result<u64, VaultError>>),
    /// Is the vault session open at this time? (Expires it when idle.)
    SessionOpen(Instant, oneshot::Sender<bool>),
    /// Ends the vault session; answers whether one was open.
    CloseSession(oneshot::Sender<bool>),
}

/// The vault session's state in the worker.
#[derive(Debug, Clone, Copy)]
struct Sessions {
    /// How long an unused session lives.
    idle: Duration,
    /// When the open session expires; `None`: no session.
    until: Option<Instant>,
}

impl Sessions {
    /// Whether a session is open at `now`; an expired one is ended (the
    /// caller locks the vault).
    fn open_at(&mut self, now: Instant) -> bool {
        match self.until {
            Some(t) if now < t => true,
            Some(_) => {
                self.until = None;
                tracing::info!("vault session ended: idle timeout");
                false
            }
            None => false,
        }
    }
}

/// The handle to the vault worker thread. The thread ends when the last
/// handle is dropped.
#[derive(Debug, Clone)]
pub struct VaultWorker {
    jobs: mpsc::UnboundedSender<Job>,
    get_info: Vec<u8>,
}

impl VaultWorker {
    /// Starts the worker thread owning `vault` and an authenticator with
    /// `aaguid` over it.
    pub fn spawn(vault: Vault, aaguid: [u8; 16]) -> Result<VaultWorker, Error> {
        Self::spawn_inner(vault, aaguid, None)
    }

    /// [`VaultWorker::spawn`] with vault sessions: a correct PIN keeps the
    /// vault unlocked until [`VaultWorker::close_session`] or `idle`
    /// without a request.
    pub fn spawn_with_sessions(
        vault: Vault,
        aaguid: [u8; 16],
        idle: Duration,
    ) -> Result<VaultWorker, Error> {
        Self::spawn_inner(vault, aaguid, Some(idle))
    }

    fn spawn_inner(
        vault: Vault,
        aaguid: [u8; 16],
        idle: Option<Duration>,
    ) -> Result<VaultWorker, Error> {
        let sessions = idle.map(|idle| Sessions { idle, until: None });
        let config = hybrid_ctap::Config {
            aaguid,
            ..hybrid_ctap::Config::default()
        };
        let auth = Authenticator::new(config, daemon_env(vault));
        let get_info = auth.get_info().to_cbor();
        let (jobs, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("hybridd-vault".into())
            .spawn(move || work(auth, sessions, rx))
            .map_err(Error::Runtime)?;
        Ok(VaultWorker { jobs, get_info })
    }

    async fn call<T>(&self, job: impl FnOnce(oneshot::Sender<T>) -> Job) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(job(tx)).map_err(|_| Error::VaultWorker)?;
        rx.await.map_err(|_| Error::VaultWorker)
    }

    /// Unlocks the vault with `pin` (user verification).
    pub async fn unlock(&self, pin: Zeroizing<String>) -> Result<(), Error> {
        Ok(self.call(move |tx| Job::Unlock(pin, tx)).await??)
    }

    /// Forgets per-session CTAP state and locks the vault. Returns once the
    /// job is queued, without waiting for the worker: jobs run in order, so
    /// any later request, unlock or count already finds the vault locked,
    /// and the ceremony's end is not held up by a wake-up of this thread
    /// (one of the vault hand-offs in docs/performance.md, "Phone").
    pub async fn lock(&self) {
        let _ = self.jobs.send(Job::EndSession);
    }

    /// How many credentials the vault holds.
    pub async fn count(&self) -> Result<u64, Error> {
        Ok(self.call(Job::Count).await??)
    }

    /// Whether a vault session is open now (ending it if it sat idle too long).
    pub async fn session_open(&self) -> bool {
        self.session_open_at(Instant::now()).await
    }

    /// Whether a vault session is open at `now` (tests pass a later time).
    pub async fn session_open_at(&self, now: Instant) -> bool {
        self.call(|tx| Job::SessionOpen(now, tx))
            .await
            .unwrap_or(false)
    }

    /// Ends the vault session and locks the vault; `true` if one was open.
    pub async fn close_session(&self) -> bool {
        self.call(Job::CloseSession).await.unwrap_or(false)
    }
}

/// The worker thread: one job at a time, until every handle is gone.
fn work(
    mut auth: Authenticator<DaemonEnv>,
    mut sessions: Option<Sessions>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) {
    // The first signature would otherwise seed AWS-LC's generator while a
    // desktop waits for the first answer after start.
    hybrid_ctap::crypto::warm_up();
    while let Some(job) = jobs.blocking_recv() {
        // An idle session ends before anything can use it.
        let now = Instant::now();
        let open = match &mut sessions {
            Some(s) if s.until.is_some() => {
                let open = s.open_at(now);
                if !open {
                    auth.env_mut().store.lock();
                }
                open
            }
            _ => false,
        };
        match job {
            Job::Process(request, ctx, tx) => {
                if let (true, Some(s)) = (open, &mut sessions) {
                    s.until = Some(now + s.idle);
                }
                let _ = tx.send(auth.process(&request, &ctx));
            }
            Job::Resume(answer, tx) => {
                let _ = tx.send(auth.resume(answer));
            }
            Job::Unlock(pin, tx) => {
                let r = auth.env_mut().store.unlock(&pin, SystemTime::now());
                if let (Ok(()), Some(s)) = (&r, &mut sessions) {
                    if s.until.is_none() {
                        tracing::info!(idle_secs = s.idle.as_secs(), "vault session opened");
                    }
                    s.until = Some(now + s.idle);
                }
                let _ = tx.send(r);
            }
            Job::EndSession => {
                auth.end_session();
                if !open {
                    auth.env_mut().store.lock();
                }
            }
            Job::Count(tx) => {
                let _ = tx.send(auth.env_mut().store.count());
            }
            Job::SessionOpen(at, tx) => {
                let open = match &mut sessions {
                    Some(s) => s.open_at(at),
                    None => false,
                };
                if !open {
                    auth.env_mut().store.lock();
                }
                let _ = tx.send(open);
            }
            Job::CloseSession(tx) => {
                let was = sessions.as_mut().and_then(|s| s.until.take()).is_some();
                auth.end_session();
                auth.env_mut().store.lock();
                let _ = tx.send(was);
            }
        }
    }
}

impl Authenticate for VaultWorker {
    fn get_info(&self) -> Vec<u8> {
        self.get_info.clone()
    }

    fn process(
        &mut self,
        request: Vec<u8>,
        ctx: RequestContext,
    ) -> BoxFuture<'_, Result<Step, Error>> {
        Box::pin(self.call(move |tx| Job::Process(request, ctx, tx)))
    }

    fn resume(
        &mut self,
        answer: Result<Approval, UserError>,
    ) -> BoxFuture<'_, Result<Step, Error>> {
        Box::pin(self.call(move |tx| Job::Resume(answer, tx)))
    }

    fn end_session(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(self.lock())
    }
}

impl Verifier for VaultWorker {
    fn verify_pin(&mut self, pin: Zeroizing<String>) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.unlock(pin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hybrid_initiator::RelyingParty;
    use hybrid_vault::KdfParams;

    fn vault() -> (tempfile::TempDir, Vault) {
        let dir = tempfile::tempdir().unwrap();
        let mut v = Vault::create(
            dir.path().join("private").join("v.db"),
            "1234",
            KdfParams::INSECURE_FOR_TESTS,
        )
        .unwrap();
        v.lock();
        (dir, v)
    }

    const VERIFIED: Result<Approval, UserError> = Ok(Approval {
        user_present: true,
        user_verified: true,
    });

    #[tokio::test]
    async fn the_worker_runs_ctap_over_the_vault_and_locks_it() {
        let (_d, v) = vault();
        let mut w = VaultWorker::spawn(v, hybrid_ctap::DEFAULT_AAGUID).unwrap();
        assert!(!w.get_info().is_empty());
        let rp = RelyingParty::new("example.com", "Example");
        let user = hybrid_ctap::types::UserEntity {
            id: vec![1],
            name: Some("alice".into()),
            display_name: None,
        };
        let req = rp.make_credential_request([7; 32], user, true).to_frame();
        let Step::NeedsUser(q) = w.process(req, RequestContext::default()).await.unwrap() else {
            panic!("makeCredential asks the user");
        };
        assert_eq!(q.rp_id, "example.com");
        // The PIN unlocks the vault (user verification), then the request goes on.
        w.verify_pin(Zeroizing::new("1234".into())).await.unwrap();
        let reply = w.resume(VERIFIED).await.unwrap().reply().unwrap();
        assert!(reply.is_ok(), "{reply:?}");
        assert_eq!(w.count().await.unwrap(), 1);
        // The session ends: CTAP state forgotten, vault locked — a sign-in
        // approved without a PIN now cannot sign.
        w.end_session().await;
        let ga = rp.get_assertion_request([8; 32], &[]).to_frame();
        let _ = w.process(ga, RequestContext::default()).await.unwrap();
        let r = w.resume(VERIFIED).await.unwrap().reply().unwrap();
        assert_eq!(r.status, hybrid_ctap::Ctap2Status::OperationDenied);
        assert!(matches!(
            w.verify_pin(Zeroizing::new("9999".into())).await,
            Err(Error::Vault(VaultError::WrongPin { .. }))
        ));
    }

    #[tokio::test]
    async fn a_vault_session_outlives_the_ceremony_until_closed_or_idle() {
        let rp = RelyingParty::new("example.com", "Example");
        let user = hybrid_ctap::types::UserEntity {
            id: vec![1],
            name: Some("alice".into()),
            display_name: None,
        };
        let (_d, v) = vault();
        let idle = Duration::from_secs(60);
        let mut w = VaultWorker::spawn_with_sessions(v, hybrid_ctap::DEFAULT_AAGUID, idle).unwrap();
        assert!(!w.session_open().await);
        w.verify_pin(Zeroizing::new("1234".into())).await.unwrap();
        assert!(w.session_open().await);
        // A ceremony ends: the vault stays unlocked, a verified approval signs.
        w.end_session().await;
        let mc = rp.make_credential_request([7; 32], user, true).to_frame();
        let _ = w.process(mc, RequestContext::default()).await.unwrap();
        assert!(w.resume(VERIFIED).await.unwrap().reply().unwrap().is_ok());
        w.end_session().await;
        // Past the idle time the session is gone and the vault locked.
        assert!(!w.session_open_at(Instant::now() + idle * 2).await);
        let ga = rp.get_assertion_request([8; 32], &[]).to_frame();
        let _ = w
            .process(ga.clone(), RequestContext::default())
            .await
            .unwrap();
        let r = w.resume(VERIFIED).await.unwrap().reply().unwrap();
        assert_eq!(r.status, hybrid_ctap::Ctap2Status::OperationDenied);
        w.end_session().await;
        // Opened again, then closed (`hybridd lock`, logind).
        w.verify_pin(Zeroizing::new("1234".into())).await.unwrap();
        assert!(w.close_session().await);
        assert!(!w.close_session().await);
        assert!(!w.session_open().await);
        let _ = w.process(ga, RequestContext::default()).await.unwrap();
        let r = w.resume(VERIFIED).await.unwrap().reply().unwrap();
        assert_eq!(r.status, hybrid_ctap::Ctap2Status::OperationDenied);
    }

    #[tokio::test]
    async fn a_dropped_worker_is_an_error_not_a_hang() {
        let (jobs, rx) = mpsc::unbounded_channel();
        drop(rx);
        let mut w = VaultWorker {
            jobs,
            get_info: Vec::new(),
        };
        assert!(matches!(
            w.process(vec![4], RequestContext::default()).await,
            Err(Error::VaultWorker)
        ));
    }
}
