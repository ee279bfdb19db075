//! The client side of the Assuan protocol, as pinentry speaks it, without
//! any I/O: commands to bytes, and the server's bytes to replies.
//!
//! Facts from the Assuan and pinentry documentation (libassuan "The Assuan
//! protocol", pinentry "Protocol"): lines end with LF and are at most 1000
//! bytes before it; the server greets with `OK`; a command is answered by
//! any number of `D` (data), `S` (status), `#` (comment) lines and then one
//! `OK [text]` or `ERR <code> [description]`; in parameters and data, `%`,
//! CR and LF are sent as `%25`, `%0D`, `%0A` (any `%XX` is decoded). Error
//! codes are libgpg-error values: the low 16 bits are the code
//! (`GPG_ERR_CANCELED` = 99, `GPG_ERR_FULLY_CANCELED` = 198,
//! `GPG_ERR_TIMEOUT` = 62), the top bits the source (pinentry = 5, so a
//! cancel arrives as `ERR 83886179 Operation cancelled`).
//!
//! Everything the server sends is hostile until parsed: lines are
//! collected in a fixed buffer that never grows (an over-long line is an
//! error, not an allocation), data is decoded into a buffer with a fixed
//! cap, and both are zeroized — they may hold the PIN.

use zeroize::{Zeroize, Zeroizing};

/// The longest line, in bytes before its LF (libassuan's
/// `ASSUAN_LINELENGTH` is 1002 including CR LF).
pub const MAX_LINE: usize = 1000;
/// The most data bytes one reply may carry once decoded (a PIN; hybridd's
/// are at most 63 characters).
pub const MAX_DATA: usize = 1024;

/// `GPG_ERR_CANCELED`: the person cancelled.
pub const GPG_ERR_CANCELED: u32 = 99;
/// `GPG_ERR_FULLY_CANCELED`: cancelled, and the caller should not ask again.
pub const GPG_ERR_FULLY_CANCELED: u32 = 198;
/// `GPG_ERR_TIMEOUT`: pinentry's own timeout (`SETTIMEOUT`) passed.
pub const GPG_ERR_TIMEOUT: u32 = 62;
/// `GPG_ERR_NOT_CONFIRMED`: a `CONFIRM` was answered "no".
pub const GPG_ERR_NOT_CONFIRMED: u32 = 114;

/// What went wrong with the server's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AssuanError {
    /// A line longer than [`MAX_LINE`].
    #[error("a line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// More data than [`MAX_DATA`] in one reply.
    #[error("more than {MAX_DATA} bytes of data")]
    DataTooLong,
    /// A line that is none of `OK`, `ERR`, `D`, `S`, `#`.
    #[error("an unknown line")]
    UnknownLine,
    /// `ERR` without a number.
    #[error("a malformed ERR line")]
    BadErr,
    /// A `%` not followed by two hex digits.
    #[error("a malformed %-escape")]
    BadEscape,
    /// An `INQUIRE`: hybridd never sends a command that asks one back.
    #[error("an unexpected INQUIRE")]
    UnexpectedInquire,
    /// A command's text does not fit one line.
    #[error("a command longer than {MAX_LINE} bytes")]
    CommandTooLong,
}

/// Appends `text` to `out` with `%`, CR, LF and every other control
/// character escaped as `%XX` (Assuan requires the first three; the rest
/// keeps a line a line whatever the text holds).
pub fn escape_into(text: &str, out: &mut Vec<u8>) {
    for &b in text.as_bytes() {
        if b == b'%' || b < 0x20 || b == 0x7f {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

/// The line `VERB` or `VERB arg` (escaped) with its LF; errs if it would
/// be longer than [`MAX_LINE`].
pub fn command(verb: &str, arg: Option<&str>) -> Result<Vec<u8>, AssuanError> {
    let mut line = verb.as_bytes().to_vec();
    if let Some(a) = arg {
        line.push(b' ');
        escape_into(a, &mut line);
    }
    if line.len() > MAX_LINE {
        return Err(AssuanError::CommandTooLong);
    }
    line.push(b'\n');
    Ok(line)
}

/// The final reply to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK`.
    Ok,
    /// `ERR code description`.
    Err {
        /// The whole libgpg-error value.
        code: u32,
        /// The description, reduced to printable ASCII (it is shown in errors).
        message: String,
    },
}

impl Reply {
    /// The libgpg-error code part (low 16 bits) of an `ERR`.
    pub fn err_code(&self) -> Option<u32> {
        match self {
            Reply::Err { code, .. } => Some(code & 0xffff),
            Reply::Ok => None,
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Reads the server's bytes, one reply at a time.
///
/// Feed it what was read with [`Receiver::spare`] + [`Receiver::filled`],
/// then call [`Receiver::next_reply`] until it returns a reply; data lines
/// before it are collected ([`Receiver::take_data`]).
pub struct Receiver {
    buf: Zeroizing<[u8; MAX_LINE + 2]>,
    len: usize,
    data: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("buffered", &self.len)
            .field("data", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver {
            buf: Zeroizing::new([0; MAX_LINE + 2]),
            len: 0,
            data: Zeroizing::new(Vec::with_capacity(MAX_DATA)),
        }
    }
}

impl Receiver {
    /// A receiver with empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where the next read should go. Empty only when a line is too long,
    /// which [`Receiver::next_reply`] reports first.
    pub fn spare(&mut self) -> &mut [u8] {
        let len = self.len;
        self.buf.get_mut(len..).unwrap_or_default()
    }

    /// Records that `n` bytes were read into [`Receiver::spare`].
    pub fn filled(&mut self, n: usize) {
        self.len = (self.len + n).min(self.buf.len());
    }

    /// Processes buffered lines: `Ok(Some(reply))` at the end of a reply,
    /// `Ok(None)` when more bytes are needed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, AssuanError> {
        loop {
            let Some(end) = self
                .buf
                .get(..self.len)
                .and_then(|b| b.iter().position(|&c| c == b'\n'))
            else {
                if self.len >= self.buf.len() {
                    return Err(AssuanError::LineTooLong);
                }
                return Ok(None);
            };
            if end > MAX_LINE + 1 {
                return Err(AssuanError::LineTooLong);
            }
            let result = self.line(end);
            // Drop the line (and its LF) from the buffer, wiping what moved.
            let total = self.len;
            self.buf.copy_within(end + 1..total, 0);
            self.len = total - end - 1;
            if let Some(tail) = self.buf.get_mut(self.len..total) {
                tail.zeroize();
            }
            if let Some(reply) = result? {
                return Ok(Some(reply));
            }
        }
    }

    /// Handles the line `buf[..end]` (without LF).
    fn line(&mut self, end: usize) -> Result<Option<Reply>, AssuanError> {
        let mut line = self.buf.get(..end).unwrap_or_default();
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        if line == b"OK" || line.starts_with(b"OK ") {
            return Ok(Some(Reply::Ok));
        }
        if line == b"ERR" || line.starts_with(b"ERR ") {
            let rest = line.get(4..).unwrap_or_default();
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let code = std::str::from_utf8(rest.get(..digits).unwrap_or_default())
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .ok_or(AssuanError::BadErr)?;
            let message = rest
                .get(digits..)
                .unwrap_or_default()
                .iter()
                .map(|&b| {
                    if (0x20..0x7f).contains(&b) {
                        b as char
                    } else {
                        '?'
                    }
                })
                .collect::<String>()
                .trim()
                .to_owned();
            return Ok(Some(Reply::Err { code, message }));
        }
        if line == b"D" || line.starts_with(b"D ") {
            let payload = line.get(2..).unwrap_or_default();
            let mut i = 0;
            while let Some(&b) = payload.get(i) {
                let byte = if b == b'%' {
                    let hi = payload.get(i + 1).copied().and_then(hex);
                    let lo = payload.get(i + 2).copied().and_then(hex);
                    i += 3;
                    match (hi, lo) {
                        (Some(h), Some(l)) => (h << 4) | l,
                        _ => return Err(AssuanError::BadEscape),
                    }
                } else {
                    i += 1;
                    b
                };
                if self.data.len() >= MAX_DATA {
                    return Err(AssuanError::DataTooLong);
                }
                // Capacity was reserved up front: this never reallocates, so
                // no unzeroized copy of the PIN is left behind.
                self.data.push(byte);
            }
            return Ok(None);
        }
        if line == b"S" || line.starts_with(b"S ") || line.starts_with(b"#") {
            return Ok(None);
        }
        if line.starts_with(b"INQUIRE") {
            return Err(AssuanError::UnexpectedInquire);
        }
        Err(AssuanError::UnknownLine)
    }

    /// The data collected since the last call (moved out; zeroized on drop).
    pub fn take_data(&mut self) -> Zeroizing<Vec<u8>> {
        let mut fresh = Zeroizing::new(Vec::with_capacity(MAX_DATA));
        std::mem::swap(&mut fresh, &mut self.data);
        fresh
    }

    /// Forgets collected data (for replies that should carry none).
    pub fn clear_data(&mut self) {
        self.data.zeroize();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn feed(r: &mut Receiver, bytes: &[u8]) {
        for chunk in bytes.chunks(7) {
            let spare = r.spare();
            spare[..chunk.len()].copy_from_slice(chunk);
            r.filled(chunk.len());
        }
    }

    #[test]
    fn escapes_percent_cr_lf_and_controls() {
        let c = command("SETDESC", Some("50% of\r\nline\x1b[2J")).unwrap();
        assert_eq!(c, b"SETDESC 50%25 of%0D%0Aline%1B[2J\n");
        assert_eq!(command("GETPIN", None).unwrap(), b"GETPIN\n");
        assert_eq!(
            command("SETDESC", Some(&"x".repeat(MAX_LINE))),
            Err(AssuanError::CommandTooLong)
        );
    }

    #[test]
    fn reads_greeting_data_and_ok_across_chunks() {
        let mut r = Receiver::new();
        feed(
            &mut r,
            b"OK Pleased to meet you\nS PASSWORD_FROM_CACHE\n# hi\nD 12%2534\nD %0a5\nOK\n",
        );
        assert_eq!(r.next_reply().unwrap(), Some(Reply::Ok));
        r.clear_data();
        assert_eq!(r.next_reply().unwrap(), Some(Reply::Ok));
        assert_eq!(&r.take_data()[..], b"12%34\n5");
        assert_eq!(r.next_reply().unwrap(), None);
    }

    #[test]
    fn cancel_is_an_err_with_code_99() {
        let mut r = Receiver::new();
        feed(&mut r, b"ERR 83886179 Operation cancelled <Pinentry>\n");
        let reply = r.next_reply().unwrap().unwrap();
        assert_eq!(reply.err_code(), Some(GPG_ERR_CANCELED));
        assert!(
            matches!(reply, Reply::Err { ref message, .. } if message == "Operation cancelled <Pinentry>")
        );
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let mut r = Receiver::new();
        feed(&mut r, &[b'A'; MAX_LINE + 2]);
        assert_eq!(r.next_reply(), Err(AssuanError::LineTooLong));
        assert!(r.spare().is_empty());

        let mut r = Receiver::new();
        feed(&mut r, b"HELLO\n");
        assert_eq!(r.next_reply(), Err(AssuanError::UnknownLine));

        let mut r = Receiver::new();
        feed(&mut r, b"D %4\n");
        assert_eq!(r.next_reply(), Err(AssuanError::BadEscape));

        let mut r = Receiver::new();
        feed(&mut r, b"ERR x\n");
        assert_eq!(r.next_reply(), Err(AssuanError::BadErr));

        let mut r = Receiver::new();
        feed(&mut r, b"INQUIRE QUALITY\n");
        assert_eq!(r.next_reply(), Err(AssuanError::UnexpectedInquire));

        let mut r = Receiver::new();
        let line = format!("D {}\n", "x".repeat(900));
        feed(&mut r, line.as_bytes());
        assert_eq!(r.next_reply(), Ok(None));
        feed(&mut r, line.as_bytes());
        assert_eq!(r.next_reply(), Err(AssuanError::DataTooLong));
    }

    #[test]
    fn a_line_of_exactly_max_length_is_accepted() {
        let mut r = Receiver::new();
        let mut line = b"OK ".to_vec();
        line.resize(MAX_LINE, b'x');
        line.push(b'\n');
        feed(&mut r, &line);
        assert_eq!(r.next_reply().unwrap(), Some(Reply::Ok));
    }
}
