//! The caBLE v2 key-derivation function and its purposes
//! (`hybrid-protocol.md` §2.1, §2.2, §9.1; Chromium `internal::Derive`,
//! `DerivedValueType` in `device/fido/cable/v2_handshake.h`).

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::BleError;

/// Largest HKDF-SHA256 output (RFC 5869: 255 × hash length).
pub const MAX_DERIVE_LEN: usize = 255 * 32;

/// The `purpose` argument of [`derive`], sent as `info = LE32(purpose)`
/// (§2.2 table). The only place these numbers are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u32)]
pub enum Purpose {
    /// BLE advert key (64 bytes: AES-256 key ‖ HMAC-SHA256 key).
    EidKey = 1,
    /// Tunnel ID for `/cable/new/` and `/cable/connect/` (16 bytes).
    TunnelId = 2,
    /// Noise PSK; the salt is the EID plaintext (32 bytes).
    Psk = 3,
    /// Long-term link secret; the salt is the pairing ID (§9.1).
    PairedSecret = 4,
    /// Seed of the phone's identity key (§9.1).
    IdentityKeySeed = 5,
    /// Per-contact-ID intermediate secret; the salt is the contact ID (§9.1).
    PerContactIdSecret = 6,
}

impl Purpose {
    /// The 4-byte HKDF `info`: `LE32(purpose)`.
    pub fn info(self) -> [u8; 4] {
        (self as u32).to_le_bytes()
    }
}

/// `derive(secret, nonce, purpose, L)` = HKDF-SHA256(IKM = `secret`,
/// salt = `nonce` (empty = no salt, which RFC 5869 treats as 32 zero bytes),
/// info = LE32(`purpose`), L = `out_len`) (§2.1).
pub fn derive(
    secret: &[u8],
    nonce: &[u8],
    purpose: Purpose,
    out_len: usize,
) -> Result<Zeroizing<Vec<u8>>, BleError> {
    let mut out = Zeroizing::new(vec![0u8; out_len]);
    hkdf(secret, nonce)
        .expand(&purpose.info(), &mut out)
        .map_err(|_| BleError::DeriveLength { len: out_len })?;
    Ok(out)
}

/// [`derive`] into a fixed-size, zeroizing array. `N` is checked against
/// [`MAX_DERIVE_LEN`] at compile time, so this cannot fail.
pub fn derive_array<const N: usize>(
    secret: &[u8],
    nonce: &[u8],
    purpose: Purpose,
) -> Zeroizing<[u8; N]> {
    const { assert!(N <= MAX_DERIVE_LEN, "HKDF-SHA256 output too long") };
    let mut out = Zeroizing::new([0u8; N]);
    // Cannot fail: N <= MAX_DERIVE_LEN is asserted above.
    let _ = hkdf(secret, nonce).expand(&purpose.info(), out.as_mut_slice());
    out
}

fn hkdf(secret: &[u8], nonce: &[u8]) -> Hkdf<Sha256> {
    let salt = if nonce.is_empty() { None } else { Some(nonce) };
    Hkdf::<Sha256>::new(salt, secret)
}

/// The tunnel ID of a QR transaction: `derive(qr_secret, "", 2, 16)` (§2.2).
/// Not secret: it appears in the tunnel URLs.
pub fn tunnel_id(qr_secret: &[u8]) -> [u8; 16] {
    *derive_array::<16>(qr_secret, &[], Purpose::TunnelId)
}

/// The seed of the phone's long-term identity key:
/// `derive(root_secret, "", 5, 32)` (§9.1).
pub fn identity_key_seed(root_secret: &[u8]) -> Zeroizing<[u8; 32]> {
    derive_array(root_secret, &[], Purpose::IdentityKeySeed)
}

/// The long-term link secret (§9.1):
/// `derive(derive(root_secret, contact_id, 6, 32), pairing_id, 4, 32)`, the
/// first step skipped when there is no contact ID.
pub fn paired_secret(
    root_secret: &[u8],
    contact_id: Option<&[u8]>,
    pairing_id: &[u8],
) -> Zeroizing<[u8; 32]> {
    match contact_id {
        Some(cid) => {
            let per_contact = derive_array::<32>(root_secret, cid, Purpose::PerContactIdSecret);
            derive_array(per_contact.as_slice(), pairing_id, Purpose::PairedSecret)
        }
        None => derive_array(root_secret, pairing_id, Purpose::PairedSecret),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_le32() {
        assert_eq!(Purpose::EidKey.info(), [1, 0, 0, 0]);
        assert_eq!(Purpose::PerContactIdSecret.info(), [6, 0, 0, 0]);
    }

    #[test]
    fn prefix_property_and_limits() {
        let long = derive(b"k", b"", Purpose::Psk, 100).unwrap();
        let short = derive(b"k", b"", Purpose::Psk, 32).unwrap();
        assert_eq!(long[..32], short[..]);
        assert_eq!(*derive_array::<32>(b"k", b"", Purpose::Psk), short[..]);
        assert!(derive(b"k", b"", Purpose::Psk, MAX_DERIVE_LEN).is_ok());
        assert_eq!(
            derive(b"k", b"", Purpose::Psk, MAX_DERIVE_LEN + 1).unwrap_err(),
            BleError::DeriveLength {
                len: MAX_DERIVE_LEN + 1
            }
        );
        assert!(derive(b"k", b"", Purpose::Psk, 0).unwrap().is_empty());
    }

    #[test]
    fn empty_salt_equals_zero_salt() {
        let a = derive(b"secret", b"", Purpose::EidKey, 64).unwrap();
        let b = derive(b"secret", &[0; 32], Purpose::EidKey, 64).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn paired_secret_without_contact_skips_step() {
        let root = [3u8; 32];
        let direct = derive_array::<32>(&root, b"pairing!", Purpose::PairedSecret);
        assert_eq!(paired_secret(&root, None, b"pairing!"), direct);
        assert_ne!(paired_secret(&root, Some(b"c"), b"pairing!"), direct);
    }
}
