//! Advert encryption and decryption (`hybrid-protocol.md` §3.2, §3.3;
//! Chromium `eid::Encrypt` / `eid::Decrypt`).

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes256;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::eid::{EidKey, EidPlaintext, EID_PLAINTEXT_SIZE};
use crate::radio::ADVERT_LEN;
use crate::BleError;

/// Length of the truncated HMAC tag (§3.2).
pub const TAG_LEN: usize = 4;

/// `HMAC-SHA256(eid_key[32..64), ct)[0..4)`.
fn tag(key: &EidKey, ct: &[u8; EID_PLAINTEXT_SIZE]) -> [u8; TAG_LEN] {
    // HMAC zero-pads keys shorter than the 64-byte SHA-256 block (RFC 2104),
    // so a zero-padded block-sized key is the same key — and infallible.
    let mut block_key = zeroize::Zeroizing::new([0u8; 64]);
    for (d, s) in block_key.iter_mut().zip(key.hmac_key().iter()) {
        *d = *s;
    }
    let block_key: &[u8; 64] = &block_key;
    let mut mac = <Hmac<Sha256> as KeyInit>::new(block_key.into());
    mac.update(ct);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; TAG_LEN];
    for (d, s) in out.iter_mut().zip(full.iter()) {
        *d = *s;
    }
    out
}

fn cipher(key: &EidKey) -> Aes256 {
    let aes_key = key.aes_key();
    let aes_key: &[u8; 32] = &aes_key;
    Aes256::new(aes_key.into())
}

/// Encrypts an EID plaintext into the 20-byte advert:
/// `AES-256(eid_key[0..32), plaintext) ‖ HMAC-SHA256(eid_key[32..64), ct)[0..4)` (§3.2).
pub fn encrypt(key: &EidKey, plaintext: &EidPlaintext) -> [u8; ADVERT_LEN] {
    let mut block = aes::Block::from(*plaintext.as_bytes());
    cipher(key).encrypt_block(&mut block);
    let ct: [u8; EID_PLAINTEXT_SIZE] = block.into();
    let t = tag(key, &ct);
    let mut out = [0u8; ADVERT_LEN];
    for (d, s) in out.iter_mut().zip(ct.iter().chain(t.iter())) {
        *d = *s;
    }
    out
}

/// Decrypts service data the way a desktop does (§3.3 steps 1–4): exactly
/// 20 bytes, the tag compared in constant time, then the reserved byte.
/// The domain check (step 5) needs QR key 2: see
/// [`EidPlaintext::check_domain`].
pub fn decrypt(key: &EidKey, service_data: &[u8]) -> Result<EidPlaintext, BleError> {
    let advert: &[u8; ADVERT_LEN] =
        service_data
            .try_into()
            .map_err(|_| BleError::AdvertLength {
                len: service_data.len(),
            })?;
    let (ct, received) =
        advert
            .split_first_chunk::<EID_PLAINTEXT_SIZE>()
            .ok_or(BleError::AdvertLength {
                len: service_data.len(),
            })?;
    if !bool::from(tag(key, ct).as_slice().ct_eq(received)) {
        return Err(BleError::TagMismatch);
    }
    let mut block = aes::Block::from(*ct);
    cipher(key).decrypt_block(&mut block);
    EidPlaintext::from_block(block.into())
}

/// Splits service data into the 20-byte advert and whatever follows it —
/// the CBOR suffix newer Google Play Services append for CTAP 2.3 (§3.4).
/// The suffix is returned raw (possibly empty); this crate does not read it.
pub fn split_service_data(service_data: &[u8]) -> Result<(&[u8; ADVERT_LEN], &[u8]), BleError> {
    service_data
        .split_first_chunk::<ADVERT_LEN>()
        .ok_or(BleError::ServiceDataTooShort {
            len: service_data.len(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> EidKey {
        EidKey::from_secret(&[5; 16])
    }

    #[test]
    fn round_trip_and_rejections() {
        let p = EidPlaintext::new([9; 10], [1, 2, 3], 0);
        let a = encrypt(&key(), &p);
        assert_eq!(decrypt(&key(), &a).unwrap(), p);
        // Wrong key.
        assert_eq!(
            decrypt(&EidKey::from_secret(&[6; 16]), &a).unwrap_err(),
            BleError::TagMismatch
        );
        // Every single-bit flip is caught by the tag.
        for i in 0..ADVERT_LEN {
            let mut b = a;
            b[i] ^= 0x80;
            assert_eq!(
                decrypt(&key(), &b).unwrap_err(),
                BleError::TagMismatch,
                "byte {i}"
            );
        }
        // Lengths.
        for len in [0usize, 16, 19, 21, 24] {
            let v = vec![0u8; len];
            assert_eq!(
                decrypt(&key(), &v).unwrap_err(),
                BleError::AdvertLength { len }
            );
        }
    }

    #[test]
    fn reserved_byte_checked_after_tag() {
        // Craft a valid tag over a block whose plaintext has byte 0 = 0x42.
        let k = key();
        let mut block = aes::Block::from([0x42u8; 16]);
        cipher(&k).encrypt_block(&mut block);
        let ct: [u8; 16] = block.into();
        let mut a = [0u8; 20];
        a[..16].copy_from_slice(&ct);
        a[16..].copy_from_slice(&tag(&k, &ct));
        assert_eq!(
            decrypt(&k, &a).unwrap_err(),
            BleError::ReservedByte { value: 0x42 }
        );
    }

    #[test]
    fn split() {
        let data: Vec<u8> = (0u8..24).collect();
        let (a, rest) = split_service_data(&data).unwrap();
        assert_eq!(a[..], data[..20]);
        assert_eq!(rest, &data[20..]);
        let (_, rest) = split_service_data(&data[..20]).unwrap();
        assert!(rest.is_empty());
        assert_eq!(
            split_service_data(&data[..19]).unwrap_err(),
            BleError::ServiceDataTooShort { len: 19 }
        );
    }
}
