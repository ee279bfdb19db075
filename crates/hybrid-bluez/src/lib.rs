//! hybrid-bluez: the BlueZ backend of hybridd's radio.
//!
//! It advertises the hybrid (caBLE v2) advert as service data under
//! the 16-bit UUID 0xFFF9 through bluetoothd's D-Bus API
//! (`org.bluez.LEAdvertisingManager1`), using the pure-Rust `zbus`, so no
//! libdbus is needed to build it.
//!
//! - [`BluezAdvertiser`]: start / stop an advert (also `hybrid_ble::Advertiser`):
//!   the 20-byte non-connectable one, or — only when asked, for a QR that
//!   offers CTAP 2.3's BLE L2CAP channel — a connectable one carrying the
//!   `{1: PSM}` suffix (`hybrid-ble-l2cap.md` §2).
//! - [`L2capListener`] / [`L2capChannel`]: the phone's LE credit-based
//!   L2CAP server (dynamic PSM, no security demanded) and the framed message
//!   channel over it (`hybrid-ble-l2cap.md` §3–§4), sockets from `bluer`'s
//!   `l2cap` feature (no D-Bus through bluer).
//! - [`adapters`] / [`choose_adapter`]: which adapter (`adapter = "hci1"`,
//!   default the first powered one).
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
mod l2cap;
#[cfg(feature = "scanner")]
pub mod scan;

#[cfg(feature = "fake")]
pub mod fake;

pub use adapter::{
    adapters, bus_at, check, check_system, choose_adapter, probe, system_bus, AdapterInfo,
};
pub use advertiser::{BluezAdvertiser, BluezConfig, ADVERT_PATH_PREFIX};
pub use error::BluezError;
pub use l2cap::{L2capChannel, L2capListener, L2CAP_RECV_MTU};
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
