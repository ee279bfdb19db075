//! A radio without a radio: each advert is published as 40 lower-case hex
//! characters and a newline — to a file (atomically replaced) and/or as a
//! line on a writer such as stdout — so an independent desktop
//! implementation (or a test) can pick it up (`architecture.md`, "Test
//! ports for independent peers"). Uses `std::fs` only; the (blocking, tiny)
//! IO happens inside the returned futures.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::advertiser::{AdvertFuture, Advertiser, AdvertiserError};
use crate::radio::ADVERT_LEN;

/// The file radio. [`Advertiser::stop`] removes nothing: the file keeps the
/// last advert (a reader tells adverts apart by content; a new transaction
/// always has a new advert), and stop only records that nothing is being
/// advertised.
pub struct FileRadio {
    file: Option<AdvertFile>,
    sink: Option<Box<dyn Write + Send>>,
    advertising: bool,
}

/// Where a file radio writes, and how.
struct AdvertFile {
    path: PathBuf,
    /// The spare file beside `path` ([`spare_of`]).
    spare: PathBuf,
    /// Whether to publish by exchanging names ([`swap_in`]); cleared for
    /// good when the file system refuses the exchange.
    exchange: bool,
}

impl fmt::Debug for FileRadio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileRadio")
            .field("path", &self.path())
            .field("sink", &self.sink.as_ref().map(|_| "<writer>"))
            .field("advertising", &self.advertising)
            .finish()
    }
}

/// The line written for `advert`: 40 lower-case hex characters and `\n`.
pub fn advert_line(advert: &[u8; ADVERT_LEN]) -> String {
    let mut s = String::with_capacity(2 * ADVERT_LEN + 1);
    for b in advert {
        s.push_str(&format!("{b:02x}"));
    }
    s.push('\n');
    s
}

impl FileRadio {
    /// A radio that writes each advert to `path`: into a spare file in the
    /// same directory, then exchanged with `path` (or renamed over it where
    /// the file system cannot exchange names). The spare, holding the
    /// previous advert, is removed when the radio is dropped.
    pub fn to_file(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        FileRadio {
            file: Some(AdvertFile {
                spare: spare_of(&path),
                path,
                exchange: true,
            }),
            sink: None,
            advertising: false,
        }
    }

    /// A radio that prints each advert as a line on stdout.
    pub fn to_stdout() -> Self {
        FileRadio {
            file: None,
            sink: Some(Box::new(std::io::stdout())),
            advertising: false,
        }
    }

    /// Also (or instead) writes each advert line to `sink`.
    #[must_use]
    pub fn with_sink(mut self, sink: Box<dyn Write + Send>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The file adverts are written to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.path.as_path())
    }

    /// Whether [`Advertiser::start`] succeeded and no `stop` followed.
    pub fn is_advertising(&self) -> bool {
        self.advertising
    }

    fn publish(&mut self, advert: &[u8; ADVERT_LEN]) -> Result<(), AdvertiserError> {
        let line = advert_line(advert);
        if let Some(f) = &mut self.file {
            let swapped = match f.exchange {
                true => swap_in(&f.path, &f.spare, line.as_bytes()),
                false => Err(SwapError::Unsupported),
            };
            if let Err(why) = swapped {
                if matches!(why, SwapError::Unsupported) {
                    f.exchange = false;
                }
                replace(&f.path, &f.spare, line.as_bytes())
                    .map_err(|e| AdvertiserError::Io(format!("{}: {e}", f.path.display())))?;
            }
        }
        if let Some(sink) = &mut self.sink {
            sink.write_all(line.as_bytes()).map_err(io_err)?;
            sink.flush().map_err(io_err)?;
        }
        self.advertising = true;
        Ok(())
    }
}

fn io_err(e: std::io::Error) -> AdvertiserError {
    AdvertiserError::Io(e.to_string())
}

/// The spare file beside `path`: `<name>.<pid>.tmp`.
fn spare_of(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "advert".into());
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Why [`swap_in`] did not publish.
enum SwapError {
    /// The file system cannot exchange two names (`EINVAL`, `ENOSYS`,
    /// `EOPNOTSUPP`): use [`replace`] from now on.
    Unsupported,
    /// Anything else (a missing or odd spare, a race with another process):
    /// [`replace`] this time, try the exchange again next time.
    Other,
}

/// Publishes `bytes` at `path` by writing them into the spare file and
/// exchanging the two names (`renameat2(RENAME_EXCHANGE)`): a reader opens
/// either the old advert or the new one, whole, and never finds no file.
/// The spare is the previous advert's inode, so after the first advert no
/// inode is created or freed. The create, unlink and rename of [`replace`]
/// were ≈ 4 % of `hybridd run`'s profile samples on ext4; alone, an advert
/// costs 27 µs of CPU that way and 13 µs this way (docs/performance.md,
/// "Phone: seventh round").
///
/// The spare is overwritten in place and cut to the new line's length only
/// if it was longer (adverts all have the same length). It is never opened
/// through a symbolic link (`O_NOFOLLOW`), and only a regular file is
/// used, so a link or anything else planted at its name by someone sharing
/// the directory is refused, not followed.
fn swap_in(path: &Path, spare: &Path, bytes: &[u8]) -> Result<(), SwapError> {
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    // `NONBLOCK`: a FIFO planted at the spare's name must not hang us.
    let base = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(spare, base, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => rustix::fs::open(
            spare,
            base | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|_| SwapError::Other)?,
        Err(_) => return Err(SwapError::Other),
    };
    let file = std::fs::File::from(fd);
    let st = rustix::fs::fstat(&file).map_err(|_| SwapError::Other)?;
    if !rustix::fs::FileType::from_raw_mode(st.st_mode).is_file() {
        return Err(SwapError::Other);
    }
    std::os::unix::fs::FileExt::write_all_at(&file, bytes, 0).map_err(|_| SwapError::Other)?;
    if st.st_size as u64 > bytes.len() as u64 {
        file.set_len(bytes.len() as u64)
            .map_err(|_| SwapError::Other)?;
    }
    drop(file);
    // Only a regular file (or nothing) at `path` is swapped out: the
    // exchange would otherwise move a directory or link someone put there
    // to the spare's name. Anything else goes the old way, whose unlink
    // fails on a directory with a clear error.
    match rustix::fs::lstat(path) {
        Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode).is_file() => {}
        Err(Errno::NOENT) => {}
        _ => return Err(SwapError::Other),
    }
    let cwd = rustix::fs::CWD;
    match rustix::fs::renameat_with(cwd, spare, cwd, path, rustix::fs::RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        // No advert yet (or a reader removed it): the spare simply moves in.
        Err(Errno::NOENT) => rustix::fs::rename(spare, path).map_err(|_| SwapError::Other),
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => Err(SwapError::Unsupported),
        Err(_) => Err(SwapError::Other),
    }
}

/// Writes `bytes` to a new spare file next to `path`, then renames it over
/// `path`, so a reader never sees a half-written advert: the way for file
/// systems without [`swap_in`]'s exchange. Not fsync'd: the rename alone
/// makes the advert whole for readers, and after a crash an advert is
/// worthless anyway (its session is gone). The fsync was ≈ 10 % of
/// `hybridd run`'s CPU per ceremony and most of its scan → first advert
/// time (`hybrid-bench ceremony`, docs/performance.md).
///
/// The old advert is unlinked before the rename, so the rename never
/// replaces a file: ext4 (`auto_da_alloc`) writes a new file's data out
/// when it is renamed over an existing one, and the replaced inode's blocks
/// are freed on the spot — that rename was 3.6 % of `hybridd run`'s CPU per
/// ceremony (docs/performance.md, "Phone: third round"). A reader in
/// between finds no file, as before the first advert (readers poll and take
/// a missing file as "nothing yet", `hybrid_initiator::AdvertSource`); it
/// still never sees half an advert. A leftover spare is removed first and
/// the new one created exclusively, never through a symbolic link.
fn replace(path: &Path, spare: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let result = (|| {
        match std::fs::remove_file(spare) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let fd = rustix::fs::open(
            spare,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        std::fs::File::from(fd).write_all(bytes)?;
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::rename(spare, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(spare);
    }
    result
}

impl Drop for FileRadio {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            let _ = std::fs::remove_file(&f.spare);
        }
    }
}

impl Advertiser for FileRadio {
    fn start<'a>(&'a mut self, advert: &'a [u8; ADVERT_LEN]) -> AdvertFuture<'a> {
        Box::pin(async move { self.publish(advert) })
    }

    fn stop(&mut self) -> AdvertFuture<'_> {
        Box::pin(async move {
            self.advertising = false;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};

    /// The file radio's futures are ready at once: poll once.
    fn ready<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("file radio future was not ready"),
        }
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_replaces_and_keeps_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("advert.hex");
        let sink = Shared::default();
        let mut radio = FileRadio::to_file(&path).with_sink(Box::new(sink.clone()));
        let a: [u8; 20] = core::array::from_fn(|i| i as u8);
        ready(radio.start(&a)).unwrap();
        assert!(radio.is_advertising());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "000102030405060708090a0b0c0d0e0f10111213\n"
        );
        let b = [0xAB; 20];
        ready(radio.start(&b)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", "ab".repeat(20))
        );
        ready(radio.stop()).unwrap();
        assert!(!radio.is_advertising());
        // stop removes nothing.
        assert!(path.exists());
        // The spare holds the previous advert until the radio is dropped.
        let spare = spare_of(&path);
        assert_eq!(
            std::fs::read_to_string(&spare).unwrap(),
            "000102030405060708090a0b0c0d0e0f10111213\n"
        );
        drop(radio);
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(path.exists());
        let lines = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            lines,
            format!(
                "000102030405060708090a0b0c0d0e0f10111213\n{}\n",
                "ab".repeat(20)
            )
        );
    }

    fn line(byte: u8) -> String {
        format!("{}\n", format!("{byte:02x}").repeat(20))
    }

    #[test]
    fn the_exchange_reuses_two_inodes_and_survives_a_removed_advert() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("advert");
        let mut radio = FileRadio::to_file(&path);
        ready(radio.start(&[1; 20])).unwrap();
        ready(radio.start(&[2; 20])).unwrap();
        let first = std::fs::metadata(&path).unwrap().ino();
        ready(radio.start(&[3; 20])).unwrap();
        ready(radio.start(&[4; 20])).unwrap();
        // Two adverts later the same inode is live again: nothing created.
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), first);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line(4));
        // A reader removes the advert: the next one still arrives.
        std::fs::remove_file(&path).unwrap();
        ready(radio.start(&[5; 20])).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line(5));
        ready(radio.start(&[6; 20])).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line(6));
    }

    #[test]
    fn a_link_or_fifo_or_long_file_at_the_spare_name_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("advert");
        let spare = spare_of(&path);
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        std::os::unix::fs::symlink(&victim, &spare).unwrap();
        let mut radio = FileRadio::to_file(&path);
        ready(radio.start(&[7; 20])).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line(7));
        drop(radio);

        // A FIFO does not block the radio.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &spare,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let mut radio = FileRadio::to_file(&path);
        ready(radio.start(&[8; 20])).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line(8));
        drop(radio);

        // A longer file is cut to the advert's length.
        std::fs::write(&spare, "x".repeat(100)).unwrap();
        let mut radio = FileRadio::to_file(&path);
        ready(radio.start(&[9; 20])).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line(9));
        ready(radio.start(&[10; 20])).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line(10));
    }

    #[test]
    fn a_directory_or_link_at_the_advert_path_is_not_swapped_away() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the advert should go: an error, and the
        // directory stays where it is.
        let path = dir.path().join("advert");
        std::fs::create_dir(&path).unwrap();
        let mut radio = FileRadio::to_file(&path);
        assert!(ready(radio.start(&[1; 20])).is_err());
        assert!(path.is_dir());
        drop(radio);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A symbolic link is replaced by the advert, as before; its target
        // is not written.
        let target = dir.path().join("target");
        std::fs::write(&target, "keep me").unwrap();
        let link = dir.path().join("linked");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let mut radio = FileRadio::to_file(&link);
        ready(radio.start(&[2; 20])).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        assert!(!std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&link).unwrap(), line(2));
        ready(radio.start(&[3; 20])).unwrap();
        assert_eq!(std::fs::read_to_string(&link).unwrap(), line(3));
    }

    #[test]
    fn missing_directory_is_io_error_with_fix() {
        let dir = tempfile::tempdir().unwrap();
        let mut radio = FileRadio::to_file(dir.path().join("nope/advert.hex"));
        let err = ready(radio.start(&[0; 20])).unwrap_err();
        assert!(matches!(err, AdvertiserError::Io(_)));
        assert!(err.to_string().contains("writable"), "{err}");
        assert!(!radio.is_advertising());
    }

    #[test]
    fn object_safe() {
        let dir = tempfile::tempdir().unwrap();
        let mut boxed: Box<dyn Advertiser> = Box::new(FileRadio::to_file(dir.path().join("a")));
        ready(boxed.start(&[1; 20])).unwrap();
        ready(boxed.stop()).unwrap();
    }
}
