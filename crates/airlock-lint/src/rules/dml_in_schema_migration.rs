//! `dml-in-schema-migration`: the lesson of a foreign key added over inconsistent rows inside a schema migration, five days down. Data changes hidden in a
//! schema migration run under its locks and transaction, unbatched, unreviewed
//! as data work; they go in a migration marked `-- airlock:data`. Rows inserted
//! into a table created by the same migration (reference data) are fine.

use airlock_sql::parse::Op;

use super::Rule;
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct DmlInSchemaMigration;

impl Rule for DmlInSchemaMigration {
    fn id(&self) -> &'static str {
        "dml-in-schema-migration"
    }

    fn default_severity(&self) -> Severity {
        Severity::Error
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        if cx.is_data_migration() {
            return;
        }
        let (verb, table) = match cx.op {
            Op::Insert { table } => ("INSERT into", table),
            Op::Update { table, .. } => ("UPDATE of", table),
            Op::Delete { table, .. } => ("DELETE from", table),
            _ => return,
        };
        // What the file holds, whatever else runs with it: only a table this
        // migration creates takes its reference rows here.
        if cx.is_created_here(table) || matches!(cx.table(table), airlock_core::schema::Lookup::Missing) {
            return;
        }
        out.push(cx.finding(
            self,
            format!("{verb} `{table}` in a schema migration: data changes run here under the schema change's locks, unbatched"),
            "move it to its own migration marked `-- airlock:data`",
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::{Postgres, Sqlite};

    const ID: &str = "dml-in-schema-migration";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "-- airlock:data\nUPDATE t SET a = 1 WHERE a IS NULL;"), ID));
        assert!(!has(
            &run(Postgres, "CREATE TABLE kinds (id int, name text);\nINSERT INTO kinds VALUES (1, 'a');"),
            ID
        ));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "ALTER TABLE t ADD COLUMN a int;\nUPDATE t SET a = 1;"), ID));
        assert!(has(&run(Sqlite, "DELETE FROM t WHERE id = 1;"), ID));
    }
}
