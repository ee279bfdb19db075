//! A write transaction (`BEGIN IMMEDIATE` … `COMMIT`) whose two statements
//! are prepared once and then taken from the connection's statement cache.
//!
//! Why not rusqlite's `Transaction`: it sends `BEGIN` and `COMMIT` through
//! `execute_batch`, which parses them again every time
//! (`sqlite3_prepare_v3`: uprobes counted four parses per phone ceremony,
//! from the PIN attempt's count and the credential insert or the signature
//! counter; docs/performance.md, "Phone: twelfth round"). Otherwise the
//! same as `Transaction` with `TransactionBehavior::Immediate` and the
//! default `DropBehavior::Rollback`: the write lock is taken at `BEGIN`, and
//! a transaction dropped without [`WriteTx::commit`] (an early return, an
//! error, a failed `COMMIT`) is rolled back.
//!
//! The opening and migration transactions (`EXCLUSIVE`, once per open) keep
//! rusqlite's `Transaction`.

use std::ops::Deref;

use rusqlite::Connection;

/// An open `BEGIN IMMEDIATE` transaction on `conn`; derefs to the
/// connection for the statements inside it.
pub(crate) struct WriteTx<'c> {
    conn: &'c Connection,
}

impl<'c> WriteTx<'c> {
    /// `BEGIN IMMEDIATE` (SQLite's busy handler applies to the write lock).
    pub(crate) fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(WriteTx { conn })
    }

    /// `COMMIT` at the connection's current `synchronous` level. On an
    /// error the transaction is rolled back when `self` drops.
    pub(crate) fn commit(self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }
}

impl Deref for WriteTx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        // Committed (or never begun): SQLite is back in autocommit mode.
        if !self.conn.is_autocommit() {
            // Nothing to report it to; a failed rollback leaves SQLite to
            // roll the transaction back when the connection closes, as
            // rusqlite's own `Transaction` does.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        c
    }

    fn count(c: &Connection) -> i64 {
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn commit_keeps_and_drop_rolls_back() {
        let c = conn();
        let tx = WriteTx::begin(&c).unwrap();
        tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
        assert!(!c.is_autocommit());
        tx.commit().unwrap();
        assert!(c.is_autocommit());
        assert_eq!(count(&c), 1);

        let tx = WriteTx::begin(&c).unwrap();
        tx.execute("INSERT INTO t VALUES (2)", []).unwrap();
        drop(tx);
        assert!(c.is_autocommit());
        assert_eq!(count(&c), 1);
        // The cached statements serve again.
        for x in 3..6 {
            let tx = WriteTx::begin(&c).unwrap();
            tx.execute("INSERT INTO t VALUES (?1)", [x]).unwrap();
            tx.commit().unwrap();
        }
        assert_eq!(count(&c), 4);
    }

    #[test]
    fn a_second_begin_inside_is_an_error_and_the_first_still_rolls_back() {
        let c = conn();
        let tx = WriteTx::begin(&c).unwrap();
        tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
        assert!(WriteTx::begin(&c).is_err());
        // The failed BEGIN did not end the outer transaction.
        assert!(!c.is_autocommit());
        drop(tx);
        assert_eq!(count(&c), 0);
    }
}
