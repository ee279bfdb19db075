//! Helpers shared by the integration tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hybrid_ctap::store::{CredentialMeta, CredentialSecrets, COSE_ES256};
use hybrid_vault::{KdfParams, Vault};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

pub const PIN: &str = "2468";
pub const CHEAP: KdfParams = KdfParams::INSECURE_FOR_TESTS;

/// A wall-clock instant `secs` after an arbitrary origin.
pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

pub fn new_vault(dir: &Path) -> (PathBuf, Vault) {
    let path = dir.join("vault.db");
    let v = Vault::create(&path, PIN, CHEAP).unwrap();
    (path, v)
}

pub fn random_id() -> Vec<u8> {
    let mut id = vec![0u8; 16];
    OsRng.fill_bytes(&mut id);
    id
}

/// A credential with a fresh P-256 key; the "COSE key" here is just the SEC1 point.
pub fn cred(
    rp: &str,
    id: &[u8],
    user_id: &[u8],
    discoverable: bool,
) -> (CredentialMeta, CredentialSecrets) {
    let sk = SigningKey::random(&mut OsRng);
    cred_with_key(rp, id, user_id, discoverable, &sk.to_bytes())
}

pub fn cred_with_key(
    rp: &str,
    id: &[u8],
    user_id: &[u8],
    discoverable: bool,
    private: &[u8],
) -> (CredentialMeta, CredentialSecrets) {
    let sk = SigningKey::from_slice(private).unwrap();
    let pk = VerifyingKey::from(&sk)
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    let meta = CredentialMeta {
        id: id.to_vec(),
        rp_id: rp.to_owned(),
        rp_name: Some(format!("{rp} inc.")),
        user_id: user_id.to_vec(),
        user_name: Some("alice@example.com".into()),
        user_display_name: Some("Alice".into()),
        algorithm: COSE_ES256,
        public_key_cose: pk,
        discoverable,
        cred_protect: 1,
        sign_count: 0,
        created_unix: 1_700_000_000,
        last_used_unix: None,
    };
    let mut prf = [0u8; 32];
    OsRng.fill_bytes(&mut prf);
    let secrets = CredentialSecrets {
        private_key: Zeroizing::new(private.to_vec()),
        prf_secret: prf,
        cred_blob: Some(b"blob".to_vec()),
        large_blob_key: None,
    };
    (meta, secrets)
}

/// Signs with the stored private key and verifies with the stored public key.
pub fn assert_signs(meta: &CredentialMeta, secrets: &CredentialSecrets) {
    let sk = SigningKey::from_slice(&secrets.private_key).unwrap();
    let sig: Signature = sk.sign(b"challenge");
    let vk = VerifyingKey::from_sec1_bytes(&meta.public_key_cose).unwrap();
    vk.verify(b"challenge", &sig).unwrap();
}

/// A temporary directory with mode 0700 (the vault refuses looser ones).
pub fn tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}
