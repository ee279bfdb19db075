//! The crate's error type. Every failure maps to exactly one CTAP status
//! ([`Error::status`]); the authenticator answers with that byte.

use crate::env::UserError;
use crate::status::Ctap2Status;
use crate::store::StoreError;

/// Why a CTAP request failed (authenticator side) or a response was
/// rejected (relying-party side, [`crate::rp`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is not CTAP2 canonical CBOR (CTAP 2.1 §8) → 0x12.
    #[error("invalid CBOR: {0}")]
    InvalidCbor(#[from] hybrid_cbor::Error),
    /// Structurally wrong extension input that Chromium's phone treats as a
    /// parse failure (hybrid-protocol.md §7.4) → 0x12.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A known parameter has the wrong CBOR type → 0x11.
    #[error("parameter {0} has the wrong CBOR type")]
    UnexpectedType(&'static str),
    /// A required parameter is absent → 0x14.
    #[error("missing parameter {0}")]
    MissingParameter(&'static str),
    /// A parameter has a value we refuse → 0x02.
    #[error("invalid value for {0}")]
    InvalidParameter(&'static str),
    /// An item whose length CTAP fixes has another length → 0x03
    /// (`CTAP1_ERR_INVALID_LENGTH`, CTAP 2.1 §8.2: "invalid message or item
    /// length"): clientDataHash, PRF salts, user.id ([`crate::types`]).
    #[error("{0} has the wrong length")]
    InvalidLength(&'static str),
    /// The credential store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The user declined, timed out or cancelled.
    #[error(transparent)]
    User(#[from] UserError),
    /// A protocol rule answered with this status.
    #[error("CTAP status {0}")]
    Status(Ctap2Status),
    /// A response failed relying-party verification ([`crate::rp`]).
    #[error("relying-party check failed: {0}")]
    Verify(#[from] VerifyError),
}

/// What a relying party found wrong in an authenticator response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The authenticator answered with a non-zero status.
    #[error("authenticator returned {0}")]
    Status(Ctap2Status),
    /// The response bytes are malformed (what is named).
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// `rpIdHash` in authData is not SHA-256 of our RP ID.
    #[error("rpIdHash mismatch")]
    RpIdHash,
    /// The UP flag is clear.
    #[error("user presence flag not set")]
    UserPresence,
    /// The UV flag is clear but verification was required.
    #[error("user verification flag not set")]
    UserVerification,
    /// The attestation or assertion signature does not verify.
    #[error("bad signature")]
    Signature,
    /// The attestation format is neither `packed` (self, or with a
    /// certificate when the RP accepts one) nor `none`.
    #[error("unsupported attestation format")]
    AttestationFormat,
    /// The credential's algorithm or COSE key is not ES256/Ed25519.
    #[error("unsupported credential key")]
    UnsupportedKey,
    /// The signature counter did not increase.
    #[error("signature counter went backwards ({stored} -> {received})")]
    Counter {
        /// Counter the RP had stored.
        stored: u32,
        /// Counter in the new assertion.
        received: u32,
    },
    /// The assertion names a credential the RP did not allow.
    #[error("unexpected credential")]
    UnexpectedCredential,
}

impl Error {
    /// The CTAP status byte this error is answered with.
    pub fn status(&self) -> Ctap2Status {
        match self {
            Error::InvalidCbor(_) | Error::Malformed(_) => Ctap2Status::InvalidCbor,
            Error::UnexpectedType(_) => Ctap2Status::CborUnexpectedType,
            Error::MissingParameter(_) => Ctap2Status::MissingParameter,
            Error::InvalidParameter(_) => Ctap2Status::InvalidParameter,
            Error::InvalidLength(_) => Ctap2Status::InvalidLength,
            Error::Store(e) => Ctap2Status::from(e),
            Error::User(e) => Ctap2Status::from(*e),
            Error::Status(s) => *s,
            Error::Verify(VerifyError::Status(s)) => *s,
            Error::Verify(_) => Ctap2Status::Other,
        }
    }
}

impl From<Ctap2Status> for Error {
    fn from(s: Ctap2Status) -> Self {
        Error::Status(s)
    }
}

impl From<&StoreError> for Ctap2Status {
    fn from(e: &StoreError) -> Self {
        match e {
            StoreError::Full => Ctap2Status::KeyStoreFull,
            // A store that is still locked after the user approved means the
            // verification did not unlock it: treat as a refusal.
            StoreError::Locked => Ctap2Status::OperationDenied,
            StoreError::NotFound => Ctap2Status::NoCredentials,
            StoreError::Backend(_) => Ctap2Status::Other,
        }
    }
}

impl From<StoreError> for Ctap2Status {
    fn from(e: StoreError) -> Self {
        Ctap2Status::from(&e)
    }
}

impl From<UserError> for Ctap2Status {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Declined => Ctap2Status::OperationDenied,
            UserError::Timeout => Ctap2Status::UserActionTimeout,
            UserError::Cancelled => Ctap2Status::KeepaliveCancel,
        }
    }
}
