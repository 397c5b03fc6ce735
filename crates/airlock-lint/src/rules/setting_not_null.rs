//! `setting-not-null`: `SET NOT NULL` on an existing table scans every row
//! under an ACCESS EXCLUSIVE lock.

use airlock_sql::Dialect;
use airlock_sql::parse::AlterAction;

use super::locks::*;
use super::{Rule, per_action, postgres};
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct SettingNotNull;

impl Rule for SettingNotNull {
    fn id(&self) -> &'static str {
        "setting-not-null"
    }

    fn default_severity(&self) -> Severity {
        Severity::Error
    }

    fn applies_to(&self, dialect: Dialect) -> bool {
        postgres(dialect)
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        let help = "add CHECK (column IS NOT NULL) NOT VALID, VALIDATE it in a later migration, then SET NOT NULL (PostgreSQL 12+ uses the check and skips the scan)";
        per_action(self, cx, out, help, |table, size, action| {
            let AlterAction::SetNotNull { column } = action else { return None };
            if cx.known(table).and_then(|t| t.column(column)).is_some_and(|c| !c.nullable) {
                return None;
            }
            // The safe pattern's last step: a validated CHECK (column IS NOT NULL) spares the scan.
            if cx.catalog.constraints(table).iter().any(|c| c.proves_not_null(column)) {
                return None;
            }
            Some(format!(
                "SET NOT NULL on `{table}.{column}`{size} checks every row under an {ACCESS_EXCLUSIVE} lock: reads and writes wait"
            ))
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{column, has, live, run, run_live};
    use airlock_core::schema::{ConstraintInfo, ConstraintKind};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "setting-not-null";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "CREATE TABLE t (a int);\nALTER TABLE t ALTER COLUMN a SET NOT NULL;"), ID));
        // The pattern the help recommends, against the live catalog.
        let mut t = live("t", 1e6, vec![column("a", "integer")]);
        t.constraints.push(ConstraintInfo {
            name: Some("a_nn".into()),
            kind: ConstraintKind::Check,
            validated: true,
            definition: Some("CHECK ((a IS NOT NULL))".into()),
        });
        assert!(!has(&run_live(Postgres, "ALTER TABLE t ALTER COLUMN a SET NOT NULL;", vec![t]), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "ALTER TABLE t ALTER COLUMN a SET NOT NULL;"), ID));
    }
}
