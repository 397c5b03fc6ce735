//! `adding-foreign-key`: a validating foreign key on an existing table takes
//! SHARE ROW EXCLUSIVE on both tables and scans every row while holding it.

use airlock_sql::Dialect;
use airlock_sql::parse::{AlterAction, Constraint};

use super::locks::*;
use super::{Rule, per_action, postgres};
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
        let help = &format!(
            "add it with NOT VALID (instant), then VALIDATE CONSTRAINT in a later migration, which only takes {SHARE_UPDATE_EXCLUSIVE}"
        );
        per_action(self, cx, out, help, |table, size, action| {
            let references = match action {
                AlterAction::AddConstraint(Constraint::ForeignKey { references, not_valid: false, .. }) => references,
                AlterAction::AddColumn(column) => column.references.as_ref()?,
                _ => return None,
            };
            Some(format!(
                "adding a foreign key to `{table}`{size} locks `{table}` and `{references}` in {SHARE_ROW_EXCLUSIVE} mode (writes to both wait) while every row is checked"
            ))
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "adding-foreign-key";

    #[test]
    fn ok() {
        assert!(!has(
            &run(Postgres, "ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES u (id) NOT VALID;"),
            ID
        ));
        assert!(!has(
            &run(
                Postgres,
                "CREATE TABLE o (id int, u int REFERENCES u (id));\nALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES u (id);"
            ),
            ID
        ));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "ALTER TABLE o ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES u (id);"), ID));
        assert!(has(&run(Postgres, "ALTER TABLE o ADD COLUMN u int REFERENCES u (id);"), ID));
    }

    #[test]
    fn the_finding_points_at_the_line_of_the_action() {
        let sql =
            "ALTER TABLE orders\n  ADD COLUMN note text,\n  ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES users (id);";
        let report =
            crate::rules::test::report(Postgres, &[("1_fk.up.sql", sql)], airlock_core::schema::Catalog::offline());
        let finding = report.findings.iter().find(|f| f.rule == ID).unwrap();
        assert_eq!(finding.line, 3);
        assert!(sql[finding.span.clone().unwrap()].starts_with("CONSTRAINT fk"), "{:?}", finding.span);
    }
}
