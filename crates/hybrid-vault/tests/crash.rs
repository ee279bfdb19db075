//! Crash safety: a child process creates credentials and bumps counters,
//! announcing each on stdout only after the commit returned; the parent
//! SIGKILLs it at random moments and checks that nothing announced was lost.
//!
//! The child is this same test binary, re-invoked with [`CHILD_ENV`] set and
//! filtered to the `crash_child` test.

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
    let exe = std::env::current_exe().unwrap();

    let mut created: Vec<Vec<u8>> = Vec::new();
    let mut counters: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut bumps = 0usize;
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Lines go through a thread so the parent can wait for "ready".
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            // Only complete lines count: each was printed after a durable commit.
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0
                    || line.last() != Some(&b'\n')
                {
                    break;
                }
                if tx
                    .send(String::from_utf8_lossy(&line).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        });
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
        let all: HashMap<Vec<u8>, _> = v
            .list()
            .unwrap()
            .into_iter()
            .map(|m| (m.id.clone(), m))
            .collect();
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
