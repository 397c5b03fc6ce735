//! `changing-column-type`: `ALTER COLUMN ... TYPE` rewrites the table and its
//! indexes under an ACCESS EXCLUSIVE lock, unless the change is binary
//! coercible (`varchar(n)` → `varchar(m ≥ n)` or `text`, `numeric(p,s)` →
//! `numeric(q ≥ p,s)`): then it is instant, and this rule stays silent. With
//! the live catalog the old type is known; without it the rule can only warn.

use airlock_sql::Dialect;
use airlock_sql::parse::{AlterAction, Op};

use super::{Rule, postgres};
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct ChangingColumnType;

/// `character varying(20)` → (`character varying`, [20]).
fn split_type(t: &str) -> (&str, Vec<u32>) {
    match t.split_once('(') {
        Some((base, rest)) => {
            let mods = rest.trim_end_matches(')').split(',').filter_map(|m| m.trim().parse().ok()).collect();
            (base.trim(), mods)
        }
        None => (t.trim(), Vec::new()),
    }
}

/// Whether PostgreSQL changes `from` to `to` without rewriting or scanning.
pub fn binary_coercible(from: &str, to: &str) -> bool {
    let (from_base, from_mods) = split_type(from);
    let (to_base, to_mods) = split_type(to);
    let varchar = |b: &str| b == "character varying" || b == "varchar";
    match (from_base, to_base) {
        _ if from == to => true,
        (f, "text") if varchar(f) => true,
        ("text", t) if varchar(t) => to_mods.is_empty(),
        (f, t) if varchar(f) && varchar(t) => {
            to_mods.is_empty() || (from_mods.len() == 1 && to_mods[0] >= from_mods[0])
        }
        ("numeric", "numeric") => match (from_mods.as_slice(), to_mods.as_slice()) {
            (_, []) => true,
            ([p, s], [q, t]) => q >= p && s == t,
            ([p], [q]) => q >= p,
            _ => false,
        },
        ("bit varying", "bit varying") => to_mods.is_empty() || (from_mods.len() == 1 && to_mods[0] >= from_mods[0]),
        _ => false,
    }
}

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
                            "changing `{table}.{column}` from {old} to {data_type} rewrites `{table}`{} and rebuilds its indexes under an ACCESS EXCLUSIVE lock",
                            cx.size_note(table)
                        ),
                        "add a new column, backfill it in batches, switch the app over, then drop the old one (expand/contract)",
                    );
                    out.push(cx.scaled(finding, table));
                }
                None => {
                    out.push(cx.unsure(
                        self,
                        format!(
                            "changing `{table}.{column}` to {data_type} rewrites `{table}` under an ACCESS EXCLUSIVE lock unless the change is binary coercible (e.g. widening a varchar), which lint cannot tell without the database"
                        ),
                        "run lint with --database-url to check the live type, or use expand/contract: a new column, a backfill, then a switch",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::binary_coercible;
    use crate::Severity;
    use crate::rules::test::{column, has, live, run, run_live};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "changing-column-type";

    #[test]
    fn coercible_pairs() {
        assert!(binary_coercible("character varying(20)", "character varying(40)"));
        assert!(binary_coercible("character varying(20)", "text"));
        assert!(binary_coercible("numeric(10,2)", "numeric(12,2)"));
        assert!(!binary_coercible("character varying(40)", "character varying(20)"));
        assert!(!binary_coercible("integer", "bigint"));
        assert!(!binary_coercible("text", "integer"));
    }

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
