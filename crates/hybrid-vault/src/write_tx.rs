//! A write transaction (`BEGIN IMMEDIATE` … `COMMIT`) whose two statements
//! are prepared once and then taken from the connection's statement cache,
//! and which says at its start whether its commit syncs.
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
//! **Synced or not.** Every transaction names its [`Commit`]: `Synced`
//! commits run at `synchronous = FULL` (SQLite syncs the write-ahead log
//! before `COMMIT` returns), `Unsynced` ones at `NORMAL` (the commit is in
//! the operating system's cache, so it survives the process being killed,
//! and reaches the disk with the next synced commit, checkpoint or
//! `Vault::make_durable`). SQLite applies `PRAGMA synchronous` when the
//! statement is prepared and marks it to run once, so every execution of
//! the cached statement parsed it again (uprobes: four parses per phone
//! ceremony, when each unsynced commit set `NORMAL` and then `FULL` again).
//! [`SyncLevel`] remembers the connection's level and sends the pragma
//! only when a transaction needs the other one: the level is set at every
//! `BEGIN`, so no commit depends on what an earlier one left behind
//! (docs/performance.md, "Phone: fourteenth round").
//!
//! The opening and migration transactions (`EXCLUSIVE`, once per open, at
//! SQLite's default `FULL`, before any [`WriteTx`]) keep rusqlite's
//! `Transaction`.

use std::ops::Deref;

use rusqlite::Connection;

/// Whether a transaction's `COMMIT` syncs the write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// `synchronous = FULL`: on the disk when `COMMIT` returns.
    Synced,
    /// `synchronous = NORMAL`: in the operating system's cache when
    /// `COMMIT` returns; on the disk with the next sync.
    Unsynced,
}

/// The connection's `synchronous` level as last set through it. Every
/// [`WriteTx`] sets the level it needs; nothing else changes it.
#[derive(Debug)]
pub(crate) struct SyncLevel {
    current: Commit,
    /// Every transaction's level, in order (tests read it).
    #[cfg(test)]
    pub(crate) log: Vec<Commit>,
}

impl SyncLevel {
    /// A connection at `synchronous = FULL` (SQLite's default, and what
    /// `Vault::open` sets).
    pub(crate) fn full() -> Self {
        SyncLevel {
            current: Commit::Synced,
            #[cfg(test)]
            log: Vec::new(),
        }
    }

    /// Puts `conn` at the level `commit` needs (outside a transaction:
    /// SQLite refuses the change inside one), if it is not there already.
    pub(crate) fn set(&mut self, conn: &Connection, commit: Commit) -> rusqlite::Result<()> {
        if self.current != commit {
            let pragma = match commit {
                Commit::Synced => "PRAGMA synchronous = FULL",
                Commit::Unsynced => "PRAGMA synchronous = NORMAL",
            };
            conn.prepare_cached(pragma)?.execute([])?;
            self.current = commit;
        }
        #[cfg(test)]
        self.log.push(commit);
        Ok(())
    }
}

/// An open `BEGIN IMMEDIATE` transaction on `conn`; derefs to the
/// connection for the statements inside it.
pub(crate) struct WriteTx<'c> {
    conn: &'c Connection,
}

impl<'c> WriteTx<'c> {
    /// `BEGIN IMMEDIATE` (SQLite's busy handler applies to the write lock),
    /// with the connection at the level `commit` needs.
    pub(crate) fn begin(
        conn: &'c Connection,
        level: &mut SyncLevel,
        commit: Commit,
    ) -> rusqlite::Result<Self> {
        level.set(conn, commit)?;
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(WriteTx { conn })
    }

    /// `COMMIT`, synced or not as [`WriteTx::begin`] was told. On an
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
        let tx = WriteTx::begin(&c, &mut SyncLevel::full(), Commit::Synced).unwrap();
        tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
        assert!(!c.is_autocommit());
        tx.commit().unwrap();
        assert!(c.is_autocommit());
        assert_eq!(count(&c), 1);

        let tx = WriteTx::begin(&c, &mut SyncLevel::full(), Commit::Synced).unwrap();
        tx.execute("INSERT INTO t VALUES (2)", []).unwrap();
        drop(tx);
        assert!(c.is_autocommit());
        assert_eq!(count(&c), 1);
        // The cached statements serve again.
        for x in 3..6 {
            let tx = WriteTx::begin(&c, &mut SyncLevel::full(), Commit::Synced).unwrap();
            tx.execute("INSERT INTO t VALUES (?1)", [x]).unwrap();
            tx.commit().unwrap();
        }
        assert_eq!(count(&c), 4);
    }

    #[test]
    fn a_second_begin_inside_is_an_error_and_the_first_still_rolls_back() {
        let c = conn();
        let tx = WriteTx::begin(&c, &mut SyncLevel::full(), Commit::Synced).unwrap();
        tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
        assert!(WriteTx::begin(&c, &mut SyncLevel::full(), Commit::Synced).is_err());
        // The failed BEGIN did not end the outer transaction.
        assert!(!c.is_autocommit());
        drop(tx);
        assert_eq!(count(&c), 0);
    }

    fn synchronous(c: &Connection) -> i64 {
        c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn each_transaction_sets_its_level_and_the_pragma_runs_only_on_a_change() {
        let c = conn();
        let mut level = SyncLevel::full();
        for (commit, want) in [
            (Commit::Unsynced, 1),
            (Commit::Unsynced, 1),
            (Commit::Synced, 2),
            (Commit::Synced, 2),
            (Commit::Unsynced, 1),
        ] {
            let tx = WriteTx::begin(&c, &mut level, commit).unwrap();
            tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
            tx.commit().unwrap();
            assert_eq!(synchronous(&c), want, "{commit:?}");
        }
        assert_eq!(
            level.log,
            [
                Commit::Unsynced,
                Commit::Unsynced,
                Commit::Synced,
                Commit::Synced,
                Commit::Unsynced
            ]
        );
        // SQLite parses a pragma again on every run of its statement: the
        // `NORMAL` one ran twice (first and fifth transaction), not three
        // times, and `FULL` once.
        let reprepared = |sql: &str| {
            c.prepare_cached(sql)
                .unwrap()
                .get_status(rusqlite::StatementStatus::RePrepare)
        };
        assert_eq!(reprepared("PRAGMA synchronous = NORMAL"), 1);
        assert_eq!(reprepared("PRAGMA synchronous = FULL"), 0);
    }
}
