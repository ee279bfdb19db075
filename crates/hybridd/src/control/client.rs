//! The control socket's client side (`hybridd scan`, `hybridd doctor`).

use std::path::Path;

use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::control::lines::{write_line, LineReader};
use crate::control::protocol::{ClientMsg, DaemonMsg};
use crate::control::{ProtocolError, MAX_LINE};

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

impl Client {
    /// Connects to the daemon's socket.
    pub async fn connect(path: &Path) -> std::io::Result<Client> {
        let (rd, wr) = UnixStream::connect(path).await?.into_split();
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
