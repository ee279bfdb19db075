//! The controlling terminal, read asynchronously: `/dev/tty` opened
//! non-blocking (its own file description, so the shell's is untouched)
//! and watched by tokio's reactor ([`AsyncFd`]); echo turned off with
//! `termios` for secrets and restored when the read ends or is dropped
//! (a deadline passing mid-PIN leaves the terminal as it was). No thread
//! waits on the terminal.

use std::fs::File;
use std::io::{Read, Write};

use rustix::fs::{Mode, OFlags};
use rustix::termios::{LocalModes, OptionalActions, Termios};
use tokio::io::unix::AsyncFd;
use zeroize::Zeroizing;

/// Longest line read from the terminal (an answer or a PIN).
const MAX_LINE: usize = 1024;

/// The controlling terminal.
#[derive(Debug)]
pub struct Tty {
    fd: AsyncFd<File>,
}

/// Echo off until dropped.
struct EchoOff<'a> {
    file: &'a File,
    saved: Termios,
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(self.file, OptionalActions::Now, &self.saved);
    }
}

impl Tty {
    /// Opens `/dev/tty` (fails without a controlling terminal). Needs a
    /// tokio runtime with IO enabled.
    pub fn open() -> std::io::Result<Tty> {
        let fd = rustix::fs::open(
            "/dev/tty",
            OFlags::RDWR | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // tokio 1.54 deprecated the safe constructor in favour of an
        // `unsafe fn register` whose contract is that the fd stays open and
        // the same while registered. A `File` owned by the `AsyncFd`
        // upholds it by construction, and this crate forbids `unsafe`, so
        // the safe (deprecated) constructor is the right call here.
        #[allow(deprecated)]
        let fd = AsyncFd::new(File::from(fd))?;
        Ok(Tty { fd })
    }

    /// Writes `text` to the terminal (waiting while it is full).
    pub async fn write(&self, text: &str) -> std::io::Result<()> {
        let mut rest = text.as_bytes();
        while !rest.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|f| f.get_ref().write(rest)) {
                Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => rest = rest.get(n..).unwrap_or_default(),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }

    /// Reads one line (without its line ending). End of input is an error.
    pub async fn read_line(&self) -> std::io::Result<Zeroizing<String>> {
        let mut buf = Zeroizing::new([0u8; 256]);
        // Reserved up front: `line` never reallocates, so no unwiped copy
        // of a PIN is left behind in freed memory.
        let mut line = Zeroizing::new(Vec::with_capacity(MAX_LINE + buf.len()));
        loop {
            let mut guard = self.fd.readable().await?;
            let n = match guard.try_io(|f| f.get_ref().read(buf.as_mut())) {
                Ok(Ok(0)) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            };
            let chunk = buf.get(..n).unwrap_or_default();
            if let Some(i) = chunk.iter().position(|&b| b == b'\n') {
                line.extend_from_slice(chunk.get(..i).unwrap_or_default());
                break;
            }
            line.extend_from_slice(chunk);
            if line.len() > MAX_LINE {
                return Err(std::io::ErrorKind::InvalidData.into());
            }
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        String::from_utf8(std::mem::take(&mut *line))
            .map(Zeroizing::new)
            .map_err(|e| {
                drop(Zeroizing::new(e.into_bytes()));
                std::io::ErrorKind::InvalidData.into()
            })
    }

    /// Shows `prompt` and reads a secret without echo (the newline still
    /// echoes, `ECHONL`, as `getpass` does).
    pub async fn read_secret(&self, prompt: &str) -> std::io::Result<Zeroizing<String>> {
        // Echo goes off before the prompt shows, so nothing typed in
        // answer to it can echo.
        let file = self.fd.get_ref();
        let saved = rustix::termios::tcgetattr(file)?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        quiet.local_modes.insert(LocalModes::ECHONL);
        rustix::termios::tcsetattr(file, OptionalActions::Now, &quiet)?;
        let _restore = EchoOff { file, saved };
        self.write(prompt).await?;
        self.read_line().await
    }
}

/// Reads a secret from the terminal outside a runtime (`hybridd vault`):
/// the same [`Tty`] on a small current-thread runtime.
pub fn read_secret_blocking(prompt: &str) -> std::io::Result<Zeroizing<String>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async { Tty::open()?.read_secret(prompt).await })
}
