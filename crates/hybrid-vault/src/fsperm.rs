//! File-system permissions: the vault directory is 0700, the vault file and
//! SQLite's side files (`-wal`, `-shm`, `-journal`) are 0600.
//!
//! Policy: a directory we create is created 0700. An existing directory that
//! other users can access is *refused* (we do not chmod a directory we did not
//! create: it might be `$HOME`). A vault file (or side file) with looser
//! permissions is tightened to 0600 with a warning, since it is ours.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::VaultError;

/// Mode of the vault file and its side files.
pub const FILE_MODE: u32 = 0o600;
/// Mode of a directory created for the vault.
pub const DIR_MODE: u32 = 0o700;
const OTHERS_MASK: u32 = 0o077;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The directory a vault file lives in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Makes sure `dir` exists (creating it 0700 when `create`) and is not
/// accessible by other users.
pub(crate) fn ensure_private_dir(dir: &Path, create: bool) -> Result<(), VaultError> {
    if create && !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(io(dir))?;
    }
    let meta = std::fs::metadata(dir).map_err(io(dir))?;
    if !meta.is_dir() {
        return Err(VaultError::Io {
            path: dir.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & OTHERS_MASK != 0 {
        return Err(VaultError::InsecureDirectory {
            path: dir.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Creates a new, empty file with mode 0600; fails if anything exists there.
pub(crate) fn create_private_file(path: &Path) -> Result<(), VaultError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map(drop)
        .map_err(io(path))
}

/// SQLite's side files of the database at `path`.
pub(crate) fn side_files(path: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [with("-wal"), with("-shm"), with("-journal")]
}

/// Tightens the vault file and whichever side files exist to 0600, warning
/// about each one that was looser.
pub(crate) fn tighten_files(path: &Path) -> Result<(), VaultError> {
    let [wal, shm, journal] = side_files(path);
    for p in [path.to_owned(), wal, shm, journal] {
        let meta = match std::fs::metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&p)(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode != FILE_MODE {
            tracing::warn!(path = %p.display(), mode = format_args!("{mode:03o}"), "vault file had loose permissions; set to 600");
            std::fs::set_permissions(&p, Permissions::from_mode(FILE_MODE)).map_err(io(&p))?;
        }
    }
    Ok(())
}

/// fsyncs a directory, so a rename or link inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), VaultError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}
