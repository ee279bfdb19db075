//! The PIN through the user's pinentry (`pinentry-gnome3`, `-qt`,
//! `-curses`, `-tty`, …), spoken to over its stdin/stdout with the Assuan
//! protocol ([`crate::assuan`]).
//!
//! The configured program is spawned directly (no shell) with no
//! arguments; it inherits the environment (a graphical pinentry needs
//! `DISPLAY`/`WAYLAND_DISPLAY` and the session bus) and its stderr goes
//! nowhere. After the greeting: `OPTION ttyname`/`ttytype` only when a
//! terminal is configured (a terminal pinentry needs one: it cannot use
//! its stdin, which is our pipe), `OPTION display` only when one is
//! configured, then per request `SETTIMEOUT` (a second past the deadline), `SETTITLE`, `SETDESC`, `SETPROMPT`, `SETERROR` on a
//! retry and `GETPIN`. The PIN arrives in `D` lines, is %-decoded into a
//! zeroized buffer of fixed capacity, and is returned as a
//! `Zeroizing<String>`: never on a command line, in the environment, or
//! in a log. `OPTION allow-external-password-cache` is never sent, so no
//! pinentry offers to store the PIN in a keyring.
//!
//! Every wait is bounded by the caller's deadline; past it the child is
//! killed and the outcome is [`PinOutcome::TimedOut`]. A pinentry that
//! sends garbage, over-long lines or too much data is killed and reported
//! as [`DesktopError::PinentryProtocol`]; one that exits early as
//! [`DesktopError::PinentryExited`].

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::assuan::{
    self, AssuanError, Receiver, Reply, GPG_ERR_CANCELED, GPG_ERR_FULLY_CANCELED, GPG_ERR_TIMEOUT,
};
use crate::error::DesktopError;

/// How long a pinentry may take to exit after `BYE` or a kill.
const EXIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Which pinentry to run, and where it should show itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinentryConfig {
    /// The program (an absolute path, or a name looked up in `PATH`).
    pub program: PathBuf,
    /// The terminal a terminal pinentry (`-tty`, `-curses`) uses
    /// (`OPTION ttyname`); `None` for a graphical one.
    pub ttyname: Option<PathBuf>,
    /// The terminal type for `ttyname` (`OPTION ttytype`, e.g. `xterm-256color`).
    pub ttytype: Option<String>,
    /// The X display (`OPTION display`); `None` keeps the inherited `DISPLAY`.
    pub display: Option<String>,
}

impl PinentryConfig {
    /// `program`, with no terminal and the inherited display.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        PinentryConfig {
            program: program.into(),
            ttyname: None,
            ttytype: None,
            display: None,
        }
    }
}

/// What the pinentry shows, already rendered (peer strings sanitized).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinRequest<'a> {
    /// The window title (`SETTITLE`).
    pub title: &'a str,
    /// The description: what is approved (`SETDESC`).
    pub description: &'a str,
    /// The prompt next to the entry (`SETPROMPT`), e.g. "PIN:".
    pub prompt: &'a str,
    /// Why the last PIN was refused (`SETERROR`), on a retry.
    pub error: Option<&'a str>,
}

/// How a PIN request ended.
pub enum PinOutcome {
    /// The PIN the person entered.
    Pin(Zeroizing<String>),
    /// The person cancelled.
    Cancelled,
    /// The deadline (or pinentry's own timeout) passed.
    TimedOut,
}

impl std::fmt::Debug for PinOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinOutcome::Pin(_) => f.write_str("Pin(<redacted>)"),
            PinOutcome::Cancelled => f.write_str("Cancelled"),
            PinOutcome::TimedOut => f.write_str("TimedOut"),
        }
    }
}

/// Asks once: starts the pinentry, asks for the PIN, closes it.
pub async fn get_pin(
    config: &PinentryConfig,
    request: &PinRequest<'_>,
    deadline: Instant,
) -> Result<PinOutcome, DesktopError> {
    let Some(mut p) = Pinentry::start(config, deadline).await? else {
        return Ok(PinOutcome::TimedOut);
    };
    let outcome = p.get_pin(request, deadline).await;
    p.close().await;
    outcome
}

/// A running pinentry, greeted and configured. It can be asked several
/// times (a retry after a wrong PIN shows [`PinRequest::error`]). Dropping
/// it kills the child.
pub struct Pinentry {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    receiver: Receiver,
    program: PathBuf,
    dead: bool,
}

impl std::fmt::Debug for Pinentry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinentry")
            .field("program", &self.program)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

fn assuan_detail(e: AssuanError) -> &'static str {
    match e {
        AssuanError::LineTooLong => "a line longer than 1000 bytes",
        AssuanError::DataTooLong => "more than 1024 bytes of data",
        AssuanError::UnknownLine => "an unknown line",
        AssuanError::BadErr => "a malformed ERR line",
        AssuanError::BadEscape => "a malformed %-escape",
        AssuanError::UnexpectedInquire => "an unexpected INQUIRE",
        AssuanError::CommandTooLong => "a command too long",
    }
}

impl Pinentry {
    /// Spawns `config.program`, reads its greeting and sends the options.
    /// `Ok(None)` when `deadline` passed first (the child is killed).
    pub async fn start(
        config: &PinentryConfig,
        deadline: Instant,
    ) -> Result<Option<Self>, DesktopError> {
        let mut child = Command::new(&config.program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| DesktopError::PinentrySpawn {
                program: config.program.clone(),
                detail: e.to_string(),
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(DesktopError::PinentrySpawn {
                program: config.program.clone(),
                detail: "no pipes to the child".to_owned(),
            });
        };
        let mut p = Pinentry {
            child,
            stdin,
            stdout,
            receiver: Receiver::new(),
            program: config.program.clone(),
            dead: false,
        };
        tracing::debug!(program = %p.program.display(), "pinentry started");
        // The greeting.
        match p.reply(deadline).await? {
            None => return Ok(None),
            Some(Reply::Ok) => {}
            Some(Reply::Err { code, message }) => {
                p.kill().await;
                return Err(DesktopError::PinentryFailed {
                    program: p.program.clone(),
                    code,
                    message,
                });
            }
        }
        p.receiver.clear_data();
        if let Some(tty) = &config.ttyname {
            let tty = tty.to_string_lossy();
            if p.optional("OPTION", &format!("ttyname={tty}"), deadline)
                .await?
                .is_none()
            {
                return Ok(None);
            }
            if let Some(t) = &config.ttytype {
                if p.optional("OPTION", &format!("ttytype={t}"), deadline)
                    .await?
                    .is_none()
                {
                    return Ok(None);
                }
            }
        }
        if let Some(d) = &config.display {
            if p.optional("OPTION", &format!("display={d}"), deadline)
                .await?
                .is_none()
            {
                return Ok(None);
            }
        }
        Ok(Some(p))
    }

    /// The child's process id (`None` once it was reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Asks for the PIN before `deadline`.
    pub async fn get_pin(
        &mut self,
        request: &PinRequest<'_>,
        deadline: Instant,
    ) -> Result<PinOutcome, DesktopError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.kill().await;
            return Ok(PinOutcome::TimedOut);
        }
        // pinentry's own timeout is a backstop a second after ours (which
        // kills it): a dialog must not outlive a daemon that died.
        let secs = left.as_secs() + 1 + u64::from(left.subsec_nanos() > 0);
        if self
            .optional("SETTIMEOUT", &secs.to_string(), deadline)
            .await?
            .is_none()
        {
            return Ok(PinOutcome::TimedOut);
        }
        let texts: [(&str, &'static str, Option<&str>); 4] = [
            ("SETTITLE", "title", Some(request.title)),
            ("SETDESC", "description", Some(request.description)),
            ("SETPROMPT", "prompt", Some(request.prompt)),
            ("SETERROR", "error", request.error),
        ];
        for (verb, what, text) in texts {
            let Some(text) = text else { continue };
            match self.required(verb, what, Some(text), deadline).await? {
                None => return Ok(PinOutcome::TimedOut),
                Some(Reply::Ok) => {}
                Some(Reply::Err { code, message }) => {
                    self.kill().await;
                    return Err(DesktopError::PinentryFailed {
                        program: self.program.clone(),
                        code,
                        message,
                    });
                }
            }
        }
        self.receiver.clear_data();
        let reply = match self.required("GETPIN", "GETPIN", None, deadline).await? {
            None => return Ok(PinOutcome::TimedOut),
            Some(r) => r,
        };
        let data = self.receiver.take_data();
        match reply {
            Reply::Ok => {
                let mut bytes = data;
                let v = std::mem::take(&mut *bytes);
                match String::from_utf8(v) {
                    Ok(s) => Ok(PinOutcome::Pin(Zeroizing::new(s))),
                    Err(e) => {
                        drop(Zeroizing::new(e.into_bytes()));
                        self.kill().await;
                        Err(DesktopError::PinentryProtocol {
                            program: self.program.clone(),
                            detail: "a PIN that is not UTF-8",
                        })
                    }
                }
            }
            Reply::Err { code, message } => match code & 0xffff {
                GPG_ERR_CANCELED | GPG_ERR_FULLY_CANCELED => Ok(PinOutcome::Cancelled),
                GPG_ERR_TIMEOUT => Ok(PinOutcome::TimedOut),
                _ => Err(DesktopError::PinentryFailed {
                    program: self.program.clone(),
                    code,
                    message,
                }),
            },
        }
    }

    /// Says `BYE` and waits briefly for the child to exit; kills it otherwise.
    pub async fn close(mut self) {
        if !self.dead {
            if let Ok(bye) = assuan::command("BYE", None) {
                let _ = tokio::time::timeout(EXIT_TIMEOUT, self.stdin.write_all(&bye)).await;
            }
            if tokio::time::timeout(EXIT_TIMEOUT, self.child.wait())
                .await
                .is_err()
            {
                self.kill().await;
            }
            self.dead = true;
        }
    }

    async fn kill(&mut self) {
        if !self.dead {
            let _ = self.child.start_kill();
            let _ = tokio::time::timeout(EXIT_TIMEOUT, self.child.wait()).await;
            self.dead = true;
        }
    }

    /// Sends a command whose failure is not fatal (an option the pinentry
    /// may not know). `Ok(None)`: the deadline passed (child killed).
    async fn optional(
        &mut self,
        verb: &str,
        arg: &str,
        deadline: Instant,
    ) -> Result<Option<()>, DesktopError> {
        match self.required(verb, "option", Some(arg), deadline).await? {
            None => Ok(None),
            Some(Reply::Ok) => Ok(Some(())),
            Some(Reply::Err { code, message }) => {
                tracing::debug!(verb, code, %message, "pinentry refused an optional command");
                Ok(Some(()))
            }
        }
    }

    /// Sends a command and returns its reply. `Ok(None)`: the deadline passed.
    async fn required(
        &mut self,
        verb: &str,
        what: &'static str,
        arg: Option<&str>,
        deadline: Instant,
    ) -> Result<Option<Reply>, DesktopError> {
        let line = assuan::command(verb, arg).map_err(|_| {
            let mut escaped = Vec::new();
            assuan::escape_into(arg.unwrap_or(""), &mut escaped);
            DesktopError::PinentryTextTooLong {
                what,
                len: escaped.len() + verb.len() + 1,
                max: assuan::MAX_LINE,
            }
        })?;
        match tokio::time::timeout_at(deadline, self.stdin.write_all(&line)).await {
            Err(_) => {
                self.kill().await;
                return Ok(None);
            }
            Ok(Err(_)) => return Err(self.exited().await),
            Ok(Ok(())) => {}
        }
        tracing::trace!(verb, "sent to pinentry");
        self.reply(deadline).await
    }

    /// Reads until a reply is complete. `Ok(None)`: the deadline passed.
    async fn reply(&mut self, deadline: Instant) -> Result<Option<Reply>, DesktopError> {
        loop {
            match self.receiver.next_reply() {
                Ok(Some(r)) => return Ok(Some(r)),
                Ok(None) => {}
                Err(e) => {
                    self.kill().await;
                    return Err(DesktopError::PinentryProtocol {
                        program: self.program.clone(),
                        detail: assuan_detail(e),
                    });
                }
            }
            let read = self.stdout.read(self.receiver.spare());
            match tokio::time::timeout_at(deadline, read).await {
                Err(_) => {
                    self.kill().await;
                    return Ok(None);
                }
                Ok(Ok(0)) | Ok(Err(_)) => return Err(self.exited().await),
                Ok(Ok(n)) => self.receiver.filled(n),
            }
        }
    }

    /// The child stopped talking: its exit status, as an error.
    async fn exited(&mut self) -> DesktopError {
        let status = match tokio::time::timeout(EXIT_TIMEOUT, self.child.wait()).await {
            Ok(Ok(s)) => s.to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => {
                self.kill().await;
                "closed its output, then did not exit".to_owned()
            }
        };
        self.dead = true;
        DesktopError::PinentryExited {
            program: self.program.clone(),
            status,
        }
    }
}
