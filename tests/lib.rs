//! Shared helpers for hybridd's cross-crate tests: loading the test vectors
//! copied from `shared/vectors/hybrid-vectors.json` into `tests/vectors/`.
#![forbid(unsafe_code)]
#![allow(clippy::indexing_slicing, clippy::panic)]

use serde_json::Value;

/// The whole vectors file.
pub fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/hybrid-vectors.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

/// The vector named `name`.
pub fn vector(name: &str) -> Value {
    vectors()["vectors"]
        .as_array()
        .and_then(|list| list.iter().find(|v| v["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no vector named {name}"))
}

/// A string field, following a JSON pointer such as `/outputs/psk`.
pub fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer}"))
}

/// A hex field, decoded.
pub fn h(v: &Value, pointer: &str) -> Vec<u8> {
    hex::decode(s(v, pointer)).unwrap_or_else(|e| panic!("bad hex at {pointer}: {e}"))
}

/// A hex field decoded into a fixed-size array.
pub fn arr<const N: usize>(v: &Value, pointer: &str) -> [u8; N] {
    h(v, pointer)
        .try_into()
        .unwrap_or_else(|_| panic!("{pointer} is not {N} bytes"))
}
