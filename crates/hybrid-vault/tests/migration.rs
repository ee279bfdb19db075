//! Vaults made by the first format (schema version 1: credential metadata
//! not authenticated, vault key sealed with a constant AAD) migrate on the
//! next unlock. The fixtures in `tests/fixtures/` were written by the
//! version-1 code itself (see `tests/fixtures/README.md`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::*;
use hybrid_ctap::store::{CredentialMeta, CredentialStore, StoreError};
use hybrid_vault::{KdfParams, Vault};
use rusqlite::Connection;

/// A copy of fixture `name` in a private directory.
fn fixture(dir: &Path, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let dst = dir.join("vault.db");
    std::fs::copy(src, &dst).unwrap();
    std::fs::set_permissions(
        &dst,
        std::os::unix::fs::PermissionsExt::from_mode(hybrid_vault::FILE_MODE),
    )
    .unwrap();
    dst
}

fn user_version(c: &Connection) -> i64 {
    c.pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

/// One `vault_meta` column, or `None` if the layout has no such column.
fn meta_column(path: &Path, col: &str) -> Option<rusqlite::types::Value> {
    Connection::open(path)
        .unwrap()
        .query_row(&format!("SELECT {col} FROM vault_meta"), [], |r| r.get(0))
        .ok()
}

fn int(v: Option<rusqlite::types::Value>) -> Option<i64> {
    match v {
        Some(rusqlite::types::Value::Integer(i)) => Some(i),
        _ => None,
    }
}

/// Every credential's metadata, read with plain SQL (works on both layouts).
/// ID → (RP ID, user name, discoverable, credProtect, counter).
type Snapshot = HashMap<Vec<u8>, (String, Option<String>, bool, u8, u32)>;

fn metadata(path: &Path) -> Snapshot {
    let c = Connection::open(path).unwrap();
    let mut stmt = c
        .prepare(
            "SELECT id, rp_id, user_name, discoverable, cred_protect, sign_count FROM credentials",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
            ))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

fn check_migrated(path: &Path, before: &Snapshot) {
    let mut v = Vault::open(path).unwrap();
    v.unlock(PIN, at(0)).unwrap();
    let all: Vec<CredentialMeta> = v.list().unwrap();
    assert_eq!(all.len(), before.len(), "credentials lost or added");
    for (i, m) in all.iter().enumerate() {
        let (rp, user, disc, prot, count) = &before[&m.id];
        assert_eq!(
            (
                &m.rp_id,
                &m.user_name,
                m.discoverable,
                m.cred_protect,
                m.sign_count
            ),
            (rp, user, *disc, *prot, *count)
        );
        // Every credential decrypts; signing (slow in a debug build) is
        // sampled.
        let secrets = v.secrets(&m.id).unwrap();
        if i % 16 == 0 {
            assert_signs(m, &secrets);
        }
    }
    let first = &all[0];
    // The first sign-in of a process starts above the counter's durable
    // reservation (schema version 3; 0 in a migrated version-1 row).
    let reserved: u32 = Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT sign_count_reserved FROM credentials WHERE id = ?1",
            [&first.id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        v.next_sign_count(&first.id, 1_800_000_000).unwrap(),
        before[&first.id].4.max(reserved) + 1
    );
}

#[test]
fn v1_vault_migrates_on_next_unlock() {
    for (name, made_for_tests) in [("vault-v1-19mib.db", false), ("vault-v1-test-kdf.db", true)] {
        let dir = tempdir();
        let path = fixture(dir.path(), name);
        assert_eq!(user_version(&Connection::open(&path).unwrap()), 1);
        let before = metadata(&path);
        assert!(!before.is_empty());

        // Opening upgrades the layout; the keys wait for the PIN.
        let v = Vault::open(&path).unwrap();
        drop(v);
        assert_eq!(
            user_version(&Connection::open(&path).unwrap()),
            hybrid_vault::SCHEMA_VERSION
        );
        assert_eq!(int(meta_column(&path, "key_format")), Some(1), "{name}");

        // The first unlock binds the key, tags every row, upgrades the KDF.
        check_migrated(&path, &before);
        assert_eq!(int(meta_column(&path, "key_format")), Some(2), "{name}");
        match meta_column(&path, "vault_id") {
            Some(rusqlite::types::Value::Blob(id)) => assert_eq!(id.len(), 16),
            other => panic!("{name}: vault_id {other:?}"),
        }
        let untagged: i64 = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT count(*) FROM credentials WHERE length(meta_mac) IS NOT 32",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(untagged, 0, "{name}: rows without a 32-byte tag");
        let m = int(meta_column(&path, "kdf_m_kib")).unwrap();
        let t = int(meta_column(&path, "kdf_t")).unwrap();
        let tests_flag = int(meta_column(&path, "kdf_for_tests")).unwrap();
        if made_for_tests {
            let p = KdfParams::INSECURE_FOR_TESTS;
            assert_eq!(
                (m, t, tests_flag),
                (p.m_cost_kib.into(), p.t_cost.into(), 1)
            );
        } else {
            let p = KdfParams::DEFAULT;
            assert_eq!(
                (m, t, tests_flag),
                (p.m_cost_kib.into(), p.t_cost.into(), 0)
            );
        }

        // Migrated once: a second open and unlock changes nothing, and the
        // new tags are real (an edit is now refused).
        let after = metadata(&path);
        check_migrated(&path, &after);
        let id = after.keys().next().unwrap().clone();
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE credentials SET cred_protect = cred_protect % 3 + 1 WHERE id = ?1",
                [&id],
            )
            .unwrap();
        let mut v = Vault::open(&path).unwrap();
        v.unlock(PIN, at(1000)).unwrap();
        assert!(matches!(v.secrets(&id), Err(StoreError::Backend(_))));
    }
}

#[test]
fn migration_ignores_a_forged_test_flag() {
    // An attacker pre-applies the new layout to a real (19 MiB) version-1
    // vault and marks it "made for tests", hoping the migration keeps (or
    // lowers to) test-only Argon2 costs. The flag is not trusted: a
    // version-1 vault counts as made for tests only if its parameters (which
    // the successful unlock authenticates) are below the minimum.
    let dir = tempdir();
    let path = fixture(dir.path(), "vault-v1-19mib.db");
    drop(Vault::open(&path).unwrap());
    let c = Connection::open(&path).unwrap();
    c.execute("UPDATE vault_meta SET kdf_for_tests = 1", [])
        .unwrap();
    drop(c);
    let before = metadata(&path);
    check_migrated(&path, &before);
    let d = KdfParams::DEFAULT;
    assert_eq!(int(meta_column(&path, "kdf_for_tests")), Some(0));
    assert_eq!(
        int(meta_column(&path, "kdf_m_kib")),
        Some(d.m_cost_kib.into())
    );
}

#[test]
fn migration_keeps_the_retry_counter_rules() {
    // A wrong PIN on a version-1 vault is counted and migrates nothing.
    let dir = tempdir();
    let path = fixture(dir.path(), "vault-v1-test-kdf.db");
    let mut v = Vault::open(&path).unwrap();
    assert!(v.unlock("0000", at(0)).is_err());
    assert_eq!(v.pin_status().unwrap().failures, 1);
    drop(v);
    assert_eq!(int(meta_column(&path, "key_format")), Some(1));
    let mut v = Vault::open(&path).unwrap();
    v.unlock(PIN, at(10)).unwrap();
    assert_eq!(v.pin_status().unwrap().failures, 0);
    assert_eq!(int(meta_column(&path, "key_format")), Some(2));
}
