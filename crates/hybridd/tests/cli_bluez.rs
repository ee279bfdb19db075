//! The daemon with the BlueZ radio, through the binary: a private
//! `dbus-daemon` with the fake `org.bluez` (`hybrid_bluez::fake`), `hybridd
//! run` with `radio = "bluez"` on that bus (`DBUS_SYSTEM_BUS_ADDRESS`),
//! `hybridd tunnel-server`, `hybridd scan`, and a desktop in the test
//! (hybrid-initiator) that takes its advert the way a scanner does: it runs
//! discovery on the fake adapter over D-Bus and reads
//! `Device1.ServiceData["0000fff9-…"]` (hybrid-protocol.md §3.4).
//!
//! * makeCredential completes; the advert was registered with BlueZ and
//!   unregistered after the session.
//! * No adapter when the daemon starts: it refuses to start, naming the fix.
//! * The adapter goes away while the daemon runs: the scan fails with
//!   `advert_failed` naming the fix; once it is back the daemon serves the
//!   next scan — with the same QR, which never reached a desktop.
//!
//! Without `dbus-daemon` these tests are skipped with a loud message, unless
//! `HYBRIDD_REQUIRE_DBUS=1` (then they fail), as in hybrid-bluez's tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // helpers of tests

mod common;

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{cdh, scan_output, start_tunnel_server, text, wait_daemon_ready, Home, Killed};
use hybrid_ble::SERVICE_UUID;
use hybrid_bluez::fake::{FakeBluez, FakeEvent, FakeOptions, PrivateBus, PrivateBusError};
use hybrid_bluez::{bus_at, scan};
use hybrid_ctap::types::UserEntity;
use hybrid_ctap::RelyingParty;
use hybrid_initiator::{AdvertSource, Desktop, Resolver};
use hybrid_qr::RequestType;
use hybrid_tunnel::client::ClientOptions;
use rand_core::OsRng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A private bus, or `None` (with a loud message) when dbus-daemon is missing
/// and `HYBRIDD_REQUIRE_DBUS=1` is not set.
fn private_bus(test: &str) -> Option<PrivateBus> {
    match PrivateBus::start() {
        Ok(b) => Some(b),
        Err(PrivateBusError::NotInstalled(e))
            if std::env::var("HYBRIDD_REQUIRE_DBUS").as_deref() != Ok("1") =>
        {
            eprintln!(
                "\n!!!!!!!! SKIPPED {test}: dbus-daemon is not installed ({e}).\n\
                 !!!!!!!! apt-get install dbus-daemon, or set HYBRIDD_REQUIRE_DBUS=1 to fail instead.\n"
            );
            None
        }
        Err(e) => panic!("{test}: cannot start a private dbus-daemon: {e}"),
    }
}

/// Starts a fake `org.bluez`, retrying while a previous one still holds
/// the name.
async fn start_fake(bus: &PrivateBus, opts: FakeOptions) -> FakeBluez {
    let t0 = Instant::now();
    loop {
        match FakeBluez::start(bus.address(), opts.clone()).await {
            Ok(f) => return f,
            Err(e) if t0.elapsed() < Duration::from_secs(10) => {
                eprintln!("fake org.bluez not up yet: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("fake org.bluez: {e}"),
        }
    }
}

/// Takes a fake `org.bluez` off the bus (as if bluetoothd stopped).
async fn stop_fake(fake: FakeBluez) {
    let conn = fake.connection().clone();
    drop(fake);
    let _ = conn.close().await;
}

/// A desktop's scanner: discovery on the fake adapter; every service-data
/// value under 0xFFF9 is offered to the desktop (and recorded).
struct Scanner {
    source: AdvertSource,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    task: JoinHandle<()>,
}

impl Scanner {
    async fn start(bus: &PrivateBus) -> Scanner {
        let conn = bus_at(bus.address()).await.unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let r = scan::watch_service_data(
                &conn,
                Some("hci0"),
                SERVICE_UUID,
                Duration::from_secs(60),
                |_, bytes| {
                    record.lock().unwrap().push(bytes.to_vec());
                    // Stop (and StopDiscovery) once the desktop is gone.
                    tx.send(bytes.to_vec()).is_err()
                },
            )
            .await;
            if let Err(e) = r {
                eprintln!("scanner: {e}");
            }
        });
        Scanner {
            source: AdvertSource::channel(rx),
            seen,
            task,
        }
    }
}

impl Drop for Scanner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A tunnel server and a daemon with `radio = "bluez"` on the private bus.
struct World {
    h: Home,
    url: String,
    log: PathBuf,
    _ts: Killed,
}

impl World {
    fn new() -> World {
        let h = Home::new();
        h.init_vault("1234");
        h.write_config("radio = \"bluez\"\nadapter = \"hci0\"\n");
        let (ts, url) = start_tunnel_server(&h);
        let log = h.path().join("daemon.log");
        World {
            h,
            url,
            log,
            _ts: ts,
        }
    }

    fn daemon(&self, bus: &PrivateBus) -> Killed {
        let pin = self.h.pin_file("auto-pin", "1234");
        let child = self
            .h
            .cmd()
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
            .args(["run", "--tunnel-url", &self.url])
            .args(["--approval", "auto", "--pin-file"])
            .arg(&pin)
            .args(["--wait-for-desktop-secs", "30"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.log).unwrap())
            .spawn()
            .unwrap();
        Killed(child)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `hybridd scan uri` while `desktop`, scanning over BlueZ, registers a
    /// passkey. Returns the scan's output and what the scanner saw.
    async fn register(&self, bus: &PrivateBus, desktop: &Desktop, uri: &str) -> (Output, Vec<u8>) {
        let mut scanner = Scanner::start(bus).await;
        let scan = self
            .h
            .cmd()
            .args(["scan", uri])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ch = desktop
            .establish(
                &mut scanner.source,
                Duration::from_secs(20),
                &Resolver::fixed(&self.url),
                &ClientOptions::default(),
                &mut OsRng,
            )
            .await
            .unwrap_or_else(|e| panic!("desktop: {e}\n{}", self.log()));
        let user = UserEntity {
            id: b"user-1".to_vec(),
            name: Some("alice@example.com".into()),
            display_name: None,
        };
        let rp = RelyingParty::new("example.com", "Example");
        ch.register(&rp, cdh(), user, true).await.unwrap();
        let _ = ch.shutdown().await;
        let o = scan_output(scan).await;
        assert!(
            o.status.success() && text(&o.stdout).contains("passkey created"),
            "{:?}: {}{}\n{}",
            o.status,
            text(&o.stdout),
            text(&o.stderr),
            self.log()
        );
        let seen = scanner.seen.lock().unwrap().clone();
        assert!(!seen.is_empty());
        (o, seen.last().cloned().unwrap())
    }
}

/// The registration/unregistration events of the fake, in order.
fn advert_events(fake: &FakeBluez) -> Vec<FakeEvent> {
    fake.events()
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                FakeEvent::Registered { .. }
                    | FakeEvent::Unregistered { .. }
                    | FakeEvent::Released { .. }
                    | FakeEvent::RegisterRefused { .. }
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_with_bluez_radio_serves_a_scanning_desktop() {
    let Some(bus) = private_bus("daemon_with_bluez_radio_serves_a_scanning_desktop") else {
        return;
    };
    let fake = start_fake(&bus, FakeOptions::default()).await;
    let w = World::new();
    let mut daemon = w.daemon(&bus);
    wait_daemon_ready(&mut daemon, &w.h.socket(), &w.log).await;

    let d = Desktop::new(&mut OsRng)
        .unwrap()
        .with_request_type(RequestType::MakeCredential);
    let (_, seen) = w.register(&bus, &d, &d.qr_uri()).await;

    // Exactly one advert went through BlueZ — the one the scanner read —
    // and it was unregistered when the session ended.
    let regs = fake.registrations();
    assert_eq!(regs.len(), 1, "{regs:?}");
    let path = regs[0].path.clone();
    assert_eq!(
        regs[0].service_data(SERVICE_UUID).as_deref(),
        Some(&seen[..])
    );
    // A QR without key 6 (every Chromium QR) gets the advert exactly as
    // before CTAP 2.3: 20 bytes, non-connectable, with the UUID list
    // (Chromium drops service data that is not exactly 20 bytes).
    assert!(!d.qr().offers_ble_l2cap());
    assert_eq!(seen.len(), 20);
    assert_eq!(regs[0].string("Type").as_deref(), Some("broadcast"));
    assert_eq!(
        regs[0].strings("ServiceUUIDs"),
        Some(vec![SERVICE_UUID.to_owned()])
    );
    assert_eq!(
        regs[0].property_names(),
        [
            "MaxInterval",
            "MinInterval",
            "ServiceData",
            "ServiceUUIDs",
            "Type"
        ]
    );
    assert_eq!(
        advert_events(&fake),
        vec![
            FakeEvent::Registered { path: path.clone() },
            FakeEvent::Unregistered { path }
        ]
    );
    assert!(fake.active_paths().is_empty());
    let log = w.log();
    assert!(log.contains("phone session ended: completed"), "{log}");
    assert!(!log.contains("FIDO:/"), "QR URI logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_adapter_at_start_the_daemon_refuses_naming_the_fix() {
    let Some(bus) = private_bus("no_adapter_at_start_the_daemon_refuses_naming_the_fix") else {
        return;
    };
    let opts = FakeOptions {
        adapter: false,
        ..FakeOptions::default()
    };
    let _fake = start_fake(&bus, opts).await;
    let w = World::new();
    let daemon = w.daemon(&bus);
    let status = common::exit_status(daemon).await;
    assert_eq!(status.code(), Some(1), "{}", w.log());
    let log = w.log();
    assert!(log.contains("no Bluetooth adapter found"), "{log}");
    assert!(log.contains("fix: plug one in"), "{log}");
    assert!(!w.h.socket().exists(), "no socket without a radio");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_gone_scan_names_the_fix_and_the_daemon_serves_the_next_scan() {
    let Some(bus) =
        private_bus("adapter_gone_scan_names_the_fix_and_the_daemon_serves_the_next_scan")
    else {
        return;
    };
    let fake = start_fake(&bus, FakeOptions::default()).await;
    let w = World::new();
    let mut daemon = w.daemon(&bus);
    wait_daemon_ready(&mut daemon, &w.h.socket(), &w.log).await;

    // The adapter goes away (bluetoothd now knows none).
    stop_fake(fake).await;
    let fake = start_fake(
        &bus,
        FakeOptions {
            adapter: false,
            ..FakeOptions::default()
        },
    )
    .await;
    let d = Desktop::new(&mut OsRng)
        .unwrap()
        .with_request_type(RequestType::MakeCredential);
    let uri = d.qr_uri();
    let o = w.h.run(&["scan", &uri]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("failed [advert_failed]"), "{err}");
    assert!(err.contains("no Bluetooth adapter found"), "{err}");
    assert!(
        err.contains("plug in a Bluetooth LE adapter"),
        "the fix is named: {err}"
    );
    assert!(fake.registrations().is_empty());

    // It comes back: the daemon serves the next scan, and the same QR is
    // accepted (it never reached a desktop, so the replay policy allows it).
    stop_fake(fake).await;
    let fake = start_fake(&bus, FakeOptions::default()).await;
    w.register(&bus, &d, &uri).await;
    assert!(fake.active_paths().is_empty());
    assert!(matches!(
        advert_events(&fake).as_slice(),
        [FakeEvent::Registered { .. }, FakeEvent::Unregistered { .. }]
    ));
    assert!(daemon.0.try_wait().unwrap().is_none(), "daemon still up");
}

/// `hybridd doctor` names the adapter it would use: the configured one, or
/// by default the first powered one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_adapter_it_would_use() {
    let Some(bus) = private_bus("doctor_names_the_adapter_it_would_use") else {
        return;
    };
    let fake = start_fake(&bus, FakeOptions::default()).await;
    let h = Home::new();
    h.init_vault("1234");
    let doctor = |config: &str| {
        h.write_config(config);
        let o = h
            .cmd()
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
            .args(["doctor", "--offline"])
            .output()
            .unwrap();
        format!("{}{}", text(&o.stdout), text(&o.stderr))
    };
    for (config, says) in [
        ("radio = \"bluez\"\n", "the first powered one"),
        ("radio = \"bluez\"\nadapter = \"hci0\"\n", "as configured"),
    ] {
        let out = doctor(config);
        let line = out
            .lines()
            .find(|l| l.contains("bluetooth"))
            .unwrap_or_else(|| panic!("no bluetooth line: {out}"));
        assert!(
            line.contains("using adapter hci0 (00:00:5E:00:53:01") && line.contains(says),
            "{line}"
        );
    }
    let out = doctor("radio = \"bluez\"\nadapter = \"hci3\"\n");
    assert!(
        out.contains("Bluetooth adapter hci3 not found (BlueZ has: hci0)"),
        "{out}"
    );
    stop_fake(fake).await;
}
