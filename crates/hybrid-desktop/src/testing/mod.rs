//! Test harnesses: the real desktop components, started by the tests on
//! private buses and in private directories (never the machine's own), and
//! the stand-ins for what cannot run privately.
//!
//! - [`Xvfb`] + [`Dunst`]: a real notification server on a private session
//!   bus, whose actions are invoked with `dunstctl` (dunst's context menu,
//!   with a `dmenu` stand-in that picks the wanted `[id,action]` line).
//! - [`Fprintd`]: the real fprintd with libfprint's `virtual_device`
//!   driver (`FP_VIRTUAL_DEVICE`), prints stored in a temporary
//!   `STATE_DIRECTORY`; [`Fprintd::enroll`] enrolls a finger through
//!   fprintd's own D-Bus API.
//! - [`PolkitAllowAll`]: a stand-in `org.freedesktop.PolicyKit1` that
//!   allows every action and records what was asked (fprintd asks polkit;
//!   the real polkitd needs the machine's system bus).
//! - [`FakeLogind`]: a fake `org.freedesktop.login1` that can emit `Lock`,
//!   change `LockedHint` and emit `PrepareForSleep`.
//! - [`Pty`]: a pseudo-terminal for `pinentry-tty`.
//!
//! Every child is killed (by its own pid) and reaped on drop, and every
//! wait has a bound. A missing program is [`HarnessError::NotInstalled`];
//! [`or_skip`] turns it into a loud skip, or a failure when
//! `HYBRIDD_REQUIRE_DESKTOP=1` (CI sets it).

mod fprintd;
mod logind;
mod polkit;
mod pty;
mod x11;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

pub use fprintd::{Fprintd, FprintdOptions, VIRTUAL_DEVICE_NAME};
pub use hybrid_bluez::fake::{PrivateBus, PrivateBusError};
pub use logind::{FakeLogind, FakeLogindOptions};
pub use polkit::PolkitAllowAll;
pub use pty::Pty;
pub use x11::{Dunst, DunstOptions, Xvfb};

/// The environment variable that turns a missing component into a failure.
pub const REQUIRE_ENV: &str = "HYBRIDD_REQUIRE_DESKTOP";

/// How long a harness waits for a component to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a harness could not start its component.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The program is not installed.
    #[error("{program} is not installed: apt-get install {package}")]
    NotInstalled {
        /// The program looked for.
        program: String,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// It is installed but did not start (with its log).
    #[error("{0}")]
    Failed(String),
}

impl From<PrivateBusError> for HarnessError {
    fn from(e: PrivateBusError) -> Self {
        match e {
            PrivateBusError::NotInstalled(_) => HarnessError::NotInstalled {
                program: "dbus-daemon".to_owned(),
                package: "dbus-daemon",
            },
            other => HarnessError::Failed(other.to_string()),
        }
    }
}

/// Whether missing components must fail the tests (`HYBRIDD_REQUIRE_DESKTOP=1`).
pub fn required() -> bool {
    std::env::var(REQUIRE_ENV).as_deref() == Ok("1")
}

/// `Some(value)`, or `None` after a loud message when the component is not
/// installed and [`required`] is false. Any other failure panics.
#[allow(clippy::panic)]
pub fn or_skip<T>(test: &str, r: Result<T, HarnessError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e @ HarnessError::NotInstalled { .. }) if !required() => {
            eprintln!(
                "\n!!!!!!!! SKIPPED {test}: {e}.\n!!!!!!!! Set {REQUIRE_ENV}=1 to fail instead.\n"
            );
            None
        }
        Err(e) => panic!("{test}: {e}"),
    }
}

/// A private D-Bus bus, mapped to [`HarnessError`].
pub fn private_bus() -> Result<PrivateBus, HarnessError> {
    Ok(PrivateBus::start()?)
}

/// `program` from `PATH` (or as given when it has a slash), or `NotInstalled`.
pub fn find_program(program: &str, package: &'static str) -> Result<PathBuf, HarnessError> {
    let not = || HarnessError::NotInstalled {
        program: program.to_owned(),
        package,
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return if p.is_file() { Ok(p) } else { Err(not()) };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(not)
}

/// Kills `child` by its own pid and reaps it.
pub(crate) fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The first line `reader` yields within `within`, or `None`. The reading
/// thread ends when the reader reaches end of file (its process exits).
pub(crate) fn first_line_within(
    reader: impl Read + Send + 'static,
    within: Duration,
) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(reader).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(within).ok().filter(|l| !l.is_empty())
}

/// The tail of a log file, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(30);
    lines.get(from..).unwrap_or_default().join("\n")
}

/// Waits until the component `child` owns `name` on the bus at
/// `bus_address`; if it does not, stops it and reports its `log`.
pub(crate) async fn await_name(
    bus_address: &str,
    name: &str,
    child: &mut Child,
    log: &Path,
) -> Result<(), HarnessError> {
    let owned = async {
        let conn = zbus::connection::Builder::address(bus_address)
            .map_err(|e| HarnessError::Failed(e.to_string()))?
            .build()
            .await
            .map_err(|e| HarnessError::Failed(e.to_string()))?;
        wait_for_name(&conn, name).await
    };
    match owned.await {
        Ok(()) => Ok(()),
        Err(e) => {
            stop(child);
            Err(HarnessError::Failed(format!("{e}: {}", log_tail(log))))
        }
    }
}

/// Waits until `name` has an owner on `conn`, at most [`START_TIMEOUT`].
pub(crate) async fn wait_for_name(conn: &zbus::Connection, name: &str) -> Result<(), HarnessError> {
    let fail = |e: zbus::Error| HarnessError::Failed(format!("waiting for {name}: {e}"));
    let dbus = zbus::fdo::DBusProxy::new(conn).await.map_err(fail)?;
    let bus_name = zbus::names::BusName::try_from(name)
        .map_err(|e| HarnessError::Failed(format!("bad bus name {name}: {e}")))?;
    let mut changes = dbus
        .receive_name_owner_changed_with_args(&[(0, name)])
        .await
        .map_err(fail)?;
    if dbus
        .name_has_owner(bus_name)
        .await
        .map_err(|e| fail(e.into()))?
    {
        return Ok(());
    }
    use futures_util::StreamExt;
    match tokio::time::timeout(START_TIMEOUT, changes.next()).await {
        Ok(Some(_)) => Ok(()),
        _ => Err(HarnessError::Failed(format!(
            "{name} did not appear on the bus within {} s",
            START_TIMEOUT.as_secs()
        ))),
    }
}
