//! Finding and checking the adapter: `GetManagedObjects` on `org.bluez` `/`.

use std::collections::HashMap;
use std::time::Duration;

use zbus::fdo::ObjectManagerProxy;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::Connection;

use crate::{BluezError, ADAPTER1, BLUEZ, LE_ADVERTISING_MANAGER1};

/// How long any single call to bluetoothd may take.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What `hybridd doctor` shows about the Bluetooth adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterInfo {
    /// Adapter name, e.g. `hci0`.
    pub name: String,
    /// Its D-Bus object path, e.g. `/org/bluez/hci0`.
    pub path: String,
    /// Its Bluetooth address, if BlueZ reported one.
    pub address: Option<String>,
    /// `Adapter1.Powered`.
    pub powered: bool,
    /// Whether the adapter exports `org.bluez.LEAdvertisingManager1`.
    pub le_advertising: bool,
    /// `LEAdvertisingManager1.ActiveInstances`, if reported.
    pub active_instances: Option<u8>,
    /// `LEAdvertisingManager1.SupportedInstances` (BlueZ: the free slots), if reported.
    pub supported_instances: Option<u8>,
}

impl AdapterInfo {
    /// The reason this adapter cannot advertise now, or `None` when it can.
    pub fn problem(&self) -> Option<BluezError> {
        if !self.powered {
            return Some(BluezError::PoweredOff {
                adapter: self.name.clone(),
            });
        }
        if !self.le_advertising {
            return Some(BluezError::NoLeAdvertising {
                adapter: self.name.clone(),
            });
        }
        match (self.supported_instances, self.active_instances) {
            // BlueZ counts SupportedInstances as the *free* slots: zero free with some
            // active means busy, zero with none active means the controller has none.
            (Some(0), Some(active)) if active > 0 => Some(BluezError::NoFreeInstance {
                adapter: self.name.clone(),
                active,
            }),
            (Some(0), _) => Some(BluezError::NoLeAdvertising {
                adapter: self.name.clone(),
            }),
            _ => None,
        }
    }
}

/// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` or the default socket).
pub async fn system_bus() -> Result<Connection, BluezError> {
    match tokio::time::timeout(CALL_TIMEOUT, Connection::system()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(BluezError::NoSystemBus {
            detail: e.to_string(),
        }),
        Err(_) => Err(BluezError::NoSystemBus {
            detail: "timed out connecting".to_owned(),
        }),
    }
}

/// Connects to the bus at an explicit D-Bus address (tests, or a private bus).
pub async fn bus_at(address: &str) -> Result<Connection, BluezError> {
    let no_bus = |e: zbus::Error| BluezError::NoSystemBus {
        detail: format!("{address}: {e}"),
    };
    let builder = zbus::connection::Builder::address(address).map_err(no_bus)?;
    match tokio::time::timeout(CALL_TIMEOUT, builder.build()).await {
        Ok(r) => r.map_err(no_bus),
        Err(_) => Err(BluezError::NoSystemBus {
            detail: format!("{address}: timed out connecting"),
        }),
    }
}

type Ifaces = HashMap<zbus::names::OwnedInterfaceName, HashMap<String, OwnedValue>>;
type Managed = HashMap<OwnedObjectPath, Ifaces>;

fn prop<T>(props: Option<&HashMap<String, OwnedValue>>, name: &str) -> Option<T>
where
    T: TryFrom<OwnedValue>,
{
    let v = props?.get(name)?;
    let v = v.try_clone().ok()?;
    T::try_from(v).ok()
}

fn adapter_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Reads the adapter's state without judging it. `adapter` picks one by name
/// (`hci0`); `None` takes the first with LE advertising, else the first at all.
///
/// Errors only when there is nothing to describe: no bus service, no adapter.
pub async fn probe(conn: &Connection, adapter: Option<&str>) -> Result<AdapterInfo, BluezError> {
    let om = ObjectManagerProxy::builder(conn)
        .destination(BLUEZ)
        .and_then(|b| b.path("/"))
        .map_err(|e| BluezError::from_call("GetManagedObjects", e))?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(|e| BluezError::from_call("GetManagedObjects", e))?;
    let objects: Managed = match tokio::time::timeout(CALL_TIMEOUT, om.get_managed_objects()).await
    {
        Ok(r) => r.map_err(|e| BluezError::from_call("GetManagedObjects", e.into()))?,
        Err(_) => {
            return Err(BluezError::Timeout {
                what: "GetManagedObjects",
                secs: CALL_TIMEOUT.as_secs(),
            })
        }
    };

    let mut adapters: Vec<(&OwnedObjectPath, &Ifaces)> = objects
        .iter()
        .filter(|(_, ifaces)| ifaces.keys().any(|i| i.as_str() == ADAPTER1))
        .collect();
    adapters.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    if adapters.is_empty() {
        return Err(BluezError::NoAdapter);
    }
    let has_le = |ifaces: &HashMap<
        zbus::names::OwnedInterfaceName,
        HashMap<String, OwnedValue>,
    >| { ifaces.keys().any(|i| i.as_str() == LE_ADVERTISING_MANAGER1) };
    let chosen = match adapter {
        Some(wanted) => adapters
            .iter()
            .find(|(p, _)| adapter_name(p.as_str()) == wanted || p.as_str() == wanted)
            .ok_or_else(|| BluezError::AdapterNotFound {
                wanted: wanted.to_owned(),
                available: adapters
                    .iter()
                    .map(|(p, _)| adapter_name(p.as_str()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
        None => adapters
            .iter()
            .find(|(_, i)| has_le(i))
            .or_else(|| adapters.first())
            .ok_or(BluezError::NoAdapter)?,
    };
    let (path, ifaces) = chosen;
    let find = |name: &str| {
        ifaces
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| v)
    };
    let a1 = find(ADAPTER1);
    let le = find(LE_ADVERTISING_MANAGER1);
    Ok(AdapterInfo {
        name: adapter_name(path.as_str()).to_owned(),
        path: path.as_str().to_owned(),
        address: prop::<String>(a1, "Address"),
        powered: prop::<bool>(a1, "Powered").unwrap_or(false),
        le_advertising: le.is_some(),
        active_instances: prop::<u8>(le, "ActiveInstances"),
        supported_instances: prop::<u8>(le, "SupportedInstances"),
    })
}

/// [`probe`], then insist the adapter can advertise now: powered, with LE
/// advertising and a free instance. This is `hybridd doctor`'s check.
pub async fn check(conn: &Connection, adapter: Option<&str>) -> Result<AdapterInfo, BluezError> {
    let info = probe(conn, adapter).await?;
    match info.problem() {
        Some(e) => Err(e),
        None => Ok(info),
    }
}

/// [`check`] on the system bus: the whole doctor question in one call.
pub async fn check_system(adapter: Option<&str>) -> Result<AdapterInfo, BluezError> {
    let conn = system_bus().await?;
    check(&conn, adapter).await
}
