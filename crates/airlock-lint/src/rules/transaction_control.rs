//! `transaction-control`: `BEGIN`/`COMMIT` inside a migration. airlock runs a
//! migration in its own transaction, with its history row; a file that wraps
//! itself in one pair runs as if the pair were not there, but a file with
//! several transactions runs statement by statement, and a failure can leave
//! it half-applied.

use airlock_sql::parse::{Op, TxKind};

use super::Rule;
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct TransactionControl;

impl Rule for TransactionControl {
    fn id(&self) -> &'static str {
        "transaction-control"
    }

    fn default_severity(&self) -> Severity {
        Severity::Warning
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        let Op::Transaction(kind) = cx.op else { return };
        let begins = cx
            .statements
            .iter()
            .filter(|p| p.ops.as_ref().is_ok_and(|ops| ops.contains(&Op::Transaction(TxKind::Begin))))
            .count();
        let message = if begins > 1 {
            format!(
                "{kind:?} here: this file has {begins} transactions of its own, so airlock runs it statement by statement and a failure can leave it half-applied"
            )
        } else {
            format!("{kind:?} here: airlock already runs each migration in a transaction with its history row")
        };
        out.push(cx.finding(
            self,
            message,
            "remove BEGIN/COMMIT; split work that needs several transactions into several migrations",
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::Postgres;

    const ID: &str = "transaction-control";

    #[test]
    fn ok() {
        assert!(!has(&run(Postgres, "CREATE TABLE t (a int);"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(Postgres, "BEGIN;\nCREATE TABLE t (a int);\nCOMMIT;"), ID));
    }
}
