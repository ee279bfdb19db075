//! The CTAP 2.3 BLE L2CAP path of hybrid-bluez on a real radio (the ble-vm
//! check, `tests/ble-vm`): one process plays the phone, one the desktop.
//!
//! ```text
//! l2cap serve   --adapter hci0 --advert <40 hex> [--seconds 30]
//! l2cap connect --adapter hci1 --advert <40 hex> [--seconds 30]
//! ```
//! * `serve`: `L2capListener` on the adapter (dynamic PSM, no security),
//!   then the connectable advert `advert ‖ {1: PSM}`; accepts one desktop,
//!   reads one message (sniffing its framing), answers it reversed in the
//!   same framing, stops advertising. Prints `LISTENING …`, `SERVED …`.
//! * `connect`: scans for service data that starts with the advert, reads the
//!   PSM from the suffix as libwebauthn does (`hybrid_ble::parse_ble_psm`),
//!   connects an LE L2CAP socket from its adapter to the advertiser's
//!   address and type (as BlueZ reports them), waits for the send MTU as
//!   libwebauthn does, sends an 81-byte msg1-like
//!   message length-prefixed (pxp's framing) and checks the answer. Prints
//!   `SEEN <hex>` and `L2CAP OK …`.

use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

use hybrid_ble::{parse_ble_psm, split_service_data, L2capDecoder, L2capFraming, SERVICE_UUID};
use hybrid_bluez::{probe, scan, system_bus, BluezAdvertiser, BluezConfig, L2capListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn usage() -> ExitCode {
    eprintln!("usage: l2cap serve|connect --adapter hciN --advert <40 hex> [--seconds N]");
    ExitCode::from(2)
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

/// The message the desktop side sends: 04, then 80 bytes (a Noise msg1 shape).
fn probe_message() -> Vec<u8> {
    std::iter::once(0x04)
        .chain((1..81u8).map(|i| i.wrapping_mul(37) ^ 0x5a))
        .collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(mode) = args.next() else {
        return usage();
    };
    let (mut adapter, mut advert, mut seconds) = (None, None, 30u64);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--adapter" => adapter = args.next(),
            "--advert" => {
                advert = args
                    .next()
                    .and_then(|h| hex::decode(h).ok())
                    .and_then(|b| <[u8; 20]>::try_from(b).ok())
            }
            "--seconds" => match args.next().and_then(|s| s.parse().ok()) {
                Some(s) => seconds = s,
                None => return usage(),
            },
            _ => return usage(),
        }
    }
    let Some(advert) = advert else {
        return usage();
    };
    let wait = Duration::from_secs(seconds);
    match mode.as_str() {
        "serve" => serve(adapter, advert, wait).await,
        "connect" => connect(adapter, advert, wait).await,
        _ => usage(),
    }
}

async fn serve(adapter: Option<String>, advert: [u8; 20], wait: Duration) -> ExitCode {
    let conn = match system_bus().await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let listener = match L2capListener::on_adapter(&conn, adapter.as_deref()).await {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let psm = listener.psm();
    let mut adv = BluezAdvertiser::new(
        conn,
        BluezConfig {
            adapter,
            ..BluezConfig::default()
        },
    );
    if let Err(e) = adv.start_advert_with_psm(&advert, psm).await {
        return fail(e);
    }
    println!(
        "LISTENING {} psm={psm:#04x} at {}",
        listener.adapter(),
        listener.local_address()
    );
    let t0 = Instant::now();
    let accepted = listener.accept(wait, Duration::from_secs(20)).await;
    let _ = adv.stop_advert().await;
    let (mut ch, peer) = match accepted {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let msg = match ch.recv().await {
        Ok(Some(m)) => m,
        Ok(None) => return fail("the desktop closed without a message"),
        Err(e) => return fail(e),
    };
    let answer: Vec<u8> = msg.iter().rev().copied().collect();
    if let Err(e) = ch.send(&answer).await {
        return fail(e);
    }
    let framing = ch.framing().map(L2capFraming::name).unwrap_or("?");
    // Let the desktop read and close first.
    let _ = ch.recv().await;
    println!(
        "SERVED peer={peer} framing={framing} bytes={} after_ms={}",
        msg.len(),
        t0.elapsed().as_millis()
    );
    ExitCode::SUCCESS
}

async fn connect(adapter: Option<String>, advert: [u8; 20], wait: Duration) -> ExitCode {
    let conn = match system_bus().await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let local = match probe(&conn, adapter.as_deref()).await {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let t0 = Instant::now();
    let mut device = String::new();
    let seen = scan::watch_service_data(
        &conn,
        adapter.as_deref(),
        SERVICE_UUID,
        wait,
        |path, bytes| {
            let hit = bytes.len() > 20 && bytes.starts_with(&advert);
            if hit {
                device = path.to_owned();
            }
            hit
        },
    )
    .await;
    let data = match seen {
        Ok(Some(d)) => d,
        Ok(None) => return fail("no advert with a suffix seen"),
        Err(e) => return fail(e),
    };
    println!("SEEN {} from {device}", hex::encode(&data));
    let psm = match split_service_data(&data).map(|(_, s)| parse_ble_psm(s)) {
        Ok(Ok(Some(p))) => p,
        other => return fail(format!("no PSM in the suffix: {other:?}")),
    };
    let prop = |name: &'static str| {
        let conn = conn.clone();
        let device = device.clone();
        async move {
            let reply = conn
                .call_method(
                    Some("org.bluez"),
                    device.as_str(),
                    Some("org.freedesktop.DBus.Properties"),
                    "Get",
                    &(hybrid_bluez::DEVICE1, name),
                )
                .await
                .ok()?;
            let v: zbus::zvariant::OwnedValue = reply.body().deserialize().ok()?;
            String::try_from(v).ok()
        }
    };
    let (Some(addr), Some(kind)) = (prop("Address").await, prop("AddressType").await) else {
        return fail("BlueZ did not report the advertiser's address");
    };
    let Ok(peer) = bluer::Address::from_str(&addr) else {
        return fail(format!("bad address {addr}"));
    };
    let peer_type = if kind == "random" {
        bluer::AddressType::LeRandom
    } else {
        bluer::AddressType::LePublic
    };
    let Some(local_addr) = local
        .address
        .as_deref()
        .and_then(|a| bluer::Address::from_str(a).ok())
    else {
        return fail("no local address");
    };
    let socket = match bluer::l2cap::Socket::new_stream() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Err(e) = socket.bind(bluer::l2cap::SocketAddr::new(
        local_addr,
        bluer::AddressType::LePublic,
        0,
    )) {
        return fail(e);
    }
    let t1 = Instant::now();
    let target = bluer::l2cap::SocketAddr::new(peer, peer_type, psm);
    let mut stream = match tokio::time::timeout(wait, socket.connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return fail(format!("connect to {addr} ({kind}) psm {psm:#x}: {e}")),
        Err(_) => return fail("connect timed out"),
    };
    // bluer's connect can return before the LE credit-based connection is
    // up (tokio may see the fresh socket as writable already), so, as
    // libwebauthn does (l2cap.rs `await_send_mtu`), wait until the kernel
    // knows the peer's MTU — with a bound fit for an emulated CPU.
    let deadline = Instant::now() + wait;
    while !matches!(stream.as_ref().send_mtu(), Ok(m) if m > 0) {
        if Instant::now() >= deadline {
            return fail("the channel never came up (no send MTU)");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_ms = t1.elapsed().as_millis();
    let msg = probe_message();
    let wire = match L2capFraming::LengthPrefix.encode(&msg) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    if let Err(e) = stream.write_all(&wire).await {
        return fail(format!("write: {e}"));
    }
    let mut dec = L2capDecoder::for_framing(L2capFraming::LengthPrefix);
    let mut buf = [0u8; 1024];
    let answer = loop {
        match dec.next_message() {
            Ok(Some(m)) => break m,
            Ok(None) => {}
            Err(e) => return fail(e),
        }
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Ok(Ok(0)) => return fail("phone closed before answering"),
            Ok(Ok(n)) => {
                if let Err(e) = dec.push(buf.get(..n).unwrap_or(&[])) {
                    return fail(e);
                }
            }
            Ok(Err(e)) => return fail(format!("read: {e}")),
            Err(_) => return fail("no answer in time"),
        }
    };
    let want: Vec<u8> = msg.iter().rev().copied().collect();
    if answer != want {
        return fail("the answer is not the reversed message");
    }
    let sec = stream.as_ref().security().ok().map(|s| s.level);
    let mtu = stream.as_ref().send_mtu().ok();
    println!(
        "L2CAP OK psm={psm:#04x} peer={addr} ({kind}) security={sec:?} send_mtu={mtu:?} connect_ms={connect_ms} total_ms={}",
        t0.elapsed().as_millis()
    );
    ExitCode::SUCCESS
}
