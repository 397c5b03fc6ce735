//! `adding-required-column`: `ADD COLUMN ... NOT NULL` without a default fails
//! on a table that has rows (and, worse, succeeds on the empty staging copy).

use airlock_sql::parse::{AlterAction, Op};

use super::Rule;
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct AddingRequiredColumn;

impl Rule for AddingRequiredColumn {
    fn id(&self) -> &'static str {
        "adding-required-column"
    }

    fn default_severity(&self) -> Severity {
        Severity::Error
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        let Op::AlterTable { table, actions } = cx.op else { return };
        if !cx.is_existing(table) {
            return;
        }
        for (action, at) in actions {
            let cx = &cx.at(*at);
            let AlterAction::AddColumn(c) = action else { continue };
            if c.not_null && c.default.is_none() && !c.identity && !c.auto_increment && !c.generated_stored {
                out.push(cx.finding(
                    self,
                    format!(
                        "adding `{}` NOT NULL without a DEFAULT to `{table}` fails as soon as the table has a row",
                        c.name
                    ),
                    "add the column with a DEFAULT, or nullable, backfill it in a data migration, then set NOT NULL",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::{MySql, Postgres};

    const ID: &str = "adding-required-column";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "ALTER TABLE t ADD COLUMN a int;"), ID));
        assert!(!has(&run(Postgres, "ALTER TABLE t ADD COLUMN a int NOT NULL DEFAULT 0;"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "ALTER TABLE t ADD COLUMN a int NOT NULL;"), ID));
        assert!(has(&run(MySql, "ALTER TABLE t ADD COLUMN a INT NOT NULL;"), ID));
    }
}
