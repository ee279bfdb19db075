//! hybridd's QR freshness policy on key 3 (beyond Chromium's phone, which
//! does not examine key 3: `hybrid-protocol.md` §1.4 rule 8;
//! conformance-checklist "QR freshness").

use crate::{QrCode, QrError};

/// How old (or how far in the future) a QR's key-3 timestamp may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Largest accepted age in seconds (default 600).
    pub max_age_secs: u64,
    /// Largest accepted clock skew into the future in seconds (default 60).
    pub max_future_secs: u64,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            max_age_secs: 600,
            max_future_secs: 60,
        }
    }
}

impl Freshness {
    /// Checks `qr`'s timestamp against `now_unix` (Unix seconds, supplied by
    /// the caller: this crate reads no clock). Returns the age in seconds
    /// (0 if slightly in the future), or `None` if the QR carries no
    /// timestamp — which is accepted.
    pub fn check(&self, qr: &QrCode, now_unix: u64) -> Result<Option<u64>, QrError> {
        let Some(ts) = qr.timestamp() else {
            return Ok(None);
        };
        if ts > now_unix {
            let ahead_secs = ts - now_unix;
            if ahead_secs > self.max_future_secs {
                return Err(QrError::FromFuture { ahead_secs });
            }
            return Ok(Some(0));
        }
        let age_secs = now_unix - ts;
        if age_secs > self.max_age_secs {
            return Err(QrError::Stale {
                age_secs,
                max_age_secs: self.max_age_secs,
            });
        }
        Ok(Some(age_secs))
    }
}
