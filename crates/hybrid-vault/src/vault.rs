//! The [`Vault`]: lifecycle (create, open, unlock, lock, change PIN) and
//! credential management (list, delete, count, capacity).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::write_tx::{Commit, SyncLevel, WriteTx};
use zeroize::Zeroizing;

use crate::error::VaultError;
use crate::fsperm;
use crate::pin::{self, KdfParams, MAX_PIN_FAILURES, SALT_LEN};
use crate::schema;
use crate::seal::{self, MetaKey, SecretKey, AAD_VAULT_KEY_V1, VAULT_ID_LEN};
use crate::store;
use crate::used_qr::{self, UsedQr};

/// `vault_meta.key_format` of a version-1 vault not yet migrated: the vault
/// key sealed with a constant AAD, credential metadata untagged.
const KEY_FORMAT_V1: i64 = 1;
/// `vault_meta.key_format` written by this version: the vault key bound to
/// the vault's identity and KDF parameters, every credential row tagged.
pub(crate) const KEY_FORMAT: i64 = 2;

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
    /// Tags credential metadata; present exactly when `key` is.
    pub(crate) meta_key: Option<MetaKey>,
    pub(crate) capacity: u64,
    /// Signature counters this process reserved durably, by credential ID
    /// (`Vault::bump_sign_count`).
    pub(crate) counter_blocks: std::collections::HashMap<Vec<u8>, store::CounterBlock>,
    /// A PIN attempt counted without a sync of its own
    /// ([`Vault::begin_unlock_noting`]) that no synced commit has covered
    /// yet ([`Vault::make_durable`]).
    pub(crate) unsynced: bool,
    /// The connection's `synchronous` level; every write transaction sets
    /// the one it needs (`crate::write_tx`).
    pub(crate) sync: SyncLevel,
    /// How many times [`Vault::make_durable`] synced the log.
    #[cfg(test)]
    pub(crate) wal_syncs: usize,
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
#[derive(PartialEq, Eq)]
struct PinRecord {
    salt: Vec<u8>,
    params: KdfParams,
    sealed_key: Vec<u8>,
    failures: u32,
    next_attempt_ms: u64,
    /// The vault's identity (key format 2; `None` before the migration).
    vault_id: Option<Vec<u8>>,
    /// [`KEY_FORMAT_V1`] or [`KEY_FORMAT`].
    key_format: i64,
    /// The vault was made for tests (may use parameters below the minimum).
    /// Authenticated by the sealed key's AAD in key format 2; *ignored* in
    /// key format 1, where it did not exist.
    for_tests: bool,
}

impl PinRecord {
    /// Whether the vault is a test vault, as far as authenticated data says:
    /// in key format 1 a vault could only have parameters below the minimum
    /// if it was made with the test-only ones (the parameters themselves are
    /// authenticated by a successful unlock: they are Argon2's input).
    fn made_for_tests(&self) -> bool {
        if self.key_format == KEY_FORMAT_V1 {
            self.params.is_below_minimum()
        } else {
            self.for_tests
        }
    }

    /// Refuses what no honest vault holds: parameters out of range, or below
    /// the minimum without the test flag; a bound key without an identity.
    fn check(&self) -> Result<(), VaultError> {
        self.params.validate().map_err(|e| {
            VaultError::Corrupt(format!("stored key-derivation parameters rejected: {e}"))
        })?;
        match self.key_format {
            KEY_FORMAT_V1 => Ok(()),
            KEY_FORMAT => {
                if self.vault_id.as_ref().map(Vec::len) != Some(VAULT_ID_LEN) {
                    return Err(VaultError::Corrupt("the vault has no identity".into()));
                }
                if self.params.is_below_minimum() && !self.for_tests {
                    return Err(VaultError::KdfBelowMinimum(self.params));
                }
                Ok(())
            }
            other => Err(VaultError::Corrupt(format!("unknown key format {other}"))),
        }
    }

    /// The AAD the sealed vault key was sealed with.
    fn aad(&self) -> Vec<u8> {
        match (&self.vault_id, self.key_format) {
            (Some(id), KEY_FORMAT) => {
                seal::vault_key_aad(id, &self.salt, self.params, self.for_tests)
            }
            _ => AAD_VAULT_KEY_V1.to_vec(),
        }
    }
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
        let for_tests = params.is_below_minimum();
        if for_tests {
            tracing::warn!(
                m_kib = params.m_cost_kib,
                t = params.t_cost,
                "creating a vault with Argon2 parameters below the minimum: it is recorded as \
                 made for tests and its PIN can be brute-forced; never store real credentials in it"
            );
        }
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
        let mut vault_id = [0u8; VAULT_ID_LEN];
        seal::fill_random(&mut vault_id)?;
        let aad = seal::vault_key_aad(&vault_id, &salt, params, for_tests);
        let sealed = seal_vault_key(&vault_key, pin, &salt, params, &aad)?;
        {
            let mut conn = Connection::open_with_flags(&tmp, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.pragma_update(None, "secure_delete", "ON")?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
            schema::create_schema(&tx)?;
            tx.execute(
                "INSERT INTO vault_meta (singleton, magic, kdf_salt, kdf_m_kib, kdf_t, kdf_p,
                     sealed_vault_key, vault_id, key_format, kdf_for_tests)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    schema::MAGIC,
                    &salt[..],
                    params.m_cost_kib,
                    params.t_cost,
                    params.p_cost,
                    sealed,
                    &vault_id[..],
                    KEY_FORMAT,
                    for_tests
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
        vault.set_unlocked(vault_key)?;
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
            meta_key: None,
            capacity: DEFAULT_CAPACITY,
            counter_blocks: std::collections::HashMap::new(),
            unsynced: false,
            sync: SyncLevel::full(),
            #[cfg(test)]
            wal_syncs: 0,
        };
        vault.pin_record()?.check()?;
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
    ///
    /// A correct PIN also migrates the vault when needed, in one transaction
    /// (`docs/vault.md`, "Migration"): a version-1 vault gets an identity, its
    /// key is re-sealed bound to it and every credential row gets its tag;
    /// a vault not made for tests whose Argon2 parameters are weaker than
    /// [`KdfParams::DEFAULT`] is re-sealed with the default (an extra Argon2
    /// run, once).
    pub fn unlock(&mut self, pin: &str, now: SystemTime) -> Result<(), VaultError> {
        let (key, rec) = self.verify_pin(pin, now)?;
        self.unlocked_by(pin, key, rec)
    }

    /// [`Vault::unlock`] in three steps, for a caller that runs the key
    /// derivation elsewhere (the daemon: on its own thread, while its
    /// runtime goes on). This step checks the PIN policy, the retry
    /// delay and the lockout, and counts the attempt — written before
    /// anything looks at the PIN, as `unlock` does. Then
    /// [`PinAttempt::derive`] runs Argon2id without the vault (the only
    /// long part: hundreds of milliseconds with [`KdfParams::DEFAULT`]),
    /// and [`Vault::finish_unlock`] checks the result and unlocks.
    ///
    /// **When the count is durable.** Unlike `unlock`, this step commits the
    /// count without a sync of its own: it is in the operating system's
    /// cache when this returns, so a killed process keeps it. It is synced
    /// before the check's outcome can leave the caller: `finish_unlock`
    /// syncs it before it reports a wrong PIN; after a correct one the
    /// vault's next synced commit (the new credential, a signature counter)
    /// carries it, and the caller runs [`Vault::make_durable`] before it
    /// answers anything else. A power loss between the check and that sync
    /// loses the count, but also the outcome: nobody has learned it. This
    /// saves a ceremony with a new passkey one of its two syncs
    /// (docs/performance.md, "Phone: eleventh round").
    ///
    /// An attempt that is never finished stays counted as a failure,
    /// like a process killed during the check.
    pub fn begin_unlock(&mut self, pin: &str, now: SystemTime) -> Result<PinAttempt, VaultError> {
        self.begin_unlock_noting(pin, now, &[])
    }

    /// [`Vault::begin_unlock`] that also commits `used` in the counted
    /// attempt's transaction: they become durable with the attempt (see
    /// there; [`Vault::unsynced_attempt`] says when). On an error (policy,
    /// delay, lockout, or the commit itself) they are not stored, and the
    /// caller must make them durable another way. Read back with
    /// [`Vault::used_qrs`].
    pub fn begin_unlock_noting(
        &mut self,
        pin: &str,
        now: SystemTime,
        used: &[UsedQr],
    ) -> Result<PinAttempt, VaultError> {
        let rec = self.count_attempt(pin, now, used, Commit::Unsynced)?;
        self.unsynced = true;
        Ok(PinAttempt {
            pin: Zeroizing::new(pin.to_owned()),
            rec,
        })
    }

    /// Whether a PIN attempt counted by [`Vault::begin_unlock_noting`] (and
    /// the records committed with it) still waits for a sync.
    pub fn unsynced_attempt(&self) -> bool {
        self.unsynced
    }

    /// Syncs a PIN attempt [`Vault::begin_unlock_noting`] counted without
    /// a sync, when no synced commit has carried it yet: `fdatasync` of the
    /// vault's write-ahead log, which holds every commit since the last
    /// checkpoint (the same sync a `synchronous = FULL` commit ends with).
    /// Nothing to do otherwise. Run it before an answer that follows a PIN
    /// check leaves.
    pub fn make_durable(&mut self) -> Result<(), VaultError> {
        if !self.unsynced {
            return Ok(());
        }
        let wal = PathBuf::from(format!("{}-wal", self.conn.path().unwrap_or_default()));
        let io = |source| VaultError::Io {
            path: wal.clone(),
            source,
        };
        std::fs::File::open(&wal)
            .and_then(|f| f.sync_data())
            .map_err(io)?;
        self.unsynced = false;
        #[cfg(test)]
        {
            self.wal_syncs += 1;
        }
        Ok(())
    }

    /// The last step of [`Vault::begin_unlock`]: opens the sealed vault key
    /// with the derived key and keeps it in memory (a correct PIN resets
    /// the failure count and migrates the vault when needed, as
    /// [`Vault::unlock`] does; the re-seal of a migration runs Argon2 again,
    /// here).
    ///
    /// The attempt must be the last thing that touched the PIN record: an
    /// attempt begun on another vault, or one overtaken by another attempt
    /// or a PIN change since `begin_unlock`, is refused with
    /// [`VaultError::ChangedConcurrently`] (and stays counted).
    pub fn finish_unlock(&mut self, derived: DerivedPin) -> Result<(), VaultError> {
        let checked = self.check_derived(derived);
        if checked.is_err() {
            // A failure is reported only once its counted attempt is durable.
            self.make_durable()?;
        }
        checked
    }

    /// The record check, the unseal and a correct PIN's reset in one
    /// transaction: nothing can change the record between the check and
    /// the reset, and the check needs no read transaction of its own
    /// (docs/performance.md, "Phone: twelfth round").
    fn check_derived(&mut self, derived: DerivedPin) -> Result<(), VaultError> {
        let DerivedPin { pin, rec, kek } = derived;
        let key = {
            let tx = WriteTx::begin(&self.conn, &mut self.sync, Commit::Unsynced)?;
            if read_pin_record(&tx)? != rec {
                return Err(VaultError::ChangedConcurrently);
            }
            let key = unseal(kek?, &rec)?;
            reset_pin_failures(&tx)?;
            tx.commit()?;
            key
        };
        self.unlocked_by(&pin, key, rec)
    }

    /// Keeps `key` (unsealed with `pin` from `rec`) in memory, migrating
    /// the vault first when needed.
    fn unlocked_by(&mut self, pin: &str, key: SecretKey, rec: PinRecord) -> Result<(), VaultError> {
        let for_tests = rec.made_for_tests();
        let params = if for_tests {
            rec.params
        } else {
            rec.params.at_least(KdfParams::DEFAULT)
        };
        if rec.key_format == KEY_FORMAT_V1 || params != rec.params {
            self.reseal(&key, pin, params, for_tests, &rec, false)?;
            tracing::info!(
                from_format = rec.key_format,
                m_kib = params.m_cost_kib,
                t = params.t_cost,
                "vault key re-sealed (key format {KEY_FORMAT})"
            );
            return self.set_unlocked(key);
        }
        // The record the key was just unsealed from: its identity is the
        // one the unseal authenticated (no second read, and no window for
        // another writer in between).
        self.set_unlocked_from(key, &rec)
    }

    /// The used-QR records committed with PIN attempts
    /// ([`Vault::begin_unlock_noting`]), oldest first; readable while the
    /// vault is locked.
    pub fn used_qrs(&self) -> Result<Vec<UsedQr>, VaultError> {
        used_qr::read(&self.conn)
    }

    /// Forgets the vault key (zeroized); secrets are unavailable until the
    /// next [`Vault::unlock`].
    pub fn lock(&mut self) {
        self.key = None;
        self.meta_key = None;
    }

    /// Replaces the PIN, applying the current key-derivation parameters
    /// ([`KdfParams::DEFAULT`], or the vault's own if stronger): see
    /// [`Vault::change_pin_with_params`].
    pub fn change_pin(
        &mut self,
        old_pin: &str,
        new_pin: &str,
        now: SystemTime,
    ) -> Result<(), VaultError> {
        self.change_pin_with_params(old_pin, new_pin, now, KdfParams::DEFAULT)
    }

    /// Replaces the PIN. The old PIN is verified (and counted) exactly like
    /// [`Vault::unlock`]; the vault key itself is unchanged, only re-sealed
    /// under a key derived from `new_pin` with a fresh salt and `params`
    /// (each cost at least the vault's current one). Parameters below
    /// [`KdfParams::MINIMUM`] are accepted only for a vault made for tests
    /// ([`VaultError::WouldWeakenKdf`] otherwise); parameters at or above it
    /// make the vault a normal one. Leaves the vault unlocked.
    pub fn change_pin_with_params(
        &mut self,
        old_pin: &str,
        new_pin: &str,
        now: SystemTime,
        params: KdfParams,
    ) -> Result<(), VaultError> {
        pin::check_policy(new_pin)?;
        params.validate()?;
        let for_tests = params.is_below_minimum();
        // Refuse before counting an attempt; checked again below against the
        // record the PIN authenticated.
        if for_tests && !self.pin_record()?.made_for_tests() {
            return Err(VaultError::WouldWeakenKdf(params));
        }
        let (key, rec) = self.verify_pin(old_pin, now)?;
        let params = if for_tests {
            if !rec.made_for_tests() {
                return Err(VaultError::WouldWeakenKdf(params));
            }
            params
        } else if rec.made_for_tests() {
            params
        } else {
            params.at_least(rec.params)
        };
        self.reseal(&key, new_pin, params, for_tests, &rec, true)?;
        self.set_unlocked(key)
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
        Ok(self
            .conn
            .prepare_cached("SELECT credential_count FROM vault_meta WHERE singleton = 1")?
            .query_row([], |r| r.get(0))?)
    }

    /// Deletes one credential; `Ok(false)` if there was none with that ID.
    /// Does not need the PIN (metadata operation; whoever can write the file
    /// can delete it anyway).
    pub fn delete(&mut self, id: &[u8]) -> Result<bool, VaultError> {
        let tx = WriteTx::begin(&self.conn, &mut self.sync, Commit::Synced)?;
        let n = tx.execute("DELETE FROM credentials WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn pin_record(&self) -> Result<PinRecord, VaultError> {
        read_pin_record(&self.conn)
    }

    /// The shared PIN check of `unlock` and `change_pin`: the vault key and
    /// the record it was unsealed from (whose parameters, identity and test
    /// flag the successful unseal authenticates).
    fn verify_pin(
        &mut self,
        pin: &str,
        now: SystemTime,
    ) -> Result<(SecretKey, PinRecord), VaultError> {
        let rec = self.count_attempt(pin, now, &[], Commit::Synced)?;
        let kek = derive_kek(pin, &rec)?;
        self.open_sealed_key(kek, rec)
    }

    /// The first half of a PIN check: the policy, the delay and the
    /// lockout, then the attempt counted (by a synced commit, or an
    /// unsynced one for [`Vault::begin_unlock`]). Returns the PIN record
    /// with the attempt counted.
    fn count_attempt(
        &mut self,
        pin: &str,
        now: SystemTime,
        used: &[UsedQr],
        commit: Commit,
    ) -> Result<PinRecord, VaultError> {
        pin::check_policy(pin)?;
        let now_ms = unix_ms(now);
        let tx = WriteTx::begin(&self.conn, &mut self.sync, commit)?;
        let rec = read_pin_record(&tx)?;
        rec.check()?;
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
        // Count the attempt before looking at the PIN.
        let failures = rec.failures.saturating_add(1);
        let next = now_ms.saturating_add(delay_ms(pin::delay_after(failures)));
        tx.prepare_cached(
            "UPDATE vault_meta SET pin_failures = ?1, next_attempt_unix_ms = ?2 WHERE singleton = 1",
        )?
        .execute(params![failures, next])?;
        if !used.is_empty() {
            used_qr::store(&tx, used, now_ms / 1000)?;
        }
        tx.commit()?;
        Ok(PinRecord {
            failures,
            next_attempt_ms: next,
            ..rec
        })
    }

    /// The second half of a PIN check, once `kek` is derived from the PIN
    /// and `rec`'s salt: the vault key, or the failure the counted attempt
    /// stands for. A correct PIN resets the count.
    fn open_sealed_key(
        &mut self,
        kek: SecretKey,
        rec: PinRecord,
    ) -> Result<(SecretKey, PinRecord), VaultError> {
        let key = unseal(kek, &rec)?;
        let tx = WriteTx::begin(&self.conn, &mut self.sync, Commit::Unsynced)?;
        reset_pin_failures(&tx)?;
        tx.commit()?;
        Ok((key, rec))
    }
}

/// The vault key sealed in `rec`, opened with `kek`; a wrong PIN is the
/// failure its counted attempt stands for (the count is not changed here).
fn unseal(kek: SecretKey, rec: &PinRecord) -> Result<SecretKey, VaultError> {
    match seal::open(&kek, &rec.aad(), &rec.sealed_key) {
        Ok(bytes) => SecretKey::from_slice(&bytes)
            .ok_or_else(|| VaultError::Corrupt("vault key has the wrong length".into())),
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

/// A PIN attempt counted on disk, before its key derivation
/// ([`Vault::begin_unlock`]). Holds the PIN (wiped on drop) and the
/// vault's public PIN parameters; no key.
pub struct PinAttempt {
    pin: Zeroizing<String>,
    rec: PinRecord,
}

impl PinAttempt {
    /// Runs Argon2id over the PIN with the vault's salt and parameters.
    /// Needs no vault: it may run on any thread.
    pub fn derive(self) -> DerivedPin {
        let kek = derive_kek(&self.pin, &self.rec);
        DerivedPin {
            pin: self.pin,
            rec: self.rec,
            kek,
        }
    }
}

impl core::fmt::Debug for PinAttempt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PinAttempt(..)")
    }
}

/// A counted PIN attempt with its derived key, for [`Vault::finish_unlock`].
pub struct DerivedPin {
    pin: Zeroizing<String>,
    rec: PinRecord,
    kek: Result<SecretKey, VaultError>,
}

impl core::fmt::Debug for DerivedPin {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DerivedPin(..)")
    }
}

/// The key that unseals the vault key, from `pin` and `rec`'s salt and
/// parameters.
fn derive_kek(pin: &str, rec: &PinRecord) -> Result<SecretKey, VaultError> {
    Ok(SecretKey::from_bytes(pin::derive_kek(
        pin, &rec.salt, rec.params,
    )?))
}

/// Whether the "key not in locked memory" warning was given (once per process).
static NOT_LOCKED_WARNED: AtomicBool = AtomicBool::new(false);

impl Vault {
    /// Keeps `key` (and the metadata key derived from it and the vault's
    /// identity, read from the PIN record as it is now) in memory.
    fn set_unlocked(&mut self, key: SecretKey) -> Result<(), VaultError> {
        let rec = self.pin_record()?;
        self.set_unlocked_from(key, &rec)
    }

    /// [`Vault::set_unlocked`] with the PIN record `key` was unsealed from.
    fn set_unlocked_from(&mut self, key: SecretKey, rec: &PinRecord) -> Result<(), VaultError> {
        let id = match (&rec.vault_id, rec.key_format) {
            (Some(id), KEY_FORMAT) => id,
            _ => return Err(VaultError::Corrupt("the vault has no identity".into())),
        };
        self.meta_key = Some(MetaKey::derive(&key, id)?);
        if !key.is_locked() && !NOT_LOCKED_WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the vault key could not be locked in memory (mlock refused: raise the \
                 locked-memory limit, e.g. LimitMEMLOCK= in the systemd unit or `ulimit -l`); \
                 it is still wiped on lock, but the kernel may write it to swap — use \
                 encrypted swap (docs/threat-model.md)"
            );
        }
        self.key = Some(key);
        Ok(())
    }

    /// Whether the unlocked vault's key sits in locked memory (not
    /// swapped, not in core dumps; `hybrid_secmem`); `None` while locked.
    pub fn key_in_locked_memory(&self) -> Option<bool> {
        self.key.as_ref().map(SecretKey::is_locked)
    }

    /// Re-seals the vault key under `pin` with a fresh salt and `params`,
    /// bound to the vault's identity (made now if the vault has none), and —
    /// for a key-format-1 vault — tags every credential row: all in one
    /// transaction, so a crash leaves either the old state or the new one.
    /// Argon2 runs before the write lock is taken. `rec` is the record the
    /// PIN was verified against; if another process re-sealed meanwhile,
    /// its result stands and a PIN change (`new_pin`) is refused (try again).
    fn reseal(
        &mut self,
        key: &SecretKey,
        pin: &str,
        params: KdfParams,
        for_tests: bool,
        rec: &PinRecord,
        new_pin: bool,
    ) -> Result<(), VaultError> {
        let vault_id = match &rec.vault_id {
            Some(id) if rec.key_format == KEY_FORMAT => id.clone(),
            _ => {
                let mut id = vec![0u8; VAULT_ID_LEN];
                seal::fill_random(&mut id)?;
                id
            }
        };
        let mut salt = [0u8; SALT_LEN];
        seal::fill_random(&mut salt)?;
        let aad = seal::vault_key_aad(&vault_id, &salt, params, for_tests);
        let sealed = seal_vault_key(key, pin, &salt, params, &aad)?;
        let meta_key = MetaKey::derive(key, &vault_id)?;

        let tx = WriteTx::begin(&self.conn, &mut self.sync, Commit::Synced)?;
        let current = read_pin_record(&tx)?;
        if current.sealed_key != rec.sealed_key {
            // Another process re-sealed since our PIN check. The vault key
            // never changes, so for an unlock theirs is as good as ours
            // (and, being format 2, already tagged every row); a new PIN
            // must not be silently dropped.
            return if !new_pin && current.key_format == KEY_FORMAT {
                Ok(())
            } else {
                Err(VaultError::ChangedConcurrently)
            };
        }
        tx.execute(
            "UPDATE vault_meta SET vault_id = ?1, kdf_salt = ?2, kdf_m_kib = ?3, kdf_t = ?4,
                 kdf_p = ?5, sealed_vault_key = ?6, kdf_for_tests = ?7, key_format = ?8
             WHERE singleton = 1",
            params![
                vault_id,
                &salt[..],
                params.m_cost_kib,
                params.t_cost,
                params.p_cost,
                sealed,
                for_tests,
                KEY_FORMAT
            ],
        )?;
        if rec.key_format == KEY_FORMAT_V1 {
            store::tag_all_rows(&tx, &meta_key)?;
        }
        tx.commit()?;
        // Move the change into the main file and empty the WAL, so the old
        // sealed key does not linger in it (secure_delete wipes the old cell).
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

/// Resets the wrong-PIN counter after a correct PIN; the caller commits
/// it *without* its own fsync ([`Commit::Unsynced`]): in WAL mode the
/// reset's frames then become durable with the next synced commit — the
/// ceremony's credential insert, a signature counter reservation, or at the latest the next PIN attempt —
/// or the next checkpoint.
///
/// Why this is as safe as a `FULL` commit: the attempt itself was counted
/// before the PIN was looked at ([`Vault::verify_pin`], or
/// [`Vault::begin_unlock`], whose count a wrong PIN syncs before it is
/// reported), and that is what stops guessing. A reset still sits in the
/// operating system's cache, so it survives `kill -9` of the process; only
/// a power loss or kernel crash before the next fsync can drop it, and
/// then the vault comes back with one more failure counted than there was
/// (the safe direction — exactly what a crash during a correct unlock
/// already cost). It saves one fsync per unlock (`docs/performance.md`,
/// "Phone").
fn reset_pin_failures(conn: &Connection) -> Result<(), VaultError> {
    conn.prepare_cached(
        "UPDATE vault_meta SET pin_failures = 0, next_attempt_unix_ms = 0 WHERE singleton = 1",
    )?
    .execute([])?;
    Ok(())
}

fn read_pin_record(conn: &Connection) -> Result<PinRecord, VaultError> {
    conn.prepare_cached(
        "SELECT kdf_salt, kdf_m_kib, kdf_t, kdf_p, sealed_vault_key, pin_failures, next_attempt_unix_ms,
                vault_id, key_format, kdf_for_tests
         FROM vault_meta WHERE singleton = 1",
    )?
    .query_row(
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
                vault_id: r.get(7)?,
                key_format: r.get(8)?,
                for_tests: r.get(9)?,
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
    aad: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let kek = SecretKey::from_bytes(pin::derive_kek(pin, salt, params)?);
    key.with_bytes(|b| seal::seal(&kek, aad, b))
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
