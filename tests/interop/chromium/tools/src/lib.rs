//! Helper binaries of the real-Chromium interop harness
//! (`tests/interop/chromium/run.sh`, see `docs/interop.md`).
//!
//! **Owns:** small command-line wrappers around the project's own crates so
//! that a shell harness can drive an unmodified Chromium against hybridd:
//!
//! * `interop-fake-bluez` — runs `hybrid_bluez::fake::FakeBluez` on the bus
//!   named by `DBUS_SYSTEM_BUS_ADDRESS`. Adverts registered through
//!   `LEAdvertisingManager1` (hybridd's real BlueZ advertiser) are shown to a
//!   discovering client (Chromium) as `Device1.ServiceData[fff9]`. With
//!   `--advert-file` it also watches a file written by a file radio and
//!   registers each new advert itself, through `hybrid_bluez::BluezAdvertiser`.
//! * `interop-bluez-view` — a forwarding view of a real `bluetoothd` that
//!   shows a desktop only one adapter (the ble-vm's real-radio ceremonies:
//!   libwebauthn scans with the first adapter BlueZ lists).
//! * `interop-mint-qr` — prints a fresh `FIDO:/` URI from
//!   `hybrid_initiator::Desktop` (a desktop that never connects: the
//!   negative paths use it).
//! * `interop-desktop` — the `notify-fingerprint` scenario's desktop: dunst
//!   on a private session bus, fprintd with libfprint's virtual device (a
//!   finger enrolled) and a polkit stand-in on the suite's system bus,
//!   through `hybrid_desktop::testing`.
//!
//! The tunnel server and the phone are the product's own binary
//! (`hybridd tunnel-server`, `hybridd run`, `hybridd scan`).
//!
//! **Does not own:** any protocol logic (all of it comes from the crates
//! above), the relying party (py_webauthn, `rp.py`), or the browser.
//! Nothing here is part of hybridd's shipped binary.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in seconds with microseconds, for the harness's timing lines.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Appends `"<EVENT> <unix time> <detail>"` to `path` (the harness reads it
/// for its per-ceremony timings). Errors are ignored: timing is best effort.
pub fn event(path: Option<&std::path::Path>, what: &str, detail: &str) {
    let line = format!("{what} {:.6} {detail}\n", unix_now());
    eprint!("[{}] {line}", env!("CARGO_PKG_NAME"));
    if let Some(p) = path {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// A tiny `--flag value` parser: returns the value after `name`, if any.
pub fn arg_value(args: &[String], name: &str) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == name {
            return it.next().cloned();
        }
    }
    None
}

/// Whether the bare flag `name` is present.
pub fn has_flag(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}
