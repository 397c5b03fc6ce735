//! `unbatchable-backfill`: a statement of a migration marked
//! `-- airlock:backfill` that cannot run in keyset batches: a join that can
//! match a row several times, a LIMIT, grouping, RETURNING, a table without
//! a primary key, or an UPDATE of the key itself. airlock would refuse to
//! run it, so lint says so first, with what to write instead.

use airlock_core::schema::{ConstraintKind, Lookup};
use airlock_sql::backfill::{KeyColumn, KeyKind, analyze};

use super::Rule;
use crate::{Finding, MigrationContext, Severity};

/// See the module docs.
pub struct UnbatchableBackfill;

impl Rule for UnbatchableBackfill {
    fn id(&self) -> &'static str {
        "unbatchable-backfill"
    }

    fn default_severity(&self) -> Severity {
        Severity::Error
    }

    fn check_migration(&self, cx: &MigrationContext, out: &mut Vec<Finding>) {
        if !cx.migration.directives.backfill {
            return;
        }
        for statement in cx.statements {
            // A schema change is `ddl-in-data-migration`'s.
            if statement.ops.as_ref().is_ok_and(|ops| ops.iter().any(|op| op.is_ddl())) {
                continue;
            }
            let batchable = match analyze(&statement.sql, cx.dialect) {
                Ok(batchable) => batchable,
                Err(why) => {
                    out.push(cx.finding(
                        self,
                        statement.line,
                        format!("cannot run in batches: {}", why.reason),
                        &why.instead,
                    ));
                    continue;
                }
            };
            let Lookup::Known(table) = cx.catalog.table(&batchable.table) else { continue };
            let primary = table.constraints.iter().find(|c| c.kind == ConstraintKind::PrimaryKey);
            let Some(primary) = primary else {
                out.push(cx.finding(
                    self,
                    statement.line,
                    format!("cannot run in batches: table `{}` has no primary key to cut them on", batchable.table),
                    "add a primary key in a schema migration before the backfill",
                ));
                continue;
            };
            // The key's columns, when the catalog names its index.
            let index = table.indexes.iter().find(|i| primary.name.as_deref().is_some_and(|n| n == i.name));
            let key: Vec<KeyColumn> = index
                .map(|i| i.columns.iter().map(|c| KeyColumn { name: c.clone(), kind: KeyKind::Text }).collect())
                .unwrap_or_default();
            if let Err(why) = batchable.check_key(&key) {
                out.push(cx.finding(
                    self,
                    statement.line,
                    format!("cannot run in batches: {}", why.reason),
                    &why.instead,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{column, has, live, run, run_live};
    use airlock_core::schema::{ConstraintInfo, ConstraintKind, Index};
    use airlock_sql::Dialect::{MySql, Postgres};

    const ID: &str = "unbatchable-backfill";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "-- airlock:backfill\nUPDATE t SET a = lower(a) WHERE a <> lower(a);"), ID));
        assert!(!has(&run(MySql, "-- airlock:backfill\nDELETE FROM t WHERE created < '2020-01-01';"), ID));
        assert!(!has(&run(Postgres, "-- airlock:backfill\nINSERT INTO b (id) SELECT id FROM t;"), ID));
        // Without the directive, a LIMIT is someone else's business.
        assert!(!has(&run(MySql, "-- airlock:data\nUPDATE t SET a = 1 LIMIT 5;"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(MySql, "-- airlock:backfill\nUPDATE t SET a = 1 LIMIT 5;"), ID));
        assert!(has(&run(Postgres, "-- airlock:backfill\nUPDATE t SET a = u.a FROM u WHERE u.id = t.id;"), ID));
        assert!(has(&run(Postgres, "-- airlock:backfill\nINSERT INTO s SELECT a, count(*) FROM t GROUP BY a;"), ID));
        let keyless = vec![live("t", 5e6, vec![column("a", "integer")])];
        assert!(has(&run_live(Postgres, "-- airlock:backfill\nUPDATE t SET a = 1;", keyless), ID));
    }

    #[test]
    fn setting_the_key_is_an_error_when_the_catalog_names_it() {
        let mut keyed = live("t", 5e6, vec![column("id", "bigint"), column("a", "integer")]);
        keyed.constraints.push(ConstraintInfo {
            name: Some("t_pkey".into()),
            kind: ConstraintKind::PrimaryKey,
            validated: true,
            definition: None,
        });
        keyed.indexes.push(Index { name: "t_pkey".into(), columns: vec!["id".into()], unique: true });
        let sql = "-- airlock:backfill\nUPDATE t SET id = id + 1;";
        assert!(has(&run_live(Postgres, sql, vec![keyed.clone()]), ID));
        assert!(!has(&run_live(Postgres, "-- airlock:backfill\nUPDATE t SET a = 1;", vec![keyed]), ID));
    }
}
