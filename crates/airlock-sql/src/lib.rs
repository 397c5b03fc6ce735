//! Splitting and classifying SQL migration text per dialect, with line numbers.
//!
//! This is a lexer, not a parser: it knows each dialect's quotes, comments,
//! dollar quotes, MySQL `DELIMITER` lines and routine/trigger bodies well
//! enough to find where statements end, and accepts any SQL in between, so
//! statements keep their exact text and byte spans.
//!
//! ```
//! use airlock_sql::{classify, split, Dialect, TxNeed};
//!
//! let source = "CREATE TABLE t (id int);\n\n-- index\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n";
//! let statements = split(source, Dialect::Postgres)?;
//! assert_eq!(statements.len(), 2);
//! assert_eq!(statements[1].line, 4);
//! assert_eq!(&source[statements[1].span.clone()], statements[1].sql);
//!
//! let info = classify(&statements[1].sql, Dialect::Postgres);
//! assert_eq!(info.tx, TxNeed::OutsideTransaction("CREATE INDEX CONCURRENTLY"));
//! assert_eq!(info.concurrent_index.as_deref(), Some("t_id"));
//! # Ok::<(), airlock_sql::SplitError>(())
//! ```

pub mod backfill;
mod block;
mod classify;
mod lexer;
pub mod parse;
mod rewrite;
mod split;

pub use classify::{StatementInfo, TxControl, TxNeed, classify};
pub use rewrite::{is_keyword, replace_column};
pub use split::{is_blank, split};

/// SQL dialect of a migration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL: nested block comments, `E'...'` strings, dollar quoting,
    /// `BEGIN ATOMIC ... END` function bodies.
    Postgres,
    /// MySQL and MariaDB: `#` comments, backslash escapes, backtick
    /// identifiers, `DELIMITER` lines, `BEGIN ... END` routine bodies.
    MySql,
    /// SQLite: `[...]` and backtick identifiers, `BEGIN ... END` trigger bodies.
    Sqlite,
}

/// One statement cut out of a migration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The statement text: from its first token (leading whitespace and
    /// comments skipped) to its end, without the terminating delimiter,
    /// trailing whitespace (and trailing comments) trimmed.
    pub sql: String,
    /// 1-based line of the statement's first token in the source text.
    pub line: usize,
    /// Byte range of `sql` in the source text (`source[span] == sql`).
    pub span: std::ops::Range<usize>,
}

/// Why a text could not be split (unterminated quote, comment, dollar quote
/// or block; a bad DELIMITER line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitError {
    /// 1-based line where the unterminated construct (or bad line) starts.
    pub line: usize,
    /// What is wrong, e.g. "unterminated block comment starting here".
    pub message: String,
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for SplitError {}
