//! `require-concurrent-index-drop`: `DROP INDEX` without `CONCURRENTLY` takes
//! an ACCESS EXCLUSIVE lock on the index's table, blocking reads and writes.

use airlock_sql::Dialect;
use airlock_sql::parse::Op;

use super::locks::*;
use super::{Rule, postgres};
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct RequireConcurrentIndexDrop;

impl Rule for RequireConcurrentIndexDrop {
    fn id(&self) -> &'static str {
        "require-concurrent-index-drop"
    }

    fn default_severity(&self) -> Severity {
        Severity::Warning
    }

    fn applies_to(&self, dialect: Dialect) -> bool {
        postgres(dialect)
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        let Op::DropIndex { names, concurrently: false } = cx.op else { return };
        // An index made by the same pending migrations is on a new, empty table or was never used.
        let bare = |n: &str| n.rsplit('.').next().unwrap_or(n).to_lowercase();
        let created_here = |name: &str| {
            cx.statements[..cx.index]
                .iter()
                .flat_map(|p| p.ops.iter().flatten())
                .any(|op| matches!(op, Op::CreateIndex { name: Some(n), .. } if bare(n) == bare(name)))
        };
        for name in names.iter().filter(|n| !created_here(n)) {
            out.push(cx.finding(
                self,
                format!("DROP INDEX `{name}` takes an {ACCESS_EXCLUSIVE} lock on its table: every read and write waits, and waits behind any long query"),
                "use DROP INDEX CONCURRENTLY, alone in a migration marked `-- airlock:no-transaction`",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "require-concurrent-index-drop";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "DROP INDEX CONCURRENTLY i;"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "DROP INDEX i;"), ID));
    }
}
