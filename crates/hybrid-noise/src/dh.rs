//! P-256 Diffie-Hellman through AWS-LC (`aws-lc-rs`), for both sides of the
//! Noise handshakes (§5.2) and the linking signature's ECDH (§9.2).
//!
//! Why: P-256 was ≈ 43 % of the phone daemon's CPU per ceremony with
//! RustCrypto p256 0.13 (docs/performance.md, "Phone: fourth round"): snow's
//! own P-256 backend re-derives the ephemeral's public key with a generic
//! scalar multiplication and each of the responder's two DHs took
//! 240–265 µs. AWS-LC's P-256 (fiat-crypto field arithmetic, precomputed
//! tables for the fixed base, a constant-time variable-base ladder) does the
//! same ECDH in 65–115 µs and a key's public point in 15–20 µs on this
//! machine. Unlike ring's, an AWS-LC agreement key can be used for more than
//! one DH — the responder's ephemeral takes part in both `ee` and `se`
//! (§5.3) — so one [`P256Key`] serves snow's `Dh` for initiator and
//! responder alike.
//!
//! Zeroization: the scalar lives inside AWS-LC (an `EC_KEY`'s
//! `EC_WRAPPED_SCALAR`, allocated with `OPENSSL_malloc`). AWS-LC's
//! `EC_KEY_free` releases it with `OPENSSL_free`
//! (`crypto/fipsmodule/ec/ec_key.c`, `ec_wrapped_scalar_free`), and
//! `OPENSSL_free` `OPENSSL_cleanse`s every allocation, the size prefix
//! included, before returning it to the system allocator (`crypto/mem.c`;
//! the only exceptions are a process that installs its own allocator through
//! `CRYPTO_set_mem_functions` or the weak `OPENSSL_memory_free`, which this
//! program never does — aws-lc-sys builds its symbols with a version prefix,
//! so no other library can supply them by accident). The big-endian scalar
//! is handed in through a `BIGNUM` that is freed the same way, and
//! aws-lc-rs returns the DH output in a `Zeroizing<Vec<u8>>`. On our side,
//! every copy of a private scalar is a [`Zeroizing`] buffer (snow's `Dh`
//! trait wants the raw bytes back from `privkey`), and the shared x
//! coordinate is copied straight into snow's (zeroized) buffer or ours.

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::encoding::{AsBigEndian, EcPrivateKeyBin};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use zeroize::Zeroizing;

use crate::keys::P256_UNCOMPRESSED_LEN;

/// Length of a P-256 scalar and of the DH output (the x coordinate).
const SCALAR_LEN: usize = 32;

/// A P-256 private key held by AWS-LC, with its uncompressed public point
/// computed once (AWS-LC's fixed-base multiplication).
pub(crate) struct P256Key {
    key: PrivateKey,
    public: [u8; P256_UNCOMPRESSED_LEN],
}

impl P256Key {
    /// The key for the big-endian scalar `scalar`; `None` when it is not in
    /// [1, n-1] (AWS-LC's `ec_bignum_to_scalar` range check) or AWS-LC fails.
    pub(crate) fn from_scalar(scalar: &[u8]) -> Option<Self> {
        if scalar.len() != SCALAR_LEN || scalar.iter().all(|b| *b == 0) {
            return None;
        }
        let key = PrivateKey::from_private_key(&ECDH_P256, scalar).ok()?;
        let point = key.compute_public_key().ok()?;
        let public = point.as_ref().try_into().ok()?;
        Some(P256Key { key, public })
    }

    /// A fresh key from AWS-LC's key generation (`EC_KEY_generate_key`: a
    /// scalar from AWS-LC's DRBG, uniform in [1, n-1], and its point by one
    /// fixed-base multiplication). [`P256Key::from_scalar`] costs two: the
    /// point, then AWS-LC's consistency check of a key given as a scalar
    /// (`EC_KEY_check_key`; docs/performance.md, "Phone: twelfth round").
    pub(crate) fn generate() -> Option<Self> {
        let key = PrivateKey::generate(&ECDH_P256).ok()?;
        let point = key.compute_public_key().ok()?;
        let public = point.as_ref().try_into().ok()?;
        Some(P256Key { key, public })
    }

    /// The big-endian scalar (zeroized on drop).
    pub(crate) fn scalar(&self) -> Option<Zeroizing<[u8; SCALAR_LEN]>> {
        let bytes: EcPrivateKeyBin<'static> = self.key.as_be_bytes().ok()?;
        let bytes: &[u8] = bytes.as_ref();
        let mut out = Zeroizing::new([0u8; SCALAR_LEN]);
        out.copy_from_slice(bytes.get(..SCALAR_LEN)?);
        (bytes.len() == SCALAR_LEN).then_some(out)
    }

    /// The 65-byte uncompressed SEC1 public point (§5.2).
    pub(crate) fn public(&self) -> &[u8; P256_UNCOMPRESSED_LEN] {
        &self.public
    }

    /// ECDH with the uncompressed point `peer`: the 32-byte x coordinate
    /// (§0 conventions). `None` for anything but a 65-byte uncompressed
    /// point on the curve (AWS-LC's `EC_POINT_oct2point` checks it).
    pub(crate) fn agree(&self, peer: &[u8]) -> Option<Zeroizing<[u8; SCALAR_LEN]>> {
        if peer.len() != P256_UNCOMPRESSED_LEN || peer.first() != Some(&0x04) {
            return None;
        }
        agreement::agree(
            &self.key,
            UnparsedPublicKey::new(&ECDH_P256, peer),
            (),
            |x| {
                let mut out = Zeroizing::new([0u8; SCALAR_LEN]);
                if x.len() != SCALAR_LEN {
                    return Err(());
                }
                out.copy_from_slice(x);
                Ok(out)
            },
        )
        .ok()
    }
}

/// snow's default resolver with P-256 replaced by [`SnowP256`]. Hashes,
/// ciphers and the RNG stay snow's (SHA-256, AES-GCM: §5.1).
pub(crate) struct Resolver;

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        DefaultResolver.resolve_rng()
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::P256 => Some(Box::new(SnowP256::default())),
            // Our handshakes are P-256 only (§5.1); refuse anything else.
            _ => None,
        }
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// snow's `Dh` for "P256" over [`P256Key`]: 65-byte uncompressed public
/// keys, 32-byte private keys, the x coordinate as the DH output — exactly
/// what snow's own p256 backend does, so the wire bytes are unchanged (the
/// Noise test vectors in `vector_tests` check it).
#[derive(Default)]
struct SnowP256 {
    /// The scalar as snow gave it (returned by `privkey`); zeroized on drop.
    private: Zeroizing<[u8; SCALAR_LEN]>,
    /// `None` while no valid private key is set: `dh` then fails and
    /// `pubkey` is all zero.
    key: Option<P256Key>,
}

impl SnowP256 {
    const NO_PUBLIC: [u8; P256_UNCOMPRESSED_LEN] = [0; P256_UNCOMPRESSED_LEN];
}

impl Dh for SnowP256 {
    fn name(&self) -> &'static str {
        "P256"
    }

    fn pub_len(&self) -> usize {
        P256_UNCOMPRESSED_LEN
    }

    fn priv_len(&self) -> usize {
        SCALAR_LEN
    }

    fn dh_len(&self) -> usize {
        SCALAR_LEN
    }

    fn set(&mut self, privkey: &[u8]) {
        match <[u8; SCALAR_LEN]>::try_from(privkey) {
            Ok(bytes) => {
                *self.private = bytes;
                self.key = P256Key::from_scalar(&bytes);
            }
            Err(_) => {
                *self.private = [0; SCALAR_LEN];
                self.key = None;
            }
        }
    }

    fn generate(&mut self, _rng: &mut dyn Random) -> Result<(), snow::Error> {
        // snow calls this for the handshake's ephemeral when the caller asks
        // for `Ephemeral::Fresh` (handshake.rs), and from
        // `Builder::generate_keypair`. AWS-LC draws the scalar from its own
        // DRBG; snow's RNG is not used.
        let key = P256Key::generate().ok_or(snow::Error::Dh)?;
        let scalar = key.scalar().ok_or(snow::Error::Dh)?;
        *self.private = *scalar;
        self.key = Some(key);
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        match &self.key {
            Some(k) => k.public(),
            None => &Self::NO_PUBLIC,
        }
    }

    fn privkey(&self) -> &[u8] {
        self.private.as_ref()
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let key = self.key.as_ref().ok_or(snow::Error::Dh)?;
        let x = key.agree(pubkey).ok_or(snow::Error::Dh)?;
        out.get_mut(..SCALAR_LEN)
            .ok_or(snow::Error::Dh)?
            .copy_from_slice(x.as_ref());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{derive_p256_from_secret, uncompressed};
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    fn scalar(seed: &[u8]) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(derive_p256_from_secret(seed).unwrap().to_bytes().into())
    }

    #[test]
    fn public_key_and_dh_match_p256() {
        let (a, b) = (scalar(b"a"), scalar(b"b"));
        let ka = P256Key::from_scalar(a.as_ref()).unwrap();
        let kb = P256Key::from_scalar(b.as_ref()).unwrap();
        let pa = p256::SecretKey::from_bytes(&(*a).into()).unwrap();
        let pb = p256::SecretKey::from_bytes(&(*b).into()).unwrap();
        assert_eq!(ka.public(), &uncompressed(&pa.public_key()));
        let x = ka.agree(kb.public()).unwrap();
        assert_eq!(x, kb.agree(ka.public()).unwrap());
        let reference =
            p256::ecdh::diffie_hellman(pa.to_nonzero_scalar(), pb.public_key().as_affine());
        assert_eq!(&x[..], &reference.raw_secret_bytes()[..]);
    }

    #[test]
    fn a_generated_key_is_the_key_of_its_scalar() {
        let a = P256Key::generate().unwrap();
        let b = P256Key::generate().unwrap();
        let (sa, sb) = (a.scalar().unwrap(), b.scalar().unwrap());
        assert_ne!(sa, sb);
        let again = P256Key::from_scalar(sa.as_ref()).unwrap();
        assert_eq!(a.public(), again.public());
        assert_eq!(
            a.agree(b.public()).unwrap(),
            again.agree(b.public()).unwrap()
        );
        // snow's generate path: the same key through `Dh`.
        let mut dh = Resolver.resolve_dh(&DHChoice::P256).unwrap();
        let mut rng = DefaultResolver.resolve_rng().unwrap();
        dh.generate(&mut *rng).unwrap();
        let loaded = P256Key::from_scalar(dh.privkey()).unwrap();
        assert_eq!(dh.pubkey(), loaded.public());
    }

    #[test]
    fn invalid_scalars_and_points_are_refused() {
        assert!(P256Key::from_scalar(&[0; 32]).is_none());
        // n and 2^256 - 1 are out of range.
        let n = hex::decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
            .unwrap();
        assert!(P256Key::from_scalar(&n).is_none());
        assert!(P256Key::from_scalar(&[0xff; 32]).is_none());
        assert!(P256Key::from_scalar(&[1; 31]).is_none());
        let k = P256Key::from_scalar(scalar(b"k").as_ref()).unwrap();
        let mut off = *k.public();
        off[64] ^= 1;
        assert!(k.agree(&off).is_none());
        assert!(k.agree(&[0; 65]).is_none());
        assert!(k.agree(&k.public()[..64]).is_none());
        let compressed = p256::SecretKey::from_bytes(&(*scalar(b"k")).into())
            .unwrap()
            .public_key()
            .to_encoded_point(true);
        assert_eq!(compressed.len(), 33);
        assert!(k.agree(compressed.as_bytes()).is_none());
    }

    #[test]
    fn snow_dh_without_a_valid_key_fails_instead_of_panicking() {
        let mut dh = Resolver.resolve_dh(&DHChoice::P256).unwrap();
        let peer = P256Key::from_scalar(scalar(b"p").as_ref()).unwrap();
        let mut out = [0u8; 32];
        assert!(dh.dh(peer.public(), &mut out).is_err());
        dh.set(&[0; 32]);
        assert_eq!(dh.pubkey(), [0; 65]);
        assert!(dh.dh(peer.public(), &mut out).is_err());
        dh.set(&[1; 5]);
        assert!(dh.dh(peer.public(), &mut out).is_err());
        dh.set(scalar(b"s").as_ref());
        assert_eq!(dh.privkey(), scalar(b"s").as_ref());
        dh.dh(peer.public(), &mut out).unwrap();
        assert!(dh.dh(peer.public(), &mut [0u8; 31]).is_err());
    }

    #[test]
    fn snow_generates_valid_distinct_keypairs() {
        let b = snow::Builder::with_resolver(
            "Noise_NN_P256_AESGCM_SHA256".parse().unwrap(),
            Box::new(Resolver),
        );
        let (k1, k2) = (b.generate_keypair().unwrap(), b.generate_keypair().unwrap());
        assert_ne!(k1.private, k2.private);
        let p = P256Key::from_scalar(&k1.private).unwrap();
        assert_eq!(&p.public()[..], &k1.public[..]);
    }
}
