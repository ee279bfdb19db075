//! hybridd's QR replay policy (conformance checklist "QR replay", beyond
//! Chromium's phone): one QR code is good for one handshake.
//!
//! Everything the phone derives — tunnel ID, EID key, PSK (hybrid-protocol.md
//! §2.2) — comes from the QR secret (QR key 1, §1.3), so a QR shown once and
//! photographed could otherwise be scanned again later. The daemon keeps, for
//! its lifetime, the SHA-256 of the secret of every QR whose session reached
//! the handshake (the desktop's first message, msg1 of §5.3, arrived —
//! whether the handshake then succeeded or not), and refuses such a QR
//! before any network use with [`hybrid_session::FailReason::QrReplayed`].
//! A QR whose session ended before any desktop message (tunnel unreachable,
//! radio failure, desktop never connected, cancelled while waiting) is not
//! recorded and may be scanned again.
//!
//! Secrets are compared, not URI text, so `FIDO:/…` and `fido:/…` (§1.1:
//! the prefix is case-insensitive) are the same QR. Only digests are kept;
//! lookups compare digests in constant time.
//!
//! Memory is bounded: at most [`DEFAULT_CAPACITY`] entries (the oldest is
//! forgotten first), and an entry is dropped once its QR would be refused
//! as stale anyway (key 3 + `max_qr_age_secs` is in the past). A QR without
//! a key-3 timestamp never goes stale, so its entry lives until evicted by
//! capacity.

use std::collections::VecDeque;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How many used QRs the daemon remembers.
pub const DEFAULT_CAPACITY: usize = 64;

/// SHA-256 of a QR secret (never the secret itself).
#[derive(Clone, Copy)]
pub struct QrDigest([u8; 32]);

impl QrDigest {
    /// The digest of the QR secret (QR key 1, §1.3).
    pub fn of_secret(secret: &[u8]) -> Self {
        QrDigest(Sha256::digest(secret).into())
    }
}

impl std::fmt::Debug for QrDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QrDigest(..)")
    }
}

impl PartialEq for QrDigest {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for QrDigest {}

#[derive(Debug)]
struct Entry {
    digest: QrDigest,
    /// Unix second after which the freshness policy refuses this QR anyway
    /// (`None`: the QR has no timestamp).
    stale_after_unix: Option<u64>,
}

/// The digests of QRs that reached a handshake, bounded (module docs).
#[derive(Debug)]
pub struct ReplaySet {
    entries: VecDeque<Entry>,
    capacity: usize,
}

impl Default for ReplaySet {
    fn default() -> Self {
        ReplaySet::new(DEFAULT_CAPACITY)
    }
}

impl ReplaySet {
    /// An empty set remembering at most `capacity` QRs (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        ReplaySet {
            entries: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Whether this QR already reached a handshake. Drops entries that
    /// went stale by `now_unix` first.
    pub fn contains(&mut self, digest: &QrDigest, now_unix: u64) -> bool {
        self.prune(now_unix);
        // Every entry is compared (no early exit), each in constant time.
        self.entries
            .iter()
            .fold(false, |found, e| found | (e.digest == *digest))
    }

    /// Records a QR that reached a handshake. `stale_after_unix` is the
    /// Unix second after which the freshness policy refuses it (its key 3 +
    /// the maximum age), `None` when it carries no timestamp. The oldest
    /// entry is forgotten when the set is full.
    pub fn insert(&mut self, digest: QrDigest, stale_after_unix: Option<u64>, now_unix: u64) {
        self.prune(now_unix);
        if self.entries.iter().any(|e| e.digest == digest) {
            return;
        }
        while self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            digest,
            stale_after_unix,
        });
    }

    /// How many QRs are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn prune(&mut self, now_unix: u64) {
        self.entries
            .retain(|e| e.stale_after_unix.is_none_or(|t| now_unix <= t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> QrDigest {
        QrDigest::of_secret(&[n; 16])
    }

    #[test]
    fn remembers_digests_not_secrets() {
        let mut s = ReplaySet::default();
        assert!(!s.contains(&d(1), 1000));
        s.insert(d(1), None, 1000);
        assert!(s.contains(&d(1), 1000));
        assert!(!s.contains(&d(2), 1000));
        // Inserting again does not duplicate.
        s.insert(d(1), None, 1000);
        assert_eq!(s.len(), 1);
        assert_eq!(format!("{:?}", d(1)), "QrDigest(..)");
        assert_ne!(QrDigest::of_secret(&[1; 16]).0, [1u8; 32]);
    }

    #[test]
    fn bounded_oldest_forgotten_first() {
        let mut s = ReplaySet::new(3);
        for n in 0..5 {
            s.insert(d(n), None, 0);
        }
        assert_eq!(s.len(), 3);
        assert!(!s.contains(&d(0), 0));
        assert!(!s.contains(&d(1), 0));
        assert!(s.contains(&d(2), 0) && s.contains(&d(3), 0) && s.contains(&d(4), 0));
        let mut full = ReplaySet::default();
        for n in 0..=200u8 {
            full.insert(d(n), None, 0);
        }
        assert_eq!(full.len(), DEFAULT_CAPACITY);
        assert!(ReplaySet::new(0).is_empty());
    }

    #[test]
    fn entries_go_when_the_qr_would_be_stale_anyway() {
        let mut s = ReplaySet::default();
        s.insert(d(1), Some(1600), 1000);
        s.insert(d(2), None, 1000);
        assert!(s.contains(&d(1), 1600), "still fresh at the limit");
        assert!(
            !s.contains(&d(1), 1601),
            "stale QRs are refused as stale instead"
        );
        assert_eq!(s.len(), 1);
        assert!(s.contains(&d(2), u64::MAX), "no timestamp: kept");
    }
}
