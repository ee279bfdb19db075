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
pub fn read_pin_file(path: &Path) -> Result<Zeroizing<String>, Error> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| Error::PinFile {
            path: path.to_owned(),
            source,
        })?,
    );
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

    #[tokio::test]
    async fn auto_approver_gives_up_after_a_wrong_pin() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pin");
        std::fs::write(&f, "1234\n").unwrap();
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
