//! The phone under test of `hybrid-bench ceremony`: any command, started
//! once per run, handed one `FIDO:/` URI per ceremony.
//!
//! Placeholders in the command: `{tunnel}` (the loopback tunnel server,
//! `ws://127.0.0.1:PORT`), `{advert}` (the advert file: 40 hex characters
//! and a newline per advert, as `hybridd run --advert-file` writes them),
//! `{socket}`, `{vault}`, `{pin}` (a throwaway vault and its PIN file, made
//! by the benchmark) and `{dir}` (a private directory).
//!
//! Two ways to drive it:
//! * a command with `{socket}` is a hybridd daemon: ready once the control
//!   socket accepts, each URI goes in as `{"scan": …}` and the ceremony
//!   ends with its `done` (docs/operations.md, "Control protocol");
//! * any other command prints `ready` on stdout, reads one URI per stdin
//!   line and answers each with one stdout line, `ok` or `error: …`.
//!
//! The phone's stderr is read line by line: `hybridd::timing` lines (the
//! daemon's own phase times, `RUST_LOG=…,hybridd::timing=debug`) are
//! collected ([`Timing`]); the last few other lines are kept for error
//! messages. The command runs under `sh -c 'exec env …'`, so the measured
//! pid is the phone's own.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hybridd::control::{Client, ClientMsg, DaemonMsg};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::server::{terminate, ServerSpec, STOP_TIMEOUT};
use crate::BenchError;

/// Bound on a phone coming up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Other stderr lines kept for error messages.
const KEPT_LINES: usize = 8;

/// Paths and addresses a phone command's placeholders stand for.
#[derive(Debug, Clone)]
pub struct Places {
    /// `{tunnel}`.
    pub tunnel: String,
    /// `{advert}`.
    pub advert: PathBuf,
    /// `{socket}`.
    pub socket: PathBuf,
    /// `{vault}`.
    pub vault: PathBuf,
    /// `{pin}`.
    pub pin: PathBuf,
    /// `{dir}`.
    pub dir: PathBuf,
}

impl Places {
    fn fill(&self, command: &str) -> String {
        command
            .replace("{tunnel}", &self.tunnel)
            .replace("{advert}", &self.advert.display().to_string())
            .replace("{socket}", &self.socket.display().to_string())
            .replace("{vault}", &self.vault.display().to_string())
            .replace("{pin}", &self.pin.display().to_string())
            .replace("{dir}", &self.dir.display().to_string())
    }
}

/// The message of hybridd's one timing line per session.
pub const SESSION_LINE: &str = "ceremony timings";

/// One `hybridd::timing` line: its message and its integer fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// [`SESSION_LINE`] (the phases, and the first request's `command`,
    /// `ctap_us` and `user_us`) or `request timings` (a further request).
    pub message: String,
    /// `name=value` fields.
    pub fields: Vec<(String, i64)>,
}

impl Timing {
    /// A field's value.
    pub fn get(&self, name: &str) -> Option<i64> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// Parses a tracing-subscriber `fmt` line of the target
    /// `hybridd::timing` (ANSI colours stripped); `None` for other lines.
    pub fn parse(line: &str) -> Option<Timing> {
        let plain = strip_ansi(line);
        let rest = plain.split_once("hybridd::timing:")?.1;
        let mut message = Vec::new();
        let mut fields = Vec::new();
        for word in rest.split_whitespace() {
            match word.split_once('=') {
                Some((k, v)) => {
                    if let Ok(v) = v.parse() {
                        fields.push((k.to_owned(), v));
                    }
                }
                None if fields.is_empty() => message.push(word),
                None => {}
            }
        }
        Some(Timing {
            message: message.join(" "),
            fields,
        })
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ … final byte in @..~
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) && d != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

enum Drive {
    Socket(PathBuf),
    Lines {
        stdin: ChildStdin,
        stdout: Lines<BufReader<ChildStdout>>,
    },
}

/// A running phone.
pub struct Phone {
    name: String,
    child: Child,
    drive: Drive,
    /// Its pid (the `exec`'d command itself).
    pub pid: u32,
    timings: mpsc::UnboundedReceiver<Timing>,
    kept: Arc<Mutex<VecDeque<String>>>,
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phone")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

fn start_error(spec: &ServerSpec, reason: impl Into<String>) -> BenchError {
    BenchError::Start {
        name: spec.name.clone(),
        reason: reason.into(),
    }
}

impl Phone {
    /// Starts `spec` with its placeholders filled and waits (bounded) until
    /// it is ready.
    pub async fn start(spec: &ServerSpec, places: &Places) -> Result<Phone, BenchError> {
        let command = places.fill(&spec.command);
        let socket = spec.command.contains("{socket}");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec env {command}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| start_error(spec, e.to_string()))?;
        let pid = child
            .id()
            .ok_or_else(|| start_error(spec, "exited at once"))?;
        let (stdin, stdout, stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => return Err(start_error(spec, "no pipes")),
            };
        let (tx, timings) = mpsc::unbounded_channel();
        let kept = Arc::new(Mutex::new(VecDeque::new()));
        let kept_w = kept.clone();
        // Reads stderr to its end so the phone never blocks on a full pipe.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match Timing::parse(&line) {
                    Some(t) => {
                        let _ = tx.send(t);
                    }
                    None => {
                        if let Ok(mut k) = kept_w.lock() {
                            if k.len() == KEPT_LINES {
                                k.pop_front();
                            }
                            k.push_back(line);
                        }
                    }
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let drive = if socket {
            drop(stdin);
            // stdout is not part of the protocol: drain it.
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(_)) = lines.next_line().await {}
            });
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(start_error(spec, format!("exited with {status}")));
                }
                if tokio::net::UnixStream::connect(&places.socket)
                    .await
                    .is_ok()
                {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(start_error(spec, "the control socket never accepted"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Drive::Socket(places.socket.clone())
        } else {
            let mut stdout = BufReader::new(stdout).lines();
            match tokio::time::timeout_at(deadline, stdout.next_line()).await {
                Ok(Ok(Some(l))) if l.trim() == "ready" => {}
                Ok(Ok(Some(l))) => return Err(start_error(spec, format!("said {l:?}, not ready"))),
                Ok(_) => return Err(start_error(spec, "ended before saying ready")),
                Err(_) => return Err(start_error(spec, "did not say ready in time")),
            }
            Drive::Lines { stdin, stdout }
        };
        Ok(Phone {
            name: spec.name.clone(),
            child,
            drive,
            pid,
            timings,
            kept,
        })
    }

    /// Hands `uri` to the phone and waits for the ceremony's end (unbounded
    /// here: the caller bounds it). `Err` names why it failed.
    pub async fn ceremony(&mut self, uri: String) -> Result<(), String> {
        match &mut self.drive {
            Drive::Socket(path) => {
                let mut c = Client::connect(path)
                    .await
                    .map_err(|e| format!("control socket: {e}"))?;
                c.send(&ClientMsg::Scan(Zeroizing::new(uri)))
                    .await
                    .map_err(|e| format!("control socket: {e}"))?;
                loop {
                    match c.recv().await {
                        Ok(Some(DaemonMsg::Done(d))) if d.ok => return Ok(()),
                        Ok(Some(DaemonMsg::Done(d))) => {
                            return Err(format!("phone: {}", d.outcome))
                        }
                        Ok(Some(DaemonMsg::Busy(_))) => return Err("phone: busy".into()),
                        Ok(Some(DaemonMsg::Error(e))) => return Err(format!("phone: {e}")),
                        Ok(Some(_)) => {}
                        Ok(None) => return Err("phone: socket closed".into()),
                        Err(e) => return Err(format!("control socket: {e}")),
                    }
                }
            }
            Drive::Lines { stdin, stdout } => {
                let line = format!("{uri}\n");
                stdin
                    .write_all(line.as_bytes())
                    .await
                    .map_err(|e| format!("phone stdin: {e}"))?;
                stdin
                    .flush()
                    .await
                    .map_err(|e| format!("phone stdin: {e}"))?;
                match stdout.next_line().await {
                    Ok(Some(l)) if l.trim() == "ok" => Ok(()),
                    Ok(Some(l)) => Err(format!("phone: {}", l.trim())),
                    Ok(None) => Err("phone: stdout ended".into()),
                    Err(e) => Err(format!("phone stdout: {e}")),
                }
            }
        }
    }

    /// Timing lines received so far.
    pub fn take_timings(&mut self) -> Vec<Timing> {
        let mut out = Vec::new();
        while let Ok(t) = self.timings.try_recv() {
            out.push(t);
        }
        out
    }

    /// Waits (at most `within`) until the `ceremony timings` lines of
    /// `sessions` sessions arrived (hybridd writes one per session, last),
    /// and returns every timing line received.
    pub async fn wait_timings(&mut self, sessions: usize, within: Duration) -> Vec<Timing> {
        let mut out = self.take_timings();
        let deadline = Instant::now() + within;
        let mut ended = out.iter().filter(|t| t.message == SESSION_LINE).count();
        while ended < sessions {
            match tokio::time::timeout_at(deadline, self.timings.recv()).await {
                Ok(Some(t)) => {
                    ended += usize::from(t.message == SESSION_LINE);
                    out.push(t);
                }
                _ => break,
            }
        }
        out
    }

    /// The last stderr lines that were not timing lines.
    pub fn last_lines(&self) -> Vec<String> {
        self.kept
            .lock()
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Ends the phone: its input closed (line phones end by themselves),
    /// then SIGTERM, then SIGKILL, each bounded.
    pub async fn stop(mut self) {
        if let Drive::Lines { stdin, .. } = self.drive {
            drop(stdin);
            if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        terminate(&mut self.child, self.pid).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_lines() {
        let l = "\u{1b}[2m2026-12-02T11:00:00.000001Z\u{1b}[0m \u{1b}[34mDEBUG\u{1b}[0m \
                 \u{1b}[2mhybridd::timing\u{1b}[0m\u{1b}[2m:\u{1b}[0m ceremony timings \
                 \u{1b}[3mtunnel_open_us\u{1b}[0m\u{1b}[2m=\u{1b}[0m1200 \
                 \u{1b}[3mpost_handshake_us\u{1b}[0m\u{1b}[2m=\u{1b}[0m-1";
        let t = Timing::parse(l).unwrap();
        assert_eq!(t.message, "ceremony timings");
        assert_eq!(t.get("tunnel_open_us"), Some(1200));
        assert_eq!(t.get("post_handshake_us"), Some(-1));
        assert_eq!(t.get("nope"), None);
        let session =
            "2026-12-05T04:00:00Z DEBUG hybridd::timing: ceremony timings tunnel_open_us=140 \
                       first_advert_us=160 handshake_reply_us=230 post_handshake_us=230 \
                       command=2 ctap_us=410 user_us=700";
        let t = Timing::parse(session).unwrap();
        assert_eq!(t.message, SESSION_LINE);
        assert_eq!(t.get("command"), Some(2));
        assert_eq!(t.get("ctap_us"), Some(410));
        let plain = "2026-12-02T11:00:00Z DEBUG hybridd::timing: request timings command=1 ctap_us=900 user_us=40";
        let t = Timing::parse(plain).unwrap();
        assert_eq!(t.message, "request timings");
        assert_eq!(t.get("command"), Some(1));
        assert_eq!(t.get("ctap_us"), Some(900));
        assert!(Timing::parse("2026 INFO hybridd::ceremony: tunnel open").is_none());
    }
}
