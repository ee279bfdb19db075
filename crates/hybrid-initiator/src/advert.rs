//! Where candidate adverts come from, and the desktop's filter (§3.3).
//!
//! A real desktop scans BLE; here adverts arrive as 40 hex characters per
//! line — the file radio's format (`hybrid_ble::advert_line`) — from a file
//! that is atomically replaced, from a reader (the phone's stdout) or as raw
//! bytes on a channel. Anything that is not 20 bytes of hex is skipped, so a
//! reader may carry other output too.

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use hybrid_ble::{EidPlaintext, ADVERT_LEN};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, Lines};
use tokio::sync::mpsc;

use crate::error::Error;

/// How often a watched file is re-read.
pub const DEFAULT_POLL: Duration = Duration::from_millis(2);

type LineReader = Lines<BufReader<Pin<Box<dyn AsyncRead + Send>>>>;

/// A stream of candidate adverts.
pub enum AdvertSource {
    /// A file the phone's file radio replaces atomically; every new content
    /// is one candidate.
    File {
        /// The file.
        path: PathBuf,
        /// Re-read interval.
        poll: Duration,
        /// The last content seen (a content is offered once).
        last: Option<String>,
    },
    /// One candidate per line.
    Lines(LineReader),
    /// Raw service data.
    Channel(mpsc::UnboundedReceiver<Vec<u8>>),
}

impl std::fmt::Debug for AdvertSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdvertSource::File { path, .. } => write!(f, "AdvertSource::File({})", path.display()),
            AdvertSource::Lines(_) => f.write_str("AdvertSource::Lines"),
            AdvertSource::Channel(_) => f.write_str("AdvertSource::Channel"),
        }
    }
}

impl AdvertSource {
    /// Watches `path` (polling every [`DEFAULT_POLL`]). A file that does not
    /// exist yet is waited for.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        AdvertSource::File {
            path: path.into(),
            poll: DEFAULT_POLL,
            last: None,
        }
    }

    /// Reads lines from `reader` (e.g. a child process's stdout).
    pub fn reader(reader: impl AsyncRead + Send + 'static) -> Self {
        let boxed: Pin<Box<dyn AsyncRead + Send>> = Box::pin(reader);
        AdvertSource::Lines(BufReader::new(boxed).lines())
    }

    /// Receives raw service data from a channel.
    pub fn channel(rx: mpsc::UnboundedReceiver<Vec<u8>>) -> Self {
        AdvertSource::Channel(rx)
    }

    /// The next candidate (not yet checked against any key).
    pub async fn next_candidate(&mut self) -> Result<Vec<u8>, Error> {
        match self {
            AdvertSource::File { path, poll, last } => loop {
                match tokio::fs::read_to_string(&*path).await {
                    Ok(text) => {
                        let text = text.trim().to_owned();
                        if last.as_deref() != Some(text.as_str()) {
                            let bytes = parse_line(&text);
                            *last = Some(text);
                            if let Some(bytes) = bytes {
                                return Ok(bytes);
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::AdvertSourceEnded(e.to_string())),
                }
                tokio::time::sleep(*poll).await;
            },
            AdvertSource::Lines(lines) => loop {
                match lines.next_line().await {
                    Ok(Some(line)) => {
                        if let Some(bytes) = parse_line(line.trim()) {
                            return Ok(bytes);
                        }
                    }
                    Ok(None) => return Err(Error::AdvertSourceEnded("end of input".into())),
                    Err(e) => return Err(Error::AdvertSourceEnded(e.to_string())),
                }
            },
            AdvertSource::Channel(rx) => rx
                .recv()
                .await
                .ok_or_else(|| Error::AdvertSourceEnded("channel closed".into())),
        }
    }
}

/// 40 hex characters → 20 bytes; anything else → `None`.
fn parse_line(line: &str) -> Option<Vec<u8>> {
    if line.len() != 2 * ADVERT_LEN {
        return None;
    }
    hex::decode(line).ok()
}

/// An advert that decrypted under this QR's EID key with a known domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchedAdvert {
    /// The EID plaintext (routing ID, domain ID, nonce); the PSK's input.
    pub plaintext: EidPlaintext,
    /// How long the desktop waited for it.
    pub waited: Duration,
    /// How many candidates were skipped before it (other QRs' adverts,
    /// garbage, unknown domains).
    pub ignored: usize,
}
