//! A fake `org.bluez` for tests, on a private `dbus-daemon` ([`PrivateBus`]).
//!
//! It exports `/` (ObjectManager), `/org/bluez` (AgentManager1) and, unless
//! told otherwise, `/org/bluez/hci0` with `Adapter1` and
//! `LEAdvertisingManager1`. `RegisterAdvertisement` reads every property of
//! the caller's object with `Properties.GetAll("org.bluez.LEAdvertisement1")`
//! and records it ([`FakeBluez::registrations`]).
//!
//! It is also the scanner's side: while some client runs discovery
//! (`StartDiscovery`, as Chromium does) and an advert is registered, the
//! newest advert's service data is shown as `org.bluez.Device1.ServiceData`
//! of [`FAKE_DEVICE_PATH`]: `InterfacesAdded`, at once followed by a
//! `PropertiesChanged` with the same `ServiceData` (as bluetoothd reports a
//! repeated advert under `DuplicateData`), then `PropertiesChanged` for
//! each newer advert.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

use zbus::fdo::ObjectManager;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};
use zbus::Connection;

use crate::scan::service_data_bytes;
use hybrid_ble::SERVICE_UUID;

use crate::LE_ADVERTISEMENT1;

/// The fake adapter's object path.
pub const FAKE_ADAPTER_PATH: &str = "/org/bluez/hci0";
/// The object path of the device that shows the registered advert to scanners.
pub const FAKE_DEVICE_PATH: &str = "/org/bluez/hci0/dev_00_00_5E_00_53_02";
/// The fake device's address (documentation range).
pub const FAKE_DEVICE_ADDRESS: &str = "00:00:5E:00:53:02";

// ---------------------------------------------------------------- private bus

/// Why a private bus could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PrivateBusError {
    /// `dbus-daemon` is not installed (Debian: `apt-get install dbus-daemon`).
    #[error("dbus-daemon not found ({0}): apt-get install dbus-daemon")]
    NotInstalled(std::io::Error),
    /// It ran but did not give an address.
    #[error("dbus-daemon failed: {0}")]
    Failed(String),
}

/// A private `dbus-daemon` on a socket in a temporary directory; it allows
/// everything. Killed (by its own pid) and cleaned up on drop.
#[derive(Debug)]
pub struct PrivateBus {
    child: Child,
    address: String,
    dir: PathBuf,
}

impl PrivateBus {
    /// Starts `dbus-daemon --nofork --print-address` with a minimal config.
    pub fn start() -> Result<Self, PrivateBusError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hybrid-bluez-bus-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let fail = |e: std::io::Error| PrivateBusError::Failed(e.to_string());
        std::fs::create_dir_all(&dir).map_err(fail)?;
        let conf = dir.join("bus.conf");
        let socket = dir.join("bus");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .map_err(fail)?;
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile", "--print-address"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                if e.kind() == std::io::ErrorKind::NotFound {
                    PrivateBusError::NotInstalled(e)
                } else {
                    PrivateBusError::Failed(e.to_string())
                }
            })?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let address = line.trim().to_owned();
        if address.is_empty() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(PrivateBusError::Failed(format!(
                "no address printed: {err}"
            )));
        }
        Ok(Self {
            child,
            address,
            dir,
        })
    }

    /// The bus address, for `DBUS_SYSTEM_BUS_ADDRESS` or [`crate::bus_at`].
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------- fake state

/// How the fake presents itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeOptions {
    /// Export `/org/bluez/hci0` at all.
    pub adapter: bool,
    /// `Adapter1.Powered`.
    pub powered: bool,
    /// Export `LEAdvertisingManager1` on the adapter.
    pub le_advertising: bool,
    /// Advertising instances the controller has (BlueZ reports the free ones
    /// as `SupportedInstances`).
    pub max_instances: u8,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            adapter: true,
            powered: true,
            le_advertising: true,
            max_instances: 4,
        }
    }
}

/// One `RegisterAdvertisement` call as the fake saw it.
#[derive(Debug)]
pub struct Registration {
    /// The caller's unique bus name.
    pub sender: String,
    /// The advertisement object path.
    pub path: String,
    /// The options dict passed to `RegisterAdvertisement`.
    pub options: HashMap<String, OwnedValue>,
    /// Every property `GetAll("org.bluez.LEAdvertisement1")` returned.
    pub properties: HashMap<String, OwnedValue>,
}

impl Registration {
    /// A string property (e.g. `Type`).
    pub fn string(&self, name: &str) -> Option<String> {
        let v = self.properties.get(name)?.try_clone().ok()?;
        String::try_from(v).ok()
    }

    /// A string-array property (e.g. `ServiceUUIDs`).
    pub fn strings(&self, name: &str) -> Option<Vec<String>> {
        let v = self.properties.get(name)?.try_clone().ok()?;
        Vec::<String>::try_from(v).ok()
    }

    /// A u32 property (e.g. `MinInterval`).
    pub fn u32(&self, name: &str) -> Option<u32> {
        let v = self.properties.get(name)?.try_clone().ok()?;
        u32::try_from(v).ok()
    }

    /// The names of the properties the advertisement object has, sorted.
    pub fn property_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.properties.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// `ServiceData[uuid]` as bytes.
    pub fn service_data(&self, uuid: &str) -> Option<Vec<u8>> {
        service_data_bytes(self.properties.get("ServiceData")?, uuid)
    }

    /// The keys of `ServiceData`.
    pub fn service_data_keys(&self) -> Vec<String> {
        match self.properties.get("ServiceData").map(|v| &**v) {
            Some(Value::Dict(d)) => d
                .iter()
                .filter_map(|(k, _)| match k {
                    Value::Str(s) => Some(s.as_str().to_owned()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Something a client did to the fake, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeEvent {
    /// A registration was accepted.
    Registered {
        /// Advertisement object path.
        path: String,
    },
    /// A registration was refused with this D-Bus error name.
    RegisterRefused {
        /// Advertisement object path.
        path: String,
        /// The error name sent back.
        error: String,
    },
    /// `UnregisterAdvertisement` succeeded.
    Unregistered {
        /// Advertisement object path.
        path: String,
    },
    /// `SetDiscoveryFilter` with the filter's keys.
    SetDiscoveryFilter {
        /// The keys of the filter dict, sorted.
        keys: Vec<String>,
    },
    /// `StartDiscovery` from this client.
    StartDiscovery {
        /// Its unique name.
        sender: String,
    },
    /// `StopDiscovery` from this client.
    StopDiscovery {
        /// Its unique name.
        sender: String,
    },
    /// The fake called `Release()` on this advertisement.
    Released {
        /// Advertisement object path.
        path: String,
    },
}

#[derive(Debug)]
struct State {
    opts: FakeOptions,
    registrations: Vec<Registration>,
    /// (sender, path, fff9 service data) of the live adverts, oldest first.
    active: Vec<(String, String, Option<Vec<u8>>)>,
    events: Vec<FakeEvent>,
    discovery_clients: BTreeSet<String>,
    /// What the device currently shows, if exported.
    shown: Option<Vec<u8>>,
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.bluez.Error")]
enum BluezErr {
    #[zbus(error)]
    ZBus(zbus::Error),
    InvalidArguments(String),
    AlreadyExists(String),
    DoesNotExist(String),
    NotPermitted(String),
    NotReady(String),
    Failed(String),
}

impl BluezErr {
    fn name(&self) -> &'static str {
        match self {
            Self::ZBus(_) => "zbus",
            Self::InvalidArguments(_) => "org.bluez.Error.InvalidArguments",
            Self::AlreadyExists(_) => "org.bluez.Error.AlreadyExists",
            Self::DoesNotExist(_) => "org.bluez.Error.DoesNotExist",
            Self::NotPermitted(_) => "org.bluez.Error.NotPermitted",
            Self::NotReady(_) => "org.bluez.Error.NotReady",
            Self::Failed(_) => "org.bluez.Error.Failed",
        }
    }
}

// ---------------------------------------------------------------- interfaces

struct Adapter {
    state: Shared,
}

#[zbus::interface(name = "org.bluez.Adapter1")]
impl Adapter {
    async fn set_discovery_filter(&self, filter: HashMap<String, OwnedValue>) {
        let mut keys: Vec<String> = filter.into_keys().collect();
        keys.sort();
        lock(&self.state)
            .events
            .push(FakeEvent::SetDiscoveryFilter { keys });
    }

    fn get_discovery_filters(&self) -> Vec<String> {
        [
            "UUIDs",
            "RSSI",
            "Pathloss",
            "Transport",
            "DuplicateData",
            "Discoverable",
            "Pattern",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    async fn start_discovery(
        &self,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BluezErr> {
        let sender = hdr.sender().map(|s| s.to_string()).unwrap_or_default();
        {
            let mut st = lock(&self.state);
            if !st.opts.powered {
                return Err(BluezErr::NotReady("Resource Not Ready".to_owned()));
            }
            st.events.push(FakeEvent::StartDiscovery {
                sender: sender.clone(),
            });
            st.discovery_clients.insert(sender);
        }
        self.discovering_changed(&emitter).await?;
        refresh_device(conn, &self.state).await?;
        Ok(())
    }

    async fn stop_discovery(
        &self,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BluezErr> {
        let sender = hdr.sender().map(|s| s.to_string()).unwrap_or_default();
        {
            let mut st = lock(&self.state);
            if !st.discovery_clients.remove(&sender) {
                return Err(BluezErr::Failed("No discovery started".to_owned()));
            }
            st.events.push(FakeEvent::StopDiscovery { sender });
        }
        self.discovering_changed(&emitter).await?;
        refresh_device(conn, &self.state).await?;
        Ok(())
    }

    fn remove_device(&self, _device: OwnedObjectPath) {}

    #[zbus(property)]
    fn address(&self) -> String {
        "00:00:5E:00:53:01".to_owned()
    }
    #[zbus(property)]
    fn address_type(&self) -> String {
        "public".to_owned()
    }
    #[zbus(property)]
    fn name(&self) -> String {
        "fake-hci0".to_owned()
    }
    #[zbus(property)]
    fn alias(&self) -> String {
        "fake-hci0".to_owned()
    }
    #[zbus(property)]
    fn class(&self) -> u32 {
        0
    }
    #[zbus(property)]
    fn powered(&self) -> bool {
        lock(&self.state).opts.powered
    }
    #[zbus(property)]
    fn set_powered(&mut self, on: bool) {
        lock(&self.state).opts.powered = on;
    }
    #[zbus(property)]
    fn power_state(&self) -> String {
        if lock(&self.state).opts.powered {
            "on"
        } else {
            "off"
        }
        .to_owned()
    }
    #[zbus(property)]
    fn discoverable(&self) -> bool {
        false
    }
    #[zbus(property)]
    fn discoverable_timeout(&self) -> u32 {
        180
    }
    #[zbus(property)]
    fn pairable(&self) -> bool {
        false
    }
    #[zbus(property)]
    fn pairable_timeout(&self) -> u32 {
        0
    }
    #[zbus(property)]
    fn discovering(&self) -> bool {
        !lock(&self.state).discovery_clients.is_empty()
    }
    #[zbus(property, name = "UUIDs")]
    fn uuids(&self) -> Vec<String> {
        Vec::new()
    }
    #[zbus(property)]
    fn modalias(&self) -> String {
        "usb:v1D6Bp0246d0542".to_owned()
    }
    #[zbus(property)]
    fn roles(&self) -> Vec<String> {
        vec!["central".to_owned(), "peripheral".to_owned()]
    }
}

struct AdvManager {
    state: Shared,
}

#[zbus::interface(name = "org.bluez.LEAdvertisingManager1")]
impl AdvManager {
    async fn register_advertisement(
        &self,
        advertisement: OwnedObjectPath,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BluezErr> {
        let sender = hdr.sender().map(|s| s.to_string()).unwrap_or_default();
        let path = advertisement.as_str().to_owned();
        let r = self
            .register(conn, &sender, advertisement, options, &emitter)
            .await;
        if let Err(e) = &r {
            lock(&self.state).events.push(FakeEvent::RegisterRefused {
                path,
                error: e.name().to_owned(),
            });
        }
        r
    }

    async fn unregister_advertisement(
        &self,
        advertisement: OwnedObjectPath,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BluezErr> {
        let sender = hdr.sender().map(|s| s.to_string()).unwrap_or_default();
        let path = advertisement.as_str().to_owned();
        {
            let mut st = lock(&self.state);
            let before = st.active.len();
            st.active.retain(|(s, p, _)| !(s == &sender && p == &path));
            if st.active.len() == before {
                return Err(BluezErr::DoesNotExist("Does Not Exist".to_owned()));
            }
            st.events.push(FakeEvent::Unregistered { path });
        }
        self.active_instances_changed(&emitter).await?;
        self.supported_instances_changed(&emitter).await?;
        refresh_device(conn, &self.state).await?;
        Ok(())
    }

    #[zbus(property)]
    fn active_instances(&self) -> u8 {
        let n = lock(&self.state).active.len();
        u8::try_from(n).unwrap_or(u8::MAX)
    }

    #[zbus(property)]
    fn supported_instances(&self) -> u8 {
        let st = lock(&self.state);
        let n = u8::try_from(st.active.len()).unwrap_or(u8::MAX);
        st.opts.max_instances.saturating_sub(n)
    }

    #[zbus(property)]
    fn supported_includes(&self) -> Vec<String> {
        vec![
            "tx-power".to_owned(),
            "appearance".to_owned(),
            "local-name".to_owned(),
        ]
    }
}

impl AdvManager {
    async fn register(
        &self,
        conn: &Connection,
        sender: &str,
        advertisement: OwnedObjectPath,
        options: HashMap<String, OwnedValue>,
        emitter: &SignalEmitter<'_>,
    ) -> Result<(), BluezErr> {
        {
            let st = lock(&self.state);
            if !st.opts.powered {
                return Err(BluezErr::NotReady("Not Powered".to_owned()));
            }
            if st
                .active
                .iter()
                .any(|(s, p, _)| s == sender && p == advertisement.as_str())
            {
                return Err(BluezErr::AlreadyExists("Already Exists".to_owned()));
            }
            if st.active.len() >= usize::from(st.opts.max_instances) {
                return Err(BluezErr::NotPermitted(
                    "Maximum advertisements reached".to_owned(),
                ));
            }
        }
        // Like bluetoothd: read the object's properties back from the caller.
        let props = zbus::fdo::PropertiesProxy::builder(conn)
            .destination(sender.to_owned())?
            .path(advertisement.clone())?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        let iface = zbus::names::InterfaceName::from_static_str(LE_ADVERTISEMENT1)
            .map_err(|e| BluezErr::Failed(e.to_string()))?;
        let properties = props
            .get_all(iface)
            .await
            .map_err(|e| BluezErr::Failed(format!("Failed to parse advertisement: {e}")))?;
        let kind = properties
            .get("Type")
            .and_then(|v| v.try_clone().ok())
            .and_then(|v| String::try_from(v).ok());
        if !matches!(kind.as_deref(), Some("broadcast" | "peripheral")) {
            return Err(BluezErr::InvalidArguments(
                "Failed to parse advertisement: bad Type".to_owned(),
            ));
        }
        let data = properties
            .get("ServiceData")
            .and_then(|v| service_data_bytes(v, SERVICE_UUID));
        {
            let mut st = lock(&self.state);
            st.active
                .push((sender.to_owned(), advertisement.as_str().to_owned(), data));
            st.events.push(FakeEvent::Registered {
                path: advertisement.as_str().to_owned(),
            });
            st.registrations.push(Registration {
                sender: sender.to_owned(),
                path: advertisement.as_str().to_owned(),
                options,
                properties,
            });
        }
        self.active_instances_changed(emitter).await?;
        self.supported_instances_changed(emitter).await?;
        refresh_device(conn, &self.state).await?;
        Ok(())
    }
}

struct AgentManager;

#[zbus::interface(name = "org.bluez.AgentManager1")]
impl AgentManager {
    fn register_agent(&self, _agent: OwnedObjectPath, _capability: String) {}
    fn request_default_agent(&self, _agent: OwnedObjectPath) {}
    fn unregister_agent(&self, _agent: OwnedObjectPath) -> Result<(), BluezErr> {
        Err(BluezErr::DoesNotExist("Does Not Exist".to_owned()))
    }
}

/// The scanner's view of the newest registered advert.
struct Device {
    data: Vec<u8>,
}

#[zbus::interface(name = "org.bluez.Device1")]
impl Device {
    fn connect(&self) -> Result<(), BluezErr> {
        Err(BluezErr::NotPermitted("fake device".to_owned()))
    }

    #[zbus(property)]
    fn address(&self) -> String {
        FAKE_DEVICE_ADDRESS.to_owned()
    }
    #[zbus(property)]
    fn address_type(&self) -> String {
        "random".to_owned()
    }
    #[zbus(property)]
    fn alias(&self) -> String {
        FAKE_DEVICE_ADDRESS.replace(':', "-")
    }
    #[zbus(property)]
    fn paired(&self) -> bool {
        false
    }
    #[zbus(property)]
    fn bonded(&self) -> bool {
        false
    }
    #[zbus(property)]
    fn trusted(&self) -> bool {
        false
    }
    #[zbus(property)]
    fn blocked(&self) -> bool {
        false
    }
    #[zbus(property)]
    fn legacy_pairing(&self) -> bool {
        false
    }
    #[zbus(property)]
    fn connected(&self) -> bool {
        false
    }
    #[zbus(property)]
    fn services_resolved(&self) -> bool {
        false
    }
    #[zbus(property, name = "RSSI")]
    fn rssi(&self) -> i16 {
        -42
    }
    #[zbus(property)]
    fn adapter(&self) -> OwnedObjectPath {
        OwnedObjectPath::from(ObjectPath::from_static_str_unchecked(FAKE_ADAPTER_PATH))
    }
    #[zbus(property, name = "UUIDs")]
    fn uuids(&self) -> Vec<String> {
        Vec::new()
    }
    #[zbus(property)]
    fn service_data(&self) -> zbus::fdo::Result<HashMap<String, OwnedValue>> {
        let v = OwnedValue::try_from(Value::from(self.data.clone()))
            .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?;
        Ok(HashMap::from([(SERVICE_UUID.to_owned(), v)]))
    }
}

/// Shows, updates or hides the device so that it reflects the newest live
/// advert while anyone is discovering.
///
/// Once shown, the device stays while discovery runs, with its last service
/// data, even when no advert is live for a moment (a phone between sessions,
/// or an advertiser swapping one advert for the next). bluetoothd on the
/// scanning machine does the same: a found device is not removed when its
/// adverts pause, so a scanner's `GetAll` on it never meets `UnknownObject`
/// there. (libwebauthn 0.10 gives up the ceremony on that error; the
/// interop peers suite met it in file radio mode.) The device goes when the
/// last discovery client stops.
async fn refresh_device(conn: &Connection, state: &Shared) -> zbus::Result<()> {
    let (want, shown) = {
        let st = lock(state);
        let want = if st.discovery_clients.is_empty() {
            None
        } else {
            st.active
                .iter()
                .rev()
                .find_map(|(_, _, d)| d.clone())
                .or_else(|| st.shown.clone())
        };
        (want, st.shown.clone())
    };
    if want == shown {
        return Ok(());
    }
    let server = conn.object_server();
    match (want.clone(), shown) {
        (Some(data), None) => {
            // ObjectManager at / sends InterfacesAdded with all properties.
            server.at(FAKE_DEVICE_PATH, Device { data }).await?;
            // Then the next received advert, as bluetoothd reports it under
            // DuplicateData: PropertiesChanged with ServiceData and RSSI.
            // Clients that only read service data from PropertiesChanged
            // (btleplug/bluez-async) need this.
            let iface = server.interface::<_, Device>(FAKE_DEVICE_PATH).await?;
            let emitter = iface.signal_emitter();
            let dev = iface.get().await;
            dev.service_data_changed(emitter).await?;
            dev.r_s_s_i_changed(emitter).await?;
        }
        (Some(data), Some(_)) => {
            let iface = server.interface::<_, Device>(FAKE_DEVICE_PATH).await?;
            iface.get_mut().await.data = data;
            let emitter = iface.signal_emitter();
            let dev = iface.get().await;
            dev.service_data_changed(emitter).await?;
            dev.r_s_s_i_changed(emitter).await?;
        }
        (None, _) => {
            server.remove::<Device, _>(FAKE_DEVICE_PATH).await?;
        }
    }
    lock(state).shown = want;
    Ok(())
}

// ---------------------------------------------------------------- the fake

/// A running fake `org.bluez`; it lives as long as this value.
pub struct FakeBluez {
    conn: Connection,
    state: Shared,
}

impl std::fmt::Debug for FakeBluez {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBluez").finish_non_exhaustive()
    }
}

impl FakeBluez {
    /// Connects to the bus at `address`, exports the objects and takes the
    /// name `org.bluez`.
    pub async fn start(address: &str, opts: FakeOptions) -> zbus::Result<Self> {
        let state: Shared = Arc::new(Mutex::new(State {
            opts: opts.clone(),
            registrations: Vec::new(),
            active: Vec::new(),
            events: Vec::new(),
            discovery_clients: BTreeSet::new(),
            shown: None,
        }));
        let mut b = zbus::connection::Builder::address(address)?
            .serve_at("/", ObjectManager)?
            .serve_at("/org/bluez", AgentManager)?;
        if opts.adapter {
            b = b.serve_at(
                FAKE_ADAPTER_PATH,
                Adapter {
                    state: Arc::clone(&state),
                },
            )?;
            if opts.le_advertising {
                b = b.serve_at(
                    FAKE_ADAPTER_PATH,
                    AdvManager {
                        state: Arc::clone(&state),
                    },
                )?;
            }
        }
        let conn = b.name(crate::BLUEZ)?.build().await?;
        Ok(Self { conn, state })
    }

    /// The fake's own connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Every accepted `RegisterAdvertisement`, oldest first, with the
    /// properties read back. (Returned by value: `OwnedValue` is copied.)
    pub fn registrations(&self) -> Vec<Registration> {
        lock(&self.state)
            .registrations
            .iter()
            .map(|r| Registration {
                sender: r.sender.clone(),
                path: r.path.clone(),
                options: clone_props(&r.options),
                properties: clone_props(&r.properties),
            })
            .collect()
    }

    /// Object paths of the adverts registered now.
    pub fn active_paths(&self) -> Vec<String> {
        lock(&self.state)
            .active
            .iter()
            .map(|(_, p, _)| p.clone())
            .collect()
    }

    /// Everything clients did, in order.
    pub fn events(&self) -> Vec<FakeEvent> {
        lock(&self.state).events.clone()
    }

    /// Turns the adapter on or off (emits `PropertiesChanged`). Turning it
    /// off releases every advert, as bluetoothd does.
    pub async fn set_powered(&self, on: bool) -> zbus::Result<()> {
        lock(&self.state).opts.powered = on;
        if let Ok(iface) = self
            .conn
            .object_server()
            .interface::<_, Adapter>(FAKE_ADAPTER_PATH)
            .await
        {
            let emitter = iface.signal_emitter();
            iface.get().await.powered_changed(emitter).await?;
        }
        if !on {
            self.release_all().await?;
        }
        Ok(())
    }

    /// Drops every live advert and calls `Release()` on each, as bluetoothd
    /// does when the adapter goes away.
    pub async fn release_all(&self) -> zbus::Result<()> {
        let gone: Vec<(String, String, Option<Vec<u8>>)> =
            std::mem::take(&mut lock(&self.state).active);
        for (sender, path, _) in gone {
            lock(&self.state)
                .events
                .push(FakeEvent::Released { path: path.clone() });
            let p = ObjectPath::try_from(path.as_str())?;
            let r = self
                .conn
                .call_method(
                    Some(sender.as_str()),
                    p,
                    Some(LE_ADVERTISEMENT1),
                    "Release",
                    &(),
                )
                .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, "Release failed");
            }
        }
        refresh_device(&self.conn, &self.state).await
    }
}

fn clone_props(m: &HashMap<String, OwnedValue>) -> HashMap<String, OwnedValue> {
    m.iter()
        .filter_map(|(k, v)| Some((k.clone(), v.try_clone().ok()?)))
        .collect()
}
