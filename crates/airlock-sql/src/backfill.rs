//! Cutting a data statement written over a whole table into keyset batches.
//!
//! A backfill holds statements a developer would write anyway — `UPDATE`,
//! `DELETE`, or `INSERT ... SELECT` from one table — and the runner runs
//! each over one range of the table's primary key at a time. [`analyze`]
//! says whether a statement can be cut that way (and if not, why and what to
//! write instead); [`Batchable::batch`] writes the statement for one range,
//! the range ANDed onto its own `WHERE`; [`next_boundary`] reads where the
//! next range ends.
//!
//! Every dialect goes through `sqlparser` (PostgreSQL too): the statement is
//! changed as a syntax tree and written back, never spliced as text, and the
//! libclang-free build batches exactly as the full one does.

use std::ops::ControlFlow;

use sqlparser::ast::{
    self, AssignmentTarget, Expr, FromTable, Ident, ObjectName, ObjectNamePart, SelectItem, SetExpr, Statement,
    TableFactor, TableWithJoins, Visit, Visitor,
};
use sqlparser::dialect::{Dialect as SqlDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::{Parser, ParserOptions};

use crate::Dialect;
use crate::parse::TableName;

/// What kind of statement a backfill batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// `UPDATE t SET ... [WHERE ...]`.
    Update,
    /// `DELETE FROM t [WHERE ...]`.
    Delete,
    /// `INSERT INTO other ... SELECT ... FROM t [WHERE ...]`.
    InsertSelect,
}

impl Verb {
    /// `UPDATE`, `DELETE` or `INSERT ... SELECT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Update => "UPDATE",
            Verb::Delete => "DELETE",
            Verb::InsertSelect => "INSERT ... SELECT",
        }
    }
}

/// Why a statement cannot be batched, and what to write instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unbatchable {
    /// What in the statement stops it, e.g. "it has a LIMIT".
    pub reason: String,
    /// What to write instead.
    pub instead: String,
}

impl std::fmt::Display for Unbatchable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {}", self.reason, self.instead)
    }
}

fn refuse(reason: impl Into<String>, instead: impl Into<String>) -> Unbatchable {
    Unbatchable { reason: reason.into(), instead: instead.into() }
}

/// How a key column's values are read and written back into a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A number type: written as a number, so it compares as the column
    /// does (MySQL compares a number column with a string as floating point).
    Number,
    /// Text, dates, UUIDs...: read as the server prints them, written back
    /// as a quoted literal the server reads back the same.
    Text,
    /// Bytes: read as hexadecimal and written back as a hexadecimal
    /// literal, since their text would not survive the trip.
    Binary,
}

/// A column of the key batches are cut on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyColumn {
    /// Its name as the catalog holds it.
    pub name: String,
    /// How its values are read and written.
    pub kind: KeyKind,
}

/// A statement that can run one key range at a time.
#[derive(Clone, Debug)]
pub struct Batchable {
    dialect: Dialect,
    statement: Statement,
    /// What kind of statement it is.
    pub verb: Verb,
    /// The table whose key cuts the batches, named as the engine resolves it.
    pub table: TableName,
    /// The table as the statement wrote it (for queries of its own).
    written: ObjectName,
    /// How the statement's own clauses name that table: its alias or its name.
    qualifier: ObjectName,
    /// The columns an UPDATE sets, lower-case.
    assigned: Vec<String>,
}

fn sql_dialect(dialect: Dialect) -> Box<dyn SqlDialect> {
    match dialect {
        Dialect::Postgres => Box::new(PostgreSqlDialect {}),
        Dialect::MySql => Box::new(MySqlDialect {}),
        Dialect::Sqlite => Box::new(SQLiteDialect {}),
    }
}

/// A parser that keeps literals as written (`'it''s'`, MySQL's `'a\\b'`,
/// PostgreSQL's `E'\n'`), so the statement written back means what it did:
/// unescaped, a MySQL backslash would be written back bare.
fn parser<'a>(dialect: &'a dyn SqlDialect, sql: &str) -> Result<Parser<'a>, sqlparser::parser::ParserError> {
    Parser::new(dialect).with_options(ParserOptions::new().with_unescape(false)).try_with_sql(sql)
}

const WRITE_INSTEAD: &str = "a backfill holds UPDATE, DELETE or INSERT ... SELECT statements over one table each; put anything else in a migration of its own (a schema change in a schema migration before the backfill)";
const JOIN_INSTEAD: &str = "name the other table in a subquery instead, e.g. `SET total = (SELECT sum(amount) FROM items i WHERE i.order_id = orders.id)` or `WHERE EXISTS (SELECT 1 FROM other o WHERE o.id = t.other_id)`, so each row of the batched table is one row of the statement";

/// Whether `sql` (one statement) can run in keyset batches, and how.
pub fn analyze(sql: &str, dialect: Dialect) -> Result<Batchable, Unbatchable> {
    let sql_dialect = sql_dialect(dialect);
    let mut parsed = parser(sql_dialect.as_ref(), sql).and_then(|mut p| p.parse_statements()).map_err(|e| {
        refuse(
            format!("airlock cannot read this statement to cut it into batches ({e})"),
            "write it as a plain UPDATE, DELETE or INSERT ... SELECT over one table, or run it unbatched in an `-- airlock:data` migration",
        )
    })?;
    if parsed.len() != 1 {
        return Err(refuse("this is not one statement", WRITE_INSTEAD));
    }
    let statement = parsed.remove(0);
    // Each batch is this statement written back: it must read back the same.
    let written = statement.to_string();
    if parser(sql_dialect.as_ref(), &written).and_then(|mut p| p.parse_statements()).ok()
        != Some(vec![statement.clone()])
    {
        return Err(refuse(
            "airlock cannot write this statement back exactly as it reads it, so it cannot add a key range to it",
            "write it more plainly (the same UPDATE, DELETE or INSERT ... SELECT without unusual syntax), or run it unbatched in an `-- airlock:data` migration",
        ));
    }
    let (verb, target, assigned) = match &statement {
        Statement::Update(update) => {
            if update.from.is_some() || !update.table.joins.is_empty() {
                return Err(refuse(
                    "its UPDATE joins another table (FROM or JOIN): batches are cut on one table's key, and a joined row may match several of them",
                    JOIN_INSTEAD,
                ));
            }
            no_returning(update.returning.is_some())?;
            no_limit(update.limit.is_some() || !update.order_by.is_empty())?;
            let assigned = update
                .assignments
                .iter()
                .flat_map(|a| match &a.target {
                    AssignmentTarget::ColumnName(name) => vec![name],
                    AssignmentTarget::Tuple(names) => names.iter().collect(),
                })
                .filter_map(|name| last_part(name).map(|i| i.value.to_lowercase()))
                .collect();
            (Verb::Update, single_table(&update.table)?, assigned)
        }
        Statement::Delete(delete) => {
            let from = match &delete.from {
                FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => from,
            };
            if !delete.tables.is_empty() || delete.using.is_some() || from.len() != 1 || !from[0].joins.is_empty() {
                return Err(refuse(
                    "its DELETE names more than one table (USING, JOIN or a table list): batches are cut on one table's key",
                    "delete from one table and name the others in a subquery, e.g. `DELETE FROM t WHERE EXISTS (SELECT 1 FROM other o WHERE o.id = t.other_id)`",
                ));
            }
            no_returning(delete.returning.is_some())?;
            no_limit(delete.limit.is_some() || !delete.order_by.is_empty())?;
            (Verb::Delete, single_table(&from[0])?, Vec::new())
        }
        Statement::Insert(insert) => {
            let Some(source) = &insert.source else {
                return Err(refuse("its INSERT has no SELECT: there is no table to cut into batches", WRITE_INSTEAD));
            };
            no_returning(insert.returning.is_some())?;
            (Verb::InsertSelect, insert_source(source)?, Vec::new())
        }
        other => {
            let head = other.to_string().split_whitespace().next().unwrap_or("").to_uppercase();
            return Err(refuse(format!("a backfill cannot batch `{head}` statements"), WRITE_INSTEAD));
        }
    };
    let (written, alias) = target;
    let table = resolved(&written, dialect);
    // The batched table named anywhere else in the statement (a subquery,
    // or the INSERT's own target) would see what earlier batches did.
    let mut named = 0;
    let _ = statement.visit(&mut RelationCounter { table: &table, dialect, count: &mut named });
    if named > 1 {
        return Err(refuse(
            format!(
                "it reads `{table}` again besides the rows it is batched on (a subquery, or an INSERT into the table it reads): in batches, later batches would see what earlier ones changed"
            ),
            "read the values it needs from another table, or compute them first into a table of their own in an earlier migration",
        ));
    }
    let qualifier = alias.map(|a| ObjectName(vec![ObjectNamePart::Identifier(a)])).unwrap_or_else(|| written.clone());
    Ok(Batchable { dialect, table, written, qualifier, statement, verb, assigned })
}

fn no_returning(returning: bool) -> Result<(), Unbatchable> {
    if returning {
        return Err(refuse(
            "it has RETURNING: the rows it returns would come back batch by batch, and airlock throws them away",
            "drop the RETURNING clause",
        ));
    }
    Ok(())
}

fn no_limit(limited: bool) -> Result<(), Unbatchable> {
    if limited { Err(limit_refused()) } else { Ok(()) }
}

fn limit_refused() -> Unbatchable {
    refuse(
        "it has a LIMIT or ORDER BY: in batches it would pick different rows than over the whole table",
        "drop LIMIT and ORDER BY and say with WHERE which rows to change: the batches already keep each transaction small",
    )
}

type Target = (ObjectName, Option<Ident>);

fn single_table(table: &TableWithJoins) -> Result<Target, Unbatchable> {
    match &table.relation {
        TableFactor::Table { name, alias, args: None, .. } => {
            Ok((name.clone(), alias.as_ref().map(|a| a.name.clone())))
        }
        other => {
            Err(refuse(format!("it reads `{other}`, which is not a table with a key to cut batches on"), WRITE_INSTEAD))
        }
    }
}

/// The one table an INSERT's SELECT reads, when it reads one table row by row.
fn insert_source(query: &ast::Query) -> Result<Target, Unbatchable> {
    if query.with.is_some() {
        return Err(refuse(
            "its SELECT starts with WITH: a common table expression is read whole in each batch",
            "write the SELECT over the table itself, with subqueries where the CTE was",
        ));
    }
    if query.limit_clause.is_some() || query.fetch.is_some() || query.order_by.is_some() {
        return Err(limit_refused());
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(refuse(
            "its SELECT is not a plain SELECT (UNION, VALUES...): each part would need its own batches",
            "write one INSERT ... SELECT per table read",
        ));
    };
    if select.distinct.is_some()
        || select.having.is_some()
        || !select.named_window.is_empty()
        || !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
    {
        return Err(refuse(
            "its SELECT groups rows (DISTINCT, GROUP BY, HAVING or WINDOW): in batches each group would be cut into parts",
            "insert row by row from the table, or run the grouping unbatched in an `-- airlock:data` migration",
        ));
    }
    if let Some(function) = aggregate_in(&select.projection) {
        return Err(refuse(
            format!("its SELECT computes `{function}` over many rows: in batches it would see one batch at a time"),
            "insert row by row from the table, or run it unbatched in an `-- airlock:data` migration",
        ));
    }
    match select.from.as_slice() {
        [one] if one.joins.is_empty() => single_table(one),
        [] => Err(refuse("its SELECT reads no table: there is nothing to cut into batches", WRITE_INSTEAD)),
        _ => Err(refuse(
            "its SELECT joins several tables: batches are cut on one table's key, and a join may match a row several times",
            JOIN_INSTEAD,
        )),
    }
}

const AGGREGATES: [&str; 35] = [
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "array_agg",
    "string_agg",
    "group_concat",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "json_arrayagg",
    "json_objectagg",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "bit_xor",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "std",
    "variance",
    "var_pop",
    "var_samp",
    "any_value",
    "xmlagg",
    "mode",
    "percentile_cont",
    "percentile_disc",
    "total",
    "json_group_array",
    "json_group_object",
];

/// An aggregate or window function the projection itself computes (not
/// one inside a subquery, which is computed per row).
fn aggregate_in(projection: &[SelectItem]) -> Option<String> {
    struct Finder {
        depth: usize,
        found: Option<String>,
    }
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, _: &ast::Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &ast::Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let (0, Expr::Function(f)) = (self.depth, expr) {
                let name = f.name.0.last().map(|p| p.to_string().to_lowercase()).unwrap_or_default();
                let aggregate = f.over.is_some()
                    || f.filter.is_some()
                    || !f.within_group.is_empty()
                    || AGGREGATES.contains(&name.trim_matches(|c| c == '"' || c == '`'));
                if aggregate {
                    self.found = Some(expr.to_string());
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder { depth: 0, found: None };
    for item in projection {
        let _ = item.visit(&mut finder);
    }
    finder.found
}

/// Counts the statement's relations that are `table`.
struct RelationCounter<'a> {
    table: &'a TableName,
    dialect: Dialect,
    count: &'a mut usize,
}

impl Visitor for RelationCounter<'_> {
    type Break = ();
    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let name = resolved(relation, self.dialect);
        let same = name.name.eq_ignore_ascii_case(&self.table.name)
            && match (&name.schema, &self.table.schema) {
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                _ => true,
            };
        if same {
            *self.count += 1;
        }
        ControlFlow::Continue(())
    }
}

fn last_part(name: &ObjectName) -> Option<&Ident> {
    match name.0.last()? {
        ObjectNamePart::Identifier(ident) => Some(ident),
        _ => None,
    }
}

/// A name as the engine resolves it: PostgreSQL folds unquoted names to lower case.
fn resolved(name: &ObjectName, dialect: Dialect) -> TableName {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) if i.quote_style.is_none() && dialect == Dialect::Postgres => {
                i.value.to_lowercase()
            }
            ObjectNamePart::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect();
    TableName::from_parts(&parts)
}

/// A key column's name quoted for `dialect`.
fn quoted(name: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::MySql => format!("`{}`", name.replace('`', "``")),
        Dialect::Postgres | Dialect::Sqlite => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// A key value (as the server wrote it in text, or in hexadecimal for
/// bytes) as a literal of `dialect`.
pub fn literal(value: &str, kind: KeyKind, dialect: Dialect) -> String {
    let number = {
        let digits = value.strip_prefix('-').unwrap_or(value);
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
        !whole.is_empty()
            && !fraction.is_empty()
            && whole.bytes().all(|b| b.is_ascii_digit())
            && fraction.bytes().all(|b| b.is_ascii_digit())
    };
    let hex = value.len() % 2 == 0 && value.bytes().all(|b| b.is_ascii_hexdigit());
    match kind {
        KeyKind::Number if number => return value.to_owned(),
        KeyKind::Binary if hex => {
            return match dialect {
                Dialect::Postgres => format!("decode('{value}', 'hex')"),
                Dialect::MySql | Dialect::Sqlite => format!("X'{value}'"),
            };
        }
        _ => {}
    }
    let escaped = value.replace('\'', "''");
    match dialect {
        Dialect::MySql => format!("'{}'", escaped.replace('\\', "\\\\")),
        // An escape string reads the same whatever `standard_conforming_strings` says.
        Dialect::Postgres if value.contains('\\') => format!("E'{}'", escaped.replace('\\', "\\\\")),
        Dialect::Postgres | Dialect::Sqlite => format!("'{escaped}'"),
    }
}

/// How the boundary query reads a key column: bytes in hexadecimal.
fn read_back(column: &KeyColumn, dialect: Dialect) -> String {
    let name = quoted(&column.name, dialect);
    match (column.kind, dialect) {
        (KeyKind::Binary, Dialect::Postgres) => format!("encode({name}, 'hex')"),
        (KeyKind::Binary, Dialect::MySql | Dialect::Sqlite) => format!("hex({name})"),
        _ => name,
    }
}

/// `key > after` (`op` = `>`) or `key <= through` (`op` = `<=`), compared
/// as a row: one column plainly; several as a row value, or on MySQL
/// spelled out column by column (which its range optimizer reads).
fn compare(qualifier: Option<&str>, key: &[KeyColumn], values: &[String], op: &str, dialect: Dialect) -> String {
    let column = |k: &KeyColumn| match qualifier {
        Some(q) => format!("{q}.{}", quoted(&k.name, dialect)),
        None => quoted(&k.name, dialect),
    };
    let value = |i: usize| literal(&values[i], key[i].kind, dialect);
    if key.len() == 1 {
        return format!("{} {op} {}", column(&key[0]), value(0));
    }
    if dialect != Dialect::MySql {
        let columns: Vec<String> = key.iter().map(column).collect();
        let values: Vec<String> = (0..key.len()).map(value).collect();
        return format!("({}) {op} ({})", columns.join(", "), values.join(", "));
    }
    let strict = if op == ">" { ">" } else { "<" };
    let mut alternatives = Vec::new();
    for i in 0..key.len() {
        let mut parts: Vec<String> = (0..i).map(|j| format!("{} = {}", column(&key[j]), value(j))).collect();
        let last_op = if i + 1 == key.len() { op } else { strict };
        parts.push(format!("{} {last_op} {}", column(&key[i]), value(i)));
        alternatives.push(format!("({})", parts.join(" AND ")));
    }
    format!("({})", alternatives.join(" OR "))
}

impl Batchable {
    /// The columns an UPDATE sets that are part of `key`: a row whose key
    /// changes could move into a later batch and be changed twice.
    pub fn check_key(&self, key: &[KeyColumn]) -> Result<(), Unbatchable> {
        let moved: Vec<&str> =
            key.iter().filter(|k| self.assigned.contains(&k.name.to_lowercase())).map(|k| k.name.as_str()).collect();
        if moved.is_empty() {
            return Ok(());
        }
        Err(refuse(
            format!(
                "it sets `{}`, part of the primary key batches are cut on: a row whose key changes may move into a later batch and be changed twice",
                moved.join("`, `")
            ),
            "fill a new column instead and switch to it in a schema migration",
        ))
    }

    /// The statement over the rows whose key is after `after` (from the
    /// first when None) up to and including `through` (to the last when None).
    pub fn batch(&self, key: &[KeyColumn], after: Option<&[String]>, through: Option<&[String]>) -> String {
        let qualifier = self.qualifier.to_string();
        let mut range = Vec::new();
        if let Some(after) = after {
            range.push(compare(Some(&qualifier), key, after, ">", self.dialect));
        }
        if let Some(through) = through {
            range.push(compare(Some(&qualifier), key, through, "<=", self.dialect));
        }
        if range.is_empty() {
            return self.statement.to_string();
        }
        let dialect = sql_dialect(self.dialect);
        let text = range.join(" AND ");
        let range = parser(dialect.as_ref(), &text)
            .and_then(|mut p| p.parse_expr())
            .unwrap_or_else(|e| panic!("a key range airlock wrote does not parse ({e}): {text}"));
        let and = |own: &Option<Expr>| {
            Some(match own {
                Some(own) => Expr::BinaryOp {
                    left: Box::new(Expr::Nested(Box::new(own.clone()))),
                    op: ast::BinaryOperator::And,
                    right: Box::new(range.clone()),
                },
                None => range.clone(),
            })
        };
        let mut statement = self.statement.clone();
        match &mut statement {
            Statement::Update(update) => update.selection = and(&update.selection),
            Statement::Delete(delete) => delete.selection = and(&delete.selection),
            Statement::Insert(insert) => {
                if let Some(source) = &mut insert.source {
                    if let SetExpr::Select(select) = source.body.as_mut() {
                        select.selection = and(&select.selection);
                    }
                }
            }
            _ => unreachable!("analyze accepts only UPDATE, DELETE and INSERT ... SELECT"),
        }
        statement.to_string()
    }

    /// The query that reads the key of the row ending the next batch of
    /// `size` rows after `after` (from the first when None): no row means
    /// fewer than `size` rows are left, and the batch runs to the end.
    pub fn next_boundary(&self, key: &[KeyColumn], after: Option<&[String]>, size: u64) -> String {
        let columns: Vec<String> = key.iter().map(|k| quoted(&k.name, self.dialect)).collect();
        let columns = columns.join(", ");
        let read: Vec<String> = key.iter().map(|k| read_back(k, self.dialect)).collect();
        let filter = after.map(|a| format!(" WHERE {}", compare(None, key, a, ">", self.dialect))).unwrap_or_default();
        format!(
            "SELECT {read} FROM {table}{filter} ORDER BY {columns} LIMIT 1 OFFSET {skip}",
            read = read.join(", "),
            table = self.written,
            skip = size.saturating_sub(1)
        )
    }

    /// The query counting the rows the statement changes (or, for an
    /// INSERT ... SELECT, reads): its own `WHERE` over its table.
    pub fn count_matching(&self) -> String {
        let selection = match &self.statement {
            Statement::Update(update) => update.selection.as_ref(),
            Statement::Delete(delete) => delete.selection.as_ref(),
            Statement::Insert(insert) => insert.source.as_ref().and_then(|q| match q.body.as_ref() {
                SetExpr::Select(select) => select.selection.as_ref(),
                _ => None,
            }),
            _ => None,
        };
        let alias = if self.qualifier == self.written { String::new() } else { format!(" AS {}", self.qualifier) };
        match selection {
            Some(condition) => format!("SELECT count(*) FROM {}{alias} WHERE {condition}", self.written),
            None => format!("SELECT count(*) FROM {}{alias}", self.written),
        }
    }

    /// The query counting the table's rows (the batches' total).
    pub fn count_rows(&self) -> String {
        format!("SELECT count(*) FROM {}", self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Vec<KeyColumn> {
        vec![KeyColumn { name: "id".into(), kind: KeyKind::Number }]
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn update_gets_the_range_anded_onto_its_own_where() {
        let b = analyze("UPDATE accounts SET n = n + 1 WHERE status = 'x' OR n IS NULL", Dialect::Postgres).unwrap();
        assert_eq!(b.verb, Verb::Update);
        assert_eq!(b.table, TableName::bare("accounts"));
        let sql = b.batch(&id(), Some(&strings(&["10"])), Some(&strings(&["20"])));
        assert_eq!(
            sql,
            "UPDATE accounts SET n = n + 1 WHERE (status = 'x' OR n IS NULL) AND accounts.\"id\" > 10 AND accounts.\"id\" <= 20"
        );
        assert_eq!(
            b.batch(&id(), None, Some(&strings(&["5"]))),
            "UPDATE accounts SET n = n + 1 WHERE (status = 'x' OR n IS NULL) AND accounts.\"id\" <= 5"
        );
    }

    #[test]
    fn the_rows_it_matches_are_counted_with_its_own_where() {
        let b = analyze("UPDATE orders AS o SET total = 0 WHERE o.total IS NULL", Dialect::Postgres).unwrap();
        assert_eq!(b.count_matching(), "SELECT count(*) FROM orders AS o WHERE o.total IS NULL");
        let b = analyze("INSERT INTO a (id) SELECT id FROM t WHERE kind = 'x'", Dialect::MySql).unwrap();
        assert_eq!(b.count_matching(), "SELECT count(*) FROM t WHERE kind = 'x'");
        assert_eq!(analyze("DELETE FROM t", Dialect::Sqlite).unwrap().count_matching(), "SELECT count(*) FROM t");
    }

    #[test]
    fn without_where_the_range_is_the_where() {
        let b = analyze("UPDATE Shop.Orders AS o SET total = 0", Dialect::Postgres).unwrap();
        assert_eq!(b.table, TableName { schema: Some("shop".into()), name: "orders".into() });
        assert_eq!(
            b.batch(&id(), Some(&strings(&["7"])), None),
            "UPDATE Shop.Orders AS o SET total = 0 WHERE o.\"id\" > 7"
        );
        let d = analyze("DELETE FROM `log` WHERE at < '2020-01-01'", Dialect::MySql).unwrap();
        assert_eq!(d.table, TableName::bare("log"));
        assert_eq!(
            d.batch(&id(), None, Some(&strings(&["3"]))),
            "DELETE FROM `log` WHERE (at < '2020-01-01') AND `log`.`id` <= 3"
        );
    }

    #[test]
    fn insert_select_is_batched_on_the_table_it_reads() {
        let b =
            analyze("INSERT INTO archive (id, body) SELECT id, body FROM events WHERE kind = 'old'", Dialect::Sqlite)
                .unwrap();
        assert_eq!((b.verb, b.table.name.as_str()), (Verb::InsertSelect, "events"));
        assert_eq!(
            b.batch(&id(), Some(&strings(&["1"])), Some(&strings(&["9"]))),
            "INSERT INTO archive (id, body) SELECT id, body FROM events WHERE (kind = 'old') AND events.\"id\" > 1 AND events.\"id\" <= 9"
        );
        // A subquery may count per row.
        analyze("INSERT INTO s (id, n) SELECT id, (SELECT count(*) FROM c WHERE c.t = t.id) FROM t", Dialect::Postgres)
            .unwrap();
    }

    #[test]
    fn composite_keys_compare_as_rows_or_spelled_out_on_mysql() {
        let key = vec![
            KeyColumn { name: "tenant".into(), kind: KeyKind::Text },
            KeyColumn { name: "n".into(), kind: KeyKind::Number },
        ];
        let pg = analyze("UPDATE t SET x = 1", Dialect::Postgres).unwrap();
        assert_eq!(
            pg.batch(&key, Some(&strings(&["a'b", "2"])), None),
            "UPDATE t SET x = 1 WHERE (t.\"tenant\", t.\"n\") > ('a''b', 2)"
        );
        let my = analyze("UPDATE t SET x = 1", Dialect::MySql).unwrap();
        assert_eq!(
            my.batch(&key, None, Some(&strings(&["a\\b", "2"]))),
            "UPDATE t SET x = 1 WHERE ((t.`tenant` < 'a\\\\b') OR (t.`tenant` = 'a\\\\b' AND t.`n` <= 2))"
        );
        assert_eq!(
            my.next_boundary(&key, Some(&strings(&["a", "1"])), 500),
            "SELECT `tenant`, `n` FROM t WHERE ((`tenant` > 'a') OR (`tenant` = 'a' AND `n` > 1)) ORDER BY `tenant`, `n` LIMIT 1 OFFSET 499"
        );
    }

    #[test]
    fn literals_are_written_back_as_they_were_written() {
        let same = |sql: &str, dialect| assert_eq!(analyze(sql, dialect).unwrap().batch(&id(), None, None), sql);
        same("UPDATE t SET a = 'it''s', b = E'x\\ny\\'z' WHERE c = 'd\\e'", Dialect::Postgres);
        same("UPDATE t SET a = 'it\\'s', b = 'x\\\\y', c = \"dq\" WHERE d = 'e''f'", Dialect::MySql);
        same("UPDATE t SET a = 'x''y', b = X'00ff' WHERE \"c d\" = 1", Dialect::Sqlite);
    }

    #[test]
    fn literals_are_numbers_only_when_the_column_and_the_value_are() {
        assert_eq!(literal("-12", KeyKind::Number, Dialect::MySql), "-12");
        assert_eq!(literal("1.50", KeyKind::Number, Dialect::MySql), "1.50");
        assert_eq!(literal("1e5", KeyKind::Number, Dialect::MySql), "'1e5'");
        assert_eq!(literal("12", KeyKind::Text, Dialect::Postgres), "'12'");
        assert_eq!(literal("1; DROP TABLE t", KeyKind::Number, Dialect::Postgres), "'1; DROP TABLE t'");
        assert_eq!(literal("00FF", KeyKind::Binary, Dialect::MySql), "X'00FF'");
        assert_eq!(literal("00ff", KeyKind::Binary, Dialect::Postgres), "decode('00ff', 'hex')");
        assert_eq!(literal("x'); --", KeyKind::Binary, Dialect::Sqlite), "'x''); --'");
        let bytes = vec![KeyColumn { name: "uuid".into(), kind: KeyKind::Binary }];
        let b = analyze("DELETE FROM t", Dialect::MySql).unwrap();
        assert_eq!(
            b.next_boundary(&bytes, Some(&strings(&["0A"])), 10),
            "SELECT hex(`uuid`) FROM t WHERE `uuid` > X'0A' ORDER BY `uuid` LIMIT 1 OFFSET 9"
        );
    }

    fn refused(sql: &str, dialect: Dialect) -> String {
        analyze(sql, dialect).map(|b| b.batch(&id(), None, None)).unwrap_err().reason
    }

    #[test]
    fn what_cannot_be_batched_is_refused_with_the_reason() {
        assert!(refused("UPDATE t SET x = u.x FROM u WHERE u.id = t.id", Dialect::Postgres).contains("joins"));
        assert!(refused("UPDATE t JOIN u ON u.id = t.id SET t.x = u.x", Dialect::MySql).contains("joins"));
        assert!(refused("UPDATE t SET x = 1 ORDER BY id LIMIT 10", Dialect::MySql).contains("LIMIT"));
        assert!(refused("DELETE FROM t USING u WHERE u.id = t.id", Dialect::Postgres).contains("more than one"));
        assert!(refused("DELETE FROM t WHERE x = 1 RETURNING id", Dialect::Postgres).contains("RETURNING"));
        assert!(refused("INSERT INTO s SELECT a, count(*) FROM t GROUP BY a", Dialect::Postgres).contains("groups"));
        assert!(refused("INSERT INTO s SELECT count(*) FROM t", Dialect::Postgres).contains("count(*)"));
        assert!(refused("INSERT INTO s SELECT row_number() OVER () FROM t", Dialect::Postgres).contains("row_number"));
        assert!(refused("INSERT INTO s SELECT DISTINCT a FROM t", Dialect::Sqlite).contains("groups"));
        assert!(refused("INSERT INTO s SELECT a FROM t UNION SELECT a FROM u", Dialect::Sqlite).contains("UNION"));
        assert!(refused("INSERT INTO s SELECT a FROM t JOIN u ON u.id = t.u", Dialect::Sqlite).contains("joins"));
        assert!(refused("INSERT INTO s SELECT a FROM t LIMIT 5", Dialect::Sqlite).contains("LIMIT"));
        assert!(refused("WITH x AS (SELECT 1) INSERT INTO s SELECT a FROM t", Dialect::Postgres).len() > 10);
        assert!(refused("INSERT INTO s VALUES (1)", Dialect::Postgres).contains("not a plain SELECT"));
        assert!(refused("ALTER TABLE t ADD COLUMN x int", Dialect::Postgres).contains("cannot batch `ALTER`"));
        assert!(refused("UPDATE t SET", Dialect::Postgres).contains("cannot read"));
    }

    #[test]
    fn reading_the_batched_table_again_is_refused() {
        let again = |sql: &str, dialect| refused(sql, dialect).contains("reads `");
        assert!(again(
            "UPDATE nodes SET depth = (SELECT p.depth + 1 FROM nodes p WHERE p.id = nodes.parent_id)",
            Dialect::Postgres
        ));
        assert!(again("DELETE FROM t WHERE parent_id NOT IN (SELECT id FROM t)", Dialect::Sqlite));
        assert!(again("DELETE FROM t WHERE score < (SELECT avg(score) FROM T)", Dialect::MySql));
        assert!(again("INSERT INTO t (id) SELECT id + 1000000 FROM t", Dialect::Postgres));
        assert!(again("INSERT INTO public.t (id) SELECT id FROM t WHERE id > 5", Dialect::Postgres));
        // Another table in a subquery is fine.
        analyze("UPDATE t SET total = (SELECT sum(x) FROM items i WHERE i.t_id = t.id)", Dialect::Postgres).unwrap();
        analyze(
            "INSERT INTO s (id) SELECT id FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id)",
            Dialect::Sqlite,
        )
        .unwrap();
        assert!(refused("INSERT INTO s SELECT stddev(x) FROM t", Dialect::Postgres).contains("stddev"));
        assert!(
            refused("INSERT INTO s SELECT sum(x) FILTER (WHERE x > 0) FROM t", Dialect::Postgres).contains("computes")
        );
    }

    #[test]
    fn postgres_backslashes_are_written_as_escape_strings() {
        assert_eq!(literal("a\\b'c", KeyKind::Text, Dialect::Postgres), "E'a\\\\b''c'");
        assert_eq!(literal("plain", KeyKind::Text, Dialect::Postgres), "'plain'");
    }

    #[test]
    fn setting_the_key_is_refused() {
        let b = analyze("UPDATE t SET ID = id + 1000", Dialect::Postgres).unwrap();
        assert!(b.check_key(&id()).unwrap_err().reason.contains("sets `id`"));
        analyze("UPDATE t SET other = 1", Dialect::Postgres).unwrap().check_key(&id()).unwrap();
    }
}
