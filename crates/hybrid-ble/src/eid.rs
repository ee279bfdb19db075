//! The EID key, the 16-byte EID plaintext and the PSK bound to it
//! (`hybrid-protocol.md` §2.2, §3.1, §3.3, §5.3; Chromium `eid::FromComponents`
//! / `eid::ToComponents` in `device/fido/cable/v2_handshake.cc`).

use std::fmt;

use hybrid_tunnel_names::domain_id_acceptable;
use rand_core::CryptoRngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::derive::{derive_array, Purpose};
use crate::BleError;

/// Size of an EID plaintext: one AES block (§3.1).
pub const EID_PLAINTEXT_SIZE: usize = 16;
/// Size of the random nonce inside the plaintext (Chromium `kNonceSize`).
pub const NONCE_SIZE: usize = 10;
/// Size of a tunnel routing ID (§4.2).
pub const ROUTING_ID_SIZE: usize = 3;

/// The 64-byte advert key: AES-256 key ‖ HMAC-SHA256 key (§2.2 purpose 1).
/// Zeroized on drop, never shown by `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EidKey([u8; 64]);

impl fmt::Debug for EidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EidKey(<redacted>)")
    }
}

impl EidKey {
    /// QR mode: `derive(qr_secret, "", 1, 64)` (§2.2, §10 step 2).
    pub fn from_secret(qr_secret: &[u8]) -> Self {
        EidKey(*derive_array::<64>(qr_secret, &[], Purpose::EidKey))
    }

    /// State-assisted mode: `derive(paired_secret, client_nonce, 1, 64)` (§9.3).
    pub fn from_paired(paired_secret: &[u8], client_nonce: &[u8; 16]) -> Self {
        EidKey(*derive_array::<64>(
            paired_secret,
            client_nonce,
            Purpose::EidKey,
        ))
    }

    /// Wraps 64 raw key bytes.
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        EidKey(bytes)
    }

    /// The 64 key bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// Bytes [0..32): the AES-256 key, in a copy wiped on drop.
    pub(crate) fn aes_key(&self) -> Zeroizing<[u8; 32]> {
        let mut k = Zeroizing::new([0u8; 32]);
        for (d, s) in k.iter_mut().zip(self.0.iter()) {
            *d = *s;
        }
        k
    }

    /// Bytes [32..64): the HMAC-SHA256 key, in a copy wiped on drop.
    pub(crate) fn hmac_key(&self) -> Zeroizing<[u8; 32]> {
        let mut k = Zeroizing::new([0u8; 32]);
        for (d, s) in k.iter_mut().zip(self.0.iter().skip(32)) {
            *d = *s;
        }
        k
    }
}

/// The 16-byte EID plaintext carried (encrypted) in the advert (§3.1):
/// `00 ‖ nonce (10) ‖ routing ID (3) ‖ LE16(domain ID)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EidPlaintext([u8; EID_PLAINTEXT_SIZE]);

impl fmt::Debug for EidPlaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EidPlaintext")
            .field("nonce", &Hex(&self.nonce()))
            .field("routing_id", &Hex(&self.routing_id()))
            .field("domain_id", &self.domain_id())
            .finish()
    }
}

struct Hex<'a>(&'a [u8]);
impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl EidPlaintext {
    /// Builds `00 ‖ nonce ‖ routing_id ‖ LE16(domain_id)`.
    pub fn new(nonce: [u8; NONCE_SIZE], routing_id: [u8; ROUTING_ID_SIZE], domain_id: u16) -> Self {
        let mut b = [0u8; EID_PLAINTEXT_SIZE];
        let domain = domain_id.to_le_bytes();
        let fields = nonce.iter().chain(routing_id.iter()).chain(domain.iter());
        for (d, s) in b.iter_mut().skip(1).zip(fields) {
            *d = *s;
        }
        EidPlaintext(b)
    }

    /// Builds a plaintext with a fresh random nonce (§10 step 4).
    pub fn random(
        rng: &mut impl CryptoRngCore,
        routing_id: [u8; ROUTING_ID_SIZE],
        domain_id: u16,
    ) -> Self {
        let mut nonce = [0u8; NONCE_SIZE];
        rng.fill_bytes(&mut nonce);
        Self::new(nonce, routing_id, domain_id)
    }

    /// Parses a plaintext the way a desktop validates one (§3.3): exactly 16
    /// bytes, reserved byte 0, and a domain ID the desktop knows given QR
    /// key 2 (`known_domains`).
    pub fn parse(bytes: &[u8], known_domains: u64) -> Result<Self, BleError> {
        let block: [u8; EID_PLAINTEXT_SIZE] = bytes
            .try_into()
            .map_err(|_| BleError::PlaintextLength { len: bytes.len() })?;
        let p = Self::from_block(block)?;
        p.check_domain(known_domains)?;
        Ok(p)
    }

    /// Accepts a decrypted block if its reserved byte is 0 (§3.3 step 4);
    /// the domain ID is not checked (see [`EidPlaintext::check_domain`]).
    pub fn from_block(block: [u8; EID_PLAINTEXT_SIZE]) -> Result<Self, BleError> {
        match block.first() {
            Some(0) => Ok(EidPlaintext(block)),
            Some(&value) => Err(BleError::ReservedByte { value }),
            None => Err(BleError::PlaintextLength { len: 0 }),
        }
    }

    /// §3.3 step 5: the domain must be hashed (≥ 256) or an assigned ID
    /// below `known_domains` (the rule is the tunnel names',
    /// [`hybrid_tunnel_names::domain_id_acceptable`]).
    pub fn check_domain(&self, known_domains: u64) -> Result<(), BleError> {
        let id = self.domain_id();
        if domain_id_acceptable(id, known_domains) {
            Ok(())
        } else {
            Err(BleError::UnknownDomain { id, known_domains })
        }
    }

    /// The 16 bytes.
    pub fn as_bytes(&self) -> &[u8; EID_PLAINTEXT_SIZE] {
        &self.0
    }

    /// Bytes [1..11): the nonce.
    pub fn nonce(&self) -> [u8; NONCE_SIZE] {
        let mut n = [0u8; NONCE_SIZE];
        for (d, s) in n.iter_mut().zip(self.0.iter().skip(1)) {
            *d = *s;
        }
        n
    }

    /// Bytes [11..14): the routing ID.
    pub fn routing_id(&self) -> [u8; ROUTING_ID_SIZE] {
        let mut r = [0u8; ROUTING_ID_SIZE];
        for (d, s) in r.iter_mut().zip(self.0.iter().skip(11)) {
            *d = *s;
        }
        r
    }

    /// Bytes [14..16) as LE16: the tunnel-server domain ID.
    pub fn domain_id(&self) -> u16 {
        let [.., lo, hi] = self.0;
        u16::from_le_bytes([lo, hi])
    }
}

/// The 32-byte Noise PSK. Zeroized on drop, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Psk([u8; 32]);

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Psk(<redacted>)")
    }
}

impl Psk {
    /// The 32 key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The proximity binding: `psk = derive(secret, eid_plaintext, 3, 32)`
/// (§3.3 step 6, §5.3). `secret` is the QR secret, or the paired secret in
/// state-assisted mode. Only a desktop that received the advert knows the
/// plaintext, so only it can finish the handshake.
pub fn psk(secret: &[u8], plaintext: &EidPlaintext) -> Psk {
    Psk(*derive_array::<32>(
        secret,
        plaintext.as_bytes(),
        Purpose::Psk,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout() {
        let p = EidPlaintext::new([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [0xa, 0xb, 0xc], 0x1234);
        assert_eq!(
            hex::encode(p.as_bytes()),
            "000102030405060708090a0a0b0c3412"
        );
        assert_eq!(p.domain_id(), 0x1234);
    }

    #[test]
    fn parse_rejections() {
        let good = *EidPlaintext::new([7; 10], [1, 2, 3], 0).as_bytes();
        assert!(EidPlaintext::parse(&good, 1).is_ok());
        for len in [0usize, 15, 17, 20] {
            let v = vec![0u8; len];
            assert_eq!(
                EidPlaintext::parse(&v, 1).unwrap_err(),
                BleError::PlaintextLength { len }
            );
        }
        let mut bad = good;
        bad[0] = 1;
        assert_eq!(
            EidPlaintext::parse(&bad, 1).unwrap_err(),
            BleError::ReservedByte { value: 1 }
        );
        assert_eq!(
            EidPlaintext::parse(&good, 0).unwrap_err(),
            BleError::UnknownDomain {
                id: 0,
                known_domains: 0
            }
        );
    }

    /// A deterministic "RNG" for tests: counts up from a seed.
    struct Counter(u8);
    impl rand_core::RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            rand_core::impls::next_u32_via_fill(self)
        }
        fn next_u64(&mut self) -> u64 {
            rand_core::impls::next_u64_via_fill(self)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = self.0;
                self.0 = self.0.wrapping_add(1);
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl rand_core::CryptoRng for Counter {}

    #[test]
    fn random_nonce_from_caller_rng() {
        let p = EidPlaintext::random(&mut Counter(0x60), [0xa1, 0xb2, 0xc3], 0);
        // The e2e_qr_transaction vector's plaintext.
        assert_eq!(
            hex::encode(p.as_bytes()),
            "0060616263646566676869a1b2c30000"
        );
    }

    #[test]
    fn secrets_redacted() {
        let k = EidKey::from_bytes([0xab; 64]);
        assert_eq!(format!("{k:?}"), "EidKey(<redacted>)");
        let p = psk(b"s", &EidPlaintext::new([0; 10], [0; 3], 0));
        assert_eq!(format!("{p:?}"), "Psk(<redacted>)");
    }

    /// Issue 16: the AES and HMAC halves handed out are wiped when dropped,
    /// and so is the AES key schedule built from them.
    #[test]
    fn zeroize_eid_key_copies() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let k = EidKey::from_bytes([7; 64]);
        wiped_on_drop(&k.aes_key());
        wiped_on_drop(&k.hmac_key());
        let schedule = <aes::Aes256 as aes::cipher::KeyInit>::new(&[7u8; 32].into());
        wiped_on_drop(&schedule);
    }

    #[test]
    fn key_halves() {
        let mut b = [0u8; 64];
        for (i, x) in b.iter_mut().enumerate() {
            *x = i as u8;
        }
        let k = EidKey::from_bytes(b);
        assert_eq!(k.aes_key()[..], b[..32]);
        assert_eq!(k.hmac_key()[..], b[32..]);
    }

    proptest! {
        #[test]
        fn build_parse_round_trip(nonce in any::<[u8; 10]>(), rid in any::<[u8; 3]>(), dom in any::<u16>(), known in any::<u64>()) {
            let p = EidPlaintext::new(nonce, rid, dom);
            prop_assert_eq!(p.nonce(), nonce);
            prop_assert_eq!(p.routing_id(), rid);
            prop_assert_eq!(p.domain_id(), dom);
            match EidPlaintext::parse(p.as_bytes(), known) {
                Ok(q) => { prop_assert!(domain_id_acceptable(dom, known)); prop_assert_eq!(q, p); }
                Err(e) => {
                    prop_assert!(!domain_id_acceptable(dom, known));
                    prop_assert_eq!(e, BleError::UnknownDomain { id: dom, known_domains: known });
                }
            }
        }

        #[test]
        fn parse_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40), known in any::<u64>()) {
            if let Ok(p) = EidPlaintext::parse(&bytes, known) {
                prop_assert_eq!(&p.as_bytes()[..], &bytes[..]);
                prop_assert_eq!(EidPlaintext::new(p.nonce(), p.routing_id(), p.domain_id()), p);
            }
        }
    }
}
