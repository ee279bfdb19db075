//! The QR payload: parsing and validation (`hybrid-protocol.md` §1.3, §1.4,
//! Chromium `qr::Parse`) and encoding for the desktop side (Chromium
//! `qr::Encode`).

use std::fmt;

use hybrid_cbor::access::{get_int_key, int};
use hybrid_cbor::{Mode, Value};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{digits_decode, digits_encode, QrError};

/// The URI prefix desktops emit (§1.1). Parsing compares it case-insensitively.
pub const PREFIX: &str = "FIDO:/";

/// Size of the compressed identity key in key 0 (§1.3).
pub const IDENTITY_KEY_SIZE: usize = 33;
/// Size of the QR secret in key 1 (§1.3, Chromium `kQRSecretSize`).
pub const SECRET_SIZE: usize = 16;

/// QR map keys (§1.3 table).
mod key {
    pub const IDENTITY_KEY: i64 = 0;
    pub const SECRET: i64 = 1;
    pub const KNOWN_DOMAINS: i64 = 2;
    pub const TIMESTAMP: i64 = 3;
    pub const SUPPORTS_LINKING: i64 = 4;
    pub const REQUEST_TYPE: i64 = 5;
    pub const KEY6: i64 = 6;
}

/// What the desktop says will follow (key 5, §1.3 / §1.4 rule 7). A hint for
/// the phone's early UI only; it never restricts the commands (§1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestType {
    /// `"ga"`, any unknown value, or no key 5.
    GetAssertion,
    /// `"mc"`.
    MakeCredential,
    /// `"dcp"` (newer Chromium: digital-credential presentation).
    DigitalCredentialPresentation,
}

impl RequestType {
    /// Maps a key-5 string to a request type (§1.4 rule 7).
    pub fn from_hint(hint: Option<&str>) -> Self {
        match hint {
            Some("mc") => RequestType::MakeCredential,
            Some("dcp") => RequestType::DigitalCredentialPresentation,
            _ => RequestType::GetAssertion,
        }
    }

    /// The canonical key-5 string for this request type.
    pub fn as_hint(self) -> &'static str {
        match self {
            RequestType::GetAssertion => "ga",
            RequestType::MakeCredential => "mc",
            RequestType::DigitalCredentialPresentation => "dcp",
        }
    }
}

/// Key 6, whose meaning differs between sources (§1.3 CONFLICT). It never
/// causes rejection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Key6 {
    /// No key 6.
    #[default]
    Absent,
    /// CTAP 2.2-era bool (webauthn-rs): "supports non-discoverable makeCredential".
    Bool(bool),
    /// CTAP 2.3 array of transport channels (libwebauthn): 0 = WebSocket
    /// tunnel, 1 = BLE L2CAP.
    Channels(Vec<u64>),
    /// Any other type (ignored; not re-encoded).
    Other,
}

impl Key6 {
    /// Channel value 0 in a key-6 array: the WebSocket tunnel
    /// ("cloud-assisted"; libwebauthn/pxp `qr_code_device.rs`).
    pub const CHANNEL_TUNNEL: u64 = 0;
    /// Channel value 1 in a key-6 array: the CTAP 2.3 BLE L2CAP data channel
    /// (`hybrid-ble-l2cap.md` §1).
    pub const CHANNEL_BLE_L2CAP: u64 = 1;

    /// Whether key 6 offers the CTAP 2.3 BLE L2CAP data channel: an array of
    /// unsigned integers that contains 1 (`hybrid-ble-l2cap.md` §1; what
    /// libwebauthn ≥ 0.5 and pxp send is `[0, 1]`, bytes `82 00 01`).
    ///
    /// Everything else means "tunnel only": no key 6 (every Chromium QR), the
    /// pre-2.3 bool of Chromium/webauthn-rs (§1.3 CONFLICT), an array holding
    /// anything but unsigned integers, or any other type. Unknown channel
    /// values in a clean array are ignored. Erring towards "tunnel only" is the
    /// safe side: offering BLE by mistake would append a suffix to the advert,
    /// and Chromium drops adverts that are not exactly 20 bytes.
    pub fn offers_ble_l2cap(&self) -> bool {
        matches!(self, Key6::Channels(c) if c.contains(&Self::CHANNEL_BLE_L2CAP))
    }

    fn from_value(v: Option<&Value>) -> Self {
        match v {
            None => Key6::Absent,
            Some(Value::Bool(b)) => Key6::Bool(*b),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::Integer(n) => u64::try_from(*n).ok(),
                    _ => None,
                })
                .collect::<Option<Vec<u64>>>()
                .map_or(Key6::Other, Key6::Channels),
            Some(_) => Key6::Other,
        }
    }

    fn to_value(&self) -> Option<Value> {
        match self {
            Key6::Absent | Key6::Other => None,
            Key6::Bool(b) => Some(Value::Bool(*b)),
            Key6::Channels(c) => Some(Value::Array(
                c.iter().map(|n| Value::Integer((*n).into())).collect(),
            )),
        }
    }
}

/// A validated `FIDO:/` QR code (§1.3), or one being built for the desktop
/// side. The secret is zeroized on drop and never shown by `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct QrCode {
    #[zeroize(skip)]
    identity_key: [u8; IDENTITY_KEY_SIZE],
    #[zeroize(skip)]
    peer_identity: [u8; 65],
    secret: [u8; SECRET_SIZE],
    #[zeroize(skip)]
    known_domains: u64,
    #[zeroize(skip)]
    timestamp: Option<u64>,
    #[zeroize(skip)]
    supports_linking: Option<bool>,
    #[zeroize(skip)]
    hint: Option<String>,
    #[zeroize(skip)]
    key6: Key6,
}

impl fmt::Debug for QrCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QrCode")
            .field("identity_key", &HexBytes(&self.identity_key))
            .field("secret", &"<redacted>")
            .field("known_domains", &self.known_domains)
            .field("timestamp", &self.timestamp)
            .field("supports_linking", &self.supports_linking)
            .field("hint", &self.hint)
            .field("key6", &self.key6)
            .finish()
    }
}

struct HexBytes<'a>(&'a [u8]);
impl fmt::Debug for HexBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl PartialEq for QrCode {
    /// Field-by-field; the secret is compared in constant time.
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.secret.ct_eq(&other.secret))
            && self.identity_key == other.identity_key
            && self.known_domains == other.known_domains
            && self.timestamp == other.timestamp
            && self.supports_linking == other.supports_linking
            && self.hint == other.hint
            && self.key6 == other.key6
    }
}
impl Eq for QrCode {}

/// Validates a compressed P-256 point (§1.4 rule 5) and returns its
/// uncompressed form.
fn decompress(key: &[u8]) -> Result<[u8; 65], QrError> {
    if key.len() != IDENTITY_KEY_SIZE {
        return Err(QrError::IdentityKeyLength { len: key.len() });
    }
    // Only the compressed tags: `from_sec1_bytes` would also take SEC1's
    // 33-byte "compact" form (tag 0x05), which is not a compressed point.
    if !matches!(key.first(), Some(0x02 | 0x03)) {
        return Err(QrError::IdentityKeyNotOnCurve);
    }
    let pk = p256::PublicKey::from_sec1_bytes(key).map_err(|_| QrError::IdentityKeyNotOnCurve)?;
    pk.to_encoded_point(false)
        .as_bytes()
        .try_into()
        .map_err(|_| QrError::IdentityKeyNotOnCurve)
}

/// Parses and validates a `FIDO:/` URI (§1.1–§1.4), in Chromium's order:
///
/// 1. prefix `FIDO:/` (case-insensitive), digits (§1.2);
/// 2. exactly one CBOR item (tolerant reader: key order and minimality are
///    not enforced, duplicate keys and trailing bytes are refused), a map;
/// 3. keys 0 and 1 present and byte strings;
/// 4. key 1 is 16 bytes;
/// 5. key 0 is 33 bytes and a valid compressed P-256 point;
/// 6. key 2 (if present) an integer — negative means 0 —, key 4 a bool,
///    key 5 a text string.
///
/// Keys 3 and 6 never cause rejection; unknown keys are ignored. The input is
/// taken as is: callers trim surrounding whitespace if they want to.
pub fn parse(uri: &str) -> Result<QrCode, QrError> {
    let digits = match uri.get(..PREFIX.len()) {
        Some(p) if p.eq_ignore_ascii_case(PREFIX) => uri.get(PREFIX.len()..).unwrap_or(""),
        _ => return Err(QrError::Prefix),
    };
    let bytes = digits_decode(digits)?;
    parse_cbor(&bytes)
}

/// Validates the decoded CBOR payload of a QR code (§1.4 rules 2–6), for
/// callers that already have the bytes.
pub fn parse_cbor(bytes: &[u8]) -> Result<QrCode, QrError> {
    let value = hybrid_cbor::decode(bytes, Mode::Tolerant).map_err(QrError::Cbor)?;
    let Value::Map(entries) = value else {
        return Err(QrError::NotAMap);
    };
    // Rule 3: both byte strings before any length check.
    let identity = match get_int_key(&entries, key::IDENTITY_KEY) {
        Some(Value::Bytes(b)) => b,
        _ => return Err(QrError::MissingOrNotBytes { key: 0 }),
    };
    let secret = match get_int_key(&entries, key::SECRET) {
        Some(Value::Bytes(b)) => b,
        _ => return Err(QrError::MissingOrNotBytes { key: 1 }),
    };
    // Rule 4.
    let secret: [u8; SECRET_SIZE] = secret
        .as_slice()
        .try_into()
        .map_err(|_| QrError::SecretLength { len: secret.len() })?;
    let mut qr = QrCode {
        identity_key: [0; IDENTITY_KEY_SIZE],
        peer_identity: [0; 65],
        secret,
        known_domains: 0,
        timestamp: None,
        supports_linking: None,
        hint: None,
        key6: Key6::Absent,
    };
    // Rule 5.
    qr.peer_identity = decompress(identity)?;
    qr.identity_key = identity
        .as_slice()
        .try_into()
        .map_err(|_| QrError::IdentityKeyLength {
            len: identity.len(),
        })?;
    // Rule 6.
    qr.known_domains = match get_int_key(&entries, key::KNOWN_DOMAINS) {
        None => 0,
        Some(Value::Integer(i)) => u64::try_from(*i).unwrap_or(0),
        Some(_) => {
            return Err(QrError::WrongType {
                key: 2,
                expected: "an integer",
            });
        }
    };
    qr.supports_linking = match get_int_key(&entries, key::SUPPORTS_LINKING) {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(QrError::WrongType {
                key: 4,
                expected: "a bool",
            })
        }
    };
    qr.hint = match get_int_key(&entries, key::REQUEST_TYPE) {
        None => None,
        Some(Value::Text(t)) => Some(t.clone()),
        Some(_) => {
            return Err(QrError::WrongType {
                key: 5,
                expected: "a text string",
            });
        }
    };
    // Keys 3 and 6: informational, never a reason to reject.
    qr.timestamp = match get_int_key(&entries, key::TIMESTAMP) {
        Some(Value::Integer(i)) => u64::try_from(*i).ok(),
        _ => None,
    };
    qr.key6 = Key6::from_value(get_int_key(&entries, key::KEY6));
    Ok(qr)
}

impl QrCode {
    /// Starts a QR code for the desktop side from the compressed identity
    /// key and the QR secret; the optional keys are absent. Fails if the key
    /// is not a valid compressed P-256 point (§1.4 rule 5).
    pub fn new(
        identity_key_compressed: [u8; IDENTITY_KEY_SIZE],
        secret: [u8; SECRET_SIZE],
    ) -> Result<Self, QrError> {
        let peer_identity = decompress(&identity_key_compressed)?;
        Ok(QrCode {
            identity_key: identity_key_compressed,
            peer_identity,
            secret,
            known_domains: 0,
            timestamp: None,
            supports_linking: None,
            hint: None,
            key6: Key6::Absent,
        })
    }

    /// Sets key 2, the number of assigned tunnel domains the desktop knows
    /// (0 is encoded by omitting the key, which means the same, §1.3).
    #[must_use]
    pub fn with_known_domains(mut self, n: u64) -> Self {
        self.known_domains = n;
        self
    }

    /// Sets key 3, the creation time in Unix seconds.
    #[must_use]
    pub fn with_timestamp(mut self, unix_secs: u64) -> Self {
        self.timestamp = Some(unix_secs);
        self
    }

    /// Sets key 4, whether the desktop supports linking.
    #[must_use]
    pub fn with_supports_linking(mut self, yes: bool) -> Self {
        self.supports_linking = Some(yes);
        self
    }

    /// Sets key 5 to the canonical string of `t`.
    #[must_use]
    pub fn with_request_type(mut self, t: RequestType) -> Self {
        self.hint = Some(t.as_hint().to_owned());
        self
    }

    /// Sets key 5 to an arbitrary string (e.g. to test unknown hints).
    #[must_use]
    pub fn with_hint(mut self, hint: &str) -> Self {
        self.hint = Some(hint.to_owned());
        self
    }

    /// Sets key 6 ([`Key6::Other`] and [`Key6::Absent`] are not encoded).
    #[must_use]
    pub fn with_key6(mut self, key6: Key6) -> Self {
        self.key6 = key6;
        self
    }

    /// The desktop's identity public key, compressed (key 0, 33 bytes).
    pub fn identity_key_compressed(&self) -> &[u8; IDENTITY_KEY_SIZE] {
        &self.identity_key
    }

    /// The desktop's identity public key, uncompressed `04 || X || Y` — the
    /// "peer identity" the Noise handshake uses (§1.4 rule 5, §5.3).
    pub fn peer_identity_uncompressed(&self) -> [u8; 65] {
        self.peer_identity
    }

    /// The desktop's identity public key as a `p256` key. Built from the
    /// uncompressed point that parsing already derived, so the square root
    /// of decompression is not computed a second time (it was ≈ 0.5 % of
    /// `hybridd run`'s CPU per ceremony; docs/performance.md).
    pub fn peer_public_key(&self) -> Option<p256::PublicKey> {
        p256::PublicKey::from_sec1_bytes(&self.peer_identity).ok()
    }

    /// The 16-byte QR secret (key 1), root of every derived key (§2.2).
    pub fn secret(&self) -> &[u8; SECRET_SIZE] {
        &self.secret
    }

    /// Key 2: assigned tunnel domains the desktop knows (absent or negative → 0).
    pub fn known_domains(&self) -> u64 {
        self.known_domains
    }

    /// Key 3: creation time, Unix seconds, if present as an unsigned integer.
    pub fn timestamp(&self) -> Option<u64> {
        self.timestamp
    }

    /// Key 4: whether the desktop supports linking, if present.
    pub fn supports_linking(&self) -> Option<bool> {
        self.supports_linking
    }

    /// Key 5 mapped to a request type (§1.4 rule 7).
    pub fn request_type(&self) -> RequestType {
        RequestType::from_hint(self.hint.as_deref())
    }

    /// Key 5 as received, if present.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Key 6 (§1.3 CONFLICT).
    pub fn key6(&self) -> &Key6 {
        &self.key6
    }

    /// Whether this QR offers the CTAP 2.3 BLE L2CAP data channel (key 6 is
    /// an array of unsigned integers containing 1); see
    /// [`Key6::offers_ble_l2cap`]. When false the phone must advertise the
    /// plain 20-byte EID and use the tunnel only.
    pub fn offers_ble_l2cap(&self) -> bool {
        self.key6.offers_ble_l2cap()
    }

    /// The payload as CTAP2-canonical CBOR (as Chromium's `qr::Encode`
    /// writes it). Key 2 is omitted when 0; keys 3–6 when unset.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut entries = vec![
            (
                int(key::IDENTITY_KEY),
                Value::Bytes(self.identity_key.to_vec()),
            ),
            (int(key::SECRET), Value::Bytes(self.secret.to_vec())),
        ];
        if self.known_domains != 0 {
            entries.push((
                int(key::KNOWN_DOMAINS),
                Value::Integer(self.known_domains.into()),
            ));
        }
        if let Some(ts) = self.timestamp {
            entries.push((int(key::TIMESTAMP), Value::Integer(ts.into())));
        }
        if let Some(b) = self.supports_linking {
            entries.push((int(key::SUPPORTS_LINKING), Value::Bool(b)));
        }
        if let Some(h) = &self.hint {
            entries.push((int(key::REQUEST_TYPE), Value::Text(h.clone())));
        }
        if let Some(v) = self.key6.to_value() {
            entries.push((int(key::KEY6), v));
        }
        let mut map = Value::Map(entries);
        let out = hybrid_cbor::to_canonical_vec(&map);
        // The map held a copy of the secret.
        if let Value::Map(e) = &mut map {
            for (_, v) in e.iter_mut() {
                if let Value::Bytes(b) = v {
                    b.zeroize();
                }
            }
        }
        out
    }

    /// The `FIDO:/<digits>` URI (upper-case prefix, §1.1).
    pub fn to_uri(&self) -> String {
        let mut cbor = self.to_cbor();
        let uri = format!("{PREFIX}{}", digits_encode(&cbor));
        cbor.zeroize();
        uri
    }
}
