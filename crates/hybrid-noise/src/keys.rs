//! P-256 helpers: identity keys from a seed (§2.3), point parsing and
//! encoding (§5.2 "Public keys on the wire are 65-byte uncompressed points"),
//! and raw ECDH.

use hkdf::Hkdf;
use p256::elliptic_curve::bigint::U256;
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{FieldBytes, NonZeroScalar, PublicKey, Scalar, SecretKey};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::Error;

/// Length of an uncompressed SEC1 P-256 point: `04 || X || Y`.
pub const P256_UNCOMPRESSED_LEN: usize = 65;

/// HKDF `info` of BoringSSL's `EC_KEY_derive_from_secret` for P-256 (§2.3;
/// the NIST curve name — "prime256v1" gives different keys).
const DERIVE_EC_KEY_INFO: &[u8] = b"derive EC key P-256";

/// BoringSSL `EC_KEY_derive_from_secret(P-256, seed)` (§2.3):
/// `d = int_be(HKDF-SHA256(IKM = seed, salt = empty, info = "derive EC key
/// P-256", L = 48)) mod n`.
///
/// Used for the desktop identity key (QR seed) and the phone identity key
/// (§9.1). The 48-byte integer is reduced as `hi · 2^256 + lo` with scalar
/// arithmetic (`hi` < 2^128 < n). Fails only if the result is zero
/// (probability 2^-256), which BoringSSL also rejects.
pub fn derive_p256_from_secret(seed: &[u8]) -> Result<SecretKey, Error> {
    let mut okm = Zeroizing::new([0u8; 48]);
    Hkdf::<Sha256>::new(None, seed)
        .expand(DERIVE_EC_KEY_INFO, okm.as_mut())
        // 48 <= 255 * 32: expand cannot fail; map it anyway rather than panic.
        .map_err(|_| Error::DerivedKeyZero)?;
    let (hi, lo) = okm.split_at(16);
    let mut hi_bytes = Zeroizing::new(FieldBytes::default());
    hi_bytes
        .get_mut(16..)
        .ok_or(Error::DerivedKeyZero)?
        .copy_from_slice(hi);
    let lo_arr: [u8; 32] = lo.try_into().map_err(|_| Error::DerivedKeyZero)?;
    let lo_bytes = Zeroizing::new(FieldBytes::from(lo_arr));
    let hi_s = <Scalar as Reduce<U256>>::reduce_bytes(&hi_bytes);
    let lo_s = <Scalar as Reduce<U256>>::reduce_bytes(&lo_bytes);
    // 2^256 mod n = ((2^256 - 1) mod n) + 1.
    let two_256 = <Scalar as Reduce<U256>>::reduce(U256::MAX) + Scalar::ONE;
    let d = hi_s * two_256 + lo_s;
    let nz: Option<NonZeroScalar> = NonZeroScalar::new(d).into();
    nz.map(SecretKey::from).ok_or(Error::DerivedKeyZero)
}

/// Parses exactly 65 bytes as an uncompressed P-256 point on the curve
/// (§5.2). Compressed, identity and off-curve encodings are refused.
pub fn parse_uncompressed_point(bytes: &[u8]) -> Option<PublicKey> {
    if bytes.len() != P256_UNCOMPRESSED_LEN || bytes.first() != Some(&0x04) {
        return None;
    }
    PublicKey::from_sec1_bytes(bytes).ok()
}

/// The 65-byte uncompressed SEC1 encoding of `key`.
pub fn uncompressed(key: &PublicKey) -> [u8; P256_UNCOMPRESSED_LEN] {
    let mut out = [0u8; P256_UNCOMPRESSED_LEN];
    let point = key.to_encoded_point(false);
    // An uncompressed encoding of a valid (non-identity) public key is always
    // 65 bytes; copy defensively without panicking.
    for (o, b) in out.iter_mut().zip(point.as_bytes()) {
        *o = *b;
    }
    out
}

/// ECDH on P-256; the output is the 32-byte X coordinate (§0 conventions).
///
/// Only for the linking signature (§9.2), once per pairing — not per
/// ceremony — so it stays on p256, whose typed keys make it infallible; the
/// handshakes' DH is AWS-LC's ([`crate::dh`]).
pub(crate) fn ecdh_x(secret: &SecretKey, public: &PublicKey) -> Zeroizing<[u8; 32]> {
    let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), public.as_affine());
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(shared.raw_secret_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_compressed_and_off_curve() {
        let sk = derive_p256_from_secret(b"x").unwrap();
        let pk = sk.public_key();
        let mut u = uncompressed(&pk);
        assert!(parse_uncompressed_point(&u).is_some());
        let c = pk.to_encoded_point(true);
        assert!(parse_uncompressed_point(c.as_bytes()).is_none());
        u[64] ^= 1;
        assert!(parse_uncompressed_point(&u).is_none());
        assert!(parse_uncompressed_point(&[0u8; 65]).is_none());
        assert!(parse_uncompressed_point(&u[..64]).is_none());
    }
}
