//! Credentials: the [`CredentialStore`] implementation and listing.

use std::collections::BTreeSet;

use hybrid_ctap::store::{CredentialMeta, CredentialSecrets, CredentialStore, StoreError};
use rusqlite::{params, OptionalExtension, Row, Transaction, TransactionBehavior};

use crate::error::VaultError;
use crate::seal::{self, SecretKey};
use crate::vault::Vault;

/// Columns of [`CredentialMeta`], in the order [`meta_from_row`] reads them.
const META_COLUMNS: &str =
    "seq, id, rp_id, rp_name, user_id, user_name, user_display_name, algorithm, \
     public_key_cose, discoverable, cred_protect, sign_count, created_unix, last_used_unix";

/// Credential IDs per `IN (…)` query of an allow-list lookup.
const IDS_PER_QUERY: usize = 256;

/// SQLite's extended result code for a UNIQUE constraint violation.
const SQLITE_CONSTRAINT_UNIQUE: std::ffi::c_int = 2067;

fn meta_from_row(r: &Row<'_>) -> rusqlite::Result<(i64, CredentialMeta)> {
    Ok((
        r.get(0)?,
        CredentialMeta {
            id: r.get(1)?,
            rp_id: r.get(2)?,
            rp_name: r.get(3)?,
            user_id: r.get(4)?,
            user_name: r.get(5)?,
            user_display_name: r.get(6)?,
            algorithm: r.get(7)?,
            public_key_cose: r.get(8)?,
            discoverable: r.get(9)?,
            cred_protect: r.get(10)?,
            sign_count: r.get(11)?,
            created_unix: r.get(12)?,
            last_used_unix: r.get(13)?,
        },
    ))
}

fn insert_one(
    tx: &Transaction<'_>,
    key: &SecretKey,
    capacity: u64,
    meta: &CredentialMeta,
    secrets: &CredentialSecrets,
) -> Result<(), VaultError> {
    if meta.id.is_empty() {
        return Err(VaultError::InvalidData("empty credential ID"));
    }
    if !(1..=3).contains(&meta.cred_protect) {
        return Err(VaultError::InvalidData("credProtect must be 1, 2 or 3"));
    }
    let sealed = seal::seal(
        key,
        &seal::credential_aad(&meta.id),
        &seal::encode_secrets(secrets)?,
    )?;
    if meta.discoverable && !meta.user_id.is_empty() {
        // CTAP 2.1 §6.1.2 step 17: the new discoverable credential replaces
        // the older one of the same user at the same RP.
        tx.prepare_cached(
            "DELETE FROM credentials WHERE rp_id = ?1 AND user_id = ?2 AND discoverable = 1",
        )?
        .execute(params![meta.rp_id, meta.user_id])?;
    }
    let count: u64 = tx
        .prepare_cached("SELECT credential_count FROM vault_meta WHERE singleton = 1")?
        .query_row([], |r| r.get(0))?;
    if count >= capacity {
        return Err(VaultError::Full(capacity));
    }
    let inserted = tx
        .prepare_cached(
            "INSERT INTO credentials (id, rp_id, rp_name, user_id, user_name, user_display_name,
                 algorithm, public_key_cose, discoverable, cred_protect, sign_count, created_unix,
                 last_used_unix, sealed_secrets)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?
        .execute(params![
            meta.id,
            meta.rp_id,
            meta.rp_name,
            meta.user_id,
            meta.user_name,
            meta.user_display_name,
            meta.algorithm,
            meta.public_key_cose,
            meta.discoverable,
            meta.cred_protect,
            meta.sign_count,
            meta.created_unix,
            meta.last_used_unix,
            sealed,
        ]);
    match inserted {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == SQLITE_CONSTRAINT_UNIQUE =>
        {
            Err(VaultError::DuplicateId)
        }
        Err(e) => Err(e.into()),
    }
}

impl Vault {
    /// Every credential's metadata, newest (most recently stored) first.
    /// Works while locked.
    pub fn list(&self) -> Result<Vec<CredentialMeta>, VaultError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {META_COLUMNS} FROM credentials ORDER BY seq DESC"
        ))?;
        let rows = stmt.query_map([], meta_from_row)?;
        rows.map(|r| r.map(|(_, m)| m).map_err(VaultError::from))
            .collect()
    }

    /// See [`CredentialStore::find`]. Works while locked.
    pub fn find_credentials(
        &self,
        rp_id: &str,
        ids: Option<&[Vec<u8>]>,
    ) -> Result<Vec<CredentialMeta>, VaultError> {
        let Some(ids) = ids else {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {META_COLUMNS} FROM credentials
                 WHERE rp_id = ?1 AND discoverable = 1 ORDER BY seq DESC"
            ))?;
            let rows = stmt.query_map([rp_id], meta_from_row)?;
            return rows
                .map(|r| r.map(|(_, m)| m).map_err(VaultError::from))
                .collect();
        };
        let unique: BTreeSet<&[u8]> = ids.iter().map(Vec::as_slice).collect();
        let unique: Vec<&[u8]> = unique.into_iter().collect();
        let mut found: Vec<(i64, CredentialMeta)> = Vec::new();
        for chunk in unique.chunks(IDS_PER_QUERY) {
            let placeholders = vec!["?"; chunk.len()].join(",");
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {META_COLUMNS} FROM credentials WHERE rp_id = ? AND id IN ({placeholders})"
            ))?;
            let params = std::iter::once(&rp_id as &dyn rusqlite::ToSql)
                .chain(chunk.iter().map(|id| id as &dyn rusqlite::ToSql));
            let rows = stmt.query_map(rusqlite::params_from_iter(params), meta_from_row)?;
            for row in rows {
                found.push(row?);
            }
        }
        found.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        Ok(found.into_iter().map(|(_, m)| m).collect())
    }

    /// See [`CredentialStore::insert`]; needs the vault unlocked.
    pub fn insert_credential(
        &mut self,
        meta: &CredentialMeta,
        secrets: &CredentialSecrets,
    ) -> Result<(), VaultError> {
        self.insert_all(std::iter::once((meta, secrets)))
    }

    /// Inserts many credentials in one transaction (import, benchmarks):
    /// all or none. Needs the vault unlocked.
    pub fn insert_all<'a>(
        &mut self,
        items: impl IntoIterator<Item = (&'a CredentialMeta, &'a CredentialSecrets)>,
    ) -> Result<(), VaultError> {
        let key = self.key.as_ref().ok_or(VaultError::NotUnlocked)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (meta, secrets) in items {
            insert_one(&tx, key, self.capacity, meta, secrets)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// See [`CredentialStore::secrets`]; needs the vault unlocked.
    pub fn credential_secrets(&self, id: &[u8]) -> Result<CredentialSecrets, VaultError> {
        let key = self.key.as_ref().ok_or(VaultError::NotUnlocked)?;
        let sealed: Vec<u8> = self
            .conn
            .prepare_cached("SELECT sealed_secrets FROM credentials WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?
            .ok_or(VaultError::NoSuchCredential)?;
        let plain = seal::open(key, &seal::credential_aad(id), &sealed)?;
        seal::decode_secrets(&plain)
    }

    /// See [`CredentialStore::next_sign_count`]. Saturates at `u32::MAX`
    /// (never wraps, never goes backwards). Works while locked.
    pub fn bump_sign_count(&mut self, id: &[u8], now_unix: u64) -> Result<u32, VaultError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let count: u32 = tx
            .prepare_cached(
                "UPDATE credentials SET sign_count = MIN(sign_count + 1, 4294967295), last_used_unix = ?2
                 WHERE id = ?1 RETURNING sign_count",
            )?
            .query_row(params![id, now_unix], |r| r.get(0))
            .optional()?
            .ok_or(VaultError::NoSuchCredential)?;
        tx.commit()?;
        Ok(count)
    }
}

impl CredentialStore for Vault {
    fn find(
        &self,
        rp_id: &str,
        ids: Option<&[Vec<u8>]>,
    ) -> Result<Vec<CredentialMeta>, StoreError> {
        Ok(self.find_credentials(rp_id, ids)?)
    }

    fn insert(
        &mut self,
        meta: &CredentialMeta,
        secrets: &CredentialSecrets,
    ) -> Result<(), StoreError> {
        Ok(self.insert_credential(meta, secrets)?)
    }

    fn secrets(&self, id: &[u8]) -> Result<CredentialSecrets, StoreError> {
        Ok(self.credential_secrets(id)?)
    }

    fn next_sign_count(&mut self, id: &[u8], now_unix: u64) -> Result<u32, StoreError> {
        Ok(self.bump_sign_count(id, now_unix)?)
    }
}
