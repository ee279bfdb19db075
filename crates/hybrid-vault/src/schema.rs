//! The on-disk schema, its identification and its migrations.
//!
//! A vault is recognised by three marks, all checked before anything is
//! written: the SQLite file header, `PRAGMA application_id` =
//! [`APPLICATION_ID`], and the `magic` column of the single `vault_meta` row.
//! `PRAGMA user_version` is the schema version; [`MIGRATIONS`]`[i]` upgrades
//! version `i` to `i + 1`, all pending ones in one transaction.

use std::io::Read;
use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::VaultError;

/// `PRAGMA application_id` of a hybridd vault: ASCII "HYBV".
pub const APPLICATION_ID: i64 = 0x4859_4256;
/// The value of `vault_meta.magic`.
pub const MAGIC: &str = "hybridd-vault";
/// The schema version this build writes (and the newest it can read).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// First 16 bytes of every SQLite 3 database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Schema migrations; entry `i` takes the schema from version `i` to `i + 1`.
/// Never edit a released entry: append a new one.
pub const MIGRATIONS: &[&str] = &[
    // Version 1.
    "CREATE TABLE vault_meta (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        magic TEXT NOT NULL,
        kdf_salt BLOB NOT NULL,
        kdf_m_kib INTEGER NOT NULL,
        kdf_t INTEGER NOT NULL,
        kdf_p INTEGER NOT NULL,
        sealed_vault_key BLOB NOT NULL,
        pin_failures INTEGER NOT NULL DEFAULT 0,
        next_attempt_unix_ms INTEGER NOT NULL DEFAULT 0,
        credential_count INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE TABLE credentials (
        seq INTEGER PRIMARY KEY,
        id BLOB NOT NULL UNIQUE,
        rp_id TEXT NOT NULL,
        rp_name TEXT,
        user_id BLOB NOT NULL,
        user_name TEXT,
        user_display_name TEXT,
        algorithm INTEGER NOT NULL,
        public_key_cose BLOB NOT NULL,
        discoverable INTEGER NOT NULL CHECK (discoverable IN (0, 1)),
        cred_protect INTEGER NOT NULL CHECK (cred_protect BETWEEN 1 AND 3),
        sign_count INTEGER NOT NULL CHECK (sign_count BETWEEN 0 AND 4294967295),
        created_unix INTEGER NOT NULL,
        last_used_unix INTEGER,
        sealed_secrets BLOB NOT NULL
    ) STRICT;
    CREATE INDEX credentials_rp_id ON credentials (rp_id, id);
    CREATE INDEX credentials_rp_user ON credentials (rp_id, user_id) WHERE discoverable = 1;
    CREATE TRIGGER credentials_count_insert AFTER INSERT ON credentials BEGIN
        UPDATE vault_meta SET credential_count = credential_count + 1;
    END;
    CREATE TRIGGER credentials_count_delete AFTER DELETE ON credentials BEGIN
        UPDATE vault_meta SET credential_count = credential_count - 1;
    END;",
    // Version 2: the vault key sealed with AAD binding it to the vault's
    // identity and KDF parameters (`key_format` 2), the "made for tests"
    // flag, and a tag authenticating each credential's metadata. Filled in
    // on the first unlock (key_format stays 1 until then: docs/vault.md).
    "ALTER TABLE vault_meta ADD COLUMN vault_id BLOB
        CHECK (vault_id IS NULL OR length(vault_id) = 16);
    ALTER TABLE vault_meta ADD COLUMN key_format INTEGER NOT NULL DEFAULT 1
        CHECK (key_format IN (1, 2));
    ALTER TABLE vault_meta ADD COLUMN kdf_for_tests INTEGER NOT NULL DEFAULT 0
        CHECK (kdf_for_tests IN (0, 1));
    ALTER TABLE credentials ADD COLUMN meta_mac BLOB;",
    // Version 3: each credential's reserved signature counter, so that
    // most sign-ins need no synced commit (`Vault::bump_sign_count`,
    // docs/vault.md).
    "ALTER TABLE credentials ADD COLUMN sign_count_reserved INTEGER NOT NULL DEFAULT 0
        CHECK (sign_count_reserved BETWEEN 0 AND 4294967295);",
    // Version 4: used-QR records committed with a counted PIN attempt
    // (`Vault::begin_unlock_noting`, `used_qr.rs`, docs/vault.md).
    "CREATE TABLE used_qr (
        seq INTEGER PRIMARY KEY,
        digest BLOB NOT NULL CHECK (length(digest) = 32),
        stale_after_unix INTEGER
    ) STRICT;",
];

/// Refuses anything that is not an SQLite 3 file, before SQLite opens it.
pub(crate) fn check_file_header(path: &Path) -> Result<(), VaultError> {
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)
        .and_then(|f| f.take(16).read_to_end(&mut head))
        .map_err(|source| VaultError::Io {
            path: path.to_owned(),
            source,
        })?;
    if head.is_empty() {
        return Err(not_a_vault(path, "the file is empty"));
    }
    if head.as_slice() != SQLITE_HEADER {
        return Err(not_a_vault(path, "not an SQLite database"));
    }
    Ok(())
}

fn not_a_vault(path: &Path, reason: &str) -> VaultError {
    VaultError::NotAVault {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Applies every migration to a brand-new database and stamps it as a vault,
/// inside the caller's transaction.
pub(crate) fn create_schema(tx: &rusqlite::Transaction<'_>) -> Result<(), VaultError> {
    for sql in MIGRATIONS {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

/// Checks the identity marks of an opened file (read-only queries), then
/// applies pending migrations in one transaction.
pub(crate) fn check_and_migrate(conn: &mut Connection, path: &Path) -> Result<(), VaultError> {
    // A file SQLite cannot parse fails here ("file is not a database").
    let app_id: i64 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(|e| not_a_vault(path, &format!("SQLite cannot read it: {e}")))?;
    if app_id != APPLICATION_ID {
        return Err(not_a_vault(
            path,
            &format!("application id {app_id:#x}, expected {APPLICATION_ID:#x}"),
        ));
    }
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(VaultError::TooNew {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < 1 {
        return Err(VaultError::Corrupt(format!(
            "schema version {version} in a file marked as a vault"
        )));
    }
    if version < SCHEMA_VERSION {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        // Re-read under the lock: another process may have migrated already.
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let pending = MIGRATIONS
            .iter()
            .skip(usize::try_from(version).unwrap_or(usize::MAX));
        for sql in pending {
            tx.execute_batch(sql)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        tracing::info!(from = version, to = SCHEMA_VERSION, "vault schema migrated");
    }
    let magic: String = conn
        .query_row(
            "SELECT magic FROM vault_meta WHERE singleton = 1",
            [],
            |r| r.get(0),
        )
        .map_err(|e| VaultError::Corrupt(format!("no vault metadata: {e}")))?;
    if magic != MAGIC {
        return Err(VaultError::Corrupt(
            "wrong magic in the vault metadata".into(),
        ));
    }
    Ok(())
}
