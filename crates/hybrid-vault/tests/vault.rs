//! Vault lifecycle, refusal of foreign files, permissions, PIN handling and
//! the CredentialStore behaviour.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;
use hybrid_ctap::store::{CredentialStore, StoreError};
use hybrid_vault::{
    UsedQr, Vault, VaultError, APPLICATION_ID, COUNTER_BLOCK, MAX_PIN_FAILURES, SCHEMA_VERSION,
};

#[allow(clippy::expect_used)]
fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn create_open_unlock_roundtrip() {
    let dir = common::tempdir();
    let (path, mut v) = new_vault(dir.path());
    assert!(v.is_unlocked());
    let (m, s) = cred("example.com", b"cred-1-xxxxxxxxxx", b"user-1", true);
    v.insert(&m, &s).unwrap();
    drop(v);

    let mut v = Vault::open(&path).unwrap();
    assert!(!v.is_unlocked());
    assert_eq!(v.count().unwrap(), 1);
    assert_eq!(v.list().unwrap(), vec![m.clone()]);
    assert!(matches!(v.secrets(&m.id), Err(StoreError::Locked)));
    v.unlock(PIN, at(0)).unwrap();
    let got = v.secrets(&m.id).unwrap();
    assert_eq!(*got.private_key, *s.private_key);
    assert_eq!(got.prf_secret, s.prf_secret);
    assert_eq!(got.cred_blob, s.cred_blob);
    assert_signs(&m, &got);
    v.lock();
    assert!(matches!(v.secrets(&m.id), Err(StoreError::Locked)));
    assert!(format!("{v:?}").contains("unlocked: false"));
}

#[test]
fn create_never_overwrites() {
    let dir = common::tempdir();
    let (path, v) = new_vault(dir.path());
    drop(v);
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(
        Vault::create(&path, PIN, CHEAP),
        Err(VaultError::AlreadyExists(_))
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // No temporary files left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.to_string_lossy().contains("creating")),
        "{names:?}"
    );
}

#[test]
fn open_missing_file() {
    let dir = common::tempdir();
    let err = Vault::open(dir.path().join("nope.db")).unwrap_err();
    assert!(matches!(err, VaultError::NoVault(_)));
    assert!(err.to_string().contains("create one"));
}

#[test]
fn refuses_random_bytes_and_empty_file_untouched() {
    let dir = common::tempdir();
    let path = dir.path().join("vault.db");
    let mut junk = vec![0u8; 8192];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut junk);
    std::fs::write(&path, &junk).unwrap();
    let err = Vault::open(&path).unwrap_err();
    assert!(matches!(err, VaultError::NotAVault { .. }), "{err}");
    assert!(err.to_string().contains("left untouched"));
    assert!(matches!(
        Vault::create(&path, PIN, CHEAP),
        Err(VaultError::AlreadyExists(_))
    ));
    assert_eq!(std::fs::read(&path).unwrap(), junk);

    // Random bytes behind a valid SQLite header: SQLite itself refuses.
    let mut fake = b"SQLite format 3\0".to_vec();
    fake.extend_from_slice(&junk);
    std::fs::write(&path, &fake).unwrap();
    assert!(matches!(
        Vault::open(&path),
        Err(VaultError::NotAVault { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), fake);

    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        Vault::open(&path),
        Err(VaultError::NotAVault { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), b"");
}

#[test]
fn refuses_another_applications_database_untouched() {
    let dir = common::tempdir();
    let path = dir.path().join("vault.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hello');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Vault::open(&path).unwrap_err();
    assert!(matches!(err, VaultError::NotAVault { .. }), "{err}");
    assert!(err.to_string().contains("application id"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(!dir.path().join("vault.db-wal").exists());
}

#[test]
fn refuses_newer_schema_and_inconsistent_marks() {
    let dir = common::tempdir();
    let (path, v) = new_vault(dir.path());
    drop(v);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = Vault::open(&path).unwrap_err();
    assert!(
        matches!(err, VaultError::TooNew { found, .. } if found == SCHEMA_VERSION + 1),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade hybridd"));

    // Our application id but no schema version: damaged, refused.
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 0).unwrap();
    }
    assert!(matches!(Vault::open(&path), Err(VaultError::Corrupt(_))));

    // Wrong magic in the metadata row.
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION)
            .unwrap();
        c.execute("UPDATE vault_meta SET magic = 'other'", [])
            .unwrap();
    }
    assert!(matches!(Vault::open(&path), Err(VaultError::Corrupt(_))));

    // An SQLite file of another app that happens to carry our schema version.
    let other = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&other).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        c.pragma_update(None, "application_id", APPLICATION_ID + 1)
            .unwrap();
    }
    assert!(matches!(
        Vault::open(&other),
        Err(VaultError::NotAVault { .. })
    ));
}

#[test]
fn permissions_dir_0700_files_0600() {
    let root = common::tempdir();
    let dir = root.path().join("a/b");
    let path = dir.join("vault.db");
    let mut v = Vault::create(&path, PIN, CHEAP).unwrap();
    let (m, s) = cred("example.com", b"0123456789abcdef", b"u", true);
    v.insert(&m, &s).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&root.path().join("a")), 0o700);
    assert_eq!(mode(&path), 0o600);
    let wal = dir.join("vault.db-wal");
    let shm = dir.join("vault.db-shm");
    assert!(wal.exists());
    assert_eq!(mode(&wal), 0o600);
    assert_eq!(mode(&shm), 0o600);
    drop(v);

    // A looser file is tightened on open.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(Vault::open(&path).unwrap());
    assert_eq!(mode(&path), 0o600);

    // A directory other users can enter is refused, for open and create.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = Vault::open(&path).unwrap_err();
    assert!(
        matches!(err, VaultError::InsecureDirectory { mode: 0o755, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 700"));
    assert!(matches!(
        Vault::create(dir.join("other.db"), PIN, CHEAP),
        Err(VaultError::InsecureDirectory { .. })
    ));
    assert!(!dir.join("other.db").exists());
}

#[test]
fn pin_policy() {
    let dir = common::tempdir();
    for bad in ["123", "", "12\u{0}4", &"9".repeat(64)] {
        assert!(matches!(
            Vault::create(dir.path().join("v.db"), bad, CHEAP),
            Err(VaultError::PinPolicy(_))
        ));
    }
    assert!(!dir.path().join("v.db").exists());
    Vault::create(dir.path().join("v.db"), "ünïcødé", CHEAP).unwrap();
}

#[test]
fn an_unlock_in_steps_counts_first_and_derives_away_from_the_vault() {
    let dir = common::tempdir();
    let (path, mut v) = new_vault(dir.path());
    let (m, s) = cred("example.com", b"cred-1-xxxxxxxxxx", b"user-1", true);
    v.insert(&m, &s).unwrap();
    drop(v);
    let mut v = Vault::open(&path).unwrap();

    // The attempt is counted on disk before the PIN is looked at, and
    // stays counted when the derivation never comes back.
    let abandoned = v.begin_unlock(PIN, at(0)).unwrap();
    assert_eq!(
        Vault::open(&path).unwrap().pin_status().unwrap().failures,
        1
    );
    drop(abandoned);
    assert!(!v.is_unlocked());

    // A wrong PIN, derived on another thread.
    let attempt = v.begin_unlock("0000", at(1)).unwrap();
    let derived = std::thread::spawn(move || attempt.derive()).join().unwrap();
    let err = v.finish_unlock(derived).unwrap_err();
    assert!(
        matches!(
            err,
            VaultError::WrongPin {
                retries_left: 6,
                ..
            }
        ),
        "{err}"
    );
    assert!(!v.is_unlocked());
    // The delay holds for the steps as for `unlock`.
    assert!(matches!(
        v.begin_unlock(PIN, at(1)),
        Err(VaultError::TooSoon { .. })
    ));

    // The right PIN unlocks and resets the count.
    let attempt = v.begin_unlock(PIN, at(10)).unwrap();
    let derived = std::thread::spawn(move || attempt.derive()).join().unwrap();
    v.finish_unlock(derived).unwrap();
    assert!(v.is_unlocked());
    assert_eq!(v.pin_status().unwrap().failures, 0);
    assert_signs(&m, &v.secrets(&m.id).unwrap());

    // Another vault's attempt opens nothing here, nor does one that a
    // later attempt overtook.
    let dir2 = common::tempdir();
    let (_p2, mut other) = new_vault(dir2.path());
    other.lock();
    v.lock();
    let foreign = other.begin_unlock(PIN, at(20)).unwrap().derive();
    assert!(matches!(
        v.finish_unlock(foreign),
        Err(VaultError::ChangedConcurrently)
    ));
    assert!(!v.is_unlocked());
    let first = v.begin_unlock(PIN, at(20)).unwrap().derive();
    let second = v.begin_unlock(PIN, at(40)).unwrap().derive();
    assert!(matches!(
        v.finish_unlock(first),
        Err(VaultError::ChangedConcurrently)
    ));
    assert!(!v.is_unlocked());
    assert_eq!(v.pin_status().unwrap().failures, 2);
    v.finish_unlock(second).unwrap();
    assert!(v.is_unlocked());
}

/// The daemon's used-QR records ride in the counted attempt's synced
/// commit: durable when `begin_unlock_noting` returns, read back by a
/// later open while locked, not stored when the attempt is refused before
/// it is counted, and bounded (newest kept, stale ones dropped).
#[test]
fn used_qrs_are_committed_with_the_counted_attempt_and_stay_bounded() {
    let used = |n: u8, stale: Option<u64>| UsedQr {
        digest: [n; 32],
        stale_after_unix: stale,
    };
    let now = 1_700_000_000;
    let dir = common::tempdir();
    let (path, mut v) = new_vault(dir.path());
    v.lock();
    assert!(v.used_qrs().unwrap().is_empty());

    let first = [used(1, None), used(2, Some(now + 600))];
    drop(
        v.begin_unlock_noting("0000", at(0), &first)
            .unwrap()
            .derive(),
    );
    // Another connection sees them: committed, not just staged.
    assert_eq!(Vault::open(&path).unwrap().used_qrs().unwrap(), first);

    // Refused during the retry delay: the attempt is not counted and the
    // record is not stored (the caller syncs its own file instead).
    assert!(matches!(
        v.begin_unlock_noting(PIN, at(0), &[used(3, None)]),
        Err(VaultError::TooSoon { .. })
    ));
    assert_eq!(v.used_qrs().unwrap(), first);

    // A record whose QR went stale is dropped by a later commit.
    v.begin_unlock_noting(PIN, at(700), &[used(3, None)])
        .unwrap();
    assert_eq!(v.used_qrs().unwrap(), [used(1, None), used(3, None)]);

    // At most 64 rows, the newest.
    let many: Vec<UsedQr> = (10..110).map(|n| used(n, None)).collect();
    v.begin_unlock_noting(PIN, at(800), &many).unwrap();
    assert_eq!(v.used_qrs().unwrap(), many[100 - 64..]);
}

#[test]
fn wrong_pins_are_counted_durably_and_delayed() {
    let dir = common::tempdir();
    let (path, v) = new_vault(dir.path());
    drop(v);
    let mut v = Vault::open(&path).unwrap();
    let err = v.unlock("0000", at(0)).unwrap_err();
    assert!(
        matches!(err, VaultError::WrongPin { retries_left: 7, retry_after } if retry_after == Duration::from_secs(1)),
        "{err}"
    );
    drop(v);

    // The failure survived closing the vault.
    let mut v = Vault::open(&path).unwrap();
    let st = v.pin_status().unwrap();
    assert_eq!((st.failures, st.retries_left), (1, 7));
    assert_eq!(st.next_attempt_at, at(1));
    // Too early, even with the right PIN: refused without counting.
    let err = v.unlock(PIN, at(0)).unwrap_err();
    assert!(
        matches!(err, VaultError::TooSoon { retry_after } if retry_after == Duration::from_secs(1)),
        "{err}"
    );
    assert_eq!(v.pin_status().unwrap().failures, 1);
    // Second failure: 2 s.
    let err = v.unlock("1111", at(1)).unwrap_err();
    assert!(
        matches!(err, VaultError::WrongPin { retries_left: 6, retry_after } if retry_after == Duration::from_secs(2))
    );
    assert!(matches!(
        v.unlock(PIN, at(2)),
        Err(VaultError::TooSoon { .. })
    ));
    // A clock that jumped backwards restarts the delay instead of blocking for ages.
    match v.unlock(PIN, at(0) - Duration::from_secs(86_400)) {
        Err(VaultError::TooSoon { retry_after }) => assert_eq!(retry_after, Duration::from_secs(2)),
        other => panic!("{other:?}"),
    }
    v.unlock(PIN, at(3)).unwrap();
    assert_eq!(v.pin_status().unwrap().failures, 0);
    // A policy-violating PIN is not counted.
    assert!(matches!(
        v.unlock("1", at(10)),
        Err(VaultError::PinPolicy(_))
    ));
    assert_eq!(v.pin_status().unwrap().failures, 0);
}

#[test]
fn eight_wrong_pins_lock_the_vault_for_good() {
    let dir = common::tempdir();
    let (path, mut v) = new_vault(dir.path());
    v.lock();
    let mut t = 0;
    for i in 1..MAX_PIN_FAILURES {
        let err = v.unlock("9999", at(t)).unwrap_err();
        assert!(
            matches!(err, VaultError::WrongPin { retries_left, .. } if retries_left == MAX_PIN_FAILURES - i)
        );
        t += 100;
    }
    let err = v.unlock("9999", at(t)).unwrap_err();
    assert!(matches!(err, VaultError::Locked(8)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("backup") && msg.contains("create a new vault"),
        "{msg}"
    );
    assert!(matches!(
        v.unlock(PIN, at(t + 1000)),
        Err(VaultError::Locked(_))
    ));
    drop(v);
    let mut v = Vault::open(&path).unwrap();
    assert_eq!(v.pin_status().unwrap().retries_left, 0);
    assert!(matches!(
        v.unlock(PIN, at(t + 5000)),
        Err(VaultError::Locked(_))
    ));
    assert!(matches!(
        v.change_pin(PIN, "5555", at(t + 5000)),
        Err(VaultError::Locked(_))
    ));
    drop(v);
    // The documented way out: destroy and re-create.
    Vault::destroy(&path).unwrap();
    Vault::create(&path, PIN, CHEAP).unwrap();
}

#[test]
fn change_pin_reseals_only_the_key() {
    let dir = common::tempdir();
    let (path, mut v) = new_vault(dir.path());
    let (m, s) = cred("example.com", b"0123456789abcdef", b"u", true);
    v.insert(&m, &s).unwrap();
    assert!(matches!(
        v.change_pin(PIN, "12", at(0)),
        Err(VaultError::PinPolicy(_))
    ));
    assert_eq!(v.pin_status().unwrap().failures, 0);
    assert!(matches!(
        v.change_pin("7777", "13579", at(0)),
        Err(VaultError::WrongPin { .. })
    ));
    v.change_pin(PIN, "13579", at(10)).unwrap();
    drop(v);
    let mut v = Vault::open(&path).unwrap();
    assert!(matches!(
        v.unlock(PIN, at(20)),
        Err(VaultError::WrongPin { .. })
    ));
    v.unlock("13579", at(30)).unwrap();
    assert_signs(&m, &v.secrets(&m.id).unwrap());
}

#[test]
fn insert_find_secrets_counter() {
    let dir = common::tempdir();
    let (path, mut v) = new_vault(dir.path());
    let (a, sa) = cred("example.com", b"id-a-0123456789a", b"alice", true);
    let (b, sb) = cred("example.com", b"id-b-0123456789a", b"bob", true);
    let (c, sc) = cred("example.com", b"id-c-0123456789a", b"", false);
    let (d, sd) = cred("other.org", b"id-d-0123456789a", b"alice", true);
    for (m, s) in [(&a, &sa), (&b, &sb), (&c, &sc), (&d, &sd)] {
        v.insert(m, s).unwrap();
    }
    // Discoverable lookup: newest first, only discoverable, only this RP.
    let ids = |v: Vec<hybrid_ctap::store::CredentialMeta>| {
        v.into_iter().map(|m| m.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(v.find("example.com", None).unwrap()),
        vec![b.id.clone(), a.id.clone()]
    );
    // Allow list: any of the RP's credentials, unknown and foreign IDs ignored.
    let allow = vec![
        a.id.clone(),
        c.id.clone(),
        d.id.clone(),
        b"unknown".to_vec(),
        a.id.clone(),
    ];
    assert_eq!(
        ids(v.find("example.com", Some(&allow)).unwrap()),
        vec![c.id.clone(), a.id.clone()]
    );
    assert!(v.find("example.com", Some(&[])).unwrap().is_empty());
    assert!(v.find("nobody.net", None).unwrap().is_empty());

    // Counters: +1 each, durable, last-used recorded.
    assert_eq!(v.next_sign_count(&a.id, 1_800_000_000).unwrap(), 1);
    assert_eq!(v.next_sign_count(&a.id, 1_800_000_001).unwrap(), 2);
    assert!(matches!(
        v.next_sign_count(b"unknown", 0),
        Err(StoreError::NotFound)
    ));
    assert!(matches!(v.secrets(b"unknown"), Err(StoreError::NotFound)));
    // Same ID twice is refused.
    assert!(matches!(v.insert(&c, &sc), Err(StoreError::Backend(_))));
    drop(v);
    let mut v = Vault::open(&path).unwrap();
    let got = v
        .find("example.com", Some(std::slice::from_ref(&a.id)))
        .unwrap();
    assert_eq!(
        (got[0].sign_count, got[0].last_used_unix),
        (2, Some(1_800_000_001))
    );
    // The counter is authenticated metadata: bumping it needs the vault key.
    assert!(matches!(
        v.next_sign_count(&a.id, 1_800_000_002),
        Err(StoreError::Locked)
    ));
    v.unlock(PIN, at(0)).unwrap();
    // Reopened (a restart): the count moves past the block its insert
    // reserved, since a power loss may have rolled the stored 2 back.
    assert_eq!(
        v.next_sign_count(&a.id, 1_800_000_002).unwrap(),
        COUNTER_BLOCK + 1
    );
    assert_eq!(
        v.next_sign_count(&a.id, 1_800_000_003).unwrap(),
        COUNTER_BLOCK + 2
    );

    // A new discoverable credential for the same user replaces the old one.
    let (a2, sa2) = cred("example.com", b"id-a2-0123456789", b"alice", true);
    v.insert(&a2, &sa2).unwrap();
    assert_eq!(
        ids(v.find("example.com", None).unwrap()),
        vec![a2.id.clone(), b.id.clone()]
    );
    assert!(matches!(v.secrets(&a.id), Err(StoreError::NotFound)));
    assert_eq!(v.count().unwrap(), 4);
    // …but not the other RP's credential of the same user handle.
    assert_eq!(v.find("other.org", None).unwrap().len(), 1);

    for (m, s) in [(&a2, &sa2), (&b, &sb), (&c, &sc), (&d, &sd)] {
        let got = v.secrets(&m.id).unwrap();
        assert_eq!(*got.private_key, *s.private_key);
        assert_signs(m, &got);
    }
    assert!(v.delete(&b.id).unwrap());
    assert!(!v.delete(&b.id).unwrap());
    assert_eq!(v.count().unwrap(), 3);
}

#[test]
fn rows_cannot_be_swapped() {
    let dir = common::tempdir();
    let (path, mut v) = new_vault(dir.path());
    let (a, sa) = cred("example.com", b"id-a-0123456789a", b"alice", true);
    let (b, sb) = cred("example.com", b"id-b-0123456789a", b"bob", true);
    v.insert(&a, &sa).unwrap();
    v.insert(&b, &sb).unwrap();
    drop(v);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute(
            "UPDATE credentials SET sealed_secrets = (SELECT sealed_secrets FROM credentials WHERE id = ?1) WHERE id = ?2",
            [&b.id, &a.id],
        )
        .unwrap();
    }
    let mut v = Vault::open(&path).unwrap();
    v.unlock(PIN, at(0)).unwrap();
    assert!(matches!(v.secrets(&a.id), Err(StoreError::Backend(_))));
    assert!(v.secrets(&b.id).is_ok());
}

#[test]
fn secrets_and_insert_need_unlock() {
    let dir = common::tempdir();
    let (_path, mut v) = new_vault(dir.path());
    v.lock();
    let (m, s) = cred("example.com", b"0123456789abcdef", b"u", true);
    assert!(matches!(v.insert(&m, &s), Err(StoreError::Locked)));
    assert!(matches!(
        v.insert_credential(&m, &s),
        Err(VaultError::NotUnlocked)
    ));
    v.unlock(PIN, at(0)).unwrap();
    v.insert(&m, &s).unwrap();
    v.lock();
    assert!(matches!(v.secrets(&m.id), Err(StoreError::Locked)));
    // Metadata can be read while locked; the counter (tagged with the vault
    // key) cannot be bumped.
    assert_eq!(v.find("example.com", None).unwrap().len(), 1);
    assert!(matches!(
        v.next_sign_count(&m.id, 5),
        Err(StoreError::Locked)
    ));
    v.unlock(PIN, at(1)).unwrap();
    assert_eq!(v.next_sign_count(&m.id, 5).unwrap(), 1);
}

#[test]
fn capacity_limit() {
    let dir = common::tempdir();
    let (_path, mut v) = new_vault(dir.path());
    assert_eq!(v.capacity(), hybrid_vault::DEFAULT_CAPACITY);
    v.set_capacity(2);
    let (a, sa) = cred("example.com", b"id-a-0123456789a", b"alice", true);
    let (b, sb) = cred("example.com", b"id-b-0123456789a", b"bob", true);
    let (c, sc) = cred("example.com", b"id-c-0123456789a", b"carol", true);
    v.insert(&a, &sa).unwrap();
    v.insert(&b, &sb).unwrap();
    assert!(matches!(v.insert(&c, &sc), Err(StoreError::Full)));
    assert_eq!(v.count().unwrap(), 2);
    // Replacing alice's credential fits.
    let (a2, sa2) = cred("example.com", b"id-a2-0123456789", b"alice", true);
    v.insert(&a2, &sa2).unwrap();
    assert_eq!(v.count().unwrap(), 2);
}

#[test]
fn allow_list_of_1000_ids() {
    let dir = common::tempdir();
    let (_path, mut v) = new_vault(dir.path());
    let (template, secrets) = cred_with_key("example.com", b"template", b"", false, &[7u8; 32]);
    let creds: Vec<_> = (0..2000u32)
        .map(|i| {
            let mut m = template.clone();
            m.rp_id = if i % 2 == 0 {
                "example.com"
            } else {
                "other.org"
            }
            .into();
            m.id = format!("credential-{i:06}").into_bytes();
            m.user_id = i.to_be_bytes().to_vec();
            m.discoverable = i % 3 == 0;
            (m, secrets.clone())
        })
        .collect();
    v.insert_all(creds.iter().map(|(m, s)| (m, s))).unwrap();
    assert_eq!(v.count().unwrap(), 2000);
    // 1000 IDs: 500 of example.com, 500 of other.org.
    let allow: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| format!("credential-{i:06}").into_bytes())
        .collect();
    // Its time is a benchmark (`vault/*/find/by_1000_ids` in benches/vault.rs),
    // not a wall-clock assertion here.
    let found = v.find("example.com", Some(&allow)).unwrap();
    assert_eq!(found.len(), 500);
    assert!(found.iter().all(|m| m.rp_id == "example.com"));
    // Newest first.
    assert_eq!(found[0].id, b"credential-000998");
    assert_eq!(found[499].id, b"credential-000000");
}
