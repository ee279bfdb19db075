//! The [`Vault`]: lifecycle (create, open, unlock, lock, change PIN) and
//! credential management (list, delete, count, capacity).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use zeroize::Zeroizing;

use crate::error::VaultError;
use crate::fsperm;
use crate::pin::{self, KdfParams, MAX_PIN_FAILURES, SALT_LEN};
use crate::schema;
use crate::seal::{self, SecretKey, AAD_VAULT_KEY, KEY_LEN};

/// Default maximum number of credentials in a vault.
pub const DEFAULT_CAPACITY: u64 = 100_000;

/// How long to wait for another process holding the vault's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The state of the wrong-PIN counter, readable while locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PinStatus {
    /// Wrong PINs in a row so far.
    pub failures: u32,
    /// Attempts left before the vault locks for good (0 = locked).
    pub retries_left: u32,
    /// No attempt is accepted before this time.
    pub next_attempt_at: SystemTime,
}

/// A PIN-protected credential vault backed by one SQLite file.
///
/// Metadata can be read at any time; sealing or opening credential secrets
/// needs the vault key, available between [`Vault::unlock`] and
/// [`Vault::lock`] (or drop).
pub struct Vault {
    pub(crate) conn: Connection,
    path: PathBuf,
    pub(crate) key: Option<SecretKey>,
    pub(crate) capacity: u64,
}

impl core::fmt::Debug for Vault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("unlocked", &self.key.is_some())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// The PIN-related columns of `vault_meta`.
struct PinRecord {
    salt: Vec<u8>,
    params: KdfParams,
    sealed_key: Vec<u8>,
    failures: u32,
    next_attempt_ms: u64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn delay_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Removes a half-made vault file (and its journal) unless disarmed.
struct TempFileGuard(Option<PathBuf>);

impl Drop for TempFileGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(&p);
            for side in fsperm::side_files(&p) {
                let _ = std::fs::remove_file(side);
            }
        }
    }
}

impl Vault {
    /// Creates a new vault at `path` protected by `pin`, and returns it
    /// unlocked. The directory is created 0700 if missing (and refused if
    /// others can access it); an existing file is never overwritten.
    ///
    /// The file is built under a temporary name and linked into place only
    /// when complete, so a crash never leaves a half-made vault at `path`.
    pub fn create(
        path: impl AsRef<Path>,
        pin: &str,
        params: KdfParams,
    ) -> Result<Vault, VaultError> {
        let path = path.as_ref();
        pin::check_policy(pin)?;
        params.validate()?;
        let dir = fsperm::parent_dir(path);
        fsperm::ensure_private_dir(&dir, true)?;
        if path.symlink_metadata().is_ok() {
            return Err(VaultError::AlreadyExists(path.to_owned()));
        }

        let mut tag = [0u8; 8];
        seal::fill_random(&mut tag)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "vault".into());
        let tmp = dir.join(format!(".{name}.creating-{}", hex_lower(&tag)));
        fsperm::create_private_file(&tmp)?;
        let mut guard = TempFileGuard(Some(tmp.clone()));

        let vault_key = SecretKey::random()?;
        let mut salt = [0u8; SALT_LEN];
        seal::fill_random(&mut salt)?;
        let sealed = seal_vault_key(&vault_key, pin, &salt, params)?;
        {
            let mut conn = Connection::open_with_flags(&tmp, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.pragma_update(None, "secure_delete", "ON")?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
            schema::create_schema(&tx)?;
            tx.execute(
                "INSERT INTO vault_meta (singleton, magic, kdf_salt, kdf_m_kib, kdf_t, kdf_p, sealed_vault_key)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    schema::MAGIC,
                    &salt[..],
                    params.m_cost_kib,
                    params.t_cost,
                    params.p_cost,
                    sealed
                ],
            )?;
            tx.commit()?;
            conn.close().map_err(|(_, e)| e)?;
        }
        // Link (never rename: a link does not replace an existing file).
        std::fs::hard_link(&tmp, path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                VaultError::AlreadyExists(path.to_owned())
            } else {
                VaultError::Io {
                    path: path.to_owned(),
                    source: e,
                }
            }
        })?;
        drop(guard.0.take());
        std::fs::remove_file(&tmp).map_err(|source| VaultError::Io {
            path: tmp.clone(),
            source,
        })?;
        fsperm::sync_dir(&dir)?;

        let mut vault = Vault::open(path)?;
        vault.key = Some(vault_key);
        Ok(vault)
    }

    /// Opens an existing vault, locked. Refuses (without modifying it) a file
    /// that is not a hybridd vault or comes from a newer schema version;
    /// applies pending migrations of an older one.
    pub fn open(path: impl AsRef<Path>) -> Result<Vault, VaultError> {
        let path = path.as_ref();
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(VaultError::NotAVault {
                    path: path.to_owned(),
                    reason: "not a regular file".into(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(VaultError::NoVault(path.to_owned()))
            }
            Err(source) => {
                return Err(VaultError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        }
        fsperm::ensure_private_dir(&fsperm::parent_dir(path), false)?;
        schema::check_file_header(path)?;

        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Nothing is written before the file is known to be ours.
        schema::check_and_migrate(&mut conn, path)?;
        fsperm::tighten_files(path)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(VaultError::Corrupt(format!(
                "cannot switch to WAL journaling (got {mode})"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.pragma_update(None, "trusted_schema", "OFF")?;
        conn.set_prepared_statement_cache_capacity(32);
        fsperm::tighten_files(path)?;

        let vault = Vault {
            conn,
            path: path.to_owned(),
            key: None,
            capacity: DEFAULT_CAPACITY,
        };
        vault.pin_record()?.params.validate().map_err(|e| {
            VaultError::Corrupt(format!("stored key-derivation parameters rejected: {e}"))
        })?;
        Ok(vault)
    }

    /// Deletes a vault file and its side files (the "forgot my PIN" reset).
    /// Every credential in it is lost for good. Missing files are not an error.
    pub fn destroy(path: impl AsRef<Path>) -> Result<(), VaultError> {
        let path = path.as_ref();
        let [wal, shm, journal] = fsperm::side_files(path);
        for p in [path.to_owned(), wal, shm, journal] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(VaultError::Io { path: p, source }),
            }
        }
        fsperm::sync_dir(&fsperm::parent_dir(path))
    }

    /// The vault file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the vault key is in memory.
    pub fn is_unlocked(&self) -> bool {
        self.key.is_some()
    }

    /// The maximum number of credentials (default [`DEFAULT_CAPACITY`]).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Sets the maximum number of credentials; inserts beyond it fail with
    /// `Full`. Existing credentials are never removed.
    pub fn set_capacity(&mut self, capacity: u64) {
        self.capacity = capacity;
    }

    /// Verifies `pin` and keeps the vault key in memory.
    ///
    /// Every attempt is recorded on disk *before* the PIN is checked (a wrong
    /// PIN cannot be retried for free by killing the process): the failure
    /// counter is incremented and the next attempt is refused until
    /// `now + delay` (1 s, 2 s, 4 s … 64 s); a correct PIN resets both. After
    /// [`MAX_PIN_FAILURES`] wrong PINs in a row every attempt fails with
    /// [`VaultError::Locked`]. The library never sleeps: `now` is the
    /// caller's wall clock and an early attempt gets [`VaultError::TooSoon`].
    pub fn unlock(&mut self, pin: &str, now: SystemTime) -> Result<(), VaultError> {
        let key = self.verify_pin(pin, now)?;
        self.key = Some(key);
        Ok(())
    }

    /// Forgets the vault key (zeroized); secrets are unavailable until the
    /// next [`Vault::unlock`].
    pub fn lock(&mut self) {
        self.key = None;
    }

    /// Replaces the PIN. The old PIN is verified (and counted) exactly like
    /// [`Vault::unlock`]; the vault key itself is unchanged, only re-sealed
    /// under a key derived from `new_pin` with a fresh salt. Leaves the vault
    /// unlocked.
    pub fn change_pin(
        &mut self,
        old_pin: &str,
        new_pin: &str,
        now: SystemTime,
    ) -> Result<(), VaultError> {
        pin::check_policy(new_pin)?;
        let key = self.verify_pin(old_pin, now)?;
        let params = self.pin_record()?.params;
        let mut salt = [0u8; SALT_LEN];
        seal::fill_random(&mut salt)?;
        let sealed = seal_vault_key(&key, new_pin, &salt, params)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE vault_meta SET kdf_salt = ?1, sealed_vault_key = ?2 WHERE singleton = 1",
            params![&salt[..], sealed],
        )?;
        tx.commit()?;
        // Move the change into the main file and empty the WAL, so the old
        // sealed key does not linger in it (secure_delete wipes the old cell).
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        self.key = Some(key);
        Ok(())
    }

    /// The wrong-PIN counter and the earliest time of the next attempt.
    pub fn pin_status(&self) -> Result<PinStatus, VaultError> {
        let rec = self.pin_record()?;
        Ok(PinStatus {
            failures: rec.failures,
            retries_left: MAX_PIN_FAILURES.saturating_sub(rec.failures),
            next_attempt_at: UNIX_EPOCH + Duration::from_millis(rec.next_attempt_ms),
        })
    }

    /// Number of credentials stored.
    pub fn count(&self) -> Result<u64, VaultError> {
        Ok(self.conn.query_row(
            "SELECT credential_count FROM vault_meta WHERE singleton = 1",
            [],
            |r| r.get(0),
        )?)
    }

    /// Deletes one credential; `Ok(false)` if there was none with that ID.
    /// Does not need the PIN (metadata operation; whoever can write the file
    /// can delete it anyway).
    pub fn delete(&mut self, id: &[u8]) -> Result<bool, VaultError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute("DELETE FROM credentials WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn pin_record(&self) -> Result<PinRecord, VaultError> {
        read_pin_record(&self.conn)
    }

    /// The shared PIN check of `unlock` and `change_pin`.
    fn verify_pin(&mut self, pin: &str, now: SystemTime) -> Result<SecretKey, VaultError> {
        pin::check_policy(pin)?;
        let now_ms = unix_ms(now);
        let rec = {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let rec = read_pin_record(&tx)?;
            if rec.failures >= MAX_PIN_FAILURES {
                return Err(VaultError::Locked(MAX_PIN_FAILURES));
            }
            if now_ms < rec.next_attempt_ms {
                let mut wait = rec.next_attempt_ms - now_ms;
                let due = pin::delay_after(rec.failures);
                if wait > delay_ms(due) {
                    // The clock went backwards: restart the delay from now.
                    wait = delay_ms(due);
                    tx.execute(
                        "UPDATE vault_meta SET next_attempt_unix_ms = ?1 WHERE singleton = 1",
                        [now_ms.saturating_add(wait)],
                    )?;
                    tx.commit()?;
                }
                return Err(VaultError::TooSoon {
                    retry_after: Duration::from_millis(wait),
                });
            }
            // Count the attempt durably before looking at the PIN.
            let failures = rec.failures.saturating_add(1);
            let next = now_ms.saturating_add(delay_ms(pin::delay_after(failures)));
            tx.execute(
                "UPDATE vault_meta SET pin_failures = ?1, next_attempt_unix_ms = ?2 WHERE singleton = 1",
                params![failures, next],
            )?;
            tx.commit()?;
            PinRecord { failures, ..rec }
        };

        let kek = SecretKey::from_bytes(pin::derive_kek(pin, &rec.salt, rec.params)?);
        match seal::open(&kek, AAD_VAULT_KEY, &rec.sealed_key) {
            Ok(bytes) => {
                let bytes: [u8; KEY_LEN] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| VaultError::Corrupt("vault key has the wrong length".into()))?;
                let key = SecretKey::from_bytes(Zeroizing::new(bytes));
                self.conn.execute(
                    "UPDATE vault_meta SET pin_failures = 0, next_attempt_unix_ms = 0 WHERE singleton = 1",
                    [],
                )?;
                Ok(key)
            }
            Err(VaultError::Decrypt) if rec.failures >= MAX_PIN_FAILURES => {
                tracing::warn!("wrong PIN; the vault is now locked");
                Err(VaultError::Locked(MAX_PIN_FAILURES))
            }
            Err(VaultError::Decrypt) => {
                tracing::info!(failures = rec.failures, "wrong PIN");
                Err(VaultError::WrongPin {
                    retries_left: MAX_PIN_FAILURES - rec.failures,
                    retry_after: pin::delay_after(rec.failures),
                })
            }
            Err(e) => Err(e),
        }
    }
}

fn read_pin_record(conn: &Connection) -> Result<PinRecord, VaultError> {
    conn.query_row(
        "SELECT kdf_salt, kdf_m_kib, kdf_t, kdf_p, sealed_vault_key, pin_failures, next_attempt_unix_ms
         FROM vault_meta WHERE singleton = 1",
        [],
        |r| {
            Ok(PinRecord {
                salt: r.get(0)?,
                params: KdfParams {
                    m_cost_kib: r.get(1)?,
                    t_cost: r.get(2)?,
                    p_cost: r.get(3)?,
                },
                sealed_key: r.get(4)?,
                failures: r.get(5)?,
                next_attempt_ms: r.get(6)?,
            })
        },
    )
    .optional()?
    .ok_or_else(|| VaultError::Corrupt("no vault metadata".into()))
}

fn seal_vault_key(
    key: &SecretKey,
    pin: &str,
    salt: &[u8],
    params: KdfParams,
) -> Result<Vec<u8>, VaultError> {
    let kek = SecretKey::from_bytes(pin::derive_kek(pin, salt, params)?);
    key.with_bytes(|b| seal::seal(&kek, AAD_VAULT_KEY, b))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// The stored Argon2 salt and parameters.
    pub(crate) fn salt_and_params(v: &Vault) -> (Vec<u8>, KdfParams) {
        let rec = v.pin_record().unwrap();
        (rec.salt, rec.params)
    }
}
