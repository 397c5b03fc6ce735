//! `truncate-cascade`: `TRUNCATE ... CASCADE` also empties every table with a
//! foreign key to this one, however far the chain goes.

use airlock_sql::parse::Op;

use super::Rule;
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct TruncateCascade;

impl Rule for TruncateCascade {
    fn id(&self) -> &'static str {
        "truncate-cascade"
    }

    fn default_severity(&self) -> Severity {
        Severity::Error
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        if let Op::Truncate { tables, cascade: true } = cx.op {
            let names: Vec<String> = tables.iter().map(ToString::to_string).collect();
            out.push(cx.finding(
                self,
                format!(
                    "TRUNCATE {} CASCADE also empties every table that references it, recursively",
                    names.join(", ")
                ),
                "truncate the tables you mean by name, without CASCADE",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "truncate-cascade";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "-- airlock:data\nTRUNCATE t;"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "-- airlock:data\nTRUNCATE t CASCADE;"), ID));
    }
}
