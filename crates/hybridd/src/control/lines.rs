//! JSON lines on the control socket, bounded: a line longer than the limit
//! is refused as soon as its length is known, without being buffered
//! (at most `max` + the reader's buffer are ever held).

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use zeroize::Zeroizing;

use crate::control::ProtocolError;

/// Reads `\n`-terminated lines of at most `max` bytes. Cancel-safe: a
/// partial line stays in the reader, so [`LineReader::next_line`] can sit
/// in a `select!` loop. Lines may carry secrets (the PIN, the QR URI) and
/// are zeroized.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: BufReader<R>,
    line: Zeroizing<Vec<u8>>,
    max: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader of lines up to `max` bytes (without the `\n`).
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner: BufReader::new(inner),
            line: Zeroizing::new(Vec::new()),
            max,
        }
    }

    /// The next line, without its `\n` (or `\r\n`); `Ok(None)` at the end
    /// of the stream. A line over the limit is [`ProtocolError::LineTooLong`]
    /// as soon as its first `max + 1` bytes are seen; the stream is then
    /// left mid-line (close it).
    pub async fn next_line(&mut self) -> Result<Option<Zeroizing<String>>, ProtocolError> {
        loop {
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                if self.line.is_empty() {
                    return Ok(None);
                }
                return self.take().map(Some);
            }
            let (len, end) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            if self.line.len().saturating_add(len) > self.max {
                self.line.clear();
                return Err(ProtocolError::LineTooLong);
            }
            self.line
                .extend_from_slice(buf.get(..len).unwrap_or_default());
            self.inner.consume(len + usize::from(end));
            if end {
                return self.take().map(Some);
            }
        }
    }

    /// Reads and drops the rest of the current line, up to `limit` bytes:
    /// `Ok(true)` once its `\n` is consumed, `Ok(false)` at the end of the
    /// stream, [`ProtocolError::LineTooLong`] past the limit. Keeps nothing.
    pub async fn skip_line(&mut self, limit: usize) -> Result<bool, ProtocolError> {
        self.line.clear();
        let mut skipped = 0usize;
        loop {
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                return Ok(false);
            }
            let (len, end) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            self.inner.consume(len);
            if end {
                return Ok(true);
            }
            skipped = skipped.saturating_add(len);
            if skipped > limit {
                return Err(ProtocolError::LineTooLong);
            }
        }
    }

    fn take(&mut self) -> Result<Zeroizing<String>, ProtocolError> {
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        let bytes = std::mem::take(&mut *self.line);
        String::from_utf8(bytes).map(Zeroizing::new).map_err(|e| {
            drop(Zeroizing::new(e.into_bytes()));
            ProtocolError::NotUtf8
        })
    }
}

/// Writes `line` and a `\n`, and flushes.
pub async fn write_line<W: AsyncWrite + Unpin>(w: &mut W, line: &str) -> std::io::Result<()> {
    let mut out = Zeroizing::new(Vec::with_capacity(line.len() + 1));
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    w.write_all(&out).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_crlf_eof_and_the_limit() {
        let data: &[u8] = b"one\r\ntwo\n\nlast";
        let mut r = LineReader::new(data, 8);
        assert_eq!(r.next_line().await.unwrap().unwrap().as_str(), "one");
        assert_eq!(r.next_line().await.unwrap().unwrap().as_str(), "two");
        assert_eq!(r.next_line().await.unwrap().unwrap().as_str(), "");
        assert_eq!(r.next_line().await.unwrap().unwrap().as_str(), "last");
        assert!(r.next_line().await.unwrap().is_none());

        let exact = b"12345678\n";
        let mut r = LineReader::new(&exact[..], 8);
        assert_eq!(r.next_line().await.unwrap().unwrap().as_str(), "12345678");
        let over = b"123456789\n";
        let mut r = LineReader::new(&over[..], 8);
        assert!(matches!(
            r.next_line().await,
            Err(ProtocolError::LineTooLong)
        ));
        // The rest of an overlong line can be skipped to read on.
        let two = b"123456789abc\nok\n";
        let mut r = LineReader::new(&two[..], 8);
        assert!(r.next_line().await.is_err());
        assert!(r.skip_line(100).await.unwrap());
        assert_eq!(r.next_line().await.unwrap().unwrap().as_str(), "ok");
        let bad = b"\xff\xfe\n";
        let mut r = LineReader::new(&bad[..], 8);
        assert!(matches!(r.next_line().await, Err(ProtocolError::NotUtf8)));
    }

    /// A peer that streams an endless line is refused after max + 1 bytes,
    /// not after buffering it (the old reader read the whole line first).
    #[tokio::test]
    async fn an_endless_line_is_refused_early() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            let chunk = [b'x'; 64];
            let mut sent = 0usize;
            while tx.write_all(&chunk).await.is_ok() {
                sent += chunk.len();
                if sent > 1 << 20 {
                    break;
                }
            }
            sent
        });
        let mut r = LineReader::new(rx, 1000);
        assert!(matches!(
            r.next_line().await,
            Err(ProtocolError::LineTooLong)
        ));
        assert!(r.line.is_empty(), "nothing of the long line is kept");
        drop(r);
        let sent = writer.await.unwrap();
        assert!(sent < 64 * 1024, "the reader stopped early ({sent} bytes)");
    }
}
