//! `drop-column`: the running app (and every instance still on the previous
//! release) may still read or write the column; dropping it breaks them.

use airlock_sql::parse::{AlterAction, Op};

use super::Rule;
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct DropColumn;

impl Rule for DropColumn {
    fn id(&self) -> &'static str {
        "drop-column"
    }

    fn default_severity(&self) -> Severity {
        Severity::Warning
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        let Op::AlterTable { table, actions } = cx.op else { return };
        if !cx.is_existing(table) {
            return;
        }
        for (action, at) in actions {
            let cx = &cx.at(*at);
            if let AlterAction::DropColumn { column } = action {
                out.push(cx.finding(
                    self,
                    format!("dropping `{table}.{column}` breaks any running release that still reads or writes it, and its data is gone"),
                    "stop using the column in a release first, deploy it everywhere, then drop it (expand/contract)",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::{MySql, Postgres};

    const ID: &str = "drop-column";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "CREATE TABLE t (a int, b int);\nALTER TABLE t DROP COLUMN b;"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "ALTER TABLE t DROP COLUMN b;"), ID));
        assert!(has(&run(MySql, "ALTER TABLE t DROP COLUMN b;"), ID));
    }
}
