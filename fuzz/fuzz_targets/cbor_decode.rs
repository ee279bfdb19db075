#![no_main]
//! The strict and tolerant CBOR readers on arbitrary bytes; whatever decodes
//! must re-encode canonically to bytes the strict reader accepts.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = hybrid_cbor::decode_canonical(data) {
        // A canonical input is its own canonical encoding.
        assert_eq!(hybrid_cbor::to_canonical_vec(&v), data);
    }
    if let Ok(v) = hybrid_cbor::decode(data, hybrid_cbor::Mode::Tolerant) {
        let _ = hybrid_cbor::to_canonical_vec(&v);
    }
});
