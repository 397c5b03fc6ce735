//! `table-has-triggers` (live schema): altering or bulk-changing a table that
//! has triggers: the triggers fire for every changed row (or break on the new
//! shape), which staging without the triggers never shows.

use airlock_sql::parse::Op;

use super::Rule;
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct TableHasTriggers;

impl Rule for TableHasTriggers {
    fn id(&self) -> &'static str {
        "table-has-triggers"
    }

    fn default_severity(&self) -> Severity {
        Severity::Warning
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        let (table, what) = match cx.op {
            Op::AlterTable { table, .. } => (table, "altering"),
            Op::Update { table, .. } => (table, "updating rows of"),
            Op::Delete { table, .. } => (table, "deleting rows of"),
            Op::Insert { table } => (table, "inserting into"),
            _ => return,
        };
        let Some(known) = cx.known(table) else { return };
        // The triggers of an expand/contract keep two columns in step through
        // exactly these changes, and its contract drops them.
        let triggers: Vec<&str> = known
            .triggers
            .iter()
            .map(String::as_str)
            .filter(|t| !t.starts_with(airlock_plan::expand::SYNC_TRIGGER_PREFIX))
            .collect();
        if triggers.is_empty() || cx.is_new(table) {
            return;
        }
        out.push(cx.finding(
            self,
            format!("{what} `{table}`, which has triggers: {}; they fire for every row changed, or may break on the new shape", triggers.join(", ")),
            "check what the triggers do with this change; batch bulk changes, or disable a trigger deliberately and say so",
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{column, has, live, run_live};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "table-has-triggers";

    #[test]
    fn ok() {
        let t = vec![live("t", 10.0, vec![column("a", "integer")])];
        assert!(!has(&run_live(Postgres, "ALTER TABLE t ADD COLUMN b int;", t), ID));
    }

    #[test]
    fn error() {
        let mut t = live("t", 10.0, vec![column("a", "integer")]);
        t.triggers.push("audit_t".into());
        assert!(has(&run_live(Postgres, "ALTER TABLE t ADD COLUMN b int;", vec![t]), ID));
    }
}
