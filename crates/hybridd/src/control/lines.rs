//! JSON lines on the control socket, bounded: a line longer than the limit
//! is refused as soon as its length is known, without being buffered
//! (at most `max` + the reader's buffer are ever held).
//!
//! Both the line and the read buffer are wiped: a line may hold the PIN,
//! so the reader keeps its own zeroized chunk buffer instead of tokio's
//! `BufReader` (whose buffer would keep the bytes until reused), and the
//! line never reallocates on its own (a reallocation would leave an unwiped
//! copy behind): it starts small and grows by copying into a larger buffer
//! and wiping the old one ([`LineReader::grow_line`]). Small, because
//! `zeroize` wipes a buffer's whole capacity: a line reserved at the 16 KiB
//! limit cost two 16 KiB wipes per control connection, ≈ 1 % of the
//! daemon's CPU per ceremony (docs/performance.md, "Both benchmarks again on
//! a quiet host").

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::{Zeroize, Zeroizing};

use crate::control::ProtocolError;

/// Reads `\n`-terminated lines of at most `max` bytes. Cancel-safe: a
/// partial line stays in the reader, so [`LineReader::next_line`] can sit
/// in a `select!` loop. Lines may carry secrets (the PIN, the QR URI) and
/// are zeroized.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    /// Bytes read but not yet consumed are `buf[pos..filled]`; consumed
    /// bytes are wiped at once.
    buf: Zeroizing<Vec<u8>>,
    pos: usize,
    filled: usize,
    line: Zeroizing<Vec<u8>>,
    max: usize,
}

/// The reader's chunk size.
const CHUNK: usize = 1024;

/// The line buffer's first capacity: a `scan` line with a typical QR URI,
/// or an `approve` line, fits without growing.
const LINE_START: usize = 512;

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader of lines up to `max` bytes (without the `\n`).
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            buf: Zeroizing::new(vec![0; CHUNK]),
            pos: 0,
            filled: 0,
            line: Zeroizing::new(fresh_line(max)),
            max,
        }
    }

    /// Makes room for `more` bytes in the line (its length plus `more` is
    /// at most `max`, checked by the caller): a new buffer of twice the
    /// capacity (or what is needed, at most `max`), the line copied over
    /// and the old buffer wiped.
    fn grow_line(&mut self, more: usize) {
        let need = self.line.len().saturating_add(more);
        if need <= self.line.capacity() {
            return;
        }
        let cap = self
            .line
            .capacity()
            .saturating_mul(2)
            .min(self.max)
            .max(need);
        let mut bigger = Vec::with_capacity(cap);
        bigger.extend_from_slice(&self.line);
        // The old buffer is dropped inside a `Zeroizing`: wiped, capacity
        // included.
        drop(Zeroizing::new(std::mem::replace(&mut *self.line, bigger)));
    }

    /// The unconsumed bytes, reading a new chunk when there are none
    /// (empty at the end of the stream). Cancel-safe: `read` is.
    async fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.pos >= self.filled {
            let n = self.inner.read(&mut self.buf[..]).await?;
            self.pos = 0;
            self.filled = n.min(self.buf.len());
        }
        Ok(self.buf.get(self.pos..self.filled).unwrap_or_default())
    }

    /// Marks `n` bytes as used and wipes them.
    fn consume(&mut self, n: usize) {
        let end = self.pos.saturating_add(n).min(self.filled);
        if let Some(used) = self.buf.get_mut(self.pos..end) {
            used.zeroize();
        }
        self.pos = end;
    }

    /// The next line, without its `\n` (or `\r\n`); `Ok(None)` at the end
    /// of the stream. A line over the limit is [`ProtocolError::LineTooLong`]
    /// as soon as its first `max + 1` bytes are seen; the stream is then
    /// left mid-line (close it).
    pub async fn next_line(&mut self) -> Result<Option<Zeroizing<String>>, ProtocolError> {
        loop {
            let buf = self.fill_buf().await?;
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
                self.line.zeroize();
                return Err(ProtocolError::LineTooLong);
            }
            self.grow_line(len);
            let Self { line, buf, pos, .. } = self;
            line.extend_from_slice(buf.get(*pos..*pos + len).unwrap_or_default());
            self.consume(len + usize::from(end));
            if end {
                return self.take().map(Some);
            }
        }
    }

    /// Reads and drops the rest of the current line, up to `limit` bytes:
    /// `Ok(true)` once its `\n` is consumed, `Ok(false)` at the end of the
    /// stream, [`ProtocolError::LineTooLong`] past the limit. Keeps nothing.
    pub async fn skip_line(&mut self, limit: usize) -> Result<bool, ProtocolError> {
        self.line.zeroize();
        let mut skipped = 0usize;
        loop {
            let buf = self.fill_buf().await?;
            if buf.is_empty() {
                return Ok(false);
            }
            let (len, end) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            self.consume(len);
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
        let bytes = std::mem::replace(&mut *self.line, fresh_line(self.max));
        String::from_utf8(bytes).map(Zeroizing::new).map_err(|e| {
            drop(Zeroizing::new(e.into_bytes()));
            ProtocolError::NotUtf8
        })
    }
}

/// An empty line buffer for lines of at most `max` bytes.
fn fresh_line(max: usize) -> Vec<u8> {
    Vec::with_capacity(LINE_START.min(max))
}

/// Writes `line` and a `\n`, and flushes.
pub async fn write_line<W: AsyncWrite + Unpin>(w: &mut W, line: &str) -> std::io::Result<()> {
    write_lines(w, [line]).await
}

/// Writes each of `lines` followed by a `\n` in one write, and flushes:
/// lines that are ready together leave in one `send(2)` (one wake-up of the
/// reader instead of one per line).
pub async fn write_lines<W, I, S>(w: &mut W, lines: I) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = Zeroizing::new(Vec::new());
    for line in lines {
        out.extend_from_slice(line.as_ref().as_bytes());
        out.push(b'\n');
    }
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

    /// A line longer than the first capacity grows across several reads
    /// (each read is one 1 KiB chunk here) and comes out whole; its buffer
    /// never holds more than the limit, and the next line starts small.
    #[tokio::test]
    async fn long_lines_grow_up_to_the_limit() {
        let max = 5000;
        let long: String = (0..max)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let data = format!("{long}\nshort\r\n{long}x\n");
        let mut r = LineReader::new(data.as_bytes(), max);
        let line = r.next_line().await.unwrap().unwrap();
        assert_eq!(line.as_str(), long);
        assert!(line.capacity() <= max, "capacity {}", line.capacity());
        let short = r.next_line().await.unwrap().unwrap();
        assert_eq!(short.as_str(), "short");
        assert!(short.capacity() <= LINE_START);
        assert!(matches!(
            r.next_line().await,
            Err(ProtocolError::LineTooLong)
        ));
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

    /// Nothing of a read line stays in the reader's buffers: the consumed
    /// bytes of the chunk buffer are wiped at once, and the line buffer
    /// never reallocates (so no unwiped copy is left behind).
    #[tokio::test]
    async fn zeroize_consumed_bytes_and_no_reallocation() {
        let data: &[u8] = b"{\"pin\":\"424242\"}\nnext";
        let mut r = LineReader::new(data, 64);
        let cap = r.line.capacity();
        let line = r.next_line().await.unwrap().unwrap();
        assert_eq!(line.as_str(), "{\"pin\":\"424242\"}");
        let consumed = r.pos;
        assert!(
            r.buf[..consumed].iter().all(|&b| b == 0),
            "consumed bytes wiped"
        );
        assert_eq!(&r.buf[consumed..r.filled], b"next");
        assert_eq!(
            r.line.capacity(),
            cap,
            "the line buffer kept its reservation"
        );
        // An overlong line is wiped, not just cleared.
        let mut r = LineReader::new(&b"secretsecret\n"[..], 4);
        assert!(r.next_line().await.is_err());
        assert!(r.line.is_empty());
    }
}
