//! Errors of the BlueZ backend. Every variant's text says what to do about it.

use thiserror::Error;

/// Why the BlueZ backend cannot advertise (or probe), each with its fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
#[error("{}: {}{}", self.summary(), self.fix(), self.detail_suffix())]
pub enum BluezError {
    /// No D-Bus system bus could be reached at all.
    NoSystemBus {
        /// What the D-Bus library said (address, I/O error).
        detail: String,
    },
    /// The bus is up but nobody owns `org.bluez`.
    NoBluetoothd {
        /// The D-Bus error that showed it.
        detail: String,
    },
    /// BlueZ runs but knows no adapter at all.
    NoAdapter,
    /// The adapter named in the configuration does not exist.
    AdapterNotFound {
        /// The configured name, e.g. `hci1`.
        wanted: String,
        /// The adapters BlueZ does have, comma separated (or "none").
        available: String,
    },
    /// The adapter exists but is powered off (or rfkill-blocked).
    PoweredOff {
        /// Adapter name, e.g. `hci0`.
        adapter: String,
    },
    /// The controller offers no LE advertising (no `LEAdvertisingManager1`, or no instances).
    NoLeAdvertising {
        /// Adapter name.
        adapter: String,
    },
    /// Every advertising instance of the controller is taken by other programs.
    NoFreeInstance {
        /// Adapter name.
        adapter: String,
        /// How many instances are active.
        active: u8,
    },
    /// The bus refused us access to BlueZ.
    AccessDenied {
        /// The D-Bus error text.
        detail: String,
    },
    /// `RegisterAdvertisement` was refused by BlueZ for another reason.
    RegisterFailed {
        /// Adapter name.
        adapter: String,
        /// The D-Bus error name, e.g. `org.bluez.Error.Failed`.
        error: String,
        /// BlueZ's message.
        message: String,
        /// What to do about it.
        /// What to do about it.
        fix: &'static str,
    },
    /// BlueZ did not answer in time.
    Timeout {
        /// The call that timed out.
        what: &'static str,
        /// The timeout in seconds.
        secs: u64,
    },
    /// The kernel cannot open Bluetooth L2CAP sockets (no Bluetooth support).
    L2capUnavailable {
        /// The OS error.
        detail: String,
    },
    /// Setting up the L2CAP listener failed (socket option, bind, listen).
    L2capSetup {
        /// The step that failed.
        what: &'static str,
        /// The OS error or reason.
        detail: String,
    },
    /// BlueZ reports no usable LE address for the adapter to listen on.
    L2capNoAddress {
        /// Adapter name.
        adapter: String,
    },
    /// An L2CAP wait ran out.
    L2capTimeout {
        /// What was awaited.
        what: &'static str,
        /// The bound in seconds.
        secs: u64,
    },
    /// Reading or writing the L2CAP channel failed.
    L2capIo {
        /// The operation.
        what: &'static str,
        /// The OS error.
        detail: String,
    },
    /// The desktop broke the channel's message framing
    /// (`hybrid-ble-l2cap.md` §4).
    L2capFraming(hybrid_ble::BleError),
    /// Any other D-Bus failure, with its context.
    DBus {
        /// What we were doing.
        what: &'static str,
        /// The error text.
        detail: String,
    },
}

impl BluezError {
    /// What is wrong, without the fix.
    pub fn summary(&self) -> String {
        match self {
            Self::NoSystemBus { .. } => "no D-Bus system bus".to_owned(),
            Self::NoBluetoothd { .. } => "bluetoothd is not running".to_owned(),
            Self::NoAdapter => "no Bluetooth adapter found".to_owned(),
            Self::AdapterNotFound { wanted, available } => {
                format!("Bluetooth adapter {wanted} not found (BlueZ has: {available})")
            }
            Self::PoweredOff { adapter } => format!("adapter {adapter} is powered off"),
            Self::NoLeAdvertising { adapter } => {
                format!("controller {adapter} cannot do LE advertising")
            }
            Self::NoFreeInstance { adapter, active } => {
                format!("all {active} advertising instances of {adapter} are in use")
            }
            Self::AccessDenied { detail } => {
                format!("not allowed to use BlueZ on the system bus ({detail})")
            }
            Self::RegisterFailed {
                adapter,
                error,
                message,
                ..
            } => format!("BlueZ refused the advertisement on {adapter}: {error}: {message}"),
            Self::Timeout { what, secs } => {
                format!("bluetoothd did not answer {what} within {secs} s")
            }
            Self::DBus { what, detail } => format!("D-Bus error during {what}: {detail}"),
            Self::L2capUnavailable { detail } => {
                format!("this kernel cannot open Bluetooth L2CAP sockets ({detail})")
            }
            Self::L2capSetup { what, detail } => {
                format!("L2CAP listener: {what} failed: {detail}")
            }
            Self::L2capNoAddress { adapter } => {
                format!("BlueZ reports no LE address for adapter {adapter}")
            }
            Self::L2capTimeout { what, secs } => {
                format!("L2CAP channel: no {what} within {secs} s")
            }
            Self::L2capIo { what, detail } => format!("L2CAP channel: {what} failed: {detail}"),
            Self::L2capFraming(e) => format!("L2CAP channel: {e}"),
        }
    }

    fn detail_suffix(&self) -> String {
        match self {
            Self::NoSystemBus { detail } | Self::NoBluetoothd { detail } => format!(" [{detail}]"),
            _ => String::new(),
        }
    }

    /// What to do about it.
    pub fn fix(&self) -> &'static str {
        match self {
            Self::NoSystemBus { .. } => {
                "Bluetooth is unavailable on this machine (start dbus, or use the file radio)"
            }
            Self::NoBluetoothd { .. } => "sudo systemctl start bluetooth",
            Self::NoAdapter => "plug one in, or check `bluetoothctl list` and `rfkill list`",
            Self::AdapterNotFound { .. } => "fix the configured adapter name",
            Self::PoweredOff { .. } => "bluetoothctl power on (and check `rfkill list`)",
            Self::NoLeAdvertising { .. } => "use a Bluetooth 4.0+ (LE) controller",
            Self::NoFreeInstance { .. } => {
                "stop other advertisers (e.g. `bluetoothctl advertise off`) or restart bluetoothd"
            }
            Self::AccessDenied { .. } => {
                "run hybridd as root or as a user the BlueZ D-Bus policy allows (group `bluetooth`)"
            }
            Self::RegisterFailed { fix, .. } => fix,
            Self::Timeout { .. } => "restart it: sudo systemctl restart bluetooth",
            Self::DBus { .. } => "check that bluetoothd is healthy: journalctl -u bluetooth",
            Self::L2capUnavailable { .. } => {
                "load the kernel's Bluetooth support (modprobe bluetooth); desktops then \
                 use the tunnel"
            }
            Self::L2capSetup { .. } | Self::L2capNoAddress { .. } => {
                "check the adapter with `btmgmt info`; desktops use the tunnel meanwhile"
            }
            Self::L2capTimeout { .. } | Self::L2capIo { .. } | Self::L2capFraming(_) => {
                "the desktop's L2CAP connection failed; scan a new QR code (the tunnel \
                 still works)"
            }
        }
    }

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

impl From<BluezError> for hybrid_ble::AdvertiserError {
    fn from(e: BluezError) -> Self {
        match e {
            BluezError::NoAdapter => Self::NoAdapter,
            BluezError::PoweredOff { adapter } => Self::PoweredOff { adapter },
            BluezError::NoLeAdvertising { adapter } => Self::NoLeAdvertising { adapter },
            BluezError::AccessDenied { detail } => Self::PermissionDenied { detail },
            other => Self::Backend {
                message: match other.detail_suffix() {
                    s if s.is_empty() => other.summary(),
                    s => format!("{}{s}", other.summary()),
                },
                fix: other.fix().to_owned(),
            },
        }
    }
}
