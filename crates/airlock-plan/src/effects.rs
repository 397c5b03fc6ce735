//! What one operation does to the database, read off the statement and the
//! schema model: the locks it takes (PostgreSQL's lock levels per DDL form, a
//! foreign key locking the referenced table too; MySQL's ALTER algorithm;
//! SQLite's database lock), whether it rewrites or scans its table, and which
//! data checks it needs. Pure.

use airlock_core::schema::{Catalog, Table, TableName};
use airlock_sql::Dialect;
use airlock_sql::parse::{AlterAction, ColumnSpec, Constraint, Op};
use serde::Serialize;

use crate::locks::PgLock;

/// A lock on one table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lock {
    /// The table.
    pub table: String,
    /// The mode as the engine names it: `ACCESS EXCLUSIVE`, `ALGORITHM=COPY`...
    pub mode: String,
    /// Whether writes to the table wait while it is held.
    pub blocks_writes: bool,
    /// Whether reads wait too.
    pub blocks_reads: bool,
}

/// A data check a statement needs before it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // variant fields are named as in SQL
pub enum CheckSpec {
    /// Rows whose key has no match in the referenced table.
    ForeignKeyOrphans { table: TableName, columns: Vec<String>, references: TableName, ref_columns: Vec<String> },
    /// Keys that appear more than once.
    UniqueDuplicates { table: TableName, columns: Vec<String> },
    /// NULLs in a column about to be NOT NULL.
    NotNullViolations { table: TableName, column: String },
    /// Rows of a table that gets a NOT NULL column with no default: each
    /// would hold NULL in it, so any row at all makes the statement fail.
    NewColumnNulls { table: TableName, column: String },
    /// Rows that fail a CHECK expression (its exact text).
    CheckViolations { table: TableName, expression: String },
    /// Values that will not convert to the new type, or will be cut.
    CastFailures { table: TableName, column: String, from: String, to: String },
    /// Sessions holding or queued for a lock on these tables right now.
    LockBlockers { tables: Vec<TableName> },
    /// Attributes of the live column that a MySQL `MODIFY`/`CHANGE` leaves
    /// out, and so drops. Read off the live catalog: no query.
    AttributeLoss { table: TableName, column: String, lost: Vec<String>, fix: String },
    /// An auto-increment, serial or identity key whose largest value is near
    /// the maximum of its type (the type it has after the statement).
    IdExhaustion { table: TableName, column: String, data_type: String },
}

impl CheckSpec {
    /// The table a data check reads and the columns it needs to exist there
    /// (empty for checks that need none, or read no table).
    pub fn reads(&self) -> Option<(&TableName, Vec<&str>)> {
        match self {
            CheckSpec::ForeignKeyOrphans { table, columns, .. } | CheckSpec::UniqueDuplicates { table, columns } => {
                Some((table, columns.iter().map(String::as_str).collect()))
            }
            CheckSpec::NotNullViolations { table, column }
            | CheckSpec::CastFailures { table, column, .. }
            | CheckSpec::IdExhaustion { table, column, .. } => Some((table, vec![column.as_str()])),
            CheckSpec::CheckViolations { table, .. } | CheckSpec::NewColumnNulls { table, .. } => {
                Some((table, Vec::new()))
            }
            CheckSpec::LockBlockers { .. } | CheckSpec::AttributeLoss { .. } => None,
        }
    }

    /// Every table whose rows decide the check's answer (a foreign key's
    /// referenced table too).
    pub fn tables(&self) -> Vec<&TableName> {
        match self {
            CheckSpec::ForeignKeyOrphans { table, references, .. } => vec![table, references],
            CheckSpec::LockBlockers { tables } => tables.iter().collect(),
            CheckSpec::AttributeLoss { table, .. } => vec![table],
            other => other.reads().map(|(table, _)| vec![table]).unwrap_or_default(),
        }
    }
}

/// What an operation does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Locks taken, strongest first per table.
    pub locks: Vec<Lock>,
    /// The table whose rows and size matter.
    pub table: Option<TableName>,
    /// Every row is rewritten (a new copy of the table).
    pub rewrites_table: bool,
    /// Every row is read (a validation scan or an index build).
    pub scans_table: bool,
    /// The read builds an index (sorts), slower per row than a scan.
    pub builds_index: bool,
    /// Data checks to run.
    pub checks: Vec<CheckSpec>,
}

fn pg_lock(table: &TableName, level: PgLock) -> Lock {
    Lock {
        table: table.to_string(),
        mode: level.name().to_owned(),
        blocks_writes: level.blocks_writes(),
        blocks_reads: level.blocks_reads(),
    }
}

/// Whether PostgreSQL changes a column's type without rewriting (see `changing-column-type`).
fn pg_coercible(from: &str, to: &str) -> bool {
    crate::semantics::binary_coercible(from, to)
}

impl Effects {
    fn lock(&mut self, lock: Lock) {
        if !self.locks.iter().any(|l| l.table == lock.table && l.mode == lock.mode) {
            self.locks.push(lock);
        }
    }
}

/// The effects of `op` on a database whose schema is `catalog` (just before it).
pub fn effects(op: &Op, catalog: &Catalog, dialect: Dialect) -> Effects {
    match dialect {
        Dialect::Postgres => postgres(op, catalog),
        Dialect::MySql => mysql(op, catalog),
        Dialect::Sqlite => sqlite(op),
    }
}

fn known<'a>(catalog: &'a Catalog, table: &TableName) -> Option<&'a Table> {
    catalog.table(table).table()
}

fn column_checks(table: &TableName, spec: &ColumnSpec, e: &mut Effects) {
    if spec.primary_key || spec.unique {
        e.checks.push(CheckSpec::UniqueDuplicates { table: table.clone(), columns: vec![spec.name.clone()] });
    }
    if let Some(references) = &spec.references {
        e.checks.push(CheckSpec::ForeignKeyOrphans {
            table: table.clone(),
            columns: vec![spec.name.clone()],
            references: references.clone(),
            ref_columns: Vec::new(),
        });
    }
}

fn constraint_checks(table: &TableName, c: &Constraint, e: &mut Effects) {
    match c {
        Constraint::ForeignKey { columns, references, ref_columns, not_valid: false, .. } => {
            e.checks.push(CheckSpec::ForeignKeyOrphans {
                table: table.clone(),
                columns: columns.clone(),
                references: references.clone(),
                ref_columns: ref_columns.clone(),
            });
        }
        Constraint::Unique { columns, using_index: None, .. }
        | Constraint::PrimaryKey { columns, using_index: None, .. } => {
            e.checks.push(CheckSpec::UniqueDuplicates { table: table.clone(), columns: columns.clone() });
            if matches!(c, Constraint::PrimaryKey { .. }) {
                for column in columns {
                    e.checks.push(CheckSpec::NotNullViolations { table: table.clone(), column: column.clone() });
                }
            }
        }
        Constraint::Check { expr, not_valid: false, .. } => {
            e.checks.push(CheckSpec::CheckViolations { table: table.clone(), expression: expr.text.clone() });
        }
        _ => {}
    }
}

/// An `id-exhaustion` check for each generated integer key of the live
/// table, at the type it has after the statement's own changes.
fn key_checks(table: &TableName, live: Option<&Table>, actions: &[(AlterAction, usize)], e: &mut Effects) {
    let Some(live) = live else { return };
    for column in live.columns.iter().filter(|c| c.identity || c.auto_increment) {
        let mut data_type = column.data_type.clone();
        if column.unsigned && !data_type.contains("unsigned") {
            data_type.push_str(" unsigned");
        }
        for (action, _) in actions {
            match action {
                AlterAction::AlterColumnType { column: c, data_type: to, .. }
                    if c.eq_ignore_ascii_case(&column.name) =>
                {
                    data_type = to.clone();
                }
                AlterAction::RedefineColumn { old_name, column: spec } => {
                    let target = old_name.as_deref().unwrap_or(&spec.name);
                    if target.eq_ignore_ascii_case(&column.name) {
                        data_type =
                            if spec.unsigned { format!("{} unsigned", spec.data_type) } else { spec.data_type.clone() };
                    }
                }
                _ => {}
            }
        }
        if crate::checks::integer_range(&data_type).is_some() {
            e.checks.push(CheckSpec::IdExhaustion { table: table.clone(), column: column.name.clone(), data_type });
        }
    }
}

/// The constraint as VALIDATE checks it: every row.
fn strip_not_valid(c: &Constraint) -> Constraint {
    match c.clone() {
        Constraint::ForeignKey { name, columns, references, ref_columns, .. } => {
            Constraint::ForeignKey { name, columns, references, ref_columns, not_valid: false }
        }
        Constraint::Check { name, expr, .. } => Constraint::Check { name, expr, not_valid: false },
        other => other,
    }
}

fn postgres(op: &Op, catalog: &Catalog) -> Effects {
    let mut e = Effects::default();
    match op {
        Op::CreateTable { columns, constraints, .. } => {
            // A new table is empty; a foreign key still locks what it references.
            for r in columns.iter().filter_map(|c| c.references.as_ref()) {
                e.lock(pg_lock(r, PgLock::ShareRowExclusive));
            }
            for c in constraints {
                if let Constraint::ForeignKey { references, .. } = c {
                    e.lock(pg_lock(references, PgLock::ShareRowExclusive));
                }
            }
        }
        Op::AlterTable { table, actions } => {
            e.table = Some(table.clone());
            let live = known(catalog, table);
            let mut strongest = PgLock::ShareUpdateExclusive;
            for (action, _) in actions {
                match action {
                    AlterAction::AddConstraint(c @ Constraint::ForeignKey { references, not_valid, .. }) => {
                        e.lock(pg_lock(references, PgLock::ShareRowExclusive));
                        if strongest == PgLock::ShareUpdateExclusive {
                            strongest = PgLock::ShareRowExclusive;
                        }
                        e.scans_table |= !not_valid;
                        constraint_checks(table, c, &mut e);
                    }
                    AlterAction::ValidateConstraint { name } => {
                        e.scans_table = true;
                        // What it checks is in its definition (live, or from the statement that added it).
                        let found = catalog
                            .constraints(table)
                            .into_iter()
                            .find(|c| c.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)));
                        if let Some(definition) = found.and_then(|c| c.definition.clone()) {
                            let statement = format!("ALTER TABLE {table} ADD {definition}");
                            if let Ok(ops) = airlock_sql::parse::parse(&statement, airlock_sql::Dialect::Postgres) {
                                if let Some(Op::AlterTable { actions, .. }) = ops.first() {
                                    for (action, _) in actions {
                                        if let AlterAction::AddConstraint(c) = action {
                                            constraint_checks(table, &strip_not_valid(c), &mut e);
                                            if let Constraint::ForeignKey { references, .. } = c {
                                                e.lock(pg_lock(references, PgLock::RowShare));
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    AlterAction::AddColumn(spec) => {
                        strongest = PgLock::AccessExclusive;
                        let volatile = spec.default.as_ref().is_some_and(|d| {
                            d.functions.iter().any(|f| {
                                catalog.functions.get(f).copied() == Some(airlock_core::schema::Volatility::Volatile)
                                    || crate::semantics::VOLATILE_FUNCTIONS.contains(&f.as_str())
                            })
                        });
                        e.rewrites_table |= volatile || spec.identity || spec.generated_stored;
                        column_checks(table, spec, &mut e);
                        if spec.not_null && spec.default.is_none() && !spec.identity && !spec.generated_stored {
                            e.checks
                                .push(CheckSpec::NewColumnNulls { table: table.clone(), column: spec.name.clone() });
                        }
                    }
                    AlterAction::AlterColumnType { column, data_type, .. } => {
                        strongest = PgLock::AccessExclusive;
                        let from = live.and_then(|t| t.column(column)).map(|c| c.data_type.clone());
                        match from {
                            Some(from) if pg_coercible(&from, data_type) => {}
                            Some(from) => {
                                e.rewrites_table = true;
                                e.checks.push(CheckSpec::CastFailures {
                                    table: table.clone(),
                                    column: column.clone(),
                                    from,
                                    to: data_type.clone(),
                                });
                            }
                            None => e.rewrites_table = true,
                        }
                    }
                    AlterAction::SetNotNull { column } => {
                        strongest = PgLock::AccessExclusive;
                        e.scans_table = true;
                        e.checks.push(CheckSpec::NotNullViolations { table: table.clone(), column: column.clone() });
                    }
                    AlterAction::AddConstraint(c) => {
                        strongest = PgLock::AccessExclusive;
                        e.scans_table |= !matches!(c, Constraint::Check { not_valid: true, .. })
                            && !matches!(
                                c,
                                Constraint::Unique { using_index: Some(_), .. }
                                    | Constraint::PrimaryKey { using_index: Some(_), .. }
                            );
                        e.builds_index |= matches!(
                            c,
                            Constraint::Unique { using_index: None, .. }
                                | Constraint::PrimaryKey { using_index: None, .. }
                        );
                        constraint_checks(table, c, &mut e);
                    }
                    _ => strongest = PgLock::AccessExclusive,
                }
            }
            key_checks(table, live, actions, &mut e);
            e.locks.insert(0, pg_lock(table, strongest));
            e.checks.push(CheckSpec::LockBlockers {
                tables: e
                    .locks
                    .iter()
                    .map(|l| match l.table.split_once('.') {
                        Some((schema, name)) => TableName { schema: Some(schema.to_owned()), name: name.to_owned() },
                        None => TableName::bare(&l.table),
                    })
                    .collect(),
            });
        }
        Op::CreateIndex { table, columns, unique, concurrently, .. } => {
            e.table = Some(table.clone());
            e.scans_table = true;
            e.builds_index = true;
            e.lock(pg_lock(table, if *concurrently { PgLock::ShareUpdateExclusive } else { PgLock::Share }));
            if *unique {
                e.checks.push(CheckSpec::UniqueDuplicates { table: table.clone(), columns: columns.clone() });
            }
            e.checks.push(CheckSpec::LockBlockers { tables: vec![table.clone()] });
        }
        Op::DropIndex { concurrently, names } => {
            for name in names {
                if let Some(t) = catalog.tables().find(|t| t.indexes.iter().any(|i| i.name.eq_ignore_ascii_case(name)))
                {
                    e.lock(pg_lock(
                        &t.name,
                        if *concurrently { PgLock::ShareUpdateExclusive } else { PgLock::AccessExclusive },
                    ));
                }
            }
        }
        Op::DropTable { tables, .. } | Op::Truncate { tables, .. } => {
            for t in tables {
                e.lock(pg_lock(t, PgLock::AccessExclusive));
            }
            e.table = tables.first().cloned();
        }
        Op::RenameTable { from, .. } => {
            e.lock(pg_lock(from, PgLock::AccessExclusive));
        }
        Op::Insert { table } => e.lock(pg_lock(table, PgLock::RowExclusive)),
        Op::Update { table, has_where } | Op::Delete { table, has_where } => {
            e.table = Some(table.clone());
            e.scans_table = !has_where;
            e.lock(pg_lock(table, PgLock::RowExclusive));
        }
        Op::Vacuum { full, tables } => {
            for t in tables {
                e.lock(pg_lock(t, if *full { PgLock::AccessExclusive } else { PgLock::ShareUpdateExclusive }));
            }
            e.table = tables.first().cloned();
            e.rewrites_table = *full;
            e.scans_table = true;
        }
        Op::Cluster { table } => {
            if let Some(t) = table {
                e.lock(pg_lock(t, PgLock::AccessExclusive));
                e.table = Some(t.clone());
            }
            e.rewrites_table = true;
        }
        Op::CreateTrigger { table, .. } => e.lock(pg_lock(table, PgLock::ShareRowExclusive)),
        _ => {}
    }
    e
}

fn mysql(op: &Op, catalog: &Catalog) -> Effects {
    let mut e = Effects::default();
    let algorithm = |table: &TableName, name: &str, writes: bool| Lock {
        table: table.to_string(),
        mode: format!("ALGORITHM={name}"),
        blocks_writes: writes,
        blocks_reads: false,
    };
    match op {
        Op::AlterTable { table, actions } => {
            e.table = Some(table.clone());
            let live = known(catalog, table);
            let mut copy = false;
            let mut inplace = false;
            for (action, _) in actions {
                match action {
                    AlterAction::AddColumn(spec) => {
                        column_checks(table, spec, &mut e);
                    }
                    AlterAction::RenameColumn { .. }
                    | AlterAction::DropDefault { .. }
                    | AlterAction::SetDefault { .. } => {}
                    AlterAction::RedefineColumn { old_name, column } => {
                        let target = old_name.as_deref().unwrap_or(&column.name);
                        match live.and_then(|t| t.column(target)) {
                            Some(from) => {
                                let lost = crate::semantics::mysql_lost_attributes(from, column);
                                e.checks.push(CheckSpec::AttributeLoss {
                                    table: table.clone(),
                                    column: target.to_owned(),
                                    lost: lost.iter().map(|a| (*a).to_owned()).collect(),
                                    fix: crate::semantics::mysql_corrected_column(
                                        &table.to_string(),
                                        old_name.as_deref(),
                                        from,
                                        column,
                                    ),
                                });
                                let charset = from.charset.as_deref().or(live.and_then(|t| t.charset.as_deref()));
                                if crate::semantics::mysql_needs_copy(&from.data_type, &column.data_type, charset)
                                    .is_some()
                                {
                                    copy = true;
                                    e.checks.push(CheckSpec::CastFailures {
                                        table: table.clone(),
                                        column: target.to_owned(),
                                        from: from.data_type.clone(),
                                        to: column.data_type.clone(),
                                    });
                                } else {
                                    inplace = true;
                                }
                                if !from.nullable || column.not_null {
                                    if column.not_null && from.nullable {
                                        e.checks.push(CheckSpec::NotNullViolations {
                                            table: table.clone(),
                                            column: target.to_owned(),
                                        });
                                    }
                                    inplace = true;
                                }
                            }
                            None => copy = true,
                        }
                    }
                    AlterAction::AddConstraint(c @ Constraint::ForeignKey { .. }) => {
                        copy = true;
                        constraint_checks(table, c, &mut e);
                    }
                    AlterAction::AddConstraint(c) => {
                        inplace = true;
                        e.builds_index |= matches!(c, Constraint::Unique { .. } | Constraint::PrimaryKey { .. });
                        constraint_checks(table, c, &mut e);
                    }
                    AlterAction::AddIndex { unique, columns, .. } => {
                        inplace = true;
                        e.builds_index = true;
                        if *unique {
                            e.checks
                                .push(CheckSpec::UniqueDuplicates { table: table.clone(), columns: columns.clone() });
                        }
                    }
                    _ => inplace = true,
                }
            }
            key_checks(table, live, actions, &mut e);
            let lock = if copy {
                algorithm(table, "COPY", true)
            } else if inplace {
                algorithm(table, "INPLACE", false)
            } else {
                algorithm(table, "INSTANT", false)
            };
            e.rewrites_table = copy;
            e.scans_table = inplace;
            e.locks.push(lock);
            e.checks.push(CheckSpec::LockBlockers { tables: vec![table.clone()] });
        }
        Op::CreateIndex { table, columns, unique, .. } => {
            e.table = Some(table.clone());
            e.scans_table = true;
            e.builds_index = true;
            e.locks.push(algorithm(table, "INPLACE", false));
            if *unique {
                e.checks.push(CheckSpec::UniqueDuplicates { table: table.clone(), columns: columns.clone() });
            }
            e.checks.push(CheckSpec::LockBlockers { tables: vec![table.clone()] });
        }
        Op::Update { table, has_where } | Op::Delete { table, has_where } => {
            e.table = Some(table.clone());
            e.scans_table = !has_where;
        }
        _ => {}
    }
    e
}

fn sqlite(op: &Op) -> Effects {
    let mut e = Effects::default();
    if let Op::AlterTable { table, actions } = op {
        e.table = Some(table.clone());
        e.locks.push(Lock {
            table: "(database)".to_owned(),
            mode: "EXCLUSIVE".to_owned(),
            blocks_writes: true,
            blocks_reads: false,
        });
        for (action, _) in actions {
            if let AlterAction::AddColumn(spec) = action {
                column_checks(table, spec, &mut e);
            }
        }
    }
    if let Op::CreateIndex { table, columns, unique, .. } = op {
        e.table = Some(table.clone());
        e.scans_table = true;
        e.builds_index = true;
        e.locks.push(Lock {
            table: "(database)".to_owned(),
            mode: "EXCLUSIVE".to_owned(),
            blocks_writes: true,
            blocks_reads: false,
        });
        if *unique {
            e.checks.push(CheckSpec::UniqueDuplicates { table: table.clone(), columns: columns.clone() });
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::schema::{Column, Origin};
    use airlock_sql::parse::parse;

    fn one(sql: &str, dialect: Dialect, catalog: &Catalog) -> Effects {
        let ops = parse(sql, dialect).unwrap();
        effects(&ops[0], catalog, dialect)
    }

    fn table(name: &str, columns: &[(&str, &str)]) -> Table {
        let mut t = Table::created(TableName::bare(name), "");
        t.origin = Origin::Live;
        t.columns = columns
            .iter()
            .map(|(n, ty)| Column { name: (*n).into(), data_type: (*ty).into(), nullable: true, ..Column::default() })
            .collect();
        t
    }

    #[test]
    fn postgres_lock_levels() {
        let c = Catalog::offline();
        let modes = |sql: &str| {
            one(sql, Dialect::Postgres, &c).locks.iter().map(|l| format!("{} {}", l.table, l.mode)).collect::<Vec<_>>()
        };
        assert_eq!(modes("CREATE INDEX i ON t (a)"), ["t SHARE"]);
        assert_eq!(modes("CREATE INDEX CONCURRENTLY i ON t (a)"), ["t SHARE UPDATE EXCLUSIVE"]);
        // A foreign key locks the referenced table too.
        assert_eq!(
            modes("ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES users (id)"),
            ["orders SHARE ROW EXCLUSIVE", "users SHARE ROW EXCLUSIVE"]
        );
        assert_eq!(modes("ALTER TABLE orders VALIDATE CONSTRAINT fk"), ["orders SHARE UPDATE EXCLUSIVE"]);
        assert_eq!(modes("ALTER TABLE t ALTER COLUMN a SET NOT NULL"), ["t ACCESS EXCLUSIVE"]);
        assert_eq!(modes("UPDATE t SET a = 1"), ["t ROW EXCLUSIVE"]);
    }

    #[test]
    fn rewrites_scans_and_checks_come_from_the_live_types() {
        let c = Catalog::live(vec![table("t", &[("note", "character varying(20)"), ("code", "text")])]);
        let coercible = one("ALTER TABLE t ALTER COLUMN note TYPE text", Dialect::Postgres, &c);
        assert!(
            !coercible.rewrites_table && !coercible.checks.iter().any(|k| matches!(k, CheckSpec::CastFailures { .. }))
        );
        let cast = one("ALTER TABLE t ALTER COLUMN code TYPE integer USING code::integer", Dialect::Postgres, &c);
        assert!(cast.rewrites_table);
        assert!(cast.checks.contains(&CheckSpec::CastFailures {
            table: TableName::bare("t"),
            column: "code".into(),
            from: "text".into(),
            to: "integer".into()
        }));
        let fk = one("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u (id)", Dialect::Postgres, &c);
        assert!(fk.scans_table && matches!(&fk.checks[0], CheckSpec::ForeignKeyOrphans { .. }));
        let not_valid =
            one("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u (id) NOT VALID", Dialect::Postgres, &c);
        assert!(
            !not_valid.scans_table
                && !not_valid.checks.iter().any(|k| matches!(k, CheckSpec::ForeignKeyOrphans { .. }))
        );
    }

    #[test]
    fn mysql_algorithms() {
        let c = Catalog::live(vec![table("carts", &[("cart_id", "int(11)"), ("note", "varchar(20)")])]);
        let mode = |sql: &str| one(sql, Dialect::MySql, &c).locks[0].mode.clone();
        assert_eq!(mode("ALTER TABLE carts MODIFY cart_id BIGINT NOT NULL"), "ALGORITHM=COPY");
        assert_eq!(mode("ALTER TABLE carts ADD COLUMN x INT"), "ALGORITHM=INSTANT");
        assert_eq!(mode("CREATE INDEX i ON carts (note)"), "ALGORITHM=INPLACE");
        assert!(one("ALTER TABLE carts MODIFY cart_id BIGINT NOT NULL", Dialect::MySql, &c).locks[0].blocks_writes);
    }
}
