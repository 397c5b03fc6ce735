//! `ddl-in-data-migration`: a migration marked `-- airlock:data` that changes
//! the schema: it is reviewed and run as data work (batched, no schema locks
//! expected), so a schema change there surprises everyone.

use super::Rule;
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct DdlInDataMigration;

impl Rule for DdlInDataMigration {
    fn id(&self) -> &'static str {
        "ddl-in-data-migration"
    }

    fn default_severity(&self) -> Severity {
        Severity::Error
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        if cx.is_data_migration() && cx.op.is_ddl() {
            out.push(cx.finding(
                self,
                "a schema change in a migration marked `-- airlock:data`".to_owned(),
                "move the schema change to a schema migration (without `-- airlock:data`)",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "ddl-in-data-migration";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "-- airlock:data\nUPDATE t SET a = 1 WHERE id < 100;"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "-- airlock:data\nALTER TABLE t ADD COLUMN a int;"), ID));
    }
}
