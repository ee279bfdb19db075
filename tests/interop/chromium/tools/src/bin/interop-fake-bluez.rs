//! Runs the project's fake `org.bluez` (`hybrid_bluez::fake::FakeBluez`) on
//! the bus named by `DBUS_SYSTEM_BUS_ADDRESS`, for an unmodified Chromium.
//!
//! ```text
//! interop-fake-bluez [--ready-file F] [--events F] [--advert-file F] [--no-adapter]
//! ```
//! * bluez radio mode (default): the phone registers its advert through
//!   `LEAdvertisingManager1`; the fake shows it to Chromium.
//! * file radio mode (`--advert-file F`): this program also watches `F` (40
//!   hex characters, as `hybrid_ble::FileRadio` writes it) and registers
//!   each new advert through `hybrid_bluez::BluezAdvertiser` on its own
//!   connection, so Chromium sees it the same way.
//! * `--no-adapter`: only `/` and `/org/bluez` are exported (negative path:
//!   Chromium must then offer no hybrid option).
//!
//! Prints `READY` (and writes `--ready-file`) once `org.bluez` is owned;
//! appends one line per fake event to `--events` (timing for the harness).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use hybrid_bluez::fake::{FakeBluez, FakeEvent, FakeOptions};
use hybrid_bluez::{bus_at, BluezAdvertiser, BluezConfig};
use hybrid_interop_chromium::{arg_value, event, has_flag};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Ok(address) = std::env::var("DBUS_SYSTEM_BUS_ADDRESS") else {
        eprintln!("interop-fake-bluez: DBUS_SYSTEM_BUS_ADDRESS is not set");
        return ExitCode::from(2);
    };
    let events: Option<PathBuf> = arg_value(&args, "--events").map(PathBuf::from);
    let advert_file: Option<PathBuf> = arg_value(&args, "--advert-file").map(PathBuf::from);
    let opts = FakeOptions {
        adapter: !has_flag(&args, "--no-adapter"),
        ..FakeOptions::default()
    };
    let fake = match FakeBluez::start(&address, opts).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("interop-fake-bluez: cannot serve org.bluez: {e}");
            return ExitCode::FAILURE;
        }
    };
    // File radio mode: our own advertiser on a second connection.
    let mut file_adv = None;
    if advert_file.is_some() {
        match bus_at(&address).await {
            Ok(conn) => file_adv = Some(BluezAdvertiser::new(conn, BluezConfig::default())),
            Err(e) => {
                eprintln!("interop-fake-bluez: second connection failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(r) = arg_value(&args, "--ready-file") {
        if let Err(e) = std::fs::write(&r, "ready\n") {
            eprintln!("interop-fake-bluez: cannot write {r}: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("READY");
    let mut seen_events = 0usize;
    let mut last_file: Option<[u8; 20]> = None;
    loop {
        if let (Some(path), Some(adv)) = (&advert_file, file_adv.as_mut()) {
            let parsed = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| hex::decode(s.trim()).ok())
                .and_then(|b| <[u8; 20]>::try_from(b).ok());
            if let Some(a) = parsed {
                if last_file != Some(a) {
                    last_file = Some(a);
                    event(events.as_deref(), "ADVERT_FILE", "");
                    if let Err(e) = adv.start_advert(&a).await {
                        eprintln!("interop-fake-bluez: registering the file's advert failed: {e}");
                    }
                }
            }
        }
        let all = fake.events();
        for e in all.iter().skip(seen_events) {
            let (what, detail) = match e {
                FakeEvent::Registered { path } => ("REGISTERED", path.clone()),
                FakeEvent::RegisterRefused { path, error } => {
                    ("REGISTER_REFUSED", format!("{path} {error}"))
                }
                FakeEvent::Unregistered { path } => ("UNREGISTERED", path.clone()),
                FakeEvent::SetDiscoveryFilter { keys } => ("SET_DISCOVERY_FILTER", keys.join(",")),
                FakeEvent::StartDiscovery { sender } => ("START_DISCOVERY", sender.clone()),
                FakeEvent::StopDiscovery { sender } => ("STOP_DISCOVERY", sender.clone()),
                FakeEvent::Released { path } => ("RELEASED", path.clone()),
            };
            event(events.as_deref(), what, &detail);
        }
        seen_events = all.len();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
