//! `concurrent-in-transaction`: `CREATE/DROP INDEX CONCURRENTLY` (or `VACUUM`)
//! in a file whose other statements need a transaction: PostgreSQL refuses to
//! run it inside one, and the runner refuses to mix them.

use airlock_sql::parse::{Op, TxKind};
use airlock_sql::{Dialect, TxNeed};

use super::{Rule, postgres};
use crate::{Finding, MigrationContext, Severity};

/// See the module docs.
pub struct ConcurrentInTransaction;

impl Rule for ConcurrentInTransaction {
    fn id(&self) -> &'static str {
        "concurrent-in-transaction"
    }

    fn default_severity(&self) -> Severity {
        Severity::Error
    }

    fn applies_to(&self, dialect: Dialect) -> bool {
        postgres(dialect)
    }

    fn check_migration(&self, cx: &MigrationContext, out: &mut Vec<Finding>) {
        let outside: Vec<_> = cx.statements.iter().filter(|p| matches!(p.tx, TxNeed::OutsideTransaction(_))).collect();
        let Some(first) = outside.first() else { return };
        let explicit_begin =
            cx.statements.iter().any(|p| p.ops.as_ref().is_ok_and(|ops| ops.contains(&Op::Transaction(TxKind::Begin))));
        let others = cx.statements.len() - outside.len();
        if explicit_begin || (others > 0 && !cx.migration.directives.no_transaction) {
            let TxNeed::OutsideTransaction(what) = first.tx else { return };
            out.push(cx.finding(
                self,
                first.line,
                format!("{what} cannot run inside a transaction, and this file has other statements that would share one"),
                "move it to a migration of its own (airlock then runs it outside a transaction), or mark this file `-- airlock:no-transaction`",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "concurrent-in-transaction";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "CREATE INDEX CONCURRENTLY i ON t (a);"), ID));
        assert!(!has(
            &run(
                Postgres,
                "-- airlock:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\nCREATE INDEX CONCURRENTLY j ON t (b);"
            ),
            ID
        ));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "ALTER TABLE t ADD COLUMN b int;\nCREATE INDEX CONCURRENTLY i ON t (b);"), ID));
        assert!(has(&run(Postgres, "BEGIN;\nCREATE INDEX CONCURRENTLY i ON t (b);\nCOMMIT;"), ID));
    }
}
