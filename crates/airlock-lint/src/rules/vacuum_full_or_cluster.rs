//! `vacuum-full-or-cluster`: `VACUUM FULL` and `CLUSTER` rewrite the table
//! under an ACCESS EXCLUSIVE lock: nothing reads or writes it until done.

use airlock_sql::Dialect;
use airlock_sql::parse::Op;

use super::locks::*;
use super::{Rule, postgres};
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct VacuumFullOrCluster;

impl Rule for VacuumFullOrCluster {
    fn id(&self) -> &'static str {
        "vacuum-full-or-cluster"
    }

    fn default_severity(&self) -> Severity {
        Severity::Error
    }

    fn applies_to(&self, dialect: Dialect) -> bool {
        postgres(dialect)
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        let what = match cx.op {
            Op::Vacuum { full: true, .. } => "VACUUM FULL",
            Op::Cluster { .. } => "CLUSTER",
            _ => return,
        };
        out.push(cx.finding(
            self,
            format!(
                "{what} rewrites the table under an {ACCESS_EXCLUSIVE} lock: every read and write waits until it is done"
            ),
            "use pg_repack (online), or plain VACUUM; schedule a rewrite as maintenance, not a migration",
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "vacuum-full-or-cluster";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "VACUUM t;"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "VACUUM FULL t;"), ID));
        assert!(has(&run(Postgres, "CLUSTER t USING t_pkey;"), ID));
    }
}
