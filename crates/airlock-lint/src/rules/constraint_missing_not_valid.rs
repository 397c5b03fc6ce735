//! `constraint-missing-not-valid`: a CHECK constraint added to an existing
//! table is checked against every row under an ACCESS EXCLUSIVE lock.

use airlock_sql::Dialect;
use airlock_sql::parse::{AlterAction, Constraint};

use super::locks::*;
use super::{Rule, per_action, postgres};
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct ConstraintMissingNotValid;

impl Rule for ConstraintMissingNotValid {
    fn id(&self) -> &'static str {
        "constraint-missing-not-valid"
    }

    fn default_severity(&self) -> Severity {
        Severity::Error
    }

    fn applies_to(&self, dialect: Dialect) -> bool {
        postgres(dialect)
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        let help = &format!(
            "add it with NOT VALID, then VALIDATE CONSTRAINT in a later migration ({SHARE_UPDATE_EXCLUSIVE}: writes go on)"
        );
        per_action(self, cx, out, help, |table, size, action| {
            let expr = match action {
                AlterAction::AddConstraint(Constraint::Check { expr, not_valid: false, .. }) => expr,
                // A CHECK written on a new column is checked against every row too.
                AlterAction::AddColumn(c) => c.check.as_ref()?,
                _ => return None,
            };
            Some(format!(
                "adding CHECK ({}) to `{table}`{size} holds an {ACCESS_EXCLUSIVE} lock (reads and writes wait) while every row is checked",
                expr.text
            ))
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "constraint-missing-not-valid";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;"), ID));
        assert!(!has(&run(Postgres, "ALTER TABLE t VALIDATE CONSTRAINT c;"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);"), ID));
        assert!(has(&run(Postgres, "ALTER TABLE t ADD COLUMN b int DEFAULT 1 CHECK (b > 0);"), ID));
    }
}
