//! `adding-primary-key`: `ADD PRIMARY KEY` on an existing table builds its
//! index (and may set NOT NULL, scanning) under an ACCESS EXCLUSIVE lock.

use airlock_sql::Dialect;
use airlock_sql::parse::{AlterAction, Constraint};

use super::locks::*;
use super::{Rule, per_action, postgres};
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct AddingPrimaryKey;

impl Rule for AddingPrimaryKey {
    fn id(&self) -> &'static str {
        "adding-primary-key"
    }

    fn default_severity(&self) -> Severity {
        Severity::Error
    }

    fn applies_to(&self, dialect: Dialect) -> bool {
        postgres(dialect)
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        let help = "CREATE UNIQUE INDEX CONCURRENTLY first (its own migration), then ADD CONSTRAINT ... PRIMARY KEY USING INDEX";
        per_action(self, cx, out, help, |table, size, action| {
            let columns = match action {
                AlterAction::AddConstraint(Constraint::PrimaryKey { columns, using_index: None, .. }) => {
                    columns.clone()
                }
                // The same constraint written on a new column.
                AlterAction::AddColumn(c) if c.primary_key => vec![c.name.clone()],
                _ => return None,
            };
            Some(format!(
                "adding PRIMARY KEY ({}) to `{table}`{size} builds its index under an {ACCESS_EXCLUSIVE} lock: reads and writes wait for the whole build",
                columns.join(", ")
            ))
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "adding-primary-key";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "ALTER TABLE t ADD CONSTRAINT pk PRIMARY KEY USING INDEX t_id;"), ID));
        assert!(!has(&run(Postgres, "CREATE TABLE t (id int);\nALTER TABLE t ADD PRIMARY KEY (id);"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "ALTER TABLE t ADD PRIMARY KEY (id);"), ID));
    }
}
