//! The vault session of `verify = "fingerprint"` (`docs/threat-model.md`,
//! "Vault session"): what opens it, what ends it.
//!
//! Opened by a correct PIN — `hybridd unlock` (over the control socket, the
//! PIN from the client's terminal or a PIN file, or through pinentry when
//! it sends none), or pinentry at the first request. The vault key then
//! stays in the vault's memory ([`crate::vault`]) until:
//!
//! * `hybridd lock` ([`VaultSessions::lock`]);
//! * `vault_session_idle_secs` without a request (checked before every
//!   use of the vault, and here on a timer so the key leaves memory on time);
//! * logind says the login session locks (`Session.Lock`, `LockedHint`)
//!   or the machine is about to suspend (`PrepareForSleep(true)`)
//!   ([`hybrid_desktop::LogindWatcher`]).
//!
//! The vault key and the metadata key derived from it sit in locked memory
//! that holds only such keys (hybrid-vault's key types over
//! `hybrid_secmem`'s pool page: `mlock`, `MADV_DONTDUMP`, wiped on lock);
//! if the locked-memory limit refuses the lock, hybrid-vault warns once and
//! the key is still wiped.
//! The daemon also makes itself non-dumpable ([`harden_process`]: no core
//! dump, no `ptrace` by other
//! processes of the user), and the threat model asks for encrypted swap.

use std::time::Duration;

use hybrid_desktop::{LogindEvent, LogindWatcher, SessionSelector};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::cmd::run::Daemon;
use crate::control::{Done, VaultSessions};
use crate::error::Error;
use crate::vault::VaultWorker;
use crate::BoxFuture;

/// How long finding logind and subscribing to it may take at start.
const LOGIND_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest the idle check sleeps.
const MAX_TICK: Duration = Duration::from_secs(30);

/// Makes the daemon non-dumpable (`PR_SET_DUMPABLE` 0): no core dump can
/// hold the vault key, and other processes of the same user cannot attach
/// with `ptrace` or read `/proc/PID/mem`.
pub fn harden_process() {
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::warn!(error = %e, "cannot make the daemon non-dumpable");
    }
}

/// Starts the task that ends the vault session on logind's lock and
/// suspend signals and after `idle`; logind is found and subscribed to
/// before this returns (so a lock right after the daemon answers counts).
pub async fn start_guard(
    vault: VaultWorker,
    idle: Duration,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let watcher = async {
        let deadline = Instant::now() + LOGIND_TIMEOUT;
        let conn = hybrid_desktop::system_bus(deadline).await?;
        LogindWatcher::start(&conn, &SessionSelector::Auto, deadline).await
    }
    .await;
    let watcher = match watcher {
        Ok(w) => {
            tracing::info!(session = %w.session_id(), "vault session: watching logind for lock and suspend");
            if w.locked_at_start() {
                vault.close_session().await;
            }
            Some(w)
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                "vault session: logind is not available, so the session is NOT dropped when the \
                 screen locks or the machine suspends — only by `hybridd lock` and after \
                 vault_session_idle_secs"
            );
            None
        }
    };
    tokio::spawn(guard(vault, idle, watcher, shutdown))
}

async fn guard(
    vault: VaultWorker,
    idle: Duration,
    mut watcher: Option<LogindWatcher>,
    mut shutdown: watch::Receiver<bool>,
) {
    let tick = idle.min(MAX_TICK);
    loop {
        let event = async {
            match &mut watcher {
                Some(w) => w.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            e = event => match e {
                Some(e) => {
                    let why = match e {
                        LogindEvent::SessionLocked => "the login session locked",
                        LogindEvent::PrepareForSleep => "the machine is suspending",
                    };
                    if vault.close_session().await {
                        tracing::info!(reason = why, "vault session ended");
                    }
                }
                None => {
                    tracing::warn!("vault session: lost logind; only lock and idle end the session now");
                    watcher = None;
                }
            },
            () = tokio::time::sleep(tick) => {
                // Ends an idle session (the worker logs it).
                let _ = vault.session_open().await;
            }
        }
    }
    vault.close_session().await;
}

/// What `hybridd unlock` sees.
fn done(ok: bool, outcome: &str, message: String) -> Done {
    Done {
        ok,
        outcome: outcome.to_owned(),
        message,
    }
}

impl VaultSessions for Daemon {
    fn unlock(&self, pin: Option<Zeroizing<String>>) -> BoxFuture<'_, Done> {
        Box::pin(async move {
            let pin = match pin {
                Some(p) => p,
                None => match self
                    .pinentry()
                    .pin("Unlock the hybridd vault for fingerprint sign-ins", None)
                    .await
                {
                    Ok(p) => p,
                    Err(e) => return done(false, "declined", format!("no PIN: {e}")),
                },
            };
            match self.vault().unlock(pin).await {
                Ok(()) => done(
                    true,
                    "unlocked",
                    format!(
                        "vault session open: fingerprints verify until `hybridd lock`, the screen \
                         locks, the machine suspends or {} s pass without a request",
                        self.config().vault_session_idle.as_secs()
                    ),
                ),
                Err(Error::Vault(e @ hybrid_vault::VaultError::WrongPin { .. })) => {
                    tracing::warn!("wrong PIN for hybridd unlock");
                    done(false, "wrong_pin", e.to_string())
                }
                Err(e) => done(false, "vault_error", e.to_string()),
            }
        })
    }

    fn lock(&self) -> BoxFuture<'_, Done> {
        Box::pin(async move {
            let was = self.vault().close_session().await;
            if was {
                tracing::info!(reason = "hybridd lock", "vault session ended");
            }
            done(
                true,
                "locked",
                if was {
                    "vault session closed".to_owned()
                } else {
                    "no vault session was open".to_owned()
                },
            )
        })
    }

    fn is_open(&self) -> BoxFuture<'_, bool> {
        Box::pin(self.vault().session_open())
    }
}
