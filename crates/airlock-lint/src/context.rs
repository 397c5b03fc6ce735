//! What a rule sees: the statement (text, line, parsed ops), its migration, and
//! the schema model as it stands just before the statement runs.

use airlock_core::schema::{Catalog, Lookup, Origin, Table};
use airlock_core::{Kind, Migration};
use airlock_sql::parse::{Op, TableName};
use airlock_sql::{Dialect, TxNeed};

use crate::rules::Rule;
use crate::{Finding, Severity};

/// One statement of a migration's up script.
#[derive(Clone, Debug)]
pub struct Parsed {
    /// Its text.
    pub sql: String,
    /// 1-based line in the file.
    pub line: usize,
    /// Byte range in the script.
    pub span: std::ops::Range<usize>,
    /// What it needs from a transaction.
    pub tx: TxNeed,
    /// What it does, or the parser's complaint.
    pub ops: Result<Vec<Op>, airlock_sql::parse::ParseError>,
}

/// What a rule checking one operation of one statement sees.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The migration.
    pub migration: &'a Migration,
    /// All its statements.
    pub statements: &'a [Parsed],
    /// Which one this is (0-based).
    pub index: usize,
    /// The operation checked.
    pub op: &'a Op,
    /// The schema just before this statement.
    pub catalog: &'a Catalog,
    /// The dialect.
    pub dialect: Dialect,
    /// Whether the runner runs this migration in one transaction.
    pub in_transaction: bool,
    /// Byte offset in the statement of the part checked (an ALTER TABLE
    /// action), so a finding points at its line; 0 for the whole statement.
    pub at: usize,
}

/// Rows below which a blocking lock is too short to matter.
pub const SMALL_TABLE_ROWS: f64 = 10_000.0;

impl<'a> Context<'a> {
    /// The same, pointed at the part of the statement at byte `at`.
    pub fn at(&self, at: usize) -> Context<'a> {
        Context { at, ..*self }
    }

    /// The statement checked.
    pub fn statement(&self) -> &Parsed {
        &self.statements[self.index]
    }

    /// What the model knows of a table.
    pub fn table(&self, name: &TableName) -> Lookup<'_> {
        self.catalog.table(name)
    }

    /// Whether the table is new when this statement runs (empty, and no
    /// running release uses it): this migration created it, or, linted
    /// against a live database that does not have it, an earlier pending
    /// migration of the same run did. Without a database, a table an earlier
    /// migration created is not new: that one may have run long ago, and
    /// the table may hold rows by now.
    pub fn is_new(&self, name: &TableName) -> bool {
        matches!(self.table(name), Lookup::Known(Table { origin: Origin::Created { version }, .. })
            if *version == self.migration.version.to_string() || self.catalog.live)
    }

    /// Whether this very migration created the table. Rules about what a
    /// file may hold (not what its locks cost) ask this: a later run may
    /// apply the migrations one at a time.
    pub fn is_created_here(&self, name: &TableName) -> bool {
        matches!(self.table(name), Lookup::Known(Table { origin: Origin::Created { version }, .. })
            if *version == self.migration.version.to_string())
    }

    /// Whether a table may hold rows the running app uses: live, created by an
    /// earlier migration, or unknown (no database: assume the worst). Not a
    /// table the live catalog does not have: the statement will fail on its own.
    pub fn is_existing(&self, name: &TableName) -> bool {
        !self.is_new(name) && !matches!(self.table(name), Lookup::Missing)
    }

    /// A live table the catalog statistics say is small. (A table created by
    /// an earlier pending migration has unknown rows by the time this one runs.)
    pub fn is_small(&self, name: &TableName) -> bool {
        matches!(self.table(name), Lookup::Known(t) if t.origin == Origin::Live && t.rows.is_some_and(|r| r < SMALL_TABLE_ROWS))
    }

    /// The known table, if any.
    pub fn known(&self, name: &TableName) -> Option<&Table> {
        self.table(name).table()
    }

    /// A data migration (`-- airlock:data`).
    pub fn is_data_migration(&self) -> bool {
        self.migration.kind == Kind::Data
    }

    /// A finding about this statement, at the rule's default severity.
    pub fn finding(&self, rule: &dyn Rule, message: String, help: &str) -> Finding {
        let statement = self.statement();
        // The part checked, when the parser placed it inside the statement.
        let at = if self.at < statement.sql.len() && statement.sql.is_char_boundary(self.at) { self.at } else { 0 };
        Finding {
            rule: rule.id(),
            severity: rule.default_severity(),
            file: self.migration.up.path.clone(),
            line: statement.line + statement.sql[..at].matches('\n').count(),
            version: self.migration.version.to_string(),
            statement: Some(self.index + 1),
            span: Some(statement.span.start + at..statement.span.end),
            message,
            help: help.to_owned(),
            fix: None,
            checksum: self.migration.checksum.clone(),
        }
    }

    /// A finding the rule cannot be sure of without the live database: one
    /// step below the rule's severity (an error rule warns), so it never
    /// refuses a run on a guess. Its message says what lint could not see.
    pub fn unsure(&self, rule: &dyn Rule, message: String, help: &str) -> Finding {
        let mut finding = self.finding(rule, message, help);
        finding.severity = match rule.default_severity() {
            Severity::Error => Severity::Warning,
            _ => Severity::Info,
        };
        finding
    }

    /// A size note for messages: ` (about 1.2M rows)` when known.
    pub fn size_note(&self, name: &TableName) -> String {
        match self.known(name).filter(|t| t.origin == Origin::Live).and_then(|t| t.rows) {
            Some(rows) if rows >= 1e6 => format!(" (about {:.1}M rows)", rows / 1e6),
            Some(rows) if rows >= 1e3 => format!(" (about {:.0}k rows)", rows / 1e3),
            Some(rows) => format!(" (about {rows:.0} rows)"),
            None => String::new(),
        }
    }

    /// Downgrades a finding about a small live table to `info`: the lock is short.
    pub fn scaled(&self, mut finding: Finding, table: &TableName) -> Finding {
        if self.is_small(table) {
            finding.severity = Severity::Info;
            finding.message.push_str("; the table is small, so the lock is brief");
        }
        finding
    }
}

/// What a rule checking a whole migration sees.
pub struct MigrationContext<'a> {
    /// The migration.
    pub migration: &'a Migration,
    /// Its statements.
    pub statements: &'a [Parsed],
    /// The dialect.
    pub dialect: Dialect,
    /// The schema before the migration.
    pub catalog: &'a Catalog,
}

impl MigrationContext<'_> {
    /// A finding about the whole file, pinned to a line; when that line starts
    /// a statement, the finding is about it (so an allow before it covers it).
    pub fn finding(&self, rule: &dyn Rule, line: usize, message: String, help: &str) -> Finding {
        let statement = self.statements.iter().position(|p| p.line == line).map(|i| i + 1);
        Finding {
            rule: rule.id(),
            severity: rule.default_severity(),
            file: self.migration.up.path.clone(),
            line,
            version: self.migration.version.to_string(),
            statement,
            span: statement.map(|i| self.statements[i - 1].span.clone()),
            message,
            help: help.to_owned(),
            fix: None,
            checksum: self.migration.checksum.clone(),
        }
    }
}
