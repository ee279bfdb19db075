//! Typed readers over [`Value`] for request parsing (CTAP 2.1 §8): a wrong
//! CBOR type of a known parameter is `CTAP2_ERR_CBOR_UNEXPECTED_TYPE`, a
//! missing required one `CTAP2_ERR_MISSING_PARAMETER`; unknown members are
//! ignored.

use hybrid_cbor::{Integer, Value};

use crate::error::Error;

/// Map entries, or `UnexpectedType(what)`.
pub(crate) fn map(v: Value, what: &'static str) -> Result<Vec<(Value, Value)>, Error> {
    match v {
        Value::Map(m) => Ok(m),
        _ => Err(Error::UnexpectedType(what)),
    }
}

/// Removes and returns the value under integer key `key`.
pub(crate) fn take_int(entries: &mut Vec<(Value, Value)>, key: i64) -> Option<Value> {
    let pos = entries
        .iter()
        .position(|(k, _)| matches!(k, Value::Integer(i) if i128::from(*i) == i128::from(key)))?;
    Some(entries.swap_remove(pos).1)
}

/// Removes and returns the value under text key `key`.
pub(crate) fn take_text(entries: &mut Vec<(Value, Value)>, key: &str) -> Option<Value> {
    let pos = entries
        .iter()
        .position(|(k, _)| matches!(k, Value::Text(t) if t == key))?;
    Some(entries.swap_remove(pos).1)
}

/// Requires presence.
pub(crate) fn required<T>(v: Option<T>, what: &'static str) -> Result<T, Error> {
    v.ok_or(Error::MissingParameter(what))
}

pub(crate) fn bytes(v: Value, what: &'static str) -> Result<Vec<u8>, Error> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(Error::UnexpectedType(what)),
    }
}

pub(crate) fn text(v: Value, what: &'static str) -> Result<String, Error> {
    match v {
        Value::Text(t) => Ok(t),
        _ => Err(Error::UnexpectedType(what)),
    }
}

pub(crate) fn boolean(v: Value, what: &'static str) -> Result<bool, Error> {
    match v {
        Value::Bool(b) => Ok(b),
        _ => Err(Error::UnexpectedType(what)),
    }
}

pub(crate) fn array(v: Value, what: &'static str) -> Result<Vec<Value>, Error> {
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(Error::UnexpectedType(what)),
    }
}

/// Any CBOR integer that fits an `i64`.
pub(crate) fn int(v: Value, what: &'static str) -> Result<i64, Error> {
    match v {
        // Out-of-range integers are still integers: a value we do not support.
        Value::Integer(i) => {
            i64::try_from(i128::from(i)).map_err(|_| Error::InvalidParameter(what))
        }
        _ => Err(Error::UnexpectedType(what)),
    }
}

/// An unsigned CBOR integer.
pub(crate) fn uint(v: Value, what: &'static str) -> Result<u64, Error> {
    match v {
        Value::Integer(i) => u64::try_from(i128::from(i)).map_err(|_| Error::UnexpectedType(what)),
        _ => Err(Error::UnexpectedType(what)),
    }
}

/// Encoding helpers.
pub(crate) fn i(n: i64) -> Value {
    Value::Integer(Integer::from(n))
}

pub(crate) fn t(s: &str) -> Value {
    Value::Text(s.to_owned())
}

pub(crate) fn b(bytes: &[u8]) -> Value {
    Value::Bytes(bytes.to_vec())
}
