//! hybrid-bluez: the BlueZ backend of hybridd's radio.
//!
//! It advertises the 20-byte hybrid (caBLE v2) advert as service data under
//! the 16-bit UUID 0xFFF9 through bluetoothd's D-Bus API
//! (`org.bluez.LEAdvertisingManager1`), using the pure-Rust `zbus`, so no
//! libdbus is needed to build it.
//!
//! - [`BluezAdvertiser`]: start / stop an advert (also `hybrid_ble::Advertiser`).
//! - [`probe`] / [`check`]: what `hybridd doctor` reports about the adapter.
//! - [`scan`]: a small LE scanner (tests and the VM check).
//! - `fake` (cargo feature `fake`): a fake `org.bluez` on a private bus.
//!
//! Every error is a [`BluezError`] whose text names the fix.

mod adapter;
mod advertiser;
mod error;
pub mod scan;

#[cfg(feature = "fake")]
pub mod fake;

pub use adapter::{bus_at, check, check_system, probe, system_bus, AdapterInfo};
pub use advertiser::{BluezAdvertiser, BluezConfig, ADVERT_PATH_PREFIX};
pub use error::BluezError;
pub use zbus::Connection;

/// The bus name bluetoothd owns.
pub const BLUEZ: &str = "org.bluez";
/// BlueZ's adapter interface.
pub const ADAPTER1: &str = "org.bluez.Adapter1";
/// BlueZ's device interface (what a scanner sees).
pub const DEVICE1: &str = "org.bluez.Device1";
/// BlueZ's LE advertising manager interface (on the adapter object).
pub const LE_ADVERTISING_MANAGER1: &str = "org.bluez.LEAdvertisingManager1";
/// The interface our advertisement object implements.
pub const LE_ADVERTISEMENT1: &str = "org.bluez.LEAdvertisement1";
/// The FIDO 16-bit service UUID 0xFFF9, in the 128-bit form BlueZ uses.
pub const FIDO_SERVICE_UUID: &str = "0000fff9-0000-1000-8000-00805f9b34fb";
