//! `copy-algorithm`: MySQL/MariaDB `ALTER TABLE` changes that only
//! `ALGORITHM=COPY` can do, which rebuilds the table and blocks writes for the
//! whole copy: a column type change, a foreign key added with
//! `foreign_key_checks` on, VARCHAR growth across the 255-byte boundary of
//! the live character set (its length prefix grows from 1 to 2 bytes).

use airlock_sql::Dialect;
use airlock_sql::parse::{AlterAction, Constraint, Op};

use super::{Rule, mysql};
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct CopyAlgorithm;

/// Bytes per character of a character set.
fn bytes_per_char(charset: Option<&str>) -> u32 {
    match charset.unwrap_or("utf8mb4").to_ascii_lowercase().as_str() {
        "latin1" | "ascii" | "binary" => 1,
        "utf8" | "utf8mb3" => 3,
        "ucs2" | "utf16" => 2,
        _ => 4,
    }
}

/// MySQL's own spelling of a type's base name.
fn canonical(base: &str) -> &str {
    match base {
        "integer" => "int",
        "bool" | "boolean" => "tinyint",
        "real" | "double precision" => "double",
        "dec" | "fixed" | "numeric" => "decimal",
        "character varying" => "varchar",
        "character" => "char",
        other => other,
    }
}

/// `int(11) unsigned` → (`int`, None); `varchar(50)` → (`varchar`, Some(50)).
fn shape(data_type: &str) -> (String, Option<u32>) {
    let t = data_type.to_ascii_lowercase().replace(" unsigned", "").replace(" zerofill", "");
    let t = if t == "decimal" || t == "numeric" { "decimal(10,0)".to_owned() } else { t };
    match t.split_once('(') {
        Some((base, rest)) => {
            let n = rest.split([')', ',']).next().and_then(|n| n.trim().parse().ok());
            let base = canonical(base.trim()).to_owned();
            let keeps_length =
                ["varchar", "char", "varbinary", "binary", "decimal", "numeric"].contains(&base.as_str());
            (base, if keeps_length { n } else { None })
        }
        None => (canonical(t.trim()).to_owned(), None),
    }
}

/// Why changing `from` to `to` needs a table copy, if it does.
pub fn needs_copy(from: &str, to: &str, charset: Option<&str>) -> Option<String> {
    let (from_base, from_len) = shape(from);
    let (to_base, to_len) = shape(to);
    if from_base != to_base {
        return Some(format!("the type changes from {from} to {to}"));
    }
    match (from_base.as_str(), from_len, to_len) {
        ("varchar" | "varbinary", Some(a), Some(b)) if b < a => Some(format!("{from_base} shrinks from {a} to {b}")),
        ("varchar" | "varbinary", Some(a), Some(b)) => {
            let bpc = if from_base == "varbinary" { 1 } else { bytes_per_char(charset) };
            (a * bpc <= 255 && b * bpc > 255).then(|| {
                format!(
                    "{from_base}({a}) grows to ({b}): past 255 bytes in {}, so the length prefix grows",
                    charset.unwrap_or("utf8mb4")
                )
            })
        }
        (_, a, b) if a != b => Some(format!("the type changes from {from} to {to}")),
        _ => None,
    }
}

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
                        Some(live) => needs_copy(
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
                let finding = cx.finding(
                    self,
                    format!("ALTER TABLE `{table}`{} needs ALGORITHM=COPY ({why}): the table is rebuilt and writes wait for the whole copy", cx.size_note(table)),
                    "use an online schema change tool (gh-ost, pt-online-schema-change), or an expand/contract sequence of INSTANT/INPLACE changes",
                );
                out.push(cx.scaled(finding, table));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::needs_copy;
    use crate::rules::test::{column, has, live, run_live};
    use airlock_sql::Dialect::MySql;

    const ID: &str = "copy-algorithm";

    #[test]
    fn which_changes_copy() {
        assert!(needs_copy("int(11)", "bigint", None).is_some());
        assert!(needs_copy("varchar(50)", "varchar(60)", Some("utf8mb4")).is_none());
        assert!(needs_copy("varchar(50)", "varchar(100)", Some("utf8mb4")).is_some(), "200 → 400 bytes");
        assert!(needs_copy("varchar(50)", "varchar(100)", Some("latin1")).is_none());
        assert!(needs_copy("int(11) unsigned", "int unsigned", None).is_none());
        assert!(needs_copy("int(11)", "INTEGER", None).is_none());
        assert!(needs_copy("tinyint(1)", "BOOLEAN", None).is_none());
        assert!(needs_copy("decimal(10,0)", "DECIMAL", None).is_none());
    }

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
