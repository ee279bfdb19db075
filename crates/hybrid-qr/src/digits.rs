//! The `FIDO:/` digit codec ("base10": 7 bytes ↔ 17 decimal digits),
//! `hybrid-protocol.md` §1.2 (Chromium `qr::BytesToDigits` / `qr::DigitsToBytes`).

/// Bytes per full chunk.
const CHUNK_BYTES: usize = 7;
/// Digits per full chunk.
const CHUNK_DIGITS: usize = 17;

/// Digits used for a chunk of `n` bytes, indexed by `n` (0..=7), §1.2 step 3.
const DIGITS_FOR_BYTES: [usize; 8] = [0, 3, 5, 8, 10, 13, 15, 17];

/// Why a digit string is not a valid `FIDO:/` payload (§1.2 "Decoding").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigitsError {
    /// The digit string is empty (§1.1: webauthn-rs rejects `FIDO:/`).
    #[error("digits rule §1.2: the digit string is empty")]
    Empty,
    /// A character other than ASCII `0`..`9` (checked on the whole string
    /// before chunking, so `+12` and full-width digits land here).
    #[error("digits rule §1.2.3: character other than ASCII '0'..'9'")]
    NonDigit,
    /// The final group has a digit count not in {3, 5, 8, 10, 13, 15}.
    #[error("digits rule §1.2.2: final digit group has an impossible length")]
    InvalidLength,
    /// A group's value does not fit the byte count its width stands for
    /// (≥ 2^56 for 17 digits, ≥ 2^(8·n) for a final group of n bytes).
    #[error("digits rule §1.2.1: digit group value out of range for its width")]
    OutOfRange,
}

/// Number of bytes a final group of `digits` digits stands for, if any.
fn bytes_for_digits(digits: usize) -> Option<usize> {
    DIGITS_FOR_BYTES.iter().position(|&d| d == digits && d != 0)
}

/// Encodes `bytes` as decimal digits (§1.2 "Encoding"): each 7-byte chunk
/// (the last one may be shorter) is read as a little-endian integer and
/// printed zero-padded to 17, 15, 13, 10, 8, 5 or 3 digits.
pub fn digits_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(CHUNK_BYTES) * CHUNK_DIGITS);
    for chunk in bytes.chunks(CHUNK_BYTES) {
        let mut le = [0u8; 8];
        for (dst, src) in le.iter_mut().zip(chunk) {
            *dst = *src;
        }
        let value = u64::from_le_bytes(le);
        let width = DIGITS_FOR_BYTES
            .get(chunk.len())
            .copied()
            .unwrap_or(CHUNK_DIGITS);
        out.push_str(&format!("{value:0width$}"));
    }
    out
}

/// Decodes a digit string produced by [`digits_encode`] (§1.2 "Decoding"),
/// with every rejection rule: empty input, any non-ASCII-digit character
/// (checked first, on the whole string), an impossible final group length,
/// and a group value too large for its width.
pub fn digits_decode(s: &str) -> Result<Vec<u8>, DigitsError> {
    if s.is_empty() {
        return Err(DigitsError::Empty);
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DigitsError::NonDigit);
    }
    let digits = s.as_bytes();
    let mut out = Vec::with_capacity(digits.len() / CHUNK_DIGITS * CHUNK_BYTES + CHUNK_BYTES);
    for group in digits.chunks(CHUNK_DIGITS) {
        let n = bytes_for_digits(group.len()).ok_or(DigitsError::InvalidLength)?;
        // At most 17 digits: < 10^17 < 2^64, so this cannot overflow.
        let value = group
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        let bits = u32::try_from(8 * n).map_err(|_| DigitsError::OutOfRange)?;
        if value >> bits != 0 {
            return Err(DigitsError::OutOfRange);
        }
        let le = value.to_le_bytes();
        out.extend_from_slice(le.get(..n).ok_or(DigitsError::OutOfRange)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn worked_example() {
        assert_eq!(digits_encode(&[0x61, 0x62, 0xff]), "16736865");
        assert_eq!(digits_decode("16736865").unwrap(), vec![0x61, 0x62, 0xff]);
    }

    #[test]
    fn zero_lengths() {
        for (n, d) in [0usize, 3, 5, 8, 10, 13, 15, 17, 20]
            .into_iter()
            .enumerate()
        {
            assert_eq!(digits_encode(&vec![0; n]), "0".repeat(d));
            if n > 0 {
                assert_eq!(digits_decode(&"0".repeat(d)).unwrap(), vec![0; n]);
            }
        }
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(digits_decode(""), Err(DigitsError::Empty));
    }

    #[test]
    fn rejects_non_digits_before_length() {
        for s in [
            "a",
            "ab",
            "abc",
            "+12",
            "-12",
            "+1234567890123456",
            "１２３",
            "1\u{308}2",
            " 123",
            "123\n",
        ] {
            assert_eq!(digits_decode(s), Err(DigitsError::NonDigit), "{s:?}");
        }
    }

    #[test]
    fn rejects_bad_final_group_length() {
        for s in [
            "1",
            "12",
            "1234",
            "1234567",
            "123456789012345678",
            "0000000000000000001",
        ] {
            assert_eq!(digits_decode(s), Err(DigitsError::InvalidLength), "{s:?}");
        }
    }

    #[test]
    fn rejects_out_of_range() {
        // Largest values that fit, then one more.
        assert_eq!(digits_decode("255").unwrap(), vec![0xff]);
        assert_eq!(digits_decode("256"), Err(DigitsError::OutOfRange));
        assert_eq!(digits_decode("65535").unwrap(), vec![0xff, 0xff]);
        assert_eq!(digits_decode("65536"), Err(DigitsError::OutOfRange));
        assert_eq!(digits_decode("72057594037927935").unwrap(), vec![0xff; 7]);
        assert_eq!(
            digits_decode("72057594037927936"),
            Err(DigitsError::OutOfRange)
        );
        assert_eq!(digits_decode("999"), Err(DigitsError::OutOfRange));
        assert_eq!(
            digits_decode("99999999999999999"),
            Err(DigitsError::OutOfRange)
        );
        // A bad group after a good one.
        assert_eq!(
            digits_decode("00000000000000000999"),
            Err(DigitsError::OutOfRange)
        );
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let digits = digits_encode(&bytes);
            prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()));
            if bytes.is_empty() {
                prop_assert_eq!(digits_decode(&digits), Err(DigitsError::Empty));
            } else {
                prop_assert_eq!(digits_decode(&digits).unwrap(), bytes);
            }
        }

        #[test]
        fn decode_never_panics_and_reencodes(s in "[0-9]{0,60}") {
            if let Ok(bytes) = digits_decode(&s) {
                prop_assert_eq!(digits_encode(&bytes), s);
            }
        }
    }
}
