//! AES-256-GCM sealing and the compact encoding of [`CredentialSecrets`].
//!
//! A sealed blob is `nonce (12) ‖ ciphertext ‖ tag (16)`, with a fresh random
//! nonce per seal. The associated data binds each blob to its place: the vault
//! key to the vault, a credential's secrets to its credential ID, so rows
//! cannot be swapped or moved between credentials.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hybrid_ctap::store::CredentialSecrets;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::error::VaultError;

/// Length of every symmetric key here (vault key, PIN-derived key).
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Associated data of the sealed vault key.
pub(crate) const AAD_VAULT_KEY: &[u8] = b"hybridd-vault/v1/vault-key";
const AAD_CREDENTIAL_PREFIX: &[u8] = b"hybridd-vault/v1/credential/";

/// Version byte of the secrets encoding.
const SECRETS_V1: u8 = 1;
const FLAG_CRED_BLOB: u8 = 1;
const FLAG_LARGE_BLOB_KEY: u8 = 2;

/// A 256-bit symmetric key, wiped on drop, never printed.
#[derive(Clone)]
pub(crate) struct SecretKey(Zeroizing<[u8; KEY_LEN]>);

impl SecretKey {
    pub(crate) fn random() -> Result<Self, VaultError> {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(k.as_mut())?;
        Ok(Self(k))
    }

    pub(crate) fn from_bytes(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        Self(bytes)
    }

    /// Lends the raw key bytes to `f` (for sealing the key itself).
    pub(crate) fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self.0.as_ref())
    }

    #[cfg(test)]
    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_ref().into())
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
