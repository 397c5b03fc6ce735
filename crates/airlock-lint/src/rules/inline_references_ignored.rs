//! `inline-references-ignored`: MySQL parses a column-level `REFERENCES t (id)`
//! and ignores it: no foreign key is created.

use airlock_sql::parse::{AlterAction, Op};
use airlock_sql::Dialect;

use super::{mysql, Rule};
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct InlineReferencesIgnored;

impl Rule for InlineReferencesIgnored {
    fn id(&self) -> &'static str {
        "inline-references-ignored"
    }

    fn default_severity(&self) -> Severity {
        Severity::Error
    }

    fn applies_to(&self, dialect: Dialect) -> bool {
        mysql(dialect)
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        let columns: Vec<_> = match cx.op {
            Op::CreateTable { columns, .. } => columns.iter().collect(),
            Op::AlterTable { actions, .. } => actions
                .iter()
                .filter_map(|(a, _)| match a {
                    AlterAction::AddColumn(c) => Some(c),
                    _ => None,
                })
                .collect(),
            _ => return,
        };
        for c in columns {
            if let Some(references) = &c.references {
                out.push(cx.finding(
                    self,
                    format!("`{}` REFERENCES {references} on the column is accepted by MySQL and ignored: no foreign key is created", c.name),
                    "declare it as a table constraint: FOREIGN KEY (column) REFERENCES table (column)",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::MySql;

    const ID: &str = "inline-references-ignored";

    #[test]
    fn ok() {
        assert!(!has(&run(MySql, "CREATE TABLE o (id INT, u INT, FOREIGN KEY (u) REFERENCES u (id));"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(MySql, "CREATE TABLE o (id INT, u INT REFERENCES u (id));"), ID));
    }
}
