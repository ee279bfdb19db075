//! CTAP status codes: one enum carrying the wire byte (CTAP 2.1 §8.2
//! "Status codes"; same numbering as OpenSK's `ctap/status_code.rs`).

/// A CTAP1/CTAP2 status code as it appears in the first byte of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Ctap2Status {
    /// `CTAP2_OK`: success.
    Ok = 0x00,
    /// `CTAP1_ERR_INVALID_COMMAND`: the command byte is not offered.
    InvalidCommand = 0x01,
    /// `CTAP1_ERR_INVALID_PARAMETER`: a parameter has an invalid value.
    InvalidParameter = 0x02,
    /// `CTAP1_ERR_INVALID_LENGTH`: the request has an invalid length.
    InvalidLength = 0x03,
    /// `CTAP1_ERR_INVALID_SEQ`.
    InvalidSeq = 0x04,
    /// `CTAP1_ERR_TIMEOUT`.
    Timeout = 0x05,
    /// `CTAP1_ERR_CHANNEL_BUSY`.
    ChannelBusy = 0x06,
    /// `CTAP2_ERR_CBOR_UNEXPECTED_TYPE`: a known parameter has the wrong CBOR type.
    CborUnexpectedType = 0x11,
    /// `CTAP2_ERR_INVALID_CBOR`: the CBOR is not CTAP2 canonical CBOR.
    InvalidCbor = 0x12,
    /// `CTAP2_ERR_MISSING_PARAMETER`: a required parameter is absent.
    MissingParameter = 0x14,
    /// `CTAP2_ERR_LIMIT_EXCEEDED`.
    LimitExceeded = 0x15,
    /// `CTAP2_ERR_LARGE_BLOB_STORAGE_FULL`.
    LargeBlobStorageFull = 0x18,
    /// `CTAP2_ERR_CREDENTIAL_EXCLUDED`: an excludeList entry exists here.
    CredentialExcluded = 0x19,
    /// `CTAP2_ERR_PROCESSING`.
    Processing = 0x21,
    /// `CTAP2_ERR_INVALID_CREDENTIAL` (never used for "no match": Chrome then
    /// sends a dummy makeCredential, hybrid-protocol.md §7.2).
    InvalidCredential = 0x22,
    /// `CTAP2_ERR_USER_ACTION_PENDING`.
    UserActionPending = 0x23,
    /// `CTAP2_ERR_OPERATION_PENDING`.
    OperationPending = 0x24,
    /// `CTAP2_ERR_NO_OPERATIONS`.
    NoOperations = 0x25,
    /// `CTAP2_ERR_UNSUPPORTED_ALGORITHM`: no offered algorithm is supported.
    UnsupportedAlgorithm = 0x26,
    /// `CTAP2_ERR_OPERATION_DENIED`: the user (or policy) refused.
    OperationDenied = 0x27,
    /// `CTAP2_ERR_KEY_STORE_FULL`.
    KeyStoreFull = 0x28,
    /// `CTAP2_ERR_UNSUPPORTED_OPTION`.
    UnsupportedOption = 0x2B,
    /// `CTAP2_ERR_INVALID_OPTION`.
    InvalidOption = 0x2C,
    /// `CTAP2_ERR_KEEPALIVE_CANCEL`: the operation was cancelled.
    KeepaliveCancel = 0x2D,
    /// `CTAP2_ERR_NO_CREDENTIALS`: no matching credential.
    NoCredentials = 0x2E,
    /// `CTAP2_ERR_USER_ACTION_TIMEOUT`.
    UserActionTimeout = 0x2F,
    /// `CTAP2_ERR_NOT_ALLOWED`: e.g. getNextAssertion with nothing pending.
    NotAllowed = 0x30,
    /// `CTAP2_ERR_PIN_INVALID`.
    PinInvalid = 0x31,
    /// `CTAP2_ERR_PIN_BLOCKED`.
    PinBlocked = 0x32,
    /// `CTAP2_ERR_PIN_AUTH_INVALID`.
    PinAuthInvalid = 0x33,
    /// `CTAP2_ERR_PIN_AUTH_BLOCKED`.
    PinAuthBlocked = 0x34,
    /// `CTAP2_ERR_PIN_NOT_SET`.
    PinNotSet = 0x35,
    /// `CTAP2_ERR_PUAT_REQUIRED` (was `PIN_REQUIRED`).
    PuatRequired = 0x36,
    /// `CTAP2_ERR_PIN_POLICY_VIOLATION`.
    PinPolicyViolation = 0x37,
    /// `CTAP2_ERR_PIN_TOKEN_EXPIRED` (reserved in CTAP 2.1).
    PinTokenExpired = 0x38,
    /// `CTAP2_ERR_REQUEST_TOO_LARGE`: the request exceeds `maxMsgSize`.
    RequestTooLarge = 0x39,
    /// `CTAP2_ERR_ACTION_TIMEOUT`.
    ActionTimeout = 0x3A,
    /// `CTAP2_ERR_UP_REQUIRED`.
    UpRequired = 0x3B,
    /// `CTAP2_ERR_UV_BLOCKED`.
    UvBlocked = 0x3C,
    /// `CTAP2_ERR_INTEGRITY_FAILURE`.
    IntegrityFailure = 0x3D,
    /// `CTAP2_ERR_INVALID_SUBCOMMAND`.
    InvalidSubcommand = 0x3E,
    /// `CTAP2_ERR_UV_INVALID`.
    UvInvalid = 0x3F,
    /// `CTAP2_ERR_UNAUTHORIZED_PERMISSION`.
    UnauthorizedPermission = 0x40,
    /// `CTAP1_ERR_OTHER`: an internal failure (store backend, crypto).
    Other = 0x7F,
}

impl Ctap2Status {
    /// The wire byte.
    pub fn byte(self) -> u8 {
        self as u8
    }

    /// The status for a wire byte, if it is one this crate knows.
    pub fn from_byte(b: u8) -> Option<Self> {
        use Ctap2Status::*;
        const ALL: &[Ctap2Status] = &[
            Ok,
            InvalidCommand,
            InvalidParameter,
            InvalidLength,
            InvalidSeq,
            Timeout,
            ChannelBusy,
            CborUnexpectedType,
            InvalidCbor,
            MissingParameter,
            LimitExceeded,
            LargeBlobStorageFull,
            CredentialExcluded,
            Processing,
            InvalidCredential,
            UserActionPending,
            OperationPending,
            NoOperations,
            UnsupportedAlgorithm,
            OperationDenied,
            KeyStoreFull,
            UnsupportedOption,
            InvalidOption,
            KeepaliveCancel,
            NoCredentials,
            UserActionTimeout,
            NotAllowed,
            PinInvalid,
            PinBlocked,
            PinAuthInvalid,
            PinAuthBlocked,
            PinNotSet,
            PuatRequired,
            PinPolicyViolation,
            PinTokenExpired,
            RequestTooLarge,
            ActionTimeout,
            UpRequired,
            UvBlocked,
            IntegrityFailure,
            InvalidSubcommand,
            UvInvalid,
            UnauthorizedPermission,
            Other,
        ];
        ALL.iter().copied().find(|s| s.byte() == b)
    }
}

impl core::fmt::Display for Ctap2Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{self:?} (0x{:02X})", self.byte())
    }
}
