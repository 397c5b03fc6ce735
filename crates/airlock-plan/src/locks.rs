//! PostgreSQL's table lock levels, named once: the plan shows them, lint's
//! messages say them, and what each one makes wait is written here only.

use std::fmt;

/// A PostgreSQL table lock level, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PgLock {
    /// Plain reads.
    AccessShare,
    /// `SELECT ... FOR UPDATE`, a foreign key's check of the referenced row.
    RowShare,
    /// Writes: INSERT, UPDATE, DELETE.
    RowExclusive,
    /// VACUUM, ANALYZE, CREATE INDEX CONCURRENTLY, VALIDATE CONSTRAINT.
    ShareUpdateExclusive,
    /// CREATE INDEX.
    Share,
    /// CREATE TRIGGER, adding a foreign key.
    ShareRowExclusive,
    /// REFRESH MATERIALIZED VIEW CONCURRENTLY.
    Exclusive,
    /// Most ALTER TABLE forms, DROP, TRUNCATE, VACUUM FULL.
    AccessExclusive,
}

impl PgLock {
    /// The level as PostgreSQL names it.
    pub fn name(self) -> &'static str {
        match self {
            PgLock::AccessShare => "ACCESS SHARE",
            PgLock::RowShare => "ROW SHARE",
            PgLock::RowExclusive => "ROW EXCLUSIVE",
            PgLock::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            PgLock::Share => "SHARE",
            PgLock::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            PgLock::Exclusive => "EXCLUSIVE",
            PgLock::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// Writes to the table wait while it is held.
    pub fn blocks_writes(self) -> bool {
        self >= PgLock::Share
    }

    /// Reads of the table wait too.
    pub fn blocks_reads(self) -> bool {
        self == PgLock::AccessExclusive
    }
}

impl fmt::Display for PgLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::PgLock::*;

    #[test]
    fn what_each_level_makes_wait() {
        let levels = [AccessShare, RowShare, RowExclusive, ShareUpdateExclusive, Share, ShareRowExclusive, Exclusive];
        let writes: Vec<bool> = levels.iter().map(|l| l.blocks_writes()).collect();
        assert_eq!(writes, [false, false, false, false, true, true, true]);
        assert!(levels.iter().all(|l| !l.blocks_reads()));
        assert!(AccessExclusive.blocks_reads() && AccessExclusive.blocks_writes());
        assert_eq!(ShareUpdateExclusive.to_string(), "SHARE UPDATE EXCLUSIVE");
    }
}
