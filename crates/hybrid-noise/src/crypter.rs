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
use aes_gcm::{Aes256Gcm, Key, Nonce};
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
        let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*self.write_key));
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
        let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*self.read_key));
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
