//! A pseudo-terminal, for terminal pinentries (`pinentry-tty`).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};

use super::HarnessError;

/// A pseudo-terminal: the test holds the master side (it reads what the
/// program writes and types into it); the program opens [`Pty::path`].
/// The harness keeps the slave side open too, so the terminal outlives
/// the program's own opening and closing of it.
#[derive(Debug)]
pub struct Pty {
    master: std::fs::File,
    _slave: OwnedFd,
    path: PathBuf,
    seen: Vec<u8>,
}

impl Pty {
    /// Opens a new pseudo-terminal pair.
    pub fn open() -> Result<Self, HarnessError> {
        let fail =
            |what: &str, e: rustix::io::Errno| HarnessError::Failed(format!("pty {what}: {e}"));
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .map_err(|e| fail("openpt", e))?;
        grantpt(&master).map_err(|e| fail("grantpt", e))?;
        unlockpt(&master).map_err(|e| fail("unlockpt", e))?;
        let name = ptsname(&master, Vec::new()).map_err(|e| fail("ptsname", e))?;
        let path = PathBuf::from(name.to_string_lossy().into_owned());
        let slave = rustix::fs::open(
            &path,
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail("open slave", e))?;
        Ok(Pty {
            master: std::fs::File::from(master),
            _slave: slave,
            path,
            seen: Vec::new(),
        })
    }

    /// The terminal's device path (`/dev/pts/N`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what the program wrote until `needle` appears, at most `within`.
    /// Returns everything read so far (also on a timeout, as the error).
    pub fn read_until(&mut self, needle: &[u8], within: Duration) -> Result<Vec<u8>, HarnessError> {
        let give_up = Instant::now() + within;
        loop {
            if self.seen.windows(needle.len().max(1)).any(|w| w == needle) {
                return Ok(std::mem::take(&mut self.seen));
            }
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HarnessError::Failed(format!(
                    "the terminal never showed {:?}; it showed {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(&self.seen)
                )));
            }
            let timeout = Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let mut fds = [PollFd::new(&self.master, PollFlags::IN)];
            let ready = poll(&mut fds, Some(&timeout))
                .map_err(|e| HarnessError::Failed(format!("pty poll: {e}")))?;
            if ready == 0 {
                continue;
            }
            let mut buf = [0u8; 4096];
            let n = self
                .master
                .read(&mut buf)
                .map_err(|e| HarnessError::Failed(format!("pty read: {e}")))?;
            self.seen
                .extend_from_slice(buf.get(..n).unwrap_or_default());
        }
    }

    /// Types `bytes` into the terminal.
    pub fn type_in(&mut self, bytes: &[u8]) -> Result<(), HarnessError> {
        self.master
            .write_all(bytes)
            .map_err(|e| HarnessError::Failed(format!("pty write: {e}")))
    }
}
