//! `rename-table`: the running release still uses the old name.

use airlock_sql::parse::{AlterAction, Op, TableName};

use super::Rule;
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct RenameTable;

impl Rule for RenameTable {
    fn id(&self) -> &'static str {
        "rename-table"
    }

    fn default_severity(&self) -> Severity {
        Severity::Warning
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        let (from, to): (&TableName, String) = match cx.op {
            Op::RenameTable { from, to } => (from, to.to_string()),
            Op::AlterTable { table, actions } => match actions.iter().find_map(|(a, _)| match a {
                AlterAction::RenameTable { to } => Some(to.clone()),
                _ => None,
            }) {
                Some(to) => (table, to),
                None => return,
            },
            _ => return,
        };
        if cx.is_existing(from) {
            out.push(cx.finding(
                self,
                format!("renaming `{from}` to `{to}` breaks the running release, which still uses `{from}`"),
                "`airlock expand` on this file writes it as expand/contract migrations: a view keeps both names working until a contract, run once no old app uses the old name",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::{MySql, Postgres};

    const ID: &str = "rename-table";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "CREATE TABLE t (a int);\nALTER TABLE t RENAME TO u;"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "ALTER TABLE t RENAME TO u;"), ID));
        assert!(has(&run(MySql, "RENAME TABLE t TO u;"), ID));
    }
}
