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
//! A client that cannot answer — no controlling terminal, and standard
//! input either held the QR (`hybridd scan -` in a pipe) or is `/dev/null`
//! (a `FIDO:/` link handed over by `xdg-open` through
//! `dist/hybridd.desktop`) — says so (`"terminal": false`) and the daemon
//! asks through a desktop notification instead. Without a terminal but
//! with a readable standard input, the y/N answer is read there, as before.
//! `--detach` (what `dist/hybridd.desktop` runs for a link) hands the QR
//! code over and returns as soon as the session is under way, so the link
//! is readable in this process's `/proc/PID/cmdline` only until then; the
//! daemon asks through the desktop and carries on without the client.
//!
//! Exit status: 0 success; 1 the session failed (reason printed) — this
//! includes a QR refused before any network use (`qr_invalid`, `qr_stale`,
//! `qr_replayed`: ask the desktop for a new QR); 2 bad input or
//! configuration; 69 no daemon (EX_UNAVAILABLE); 75 the daemon is busy
//! with another session (EX_TEMPFAIL).
//!
//! `--standalone` runs one session per process, so the replay policy
//! (`crate::replay`) cannot refuse anything there; it applies to the
//! daemon, which lives across scans. Both modes show the prompt with the
//! same renderer ([`crate::prompt::Prompt::describe`]) and ask with the same
//! terminal front-end ([`TerminalApprover`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::approval::{Answer, Approver, TerminalApprover};
use crate::ceremony::{Progress, SessionEvent};
use crate::cmd::run::{Daemon, FrontEnd};
use crate::config::{self, Overrides};
use crate::control::{Client, ClientMsg, DaemonMsg, Done, Event, ScanMode};
use crate::error::{Error, QrImageError};
use crate::peer_text;

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
    #[arg(long, conflicts_with = "detach")]
    pub standalone: bool,
    /// Hand the QR code to the daemon and return as soon as the session is
    /// under way; the daemon asks through the desktop (a notification).
    /// For `FIDO:/` links (`dist/hybridd.desktop`): the link is readable in
    /// this process's arguments only until then.
    #[arg(long)]
    pub detach: bool,
    /// Settings (the socket for the client; everything for --standalone).
    #[command(flatten)]
    pub overrides: Overrides,
}

/// Decodes the first QR code found in an image file.
pub fn decode_qr_image(path: &Path) -> Result<String, QrImageError> {
    let img = image::open(path)
        .map_err(|source| QrImageError::Read {
            path: path.to_owned(),
            source,
        })?
        .to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(img);
    let mut last_err = QrImageError::NotFound;
    for g in prepared.detect_grids() {
        match g.decode() {
            Ok((_, content)) => return Ok(content),
            Err(e) => last_err = QrImageError::Undecodable(e),
        }
    }
    Err(last_err)
}

fn read_uri(args: &Args) -> Result<Zeroizing<String>, Error> {
    if let Some(p) = &args.qr_image {
        return Ok(Zeroizing::new(decode_qr_image(p)?));
    }
    match args.uri.as_deref() {
        Some("-") => {
            let mut s = Zeroizing::new(String::new());
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(Error::Stdin)?;
            Ok(Zeroizing::new(s.trim().to_owned()))
        }
        Some(u) => Ok(Zeroizing::new(u.trim().to_owned())),
        None => Err(Error::NoQr),
    }
}

/// What a progress event says on this terminal.
fn event_text(e: Event) -> Option<&'static str> {
    Some(match e {
        Event::TunnelOpen => "tunnel open",
        Event::Advertising => {
            "advert out (Bluetooth, or the file radio); waiting for the computer…"
        }
        Event::DesktopConnected => "the computer connected",
        Event::Request => "request received",
        Event::NextAccount => "the computer collected another account of this sign-in",
        Event::Unknown => return None,
    })
}

/// `--standalone`'s progress: the same lines the client prints.
struct Stderr;

impl Progress for Stderr {
    fn event(&self, progress: &SessionEvent) {
        if let Some(text) = Event::of(progress).and_then(event_text) {
            eprintln!("{text}");
        }
    }
}

/// Cap for a daemon message shown on this terminal.
const MAX_MESSAGE_CHARS: usize = 512;

/// Daemon text (a notice, an outcome, an error) for this terminal: it may
/// quote what a peer sent, so it goes through [`peer_text::for_terminal`]
/// like the prompt does.
fn shown(text: &str) -> String {
    peer_text::for_terminal(text, MAX_MESSAGE_CHARS)
}

fn finish(done: &Done) -> ExitCode {
    if done.ok {
        println!("done: {}", shown(&done.message));
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "failed [{}]: {}",
            shown(&done.outcome),
            shown(&done.message)
        );
        ExitCode::FAILURE
    }
}

/// Runs `hybridd scan`.
pub fn run(args: Args) -> ExitCode {
    crate::cmd::exit("scan", scan(&args))
}

fn scan(args: &Args) -> Result<ExitCode, Error> {
    let uri = read_uri(args)?;
    let rt = crate::cmd::runtime()?;
    if args.standalone {
        crate::cmd::init_logging();
        return rt.block_on(standalone(&args.overrides, uri));
    }
    let socket = match &args.overrides.socket {
        Some(s) => s.clone(),
        None => config::load(&args.overrides)?.socket_path()?.to_owned(),
    };
    let uri_from_stdin = args.qr_image.is_none() && args.uri.as_deref() == Some("-");
    let mode = if args.detach {
        ScanMode::HandOff
    } else if can_answer(uri_from_stdin) {
        ScanMode::Terminal
    } else {
        ScanMode::Desktop
    };
    Ok(rt.block_on(client(&socket, uri, mode)))
}

/// Whether this client can answer the daemon's prompt itself: on its
/// controlling terminal or, as before, with a y/N line on standard input.
/// Not when standard input held the QR code (`hybridd scan -` in a pipe)
/// or is `/dev/null` — what a desktop launcher gives the handler of a
/// `FIDO:/` link opened by `xdg-open`. Then the daemon asks through the
/// desktop (a notification).
fn can_answer(uri_from_stdin: bool) -> bool {
    if crate::approval::Tty::open().is_ok() {
        return true;
    }
    if uri_from_stdin {
        return false;
    }
    match rustix::fs::fstat(std::io::stdin()) {
        // A character device that is not our terminal: /dev/null.
        Ok(st) => {
            rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::CharacterDevice
        }
        Err(_) => false,
    }
}

async fn client(socket: &Path, uri: Zeroizing<String>, mode: ScanMode) -> ExitCode {
    let mut c = match Client::connect(socket).await {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            // Not the user's own daemon (or not provably): nothing was sent.
            eprintln!("hybridd scan: {e}; nothing was sent");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!(
                "hybridd scan: no daemon on {} ({e}); start it with `systemctl --user start hybridd` \
                 or `hybridd run`, or use --standalone",
                socket.display()
            );
            return ExitCode::from(EXIT_NO_DAEMON);
        }
    };
    if let Err(e) = c.send(&ClientMsg::scan(uri, mode)).await {
        eprintln!("hybridd scan: lost the daemon: {e}");
        return ExitCode::FAILURE;
    }
    let mut terminal = TerminalApprover;
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
            DaemonMsg::Event(e) => {
                if let Some(text) = event_text(e) {
                    eprintln!("{text}");
                }
                if mode == ScanMode::HandOff {
                    // The QR code passed the daemon's checks and the
                    // session is under way: the desktop asks from here.
                    println!(
                        "handed to the daemon: it asks through a desktop notification \
                         (the outcome is in its log)"
                    );
                    return ExitCode::SUCCESS;
                }
            }
            DaemonMsg::Notice(n) => eprintln!("{}", shown(&n)),
            DaemonMsg::Prompt(p) => {
                let reply = match terminal.ask(&p).await {
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
                let b = shown(&b);
                eprintln!("hybridd scan: the daemon is busy: {b}; try again when it is done");
                return ExitCode::from(EXIT_BUSY);
            }
            DaemonMsg::Error(e) => {
                eprintln!("hybridd scan: the daemon refused: {}", shown(&e));
                return ExitCode::from(2);
            }
            DaemonMsg::Pong(_) => {}
        }
    }
}

/// The ceremony in this process, asking on this terminal. SIGINT/SIGTERM
/// cancels it (the advert stops, the tunnel closes) and ends as
/// `cancelled`, "interrupted".
async fn standalone(o: &Overrides, uri: Zeroizing<String>) -> Result<ExitCode, Error> {
    let cfg = config::load(o)?;
    let daemon = Daemon::open(cfg).await?;
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let front_end = FrontEnd::Terminal(Box::new(TerminalApprover));
    let ceremony = daemon.ceremony(&uri, front_end, &Stderr, cancel_rx);
    tokio::pin!(ceremony);
    let done = tokio::select! {
        report = &mut ceremony => report.done(),
        _ = crate::cmd::terminate_signal() => {
            let _ = cancel_tx.send(true);
            let _ = ceremony.await;
            Done { ok: false, outcome: "cancelled".into(), message: "interrupted".into() }
        }
    };
    Ok(finish(&done))
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
}
