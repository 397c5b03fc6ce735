//! What a script run on a scratch database can have changed, told from its
//! parsed statements, so that a rehearsal reads again only that part of the
//! schema after each step (on a schema of a thousand tables, a whole
//! snapshot costs ~80 ms, and a rehearsal reads one after every step). The
//! rule errs towards reading everything: any statement that is not
//! understood, or that can reach objects it does not name (a rename, which
//! changes the text of views; CASCADE; a table with partitions or children,
//! which passes DDL on to them; a write to a table with triggers, which may
//! do anything), makes the whole schema read again.

use std::collections::BTreeSet;

use airlock_core::snapshot::{ObjectKind, SchemaSnapshot, Scope};
use airlock_sql::Dialect;
use airlock_sql::parse::{AlterAction, CommentOn, Op, RelationKind, TableName};

/// The scope of `statements` run on the schema `before`, or None when the
/// whole schema must be read again after them.
pub(crate) fn scope_of(statements: &[&str], dialect: Dialect, before: &SchemaSnapshot) -> Option<Scope> {
    let mut scope = Scope::default();
    for sql in statements {
        for op in airlock_sql::parse::parse(sql, dialect).ok()? {
            let (relations, parts): (Vec<String>, &[ObjectKind]) = match op {
                Op::CreateTable { table, columns, .. } => {
                    // A serial column's sequence comes and goes with its table or column.
                    if columns.iter().any(|c| c.identity) {
                        scope.others.insert(ObjectKind::Sequence);
                    }
                    // A partition takes its parent's row triggers.
                    (vec![table.name], TABLE_PARTS)
                }
                Op::CreateIndex { table, .. } => (vec![table.name], &[ObjectKind::Index]),
                Op::CreateTrigger { table, .. } => (vec![table.name], &[ObjectKind::Trigger]),
                Op::AlterTable { table, actions } => {
                    for (action, _) in &actions {
                        let parts: &[ObjectKind] = match action {
                            AlterAction::RenameColumn { .. }
                            | AlterAction::RenameTable { .. }
                            | AlterAction::RedefineColumn { .. }
                            | AlterAction::Other { .. } => return None,
                            // The parser keeps no CASCADE for these: the text says.
                            AlterAction::DropColumn { .. } | AlterAction::DropConstraint { .. }
                                if sql.to_ascii_lowercase().contains("cascade") =>
                            {
                                return None;
                            }
                            AlterAction::AddColumn(column) => {
                                if column.identity {
                                    scope.others.insert(ObjectKind::Sequence);
                                }
                                // Its inline constraints, and the indexes of a key or UNIQUE.
                                &[
                                    ObjectKind::Column,
                                    ObjectKind::ColumnOrder,
                                    ObjectKind::Constraint,
                                    ObjectKind::Index,
                                ][..]
                            }
                            // What used the column goes with it; its type shows in
                            // the text of checks and index definitions.
                            AlterAction::DropColumn { .. } | AlterAction::AlterColumnType { .. } => {
                                if owns_sequences(before, &table.name) {
                                    scope.others.insert(ObjectKind::Sequence);
                                }
                                &ObjectKind::OF_RELATIONS[..]
                            }
                            AlterAction::SetNotNull { .. }
                            | AlterAction::DropNotNull { .. }
                            | AlterAction::SetDefault { .. }
                            | AlterAction::DropDefault { .. } => &[ObjectKind::Column],
                            // A primary key's columns become NOT NULL; a key has its index.
                            AlterAction::AddConstraint(_) | AlterAction::DropConstraint { .. } => {
                                &[ObjectKind::Column, ObjectKind::Constraint, ObjectKind::Index]
                            }
                            AlterAction::ValidateConstraint { .. } => &[ObjectKind::Constraint],
                            AlterAction::AddIndex { .. } => &[ObjectKind::Index],
                        };
                        scope.parts.extend(parts.iter().copied());
                    }
                    (vec![table.name], &[])
                }
                Op::DropTable { tables, cascade: false } => {
                    if tables.iter().any(|t| owns_sequences(before, &t.name)) {
                        scope.others.insert(ObjectKind::Sequence);
                    }
                    (tables.into_iter().map(|t| t.name).collect(), &ObjectKind::OF_RELATIONS[..])
                }
                // A materialized view goes with its indexes, a view with its INSTEAD OF triggers.
                Op::DropView { views, cascade: false, materialized } => (
                    views.into_iter().map(|t| t.name).collect(),
                    match materialized {
                        true => &[ObjectKind::MaterializedView, ObjectKind::Index],
                        false => &[ObjectKind::View, ObjectKind::Trigger],
                    },
                ),
                // A view made again keeps its triggers.
                Op::CreateView { view, materialized } => (
                    vec![view.name],
                    match materialized {
                        true => &[ObjectKind::MaterializedView],
                        false => &[ObjectKind::View],
                    },
                ),
                Op::Comment { on: CommentOn::Relation { table, kind } } => (
                    vec![table.name],
                    match kind {
                        RelationKind::Table => &[ObjectKind::Table],
                        RelationKind::View => &[ObjectKind::View],
                        RelationKind::MaterializedView => &[ObjectKind::MaterializedView],
                    },
                ),
                Op::Comment { on: CommentOn::Column(table) } => (vec![table.name], &[ObjectKind::Column]),
                Op::Comment { on: CommentOn::Index(name) } => (index_tables(before, &name)?, &[ObjectKind::Index]),
                Op::Comment { on: CommentOn::Other(kind) } => {
                    scope.others.extend(of_no_relation(&kind)?);
                    (Vec::new(), &[])
                }
                Op::AddEnumValue { .. } => {
                    scope.others.insert(ObjectKind::Enum);
                    (Vec::new(), &[])
                }
                Op::DropIndex { names, .. } => {
                    let mut tables = Vec::new();
                    for name in names {
                        tables.extend(index_tables(before, &name)?);
                    }
                    (tables, &[ObjectKind::Index])
                }
                Op::Insert { table } | Op::Update { table, .. } | Op::Delete { table, .. } => {
                    if has_triggers(before, &table) {
                        return None;
                    }
                    (Vec::new(), &[])
                }
                Op::Truncate { tables, cascade: false } => {
                    if tables.iter().any(|t| has_triggers(before, t)) {
                        return None;
                    }
                    (Vec::new(), &[])
                }
                Op::Vacuum { .. } | Op::Transaction(_) => (Vec::new(), &[]),
                _ => return None,
            };
            scope.relations.extend(relations);
            scope.parts.extend(parts.iter().copied());
        }
    }
    // A table with partitions or children passes its DDL on to them.
    let parents: BTreeSet<&str> = before
        .objects
        .iter()
        .filter(|(path, _)| path.kind == ObjectKind::Table)
        .filter_map(|(_, attributes)| attributes.get("parent"))
        .flat_map(|parents| parents.split(", "))
        .map(|qualified| qualified.rsplit('.').next().unwrap_or(qualified))
        .collect();
    if scope.relations.iter().any(|r| parents.contains(r.as_str())) {
        return None;
    }
    Some(scope)
}

/// What a new table can have: all but what views are.
const TABLE_PARTS: &[ObjectKind] = &[
    ObjectKind::Table,
    ObjectKind::Column,
    ObjectKind::ColumnOrder,
    ObjectKind::Constraint,
    ObjectKind::Index,
    ObjectKind::Trigger,
    ObjectKind::Policy,
];

/// The kinds of snapshot object a `COMMENT ON <kind>` of an object of no
/// relation can change; None for a kind that belongs to a relation or is
/// not in snapshots as such.
fn of_no_relation(kind: &str) -> Option<Vec<ObjectKind>> {
    Some(match kind {
        "SCHEMA" => vec![ObjectKind::Schema],
        "TYPE" => vec![ObjectKind::Enum, ObjectKind::CompositeType, ObjectKind::Domain],
        "DOMAIN" => vec![ObjectKind::Domain],
        "FUNCTION" | "PROCEDURE" | "ROUTINE" => vec![ObjectKind::Function],
        "SEQUENCE" => vec![ObjectKind::Sequence],
        "EXTENSION" => vec![ObjectKind::Extension],
        _ => return None,
    })
}

/// The tables with an index named `name` (qualified or not): every one, since
/// another schema (or, on MySQL, another table) may have an index of that
/// name; None when the schema has none.
fn index_tables(before: &SchemaSnapshot, name: &str) -> Option<Vec<String>> {
    let name = name.rsplit('.').next().unwrap_or(name);
    let tables: Vec<String> = before
        .objects
        .keys()
        .filter(|p| p.kind == ObjectKind::Index && p.name == name)
        .filter_map(|p| p.table.clone())
        .collect();
    (!tables.is_empty()).then_some(tables)
}

/// Whether a sequence belongs to a column of `table` (`OWNED BY`, as a
/// serial column's does): it goes with the table or the column.
fn owns_sequences(before: &SchemaSnapshot, table: &str) -> bool {
    before.objects.iter().any(|(path, attributes)| {
        path.kind == ObjectKind::Sequence
            && attributes.get("owned_by").and_then(|o| o.rsplit_once('.')).is_some_and(|(t, _)| t == table)
    })
}

/// Whether `table` has a trigger, which may change anything when rows are written.
fn has_triggers(before: &SchemaSnapshot, table: &TableName) -> bool {
    before.objects.keys().any(|p| p.kind == ObjectKind::Trigger && p.table.as_deref() == Some(table.name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::snapshot::{Attributes, ObjectPath};

    fn schema() -> SchemaSnapshot {
        let mut s = SchemaSnapshot::default();
        let table = |name: &str| ObjectPath::new(ObjectKind::Table, Some("public"), name);
        s.insert(table("t"), Attributes::new());
        s.insert(ObjectPath::of_table(ObjectKind::Index, Some("public"), "t", "t_a"), Attributes::new());
        // t's serial column's sequence.
        let owned: Attributes = [("owned_by".to_owned(), "t.id".to_owned())].into();
        s.insert(ObjectPath::new(ObjectKind::Sequence, Some("public"), "t_id_seq"), owned);
        // The same index name in another schema, on another table.
        s.insert(ObjectPath::of_table(ObjectKind::Index, Some("archive"), "t_old", "t_a"), Attributes::new());
        s.insert(table("audited"), Attributes::new());
        s.insert(ObjectPath::of_table(ObjectKind::Trigger, Some("public"), "audited", "log"), Attributes::new());
        s.insert(table("events"), Attributes::new());
        let partition: Attributes = [("parent".to_owned(), "public.events".to_owned())].into();
        s.insert(table("events_2026"), partition);
        s
    }

    fn scope(sql: &[&str]) -> Option<Vec<String>> {
        scope_of(sql, Dialect::Postgres, &schema()).map(|s| s.relations.into_iter().collect())
    }

    fn others(sql: &str) -> Vec<ObjectKind> {
        scope_of(&[sql], Dialect::Postgres, &schema()).expect("a scope").others.into_iter().collect()
    }

    #[test]
    fn objects_of_no_relation_are_read_again_only_when_a_statement_can_change_them() {
        for (sql, kinds) in [
            ("CREATE TABLE u (id serial)", vec![ObjectKind::Sequence]),
            ("ALTER TABLE t ADD COLUMN n serial", vec![ObjectKind::Sequence]),
            ("ALTER TABLE t DROP COLUMN n", vec![ObjectKind::Sequence]),
            ("DROP TABLE t", vec![ObjectKind::Sequence]),
            ("COMMENT ON FUNCTION f() IS 'x'", vec![ObjectKind::Function]),
            ("COMMENT ON TYPE mood IS 'x'", vec![ObjectKind::Enum, ObjectKind::Domain, ObjectKind::CompositeType]),
            ("ALTER TYPE mood ADD VALUE 'meh'", vec![ObjectKind::Enum]),
        ] {
            assert_eq!(others(sql), kinds, "{sql}");
        }
        for sql in [
            "CREATE TABLE u (id int)",
            "ALTER TABLE t ADD COLUMN n int",
            "ALTER TABLE audited DROP COLUMN n",
            "DROP TABLE audited",
            "CREATE INDEX t_b ON t (b)",
            "ALTER TABLE t ALTER COLUMN a SET DEFAULT 1",
            "CREATE VIEW v AS SELECT 1",
            "COMMENT ON TABLE t IS 'x'",
        ] {
            assert!(others(sql).is_empty(), "{sql}");
        }
    }

    fn parts(sql: &str) -> Vec<ObjectKind> {
        scope_of(&[sql], Dialect::Postgres, &schema()).expect("a scope").parts.into_iter().collect()
    }

    #[test]
    fn of_a_relation_only_what_a_statement_can_change_is_read_again() {
        use ObjectKind::*;
        for (sql, kinds) in [
            ("CREATE INDEX t_b ON t (b)", vec![Index]),
            ("DROP INDEX t_a", vec![Index]),
            ("COMMENT ON INDEX t_a IS 'x'", vec![Index]),
            ("CREATE TRIGGER log AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", vec![Trigger]),
            ("ALTER TABLE t ALTER COLUMN a SET DEFAULT 1", vec![Column]),
            ("ALTER TABLE t ALTER COLUMN a DROP NOT NULL", vec![Column]),
            ("ALTER TABLE t ADD CONSTRAINT t_pk PRIMARY KEY (a)", vec![Column, Constraint, Index]),
            ("ALTER TABLE t VALIDATE CONSTRAINT t_b", vec![Constraint]),
            ("ALTER TABLE t ADD COLUMN c int UNIQUE", vec![Column, ColumnOrder, Constraint, Index]),
            ("ALTER TABLE t ALTER COLUMN a TYPE bigint", ObjectKind::OF_RELATIONS.to_vec()),
            ("ALTER TABLE t DROP COLUMN a", ObjectKind::OF_RELATIONS.to_vec()),
            ("DROP TABLE t", ObjectKind::OF_RELATIONS.to_vec()),
            ("CREATE TABLE u (id int)", TABLE_PARTS.to_vec()),
            ("CREATE VIEW v AS SELECT 1", vec![View]),
            ("CREATE MATERIALIZED VIEW m AS SELECT 1", vec![MaterializedView]),
            ("DROP VIEW v", vec![View, Trigger]),
            ("DROP MATERIALIZED VIEW m", vec![Index, MaterializedView]),
            ("COMMENT ON TABLE t IS 'x'", vec![Table]),
            ("COMMENT ON VIEW v IS 'x'", vec![View]),
            ("COMMENT ON COLUMN t.a IS 'x'", vec![Column]),
            ("INSERT INTO t VALUES (1)", vec![]),
        ] {
            let mut kinds = kinds;
            kinds.sort();
            assert_eq!(parts(sql), kinds, "{sql}");
        }
        // Statements together read what each would.
        let both = scope_of(&["CREATE INDEX t_b ON t (b)", "COMMENT ON TABLE u IS 'x'"], Dialect::Postgres, &schema());
        let both = both.expect("a scope");
        assert_eq!(both.parts, [Table, Index].into());
        assert_eq!(both.relations, ["t".to_owned(), "u".to_owned()].into());
    }

    #[test]
    fn the_relations_a_script_names() {
        assert_eq!(
            scope(&[
                "CREATE TABLE u (id int REFERENCES t (id) ON DELETE CASCADE)",
                "CREATE INDEX u_id ON u (id)",
                "ALTER TABLE t ADD COLUMN b int DEFAULT 1, ALTER COLUMN a SET NOT NULL",
                "DROP INDEX t_a",
                "INSERT INTO t VALUES (1)",
                "CREATE VIEW v AS SELECT id FROM t",
                "CREATE MATERIALIZED VIEW m AS SELECT id FROM t",
                "DROP VIEW IF EXISTS old_v",
                "COMMENT ON TABLE t IS 'x'",
                "COMMENT ON COLUMN public.w.a IS 'x'",
                "COMMENT ON INDEX t_a IS 'x'",
                "COMMENT ON FUNCTION f() IS 'x'",
            ]),
            Some(["m", "old_v", "t", "t_old", "u", "v", "w"].map(String::from).to_vec())
        );
        assert_eq!(scope(&["DROP TABLE IF EXISTS uu"]), Some(vec!["uu".to_owned()]));
        assert_eq!(scope(&[]), Some(vec![]));
    }

    #[test]
    fn what_can_reach_further_reads_the_whole_schema() {
        for sql in [
            "ALTER TABLE t RENAME COLUMN a TO b",
            "ALTER TABLE t RENAME TO t2",
            "ALTER TABLE t DROP COLUMN a CASCADE",
            "DROP TABLE t CASCADE",
            "DROP VIEW v CASCADE",
            "COMMENT ON CONSTRAINT c ON t IS 'x'",
            "COMMENT ON INDEX nowhere IS 'x'",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "DROP INDEX nowhere",
            "INSERT INTO audited VALUES (1)",
            "CREATE INDEX e_a ON events (a)",
            "SELECT * FROM t WHERE",
        ] {
            assert_eq!(scope(&[sql]), None, "{sql}");
        }
    }
}
