//! The server's end of an upgraded WebSocket (RFC 6455 §5), lean enough for
//! a relay: a binary message costs one read and one write, with no
//! allocation and no copy of its payload.
//!
//! Why not tungstenite here (perf, relay phase, docs/performance.md "Tunnel:
//! follow-up 3"): with one `recvfrom` and one `sendto` per message the
//! kernel's share is fixed, and what was left in user space was
//! tungstenite's per-message `Bytes`/`BytesMut` bookkeeping, its waker
//! proxy (an `AtomicWaker` registered on every read and flush) and its
//! frame codec. Here a client's frame is unmasked in place in the read
//! buffer and the server's header (unmasked, so at most 10 bytes) is written
//! over the tail of the client's header (masked, so at least 6 bytes, and
//! always at least 4 more than the server's for the same length): the
//! outgoing frame is one contiguous slice of the read buffer.
//!
//! [`Reader`] is pure (bytes in, steps out; fuzzed by
//! `fuzz/fuzz_targets/websocket_server.rs`); [`Conn`] puts it on a stream.
//! Every byte is a client's: nothing here panics on it, every length is
//! checked against the message limit before its payload is buffered, and
//! the rules a server must enforce fail the connection:
//!
//! * a frame without the MASK bit (§5.1: "a server MUST close the
//!   connection upon receiving a frame that is not masked");
//! * a reserved bit set without an extension that defines it (§5.2), an
//!   unknown opcode (§5.2), a 64-bit length with its top bit set (§5.2);
//! * a control frame that is fragmented or longer than 125 bytes (§5.5);
//! * a continuation without a message to continue, or a new data frame in
//!   the middle of a fragmented message (§5.4);
//! * a close frame with a 1-byte body, a status code that may not be sent
//!   (§7.4.1, §7.4.2) or a reason that is not UTF-8 (§5.5.1);
//! * a text frame ([`Failure::Text`]: caBLE carries binary messages only);
//! * a message larger than the limit ([`Failure::Oversize`]), however it is
//!   fragmented.
//!
//! Pings are answered with a pong carrying the same payload (§5.5.2),
//! pongs are ignored (§5.5.3).

use std::io;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::frame::Guarded;
use super::READ_BUFFER;
use crate::stream::MaybeTls;

/// The largest server (unmasked) frame header: 2 + 8-byte length.
const OUT_ROOM: usize = 10;
/// Bytes a read asks room for at least (a frame header and then some).
const MIN_READ: usize = 256;

/// Why a client's bytes failed the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Broke a rule of RFC 6455 (close code 1002).
    Protocol,
    /// A text frame (close code 1003).
    Text,
    /// A message over the limit (close code 1009).
    Oversize,
}

/// What the reader has next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// At least this many more bytes are needed.
    Need(usize),
    /// A whole binary message: [`Reader::message`] / [`Reader::framed`].
    Message,
    /// A ping: [`Reader::pong`] is the answer.
    Ping,
    /// A pong (nothing to do).
    Pong,
    /// A close frame, with its status code if it had one.
    Close(Option<u16>),
    /// The connection must be failed.
    Fail(Failure),
}

/// Where the last message lies.
#[derive(Debug)]
enum Msg {
    None,
    /// In the read buffer: the payload is `buf[at..end]`, after the
    /// client's header (room enough for the server's).
    InBuf {
        at: usize,
        end: usize,
    },
    /// Reassembled from fragments: [`OUT_ROOM`] bytes of room, then the payload.
    Joined(Vec<u8>),
}

/// Parses a client's frames (pure; see the module documentation).
#[derive(Debug)]
pub struct Reader {
    /// Received bytes; those from `pos` on are not parsed yet.
    buf: Vec<u8>,
    pos: usize,
    /// A fragmented message in progress: [`OUT_ROOM`] bytes of room, then the payload so far.
    partial: Option<Vec<u8>>,
    /// The message limit (payload bytes).
    max: usize,
    msg: Msg,
    /// The last ping's payload (at most 125 bytes, §5.5).
    ping: Vec<u8>,
    /// Once failed, stays failed.
    failed: Option<Failure>,
}

impl Reader {
    /// A reader whose first bytes are `already` (read past the HTTP head),
    /// refusing messages longer than `max` bytes.
    pub fn new(already: Vec<u8>, max: usize) -> Self {
        Self {
            buf: already,
            pos: 0,
            partial: None,
            max,
            msg: Msg::None,
            ping: Vec::new(),
            failed: None,
        }
    }

    /// Room for at least `need` more bytes; returns the buffer to read into
    /// (append to its end).
    pub fn space(&mut self, need: usize) -> &mut Vec<u8> {
        if self.pos > 0 {
            // Only the unparsed tail of a frame is moved (at most a header
            // or a partly received frame).
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let want = need.max(MIN_READ);
        let spare = self.buf.capacity().saturating_sub(self.buf.len());
        if spare < want {
            self.buf
                .reserve(want.max(READ_BUFFER.saturating_sub(self.buf.len())));
        }
        &mut self.buf
    }

    /// Feeds bytes (for tests and the fuzz target; [`Conn`] reads straight
    /// into [`Self::space`]).
    pub fn feed(&mut self, data: &[u8]) {
        self.space(data.len()).extend_from_slice(data);
    }

    /// The payload of the message the last [`Step::Message`] announced.
    pub fn message(&self) -> &[u8] {
        match &self.msg {
            Msg::None => &[],
            Msg::InBuf { at, end } => self.buf.get(*at..*end).unwrap_or(&[]),
            Msg::Joined(v) => v.get(OUT_ROOM..).unwrap_or(&[]),
        }
    }

    /// That message as a server's frame (FIN, binary, unmasked), written in
    /// place in front of its payload.
    pub fn framed(&mut self) -> &[u8] {
        let (bytes, at, end) = match &mut self.msg {
            Msg::None => return &[],
            Msg::InBuf { at, end } => (&mut self.buf, *at, *end),
            Msg::Joined(v) => {
                let end = v.len();
                (v, OUT_ROOM, end)
            }
        };
        let (head, n) = header(0x2, end.saturating_sub(at));
        let from = at.saturating_sub(n);
        // `from..at` lies in the client's header (or the room): there are
        // at least `n` bytes before the payload.
        if let (Some(dst), Some(src)) = (bytes.get_mut(from..at), head.get(..n)) {
            if dst.len() == src.len() {
                dst.copy_from_slice(src);
                return bytes.get(from..end).unwrap_or(&[]);
            }
        }
        &[]
    }

    /// The answer to the last ping (§5.5.2: the same payload).
    pub fn pong(&self) -> Vec<u8> {
        frame(0xA, &self.ping)
    }

    /// Bytes buffered and not parsed yet, and the buffer's capacity.
    pub fn buffered(&self) -> (usize, usize) {
        (self.buf.len().saturating_sub(self.pos), self.buf.capacity())
    }

    /// Parses what is buffered as far as the next event.
    pub fn step(&mut self) -> Step {
        self.msg = Msg::None;
        if let Some(f) = self.failed {
            return Step::Fail(f);
        }
        loop {
            let step = self.frame();
            if let Step::Fail(f) = step {
                self.failed = Some(f);
            }
            if self.pos > 0 && self.pos >= self.buf.len() && matches!(step, Step::Need(_)) {
                // All parsed: start over at the front, and give back a
                // buffer a large message grew.
                self.buf.clear();
                self.pos = 0;
                if self.buf.capacity() > 2 * READ_BUFFER {
                    self.buf.shrink_to(READ_BUFFER);
                }
            }
            match step {
                // A fragment was taken in: go on with the next frame.
                Step::Need(0) => continue,
                s => return s,
            }
        }
    }

    /// One frame; `Need(0)` after a fragment that did not end its message.
    fn frame(&mut self) -> Step {
        let data = self.buf.get(self.pos..).unwrap_or(&[]);
        let (Some(&b0), Some(&b1)) = (data.first(), data.get(1)) else {
            return Step::Need(2 - data.len().min(2));
        };
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        if b0 & 0x70 != 0 {
            return Step::Fail(Failure::Protocol); // §5.2 RSV1-3
        }
        if b1 & 0x80 == 0 {
            return Step::Fail(Failure::Protocol); // §5.1 unmasked
        }
        let control = opcode & 0x8 != 0;
        if !matches!(opcode, 0x0 | 0x1 | 0x2 | 0x8 | 0x9 | 0xA) {
            return Step::Fail(Failure::Protocol); // §5.2 reserved opcode
        }
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let hlen = 2 + ext + 4;
        let Some(head) = data.get(..hlen) else {
            return Step::Need(hlen - data.len());
        };
        let len: u64 = match ext {
            2 => {
                let mut b = [0u8; 2];
                b.copy_from_slice(head.get(2..4).unwrap_or(&[0; 2]));
                u64::from(u16::from_be_bytes(b))
            }
            8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(head.get(2..10).unwrap_or(&[0; 8]));
                u64::from_be_bytes(b)
            }
            _ => u64::from(b1 & 0x7f),
        };
        if len >> 63 != 0 {
            return Step::Fail(Failure::Protocol); // §5.2 64-bit length
        }
        if control {
            if !fin || len > 125 {
                return Step::Fail(Failure::Protocol); // §5.5
            }
        } else if opcode == 0x1 {
            return Step::Fail(Failure::Text);
        } else {
            match (opcode, &self.partial) {
                (0x0, None) | (0x2, Some(_)) => return Step::Fail(Failure::Protocol), // §5.4
                _ => {}
            }
            let so_far = self
                .partial
                .as_ref()
                .map_or(0, |p| p.len().saturating_sub(OUT_ROOM));
            if len > self.max.saturating_sub(so_far) as u64 {
                return Step::Fail(Failure::Oversize);
            }
        }
        // At most the message limit (or 125) by now.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let total = hlen.saturating_add(len);
        if data.len() < total {
            return Step::Need(total - data.len());
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(head.get(hlen - 4..hlen).unwrap_or(&[0; 4]));
        let at = self.pos + hlen;
        let end = self.pos + total;
        self.pos = end;
        let Some(payload) = self.buf.get_mut(at..end) else {
            return Step::Fail(Failure::Protocol);
        };
        unmask(payload, mask);
        match opcode {
            0x2 if fin => {
                self.msg = Msg::InBuf { at, end };
                Step::Message
            }
            0x2 => {
                let mut joined = Vec::with_capacity(OUT_ROOM + payload.len());
                joined.resize(OUT_ROOM, 0);
                joined.extend_from_slice(payload);
                self.partial = Some(joined);
                Step::Need(0)
            }
            0x0 => {
                let Some(mut joined) = self.partial.take() else {
                    return Step::Fail(Failure::Protocol);
                };
                joined.extend_from_slice(payload);
                if fin {
                    self.msg = Msg::Joined(joined);
                    Step::Message
                } else {
                    self.partial = Some(joined);
                    Step::Need(0)
                }
            }
            0x8 => close_code(payload),
            0x9 => {
                self.ping.clear();
                self.ping.extend_from_slice(payload);
                Step::Ping
            }
            _ => Step::Pong,
        }
    }
}

/// A close frame's body (§5.5.1): empty, or a status code and a UTF-8 reason.
fn close_code(body: &[u8]) -> Step {
    match body {
        [] => Step::Close(None),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !may_be_sent(code) || std::str::from_utf8(reason).is_err() {
                Step::Fail(Failure::Protocol)
            } else {
                Step::Close(Some(code))
            }
        }
        [_] => Step::Fail(Failure::Protocol),
    }
}

/// Status codes an endpoint may send (§7.4.1, §7.4.2; 1012–1014 registered
/// with IANA since): 1004–1006 and 1015 are reserved or never sent.
fn may_be_sent(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// XORs the payload with the client's masking key (§5.3), eight bytes at a
/// time (the payload starts at key offset 0, so every eighth byte does too).
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *b ^= m;
    }
}

/// A server frame's header (FIN set, unmasked) and its length.
fn header(opcode: u8, len: usize) -> ([u8; OUT_ROOM], usize) {
    let mut h = [0u8; OUT_ROOM];
    h[0] = 0x80 | opcode;
    if len <= 125 {
        h[1] = len as u8;
        (h, 2)
    } else if let Ok(n) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&n.to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

/// A whole server frame.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let (h, n) = header(opcode, payload.len());
    let mut f = Vec::with_capacity(n + payload.len());
    f.extend_from_slice(h.get(..n).unwrap_or(&[]));
    f.extend_from_slice(payload);
    f
}

/// A close frame's body: status code, then the reason (§5.5.1).
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    // At most 123 bytes of reason (§5.5: a control frame's body ≤ 125).
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    body.extend_from_slice(reason.get(..cut).unwrap_or("").as_bytes());
    frame(0x8, &body)
}

/// What [`Conn::next`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Incoming {
    /// A binary message: [`Conn::message`], [`Conn::framed`].
    Message,
    /// A ping: answer it with [`Conn::pong`] (not done inside `next`, which
    /// must stay cancel-safe).
    Ping,
    /// The peer sent a close frame or ended the stream.
    Closed,
    /// The connection must be failed.
    Failed(Failure),
    /// A frame did not arrive within its bound (the stream's `TimedOut`).
    Slow,
}

/// An upgraded connection, server side.
#[derive(Debug)]
pub(super) struct Conn<S = Guarded> {
    io: S,
    reader: Reader,
    /// A close frame (or the end of the stream) came in: nothing more to read.
    read_done: bool,
    /// A write was cut short (cancelled or failed): a frame is unfinished,
    /// so no close frame can follow it.
    broken: bool,
}

/// A stream that can queue the last bytes it will send so that the end of
/// the stream, sent right after, leaves in the same TCP segment.
pub(super) trait HoldForFin {
    /// Queues what it can of `buf` now, without waiting and without
    /// sending it yet (`send(2)` with `MSG_MORE`: the kernel holds a short
    /// segment until more data or the FIN comes, and `shutdown(2)` puts the
    /// FIN on it and pushes it; Linux `tcp_send_fin`). Returns the bytes
    /// queued; the rest (all of it on an error, e.g. `WouldBlock`, or on a
    /// stream that cannot, the default) goes by an ordinary write.
    fn try_hold_for_fin(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = buf;
        Err(io::ErrorKind::Unsupported.into())
    }
}

impl HoldForFin for Guarded {
    fn try_hold_for_fin(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.get_ref() {
            MaybeTls::Plain(tcp) => tcp.try_io(tokio::io::Interest::WRITABLE, || {
                use rustix::net::{send, SendFlags};
                send(tcp, buf, SendFlags::MORE | SendFlags::NOSIGNAL).map_err(io::Error::from)
            }),
            // TLS: its records and close_notify go through rustls.
            _ => Err(io::ErrorKind::Unsupported.into()),
        }
    }
}

#[cfg(test)]
impl HoldForFin for tokio::io::DuplexStream {}

impl<S: tokio::io::AsyncRead + AsyncWrite + HoldForFin + Unpin> Conn<S> {
    pub(super) fn new(io: S, already: Vec<u8>, max: usize) -> Self {
        Self {
            io,
            reader: Reader::new(already, max),
            read_done: false,
            broken: false,
        }
    }

    /// The next event. Cancel-safe: everything read is kept in the reader.
    pub(super) async fn next(&mut self) -> Incoming {
        if self.read_done {
            return Incoming::Closed;
        }
        loop {
            match self.reader.step() {
                Step::Need(n) => match self.io.read_buf(self.reader.space(n)).await {
                    Ok(0) => {
                        self.read_done = true;
                        return Incoming::Closed;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => return Incoming::Slow,
                    Err(_) => {
                        self.read_done = true;
                        return Incoming::Closed;
                    }
                },
                Step::Message => return Incoming::Message,
                Step::Ping => return Incoming::Ping,
                Step::Pong => {}
                Step::Close(_) => {
                    self.read_done = true;
                    return Incoming::Closed;
                }
                Step::Fail(f) => return Incoming::Failed(f),
            }
        }
    }

    /// The last message's payload.
    pub(super) fn message(&self) -> &[u8] {
        self.reader.message()
    }

    /// Sends `frame` (a whole server frame) and flushes it.
    pub(super) async fn send_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        if self.broken {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.broken = true;
        self.io.write_all(frame).await?;
        self.io.flush().await?;
        self.broken = false;
        Ok(())
    }

    /// Relays the last message of `from` to this connection as one frame.
    pub(super) async fn relay_from(&mut self, from: &mut Conn<S>) -> io::Result<()> {
        if self.broken {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.broken = true;
        self.io.write_all(from.reader.framed()).await?;
        self.io.flush().await?;
        self.broken = false;
        Ok(())
    }

    /// Answers the last ping.
    pub(super) async fn pong(&mut self) -> io::Result<()> {
        let pong = self.reader.pong();
        self.send_frame(&pong).await
    }

    /// Sends a close frame and ends our side of the stream (FIN), each
    /// bounded by `wait`, then reads (up to `wait`) until the peer's close
    /// frame or the end of its stream unless that already came.
    ///
    /// The write side is shut down as soon as the close frame is out: the
    /// server closes the TCP connection first (RFC 6455 §7.1.1), and a peer
    /// waiting for the end of the stream sees it with the close frame
    /// instead of one more round trip later (strace, pairs phase;
    /// docs/performance.md). The read side stays open for the reply, so it
    /// is still read and the connection ends without a reset.
    ///
    /// On plain TCP the close frame is queued with `MSG_MORE`
    /// ([`HoldForFin`]), so the FIN rides in the same segment: one packet
    /// for the peer's kernel and one wake-up for the peer instead of two.
    pub(super) async fn close(&mut self, code: u16, reason: &str, wait: std::time::Duration) {
        let close = close_frame(code, reason);
        let held = if self.broken {
            0
        } else {
            self.io.try_hold_for_fin(&close).unwrap_or(0)
        };
        let rest = close.get(held..).unwrap_or(&[]);
        let sent = held == close.len()
            || matches!(
                tokio::time::timeout(wait, self.send_frame(rest)).await,
                Ok(Ok(()))
            );
        if sent {
            let _ = tokio::time::timeout(wait, self.io.shutdown()).await;
        }
        let _ = tokio::time::timeout(wait, async {
            while matches!(self.next().await, Incoming::Message | Incoming::Ping) {}
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut f = vec![b0];
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n @ 126..=65535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        f
    }

    fn reader(bytes: &[u8]) -> Reader {
        let mut r = Reader::new(Vec::new(), 16 * 1024);
        r.feed(bytes);
        r
    }

    #[test]
    fn messages_of_every_length_class_reframed_in_place() {
        for n in [0usize, 1, 7, 8, 9, 125, 126, 1024, 65535, 65536, 70_000] {
            let payload: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            let mut r = Reader::new(Vec::new(), 100_000);
            r.feed(&client(0x82, &payload));
            r.feed(&client(0x82, b"next"));
            assert_eq!(r.step(), Step::Message, "n={n}");
            assert_eq!(r.message(), &payload[..], "n={n}");
            assert_eq!(r.framed(), &frame(0x2, &payload)[..], "n={n}");
            assert_eq!(r.step(), Step::Message);
            assert_eq!(r.message(), b"next");
            assert_eq!(r.step(), Step::Need(2));
        }
    }

    #[test]
    fn byte_by_byte_is_the_same() {
        let mut bytes = client(0x82, &[5u8; 300]);
        bytes.extend(client(0x89, b"hi"));
        bytes.extend(client(0x02, b"ab"));
        bytes.extend(client(0x8A, b""));
        bytes.extend(client(0x80, b"cd"));
        let mut r = Reader::new(Vec::new(), 1000);
        let mut got = Vec::new();
        for b in &bytes {
            r.feed(&[*b]);
            loop {
                match r.step() {
                    Step::Need(n) => {
                        assert!(n > 0);
                        break;
                    }
                    Step::Message => got.push(r.message().to_vec()),
                    Step::Ping => got.push(r.pong()),
                    s => got.push(format!("{s:?}").into_bytes()),
                }
            }
        }
        assert_eq!(
            got,
            vec![
                vec![5u8; 300],
                frame(0xA, b"hi"),
                b"Pong".to_vec(),
                b"abcd".to_vec()
            ]
        );
        assert_eq!(r.buffered().0, 0);
    }

    #[test]
    fn fragments_are_joined_and_control_frames_go_between() {
        let mut r = reader(&client(0x02, b"he"));
        r.feed(&client(0x89, b"p"));
        r.feed(&client(0x00, b"ll"));
        r.feed(&client(0x80, b"o"));
        assert_eq!(r.step(), Step::Ping);
        assert_eq!(r.pong(), frame(0xA, b"p"));
        assert_eq!(r.step(), Step::Message);
        assert_eq!(r.message(), b"hello");
        assert_eq!(r.framed(), &frame(0x2, b"hello")[..]);
    }

    #[test]
    fn fragment_rules() {
        // A continuation with nothing to continue.
        assert_eq!(
            reader(&client(0x80, b"x")).step(),
            Step::Fail(Failure::Protocol)
        );
        // A new message in the middle of a fragmented one.
        let mut r = reader(&client(0x02, b"a"));
        r.feed(&client(0x82, b"b"));
        assert_eq!(r.step(), Step::Fail(Failure::Protocol));
        // Failed stays failed.
        r.feed(&client(0x82, b"c"));
        assert_eq!(r.step(), Step::Fail(Failure::Protocol));
        // A fragmented control frame.
        assert_eq!(
            reader(&client(0x09, b"")).step(),
            Step::Fail(Failure::Protocol)
        );
    }

    #[test]
    fn oversize_is_refused_before_its_payload_arrives() {
        let mut r = Reader::new(Vec::new(), 100);
        let f = client(0x82, &[0; 101]);
        r.feed(&f[..8]); // header only
        assert_eq!(r.step(), Step::Fail(Failure::Oversize));
        // Exactly the limit is fine, also joined; one more byte in a later
        // fragment is not.
        let mut r = Reader::new(Vec::new(), 100);
        r.feed(&client(0x82, &[0; 100]));
        assert_eq!(r.step(), Step::Message);
        r.feed(&client(0x02, &[0; 60]));
        r.feed(&client(0x80, &[0; 40]));
        assert_eq!(r.step(), Step::Message);
        assert_eq!(r.message().len(), 100);
        r.feed(&client(0x02, &[0; 60]));
        r.feed(&client(0x80, &[0; 41]));
        assert_eq!(r.step(), Step::Fail(Failure::Oversize));
        // A 64-bit length: refused from the header alone.
        let mut r = Reader::new(Vec::new(), 100);
        r.feed(&[0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4]);
        assert_eq!(r.step(), Step::Fail(Failure::Oversize));
        let mut r = Reader::new(Vec::new(), 100);
        r.feed(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(r.step(), Step::Fail(Failure::Protocol));
    }

    #[test]
    fn bad_frames_fail() {
        // Unmasked (§5.1).
        assert_eq!(
            reader(&[0x82, 0x01, 0x00]).step(),
            Step::Fail(Failure::Protocol)
        );
        // Reserved bits, reserved opcodes.
        for b0 in [0xC2, 0xA2, 0x92, 0x83, 0x87, 0x8B, 0x8F] {
            assert_eq!(
                reader(&client(b0, b"")).step(),
                Step::Fail(Failure::Protocol),
                "{b0:#x}"
            );
        }
        // Text, whole or as a first fragment.
        assert_eq!(
            reader(&client(0x81, b"x")).step(),
            Step::Fail(Failure::Text)
        );
        assert_eq!(
            reader(&client(0x01, b"x")).step(),
            Step::Fail(Failure::Text)
        );
        // A control frame over 125 bytes.
        assert_eq!(
            reader(&client(0x89, &[0; 126])).step(),
            Step::Fail(Failure::Protocol)
        );
    }

    #[test]
    fn close_frames() {
        assert_eq!(reader(&client(0x88, b"")).step(), Step::Close(None));
        assert_eq!(
            reader(&client(0x88, &[0x03, 0xe8, b'o', b'k'])).step(),
            Step::Close(Some(1000))
        );
        assert_eq!(
            reader(&client(0x88, &[0x0f, 0xa0])).step(),
            Step::Close(Some(4000))
        );
        for body in [
            &[0x03][..],         // one byte
            &[0x03, 0xed],       // 1005 may not be sent
            &[0x03, 0xee],       // 1006 neither
            &[0x03, 0xe7],       // 999
            &[0x07, 0xd0],       // 2000, reserved
            &[0x03, 0xe8, 0xff], // reason not UTF-8
        ] {
            assert_eq!(
                reader(&client(0x88, body)).step(),
                Step::Fail(Failure::Protocol),
                "{body:?}"
            );
        }
        assert_eq!(
            close_frame(1000, "peer closed"),
            frame(0x8, b"\x03\xe8peer closed")
        );
        assert_eq!(close_frame(1008, &"é".repeat(100)).len(), 2 + 2 + 122);
    }

    #[test]
    fn unmask_matches_the_bytewise_rule() {
        for n in 0..40 {
            let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let mask = [1, 2, 4, 8];
            let mut fast = data.clone();
            unmask(&mut fast, mask);
            let slow: Vec<u8> = data
                .iter()
                .zip(mask.iter().cycle())
                .map(|(b, m)| b ^ m)
                .collect();
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn a_large_message_does_not_keep_its_buffer() {
        let mut r = Reader::new(Vec::new(), 65536);
        r.feed(&client(0x82, &[1; 60000]));
        assert_eq!(r.step(), Step::Message);
        assert_eq!(r.step(), Step::Need(2));
        assert!(r.buffered().1 <= 2 * READ_BUFFER);
    }

    /// Over an in-memory stream: a message relayed as one frame, a ping
    /// answered, the close handshake (close frame, then the end of our
    /// stream), an unmasked frame failing the connection.
    #[tokio::test]
    async fn conn_relays_answers_pings_and_closes() {
        use tokio::io::AsyncReadExt;
        let (mut a, a_srv) = tokio::io::duplex(1 << 16);
        let (mut b, b_srv) = tokio::io::duplex(1 << 16);
        let mut ca = Conn::new(a_srv, client(0x89, b"pi"), 1024);
        let mut cb = Conn::new(b_srv, Vec::new(), 1024);
        assert_eq!(ca.next().await, Incoming::Ping);
        ca.pong().await.unwrap();
        a.write_all(&client(0x82, b"hello")).await.unwrap();
        assert_eq!(ca.next().await, Incoming::Message);
        assert_eq!(ca.message(), b"hello");
        cb.relay_from(&mut ca).await.unwrap();
        let mut got = [0u8; 11];
        a.read_exact(&mut got[..4]).await.unwrap();
        assert_eq!(&got[..4], &frame(0xA, b"pi")[..]);
        b.read_exact(&mut got[..7]).await.unwrap();
        assert_eq!(&got[..7], &frame(0x2, b"hello")[..]);
        // b closes; the server closes b's side and a's.
        b.write_all(&client(0x88, &[0x03, 0xe8])).await.unwrap();
        assert_eq!(cb.next().await, Incoming::Closed);
        let wait = std::time::Duration::from_secs(5);
        cb.close(1000, "peer closed", wait).await;
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, close_frame(1000, "peer closed"));
        a.write_all(&client(0x88, &[0x03, 0xe8])).await.unwrap();
        ca.close(1000, "peer closed", wait).await;
        let mut rest = Vec::new();
        a.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, close_frame(1000, "peer closed"));
        // Unmasked: failed.
        let (mut c, c_srv) = tokio::io::duplex(1024);
        let mut cc = Conn::new(c_srv, Vec::new(), 1024);
        c.write_all(&[0x82, 0x01, 0x00]).await.unwrap();
        assert_eq!(cc.next().await, Incoming::Failed(Failure::Protocol));
        // The end of the stream without a close frame.
        drop(c);
        let (c, c_srv) = tokio::io::duplex(1024);
        drop(c);
        assert_eq!(
            Conn::new(c_srv, Vec::new(), 1).next().await,
            Incoming::Closed
        );
    }
}
