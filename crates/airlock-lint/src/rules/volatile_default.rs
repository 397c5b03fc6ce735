//! `volatile-default`: `ADD COLUMN ... DEFAULT f()` with a volatile function
//! rewrites the whole table under an ACCESS EXCLUSIVE lock (a constant or
//! stable default is stored once and costs nothing since PostgreSQL 11).

use airlock_core::schema::Volatility;
use airlock_sql::Dialect;
use airlock_sql::parse::{AlterAction, Op};

use airlock_plan::semantics::{NOT_VOLATILE_FUNCTIONS, VOLATILE_FUNCTIONS};

use super::locks::*;
use super::{Rule, postgres};
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct VolatileDefault;

impl Rule for VolatileDefault {
    fn id(&self) -> &'static str {
        "volatile-default"
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
            let AlterAction::AddColumn(c) = action else { continue };
            if c.identity || c.generated_stored {
                let what =
                    if c.generated_stored { "a stored generated column" } else { "an identity (or serial) column" };
                let finding = cx.finding(
                    self,
                    format!("adding `{}` as {what} computes a value for every row of `{table}`{}: a rewrite under an {ACCESS_EXCLUSIVE} lock", c.name, cx.size_note(table)),
                    "add a plain nullable column, fill it in batches in a data migration, then attach the sequence or expression",
                );
                out.push(cx.scaled(finding, table));
                continue;
            }
            let Some(default) = &c.default else { continue };
            // The live catalog knows user functions; built-ins are listed here.
            let live = |f: &str| cx.catalog.functions.get(f).copied();
            let volatile: Vec<&String> = default
                .functions
                .iter()
                .filter(|f| {
                    live(f) == Some(Volatility::Volatile)
                        || (live(f).is_none() && VOLATILE_FUNCTIONS.contains(&f.as_str()))
                })
                .collect();
            let unknown: Vec<&String> = default
                .functions
                .iter()
                .filter(|f| {
                    live(f).is_none()
                        && !VOLATILE_FUNCTIONS.contains(&f.as_str())
                        && !NOT_VOLATILE_FUNCTIONS.contains(&f.as_str())
                })
                .collect();
            if let Some(f) = volatile.first() {
                let finding = cx.finding(
                    self,
                    format!(
                        "adding `{}` with DEFAULT {} (volatile: {f}()) rewrites every row of `{table}`{} under an {ACCESS_EXCLUSIVE} lock",
                        c.name,
                        default.text,
                        cx.size_note(table)
                    ),
                    "add the column without a default (or with a constant), set the default after, and backfill in batches in a data migration",
                );
                out.push(cx.scaled(finding, table));
            } else if let Some(f) = unknown.first() {
                out.push(cx.unsure(
                    self,
                    format!(
                        "adding `{}` with DEFAULT {} rewrites `{table}` if {f}() is volatile, which lint cannot tell without the database",
                        c.name, default.text
                    ),
                    "run lint with --database-url to read the function's volatility, or add the column without a default and backfill",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Severity;
    use crate::rules::test::{column, has, live, report, run};
    use airlock_core::schema::{Catalog, Volatility};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "volatile-default";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "ALTER TABLE t ADD COLUMN at timestamptz DEFAULT now();"), ID));
        assert!(!has(&run(Postgres, "ALTER TABLE t ADD COLUMN n int DEFAULT 0;"), ID));
        assert!(!has(
            &run(Postgres, "CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid();"),
            ID
        ));
    }

    #[test]
    fn error() {
        assert_eq!(
            run(Postgres, "ALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid();"),
            [(ID, Severity::Error)]
        );
        assert_eq!(run(Postgres, "ALTER TABLE t ADD COLUMN u int DEFAULT my_func();"), [(ID, Severity::Warning)]);
        assert!(has(&run(Postgres, "ALTER TABLE t ADD COLUMN id2 bigserial;"), ID));
        assert!(has(&run(Postgres, "ALTER TABLE t ADD COLUMN total int GENERATED ALWAYS AS (a * 2) STORED;"), ID));
        // The live catalog says what a user function is.
        let sql = "ALTER TABLE t ADD COLUMN u int DEFAULT my_func();";
        for (volatility, expected) in
            [(Volatility::Volatile, vec![(ID, Severity::Error)]), (Volatility::Stable, vec![])]
        {
            let mut catalog = Catalog::live(vec![live("t", 1e6, vec![column("a", "integer")])]);
            catalog.functions.insert("my_func".into(), volatility);
            let found: Vec<_> = report(Postgres, &[("1_m.up.sql", sql), ("1_m.down.sql", "SELECT 1;")], catalog)
                .findings
                .iter()
                .map(|f| (f.rule, f.severity))
                .collect();
            assert_eq!(found, expected);
        }
    }
}
