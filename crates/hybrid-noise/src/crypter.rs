//! The post-handshake transport cipher ("Crypter", §5.5, Chromium
//! `v2_handshake.cc` `Crypter`), new construction only.
//!
//! Per direction: AES-256-GCM, nonce `00*8 || BE32(seq)`, no AAD, plaintext
//! padded to a multiple of 32 bytes with a trailing length byte. The counter
//! advances only on success and is capped at 2^24 − 1 like Chromium.
//!
//! The legacy (pre-2022 Chromium) construction — nonce `LE32(seq) || 00*8`,
//! AAD `02` — is **not** used for sending or receiving (the phone speaks first
//! in new mode, which every transitional desktop accepts, §5.5); its layout is
//! exposed as [`legacy_nonce`] and [`LEGACY_AAD`] for reference and tests.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use crate::error::{DecryptFailure, Error};

/// AES-256 key length.
pub const KEY_LEN: usize = 32;
/// Padding granularity of the new construction (§5.5).
pub const PADDING_GRANULARITY: usize = 32;
/// Chromium's cap on the sequence counter (§5.5): once a counter reaches this
/// value the direction is exhausted and the session must end.
pub const MAX_SEQUENCE: u32 = (1 << 24) - 1;
/// AAD of the legacy construction ("version 2"), not used by this crate.
pub const LEGACY_AAD: [u8; 1] = [0x02];

/// Nonce of the new construction: `00*8 || BE32(seq)` (§5.5).
pub fn nonce(seq: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    for (dst, src) in n.iter_mut().skip(8).zip(seq.to_be_bytes()) {
        *dst = src;
    }
    n
}

/// Nonce of the legacy construction: `LE32(seq) || 00*8` (§5.5 "Legacy").
pub fn legacy_nonce(seq: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    for (dst, src) in n.iter_mut().zip(seq.to_le_bytes()) {
        *dst = src;
    }
    n
}

/// Pads `plaintext` as `plaintext || 00*z || z` with total length
/// `round_up(len + 1, 32)` (§5.5).
pub fn pad(plaintext: &[u8]) -> Vec<u8> {
    let used = plaintext.len() % PADDING_GRANULARITY;
    // z = (32 - ((len + 1) mod 32)) mod 32, computed without overflow.
    let z = (PADDING_GRANULARITY - 1 - used) % PADDING_GRANULARITY;
    let mut out = Vec::with_capacity(plaintext.len().saturating_add(z).saturating_add(1));
    out.extend_from_slice(plaintext);
    out.resize(plaintext.len().saturating_add(z), 0);
    out.push(u8::try_from(z).unwrap_or(0));
    out
}

/// Removes the §5.5 padding: non-empty, `z = last byte`, `z + 1 <= len`.
/// Like Chromium, the padding bytes themselves are not checked to be zero.
pub fn unpad(padded: &[u8]) -> Result<&[u8], DecryptFailure> {
    let (&z, _) = padded.split_last().ok_or(DecryptFailure::Empty)?;
    let keep = padded
        .len()
        .checked_sub(usize::from(z) + 1)
        .ok_or(DecryptFailure::BadPadding {
            z,
            len: padded.len(),
        })?;
    padded.get(..keep).ok_or(DecryptFailure::BadPadding {
        z,
        len: padded.len(),
    })
}

/// AES-256-GCM keyed with `key`, lent by reference: no copy of the key is
/// left on the stack, and the key schedule is wiped when the cipher is
/// dropped (`aes` with `zeroize`).
fn cipher(key: &Zeroizing<[u8; KEY_LEN]>) -> Aes256Gcm {
    let key: &[u8; KEY_LEN] = key;
    Aes256Gcm::new(key.into())
}

/// One session's transport cipher: a read key and a write key, each with its
/// own sequence counter. Keys are zeroized on drop and never printed.
pub struct Crypter {
    read_key: Zeroizing<[u8; KEY_LEN]>,
    write_key: Zeroizing<[u8; KEY_LEN]>,
    read_seq: u32,
    write_seq: u32,
}

impl fmt::Debug for Crypter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crypter")
            .field("read_key", &"<redacted>")
            .field("write_key", &"<redacted>")
            .field("read_seq", &self.read_seq)
            .field("write_seq", &self.write_seq)
            .finish()
    }
}

impl Crypter {
    /// A Crypter from explicit keys, both counters at 0. The phone's read key
    /// is Split's `k1`, its write key `k2` (§5.2).
    pub fn new(read_key: &[u8; KEY_LEN], write_key: &[u8; KEY_LEN]) -> Self {
        Crypter {
            read_key: Zeroizing::new(*read_key),
            write_key: Zeroizing::new(*write_key),
            read_seq: 0,
            write_seq: 0,
        }
    }

    /// The sequence number the next [`Crypter::decrypt`] will use.
    pub fn read_seq(&self) -> u32 {
        self.read_seq
    }

    /// The sequence number the next [`Crypter::encrypt`] will use.
    pub fn write_seq(&self) -> u32 {
        self.write_seq
    }

    /// Pads and seals `plaintext` with the write key and advances the write
    /// counter.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        if self.write_seq >= MAX_SEQUENCE {
            return Err(Error::SequenceExhausted);
        }
        let padded = Zeroizing::new(pad(plaintext));
        let cipher = cipher(&self.write_key);
        let n = nonce(self.write_seq);
        let out = cipher
            .encrypt(&Nonce::from(n), padded.as_slice())
            .map_err(|_| Error::EncryptFailed)?;
        self.write_seq += 1;
        Ok(out)
    }

    /// Opens `ciphertext` with the read key, removes the padding and advances
    /// the read counter (only on success).
    pub fn decrypt(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, Error> {
        if self.read_seq >= MAX_SEQUENCE {
            return Err(Error::SequenceExhausted);
        }
        let cipher = cipher(&self.read_key);
        let n = nonce(self.read_seq);
        let padded = Zeroizing::new(
            cipher
                .decrypt(
                    &Nonce::from(n),
                    Payload {
                        msg: ciphertext,
                        aad: &[],
                    },
                )
                .map_err(|_| DecryptFailure::Aead)?,
        );
        let plain = unpad(&padded)?.to_vec();
        self.read_seq += 1;
        Ok(plain)
    }

    /// The (read, write) keys, for vector assertions in tests only.
    #[doc(hidden)]
    pub fn keys_for_test(&self) -> ([u8; KEY_LEN], [u8; KEY_LEN]) {
        (*self.read_key, *self.write_key)
    }

    /// Sets both counters, to test the sequence cap without 2^24 messages.
    #[doc(hidden)]
    pub fn set_sequences_for_test(&mut self, read_seq: u32, write_seq: u32) {
        self.read_seq = read_seq;
        self.write_seq = write_seq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Issue 16: the traffic keys are lent to AES-GCM without a stack copy
    /// (see `cipher`), and the AES key schedule built from them is wiped
    /// when the cipher is dropped (`aes`'s `zeroize` feature).
    #[test]
    fn zeroize_traffic_key_schedules() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<aes::Aes256>();
    }

    fn pair() -> (Crypter, Crypter) {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        (Crypter::new(&k2, &k1), Crypter::new(&k1, &k2))
    }

    #[test]
    fn padding_lengths() {
        assert_eq!(
            pad(&[]),
            vec![0u8; 32]
                .into_iter()
                .take(31)
                .chain([31])
                .collect::<Vec<_>>()
        );
        assert_eq!(pad(&[7; 31]).len(), 32);
        assert_eq!(*pad(&[7; 31]).last().unwrap(), 0);
        assert_eq!(pad(&[7; 32]).len(), 64);
        assert_eq!(*pad(&[7; 32]).last().unwrap(), 31);
        assert_eq!(pad(&[7; 224]).len(), 256);
    }

    #[test]
    fn unpad_rules() {
        assert_eq!(unpad(&[]), Err(DecryptFailure::Empty));
        assert_eq!(unpad(&[0]), Ok(&[][..]));
        assert_eq!(unpad(&[5, 1]), Ok(&[][..]));
        assert_eq!(
            unpad(&[5, 2]),
            Err(DecryptFailure::BadPadding { z: 2, len: 2 })
        );
        assert_eq!(
            unpad(&[0xff; 10]),
            Err(DecryptFailure::BadPadding { z: 0xff, len: 10 })
        );
        // Non-zero padding bytes are tolerated, as in Chromium.
        assert_eq!(unpad(&[9, 8, 7, 2]), Ok(&[9][..]));
    }

    fn seal_raw(key: &[u8; 32], seq: u32, padded: &[u8]) -> Vec<u8> {
        cipher(&Zeroizing::new(*key))
            .encrypt(&Nonce::from(nonce(seq)), padded)
            .unwrap()
    }

    #[test]
    fn receiver_rejects_bad_padding_and_empty_plaintext() {
        let (_, mut phone) = pair();
        // The desktop writes with k1 = [1; 32].
        let ct = seal_raw(&[1; 32], 0, &[]);
        assert!(matches!(
            phone.decrypt(&ct),
            Err(Error::Decrypt(DecryptFailure::Empty))
        ));
        let ct = seal_raw(&[1; 32], 0, &[0, 0, 5]);
        assert!(matches!(
            phone.decrypt(&ct),
            Err(Error::Decrypt(DecryptFailure::BadPadding { z: 5, len: 3 }))
        ));
        assert_eq!(phone.read_seq(), 0, "failures must not advance the counter");
        let ct = seal_raw(&[1; 32], 0, &[0x42, 0]);
        assert_eq!(phone.decrypt(&ct).unwrap(), vec![0x42]);
        assert_eq!(phone.read_seq(), 1);
    }

    #[test]
    fn bad_tag_wrong_seq_wrong_key() {
        let (mut desktop, mut phone) = pair();
        let mut ct = desktop.encrypt(b"hello").unwrap();
        let last = ct.len() - 1;
        ct[last] ^= 1;
        assert!(matches!(
            phone.decrypt(&ct),
            Err(Error::Decrypt(DecryptFailure::Aead))
        ));
        assert!(matches!(
            phone.decrypt(&[]),
            Err(Error::Decrypt(DecryptFailure::Aead))
        ));
        assert!(matches!(
            phone.decrypt(&[0; 15]),
            Err(Error::Decrypt(DecryptFailure::Aead))
        ));
        // A message for seq 1 does not open at seq 0.
        let (mut desktop2, mut phone2) = pair();
        let _ = desktop2.encrypt(b"a").unwrap();
        let second = desktop2.encrypt(b"b").unwrap();
        assert!(phone2.decrypt(&second).is_err());
        // Own writes do not open with own read key.
        let mine = phone.encrypt(b"x").unwrap();
        assert!(phone.decrypt(&mine).is_err());
        assert_eq!(desktop.decrypt(&mine).unwrap(), b"x");
    }

    #[test]
    fn sequence_cap() {
        let (mut desktop, mut phone) = pair();
        desktop.set_sequences_for_test(0, MAX_SEQUENCE - 1);
        phone.set_sequences_for_test(MAX_SEQUENCE - 1, 0);
        let ct = desktop.encrypt(b"last").unwrap();
        assert_eq!(phone.decrypt(&ct).unwrap(), b"last");
        assert!(matches!(
            desktop.encrypt(b"more"),
            Err(Error::SequenceExhausted)
        ));
        assert!(matches!(phone.decrypt(&ct), Err(Error::SequenceExhausted)));
        assert_eq!(desktop.write_seq(), MAX_SEQUENCE);
    }

    #[test]
    fn nonces_and_legacy_layout() {
        assert_eq!(nonce(0), [0; 12]);
        assert_eq!(nonce(0x01020304), [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(
            legacy_nonce(0x01020304),
            [4, 3, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(LEGACY_AAD, [0x02]);
    }

    #[test]
    fn debug_is_redacted() {
        let c = Crypter::new(&[0xab; 32], &[0xcd; 32]);
        let s = format!("{c:?}");
        assert!(
            !s.contains("171") && !s.contains("205") && !s.contains("ab"),
            "{s}"
        );
    }

    proptest! {
        #[test]
        fn encrypt_decrypt_round_trip(msgs in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..=4096), 1..4)) {
            let (mut desktop, mut phone) = pair();
            for m in &msgs {
                let ct = phone.encrypt(m).unwrap();
                prop_assert_eq!(ct.len() % 32, 16);
                prop_assert_eq!(desktop.decrypt(&ct).unwrap(), m.clone());
            }
        }

        #[test]
        fn pad_unpad_round_trip(m in proptest::collection::vec(any::<u8>(), 0..200)) {
            let p = pad(&m);
            prop_assert_eq!(p.len() % 32, 0);
            prop_assert!(p.len() > m.len() && p.len() <= m.len() + 32);
            prop_assert_eq!(unpad(&p).unwrap(), &m[..]);
        }
    }
}
