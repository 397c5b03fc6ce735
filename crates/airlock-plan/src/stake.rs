//! What a statement puts at stake: the tables that exist before the pending
//! migrations and whose rows or definition it changes (alters, drops,
//! truncates, renames, writes), so that a backup taken before the run holds
//! what could have to come back. Errs towards more: rows a cascade reaches
//! (a foreign key's `ON DELETE CASCADE`, `TRUNCATE ... CASCADE`) are at
//! stake with the table written, and a statement whose reach cannot be told
//! (a write to a table with triggers, a procedure call, `COPY`, a `DROP ...
//! CASCADE` of a type or schema, anything unparsed) puts the whole database
//! at stake. Pure.

use airlock_core::schema::{Catalog, ConstraintKind, Origin, TableName};
use airlock_sql::parse::{DO_UNSEEN, Op};

/// What one statement puts at stake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stake {
    /// These tables of the live database (none for a statement that only
    /// makes new objects or changes no rows).
    Tables(Vec<TableName>),
    /// Any table may change: why, said to a person.
    Everything(String),
}

/// What `op` (of the statement `sql`) puts at stake, with `catalog` the
/// schema model just before it.
pub fn at_stake(op: &Op, sql: &str, catalog: &Catalog) -> Stake {
    let tables: Vec<&TableName> = match op {
        Op::AlterTable { table, .. } => vec![table],
        Op::RenameTable { from, .. } => vec![from],
        Op::DropTable { tables, .. } => tables.iter().collect(),
        Op::Truncate { tables, cascade } => {
            if let Some(why) = triggers_of(catalog, tables.iter()) {
                return Stake::Everything(why);
            }
            let mut reached: Vec<TableName> = tables.clone();
            if *cascade {
                reached = with_referencing(catalog, reached);
            }
            return Stake::Tables(live(catalog, reached.iter()));
        }
        Op::Insert { table } | Op::Update { table, .. } | Op::Delete { table, .. } => {
            if let Some(why) = triggers_of(catalog, [table]) {
                return Stake::Everything(why);
            }
            // An update or delete reaches the rows that reference it through a foreign key's action.
            let reached = match op {
                Op::Insert { .. } => vec![table.clone()],
                _ => with_referencing(catalog, vec![table.clone()]),
            };
            return Stake::Tables(live(catalog, reached.iter()));
        }
        Op::Other { kind } => return other(kind, sql),
        Op::CreateTable { .. }
        | Op::CreateIndex { .. }
        | Op::DropIndex { .. }
        | Op::Vacuum { .. }
        | Op::Cluster { .. }
        | Op::Reindex { .. }
        | Op::CreateTrigger { .. }
        | Op::CreateView { .. }
        | Op::DropView { .. }
        | Op::Comment { .. }
        | Op::AddEnumValue { .. }
        | Op::Transaction(_) => Vec::new(),
    };
    Stake::Tables(live(catalog, tables.into_iter()))
}

/// A statement the parser names only by kind: those known to change no
/// rows of existing tables put nothing at stake; the rest, everything.
fn other(kind: &str, sql: &str) -> Stake {
    let everything = || Stake::Everything(format!("airlock cannot tell which tables a `{kind}` statement changes"));
    if kind == DO_UNSEEN || kind == "MERGE" {
        return everything();
    }
    let cascade = sql.to_ascii_lowercase().split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == "cascade");
    if kind.starts_with("DROP") {
        // Without CASCADE a drop fails while anything still uses what it drops;
        // with it, a type's or a schema's drop takes columns and tables along.
        return if cascade {
            Stake::Everything(format!("a `{kind} ... CASCADE` drops whatever uses it, tables' columns included"))
        } else {
            Stake::Tables(Vec::new())
        };
    }
    const CHANGE_NO_ROWS: &[&str] = &[
        "CREATE",
        "GRANT",
        "REVOKE",
        "COMMENT",
        "SET",
        "VARIABLE SET",
        "VARIABLE SHOW",
        "SHOW",
        "SELECT",
        "EXPLAIN",
        "ANALYZE",
        "LOCK",
        "NOTIFY",
        "VIEW",
        "DEFINE",
        "COMPOSITE TYPE",
        "RULE",
        "ALTER SEQ",
        "ALTER SEQUENCE",
        "ALTER FUNCTION",
        "ALTER OWNER",
        "ALTER DEFAULT PRIVILEGES",
        "ALTER ROLE",
        "ALTER DOMAIN",
        "ALTER ENUM",
    ];
    let harmless = CHANGE_NO_ROWS.iter().any(|k| kind == *k || kind.starts_with(&format!("{k} ")))
        || (kind.starts_with("ALTER") && kind.ends_with("RENAME"));
    if harmless { Stake::Tables(Vec::new()) } else { everything() }
}

/// The tables of `tables` that exist in the live database (not made by a
/// pending migration: there is nothing of them to save), as it names them.
fn live<'a>(catalog: &Catalog, tables: impl Iterator<Item = &'a TableName>) -> Vec<TableName> {
    let mut out: Vec<TableName> = Vec::new();
    for name in tables {
        let Some(table) = catalog.table(name).table() else { continue };
        if table.origin == Origin::Live && !out.iter().any(|t| catalog.same_table(t, &table.name)) {
            out.push(table.name.clone());
        }
    }
    out
}

/// Why writing to one of `tables` may change any table: it has triggers.
fn triggers_of<'a>(catalog: &Catalog, tables: impl IntoIterator<Item = &'a TableName>) -> Option<String> {
    tables.into_iter().find_map(|name| {
        let table = catalog.table(name).table()?;
        (!table.triggers.is_empty()).then(|| {
            format!("`{}` has triggers ({}), which may write any table", table.name.name, table.triggers.join(", "))
        })
    })
}

/// `tables` and every table that references one of them through a foreign
/// key, again and again (an action may cascade further); a foreign key the
/// model cannot read counts as referencing every table.
fn with_referencing(catalog: &Catalog, mut tables: Vec<TableName>) -> Vec<TableName> {
    let mut i = 0;
    while i < tables.len() {
        let target = tables[i].clone();
        for table in catalog.tables() {
            if tables.iter().any(|t| catalog.same_table(t, &table.name)) {
                continue;
            }
            let references =
                table.constraints.iter().filter(|c| c.kind == ConstraintKind::ForeignKey).any(|c| {
                    match c.definition.as_deref().and_then(referenced) {
                        Some(referenced) => catalog.same_table(&referenced, &target),
                        None => true,
                    }
                });
            if references {
                tables.push(table.name.clone());
            }
        }
        i += 1;
    }
    tables
}

/// The table a foreign key's definition references:
/// `FOREIGN KEY (a) REFERENCES billing."Users"(id) ...` → `billing.Users`.
fn referenced(definition: &str) -> Option<TableName> {
    let at = definition.to_ascii_uppercase().find("REFERENCES ")? + "REFERENCES ".len();
    let rest = definition[at..].trim_start();
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut quote: Option<char> = None;
    for c in rest.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => part.push(c),
            (None, '"' | '`') => quote = Some(c),
            (None, '.') => parts.push(std::mem::take(&mut part)),
            (None, c) if c == '(' || c.is_whitespace() => break,
            (None, c) => part.push(c),
        }
    }
    parts.push(part);
    match parts.as_slice() {
        [.., schema, name] => Some(TableName { schema: Some(schema.clone()), name: name.clone() }),
        [name] if !name.is_empty() => Some(TableName::bare(name)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::schema::{ConstraintInfo, Table};
    use airlock_sql::Dialect;

    fn table(name: &str) -> Table {
        let mut t = Table::created(TableName::bare(name), "0");
        t.origin = Origin::Live;
        t
    }

    fn referencing(name: &str, definition: &str) -> Table {
        let mut t = table(name);
        t.constraints.push(ConstraintInfo {
            name: Some(format!("{name}_fk")),
            kind: ConstraintKind::ForeignKey,
            validated: true,
            definition: Some(definition.to_owned()),
        });
        t
    }

    fn catalog() -> Catalog {
        let mut audited = table("audited");
        audited.triggers.push("audited_log".to_owned());
        Catalog::live(vec![
            table("carts"),
            table("users"),
            referencing("orders", "FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE"),
            referencing("lines", "FOREIGN KEY (order_id) REFERENCES public.\"orders\"(id)"),
            referencing("notes", "FOREIGN KEY (cart) REFERENCES `carts` (`id`) ON DELETE SET NULL"),
            audited,
        ])
    }

    /// What a script puts at stake on `catalog`, advancing it statement by
    /// statement as a run does: the tables' names, or "everything: why".
    fn stake(sql: &str, dialect: Dialect) -> Vec<String> {
        let mut catalog = catalog();
        let mut out = Vec::new();
        for statement in airlock_sql::split(sql, dialect).unwrap() {
            for op in airlock_sql::parse::parse(&statement.sql, dialect).unwrap() {
                match at_stake(&op, &statement.sql, &catalog) {
                    Stake::Tables(tables) => out.extend(tables.into_iter().map(|t| t.name)),
                    Stake::Everything(why) => out.push(format!("everything: {why}")),
                }
                catalog.apply(&op, "1");
            }
        }
        out
    }

    #[test]
    fn what_a_statement_changes_of_existing_tables_is_at_stake() {
        let pg = |sql| stake(sql, Dialect::Postgres);
        assert_eq!(pg("ALTER TABLE carts ALTER COLUMN id TYPE bigint"), ["carts"]);
        assert_eq!(pg("DROP TABLE carts, users"), ["carts", "users"]);
        assert_eq!(pg("ALTER TABLE carts RENAME TO baskets"), ["carts"]);
        assert_eq!(pg("INSERT INTO carts VALUES (1)"), ["carts"]);
        assert_eq!(pg("TRUNCATE carts"), ["carts"]);
        // Names as the server resolves them: one table, once.
        assert_eq!(pg("UPDATE public.CARTS SET a = 1; DELETE FROM carts"), ["carts", "notes", "carts", "notes"]);
        // New objects, and what changes no rows, put nothing at stake.
        assert!(pg("CREATE TABLE t (id int); CREATE INDEX i ON carts (id); CREATE VIEW v AS SELECT 1").is_empty());
        assert!(pg("COMMENT ON TABLE carts IS 'x'; GRANT SELECT ON carts TO app; DROP FUNCTION f()").is_empty());
        assert!(pg("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'; SELECT 1; DROP INDEX i").is_empty());
        // A table a pending statement made has nothing to save.
        assert!(pg("CREATE TABLE t (id int); INSERT INTO t VALUES (1); ALTER TABLE t ADD b int").is_empty());
        let my = |sql| stake(sql, Dialect::MySql);
        assert_eq!(my("ALTER TABLE carts MODIFY cart_id BIGINT NOT NULL"), ["carts"]);
        assert_eq!(my("RENAME TABLE carts TO baskets"), ["carts"]);
    }

    #[test]
    fn rows_a_cascade_reaches_are_at_stake_too() {
        let pg = |sql| stake(sql, Dialect::Postgres);
        // users ← orders (ON DELETE CASCADE) ← lines: every level.
        assert_eq!(pg("DELETE FROM users WHERE id = 1"), ["users", "orders", "lines"]);
        assert_eq!(pg("UPDATE carts SET id = id + 1"), ["carts", "notes"]);
        assert_eq!(pg("TRUNCATE orders CASCADE"), ["orders", "lines"]);
        assert_eq!(pg("TRUNCATE orders"), ["orders"]);
        // An insert changes no other table's rows.
        assert_eq!(pg("INSERT INTO users VALUES (1)"), ["users"]);
    }

    #[test]
    fn what_can_reach_any_table_puts_everything_at_stake() {
        let pg = |sql| stake(sql, Dialect::Postgres);
        assert_eq!(
            pg("UPDATE audited SET a = 1"),
            ["everything: `audited` has triggers (audited_log), which may write any table"]
        );
        assert_eq!(
            pg("DROP TYPE mood CASCADE"),
            ["everything: a `DROP TYPE ... CASCADE` drops whatever uses it, tables' columns included"]
        );
        for sql in ["CALL archive()", "COPY carts FROM '/tmp/x'", "DO $$BEGIN EXECUTE 'DROP TABLE carts'; END$$"] {
            let stake = pg(sql);
            assert!(stake.len() == 1 && stake[0].starts_with("everything: airlock cannot tell"), "{sql}: {stake:?}");
        }
    }

    #[test]
    fn a_foreign_keys_referenced_table_is_read_off_its_definition() {
        let name = |d| referenced(d).map(|t| (t.schema, t.name));
        assert_eq!(name("FOREIGN KEY (a) REFERENCES users(id)"), Some((None, "users".into())));
        assert_eq!(
            name("FOREIGN KEY (a) REFERENCES billing.\"Us.ers\"(id) ON DELETE CASCADE"),
            Some((Some("billing".into()), "Us.ers".into()))
        );
        assert_eq!(name("FOREIGN KEY (`a`) REFERENCES `carts` (`id`)"), Some((None, "carts".into())));
        assert_eq!(name("CHECK (a > 0)"), None);
    }
}
