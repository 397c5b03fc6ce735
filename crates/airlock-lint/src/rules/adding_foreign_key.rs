//! `adding-foreign-key`: a validating foreign key on an existing table takes
//! SHARE ROW EXCLUSIVE on both tables and scans every row while holding it.

use airlock_sql::parse::{AlterAction, Constraint, Op};
use airlock_sql::Dialect;

use super::{postgres, Rule};
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct AddingForeignKey;

impl Rule for AddingForeignKey {
    fn id(&self) -> &'static str {
        "adding-foreign-key"
    }

    fn default_severity(&self) -> Severity {
        Severity::Error
    }

    fn applies_to(&self, dialect: Dialect) -> bool {
        postgres(dialect)
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        let Op::AlterTable { table, actions } = cx.op else { return };
        if !cx.is_existing(table) {
            return;
        }
        for (action, _) in actions {
            let references = match action {
                AlterAction::AddConstraint(Constraint::ForeignKey { references, not_valid: false, .. }) => references,
                AlterAction::AddColumn(column) => match &column.references {
                    Some(references) => references,
                    None => continue,
                },
                _ => continue,
            };
            let finding = cx.finding(
                self,
                format!(
                    "adding a foreign key to `{table}`{} locks `{table}` and `{references}` in SHARE ROW EXCLUSIVE mode (writes to both wait) while every row is checked",
                    cx.size_note(table)
                ),
                "add it with NOT VALID (instant), then VALIDATE CONSTRAINT in a later migration, which only takes SHARE UPDATE EXCLUSIVE",
            );
            out.push(cx.scaled(finding, table));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "adding-foreign-key";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES u (id) NOT VALID;"), ID));
        assert!(!has(&run(Postgres, "CREATE TABLE o (id int, u int REFERENCES u (id));\nALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES u (id);"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES u (id);"), ID));
        assert!(has(&run(Postgres, "ALTER TABLE o ADD COLUMN u int REFERENCES u (id);"), ID));
    }
}
