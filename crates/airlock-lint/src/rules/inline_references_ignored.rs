//! `inline-references-ignored`: MySQL parses a column-level `REFERENCES t (id)`
//! and ignores it: no foreign key is created.

use airlock_sql::Dialect;
use airlock_sql::parse::{AlterAction, Op};

use super::{Rule, mysql};
use crate::{Context, Finding, Severity};

/// See the module docs.
pub struct InlineReferencesIgnored;

impl Rule for InlineReferencesIgnored {
    fn id(&self) -> &'static str {
        "inline-references-ignored"
    }

    fn default_severity(&self) -> Severity {
        Severity::Error
    }

    fn applies_to(&self, dialect: Dialect) -> bool {
        mysql(dialect)
    }

    fn check(&self, cx: &Context, out: &mut Vec<Finding>) {
        let columns: Vec<_> = match cx.op {
            Op::CreateTable { columns, .. } => columns.iter().collect(),
            Op::AlterTable { actions, .. } => actions
                .iter()
                .filter_map(|(a, _)| match a {
                    AlterAction::AddColumn(c) => Some(c),
                    _ => None,
                })
                .collect(),
            _ => return,
        };
        // MariaDB 10.5 and later create the key; MySQL ignores it.
        let server = cx.catalog.server_version.as_deref();
        if server.is_some_and(mariadb_creates_inline_keys) {
            return;
        }
        for c in columns {
            if let Some(references) = &c.references {
                let mut finding = cx.finding(
                    self,
                    format!("`{}` REFERENCES {references} on the column is accepted by MySQL (and MariaDB before 10.5) and ignored: no foreign key is created", c.name),
                    "declare it as a table constraint: FOREIGN KEY (column) REFERENCES table (column)",
                );
                if server.is_none() {
                    // Without the database the server is unknown: it may be a MariaDB that honours it.
                    finding.severity = Severity::Warning;
                }
                out.push(finding);
            }
        }
    }
}

/// `10.11.6-MariaDB-0+deb12u1` → true; `8.0.36` → false.
fn mariadb_creates_inline_keys(version: &str) -> bool {
    if !version.to_lowercase().contains("mariadb") {
        return false;
    }
    let mut parts = version.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (10, 5)
}

#[cfg(test)]
mod tests {
    use crate::rules::test::{has, run};
    use airlock_sql::Dialect::MySql;

    const ID: &str = "inline-references-ignored";

    #[test]
    fn ok() {
        assert!(!has(&run(MySql, "CREATE TABLE o (id INT, u INT, FOREIGN KEY (u) REFERENCES u (id));"), ID));
    }

    #[test]
    fn error() {
        assert!(has(&run(MySql, "CREATE TABLE o (id INT, u INT REFERENCES u (id));"), ID));
        assert!(super::mariadb_creates_inline_keys("10.11.6-MariaDB-0+deb12u1"));
        assert!(!super::mariadb_creates_inline_keys("10.4.2-MariaDB"));
        assert!(!super::mariadb_creates_inline_keys("8.0.36"));
    }
}
