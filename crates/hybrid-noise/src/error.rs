//! The crate's one error type and its typed causes.

/// Everything that can go wrong in `hybrid-noise`. Each variant names the
/// `hybrid-protocol.md` rule that was broken; the peer-caused ones end the
/// hybrid session (§5.3 "Failure handling", §6.3).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Noise handshake failed (§5.3 "Failure handling": send nothing,
    /// close the tunnel, report `HANDSHAKE_FAILED`).
    #[error("Noise handshake failed (hybrid-protocol.md §5.3): {0}")]
    HandshakeFailed(#[from] HandshakeFailure),
    /// A transport frame could not be decrypted or un-padded (§5.5).
    #[error("transport decryption failed (hybrid-protocol.md §5.5): {0}")]
    Decrypt(#[from] DecryptFailure),
    /// The 24-bit sequence counter is exhausted (§5.5: Chromium caps it at
    /// 2^24 − 1); the session must end.
    #[error("Crypter sequence number exhausted (hybrid-protocol.md §5.5: cap 2^24 - 1)")]
    SequenceExhausted,
    /// AES-GCM refused to seal (only possible for absurdly large plaintexts).
    #[error("transport encryption failed (hybrid-protocol.md §5.5): plaintext too large")]
    EncryptFailed,
    /// A decrypted frame breaks the revision-1 framing rules (§6.3).
    #[error("invalid frame (hybrid-protocol.md §6.3): {0}")]
    Frame(#[from] FrameError),
    /// The post-handshake message breaks the desktop's rules (§6.2).
    #[error("invalid post-handshake message (hybrid-protocol.md §6.2): {0}")]
    PostHandshake(#[from] PostHandshakeError),
    /// A linking map breaks Chromium's `Pairing::Parse` rules (§9.2).
    #[error("invalid linking map (hybrid-protocol.md §9.2): {0}")]
    Linking(#[from] LinkingError),
    /// HKDF-derived identity scalar reduced to zero (§2.3; probability 2^-256).
    #[error("derived P-256 private key is zero (hybrid-protocol.md §2.3)")]
    DerivedKeyZero,
    /// `snow` refused to build a handshake state (a local bug, not peer input).
    #[error("Noise library setup failed: {0}")]
    Setup(#[source] snow::Error),
}

/// Why a handshake message was refused (§5.3, §5.4).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// msg1 is shorter than the 65-byte ephemeral key (Chromium's only
    /// length rule for msg1).
    #[error("handshake message of {len} bytes is shorter than 65 (a P-256 point)")]
    MessageTooShort {
        /// The length received.
        len: usize,
    },
    /// msg2 is not exactly 81 bytes (newest Chromium `kResponseSize = 65 + 16`).
    #[error("handshake response is {len} bytes, must be exactly 81")]
    WrongResponseLength {
        /// The length received.
        len: usize,
    },
    /// The first 65 bytes are not an uncompressed point on P-256 (§5.2).
    #[error("ephemeral key is not an uncompressed P-256 point on the curve")]
    InvalidPoint,
    /// The AEAD tag did not verify, or fewer than 16 tag bytes follow the point.
    #[error("handshake AEAD open failed (wrong PSK, key or tampered message)")]
    AeadFailed,
    /// The AEAD opened but the payload is not empty (§5.3: must be empty).
    #[error("handshake payload is {len} bytes, must be empty")]
    NonEmptyPayload {
        /// The payload length.
        len: usize,
    },
    /// `snow` reported another failure while processing the message.
    #[error("Noise state machine error: {0}")]
    Noise(#[source] snow::Error),
}

/// Why a transport frame was refused (§5.5 receiver rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptFailure {
    /// AES-GCM open failed (wrong key, wrong sequence number or tampering).
    #[error("AES-GCM open failed")]
    Aead,
    /// The decrypted padded plaintext is empty.
    #[error("decrypted plaintext is empty")]
    Empty,
    /// The padding byte `z` claims more than the frame holds (`z + 1 > len`).
    #[error("padding length {z} + 1 exceeds frame length {len}")]
    BadPadding {
        /// The last byte of the padded plaintext.
        z: u8,
        /// The padded plaintext length.
        len: usize,
    },
}

/// Why a decrypted frame was refused (§6.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// No message-type byte (Chromium: fatal).
    #[error("empty frame (no message-type byte)")]
    Empty,
    /// Message type above 3 (Chromium: fatal).
    #[error("unknown message type {0} (only 0..=3 exist)")]
    UnknownType(u8),
    /// A shutdown frame (`00`) with payload bytes.
    #[error("shutdown frame carries {0} payload bytes, must be empty")]
    ShutdownWithPayload(usize),
    /// An update payload that is not exactly one canonical CBOR item.
    #[error("update payload is not one canonical CBOR item: {0}")]
    UpdateNotCbor(#[source] hybrid_cbor::Error),
    /// An update from the phone whose payload is not a CBOR map (desktop rule).
    #[error("update payload is not a CBOR map")]
    UpdateNotMap,
    /// A JSON frame whose payload is not UTF-8.
    #[error("JSON frame payload is not UTF-8")]
    JsonNotUtf8,
}

/// Why a post-handshake message was refused (§6.2, Chromium
/// `fido_tunnel_device.cc`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostHandshakeError {
    /// Neither revision 1 (plain CBOR) nor revision 0 (padded CBOR) parses.
    #[error("not CBOR and not a revision-0 padded CBOR map: {0}")]
    NotCbor(#[source] hybrid_cbor::Error),
    /// The revision-0 padding trailer claims more bytes than exist.
    #[error("revision-0 padding length exceeds the message")]
    BadPadding,
    /// The top-level item is not a map.
    #[error("post-handshake message is not a CBOR map")]
    NotMap,
    /// Key 3 is present but not an array of text strings.
    #[error("key 3 (features) is not an array of text strings")]
    BadFeatures,
    /// Features include "ctap" but key 1 is absent or not a byte string.
    #[error("feature \"ctap\" advertised but key 1 (getInfo) is missing or not a byte string")]
    MissingGetInfo,
    /// Key 1 is present but "ctap" is not among the features.
    #[error("key 1 (getInfo) present without feature \"ctap\"")]
    UnexpectedGetInfo,
    /// The caller requires CTAP and the phone does not offer it.
    #[error("the phone does not support \"ctap\"")]
    CtapNotSupported,
    /// Key 2 is present but not a map.
    #[error("key 2 (linking) is not a map")]
    LinkingNotMap,
    /// Key 2 is a map that fails the §9.2 checks.
    #[error("key 2 (linking): {0}")]
    Linking(#[source] LinkingError),
}

/// Why a linking map was refused (§9.2, Chromium `Pairing::Parse`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkingError {
    /// The value is not a CBOR map (or not CBOR at all).
    #[error("linking data is not a CBOR map")]
    NotMap,
    /// A required key is missing.
    #[error("linking map key {0} is missing")]
    MissingKey(i64),
    /// A key has the wrong CBOR type (1,2,3,4,6 bstr; 5 tstr; 999 bool).
    #[error("linking map key {0} has the wrong CBOR type")]
    WrongType(i64),
    /// A byte string has the wrong length (2: 8, 3: 32, 4: 65, 6: 32).
    #[error("linking map key {key} is {len} bytes, must be {expected}")]
    WrongLength {
        /// The map key.
        key: i64,
        /// The length found.
        len: usize,
        /// The length required.
        expected: usize,
    },
    /// Key 4 is 65 bytes but not an uncompressed point on P-256.
    #[error("linking map key 4 is not an uncompressed P-256 point")]
    InvalidPublicKey,
    /// The pairing signature (key 6) does not verify.
    #[error("pairing signature does not verify against the handshake hash")]
    BadSignature,
}
