//! The vault adapter: the daemon's CTAP environment ([`DaemonEnv`]: the
//! SQLite vault as credential store, the system clock, the OS RNG) and the
//! **vault worker** that owns it.
//!
//! The vault does two kinds of work. Almost all of it is short: a CTAP
//! request over SQLite, with at most one `fsync` (a credential insert, a
//! counter block, a counted PIN attempt) and one signature — well under a
//! millisecond of CPU. That runs in place, on the task that asks, with the
//! [`Authenticator`] and the session state behind one async mutex
//! ([`VaultWorker`], cheap to clone): `process`/`resume` a CTAP request,
//! `end_session` (forget CTAP state and lock the vault), and the two ends
//! of `verify_pin`. The daemon serves one session at a time, so the mutex
//! is not contended in a ceremony, and a wait for it never blocks the
//! runtime.
//!
//! The long part is the PIN's Argon2id key derivation (64 MiB, hundreds of
//! milliseconds). `verify_pin` counts the attempt on disk
//! ([`Vault::begin_unlock`]), hands the PIN with the vault's salt and
//! parameters to the **PIN thread**, which only derives the key
//! ([`PinAttempt::derive`]: no vault, no key), and checks the result
//! ([`Vault::finish_unlock`]). It holds the vault from the count to the
//! check, so nothing runs on the vault in between; a ceremony cancelled
//! during the derivation leaves the vault locked and the attempt counted.
//! The count's commit also carries the QR replay entries still waiting
//! for their file's `fdatasync` ([`VaultWorker::carry_replay`],
//! `crate::replay`). The count is written before the check and synced
//! before anything that follows the check leaves: a wrong PIN syncs it
//! before it is reported, and after a correct one the job that answers
//! syncs it — with its own synced commit (a new credential, a signature
//! counter) or on its own (`Owner::settle`). Then the replay file has
//! nothing left to sync, and a ceremony makes one synced commit, not two
//! (docs/performance.md, "Phone: eleventh round").
//!
//! Until 2026-12-04 every job went to one worker thread over a channel;
//! each of the three a ceremony awaited cost two thread wake-ups
//! (docs/performance.md, "Phone: ninth round"). The daemon and
//! `hybridd demo` run the same code. The CTAP core's step API means nothing
//! here waits for the user.
//!
//! **Vault session** (`verify = "fingerprint"`, `docs/threat-model.md`):
//! a vault started with [`VaultWorker::spawn_with_sessions`] keeps the
//! vault unlocked after a correct PIN — across ceremonies — so that a
//! fingerprint can stand for the PIN. The key stays inside the
//! [`Vault`] (zeroized on lock, never copied out); the session ends on
//! [`VaultWorker::close_session`] (`hybridd lock`, logind's lock and
//! suspend signals) and after `idle` without a request, checked on every
//! job and by [`VaultWorker::session_open`].

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hybrid_ctap::{Approval, Authenticator, Clock, EnvParts, RequestContext, Step, UserError};
use hybrid_vault::{DerivedPin, PinAttempt, Vault, VaultError};
use rand_core::OsRng;
use tokio::sync::{mpsc, oneshot, Mutex};
use zeroize::Zeroizing;

use crate::approval::Verifier;
use crate::ceremony::Authenticate;
use crate::error::Error;
use crate::replay::Undurable;
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

/// The vault session's state.
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

/// What owns the vault: the [`Authenticator`] over it and the vault
/// session's state. Behind one async mutex, used in place by the tasks
/// that ask; the PIN thread never touches it.
#[derive(Debug)]
struct Owner {
    auth: Authenticator<DaemonEnv>,
    sessions: Option<Sessions>,
    /// The QR replay entries not yet durable, committed with the next
    /// counted PIN attempt ([`VaultWorker::carry_replay`]; empty until
    /// then).
    replay: Undurable,
    /// Entries committed with a counted attempt that still waits for its
    /// sync ([`Vault::begin_unlock_noting`]): they leave `replay` once the
    /// vault has synced ([`Owner::settle`]).
    carrying: Vec<hybrid_vault::UsedQr>,
}

impl Owner {
    fn new(auth: Authenticator<DaemonEnv>, sessions: Option<Sessions>) -> Self {
        Owner {
            auth,
            sessions,
            replay: Undurable::default(),
            carrying: Vec::new(),
        }
    }

    /// Run before every job: an idle session ends before anything can use
    /// it (and the vault is locked). Whether a session is open at `now`.
    fn expire(&mut self, now: Instant) -> bool {
        match &mut self.sessions {
            Some(s) if s.until.is_some() => {
                let open = s.open_at(now);
                if !open {
                    self.auth.env_mut().store.lock();
                }
                open
            }
            _ => false,
        }
    }

    fn process(&mut self, request: &[u8], ctx: &RequestContext, now: Instant) -> Step {
        let open = self.expire(now);
        if let (true, Some(s)) = (open, &mut self.sessions) {
            s.until = Some(now + s.idle);
        }
        let step = self.auth.process(request, ctx);
        self.settle();
        step
    }

    fn resume(&mut self, answer: Result<Approval, UserError>, now: Instant) -> Step {
        self.expire(now);
        let step = self.auth.resume(answer);
        self.settle();
        step
    }

    /// Counts a PIN attempt, with the QR replay entries waiting in the same
    /// commit ([`Vault::begin_unlock_noting`]); both become durable with
    /// the vault's next sync ([`Owner::settle`]).
    fn begin_unlock(&mut self, pin: &str, now: Instant) -> Result<PinAttempt, VaultError> {
        self.expire(now);
        let waiting = self.replay.waiting();
        let attempt =
            self.auth
                .env_mut()
                .store
                .begin_unlock_noting(pin, SystemTime::now(), &waiting)?;
        self.carrying.extend(waiting);
        Ok(attempt)
    }

    /// Run after every job that can come before an answer (`process`,
    /// `resume`) and when a session ends: a PIN attempt counted without a
    /// sync is made durable now unless a synced commit of the job already
    /// carried it (the new credential, a signature counter;
    /// [`Vault::begin_unlock`]), so nothing that follows a PIN check
    /// leaves before its count is on disk. Then the QR entries committed
    /// with it are durable and wait no more. If the sync fails they stay
    /// waiting, and the replay file syncs them itself before the answer.
    fn settle(&mut self) {
        if let Err(e) = self.auth.env_mut().store.make_durable() {
            tracing::warn!(error = %e, "cannot sync the vault's counted PIN attempt");
        }
        self.note_carried();
    }

    /// The QR entries committed with a counted attempt wait no more once
    /// the vault has synced it.
    fn note_carried(&mut self) {
        if !self.carrying.is_empty() && !self.auth.env_mut().store.unsynced_attempt() {
            self.replay.carried(&self.carrying);
            self.carrying.clear();
        }
    }

    /// Checks the derived PIN and unlocks ([`Vault::finish_unlock`]); a
    /// correct PIN opens or extends the vault session.
    fn finish_unlock(&mut self, derived: DerivedPin, now: Instant) -> Result<(), VaultError> {
        let r = self.auth.env_mut().store.finish_unlock(derived);
        self.note_carried();
        if let (Ok(()), Some(s)) = (&r, &mut self.sessions) {
            if s.until.is_none() {
                tracing::info!(idle_secs = s.idle.as_secs(), "vault session opened");
            }
            s.until = Some(now + s.idle);
        }
        r
    }

    /// Forgets per-session CTAP state and locks (unless a vault session is open).
    fn end_session(&mut self, now: Instant) {
        let open = self.expire(now);
        self.settle();
        self.auth.end_session();
        if !open {
            self.auth.env_mut().store.lock();
        }
    }

    fn session_open(&mut self, now: Instant, at: Instant) -> bool {
        self.expire(now);
        let open = match &mut self.sessions {
            Some(s) => s.open_at(at),
            None => false,
        };
        if !open {
            self.auth.env_mut().store.lock();
        }
        open
    }

    fn close_session(&mut self, now: Instant) -> bool {
        self.expire(now);
        let was = self
            .sessions
            .as_mut()
            .and_then(|s| s.until.take())
            .is_some();
        self.auth.end_session();
        self.auth.env_mut().store.lock();
        was
    }
}

/// A PIN's key derivation for the PIN thread, and where its result goes.
struct Derive {
    attempt: PinAttempt,
    reply: oneshot::Sender<DerivedPin>,
}

/// The handle to the vault (cheap to clone). The PIN thread ends when the
/// last handle is dropped.
#[derive(Debug, Clone)]
pub struct VaultWorker {
    owner: Arc<Mutex<Owner>>,
    derivations: mpsc::UnboundedSender<Derive>,
    get_info: Vec<u8>,
}

impl VaultWorker {
    /// Owns `vault` and an authenticator with `aaguid` over it, and starts
    /// the PIN thread.
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
        let (derivations, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("hybridd-pin".into())
            .spawn(move || pin_thread(rx))
            .map_err(Error::Runtime)?;
        Ok(VaultWorker {
            owner: Arc::new(Mutex::new(Owner::new(auth, sessions))),
            derivations,
            get_info,
        })
    }

    /// Runs a short job on the vault in place (it waits, without blocking
    /// the runtime, while an unlock holds the vault).
    async fn with<T>(&self, job: impl FnOnce(&mut Owner, Instant) -> T) -> T {
        let mut owner = self.owner.lock().await;
        job(&mut owner, Instant::now())
    }

    /// Unlocks the vault with `pin` (user verification). The attempt is
    /// counted and the result checked here; only the key derivation runs
    /// on the PIN thread. The vault stays held from the count to the
    /// check, so nothing runs on it in between. If this future is dropped
    /// during the derivation (the ceremony was cancelled), the vault stays
    /// locked and the attempt stays counted as a failure, as when the
    /// daemon is killed during a check.
    pub async fn unlock(&self, pin: Zeroizing<String>) -> Result<(), Error> {
        let mut owner = self.owner.lock().await;
        let attempt = owner.begin_unlock(&pin, Instant::now())?;
        drop(pin);
        let (reply, derived) = oneshot::channel();
        self.derivations
            .send(Derive { attempt, reply })
            .map_err(|_| Error::VaultWorker)?;
        let derived = derived.await.map_err(|_| Error::VaultWorker)?;
        Ok(owner.finish_unlock(derived, Instant::now())?)
    }

    /// Commits the QR replay entries waiting in `undurable` with each
    /// counted PIN attempt from now on, so that the replay file need not
    /// sync them itself (`crate::replay`: one synced commit instead of
    /// two before a PIN-verified answer).
    pub async fn carry_replay(&self, undurable: Undurable) {
        self.with(|o, _| o.replay = undurable).await
    }

    /// Forgets per-session CTAP state and locks the vault (unless a vault
    /// session is open).
    pub async fn lock(&self) {
        self.with(|o, now| o.end_session(now)).await
    }

    /// How many credentials the vault holds.
    pub async fn count(&self) -> Result<u64, Error> {
        Ok(self
            .with(|o, now| {
                o.expire(now);
                o.auth.env_mut().store.count()
            })
            .await?)
    }

    /// Whether a vault session is open now (ending it if it sat idle too long).
    pub async fn session_open(&self) -> bool {
        self.session_open_at(Instant::now()).await
    }

    /// Whether a vault session is open at `at` (tests pass a later time).
    pub async fn session_open_at(&self, at: Instant) -> bool {
        self.with(|o, now| o.session_open(now, at)).await
    }

    /// Ends the vault session and locks the vault; `true` if one was open.
    pub async fn close_session(&self) -> bool {
        self.with(|o, now| o.close_session(now)).await
    }
}

/// The PIN thread: one key derivation at a time, until every handle is gone.
fn pin_thread(mut derivations: mpsc::UnboundedReceiver<Derive>) {
    // Seeds AWS-LC's generator (its jitter entropy, once per process) while
    // the daemon waits for a scan: the first signature would otherwise pay
    // for it while a desktop waits for the first answer after start.
    hybrid_ctap::crypto::warm_up();
    while let Some(Derive { attempt, reply }) = derivations.blocking_recv() {
        let _ = reply.send(attempt.derive());
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
        Box::pin(async move { Ok(self.with(|o, now| o.process(&request, &ctx, now)).await) })
    }

    fn resume(
        &mut self,
        answer: Result<Approval, UserError>,
    ) -> BoxFuture<'_, Result<Step, Error>> {
        Box::pin(async move { Ok(self.with(|o, now| o.resume(answer, now)).await) })
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

    fn alice() -> (RelyingParty, hybrid_ctap::types::UserEntity) {
        let rp = RelyingParty::new("example.com", "Example");
        let user = hybrid_ctap::types::UserEntity {
            id: vec![1],
            name: Some("alice".into()),
            display_name: None,
        };
        (rp, user)
    }

    /// A worker over a test vault whose PIN derivations go to `derivations`
    /// (the test plays the PIN thread, or drops it).
    fn worker_deriving_into(
        derivations: mpsc::UnboundedSender<Derive>,
    ) -> (tempfile::TempDir, VaultWorker) {
        let (d, v) = vault();
        let auth = Authenticator::new(hybrid_ctap::Config::default(), daemon_env(v));
        let w = VaultWorker {
            owner: Arc::new(Mutex::new(Owner::new(auth, None))),
            derivations,
            get_info: Vec::new(),
        };
        (d, w)
    }

    #[tokio::test]
    async fn the_worker_runs_ctap_over_the_vault_and_locks_it() {
        let (_d, v) = vault();
        let mut w = VaultWorker::spawn(v, hybrid_ctap::DEFAULT_AAGUID).unwrap();
        assert!(!w.get_info().is_empty());
        let (rp, user) = alice();
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
        let (rp, user) = alice();
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

    /// A worker over a test vault with a replay set beside it whose waiting
    /// entries the worker carries; the vault's path.
    async fn worker_with_replay() -> (
        tempfile::TempDir,
        std::path::PathBuf,
        VaultWorker,
        crate::replay::ReplaySet,
    ) {
        let (d, v) = vault();
        let path = v.path().to_owned();
        let file = path.parent().unwrap().join(crate::replay::FILE_NAME);
        let w = VaultWorker::spawn(v, hybrid_ctap::DEFAULT_AAGUID).unwrap();
        let set = crate::replay::ReplaySet::persistent(&file, 8).unwrap();
        w.carry_replay(set.undurable()).await;
        (d, path, w, set)
    }

    fn qr(n: u8) -> crate::replay::QrDigest {
        crate::replay::QrDigest::of_secret(&[n; 16])
    }

    /// The QR replay entries waiting for a sync ride in the counted PIN
    /// attempt's commit — a wrong PIN's too — so the replay file has
    /// nothing left to sync; a later start reads them back from the vault.
    #[tokio::test]
    async fn a_counted_pin_attempt_commits_the_waiting_replay_entries() {
        let (_d, path, mut w, mut set) = worker_with_replay().await;
        set.insert(qr(1), None, 0); // the first insert rewrites the file, synced
        set.insert(qr(2), None, 0); // appended, waiting
        assert!(set.is_unsynced());
        assert!(matches!(
            w.verify_pin(Zeroizing::new("9999".into())).await,
            Err(Error::Vault(VaultError::WrongPin { .. }))
        ));
        assert!(!set.is_unsynced(), "committed with the counted attempt");
        let committed = Vault::open(&path).unwrap().used_qrs().unwrap();
        assert_eq!(committed.len(), 1);
        // A start whose file lost the line gets it back from the vault.
        let mut fresh = crate::replay::ReplaySet::new(8);
        fresh.recover(&committed, 0);
        assert!(fresh.contains(&qr(2), 0));
        // Refused before it is counted (the retry delay): nothing carried,
        // the file syncs it itself.
        set.insert(qr(3), None, 0);
        assert!(w.verify_pin(Zeroizing::new("1234".into())).await.is_err());
        assert!(set.is_unsynced());
        set.sync();
        assert!(!set.is_unsynced());
        assert_eq!(Vault::open(&path).unwrap().used_qrs().unwrap(), committed);
    }

    /// After a correct PIN the replay entries are in the vault at once but
    /// wait until the job that follows has synced the count with them
    /// (here the session's end, which answers nothing): the replay file
    /// must not skip its own sync before then.
    #[tokio::test]
    async fn after_a_correct_pin_the_replay_entries_wait_for_the_next_sync() {
        let (_d, path, mut w, mut set) = worker_with_replay().await;
        set.insert(qr(1), None, 0);
        set.insert(qr(2), None, 0);
        w.verify_pin(Zeroizing::new("1234".into())).await.unwrap();
        assert_eq!(Vault::open(&path).unwrap().used_qrs().unwrap().len(), 1);
        assert!(set.is_unsynced(), "written, not yet synced");
        w.lock().await;
        assert!(
            !set.is_unsynced(),
            "synced with the count at the session's end"
        );
    }

    #[tokio::test]
    async fn a_dropped_pin_thread_is_an_error_not_a_hang() {
        let (derivations, rx) = mpsc::unbounded_channel();
        drop(rx);
        let (_d, mut w) = worker_deriving_into(derivations);
        assert!(matches!(
            w.verify_pin(Zeroizing::new("1234".into())).await,
            Err(Error::VaultWorker)
        ));
        // The short jobs run in place and still answer.
        assert_eq!(w.count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn an_abandoned_unlock_leaves_the_vault_locked_and_the_attempt_counted() {
        let (rp, user) = alice();
        // The test is the PIN thread: it takes the derivation and holds it.
        let (derivations, mut rx) = mpsc::unbounded_channel();
        let (_d, mut w) = worker_deriving_into(derivations);
        // The right PIN is counted and its derivation queued, then its
        // ceremony goes away (cancelled) before the answer.
        tokio::select! {
            biased;
            _ = w.unlock(Zeroizing::new("1234".into())) => panic!("no derivation was answered"),
            () = std::future::ready(()) => {}
        }
        let job = rx.try_recv().expect("the derivation was queued");
        // The derivation finishes after its ceremony is gone: nobody takes it.
        assert!(job.reply.send(job.attempt.derive()).is_err());
        w.end_session().await;
        // Counted: the next attempt must wait its delay.
        assert!(matches!(
            w.verify_pin(Zeroizing::new("1234".into())).await,
            Err(Error::Vault(VaultError::TooSoon { .. }))
        ));
        // And nothing unlocked the vault: a sign-up approved without a PIN
        // cannot store its credential.
        let mc = rp.make_credential_request([7; 32], user, true).to_frame();
        let _ = w.process(mc, RequestContext::default()).await.unwrap();
        let r = w.resume(VERIFIED).await.unwrap().reply().unwrap();
        assert!(!r.is_ok(), "the vault was left unlocked: {r:?}");
    }
}
