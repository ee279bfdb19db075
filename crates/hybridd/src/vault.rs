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

use std::time::{Instant, SystemTime, UNIX_EPOCH};

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
    EndSession(oneshot::Sender<()>),
    Count(oneshot::Sender<Result<u64, VaultError>>),
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
        let config = hybrid_ctap::Config {
            aaguid,
            ..hybrid_ctap::Config::default()
        };
        let auth = Authenticator::new(config, daemon_env(vault));
        let get_info = auth.get_info().to_cbor();
        let (jobs, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("hybridd-vault".into())
            .spawn(move || work(auth, rx))
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

    /// Forgets per-session CTAP state and locks the vault.
    pub async fn lock(&self) {
        let _ = self.call(Job::EndSession).await;
    }

    /// How many credentials the vault holds.
    pub async fn count(&self) -> Result<u64, Error> {
        Ok(self.call(Job::Count).await??)
    }
}

/// The worker thread: one job at a time, until every handle is gone.
fn work(mut auth: Authenticator<DaemonEnv>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = jobs.blocking_recv() {
        match job {
            Job::Process(request, ctx, tx) => {
                let _ = tx.send(auth.process(&request, &ctx));
            }
            Job::Resume(answer, tx) => {
                let _ = tx.send(auth.resume(answer));
            }
            Job::Unlock(pin, tx) => {
                let r = auth.env_mut().store.unlock(&pin, SystemTime::now());
                let _ = tx.send(r);
            }
            Job::EndSession(tx) => {
                auth.end_session();
                auth.env_mut().store.lock();
                let _ = tx.send(());
            }
            Job::Count(tx) => {
                let _ = tx.send(auth.env_mut().store.count());
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
