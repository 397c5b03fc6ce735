//! Classification of one statement from its leading keywords (no parsing):
//! what it needs from a transaction, the name of a concurrently built index,
//! and a short head for messages.

use crate::Dialect;
use crate::lexer::{Lexer, TokenKind};

/// What running a statement needs from a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxNeed {
    /// Runs inside or outside a transaction.
    Any,
    /// Cannot run inside a transaction block; the string names the construct,
    /// e.g. "CREATE INDEX CONCURRENTLY", "VACUUM".
    OutsideTransaction(&'static str),
    /// The statement is itself transaction control.
    Control(TxControl),
}

/// A transaction-control statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxControl {
    /// Starts a transaction (`BEGIN`, `START TRANSACTION`).
    Begin,
    /// Commits the transaction (`COMMIT`, `END`).
    Commit,
    /// Rolls the transaction back (`ROLLBACK`, `ABORT`), not to a savepoint.
    Rollback,
}

/// Facts about one statement, from its leading keywords only (no parsing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementInfo {
    /// What running the statement needs from a transaction.
    pub tx: TxNeed,
    /// For `CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] name ON ...`
    /// on Postgres: the index name as written (schema-qualified if it is;
    /// quotes removed from a quoted identifier, unquoted names not
    /// case-folded), so a runner can find an INVALID index left by a failed
    /// attempt. None otherwise or when the name is omitted.
    pub concurrent_index: Option<String>,
    /// The first keywords, upper-cased, joined by a space (at most 3), e.g.
    /// "CREATE TABLE", "ALTER TABLE", "INSERT INTO" — for messages.
    pub head: String,
    /// A savepoint statement (`SAVEPOINT`, `RELEASE`, `ROLLBACK TO`): after
    /// it, a failed statement before it may no longer abort the
    /// transaction. A runner waits for each statement's answer before it
    /// commits a script that has one.
    pub manages_transaction: bool,
    /// MySQL's `LOCK TABLES` (Some(true)) or `UNLOCK TABLES` (Some(false)):
    /// between them the session may touch no other table.
    pub locks_tables: Option<bool>,
}

/// Classifies one statement (as cut by [`split`](crate::split)) from its
/// leading keywords, skipping leading whitespace and comments,
/// case-insensitively. Never fails: text that cannot be lexed is classified
/// from the tokens before the problem.
///
/// A MySQL statement that starts with an executable comment
/// (`/*!40101 SET ... */`) is classified from the comment's content.
pub fn classify(sql: &str, dialect: Dialect) -> StatementInfo {
    let toks = leading_tokens(sql, dialect);
    if let Some(Tok::Exec(text)) = toks.first() {
        if let Some(inner) = executable_content(text) {
            return classify(inner, dialect);
        }
    }
    let t = Toks(&toks);
    let (tx, concurrent_index) = match dialect {
        Dialect::Postgres => postgres(&t),
        Dialect::MySql => (mysql(&t), None),
        Dialect::Sqlite => (sqlite(&t), None),
    };
    let manages_transaction = t.is(0, "SAVEPOINT") || t.is(0, "RELEASE") || (t.is(0, "ROLLBACK") && t.rollback_to());
    let tables = t.is(1, "TABLES") || t.is(1, "TABLE");
    let locks_tables = match dialect {
        Dialect::MySql if tables && t.is(0, "LOCK") => Some(true),
        Dialect::MySql if tables && t.is(0, "UNLOCK") => Some(false),
        _ => None,
    };
    StatementInfo { tx, concurrent_index, head: head(&toks), manages_transaction, locks_tables }
}

/// How many non-trivia tokens classification looks at.
const MAX_TOKENS: usize = 24;

/// A leading token, reduced to what classification needs.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok<'a> {
    /// Unquoted word, as written.
    Word(&'a str),
    /// Quoted identifier, quotes removed.
    Ident(String),
    /// Single punctuation character.
    Punct(u8),
    /// MySQL executable comment, as written.
    Exec(&'a str),
    /// Anything else (strings, delimiters).
    Other,
}

fn leading_tokens(sql: &str, dialect: Dialect) -> Vec<Tok<'_>> {
    let mut lexer = Lexer::new(sql, dialect);
    let mut out = Vec::new();
    while out.len() < MAX_TOKENS {
        let Ok(Some(tok)) = lexer.next_token() else {
            break;
        };
        let text = sql.get(tok.start..tok.end).unwrap_or_default();
        out.push(match tok.kind {
            TokenKind::Whitespace | TokenKind::Comment => continue,
            TokenKind::Word => Tok::Word(text),
            TokenKind::QuotedIdent => Tok::Ident(unquote(text)),
            TokenKind::Punct => text.bytes().next().map_or(Tok::Other, Tok::Punct),
            TokenKind::ExecComment => Tok::Exec(text),
            TokenKind::String | TokenKind::Delimiter => Tok::Other,
        });
    }
    out
}

/// `"a""b"` -> `a"b`, `` `a``b` `` -> ``a`b``, `[a]` -> `a`.
fn unquote(text: &str) -> String {
    let Some(open) = text.chars().next() else {
        return String::new();
    };
    let close = if open == '[' { ']' } else { open };
    let inner = text.strip_prefix(open).and_then(|rest| rest.strip_suffix(close)).unwrap_or(text);
    if open == '[' { inner.to_owned() } else { inner.replace(&format!("{open}{open}"), &open.to_string()) }
}

/// `/*!40101 SET x */` -> ` SET x `.
fn executable_content(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("/*!").or_else(|| text.strip_prefix("/*M!"))?;
    rest.trim_start_matches(|c: char| c.is_ascii_digit()).strip_suffix("*/")
}

/// Keyword tests on the leading tokens.
struct Toks<'t, 'a>(&'t [Tok<'a>]);

impl Toks<'_, '_> {
    /// Token `i` is the unquoted word `keyword` (case-insensitive).
    fn is(&self, i: usize, keyword: &str) -> bool {
        matches!(self.0.get(i), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    /// Token `i` is one of `keywords`; returns it as given.
    fn one_of(&self, i: usize, keywords: &[&'static str]) -> Option<&'static str> {
        keywords.iter().copied().find(|k| self.is(i, k))
    }

    /// No token at `i`.
    fn ends(&self, i: usize) -> bool {
        i >= self.0.len()
    }

    /// Index of the first token after a parenthesized group at `i`, or `i`.
    fn skip_parens(&self, i: usize) -> usize {
        if self.0.get(i) != Some(&Tok::Punct(b'(')) {
            return i;
        }
        let mut depth = 0usize;
        for (k, tok) in self.0.iter().enumerate().skip(i) {
            match tok {
                Tok::Punct(b'(') => depth += 1,
                Tok::Punct(b')') => {
                    depth -= 1;
                    if depth == 0 {
                        return k + 1;
                    }
                }
                _ => {}
            }
        }
        self.0.len()
    }

    /// `ROLLBACK [WORK|TRANSACTION] TO ...` (a savepoint rollback).
    fn rollback_to(&self) -> bool {
        let i = if self.one_of(1, &["WORK", "TRANSACTION"]).is_some() { 2 } else { 1 };
        self.is(i, "TO")
    }

    /// `[IF NOT EXISTS] name ON` from token `i`: the (qualified) name.
    fn index_name(&self, mut i: usize) -> Option<String> {
        if self.is(i, "IF") && self.is(i + 1, "NOT") && self.is(i + 2, "EXISTS") {
            i += 3;
        }
        if self.is(i, "ON") {
            return None;
        }
        let mut parts = Vec::new();
        loop {
            match self.0.get(i)? {
                Tok::Word(w) => parts.push((*w).to_owned()),
                Tok::Ident(name) => parts.push(name.clone()),
                _ => return None,
            }
            i += 1;
            if self.0.get(i) == Some(&Tok::Punct(b'.')) {
                i += 1;
            } else {
                break;
            }
        }
        self.is(i, "ON").then(|| parts.join("."))
    }
}

fn control(c: TxControl) -> TxNeed {
    TxNeed::Control(c)
}

/// Postgres: statements that refuse to run in a transaction block (besides
/// the listed CONCURRENTLY forms, VACUUM and database/tablespace DDL also
/// `CREATE`/`DROP SUBSCRIPTION`, `REINDEX SCHEMA|DATABASE|SYSTEM` and
/// `COMMIT`/`ROLLBACK PREPARED`), then transaction control.
fn postgres(t: &Toks) -> (TxNeed, Option<String>) {
    use TxControl::{Begin, Commit, Rollback};
    let outside = |what| (TxNeed::OutsideTransaction(what), None);
    if t.is(0, "CREATE") {
        let i = if t.is(1, "UNIQUE") { 2 } else { 1 };
        if t.is(i, "INDEX") && t.is(i + 1, "CONCURRENTLY") {
            return (TxNeed::OutsideTransaction("CREATE INDEX CONCURRENTLY"), t.index_name(i + 2));
        }
        match t.one_of(1, &["DATABASE", "TABLESPACE", "SUBSCRIPTION"]) {
            Some("DATABASE") => return outside("CREATE DATABASE"),
            Some("TABLESPACE") => return outside("CREATE TABLESPACE"),
            Some(_) => return outside("CREATE SUBSCRIPTION"),
            None => {}
        }
    }
    if t.is(0, "DROP") {
        if t.is(1, "INDEX") && t.is(2, "CONCURRENTLY") {
            return outside("DROP INDEX CONCURRENTLY");
        }
        match t.one_of(1, &["DATABASE", "TABLESPACE", "SUBSCRIPTION"]) {
            Some("DATABASE") => return outside("DROP DATABASE"),
            Some("TABLESPACE") => return outside("DROP TABLESPACE"),
            Some(_) => return outside("DROP SUBSCRIPTION"),
            None => {}
        }
    }
    if t.is(0, "ALTER") && t.is(1, "SYSTEM") {
        return outside("ALTER SYSTEM");
    }
    if t.is(0, "REINDEX") {
        if (1..8).any(|i| t.is(i, "CONCURRENTLY")) {
            return outside("REINDEX CONCURRENTLY");
        }
        match t.one_of(t.skip_parens(1), &["SCHEMA", "DATABASE", "SYSTEM"]) {
            Some("SCHEMA") => return outside("REINDEX SCHEMA"),
            Some("DATABASE") => return outside("REINDEX DATABASE"),
            Some(_) => return outside("REINDEX SYSTEM"),
            None => {}
        }
    }
    if t.is(0, "VACUUM") {
        return outside("VACUUM");
    }
    let tx = if t.is(0, "BEGIN") {
        if t.is(1, "ATOMIC") { TxNeed::Any } else { control(Begin) }
    } else if t.is(0, "START") && t.is(1, "TRANSACTION") {
        control(Begin)
    } else if t.is(0, "COMMIT") {
        // COMMIT PREPARED finishes a two-phase transaction; it cannot run in one.
        if t.is(1, "PREPARED") {
            return outside("COMMIT PREPARED");
        }
        control(Commit)
    } else if t.is(0, "ROLLBACK") {
        if t.is(1, "PREPARED") {
            return outside("ROLLBACK PREPARED");
        }
        if t.rollback_to() { TxNeed::Any } else { control(Rollback) }
    } else if t.is(0, "END") {
        if t.ends(1) || t.one_of(1, &["TRANSACTION", "WORK", "AND"]).is_some() { control(Commit) } else { TxNeed::Any }
    } else if t.is(0, "ABORT") {
        control(Rollback)
    } else if t.is(0, "PREPARE") && t.is(1, "TRANSACTION") {
        // Ends the transaction (its work waits in a prepared one): a script
        // with it runs as written, statement by statement.
        control(Commit)
    } else {
        TxNeed::Any
    };
    (tx, None)
}

/// MySQL: transaction control only (DDL commits implicitly; not decided here).
fn mysql(t: &Toks) -> TxNeed {
    if t.is(0, "BEGIN") {
        if t.ends(1) || (t.is(1, "WORK") && t.ends(2)) { control(TxControl::Begin) } else { TxNeed::Any }
    } else if t.is(0, "START") && t.is(1, "TRANSACTION") {
        control(TxControl::Begin)
    } else if t.is(0, "COMMIT") {
        control(TxControl::Commit)
    } else if t.is(0, "ROLLBACK") && !t.rollback_to() {
        control(TxControl::Rollback)
    } else {
        TxNeed::Any
    }
}

/// SQLite: `VACUUM`, then transaction control.
fn sqlite(t: &Toks) -> TxNeed {
    if t.is(0, "BEGIN") {
        let modes = ["DEFERRED", "IMMEDIATE", "EXCLUSIVE", "TRANSACTION"];
        if t.ends(1) || t.one_of(1, &modes).is_some() { control(TxControl::Begin) } else { TxNeed::Any }
    } else if t.is(0, "COMMIT") {
        control(TxControl::Commit)
    } else if t.is(0, "END") {
        if t.ends(1) || t.is(1, "TRANSACTION") { control(TxControl::Commit) } else { TxNeed::Any }
    } else if t.is(0, "ROLLBACK") && !t.rollback_to() {
        control(TxControl::Rollback)
    } else if t.is(0, "VACUUM") {
        TxNeed::OutsideTransaction("VACUUM")
    } else {
        TxNeed::Any
    }
}

/// Words that may follow the first word of a head; the first word is always taken.
const HEAD_KEYWORDS: &[&str] = &[
    "ACCESS",
    "AGGREGATE",
    "ALL",
    "AND",
    "ATOMIC",
    "CAST",
    "CHAIN",
    "COLLATION",
    "COLUMN",
    "CONCURRENTLY",
    "CONFIGURATION",
    "CONSTRAINT",
    "CONVERSION",
    "DATA",
    "DATABASE",
    "DEFAULT",
    "DEFERRED",
    "DICTIONARY",
    "DOMAIN",
    "EVENT",
    "EXCLUSIVE",
    "EXISTS",
    "EXTENSION",
    "FOREIGN",
    "FROM",
    "FULLTEXT",
    "FUNCTION",
    "GLOBAL",
    "GROUP",
    "IF",
    "IGNORE",
    "IMMEDIATE",
    "INDEX",
    "INTO",
    "ISOLATION",
    "LANGUAGE",
    "LARGE",
    "LEVEL",
    "LOCAL",
    "LOGFILE",
    "MAPPING",
    "MATERIALIZED",
    "METHOD",
    "NOT",
    "OBJECT",
    "OPERATOR",
    "OR",
    "OWNED",
    "PACKAGE",
    "PARSER",
    "POLICY",
    "PREPARED",
    "PRIVILEGES",
    "PROCEDURE",
    "PUBLICATION",
    "RECURSIVE",
    "REPLACE",
    "ROLE",
    "ROUTINE",
    "RULE",
    "SAVEPOINT",
    "SCHEMA",
    "SEARCH",
    "SEQUENCE",
    "SERVER",
    "SESSION",
    "SPATIAL",
    "STATISTICS",
    "SUBSCRIPTION",
    "SYSTEM",
    "TABLE",
    "TABLES",
    "TABLESPACE",
    "TEMP",
    "TEMPLATE",
    "TEMPORARY",
    "TEXT",
    "TO",
    "TRANSACTION",
    "TRIGGER",
    "TYPE",
    "UNIQUE",
    "UNLOGGED",
    "USER",
    "VIEW",
    "VIRTUAL",
    "WORK",
    "WRAPPER",
];

/// Up to 3 leading unquoted words, upper-cased: the first word, then further
/// words while they are known keywords (so `DROP TABLE users` gives
/// `DROP TABLE`). Empty when the statement does not start with a word.
fn head(toks: &[Tok]) -> String {
    let mut words: Vec<String> = Vec::new();
    for tok in toks {
        let Tok::Word(w) = tok else { break };
        let keyword = HEAD_KEYWORDS.iter().any(|k| w.eq_ignore_ascii_case(k));
        if words.len() == 3 || (!words.is_empty() && !keyword) {
            break;
        }
        words.push(w.to_ascii_uppercase());
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn savepoints_manage_the_transaction_and_prepare_transaction_ends_it() {
        let pg = |sql| classify(sql, Dialect::Postgres).manages_transaction;
        for sql in ["SAVEPOINT s", "release savepoint s", "RELEASE s", "ROLLBACK TO SAVEPOINT s", "ROLLBACK WORK TO s"]
        {
            assert!(pg(sql), "{sql}");
        }
        assert_eq!(classify("PREPARE TRANSACTION 'x'", Dialect::Postgres).tx, TxNeed::Control(TxControl::Commit));
        for sql in ["ROLLBACK", "COMMIT", "PREPARE q AS SELECT 1", "CREATE TABLE savepoint_log (id int)"] {
            assert!(!pg(sql), "{sql}");
        }
        assert!(classify("SAVEPOINT s", Dialect::MySql).manages_transaction);
    }

    #[test]
    fn unquotes_identifiers() {
        assert_eq!(unquote("\"a\"\"b\""), "a\"b");
        assert_eq!(unquote("`a``b`"), "a`b");
        assert_eq!(unquote("[a]"), "a");
        assert_eq!(unquote(""), "");
    }

    #[test]
    fn executable_comment_content() {
        assert_eq!(executable_content("/*!40101 SET x */"), Some(" SET x "));
        assert_eq!(executable_content("/*M!100100 SET x*/"), Some(" SET x"));
        assert_eq!(executable_content("/* x */"), None);
    }

    #[test]
    fn mysql_lock_tables_opens_and_unlock_closes() {
        assert_eq!(classify("LOCK TABLES t WRITE", Dialect::MySql).locks_tables, Some(true));
        assert_eq!(classify("unlock tables", Dialect::MySql).locks_tables, Some(false));
        assert_eq!(classify("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", Dialect::Postgres).locks_tables, None);
        assert_eq!(classify("SELECT 1", Dialect::MySql).locks_tables, None);
    }
}
