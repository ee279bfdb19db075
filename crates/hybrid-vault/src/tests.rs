//! In-crate tests that need private state (the vault key).

use std::time::{Duration, UNIX_EPOCH};

use hybrid_ctap::store::{CredentialMeta, CredentialSecrets, CredentialStore};
use zeroize::Zeroizing;

use crate::write_tx::Commit;
use crate::{pin, KdfParams, Vault, VaultError};

const PIN: &str = "PIN-3141-plaintext";

fn pattern(seed: u8) -> [u8; 32] {
    core::array::from_fn(|i| {
        seed.wrapping_mul(31)
            .wrapping_add((i as u8).wrapping_mul(17))
            ^ 0xA5
    })
}

fn read_all(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![path.to_owned()];
    files.extend(crate::fsperm::side_files(path));
    files
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p.display().to_string(), b)))
        .collect()
}

fn assert_absent(files: &[(String, Vec<u8>)], needles: &[(&str, Vec<u8>)]) {
    // Every 12-byte piece of every secret (so a partial copy is caught too).
    const PIECE: usize = 12;
    let mut pieces = std::collections::HashMap::new();
    for (what, needle) in needles {
        assert!(needle.len() >= 4);
        if needle.len() < PIECE {
            for (name, bytes) in files {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                    "{what} found in clear in {name}"
                );
            }
        }
        for w in needle.windows(PIECE) {
            pieces.insert(w.to_vec(), *what);
        }
    }
    for (name, bytes) in files {
        for w in bytes.windows(PIECE) {
            if let Some(what) = pieces.get(w) {
                panic!("{what} found in clear in {name}");
            }
        }
    }
}

/// A temporary directory only its owner may enter (as a vault's must be).
fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    dir
}

/// `PRAGMA synchronous` on the vault's connection.
fn synchronous(v: &Vault) -> i64 {
    v.conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap()
}

/// `synchronous = FULL`.
const FULL: i64 = 2;

/// A test vault in a private directory, locked; the directory (kept for
/// the test's life) and the vault's path.
fn locked_vault() -> (tempfile::TempDir, std::path::PathBuf, Vault) {
    let dir = private_dir();
    let path = dir.path().join("vault.db");
    let mut v = Vault::create(&path, PIN, KdfParams::INSECURE_FOR_TESTS).unwrap();
    v.lock();
    (dir, path, v)
}

#[test]
fn no_secret_appears_in_the_files() {
    let dir = private_dir();
    let path = dir.path().join("vault.db");
    let params = KdfParams::INSECURE_FOR_TESTS;
    let mut v = Vault::create(&path, PIN, params).unwrap();
    let vault_key = v.key.as_ref().unwrap().expose().to_vec();
    let meta_key = v.meta_key.as_ref().unwrap().expose().to_vec();
    let mut needles: Vec<(&str, Vec<u8>)> = vec![
        ("PIN", PIN.as_bytes().to_vec()),
        ("vault key", vault_key),
        ("metadata key", meta_key),
    ];
    for i in 0..20u8 {
        let private = pattern(i);
        let prf = pattern(i + 100);
        let lbk = pattern(i + 200);
        let blob = pattern(i + 50).to_vec();
        let meta = meta(i);
        let secrets = CredentialSecrets {
            private_key: Zeroizing::new(private.to_vec()),
            prf_secret: prf,
            cred_blob: Some(blob.clone()),
            large_blob_key: Some(lbk),
        };
        v.insert(&meta, &secrets).unwrap();
        v.next_sign_count(&meta.id, 2).unwrap();
        needles.push(("private key", private.to_vec()));
        needles.push(("prf secret", prf.to_vec()));
        needles.push(("large blob key", lbk.to_vec()));
        needles.push(("cred blob", blob));
    }
    // The PIN-derived key too.
    let rec = super::vault::tests_support::salt_and_params(&v);
    let kek = pin::derive_kek(PIN, &rec.0, rec.1).unwrap();
    needles.push(("PIN-derived key", kek.to_vec()));

    // While open (WAL and shm present)…
    let files = read_all(&path);
    assert!(files.len() >= 2, "expected the WAL to exist");
    assert_absent(&files, &needles);
    // …after a PIN change…
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    v.change_pin(PIN, "9876", now).unwrap();
    needles.push(("new PIN", b"9876".to_vec()));
    assert_absent(&read_all(&path), &needles);
    // …and after closing.
    drop(v);
    assert_absent(&read_all(&path), &needles);
}

#[test]
fn the_unlocked_keys_sit_in_locked_memory() {
    let (_dir, _, mut v) = locked_vault();
    assert_eq!(v.key_in_locked_memory(), None);
    v.unlock(PIN, std::time::SystemTime::now()).unwrap();
    // Locking needs RLIMIT_MEMLOCK ≥ a page (8 MiB by default) or
    // CAP_IPC_LOCK; hybrid-secmem's own tests count the pages.
    if cfg!(target_os = "linux") {
        assert_eq!(v.key_in_locked_memory(), Some(true));
        assert!(v.meta_key.as_ref().unwrap().is_locked());
    }
    v.lock();
    assert_eq!(v.key_in_locked_memory(), None);
}

/// The reset after a correct PIN is committed without its own fsync
/// (`Commit::Unsynced`); the attempts are counted with one, the commit
/// after the reset syncs again (the connection back at `FULL`), and the
/// counter is reset.
#[test]
fn the_pin_reset_alone_is_unsynced_and_the_next_commit_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("private").join("v.db");
    let mut v = Vault::create(&path, PIN, KdfParams::INSECURE_FOR_TESTS).unwrap();
    assert_eq!(synchronous(&v), FULL);
    v.lock();
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert!(v.unlock("0000", now).is_err());
    assert_eq!(v.pin_status().unwrap().failures, 1);
    v.lock();
    v.unlock(PIN, now + Duration::from_secs(5)).unwrap();
    assert_eq!(
        v.sync.log,
        [Commit::Synced, Commit::Synced, Commit::Unsynced],
        "two counted attempts, then the reset"
    );
    assert_eq!(v.pin_status().unwrap().failures, 0);
    let (m, s) = cred(3);
    v.insert(&m, &s).unwrap();
    assert_eq!(v.sync.log.last(), Some(&Commit::Synced));
    assert_eq!(synchronous(&v), FULL, "the insert ran at FULL");
    // Reopened (the reset reached the file, not only the connection).
    drop(v);
    let v = Vault::open(&path).unwrap();
    assert_eq!(v.pin_status().unwrap().failures, 0);
    assert_eq!(synchronous(&v), FULL);
}

/// A discoverable credential's metadata at example.com, numbered `n`.
fn meta(n: u8) -> CredentialMeta {
    CredentialMeta {
        id: vec![n; 16],
        rp_id: "example.com".into(),
        rp_name: None,
        user_id: vec![n],
        user_name: None,
        user_display_name: None,
        algorithm: -7,
        public_key_cose: vec![0; 8],
        discoverable: true,
        cred_protect: 2,
        sign_count: 0,
        created_unix: 1,
        last_used_unix: None,
    }
}

fn cred(n: u8) -> (CredentialMeta, CredentialSecrets) {
    (
        meta(n),
        CredentialSecrets {
            private_key: Zeroizing::new(pattern(n).to_vec()),
            prf_secret: pattern(n + 1),
            cred_blob: None,
            large_blob_key: None,
        },
    )
}

/// Signature counters reserved in blocks: within a block a sign-in
/// commits without a sync (`Commit::Unsynced`); the end of a block, and
/// the first sign-in of a process, reserve with a synced commit.
#[test]
fn counters_within_a_block_commit_without_a_sync_of_their_own() {
    let dir = private_dir();
    let path = dir.path().join("vault.db");
    let mut v = Vault::create(&path, PIN, KdfParams::INSECURE_FOR_TESTS).unwrap();
    let (m, s) = cred(1);
    v.insert(&m, &s).unwrap();
    let reserved = |v: &Vault| -> u32 {
        v.conn
            .query_row(
                "SELECT sign_count_reserved FROM credentials WHERE id = ?1",
                [&m.id],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(
        reserved(&v),
        crate::COUNTER_BLOCK,
        "the insert reserved a block"
    );
    for n in 1..=crate::COUNTER_BLOCK {
        assert_eq!(v.next_sign_count(&m.id, u64::from(n)).unwrap(), n);
        assert_eq!(reserved(&v), crate::COUNTER_BLOCK);
        assert_eq!(v.sync.log.last(), Some(&Commit::Unsynced));
    }
    // The block is used up: the next bump reserves a new one, synced.
    let next = crate::COUNTER_BLOCK + 1;
    assert_eq!(v.next_sign_count(&m.id, 99).unwrap(), next);
    assert_eq!(v.sync.log.last(), Some(&Commit::Synced));
    assert_eq!(synchronous(&v), FULL);
    assert_eq!(reserved(&v), next + crate::COUNTER_BLOCK - 1);
    assert_eq!(v.next_sign_count(&m.id, 100).unwrap(), next + 1);
    let listed = v.list().unwrap();
    assert_eq!(
        (listed[0].sign_count, listed[0].last_used_unix),
        (next + 1, Some(100))
    );
}

/// A power loss between two synced commits: the files go back to what
/// the last synced commit left (simulated by copying them then and
/// putting the copy back). The vault must never hand out a counter value
/// it handed out before the loss.
#[test]
fn a_power_loss_never_makes_a_counter_repeat() {
    let dir = private_dir();
    let path = dir.path().join("vault.db");
    let mut v = Vault::create(&path, PIN, KdfParams::INSECURE_FOR_TESTS).unwrap();
    let (m, s) = cred(2);
    v.insert(&m, &s).unwrap();
    // What is on disk after the insert's synced commit.
    let files = read_all(&path);
    let mut handed_out = Vec::new();
    for t in 0..5 {
        handed_out.push(v.next_sign_count(&m.id, t).unwrap());
    }
    drop(v);
    for (name, bytes) in &files {
        std::fs::write(name, bytes).unwrap();
    }
    let [wal, shm, _] = crate::fsperm::side_files(&path);
    if !files.iter().any(|(n, _)| *n == wal.display().to_string()) {
        let _ = std::fs::remove_file(&wal);
    }
    let _ = std::fs::remove_file(&shm);
    let mut v = Vault::open(&path).unwrap();
    v.unlock(PIN, std::time::SystemTime::now()).unwrap();
    let stored = v.list().unwrap()[0].sign_count;
    assert!(
        stored < *handed_out.last().unwrap(),
        "the loss rolled the count back"
    );
    let after = v.next_sign_count(&m.id, 10).unwrap();
    assert!(
        handed_out.iter().all(|&n| after > n),
        "{after} after {handed_out:?}"
    );
    // A second "restart" without a loss skips at most one block.
    drop(v);
    let mut v = Vault::open(&path).unwrap();
    v.unlock(PIN, std::time::SystemTime::now()).unwrap();
    let again = v.next_sign_count(&m.id, 11).unwrap();
    assert!(again > after && again <= after + crate::COUNTER_BLOCK);
}

/// The daemon's PIN check in steps (`begin_unlock`, `finish_unlock`):
/// the count is written at once, without a sync of its own (another
/// connection sees it, so a killed process keeps it), and a wrong PIN
/// syncs it before the failure is reported.
#[test]
fn a_begun_attempt_is_written_at_once_and_a_wrong_pin_syncs_it_before_it_is_reported() {
    let (_dir, path, mut v) = locked_vault();
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let attempt = v.begin_unlock("0000", now).unwrap();
    assert!(v.unsynced_attempt());
    assert_eq!(v.wal_syncs, 0, "counted without a sync of its own");
    let other = Vault::open(&path).unwrap();
    assert_eq!(other.pin_status().unwrap().failures, 1, "written at once");
    drop(other);
    let err = v.finish_unlock(attempt.derive()).unwrap_err();
    assert!(matches!(err, VaultError::WrongPin { .. }), "{err:?}");
    assert_eq!(v.wal_syncs, 1, "synced before the wrong PIN was reported");
    assert!(!v.unsynced_attempt());
    v.make_durable().unwrap();
    assert_eq!(v.wal_syncs, 1, "nothing left to sync");
}

/// After a correct PIN the count waits for the vault's next synced commit
/// — a new credential, or a signature counter, which then commits with a
/// sync even inside its block — or for `make_durable`; never two syncs.
#[test]
fn after_a_correct_pin_the_next_synced_commit_carries_the_count() {
    let (_dir, path, mut v) = locked_vault();
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let unlock = |v: &mut Vault| {
        let attempt = v.begin_unlock(PIN, now).unwrap();
        v.finish_unlock(attempt.derive()).unwrap();
        assert!(
            v.unsynced_attempt(),
            "a correct PIN leaves the sync to what follows"
        );
    };
    unlock(&mut v);
    let (m, s) = cred(1);
    v.insert(&m, &s).unwrap();
    assert!(
        !v.unsynced_attempt(),
        "the insert's synced commit carried it"
    );
    v.make_durable().unwrap();
    assert_eq!(v.wal_syncs, 0);

    v.lock();
    unlock(&mut v);
    assert_eq!(v.next_sign_count(&m.id, 10).unwrap(), 1);
    assert!(!v.unsynced_attempt(), "the counter's commit carried it");
    assert_eq!(synchronous(&v), FULL);
    assert_eq!(v.wal_syncs, 0);
    // Within the block and with nothing waiting: no sync of its own again.
    assert_eq!(v.next_sign_count(&m.id, 11).unwrap(), 2);

    v.lock();
    unlock(&mut v);
    v.make_durable().unwrap();
    assert_eq!(v.wal_syncs, 1, "nothing else carried it");
    assert!(!v.unsynced_attempt());
    drop(v);
    let v = Vault::open(&path).unwrap();
    assert_eq!(v.pin_status().unwrap().failures, 0);
}
