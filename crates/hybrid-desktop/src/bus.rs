//! Connecting to the session and system buses, each within a deadline.

use std::future::Future;

use tokio::time::Instant;
use zbus::Connection;

use crate::error::{BusKind, DesktopError};

/// Runs `fut` until `deadline`; past it, [`DesktopError::Timeout`] naming `what`.
pub(crate) async fn within<T>(
    deadline: Instant,
    what: &'static str,
    fut: impl Future<Output = T>,
) -> Result<T, DesktopError> {
    tokio::time::timeout_at(deadline, fut)
        .await
        .map_err(|_| DesktopError::Timeout { what })
}

async fn connect(
    bus: BusKind,
    deadline: Instant,
    fut: impl Future<Output = zbus::Result<Connection>>,
) -> Result<Connection, DesktopError> {
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(DesktopError::NoBus {
            bus,
            detail: e.to_string(),
        }),
        Err(_) => Err(DesktopError::NoBus {
            bus,
            detail: "timed out connecting".to_owned(),
        }),
    }
}

/// The user's session bus (`DBUS_SESSION_BUS_ADDRESS`, else
/// `$XDG_RUNTIME_DIR/bus`): where the notification server lives.
pub async fn session_bus(deadline: Instant) -> Result<Connection, DesktopError> {
    connect(BusKind::Session, deadline, Connection::session()).await
}

/// The system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else the default socket):
/// fprintd and logind.
pub async fn system_bus(deadline: Instant) -> Result<Connection, DesktopError> {
    connect(BusKind::System, deadline, Connection::system()).await
}

/// A bus at an explicit address (a private bus in tests).
pub async fn bus_at(address: &str, deadline: Instant) -> Result<Connection, DesktopError> {
    let builder = zbus::connection::Builder::address(address).map_err(|e| DesktopError::NoBus {
        bus: BusKind::Address,
        detail: format!("{address}: {e}"),
    })?;
    connect(BusKind::Address, deadline, builder.build()).await
}

/// The unique name that owns `name` now. Signals are then accepted only
/// from it ([`sent_by`]): on the system bus any other local user may send
/// us a signal of the same shape (zbus filters on the owner too; this does
/// not depend on that).
pub(crate) async fn name_owner(
    conn: &Connection,
    name: &'static str,
) -> zbus::Result<zbus::names::OwnedUniqueName> {
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let name = zbus::names::BusName::try_from(name)?;
    Ok(dbus.get_name_owner(name).await?)
}

/// Whether `message` was sent by `owner`.
pub(crate) fn sent_by(message: &zbus::Message, owner: &zbus::names::OwnedUniqueName) -> bool {
    message.header().sender() == Some(&**owner)
}
