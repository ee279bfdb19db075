//! AES-256-GCM sealing and the compact encoding of [`CredentialSecrets`].
//!
//! A sealed blob is `nonce (12) ‖ ciphertext ‖ tag (16)`, with a fresh random
//! nonce per seal. The associated data binds each blob to its place: the vault
//! key to its vault's identity and KDF parameters ([`vault_key_aad`]), a
//! credential's secrets to its credential ID, so rows cannot be swapped or
//! moved between credentials.
//!
//! Credential *metadata* (kept in clear for lookups before the PIN) is
//! authenticated by an HMAC-SHA256 tag per row ([`MetaKey`]) under a key
//! derived from the vault key: an edit of any column is detected once the
//! vault is unlocked.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use hybrid_ctap::store::{CredentialMeta, CredentialSecrets};
use hybrid_secmem::LockedBytes;
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::VaultError;

/// Length of every symmetric key here (vault key, PIN-derived key).
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Associated data of the sealed vault key in key format 1 (schema version
/// 1): a constant, so a sealed key was not tied to its vault. Read only to
/// migrate such a vault.
pub(crate) const AAD_VAULT_KEY_V1: &[u8] = b"hybridd-vault/v1/vault-key";
const AAD_VAULT_KEY_V2: &[u8] = b"hybridd-vault/v2/vault-key";
const AAD_CREDENTIAL_PREFIX: &[u8] = b"hybridd-vault/v1/credential/";
/// HKDF info of the metadata key.
const META_KEY_INFO: &[u8] = b"hybridd-vault/v2/credential-metadata-key";
/// Domain label at the start of every tagged metadata encoding.
const META_LABEL: &[u8] = b"hybridd-vault/v2/credential-metadata";
/// Length of a vault's random identity.
pub const VAULT_ID_LEN: usize = 16;
/// Length of a metadata tag (HMAC-SHA256).
pub const META_TAG_LEN: usize = 32;

/// Version byte of the secrets encoding.
const SECRETS_V1: u8 = 1;
const FLAG_CRED_BLOB: u8 = 1;
const FLAG_LARGE_BLOB_KEY: u8 = 2;

/// A 256-bit symmetric key in locked memory that holds only such keys
/// ([`hybrid_secmem::LockedBytes`]: a slot of its locked pool page; not
/// swapped, not in core dumps), wiped on drop, never printed.
#[derive(Clone)]
pub(crate) struct SecretKey(LockedBytes<KEY_LEN>);

impl SecretKey {
    pub(crate) fn random() -> Result<Self, VaultError> {
        let mut k = LockedBytes::zeroed();
        fill_random(k.bytes_mut())?;
        Ok(Self(k))
    }

    pub(crate) fn from_bytes(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        Self(LockedBytes::from_slice(&bytes))
    }

    /// A key copied from `bytes` (which the caller wipes), if they are
    /// exactly [`KEY_LEN`] long.
    pub(crate) fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut k = LockedBytes::<KEY_LEN>::zeroed();
        if bytes.len() != KEY_LEN {
            return None;
        }
        k.bytes_mut().copy_from_slice(bytes);
        Some(Self(k))
    }

    /// Lends the raw key bytes to `f` (for sealing the key itself).
    pub(crate) fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self.0.bytes())
    }

    /// Whether the key sits in locked memory (see [`LockedBytes::is_locked`]).
    pub(crate) fn is_locked(&self) -> bool {
        self.0.is_locked()
    }

    #[cfg(test)]
    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        self.0.bytes()
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.bytes().into())
    }
}

impl core::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// Fills `buf` from the operating system's RNG.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), VaultError> {
    OsRng
        .try_fill_bytes(buf)
        .map_err(|e| VaultError::Rng(e.to_string()))
}

/// Seals `plaintext` under `key` with associated data `aad`.
pub(crate) fn seal(key: &SecretKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    // Room for the tag up front, so the plaintext is never left behind in a
    // reallocated buffer.
    let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
    buf.extend_from_slice(plaintext);
    key.cipher()
        .encrypt_in_place(&Nonce::from(nonce), aad, &mut *buf)
        .map_err(|_| VaultError::InvalidData("secrets too large to seal"))?;
    let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&buf);
    Ok(out)
}

/// Opens a blob made by [`seal`]; any mismatch (key, AAD, bit flip) is
/// `Err(Decrypt)`. The tag check is constant-time inside `aes-gcm`.
pub(crate) fn open(
    key: &SecretKey,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let (nonce, ct) = sealed
        .split_at_checked(NONCE_LEN)
        .ok_or(VaultError::Decrypt)?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| VaultError::Decrypt)?;
    if ct.len() < TAG_LEN {
        return Err(VaultError::Decrypt);
    }
    let mut buf = Zeroizing::new(ct.to_vec());
    key.cipher()
        .decrypt_in_place(&Nonce::from(nonce), aad, &mut *buf)
        .map_err(|_| VaultError::Decrypt)?;
    Ok(buf)
}

/// Associated data of the sealed vault key in key format 2: binds it to the
/// vault's identity, its Argon2 salt and parameters and its "made for tests"
/// flag, so none of them can be swapped in from another vault or lowered
/// (`vault_id ‖ salt` are length-prefixed; the costs are big-endian u32).
pub(crate) fn vault_key_aad(
    vault_id: &[u8],
    salt: &[u8],
    params: crate::pin::KdfParams,
    for_tests: bool,
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_VAULT_KEY_V2.len() + 8 + vault_id.len() + salt.len() + 13);
    aad.extend_from_slice(AAD_VAULT_KEY_V2);
    put_bytes(&mut aad, vault_id);
    put_bytes(&mut aad, salt);
    for n in [params.m_cost_kib, params.t_cost, params.p_cost] {
        aad.extend_from_slice(&n.to_be_bytes());
    }
    aad.push(u8::from(for_tests));
    aad
}

/// Appends `u32 length ‖ bytes` (lengths here are far below 4 GiB; a longer
/// field is cut off at the length the prefix states, which keeps the
/// encoding injective).
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes.get(..len as usize).unwrap_or(bytes));
}

fn put_opt_text(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_bytes(out, s.as_bytes());
        }
    }
}

/// The key that tags credential metadata: HKDF-SHA256 (RFC 5869) of the
/// vault key, salted with the vault's identity.
/// Held like [`SecretKey`], in locked memory.
pub(crate) struct MetaKey(LockedBytes<KEY_LEN>);

impl core::fmt::Debug for MetaKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MetaKey(..)")
    }
}

impl MetaKey {
    pub(crate) fn derive(vault_key: &SecretKey, vault_id: &[u8]) -> Result<Self, VaultError> {
        let mut out = LockedBytes::zeroed();
        let hk = hkdf::Hkdf::<Sha256>::new(Some(vault_id), vault_key.0.bytes());
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
        hk.expand(META_KEY_INFO, out.bytes_mut())
            .map_err(|_| VaultError::Kdf("HKDF refused a 32-byte output".into()))?;
        Ok(MetaKey(out))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC zero-pads keys shorter than SHA-256's 64-byte block
        // (RFC 2104), so the padded block is the same key, and infallible.
        let mut block = Zeroizing::new([0u8; 64]);
        for (d, s) in block.iter_mut().zip(self.0.bytes().iter()) {
            *d = *s;
        }
        let block: &[u8; 64] = &block;
        <Hmac<Sha256> as KeyInit>::new(block.into())
    }

    /// The tag of `meta` (every field, in a fixed injective encoding).
    pub(crate) fn tag(&self, meta: &CredentialMeta) -> [u8; META_TAG_LEN] {
        let mut m = self.mac();
        m.update(&encode_meta(meta));
        m.finalize().into_bytes().into()
    }

    /// Whether `tag` is `meta`'s tag (constant-time comparison).
    pub(crate) fn verify(&self, meta: &CredentialMeta, tag: &[u8]) -> bool {
        let mut m = self.mac();
        m.update(&encode_meta(meta));
        m.verify_slice(tag).is_ok()
    }

    #[cfg(test)]
    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        self.0.bytes()
    }

    #[cfg(test)]
    pub(crate) fn is_locked(&self) -> bool {
        self.0.is_locked()
    }
}

/// The tagged encoding of a credential's metadata: a domain label, then every
/// field of [`CredentialMeta`] in declaration order (byte strings and texts
/// length-prefixed, options with a presence byte, integers big-endian).
fn encode_meta(m: &CredentialMeta) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        META_LABEL.len()
            + 64
            + m.id.len()
            + m.rp_id.len()
            + m.user_id.len()
            + m.public_key_cose.len(),
    );
    out.extend_from_slice(META_LABEL);
    put_bytes(&mut out, &m.id);
    put_bytes(&mut out, m.rp_id.as_bytes());
    put_opt_text(&mut out, m.rp_name.as_deref());
    put_bytes(&mut out, &m.user_id);
    put_opt_text(&mut out, m.user_name.as_deref());
    put_opt_text(&mut out, m.user_display_name.as_deref());
    out.extend_from_slice(&m.algorithm.to_be_bytes());
    put_bytes(&mut out, &m.public_key_cose);
    out.push(u8::from(m.discoverable));
    out.push(m.cred_protect);
    out.extend_from_slice(&m.sign_count.to_be_bytes());
    out.extend_from_slice(&m.created_unix.to_be_bytes());
    match m.last_used_unix {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&t.to_be_bytes());
        }
    }
    out
}

/// Associated data for the secrets of credential `id`.
pub(crate) fn credential_aad(id: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_CREDENTIAL_PREFIX.len() + id.len());
    aad.extend_from_slice(AAD_CREDENTIAL_PREFIX);
    aad.extend_from_slice(id);
    aad
}

/// Encodes secrets as
/// `1 ‖ len16 ‖ private_key ‖ prf_secret[32] ‖ flags ‖ [len16 ‖ cred_blob] ‖ [large_blob_key[32]]`.
pub(crate) fn encode_secrets(s: &CredentialSecrets) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let pk_len = u16::try_from(s.private_key.len())
        .map_err(|_| VaultError::InvalidData("private key longer than 65535 bytes"))?;
    let mut out = Zeroizing::new(Vec::with_capacity(
        1 + 2 + s.private_key.len() + 32 + 1 + 2 + s.cred_blob.as_ref().map_or(0, Vec::len) + 32,
    ));
    out.push(SECRETS_V1);
    out.extend_from_slice(&pk_len.to_be_bytes());
    out.extend_from_slice(&s.private_key);
    out.extend_from_slice(&s.prf_secret);
    let flags = if s.cred_blob.is_some() {
        FLAG_CRED_BLOB
    } else {
        0
    } | if s.large_blob_key.is_some() {
        FLAG_LARGE_BLOB_KEY
    } else {
        0
    };
    out.push(flags);
    if let Some(blob) = &s.cred_blob {
        let len = u16::try_from(blob.len())
            .map_err(|_| VaultError::InvalidData("credBlob longer than 65535 bytes"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(blob);
    }
    if let Some(k) = &s.large_blob_key {
        out.extend_from_slice(k);
    }
    Ok(out)
}

/// A cursor over the encoded secrets; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], VaultError> {
        let (head, tail) = self.0.split_at_checked(n).ok_or_else(corrupt_secrets)?;
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, VaultError> {
        self.take(1)?.first().copied().ok_or_else(corrupt_secrets)
    }
    fn u16(&mut self) -> Result<usize, VaultError> {
        let b: [u8; 2] = self.take(2)?.try_into().map_err(|_| corrupt_secrets())?;
        Ok(usize::from(u16::from_be_bytes(b)))
    }
    fn array32(&mut self) -> Result<[u8; 32], VaultError> {
        self.take(32)?.try_into().map_err(|_| corrupt_secrets())
    }
}

fn corrupt_secrets() -> VaultError {
    VaultError::Corrupt("malformed credential secrets".into())
}

/// Decodes [`encode_secrets`]' output.
pub(crate) fn decode_secrets(bytes: &[u8]) -> Result<CredentialSecrets, VaultError> {
    let mut r = Reader(bytes);
    if r.u8()? != SECRETS_V1 {
        return Err(corrupt_secrets());
    }
    let pk_len = r.u16()?;
    let private_key = Zeroizing::new(r.take(pk_len)?.to_vec());
    let prf_secret = r.array32()?;
    let flags = r.u8()?;
    if flags & !(FLAG_CRED_BLOB | FLAG_LARGE_BLOB_KEY) != 0 {
        return Err(corrupt_secrets());
    }
    let cred_blob = if flags & FLAG_CRED_BLOB != 0 {
        let n = r.u16()?;
        Some(r.take(n)?.to_vec())
    } else {
        None
    };
    let large_blob_key = if flags & FLAG_LARGE_BLOB_KEY != 0 {
        Some(r.array32()?)
    } else {
        None
    };
    if !r.0.is_empty() {
        return Err(corrupt_secrets());
    }
    Ok(CredentialSecrets {
        private_key,
        prf_secret,
        cred_blob,
        large_blob_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secrets(pk: Vec<u8>, blob: Option<Vec<u8>>, lbk: Option<[u8; 32]>) -> CredentialSecrets {
        CredentialSecrets {
            private_key: Zeroizing::new(pk),
            prf_secret: [7; 32],
            cred_blob: blob,
            large_blob_key: lbk,
        }
    }

    proptest! {
        #[test]
        fn secrets_roundtrip(pk in proptest::collection::vec(any::<u8>(), 0..80),
                             blob in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
                             lbk in proptest::option::of(any::<[u8; 32]>())) {
            let s = secrets(pk.clone(), blob.clone(), lbk);
            let d = decode_secrets(&encode_secrets(&s).unwrap()).unwrap();
            prop_assert_eq!(&*d.private_key, &pk);
            prop_assert_eq!(d.prf_secret, [7; 32]);
            prop_assert_eq!(&d.cred_blob, &blob);
            prop_assert_eq!(d.large_blob_key, lbk);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_secrets(&bytes);
        }
    }

    #[test]
    fn aad_binds_blob_to_credential() {
        let key = SecretKey::random().unwrap();
        let sealed = seal(&key, &credential_aad(b"id-1"), b"secret").unwrap();
        assert_eq!(
            &**open(&key, &credential_aad(b"id-1"), &sealed).unwrap(),
            b"secret"
        );
        assert!(matches!(
            open(&key, &credential_aad(b"id-2"), &sealed),
            Err(VaultError::Decrypt)
        ));
        let other = SecretKey::random().unwrap();
        assert!(matches!(
            open(&other, &credential_aad(b"id-1"), &sealed),
            Err(VaultError::Decrypt)
        ));
        let mut flipped = sealed.clone();
        flipped[14] ^= 1;
        assert!(open(&key, &credential_aad(b"id-1"), &flipped).is_err());
        assert!(open(&key, b"", &[0; 5]).is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let key = SecretKey::from_bytes(Zeroizing::new([0xAB; 32]));
        assert_eq!(format!("{key:?}"), "SecretKey(..)");
    }
}
