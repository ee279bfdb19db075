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
///
/// ES256 keys come from AWS-LC's key generation (`EC_KEY_generate_key`:
/// a scalar from AWS-LC's DRBG, uniform in [1, n-1], and its public point by
/// one fixed-base multiplication); `rng` is used for EdDSA only. Loading a
/// scalar drawn from `rng` instead costs two multiplications: the public
/// point, then AWS-LC's check that the key is consistent
/// (`EC_KEY_check_key`; docs/performance.md, "Phone: twelfth round").
pub(crate) fn generate(alg: i64, rng: &mut impl CryptoRngCore) -> Result<NewKey, Error> {
    match alg {
        COSE_ES256 => {
            use aws_lc_rs::encoding::AsBigEndian;
            use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
            let other = |_| Error::Status(Ctap2Status::Other);
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).map_err(other)?;
            // A zeroizing buffer inside aws-lc-rs, copied into ours.
            let scalar = pair.private_key().as_be_bytes().map_err(other)?;
            if scalar.as_ref().len() != 32 {
                return Err(Error::Status(Ctap2Status::Other));
            }
            let private_key = Zeroizing::new(scalar.as_ref().to_vec());
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
///
/// `public_key_cose` is the credential's stored COSE_Key. For ES256 its
/// point goes to AWS-LC with the scalar, which then only checks that the
/// two agree (one fixed-base multiplication) instead of computing the point
/// and then checking it (two); a key whose stored point is not our own
/// canonical encoding is loaded from the scalar alone, and a point that does
/// not match the scalar is refused (`Other`), as a damaged key would be.
pub(crate) fn sign(
    alg: i64,
    private_key: &[u8],
    public_key_cose: &[u8],
    message: &[u8],
) -> Result<Vec<u8>, Error> {
    use ed25519_dalek::Signer;
    match alg {
        COSE_ES256 => es256_sign(
            &es256_key_pair(private_key, es256_point(public_key_cose).as_ref())?,
            message,
        ),
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

/// Length of [`cose_es256`]'s output: the map head, three one-byte pairs,
/// and two 32-byte coordinates with their keys and byte-string heads.
const COSE_ES256_LEN: usize = 77;
/// Where x and y start in [`cose_es256`]'s output.
const COSE_ES256_X: usize = 10;
const COSE_ES256_Y: usize = 45;

/// The uncompressed SEC1 point (`04 || x || y`) of a COSE_Key exactly as
/// [`cose_es256`] writes it; `None` for any other bytes (the caller then
/// lets AWS-LC compute the point).
fn es256_point(cose: &[u8]) -> Option<[u8; 65]> {
    if cose.len() != COSE_ES256_LEN {
        return None;
    }
    let x = cose.get(COSE_ES256_X..COSE_ES256_X + 32)?;
    let y = cose.get(COSE_ES256_Y..COSE_ES256_Y + 32)?;
    // Everything around the coordinates must be what we write.
    if cose_es256(x, y) != cose {
        return None;
    }
    let mut point = [0u8; 65];
    point[0] = 0x04;
    point[1..33].copy_from_slice(x);
    point[33..].copy_from_slice(y);
    Some(point)
}

impl NewKey {
    /// [`sign`] with this key, without loading it again for ES256.
    pub(crate) fn sign(&self, alg: i64, message: &[u8]) -> Result<Vec<u8>, Error> {
        match (&self.es256, alg) {
            (Some(pair), COSE_ES256) => es256_sign(pair, message),
            _ => sign(alg, &self.private_key, &self.public_key_cose, message),
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
/// (32) ... }`: the fields up to the key bytes (SEC 1 v2 §C.4, RFC 5915 §3;
/// the optional `parameters` left out: the curve is given).
const EC_PRIVATE_KEY_FIELDS: [u8; 5] = [0x02, 0x01, 0x01, 0x04, 0x20];
/// The optional `publicKey [1] BIT STRING` up to the 65-byte uncompressed
/// point (no unused bits). Without it AWS-LC computes the point.
const EC_PUBLIC_KEY_FIELD_HEAD: [u8; 5] = [0xa1, 0x44, 0x03, 0x42, 0x00];

/// An AWS-LC ES256 (P-256, SHA-256, ASN.1 signatures) key pair for a stored
/// 32-byte scalar and, when known, its uncompressed public point.
///
/// Why AWS-LC: ES256 signing was 12.6 % of the phone daemon's CPU per
/// ceremony with p256 0.13, half of it `SigningKey::from_slice` recomputing
/// the public key with a generic scalar multiplication
/// (docs/performance.md, "Phone: fourth round"). AWS-LC parses the key
/// (`EC_KEY_parse_private_key`), computes the public point with its
/// precomputed fixed-base tables when `point` is `None`, and in every case
/// checks the pair (`EC_KEY_check_key`: the point is on the curve and is the
/// scalar's), so a point that does not belong to the scalar is refused. It
/// signs with a fresh RNG-hedged nonce (valid ECDSA, FIPS 186-5 §6.4; p256
/// used RFC 6979's deterministic nonce — verifiers cannot tell).
///
/// Zeroization: the DER we hand in is a [`Zeroizing`] buffer; inside
/// AWS-LC the scalar is an `EC_KEY`'s `EC_WRAPPED_SCALAR`, released through
/// `EC_KEY_free` → `OPENSSL_free`, which cleanses every allocation before
/// freeing it (AWS-LC `crypto/fipsmodule/ec/ec_key.c`, `crypto/mem.c`; see
/// hybrid-noise's `dh` module for the details).
fn es256_key_pair(
    private_key: &[u8],
    point: Option<&[u8; 65]>,
) -> Result<aws_lc_rs::signature::EcdsaKeyPair, Error> {
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    if private_key.len() != 32 {
        return Err(Error::Status(Ctap2Status::Other));
    }
    let body = EC_PRIVATE_KEY_FIELDS.len()
        + 32
        + point.map_or(0, |p| EC_PUBLIC_KEY_FIELD_HEAD.len() + p.len());
    // 42 or 107 bytes: the SEQUENCE's length is in DER's one-byte short form.
    let body_len = u8::try_from(body)
        .ok()
        .filter(|n| *n < 0x80)
        .ok_or(Error::Status(Ctap2Status::Other))?;
    // Allocated once at its final size: no copy of the key is left behind
    // by a reallocation.
    let mut der = Zeroizing::new(Vec::with_capacity(2 + body));
    der.extend_from_slice(&[0x30, body_len]);
    der.extend_from_slice(&EC_PRIVATE_KEY_FIELDS);
    der.extend_from_slice(private_key);
    if let Some(point) = point {
        der.extend_from_slice(&EC_PUBLIC_KEY_FIELD_HEAD);
        der.extend_from_slice(point);
    }
    EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, &der)
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
            // With the stored point, without it (a COSE_Key in another
            // encoding), and with the pair loaded at generation.
            for cose in [&key.public_key_cose[..], b"not our encoding"] {
                let der = sign(COSE_ES256, &key.private_key, cose, msg).unwrap();
                let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
                assert!(vk.verify(msg, &sig).is_ok());
                assert!(vk.verify(b"another message", &sig).is_err());
            }
            let der = key.sign(COSE_ES256, msg).unwrap();
            let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
            assert!(vk.verify(msg, &sig).is_ok());
        }
    }

    #[test]
    fn the_point_is_read_from_exactly_our_cose_encoding() {
        let key = generate(COSE_ES256, &mut OsRng).unwrap();
        let cose = &key.public_key_cose;
        assert_eq!(cose.len(), COSE_ES256_LEN);
        let point = es256_point(cose).unwrap();
        let vk = p256_verifying_key(&key);
        assert_eq!(point[..], vk.to_encoded_point(false).as_bytes()[..]);
        // Any other byte around the coordinates, or another length: no point.
        for at in (0..COSE_ES256_X).chain(COSE_ES256_X + 32..COSE_ES256_Y) {
            let mut other = cose.clone();
            other[at] ^= 1;
            assert!(es256_point(&other).is_none(), "byte {at}");
        }
        assert!(es256_point(&cose[..76]).is_none());
        assert!(es256_point(&[cose.as_slice(), &[0]].concat()).is_none());
    }

    #[test]
    fn a_stored_point_that_is_not_the_scalars_is_refused() {
        let key = generate(COSE_ES256, &mut OsRng).unwrap();
        let other = generate(COSE_ES256, &mut OsRng).unwrap();
        assert!(matches!(
            sign(COSE_ES256, &key.private_key, &other.public_key_cose, b"m"),
            Err(Error::Status(Ctap2Status::Other))
        ));
        // A point off the curve (y changed) is refused as well.
        let mut off = key.public_key_cose.clone();
        off[COSE_ES256_LEN - 1] ^= 1;
        assert!(sign(COSE_ES256, &key.private_key, &off, b"m").is_err());
    }

    #[test]
    fn es256_refuses_malformed_private_keys() {
        let n = hex::decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
            .unwrap();
        let cose = generate(COSE_ES256, &mut OsRng).unwrap().public_key_cose;
        for bad in [&[0u8; 32][..], &[0xff; 32], &n, &[1; 31], &[1; 33], &[]] {
            assert!(sign(COSE_ES256, bad, b"", b"m").is_err(), "{bad:02x?}");
            assert!(sign(COSE_ES256, bad, &cose, b"m").is_err(), "{bad:02x?}");
        }
    }
}
