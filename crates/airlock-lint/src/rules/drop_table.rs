//! `drop-table`: the running app may still use the table, and its rows are gone.

use airlock_sql::parse::Op;

use super::Rule;
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct DropTable;

impl Rule for DropTable {
    fn id(&self) -> &'static str {
        "drop-table"
    }

    fn default_severity(&self) -> Severity {
        Severity::Warning
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        let Op::DropTable { tables, .. } = cx.op else { return };
        for table in tables.iter().filter(|t| cx.is_existing(t)) {
            out.push(cx.finding(
                self,
                format!(
                    "dropping `{table}`{} breaks any running release that still uses it, and its rows are gone",
                    cx.size_note(table)
                ),
                "stop using the table in a release first; keep a backup or rename it aside before dropping it for good",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::Sqlite;

    const ID: &str = "drop-table";

    #[test]
    fn ok() {
        assert!(!has(&run(Sqlite, "CREATE TABLE t (a int);\nDROP TABLE t;"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(Sqlite, "DROP TABLE t;"), ID));
    }
}
