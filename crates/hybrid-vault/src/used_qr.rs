//! The used-QR records a caller commits together with a counted PIN
//! attempt ([`crate::Vault::begin_unlock_noting`]), and reads back at start
//! ([`crate::Vault::used_qrs`]).
//!
//! The vault does not interpret them: the daemon's QR replay policy
//! (hybridd's `replay` module, conformance checklist "QR replay") keeps
//! the SHA-256 of every QR secret that reached a handshake, in a file of
//! its own. A record must be durable before the phone's first answer; when
//! a PIN attempt is counted first — a synced commit the vault makes anyway
//! — the record rides in that transaction, and the file's own `fdatasync`
//! is saved (docs/performance.md, "Phone: tenth round"). Only digests of
//! one-time QR secrets are kept, never a secret: the table is in clear,
//! like the credentials' metadata, and readable while the vault is locked.
//!
//! The table is bounded: at most [`KEEP`] rows (the oldest go first), and
//! a row goes once its QR is stale anyway.

use rusqlite::{params, Connection};

use crate::error::VaultError;

/// How many used-QR records the vault keeps (the daemon remembers 64 QRs).
pub const KEEP: i64 = 64;

/// One used QR: the SHA-256 of its secret and the Unix second after which
/// the caller's freshness policy refuses it anyway (`None`: never stale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsedQr {
    /// SHA-256 of the QR secret.
    pub digest: [u8; 32],
    /// Unix second after which the QR is refused as stale anyway.
    pub stale_after_unix: Option<u64>,
}

/// Adds `used` to the table inside `tx`, then drops rows stale by
/// `now_unix` and all but the newest [`KEEP`].
pub(crate) fn store(tx: &Connection, used: &[UsedQr], now_unix: u64) -> Result<(), VaultError> {
    let mut insert =
        tx.prepare_cached("INSERT INTO used_qr (digest, stale_after_unix) VALUES (?1, ?2)")?;
    for u in used {
        let stale = u.stale_after_unix.map(clamp);
        insert.execute(params![&u.digest[..], stale])?;
    }
    tx.prepare_cached("DELETE FROM used_qr WHERE stale_after_unix < ?1")?
        .execute([clamp(now_unix)])?;
    tx.prepare_cached(
        "DELETE FROM used_qr WHERE seq <= (SELECT seq FROM used_qr ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
    )?
    .execute([KEEP])?;
    Ok(())
}

/// The table's records, oldest first; a malformed row is skipped.
pub(crate) fn read(conn: &Connection) -> Result<Vec<UsedQr>, VaultError> {
    let mut stmt = conn.prepare("SELECT digest, stale_after_unix FROM used_qr ORDER BY seq")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Option<i64>>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (digest, stale) = row?;
        let Ok(digest) = <[u8; 32]>::try_from(digest.as_slice()) else {
            continue;
        };
        out.push(UsedQr {
            digest,
            stale_after_unix: stale.map(|s| u64::try_from(s).unwrap_or(0)),
        });
    }
    Ok(out)
}

/// SQLite integers are signed.
fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
