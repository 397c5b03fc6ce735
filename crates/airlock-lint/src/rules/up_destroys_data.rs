//! `up-destroys-data`: the up script removes data of an existing table
//! (`DROP TABLE`, `DROP COLUMN`, `TRUNCATE`, an unfiltered `DELETE`), and a down
//! script cannot bring rows back: rolling back restores the shape, empty.

use airlock_sql::parse::{AlterAction, Op};

use super::Rule;
use crate::{Finding, MigrationContext, Severity};

/// See the module docs.
pub struct UpDestroysData;

impl Rule for UpDestroysData {
    fn id(&self) -> &'static str {
        "up-destroys-data"
    }

    fn default_severity(&self) -> Severity {
        Severity::Warning
    }

    fn check_migration(&self, cx: &MigrationContext, out: &mut Vec<Finding>) {
        let mut created = Vec::new();
        for statement in cx.statements {
            let Ok(ops) = &statement.ops else { continue };
            for op in ops {
                let existing = |t: &airlock_sql::parse::TableName| !created.contains(&t.name.to_lowercase());
                let what = match op {
                    Op::CreateTable { table, .. } => {
                        created.push(table.name.to_lowercase());
                        None
                    }
                    Op::DropTable { tables, .. } => {
                        tables.iter().find(|t| existing(t)).map(|t| format!("DROP TABLE `{t}`"))
                    }
                    Op::Truncate { tables, .. } => {
                        tables.iter().find(|t| existing(t)).map(|t| format!("TRUNCATE `{t}`"))
                    }
                    Op::Delete { table, has_where: false } if existing(table) => {
                        Some(format!("DELETE of every row of `{table}`"))
                    }
                    Op::AlterTable { table, actions } if existing(table) => actions.iter().find_map(|(a, _)| match a {
                        AlterAction::DropColumn { column } => Some(format!("DROP COLUMN `{table}.{column}`")),
                        _ => None,
                    }),
                    _ => None,
                };
                if let Some(what) = what {
                    let down = if cx.migration.down.is_some() {
                        "its down script restores the shape, not the rows"
                    } else {
                        "and there is no down script"
                    };
                    out.push(cx.finding(
                        self,
                        statement.line,
                        format!("{what} destroys data; {down}"),
                        "take a backup (or copy the data aside) first, and keep it until the release is proven",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "up-destroys-data";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "CREATE TABLE tmp (a int);\nDROP TABLE tmp;"), ID));
        assert!(!has(&run(Postgres, "-- airlock:data\nDELETE FROM t WHERE id = 1;"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "DROP TABLE t;"), ID));
        assert!(has(&run(Postgres, "ALTER TABLE t DROP COLUMN c;"), ID));
    }
}
