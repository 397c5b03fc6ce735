//! `reindex-not-concurrent`: `REINDEX` without `CONCURRENTLY` blocks writes to
//! the table (and reads that would use the index) for the whole rebuild.

use airlock_sql::Dialect;
use airlock_sql::parse::Op;

use super::{Rule, postgres};
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct ReindexNotConcurrent;

impl Rule for ReindexNotConcurrent {
    fn id(&self) -> &'static str {
        "reindex-not-concurrent"
    }

    fn default_severity(&self) -> Severity {
        Severity::Error
    }

    fn applies_to(&self, dialect: Dialect) -> bool {
        postgres(dialect)
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        if let Op::Reindex { concurrently: false, target } = cx.op {
            out.push(cx.finding(
                self,
                format!("REINDEX {target} blocks writes (and reads that use the index) until every index is rebuilt"),
                "use REINDEX (CONCURRENTLY), alone in a migration marked `-- airlock:no-transaction` (PostgreSQL 12+)",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "reindex-not-concurrent";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "REINDEX (CONCURRENTLY) TABLE t;"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "REINDEX TABLE t;"), ID));
    }
}
