//! CBOR for hybridd: a strict, allocation-bounded reader and a canonical writer.
//!
//! Every peer-fed CBOR structure in the hybrid transport goes through this crate:
//! the QR payload (`hybrid-qr`), the post-handshake and update messages
//! (`hybrid-noise`) and CTAP2 requests (`hybrid-ctap`). Values are
//! [`ciborium::value::Value`]; this crate adds what ciborium does not do:
//!
//! * **Strict decoding** ([`Mode::Ctap2Canonical`]), the rules of CTAP 2.1 §8
//!   "Message Encoding" as Chromium's `components/cbor/reader.cc` and OpenSK's
//!   `sk-cbor` enforce them: exactly one data item, no trailing bytes, minimal
//!   integer and length encodings, definite lengths only, map keys in strictly
//!   ascending canonical order (which also forbids duplicates), no floats, no
//!   tags, no simple values but `false`/`true`/`null`, valid UTF-8, and a
//!   nesting limit.
//! * **Tolerant decoding** ([`Mode::Tolerant`]) for QR payloads from desktops we
//!   did not write (`hybrid-protocol.md` §1.4 "clarified"): key order and
//!   minimality are not enforced, but duplicate keys, trailing bytes and
//!   truncation still are.
//! * **Canonical encoding** ([`to_canonical_vec`]): CTAP2 canonical CBOR — map
//!   keys sorted by major type, then encoded length, then bytes
//!   (`hybrid-protocol.md` §7.1), minimal encodings, definite lengths.
//!
//! It owns no protocol meaning: which keys a map must have is the caller's job.
//! It does no IO and never panics on input.
#![forbid(unsafe_code)]

use std::cmp::Ordering;

pub use ciborium::value::{Integer, Value};

/// How strictly [`decode`] checks its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// CTAP2 canonical CBOR (CTAP 2.1 §8); what Chromium's reader and
    /// Google Play Services accept.
    Ctap2Canonical,
    /// Well-formed CBOR; non-minimal encodings, out-of-order keys, floats and
    /// tags allowed; duplicate map keys still refused.
    Tolerant,
}

/// The deepest container nesting accepted: the top-level item is at depth 0,
/// and a container inside a container at depth `d` is at `d + 1`. CTAP's
/// `MAX_CBOR_NESTING_DEPTH` is 4 (OpenSK `sk-cbor`); a getAssertion with a
/// `prf.evalByCredential` entry reaches depth 4 exactly.
pub const MAX_NESTING: usize = 4;

/// Why a byte string is not acceptable CBOR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No bytes at all.
    #[error("empty input")]
    Empty,
    /// The input ends inside a data item.
    #[error("truncated CBOR")]
    Truncated,
    /// Bytes follow the single data item.
    #[error("trailing bytes after the CBOR data item")]
    TrailingBytes,
    /// Containers nested deeper than [`MAX_NESTING`].
    #[error("CBOR nested too deeply")]
    TooDeep,
    /// An integer or length not in its shortest form (strict mode).
    #[error("non-minimal CBOR encoding")]
    NonMinimal,
    /// Map keys not in canonical ascending order (strict mode).
    #[error("CBOR map keys out of canonical order")]
    OutOfOrderKey,
    /// The same map key twice.
    #[error("duplicate CBOR map key")]
    DuplicateKey,
    /// An indefinite-length item (strict mode).
    #[error("indefinite-length CBOR item")]
    Indefinite,
    /// A floating-point value (strict mode).
    #[error("CBOR floating-point value")]
    Float,
    /// A simple value other than false/true/null, or a reserved encoding.
    #[error("unsupported CBOR simple value")]
    UnsupportedSimple,
    /// A tagged item (strict mode).
    #[error("CBOR tags are not supported")]
    Tag,
    /// A text string that is not UTF-8.
    #[error("invalid UTF-8 in a CBOR text string")]
    InvalidUtf8,
    /// A reserved additional-information value (28..30) or a malformed break.
    #[error("malformed CBOR")]
    Malformed,
}

/// Decodes exactly one CBOR data item from `bytes` under `mode`.
pub fn decode(bytes: &[u8], mode: Mode) -> Result<Value, Error> {
    if bytes.is_empty() {
        return Err(Error::Empty);
    }
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        mode,
    };
    let v = r.item(0)?;
    if r.pos != bytes.len() {
        return Err(Error::TrailingBytes);
    }
    Ok(v)
}

/// Decodes under [`Mode::Ctap2Canonical`].
pub fn decode_canonical(bytes: &[u8]) -> Result<Value, Error> {
    decode(bytes, Mode::Ctap2Canonical)
}

/// Encodes `value` as CTAP2 canonical CBOR (map keys sorted recursively).
pub fn to_canonical_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    out
}

/// Returns `value` with every map's entries in canonical key order.
pub fn canonicalize(value: Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(canonicalize).collect()),
        Value::Map(entries) => {
            let mut keyed: Vec<(Vec<u8>, Value, Value)> = entries
                .into_iter()
                .map(|(k, v)| (to_canonical_vec(&k), canonicalize(k), canonicalize(v)))
                .collect();
            keyed.sort_by(|a, b| canonical_key_cmp(&a.0, &b.0));
            Value::Map(keyed.into_iter().map(|(_, k, v)| (k, v)).collect())
        }
        Value::Tag(t, inner) => Value::Tag(t, Box::new(canonicalize(*inner))),
        other => other,
    }
}

/// CTAP2 canonical order of two *encoded* keys: major type, then length,
/// then bytewise (CTAP 2.1 §8 "Canonical CBOR encoding form").
pub fn canonical_key_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let major = |x: &[u8]| x.first().map(|b| b >> 5);
    major(a)
        .cmp(&major(b))
        .then(a.len().cmp(&b.len()))
        .then(a.cmp(b))
}

fn write_head(major: u8, n: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u64::from(u8::MAX) {
        out.push(m | 24);
        out.push(n as u8);
    } else if n <= u64::from(u16::MAX) {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u64::from(u32::MAX) {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Integer(i) => {
            let i = i128::from(*i);
            if i >= 0 {
                write_head(0, i as u64, out);
            } else {
                write_head(1, (-1 - i) as u64, out);
            }
        }
        Value::Bytes(b) => {
            write_head(2, b.len() as u64, out);
            out.extend_from_slice(b);
        }
        Value::Text(t) => {
            write_head(3, t.len() as u64, out);
            out.extend_from_slice(t.as_bytes());
        }
        Value::Array(items) => {
            write_head(4, items.len() as u64, out);
            for item in items {
                write_canonical(item, out);
            }
        }
        Value::Map(entries) => {
            let mut encoded: Vec<(Vec<u8>, Vec<u8>)> = entries
                .iter()
                .map(|(k, v)| (to_canonical_vec(k), to_canonical_vec(v)))
                .collect();
            encoded.sort_by(|a, b| canonical_key_cmp(&a.0, &b.0));
            write_head(5, encoded.len() as u64, out);
            for (k, v) in encoded {
                out.extend_from_slice(&k);
                out.extend_from_slice(&v);
            }
        }
        Value::Tag(tag, inner) => {
            write_head(6, *tag, out);
            write_canonical(inner, out);
        }
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Null => out.push(0xf6),
        Value::Float(f) => {
            out.push(0xfb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        // `Value` is non-exhaustive; nothing else is produced by this crate.
        _ => out.push(0xf7),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    mode: Mode,
}

impl Reader<'_> {
    fn strict(&self) -> bool {
        self.mode == Mode::Ctap2Canonical
    }

    fn byte(&mut self) -> Result<u8, Error> {
        let b = *self.buf.get(self.pos).ok_or(Error::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&[u8], Error> {
        let n = usize::try_from(n).map_err(|_| Error::Truncated)?;
        let end = self.pos.checked_add(n).ok_or(Error::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(Error::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let s = self.take(N as u64)?;
        s.try_into().map_err(|_| Error::Truncated)
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Reads the argument of an initial byte; `None` for indefinite length.
    fn argument(&mut self, info: u8) -> Result<Option<u64>, Error> {
        let (v, min) = match info {
            0..=23 => return Ok(Some(u64::from(info))),
            24 => (u64::from(self.byte()?), 24),
            25 => (u64::from(u16::from_be_bytes(self.array()?)), 0x100),
            26 => (u64::from(u32::from_be_bytes(self.array()?)), 0x1_0000),
            27 => (u64::from_be_bytes(self.array()?), 0x1_0000_0000),
            31 => return Ok(None),
            _ => return Err(Error::Malformed),
        };
        if self.strict() && v < min {
            return Err(Error::NonMinimal);
        }
        Ok(Some(v))
    }

    fn definite(&mut self, info: u8) -> Result<u64, Error> {
        match self.argument(info)? {
            Some(n) => Ok(n),
            None => Err(Error::Indefinite),
        }
    }

    fn item(&mut self, depth: usize) -> Result<Value, Error> {
        let initial = self.byte()?;
        let major = initial >> 5;
        let info = initial & 0x1f;
        match major {
            0 => Ok(Value::Integer(Integer::from(self.definite(info)?))),
            1 => {
                let n = self.definite(info)?;
                let i = -1 - i128::from(n);
                Integer::try_from(i)
                    .map(Value::Integer)
                    .map_err(|_| Error::Malformed)
            }
            2 => Ok(Value::Bytes(self.string(info, 2)?)),
            3 => {
                let bytes = self.string(info, 3)?;
                String::from_utf8(bytes)
                    .map(Value::Text)
                    .map_err(|_| Error::InvalidUtf8)
            }
            4 => {
                if depth > MAX_NESTING {
                    return Err(Error::TooDeep);
                }
                let mut items = Vec::new();
                match self.argument(info)? {
                    Some(n) => {
                        if n > self.remaining() as u64 {
                            return Err(Error::Truncated);
                        }
                        for _ in 0..n {
                            items.push(self.item(depth + 1)?);
                        }
                    }
                    None => {
                        if self.strict() {
                            return Err(Error::Indefinite);
                        }
                        while !self.at_break()? {
                            items.push(self.item(depth + 1)?);
                        }
                    }
                }
                Ok(Value::Array(items))
            }
            5 => {
                if depth > MAX_NESTING {
                    return Err(Error::TooDeep);
                }
                self.map(info, depth)
            }
            6 => {
                if self.strict() {
                    return Err(Error::Tag);
                }
                let tag = self.definite(info)?;
                if depth > MAX_NESTING {
                    return Err(Error::TooDeep);
                }
                Ok(Value::Tag(tag, Box::new(self.item(depth + 1)?)))
            }
            _ => self.simple(info),
        }
    }

    fn at_break(&mut self) -> Result<bool, Error> {
        match self.buf.get(self.pos) {
            None => Err(Error::Truncated),
            Some(0xff) => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    fn string(&mut self, info: u8, major: u8) -> Result<Vec<u8>, Error> {
        match self.argument(info)? {
            Some(n) => Ok(self.take(n)?.to_vec()),
            None => {
                if self.strict() {
                    return Err(Error::Indefinite);
                }
                let mut out = Vec::new();
                while !self.at_break()? {
                    let b = self.byte()?;
                    if b >> 5 != major || b & 0x1f == 31 {
                        return Err(Error::Malformed);
                    }
                    let n = self.definite(b & 0x1f)?;
                    out.extend_from_slice(self.take(n)?);
                }
                Ok(out)
            }
        }
    }

    fn map(&mut self, info: u8, depth: usize) -> Result<Value, Error> {
        let count = match self.argument(info)? {
            Some(n) => {
                if n > (self.remaining() / 2) as u64 {
                    return Err(Error::Truncated);
                }
                Some(n)
            }
            None if self.strict() => return Err(Error::Indefinite),
            None => None,
        };
        let mut entries: Vec<(Value, Value)> = Vec::new();
        let mut keys: Vec<&[u8]> = Vec::new();
        let mut read = 0u64;
        loop {
            match count {
                Some(n) if read == n => break,
                None if self.at_break()? => break,
                _ => {}
            }
            let key_start = self.pos;
            let key = self.item(depth + 1)?;
            let key_bytes = self.buf.get(key_start..self.pos).ok_or(Error::Truncated)?;
            if self.strict() {
                if let Some(prev) = keys.last() {
                    match canonical_key_cmp(prev, key_bytes) {
                        Ordering::Less => {}
                        Ordering::Equal => return Err(Error::DuplicateKey),
                        Ordering::Greater => return Err(Error::OutOfOrderKey),
                    }
                }
            } else if entries.iter().any(|(k, _)| k == &key) {
                return Err(Error::DuplicateKey);
            }
            keys.push(key_bytes);
            let value = self.item(depth + 1)?;
            entries.push((key, value));
            read += 1;
        }
        Ok(Value::Map(entries))
    }

    fn simple(&mut self, info: u8) -> Result<Value, Error> {
        match info {
            20 => Ok(Value::Bool(false)),
            21 => Ok(Value::Bool(true)),
            22 => Ok(Value::Null),
            25..=27 => {
                if self.strict() {
                    return Err(Error::Float);
                }
                let f = match info {
                    25 => half_to_f64(u16::from_be_bytes(self.array()?)),
                    26 => f64::from(f32::from_be_bytes(self.array()?)),
                    _ => f64::from_be_bytes(self.array()?),
                };
                Ok(Value::Float(f))
            }
            31 => Err(Error::Malformed),
            24 => {
                // Two-byte simple values; none is meaningful here.
                let _ = self.byte()?;
                Err(Error::UnsupportedSimple)
            }
            _ => Err(Error::UnsupportedSimple),
        }
    }
}

fn half_to_f64(h: u16) -> f64 {
    let exp = (h >> 10) & 0x1f;
    let mant = f64::from(h & 0x3ff);
    let v = match exp {
        0 => mant * 2f64.powi(-24),
        31 => {
            if mant == 0.0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        }
        e => (1.0 + mant / 1024.0) * 2f64.powi(i32::from(e) - 15),
    };
    if h & 0x8000 != 0 {
        -v
    } else {
        v
    }
}

/// Small typed accessors over [`Value`], used by every crate that reads maps
/// with integer or text keys.
pub mod access {
    use super::{Integer, Value};

    /// Looks up an integer key in a CBOR map's entries.
    pub fn get_int_key(entries: &[(Value, Value)], key: i64) -> Option<&Value> {
        entries.iter().find_map(|(k, v)| match k {
            Value::Integer(i) if i128::from(*i) == i128::from(key) => Some(v),
            _ => None,
        })
    }

    /// Looks up a text key in a CBOR map's entries.
    pub fn get_text_key<'a>(entries: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
        entries.iter().find_map(|(k, v)| match k {
            Value::Text(t) if t == key => Some(v),
            _ => None,
        })
    }

    /// A CBOR integer key.
    pub fn int(i: i64) -> Value {
        Value::Integer(Integer::from(i))
    }

    /// A CBOR text value.
    pub fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn strict_rejections() {
        let cases: &[(&str, Error)] = &[
            ("", Error::Empty),
            ("a2", Error::Truncated),
            ("a101", Error::Truncated),
            ("0000", Error::TrailingBytes),
            ("1801", Error::NonMinimal),
            ("190017", Error::NonMinimal),
            ("a2020101 01", Error::OutOfOrderKey),
            ("a201010101", Error::DuplicateKey),
            ("9f01ff", Error::Indefinite),
            ("f93c00", Error::Float),
            ("f7", Error::UnsupportedSimple),
            ("c001", Error::Tag),
            ("62c328", Error::InvalidUtf8),
            ("1c", Error::Malformed),
            ("8181818181818100", Error::TooDeep),
            ("5bffffffffffffffff", Error::Truncated),
            ("9bffffffffffffffff", Error::Truncated),
        ];
        for (hex_in, want) in cases {
            let bytes = h(&hex_in.replace(' ', ""));
            assert_eq!(decode_canonical(&bytes), Err(*want), "{hex_in}");
        }
    }

    #[test]
    fn nesting_limit_is_four_levels_below_top() {
        // depth 0..=4 containers accepted
        assert!(decode_canonical(&h("818181818100")).is_ok());
        assert_eq!(decode_canonical(&h("81818181818100")), Err(Error::TooDeep));
    }

    #[test]
    fn canonical_order_majors_then_length_then_bytes() {
        // {1:0, "a":0, -1:0, 24:0} canonical order: 1, 24, -1, "a"
        let v = Value::Map(vec![
            (access::text("a"), access::int(0)),
            (access::int(-1), access::int(0)),
            (access::int(24), access::int(0)),
            (access::int(1), access::int(0)),
        ]);
        let enc = to_canonical_vec(&v);
        assert_eq!(hex::encode(&enc), "a401001818002000616100");
        assert_eq!(decode_canonical(&enc).unwrap(), canonicalize(v));
    }

    #[test]
    fn tolerant_accepts_unordered_nonminimal_but_not_duplicates() {
        assert!(decode(&h(&"a2020101 1801".replace(' ', "")), Mode::Tolerant).is_ok());
        assert_eq!(
            decode(&h("a201010101"), Mode::Tolerant),
            Err(Error::DuplicateKey)
        );
        assert_eq!(
            decode(&h("0000"), Mode::Tolerant),
            Err(Error::TrailingBytes)
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = decode(&bytes, Mode::Ctap2Canonical);
            let _ = decode(&bytes, Mode::Tolerant);
        }

        /// Whatever the tolerant reader accepts and CTAP2 canonical CBOR can
        /// express (no float or tag anywhere) must survive our encoder and
        /// strict decoder — a rejection is a failure, not a skip.
        #[test]
        fn canonical_roundtrip(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Ok(v) = decode(&bytes, Mode::Tolerant) {
                if canonical_domain(&v) {
                    roundtrips(v)?;
                }
            }
        }

        /// The same on generated values (random bytes rarely decode to deep
        /// or large structures): encode, strict-decode, equal.
        #[test]
        fn canonical_roundtrip_of_generated_values(v in value_strategy()) {
            roundtrips(v)?;
        }
    }

    /// Encodes `v` canonically and strict-decodes it: a rejection fails the
    /// case, and the result must equal `canonicalize(v)`.
    fn roundtrips(v: Value) -> Result<(), proptest::test_runner::TestCaseError> {
        let enc = to_canonical_vec(&v);
        let back = decode_canonical(&enc);
        proptest::prop_assert!(
            back.is_ok(),
            "our decoder rejects our encoder's output {:02x?}: {:?}",
            enc,
            back
        );
        proptest::prop_assert_eq!(back.ok(), Some(canonicalize(v)));
        Ok(())
    }

    /// Whether `v` is expressible in CTAP2 canonical CBOR: no float and no
    /// tag anywhere (the strict reader refuses both, by design).
    fn canonical_domain(v: &Value) -> bool {
        match v {
            Value::Float(_) | Value::Tag(..) => false,
            Value::Array(items) => items.iter().all(canonical_domain),
            Value::Map(entries) => entries
                .iter()
                .all(|(k, v)| canonical_domain(k) && canonical_domain(v)),
            _ => true,
        }
    }

    /// Values within the strict reader's rules: integers over the whole CBOR
    /// range, byte and text strings, booleans, null, arrays and maps (unique
    /// keys) nested at most [`MAX_NESTING`] deep.
    fn value_strategy() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            any::<i64>().prop_map(|i| Value::Integer(i.into())),
            any::<u64>().prop_map(|i| Value::Integer(i.into())),
            (0u64..=u64::MAX).prop_map(|n| Value::Integer(
                Integer::try_from(-1 - i128::from(n)).unwrap_or(Integer::from(0))
            )),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bytes),
            ".{0,40}".prop_map(Value::Text),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
        ];
        leaf.prop_recursive(MAX_NESTING as u32, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::vec((inner.clone(), inner), 0..8).prop_map(|entries| {
                    // Keys unique by their encoding (the reader refuses duplicates).
                    let mut seen = std::collections::HashSet::new();
                    Value::Map(
                        entries
                            .into_iter()
                            .filter(|(k, _)| seen.insert(to_canonical_vec(k)))
                            .collect(),
                    )
                }),
            ]
        })
    }
}
