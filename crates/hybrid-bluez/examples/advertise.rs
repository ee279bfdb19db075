//! Advertise one 20-byte hybrid advert through BlueZ (system bus, or
//! `DBUS_SYSTEM_BUS_ADDRESS`), hold it, then stop.
//!
//! ```text
//! advertise <40 hex chars> [--adapter hci0] [--seconds 10]
//! ```
//! Prints `ADVERTISING <path> on <adapter>` once registered; exits 1 with the
//! error and its fix otherwise.

use std::process::ExitCode;
use std::time::Duration;

use hybrid_bluez::{probe, system_bus, BluezAdvertiser, BluezConfig};

fn usage() -> ExitCode {
    eprintln!("usage: advertise <40 hex chars> [--adapter hciN] [--seconds N]");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut hex_advert = None;
    let mut adapter = None;
    let mut seconds = 10u64;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--adapter" => adapter = args.next(),
            "--seconds" => match args.next().and_then(|s| s.parse().ok()) {
                Some(s) => seconds = s,
                None => return usage(),
            },
            _ if hex_advert.is_none() => hex_advert = Some(a),
            _ => return usage(),
        }
    }
    let Some(advert) = hex_advert
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <[u8; 20]>::try_from(b).ok())
    else {
        return usage();
    };

    let conn = match system_bus().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match probe(&conn, adapter.as_deref()).await {
        Ok(info) => println!("ADAPTER {info:?}"),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut adv = BluezAdvertiser::new(
        conn,
        BluezConfig {
            adapter,
            ..BluezConfig::default()
        },
    );
    if let Err(e) = adv.start_advert(&advert).await {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let on = adv.adapter().map(|a| a.name.clone()).unwrap_or_default();
    println!(
        "ADVERTISING {} on {on}: {}",
        adv.current_path().unwrap_or("?"),
        hex::encode(advert)
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    if adv.was_released() {
        eprintln!("warning: BlueZ released the advert before the end");
    }
    match adv.stop_advert().await {
        Ok(()) => {
            println!("STOPPED");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
