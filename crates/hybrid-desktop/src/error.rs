//! The one error type of this crate. Every variant's text says what is
//! wrong and what to do about it; the caller maps each to its configured
//! fallback (and never to an approval).

use std::path::PathBuf;

use thiserror::Error;

/// Which D-Bus bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    /// The user's session bus (notifications).
    Session,
    /// The system bus (fprintd, logind).
    System,
    /// A bus given by address (tests, private buses).
    Address,
}

impl std::fmt::Display for BusKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BusKind::Session => "session bus",
            BusKind::System => "system bus",
            BusKind::Address => "D-Bus bus",
        })
    }
}

/// Why a desktop service could not do what was asked. Outcomes a person
/// chooses (deny, cancel, a finger that does not match, a deadline that
/// passes) are *not* errors: they are the `Consent`, `PinOutcome` and
/// `VerifyOutcome` values of each client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DesktopError {
    /// The bus could not be reached.
    #[error("cannot connect to the {bus} ({detail}): {}", bus_fix(*.bus))]
    NoBus {
        /// Which bus.
        bus: BusKind,
        /// What the D-Bus library said.
        detail: String,
    },

    /// Nobody owns `org.freedesktop.Notifications` on the session bus.
    #[error(
        "no notification server on the session bus ({detail}): install and run a notification \
         daemon that supports actions, such as dunst, mako or your desktop's own"
    )]
    NoNotificationServer {
        /// The D-Bus error that showed it.
        detail: String,
    },
    /// The notification server cannot show Approve/Deny buttons.
    #[error(
        "the notification server {server} cannot show actions (buttons), so it cannot ask for \
         approval: install and run a notification daemon that supports actions, such as dunst, \
         mako or your desktop's own"
    )]
    NotificationsWithoutActions {
        /// `GetServerInformation` name and version.
        server: String,
    },

    /// The pinentry program could not be started.
    #[error(
        "cannot start pinentry {} ({detail}): install one (Debian: pinentry-gnome3, \
         pinentry-qt, pinentry-curses or pinentry-tty) and set its path in the configuration",
        program.display()
    )]
    PinentrySpawn {
        /// The configured program.
        program: PathBuf,
        /// The OS error.
        detail: String,
    },
    /// The pinentry broke the Assuan protocol (garbage, an over-long line,
    /// an unexpected reply) and was killed.
    #[error(
        "pinentry {} broke the Assuan protocol ({detail}) and was stopped: configure another \
         pinentry program",
        program.display()
    )]
    PinentryProtocol {
        /// The configured program.
        program: PathBuf,
        /// What was wrong (never the bytes themselves: they may hold a PIN).
        detail: &'static str,
    },
    /// The pinentry exited before answering.
    #[error(
        "pinentry {} exited before answering ({status}): run it by hand to see why (for a \
         terminal pinentry, is a terminal given?)",
        program.display()
    )]
    PinentryExited {
        /// The configured program.
        program: PathBuf,
        /// Its exit status, as text.
        status: String,
    },
    /// The pinentry refused a command with an error other than "cancelled"
    /// or "timeout" (no display, no terminal, …).
    #[error(
        "pinentry {} failed: {message} (error {code}): check that it can reach your display \
         or terminal",
        program.display()
    )]
    PinentryFailed {
        /// The configured program.
        program: PathBuf,
        /// The Assuan (libgpg-error) code.
        code: u32,
        /// Its description (sanitized to printable ASCII).
        message: String,
    },
    /// A text for the pinentry does not fit one Assuan line.
    #[error(
        "the {what} text is too long for pinentry ({len} bytes escaped, at most {max}): \
         a hybridd bug, please report it"
    )]
    PinentryTextTooLong {
        /// Which text (description, prompt, …).
        what: &'static str,
        /// Its escaped length.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// Nobody answers as `net.reactivated.Fprint` on the system bus.
    #[error(
        "fprintd is not available ({detail}): install it (Debian: apt install fprintd) or \
         configure PIN verification instead"
    )]
    NoFprintd {
        /// The D-Bus error that showed it.
        detail: String,
    },
    /// fprintd knows no fingerprint reader.
    #[error(
        "no fingerprint reader found by fprintd: plug one in (fprintd-list shows what it sees) \
         or configure PIN verification instead"
    )]
    NoFingerprintReader,
    /// The user has no finger enrolled on the reader.
    #[error(
        "no finger enrolled for this user: enroll one (fprintd-enroll, or your desktop's \
         Settings → Users → Fingerprint login)"
    )]
    NoEnrolledFinger,
    /// Another program holds the reader.
    #[error(
        "the fingerprint reader is in use by another program ({detail}): finish or close that \
         program and try again"
    )]
    FingerprintBusy {
        /// fprintd's message.
        detail: String,
    },
    /// polkit refused fprintd access for this user.
    #[error(
        "not allowed to use the fingerprint reader ({detail}): check the polkit rules for \
         net.reactivated.fprint.device.verify"
    )]
    FingerprintDenied {
        /// fprintd's message.
        detail: String,
    },
    /// The reader went away during a verification.
    #[error("the fingerprint reader was disconnected: plug it in again")]
    FingerprintDisconnected,
    /// fprintd or its driver failed.
    #[error(
        "fprintd failed ({detail}): see `journalctl -u fprintd`; unplugging the reader or \
         restarting fprintd often helps"
    )]
    FingerprintFailed {
        /// The verify result or D-Bus error.
        detail: String,
    },

    /// logind (`org.freedesktop.login1`) is not on the system bus.
    #[error(
        "systemd-logind is not available ({detail}): the vault session cannot follow screen \
         locks and suspend; do not enable it on this machine"
    )]
    NoLogind {
        /// The D-Bus error that showed it.
        detail: String,
    },
    /// logind knows no session to watch for this process or user.
    #[error(
        "logind has no login session for this user ({detail}): log in graphically, or set \
         the session id in the configuration"
    )]
    NoLoginSession {
        /// Why each way of finding it failed.
        detail: String,
    },

    /// A call did not finish before its deadline.
    #[error("{what} did not finish in time: is the service hung? (restarting it often helps)")]
    Timeout {
        /// What was being done.
        what: &'static str,
    },
    /// Any other D-Bus failure, with its context.
    #[error("D-Bus error during {what}: {detail}")]
    DBus {
        /// What was being done.
        what: &'static str,
        /// The error text.
        detail: String,
    },
}

fn bus_fix(bus: BusKind) -> &'static str {
    match bus {
        BusKind::Session => {
            "run hybridd inside your desktop session (DBUS_SESSION_BUS_ADDRESS must be set; \
             `systemctl --user import-environment` helps for a user service)"
        }
        BusKind::System => "start the system D-Bus (systemctl start dbus)",
        BusKind::Address => "check the bus address",
    }
}

/// The D-Bus error name of a failed call, if it was an error reply.
#[cfg(feature = "dbus")]
pub(crate) fn error_name(e: &zbus::Error) -> Option<String> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str().to_owned()),
        zbus::Error::FDO(f) => Some(zbus::DBusError::name(f.as_ref()).as_str().to_owned()),
        _ => None,
    }
}

/// Whether a failed call means "nobody owns that name".
#[cfg(feature = "dbus")]
pub(crate) fn is_service_missing(e: &zbus::Error) -> bool {
    matches!(
        error_name(e).as_deref(),
        Some(
            "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner"
                | "org.freedesktop.DBus.Error.Spawn.ServiceNotFound"
                | "org.freedesktop.DBus.Error.Spawn.ChildExited"
                | "org.freedesktop.DBus.Error.Spawn.Failed"
                | "org.freedesktop.DBus.Error.Spawn.ExecFailed"
                | "org.freedesktop.systemd1.NoSuchUnit"
        )
    )
}

/// A D-Bus failure as text: the error name and message for error replies.
#[cfg(feature = "dbus")]
pub(crate) fn detail(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, msg, _) => {
            format!("{}: {}", name.as_str(), msg.as_deref().unwrap_or(""))
        }
        other => other.to_string(),
    }
}
