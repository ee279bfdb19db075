//! Credentials: the [`CredentialStore`] implementation and listing.

use std::collections::BTreeSet;

use hybrid_ctap::store::{CredentialMeta, CredentialSecrets, CredentialStore, StoreError};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::VaultError;
use crate::seal::{self, MetaKey, SecretKey};
use crate::vault::Vault;
use crate::write_tx::{Commit, WriteTx};

/// Columns of [`CredentialMeta`] and the row's tag, in the order
/// [`meta_from_row`] reads them.
const META_COLUMNS: &str =
    "seq, id, rp_id, rp_name, user_id, user_name, user_display_name, algorithm, \
     public_key_cose, discoverable, cred_protect, sign_count, created_unix, last_used_unix, \
     meta_mac";

/// How many columns [`META_COLUMNS`] names: the index of a column
/// selected after them.
const META_COLUMN_COUNT: usize = 15;

/// Rows tagged per statement while migrating a version-1 vault.
const TAG_BATCH: i64 = 512;

/// Credential IDs per `IN (…)` query of an allow-list lookup.
const IDS_PER_QUERY: usize = 256;

/// SQLite's extended result code for a UNIQUE constraint violation.
const SQLITE_CONSTRAINT_UNIQUE: std::ffi::c_int = 2067;

/// How many signature counter values one synced commit reserves
/// ([`Vault::bump_sign_count`]): a sign-in within the block commits without
/// a sync of its own, and a restart skips at most this many values.
pub const COUNTER_BLOCK: u32 = 32;

/// A signature counter as this process left it: the last value handed
/// out, and the highest it may hand out before it reserves (durably)
/// again. Both mirror the row as committed by this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CounterBlock {
    last: u32,
    reserved: u32,
}

/// One credential row: its insertion order, metadata and tag.
struct StoredRow {
    seq: i64,
    meta: CredentialMeta,
    tag: Option<Vec<u8>>,
}

fn meta_from_row(r: &Row<'_>) -> rusqlite::Result<StoredRow> {
    Ok(StoredRow {
        seq: r.get(0)?,
        meta: CredentialMeta {
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
        tag: r.get(14)?,
    })
}

/// A short printable name of a credential for messages: its ID's first
/// bytes in hex (what `hybridd credentials delete` takes).
fn id_prefix(id: &[u8]) -> String {
    id.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Checks a row's tag under `key`; a missing or wrong tag is
/// [`VaultError::Tampered`].
fn check_tag(key: &MetaKey, row: &StoredRow) -> Result<(), VaultError> {
    match &row.tag {
        Some(tag) if key.verify(&row.meta, tag) => Ok(()),
        _ => {
            tracing::warn!(
                credential = %id_prefix(&row.meta.id),
                "credential metadata does not match its tag: refused"
            );
            Err(VaultError::Tampered(id_prefix(&row.meta.id)))
        }
    }
}

/// Tags every credential row (the migration of a version-1 vault), inside
/// the caller's transaction, in batches by `seq`.
pub(crate) fn tag_all_rows(tx: &Connection, key: &MetaKey) -> Result<(), VaultError> {
    let mut after = i64::MIN;
    loop {
        let rows: Vec<StoredRow> = tx
            .prepare_cached(&format!(
                "SELECT {META_COLUMNS} FROM credentials WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))?
            .query_map(params![after, TAG_BATCH], meta_from_row)?
            .collect::<Result<_, _>>()?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.seq;
        let mut update =
            tx.prepare_cached("UPDATE credentials SET meta_mac = ?1 WHERE seq = ?2")?;
        for row in &rows {
            update.execute(params![&key.tag(&row.meta)[..], row.seq])?;
        }
    }
}

/// The block a credential starts with (at `sign_count`, as stored by
/// makeCredential): its first [`COUNTER_BLOCK`] values reserved by the
/// insert's own synced commit.
fn new_block(sign_count: u32) -> CounterBlock {
    CounterBlock {
        last: sign_count,
        reserved: sign_count.saturating_add(COUNTER_BLOCK),
    }
}

fn insert_one(
    tx: &Connection,
    key: &SecretKey,
    meta_key: &MetaKey,
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
                 last_used_unix, sealed_secrets, meta_mac, sign_count_reserved)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
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
            &meta_key.tag(meta)[..],
            new_block(meta.sign_count).reserved,
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
    /// Checks each row's tag when the vault is unlocked (the metadata key is
    /// in memory); while locked, metadata cannot be authenticated and is
    /// returned as stored (it is authenticated again before any use that
    /// needs the vault key: secrets, counters).
    fn checked(&self, rows: Vec<StoredRow>) -> Result<Vec<StoredRow>, VaultError> {
        if let Some(key) = &self.meta_key {
            for row in &rows {
                check_tag(key, row)?;
            }
        }
        Ok(rows)
    }

    /// Every credential's metadata, newest (most recently stored) first.
    /// Works while locked; while unlocked, a row whose metadata was edited
    /// outside hybridd fails the whole call with [`VaultError::Tampered`].
    pub fn list(&self) -> Result<Vec<CredentialMeta>, VaultError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {META_COLUMNS} FROM credentials ORDER BY seq DESC"
        ))?;
        let rows = stmt
            .query_map([], meta_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.checked(rows)?.into_iter().map(|r| r.meta).collect())
    }

    /// See [`CredentialStore::find`]. Works while locked; while unlocked,
    /// every returned row's tag is checked ([`VaultError::Tampered`]).
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
            let rows = stmt
                .query_map([rp_id], meta_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(self.checked(rows)?.into_iter().map(|r| r.meta).collect());
        };
        let unique: BTreeSet<&[u8]> = ids.iter().map(Vec::as_slice).collect();
        let unique: Vec<&[u8]> = unique.into_iter().collect();
        let mut found: Vec<StoredRow> = Vec::new();
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
        found.sort_by_key(|r| std::cmp::Reverse(r.seq));
        Ok(self.checked(found)?.into_iter().map(|r| r.meta).collect())
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
        let (Some(key), Some(meta_key)) = (self.key.as_ref(), self.meta_key.as_ref()) else {
            return Err(VaultError::NotUnlocked);
        };
        let tx = WriteTx::begin(&self.conn, &mut self.sync, Commit::Synced)?;
        let mut blocks = Vec::new();
        for (meta, secrets) in items {
            insert_one(&tx, key, meta_key, self.capacity, meta, secrets)?;
            blocks.push((meta.id.clone(), new_block(meta.sign_count)));
        }
        tx.commit()?;
        self.unsynced = false;
        self.counter_blocks.extend(blocks);
        Ok(())
    }

    /// One row by credential ID, its tag checked, with one more of its
    /// columns from the same statement (`conn` may be a transaction).
    fn verified_row_with<T: rusqlite::types::FromSql>(
        conn: &rusqlite::Connection,
        meta_key: &MetaKey,
        id: &[u8],
        column: &str,
    ) -> Result<(StoredRow, T), VaultError> {
        let (row, extra) = conn
            .prepare_cached(&format!(
                "SELECT {META_COLUMNS}, {column} FROM credentials WHERE id = ?1"
            ))?
            .query_row([id], |r| Ok((meta_from_row(r)?, r.get(META_COLUMN_COUNT)?)))
            .optional()?
            .ok_or(VaultError::NoSuchCredential)?;
        check_tag(meta_key, &row)?;
        Ok((row, extra))
    }

    /// See [`CredentialStore::secrets`]; needs the vault unlocked. The row's
    /// metadata tag is checked first: secrets of an edited credential are
    /// never handed out ([`VaultError::Tampered`]). The metadata and the
    /// sealed secrets come from one statement, so from one snapshot of the
    /// row (and one read transaction instead of two: two fewer WAL-index
    /// locks per sign-in, docs/performance.md, "Phone: fourteenth round").
    pub fn credential_secrets(&self, id: &[u8]) -> Result<CredentialSecrets, VaultError> {
        let (Some(key), Some(meta_key)) = (self.key.as_ref(), self.meta_key.as_ref()) else {
            return Err(VaultError::NotUnlocked);
        };
        let (_, sealed): (StoredRow, Vec<u8>) =
            Self::verified_row_with(&self.conn, meta_key, id, "sealed_secrets")?;
        let plain = seal::open(key, &seal::credential_aad(id), &sealed)?;
        seal::decode_secrets(&plain)
    }

    /// See [`CredentialStore::next_sign_count`]. Saturates at `u32::MAX`
    /// (never wraps, never goes backwards). Needs the vault unlocked: the
    /// counter is part of the tagged metadata, so the row's tag is checked
    /// (an edited counter is refused, [`VaultError::Tampered`]) and renewed.
    ///
    /// **Reserved in blocks.** Every value handed out is at most the row's
    /// `sign_count_reserved` as committed *with a sync* before it. Within
    /// a block this process reserved (after its makeCredential insert, or
    /// its last synced bump), the new count and `last_used` are committed
    /// without a sync of their own ([`Commit::Unsynced`]): they survive the
    /// process being killed at once, and a power loss from the vault's
    /// next synced commit on. When the block is used up, or for a
    /// credential this process has not yet reserved (the first sign-in
    /// after a start), the count restarts above the
    /// stored reservation and a new block of [`COUNTER_BLOCK`] values is
    /// committed with a sync. So a power loss can roll the stored count
    /// back, but never makes the vault sign a value twice: after a restart
    /// the count moves past everything that may have been handed out
    /// (a skip of at most [`COUNTER_BLOCK`], which WebAuthn allows: it
    /// asks only for a counter that increases). A getAssertion in a block
    /// saves one `fsync` (docs/performance.md, "Phone: eighth round").
    pub fn bump_sign_count(&mut self, id: &[u8], now_unix: u64) -> Result<u32, VaultError> {
        if let Some(block) = self.counter_blocks.get(id).copied() {
            if block.last < block.reserved {
                // A PIN attempt still waiting for its sync rides in this
                // commit instead (`Vault::begin_unlock`): the assertion is
                // about to leave.
                let carry = self.unsynced;
                let commit = if carry {
                    Commit::Synced
                } else {
                    Commit::Unsynced
                };
                let counted = self.bump_in(id, now_unix, Some(block), commit)?;
                if let Some(count) = counted {
                    if carry {
                        self.unsynced = false;
                    }
                    return Ok(count);
                }
            }
        }
        let count = self
            .bump_in(id, now_unix, None, Commit::Synced)?
            .ok_or_else(|| VaultError::Corrupt("signature counter not reserved".into()))?;
        self.unsynced = false;
        Ok(count)
    }

    /// One bump in one transaction, committed as `commit` says: within
    /// `block` (`None` when the row no longer matches it: someone else
    /// wrote the row), or reserving a new block above everything stored.
    fn bump_in(
        &mut self,
        id: &[u8],
        now_unix: u64,
        block: Option<CounterBlock>,
        commit: Commit,
    ) -> Result<Option<u32>, VaultError> {
        let Some(meta_key) = self.meta_key.as_ref() else {
            return Err(VaultError::NotUnlocked);
        };
        let tx = WriteTx::begin(&self.conn, &mut self.sync, commit)?;
        let (mut row, reserved): (StoredRow, u32) =
            Self::verified_row_with(&tx, meta_key, id, "sign_count_reserved")?;
        let (count, reserved) = match block {
            Some(b) if row.meta.sign_count == b.last && reserved == b.reserved => {
                (b.last.saturating_add(1), reserved)
            }
            Some(_) => {
                drop(tx);
                self.counter_blocks.remove(id);
                return Ok(None);
            }
            None => {
                let count = row.meta.sign_count.max(reserved).saturating_add(1);
                (count, count.saturating_add(COUNTER_BLOCK - 1))
            }
        };
        row.meta.sign_count = count;
        row.meta.last_used_unix = Some(now_unix);
        tx.prepare_cached(
            "UPDATE credentials SET sign_count = ?1, last_used_unix = ?2, meta_mac = ?3,
                 sign_count_reserved = ?4
             WHERE seq = ?5",
        )?
        .execute(params![
            count,
            now_unix,
            &meta_key.tag(&row.meta)[..],
            reserved,
            row.seq
        ])?;
        tx.commit()?;
        self.counter_blocks.insert(
            id.to_vec(),
            CounterBlock {
                last: count,
                reserved,
            },
        );
        Ok(Some(count))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_column_count_matches_the_column_list() {
        assert_eq!(META_COLUMNS.split(',').count(), META_COLUMN_COUNT);
    }
}
