//! Automatic approval (`approval = "auto"`): every prompt approved with the
//! PIN from a file. **For tests only**: any desktop that scans a QR code
//! this daemon answers gets a passkey created or a signature, with no
//! person involved.

use std::path::Path;

use hybrid_ctap::UserError;
use zeroize::Zeroizing;

use crate::approval::{Answer, Approver};
use crate::error::Error;
use crate::prompt::{Notice, Prompt};
use crate::BoxFuture;

/// Approves everything with the PIN read from a file.
#[derive(Clone)]
pub struct AutoApprover {
    pin: Zeroizing<String>,
}

impl std::fmt::Debug for AutoApprover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AutoApprover { .. }")
    }
}

impl AutoApprover {
    /// Approves with `pin`.
    pub fn new(pin: Zeroizing<String>) -> Self {
        AutoApprover { pin }
    }

    /// Reads the PIN (first line, without its line ending) from `path`.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        read_pin_file(path).map(AutoApprover::new)
    }
}

/// Reads a PIN file: the first line, without its line ending.
///
/// The file must be a regular file owned by the user, with no permission
/// bits for group or others (mode 0600 or 0400), and is opened with
/// `O_NOFOLLOW`: a symbolic link is refused rather than followed — so
/// another local user can neither read the PIN nor substitute a file of
/// theirs (issue 16). The checks are on the opened file (`fstat`), not on
/// the path, so nothing can be swapped in between.
pub fn read_pin_file(path: &Path) -> Result<Zeroizing<String>, Error> {
    use crate::private_file::{self, Refusal};
    use std::io::Read;
    let io = |source: std::io::Error| Error::PinFile {
        path: path.to_owned(),
        source,
    };
    let mut file = private_file::open(path).map_err(|r| match r {
        Refusal::Io(e) => io(e),
        Refusal::Unsafe(why) => Error::PinFileUnsafe {
            path: path.to_owned(),
            why,
        },
    })?;
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text).map_err(io)?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(Error::EmptyPinFile(path.to_owned()));
    }
    Ok(Zeroizing::new(line.to_owned()))
}

impl Approver for AutoApprover {
    fn ask<'a>(&'a mut self, prompt: &'a Prompt) -> BoxFuture<'a, Result<Answer, UserError>> {
        let answer = if prompt.notice.is_some() {
            // The file's PIN was wrong once already: retrying it only burns attempts.
            Err(UserError::Declined)
        } else {
            tracing::info!(action = %prompt.action, rp = %prompt.rp_id, "automatic approval");
            Ok(Answer::Approve(Some(self.pin.clone())))
        };
        Box::pin(std::future::ready(answer))
    }

    fn notify<'a>(&'a mut self, _notice: &'a Notice) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::sample_request;
    use hybrid_ctap::Command;

    use std::os::unix::fs::PermissionsExt;

    fn write_pin(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Issue 16: a PIN file others can read (or change), a symbolic link
    /// to one, or something else than a regular file is refused, with the
    /// reason; 0600 and 0400 are read.
    #[test]
    fn pin_file_readable_by_others_symlinked_or_not_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pin");
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
            write_pin(&f, "1234\n", mode);
            let e = read_pin_file(&f).unwrap_err();
            assert!(matches!(e, Error::PinFileUnsafe { .. }), "{mode:o}: {e}");
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
        for mode in [0o600, 0o400] {
            write_pin(&f, "1234\n", mode);
            assert_eq!(read_pin_file(&f).unwrap().as_str(), "1234");
        }
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let e = read_pin_file(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = read_pin_file(dir.path()).unwrap_err();
        assert!(matches!(e, Error::PinFileUnsafe { .. }), "{e}");
    }

    /// Not owned by the user (a file of another uid needs root to make,
    /// so the rule is checked on its inputs).
    #[test]
    fn pin_file_not_owned_by_the_user_is_refused() {
        use crate::private_file::problem;
        assert_eq!(problem(true, 1000, 0o100600, 1000), None);
        assert_eq!(
            problem(true, 1001, 0o100600, 1000),
            Some("it is not owned by you")
        );
        assert_eq!(
            problem(true, 0, 0o100400, 1000),
            Some("it is not owned by you")
        );
        assert!(problem(true, 1000, 0o100640, 1000).is_some());
        assert!(problem(false, 1000, 0o600, 1000).is_some());
    }

    #[tokio::test]
    async fn auto_approver_gives_up_after_a_wrong_pin() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pin");
        write_pin(&f, "1234\n", 0o600);
        let mut a = AutoApprover::from_file(&f).unwrap();
        let mut p = Prompt::new(&sample_request(Command::GetAssertion), true);
        assert!(
            matches!(a.ask(&p).await, Ok(Answer::Approve(Some(ref s))) if s.as_str() == "1234")
        );
        p.notice = Some("wrong".into());
        assert!(matches!(a.ask(&p).await, Err(UserError::Declined)));
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(
            AutoApprover::from_file(&f),
            Err(Error::EmptyPinFile(_))
        ));
        assert!(matches!(
            AutoApprover::from_file(&dir.path().join("none")),
            Err(Error::PinFile { .. })
        ));
    }
}
