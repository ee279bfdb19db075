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
    path: Option<PathBuf>,
    sink: Option<Box<dyn Write + Send>>,
    advertising: bool,
}

impl fmt::Debug for FileRadio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileRadio")
            .field("path", &self.path)
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
    /// A radio that writes each advert to `path` (write to a temporary file
    /// in the same directory, then rename over `path`).
    pub fn to_file(path: impl Into<PathBuf>) -> Self {
        FileRadio {
            path: Some(path.into()),
            sink: None,
            advertising: false,
        }
    }

    /// A radio that prints each advert as a line on stdout.
    pub fn to_stdout() -> Self {
        FileRadio {
            path: None,
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
        self.path.as_deref()
    }

    /// Whether [`Advertiser::start`] succeeded and no `stop` followed.
    pub fn is_advertising(&self) -> bool {
        self.advertising
    }

    fn publish(&mut self, advert: &[u8; ADVERT_LEN]) -> Result<(), AdvertiserError> {
        let line = advert_line(advert);
        if let Some(path) = &self.path {
            write_atomically(path, line.as_bytes())?;
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

/// Writes `bytes` to `path.<pid>.tmp` next to `path`, then renames it over
/// `path`, so a reader never sees a half-written advert. Not fsync'd: the
/// rename alone makes the advert whole for readers, and after a crash an
/// advert is worthless anyway (its session is gone). The fsync was ≈ 10 %
/// of `hybridd run`'s CPU per ceremony and most of its scan → first advert
/// time (`hybrid-bench ceremony`, docs/performance.md).
///
/// The old advert is unlinked before the rename, so the rename never
/// replaces a file: ext4 (`auto_da_alloc`) writes a new file's data out
/// when it is renamed over an existing one, and the replaced inode's blocks
/// are freed on the spot — that rename was 3.6 % of `hybridd run`'s CPU per
/// ceremony (docs/performance.md, "Phone: third round"). A reader in
/// between finds no file, as before the first advert (readers poll and take
/// a missing file as "nothing yet", `hybrid_initiator::AdvertSource`); it
/// still never sees half an advert.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), AdvertiserError> {
    let mut tmp_name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "advert".into());
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| AdvertiserError::Io(format!("{}: {e}", path.display())))
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
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let lines = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            lines,
            format!(
                "000102030405060708090a0b0c0d0e0f10111213\n{}\n",
                "ab".repeat(20)
            )
        );
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
