//! `rename-column`: the running release still uses the old name.

use airlock_sql::parse::{AlterAction, Op};

use super::Rule;
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct RenameColumn;

impl Rule for RenameColumn {
    fn id(&self) -> &'static str {
        "rename-column"
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
            let (from, to) = match action {
                AlterAction::RenameColumn { from, to } => (from, to),
                AlterAction::RedefineColumn { old_name: Some(from), column }
                    if !from.eq_ignore_ascii_case(&column.name) =>
                {
                    (from, &column.name)
                }
                _ => continue,
            };
            out.push(cx.finding(
                self,
                format!("renaming `{table}.{from}` to `{to}` breaks the running release, which still uses `{from}`"),
                "`airlock expand` on this file writes it as expand/contract migrations: the new column kept equal to the old by a trigger, a batched backfill, and a contract that drops the old one once no old app runs",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::{MySql, Postgres};

    const ID: &str = "rename-column";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "CREATE TABLE t (a int);\nALTER TABLE t RENAME COLUMN a TO b;"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "ALTER TABLE t RENAME COLUMN a TO b;"), ID));
        assert!(has(&run(MySql, "ALTER TABLE t CHANGE a b INT;"), ID));
    }
}
