//! End-to-end CTAP benchmarks over the real vault: `Authenticator::process`
//! (request bytes in, response bytes out) with an unlocked [`Vault`] as the
//! credential store, a user double that always approves with UV, a fake
//! clock and a seeded RNG.
//!
//! * `ctap/<n>/get_assertion/allow_list` — getAssertion with a one-entry
//!   allowList (credential ID lookup, secrets, ECDSA P-256 signature,
//!   durable counter bump);
//! * `ctap/<n>/get_assertion/discoverable` — empty allowList, the RP has one
//!   discoverable credential among `n`;
//! * `ctap/<n>/make_credential/es256` — a discoverable ES256 registration of
//!   a new account (key generation, sealing, durable insert, packed
//!   self-attestation);
//!
//! at `n` = 10 and 100 000 credentials. The vault is created once per size
//! with cheap Argon2 parameters and unlocked before anything is measured:
//! the PIN's key derivation is not part of any number. For the split of a
//! getAssertion, `ctap/memstore/*` runs the same requests over the in-memory
//! test store and `ecdsa_p256/*` measures the bare signature and key
//! generation.
//!
//! Run: `cargo bench -p hybrid-tests --bench ctap -- --warm-up-time 1 --measurement-time 3`

// A benchmark harness, like a test: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::os::unix::fs::PermissionsExt;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use hybrid_ctap::rp::{RegisteredCredential, RelyingParty};
use hybrid_ctap::store::{CredentialMeta, CredentialSecrets, CredentialStore, COSE_ES256};
use hybrid_ctap::testing::{test_authenticator, SeededRng, TestEnv};
use hybrid_ctap::types::UserEntity;
use hybrid_ctap::{Authenticator, Config, RequestContext};
use hybrid_vault::{KdfParams, Vault};
use rand_core::RngCore;
use zeroize::Zeroizing;

const PIN: &str = "2468";
/// The RP the getAssertion benches sign in to: exactly one (discoverable)
/// credential there, whatever the vault size.
const TARGET_RP: &str = "bench.example";
/// The RP the makeCredential bench registers new accounts at.
const REGISTER_RP: &str = "register.example";
/// Credentials created through the authenticator (real keys); the rest of
/// the vault is bulk-inserted.
const HANDFUL: u64 = 5;
/// RPs the bulk credentials are spread over.
const OTHER_RPS: u64 = 1000;

/// The production store with the test doubles for everything else.
type VaultEnv = TestEnv<Vault>;

fn user(i: u64) -> UserEntity {
    UserEntity {
        id: format!("user-{i:016}").into_bytes(),
        name: Some(format!("user{i}@example.com")),
        display_name: Some(format!("User {i}")),
    }
}

fn client_data_hash(tag: u8) -> [u8; 32] {
    [tag; 32]
}

/// Registers one discoverable ES256 credential at `rp` through `process`
/// and checks the response as the RP would.
fn register<S: CredentialStore>(
    auth: &mut Authenticator<TestEnv<S>>,
    rp: &RelyingParty,
    user: UserEntity,
) -> RegisteredCredential {
    let cdh = client_data_hash(0x11);
    let frame = rp.make_credential_request(cdh, user, true).to_frame();
    let resp = auth.process_scripted(&frame, &RequestContext::default());
    let (cred, _) = rp.verify_registration(&cdh, &resp, true).unwrap();
    assert_eq!(cred.algorithm, COSE_ES256);
    cred
}

struct Fixture {
    _dir: tempfile::TempDir,
    auth: Authenticator<VaultEnv>,
    rp: RelyingParty,
    target: RegisteredCredential,
}

/// A vault with `n` credentials: [`HANDFUL`] made through the authenticator
/// (one at [`TARGET_RP`], the others at other RPs), the rest inserted in one
/// transaction with random 32-byte IDs, spread over [`OTHER_RPS`] RPs.
fn build(n: u64) -> Fixture {
    assert!(n >= HANDFUL);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut vault = Vault::create(
        dir.path().join("vault.db"),
        PIN,
        KdfParams::INSECURE_FOR_TESTS,
    )
    .unwrap();
    // The default capacity is exactly 100 000; the makeCredential bench
    // adds accounts on top of a full-size vault.
    vault.set_capacity(u64::MAX);
    let mut auth = Authenticator::new(Config::default(), VaultEnv::with_store(vault, n));

    let rp = RelyingParty::new(TARGET_RP, "Bench");
    let target = register(&mut auth, &rp, user(0));
    for i in 1..HANDFUL {
        let other = RelyingParty::new(&format!("rp{i}.example"), "Other");
        register(&mut auth, &other, user(i));
    }

    let mut ids = SeededRng::new(0xB01C);
    let secrets = CredentialSecrets {
        private_key: Zeroizing::new(vec![0x42; 32]),
        prf_secret: [0x17; 32],
        cred_blob: None,
        large_blob_key: None,
    };
    let bulk: Vec<CredentialMeta> = (HANDFUL..n)
        .map(|i| {
            let mut id = vec![0u8; 32];
            ids.fill_bytes(&mut id);
            let u = user(i);
            CredentialMeta {
                id,
                rp_id: format!("rp{}.example", i % OTHER_RPS),
                rp_name: Some("Other".into()),
                user_id: u.id,
                user_name: u.name,
                user_display_name: u.display_name,
                algorithm: COSE_ES256,
                public_key_cose: target.public_key_cose.clone(),
                discoverable: true,
                cred_protect: 1,
                sign_count: 0,
                created_unix: 1_700_000_000,
                last_used_unix: None,
            }
        })
        .collect();
    let store = &mut auth.env_mut().store;
    store
        .insert_all(bulk.iter().map(|m| (m, &secrets)))
        .unwrap();
    assert_eq!(store.count().unwrap(), n);
    // As the daemon does at the start of a session: the PIN unlocks the
    // vault (cheap Argon2 here, and outside the measurements).
    store.lock();
    store.unlock(PIN, SystemTime::now()).unwrap();
    auth.env_mut().user.shown.clear();
    Fixture {
        _dir: dir,
        auth,
        rp,
        target,
    }
}

/// Runs `frame` once and checks the assertion as the RP would.
fn check_assertion<S: CredentialStore>(
    auth: &mut Authenticator<TestEnv<S>>,
    rp: &RelyingParty,
    target: &RegisteredCredential,
    frame: &[u8],
    cdh: &[u8],
) {
    let resp = auth.process_scripted(frame, &RequestContext::default());
    let mut creds = vec![target.clone()];
    let (index, _) = rp.verify_assertion(&mut creds, cdh, &resp, true).unwrap();
    assert_eq!(index, 0);
}

fn bench_vault(c: &mut Criterion) {
    let ctx = RequestContext::default();
    for n in [10u64, 100_000] {
        let Fixture {
            _dir,
            mut auth,
            rp,
            target,
        } = build(n);
        let cdh = client_data_hash(0x22);
        let by_id = rp
            .get_assertion_request(cdh, std::slice::from_ref(&target.id))
            .to_frame();
        let discoverable = rp.get_assertion_request(cdh, &[]).to_frame();
        check_assertion(&mut auth, &rp, &target, &by_id, &cdh);
        check_assertion(&mut auth, &rp, &target, &discoverable, &cdh);

        let mut g = c.benchmark_group(format!("ctap/{n}"));
        for (name, frame) in [("allow_list", &by_id), ("discoverable", &discoverable)] {
            g.bench_function(format!("get_assertion/{name}"), |b| {
                b.iter(|| {
                    let resp = auth.process_scripted(black_box(frame), &ctx);
                    assert_eq!(resp[0], 0, "getAssertion failed: {resp:02x?}");
                    auth.env_mut().user.shown.clear();
                    resp
                })
            });
        }

        // New accounts at one RP: every request carries a fresh user handle,
        // so each one is a plain insert (no replacement of an older
        // credential). Building the request is not measured.
        let reg = RelyingParty::new(REGISTER_RP, "Register");
        register(&mut auth, &reg, user(u64::MAX));
        let mut next = 0u64;
        g.bench_function("make_credential/es256", |b| {
            b.iter_batched(
                || {
                    next += 1;
                    reg.make_credential_request(client_data_hash(0x33), user(next), true)
                        .to_frame()
                },
                |frame| {
                    let resp = auth.process_scripted(&frame, &ctx);
                    assert_eq!(resp[0], 0, "makeCredential failed: {resp:02x?}");
                    auth.env_mut().user.shown.clear();
                    resp
                },
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

/// The same requests over the in-memory test store: the CTAP and crypto
/// cost without SQLite and fsync.
fn bench_memstore(c: &mut Criterion) {
    let ctx = RequestContext::default();
    let mut auth = test_authenticator(1);
    let rp = RelyingParty::new(TARGET_RP, "Bench");
    let target = register(&mut auth, &rp, user(0));
    let cdh = client_data_hash(0x22);
    let by_id = rp
        .get_assertion_request(cdh, std::slice::from_ref(&target.id))
        .to_frame();
    check_assertion(&mut auth, &rp, &target, &by_id, &cdh);
    let mut g = c.benchmark_group("ctap/memstore");
    g.bench_function("get_assertion/allow_list", |b| {
        b.iter(|| {
            let resp = auth.process_scripted(black_box(&by_id), &ctx);
            assert_eq!(resp[0], 0);
            auth.env_mut().user.shown.clear();
            resp
        })
    });
    // Same user handle every time: the new credential replaces the previous
    // one, so the in-memory store does not grow.
    let frame = rp
        .make_credential_request(client_data_hash(0x33), user(1), true)
        .to_frame();
    g.bench_function("make_credential/es256", |b| {
        b.iter(|| {
            let resp = auth.process_scripted(black_box(&frame), &ctx);
            assert_eq!(resp[0], 0);
            auth.env_mut().user.shown.clear();
            resp
        })
    });
    g.finish();
}

/// The bare ECDSA P-256 operations the CTAP core performs (as
/// `hybrid_ctap::crypto` does them: key from bytes, sign, DER-encode).
fn bench_ecdsa(c: &mut Criterion) {
    use p256::ecdsa::signature::Signer;
    let mut rng = SeededRng::new(3);
    let sk = p256::ecdsa::SigningKey::random(&mut rng);
    let private_key = sk.to_bytes().to_vec();
    let msg = vec![0x5A; 37 + 32];
    let mut g = c.benchmark_group("ecdsa_p256");
    g.bench_function("sign", |b| {
        b.iter(|| {
            let sk = p256::ecdsa::SigningKey::from_slice(black_box(&private_key)).unwrap();
            let sig: p256::ecdsa::Signature = sk.sign(black_box(&msg));
            sig.to_der().as_bytes().to_vec()
        })
    });
    g.bench_function("keygen", |b| {
        b.iter(|| {
            let sk = p256::ecdsa::SigningKey::random(&mut rng);
            sk.verifying_key().to_encoded_point(false)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_vault, bench_memstore, bench_ecdsa);
criterion_main!(benches);
