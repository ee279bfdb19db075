//! The crate's one error type.

use crate::DigitsError;

/// Why a `FIDO:/` URI was refused. Each variant's Display names the rule of
/// `hybrid-protocol.md` §1 it breaks; [`QrError::rule`] gives a short
/// machine-readable name for one-line reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QrError {
    /// The URI does not start with `FIDO:/` (compared case-insensitively).
    #[error("QR rule §1.4.1: URI does not start with \"FIDO:/\"")]
    Prefix,
    /// The digits after the prefix do not decode (§1.2).
    #[error("QR rule §1.4.1: {0}")]
    Digits(#[from] DigitsError),
    /// The decoded bytes are not exactly one well-formed CBOR item (§1.4.2).
    #[error("QR rule §1.4.2: payload is not a single CBOR data item ({0})")]
    Cbor(hybrid_cbor::Error),
    /// The CBOR item is not a map (§1.4.2).
    #[error("QR rule §1.4.2: payload is not a CBOR map")]
    NotAMap,
    /// Key 0 or key 1 is missing or not a byte string (§1.4.3).
    #[error("QR rule §1.4.3: key {key} is missing or not a byte string")]
    MissingOrNotBytes {
        /// The offending key (0 or 1).
        key: u8,
    },
    /// Key 1 (QR secret) is not exactly 16 bytes (§1.4.4).
    #[error("QR rule §1.4.4: key 1 (QR secret) is {len} bytes, not 16")]
    SecretLength {
        /// The length received.
        len: usize,
    },
    /// Key 0 (identity key) is not exactly 33 bytes (§1.4.5).
    #[error("QR rule §1.4.5: key 0 (identity key) is {len} bytes, not 33")]
    IdentityKeyLength {
        /// The length received.
        len: usize,
    },
    /// Key 0 is 33 bytes but not a compressed point on P-256 (§1.4.5).
    #[error("QR rule §1.4.5: key 0 is not a valid P-256 point")]
    IdentityKeyNotOnCurve,
    /// Key 2, 4 or 5 has the wrong CBOR type (§1.4.6).
    #[error("QR rule §1.4.6: key {key} must be {expected}")]
    WrongType {
        /// The offending key (2, 4 or 5).
        key: u8,
        /// The type the rule requires.
        expected: &'static str,
    },
    /// Freshness policy (hybridd, beyond Chromium): key 3 is too old.
    #[error("QR code is {age_secs} s old (maximum {max_age_secs} s)")]
    Stale {
        /// How old the QR is, in seconds.
        age_secs: u64,
        /// The configured maximum age.
        max_age_secs: u64,
    },
    /// Freshness policy (hybridd, beyond Chromium): key 3 is in the future by
    /// more than the allowed clock skew.
    #[error("QR code is dated {ahead_secs} s in the future (clock skew too large)")]
    FromFuture {
        /// How far ahead of `now` the QR's timestamp is.
        ahead_secs: u64,
    },
}

impl QrError {
    /// A short, stable, machine-readable name for the rule broken
    /// (for one-line CLI reasons and logs).
    pub fn rule(&self) -> &'static str {
        match self {
            QrError::Prefix => "prefix",
            QrError::Digits(DigitsError::Empty) => "digits-empty",
            QrError::Digits(DigitsError::NonDigit) => "digits-non-digit",
            QrError::Digits(DigitsError::InvalidLength) => "digits-length",
            QrError::Digits(DigitsError::OutOfRange) => "digits-range",
            QrError::Cbor(_) => "cbor",
            QrError::NotAMap => "not-a-map",
            QrError::MissingOrNotBytes { .. } => "key-missing-or-not-bytes",
            QrError::SecretLength { .. } => "secret-length",
            QrError::IdentityKeyLength { .. } => "identity-key-length",
            QrError::IdentityKeyNotOnCurve => "identity-key-not-on-curve",
            QrError::WrongType { .. } => "wrong-type",
            QrError::Stale { .. } => "stale",
            QrError::FromFuture { .. } => "from-future",
        }
    }
}
