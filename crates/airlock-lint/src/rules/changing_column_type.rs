//! `changing-column-type`: `ALTER COLUMN ... TYPE` rewrites the table and its
//! indexes under an ACCESS EXCLUSIVE lock, unless the change is binary
//! coercible (`varchar(n)` → `varchar(m ≥ n)` or `text`, `numeric(p,s)` →
//! `numeric(q ≥ p,s)`): then it is instant, and this rule stays silent. With
//! the live catalog the old type is known; without it the rule can only warn.

use airlock_sql::Dialect;
use airlock_sql::parse::{AlterAction, Op};

use airlock_plan::semantics::binary_coercible;

use super::locks::*;
use super::{Rule, postgres};
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct ChangingColumnType;

impl Rule for ChangingColumnType {
    fn id(&self) -> &'static str {
        "changing-column-type"
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
        for (action, at) in actions {
            let cx = &cx.at(*at);
            let AlterAction::AlterColumnType { column, data_type, using } = action else { continue };
            let old = cx.known(table).and_then(|t| t.column(column)).map(|c| c.data_type.clone());
            // A USING that computes something rewrites whatever the types.
            let computes = using
                .as_ref()
                .is_some_and(|u| !u.functions.is_empty() || !u.text.to_lowercase().starts_with(&column.to_lowercase()));
            match old {
                Some(old) if binary_coercible(&old, data_type) && !computes => {}
                Some(old) => {
                    let finding = cx.finding(
                        self,
                        format!(
                            "changing `{table}.{column}` from {old} to {data_type} rewrites `{table}`{} and rebuilds its indexes under an {ACCESS_EXCLUSIVE} lock",
                            cx.size_note(table)
                        ),
                        "`airlock expand` on this file writes it as expand/contract migrations: a column of the new type kept equal to the old by a trigger, a batched backfill, and a contract that swaps them once no old app runs",
                    );
                    out.push(cx.scaled(finding, table));
                }
                None => {
                    out.push(cx.unsure(
                        self,
                        format!(
                            "changing `{table}.{column}` to {data_type} rewrites `{table}` under an {ACCESS_EXCLUSIVE} lock unless the change is binary coercible (e.g. widening a varchar), which lint cannot tell without the database"
                        ),
                        "run lint with --database-url to check the live type, or run `airlock expand` on this file: a column of the new type, a batched backfill, then a contract that swaps them",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Severity;
    use crate::rules::test::{column, has, live, run, run_live};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "changing-column-type";

    #[test]
    fn ok() {
        let t = || vec![live("t", 1e6, vec![column("name", "character varying(20)")])];
        assert!(!has(&run_live(Postgres, "ALTER TABLE t ALTER COLUMN name TYPE text;", t()), ID));
        assert!(!has(&run_live(Postgres, "ALTER TABLE t ALTER COLUMN name TYPE varchar(50);", t()), ID));
        assert!(has(&run_live(Postgres, "ALTER TABLE t ALTER COLUMN name TYPE text USING upper(name);", t()), ID));
    }

    #[test]
    fn error() {
        let t = vec![live("t", 1e6, vec![column("id", "integer")])];
        assert_eq!(run_live(Postgres, "ALTER TABLE t ALTER COLUMN id TYPE bigint;", t), [(ID, Severity::Error)]);
        assert_eq!(run(Postgres, "ALTER TABLE t ALTER COLUMN id TYPE bigint;"), [(ID, Severity::Warning)]);
    }
}
