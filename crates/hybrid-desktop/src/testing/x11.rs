//! Xvfb and dunst, for the notification tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{
    await_name, find_program, first_line_within, log_tail, stop, HarnessError, START_TIMEOUT,
};

/// A headless X server on a free display (`Xvfb -displayfd`: the server
/// picks the number and reports it when ready; no guessing, no race).
#[derive(Debug)]
pub struct Xvfb {
    child: Child,
    display: String,
    _dir: tempfile::TempDir,
}

impl Xvfb {
    /// Starts Xvfb and waits until it accepts clients.
    pub fn start() -> Result<Self, HarnessError> {
        let program = find_program("Xvfb", "xvfb")?;
        let dir = tempfile::tempdir().map_err(|e| HarnessError::Failed(e.to_string()))?;
        let log = dir.path().join("xvfb.log");
        let log_file =
            std::fs::File::create(&log).map_err(|e| HarnessError::Failed(e.to_string()))?;
        let mut child = Command::new(program)
            .args([
                "-displayfd",
                "1",
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "800x600x24",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| HarnessError::Failed(format!("Xvfb: {e}")))?;
        let number = child
            .stdout
            .take()
            .and_then(|out| first_line_within(out, START_TIMEOUT))
            .map(|l| l.trim().to_owned())
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        let Some(number) = number else {
            stop(&mut child);
            return Err(HarnessError::Failed(format!(
                "Xvfb reported no display: {}",
                log_tail(&log)
            )));
        };
        Ok(Xvfb {
            child,
            display: format!(":{number}"),
            _dir: dir,
        })
    }

    /// The `DISPLAY` value, e.g. `:3`.
    pub fn display(&self) -> &str {
        &self.display
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// How dunst is configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DunstOptions {
    /// `markup = full`: dunst parses bodies as markup and reports `body-markup`.
    pub markup: bool,
    /// A rule that keeps hybridd's notifications until closed, whatever
    /// `expire_timeout` says (as GNOME Shell does).
    pub never_expire: bool,
}

/// dunst on a private session bus and an X display.
#[derive(Debug)]
pub struct Dunst {
    child: Child,
    dir: tempfile::TempDir,
    bus_address: String,
    dunstctl: PathBuf,
}

/// The `dmenu` stand-in dunst runs for its context menu: it saves the menu
/// and answers the line ending in `[<id>,<action>]` named by the `choice` file.
const DMENU: &str = r#"#!/bin/sh
dir=$(dirname "$0")
cat > "$dir/menu"
choice=$(cat "$dir/choice")
grep -F -- "[$choice]" "$dir/menu" | head -n 1
"#;

impl Dunst {
    /// Starts dunst on `bus_address` and `display`; returns once it owns
    /// `org.freedesktop.Notifications`.
    pub async fn start(
        bus_address: &str,
        display: &str,
        options: DunstOptions,
    ) -> Result<Self, HarnessError> {
        let program = find_program("dunst", "dunst")?;
        let dunstctl = find_program("dunstctl", "dunst")?;
        find_program("dbus-send", "dbus")?;
        let dir = tempfile::tempdir().map_err(|e| HarnessError::Failed(e.to_string()))?;
        let failed = |e: std::io::Error| HarnessError::Failed(format!("dunst setup: {e}"));
        let dmenu = dir.path().join("dmenu.sh");
        std::fs::write(&dmenu, DMENU).map_err(failed)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dmenu, std::fs::Permissions::from_mode(0o700)).map_err(failed)?;
        let mut rc = format!(
            "[global]\ndmenu = {}\nmarkup = {}\n",
            dmenu.display(),
            if options.markup { "full" } else { "no" }
        );
        if options.never_expire {
            rc.push_str("\n[hybridd-never-expire]\nappname = hybridd\ntimeout = 0\n");
        }
        let config = dir.path().join("dunstrc");
        std::fs::write(&config, rc).map_err(failed)?;
        let log = dir.path().join("dunst.log");
        let log_file = std::fs::File::create(&log).map_err(failed)?;
        let child = Command::new(program)
            .arg("-config")
            .arg(&config)
            .env("DISPLAY", display)
            .env("DBUS_SESSION_BUS_ADDRESS", bus_address)
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| HarnessError::Failed(format!("dunst: {e}")))?;
        let mut dunst = Dunst {
            child,
            dir,
            bus_address: bus_address.to_owned(),
            dunstctl,
        };
        await_name(
            bus_address,
            "org.freedesktop.Notifications",
            &mut dunst.child,
            &log,
        )
        .await?;
        Ok(dunst)
    }

    fn dunstctl(&self, args: &[&str]) -> Result<String, HarnessError> {
        let out = Command::new(&self.dunstctl)
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus_address)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| HarnessError::Failed(format!("dunstctl: {e}")))?;
        if !out.status.success() {
            return Err(HarnessError::Failed(format!(
                "dunstctl {args:?}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// How many notifications dunst shows (`dunstctl count displayed`).
    pub fn displayed(&self) -> Result<u32, HarnessError> {
        let out = self.dunstctl(&["count", "displayed"])?;
        out.trim()
            .parse()
            .map_err(|_| HarnessError::Failed(format!("dunstctl count displayed said {out:?}")))
    }

    /// Waits (bounded) until dunst shows exactly `n` notifications. dunst
    /// moves a notification to the screen on its own schedule and reports
    /// no event for it, so this polls `dunstctl count displayed`.
    pub async fn wait_displayed(&self, n: u32) -> Result<(), HarnessError> {
        let give_up = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if self.displayed()? == n {
                return Ok(());
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(HarnessError::Failed(format!(
                    "dunst did not show {n} notification(s) within {} s: {}",
                    START_TIMEOUT.as_secs(),
                    log_tail(&self.log())
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Invokes `action` on notification `id` as a person would through
    /// dunst's context menu: `dunstctl context`, whose `dmenu` picks the
    /// line `[id,action]`. The notification must be on screen.
    pub fn invoke(&self, id: u32, action: &str) -> Result<(), HarnessError> {
        std::fs::write(self.dir.path().join("choice"), format!("{id},{action}"))
            .map_err(|e| HarnessError::Failed(e.to_string()))?;
        self.dunstctl(&["context"]).map(|_| ())
    }

    /// Closes the newest notification as a person would (`dunstctl close`):
    /// dunst reports it dismissed.
    pub fn dismiss(&self) -> Result<(), HarnessError> {
        self.dunstctl(&["close"]).map(|_| ())
    }

    /// `dunstctl history`: dunst's JSON of the closed notifications (with
    /// their app name, category and timeout in microseconds).
    pub fn history(&self) -> Result<String, HarnessError> {
        self.dunstctl(&["history"])
    }

    /// The context menu dunst offered last (what `dmenu` read).
    pub fn last_menu(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("menu")).unwrap_or_default()
    }

    /// dunst's log file.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("dunst.log")
    }

    /// The directory holding dunst's config and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Dunst {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
