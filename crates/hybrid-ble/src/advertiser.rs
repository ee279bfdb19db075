//! The radio seam: what a backend that broadcasts the advert implements
//! (BlueZ over D-Bus in `hybrid-bluez`, the file radio here, test doubles).

use std::future::Future;
use std::pin::Pin;

use crate::radio::ADVERT_LEN;

/// Why a radio backend cannot advertise. Every variant carries, in its
/// Display and in [`AdvertiserError::fix`], what the user can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdvertiserError {
    /// There is no Bluetooth adapter.
    #[error("no Bluetooth adapter found: {}", self.fix())]
    NoAdapter,
    /// The adapter is powered off or rfkill-blocked.
    #[error("Bluetooth adapter {adapter} is powered off: {}", self.fix())]
    PoweredOff {
        /// Adapter name, e.g. `hci0`.
        adapter: String,
    },
    /// The controller cannot do LE advertising (or has no free instance).
    #[error("Bluetooth adapter {adapter} cannot do LE advertising: {}", self.fix())]
    NoLeAdvertising {
        /// Adapter name, e.g. `hci0`.
        adapter: String,
    },
    /// Not allowed to use the radio.
    #[error("not allowed to advertise ({detail}): {}", self.fix())]
    PermissionDenied {
        /// What the system said.
        detail: String,
    },
    /// Reading or writing failed (file radio, sockets).
    #[error("radio I/O error ({_0}): {fix}", fix = self.fix())]
    Io(String),
    /// Any other backend failure, with the backend's own fix text.
    #[error("{message}: {fix}")]
    Backend {
        /// What went wrong.
        message: String,
        /// What to do about it.
        fix: String,
    },
}

impl AdvertiserError {
    /// A human-readable "how to fix" text.
    pub fn fix(&self) -> &str {
        match self {
            AdvertiserError::NoAdapter => {
                "plug in a Bluetooth LE adapter, or check `bluetoothctl list` and `rfkill list`; \
                 without a radio use the file radio"
            }
            AdvertiserError::PoweredOff { .. } => {
                "run `bluetoothctl power on` (and check `rfkill list`)"
            }
            AdvertiserError::NoLeAdvertising { .. } => {
                "use a Bluetooth 4.0+ (LE) controller, or stop other advertisers \
                 (`bluetoothctl advertise off`)"
            }
            AdvertiserError::PermissionDenied { .. } => {
                "run hybridd as a user BlueZ's D-Bus policy allows (e.g. group `bluetooth`)"
            }
            AdvertiserError::Io(_) => {
                "check that the advert path's directory exists and is writable"
            }
            AdvertiserError::Backend { fix, .. } => fix,
        }
    }
}

/// The future type the [`Advertiser`] methods return: boxed so the trait
/// stays object-safe without extra crates.
pub type AdvertFuture<'a> = Pin<Box<dyn Future<Output = Result<(), AdvertiserError>> + Send + 'a>>;

/// A radio that broadcasts the 20-byte advert as service data under
/// [`crate::SERVICE_UUID_16`], non-connectable (§3.4). Object-safe:
/// `Box<dyn Advertiser>` works.
pub trait Advertiser: Send {
    /// Starts broadcasting `advert`, replacing any advert this radio is
    /// already broadcasting.
    fn start<'a>(&'a mut self, advert: &'a [u8; ADVERT_LEN]) -> AdvertFuture<'a>;

    /// Stops broadcasting. Stopping a radio that is not advertising is not
    /// an error.
    fn stop(&mut self) -> AdvertFuture<'_>;

    /// Starts the CTAP 2.3 advert offering the BLE L2CAP channel:
    /// connectable, service data `advert ‖ {1: psm}`
    /// ([`crate::service_data_with_psm`], `hybrid-ble-l2cap.md` §2). Only for
    /// a QR that offered the channel. Radios that cannot say so (the
    /// default); the session then falls back to [`Advertiser::start`].
    fn start_with_psm<'a>(
        &'a mut self,
        advert: &'a [u8; ADVERT_LEN],
        psm: u16,
    ) -> AdvertFuture<'a> {
        let _ = (advert, psm);
        Box::pin(std::future::ready(Err(AdvertiserError::Backend {
            message: "this radio cannot advertise an L2CAP PSM".to_owned(),
            fix: "use the BlueZ radio for CTAP 2.3's BLE L2CAP channel".to_owned(),
        })))
    }
}
