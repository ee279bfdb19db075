//! Slow-client protection for the WebSocket phase: once the first byte of a
//! frame has arrived, the whole frame must arrive within
//! [`ServerConfig::frame_timeout_secs`](super::ServerConfig::frame_timeout_secs).
//!
//! [`FrameTracker`] follows frame boundaries in the raw bytes a client sends
//! (RFC 6455 §5.2 header: 2 bytes, then a 16- or 64-bit extended length, then
//! a 4-byte mask when the MASK bit is set, then the payload); it is pure and
//! counts bytes only, so it is exact whatever the WebSocket library buffers.
//! [`Guarded`] wraps the connection's stream, feeds the tracker with every
//! byte read and fails the read with [`io::ErrorKind::TimedOut`] when a frame
//! is still incomplete at its deadline. Validating the frame is left to the
//! WebSocket library.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::stream::MaybeTls;

/// Longest frame header: 2 + 8 (64-bit length) + 4 (mask).
const MAX_HEADER: usize = 14;

/// Where a byte stream of WebSocket frames stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameTracker {
    header: [u8; MAX_HEADER],
    /// Header bytes collected for the frame in progress (0 = at a boundary).
    have: usize,
    /// Payload bytes still to come of the frame whose header is complete.
    remaining: u64,
    /// Frames completed so far.
    completed: u64,
}

impl Default for FrameTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameTracker {
    /// At a frame boundary.
    pub fn new() -> Self {
        Self {
            header: [0; MAX_HEADER],
            have: 0,
            remaining: 0,
            completed: 0,
        }
    }

    /// Frames completed so far.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Whether the bytes fed so far end inside a frame (header or payload).
    pub fn mid_frame(&self) -> bool {
        self.have > 0 || self.remaining > 0
    }

    /// Feeds bytes as they were received; returns [`Self::mid_frame`].
    pub fn feed(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.remaining -= take as u64;
                data = data.get(take..).unwrap_or(&[]);
                if self.remaining == 0 {
                    self.completed = self.completed.wrapping_add(1);
                }
                continue;
            }
            // In a header: collect up to the length it announces.
            let need = self.header_len();
            let take = need.saturating_sub(self.have).min(data.len());
            if let (Some(dst), Some(src)) = (
                self.header.get_mut(self.have..self.have + take),
                data.get(..take),
            ) {
                dst.copy_from_slice(src);
            }
            self.have += take;
            data = data.get(take..).unwrap_or(&[]);
            if self.have >= 2 && self.have == self.header_len() {
                self.remaining = self.payload_len();
                self.have = 0;
                if self.remaining == 0 {
                    self.completed = self.completed.wrapping_add(1);
                }
            }
        }
        self.mid_frame()
    }

    /// The header length the bytes so far announce (2 until both first bytes are in).
    fn header_len(&self) -> usize {
        if self.have < 2 {
            return 2;
        }
        let b1 = self.header.get(1).copied().unwrap_or(0);
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask
    }

    fn payload_len(&self) -> u64 {
        let b1 = self.header.get(1).copied().unwrap_or(0);
        match b1 & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                b.copy_from_slice(self.header.get(2..4).unwrap_or(&[0; 2]));
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(self.header.get(2..10).unwrap_or(&[0; 8]));
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        }
    }
}

/// A server-side connection whose every frame must arrive in bounded time.
#[derive(Debug)]
pub(super) struct Guarded<S = MaybeTls> {
    inner: S,
    tracker: FrameTracker,
    timeout: Duration,
    /// Armed (allocated) only while a frame is incomplete.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Guarded<S> {
    /// Wraps `inner`; `already_read` are the bytes read past the HTTP head,
    /// which count as received now.
    pub(super) fn new(inner: S, already_read: &[u8], timeout: Duration) -> Self {
        let mut g = Self {
            inner,
            tracker: FrameTracker::new(),
            timeout,
            deadline: None,
        };
        g.received(already_read);
        g
    }

    /// The wrapped stream.
    pub(super) fn get_ref(&self) -> &S {
        &self.inner
    }

    fn received(&mut self, data: &[u8]) {
        let was_mid = self.tracker.mid_frame();
        let completed = self.tracker.completed();
        if !self.tracker.feed(data) {
            self.deadline = None;
        } else if !was_mid || completed != self.tracker.completed() || self.deadline.is_none() {
            // A new frame started: its clock starts now. (A frame that was
            // already incomplete keeps its deadline.)
            let at = Instant::now()
                .checked_add(self.timeout)
                .unwrap_or_else(far_future);
            match &mut self.deadline {
                Some(d) => d.as_mut().reset(at),
                None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
    }
}

/// An instant beyond any deadline the server uses (one year ahead).
pub(super) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(deadline) = this.deadline.as_mut() {
            // Registers the waker too, so the task wakes at the deadline
            // even when the client sends nothing more.
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "WebSocket frame not received in time",
                )));
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = buf.filled().get(before..).unwrap_or(&[]);
        if !new.is_empty() {
            this.received(new);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// In memory under a paused clock: each frame gets the whole bound
    /// from its own first byte; one that is still incomplete at its
    /// deadline fails the read.
    #[tokio::test(start_paused = true)]
    async fn each_frame_gets_the_bound_from_its_first_byte() {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut g = Guarded::new(server, &[], Duration::from_secs(10));
        let mut buf = [0u8; 64];
        let started = Instant::now();
        // Whole frames far apart: never late.
        for _ in 0..3 {
            client.write_all(&frame(3)).await.unwrap();
            assert_eq!(g.read(&mut buf).await.unwrap(), 9);
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        // The end of one frame and the start of the next in one read, then
        // the rest of the second 8 s later: its clock started with its
        // first byte, not with the first frame's.
        let two = [frame(4), frame(4)].concat();
        client.write_all(&two[..7]).await.unwrap();
        assert_eq!(g.read(&mut buf).await.unwrap(), 7);
        tokio::time::sleep(Duration::from_secs(8)).await;
        client.write_all(&two[7..14]).await.unwrap();
        assert_eq!(g.read(&mut buf).await.unwrap(), 7);
        tokio::time::sleep(Duration::from_secs(8)).await;
        client.write_all(&two[14..]).await.unwrap();
        assert_eq!(g.read(&mut buf).await.unwrap(), 6);
        // A frame that stops half way: the read fails at its deadline.
        client.write_all(&frame(100)[..20]).await.unwrap();
        assert_eq!(g.read(&mut buf).await.unwrap(), 20);
        let stalled = Instant::now();
        let e = g.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(stalled.elapsed(), Duration::from_secs(10));
        assert!(started.elapsed() >= Duration::from_secs(106));
    }

    /// A masked client frame with `n` payload bytes.
    fn frame(n: usize) -> Vec<u8> {
        let mut f = vec![0x82];
        match n {
            0..=125 => f.push(0x80 | n as u8),
            126..=65535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend(std::iter::repeat_n(0xaa, n));
        f
    }

    #[test]
    fn boundaries_in_any_split() {
        for n in [0, 1, 125, 126, 1000, 65535, 65536] {
            let mut bytes = frame(n);
            bytes.extend(frame(3));
            // Whole.
            let mut t = FrameTracker::new();
            assert!(!t.feed(&bytes), "n={n}");
            assert_eq!(t.completed(), 2);
            // Byte by byte: mid-frame until each frame's last byte.
            let first = frame(n).len();
            let mut t = FrameTracker::new();
            for (i, b) in bytes.iter().enumerate() {
                let mid = t.feed(&[*b]);
                let boundary = i + 1 == first || i + 1 == bytes.len();
                assert_eq!(mid, !boundary, "n={n} i={i}");
            }
        }
        // An unmasked header (server frames, or a broken client) is followed too.
        let mut t = FrameTracker::new();
        assert!(!t.feed(&[0x82, 2, 9, 9]));
        assert!(t.feed(&[0x82]));
        assert!(t.feed(&[0xff, 0, 0, 0, 0, 0, 0, 0]));
        assert!(t.mid_frame());
    }
}
