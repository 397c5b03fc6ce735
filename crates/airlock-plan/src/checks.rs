//! The data checks as read-only SQL, per dialect, and reading their answers.
//! Every data query returns `(violations, example key)` rows, at most five,
//! with the total counted by a window over the whole result; identifiers are
//! quoted, literals escaped. A check this module cannot write is `None`: the
//! caller reports it as not checked.

use airlock_core::schema::{Catalog, TableName};
use airlock_sql::Dialect;
use serde::Serialize;

use crate::effects::CheckSpec;
use crate::verdict::RiskCode;

/// One check's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// Which check: `foreign-key-orphans`, `unique-duplicates`...
    pub check: RiskCode,
    /// True: no violation. False: the statement will fail or lose data. None: unknown (timed out or not checkable).
    pub ok: Option<bool>,
    /// How many rows (or sessions) violate it, when known.
    pub violations: Option<u64>,
    /// Up to five example keys (or sessions).
    pub examples: Vec<String>,
    /// One sentence: what was checked and what was found.
    pub message: String,
    /// How long the check took, when it ran.
    pub duration_ms: Option<u64>,
    /// A failed check that makes the statement risky, not blocked: the
    /// statement would still succeed (sessions it will wait behind, a key
    /// near its type's maximum but still within it).
    #[serde(skip)]
    pub warns_only: bool,
}

impl CheckResult {
    /// What its examples are, for the words before them: the keys of the
    /// rows that fail, the values that repeat, or sessions and figures.
    pub fn examples_label(&self) -> &'static str {
        match self.check {
            RiskCode::LockBlockers | RiskCode::IdExhaustion | RiskCode::AttributeLoss => "e.g.",
            RiskCode::UniqueDuplicates => "duplicated values, e.g.",
            _ => "keys, e.g.",
        }
    }
}

/// The risk a failed check is: its name in the JSON contract and in an allow.
pub fn name(spec: &CheckSpec) -> RiskCode {
    match spec {
        CheckSpec::ForeignKeyOrphans { .. } => RiskCode::ForeignKeyOrphans,
        CheckSpec::UniqueDuplicates { .. } => RiskCode::UniqueDuplicates,
        CheckSpec::NotNullViolations { .. } => RiskCode::NotNullViolations,
        CheckSpec::NewColumnNulls { .. } => RiskCode::NewColumnNulls,
        CheckSpec::CheckViolations { .. } => RiskCode::CheckViolations,
        CheckSpec::CastFailures { .. } => RiskCode::CastFailures,
        CheckSpec::LockBlockers { .. } => RiskCode::LockBlockers,
        CheckSpec::AttributeLoss { .. } => RiskCode::AttributeLoss,
        CheckSpec::IdExhaustion { .. } => RiskCode::IdExhaustion,
    }
}

/// `new-column-nulls` counts rows up to this many ("at least" beyond).
pub const NEW_COLUMN_COUNT_CAP: u64 = 1_000_000;

/// A key this close to its type's maximum is reported.
pub const ID_EXHAUSTION_SHARE: f64 = 0.75;

/// The range of an integer type as the engines print it (`integer`, `int(11)
/// unsigned`, `bigint`, `smallint unsigned`...), or None for other types.
pub fn integer_range(data_type: &str) -> Option<(i128, i128)> {
    let t = data_type.to_ascii_lowercase();
    let unsigned = t.contains("unsigned");
    let base = t.split(|c: char| c == '(' || c.is_whitespace()).next().unwrap_or("");
    let bits = match base {
        "tinyint" => 8,
        "smallint" | "int2" | "smallserial" | "serial2" => 16,
        "mediumint" => 24,
        "integer" | "int" | "int4" | "serial" | "serial4" => 32,
        "bigint" | "int8" | "bigserial" | "serial8" => 64,
        _ => return None,
    };
    Some(if unsigned { (0, (1i128 << bits) - 1) } else { (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1) })
}

/// The answer of a check that needs no query (read off the live catalog), if `spec` is one.
pub fn without_query(spec: &CheckSpec) -> Option<CheckResult> {
    let CheckSpec::AttributeLoss { table, column, lost, fix } = spec else { return None };
    let ok = lost.is_empty();
    let message = if ok {
        format!("`{table}.{column}` keeps every attribute of the live column")
    } else {
        format!("`{table}.{column}` loses {} of the live column; keep them: {fix}", lost.join(", "))
    };
    Some(CheckResult {
        check: name(spec),
        ok: Some(ok),
        violations: Some(lost.len() as u64),
        examples: lost.clone(),
        message,
        duration_ms: Some(0),
        warns_only: false,
    })
}

fn ident(name: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::MySql => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

fn table(name: &TableName, dialect: Dialect) -> String {
    match &name.schema {
        Some(schema) => format!("{}.{}", ident(schema, dialect), ident(&name.name, dialect)),
        None => ident(&name.name, dialect),
    }
}

/// The query that counts a table's rows: one row, one column.
pub fn count_rows(t: &TableName, dialect: Dialect) -> String {
    format!("SELECT count(*) FROM {}", table(t, dialect))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `a, b` as one text value.
fn concat(alias: &str, columns: &[String], dialect: Dialect) -> String {
    let parts: Vec<String> = columns.iter().map(|c| format!("{alias}.{}", ident(c, dialect))).collect();
    match dialect {
        Dialect::Postgres => {
            format!("concat_ws(', ', {})", parts.iter().map(|p| format!("{p}::text")).collect::<Vec<_>>().join(", "))
        }
        Dialect::MySql => format!("CONCAT_WS(', ', {})", parts.join(", ")),
        Dialect::Sqlite => parts.iter().map(|p| format!("CAST({p} AS TEXT)")).collect::<Vec<_>>().join(" || ', ' || "),
    }
}

/// The key that names a row in examples: the primary key when the catalog knows it.
fn key_columns(catalog: &Catalog, t: &TableName, fallback: &[String]) -> Vec<String> {
    let pk = catalog.table(t).table().and_then(|t| t.primary_key()).map(|i| i.columns.clone());
    pk.filter(|c| !c.is_empty()).unwrap_or_else(|| fallback.to_vec())
}

fn not_null(alias: &str, columns: &[String], dialect: Dialect) -> String {
    columns.iter().map(|c| format!("{alias}.{} IS NOT NULL", ident(c, dialect))).collect::<Vec<_>>().join(" AND ")
}

/// `(count, example)` rows for rows matching `filter`.
fn rows_where(t: &TableName, key: &[String], filter: &str, dialect: Dialect) -> String {
    counted(
        &format!("SELECT {} AS k FROM {} AS c WHERE {filter}", concat("c", key, dialect), table(t, dialect)),
        dialect,
    )
}

/// `(count, example)` rows of a query selecting one column `k`: the count over
/// all of them, examples at most five. On PostgreSQL and SQLite the query is a
/// MATERIALIZED CTE, so the LIMIT cannot steer its plan towards fast first
/// rows (a nested loop over millions of rows instead of one hash anti-join).
fn counted(select: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::MySql => format!("SELECT count(*) OVER (), v.k FROM ({select}) AS v LIMIT 5"),
        _ => format!("WITH v AS MATERIALIZED ({select}) SELECT (SELECT count(*) FROM v), v.k FROM v LIMIT 5"),
    }
}

/// A regex a value must match to convert to `to`, for the types checked.
fn cast_filter(column: &str, from: &str, to: &str, dialect: Dialect) -> Option<String> {
    let to = to.to_ascii_lowercase();
    let from = from.to_ascii_lowercase();
    let col = format!("c.{}", ident(column, dialect));
    let (base, mods) = match to.split_once('(') {
        Some((b, rest)) => (
            b.trim().to_owned(),
            rest.trim_end_matches(')').split(',').filter_map(|m| m.trim().parse::<u32>().ok()).collect::<Vec<_>>(),
        ),
        None => (to.trim().to_owned(), Vec::new()),
    };
    let integer = ["integer", "int", "bigint", "smallint", "int4", "int8", "int2", "tinyint", "mediumint"]
        .contains(&base.split_whitespace().next().unwrap_or(""));
    let numeric = ["numeric", "decimal"].contains(&base.as_str());
    let text_like = ["character varying", "varchar", "character", "char"].contains(&base.as_str());
    let (int_re, num_re) = (r"^\s*[-+]?[0-9]+\s*$", r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)\s*$");
    let matches = |re: &str| match dialect {
        Dialect::Postgres => format!("{col}::text ~ {}", literal(re)),
        Dialect::MySql => format!("{col} REGEXP {}", literal(&re.replace(r"\s", "[[:space:]]"))),
        Dialect::Sqlite => String::new(),
    };
    let length = |n: u32| match dialect {
        Dialect::Postgres => format!("length({col}::text) > {n}"),
        _ => format!("CHAR_LENGTH({col}) > {n}"),
    };
    if dialect == Dialect::Sqlite {
        return None;
    }
    let range = |(min, max): (i128, i128)| format!("{col} IS NOT NULL AND ({col} < {min} OR {col} > {max})");
    Some(match () {
        _ if integer && integer_range(&from).is_some() => range(integer_range(&to)?),
        _ if integer => format!("{col} IS NOT NULL AND NOT ({})", matches(int_re)),
        // Digits lost past the scale, or too many before the point for the precision.
        _ if numeric
            && (from.starts_with("numeric") || from.starts_with("decimal") || integer_range(&from).is_some()) =>
        {
            match mods.as_slice() {
                [precision, scale] if precision >= scale => format!(
                    "{col} IS NOT NULL AND ({col} <> round({col}, {scale}) OR abs(round({col}, {scale})) >= 1e{})",
                    precision - scale
                ),
                [precision] => {
                    format!("{col} IS NOT NULL AND ({col} <> round({col}) OR abs(round({col})) >= 1e{precision})")
                }
                _ => return None,
            }
        }
        _ if numeric => format!("{col} IS NOT NULL AND NOT ({})", matches(num_re)),
        _ if text_like => match mods.first() {
            Some(n) => format!("{col} IS NOT NULL AND {}", length(*n)),
            None => return None,
        },
        _ => return None,
    })
}

/// The SQL for a check, or None when it cannot be written for this dialect.
pub fn query(spec: &CheckSpec, catalog: &Catalog, dialect: Dialect) -> Option<String> {
    match spec {
        CheckSpec::ForeignKeyOrphans { table: t, columns, references, ref_columns } => {
            let ref_columns =
                if ref_columns.is_empty() { key_columns(catalog, references, &[]) } else { ref_columns.clone() };
            if ref_columns.len() != columns.len() || columns.is_empty() {
                return None;
            }
            let join: Vec<String> = columns
                .iter()
                .zip(&ref_columns)
                .map(|(c, r)| format!("p.{} = c.{}", ident(r, dialect), ident(c, dialect)))
                .collect();
            let filter = format!(
                "{} AND NOT EXISTS (SELECT 1 FROM {} AS p WHERE {})",
                not_null("c", columns, dialect),
                table(references, dialect),
                join.join(" AND ")
            );
            Some(rows_where(t, &key_columns(catalog, t, columns), &filter, dialect))
        }
        CheckSpec::UniqueDuplicates { table: t, columns } => {
            let cols: Vec<String> = columns.iter().map(|c| format!("c.{}", ident(c, dialect))).collect();
            Some(counted(
                &format!(
                    "SELECT {} AS k FROM {} AS c WHERE {} GROUP BY {} HAVING count(*) > 1",
                    concat("c", columns, dialect),
                    table(t, dialect),
                    not_null("c", columns, dialect),
                    cols.join(", ")
                ),
                dialect,
            ))
        }
        CheckSpec::NotNullViolations { table: t, column } => {
            let filter = format!("c.{} IS NULL", ident(column, dialect));
            Some(rows_where(t, &key_columns(catalog, t, std::slice::from_ref(column)), &filter, dialect))
        }
        // Every row violates it: count them (up to a cap, so a huge table
        // answers in time; one row is enough to fail) and name a few.
        CheckSpec::NewColumnNulls { table: t, .. } => {
            let key = key_columns(catalog, t, &[]);
            let k = if key.is_empty() { "''".to_owned() } else { concat("c", &key, dialect) };
            let from = table(t, dialect);
            Some(format!(
                "SELECT (SELECT count(*) FROM (SELECT 1 FROM {from} LIMIT {NEW_COLUMN_COUNT_CAP}) AS n), v.k FROM (SELECT {k} AS k FROM {from} AS c LIMIT 5) AS v"
            ))
        }
        CheckSpec::CheckViolations { table: t, expression } => {
            // The expression as the parser rendered it; one it could not render is not run.
            if expression.contains('…') || expression.is_empty() {
                return None;
            }
            let key = key_columns(catalog, t, &[]);
            if key.is_empty() {
                return Some(counted(
                    &format!("SELECT '' AS k FROM {} AS c WHERE NOT ({expression})", table(t, dialect)),
                    dialect,
                ));
            }
            Some(rows_where(t, &key, &format!("NOT ({expression})"), dialect))
        }
        CheckSpec::CastFailures { table: t, column, from, to } => {
            let filter = cast_filter(column, from, to, dialect)?;
            Some(rows_where(t, &key_columns(catalog, t, std::slice::from_ref(column)), &filter, dialect))
        }
        CheckSpec::AttributeLoss { .. } => None,
        // The largest key, and where the engine keeps its generator: a
        // PostgreSQL sequence (its last value and its own maximum, which
        // stays at 2147483647 for a serial column widened to bigint) or
        // MySQL's AUTO_INCREMENT counter, both ahead of max() after deletes.
        CheckSpec::IdExhaustion { table: t, column, .. } => {
            let largest = format!("SELECT max(c.{}) AS v FROM {} AS c", ident(column, dialect), table(t, dialect));
            Some(match dialect {
                Dialect::Postgres => format!(
                    "SELECT m.v, s.last_value, s.max_value FROM ({largest}) AS m LEFT JOIN pg_sequences s \
                     ON format('%I.%I', s.schemaname, s.sequencename) = pg_get_serial_sequence({}, {})",
                    literal(&table(t, dialect)),
                    literal(column)
                ),
                Dialect::MySql => format!(
                    "SELECT m.v, (SELECT AUTO_INCREMENT - 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {}) FROM ({largest}) AS m",
                    t.schema.as_deref().map_or("DATABASE()".to_owned(), literal),
                    literal(&t.name)
                ),
                Dialect::Sqlite => largest,
            })
        }
        CheckSpec::LockBlockers { tables } => match dialect {
            Dialect::Postgres => {
                let names: Vec<String> = tables.iter().map(|t| literal(&t.name)).collect();
                Some(format!(
                    "SELECT DISTINCT a.pid::text, a.pid::text || ' (' || coalesce(a.usename, '?') || ', ' || coalesce(a.state, '?') \
                     || ', transaction open for ' || date_trunc('second', now() - coalesce(a.xact_start, a.query_start))::text \
                     || ', holds ' || l.mode || ' on ' || c.relname || '): ' || left(coalesce(a.query, ''), 80) \
                     FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE c.relname IN ({}) AND a.pid <> pg_backend_pid() LIMIT 5",
                    names.join(", ")
                ))
            }
            // MariaDB's METADATA_LOCK_INFO (plugin metadata_lock_info): the
            // sessions holding a metadata lock on these very tables, which
            // any ALTER waits behind. Only client sessions (in PROCESSLIST):
            // the server's own threads (thread 0, e.g. updating statistics
            // after a bulk insert) hold such locks for an instant and are no
            // one to wait for. Without the plugin, `fallback_query`.
            Dialect::MySql => {
                let on: Vec<String> = tables
                    .iter()
                    .map(|t| {
                        let schema = t.schema.as_deref().map_or("DATABASE()".to_owned(), literal);
                        format!("(m.TABLE_SCHEMA = {schema} AND m.TABLE_NAME = {})", literal(&t.name))
                    })
                    .collect();
                Some(format!(
                    "SELECT m.THREAD_ID, MIN(CONCAT('thread ', m.THREAD_ID, ' (', COALESCE(x.trx_state, p.COMMAND, '?'), ', holds ', m.LOCK_MODE, ' on ', m.TABLE_NAME, \
                     COALESCE(CONCAT(', transaction open since ', x.trx_started), ''), '): ', LEFT(COALESCE(p.INFO, ''), 80))) \
                     FROM information_schema.METADATA_LOCK_INFO m \
                     LEFT JOIN information_schema.INNODB_TRX x ON x.trx_mysql_thread_id = m.THREAD_ID \
                     JOIN information_schema.PROCESSLIST p ON p.ID = m.THREAD_ID \
                     WHERE ({}) AND m.THREAD_ID <> CONNECTION_ID() GROUP BY m.THREAD_ID LIMIT 5",
                    on.join(" OR ")
                ))
            }
            Dialect::Sqlite => None,
        },
    }
}

/// A second way to write a check, for servers that refuse the first: MySQL
/// and MariaDB without the metadata_lock_info plugin list open transactions
/// (INNODB_TRX) of sessions using the same database. INNODB_TRX is a cache
/// InnoDB refreshes at most every 0.1 s: a younger transaction may not show.
pub fn fallback_query(spec: &CheckSpec, dialect: Dialect) -> Option<String> {
    match (spec, dialect) {
        (CheckSpec::LockBlockers { .. }, Dialect::MySql) => Some(
            "SELECT x.trx_mysql_thread_id, CONCAT('thread ', x.trx_mysql_thread_id, ' (', x.trx_state, ', transaction open since ', \
             x.trx_started, '): ', LEFT(COALESCE(x.trx_query, ''), 80)) FROM information_schema.INNODB_TRX x \
             JOIN information_schema.PROCESSLIST p ON p.ID = x.trx_mysql_thread_id \
             WHERE x.trx_mysql_thread_id <> CONNECTION_ID() AND (p.DB = DATABASE() OR p.DB IS NULL) LIMIT 5"
                .to_owned(),
        ),
        _ => None,
    }
}

/// Reads the largest key against its type's maximum.
fn read_id_exhaustion(spec: &CheckSpec, rows: &[Vec<Option<String>>]) -> CheckResult {
    let CheckSpec::IdExhaustion { table, column, data_type } = spec else {
        unreachable!("called for id-exhaustion only")
    };
    let value =
        |i: usize| rows.first().and_then(|r| r.get(i).cloned().flatten()).and_then(|v| v.trim().parse::<i128>().ok());
    // The largest of max(column) and the generator's last value.
    let largest = match (value(0), value(1)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let (_, type_max) = integer_range(data_type).unwrap_or((0, i128::MAX));
    // A sequence with a smaller maximum than the column's type runs out first.
    let sequence_max = value(2).filter(|m| *m < type_max);
    let max = sequence_max.unwrap_or(type_max);
    let data_type = match sequence_max {
        Some(_) => format!("{data_type} column's sequence"),
        None => data_type.clone(),
    };
    let share = largest.map_or(0.0, |v| v as f64 / max as f64);
    let (ok, warns_only, message) = match largest {
        None => (true, false, format!("`{table}.{column}` has no value yet")),
        Some(v) if v > max => (
            false,
            false,
            format!(
                "`{table}.{column}` already holds {v}, more than {data_type} can hold ({max}): the statement will fail"
            ),
        ),
        Some(v) if share >= ID_EXHAUSTION_SHARE => (
            false,
            true,
            format!(
                "`{table}.{column}` is at {v}, {:.1}% of the {data_type} maximum {max}: inserts fail when it runs out; widen it to bigint",
                share * 100.0
            ),
        ),
        Some(v) => {
            (true, false, format!("`{table}.{column}` is at {v}, {:.1}% of the {data_type} maximum", share * 100.0))
        }
    };
    CheckResult {
        check: name(spec),
        ok: Some(ok),
        violations: Some(u64::from(!ok)),
        examples: largest.filter(|_| !ok).map(|v| v.to_string()).into_iter().collect(),
        message,
        duration_ms: None,
        warns_only,
    }
}

/// Reads a check's rows into its answer.
pub fn read(spec: &CheckSpec, rows: &[Vec<Option<String>>]) -> CheckResult {
    if matches!(spec, CheckSpec::IdExhaustion { .. }) {
        return read_id_exhaustion(spec, rows);
    }
    if let Some(result) = without_query(spec) {
        return result;
    }
    let examples: Vec<String> = rows.iter().filter_map(|r| r.get(1).cloned().flatten()).collect();
    let violations = match spec {
        CheckSpec::LockBlockers { .. } => rows.len() as u64,
        _ => rows.first().and_then(|r| r.first().cloned().flatten()).and_then(|n| n.parse().ok()).unwrap_or(0),
    };
    let message = match (spec, violations) {
        (CheckSpec::ForeignKeyOrphans { table, references, .. }, 0) => {
            format!("every row of `{table}` has its match in `{references}`")
        }
        (CheckSpec::ForeignKeyOrphans { table, references, .. }, n) => {
            format!("{n} row(s) of `{table}` have no match in `{references}`: adding the key will fail")
        }
        (CheckSpec::UniqueDuplicates { table, columns }, 0) => {
            format!("no duplicate ({}) in `{table}`", columns.join(", "))
        }
        (CheckSpec::UniqueDuplicates { table, columns }, n) => {
            format!("{n} value(s) of ({}) appear more than once in `{table}`", columns.join(", "))
        }
        (CheckSpec::NotNullViolations { table, column }, 0) => format!("no NULL in `{table}.{column}`"),
        (CheckSpec::NotNullViolations { table, column }, n) => {
            format!("{n} row(s) of `{table}` have NULL in `{column}`")
        }
        (CheckSpec::NewColumnNulls { table, column }, 0) => {
            format!("`{table}` has no rows, so the new NOT NULL column `{column}` needs no value")
        }
        (CheckSpec::NewColumnNulls { table, column }, n) => format!(
            "{}{n} row(s) of `{table}` would hold NULL in the new NOT NULL column `{column}`, which has no default: adding it will fail",
            if n >= NEW_COLUMN_COUNT_CAP { "at least " } else { "" }
        ),
        (CheckSpec::CheckViolations { table, expression }, 0) => {
            format!("every row of `{table}` passes CHECK ({expression})")
        }
        (CheckSpec::CheckViolations { table, expression }, n) => {
            format!("{n} row(s) of `{table}` fail CHECK ({expression})")
        }
        (CheckSpec::CastFailures { table, column, to, .. }, 0) => {
            format!("every value of `{table}.{column}` converts to {to}")
        }
        (CheckSpec::CastFailures { table, column, to, .. }, n) => {
            format!("{n} value(s) of `{table}.{column}` will not convert to {to}, or will be cut")
        }
        (CheckSpec::LockBlockers { .. }, 0) => "no session holds a lock on these tables now".to_owned(),
        (CheckSpec::LockBlockers { .. }, n) => {
            format!("{n} session(s) hold locks or transactions the statement will wait behind")
        }
        (CheckSpec::AttributeLoss { .. } | CheckSpec::IdExhaustion { .. }, _) => unreachable!("answered above"),
    };
    let warns_only = matches!(spec, CheckSpec::LockBlockers { .. });
    CheckResult {
        check: name(spec),
        ok: Some(violations == 0),
        violations: Some(violations),
        examples,
        message,
        duration_ms: None,
        warns_only,
    }
}

/// The answer for a check that did not run.
pub fn unknown(spec: &CheckSpec, why: &str) -> CheckResult {
    CheckResult {
        check: name(spec),
        ok: None,
        violations: None,
        examples: Vec::new(),
        message: why.to_owned(),
        duration_ms: None,
        warns_only: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> TableName {
        TableName::bare(name)
    }

    #[test]
    fn queries_quote_and_anti_join() {
        let spec = CheckSpec::ForeignKeyOrphans {
            table: t("orders"),
            columns: vec!["user_id".into()],
            references: t("users"),
            ref_columns: vec!["id".into()],
        };
        let sql = query(&spec, &Catalog::offline(), Dialect::Postgres).unwrap();
        assert_eq!(
            sql,
            "WITH v AS MATERIALIZED (SELECT concat_ws(', ', c.\"user_id\"::text) AS k FROM \"orders\" AS c WHERE c.\"user_id\" IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM \"users\" AS p WHERE p.\"id\" = c.\"user_id\")) SELECT (SELECT count(*) FROM v), v.k FROM v LIMIT 5"
        );
        let my = query(&spec, &Catalog::offline(), Dialect::MySql).unwrap();
        assert!(my.contains("FROM `orders` AS c") && my.contains("CONCAT_WS"), "{my}");
        let evil = CheckSpec::NotNullViolations { table: t("we\"ird"), column: "x".into() };
        assert!(query(&evil, &Catalog::offline(), Dialect::Postgres).unwrap().contains("\"we\"\"ird\""));
    }

    #[test]
    fn casts_that_can_be_checked() {
        let cast = |from: &str, to: &str| cast_filter("v", from, to, Dialect::Postgres);
        assert!(cast("text", "integer").unwrap().contains("~"));
        assert!(cast("character varying(50)", "character varying(10)").unwrap().contains("length"));
        assert!(cast("numeric(10,4)", "numeric(10,2)").unwrap().contains("round"));
        assert!(cast("numeric(10,2)", "numeric(5,2)").unwrap().contains(">= 1e3"), "precision too");
        assert!(cast("bigint", "numeric(4)").unwrap().contains(">= 1e4"));
        assert_eq!(cast("text", "uuid"), None);
        assert!(cast("bigint", "integer").unwrap().contains("> 2147483647"));
    }

    #[test]
    fn integer_ranges_as_the_engines_print_types() {
        assert_eq!(integer_range("integer"), Some((-2147483648, 2147483647)));
        assert_eq!(integer_range("int(11) unsigned"), Some((0, 4294967295)));
        assert_eq!(integer_range("bigint"), Some((i64::MIN as i128, i64::MAX as i128)));
        assert_eq!(integer_range("smallint"), Some((-32768, 32767)));
        assert_eq!(integer_range("numeric(10,2)"), None);
    }

    #[test]
    fn id_exhaustion_warns_near_the_maximum_and_blocks_past_it() {
        let spec = |ty: &str| CheckSpec::IdExhaustion { table: t("carts"), column: "id".into(), data_type: ty.into() };
        let near = read(&spec("integer"), &[vec![Some("2000000000".into())]]);
        assert_eq!((near.ok, near.warns_only), (Some(false), true));
        assert!(near.message.contains("93.1%"), "{}", near.message);
        let past = read(&spec("smallint"), &[vec![Some("40000".into())]]);
        assert_eq!((past.ok, past.warns_only), (Some(false), false));
        let fine = read(&spec("bigint"), &[vec![Some("2000000000".into())]]);
        assert_eq!(fine.ok, Some(true));
        assert_eq!(read(&spec("integer"), &[vec![None]]).ok, Some(true));
        // A serial widened to bigint keeps its integer sequence: still near the end.
        let sequence = read(
            &spec("bigint"),
            &[vec![Some("2000000000".into()), Some("2000000000".into()), Some("2147483647".into())]],
        );
        assert_eq!((sequence.ok, sequence.warns_only), (Some(false), true), "{}", sequence.message);
        assert!(sequence.message.contains("sequence"), "{}", sequence.message);
        // The generator is ahead of max() after deletes.
        let counter = read(&spec("integer"), &[vec![Some("10".into()), Some("2100000000".into())]]);
        assert_eq!(counter.ok, Some(false));
    }

    #[test]
    fn answers_are_read_from_rows() {
        let spec = CheckSpec::NotNullViolations { table: t("users"), column: "email".into() };
        let r = read(&spec, &[vec![Some("3".into()), Some("7".into())], vec![Some("3".into()), Some("9".into())]]);
        assert_eq!((r.ok, r.violations, r.examples.len()), (Some(false), Some(3), 2));
        let clean = read(&spec, &[]);
        assert_eq!((clean.ok, clean.violations), (Some(true), Some(0)));
    }
}
