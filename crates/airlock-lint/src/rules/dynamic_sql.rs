//! `dynamic-sql`: a PostgreSQL `DO` block whose work airlock cannot see. The
//! statements a PL/pgSQL block runs are read and checked like any other
//! (an `IF NOT EXISTS ... THEN ALTER TABLE ...` guard included); an
//! `EXECUTE` of a string, a body in another language or one that does not
//! parse is not, and this rule says so instead of staying silent.

use airlock_sql::Dialect;
use airlock_sql::parse::{DO_UNSEEN, Op};

use super::Rule;
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct DynamicSql;

impl Rule for DynamicSql {
    fn id(&self) -> &'static str {
        "dynamic-sql"
    }

    fn default_severity(&self) -> Severity {
        Severity::Warning
    }

    fn applies_to(&self, dialect: Dialect) -> bool {
        dialect == Dialect::Postgres
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        if matches!(cx.op, Op::Other { kind } if kind == DO_UNSEEN) {
            out.push(cx.finding(
                self,
                "this DO block runs SQL airlock cannot see (EXECUTE of a string, another language, or a body that does not parse): no rule and no data check covered it".to_owned(),
                "write the statements out in the migration (a DO block's static statements are checked), or review what it runs by hand",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "dynamic-sql";

    #[test]
    fn ok() {
        assert!(!has(
            &run(
                Postgres,
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_class WHERE relname = 't') THEN CREATE TABLE t (id int); END IF; END $$;"
            ),
            ID
        ));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "DO $$ BEGIN EXECUTE 'ALTER TABLE t ADD COLUMN ' || 'x int'; END $$;"), ID));
    }

    #[test]
    fn static_statements_inside_are_checked_like_any_other() {
        let found = run(
            Postgres,
            "DO $$ BEGIN ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES users (id); END $$;",
        );
        assert!(has(&found, "adding-foreign-key"), "{found:?}");
    }
}
