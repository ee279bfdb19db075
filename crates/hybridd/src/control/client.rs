//! The control socket's client side (`hybridd scan`, `hybridd doctor`).
//!
//! Before anything is sent — the QR URI, later the PIN — the client makes
//! sure the daemon is the user's own (issue 16: another local user must not
//! be able to squat the path and collect the PIN through a fake prompt):
//! the socket's directory must be a real directory (not a symbolic link)
//! owned by the user with no access for group or others
//! ([`private_dir_problem`], the rule the server's `bind` enforces too), and
//! the process listening must run as the user (`SO_PEERCRED`,
//! [`crate::control::peer_allowed`]).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::control::lines::{write_line, LineReader};
use crate::control::protocol::{ClientMsg, DaemonMsg};
use crate::control::{peer_allowed, ProtocolError, MAX_LINE};

/// A client connection to the daemon.
pub struct Client {
    lines: LineReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Client { .. }")
    }
}

/// What is wrong with `dir` (its `lstat` metadata) as the private
/// directory of `our_uid`'s control socket, if anything.
pub fn private_dir_problem(meta: &std::fs::Metadata, our_uid: u32) -> Option<&'static str> {
    if meta.file_type().is_symlink() {
        Some("is a symbolic link")
    } else if !meta.is_dir() {
        Some("is not a directory")
    } else if meta.uid() != our_uid {
        Some("is not owned by you")
    } else if meta.mode() & 0o077 != 0 {
        Some("is accessible to other users (fix: chmod 700 it)")
    } else {
        None
    }
}

fn refused(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, what)
}

impl Client {
    /// Connects to the daemon's socket, after checking its directory, and
    /// checks the listening process's uid; sends nothing. A failed check is
    /// an error of kind `PermissionDenied`.
    pub async fn connect(path: &Path) -> std::io::Result<Client> {
        let our_uid = crate::config::current_uid();
        let dir = path.parent().unwrap_or(Path::new("/"));
        let meta = std::fs::symlink_metadata(dir)?;
        if let Some(problem) = private_dir_problem(&meta, our_uid) {
            return Err(refused(format!(
                "refusing the control socket {}: its directory {} {problem}",
                path.display(),
                dir.display()
            )));
        }
        let stream = UnixStream::connect(path).await?;
        let peer = stream.peer_cred()?.uid();
        if !peer_allowed(peer, our_uid) {
            return Err(refused(format!(
                "refusing the control socket {}: it is served by uid {peer}, not by you",
                path.display()
            )));
        }
        let (rd, wr) = stream.into_split();
        Ok(Client {
            lines: LineReader::new(rd, MAX_LINE),
            wr,
        })
    }

    /// Sends one message.
    pub async fn send(&mut self, msg: &ClientMsg) -> std::io::Result<()> {
        write_line(&mut self.wr, &msg.to_line()).await
    }

    /// Receives one message; `Ok(None)` at end of stream.
    pub async fn recv(&mut self) -> Result<Option<DaemonMsg>, ProtocolError> {
        match self.lines.next_line().await? {
            None => Ok(None),
            Some(l) => DaemonMsg::parse(&l).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Issue 16: a socket directory others can enter, or someone else's, or
    /// a symbolic link, is refused before connecting — nothing reaches a
    /// squatter listening there.
    #[tokio::test]
    async fn control_client_refuses_a_squattable_socket_directory() {
        let our = crate::config::current_uid();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("squat");
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("control.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        for mode in [0o777, 0o755, 0o750, 0o1777, 0o705] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = Client::connect(&path).await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{mode:o}");
            assert!(e.to_string().contains("chmod 700"), "{e}");
        }
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = Client::connect(&link.join("control.sock"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        // Nothing connected while refusing.
        let accepted = tokio::time::timeout(std::time::Duration::ZERO, listener.accept()).await;
        assert!(accepted.is_err(), "a refused client connected");
        // The same directory made private: connects (our own uid serves).
        assert!(Client::connect(&path).await.is_ok());
        // Someone else's directory (owner checked on the metadata rule).
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert_eq!(private_dir_problem(&meta, our), None);
        assert_eq!(
            private_dir_problem(&meta, our.wrapping_add(1)),
            Some("is not owned by you")
        );
        let file = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(private_dir_problem(&file, our), Some("is not a directory"));
    }
}
