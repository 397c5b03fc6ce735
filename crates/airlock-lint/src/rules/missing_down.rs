//! `missing-down`: a migration without a down script, or with an empty one,
//! cannot be rolled back with `airlock down`.

use airlock_sql::is_blank;

use super::Rule;
use crate::{Finding, MigrationContext, Severity};

/// See the module docs.
pub struct MissingDown;

impl Rule for MissingDown {
    fn id(&self) -> &'static str {
        "missing-down"
    }

    fn default_severity(&self) -> Severity {
        Severity::Info
    }

    fn check_migration(&self, cx: &MigrationContext, out: &mut Vec<Finding>) {
        // `-- airlock:roll-forward`: no down script on purpose.
        if cx.migration.directives.roll_forward.is_some() {
            return;
        }
        let message = match &cx.migration.down {
            None => {
                format!("migration {} has no down script: `airlock down` cannot roll it back", cx.migration.version)
            }
            Some(down) if is_blank(&down.sql, cx.dialect) => {
                format!("the down script of migration {} is empty: rolling back does nothing", cx.migration.version)
            }
            Some(_) => return,
        };
        out.push(cx.finding(self, 1, message, "write a down script that undoes the up, or mark the up file `-- airlock:roll-forward <why>` if a later migration undoes it"));
    }
}

#[cfg(test)]
mod tests {
    use airlock_core::schema::Catalog;

    use crate::rules::test::report;
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "missing-down";

    #[test]
    fn ok() {
        let r = report(
            Postgres,
            &[("1_a.up.sql", "CREATE TABLE t (a int);"), ("1_a.down.sql", "DROP TABLE t;")],
            Catalog::offline(),
        );
        assert!(!r.findings.iter().any(|f| f.rule == ID));
        // Roll-forward on purpose (`airlock new --no-down`).
        let r = report(
            Postgres,
            &[("1_a.up.sql", "-- airlock:roll-forward undone by a later migration\nCREATE TABLE t (a int);")],
            Catalog::offline(),
        );
        assert!(!r.findings.iter().any(|f| f.rule == ID), "{:?}", r.findings);
    }

    #[test]
    fn error() {
        let r = report(Postgres, &[("1_a.up.sql", "CREATE TABLE t (a int);")], Catalog::offline());
        assert!(r.findings.iter().any(|f| f.rule == ID));
        let r = report(
            Postgres,
            &[("1_a.up.sql", "CREATE TABLE t (a int);"), ("1_a.down.sql", "-- nothing\n")],
            Catalog::offline(),
        );
        assert!(r.findings.iter().any(|f| f.rule == ID && f.message.contains("empty")));
    }
}
