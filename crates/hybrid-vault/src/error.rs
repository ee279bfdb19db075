//! The vault's one error type.

use std::path::PathBuf;
use std::time::Duration;

use hybrid_ctap::store::StoreError;

/// Why a vault operation failed. Every message is written for the person who
/// runs `hybridd` and is safe to log (it never contains a PIN, key or secret).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The vault file or its directory could not be read, created or inspected.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// `open` found no file.
    #[error("no vault at {0}: create one first (`hybridd vault init`)")]
    NoVault(PathBuf),
    /// `create` found a file already there; it is never overwritten.
    #[error("refusing to create a vault at {0}: a file already exists there and is never overwritten; move it away or choose another path")]
    AlreadyExists(PathBuf),
    /// The file is not a hybridd vault (another application's database,
    /// random bytes, an empty file). It was left untouched.
    #[error("{path} is not a hybridd vault ({reason}); the file was left untouched")]
    NotAVault {
        /// The file concerned.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// The vault was written by a newer hybridd (schema version `found`).
    #[error("{path} uses vault schema version {found}, but this hybridd only understands versions up to {supported}; upgrade hybridd (the file was left untouched)")]
    TooNew {
        /// The file concerned.
        path: PathBuf,
        /// The file's schema version.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The file is a hybridd vault but its content is inconsistent.
    #[error("the vault is damaged ({0}); restore it from a backup")]
    Corrupt(String),
    /// The directory holding the vault is readable or writable by other users.
    #[error("{path} is accessible by other users (mode {mode:03o}); run `chmod 700 {path}` or choose a private directory")]
    InsecureDirectory {
        /// The directory concerned.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The PIN does not satisfy the PIN policy (4 to 63 bytes of UTF-8, at
    /// least 4 characters, no NUL).
    #[error("PIN rejected: {0}")]
    PinPolicy(&'static str),
    /// The PIN was wrong. The failure is already recorded on disk.
    #[error("wrong PIN: {retries_left} attempt(s) left before the vault locks for good; next attempt allowed in {} s", retry_after.as_secs())]
    WrongPin {
        /// Wrong PINs still allowed before [`VaultError::Locked`].
        retries_left: u32,
        /// How long to wait before the next attempt is accepted.
        retry_after: Duration,
    },
    /// A PIN attempt came before the delay imposed by the previous failure ran out.
    #[error("too many wrong PINs: wait {} s before trying again", retry_after.as_secs().max(1))]
    TooSoon {
        /// Time left until an attempt is accepted.
        retry_after: Duration,
    },
    /// Too many wrong PINs in a row: the vault refuses every further attempt.
    #[error("the vault is locked after {0} wrong PINs in a row and will not accept any PIN again; its credentials cannot be recovered from this file. Restore the vault file from a backup or delete it and create a new vault (then register your passkeys again)")]
    Locked(u32),
    /// An operation that needs the vault key was asked for before `unlock`.
    #[error("the vault is not unlocked: enter the PIN first")]
    NotUnlocked,
    /// The vault holds as many credentials as it is allowed to.
    #[error("the vault is full ({0} credentials); delete some first")]
    Full(u64),
    /// No credential with that ID.
    #[error("no such credential")]
    NoSuchCredential,
    /// A credential with this ID already exists.
    #[error("a credential with this ID already exists")]
    DuplicateId,
    /// A credential's sealed secrets did not decrypt under the vault key.
    #[error("a credential's secrets could not be decrypted (the vault is damaged or rows were tampered with)")]
    Decrypt,
    /// A value could not be stored (out of the range the schema allows).
    #[error("invalid credential data: {0}")]
    InvalidData(&'static str),
    /// A credential's metadata does not match the tag made with the vault
    /// key: the row was edited outside hybridd. The credential is not used.
    #[error("credential {0} was modified outside hybridd (its metadata no longer matches the tag made with the vault key) and will not be used; restore the vault from a backup, or delete that credential (`hybridd credentials delete {0}`)")]
    Tampered(String),
    /// The stored Argon2 parameters are below [`crate::KdfParams::MINIMUM`]
    /// and the vault was not made for tests: the file was edited.
    #[error("the vault's PIN key-derivation parameters (m = {} KiB, t = {}) are below the minimum and the vault was not made for tests: the file was tampered with or damaged; restore it from a backup", .0.m_cost_kib, .0.t_cost)]
    KdfBelowMinimum(crate::KdfParams),
    /// A PIN change asked for parameters below the minimum on a vault not
    /// made for tests.
    #[error("refusing to seal the vault key with Argon2 parameters below the minimum (m = {} KiB, t = {}): this vault holds real credentials (unset HYBRIDD_INSECURE_FAST_KDF)", .0.m_cost_kib, .0.t_cost)]
    WouldWeakenKdf(crate::KdfParams),
    /// The PIN record changed while this PIN was being checked: another
    /// process re-sealed the vault key during a PIN change, or a PIN check
    /// in steps (`Vault::begin_unlock`) was overtaken by another attempt.
    #[error("the vault's PIN record changed during this PIN check (another PIN change or attempt at the same time); nothing was unlocked or changed, try again")]
    ChangedConcurrently,
    /// Argon2 refused its parameters.
    #[error("PIN key derivation failed: {0}")]
    Kdf(String),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Rng(String),
    /// SQLite reported an error.
    #[error("vault database error: {0}")]
    Database(#[from] rusqlite::Error),
}

impl From<VaultError> for StoreError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Full(_) => StoreError::Full,
            VaultError::NotUnlocked | VaultError::Locked(_) => StoreError::Locked,
            VaultError::NoSuchCredential => StoreError::NotFound,
            other => StoreError::Backend(other.to_string()),
        }
    }
}
