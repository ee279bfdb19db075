//! Revision-1 framing of decrypted transport messages (§6.3, Chromium
//! `v2_constants.h` `MessageType`): one type byte, then the payload.
//!
//! The post-handshake message (the phone's first transport message) has no
//! type byte and is handled by [`crate::post_handshake`], not here.

use hybrid_cbor::Value;

use crate::error::FrameError;

/// The message-type byte (§6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    /// `0`: shutdown (desktop → phone only), no payload.
    Shutdown = 0,
    /// `1`: a CTAP2 request or response.
    Ctap = 1,
    /// `2`: an update; payload is one CBOR item (a map from the phone).
    Update = 2,
    /// `3`: a JSON message (digital credentials, feature "dc").
    Json = 3,
}

impl TryFrom<u8> for MessageType {
    type Error = FrameError;
    fn try_from(b: u8) -> Result<Self, FrameError> {
        match b {
            0 => Ok(MessageType::Shutdown),
            1 => Ok(MessageType::Ctap),
            2 => Ok(MessageType::Update),
            3 => Ok(MessageType::Json),
            other => Err(FrameError::UnknownType(other)),
        }
    }
}

/// One decrypted revision-1 frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `00`: the desktop is done (§6.3 "Shutdown").
    Shutdown,
    /// `01 || CTAP message`: a request (command byte + CBOR) or a response
    /// (status byte + CBOR). The payload may be empty; judging that is the
    /// CTAP layer's job (conformance checklist "Empty request").
    Ctap(Vec<u8>),
    /// `02 || CBOR`: an update; exactly one canonical CBOR item.
    Update(Value),
    /// `03 || UTF-8 JSON`.
    Json(String),
}

impl Frame {
    /// The frame's type byte.
    pub fn message_type(&self) -> MessageType {
        match self {
            Frame::Shutdown => MessageType::Shutdown,
            Frame::Ctap(_) => MessageType::Ctap,
            Frame::Update(_) => MessageType::Update,
            Frame::Json(_) => MessageType::Json,
        }
    }

    /// Parses a decrypted, un-padded plaintext with the rules every receiver
    /// applies (§6.3): non-empty, type ≤ 3, shutdown without payload, an
    /// update payload that is exactly one canonical CBOR item (Chromium's
    /// phone: `cbor::Reader::Read`, no trailing bytes, not empty), JSON in
    /// UTF-8.
    pub fn parse(plaintext: &[u8]) -> Result<Frame, FrameError> {
        let (&type_byte, payload) = plaintext.split_first().ok_or(FrameError::Empty)?;
        match MessageType::try_from(type_byte)? {
            MessageType::Shutdown => {
                if payload.is_empty() {
                    Ok(Frame::Shutdown)
                } else {
                    Err(FrameError::ShutdownWithPayload(payload.len()))
                }
            }
            MessageType::Ctap => Ok(Frame::Ctap(payload.to_vec())),
            MessageType::Update => hybrid_cbor::decode_canonical(payload)
                .map(Frame::Update)
                .map_err(FrameError::UpdateNotCbor),
            MessageType::Json => String::from_utf8(payload.to_vec())
                .map(Frame::Json)
                .map_err(|_| FrameError::JsonNotUtf8),
        }
    }

    /// Desktop side: [`Frame::parse`] plus Chromium's `ProcessUpdate` rule
    /// that an update from the phone must be a CBOR **map** (§6.3).
    pub fn parse_from_phone(plaintext: &[u8]) -> Result<Frame, FrameError> {
        let frame = Frame::parse(plaintext)?;
        match &frame {
            Frame::Update(Value::Map(_)) | Frame::Shutdown | Frame::Ctap(_) | Frame::Json(_) => {
                Ok(frame)
            }
            Frame::Update(_) => Err(FrameError::UpdateNotMap),
        }
    }

    /// Encodes as `type || payload`; an update's value is written as
    /// canonical CBOR.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.message_type() as u8];
        match self {
            Frame::Shutdown => {}
            Frame::Ctap(p) => out.extend_from_slice(p),
            Frame::Update(v) => out.extend_from_slice(&hybrid_cbor::to_canonical_vec(v)),
            Frame::Json(s) => out.extend_from_slice(s.as_bytes()),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hybrid_cbor::access::int;
    use proptest::prelude::*;

    #[test]
    fn empty_and_unknown_type() {
        assert_eq!(Frame::parse(&[]), Err(FrameError::Empty));
        assert_eq!(Frame::parse(&[4]), Err(FrameError::UnknownType(4)));
        assert_eq!(Frame::parse(&[0xff, 1]), Err(FrameError::UnknownType(0xff)));
    }

    #[test]
    fn shutdown_rules() {
        assert_eq!(Frame::parse(&[0]), Ok(Frame::Shutdown));
        assert_eq!(
            Frame::parse(&[0, 0]),
            Err(FrameError::ShutdownWithPayload(1))
        );
    }

    #[test]
    fn ctap_payload_may_be_empty() {
        assert_eq!(Frame::parse(&[1]), Ok(Frame::Ctap(vec![])));
        assert_eq!(Frame::parse(&[1, 4]), Ok(Frame::Ctap(vec![4])));
    }

    #[test]
    fn update_must_be_one_canonical_item() {
        assert_eq!(
            Frame::parse(&[2, 0xa0]),
            Ok(Frame::Update(Value::Map(vec![])))
        );
        // Empty payload, trailing bytes (the webauthn-rs framing example),
        // truncated, non-canonical key order.
        for bad in [
            &[2u8][..],
            &[2, 1, 2, 3, 4],
            &[2, 0xa1, 1],
            &[2, 0xa2, 2, 0, 1, 0],
            &[2, 0x18, 0x01],
        ] {
            assert!(
                matches!(Frame::parse(bad), Err(FrameError::UpdateNotCbor(_))),
                "{bad:02x?}"
            );
        }
        // A non-map item parses for the phone, but not for the desktop.
        assert_eq!(Frame::parse(&[2, 1]), Ok(Frame::Update(int(1))));
        assert_eq!(
            Frame::parse_from_phone(&[2, 1]),
            Err(FrameError::UpdateNotMap)
        );
        assert!(Frame::parse_from_phone(&[2, 0xa0]).is_ok());
    }

    #[test]
    fn json_must_be_utf8() {
        assert_eq!(Frame::parse(b"\x03{}"), Ok(Frame::Json("{}".into())));
        assert_eq!(Frame::parse(&[3, 0xff]), Err(FrameError::JsonNotUtf8));
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(int),
            any::<bool>().prop_map(Value::Bool),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
            ".{0,20}".prop_map(Value::Text),
        ];
        leaf.prop_recursive(2, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(any::<i32>(), inner, 0..4).prop_map(|m| {
                    hybrid_cbor::canonicalize(Value::Map(
                        m.into_iter().map(|(k, v)| (int(k.into()), v)).collect(),
                    ))
                }),
            ]
        })
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            Just(Frame::Shutdown),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Frame::Ctap),
            arb_value().prop_map(|v| Frame::Update(hybrid_cbor::canonicalize(v))),
            ".{0,100}".prop_map(Frame::Json),
        ]
    }

    proptest! {
        #[test]
        fn encode_parse_round_trip(frame in arb_frame()) {
            let bytes = frame.encode();
            prop_assert_eq!(Frame::parse(&bytes), Ok(frame));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Frame::parse(&bytes);
            let _ = Frame::parse_from_phone(&bytes);
        }
    }
}
