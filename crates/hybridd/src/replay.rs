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
//! capacity (and such a QR is refused unless `allow_qr_without_timestamp`).
//!
//! A QR is inserted the moment the desktop's first message arrives, before
//! the phone acts on it (`ceremony::driver`, `Replay::note`): its line is
//! appended to the file (so it survives the daemon being killed) before the
//! handshake reply, and made durable (so it survives a power loss) before
//! the phone's first answer leaves and before the session ends
//! (`Replay::settle`). Durable one of two ways: when the answer needs a
//! PIN, the entries waiting ([`Undurable`]) ride in the transaction that
//! counts the attempt (`hybrid_vault::Vault::begin_unlock_noting`; read
//! back at start by [`ReplaySet::recover`]), which the vault syncs before
//! anything that follows the check leaves (`crate::vault`); otherwise the
//! file's `fdatasync` runs just before the answer. One synced write per
//! PIN-verified ceremony instead of two (docs/performance.md, "Phone:
//! tenth round" and "eleventh round"). (Until 2026-12-03 a QR
//! was inserted only once the session had ended, so a daemon killed
//! mid-session forgot a QR that had already been answered; until
//! 2026-12-04 the file was synced before the phone read the request.)
//!
//! The daemon's set survives a restart ([`ReplaySet::persistent`]): it is
//! saved after every insert to a file beside the vault ([`FILE_NAME`], mode
//! 0600, at most [`MAX_FILE_BYTES`] read back) — written whole and replaced
//! atomically on the first insert, then each insert appends its line and
//! syncs (no new file, no rename per ceremony: the rename and file
//! creation were half of the save's cost in the profile,
//! docs/performance.md), rewritten whole again once the file holds twice
//! the capacity. The whole write reserves room for those appends: the
//! file is padded with NUL bytes to the size its content can reach before
//! the next rewrite, and an append overwrites padding. The file's size
//! then never changes between rewrites, so an append's `fdatasync` writes
//! the data alone; an append that grows a file must also write its inode,
//! which cost twice the CPU on the benchmark machine (docs/performance.md,
//! "Phone: ninth round"). Readers skip the padding as a damaged line. So
//! restarting the daemon does not make a used QR good again (issue 16). A
//! file others could write is refused (the daemon does not start); a
//! damaged one is ignored line by line.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use hybrid_vault::UsedQr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How many used QRs the daemon remembers.
pub const DEFAULT_CAPACITY: usize = 64;
/// The replay file's name, in the vault's directory.
pub const FILE_NAME: &str = "qr-replay";
/// Most bytes of the replay file read back (a full set is about 5 KiB).
pub const MAX_FILE_BYTES: u64 = 64 * 1024;
/// The replay file's first line.
const FILE_HEADER: &str = "hybridd qr-replay v1";
/// The longest entry line: 64 hex digits, a space, a Unix second of up
/// to 20 digits, a newline.
const MAX_LINE: usize = 64 + 1 + 20 + 1;

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

impl Entry {
    fn used(&self) -> UsedQr {
        UsedQr {
            digest: self.digest.0,
            stale_after_unix: self.stale_after_unix,
        }
    }
}

/// The open replay file of [`ReplaySet`].
#[derive(Debug)]
struct Appender {
    file: File,
    lines: usize,
    end: u64,
}

/// The entries appended to the replay file and not yet durable anywhere
/// (module docs): shared between the [`ReplaySet`] that appends them and
/// the vault, whose counted PIN attempt can commit them
/// ([`crate::vault::VaultWorker::carry_replay`]). Emptied by the file's
/// `fdatasync` or by that commit, whichever comes first.
#[derive(Debug, Clone, Default)]
pub struct Undurable(Arc<Mutex<Vec<UsedQr>>>);

impl Undurable {
    fn with<T>(&self, f: impl FnOnce(&mut Vec<UsedQr>) -> T) -> T {
        // A panic elsewhere while holding it leaves a plain list behind.
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The entries waiting, for a synced commit to carry.
    pub fn waiting(&self) -> Vec<UsedQr> {
        self.with(|w| w.clone())
    }

    /// `carried` were committed durably elsewhere: they wait no more.
    pub fn carried(&self, carried: &[UsedQr]) {
        self.with(|w| w.retain(|u| !carried.contains(u)));
    }

    fn is_empty(&self) -> bool {
        self.with(|w| w.is_empty())
    }

    fn push(&self, u: UsedQr) {
        self.with(|w| w.push(u));
    }

    fn clear(&self) {
        self.with(Vec::clear);
    }
}

/// The digests of QRs that reached a handshake, bounded (module docs).
#[derive(Debug)]
pub struct ReplaySet {
    entries: VecDeque<Entry>,
    capacity: usize,
    /// Where the set is saved after each insert (`None`: memory only).
    file: Option<PathBuf>,
    /// The saved file, open for writing, how many entry lines it holds and
    /// where their text ends (the padding starts); `None` until this
    /// process rewrote it whole (so a line torn by a crash is dropped
    /// before anything is appended after it).
    appender: Option<Appender>,
    /// The appended entries not yet durable ([`ReplaySet::sync`]).
    undurable: Undurable,
    /// How many times [`ReplaySet::sync`] ran `fdatasync`.
    #[cfg(test)]
    data_syncs: usize,
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
            file: None,
            appender: None,
            undurable: Undurable::default(),
            #[cfg(test)]
            data_syncs: 0,
        }
    }

    /// A set of `capacity` saved in `file` after every insert, starting
    /// with what `file` holds (nothing when it does not exist). Refuses a
    /// file someone else could write or a symbolic link
    /// ([`crate::private_file`]).
    pub fn persistent(file: &Path, capacity: usize) -> Result<Self, crate::error::Error> {
        use crate::private_file::{self, Refusal};
        let mut set = ReplaySet::new(capacity);
        let refused = |why: String| crate::error::Error::ReplayFile {
            path: file.to_owned(),
            why,
        };
        match private_file::open(file) {
            Ok(f) => {
                let mut text = String::new();
                f.take(MAX_FILE_BYTES)
                    .read_to_string(&mut text)
                    .map_err(|e| refused(e.to_string()))?;
                set.load(&text);
            }
            Err(Refusal::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(Refusal::Io(e)) => return Err(refused(e.to_string())),
            Err(Refusal::Unsafe(why)) => return Err(refused(why.to_owned())),
        }
        set.file = Some(file.to_owned());
        Ok(set)
    }

    /// Adds the well-formed entries of a saved file (`to_text`'s format);
    /// anything else is skipped.
    fn load(&mut self, text: &str) {
        let mut lines = text.lines();
        if lines.next() != Some(FILE_HEADER) {
            tracing::warn!("QR replay file has no known header; starting empty");
            return;
        }
        for line in lines {
            let mut parts = line.split(' ');
            let (Some(digest), Some(stale), None) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some(digest) = hex::decode(digest)
                .ok()
                .and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok())
            else {
                continue;
            };
            let stale_after_unix = match stale {
                "-" => None,
                t => match t.parse() {
                    Ok(t) => Some(t),
                    Err(_) => continue,
                },
            };
            if self.entries.len() >= self.capacity {
                self.entries.pop_front();
            }
            self.entries.push_back(Entry {
                digest: QrDigest(digest),
                stale_after_unix,
            });
        }
    }

    /// The set in its file format: a header, then one `<digest hex>
    /// <stale-after Unix second or ->` line per entry, oldest first.
    fn to_text(&self) -> String {
        let mut out = format!("{FILE_HEADER}\n");
        for e in &self.entries {
            out.push_str(&Self::line(e));
        }
        out
    }

    /// One entry's line of the file format.
    fn line(e: &Entry) -> String {
        let stale = e
            .stale_after_unix
            .map_or_else(|| "-".to_owned(), |t| t.to_string());
        format!("{} {stale}\n", hex::encode(e.digest.0))
    }

    /// Saves the newest entry to the set's file, if it has one: appended
    /// (not yet synced: [`ReplaySet::sync`]) while the file is below twice
    /// the capacity (reading it back keeps the newest `capacity` entries),
    /// else the whole set is written, synced and replaces the file
    /// atomically. A failure is logged (the set in memory still applies).
    fn save(&mut self) {
        if self.file.is_none() {
            return;
        }
        if let (Some(a), Some(newest)) = (&mut self.appender, self.entries.back()) {
            if a.lines < 2 * self.capacity {
                let line = Self::line(newest);
                match a.file.write_all_at(line.as_bytes(), a.end) {
                    Ok(()) => {
                        a.lines += 1;
                        a.end += line.len() as u64;
                        self.undurable.push(newest.used());
                        return;
                    }
                    Err(e) => self.append_failed(&e),
                }
            }
        }
        self.rewrite();
    }

    /// Makes the appended entries durable (`fdatasync`), if any are not
    /// yet — none when the vault's counted PIN attempt carried them
    /// ([`Undurable`]); on failure the whole set is rewritten (and synced)
    /// instead. The ceremony driver calls it before the phone's first
    /// answer leaves, and when the session ends (`ceremony::driver`).
    pub fn sync(&mut self) {
        if self.undurable.is_empty() {
            return;
        }
        let Some(a) = &mut self.appender else {
            self.undurable.clear();
            return;
        };
        #[cfg(test)]
        {
            self.data_syncs += 1;
        }
        match a.file.sync_data() {
            Ok(()) => self.undurable.clear(),
            Err(e) => {
                self.append_failed(&e);
                self.rewrite();
            }
        }
    }

    /// Whether an appended entry is not yet durable ([`ReplaySet::sync`]).
    pub fn is_unsynced(&self) -> bool {
        !self.undurable.is_empty()
    }

    /// The list of entries not yet durable, for the vault to carry.
    pub fn undurable(&self) -> Undurable {
        self.undurable.clone()
    }

    /// Adds the entries the vault committed (`hybrid_vault::Vault::used_qrs`)
    /// that the file lacks — its last lines, appended but not yet written
    /// back when the machine lost power — and makes them durable in the
    /// file. Entries already stale by `now_unix` are skipped.
    pub fn recover(&mut self, committed: &[UsedQr], now_unix: u64) {
        let mut added = 0;
        for u in committed {
            if u.stale_after_unix.is_some_and(|t| t < now_unix) {
                continue;
            }
            if self.insert(QrDigest(u.digest), u.stale_after_unix, now_unix) {
                added += 1;
            }
        }
        if added > 0 {
            tracing::info!(added, "QR replay memory: recovered entries from the vault");
            self.sync();
        }
    }

    fn append_failed(&self, e: &std::io::Error) {
        if let Some(file) = &self.file {
            tracing::warn!(file = %file.display(), error = %e, "cannot append to the QR replay memory; rewriting it");
        }
    }

    /// Writes the whole set, padded with room for the appends until the
    /// next rewrite, synced, over the file atomically, and reopens it for
    /// writing.
    fn rewrite(&mut self) {
        self.appender = None;
        // Synced whole below; if that fails, nothing more can be done here.
        self.undurable.clear();
        let Some(file) = &self.file else { return };
        let mut bytes = self.to_text().into_bytes();
        let end = bytes.len() as u64;
        let appends = (2 * self.capacity).saturating_sub(self.entries.len());
        let room = (bytes.len() + appends * MAX_LINE).min(MAX_FILE_BYTES as usize);
        bytes.resize(room.max(bytes.len()), 0);
        if let Err(e) = crate::private_file::write_atomically(file, &bytes) {
            tracing::warn!(file = %file.display(), error = %e, "cannot save the QR replay memory");
            return;
        }
        match crate::private_file::open_write(file) {
            Ok(f) => {
                self.appender = Some(Appender {
                    file: f,
                    lines: self.entries.len(),
                    end,
                })
            }
            Err(_) => tracing::warn!(file = %file.display(), "cannot reopen the QR replay memory"),
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
    /// entry is forgotten when the set is full. Returns whether it was new.
    pub fn insert(
        &mut self,
        digest: QrDigest,
        stale_after_unix: Option<u64>,
        now_unix: u64,
    ) -> bool {
        self.prune(now_unix);
        if self.entries.iter().any(|e| e.digest == digest) {
            return false;
        }
        while self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            digest,
            stale_after_unix,
        });
        self.save();
        true
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

    /// A set saved to a file in a fresh directory (kept alive by the
    /// returned guard), with that file's path.
    fn file_set(capacity: usize) -> (tempfile::TempDir, PathBuf, ReplaySet) {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(FILE_NAME);
        let s = ReplaySet::persistent(&f, capacity).unwrap();
        (dir, f, s)
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

    /// Issue 16: the replay memory survives a restart — saved 0600 beside
    /// the vault after each insert, read back bounded, stale entries still
    /// dropped; a damaged file is ignored line by line, one others could
    /// write (or a symbolic link) is refused.
    #[test]
    fn replay_memory_survives_a_restart() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(FILE_NAME);
        {
            let mut s = ReplaySet::persistent(&f, 3).unwrap();
            assert!(s.is_empty());
            s.insert(d(1), Some(2000), 1000);
            s.insert(d(2), None, 1000);
        }
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains(&hex::encode([1u8; 16])),
            "secrets are not stored"
        );
        // "Restart": a new set from the same file.
        let mut s = ReplaySet::persistent(&f, 3).unwrap();
        assert!(s.contains(&d(1), 1500) && s.contains(&d(2), 1500));
        assert!(!s.contains(&d(1), 2001), "stale entries still go");
        // Bounded: the file holds at most the capacity.
        for n in 3..10 {
            s.insert(d(n), None, 1500);
        }
        let s = ReplaySet::persistent(&f, 3).unwrap();
        assert_eq!(s.len(), 3);
        // Damaged lines are skipped; an unknown header starts empty.
        let good = format!("{} -", hex::encode(d(7).0));
        std::fs::write(&f, format!("{FILE_HEADER}\nzz -\n{good}\nab 12 x\n")).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut s = ReplaySet::persistent(&f, 3).unwrap();
        assert_eq!(s.len(), 1);
        assert!(s.contains(&d(7), 0));
        std::fs::write(&f, format!("other\n{good}\n")).unwrap();
        assert!(ReplaySet::persistent(&f, 3).unwrap().is_empty());
        // Others could write it: refused.
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(ReplaySet::persistent(&f, 3).is_err());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(ReplaySet::persistent(&link, 3).is_err());
    }

    /// Inserts append a line each (the file is not replaced per ceremony)
    /// and the file stays bounded; a line torn by a crash is dropped by
    /// the first save after the restart, never appended after.
    #[test]
    fn inserts_append_and_the_file_stays_bounded() {
        use std::os::unix::fs::MetadataExt;
        let (_dir, f, mut s) = file_set(4);
        s.insert(d(1), None, 0);
        let inode = std::fs::metadata(&f).unwrap().ino();
        s.insert(d(2), None, 0);
        s.insert(d(3), None, 0);
        assert_eq!(std::fs::metadata(&f).unwrap().ino(), inode, "appended");
        for n in 4..40 {
            s.insert(d(n), None, 0);
            let text = std::fs::read_to_string(&f).unwrap();
            let lines = entry_lines(&text).len();
            assert!(lines <= 2 * 4, "{lines} lines");
        }
        let back = ReplaySet::persistent(&f, 4).unwrap();
        assert_eq!(back.len(), 4);
        for n in 36..40 {
            assert!(back.entries.iter().any(|e| e.digest == d(n)));
        }
        // A torn last line (crash mid-append).
        let mut text = std::fs::read_to_string(&f).unwrap();
        text.push_str(&hex::encode(d(99).0)[..20]);
        std::fs::write(&f, text).unwrap();
        let mut s = ReplaySet::persistent(&f, 4).unwrap();
        assert_eq!(s.len(), 4);
        s.insert(d(50), None, 0);
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(entry_lines(&text).iter().all(|l| l.len() == 66), "{text}");
        let s = ReplaySet::persistent(&f, 4).unwrap();
        assert!(s.entries.iter().any(|e| e.digest == d(50)));
    }

    /// The lines of a replay file after its header, up to the padding.
    fn entry_lines(text: &str) -> Vec<&str> {
        let content = text.split('\0').next().unwrap_or_default();
        let mut lines = content.lines();
        assert_eq!(lines.next(), Some(FILE_HEADER));
        lines.collect()
    }

    /// Appends overwrite the room the rewrite reserved: the file keeps its
    /// size (an `fdatasync` then writes no inode), and a line torn inside
    /// the padding by a crash is skipped when the file is read back.
    #[test]
    fn appends_fill_reserved_room_without_growing_the_file() {
        let (_dir, f, mut s) = file_set(8);
        s.insert(d(1), Some(u64::MAX), 0);
        let size = std::fs::metadata(&f).unwrap().len();
        assert!(size >= (FILE_HEADER.len() + 1 + 16 * MAX_LINE) as u64);
        for n in 2..=8 {
            s.insert(d(n), Some(u64::MAX), 0);
            assert_eq!(std::fs::metadata(&f).unwrap().len(), size, "entry {n}");
        }
        assert_eq!(entry_lines(&std::fs::read_to_string(&f).unwrap()).len(), 8);
        let back = ReplaySet::persistent(&f, 8).unwrap();
        assert_eq!(back.len(), 8);
        // A crash mid-append: part of a line in the padding.
        let mut bytes = std::fs::read(&f).unwrap();
        let end = bytes.iter().position(|&b| b == 0).unwrap();
        let torn = format!("{} 17", hex::encode(d(99).0));
        bytes[end..end + torn.len()].copy_from_slice(torn.as_bytes());
        std::fs::write(&f, &bytes).unwrap();
        let mut back = ReplaySet::persistent(&f, 8).unwrap();
        assert_eq!(back.len(), 8);
        assert!(!back.contains(&d(99), 0));
    }

    /// An append waits for `sync` (the driver's `Replay::settle`); a
    /// rewrite is synced by itself; a memory-only set has nothing to sync.
    #[test]
    fn an_appended_entry_is_unsynced_until_sync() {
        let (_dir, f, mut s) = file_set(4);
        s.insert(d(1), None, 0);
        assert!(
            !s.is_unsynced(),
            "the first insert rewrites the file, synced"
        );
        s.insert(d(2), None, 0);
        assert!(s.is_unsynced());
        // Already in the file (the page cache): a daemon killed now keeps it.
        assert!(ReplaySet::persistent(&f, 4).unwrap().contains(&d(2), 0));
        s.sync();
        assert!(!s.is_unsynced());
        s.sync();
        assert!(!s.is_unsynced());
        let mut m = ReplaySet::default();
        m.insert(d(3), None, 0);
        assert!(!m.is_unsynced());
    }

    /// Entries a synced commit elsewhere carried (the vault's counted PIN
    /// attempt) cost the file no `fdatasync`; the others still do.
    #[test]
    fn entries_carried_elsewhere_need_no_sync_of_the_file() {
        let (_dir, _, mut s) = file_set(4);
        let carrier = s.undurable();
        s.insert(d(1), None, 0);
        s.insert(d(2), Some(50), 0);
        let waiting = carrier.waiting();
        assert_eq!(waiting, [s.entries[1].used()]);
        carrier.carried(&waiting);
        assert!(!s.is_unsynced());
        s.sync();
        assert_eq!(s.data_syncs, 0);
        s.insert(d(3), None, 0);
        s.sync();
        assert_eq!(s.data_syncs, 1);
        assert!(carrier.waiting().is_empty());
    }

    /// At start, entries the vault committed and the file lost come back
    /// (and are saved); stale ones and ones already known do not.
    #[test]
    fn entries_the_file_lost_are_recovered_from_the_vault() {
        let (_dir, f, mut s) = file_set(4);
        s.insert(d(1), None, 0);
        let used = |n: u8, stale| UsedQr {
            digest: d(n).0,
            stale_after_unix: stale,
        };
        s.recover(&[used(1, None), used(2, Some(100)), used(3, Some(5))], 10);
        assert_eq!(s.len(), 2);
        assert!(!s.is_unsynced());
        let mut back = ReplaySet::persistent(&f, 4).unwrap();
        assert!(back.contains(&d(1), 10) && back.contains(&d(2), 10));
        assert!(!back.contains(&d(3), 0));
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
