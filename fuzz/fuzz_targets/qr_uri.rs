#![no_main]
//! `hybrid_qr::parse` and the digit codec on arbitrary text: never panic;
//! whatever parses must re-encode to a URI that parses to the same QR.
use hybrid_qr::{digits_decode, digits_encode, parse, Key6};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(bytes) = digits_decode(&text) {
        // Valid digit strings are canonical: decode∘encode is the identity.
        assert_eq!(digits_encode(&bytes), text);
    }
    if let Ok(qr) = parse(&text) {
        // The BLE L2CAP offer (hybrid-ble-l2cap.md §1) is only ever read
        // from a clean array of unsigned integers holding 1.
        assert_eq!(
            qr.offers_ble_l2cap(),
            matches!(qr.key6(), Key6::Channels(c) if c.contains(&1))
        );
        let again = parse(&qr.to_uri()).expect("re-encoded QR must parse");
        // Key 6 of an unrecognised type is not re-encoded.
        let qr = if *qr.key6() == Key6::Other {
            qr.with_key6(Key6::Absent)
        } else {
            qr
        };
        assert_eq!(again, qr);
        assert_eq!(again.to_cbor(), qr.to_cbor());
    }
});
