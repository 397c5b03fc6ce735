//! `modify-drops-attributes`: MySQL's `MODIFY`/`CHANGE` replaces a column's
//! whole definition, so every attribute the statement leaves out is dropped:
//! a `MODIFY cart_id BIGINT NOT NULL` that silently removed AUTO_INCREMENT (two hours of failed purchases).
//! With the live column, each lost attribute is named and the full corrected
//! statement is the fix; without it, the rule warns that it cannot see.

use airlock_sql::Dialect;
use airlock_sql::parse::{AlterAction, Op};

use airlock_plan::semantics::{mysql_corrected_column, mysql_lost_attributes};

use super::{Rule, mysql};
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct ModifyDropsAttributes;

impl Rule for ModifyDropsAttributes {
    fn id(&self) -> &'static str {
        "modify-drops-attributes"
    }

    fn default_severity(&self) -> Severity {
        Severity::Error
    }

    fn applies_to(&self, dialect: Dialect) -> bool {
        mysql(dialect)
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        let Op::AlterTable { table, actions } = cx.op else { return };
        for (action, at) in actions {
            let cx = &cx.at(*at);
            let AlterAction::RedefineColumn { old_name, column } = action else { continue };
            let target = old_name.as_deref().unwrap_or(&column.name);
            let verb = if old_name.is_some() { "CHANGE" } else { "MODIFY" };
            match cx.known(table).and_then(|t| t.column(target)) {
                Some(live) => {
                    let lost = mysql_lost_attributes(live, column);
                    if lost.is_empty() {
                        continue;
                    }
                    let mut finding = cx.finding(
                        self,
                        format!(
                            "{verb} `{table}.{target}` drops what the live column has and the statement leaves out: {}",
                            lost.join(", ")
                        ),
                        "MODIFY/CHANGE replace the whole column definition: repeat every attribute to keep, as in the fix",
                    );
                    finding.fix = Some(mysql_corrected_column(&table.to_string(), old_name.as_deref(), live, column));
                    out.push(finding);
                }
                None if cx.is_existing(table) => {
                    out.push(cx.unsure(
                        self,
                        format!(
                            "{verb} `{table}.{target}` replaces the whole column definition: any AUTO_INCREMENT, DEFAULT, NOT NULL, UNSIGNED, COMMENT, character set or ON UPDATE it leaves out is dropped, and lint cannot see the live column"
                        ),
                        "run lint with --database-url to compare with the live column, or repeat every attribute the column has",
                    ));
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use airlock_core::schema::Column;

    use crate::Severity;
    use crate::rules::test::{has, live, report, run, run_live};
    use airlock_core::schema::Catalog;
    use airlock_sql::Dialect::MySql;

    const ID: &str = "modify-drops-attributes";

    fn carts() -> Vec<airlock_core::schema::Table> {
        vec![live(
            "carts",
            2e6,
            vec![Column {
                name: "cart_id".into(),
                data_type: "int".into(),
                nullable: false,
                auto_increment: true,
                unsigned: true,
                comment: Some("cart key".into()),
                ..Column::default()
            }],
        )]
    }

    #[test]
    fn ok() {
        let kept = "ALTER TABLE carts MODIFY cart_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT COMMENT 'cart key';";
        assert!(!has(&run_live(MySql, kept, carts()), ID));
        assert!(!has(&run(MySql, "CREATE TABLE c (id INT);\nALTER TABLE c MODIFY id BIGINT;"), ID));
    }

    #[test]
    fn error() {
        // The MODIFY that dropped AUTO_INCREMENT from carts.
        let sql = "ALTER TABLE carts MODIFY cart_id BIGINT NOT NULL;";
        let report = report(MySql, &[("1_m.up.sql", sql), ("1_m.down.sql", "SELECT 1;")], Catalog::live(carts()));
        let finding = report.findings.iter().find(|f| f.rule == ID).unwrap();
        assert_eq!((finding.rule, finding.severity), (ID, Severity::Error));
        assert!(finding.message.ends_with("AUTO_INCREMENT, UNSIGNED, COMMENT"), "{}", finding.message);
        assert_eq!(
            finding.fix.as_deref(),
            Some("ALTER TABLE carts MODIFY cart_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT COMMENT 'cart key'")
        );
        // A column named after a reserved word is quoted in the fix.
        let mut keyed = carts();
        keyed[0].columns[0].name = "key".into();
        let quoted = super::super::test::report(
            MySql,
            &[("1_m.up.sql", "ALTER TABLE carts MODIFY `key` BIGINT NOT NULL;"), ("1_m.down.sql", "SELECT 1;")],
            Catalog::live(keyed),
        );
        let fix = quoted.findings.iter().find(|f| f.rule == ID).and_then(|f| f.fix.clone()).unwrap();
        assert!(fix.starts_with("ALTER TABLE carts MODIFY `key` BIGINT"), "{fix}");
        // int → bigint is also a table copy.
        assert!(report.findings.iter().any(|f| f.rule == "copy-algorithm"));
        assert_eq!(run(MySql, sql), [(ID, Severity::Warning)]);
    }
}
