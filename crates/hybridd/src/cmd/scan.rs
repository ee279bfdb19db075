//! `hybridd scan <FIDO:/…>`: hand a desktop's QR code to the daemon and
//! answer its approval prompt on this terminal.
//!
//! The QR comes from the argument, from standard input (`-`), or from a
//! screenshot (`--qr-image FILE`, PNG or JPEG, decoded with `rqrr`). The
//! client shows what is asked (create a passkey / sign in, RP, account, QR
//! age), asks y/N and the PIN without echo, and prints the outcome with a
//! named reason. `--standalone` runs the same ceremony in this process with
//! the terminal approver and the same config and flags as `hybridd run`.
//!
//! Exit status: 0 success; 1 the session failed (reason printed) — this
//! includes a QR refused before any network use (`qr_invalid`, `qr_stale`,
//! `qr_replayed`: ask the desktop for a new QR); 2 bad input or
//! configuration; 69 no daemon (EX_UNAVAILABLE); 75 the daemon is busy
//! with another session (EX_TEMPFAIL).
//!
//! `--standalone` runs one session per process, so the replay policy
//! (`crate::replay`) cannot refuse anything there; it applies to the
//! daemon, which lives across scans.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use zeroize::Zeroizing;

use crate::approval::{terminal_exchange, Answer, TerminalApprover};
use crate::config::{self, Overrides};
use crate::control::{Client, ClientMsg, DaemonMsg, Done};

/// EX_TEMPFAIL: the daemon is busy.
pub const EXIT_BUSY: u8 = 75;
/// EX_UNAVAILABLE: no daemon answers.
pub const EXIT_NO_DAEMON: u8 = 69;

/// Arguments of `hybridd scan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `FIDO:/…` URI, or `-` for standard input.
    #[arg(required_unless_present = "qr_image")]
    pub uri: Option<String>,
    /// Read the QR code from a screenshot (PNG or JPEG).
    #[arg(long, value_name = "FILE", conflicts_with = "uri")]
    pub qr_image: Option<PathBuf>,
    /// Run the ceremony in this process (no daemon), asking on this terminal.
    #[arg(long)]
    pub standalone: bool,
    /// Settings (the socket for the client; everything for --standalone).
    #[command(flatten)]
    pub overrides: Overrides,
}

/// Decodes the first QR code found in an image file.
pub fn decode_qr_image(path: &Path) -> Result<String, String> {
    let img = image::open(path)
        .map_err(|e| format!("cannot read image {}: {e}", path.display()))?
        .to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(img);
    let grids = prepared.detect_grids();
    let mut last_err = "no QR code found in the image".to_owned();
    for g in grids {
        match g.decode() {
            Ok((_, content)) => return Ok(content),
            Err(e) => last_err = format!("a QR code was found but could not be decoded: {e}"),
        }
    }
    Err(last_err)
}

fn read_uri(args: &Args) -> Result<Zeroizing<String>, String> {
    if let Some(p) = &args.qr_image {
        return decode_qr_image(p).map(Zeroizing::new);
    }
    match args.uri.as_deref() {
        Some("-") => {
            let mut s = Zeroizing::new(String::new());
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            Ok(Zeroizing::new(s.trim().to_owned()))
        }
        Some(u) => Ok(Zeroizing::new(u.trim().to_owned())),
        None => Err("no QR code given".into()),
    }
}

/// The human text for a prompt received over the control socket.
pub fn describe_prompt(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    let mut out = format!(
        "A computer asks to {} for {}",
        s("action").unwrap_or("do something"),
        s("rp_id").unwrap_or("?")
    );
    if let Some(n) = s("rp_name") {
        out.push_str(&format!(" ({n})"));
    }
    out.push('\n');
    match (s("user_name"), s("user_display_name")) {
        (Some(n), Some(d)) if n != d => out.push_str(&format!("  account: {d} <{n}>\n")),
        (Some(n), _) | (None, Some(n)) => out.push_str(&format!("  account: {n}\n")),
        (None, None) => {}
    }
    if let Some(age) = v.get("qr_age_secs").and_then(Value::as_u64) {
        out.push_str(&format!("  QR code scanned {age} s after it was shown\n"));
    }
    if let Some(n) = s("notice") {
        out.push_str(&format!("  {n}\n"));
    }
    out
}

fn event_text(e: &str) -> &str {
    match e {
        "tunnel_open" => "tunnel open",
        "advertising" => "advert out (Bluetooth, or the file radio); waiting for the computer…",
        "desktop_connected" => "the computer connected",
        "request" => "request received",
        "next_account" => "the computer collected another account of this sign-in",
        other => other,
    }
}

fn finish(done: &Done) -> ExitCode {
    if done.ok {
        println!("done: {}", done.message);
        ExitCode::SUCCESS
    } else {
        eprintln!("failed [{}]: {}", done.outcome, done.message);
        ExitCode::FAILURE
    }
}

/// Runs `hybridd scan`.
pub fn run(args: Args) -> ExitCode {
    let uri = match read_uri(&args) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("hybridd scan: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match crate::cmd::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hybridd scan: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.standalone {
        crate::cmd::init_logging();
        return rt.block_on(standalone(&args.overrides, uri));
    }
    let socket = match &args.overrides.socket {
        Some(s) => s.clone(),
        None => match config::load(&args.overrides) {
            Ok(c) => c.socket,
            Err(e) => {
                eprintln!("hybridd scan: {e}");
                return ExitCode::from(2);
            }
        },
    };
    rt.block_on(client(&socket, uri))
}

async fn client(socket: &Path, uri: Zeroizing<String>) -> ExitCode {
    let mut c = match Client::connect(socket).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "hybridd scan: no daemon on {} ({e}); start it with `systemctl --user start hybridd` \
                 or `hybridd run`, or use --standalone",
                socket.display()
            );
            return ExitCode::from(EXIT_NO_DAEMON);
        }
    };
    if let Err(e) = c.send(&ClientMsg::Scan(uri)).await {
        eprintln!("hybridd scan: lost the daemon: {e}");
        return ExitCode::FAILURE;
    }
    loop {
        let msg = match c.recv().await {
            Ok(Some(m)) => m,
            Ok(None) => {
                eprintln!(
                    "hybridd scan: the daemon closed the connection before the session ended"
                );
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("hybridd scan: lost the daemon: {e}");
                return ExitCode::FAILURE;
            }
        };
        match msg {
            DaemonMsg::Event(e) => eprintln!("{}", event_text(&e)),
            DaemonMsg::Notice(n) => eprintln!("{n}"),
            DaemonMsg::Prompt(p) => {
                let text = describe_prompt(&p);
                let needs_pin = p.get("needs_pin").and_then(Value::as_bool).unwrap_or(true);
                let answer =
                    tokio::task::spawn_blocking(move || terminal_exchange(&text, needs_pin))
                        .await
                        .unwrap_or(Err(hybrid_ctap::UserError::Cancelled));
                let reply = match answer {
                    Ok(Answer::Approve(pin)) => ClientMsg::Approve { approve: true, pin },
                    _ => ClientMsg::Approve {
                        approve: false,
                        pin: None,
                    },
                };
                if let Err(e) = c.send(&reply).await {
                    eprintln!("hybridd scan: lost the daemon: {e}");
                    return ExitCode::FAILURE;
                }
            }
            DaemonMsg::Done(d) => return finish(&d),
            DaemonMsg::Busy(b) => {
                eprintln!("hybridd scan: the daemon is busy: {b}; try again when it is done");
                return ExitCode::from(EXIT_BUSY);
            }
            DaemonMsg::Error(e) => {
                eprintln!("hybridd scan: the daemon refused: {e}");
                return ExitCode::from(2);
            }
            DaemonMsg::Pong { .. } => {}
        }
    }
}

async fn standalone(o: &Overrides, uri: Zeroizing<String>) -> ExitCode {
    let cfg = match config::load(o) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hybridd scan: {e}");
            return ExitCode::from(2);
        }
    };
    let vault = match crate::cmd::run::open_vault(&cfg.vault) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("hybridd scan: {e}");
            return ExitCode::FAILURE;
        }
    };
    let approver: Box<dyn crate::approval::Approver> = match crate::cmd::run::auto_approver(&cfg) {
        Ok(Some(a)) => Box::new(a),
        Ok(None) => Box::new(TerminalApprover),
        Err(e) => {
            eprintln!("hybridd scan: {e}");
            return ExitCode::from(2);
        }
    };
    let mut radio = match crate::cmd::run::make_radio(&cfg).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hybridd scan: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let printer = tokio::spawn(async move {
        while let Some(m) = ev_rx.recv().await {
            match m {
                DaemonMsg::Event(e) => eprintln!("{}", event_text(&e)),
                DaemonMsg::Notice(n) => eprintln!("{n}"),
                _ => {}
            }
        }
    });
    // One session per process: the set only keeps the code path shared.
    let replay = std::sync::Mutex::new(crate::replay::ReplaySet::default());
    let ceremony = crate::cmd::run::run_ceremony(
        &cfg,
        &vault,
        radio.as_mut(),
        &replay,
        uri,
        approver,
        ev_tx,
        cancel_rx,
    );
    let done = tokio::select! {
        d = ceremony => d,
        _ = crate::cmd::terminate_signal() => {
            let _ = cancel_tx.send(true);
            Done { ok: false, outcome: "cancelled".into(), message: "interrupted".into() }
        }
    };
    let _ = printer.await;
    finish(&done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_image_png_round_trip() {
        let uri = "FIDO:/162870791865632382552704231438327900152302540348097243854039966655366469794954476199158014113179232779520163209900691930075274801398564434658077048963842109321447142660";
        let code = qrcode::QrCode::new(uri.as_bytes()).unwrap();
        let w = code.width();
        let colors = code.to_colors();
        let (scale, quiet) = (6u32, 4u32);
        let side = (w as u32 + 2 * quiet) * scale;
        let img = image::GrayImage::from_fn(side, side, |x, y| {
            let (cx, cy) = (x / scale, y / scale);
            let dark = cx >= quiet
                && cy >= quiet
                && cx < quiet + w as u32
                && cy < quiet + w as u32
                && colors[((cy - quiet) as usize) * w + (cx - quiet) as usize]
                    == qrcode::Color::Dark;
            image::Luma([if dark { 0 } else { 255 }])
        });
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("qr.png");
        img.save(&f).unwrap();
        assert_eq!(decode_qr_image(&f).unwrap(), uri);
        std::fs::write(dir.path().join("blank.png"), b"not a png").unwrap();
        assert!(decode_qr_image(&dir.path().join("blank.png")).is_err());
    }

    #[test]
    fn prompt_text_from_json() {
        let v = serde_json::json!({"action": "sign in", "rp_id": "example.com", "user_name": "alice", "qr_age_secs": 7});
        let t = describe_prompt(&v);
        assert!(
            t.contains("sign in for example.com") && t.contains("alice") && t.contains("7 s"),
            "{t}"
        );
    }
}
