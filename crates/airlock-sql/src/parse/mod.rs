//! Parsing one statement into airlock's own model of what it does to a schema:
//! [`Op`]s over tables, columns, constraints and indexes. Lint rules and plan
//! checks read these; the parser crates' types never leave this module.
//!
//! PostgreSQL statements are parsed by `pg_query`, PostgreSQL's own parser, so
//! exactly what the server accepts is accepted. MySQL/MariaDB and SQLite go
//! through `sqlparser`. A statement either parser refuses is a [`ParseError`]:
//! callers report it and go on, they never fail on bad SQL.

mod generic;
#[cfg(feature = "postgres-parser")]
mod postgres;

use crate::Dialect;

/// A table name as the server resolves it: unquoted identifiers folded the
/// way the engine folds them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// The schema (PostgreSQL) or database (MySQL), when the statement names one.
    pub schema: Option<String>,
    /// The table.
    pub name: String,
}

impl TableName {
    /// A name without a schema.
    pub fn bare(name: &str) -> TableName {
        TableName { schema: None, name: name.to_owned() }
    }

    /// From a dotted name's parts: the last is the table, the one before it the schema.
    pub(crate) fn from_parts(parts: &[String]) -> TableName {
        match parts {
            [.., schema, name] => TableName { schema: Some(schema.clone()), name: name.clone() },
            [name] => TableName::bare(name),
            [] => TableName::bare("?"),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// An expression as far as rules care: its text, and the functions it calls.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Expr {
    /// Approximately as written (for messages and fixes).
    pub text: String,
    /// Functions called anywhere in it, lower-case, schema dropped.
    pub functions: Vec<String>,
}

/// A column as a statement defines it. `None`/`false` mean "not written".
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ColumnSpec {
    /// The column's name.
    pub name: String,
    /// The type as the engine names it (`bigint`, `character varying(20)`, `int unsigned`).
    pub data_type: String,
    /// `NOT NULL` (or `PRIMARY KEY`) written.
    pub not_null: bool,
    /// `NULL` written explicitly.
    pub explicit_null: bool,
    /// A column-level `CHECK (...)`.
    pub check: Option<Expr>,
    /// `DEFAULT ...` written.
    pub default: Option<Expr>,
    /// MySQL `AUTO_INCREMENT`, SQLite `AUTOINCREMENT`.
    pub auto_increment: bool,
    /// PostgreSQL `GENERATED ... AS IDENTITY` or `serial` types.
    pub identity: bool,
    /// MySQL `UNSIGNED`.
    pub unsigned: bool,
    /// MySQL `CHARACTER SET`.
    pub charset: Option<String>,
    /// `COLLATE`.
    pub collation: Option<String>,
    /// MySQL `COMMENT '...'`.
    pub comment: Option<String>,
    /// MySQL `ON UPDATE ...`.
    pub on_update: Option<String>,
    /// `PRIMARY KEY` on the column.
    pub primary_key: bool,
    /// `UNIQUE` on the column.
    pub unique: bool,
    /// `REFERENCES` on the column.
    pub references: Option<TableName>,
    /// `GENERATED ALWAYS AS (...) STORED`.
    pub generated_stored: bool,
    /// Byte offset of the definition in the statement.
    pub at: usize,
}

/// A table constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // variant fields are named as in SQL
pub enum Constraint {
    /// `PRIMARY KEY (...)`, possibly `USING INDEX name`.
    PrimaryKey { name: Option<String>, columns: Vec<String>, using_index: Option<String> },
    /// `UNIQUE (...)`, possibly `USING INDEX name`.
    Unique { name: Option<String>, columns: Vec<String>, using_index: Option<String> },
    /// `FOREIGN KEY (...) REFERENCES t (...)`.
    ForeignKey {
        name: Option<String>,
        columns: Vec<String>,
        references: TableName,
        ref_columns: Vec<String>,
        not_valid: bool,
    },
    /// `CHECK (...)`.
    Check { name: Option<String>, expr: Expr, not_valid: bool },
    /// Anything else (exclusion constraints...).
    Other { name: Option<String>, kind: String },
}

impl Constraint {
    /// The constraint's name, when written.
    pub fn name(&self) -> Option<&str> {
        match self {
            Constraint::PrimaryKey { name, .. }
            | Constraint::Unique { name, .. }
            | Constraint::ForeignKey { name, .. }
            | Constraint::Check { name, .. }
            | Constraint::Other { name, .. } => name.as_deref(),
        }
    }
}

/// One action of an `ALTER TABLE`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // variant fields are named as in SQL
pub enum AlterAction {
    /// `ADD COLUMN`.
    AddColumn(ColumnSpec),
    /// `DROP COLUMN`.
    DropColumn { column: String },
    /// PostgreSQL `ALTER COLUMN ... TYPE ...`.
    AlterColumnType { column: String, data_type: String, using: Option<Expr> },
    /// MySQL `MODIFY` (`old_name` None) or `CHANGE old new ...`: the whole definition again.
    RedefineColumn { old_name: Option<String>, column: ColumnSpec },
    /// `ALTER COLUMN ... SET NOT NULL`.
    SetNotNull { column: String },
    /// `ALTER COLUMN ... DROP NOT NULL`.
    DropNotNull { column: String },
    /// `ALTER COLUMN ... SET DEFAULT`.
    SetDefault { column: String, default: Expr },
    /// `ALTER COLUMN ... DROP DEFAULT`.
    DropDefault { column: String },
    /// `ADD CONSTRAINT` / `ADD PRIMARY KEY` / ...
    AddConstraint(Constraint),
    /// `VALIDATE CONSTRAINT`.
    ValidateConstraint { name: String },
    /// `DROP CONSTRAINT` / MySQL `DROP FOREIGN KEY`.
    DropConstraint { name: String },
    /// MySQL `ADD INDEX` / `ADD UNIQUE INDEX` inside `ALTER TABLE`.
    AddIndex { name: Option<String>, columns: Vec<String>, unique: bool },
    /// `RENAME COLUMN a TO b`.
    RenameColumn { from: String, to: String },
    /// `RENAME TO t2`.
    RenameTable { to: String },
    /// Anything else, named.
    Other { what: String },
}

/// What a `COMMENT ON` describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommentOn {
    /// A table, view or materialized view.
    Relation {
        /// Its name.
        table: TableName,
        /// Which it is, as the statement says.
        kind: RelationKind,
    },
    /// A column of a relation.
    Column(TableName),
    /// An index, by name.
    Index(String),
    /// Another kind of object (`SCHEMA`, `FUNCTION`, `CONSTRAINT`...).
    Other(String),
}

/// What kind of relation a statement names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelationKind {
    /// A table.
    Table,
    /// A view.
    View,
    /// A materialized view.
    MaterializedView,
}

/// A transaction-control statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxKind {
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT` / `END`.
    Commit,
    /// `ROLLBACK`.
    Rollback,
    /// Savepoints and two-phase commands.
    Other,
}

/// What a statement does, as rules need to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // variant fields are named as in SQL
pub enum Op {
    /// `CREATE TABLE`.
    CreateTable {
        table: TableName,
        columns: Vec<ColumnSpec>,
        constraints: Vec<Constraint>,
        as_select: bool,
        if_not_exists: bool,
    },
    /// `ALTER TABLE` with its actions, each with its byte offset when known.
    AlterTable { table: TableName, actions: Vec<(AlterAction, usize)> },
    /// `CREATE INDEX`.
    CreateIndex { name: Option<String>, table: TableName, columns: Vec<String>, unique: bool, concurrently: bool },
    /// `DROP INDEX`.
    DropIndex { names: Vec<String>, concurrently: bool },
    /// `DROP TABLE`.
    DropTable { tables: Vec<TableName>, cascade: bool },
    /// `ALTER TABLE ... RENAME TO` / `RENAME TABLE`.
    RenameTable { from: TableName, to: TableName },
    /// `TRUNCATE`.
    Truncate { tables: Vec<TableName>, cascade: bool },
    /// `INSERT`.
    Insert { table: TableName },
    /// `UPDATE`.
    Update { table: TableName, has_where: bool },
    /// `DELETE`.
    Delete { table: TableName, has_where: bool },
    /// `VACUUM` (PostgreSQL), with `FULL`.
    Vacuum { full: bool, tables: Vec<TableName> },
    /// `CLUSTER`.
    Cluster { table: Option<TableName> },
    /// `REINDEX`.
    Reindex { concurrently: bool, target: String },
    /// `CREATE TRIGGER`.
    CreateTrigger { name: String, table: TableName },
    /// `CREATE [OR REPLACE] [MATERIALIZED] VIEW`.
    CreateView { view: TableName, materialized: bool },
    /// `DROP [MATERIALIZED] VIEW`.
    DropView { views: Vec<TableName>, cascade: bool, materialized: bool },
    /// `COMMENT ON`.
    Comment { on: CommentOn },
    /// `ALTER TYPE ... ADD VALUE`.
    AddEnumValue { type_name: String },
    /// `BEGIN`, `COMMIT`...
    Transaction(TxKind),
    /// Anything else: the statement's kind, e.g. `CREATE FUNCTION`, `SELECT`.
    Other { kind: String },
}

impl Op {
    /// Changes rows rather than the schema.
    pub fn is_dml(&self) -> bool {
        matches!(self, Op::Insert { .. } | Op::Update { .. } | Op::Delete { .. })
            || matches!(self, Op::Other { kind } if kind == "MERGE")
    }

    /// Changes the schema.
    pub fn is_ddl(&self) -> bool {
        match self {
            Op::CreateTable { .. }
            | Op::AlterTable { .. }
            | Op::CreateIndex { .. }
            | Op::DropIndex { .. }
            | Op::DropTable { .. }
            | Op::RenameTable { .. }
            | Op::CreateTrigger { .. }
            | Op::CreateView { .. }
            | Op::DropView { .. }
            | Op::Comment { .. }
            | Op::AddEnumValue { .. } => true,
            Op::Other { kind } => {
                ["CREATE", "ALTER", "DROP", "COMMENT", "GRANT", "REVOKE", "RENAME"].iter().any(|k| kind.starts_with(k))
                    // pg_query names some CREATE forms by their node: ViewStmt, CompositeTypeStmt, DefineStmt...
                    || ["VIEW", "COMPOSITE TYPE", "DEFINE", "RULE", "TRUNCATE"].contains(&kind.as_str())
            }
            _ => false,
        }
    }
}

/// The kind of `Op::Other` for a PostgreSQL `DO` block airlock cannot see
/// all of: it runs dynamic SQL (`EXECUTE`), is in another language, or its
/// body does not parse.
pub const DO_UNSEEN: &str = "DO (dynamic SQL)";

/// A statement the parser refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The parser's message.
    pub message: String,
    /// Byte offset in the statement where the parser stopped, when it says.
    pub position: Option<usize>,
    /// The engine's own parser refused it (PostgreSQL's), so the server
    /// will too; false for a general parser (sqlparser) that may lag the engine.
    pub certain: bool,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The PostgreSQL major version whose grammar `pg_query` carries: a newer
/// server may accept statements this parser refuses.
pub const PARSER_POSTGRES_MAJOR: u32 = 17;

/// Parses one statement (as `split` returns it) into what it does. A statement
/// may hold several ops (`ALTER TABLE` with several actions stays one op).
pub fn parse(sql: &str, dialect: Dialect) -> Result<Vec<Op>, ParseError> {
    match dialect {
        #[cfg(feature = "postgres-parser")]
        Dialect::Postgres => postgres::parse(sql),
        #[cfg(not(feature = "postgres-parser"))]
        Dialect::Postgres => generic::parse(sql, dialect),
        Dialect::MySql | Dialect::Sqlite => generic::parse(sql, dialect),
    }
}
