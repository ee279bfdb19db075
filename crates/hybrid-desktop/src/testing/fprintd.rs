//! The real fprintd with libfprint's virtual device, on a private bus.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;

use crate::fprint::{DeviceProxy, ManagerProxy};

use super::{await_name, find_program, log_tail, stop, HarnessError, START_TIMEOUT};

/// The name fprintd reports for libfprint's `virtual_device` driver.
pub const VIRTUAL_DEVICE_NAME: &str = "Virtual device for debugging";

/// How fprintd is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FprintdOptions {
    /// Offer libfprint's `virtual_device` (`FP_VIRTUAL_DEVICE`); without it
    /// no driver is allowed at all and fprintd has no reader.
    pub virtual_device: bool,
}

impl Default for FprintdOptions {
    fn default() -> Self {
        FprintdOptions {
            virtual_device: true,
        }
    }
}

/// fprintd (`/usr/libexec/fprintd -t`, or `HYBRIDD_FPRINTD`) on a private
/// bus, its prints in a temporary `STATE_DIRECTORY`. Only the drivers named
/// in `FP_DRIVERS_WHITELIST` are used, so a real reader on the machine is
/// never touched.
#[derive(Debug)]
pub struct Fprintd {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

/// How long one command to the virtual device may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

impl Fprintd {
    /// Starts fprintd on `bus_address` (where a polkit authority must
    /// already answer) and waits until it owns `net.reactivated.Fprint`.
    pub async fn start(bus_address: &str, options: FprintdOptions) -> Result<Self, HarnessError> {
        let program = match std::env::var("HYBRIDD_FPRINTD") {
            Ok(p) => find_program(&p, "fprintd")?,
            Err(_) => find_program("/usr/libexec/fprintd", "fprintd")?,
        };
        let dir = tempfile::tempdir().map_err(|e| HarnessError::Failed(e.to_string()))?;
        let failed = |e: std::io::Error| HarnessError::Failed(format!("fprintd setup: {e}"));
        let state = dir.path().join("state");
        let run = dir.path().join("run");
        std::fs::create_dir(&state).map_err(failed)?;
        std::fs::create_dir(&run).map_err(failed)?;
        let socket = dir.path().join("fp.sock");
        let log = dir.path().join("fprintd.log");
        let log_file = std::fs::File::create(&log).map_err(failed)?;
        let mut cmd = Command::new(program);
        cmd.arg("-t")
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus_address)
            .env("STATE_DIRECTORY", &state)
            .env("RUNTIME_DIRECTORY", &run)
            .env("G_MESSAGES_DEBUG", "all")
            .env_remove("FP_VIRTUAL_IMAGE")
            .env_remove("FP_VIRTUAL_DEVICE_STORAGE")
            .stdin(Stdio::null())
            // GLib writes debug messages to stdout, warnings to stderr.
            .stdout(log_file.try_clone().map_err(failed)?)
            .stderr(log_file);
        if options.virtual_device {
            cmd.env("FP_VIRTUAL_DEVICE", &socket)
                .env("FP_DRIVERS_WHITELIST", "virtual_device");
        } else {
            cmd.env_remove("FP_VIRTUAL_DEVICE")
                .env("FP_DRIVERS_WHITELIST", "hybridd-test-no-such-driver");
        }
        let child = cmd
            .spawn()
            .map_err(|e| HarnessError::Failed(format!("fprintd: {e}")))?;
        let mut f = Fprintd { child, dir, socket };
        await_name(bus_address, "net.reactivated.Fprint", &mut f.child, &log).await?;
        Ok(f)
    }

    /// Sends one command to the virtual device (its socket exists while
    /// the device is claimed) and waits until the driver has read it: it
    /// takes one command per connection and closes it after reading, and
    /// a new connection would cut off the previous one.
    pub fn command(&self, command: &str) -> Result<(), HarnessError> {
        let fail = |e: std::io::Error| {
            HarnessError::Failed(format!("virtual device command {command:?}: {e}"))
        };
        let mut s = UnixStream::connect(&self.socket).map_err(fail)?;
        s.set_read_timeout(Some(COMMAND_TIMEOUT)).map_err(fail)?;
        s.set_write_timeout(Some(COMMAND_TIMEOUT)).map_err(fail)?;
        s.write_all(command.as_bytes()).map_err(fail)?;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).map_err(fail)?;
        Ok(())
    }

    /// The finger with print id `id` touches the sensor.
    pub fn scan(&self, id: &str) -> Result<(), HarnessError> {
        self.command(&format!("SCAN {id}"))
    }

    /// The scan was unusable (`RETRY 0`: fprintd reports `verify-retry-scan`).
    pub fn retry(&self) -> Result<(), HarnessError> {
        self.command("RETRY 0")
    }

    /// The driver fails (`ERROR 0`, a general device error).
    pub fn error(&self) -> Result<(), HarnessError> {
        self.command("ERROR 0")
    }

    /// The driver pauses `ms` milliseconds before its next step, whatever
    /// it is: a pending pause also delays closing the device, and so
    /// fprintd's `Release`. (A person who does not touch the sensor needs
    /// no command: the driver waits for one.)
    pub fn sleep(&self, ms: u64) -> Result<(), HarnessError> {
        self.command(&format!("SLEEP {ms}"))
    }

    /// Enrolls `finger` (an fprintd finger name such as
    /// `right-index-finger`) for the calling user through fprintd's D-Bus
    /// API, with print id `id` for every enroll stage.
    pub async fn enroll(
        &self,
        conn: &zbus::Connection,
        finger: &str,
        id: &str,
    ) -> Result<(), HarnessError> {
        let fail = |e: zbus::Error| {
            HarnessError::Failed(format!(
                "enrolling {finger}: {e}: {}",
                log_tail(&self.log())
            ))
        };
        let manager = ManagerProxy::new(conn).await.map_err(fail)?;
        let path = manager.get_default_device().await.map_err(fail)?;
        let device = DeviceProxy::builder(conn)
            .path(path)
            .map_err(fail)?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(fail)?;
        let stages = device.num_enroll_stages().await.map_err(fail)?;
        let mut status = device.receive_enroll_status().await.map_err(fail)?;
        device.claim("").await.map_err(fail)?;
        let result = async {
            // Queue one scan per stage; the driver consumes them in turn.
            for _ in 0..stages.max(1) {
                self.scan(id)?;
            }
            device.enroll_start(finger).await.map_err(fail)?;
            let outcome = tokio::time::timeout(START_TIMEOUT, async {
                while let Some(s) = status.next().await {
                    let Ok(args) = s.args() else { continue };
                    if args.done {
                        return args.result.clone();
                    }
                }
                "stream ended".to_owned()
            })
            .await
            .unwrap_or_else(|_| "timed out".to_owned());
            let _ = device.enroll_stop().await;
            if outcome == "enroll-completed" {
                Ok(())
            } else {
                Err(HarnessError::Failed(format!(
                    "enrolling {finger}: {outcome}: {}",
                    log_tail(&self.log())
                )))
            }
        }
        .await;
        let _ = device.release().await;
        result
    }

    /// fprintd's log (stderr, with `G_MESSAGES_DEBUG=all`).
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("fprintd.log")
    }

    /// The print store (`STATE_DIRECTORY`).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The virtual device's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Fprintd {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
