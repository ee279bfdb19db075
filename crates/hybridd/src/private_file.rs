//! Files only the user may touch — PIN files, the QR replay memory —
//! opened without following symbolic links and checked on the opened file
//! (`fstat`, so nothing can be swapped in between), and written atomically
//! with mode 0600.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

/// Why a private file cannot be used.
#[derive(Debug)]
pub enum Refusal {
    /// It could not be opened or read (including: it does not exist).
    Io(std::io::Error),
    /// Someone else could read, change or substitute it (the fix is in the text).
    Unsafe(&'static str),
}

/// Why a file with this type, owner and mode is not private to `our_uid`.
pub fn problem(regular: bool, uid: u32, mode: u32, our_uid: u32) -> Option<&'static str> {
    if !regular {
        Some("it is not a regular file")
    } else if uid != our_uid {
        Some("it is not owned by you")
    } else if mode & 0o077 != 0 {
        Some("other users may read or change it (fix: chmod 600 the file)")
    } else {
        None
    }
}

/// Opens `path` for reading if it is a regular file owned by the user with
/// no permission bits for others; a symbolic link is refused, not followed.
pub fn open(path: &Path) -> Result<File, Refusal> {
    open_checked(path, OFlags::RDONLY)
}

/// Opens `path` for writing (not appending: writes go where the caller
/// puts them), with the checks of [`open`]: for filling in a file
/// [`write_atomically`] made.
pub fn open_write(path: &Path) -> Result<File, Refusal> {
    open_checked(path, OFlags::WRONLY)
}

fn open_checked(path: &Path, flags: OFlags) -> Result<File, Refusal> {
    let fd = match rustix::fs::open(
        path,
        // NONBLOCK: a FIFO planted at `path` cannot hang the open (it is
        // then refused as not a regular file).
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP) => {
            return Err(Refusal::Unsafe(
                "it is a symbolic link; name the file itself",
            ))
        }
        Err(e) => return Err(Refusal::Io(e.into())),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| Refusal::Io(e.into()))?;
    let regular = rustix::fs::FileType::from_raw_mode(st.st_mode).is_file();
    if let Some(why) = problem(regular, st.st_uid, st.st_mode, crate::config::current_uid()) {
        return Err(Refusal::Unsafe(why));
    }
    Ok(File::from(fd))
}

/// Replaces `path` with `bytes` atomically: a new file (mode 0600, never
/// through a symbolic link) beside it, synced, then renamed over it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = std::path::PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let fd = rustix::fs::open(
        &tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut f = File::from(fd);
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_files_are_0600_and_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("state");
        write_atomically(&f, b"one").unwrap();
        write_atomically(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(open(&f).is_ok());
        // A planted symbolic link at the temporary name is replaced, not followed.
        let target = dir.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("state.new")).unwrap();
        write_atomically(&f, b"three").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert_eq!(std::fs::read(&f).unwrap(), b"three");
    }
}
