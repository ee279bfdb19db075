//! Scan for service data under 0xFFF9 through BlueZ (system bus, or
//! `DBUS_SYSTEM_BUS_ADDRESS`).
//!
//! ```text
//! scan [--adapter hci1] [--expect <40 hex chars>] [--timeout 30]
//! ```
//! Prints `SEEN <device> <hex>` for each report. With `--expect`, exits 0 on
//! `MATCH <hex>` and 1 at the timeout; without it, exits 0 on the first report.

use std::process::ExitCode;
use std::time::Duration;

use hybrid_ble::SERVICE_UUID;
use hybrid_bluez::{scan::watch_service_data, system_bus};

fn usage() -> ExitCode {
    eprintln!("usage: scan [--adapter hciN] [--expect <40 hex chars>] [--timeout N]");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut adapter = None;
    let mut expect: Option<Vec<u8>> = None;
    let mut timeout = 30u64;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--adapter" => adapter = args.next(),
            "--expect" => match args.next().and_then(|h| hex::decode(h).ok()) {
                Some(b) => expect = Some(b),
                None => return usage(),
            },
            "--timeout" => match args.next().and_then(|s| s.parse().ok()) {
                Some(t) => timeout = t,
                None => return usage(),
            },
            _ => return usage(),
        }
    }
    let conn = match system_bus().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "SCANNING on {}",
        adapter.as_deref().unwrap_or("the first adapter")
    );
    let r = watch_service_data(
        &conn,
        adapter.as_deref(),
        SERVICE_UUID,
        Duration::from_secs(timeout),
        |dev, bytes| {
            println!("SEEN {dev} {}", hex::encode(bytes));
            expect.as_deref().is_none_or(|e| e == bytes)
        },
    )
    .await;
    match r {
        Ok(Some(bytes)) => {
            println!("MATCH {}", hex::encode(bytes));
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("no matching advert within {timeout} s");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
