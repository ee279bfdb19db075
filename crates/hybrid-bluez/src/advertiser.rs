//! The advertiser: an `org.bluez.LEAdvertisement1` object registered with
//! `LEAdvertisingManager1`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};
use zbus::Connection;

use crate::adapter::{check, system_bus, AdapterInfo, CALL_TIMEOUT};
use hybrid_ble::SERVICE_UUID;

use crate::{BluezError, BLUEZ, LE_ADVERTISING_MANAGER1};

/// Where our advertisement objects live; each start gets a fresh child path.
pub const ADVERT_PATH_PREFIX: &str = "/org/hybridd/advert";

static NEXT_ADVERT: AtomicU64 = AtomicU64::new(0);

fn fresh_path() -> Result<OwnedObjectPath, BluezError> {
    let n = NEXT_ADVERT.fetch_add(1, Ordering::Relaxed);
    let p = format!("{ADVERT_PATH_PREFIX}/p{}_{n}", std::process::id());
    OwnedObjectPath::try_from(p).map_err(|e| BluezError::DBus {
        what: "making the advert path",
        detail: e.to_string(),
    })
}

/// Settings of the BlueZ advertiser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BluezConfig {
    /// Adapter name (`hci0`); `None` takes the first that can advertise.
    pub adapter: Option<String>,
    /// `MinInterval`/`MaxInterval` in ms (BlueZ honours them only with
    /// experimental features, `bluetoothd -E`); `None` leaves them out.
    pub interval_ms: Option<u32>,
}

impl Default for BluezConfig {
    fn default() -> Self {
        Self {
            adapter: None,
            interval_ms: Some(100),
        }
    }
}

/// The exported `org.bluez.LEAdvertisement1` object.
///
/// Two shapes (`hybrid-ble-l2cap.md` §2):
/// * the hybrid advert (every QR that does not offer BLE L2CAP, e.g. every
///   Chromium QR): `Type = "broadcast"` (non-connectable), `ServiceUUIDs =
///   [0xFFF9]`, `ServiceData[0xFFF9]` = exactly the 20 bytes;
/// * the CTAP 2.3 advert offering the L2CAP channel: `Type = "peripheral"`
///   (connectable: the desktop opens an LE connection to it), no
///   `ServiceUUIDs`, `ServiceData[0xFFF9]` = 20 bytes ‖ `{1: PSM}`. Flags (3
///   bytes) + service data (4 + 24) fill the 31-byte legacy advertising data
///   exactly, as Google Play Services' advert does, so BlueZ sends it as a
///   legacy connectable PDU (ADV_IND) that BT 4.x desktops see too; a UUID
///   list (4 more bytes) would not fit.
struct Advertisement {
    service_data: Vec<u8>,
    connectable: bool,
    released: Arc<AtomicBool>,
}

fn bytes_value(bytes: &[u8]) -> zbus::fdo::Result<OwnedValue> {
    OwnedValue::try_from(Value::from(bytes.to_vec()))
        .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))
}

#[zbus::interface(name = "org.bluez.LEAdvertisement1")]
impl Advertisement {
    /// BlueZ calls this when it drops the advertisement by itself
    /// (adapter powered off or removed, bluetoothd stopping).
    fn release(&self) {
        tracing::warn!("BlueZ released our advertisement");
        self.released.store(true, Ordering::SeqCst);
    }

    /// Non-connectable unless the advert offers the L2CAP channel: for the
    /// tunnel the desktop only needs to see the service data.
    #[zbus(property, name = "Type")]
    fn kind(&self) -> String {
        if self.connectable {
            "peripheral".to_owned()
        } else {
            "broadcast".to_owned()
        }
    }

    #[zbus(property, name = "ServiceUUIDs")]
    fn service_uuids(&self) -> Vec<String> {
        if self.connectable {
            Vec::new()
        } else {
            vec![SERVICE_UUID.to_owned()]
        }
    }

    #[zbus(property, name = "ServiceData")]
    fn service_data(&self) -> zbus::fdo::Result<HashMap<String, OwnedValue>> {
        let mut m = HashMap::new();
        m.insert(SERVICE_UUID.to_owned(), bytes_value(&self.service_data)?);
        Ok(m)
    }
}

/// The same object with `MinInterval`/`MaxInterval`.
struct TimedAdvertisement {
    inner: Advertisement,
    interval_ms: u32,
}

#[zbus::interface(name = "org.bluez.LEAdvertisement1")]
impl TimedAdvertisement {
    /// See [`Advertisement::release`].
    fn release(&self) {
        self.inner.release();
    }

    #[zbus(property, name = "Type")]
    fn kind(&self) -> String {
        self.inner.kind()
    }

    #[zbus(property, name = "ServiceUUIDs")]
    fn service_uuids(&self) -> Vec<String> {
        self.inner.service_uuids()
    }

    #[zbus(property, name = "ServiceData")]
    fn service_data(&self) -> zbus::fdo::Result<HashMap<String, OwnedValue>> {
        self.inner.service_data()
    }

    #[zbus(property, name = "MinInterval")]
    fn min_interval(&self) -> u32 {
        self.interval_ms
    }

    #[zbus(property, name = "MaxInterval")]
    fn max_interval(&self) -> u32 {
        self.interval_ms
    }
}

struct Active {
    path: OwnedObjectPath,
    adapter: AdapterInfo,
    timed: bool,
    released: Arc<AtomicBool>,
}

/// Advertises the 20-byte hybrid advert through BlueZ.
///
/// `start_advert` checks the adapter, exports a fresh `LEAdvertisement1`
/// object and registers it; `stop_advert` unregisters and removes it.
pub struct BluezAdvertiser {
    conn: Connection,
    config: BluezConfig,
    active: Option<Active>,
}

impl std::fmt::Debug for BluezAdvertiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BluezAdvertiser")
            .field("config", &self.config)
            .field("active", &self.active.as_ref().map(|a| a.path.as_str()))
            .finish()
    }
}

impl BluezAdvertiser {
    /// Uses an existing bus connection (tests pass a private bus here).
    pub fn new(conn: Connection, config: BluezConfig) -> Self {
        Self {
            conn,
            config,
            active: None,
        }
    }

    /// Connects to the system bus and checks the adapter once, so that a
    /// daemon fails at start-up with the fix rather than at the first advert.
    pub async fn system(config: BluezConfig) -> Result<Self, BluezError> {
        let conn = system_bus().await?;
        check(&conn, config.adapter.as_deref()).await?;
        Ok(Self::new(conn, config))
    }

    /// The bus connection in use.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The object path of the registered advertisement, if one is active.
    pub fn current_path(&self) -> Option<&str> {
        self.active.as_ref().map(|a| a.path.as_str())
    }

    /// The adapter the active advertisement is registered on.
    pub fn adapter(&self) -> Option<&AdapterInfo> {
        self.active.as_ref().map(|a| &a.adapter)
    }

    /// Whether BlueZ called `Release()` on the active advertisement (it is
    /// then no longer on air; start again after fixing the adapter).
    pub fn was_released(&self) -> bool {
        self.active
            .as_ref()
            .is_some_and(|a| a.released.load(Ordering::SeqCst))
    }

    /// Starts advertising `advert` as service data under 0xFFF9,
    /// non-connectable, exactly 20 bytes — the hybrid advert every desktop
    /// understands — replacing any advert this advertiser had running.
    pub async fn start_advert(
        &mut self,
        advert: &[u8; hybrid_ble::ADVERT_LEN],
    ) -> Result<(), BluezError> {
        self.start(advert.to_vec(), false).await
    }

    /// Starts the CTAP 2.3 advert that offers the BLE L2CAP data channel:
    /// connectable, service data `advert ‖ {1: psm}`
    /// (`hybrid_ble::service_data_with_psm`, `hybrid-ble-l2cap.md` §2).
    ///
    /// Only for a session whose QR offered the channel
    /// (`QrCode::offers_ble_l2cap`), and only once an
    /// [`L2capListener`](crate::L2capListener) listens on `psm` on this
    /// advertiser's adapter: Chromium drops adverts that are not exactly 20
    /// bytes.
    pub async fn start_advert_with_psm(
        &mut self,
        advert: &[u8; hybrid_ble::ADVERT_LEN],
        psm: u16,
    ) -> Result<(), BluezError> {
        let data =
            hybrid_ble::service_data_with_psm(advert, psm).map_err(|e| BluezError::L2capSetup {
                what: "building the advert suffix",
                detail: e.to_string(),
            })?;
        self.start(data, true).await
    }

    async fn start(&mut self, service_data: Vec<u8>, connectable: bool) -> Result<(), BluezError> {
        if self.active.is_some() {
            self.stop_advert().await?;
        }
        let info = check(&self.conn, self.config.adapter.as_deref()).await?;
        let path = fresh_path()?;
        let released = Arc::new(AtomicBool::new(false));
        let inner = Advertisement {
            service_data,
            connectable,
            released: Arc::clone(&released),
        };
        let server = self.conn.object_server();
        let timed = self.config.interval_ms.is_some();
        let added = match self.config.interval_ms {
            Some(interval_ms) => {
                server
                    .at(&path, TimedAdvertisement { inner, interval_ms })
                    .await
            }
            None => server.at(&path, inner).await,
        };
        added.map_err(|e| BluezError::DBus {
            what: "exporting the advertisement object",
            detail: e.to_string(),
        })?;

        let options: HashMap<&str, Value<'_>> = HashMap::new();
        let body = (ObjectPath::from(&path), options);
        let call = self.conn.call_method(
            Some(BLUEZ),
            info.path.as_str(),
            Some(LE_ADVERTISING_MANAGER1),
            "RegisterAdvertisement",
            &body,
        );
        let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(BluezError::from_register(&info.name, e)),
            Err(_) => Err(BluezError::Timeout {
                what: "RegisterAdvertisement",
                secs: CALL_TIMEOUT.as_secs(),
            }),
        };
        if let Err(e) = result {
            remove_object(&self.conn, &path, timed).await;
            return Err(e);
        }
        tracing::info!(
            adapter = %info.name,
            path = %path.as_str(),
            connectable,
            "advertising on 0xFFF9"
        );
        self.active = Some(Active {
            path,
            adapter: info,
            timed,
            released,
        });
        Ok(())
    }

    /// Stops the active advert: `UnregisterAdvertisement`, then removes the
    /// object. Stopping when nothing runs is fine.
    pub async fn stop_advert(&mut self) -> Result<(), BluezError> {
        let Some(active) = self.active.take() else {
            return Ok(());
        };
        let result = unregister(&self.conn, &active).await;
        remove_object(&self.conn, &active.path, active.timed).await;
        result
    }
}

async fn unregister(conn: &Connection, active: &Active) -> Result<(), BluezError> {
    let body = (ObjectPath::from(&active.path),);
    let call = conn.call_method(
        Some(BLUEZ),
        active.adapter.path.as_str(),
        Some(LE_ADVERTISING_MANAGER1),
        "UnregisterAdvertisement",
        &body,
    );
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(zbus::Error::MethodError(name, _, _)))
            if matches!(
                name.as_str(),
                // Already gone: BlueZ released it, the adapter vanished, or
                // bluetoothd exited. Either way nothing is on air any more.
                "org.bluez.Error.DoesNotExist"
                    | "org.freedesktop.DBus.Error.UnknownObject"
                    | "org.freedesktop.DBus.Error.UnknownMethod"
                    | "org.freedesktop.DBus.Error.ServiceUnknown"
                    | "org.freedesktop.DBus.Error.NameHasNoOwner"
            ) =>
        {
            Ok(())
        }
        Ok(Err(e)) => Err(BluezError::from_call("UnregisterAdvertisement", e)),
        Err(_) => Err(BluezError::Timeout {
            what: "UnregisterAdvertisement",
            secs: CALL_TIMEOUT.as_secs(),
        }),
    }
}

async fn remove_object(conn: &Connection, path: &OwnedObjectPath, timed: bool) {
    let server = conn.object_server();
    let removed = if timed {
        server.remove::<TimedAdvertisement, _>(path).await
    } else {
        server.remove::<Advertisement, _>(path).await
    };
    if let Err(e) = removed {
        tracing::debug!(path = %path.as_str(), error = %e, "advert object already gone");
    }
}

impl Drop for BluezAdvertiser {
    fn drop(&mut self) {
        // Best effort: BlueZ also drops our advert when our connection closes.
        if let Some(active) = self.active.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let conn = self.conn.clone();
                rt.spawn(async move {
                    let _ = unregister(&conn, &active).await;
                    remove_object(&conn, &active.path, active.timed).await;
                });
            }
        }
    }
}

impl hybrid_ble::Advertiser for BluezAdvertiser {
    fn start<'a>(
        &'a mut self,
        advert: &'a [u8; hybrid_ble::ADVERT_LEN],
    ) -> hybrid_ble::AdvertFuture<'a> {
        Box::pin(async move { self.start_advert(advert).await.map_err(Into::into) })
    }

    fn stop(&mut self) -> hybrid_ble::AdvertFuture<'_> {
        Box::pin(async move { self.stop_advert().await.map_err(Into::into) })
    }

    fn start_with_psm<'a>(
        &'a mut self,
        advert: &'a [u8; hybrid_ble::ADVERT_LEN],
        psm: u16,
    ) -> hybrid_ble::AdvertFuture<'a> {
        Box::pin(async move {
            self.start_advert_with_psm(advert, psm)
                .await
                .map_err(Into::into)
        })
    }
}
