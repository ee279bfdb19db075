//! Message framing on the CTAP 2.3 BLE L2CAP data channel, sans-IO
//! (`hybrid-ble-l2cap.md` §4).
//!
//! The channel carries exactly the tunnel's messages — Noise msg1 (desktop →
//! phone, 81 bytes), msg2 (phone → desktop, 81 bytes), then Crypter frames —
//! but an L2CAP stream socket does not keep message boundaries, and an SDU is
//! not a message: the desktop may split one message over several SDUs
//! (libwebauthn 0.5–0.10 write the message and its terminator as two
//! `write()`s; bluer writes 16-byte SDUs until the send MTU is known) or put
//! several messages in one read. Shipped desktops use one of two wrappings:
//!
//! | variant | who | frame | desktop's first byte |
//! |---|---|---|---|
//! | [`L2capFraming::LengthPrefix`] | pxp 0.1.0 = libwebauthn 0.11 (`l2cap.rs`, `LENGTH_PREFIX_LEN` = 4) | `BE32(len) ‖ msg` | `00` (`00 00 00 51 04 …`) |
//! | [`L2capFraming::Crlf`] | libwebauthn 0.5–0.10 (`transport/cable/l2cap.rs`, `EOM`) | `msg ‖ 0D 0A` | `04` (msg1's ephemeral) |
//!
//! The desktop always speaks first, so [`L2capDecoder`] tells the two apart
//! from the first byte and the phone answers in the same variant for the
//! whole session (§4, "recommended phone receive algorithm").
//!
//! CRLF is ambiguous for ciphertext: `0D 0A` can occur inside a message
//! (probability ≈ len / 65536). The phone handles it as §4 recommends:
//!
//! * **sending**: before sending msg2, regenerate the ephemeral key until
//!   msg2 contains no `0D 0A` ([`L2capFraming::is_sendable`]); nothing was
//!   sent, so each try is safe. Later frames cannot be re-encrypted (that
//!   would reuse an AES-GCM nonce); one containing `0D 0A` will break a
//!   libwebauthn ≤ 0.10 desktop, whose reader cuts at the first `0D 0A`.
//! * **receiving**: a candidate message (bytes up to a `0D 0A`) that does not
//!   decrypt is extended to the next `0D 0A` ([`L2capDecoder::extend_candidate`])
//!   and tried again. AES-GCM decryption that fails does not advance the
//!   Crypter's read counter (`hybrid_noise::Crypter::decrypt`); a failed
//!   Noise msg1 is retried with a fresh responder. Candidates shorter than
//!   an AEAD tag (16 bytes) cannot be sealed messages and are extended
//!   without asking; extensions per message are bounded
//!   ([`MAX_CRLF_EXTENSIONS`]), so a hostile desktop cannot make the phone
//!   decrypt megabytes again and again.
//!
//! Every length is bounded: messages are 1..=[`MAX_L2CAP_MESSAGE_LEN`]
//! bytes (the desktop's own decrypt buffer is 1 MiB, `MAX_CBOR_SIZE`), a
//! zero-length frame is refused, bytes buffered without a terminator are
//! bounded, and a stream that ends mid-message is reported
//! ([`L2capDecoder::finish`]). A third "bare" variant (one SDU per message,
//! no wrapping) is conceivable (§9) but no shipped desktop speaks it; it is
//! not supported.

use crate::BleError;

/// The largest message either side may send: 1 MiB, libwebauthn's
/// `MAX_CBOR_SIZE` decrypt buffer (`hybrid-ble-l2cap.md` §4).
pub const MAX_L2CAP_MESSAGE_LEN: usize = 1 << 20;

/// Length of the big-endian length prefix of [`L2capFraming::LengthPrefix`]
/// (pxp `l2cap.rs` `LENGTH_PREFIX_LEN`).
pub const LENGTH_PREFIX_LEN: usize = 4;

/// The end-of-message marker of [`L2capFraming::Crlf`] (libwebauthn ≤ 0.10
/// `l2cap.rs` `EOM`).
pub const CRLF: [u8; 2] = [0x0d, 0x0a];

/// The shortest sealed message: a bare AES-GCM tag (Noise and Crypter
/// alike). A CRLF candidate shorter than this is extended without asking.
pub const MIN_SEALED_LEN: usize = 16;

/// How often one CRLF message may be extended after failing to decrypt. An
/// honest 1 MiB message holds 16 `0D 0A` on average; desktop messages are
/// usually a few hundred bytes.
pub const MAX_CRLF_EXTENSIONS: u32 = 32;

/// How a message is wrapped on the L2CAP channel (`hybrid-ble-l2cap.md` §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L2capFraming {
    /// Variant L: `BE32(len) ‖ msg` (pxp 0.1.0, libwebauthn 0.11).
    LengthPrefix,
    /// Variant C: `msg ‖ 0D 0A` (libwebauthn 0.5–0.10).
    Crlf,
}

impl L2capFraming {
    /// The variant a desktop speaks, from the first byte it sent: `00` is the
    /// high byte of a length prefix, `04` the start of an uncompressed P-256
    /// point (Noise msg1 sent bare, then `0D 0A`).
    pub fn sniff(first_byte: u8) -> Result<Self, BleError> {
        match first_byte {
            0x00 => Ok(L2capFraming::LengthPrefix),
            0x04 => Ok(L2capFraming::Crlf),
            b => Err(BleError::L2capUnknownFraming { first_byte: b }),
        }
    }

    /// A short name for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            L2capFraming::LengthPrefix => "length-prefix",
            L2capFraming::Crlf => "crlf",
        }
    }

    /// Wraps one message for the wire, ready for a single `write()` (so the
    /// prefix or terminator never travels alone). Refuses an empty message
    /// and one over [`MAX_L2CAP_MESSAGE_LEN`].
    ///
    /// For [`L2capFraming::Crlf`] a message that contains `0D 0A` is wrapped
    /// all the same; check [`L2capFraming::is_sendable`] first where the
    /// message can still be made again (msg2).
    pub fn encode(self, msg: &[u8]) -> Result<Vec<u8>, BleError> {
        check_len(msg.len())?;
        let mut out = Vec::with_capacity(msg.len() + LENGTH_PREFIX_LEN);
        match self {
            L2capFraming::LengthPrefix => {
                let len = u32::try_from(msg.len()).map_err(|_| BleError::L2capTooLong {
                    len: msg.len(),
                    max: MAX_L2CAP_MESSAGE_LEN,
                })?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(msg);
            }
            L2capFraming::Crlf => {
                out.extend_from_slice(msg);
                out.extend_from_slice(&CRLF);
            }
        }
        Ok(out)
    }

    /// Whether the desktop will read `msg` back whole: its length is
    /// allowed and, for [`L2capFraming::Crlf`], it contains no `0D 0A`
    /// (libwebauthn ≤ 0.10 cuts a message at the first one). The phone
    /// regenerates its ephemeral key until msg2 passes (§4 (a)).
    pub fn is_sendable(self, msg: &[u8]) -> bool {
        check_len(msg.len()).is_ok()
            && match self {
                L2capFraming::LengthPrefix => true,
                L2capFraming::Crlf => find_crlf(msg, 0).is_none(),
            }
    }
}

fn check_len(len: usize) -> Result<(), BleError> {
    if len == 0 {
        return Err(BleError::L2capEmptyMessage);
    }
    if len > MAX_L2CAP_MESSAGE_LEN {
        return Err(BleError::L2capTooLong {
            len,
            max: MAX_L2CAP_MESSAGE_LEN,
        });
    }
    Ok(())
}

/// Index of the first `0D 0A` in `buf` at or after `from`.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(CRLF.len())
        .position(|w| w == CRLF)
        .map(|p| p + from)
}

/// Reassembles messages from the byte chunks an L2CAP channel delivers, in
/// whatever sizes they arrive (`hybrid-ble-l2cap.md` §3–§4).
///
/// Use: [`push`](Self::push) each chunk read, then call
/// [`next_message`](Self::next_message) until it returns `Ok(None)`. In the
/// CRLF variant a returned message is a *candidate*: if it does not decrypt,
/// call [`extend_candidate`](Self::extend_candidate) and the next
/// `next_message` returns it extended to the following `0D 0A`; otherwise
/// just carry on. At end of stream call [`finish`](Self::finish).
///
/// Any error is final: the decoder returns it again on every later call and
/// the channel must be closed.
#[derive(Debug)]
pub struct L2capDecoder {
    framing: Option<L2capFraming>,
    buf: Vec<u8>,
    /// CRLF: bytes at the front of `buf` that the last candidate (and its
    /// terminator) took; dropped at the next call unless extended.
    pending: usize,
    /// CRLF: where the terminator search for the current candidate starts.
    search_from: usize,
    /// CRLF: `buf[search_from..scanned]` holds no `0D 0A` (search resumes
    /// there, so byte-by-byte input costs linear time).
    scanned: usize,
    /// CRLF: extensions of the current candidate so far.
    extensions: u32,
    max_len: usize,
    failed: Option<BleError>,
}

impl Default for L2capDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl L2capDecoder {
    /// A decoder for messages up to [`MAX_L2CAP_MESSAGE_LEN`].
    pub fn new() -> Self {
        Self::with_max_message_len(MAX_L2CAP_MESSAGE_LEN)
    }

    /// A decoder with a smaller message limit (clamped to
    /// 1..=[`MAX_L2CAP_MESSAGE_LEN`]).
    pub fn with_max_message_len(max_len: usize) -> Self {
        Self {
            framing: None,
            buf: Vec::new(),
            pending: 0,
            search_from: 0,
            scanned: 0,
            extensions: 0,
            max_len: max_len.clamp(1, MAX_L2CAP_MESSAGE_LEN),
            failed: None,
        }
    }

    /// A decoder for a stream whose variant is already known — the
    /// desktop's side, reading the phone's answers in its own variant.
    pub fn for_framing(framing: L2capFraming) -> Self {
        Self {
            framing: Some(framing),
            ..Self::new()
        }
    }

    /// The variant the desktop speaks, once its first byte has arrived and
    /// [`next_message`](Self::next_message) has looked at it. The phone
    /// answers in the same one.
    pub fn framing(&self) -> Option<L2capFraming> {
        self.framing
    }

    /// Bytes received and not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.pending)
    }

    /// The most bytes the decoder holds at once: a whole message with its
    /// wrapping, plus as much again for the chunk that completes it.
    pub fn buffer_limit(&self) -> usize {
        2 * (self.max_len + LENGTH_PREFIX_LEN)
    }

    fn fail(&mut self, e: BleError) -> BleError {
        self.failed = Some(e.clone());
        e
    }

    /// Adds bytes as they came off the channel (any size, including one
    /// byte or a chunk holding several messages).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), BleError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let held = self.buffered().saturating_add(chunk.len());
        if held > self.buffer_limit() {
            return Err(self.fail(BleError::L2capBufferFull {
                buffered: held,
                max: self.buffer_limit(),
            }));
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    /// The next whole message, `Ok(None)` until one has arrived. In the CRLF
    /// variant it is a candidate (see [`extend_candidate`](Self::extend_candidate)).
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, BleError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.pending > 0 {
            // The caller kept the last candidate: it was a message.
            self.buf.drain(..self.pending);
            self.pending = 0;
            self.search_from = 0;
            self.scanned = 0;
            self.extensions = 0;
        }
        let framing = match self.framing {
            Some(f) => f,
            None => match self.buf.first() {
                None => return Ok(None),
                Some(&b) => {
                    let f = L2capFraming::sniff(b).map_err(|e| self.fail(e))?;
                    self.framing = Some(f);
                    f
                }
            },
        };
        match framing {
            L2capFraming::LengthPrefix => self.next_prefixed(),
            L2capFraming::Crlf => self.next_crlf(),
        }
    }

    fn next_prefixed(&mut self) -> Result<Option<Vec<u8>>, BleError> {
        let Some(prefix) = self.buf.first_chunk::<LENGTH_PREFIX_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len == 0 {
            return Err(self.fail(BleError::L2capEmptyMessage));
        }
        if len > self.max_len {
            return Err(self.fail(BleError::L2capTooLong {
                len,
                max: self.max_len,
            }));
        }
        let end = LENGTH_PREFIX_LEN + len;
        let Some(msg) = self.buf.get(LENGTH_PREFIX_LEN..end) else {
            return Ok(None);
        };
        let msg = msg.to_vec();
        self.buf.drain(..end);
        Ok(Some(msg))
    }

    fn next_crlf(&mut self) -> Result<Option<Vec<u8>>, BleError> {
        loop {
            let from = self.scanned.max(self.search_from);
            match find_crlf(&self.buf, from) {
                None => {
                    // A CR at the very end may pair with the next chunk's LF.
                    self.scanned = self.buf.len().saturating_sub(1).max(self.search_from);
                    if self.buf.len() > self.max_len + CRLF.len() {
                        let buffered = self.buf.len();
                        return Err(self.fail(BleError::L2capNoTerminator {
                            buffered,
                            max: self.max_len,
                        }));
                    }
                    return Ok(None);
                }
                Some(end) if end < MIN_SEALED_LEN => {
                    // Too short to be sealed: the 0D 0A is inside the message.
                    self.search_from = end + CRLF.len();
                    self.scanned = self.search_from;
                }
                Some(end) if end > self.max_len => {
                    return Err(self.fail(BleError::L2capTooLong {
                        len: end,
                        max: self.max_len,
                    }));
                }
                Some(end) => {
                    self.pending = end + CRLF.len();
                    return Ok(self.buf.get(..end).map(<[u8]>::to_vec));
                }
            }
        }
    }

    /// CRLF variant: the last message returned did not decrypt, so its
    /// `0D 0A` was part of the ciphertext. The next
    /// [`next_message`](Self::next_message) returns it extended to the next
    /// `0D 0A` (once that has arrived), terminator bytes included.
    ///
    /// Errors when there is no candidate to extend (length-prefix variant,
    /// or nothing returned since the last call) and after
    /// [`MAX_CRLF_EXTENSIONS`] extensions of one message.
    pub fn extend_candidate(&mut self) -> Result<(), BleError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.framing != Some(L2capFraming::Crlf) || self.pending == 0 {
            return Err(BleError::L2capNothingToExtend);
        }
        if self.extensions >= MAX_CRLF_EXTENSIONS {
            return Err(self.fail(BleError::L2capTooManyExtensions {
                max: MAX_CRLF_EXTENSIONS,
            }));
        }
        self.extensions += 1;
        self.search_from = self.pending;
        self.scanned = self.pending;
        self.pending = 0;
        Ok(())
    }

    /// The channel ended (EOF, or a reset after the last message, which
    /// desktops treat alike). Fine when no partial message is buffered;
    /// otherwise the stream was truncated mid-message.
    pub fn finish(&self) -> Result<(), BleError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(BleError::L2capTruncated { buffered }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;

    /// A Noise-msg1-shaped message: 04, then 80 bytes of `fill`.
    fn msg1(fill: u8) -> Vec<u8> {
        let mut m = vec![fill; 81];
        m[0] = 0x04;
        m
    }

    /// Feeds `wire` in chunks of `n` bytes and collects every message,
    /// extending CRLF candidates that are not in `expected` (the test's
    /// stand-in for "does not decrypt").
    fn drain_chunked(
        d: &mut L2capDecoder,
        wire: &[u8],
        n: usize,
        expected: &[Vec<u8>],
    ) -> Result<Vec<Vec<u8>>, BleError> {
        let mut out = Vec::new();
        for chunk in wire.chunks(n.max(1)) {
            d.push(chunk)?;
            while let Some(m) = d.next_message()? {
                if d.framing() == Some(L2capFraming::Crlf) && expected.get(out.len()) != Some(&m) {
                    d.extend_candidate()?;
                    continue;
                }
                out.push(m);
            }
        }
        Ok(out)
    }

    #[test]
    fn libwebauthn_0_11_first_frame() {
        let m = msg1(0x11);
        let wire = L2capFraming::LengthPrefix.encode(&m).unwrap();
        assert_eq!(wire[..5], [0x00, 0x00, 0x00, 0x51, 0x04]);
        assert_eq!(wire.len(), 85);
        let mut d = L2capDecoder::new();
        d.push(&wire).unwrap();
        assert_eq!(d.next_message().unwrap(), Some(m));
        assert_eq!(d.framing(), Some(L2capFraming::LengthPrefix));
        assert_eq!(d.next_message().unwrap(), None);
        d.finish().unwrap();
    }

    #[test]
    fn libwebauthn_0_10_first_frame_in_two_writes() {
        // The message and its CRLF come as two writes (two SDUs).
        let m = msg1(0x22);
        let mut d = L2capDecoder::new();
        d.push(&m).unwrap();
        assert_eq!(d.next_message().unwrap(), None);
        assert_eq!(d.framing(), Some(L2capFraming::Crlf));
        d.push(&CRLF).unwrap();
        assert_eq!(d.next_message().unwrap(), Some(m.clone()));
        assert_eq!(d.next_message().unwrap(), None);
        d.finish().unwrap();
        let wire = L2capFraming::Crlf.encode(&m).unwrap();
        assert_eq!(wire.len(), 83);
        assert_eq!(wire[81..], CRLF);
    }

    #[test]
    fn byte_by_byte_both_variants() {
        let msgs = vec![msg1(0x33), vec![0xaa; 300], vec![0x55; 17], vec![1; 2000]];
        for f in [L2capFraming::LengthPrefix, L2capFraming::Crlf] {
            let wire: Vec<u8> = msgs.iter().flat_map(|m| f.encode(m).unwrap()).collect();
            for n in [1, 2, 3, 5, 16, 23, 64, 85, 512, wire.len()] {
                let mut d = L2capDecoder::new();
                let got = drain_chunked(&mut d, &wire, n, &msgs).unwrap();
                assert_eq!(got, msgs, "{f:?} chunks of {n}");
                d.finish().unwrap();
            }
        }
    }

    #[test]
    fn sniffing() {
        assert_eq!(L2capFraming::sniff(0), Ok(L2capFraming::LengthPrefix));
        assert_eq!(L2capFraming::sniff(4), Ok(L2capFraming::Crlf));
        for b in [1u8, 2, 3, 5, 0x0d, 0x0a, 0x80, 0xff] {
            assert_eq!(
                L2capFraming::sniff(b),
                Err(BleError::L2capUnknownFraming { first_byte: b })
            );
            let mut d = L2capDecoder::new();
            d.push(&[b, 0, 0]).unwrap();
            let e = d.next_message().unwrap_err();
            assert_eq!(e, BleError::L2capUnknownFraming { first_byte: b });
            // Errors are final.
            assert_eq!(d.next_message().unwrap_err(), e);
            assert_eq!(d.push(&[0]).unwrap_err(), e);
            assert_eq!(d.finish().unwrap_err(), e);
        }
        // Nothing yet: no variant.
        let mut d = L2capDecoder::new();
        assert_eq!(d.next_message().unwrap(), None);
        assert_eq!(d.framing(), None);
        d.finish().unwrap();
    }

    #[test]
    fn zero_length_prefix_is_refused() {
        let mut d = L2capDecoder::new();
        d.push(&[0, 0, 0, 0, 4, 4]).unwrap();
        assert_eq!(d.next_message(), Err(BleError::L2capEmptyMessage));
        assert_eq!(
            L2capFraming::LengthPrefix.encode(&[]),
            Err(BleError::L2capEmptyMessage)
        );
        assert_eq!(
            L2capFraming::Crlf.encode(&[]),
            Err(BleError::L2capEmptyMessage)
        );
        assert!(!L2capFraming::LengthPrefix.is_sendable(&[]));
    }

    #[test]
    fn oversize_is_refused_before_buffering_it() {
        // (A first prefix ≥ 16 MiB does not even start with 00: see
        // `sniffing`; so the huge ones follow a good first message here.)
        for len in [MAX_L2CAP_MESSAGE_LEN as u32 + 1, 0x0100_0000, u32::MAX] {
            let mut d = L2capDecoder::new();
            d.push(&L2capFraming::LengthPrefix.encode(&msg1(9)).unwrap())
                .unwrap();
            assert_eq!(d.next_message().unwrap(), Some(msg1(9)));
            d.push(&len.to_be_bytes()).unwrap();
            assert_eq!(
                d.next_message(),
                Err(BleError::L2capTooLong {
                    len: len as usize,
                    max: MAX_L2CAP_MESSAGE_LEN
                })
            );
        }
        // Exactly 1 MiB is allowed.
        let big = vec![0x42; MAX_L2CAP_MESSAGE_LEN];
        for f in [L2capFraming::LengthPrefix, L2capFraming::Crlf] {
            let mut wire = f.encode(&big).unwrap();
            if f == L2capFraming::Crlf {
                wire[0] = 4;
            }
            let mut d = L2capDecoder::new();
            d.push(&wire).unwrap();
            let m = d.next_message().unwrap().unwrap();
            assert_eq!(m.len(), MAX_L2CAP_MESSAGE_LEN);
            assert!(f.is_sendable(&big));
            let too_big = vec![0x42; MAX_L2CAP_MESSAGE_LEN + 1];
            assert!(matches!(
                f.encode(&too_big),
                Err(BleError::L2capTooLong { .. })
            ));
            assert!(!f.is_sendable(&too_big));
        }
        // A smaller limit.
        let mut d = L2capDecoder::with_max_message_len(100);
        d.push(&[0, 0, 0, 101]).unwrap();
        assert_eq!(
            d.next_message(),
            Err(BleError::L2capTooLong { len: 101, max: 100 })
        );
    }

    #[test]
    fn crlf_without_terminator_is_bounded() {
        let mut d = L2capDecoder::with_max_message_len(1000);
        d.push(&[4]).unwrap();
        let mut err = None;
        for _ in 0..2000 {
            if let Err(e) = d.push(&[0x0d]).and_then(|()| d.next_message().map(|_| ())) {
                err = Some(e);
                break;
            }
        }
        assert!(
            matches!(err, Some(BleError::L2capNoTerminator { max: 1000, .. })),
            "{err:?}"
        );
        // A terminator too far away is too long, even when it arrives in
        // the same chunk.
        let mut d = L2capDecoder::with_max_message_len(100);
        let mut wire = vec![4; 150];
        wire.extend_from_slice(&CRLF);
        d.push(&wire).unwrap();
        assert_eq!(
            d.next_message(),
            Err(BleError::L2capTooLong { len: 150, max: 100 })
        );
    }

    #[test]
    fn push_is_bounded_when_nobody_drains() {
        let mut d = L2capDecoder::with_max_message_len(10);
        let limit = d.buffer_limit();
        d.push(&vec![0; limit]).unwrap();
        assert_eq!(
            d.push(&[0]),
            Err(BleError::L2capBufferFull {
                buffered: limit + 1,
                max: limit
            })
        );
    }

    #[test]
    fn truncated_at_eof() {
        for (f, cut) in [
            (L2capFraming::LengthPrefix, 2usize),
            (L2capFraming::LengthPrefix, 50),
            (L2capFraming::LengthPrefix, 84),
            (L2capFraming::Crlf, 40),
            (L2capFraming::Crlf, 82),
        ] {
            let wire = f.encode(&msg1(0x44)).unwrap();
            let mut d = L2capDecoder::new();
            d.push(&wire[..cut]).unwrap();
            assert_eq!(d.next_message().unwrap(), None, "{f:?} {cut}");
            assert_eq!(
                d.finish(),
                Err(BleError::L2capTruncated { buffered: cut }),
                "{f:?} {cut}"
            );
        }
    }

    #[test]
    fn crlf_inside_ciphertext_is_extended() {
        // The real message holds 0D 0A at offset 40 and at 70.
        let mut m = msg1(0x66);
        m[40] = 0x0d;
        m[41] = 0x0a;
        m[70] = 0x0d;
        m[71] = 0x0a;
        let next = vec![0x77; 33];
        let mut wire = L2capFraming::Crlf.encode(&m).unwrap();
        wire.extend(L2capFraming::Crlf.encode(&next).unwrap());
        let mut d = L2capDecoder::new();
        d.push(&wire).unwrap();
        assert_eq!(d.next_message().unwrap().unwrap(), m[..40]);
        d.extend_candidate().unwrap();
        assert_eq!(d.next_message().unwrap().unwrap(), m[..70]);
        d.extend_candidate().unwrap();
        assert_eq!(d.next_message().unwrap().unwrap(), m);
        assert_eq!(d.next_message().unwrap().unwrap(), next);
        assert_eq!(d.next_message().unwrap(), None);
        d.finish().unwrap();
        // Nothing to extend now, nor in the other variant.
        assert_eq!(d.extend_candidate(), Err(BleError::L2capNothingToExtend));
        let mut d = L2capDecoder::new();
        d.push(&L2capFraming::LengthPrefix.encode(&m).unwrap())
            .unwrap();
        assert_eq!(d.next_message().unwrap().unwrap(), m);
        assert_eq!(d.extend_candidate(), Err(BleError::L2capNothingToExtend));
    }

    #[test]
    fn crlf_extension_waits_for_more_bytes() {
        let mut m = msg1(0x12);
        m[50] = 0x0d;
        m[51] = 0x0a;
        let wire = L2capFraming::Crlf.encode(&m).unwrap();
        let mut d = L2capDecoder::new();
        d.push(&wire[..60]).unwrap();
        assert_eq!(d.next_message().unwrap().unwrap(), m[..50]);
        d.extend_candidate().unwrap();
        assert_eq!(d.next_message().unwrap(), None);
        // EOF now: the extended candidate is a truncated message.
        assert_eq!(d.finish(), Err(BleError::L2capTruncated { buffered: 60 }));
        d.push(&wire[60..]).unwrap();
        assert_eq!(d.next_message().unwrap().unwrap(), m);
        d.finish().unwrap();
    }

    #[test]
    fn crlf_too_short_candidates_are_skipped() {
        // 0D 0A at offsets 0..16 cannot end a sealed message.
        let mut m = msg1(0x21);
        m[1] = 0x0d;
        m[2] = 0x0a;
        m[14] = 0x0d;
        m[15] = 0x0a;
        let mut d = L2capDecoder::new();
        d.push(&L2capFraming::Crlf.encode(&m).unwrap()).unwrap();
        assert_eq!(d.next_message().unwrap().unwrap(), m);
        // A stream of bare CRLFs whose candidates never decrypt ends in a
        // bounded error, whichever bound comes first.
        for max in [64, 4096] {
            let mut d = L2capDecoder::with_max_message_len(max);
            d.push(&[4]).unwrap();
            let mut err = None;
            for _ in 0..10_000 {
                let r = d.push(&CRLF).and_then(|()| match d.next_message()? {
                    Some(_) => d.extend_candidate(),
                    None => Ok(()),
                });
                if let Err(e) = r {
                    err = Some(e);
                    break;
                }
            }
            assert!(
                matches!(
                    err,
                    Some(
                        BleError::L2capNoTerminator { .. }
                            | BleError::L2capTooLong { .. }
                            | BleError::L2capTooManyExtensions { .. }
                    )
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn crlf_extensions_are_bounded() {
        let mut wire = msg1(0x31);
        for _ in 0..=MAX_CRLF_EXTENSIONS {
            wire.extend_from_slice(&CRLF);
            wire.extend_from_slice(&[0x31; 20]);
        }
        let mut d = L2capDecoder::new();
        d.push(&wire).unwrap();
        for _ in 0..MAX_CRLF_EXTENSIONS {
            assert!(d.next_message().unwrap().is_some());
            d.extend_candidate().unwrap();
        }
        assert!(d.next_message().unwrap().is_some());
        assert_eq!(
            d.extend_candidate(),
            Err(BleError::L2capTooManyExtensions {
                max: MAX_CRLF_EXTENSIONS
            })
        );
    }

    #[test]
    fn sendable() {
        let mut m = msg1(0x01);
        assert!(L2capFraming::Crlf.is_sendable(&m));
        // A trailing CR is fine: "… 0D" + "0D 0A" is cut at the right place.
        *m.last_mut().unwrap() = 0x0d;
        assert!(L2capFraming::Crlf.is_sendable(&m));
        let mut d = L2capDecoder::new();
        d.push(&L2capFraming::Crlf.encode(&m).unwrap()).unwrap();
        assert_eq!(d.next_message().unwrap().unwrap(), m);
        // An LF first after a CR last is fine too.
        m[1] = 0x0a;
        assert!(L2capFraming::Crlf.is_sendable(&m));
        m[30] = 0x0d;
        m[31] = 0x0a;
        assert!(!L2capFraming::Crlf.is_sendable(&m));
        assert!(L2capFraming::LengthPrefix.is_sendable(&m));
    }

    fn messages() -> impl Strategy<Value = Vec<Vec<u8>>> {
        // Lengths from proptest, bytes from a seeded xorshift (per-byte
        // strategies are slow), drawn so that 0D 0A occurs often.
        (any::<u64>(), proptest::collection::vec(16usize..400, 1..6)).prop_map(|(seed, lens)| {
            let mut x = seed | 1;
            lens.iter()
                .map(|&n| {
                    (0..n)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            match x % 8 {
                                0 => 0x0d,
                                1 => 0x0a,
                                _ => (x >> 8) as u8,
                            }
                        })
                        .collect()
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn round_trip_any_chunking(
            mut msgs in messages(),
            crlf in any::<bool>(),
            chunk in 1usize..200,
        ) {
            let f = if crlf { L2capFraming::Crlf } else { L2capFraming::LengthPrefix };
            // The desktop's first message is Noise msg1: it starts with 04.
            msgs[0][0] = 0x04;
            let wire: Vec<u8> = msgs.iter().flat_map(|m| f.encode(m).unwrap()).collect();
            let mut d = L2capDecoder::new();
            let got = drain_chunked(&mut d, &wire, chunk, &msgs).unwrap();
            prop_assert_eq!(d.framing(), Some(f));
            prop_assert_eq!(got, msgs);
            prop_assert!(d.finish().is_ok());
        }

        #[test]
        fn arbitrary_input_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            chunk in 1usize..64,
            extend in any::<bool>(),
        ) {
            let mut d = L2capDecoder::with_max_message_len(256);
            for c in data.chunks(chunk) {
                if d.push(c).is_err() { break; }
                while let Ok(Some(m)) = d.next_message() {
                    prop_assert!(!m.is_empty() && m.len() <= 256);
                    if extend && d.extend_candidate().is_err() { break; }
                }
            }
            prop_assert!(d.buffered() <= d.buffer_limit());
            let _ = d.finish();
        }
    }
}
