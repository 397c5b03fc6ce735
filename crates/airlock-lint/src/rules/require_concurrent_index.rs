//! `require-concurrent-index`: `CREATE INDEX` without `CONCURRENTLY` on a
//! table that already exists takes a SHARE lock, blocking writes for the build.

use airlock_sql::Dialect;
use airlock_sql::parse::Op;

use super::locks::*;
use super::{Rule, postgres};
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct RequireConcurrentIndex;

impl Rule for RequireConcurrentIndex {
    fn id(&self) -> &'static str {
        "require-concurrent-index"
    }

    fn default_severity(&self) -> Severity {
        Severity::Error
    }

    fn applies_to(&self, dialect: Dialect) -> bool {
        postgres(dialect)
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        let Op::CreateIndex { table, concurrently: false, .. } = cx.op else { return };
        if !cx.is_existing(table) {
            return;
        }
        let finding = cx.finding(
            self,
            format!(
                "CREATE INDEX on `{table}`{} takes a {SHARE} lock: inserts, updates and deletes wait until the index is built",
                cx.size_note(table)
            ),
            "use CREATE INDEX CONCURRENTLY, alone in a migration marked `-- airlock:no-transaction`",
        );
        out.push(cx.scaled(finding, table));
    }
}

#[cfg(test)]
mod tests {
    use crate::Severity;
    use crate::rules::test::{column, has, live, run, run_live};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "require-concurrent-index";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "CREATE INDEX CONCURRENTLY i ON t (a);"), ID));
        // A table created in the same migration is empty.
        assert!(!has(&run(Postgres, "CREATE TABLE t (a int);\nCREATE INDEX i ON t (a);"), ID));
        // Against a live database that lacks it, a table an earlier pending
        // migration creates is empty when the later ones run in the same run.
        let files = [
            ("1_t.up.sql", "CREATE TABLE t (a int);"),
            ("1_t.down.sql", "DROP TABLE t;"),
            ("2_i.up.sql", "CREATE INDEX i ON t (a);"),
            ("2_i.down.sql", "DROP INDEX i;"),
        ];
        let r = crate::rules::test::report(Postgres, &files, airlock_core::schema::Catalog::live(Vec::new()));
        assert!(!r.findings.iter().any(|f| f.rule == ID), "{:?}", r.findings);
    }

    #[test]
    fn error() {
        assert_eq!(run(Postgres, "CREATE INDEX i ON t (a);"), [(ID, Severity::Error)]);
        // Created by an earlier migration: it may hold rows by the time this one runs.
        let files = [
            ("1_t.up.sql", "CREATE TABLE t (a int);"),
            ("1_t.down.sql", "DROP TABLE t;"),
            ("2_i.up.sql", "CREATE INDEX i ON t (a);"),
            ("2_i.down.sql", "DROP INDEX i;"),
        ];
        let r = crate::rules::test::report(Postgres, &files, airlock_core::schema::Catalog::offline());
        assert!(r.findings.iter().any(|f| f.rule == ID && f.version == "2"), "{:?}", r.findings);
        // Small live table: worth knowing, not stopping for.
        let small = run_live(Postgres, "CREATE INDEX i ON t (a);", vec![live("t", 50.0, vec![column("a", "integer")])]);
        assert_eq!(small, [(ID, Severity::Info)]);
    }
}
