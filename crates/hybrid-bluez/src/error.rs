//! Errors of the BlueZ backend. Every variant's text says what to do about it.

use thiserror::Error;

/// Why the BlueZ backend cannot advertise (or probe), each with its fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BluezError {
    /// No D-Bus system bus could be reached at all.
    #[error("no D-Bus system bus: Bluetooth is unavailable on this machine ({detail})")]
    NoSystemBus {
        /// What the D-Bus library said (address, I/O error).
        detail: String,
    },
    /// The bus is up but nobody owns `org.bluez`.
    #[error("bluetoothd is not running: sudo systemctl start bluetooth ({detail})")]
    NoBluetoothd {
        /// The D-Bus error that showed it.
        detail: String,
    },
    /// BlueZ runs but knows no adapter at all.
    #[error(
        "no Bluetooth adapter found: plug one in or check `bluetoothctl list` / `rfkill list`"
    )]
    NoAdapter,
    /// The adapter named in the configuration does not exist.
    #[error("Bluetooth adapter {wanted} not found (BlueZ has: {available}): fix the configured adapter name")]
    AdapterNotFound {
        /// The configured name, e.g. `hci1`.
        wanted: String,
        /// The adapters BlueZ does have, comma separated (or "none").
        available: String,
    },
    /// The adapter exists but is powered off (or rfkill-blocked).
    #[error("adapter {adapter} is powered off: bluetoothctl power on (and check `rfkill list`)")]
    PoweredOff {
        /// Adapter name, e.g. `hci0`.
        adapter: String,
    },
    /// The controller offers no LE advertising (no `LEAdvertisingManager1`, or no instances).
    #[error("controller {adapter} cannot do LE advertising: use a Bluetooth 4.0+ (LE) controller")]
    NoLeAdvertising {
        /// Adapter name.
        adapter: String,
    },
    /// Every advertising instance of the controller is taken by other programs.
    #[error(
        "all {active} advertising instances of {adapter} are in use: stop other advertisers \
         (e.g. `bluetoothctl advertise off`) or restart bluetoothd"
    )]
    NoFreeInstance {
        /// Adapter name.
        adapter: String,
        /// How many instances are active.
        active: u8,
    },
    /// The bus refused us access to BlueZ.
    #[error(
        "not allowed to use BlueZ on the system bus: run hybridd as root or as a user the BlueZ \
         D-Bus policy allows (group `bluetooth`) ({detail})"
    )]
    AccessDenied {
        /// The D-Bus error text.
        detail: String,
    },
    /// `RegisterAdvertisement` was refused by BlueZ for another reason.
    #[error("BlueZ refused the advertisement on {adapter}: {error}: {message} ({fix})")]
    RegisterFailed {
        /// Adapter name.
        adapter: String,
        /// The D-Bus error name, e.g. `org.bluez.Error.Failed`.
        error: String,
        /// BlueZ's message.
        message: String,
        /// What to do about it.
        fix: &'static str,
    },
    /// BlueZ did not answer in time.
    #[error("bluetoothd did not answer {what} within {secs} s: restart it (sudo systemctl restart bluetooth)")]
    Timeout {
        /// The call that timed out.
        what: &'static str,
        /// The timeout in seconds.
        secs: u64,
    },
    /// Any other D-Bus failure, with its context.
    #[error("D-Bus error during {what}: {detail} (check that bluetoothd is healthy: journalctl -u bluetooth)")]
    DBus {
        /// What we were doing.
        what: &'static str,
        /// The error text.
        detail: String,
    },
}

impl BluezError {
    /// Maps a zbus error from a call to `org.bluez` (other than `RegisterAdvertisement`).
    pub(crate) fn from_call(what: &'static str, err: zbus::Error) -> Self {
        match &err {
            zbus::Error::MethodError(name, msg, _) => {
                let name = name.as_str();
                let detail = format!("{name}: {}", msg.as_deref().unwrap_or(""));
                match name {
                    "org.freedesktop.DBus.Error.ServiceUnknown"
                    | "org.freedesktop.DBus.Error.NameHasNoOwner"
                    | "org.freedesktop.DBus.Error.Spawn.ServiceNotFound"
                    | "org.freedesktop.DBus.Error.Spawn.ChildExited"
                    | "org.freedesktop.DBus.Error.Spawn.Failed"
                    | "org.freedesktop.DBus.Error.Spawn.ExecFailed"
                    | "org.freedesktop.systemd1.NoSuchUnit" => Self::NoBluetoothd { detail },
                    "org.freedesktop.DBus.Error.AccessDenied" => Self::AccessDenied { detail },
                    _ => Self::DBus { what, detail },
                }
            }
            zbus::Error::FDO(fdo) => match fdo.as_ref() {
                zbus::fdo::Error::ServiceUnknown(m) | zbus::fdo::Error::NameHasNoOwner(m) => {
                    Self::NoBluetoothd { detail: m.clone() }
                }
                zbus::fdo::Error::AccessDenied(m) => Self::AccessDenied { detail: m.clone() },
                other => Self::DBus {
                    what,
                    detail: other.to_string(),
                },
            },
            _ => Self::DBus {
                what,
                detail: err.to_string(),
            },
        }
    }

    /// Maps an error reply to `LEAdvertisingManager1.RegisterAdvertisement`.
    pub(crate) fn from_register(adapter: &str, err: zbus::Error) -> Self {
        let (name, message) = match &err {
            zbus::Error::MethodError(name, msg, _) => {
                (name.as_str().to_owned(), msg.clone().unwrap_or_default())
            }
            _ => return Self::from_call("RegisterAdvertisement", err),
        };
        let fix = match name.as_str() {
            "org.bluez.Error.NotPermitted" => {
                "no free advertising instance: stop other advertisers (bluetoothctl advertise off) \
                 or restart bluetoothd"
            }
            "org.bluez.Error.InvalidLength" => {
                "the advert does not fit the controller's 31-byte legacy advertising data: \
                 a hybridd bug, please report it"
            }
            "org.bluez.Error.InvalidArguments" | "org.bluez.Error.AlreadyExists" => {
                "BlueZ rejected the advertisement object: a hybridd bug or an incompatible \
                 BlueZ version (hybridd needs BlueZ 5.43 or newer)"
            }
            "org.bluez.Error.NotReady" => "the adapter is not ready: bluetoothctl power on",
            "org.freedesktop.DBus.Error.UnknownMethod"
            | "org.freedesktop.DBus.Error.UnknownObject"
            | "org.freedesktop.DBus.Error.UnknownInterface" => {
                "the adapter went away or lost LE advertising: check `bluetoothctl list`"
            }
            "org.freedesktop.DBus.Error.ServiceUnknown"
            | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
                return Self::NoBluetoothd {
                    detail: format!("{name}: {message}"),
                }
            }
            "org.freedesktop.DBus.Error.AccessDenied" => {
                return Self::AccessDenied {
                    detail: format!("{name}: {message}"),
                }
            }
            "org.freedesktop.DBus.Error.NoReply" | "org.freedesktop.DBus.Error.Timeout" => {
                "bluetoothd did not answer: restart it (sudo systemctl restart bluetooth)"
            }
            _ => {
                "see `journalctl -u bluetooth` and `btmgmt info`; restarting bluetoothd often helps"
            }
        };
        Self::RegisterFailed {
            adapter: adapter.to_owned(),
            error: name,
            message,
            fix,
        }
    }
}
