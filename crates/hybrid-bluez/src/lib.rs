//! hybrid-bluez: the BlueZ backend of hybridd's radio.
//!
//! It advertises the 20-byte hybrid (caBLE v2) advert as service data under
//! the 16-bit UUID 0xFFF9 through bluetoothd's D-Bus API
//! (`org.bluez.LEAdvertisingManager1`), using the pure-Rust `zbus`, so no
//! libdbus is needed to build it.
//!
//! - [`BluezAdvertiser`]: start / stop an advert (also `hybrid_ble::Advertiser`).
//! - [`probe`] / [`check`]: what `hybridd doctor` reports about the adapter.
//! - `scan` (cargo feature `scanner`): a small LE scanner — the desktop's
//!   side, for tests, the VM check and the interop harness; the daemon
//!   never scans.
//! - `fake` (cargo feature `fake`): a fake `org.bluez` on a private bus.
//!
//! Every error is a [`BluezError`] whose text names the fix.

mod adapter;
mod advertiser;
mod error;
#[cfg(feature = "scanner")]
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
