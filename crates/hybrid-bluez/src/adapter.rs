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
    /// `Adapter1.AddressType`: `public` or `random`, if reported. An L2CAP
    /// listener binds to this address and type (`l2cap` module).
    pub address_type: Option<String>,
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

/// Picks the adapter hybridd uses from those BlueZ serves (in index order):
///
/// * `wanted` (`adapter = "hci1"` in the configuration, or an object path):
///   that one, powered or not (the caller reports what is wrong with it), or
///   [`BluezError::AdapterNotFound`] listing the others;
/// * no setting: the first powered adapter with LE advertising, else the
///   first powered one, else the first at all (so the error then names a
///   real adapter and says "power it on").
pub fn choose_adapter<'a>(
    adapters: &'a [AdapterInfo],
    wanted: Option<&str>,
) -> Result<&'a AdapterInfo, BluezError> {
    if adapters.is_empty() {
        return Err(BluezError::NoAdapter);
    }
    match wanted {
        Some(w) => adapters
            .iter()
            .find(|a| a.name == w || a.path == w)
            .ok_or_else(|| BluezError::AdapterNotFound {
                wanted: w.to_owned(),
                available: adapters
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        None => adapters
            .iter()
            .find(|a| a.powered && a.le_advertising)
            .or_else(|| adapters.iter().find(|a| a.powered))
            .or_else(|| adapters.first())
            .ok_or(BluezError::NoAdapter),
    }
}

/// Every adapter BlueZ serves, in index order (hci0, hci1, …, hci10), as
/// [`AdapterInfo`].
///
/// Errors only when BlueZ cannot be asked (no bus service, no answer).
pub async fn adapters(conn: &Connection) -> Result<Vec<AdapterInfo>, BluezError> {
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
    let mut out: Vec<AdapterInfo> = objects
        .iter()
        .filter_map(|(path, ifaces)| {
            let find = |name: &str| {
                ifaces
                    .iter()
                    .find(|(k, _)| k.as_str() == name)
                    .map(|(_, v)| v)
            };
            let a1 = find(ADAPTER1)?;
            let le = find(LE_ADVERTISING_MANAGER1);
            Some(AdapterInfo {
                name: adapter_name(path.as_str()).to_owned(),
                path: path.as_str().to_owned(),
                address: prop::<String>(Some(a1), "Address"),
                address_type: prop::<String>(Some(a1), "AddressType"),
                powered: prop::<bool>(Some(a1), "Powered").unwrap_or(false),
                le_advertising: le.is_some(),
                active_instances: prop::<u8>(le, "ActiveInstances"),
                supported_instances: prop::<u8>(le, "SupportedInstances"),
            })
        })
        .collect();
    // hci2 before hci10.
    out.sort_by(|a, b| (a.path.len(), &a.path).cmp(&(b.path.len(), &b.path)));
    Ok(out)
}

/// Reads the state of the adapter hybridd would use ([`choose_adapter`])
/// without judging it. `adapter` picks one by name (`hci1`); `None` takes
/// the first powered one.
///
/// Errors only when there is nothing to describe: no bus service, no
/// adapter, or the named adapter does not exist.
pub async fn probe(conn: &Connection, adapter: Option<&str>) -> Result<AdapterInfo, BluezError> {
    let all = adapters(conn).await?;
    choose_adapter(&all, adapter).cloned()
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn info(name: &str, powered: bool, le: bool) -> AdapterInfo {
        AdapterInfo {
            name: name.to_owned(),
            path: format!("/org/bluez/{name}"),
            address: Some("00:00:5E:00:53:01".to_owned()),
            address_type: Some("public".to_owned()),
            powered,
            le_advertising: le,
            active_instances: None,
            supported_instances: None,
        }
    }

    #[test]
    fn default_is_the_first_powered_adapter() {
        let all = [
            info("hci0", false, true),
            info("hci1", true, false),
            info("hci2", true, true),
            info("hci3", true, true),
        ];
        // Powered with LE advertising first.
        assert_eq!(choose_adapter(&all, None).unwrap().name, "hci2");
        // Powered at all next.
        assert_eq!(choose_adapter(&all[..2], None).unwrap().name, "hci1");
        // None powered: the first, so the error names a real adapter.
        let off = [info("hci0", false, true), info("hci1", false, true)];
        let a = choose_adapter(&off, None).unwrap();
        assert_eq!(a.name, "hci0");
        assert!(matches!(a.problem(), Some(BluezError::PoweredOff { .. })));
        assert_eq!(choose_adapter(&[], None), Err(BluezError::NoAdapter));
    }

    #[test]
    fn a_configured_adapter_is_taken_as_it_is() {
        let all = [info("hci0", true, true), info("hci1", false, true)];
        assert_eq!(choose_adapter(&all, Some("hci1")).unwrap().name, "hci1");
        assert_eq!(
            choose_adapter(&all, Some("/org/bluez/hci1")).unwrap().name,
            "hci1"
        );
        assert_eq!(
            choose_adapter(&all, Some("hci7")),
            Err(BluezError::AdapterNotFound {
                wanted: "hci7".to_owned(),
                available: "hci0, hci1".to_owned()
            })
        );
        assert_eq!(
            choose_adapter(&[], Some("hci0")),
            Err(BluezError::NoAdapter)
        );
    }
}
