//! Radio-level constants of the hybrid advert (`hybrid-protocol.md` §3.4),
//! written once here for every backend.

/// Length of the advert carried as service data: 16-byte ciphertext + 4-byte
/// tag (§3.2, Chromium `kAdvertSize`).
pub const ADVERT_LEN: usize = 20;

/// The 16-bit service UUID to advertise under: 0xFFF9, FIDO's SDO-assigned
/// UUID (Chrome-on-Android `BLEAdvert.java`). **Use this one.**
pub const SERVICE_UUID_16: u16 = 0xFFF9;

/// [`SERVICE_UUID_16`] as a full 128-bit UUID string (Bluetooth base UUID),
/// the form BlueZ's `LEAdvertisement1` takes.
pub const SERVICE_UUID: &str = "0000fff9-0000-1000-8000-00805f9b34fb";

/// The older Google member UUID 0xFDE2 that iOS phones transmit under;
/// desktops scan for both (Chromium `fido_cable_discovery.cc`). Not for
/// our adverts — listed so scanners and tests can recognise it.
pub const IOS_SERVICE_UUID_16: u16 = 0xFDE2;

/// [`IOS_SERVICE_UUID_16`] as a full 128-bit UUID string.
pub const IOS_SERVICE_UUID: &str = "0000fde2-0000-1000-8000-00805f9b34fb";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_uuids_match_short_ones() {
        assert_eq!(
            SERVICE_UUID,
            format!("0000{SERVICE_UUID_16:04x}-0000-1000-8000-00805f9b34fb")
        );
        assert_eq!(
            IOS_SERVICE_UUID,
            format!("0000{IOS_SERVICE_UUID_16:04x}-0000-1000-8000-00805f9b34fb")
        );
    }
}
