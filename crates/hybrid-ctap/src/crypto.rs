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
    /// The ES256 key pair as AWS-LC loaded it to compute the public key,
    /// kept for the self-attestation signature: loading a key costs two
    /// fixed-base multiplications (docs/performance.md, "Both benchmarks
    /// again on a quiet host"). `None` for EdDSA.
    es256: Option<aws_lc_rs::signature::EcdsaKeyPair>,
}

/// Generates a key for `alg` ([`COSE_ES256`] or [`COSE_EDDSA`]).
pub(crate) fn generate(alg: i64, rng: &mut impl CryptoRngCore) -> Result<NewKey, Error> {
    match alg {
        COSE_ES256 => {
            // The scalar from the caller's RNG (uniform in [1, n-1] by
            // rejection sampling; no point multiplication in p256), the
            // public point from AWS-LC's fixed-base multiplication.
            let sk = p256::SecretKey::random(rng);
            let private_key = Zeroizing::new(sk.to_bytes().to_vec());
            let pair = es256_key_pair(&private_key)?;
            use aws_lc_rs::signature::KeyPair;
            let point = pair.public_key().as_ref();
            let (x, y) = match (point.get(1..33), point.get(33..65), point.len()) {
                (Some(x), Some(y), 65) => (x, y),
                _ => return Err(Error::Status(Ctap2Status::Other)),
            };
            let public_key_cose = cose_es256(x, y);
            Ok(NewKey {
                private_key,
                public_key_cose,
                es256: Some(pair),
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
                es256: None,
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

/// Seeds AWS-LC's random generator, which [`sign`] uses for ES256. Its
/// first use collects jitter entropy: ≈ 60–80 ms of CPU once per process
/// (perf: `jent_*` under the first signature), which the first request
/// after start would otherwise wait for. A daemon calls this on the thread
/// that signs, before it serves (docs/performance.md, "Phone: sixth round").
pub fn warm_up() {
    let mut scratch = Zeroizing::new([0u8; 32]);
    // A failure here is the same failure the first signature would meet
    // and report; nothing to do about it now.
    let _ = aws_lc_rs::rand::fill(scratch.as_mut());
}

/// Signs `message` with a stored credential key: ES256 → DER-encoded ECDSA
/// signature (WebAuthn §6.5.5); EdDSA → the raw 64-byte signature.
pub(crate) fn sign(alg: i64, private_key: &[u8], message: &[u8]) -> Result<Vec<u8>, Error> {
    use ed25519_dalek::Signer;
    match alg {
        COSE_ES256 => es256_sign(&es256_key_pair(private_key)?, message),
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

impl NewKey {
    /// [`sign`] with this key, without loading it again for ES256.
    pub(crate) fn sign(&self, alg: i64, message: &[u8]) -> Result<Vec<u8>, Error> {
        match (&self.es256, alg) {
            (Some(pair), COSE_ES256) => es256_sign(pair, message),
            _ => sign(alg, &self.private_key, message),
        }
    }
}

/// ASN.1 DER (r, s) over SHA-256(message), as before with p256.
fn es256_sign(pair: &aws_lc_rs::signature::EcdsaKeyPair, message: &[u8]) -> Result<Vec<u8>, Error> {
    let sig = pair
        .sign(&aws_lc_rs::rand::SystemRandom::new(), message)
        .map_err(|_| Error::Status(Ctap2Status::Other))?;
    Ok(sig.as_ref().to_vec())
}

/// `ECPrivateKey ::= SEQUENCE { version INTEGER 1, privateKey OCTET STRING
/// (32) ... }` up to the key bytes (SEC 1 v2 §C.4, RFC 5915 §3; the optional
/// `parameters` and `publicKey` left out: the curve is given, the public key
/// is computed).
const EC_PRIVATE_KEY_HEAD: [u8; 7] = [0x30, 0x25, 0x02, 0x01, 0x01, 0x04, 0x20];

/// An AWS-LC ES256 (P-256, SHA-256, ASN.1 signatures) key pair for a stored
/// 32-byte scalar.
///
/// Why AWS-LC: ES256 signing was 12.6 % of the phone daemon's CPU per
/// ceremony with p256 0.13, half of it `SigningKey::from_slice` recomputing
/// the public key with a generic scalar multiplication
/// (docs/performance.md, "Phone: fourth round"). AWS-LC computes the public
/// point once, with its precomputed fixed-base tables, while parsing the key,
/// and signs with a fresh RNG-hedged nonce (valid ECDSA, FIPS 186-5 §6.4;
/// p256 used RFC 6979's deterministic nonce — verifiers cannot tell).
///
/// Zeroization: the DER we hand in is a [`Zeroizing`] buffer; inside
/// AWS-LC the scalar is an `EC_KEY`'s `EC_WRAPPED_SCALAR`, released through
/// `EC_KEY_free` → `OPENSSL_free`, which cleanses every allocation before
/// freeing it (AWS-LC `crypto/fipsmodule/ec/ec_key.c`, `crypto/mem.c`; see
/// hybrid-noise's `dh` module for the details).
fn es256_key_pair(private_key: &[u8]) -> Result<aws_lc_rs::signature::EcdsaKeyPair, Error> {
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    if private_key.len() != 32 {
        return Err(Error::Status(Ctap2Status::Other));
    }
    let mut der = Zeroizing::new([0u8; EC_PRIVATE_KEY_HEAD.len() + 32]);
    let (head, key) = der.split_at_mut(EC_PRIVATE_KEY_HEAD.len());
    head.copy_from_slice(&EC_PRIVATE_KEY_HEAD);
    key.copy_from_slice(private_key);
    EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, der.as_ref())
        .map_err(|_| Error::Status(Ctap2Status::Other))
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

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use rand_core::OsRng;

    /// The COSE key's point, checked against p256's own derivation.
    fn p256_verifying_key(key: &NewKey) -> p256::ecdsa::VerifyingKey {
        let sk = p256::ecdsa::SigningKey::from_slice(&key.private_key).unwrap();
        let vk = *sk.verifying_key();
        let point = vk.to_encoded_point(false);
        let expected = cose_es256(point.x().unwrap(), point.y().unwrap());
        assert_eq!(key.public_key_cose, expected);
        vk
    }

    #[test]
    fn es256_keys_and_signatures_verify_with_p256() {
        for _ in 0..8 {
            let key = generate(COSE_ES256, &mut OsRng).unwrap();
            let vk = p256_verifying_key(&key);
            let msg = b"authenticator data || client data hash";
            let der = sign(COSE_ES256, &key.private_key, msg).unwrap();
            let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
            assert!(vk.verify(msg, &sig).is_ok());
            assert!(vk.verify(b"another message", &sig).is_err());
        }
    }

    #[test]
    fn es256_refuses_malformed_private_keys() {
        let n = hex::decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
            .unwrap();
        for bad in [&[0u8; 32][..], &[0xff; 32], &n, &[1; 31], &[1; 33], &[]] {
            assert!(sign(COSE_ES256, bad, b"m").is_err(), "{bad:02x?}");
        }
    }
}
