//! The CTAP 2.3 advertisement suffix: how a phone tells the desktop "connect
//! to my L2CAP PSM" (`hybrid-ble-l2cap.md` §2).
//!
//! The service data under 0xFFF9 becomes `EID[20] || SUFFIX`, where SUFFIX
//! is one CBOR map `{transport_channel_identifier: channel_extra}`; for the
//! BLE channel that is `{1: PSM}`, canonically `A1 01 18 PP` for a PSM in
//! 24..=255 (every LE dynamic PSM, 0x80..=0xFF) and `A1 01 19 PP PP` above.
//! A real Google Play Services advert (libwebauthn PR #216 log) is
//! `5F43…C920 134E4730 A1011882`: PSM 0x82.
//!
//! The suffix is not covered by the EID's HMAC nor by the PSK salt (§2, §5):
//! tampering can only point the desktop at a PSM whose owner lacks the PSK.
//!
//! **Never build one unless the QR offered the BLE channel** (key 6 contains
//! 1, `hybrid_qr::QrCode::offers_ble_l2cap`): Chromium 149/150 only accepts
//! service data of exactly 20 bytes (`v2_discovery.cc` `OnBLEAdvertSeen`).
//! Nothing in this crate appends a suffix on its own.

use hybrid_cbor::access::{get_int_key, int};
use hybrid_cbor::{Mode, Value};

use crate::radio::ADVERT_LEN;
use crate::BleError;

/// The transport-channel identifier of the BLE L2CAP channel, as a suffix
/// map key (libwebauthn/pxp `advertisement.rs` `TRANSPORT_CHANNEL_BLE`; the
/// same number as in QR key 6).
pub const SUFFIX_KEY_BLE_PSM: i64 = 1;

/// The longest suffix [`ble_psm_suffix`] builds: `A1 01 19 PP PP`.
pub const MAX_PSM_SUFFIX_LEN: usize = 5;

/// The suffix `{1: psm}` as canonical CBOR (`hybrid-ble-l2cap.md` §2):
/// `A1 01 18 PP` for `psm` in 24..=255, `A1 01 19 PP PP` above (and the
/// one-byte form `A1 01 PP` below 24, which no LE channel uses).
///
/// PSM 0 is not a PSM (the kernel assigns one when asked for 0) and is
/// refused.
pub fn ble_psm_suffix(psm: u16) -> Result<Vec<u8>, BleError> {
    if psm == 0 {
        return Err(BleError::InvalidPsm);
    }
    Ok(hybrid_cbor::to_canonical_vec(&Value::Map(vec![(
        int(SUFFIX_KEY_BLE_PSM),
        int(i64::from(psm)),
    )])))
}

/// The whole service data for an advert that offers the BLE channel:
/// `advert || {1: psm}` (24 bytes for an LE dynamic PSM).
///
/// Only for sessions whose QR offered the BLE channel (module docs).
pub fn service_data_with_psm(advert: &[u8; ADVERT_LEN], psm: u16) -> Result<Vec<u8>, BleError> {
    let suffix = ble_psm_suffix(psm)?;
    let mut out = Vec::with_capacity(ADVERT_LEN + suffix.len());
    out.extend_from_slice(advert);
    out.extend_from_slice(&suffix);
    Ok(out)
}

/// Reads the BLE PSM from a suffix the way libwebauthn 0.5–0.10 and pxp
/// 0.1.0 do (`advertisement.rs` `AdvertisementSuffix::from_cbor`,
/// `ble_psm`), for the desktop side and tests:
///
/// * the bytes must be exactly one CBOR map (no trailing bytes), else
///   [`BleError::SuffixNotAMap`] — the desktop logs it and uses the tunnel;
/// * entries whose key is not an integer are ignored, unknown channels too;
/// * `Ok(Some(psm))` only when key 1 holds an integer in `u16` range,
///   `Ok(None)` otherwise (no BLE channel offered).
///
/// Unlike serde_cbor this reader refuses duplicate map keys (an error, so
/// also "use the tunnel"). An empty slice is "no suffix": `Ok(None)`.
pub fn parse_ble_psm(suffix: &[u8]) -> Result<Option<u16>, BleError> {
    if suffix.is_empty() {
        return Ok(None);
    }
    let value = hybrid_cbor::decode(suffix, Mode::Tolerant).map_err(BleError::SuffixCbor)?;
    let Value::Map(entries) = value else {
        return Err(BleError::SuffixNotAMap);
    };
    Ok(match get_int_key(&entries, SUFFIX_KEY_BLE_PSM) {
        Some(Value::Integer(psm)) => u16::try_from(i128::from(*psm)).ok(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::split_service_data;

    /// The 24-byte advert of Google Play Services (Pixel 8, Android 16) in
    /// libwebauthn PR #216's log (`hybrid-ble-l2cap.md` §2).
    const GMS_ADVERT: &str = "5f4397445af32fbc4333d5b71c26c920134e4730a1011882";

    #[test]
    fn real_gms_advert() {
        let data = hex::decode(GMS_ADVERT).unwrap();
        assert_eq!(data.len(), 24);
        let (eid, suffix) = split_service_data(&data).unwrap();
        assert_eq!(suffix, [0xa1, 0x01, 0x18, 0x82]);
        assert_eq!(parse_ble_psm(suffix).unwrap(), Some(0x82));
        // Building it back from the EID and the PSM gives the same bytes.
        assert_eq!(service_data_with_psm(eid, 0x82).unwrap(), data);
    }

    #[test]
    fn canonical_encodings() {
        assert_eq!(ble_psm_suffix(0x80).unwrap(), [0xa1, 0x01, 0x18, 0x80]);
        assert_eq!(ble_psm_suffix(0xff).unwrap(), [0xa1, 0x01, 0x18, 0xff]);
        assert_eq!(ble_psm_suffix(24).unwrap(), [0xa1, 0x01, 0x18, 0x18]);
        assert_eq!(ble_psm_suffix(23).unwrap(), [0xa1, 0x01, 0x17]);
        assert_eq!(ble_psm_suffix(1).unwrap(), [0xa1, 0x01, 0x01]);
        assert_eq!(
            ble_psm_suffix(0x100).unwrap(),
            [0xa1, 0x01, 0x19, 0x01, 0x00]
        );
        assert_eq!(
            ble_psm_suffix(0x1234).unwrap(),
            [0xa1, 0x01, 0x19, 0x12, 0x34]
        );
        assert_eq!(
            ble_psm_suffix(u16::MAX).unwrap(),
            [0xa1, 0x01, 0x19, 0xff, 0xff]
        );
        assert_eq!(ble_psm_suffix(0), Err(BleError::InvalidPsm));
        assert!(ble_psm_suffix(u16::MAX).unwrap().len() <= MAX_PSM_SUFFIX_LEN);
    }

    #[test]
    fn every_psm_round_trips() {
        for psm in 1..=u16::MAX {
            let s = ble_psm_suffix(psm).unwrap();
            assert_eq!(parse_ble_psm(&s).unwrap(), Some(psm));
        }
    }

    #[test]
    fn lengths_fit_a_legacy_advert_for_le_psms() {
        // Flags (3) + service-data header (4) + 20 + suffix must fit in 31.
        for psm in 0x80..=0xffu16 {
            let sd = service_data_with_psm(&[0; ADVERT_LEN], psm).unwrap();
            assert_eq!(sd.len(), 24);
            assert!(3 + 4 + sd.len() <= 31);
        }
    }

    #[test]
    fn parser_is_as_tolerant_as_libwebauthn() {
        let cases: &[(&[u8], Option<u16>)] = &[
            // Unknown channels and non-integer keys are ignored.
            (&[0xa1, 0x00, 0x01], None),
            (&[0xa2, 0x00, 0x01, 0x01, 0x18, 0x90], Some(0x90)),
            (&[0xa2, 0x01, 0x18, 0x90, 0x61, 0x78, 0x00], Some(0x90)),
            (&[0xa1, 0x61, 0x31, 0x18, 0x90], None),
            // Key 1 out of u16 range or not an integer: no PSM.
            (&[0xa1, 0x01, 0x1a, 0x00, 0x01, 0x00, 0x00], None),
            (&[0xa1, 0x01, 0x20], None),
            (&[0xa1, 0x01, 0x41, 0x90], None),
            (&[0xa1, 0x01, 0xf5], None),
            // Empty map; non-minimal integers are still integers.
            (&[0xa0], None),
            (&[0xa1, 0x01, 0x19, 0x00, 0x90], Some(0x90)),
            // PSM 0 is reported as libwebauthn would see it.
            (&[0xa1, 0x01, 0x00], Some(0)),
            // No suffix at all.
            (&[], None),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse_ble_psm(bytes).unwrap(), *want, "{bytes:02x?}");
        }
        // Not one CBOR map: an error (the desktop then uses the tunnel).
        for bad in [
            &[0x01][..],
            &[0x80],
            &[0xff, 0x00, 0x13],
            &[0xa1, 0x01, 0x18, 0x90, 0x00],
            &[0xa1, 0x01],
            &[0xa1, 0x01, 0x18],
            &[0xa2, 0x01, 0x01, 0x01, 0x02],
        ] {
            assert!(parse_ble_psm(bad).is_err(), "{bad:02x?}");
        }
    }
}
