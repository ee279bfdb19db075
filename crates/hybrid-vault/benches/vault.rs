//! Vault benchmarks: `find` by RP (discoverable lookup) and by credential ID
//! (one, 64 and 1000 IDs) with 10 and 100 000 credentials stored, a durable `insert` (one
//! transaction, fsync'd commit, cheap Argon2 — the KDF is not involved), a
//! durable counter bump, and `unlock` with the default Argon2id parameters.
//!
//! Run: `cargo bench -p hybrid-vault -- --warm-up-time 1 --measurement-time 3`

// A benchmark harness, like a test: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::os::unix::fs::PermissionsExt;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hybrid_ctap::store::{CredentialMeta, CredentialSecrets, CredentialStore};
use hybrid_vault::{KdfParams, Vault};
use zeroize::Zeroizing;

const PIN: &str = "2468";
const TARGET_RP: &str = "bench.example";

fn meta(rp: &str, id: Vec<u8>, user: Vec<u8>) -> CredentialMeta {
    CredentialMeta {
        id,
        rp_id: rp.to_owned(),
        rp_name: Some("Bench".into()),
        user_id: user,
        user_name: Some("user@example.com".into()),
        user_display_name: Some("A User".into()),
        algorithm: -7,
        public_key_cose: vec![0xA5; 77],
        discoverable: true,
        cred_protect: 1,
        sign_count: 0,
        created_unix: 1_700_000_000,
        last_used_unix: None,
    }
}

fn secrets() -> CredentialSecrets {
    CredentialSecrets {
        private_key: Zeroizing::new(vec![0x42; 32]),
        prf_secret: [0x17; 32],
        cred_blob: None,
        large_blob_key: Some([0x33; 32]),
    }
}

fn cred_id(i: u64) -> Vec<u8> {
    let mut id = b"bench-credential".to_vec();
    id.extend_from_slice(&i.to_be_bytes());
    id
}

/// A vault with `n` credentials: 5 (or `n`) of them at [`TARGET_RP`], the rest
/// spread over 1000 other RPs; built with one bulk transaction.
fn build(n: u64) -> (tempfile::TempDir, Vault) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut v = Vault::create(
        dir.path().join("vault.db"),
        PIN,
        KdfParams::INSECURE_FOR_TESTS,
    )
    .unwrap();
    v.set_capacity(u64::MAX);
    let s = secrets();
    let creds: Vec<CredentialMeta> = (0..n)
        .map(|i| {
            let rp = if i < 5 {
                TARGET_RP.to_owned()
            } else {
                format!("rp{}.example", i % 1000)
            };
            meta(&rp, cred_id(i), i.to_be_bytes().to_vec())
        })
        .collect();
    v.insert_all(creds.iter().map(|m| (m, &s))).unwrap();
    assert_eq!(v.count().unwrap(), n);
    (dir, v)
}

fn bench_find_and_insert(c: &mut Criterion) {
    for n in [10u64, 100_000] {
        let (_dir, mut v) = build(n);
        let mut g = c.benchmark_group(format!("vault/{n}"));
        g.bench_function(BenchmarkId::new("find", "by_rp"), |b| {
            b.iter(|| {
                let r = v.find(black_box(TARGET_RP), None).unwrap();
                assert_eq!(r.len(), 5);
            })
        });
        let one = vec![cred_id(3)];
        g.bench_function(BenchmarkId::new("find", "by_id"), |b| {
            b.iter(|| {
                let r = v.find(black_box(TARGET_RP), Some(&one)).unwrap();
                assert_eq!(r.len(), 1);
            })
        });
        let allow: Vec<Vec<u8>> = (0..64).map(|i| cred_id(i * 7)).collect();
        g.bench_function(BenchmarkId::new("find", "by_64_ids"), |b| {
            b.iter(|| black_box(v.find(black_box(TARGET_RP), Some(&allow)).unwrap()))
        });
        // The allow list of 1000 IDs that tests/vault.rs `allow_list_of_1000_ids`
        // checks for correctness (its time is measured here, not asserted there).
        let allow_1000: Vec<Vec<u8>> = (0..1000).map(cred_id).collect();
        g.bench_function(BenchmarkId::new("find", "by_1000_ids"), |b| {
            b.iter(|| black_box(v.find(black_box(TARGET_RP), Some(&allow_1000)).unwrap()))
        });
        g.bench_function("secrets", |b| {
            b.iter(|| black_box(v.secrets(&one[0]).unwrap()))
        });
        g.bench_function("next_sign_count", |b| {
            b.iter(|| black_box(v.next_sign_count(&one[0], 1_800_000_000).unwrap()))
        });
        let s = secrets();
        let mut next = 1_000_000_000u64;
        g.bench_function("insert", |b| {
            b.iter(|| {
                next += 1;
                v.insert(
                    &meta("new.example", cred_id(next), next.to_be_bytes().to_vec()),
                    &s,
                )
                .unwrap();
            })
        });
        g.finish();
    }
}

fn bench_unlock(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut v = Vault::create(dir.path().join("vault.db"), PIN, KdfParams::DEFAULT).unwrap();
    let mut g = c.benchmark_group("vault");
    g.sample_size(10);
    g.bench_function("unlock_argon2id_default", |b| {
        b.iter(|| v.unlock(PIN, SystemTime::now()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench_find_and_insert, bench_unlock);
criterion_main!(benches);
