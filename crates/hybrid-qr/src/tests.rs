//! Unit tests: one per rejection rule of `hybrid-protocol.md` §1.4, plus the
//! tolerant cases and freshness.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use hybrid_cbor::access::{int, text};
use hybrid_cbor::Value;

use super::*;

/// Chromium `KnownQRs` compressed point.
const POINT: &str = "03364c15eec34331d2865757421d497e569e1eba6cff9a69d32e90f19e7f6fd15e";

fn point() -> Vec<u8> {
    hex::decode(POINT).unwrap()
}

fn uri_of_cbor(cbor: &[u8]) -> String {
    format!("FIDO:/{}", digits_encode(cbor))
}

fn uri_of(entries: Vec<(Value, Value)>) -> String {
    uri_of_cbor(&hybrid_cbor::to_canonical_vec(&Value::Map(entries)))
}

fn basic() -> Vec<(Value, Value)> {
    vec![
        (int(0), Value::Bytes(point())),
        (int(1), Value::Bytes(vec![7; 16])),
    ]
}

fn with(mut entries: Vec<(Value, Value)>, k: i64, v: Value) -> Vec<(Value, Value)> {
    entries.retain(|(key, _)| *key != int(k));
    entries.push((int(k), v));
    entries
}

fn without(mut entries: Vec<(Value, Value)>, k: i64) -> Vec<(Value, Value)> {
    entries.retain(|(key, _)| *key != int(k));
    entries
}

#[test]
fn basic_parses_with_defaults() {
    let qr = parse(&uri_of(basic())).unwrap();
    assert_eq!(qr.identity_key_compressed().as_slice(), point().as_slice());
    assert_eq!(qr.secret(), &[7; 16]);
    assert_eq!(qr.peer_identity_uncompressed()[0], 4);
    assert_eq!(qr.known_domains(), 0);
    assert_eq!(qr.timestamp(), None);
    assert_eq!(qr.supports_linking(), None);
    assert_eq!(qr.request_type(), RequestType::GetAssertion);
    assert_eq!(qr.hint(), None);
    assert_eq!(qr.key6(), &Key6::Absent);
}

#[test]
fn rule1_prefix() {
    for u in [
        "",
        "FIDO",
        "FIDO:",
        "FIDO:1234",
        "http://example.com",
        "FIDO/:000",
        " FIDO:/000",
        "FİDO:/000",
    ] {
        assert_eq!(parse(u).unwrap_err(), QrError::Prefix, "{u:?}");
    }
    // Case-insensitive.
    let u = uri_of(basic());
    let lower = u.replacen("FIDO", "fido", 1);
    let mixed = u.replacen("FIDO", "FiDo", 1);
    assert_eq!(parse(&lower).unwrap(), parse(&u).unwrap());
    assert_eq!(parse(&mixed).unwrap(), parse(&u).unwrap());
}

#[test]
fn rule1_digits() {
    assert_eq!(
        parse("FIDO:/").unwrap_err(),
        QrError::Digits(DigitsError::Empty)
    );
    assert_eq!(
        parse("FIDO://").unwrap_err(),
        QrError::Digits(DigitsError::NonDigit)
    );
    assert_eq!(
        parse("FIDO:/+12").unwrap_err(),
        QrError::Digits(DigitsError::NonDigit)
    );
    assert_eq!(
        parse("FIDO:/0").unwrap_err(),
        QrError::Digits(DigitsError::InvalidLength)
    );
    assert_eq!(
        parse("FIDO:/999").unwrap_err(),
        QrError::Digits(DigitsError::OutOfRange)
    );
    // Trailing whitespace is not trimmed.
    let u = format!("{}\n", uri_of(basic()));
    assert_eq!(
        parse(&u).unwrap_err(),
        QrError::Digits(DigitsError::NonDigit)
    );
}

#[test]
fn rule2_single_cbor_map() {
    // 00 = the integer 0, not a map.
    assert_eq!(parse("FIDO:/000").unwrap_err(), QrError::NotAMap);
    assert_eq!(parse(&uri_of_cbor(&[0x80])).unwrap_err(), QrError::NotAMap);
    // Truncated map.
    assert!(matches!(
        parse(&uri_of_cbor(&[0xa1, 0x00])).unwrap_err(),
        QrError::Cbor(_)
    ));
    // Trailing bytes after a valid map.
    let mut cbor = hybrid_cbor::to_canonical_vec(&Value::Map(basic()));
    cbor.push(0x00);
    assert_eq!(
        parse(&uri_of_cbor(&cbor)).unwrap_err(),
        QrError::Cbor(hybrid_cbor::Error::TrailingBytes)
    );
    // Duplicate key.
    let mut dup = vec![0xa3];
    dup.extend(
        hybrid_cbor::to_canonical_vec(&Value::Map(basic()))
            .get(1..)
            .unwrap(),
    );
    dup.extend([0x01, 0x40]);
    assert_eq!(
        parse(&uri_of_cbor(&dup)).unwrap_err(),
        QrError::Cbor(hybrid_cbor::Error::DuplicateKey)
    );
}

#[test]
fn rule2_tolerates_order_and_non_minimal() {
    // Keys 1 then 0 (out of canonical order), and key 2 as a non-minimal 18 02.
    let mut cbor = vec![0xa3, 0x01, 0x50];
    cbor.extend([7u8; 16]);
    cbor.extend([0x00, 0x58, 0x21]);
    cbor.extend(point());
    cbor.extend([0x02, 0x18, 0x02]);
    let qr = parse(&uri_of_cbor(&cbor)).unwrap();
    assert_eq!(qr.known_domains(), 2);
    assert_eq!(qr.secret(), &[7; 16]);
}

#[test]
fn rule3_keys_0_and_1_bytes() {
    for k in [0u8, 1] {
        let e = without(basic(), i64::from(k));
        assert_eq!(
            parse(&uri_of(e)).unwrap_err(),
            QrError::MissingOrNotBytes { key: k }
        );
        let e = with(basic(), i64::from(k), int(42));
        assert_eq!(
            parse(&uri_of(e)).unwrap_err(),
            QrError::MissingOrNotBytes { key: k }
        );
        let e = with(basic(), i64::from(k), text("abc"));
        assert_eq!(
            parse(&uri_of(e)).unwrap_err(),
            QrError::MissingOrNotBytes { key: k }
        );
    }
    // Both checked before any length: key 0 too short and key 1 not bytes.
    let e = with(with(basic(), 0, Value::Bytes(vec![2; 3])), 1, int(1));
    assert_eq!(
        parse(&uri_of(e)).unwrap_err(),
        QrError::MissingOrNotBytes { key: 1 }
    );
}

#[test]
fn rule4_secret_length() {
    for len in [0usize, 15, 17, 32] {
        let e = with(basic(), 1, Value::Bytes(vec![1; len]));
        assert_eq!(
            parse(&uri_of(e)).unwrap_err(),
            QrError::SecretLength { len }
        );
    }
    // Secret length is checked before the point.
    let e = with(
        with(basic(), 1, Value::Bytes(vec![1; 3])),
        0,
        Value::Bytes(vec![9; 33]),
    );
    assert_eq!(
        parse(&uri_of(e)).unwrap_err(),
        QrError::SecretLength { len: 3 }
    );
}

#[test]
fn rule5_identity_key() {
    for len in [0usize, 32, 34, 65] {
        let e = with(basic(), 0, Value::Bytes(vec![2; len]));
        assert_eq!(
            parse(&uri_of(e)).unwrap_err(),
            QrError::IdentityKeyLength { len }
        );
    }
    // The uncompressed form (65 bytes) is refused: key 0 must be 33 bytes.
    let qr = parse(&uri_of(basic())).unwrap();
    let e = with(
        basic(),
        0,
        Value::Bytes(qr.peer_identity_uncompressed().to_vec()),
    );
    assert_eq!(
        parse(&uri_of(e)).unwrap_err(),
        QrError::IdentityKeyLength { len: 65 }
    );
    // Not on the curve (Chromium KnownQRs: last byte ^ 3).
    let mut p = point();
    *p.last_mut().unwrap() ^= 3;
    let e = with(basic(), 0, Value::Bytes(p));
    assert_eq!(
        parse(&uri_of(e)).unwrap_err(),
        QrError::IdentityKeyNotOnCurve
    );
    // Bad tag byte.
    let mut p = point();
    p[0] = 0x05;
    let e = with(basic(), 0, Value::Bytes(p));
    assert_eq!(
        parse(&uri_of(e)).unwrap_err(),
        QrError::IdentityKeyNotOnCurve
    );
    // x >= p.
    let mut p = vec![0x02];
    p.extend([0xff; 32]);
    let e = with(basic(), 0, Value::Bytes(p));
    assert_eq!(
        parse(&uri_of(e)).unwrap_err(),
        QrError::IdentityKeyNotOnCurve
    );
}

#[test]
fn rule6_types_of_keys_2_4_5() {
    let bad = [
        (2, text("foo"), "an integer"),
        (2, Value::Bool(true), "an integer"),
        (4, text("foo"), "a bool"),
        (4, int(1), "a bool"),
        (5, int(42), "a text string"),
        (5, Value::Bytes(b"mc".to_vec()), "a text string"),
    ];
    for (k, v, expected) in bad {
        let e = with(basic(), k, v);
        let key = u8::try_from(k).unwrap();
        assert_eq!(
            parse(&uri_of(e)).unwrap_err(),
            QrError::WrongType { key, expected }
        );
    }
}

#[test]
fn key2_negative_is_zero() {
    let qr = parse(&uri_of(with(basic(), 2, int(-5)))).unwrap();
    assert_eq!(qr.known_domains(), 0);
    let qr = parse(&uri_of(with(basic(), 2, Value::Integer(u64::MAX.into())))).unwrap();
    assert_eq!(qr.known_domains(), u64::MAX);
}

#[test]
fn rule7_request_types() {
    for (hint, t) in [
        ("mc", RequestType::MakeCredential),
        ("ga", RequestType::GetAssertion),
        ("dcp", RequestType::DigitalCredentialPresentation),
        ("XX", RequestType::GetAssertion),
        ("", RequestType::GetAssertion),
        ("MC", RequestType::GetAssertion),
    ] {
        let qr = parse(&uri_of(with(basic(), 5, text(hint)))).unwrap();
        assert_eq!(qr.request_type(), t, "{hint:?}");
        assert_eq!(qr.hint(), Some(hint));
    }
}

#[test]
fn keys_3_and_6_never_reject() {
    for v in [
        text("x"),
        int(-1),
        Value::Bool(true),
        Value::Bytes(vec![1]),
        Value::Null,
    ] {
        let qr = parse(&uri_of(with(basic(), 3, v.clone()))).unwrap();
        assert_eq!(qr.timestamp(), None);
        let qr = parse(&uri_of(with(basic(), 6, v.clone()))).unwrap();
        if v != Value::Bool(true) {
            assert_eq!(qr.key6(), &Key6::Other);
        }
    }
    let qr = parse(&uri_of(with(basic(), 3, int(1_700_000_000)))).unwrap();
    assert_eq!(qr.timestamp(), Some(1_700_000_000));
    let qr = parse(&uri_of(with(basic(), 6, Value::Bool(true)))).unwrap();
    assert_eq!(qr.key6(), &Key6::Bool(true));
    assert!(!qr.key6().offers_ble_l2cap());
    let qr = parse(&uri_of(with(
        basic(),
        6,
        Value::Array(vec![int(0), int(1)]),
    )))
    .unwrap();
    assert_eq!(qr.key6(), &Key6::Channels(vec![0, 1]));
    assert!(qr.key6().offers_ble_l2cap());
    let qr = parse(&uri_of(with(basic(), 6, Value::Array(vec![])))).unwrap();
    assert_eq!(qr.key6(), &Key6::Channels(vec![]));
    let qr = parse(&uri_of(with(
        basic(),
        6,
        Value::Array(vec![int(0), text("a")]),
    )))
    .unwrap();
    assert_eq!(qr.key6(), &Key6::Other);
}

#[test]
fn unknown_keys_ignored() {
    let mut e = with(basic(), 1000, int(42));
    e.push((text("x"), Value::Null));
    e.push((int(-1), Value::Null));
    assert!(parse(&uri_of(e)).is_ok());
}

#[test]
fn encode_round_trip() {
    let p: [u8; 33] = point().try_into().unwrap();
    let qr = QrCode::new(p, [9; 16])
        .unwrap()
        .with_known_domains(2)
        .with_timestamp(1_700_000_000)
        .with_supports_linking(true)
        .with_request_type(RequestType::MakeCredential)
        .with_key6(Key6::Channels(vec![0, 1]));
    let back = parse(&qr.to_uri()).unwrap();
    assert_eq!(back, qr);
    assert_eq!(back.to_cbor(), qr.to_cbor());
    assert!(qr.to_uri().starts_with("FIDO:/"));
    // Canonical bytes: the strict reader accepts them.
    assert!(hybrid_cbor::decode_canonical(&qr.to_cbor()).is_ok());
}

#[test]
fn new_rejects_bad_point() {
    let mut x_too_big = [0xff; 33];
    x_too_big[0] = 2;
    assert_eq!(
        QrCode::new(x_too_big, [0; 16]).unwrap_err(),
        QrError::IdentityKeyNotOnCurve
    );
    // 0x05 is SEC1's "compact" tag, which p256 accepts; the QR rule does not.
    let mut compact: [u8; 33] = point().try_into().unwrap();
    compact[0] = 5;
    assert_eq!(
        QrCode::new(compact, [0; 16]).unwrap_err(),
        QrError::IdentityKeyNotOnCurve
    );
}

#[test]
fn debug_redacts_secret() {
    let qr = parse(&uri_of(with(basic(), 1, Value::Bytes(vec![0xab; 16])))).unwrap();
    let dbg = format!("{qr:?}");
    assert!(dbg.contains("redacted"));
    assert!(!dbg.contains("abab"));
    assert!(!dbg.contains("171, 171"));
}

#[test]
fn error_display_names_rules() {
    assert_eq!(
        QrError::IdentityKeyNotOnCurve.to_string(),
        "QR rule §1.4.5: key 0 is not a valid P-256 point"
    );
    assert!(QrError::Digits(DigitsError::NonDigit)
        .to_string()
        .contains("§1.2"));
    assert_eq!(QrError::Prefix.rule(), "prefix");
}

#[test]
fn freshness() {
    let f = Freshness::default();
    assert_eq!(
        f,
        Freshness {
            max_age_secs: 600,
            max_future_secs: 60
        }
    );
    let qr = parse(&uri_of(basic())).unwrap();
    assert_eq!(f.check(&qr, 5).unwrap(), None);
    let qr = parse(&uri_of(with(basic(), 3, int(1000)))).unwrap();
    assert_eq!(f.check(&qr, 1000).unwrap(), Some(0));
    assert_eq!(f.check(&qr, 1600).unwrap(), Some(600));
    let e = f.check(&qr, 1734).unwrap_err();
    assert_eq!(
        e,
        QrError::Stale {
            age_secs: 734,
            max_age_secs: 600
        }
    );
    assert_eq!(e.to_string(), "QR code is 734 s old (maximum 600 s)");
    assert_eq!(f.check(&qr, 940).unwrap(), Some(0));
    assert_eq!(
        f.check(&qr, 939).unwrap_err(),
        QrError::FromFuture { ahead_secs: 61 }
    );
    assert_eq!(
        f.check(&qr, 0).unwrap_err(),
        QrError::FromFuture { ahead_secs: 1000 }
    );
    // u64 extremes do not overflow.
    let qr = parse(&uri_of(with(basic(), 3, Value::Integer(u64::MAX.into())))).unwrap();
    assert!(f.check(&qr, 0).is_err());
    assert!(f.check(&qr, u64::MAX).is_ok());
}

/// A QR payload built byte by byte: `{0: point, 1: secret, 6: <raw>}`, so
/// key 6 carries exactly the bytes a desktop wrote (`hybrid-ble-l2cap.md` §1).
fn uri_with_raw_key6(raw: &[u8]) -> String {
    let mut cbor = vec![0xa3, 0x00, 0x58, 0x21];
    cbor.extend_from_slice(&point());
    cbor.extend_from_slice(&[0x01, 0x50]);
    cbor.extend_from_slice(&[7; 16]);
    cbor.push(0x06);
    cbor.extend_from_slice(raw);
    uri_of_cbor(&cbor)
}

#[test]
fn key6_ble_l2cap_offer_from_raw_bytes() {
    let cases: &[(&[u8], Key6, bool)] = &[
        // libwebauthn / pxp `CloudAssistedOrLocal`: exactly `82 00 01`.
        (&[0x82, 0x00, 0x01], Key6::Channels(vec![0, 1]), true),
        // BLE only (legal in the noise crate; libwebauthn never sends it).
        (&[0x81, 0x01], Key6::Channels(vec![1]), true),
        // Order and duplicates do not matter.
        (&[0x82, 0x01, 0x00], Key6::Channels(vec![1, 0]), true),
        (&[0x82, 0x01, 0x01], Key6::Channels(vec![1, 1]), true),
        // Tunnel only, empty, unknown channels.
        (&[0x81, 0x00], Key6::Channels(vec![0]), false),
        (&[0x80], Key6::Channels(vec![]), false),
        (&[0x81, 0x02], Key6::Channels(vec![2]), false),
        // Unknown values are ignored, also huge ones.
        (
            &[0x83, 0x00, 0x01, 0x02],
            Key6::Channels(vec![0, 1, 2]),
            true,
        ),
        (
            &[
                0x82, 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            Key6::Channels(vec![u64::MAX, 1]),
            true,
        ),
        (
            &[0x81, 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            Key6::Channels(vec![u64::MAX]),
            false,
        ),
        // 1 written non-minimally is still 1 (the tolerant reader).
        (&[0x81, 0x18, 0x01], Key6::Channels(vec![1]), true),
        // Indefinite-length array (tolerant reader).
        (&[0x9f, 0x00, 0x01, 0xff], Key6::Channels(vec![0, 1]), true),
        // The pre-2.3 bool (Chromium/webauthn-rs): tunnel only.
        (&[0xf5], Key6::Bool(true), false),
        (&[0xf4], Key6::Bool(false), false),
        // Garbage: tunnel only, and the QR still parses.
        (&[0x01], Key6::Other, false),
        (&[0x20], Key6::Other, false),
        (&[0x61, 0x31], Key6::Other, false),
        (&[0x41, 0x01], Key6::Other, false),
        (&[0xf6], Key6::Other, false),
        (&[0xa1, 0x01, 0x01], Key6::Other, false),
        (&[0xf9, 0x3c, 0x00], Key6::Other, false),
        // Arrays holding anything but unsigned integers: tunnel only, even
        // with a 1 in them (the safe side: no suffix for an odd desktop).
        (&[0x82, 0x01, 0x20], Key6::Other, false),
        (&[0x82, 0x01, 0x61, 0x31], Key6::Other, false),
        (&[0x82, 0x01, 0xf5], Key6::Other, false),
        (&[0x81, 0x81, 0x01], Key6::Other, false),
        // A bignum (tag 2) is not an unsigned integer of this kind.
        (&[0x81, 0xc2, 0x41, 0x01], Key6::Other, false),
        (&[0xc2, 0x41, 0x01], Key6::Other, false),
    ];
    for (raw, want, offers) in cases {
        let qr = parse(&uri_with_raw_key6(raw))
            .unwrap_or_else(|e| panic!("key 6 = {raw:02x?} must not reject the QR: {e}"));
        assert_eq!(qr.key6(), want, "{raw:02x?}");
        assert_eq!(qr.offers_ble_l2cap(), *offers, "{raw:02x?}");
        assert_eq!(qr.key6().offers_ble_l2cap(), *offers, "{raw:02x?}");
    }
    // No key 6 at all (every Chromium QR): tunnel only.
    let qr = parse(&uri_of(basic())).unwrap();
    assert!(!qr.offers_ble_l2cap());
}

#[test]
fn key6_channel_constants_match_libwebauthn() {
    assert_eq!(Key6::CHANNEL_TUNNEL, 0);
    assert_eq!(Key6::CHANNEL_BLE_L2CAP, 1);
    // Encoding `[0, 1]` gives libwebauthn's exact bytes at the end of the map.
    let p: [u8; 33] = point().try_into().unwrap();
    let qr = QrCode::new(p, [7; 16])
        .unwrap()
        .with_key6(Key6::Channels(vec![0, 1]));
    assert!(qr.to_cbor().ends_with(&[0x06, 0x82, 0x00, 0x01]));
    assert!(qr.offers_ble_l2cap());
}
