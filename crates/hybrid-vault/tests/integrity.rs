//! Integrity against an attacker who can write the vault file but does not
//! know the PIN (threat model: "local attacker with write access to
//! vault.db"): every credential's metadata is authenticated under the vault
//! key, the sealed vault key is bound to its vault and to its KDF
//! parameters, KDF parameters below the minimum are refused unless the vault
//! was made for tests, and a PIN change applies the current parameters.
//!
//! The files are edited with plain SQL, as such an attacker would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;
use hybrid_ctap::store::{CredentialMeta, CredentialStore, StoreError};
use hybrid_vault::{KdfParams, Vault, VaultError};
use rusqlite::Connection;

/// Argon2id at the documented minimum (m = 19 MiB, t = 2, p = 1): a vault
/// made for real use, yet cheap enough for a test.
const MINIMUM: KdfParams = KdfParams {
    m_cost_kib: 19 * 1024,
    t_cost: 2,
    p_cost: 1,
};

fn sql(path: &std::path::Path) -> Connection {
    Connection::open(path).unwrap()
}

/// A vault holding one discoverable, credProtect-3 credential used five
/// times, and a second, untouched one. Returns (path, target, other).
fn vault_with_used_credential(
    dir: &std::path::Path,
) -> (std::path::PathBuf, CredentialMeta, CredentialMeta) {
    let (path, mut v) = new_vault(dir);
    let (mut m, s) = cred("example.com", b"target-credential", b"alice", true);
    m.cred_protect = 3;
    v.insert(&m, &s).unwrap();
    let (o, so) = cred("example.com", b"other-credential!", b"bob", true);
    v.insert(&o, &so).unwrap();
    for t in 1..=5 {
        v.next_sign_count(&m.id, 1_700_000_000 + t).unwrap();
    }
    (path, m, o)
}

/// Opens and unlocks; every way of using the tampered credential must fail
/// (never silently use edited metadata), the other one must still work.
fn assert_refused(
    path: &std::path::Path,
    what: &str,
    target: &CredentialMeta,
    other: &CredentialMeta,
) {
    let mut v = Vault::open(path).unwrap();
    v.unlock(PIN, at(0)).unwrap();
    let secrets = v.secrets(&target.id);
    assert!(
        matches!(&secrets, Err(StoreError::Backend(msg)) if msg.contains("modified")),
        "{what}: secrets() of the edited credential: {:?}",
        secrets.as_ref().map(|_| "Ok(secrets)")
    );
    let bump = v.next_sign_count(&target.id, 1_800_000_000);
    assert!(bump.is_err(), "{what}: next_sign_count() returned {bump:?}");
    assert!(v.list().is_err(), "{what}: list() while unlocked succeeded");
    for rp in ["example.com", "evil.example"] {
        let found = v.find(rp, Some(std::slice::from_ref(&target.id)));
        assert!(
            found.as_ref().map_or(true, Vec::is_empty),
            "{what}: find({rp}) returned the edited credential"
        );
    }
    assert!(
        v.find("example.com", None).is_err()
            || what.contains("RP")
            || what.contains("discoverable"),
        "{what}: discoverable lookup returned the edited credential"
    );
    // The untouched credential still signs.
    assert_signs(other, &v.secrets(&other.id).unwrap());
}

#[test]
fn tampered_credential_metadata_is_refused() {
    let edits: &[(&str, &str)] = &[
        ("lowered credProtect", "UPDATE credentials SET cred_protect = 1 WHERE id = ?1"),
        ("flipped discoverable", "UPDATE credentials SET discoverable = 0 WHERE id = ?1"),
        ("rolled-back counter", "UPDATE credentials SET sign_count = 2 WHERE id = ?1"),
        ("moved to another RP", "UPDATE credentials SET rp_id = 'evil.example' WHERE id = ?1"),
        ("swapped user handle", "UPDATE credentials SET user_id = X'0102030405' WHERE id = ?1"),
        ("swapped public key", "UPDATE credentials SET public_key_cose = (SELECT public_key_cose FROM credentials WHERE id <> ?1) WHERE id = ?1"),
        ("changed algorithm", "UPDATE credentials SET algorithm = -8 WHERE id = ?1"),
        ("renamed account", "UPDATE credentials SET user_name = 'mallory' WHERE id = ?1"),
        ("renamed display name", "UPDATE credentials SET user_display_name = 'Bank' WHERE id = ?1"),
        ("renamed RP name", "UPDATE credentials SET rp_name = 'Your Bank' WHERE id = ?1"),
        ("changed creation time", "UPDATE credentials SET created_unix = 5 WHERE id = ?1"),
        ("changed last use", "UPDATE credentials SET last_used_unix = NULL WHERE id = ?1"),
        ("changed credential ID", "UPDATE credentials SET id = unhex('00' || hex(id)) WHERE id = ?1"),
    ];
    for (what, edit) in edits {
        let dir = tempdir();
        let (path, mut target, other) = vault_with_used_credential(dir.path());
        sql(&path).execute(edit, [&target.id]).unwrap();
        if what.contains("credential ID") {
            target.id.insert(0, 0);
        }
        assert_refused(&path, what, &target, &other);
    }
}

#[test]
fn a_row_without_its_authentication_tag_is_refused() {
    let dir = tempdir();
    let (path, target, other) = vault_with_used_credential(dir.path());
    // Whatever the column is called, blank every column the v1 layout did
    // not have (an attacker stripping the tag to pass as "not migrated").
    let c = sql(&path);
    let cols: Vec<String> = c
        .prepare("SELECT name FROM pragma_table_info('credentials')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let v1 = [
        "seq",
        "id",
        "rp_id",
        "rp_name",
        "user_id",
        "user_name",
        "user_display_name",
        "algorithm",
        "public_key_cose",
        "discoverable",
        "cred_protect",
        "sign_count",
        "created_unix",
        "last_used_unix",
        "sealed_secrets",
        // Version 3: a durable bound on the counter, not authenticated
        // metadata (the tagged `sign_count` stays the floor).
        "sign_count_reserved",
    ];
    let extra: Vec<&String> = cols.iter().filter(|c| !v1.contains(&c.as_str())).collect();
    assert!(
        !extra.is_empty(),
        "no authentication tag column in {cols:?}"
    );
    for col in extra {
        c.execute(
            &format!("UPDATE credentials SET {col} = NULL WHERE id = ?1"),
            [&target.id],
        )
        .unwrap();
    }
    drop(c);
    assert_refused(&path, "stripped tag", &target, &other);
}

/// The `vault_meta` columns that hold the PIN-sealed key and its KDF inputs.
fn key_columns(c: &Connection) -> Vec<String> {
    c.prepare("SELECT name FROM pragma_table_info('vault_meta')")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .filter(|n| n.starts_with("kdf_") || n == "sealed_vault_key")
        .collect()
}

#[test]
fn sealed_vault_key_is_bound_to_its_vault() {
    let dir = tempdir();
    let a = dir.path().join("a.db");
    let b = dir.path().join("b.db");
    let mut va = Vault::create(&a, PIN, CHEAP).unwrap();
    let (m, s) = cred("example.com", b"a-credential-0001", b"alice", true);
    va.insert(&m, &s).unwrap();
    drop(va);
    drop(Vault::create(&b, "1357", CHEAP).unwrap());

    // Graft b's sealed key and KDF inputs (b's PIN is the attacker's) onto a.
    let cb = sql(&b);
    let cols = key_columns(&cb);
    let ca = sql(&a);
    for col in &cols {
        let value: rusqlite::types::Value = cb
            .query_row(&format!("SELECT {col} FROM vault_meta"), [], |r| r.get(0))
            .unwrap();
        ca.execute(&format!("UPDATE vault_meta SET {col} = ?1"), [value])
            .unwrap();
    }
    drop((ca, cb));
    let mut v = Vault::open(&a).unwrap();
    let r = v.unlock("1357", at(0));
    assert!(
        matches!(r, Err(VaultError::WrongPin { .. })),
        "vault a unlocked with vault b's PIN after its sealed key was swapped: {r:?}"
    );
    drop(v);

    // Swapping the KDF parameters alone never unlocks either.
    let ca = sql(&a);
    ca.execute("UPDATE vault_meta SET kdf_t = kdf_t + 1", [])
        .unwrap();
    drop(ca);
    let mut v = Vault::open(&a).unwrap();
    assert!(v.unlock(PIN, at(100)).is_err());
}

#[test]
fn kdf_parameters_below_the_minimum_are_refused_unless_made_for_tests() {
    let dir = tempdir();
    // A vault for real use, at the minimum cost.
    let path = dir.path().join("real.db");
    let mut v = Vault::create(&path, PIN, MINIMUM).unwrap();
    v.lock();
    drop(v);
    // Downgrade its parameters in the file, and (where the layout has one)
    // claim it was made for tests.
    let c = sql(&path);
    c.execute("UPDATE vault_meta SET kdf_m_kib = 8, kdf_t = 1", [])
        .unwrap();
    drop(c);
    let err = Vault::open(&path).unwrap_err();
    assert!(
        err.to_string().contains("below the minimum"),
        "downgraded parameters were accepted at open: {err}"
    );
    let c = sql(&path);
    if key_columns(&c).iter().any(|n| n == "kdf_for_tests") {
        c.execute("UPDATE vault_meta SET kdf_for_tests = 1", [])
            .unwrap();
        drop(c);
        let mut v = Vault::open(&path).unwrap();
        // The flag is authenticated with the key: the correct PIN fails.
        assert!(matches!(
            v.unlock(PIN, at(0)),
            Err(VaultError::WrongPin { .. })
        ));
    }

    // A vault made for tests (test-only parameters at creation) works.
    let (path, v) = new_vault(dir.path());
    drop(v);
    let mut v = Vault::open(&path).unwrap();
    v.unlock(PIN, at(0)).unwrap();
}

fn stored_params(path: &std::path::Path) -> (u32, u32, u32) {
    sql(path)
        .query_row("SELECT kdf_m_kib, kdf_t, kdf_p FROM vault_meta", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap()
}

#[test]
fn change_pin_applies_current_kdf_parameters() {
    let dir = tempdir();
    let path = dir.path().join("vault.db");
    let mut v = Vault::create(&path, PIN, MINIMUM).unwrap();
    let (m, s) = cred("example.com", b"0123456789abcdef", b"u", true);
    v.insert(&m, &s).unwrap();
    assert_eq!(stored_params(&path), (19 * 1024, 2, 1));
    v.change_pin(PIN, "13579", at(0)).unwrap();
    let d = KdfParams::DEFAULT;
    assert_eq!(
        stored_params(&path),
        (d.m_cost_kib, d.t_cost, d.p_cost),
        "change_pin kept the old Argon2 parameters"
    );
    drop(v);
    let mut v = Vault::open(&path).unwrap();
    v.unlock("13579", at(1)).unwrap();
    assert_signs(&m, &v.secrets(&m.id).unwrap());
}
