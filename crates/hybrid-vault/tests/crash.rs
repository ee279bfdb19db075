//! Crash safety: a child process creates credentials and bumps counters,
//! announcing each on stdout only after the commit returned; the parent
//! SIGKILLs it at random moments and checks that nothing announced was lost.
//!
//! The child is this same test binary, re-invoked with [`CHILD_ENV`] set and
//! filtered to the `crash_child` test.
//!
//! The migration of a version-1 vault (on its first unlock) gets the same
//! treatment: [`migration_survives_sigkill_at_random_points`].

// Helpers outside #[test] fns are not covered by clippy.toml's test exemptions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use hybrid_ctap::store::CredentialStore;
use hybrid_vault::Vault;
use rand_core::{OsRng, RngCore};

const CHILD_ENV: &str = "HYBRID_VAULT_CRASH_CHILD";
const KILLS: usize = 60;

/// An instant later than any delay a killed unlock can have left behind (a
/// child killed inside `unlock` has already counted its attempt).
fn parent_now() -> SystemTime {
    SystemTime::now() + hybrid_vault::MAX_DELAY + Duration::from_secs(1)
}

/// The child's body; a no-op unless started by `survives_sigkill_at_random_points`.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut v = Vault::open(Path::new(&path)).unwrap();
    v.unlock(PIN, SystemTime::now()).unwrap();
    let mut ids: Vec<Vec<u8>> = v.list().unwrap().into_iter().map(|m| m.id).collect();
    let mut out = std::io::stdout().lock();
    // libtest has printed "test crash_child ... " without a newline.
    writeln!(out, "\nready").unwrap();
    out.flush().unwrap();
    for i in 0u64.. {
        if ids.is_empty() || i % 4 == 0 {
            let id = random_id();
            let (m, s) = cred("crash.example", &id, &id, i % 2 == 0);
            v.insert(&m, &s).unwrap();
            writeln!(out, "created {}", hex::encode(&id)).unwrap();
            ids.push(id);
        } else {
            let pick = usize::try_from(OsRng.next_u64() % ids.len() as u64).unwrap();
            let id = &ids[pick];
            let n = v.next_sign_count(id, i).unwrap();
            writeln!(out, "count {} {n}", hex::encode(id)).unwrap();
        }
        out.flush().unwrap();
    }
}

#[test]
fn survives_sigkill_at_random_points() {
    let started = Instant::now();
    let dir = tempdir();
    let (path, v) = new_vault(dir.path());
    drop(v);

    let mut created: Vec<Vec<u8>> = Vec::new();
    let mut counters: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut bumps = 0usize;
    for round in 0..KILLS {
        let (mut child, rx, reader) = spawn_child("crash_child", CHILD_ENV, &path);
        let mut lines = Vec::new();
        // Even rounds: the delay runs from the spawn (kills land in open/unlock
        // too); odd rounds: from the child's "ready" (kills land in the loop).
        if round % 2 == 1 {
            for l in rx.iter() {
                let ready = l.trim() == "ready";
                lines.push(l);
                if ready {
                    break;
                }
            }
        }
        let delay = Duration::from_millis(OsRng.next_u64() % 51);
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());

        let mut new_ids = Vec::new();
        for text in &lines {
            let words: Vec<&str> = text.split_whitespace().collect();
            match words.as_slice() {
                ["created", id] => new_ids.push(hex::decode(id).unwrap()),
                ["count", id, n] => {
                    let n: u32 = n.parse().unwrap();
                    let e = counters.entry(hex::decode(id).unwrap()).or_default();
                    assert!(n > *e, "counter went backwards in the child: {n} after {e}");
                    *e = n;
                    bumps += 1;
                }
                _ => {} // "ready" and libtest's own chatter
            }
        }
        created.extend(new_ids.iter().cloned());

        // Reopen and check everything announced so far.
        let mut v = Vault::open(&path).unwrap();
        v.unlock(PIN, parent_now()).unwrap();
        let all = by_id(&v);
        for id in &created {
            let meta = all
                .get(id)
                .unwrap_or_else(|| panic!("round {round}: credential {} lost", hex::encode(id)));
            let secrets = v.secrets(id).unwrap();
            if new_ids.contains(id) {
                assert_signs(meta, &secrets);
            }
        }
        for (id, n) in &counters {
            let meta = &all[id];
            assert!(
                meta.sign_count >= *n,
                "round {round}: counter {} < announced {n}",
                meta.sign_count
            );
        }
        assert_eq!(v.count().unwrap(), all.len() as u64);
    }
    println!(
        "crash test: {KILLS} SIGKILLs, {} credentials and {bumps} counter bumps announced and verified, {:?}",
        created.len(),
        started.elapsed()
    );
    assert!(
        !created.is_empty() && bumps > 0,
        "the child never got going"
    );
}

const MIGRATION_CHILD_ENV: &str = "HYBRID_VAULT_MIGRATION_CHILD";
const MIGRATION_KILLS: usize = 16;

/// The migration child: opens a version-1 vault (layout upgrade), unlocks it
/// (key binding, row tags, KDF upgrade: one transaction), announces
/// "migrated", then bumps counters like [`crash_child`].
#[test]
fn migration_child() {
    let Ok(path) = std::env::var(MIGRATION_CHILD_ENV) else {
        return;
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nready").unwrap();
    out.flush().unwrap();
    let mut v = Vault::open(Path::new(&path)).unwrap();
    v.unlock(PIN, SystemTime::now()).unwrap();
    let ids: Vec<Vec<u8>> = v.list().unwrap().into_iter().map(|m| m.id).collect();
    writeln!(out, "migrated").unwrap();
    out.flush().unwrap();
    for i in 0u64.. {
        let id = &ids[usize::try_from(OsRng.next_u64() % ids.len() as u64).unwrap()];
        let n = v.next_sign_count(id, 1_800_000_000 + i).unwrap();
        writeln!(out, "count {} {n}", hex::encode(id)).unwrap();
        out.flush().unwrap();
    }
}

/// Every credential's metadata by ID.
fn by_id(v: &Vault) -> HashMap<Vec<u8>, hybrid_ctap::store::CredentialMeta> {
    v.list()
        .unwrap()
        .into_iter()
        .map(|m| (m.id.clone(), m))
        .collect()
}

/// A fresh copy of a version-1 fixture.
fn v1_fixture(dir: &Path, name: &str) -> std::path::PathBuf {
    let dst = dir.join("vault.db");
    for p in [dst.clone()]
        .into_iter()
        .chain(["-wal", "-shm", "-journal"].map(|s| dir.join(format!("vault.db{s}"))))
    {
        let _ = std::fs::remove_file(p);
    }
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
        &dst,
    )
    .unwrap();
    std::fs::set_permissions(
        &dst,
        std::os::unix::fs::PermissionsExt::from_mode(hybrid_vault::FILE_MODE),
    )
    .unwrap();
    dst
}

/// Starts this test binary filtered to the child test `name`, with `env`
/// set to the vault path; returns it with a channel of its complete stdout
/// lines (only complete lines count: each was printed after a durable
/// commit), read by a thread so the parent can wait for "ready".
fn spawn_child(
    name: &str,
    env: &str,
    path: &Path,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<()>,
) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 || line.last() != Some(&b'\n')
            {
                break;
            }
            if tx
                .send(String::from_utf8_lossy(&line).trim().to_owned())
                .is_err()
            {
                break;
            }
        }
    });
    (child, rx, reader)
}

/// Starts the migration child on `path` and waits for its "ready".
fn spawn_migration_child(
    path: &Path,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<()>,
) {
    let (child, rx, reader) = spawn_child("migration_child", MIGRATION_CHILD_ENV, path);
    for l in rx.iter() {
        if l == "ready" {
            break;
        }
    }
    (child, rx, reader)
}

fn key_format(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT key_format FROM vault_meta", [], |r| r.get(0))
        .unwrap_or(1) // the version-1 layout has no such column
}

/// SIGKILL during the migration of a version-1 vault, at random points
/// (layout upgrade at open, both Argon2 runs, the one migration
/// transaction, the first counter bumps after it). Afterwards the vault must
/// open with the right PIN, hold every credential with its metadata, decrypt
/// and sign with each, and no counter may be below the fixture's or an
/// announced value. The kill delays span the measured length of an
/// uninterrupted migration, so kills land both before and after its commit
/// (asserted: otherwise the test would prove nothing).
#[test]
fn migration_survives_sigkill_at_random_points() {
    let started = Instant::now();
    let dir = tempdir();
    let (mut before_commit, mut after_commit) = (0usize, 0usize);
    for fixture in ["vault-v1-19mib.db", "vault-v1-test-kdf.db"] {
        let rounds = MIGRATION_KILLS / 2;
        // How long an uninterrupted migration takes here (not asserted: it
        // only sets the range of kill delays).
        let path = v1_fixture(dir.path(), fixture);
        let (mut child, rx, reader) = spawn_migration_child(&path);
        let t0 = Instant::now();
        let migrated = rx.iter().any(|l| l == "migrated");
        let span = t0.elapsed();
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        assert!(migrated, "{fixture}: the child never migrated");
        let fixture_started = Instant::now();

        for round in 0..rounds {
            let path = v1_fixture(dir.path(), fixture);
            let fixture_counts: HashMap<Vec<u8>, (u32, CredentialSnapshot)> = snapshot(&path);
            let (mut child, rx, reader) = spawn_migration_child(&path);
            let max_ms = u64::try_from(span.as_millis()).unwrap() * 13 / 10 + 20;
            std::thread::sleep(Duration::from_millis(OsRng.next_u64() % max_ms));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            reader.join().unwrap();
            let mut announced: HashMap<Vec<u8>, u32> = HashMap::new();
            for text in rx.try_iter() {
                let words: Vec<&str> = text.split_whitespace().collect();
                if let ["count", id, n] = words.as_slice() {
                    let n: u32 = n.parse().unwrap();
                    let e = announced.entry(hex::decode(id).unwrap()).or_default();
                    assert!(n > *e, "counter went backwards in the child");
                    *e = n;
                }
            }
            if key_format(&path) == 2 {
                after_commit += 1;
            } else {
                before_commit += 1;
            }

            let mut v = Vault::open(&path).unwrap();
            v.unlock(PIN, parent_now())
                .unwrap_or_else(|e| panic!("{fixture} round {round}: {e}"));
            assert_eq!(
                key_format(&path),
                2,
                "{fixture} round {round}: not migrated"
            );
            let all = by_id(&v);
            assert_eq!(all.len(), fixture_counts.len(), "{fixture} round {round}");
            for (i, (id, (count, snap))) in fixture_counts.iter().enumerate() {
                let meta = all
                    .get(id)
                    .unwrap_or_else(|| panic!("{fixture} round {round}: credential lost"));
                assert_eq!(
                    &CredentialSnapshot::of(meta),
                    snap,
                    "{fixture} round {round}"
                );
                let floor = (*count).max(announced.get(id).copied().unwrap_or(0));
                assert!(
                    meta.sign_count >= floor,
                    "{fixture} round {round}: counter {} < {floor}",
                    meta.sign_count
                );
                // Every credential decrypts every round; signing (slow in a
                // debug build) covers the bumped ones and a rotating share,
                // so that each credential signs in one round of the fixture.
                let secrets = v.secrets(id).unwrap();
                if announced.contains_key(id) || i % rounds == round {
                    assert_signs(meta, &secrets);
                }
            }
            assert_eq!(v.count().unwrap(), all.len() as u64);
        }
        println!(
            "{fixture}: uninterrupted migration {span:?}; {rounds} rounds in {:?}",
            fixture_started.elapsed()
        );
    }
    println!(
        "migration crash test: {MIGRATION_KILLS} SIGKILLs, {before_commit} before the \
         migration committed, {after_commit} after, {:?}",
        started.elapsed()
    );
    assert!(
        before_commit > 0 && after_commit > 0,
        "kills landed only {} the migration's commit: widen the delays",
        if before_commit == 0 {
            "after"
        } else {
            "before"
        }
    );
}

/// The metadata a migration must carry over unchanged.
#[derive(Debug, PartialEq, Eq)]
struct CredentialSnapshot {
    rp_id: String,
    user_id: Vec<u8>,
    user_name: Option<String>,
    discoverable: bool,
    cred_protect: u8,
    public_key: Vec<u8>,
}

impl CredentialSnapshot {
    fn of(m: &hybrid_ctap::store::CredentialMeta) -> Self {
        CredentialSnapshot {
            rp_id: m.rp_id.clone(),
            user_id: m.user_id.clone(),
            user_name: m.user_name.clone(),
            discoverable: m.discoverable,
            cred_protect: m.cred_protect,
            public_key: m.public_key_cose.clone(),
        }
    }
}

/// Every credential of a version-1 file, read with plain SQL.
fn snapshot(path: &Path) -> HashMap<Vec<u8>, (u32, CredentialSnapshot)> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut stmt = c
        .prepare(
            "SELECT id, rp_id, user_id, user_name, discoverable, cred_protect, \
             public_key_cose, sign_count FROM credentials",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                (
                    r.get::<_, u32>(7)?,
                    CredentialSnapshot {
                        rp_id: r.get(1)?,
                        user_id: r.get(2)?,
                        user_name: r.get(3)?,
                        discoverable: r.get(4)?,
                        cred_protect: r.get(5)?,
                        public_key: r.get(6)?,
                    },
                ),
            ))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}
