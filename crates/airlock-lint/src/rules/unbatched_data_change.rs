//! `unbatched-data-change`: one `UPDATE`/`DELETE` over a large table locks
//! every row it touches until it commits, bloats, and floods replication.

use airlock_sql::parse::Op;

use super::Rule;
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct UnbatchedDataChange;

/// Rows above which one statement is too much.
const LARGE: f64 = 100_000.0;

impl Rule for UnbatchedDataChange {
    fn id(&self) -> &'static str {
        "unbatched-data-change"
    }

    fn default_severity(&self) -> Severity {
        Severity::Warning
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        // A backfill runs in batches.
        if cx.migration.directives.backfill {
            return;
        }
        // With a WHERE the statement may touch a handful of rows: only the unfiltered form is sure.
        let (verb, table) = match cx.op {
            Op::Update { table, has_where: false } => ("UPDATE", table),
            Op::Delete { table, has_where: false } => ("DELETE", table),
            _ => return,
        };
        if cx.is_new(table) {
            return;
        }
        let Some(rows) = cx.known(table).and_then(|t| t.rows) else { return };
        if rows < LARGE {
            return;
        }
        out.push(cx.finding(
            self,
            format!(
                "{verb} on `{table}`{} in one statement locks every row it touches until commit and floods replication",
                cx.size_note(table)
            ),
            "mark the migration `-- airlock:backfill`: airlock then runs it in key-range batches, each its own short transaction, resumable where it stops",
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{column, has, live, run_live};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "unbatched-data-change";

    #[test]
    fn ok() {
        let t = vec![live("t", 500.0, vec![column("a", "integer")])];
        assert!(!has(&run_live(Postgres, "-- airlock:data\nUPDATE t SET a = 1;", t), ID));
    }

    #[test]
    fn a_backfill_is_batched() {
        let t = vec![live("t", 5e6, vec![column("a", "integer")])];
        assert!(!has(&run_live(Postgres, "-- airlock:backfill\nUPDATE t SET a = 1;", t), ID));
    }

    #[test]
    fn error() {
        let t = vec![live("t", 5e6, vec![column("a", "integer")])];
        assert!(has(&run_live(Postgres, "-- airlock:data\nUPDATE t SET a = 1;", t), ID));
    }
}
