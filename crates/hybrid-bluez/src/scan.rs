//! A small LE scanner over BlueZ: start discovery on an adapter and watch
//! `Device1.ServiceData` for one UUID. Used by the tests and the VM check,
//! and it reads what Chromium reads (`InterfacesAdded` / `PropertiesChanged`).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};
use zbus::{Connection, MatchRule, MessageStream};

use crate::adapter::{probe, CALL_TIMEOUT};
use crate::{BluezError, ADAPTER1, BLUEZ, DEVICE1};

/// The bytes stored under `uuid` in a BlueZ `ServiceData` value (`a{sv}`
/// whose values are `ay`), if present and well-formed.
pub fn service_data_bytes(service_data: &Value<'_>, uuid: &str) -> Option<Vec<u8>> {
    let dict = match peel(service_data) {
        Value::Dict(d) => d,
        _ => return None,
    };
    dict.iter().find_map(|(k, v)| match (peel(k), peel(v)) {
        (Value::Str(s), Value::Array(a)) if s.as_str().eq_ignore_ascii_case(uuid) => a
            .iter()
            .map(|b| match peel(b) {
                Value::U8(x) => Some(*x),
                _ => None,
            })
            .collect(),
        _ => None,
    })
}

fn peel<'a, 'v>(mut v: &'a Value<'v>) -> &'a Value<'v> {
    while let Value::Value(inner) = v {
        v = inner;
    }
    v
}

fn dbus_err(what: &'static str) -> impl Fn(zbus::Error) -> BluezError {
    move |e| BluezError::from_call(what, e)
}

async fn call(
    conn: &Connection,
    path: &str,
    method: &'static str,
    body: &(impl serde::Serialize + zbus::zvariant::DynamicType),
) -> Result<(), BluezError> {
    let fut = conn.call_method(Some(BLUEZ), path, Some(ADAPTER1), method, body);
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(r) => r.map(|_| ()).map_err(dbus_err(method)),
        Err(_) => Err(BluezError::Timeout {
            what: method,
            secs: CALL_TIMEOUT.as_secs(),
        }),
    }
}

/// Scans on `adapter` (name like `hci1`, or `None` for the first adapter)
/// for up to `timeout`, calling `on_seen(device_path, bytes)` for every
/// service-data value under `uuid` BlueZ reports, until it returns `true`.
///
/// Returns the bytes `on_seen` accepted, or `None` at the timeout.
pub async fn watch_service_data<F>(
    conn: &Connection,
    adapter: Option<&str>,
    uuid: &str,
    timeout: Duration,
    mut on_seen: F,
) -> Result<Option<Vec<u8>>, BluezError>
where
    F: FnMut(&str, &[u8]) -> bool,
{
    let info = probe(conn, adapter).await?;
    if !info.powered {
        return Err(BluezError::PoweredOff { adapter: info.name });
    }
    let owner = zbus::fdo::DBusProxy::new(conn)
        .await
        .map_err(dbus_err("GetNameOwner"))?
        .get_name_owner(
            zbus::names::BusName::from_static_str(BLUEZ)
                .map_err(|e| dbus_err("GetNameOwner")(e.into()))?,
        )
        .await
        .map_err(|e| BluezError::from_call("GetNameOwner", e.into()))?;
    let rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(owner.as_str())
        .map_err(dbus_err("AddMatch"))?
        .build();
    let mut signals = MessageStream::for_match_rule(rule, conn, Some(256))
        .await
        .map_err(dbus_err("AddMatch"))?;

    let mut filter: HashMap<&str, Value<'_>> = HashMap::new();
    filter.insert("Transport", Value::from("le"));
    filter.insert("DuplicateData", Value::from(true));
    call(conn, &info.path, "SetDiscoveryFilter", &(filter,)).await?;
    call(conn, &info.path, "StartDiscovery", &()).await?;
    let device_prefix = format!("{}/", info.path);

    let result = async {
        // Devices BlueZ already knows (e.g. seen before we subscribed).
        let known: HashMap<OwnedObjectPath, HashMap<String, HashMap<String, OwnedValue>>> = conn
            .call_method(
                Some(BLUEZ),
                "/",
                Some("org.freedesktop.DBus.ObjectManager"),
                "GetManagedObjects",
                &(),
            )
            .await
            .map_err(dbus_err("GetManagedObjects"))?
            .body()
            .deserialize()
            .map_err(dbus_err("GetManagedObjects"))?;
        for (path, ifaces) in &known {
            if !path.as_str().starts_with(&device_prefix) {
                continue;
            }
            if let Some(sd) = ifaces.get(DEVICE1).and_then(|p| p.get("ServiceData")) {
                if let Some(bytes) = service_data_bytes(sd, uuid) {
                    if on_seen(path.as_str(), &bytes) {
                        return Ok(Some(bytes));
                    }
                }
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = match tokio::time::timeout_at(deadline, signals.next()).await {
                Err(_) | Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %e, "bad signal");
                    continue;
                }
                Ok(Some(Ok(m))) => m,
            };
            let header = msg.header();
            let (Some(iface), Some(member), Some(path)) =
                (header.interface(), header.member(), header.path())
            else {
                continue;
            };
            let found: Option<(String, Vec<u8>)> = match (iface.as_str(), member.as_str()) {
                ("org.freedesktop.DBus.ObjectManager", "InterfacesAdded") => msg
                    .body()
                    .deserialize::<(
                        OwnedObjectPath,
                        HashMap<String, HashMap<String, OwnedValue>>,
                    )>()
                    .ok()
                    .filter(|(p, _)| p.as_str().starts_with(&device_prefix))
                    .and_then(|(p, ifaces)| {
                        let sd = ifaces.get(DEVICE1)?.get("ServiceData")?;
                        Some((p.as_str().to_owned(), service_data_bytes(sd, uuid)?))
                    }),
                ("org.freedesktop.DBus.Properties", "PropertiesChanged")
                    if path.as_str().starts_with(&device_prefix) =>
                {
                    msg.body()
                        .deserialize::<(String, HashMap<String, OwnedValue>, Vec<String>)>()
                        .ok()
                        .filter(|(i, _, _)| i == DEVICE1)
                        .and_then(|(_, props, _)| {
                            let sd = props.get("ServiceData")?;
                            Some((path.as_str().to_owned(), service_data_bytes(sd, uuid)?))
                        })
                }
                _ => None,
            };
            if let Some((dev, bytes)) = found {
                if on_seen(&dev, &bytes) {
                    return Ok(Some(bytes));
                }
            }
        }
    }
    .await;
    if let Err(e) = call(conn, &info.path, "StopDiscovery", &()).await {
        tracing::debug!(error = %e, "StopDiscovery failed");
    }
    result
}
