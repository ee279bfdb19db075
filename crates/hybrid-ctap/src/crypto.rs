//! Credential keys: generation, signing and COSE_Key encoding (RFC 9053 /
//! WebAuthn §6.5.1.1), and the PRF/hmac-secret evaluation (CTAP 2.1 §12.5).

use hmac::{Hmac, Mac};
use hybrid_cbor::Value;
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::cbor::{b, i};
use crate::error::Error;
use crate::status::Ctap2Status;
use crate::store::{COSE_EDDSA, COSE_ES256};

/// A freshly generated credential key pair.
pub(crate) struct NewKey {
    /// Secret bytes as stored (P-256 scalar / Ed25519 seed).
    pub private_key: Zeroizing<Vec<u8>>,
    /// Canonical COSE_Key of the public key.
    pub public_key_cose: Vec<u8>,
}

/// Generates a key for `alg` ([`COSE_ES256`] or [`COSE_EDDSA`]).
pub(crate) fn generate(alg: i64, rng: &mut impl CryptoRngCore) -> Result<NewKey, Error> {
    match alg {
        COSE_ES256 => {
            let sk = p256::ecdsa::SigningKey::random(rng);
            let private_key = Zeroizing::new(sk.to_bytes().to_vec());
            let point = sk.verifying_key().to_encoded_point(false);
            let (x, y) = match (point.x(), point.y()) {
                (Some(x), Some(y)) => (x.to_vec(), y.to_vec()),
                _ => return Err(Error::Status(Ctap2Status::Other)),
            };
            Ok(NewKey {
                private_key,
                public_key_cose: cose_es256(&x, &y),
            })
        }
        COSE_EDDSA => {
            let mut seed = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(seed.as_mut());
            let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
            let x = sk.verifying_key().to_bytes();
            Ok(NewKey {
                private_key: Zeroizing::new(seed.to_vec()),
                public_key_cose: cose_ed25519(&x),
            })
        }
        _ => Err(Error::Status(Ctap2Status::UnsupportedAlgorithm)),
    }
}

/// `{1: 2, 3: -7, -1: 1, -2: x, -3: y}` (EC2, ES256, P-256).
pub fn cose_es256(x: &[u8], y: &[u8]) -> Vec<u8> {
    hybrid_cbor::to_canonical_vec(&Value::Map(vec![
        (i(1), i(2)),
        (i(3), i(COSE_ES256)),
        (i(-1), i(1)),
        (i(-2), b(x)),
        (i(-3), b(y)),
    ]))
}

/// `{1: 1, 3: -8, -1: 6, -2: x}` (OKP, EdDSA, Ed25519).
pub fn cose_ed25519(x: &[u8]) -> Vec<u8> {
    hybrid_cbor::to_canonical_vec(&Value::Map(vec![
        (i(1), i(1)),
        (i(3), i(COSE_EDDSA)),
        (i(-1), i(6)),
        (i(-2), b(x)),
    ]))
}

/// Signs `message` with a stored credential key: ES256 → DER-encoded ECDSA
/// signature (WebAuthn §6.5.5); EdDSA → the raw 64-byte signature.
pub(crate) fn sign(alg: i64, private_key: &[u8], message: &[u8]) -> Result<Vec<u8>, Error> {
    use p256::ecdsa::signature::Signer;
    match alg {
        COSE_ES256 => {
            let sk = p256::ecdsa::SigningKey::from_slice(private_key)
                .map_err(|_| Error::Status(Ctap2Status::Other))?;
            let sig: p256::ecdsa::Signature = sk.sign(message);
            Ok(sig.to_der().as_bytes().to_vec())
        }
        COSE_EDDSA => {
            let seed: [u8; 32] = private_key
                .try_into()
                .map_err(|_| Error::Status(Ctap2Status::Other))?;
            let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
            Ok(sk.sign(message).to_bytes().to_vec())
        }
        _ => Err(Error::Status(Ctap2Status::UnsupportedAlgorithm)),
    }
}

/// SHA-256 (rpIdHash etc.).
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// `HMAC-SHA256(key, salt)`: the hmac-secret `CredRandom` evaluation that PRF
/// over hybrid uses directly on the already-hashed salt
/// (hybrid-protocol.md §7.4; CTAP 2.1 §12.5). Shared with a future
/// encrypted-salt `hmac-secret`, which only adds the transport encryption.
pub fn prf_evaluate(key: &[u8; 32], salt: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    mac.update(salt);
    mac.finalize().into_bytes().into()
}
