//! The crate's error type for the pure part (derivation, EID, adverts, the
//! advert suffix and the L2CAP channel framing).

/// Why a derivation, EID plaintext or advert was refused. Each variant's
/// Display names the rule of `hybrid-protocol.md` it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BleError {
    /// HKDF-SHA256 output is limited to 255 × 32 bytes (RFC 5869).
    #[error("derive rule §2.1: HKDF-SHA256 cannot produce {len} bytes (maximum 8160)")]
    DeriveLength {
        /// The length asked for.
        len: usize,
    },
    /// Service data is not exactly 20 bytes (§3.3 step 1).
    #[error("advert rule §3.3.1: service data is {len} bytes, not 20")]
    AdvertLength {
        /// The length received.
        len: usize,
    },
    /// Service data shorter than an advert cannot carry a CTAP 2.3 suffix (§3.4).
    #[error("advert rule §3.4: service data is {len} bytes, shorter than the 20-byte advert")]
    ServiceDataTooShort {
        /// The length received.
        len: usize,
    },
    /// PSM 0 cannot be advertised (`hybrid-ble-l2cap.md` §2).
    #[error("advert suffix rule (hybrid-ble-l2cap.md §2): PSM 0 is not an L2CAP PSM")]
    InvalidPsm,
    /// The advertisement suffix is not one well-formed CBOR item
    /// (`hybrid-ble-l2cap.md` §2).
    #[error("advert suffix rule (hybrid-ble-l2cap.md §2): not a single CBOR item ({0})")]
    SuffixCbor(hybrid_cbor::Error),
    /// The advertisement suffix is CBOR but not a map (`hybrid-ble-l2cap.md` §2).
    #[error("advert suffix rule (hybrid-ble-l2cap.md §2): not a CBOR map")]
    SuffixNotAMap,
    /// The desktop's first byte on the L2CAP channel is neither `00` (length
    /// prefix) nor `04` (CRLF variant) (`hybrid-ble-l2cap.md` §4).
    #[error("L2CAP framing (hybrid-ble-l2cap.md §4): first byte {first_byte:#04x} is neither 00 (length prefix) nor 04 (CRLF)")]
    L2capUnknownFraming {
        /// The byte received.
        first_byte: u8,
    },
    /// A zero-length message on the L2CAP channel (`hybrid-ble-l2cap.md` §4).
    #[error("L2CAP framing (hybrid-ble-l2cap.md §4): zero-length message")]
    L2capEmptyMessage,
    /// A message longer than the limit (1 MiB, `hybrid-ble-l2cap.md` §4).
    #[error("L2CAP framing (hybrid-ble-l2cap.md §4): message of {len} bytes exceeds {max}")]
    L2capTooLong {
        /// The length announced or found.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// CRLF variant: more bytes than a message may have arrived without a
    /// `0D 0A` (`hybrid-ble-l2cap.md` §4).
    #[error("L2CAP framing (hybrid-ble-l2cap.md §4): {buffered} bytes without 0D 0A (messages are at most {max} bytes)")]
    L2capNoTerminator {
        /// Bytes buffered.
        buffered: usize,
        /// The message limit.
        max: usize,
    },
    /// More bytes were pushed than a decoder holds (the caller did not drain).
    #[error("L2CAP framing: {buffered} bytes buffered, more than the {max} allowed")]
    L2capBufferFull {
        /// Bytes that would be buffered.
        buffered: usize,
        /// The limit.
        max: usize,
    },
    /// The channel ended in the middle of a message (`hybrid-ble-l2cap.md` §4).
    #[error("L2CAP framing (hybrid-ble-l2cap.md §4): channel closed mid-message ({buffered} bytes buffered)")]
    L2capTruncated {
        /// Bytes of the unfinished message.
        buffered: usize,
    },
    /// `extend_candidate` without a CRLF candidate to extend.
    #[error("L2CAP framing: no CRLF candidate message to extend")]
    L2capNothingToExtend,
    /// A CRLF message still did not decrypt after this many extensions
    /// (`hybrid-ble-l2cap.md` §4 (b)).
    #[error("L2CAP framing (hybrid-ble-l2cap.md §4): message still undecryptable after {max} extensions to the next 0D 0A")]
    L2capTooManyExtensions {
        /// The bound.
        max: u32,
    },
    /// The 4-byte HMAC tag does not match: not an advert for this key (§3.3 step 2).
    #[error("advert rule §3.3.2: HMAC tag does not match (advert not made with this EID key)")]
    TagMismatch,
    /// An EID plaintext is not exactly 16 bytes (§3.1).
    #[error("EID rule §3.1: plaintext is {len} bytes, not 16")]
    PlaintextLength {
        /// The length received.
        len: usize,
    },
    /// Byte 0 of the EID plaintext is not zero (§3.1, §3.3 step 4).
    #[error("EID rule §3.3.4: reserved byte is {value:#04x}, must be 0x00")]
    ReservedByte {
        /// The value found.
        value: u8,
    },
    /// The tunnel-server domain ID is neither hashed (≥ 256) nor an assigned
    /// ID the desktop knows (< key 2 of the QR) (§3.3 step 5, §4.1).
    #[error(
        "EID rule §3.3.5: tunnel domain {id} is unknown (needs id >= 256 or id < {known_domains})"
    )]
    UnknownDomain {
        /// The domain ID in the plaintext.
        id: u16,
        /// How many assigned domains the desktop knows (QR key 2).
        known_domains: u64,
    },
}
