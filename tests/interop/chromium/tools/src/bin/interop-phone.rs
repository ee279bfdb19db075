//! A stand-in phone for the real-Chromium harness, assembled from the
//! project's protocol crates (the same steps as hybrid-protocol.md §10, the
//! phone-side checklist), until `hybridd run` can play the phone.
//!
//! ```text
//! interop-phone --qr-file F --tunnel-url wss://localhost:PORT --extra-ca ca.pem
//!               [--radio bluez|file] [--advert-file F] [--events F]
//!               [--wait-for-desktop-secs 20] [--sessions N]
//! ```
//! Each new line written to `--qr-file` is a scan (a `FIDO:/` URI). Per
//! scan: parse the QR (§2), open `/cable/new/<tunnel id>` (§4.2), build
//! and broadcast the advert (§3) through the BlueZ advertiser (on the bus
//! of `DBUS_SYSTEM_BUS_ADDRESS`) or a file radio, wait at most
//! `--wait-for-desktop-secs` for the desktop's handshake message, answer as
//! the KNpsk0 responder (§5), send the post-handshake getInfo (§6.2), then
//! answer CTAP requests until the desktop closes. It never sends a shutdown
//! frame (§6.3: the authenticator does not; Chromium rejects one).
//!
//! Prints `SESSION <n> OK|FAIL <reason>` per scan; the authenticator
//! (hybrid-ctap over its in-memory test doubles, approving with UV) keeps
//! its credentials across scans, so a later `get` finds an earlier `create`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use hybrid_ble::{Advertiser, EidKey, EidPlaintext, FileRadio};
use hybrid_bluez::{BluezAdvertiser, BluezConfig};
use hybrid_ctap::testing::{SeededRng, TestEnv};
use hybrid_ctap::{Authenticator, Config, RequestContext};
use hybrid_interop_chromium::{arg_value, event};
use hybrid_noise::{Ephemeral, Frame, PostHandshakeMessage, Responder};
use hybrid_tunnel::client::{connect_new, ClientOptions};
use hybrid_tunnel::{TunnelBase, TunnelId};
use rand_core::RngCore;

struct Opts {
    qr_file: PathBuf,
    tunnel_url: String,
    client: ClientOptions,
    events: Option<PathBuf>,
    wait_for_desktop: Duration,
    idle: Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(qr_file), Some(tunnel_url)) = (
        arg_value(&args, "--qr-file"),
        arg_value(&args, "--tunnel-url"),
    ) else {
        eprintln!("usage: interop-phone --qr-file F --tunnel-url URL [--extra-ca F] [--radio bluez|file] [--advert-file F] [--events F] [--wait-for-desktop-secs S] [--sessions N]");
        return ExitCode::from(2);
    };
    let secs = |name: &str, default: u64| {
        arg_value(&args, name)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let opts = Opts {
        qr_file: qr_file.into(),
        tunnel_url,
        client: ClientOptions {
            extra_ca_file: arg_value(&args, "--extra-ca").map(PathBuf::from),
            webpki_roots: false,
            ..ClientOptions::default()
        },
        events: arg_value(&args, "--events").map(PathBuf::from),
        wait_for_desktop: Duration::from_secs(secs("--wait-for-desktop-secs", 20)),
        idle: Duration::from_secs(30),
    };
    let sessions = secs("--sessions", 0);
    let radio_kind = arg_value(&args, "--radio").unwrap_or_else(|| "bluez".to_owned());
    let mut radio: Box<dyn Advertiser> = match radio_kind.as_str() {
        "bluez" => match BluezAdvertiser::system(BluezConfig::default()).await {
            Ok(a) => Box::new(a),
            Err(e) => {
                eprintln!("interop-phone: BlueZ: {} ({})", e.summary(), e.fix());
                return ExitCode::FAILURE;
            }
        },
        "file" => match arg_value(&args, "--advert-file") {
            Some(p) => Box::new(FileRadio::to_file(p)),
            None => {
                eprintln!("interop-phone: --radio file needs --advert-file");
                return ExitCode::from(2);
            }
        },
        other => {
            eprintln!("interop-phone: unknown radio {other}");
            return ExitCode::from(2);
        }
    };
    let mut auth = Authenticator::new(
        Config::default(),
        TestEnv {
            rng: SeededRng::new(rand_core::OsRng.next_u64()),
            ..TestEnv::new(0)
        },
    );
    println!("PHONE READY radio={radio_kind}");
    let mut last_uri = String::new();
    let mut n = 0u64;
    loop {
        // Wait for the next scan.
        let uri = loop {
            if let Ok(s) = std::fs::read_to_string(&opts.qr_file) {
                let s = s.trim().to_owned();
                if s.starts_with("FIDO:/") && s != last_uri {
                    break s;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        last_uri.clone_from(&uri);
        n += 1;
        event(opts.events.as_deref(), "QR_RECEIVED", &n.to_string());
        let result = session(&opts, &uri, radio.as_mut(), &mut auth).await;
        if let Err(e) = radio.stop().await {
            eprintln!("interop-phone: stopping the advert: {e}");
        }
        auth.end_session();
        match result {
            Ok(summary) => {
                event(opts.events.as_deref(), "SESSION_OK", &n.to_string());
                println!("SESSION {n} OK {summary}");
            }
            Err(reason) => {
                event(opts.events.as_deref(), "SESSION_FAIL", &n.to_string());
                println!("SESSION {n} FAIL {reason}");
            }
        }
        if sessions != 0 && n >= sessions {
            return ExitCode::SUCCESS;
        }
    }
}

/// One hybrid transaction (§10 steps 1-8). Errors are one-line reasons.
async fn session(
    opts: &Opts,
    uri: &str,
    radio: &mut dyn Advertiser,
    auth: &mut Authenticator<TestEnv>,
) -> Result<String, String> {
    let qr = hybrid_qr::parse(uri).map_err(|e| format!("QR: {e}"))?;
    let peer = qr
        .peer_public_key()
        .ok_or_else(|| "QR: identity key is not a P-256 point".to_owned())?;
    let base = TunnelBase::url(&opts.tunnel_url, 0).map_err(|e| format!("tunnel URL: {e}"))?;
    let tid = TunnelId(hybrid_ble::tunnel_id(qr.secret()));
    let (mut tunnel, routing_id) = connect_new(&base, &tid, &opts.client)
        .await
        .map_err(|e| format!("tunnel: {e}"))?;
    event(opts.events.as_deref(), "TUNNEL_OPEN", "");
    let mut rng = rand_core::OsRng;
    let plain = EidPlaintext::random(&mut rng, routing_id.0, base.domain_id());
    let advert = hybrid_ble::encrypt(&EidKey::from_secret(qr.secret()), &plain);
    radio
        .start(&advert)
        .await
        .map_err(|e| format!("advert: {e}"))?;
    event(opts.events.as_deref(), "ADVERT_STARTED", "");
    let psk = hybrid_ble::psk(qr.secret(), &plain);
    let msg1 = match tokio::time::timeout(opts.wait_for_desktop, tunnel.recv()).await {
        Err(_) => {
            let _ = tunnel.close().await;
            return Err(format!(
                "timeout: no desktop within {}s (wait_for_desktop)",
                opts.wait_for_desktop.as_secs()
            ));
        }
        Ok(Ok(Some(m))) => m,
        Ok(Ok(None)) => return Err("tunnel closed before the desktop's handshake".to_owned()),
        Ok(Err(e)) => return Err(format!("tunnel: {e}")),
    };
    event(opts.events.as_deref(), "DESKTOP_HANDSHAKE", "");
    let (msg2, est) = Responder::qr(psk.as_bytes(), &peer)
        .respond(&msg1, Ephemeral::Random(&mut rng))
        .map_err(|e| format!("handshake: {e}"))?;
    tunnel
        .send(msg2)
        .await
        .map_err(|e| format!("tunnel: {e}"))?;
    let (mut crypter, _) = est.into_parts();
    let phm = PostHandshakeMessage::ctap(auth.get_info().to_cbor()).encode();
    let ct = crypter.encrypt(&phm).map_err(|e| format!("encrypt: {e}"))?;
    tunnel.send(ct).await.map_err(|e| format!("tunnel: {e}"))?;
    let ctx = RequestContext::default();
    let mut log = Vec::new();
    loop {
        let ct = match tokio::time::timeout(opts.idle, tunnel.recv()).await {
            Err(_) => return Err(format!("idle timeout after {log:?}")),
            Ok(Ok(Some(ct))) => ct,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                if log.is_empty() {
                    return Err(format!("tunnel: {e}"));
                }
                break;
            }
        };
        let plain = crypter.decrypt(&ct).map_err(|e| format!("decrypt: {e}"))?;
        match Frame::parse(&plain).map_err(|e| format!("frame: {e}"))? {
            Frame::Ctap(req) => {
                let resp = auth.process(&req, &ctx);
                log.push(format!(
                    "{:02x}->{:02x}",
                    req.first().copied().unwrap_or(0),
                    resp.first().copied().unwrap_or(0)
                ));
                let frame = Frame::Ctap(resp).encode();
                let ct = crypter
                    .encrypt(&frame)
                    .map_err(|e| format!("encrypt: {e}"))?;
                tunnel.send(ct).await.map_err(|e| format!("tunnel: {e}"))?;
                event(opts.events.as_deref(), "CTAP_RESPONSE", &log.join(","));
            }
            Frame::Shutdown => break,
            Frame::Update(_) | Frame::Json(_) => {}
        }
    }
    let _ = tunnel.close().await;
    if log.is_empty() {
        return Err("desktop closed without a CTAP request".to_owned());
    }
    Ok(format!("ctap=[{}]", log.join(",")))
}
