//! hybrid-desktop: the standard desktop services hybridd talks to, so that
//! it can ask and verify like the phone it replaces.
//!
//! - [`notify`]: consent through a desktop notification with Approve and
//!   Deny actions (`org.freedesktop.Notifications`, session bus).
//! - [`pinentry`]: the PIN through the user's pinentry program (the Assuan
//!   protocol over its stdin/stdout; [`assuan`] is the I/O-free protocol core).
//! - [`fprint`]: user verification with a fingerprint (fprintd,
//!   `net.reactivated.Fprint`, system bus).
//! - [`logind`]: "the session locks" and "the machine suspends" as a stream
//!   of events (systemd-logind, `org.freedesktop.login1`, system bus).
//! - `testing` (cargo feature): harnesses that start the real components
//!   on private buses for tests (Xvfb + dunst, fprintd with libfprint's
//!   virtual device, a pseudo-terminal for pinentry-tty) and the stand-ins
//!   for what cannot run privately (a polkit authority, a fake logind).
//!
//! Used by hybridd's desktop front-ends (`crates/hybridd/src/approval/desktop.rs`,
//! `crates/hybridd/src/vault_session.rs`); whole ceremonies through them are
//! tested in `crates/hybridd/tests/desktop_ceremony.rs`. Tested against
//! dunst 1.9.0, pinentry-tty 1.2.1, fprintd 1.94.2 with libfprint 1.94.5
//! and xdg-utils 1.1.3 (Debian 12; `docs/operations.md`, "From your desktop").
//!
//! What it does not own: what to show (every summary, body and description
//! arrives already rendered by hybridd's one sanitizer for peer strings),
//! the decision (the caller maps every outcome other than an explicit
//! approval, and every [`DesktopError`], to "decline" or its configured
//! fallback), the vault and the vault session, and configuration.
//!
//! Rules every client keeps: async (tokio, zbus 5); every wait is bounded
//! by an explicit `deadline` argument (`tokio::time::Instant`); a resource
//! taken (a claimed fingerprint reader, a shown notification, a pinentry
//! child) is given back on every path, including when the future is
//! dropped; a PIN is never logged; one error type, [`DesktopError`], whose
//! text names the fix.
#![forbid(unsafe_code)]

pub mod assuan;
mod error;
pub mod pinentry;

#[cfg(feature = "dbus")]
mod bus;
#[cfg(feature = "dbus")]
pub mod fprint;
#[cfg(feature = "dbus")]
pub mod logind;
#[cfg(feature = "dbus")]
pub mod notify;

#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "dbus")]
pub use bus::{bus_at, session_bus, system_bus};
pub use error::{BusKind, DesktopError};
#[cfg(feature = "dbus")]
pub use fprint::{Fprint, FprintDevice, ScanType, VerifyEvent, VerifyOutcome, VerifyPolicy};
#[cfg(feature = "dbus")]
pub use logind::{LogindEvent, LogindWatcher, SessionSelector};
#[cfg(feature = "dbus")]
pub use notify::{Consent, ConsentRequest, Notifier, PendingConsent, ServerInfo};
pub use pinentry::{get_pin, PinOutcome, PinRequest, Pinentry, PinentryConfig};
#[cfg(feature = "dbus")]
pub use zbus::Connection;
