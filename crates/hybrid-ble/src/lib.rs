//! The BLE half of the hybrid transport (caBLE v2), phone side.
//!
//! This crate owns (`hybrid-protocol.md` §2, §3, §9.1):
//!
//! * the key-derivation function [`derive`] and every [`Purpose`] value;
//! * the EID key ([`EidKey`]), the tunnel ID ([`tunnel_id`]) and the
//!   long-term secrets of §9.1 ([`identity_key_seed`], [`paired_secret`]);
//! * the 16-byte EID plaintext ([`EidPlaintext`]) and its validity rules;
//! * advert encryption and decryption ([`encrypt`], [`decrypt`]) and the
//!   CTAP 2.3 service-data suffix split ([`split_service_data`]);
//! * the CTAP 2.3 advertisement suffix `{1: PSM}` that offers the BLE L2CAP
//!   data channel ([`service_data_with_psm`], [`parse_ble_psm`];
//!   `hybrid-ble-l2cap.md` §2) — built only when asked, never by default;
//! * the message framing on the CTAP 2.3 BLE L2CAP data channel, sans-IO
//!   ([`L2capDecoder`], [`L2capFraming`]; `hybrid-ble-l2cap.md` §4): both
//!   shipped wrappings, sniffed from the desktop's first byte;
//! * the proximity binding: the Noise PSK from the advert plaintext ([`psk`]);
//! * the radio constants ([`SERVICE_UUID_16`], [`ADVERT_LEN`], …) and the
//!   [`Advertiser`] trait radio backends implement, plus a file radio
//!   (feature `file-radio`).
//!
//! It does not parse QR codes (`hybrid-qr`), build tunnel URLs
//! (`hybrid-tunnel`) or run the handshake (`hybrid-noise`); the BlueZ backend
//! and the L2CAP sockets live in `hybrid-bluez`. The pure part does no IO, reads no clock, and
//! takes randomness from the caller; it never panics on input. Secrets
//! ([`EidKey`], [`Psk`], derived arrays) are zeroized on drop and redacted in
//! `Debug`.
#![forbid(unsafe_code)]

mod advert;
mod advertiser;
mod derive;
mod eid;
mod error;
#[cfg(feature = "file-radio")]
mod file_radio;
mod l2cap;
mod radio;
mod suffix;

pub use advert::{decrypt, encrypt, split_service_data, TAG_LEN};
pub use advertiser::{AdvertFuture, Advertiser, AdvertiserError};
pub use derive::{
    derive, derive_array, identity_key_seed, paired_secret, tunnel_id, Purpose, MAX_DERIVE_LEN,
};
pub use eid::{psk, EidKey, EidPlaintext, Psk, EID_PLAINTEXT_SIZE, NONCE_SIZE, ROUTING_ID_SIZE};
pub use error::BleError;
#[cfg(feature = "file-radio")]
pub use file_radio::{advert_line, FileRadio};
pub use l2cap::{
    L2capDecoder, L2capFraming, CRLF, LENGTH_PREFIX_LEN, MAX_CRLF_EXTENSIONS,
    MAX_L2CAP_MESSAGE_LEN, MIN_SEALED_LEN,
};
pub use radio::{ADVERT_LEN, IOS_SERVICE_UUID, IOS_SERVICE_UUID_16, SERVICE_UUID, SERVICE_UUID_16};
pub use suffix::{
    ble_psm_suffix, parse_ble_psm, service_data_with_psm, MAX_PSM_SUFFIX_LEN, SUFFIX_KEY_BLE_PSM,
};
pub use zeroize::Zeroizing;
