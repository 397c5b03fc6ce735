//! `copy-algorithm`: MySQL/MariaDB `ALTER TABLE` changes that only
//! `ALGORITHM=COPY` can do, which rebuilds the table and blocks writes for the
//! whole copy: a column type change, a foreign key added with
//! `foreign_key_checks` on, VARCHAR growth across the 255-byte boundary of
//! the live character set (its length prefix grows from 1 to 2 bytes).

use airlock_sql::Dialect;
use airlock_sql::parse::{AlterAction, Constraint, Op};

use airlock_plan::semantics::mysql_needs_copy;

use super::{Rule, mysql};
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct CopyAlgorithm;

impl Rule for CopyAlgorithm {
    fn id(&self) -> &'static str {
        "copy-algorithm"
    }

    fn default_severity(&self) -> Severity {
        Severity::Error
    }

    fn applies_to(&self, dialect: Dialect) -> bool {
        mysql(dialect)
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        let Op::AlterTable { table, actions } = cx.op else { return };
        if !cx.is_existing(table) {
            return;
        }
        for (action, at) in actions {
            let cx = &cx.at(*at);
            let why = match action {
                AlterAction::AddConstraint(Constraint::ForeignKey { .. }) => {
                    Some("adding a foreign key with foreign_key_checks on".to_owned())
                }
                AlterAction::RedefineColumn { old_name, column } => {
                    let target = old_name.as_deref().unwrap_or(&column.name);
                    let Some(known) = cx.known(table) else { continue };
                    match known.column(target) {
                        // A column without its own charset has the table's.
                        Some(live) => mysql_needs_copy(
                            &live.data_type,
                            &column.data_type,
                            live.charset.as_deref().or(known.charset.as_deref()),
                        ),
                        None => continue,
                    }
                }
                _ => None,
            };
            if let Some(why) = why {
                let fix = if matches!(action, AlterAction::RedefineColumn { .. }) {
                    "`airlock expand` on this file writes the column's change as expand/contract migrations of INSTANT/INPLACE steps (a new column kept equal by triggers, a batched backfill, a contract); or use an online schema change tool (gh-ost, pt-online-schema-change)"
                } else {
                    "use an online schema change tool (gh-ost, pt-online-schema-change), or an expand/contract sequence of INSTANT/INPLACE changes"
                };
                let finding = cx.finding(
                    self,
                    format!("ALTER TABLE `{table}`{} needs ALGORITHM=COPY ({why}): the table is rebuilt and writes wait for the whole copy", cx.size_note(table)),
                    fix,
                );
                out.push(cx.scaled(finding, table));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{column, has, live, run_live};
    use airlock_sql::Dialect::MySql;

    const ID: &str = "copy-algorithm";

    #[test]
    fn ok() {
        let t = vec![live("orders", 1e6, vec![column("note", "varchar(20)")])];
        assert!(!has(&run_live(MySql, "ALTER TABLE orders MODIFY note VARCHAR(40);", t), ID));
        // 100 → 200 characters stays under 255 bytes in a latin1 table.
        let mut latin1 = live("orders", 1e6, vec![column("note", "varchar(100)")]);
        latin1.charset = Some("latin1".into());
        assert!(!has(&run_live(MySql, "ALTER TABLE orders MODIFY note VARCHAR(200);", vec![latin1]), ID));
    }

    #[test]
    fn error() {
        let t = || vec![live("orders", 1e6, vec![column("id", "int(11)"), column("user_id", "int(11)")])];
        assert!(has(&run_live(MySql, "ALTER TABLE orders MODIFY id BIGINT;", t()), ID));
        assert!(has(
            &run_live(MySql, "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id);", t()),
            ID
        ));
    }
}
