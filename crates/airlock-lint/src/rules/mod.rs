//! The rules: one file each, one kebab-case id each, a doc page each in
//! `docs/rules/<id>.md`, and this registry that lists them all.

mod adding_foreign_key;
mod adding_primary_key;
mod adding_required_column;
mod adding_unique_constraint;
mod changing_column_type;
mod concurrent_in_transaction;
mod constraint_missing_not_valid;
mod copy_algorithm;
mod ddl_in_data_migration;
mod dml_in_schema_migration;
mod drop_column;
mod drop_table;
mod dynamic_sql;
mod inline_references_ignored;
mod missing_down;
mod modify_drops_attributes;
mod reindex_not_concurrent;
mod rename_column;
mod rename_table;
mod require_concurrent_index;
mod require_concurrent_index_drop;
mod setting_not_null;
mod table_has_triggers;
mod transaction_control;
mod truncate_cascade;
mod unbatchable_backfill;
mod unbatched_data_change;
mod up_destroys_data;
mod vacuum_full_or_cluster;
mod volatile_default;

use airlock_sql::Dialect;

use crate::{Context, Finding, MigrationContext, Severity};

/// PostgreSQL's lock levels under the names rule messages use; what each
/// level is and makes wait is airlock-plan's (`PgLock`), written once.
pub(crate) mod locks {
    use airlock_plan::PgLock;

    /// Most ALTER TABLE forms: reads and writes wait.
    pub const ACCESS_EXCLUSIVE: PgLock = PgLock::AccessExclusive;
    /// Adding a foreign key, CREATE TRIGGER: writes wait.
    pub const SHARE_ROW_EXCLUSIVE: PgLock = PgLock::ShareRowExclusive;
    /// VALIDATE CONSTRAINT, CREATE INDEX CONCURRENTLY: writes go on.
    pub const SHARE_UPDATE_EXCLUSIVE: PgLock = PgLock::ShareUpdateExclusive;
    /// CREATE INDEX: writes wait.
    pub const SHARE: PgLock = PgLock::Share;
}

/// A lint rule. Rules return findings; they never fail.
pub trait Rule: Sync {
    /// The kebab-case id, e.g. `require-concurrent-index`.
    fn id(&self) -> &'static str;
    /// Its severity unless airlock.toml says otherwise.
    fn default_severity(&self) -> Severity;
    /// Whether it applies to a dialect. Defaults to all.
    fn applies_to(&self, _dialect: Dialect) -> bool {
        true
    }
    /// Checks one operation of one statement.
    fn check(&self, _cx: &Context, _out: &mut Vec<Finding>) {}
    /// Checks a whole migration.
    fn check_migration(&self, _cx: &MigrationContext, _out: &mut Vec<Finding>) {}
}

/// A statement no parser accepted.
pub const UNPARSED: &str = "unparsed-statement";
/// A statement PostgreSQL's own parser refused.
pub const SYNTAX: &str = "syntax-error";
/// An `-- airlock:allow` that suppresses nothing.
pub const UNUSED_ALLOW: &str = "unused-allow";

/// Every rule, in the order they run.
pub static ALL: &[&dyn Rule] = &[
    &require_concurrent_index::RequireConcurrentIndex,
    &require_concurrent_index_drop::RequireConcurrentIndexDrop,
    &concurrent_in_transaction::ConcurrentInTransaction,
    &adding_foreign_key::AddingForeignKey,
    &constraint_missing_not_valid::ConstraintMissingNotValid,
    &adding_unique_constraint::AddingUniqueConstraint,
    &adding_primary_key::AddingPrimaryKey,
    &setting_not_null::SettingNotNull,
    &adding_required_column::AddingRequiredColumn,
    &volatile_default::VolatileDefault,
    &changing_column_type::ChangingColumnType,
    &reindex_not_concurrent::ReindexNotConcurrent,
    &vacuum_full_or_cluster::VacuumFullOrCluster,
    &truncate_cascade::TruncateCascade,
    &transaction_control::TransactionControl,
    &modify_drops_attributes::ModifyDropsAttributes,
    &copy_algorithm::CopyAlgorithm,
    &inline_references_ignored::InlineReferencesIgnored,
    &dml_in_schema_migration::DmlInSchemaMigration,
    &ddl_in_data_migration::DdlInDataMigration,
    &drop_column::DropColumn,
    &drop_table::DropTable,
    &rename_column::RenameColumn,
    &rename_table::RenameTable,
    &up_destroys_data::UpDestroysData,
    &missing_down::MissingDown,
    &table_has_triggers::TableHasTriggers,
    &unbatched_data_change::UnbatchedDataChange,
    &unbatchable_backfill::UnbatchableBackfill,
    &dynamic_sql::DynamicSql,
];

/// Every rule id, the engine's own (`unparsed-statement`, `unused-allow`) included.
pub fn ids() -> Vec<&'static str> {
    let mut ids: Vec<&'static str> = ALL.iter().map(|r| r.id()).collect();
    ids.extend([UNPARSED, SYNTAX, UNUSED_ALLOW]);
    ids
}

/// The skeleton most ALTER TABLE rules share: for each action on a table that
/// may hold rows, `message` says what is wrong (None: nothing), and the
/// finding is scaled down for a small live table.
fn per_action(
    rule: &dyn Rule,
    cx: &Context,
    out: &mut Vec<Finding>,
    help: &str,
    message: impl Fn(&airlock_sql::parse::TableName, &str, &airlock_sql::parse::AlterAction) -> Option<String>,
) {
    let airlock_sql::parse::Op::AlterTable { table, actions } = cx.op else { return };
    if !cx.is_existing(table) {
        return;
    }
    let size = cx.size_note(table);
    for (action, at) in actions {
        if let Some(message) = message(table, &size, action) {
            let cx = cx.at(*at);
            out.push(cx.scaled(cx.finding(rule, message, help), table));
        }
    }
}

/// PostgreSQL only.
fn postgres(dialect: Dialect) -> bool {
    dialect == Dialect::Postgres
}

/// MySQL/MariaDB only.
fn mysql(dialect: Dialect) -> bool {
    dialect == Dialect::MySql
}

#[cfg(test)]
pub(crate) mod test {
    //! One helper: SQL in, `(rule, severity)` out.

    use airlock_core::schema::{Catalog, Column, Origin, Table};
    use airlock_core::{Embedded, EmbeddedFile, discover_embedded};
    use airlock_sql::Dialect;
    use airlock_sql::parse::TableName;

    use crate::{LintOptions, Report, Severity, lint};

    /// Lints files (name, text) offline or against `catalog`.
    pub fn report(dialect: Dialect, files: &[(&str, &str)], catalog: Catalog) -> Report {
        let files: Vec<EmbeddedFile> = files
            .iter()
            .map(|(name, text)| EmbeddedFile {
                path: Box::leak(name.to_string().into_boxed_str()),
                bytes: Box::leak(text.as_bytes().to_vec().into_boxed_slice()),
            })
            .collect();
        let embedded = Embedded { dir: "migrations", files: Box::leak(files.into_boxed_slice()) };
        let found = discover_embedded(&embedded).expect("test migrations are valid");
        lint(&found.migrations, catalog, &LintOptions::new(dialect))
    }

    /// The findings of one up script (with a down script, so `missing-down` stays quiet), offline.
    pub fn run(dialect: Dialect, sql: &str) -> Vec<(&'static str, Severity)> {
        pairs(&report(dialect, &[("1_m.up.sql", sql), ("1_m.down.sql", "SELECT 1;")], Catalog::offline()))
    }

    /// The same against a live catalog.
    pub fn run_live(dialect: Dialect, sql: &str, tables: Vec<Table>) -> Vec<(&'static str, Severity)> {
        pairs(&report(dialect, &[("1_m.up.sql", sql), ("1_m.down.sql", "SELECT 1;")], Catalog::live(tables)))
    }

    /// The findings as (rule, severity). A test's SQL that stops parsing
    /// fails the test, so an ok-test cannot pass by checking nothing.
    fn pairs(report: &Report) -> Vec<(&'static str, Severity)> {
        if let Some(f) = report.findings.iter().find(|f| f.rule == super::UNPARSED || f.rule == super::SYNTAX) {
            panic!("the test's SQL does not parse, so no rule checked it: {}", f.message);
        }
        report.findings.iter().map(|f| (f.rule, f.severity)).collect()
    }

    /// Whether `rule` is among the findings.
    pub fn has(found: &[(&'static str, Severity)], rule: &str) -> bool {
        found.iter().any(|(r, _)| *r == rule)
    }

    /// A live table with these columns and an estimated row count.
    pub fn live(name: &str, rows: f64, columns: Vec<Column>) -> Table {
        Table {
            name: TableName::bare(name),
            columns,
            indexes: Vec::new(),
            constraints: Vec::new(),
            triggers: Vec::new(),
            rows: Some(rows),
            bytes: None,
            origin: Origin::Live,
            charset: None,
        }
    }

    /// A plain column.
    pub fn column(name: &str, data_type: &str) -> Column {
        Column { name: name.into(), data_type: data_type.into(), nullable: true, ..Column::default() }
    }
}
