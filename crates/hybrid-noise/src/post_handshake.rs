//! The post-handshake message (§6.2), its legacy revision-0 padded form, and
//! the update message Chromium's phone sends right after it (§6.4).
//!
//! The phone builds the message with [`PostHandshakeMessage::encode`]
//! (revision 1: a bare canonical CBOR map, no type byte; the Crypter's 32-byte
//! padding still applies). [`PostHandshakeMessage::decode`] is the desktop
//! side, with Chromium's `fido_tunnel_device.cc` rules, used by our test
//! desktop and the fuzzer.

use hybrid_cbor::access::{get_int_key, int};
use hybrid_cbor::Value;

use crate::error::PostHandshakeError;
use crate::frame::Frame;
use crate::linking::LinkingMap;

/// Feature string for CTAP2 requests (§6.2 key 3).
pub const FEATURE_CTAP: &str = "ctap";
/// Feature string for digital-credential JSON messages (§6.2 key 3).
pub const FEATURE_DC: &str = "dc";

const KEY_PADDING: i64 = 0;
const KEY_GET_INFO: i64 = 1;
const KEY_LINKING: i64 = 2;
const KEY_FEATURES: i64 = 3;
const KEY_UPDATE_LINKING: i64 = 1;

/// Revision-0 padding granularity (`kPostHandshakeMsgPaddingGranularity`).
pub const REV0_PADDING_GRANULARITY: usize = 512;

/// Length of the plaintext frame of Chromium's padding-only update
/// (`02 || {0: 492 zero bytes}`, vector `framing_examples`); it encrypts to
/// 512 + 16 = 528 bytes (§6.4).
pub const CHROMIUM_UPDATE_FRAME_LEN: usize = 498;

/// How the desktop recognised the message (§6.2 "Protocol revisions").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revision {
    /// caBLE v2.0: padded CBOR, no type bytes on later messages.
    Rev0,
    /// Today's format: a bare CBOR map, type bytes on later messages.
    Rev1,
}

/// The phone's first transport message (§6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostHandshakeMessage {
    /// Key 1: the getInfo response CBOR (without a status byte).
    pub get_info: Option<Vec<u8>>,
    /// Key 3: supported features; encoded sorted, as Chromium does.
    pub features: Vec<String>,
    /// Key 2: linking map, legacy location. Never send it unless linking is
    /// fully implemented (conformance checklist).
    pub linking: Option<LinkingMap>,
}

impl PostHandshakeMessage {
    /// `{1: get_info, 3: ["ctap"]}` — what a CTAP-only phone sends.
    pub fn ctap(get_info: Vec<u8>) -> Self {
        PostHandshakeMessage {
            get_info: Some(get_info),
            features: vec![FEATURE_CTAP.to_owned()],
            linking: None,
        }
    }

    /// Whether the phone offers CTAP2 requests.
    pub fn supports_ctap(&self) -> bool {
        self.features.iter().any(|f| f == FEATURE_CTAP)
    }

    /// The message as a CBOR map.
    pub fn to_value(&self) -> Value {
        let mut entries = Vec::new();
        if let Some(gi) = &self.get_info {
            entries.push((int(KEY_GET_INFO), Value::Bytes(gi.clone())));
        }
        if let Some(l) = &self.linking {
            entries.push((int(KEY_LINKING), l.to_value()));
        }
        let mut features = self.features.clone();
        features.sort();
        entries.push((
            int(KEY_FEATURES),
            Value::Array(features.into_iter().map(Value::Text).collect()),
        ));
        hybrid_cbor::canonicalize(Value::Map(entries))
    }

    /// Revision-1 encoding: canonical CBOR, no type byte.
    pub fn encode(&self) -> Vec<u8> {
        hybrid_cbor::to_canonical_vec(&self.to_value())
    }

    /// Desktop side: detects the revision (plain canonical CBOR → 1, else the
    /// padded form → 0) and applies [`PostHandshakeMessage::from_value`].
    pub fn decode(plaintext: &[u8]) -> Result<(Self, Revision), PostHandshakeError> {
        let (value, revision) = match hybrid_cbor::decode_canonical(plaintext) {
            Ok(v) => (v, Revision::Rev1),
            Err(rev1_err) => match decode_padded_rev0(plaintext) {
                Ok(v) => (v, Revision::Rev0),
                Err(PostHandshakeError::BadPadding) => {
                    return Err(PostHandshakeError::NotCbor(rev1_err))
                }
                Err(e) => return Err(e),
            },
        };
        Ok((Self::from_value(&value)?, revision))
    }

    /// Desktop rules (Chromium `fido_tunnel_device.cc`, §6.2): a map; key 3,
    /// if present, an array of text strings, absent meaning `["ctap"]`;
    /// "ctap" ⇒ key 1 is a byte string; key 1 without "ctap" is an error;
    /// key 2, if present, a map passing the §9.2 checks. Other keys (e.g. 0,
    /// padding) are ignored.
    pub fn from_value(value: &Value) -> Result<Self, PostHandshakeError> {
        let Value::Map(entries) = value else {
            return Err(PostHandshakeError::NotMap);
        };
        let features = match get_int_key(entries, KEY_FEATURES) {
            None => vec![FEATURE_CTAP.to_owned()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::Text(t) => Ok(t.clone()),
                    _ => Err(PostHandshakeError::BadFeatures),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(PostHandshakeError::BadFeatures),
        };
        let ctap = features.iter().any(|f| f == FEATURE_CTAP);
        let get_info = match (ctap, get_int_key(entries, KEY_GET_INFO)) {
            (true, Some(Value::Bytes(b))) => Some(b.clone()),
            (true, _) => return Err(PostHandshakeError::MissingGetInfo),
            (false, Some(_)) => return Err(PostHandshakeError::UnexpectedGetInfo),
            (false, None) => None,
        };
        let linking = match get_int_key(entries, KEY_LINKING) {
            None => None,
            Some(v @ Value::Map(_)) => {
                Some(LinkingMap::from_value(v).map_err(PostHandshakeError::Linking)?)
            }
            Some(_) => return Err(PostHandshakeError::LinkingNotMap),
        };
        Ok(PostHandshakeMessage {
            get_info,
            features,
            linking,
        })
    }

    /// For WebAuthn requests the desktop requires CTAP (§6.2): returns the
    /// getInfo bytes or [`PostHandshakeError::CtapNotSupported`].
    pub fn require_ctap(&self) -> Result<&[u8], PostHandshakeError> {
        match (&self.get_info, self.supports_ctap()) {
            (Some(gi), true) => Ok(gi),
            _ => Err(PostHandshakeError::CtapNotSupported),
        }
    }
}

/// Revision-0 padded encoding (Chromium `EncodePaddedCBORMap`, §6.2):
/// `cbor || zeros || LE16(number of zeros)`, total
/// `round_up(len(cbor) + 2, 512)`.
pub fn encode_padded_rev0(cbor: &[u8]) -> Vec<u8> {
    let used = cbor.len().saturating_add(2);
    let zeros =
        (REV0_PADDING_GRANULARITY - used % REV0_PADDING_GRANULARITY) % REV0_PADDING_GRANULARITY;
    let mut out = Vec::with_capacity(used.saturating_add(zeros));
    out.extend_from_slice(cbor);
    out.resize(cbor.len().saturating_add(zeros), 0);
    // zeros < 512 always fits 16 bits.
    out.extend_from_slice(&u16::try_from(zeros).unwrap_or(0).to_le_bytes());
    out
}

/// Revision-0 padded decoding: the current 16-bit trailer first, then the
/// older 8-bit trailer (256-byte granularity, accepted since M99). The CBOR
/// must be one canonical item and a map.
pub fn decode_padded_rev0(bytes: &[u8]) -> Result<Value, PostHandshakeError> {
    let mut last_err = PostHandshakeError::BadPadding;
    // 16-bit trailer.
    if let Some((body, trailer)) = bytes
        .len()
        .checked_sub(2)
        .and_then(|n| bytes.split_at_checked(n))
    {
        let zeros = usize::from(u16::from_le_bytes([
            trailer.first().copied().unwrap_or(0),
            trailer.get(1).copied().unwrap_or(0),
        ]));
        if let Some(cbor) = body.len().checked_sub(zeros).and_then(|n| body.get(..n)) {
            match parse_map(cbor) {
                Ok(v) => return Ok(v),
                Err(e) => last_err = e,
            }
        }
    }
    // 8-bit trailer.
    if let Some((&zeros, body)) = bytes.split_last() {
        if let Some(cbor) = body
            .len()
            .checked_sub(usize::from(zeros))
            .and_then(|n| body.get(..n))
        {
            match parse_map(cbor) {
                Ok(v) => return Ok(v),
                // Report the 16-bit reading's error if it had one.
                Err(e) if last_err == PostHandshakeError::BadPadding => last_err = e,
                Err(_) => {}
            }
        }
    }
    Err(last_err)
}

fn parse_map(cbor: &[u8]) -> Result<Value, PostHandshakeError> {
    match hybrid_cbor::decode_canonical(cbor) {
        Ok(v @ Value::Map(_)) => Ok(v),
        Ok(_) => Err(PostHandshakeError::NotMap),
        Err(e) => Err(PostHandshakeError::NotCbor(e)),
    }
}

/// The update frame Chromium's phone sends after the post-handshake message
/// in QR mode (§6.4): `02 || {0: zero padding, 1: linking}` with key 1 only
/// when linking, padded so the frame is [`CHROMIUM_UPDATE_FRAME_LEN`] bytes
/// whenever the content fits (ciphertext 528 bytes), which hides whether a
/// linking map is present. Optional to send.
pub fn padded_update(linking: Option<&LinkingMap>) -> Frame {
    let build = |zeros: usize| {
        let mut entries = vec![(int(KEY_PADDING), Value::Bytes(vec![0u8; zeros]))];
        if let Some(l) = linking {
            entries.push((int(KEY_UPDATE_LINKING), l.to_value()));
        }
        Frame::Update(hybrid_cbor::canonicalize(Value::Map(entries)))
    };
    let base_len = build(0).encode().len();
    let mut zeros = CHROMIUM_UPDATE_FRAME_LEN.saturating_sub(base_len);
    // The byte-string header grows by up to 2 bytes with the padding length.
    loop {
        let frame = build(zeros);
        if zeros == 0 || frame.encode().len() <= CHROMIUM_UPDATE_FRAME_LEN {
            return frame;
        }
        zeros -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::derive_p256_from_secret;
    use crate::LinkingError;
    use zeroize::Zeroizing;

    fn map(entries: Vec<(i64, Value)>) -> Vec<u8> {
        hybrid_cbor::to_canonical_vec(&hybrid_cbor::canonicalize(Value::Map(
            entries.into_iter().map(|(k, v)| (int(k), v)).collect(),
        )))
    }

    fn features(f: &[&str]) -> Value {
        Value::Array(f.iter().map(|s| Value::Text((*s).into())).collect())
    }

    pub(crate) fn sample_linking() -> LinkingMap {
        LinkingMap {
            contact_id: b"contact".to_vec(),
            pairing_id: [1; 8],
            paired_secret: Zeroizing::new([2; 32]),
            identity_public: derive_p256_from_secret(b"phone").unwrap().public_key(),
            name: "hybridd".into(),
            signature: [3; 32],
            play_services: None,
        }
    }

    #[test]
    fn round_trip_ctap() {
        let m = PostHandshakeMessage::ctap(vec![0xa0]);
        assert_eq!(m.encode(), hex::decode("a20141a003816463746170").unwrap());
        let (d, rev) = PostHandshakeMessage::decode(&m.encode()).unwrap();
        assert_eq!((d, rev), (m, Revision::Rev1));
    }

    #[test]
    fn features_default_to_ctap() {
        let (d, _) = PostHandshakeMessage::decode(&map(vec![(1, Value::Bytes(vec![1]))])).unwrap();
        assert_eq!(d.features, vec!["ctap".to_owned()]);
        assert_eq!(d.require_ctap().unwrap(), &[1]);
    }

    #[test]
    fn desktop_rules() {
        use PostHandshakeError as E;
        let dec = |b: Vec<u8>| PostHandshakeMessage::decode(&b).map(|(m, _)| m);
        assert_eq!(dec(map(vec![])), Err(E::MissingGetInfo));
        assert_eq!(
            dec(map(vec![(1, Value::Text("x".into()))])),
            Err(E::MissingGetInfo)
        );
        assert_eq!(
            dec(map(vec![(1, Value::Bytes(vec![])), (3, features(&["dc"]))])),
            Err(E::UnexpectedGetInfo)
        );
        let dc_only = dec(map(vec![(3, features(&["dc"]))])).unwrap();
        assert_eq!(dc_only.require_ctap(), Err(E::CtapNotSupported));
        assert_eq!(dec(map(vec![(3, int(1))])), Err(E::BadFeatures));
        assert_eq!(
            dec(map(vec![(3, Value::Array(vec![int(1)]))])),
            Err(E::BadFeatures)
        );
        assert_eq!(
            dec(map(vec![
                (1, Value::Bytes(vec![])),
                (2, Value::Bytes(vec![]))
            ])),
            Err(E::LinkingNotMap)
        );
        assert_eq!(
            dec(map(vec![
                (1, Value::Bytes(vec![])),
                (2, Value::Map(vec![]))
            ])),
            Err(E::Linking(LinkingError::MissingKey(1)))
        );
        assert_eq!(dec(hex::decode("80").unwrap()), Err(E::NotMap));
        assert!(matches!(dec(vec![0xff]), Err(E::NotCbor(_))));
        assert!(matches!(dec(vec![]), Err(E::NotCbor(_))));
        // Padding key 0 and unknown keys are ignored.
        assert!(dec(map(vec![
            (0, Value::Bytes(vec![0; 10])),
            (1, Value::Bytes(vec![])),
            (7, int(1))
        ]))
        .is_ok());
    }

    #[test]
    fn legacy_linking_location_round_trips() {
        let mut m = PostHandshakeMessage::ctap(vec![0xa0]);
        m.linking = Some(sample_linking());
        let (d, _) = PostHandshakeMessage::decode(&m.encode()).unwrap();
        assert_eq!(d, m);
    }

    #[test]
    fn rev0_round_trip_and_detection() {
        let m = PostHandshakeMessage::ctap(vec![0xa0]);
        let padded = encode_padded_rev0(&m.encode());
        assert_eq!(padded.len(), 512);
        assert_eq!(
            PostHandshakeMessage::decode(&padded).unwrap(),
            (m.clone(), Revision::Rev0)
        );
        // Older 8-bit trailer, 256-byte granularity.
        let mut old = m.encode();
        let zeros = 256 - old.len() - 1;
        old.resize(255, 0);
        old.push(u8::try_from(zeros).unwrap());
        assert_eq!(
            PostHandshakeMessage::decode(&old).unwrap(),
            (m, Revision::Rev0)
        );
    }

    #[test]
    fn rev0_bad_padding() {
        // Trailer claims more zeros than exist.
        assert_eq!(
            decode_padded_rev0(&[0xa0, 0xff, 0xff]),
            Err(PostHandshakeError::BadPadding)
        );
        assert_eq!(decode_padded_rev0(&[]), Err(PostHandshakeError::BadPadding));
        // Non-map content.
        assert_eq!(
            decode_padded_rev0(&[0x01, 0, 0]),
            Err(PostHandshakeError::NotMap)
        );
    }

    #[test]
    fn padded_update_shape() {
        let f = padded_update(None).encode();
        assert_eq!(f.len(), CHROMIUM_UPDATE_FRAME_LEN);
        assert_eq!(&f[..8], hex::decode("02a1005901ec0000").unwrap().as_slice());
        let with = padded_update(Some(&sample_linking())).encode();
        assert_eq!(with.len(), CHROMIUM_UPDATE_FRAME_LEN);
        let Frame::Update(Value::Map(entries)) = Frame::parse_from_phone(&with).unwrap() else {
            panic!("not a map update")
        };
        let l = get_int_key(&entries, 1).unwrap();
        assert_eq!(LinkingMap::from_value(l).unwrap(), sample_linking());
    }
}
