//! `FIDO:/` QR codes of the FIDO hybrid transport (caBLE v2).
//!
//! This crate owns everything between the text a desktop shows as a QR code
//! and a validated [`QrCode`] value (`hybrid-protocol.md` §1):
//!
//! * the digit codec ([`digits_encode`], [`digits_decode`], §1.2);
//! * the CBOR payload, keys 0–6 (§1.3), validated by [`parse`] in the order of
//!   Chromium's `qr::Parse` (§1.4), with the request-type hint (§1.5, §7.3)
//!   and the tolerant reading of key 6 (§1.3 CONFLICT);
//! * hybridd's freshness policy on key 3 ([`Freshness`]);
//! * encoding for the desktop side ([`QrCode::to_cbor`], [`QrCode::to_uri`]),
//!   byte-for-byte like Chromium's `qr::Encode`.
//!
//! It does not derive keys from the QR secret (that is `hybrid-ble`), does
//! not decode QR *images*, and does no IO: no clock either — freshness takes
//! `now` as an argument. It never panics on input.
#![forbid(unsafe_code)]

mod digits;
mod error;
mod freshness;
mod qr;

pub use digits::{digits_decode, digits_encode, DigitsError};
pub use error::QrError;
pub use freshness::Freshness;
pub use qr::{
    parse, parse_cbor, Key6, QrCode, RequestType, IDENTITY_KEY_SIZE, PREFIX, SECRET_SIZE,
};

#[cfg(test)]
mod tests;
