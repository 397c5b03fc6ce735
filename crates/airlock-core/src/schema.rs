//! The schema model that lint and plan share: the live catalog (or nothing,
//! without a database), advanced statement by statement through the pending
//! migrations, so a rule about statement 7 knows what statements 1–6 did.
//!
//! Without a database only tables created by the migrations themselves are
//! known; every other table is [`Lookup::Unknown`], and rules say so rather
//! than guess. With the live catalog, a table that is not there is
//! [`Lookup::Missing`].

use std::collections::BTreeMap;

use airlock_sql::parse::{AlterAction, ColumnSpec, Constraint, Op};

pub use airlock_sql::parse::TableName;

/// A column with every attribute a change can lose.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Type as the engine prints it (`character varying(20)`, `bigint unsigned`).
    pub data_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// The default expression's text.
    pub default: Option<String>,
    /// MySQL `AUTO_INCREMENT` / SQLite `AUTOINCREMENT`.
    pub auto_increment: bool,
    /// PostgreSQL identity or serial.
    pub identity: bool,
    /// MySQL `UNSIGNED`.
    pub unsigned: bool,
    /// Character set (MySQL).
    pub charset: Option<String>,
    /// Collation, when not the table's default.
    pub collation: Option<String>,
    /// Comment (MySQL).
    pub comment: Option<String>,
    /// `ON UPDATE ...` (MySQL).
    pub on_update: Option<String>,
}

impl Column {
    /// A column as a statement defines it.
    pub fn from_spec(spec: &ColumnSpec) -> Column {
        Column {
            name: spec.name.clone(),
            data_type: spec.data_type.clone(),
            nullable: !spec.not_null,
            default: spec.default.as_ref().map(|d| d.text.clone()),
            auto_increment: spec.auto_increment,
            identity: spec.identity,
            unsigned: spec.unsigned,
            charset: spec.charset.clone(),
            collation: spec.collation.clone(),
            comment: spec.comment.clone(),
            on_update: spec.on_update.clone(),
        }
    }
}

/// An index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    /// Name.
    pub name: String,
    /// Indexed columns or expressions.
    pub columns: Vec<String>,
    /// UNIQUE.
    pub unique: bool,
}

/// A constraint's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstraintKind {
    /// PRIMARY KEY.
    PrimaryKey,
    /// UNIQUE.
    Unique,
    /// FOREIGN KEY.
    ForeignKey,
    /// CHECK.
    Check,
    /// Anything else.
    Other,
}

/// A constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConstraintInfo {
    /// Name (generated names are unknown without the live catalog).
    pub name: Option<String>,
    /// Kind.
    pub kind: ConstraintKind,
    /// Whether existing rows were checked (`NOT VALID` leaves it false until `VALIDATE`).
    pub validated: bool,
    /// Its definition's text for CHECK and FOREIGN KEY constraints, as
    /// `pg_get_constraintdef` prints it (`CHECK ((email IS NOT NULL))`,
    /// `FOREIGN KEY (user_id) REFERENCES users(id)`), or rebuilt from the statement.
    pub definition: Option<String>,
}

impl ConstraintInfo {
    /// A validated CHECK that proves `column` has no NULL (what lets PostgreSQL 12+
    /// `SET NOT NULL` without a scan).
    pub fn proves_not_null(&self, column: &str) -> bool {
        let Some(definition) = &self.definition else { return false };
        let text: String = definition.to_lowercase().chars().filter(|c| !matches!(c, '(' | ')' | '"')).collect();
        let text = text.trim_start_matches("check").trim();
        let text = text.strip_suffix(" not valid").unwrap_or(text);
        self.kind == ConstraintKind::Check && self.validated && text == format!("{} is not null", column.to_lowercase())
    }
}

/// Where the model learned of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The live catalog: the table has rows in production.
    Live,
    /// Created by a pending migration of this version: empty when it runs.
    Created {
        /// The migration that created it.
        version: String,
    },
}

/// A table.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// Name.
    pub name: TableName,
    /// Columns in order.
    pub columns: Vec<Column>,
    /// Indexes.
    pub indexes: Vec<Index>,
    /// Constraints.
    pub constraints: Vec<ConstraintInfo>,
    /// Trigger names.
    pub triggers: Vec<String>,
    /// Estimated rows (catalog statistics), when known.
    pub rows: Option<f64>,
    /// Total bytes, indexes included, when known.
    pub bytes: Option<i64>,
    /// Where the model learned of it.
    pub origin: Origin,
    /// The table's default character set (MySQL), for columns that name none.
    pub charset: Option<String>,
}

impl Table {
    /// An empty table created by a migration.
    pub fn created(name: TableName, version: &str) -> Table {
        Table {
            name,
            columns: Vec::new(),
            indexes: Vec::new(),
            constraints: Vec::new(),
            triggers: Vec::new(),
            rows: Some(0.0),
            bytes: Some(0),
            origin: Origin::Created { version: version.to_owned() },
            charset: None,
        }
    }

    /// The column of that name (case-insensitive, as every engine compares column names).
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The primary key's index: the one its constraint names, or else as the
    /// engines name it (`<table>_pkey`, MySQL's `PRIMARY`).
    pub fn primary_key(&self) -> Option<&Index> {
        let named =
            self.constraints.iter().find(|c| c.kind == ConstraintKind::PrimaryKey).and_then(|c| c.name.as_ref());
        self.indexes
            .iter()
            .find(|i| Some(&i.name) == named)
            .or_else(|| self.indexes.iter().find(|i| i.unique && (i.name.ends_with("_pkey") || i.name == "PRIMARY")))
    }

    fn column_mut(&mut self, name: &str) -> Option<&mut Column> {
        self.columns.iter_mut().find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// What the model knows of a table.
#[derive(Clone, Copy, Debug)]
pub enum Lookup<'a> {
    /// Known, live or created by a migration.
    Known(&'a Table),
    /// Not in the live catalog (so the statement will fail), or dropped by an earlier statement.
    Missing,
    /// No live catalog and not created by a migration: nothing is known.
    Unknown,
}

impl<'a> Lookup<'a> {
    /// The table, when known.
    pub fn table(self) -> Option<&'a Table> {
        match self {
            Lookup::Known(t) => Some(t),
            _ => None,
        }
    }
}

/// How a function's result may change (PostgreSQL's `provolatile`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Volatility {
    /// Same arguments, same result, forever.
    Immutable,
    /// Same result within a statement (`now()`).
    Stable,
    /// May change on every call (`random()`): as a column default, every row differs.
    Volatile,
}

/// The schema model.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    tables: BTreeMap<String, Table>,
    /// Schemas an unqualified name resolves to, lower-case: PostgreSQL's
    /// `current_schemas(false)`, MySQL's `DATABASE()`, SQLite's `main`.
    pub default_schemas: Vec<String>,
    /// The server, as it names itself (`10.11.6-MariaDB`, `15.4`), when live.
    pub server_version: Option<String>,
    /// Constraints added by pending statements to tables the model does not
    /// know (no database): kept so a later statement can see them.
    assumed: BTreeMap<String, Vec<ConstraintInfo>>,
    /// User functions' volatility, by lower-case name (live PostgreSQL only).
    pub functions: BTreeMap<String, Volatility>,
    /// Whether it was loaded from a live database (else only created tables are known).
    pub live: bool,
    /// The whole database's size, when the engine tells it apart from its
    /// tables' (a SQLite file's pages); else the tables' sizes add up to it.
    pub database_bytes: Option<u64>,
}

/// Schemas (databases) an unqualified name resolves to when the catalog does not say.
const DEFAULT_SCHEMAS: [&str; 2] = ["public", "main"];

impl Catalog {
    /// An empty model: no database.
    pub fn offline() -> Catalog {
        Catalog::default()
    }

    /// A model of a live database's tables, in the default schemas.
    pub fn live(tables: Vec<Table>) -> Catalog {
        Catalog::live_in(tables, &[])
    }

    /// A model of a live database's tables; unqualified names resolve to `default_schemas`.
    pub fn live_in(tables: Vec<Table>, default_schemas: &[String]) -> Catalog {
        let mut catalog = Catalog {
            tables: BTreeMap::new(),
            assumed: BTreeMap::new(),
            default_schemas: default_schemas.iter().map(|s| s.to_lowercase()).collect(),
            server_version: None,
            functions: BTreeMap::new(),
            live: true,
            database_bytes: None,
        };
        for t in tables {
            let k = catalog.key(&t.name);
            // Earlier schemas on the search path win, as they do on the server.
            catalog.tables.entry(k).or_insert(t);
        }
        catalog
    }

    /// Lookup key: the lower-cased name, qualified only outside the default schemas.
    fn key(&self, name: &TableName) -> String {
        let table = name.name.to_lowercase();
        match name.schema.as_deref().map(str::to_lowercase) {
            Some(schema) if !self.is_default_schema(&schema) => format!("{schema}.{table}"),
            _ => table,
        }
    }

    fn is_default_schema(&self, schema: &str) -> bool {
        if self.default_schemas.is_empty() {
            DEFAULT_SCHEMAS.contains(&schema)
        } else {
            self.default_schemas.iter().any(|s| s == schema)
        }
    }

    /// Whether two names resolve to the same table here (case and default
    /// schemas as the server resolves them).
    pub fn same_table(&self, a: &TableName, b: &TableName) -> bool {
        self.key(a) == self.key(b)
    }

    /// What is known of a table.
    pub fn table(&self, name: &TableName) -> Lookup<'_> {
        match self.tables.get(&self.key(name)) {
            Some(t) => Lookup::Known(t),
            None if self.live => Lookup::Missing,
            None => Lookup::Unknown,
        }
    }

    /// The constraints of a table, known or only seen added by pending statements.
    pub fn constraints(&self, name: &TableName) -> Vec<&ConstraintInfo> {
        let k = self.key(name);
        let known = self.tables.get(&k).map(|t| t.constraints.iter().collect::<Vec<_>>()).unwrap_or_default();
        known.into_iter().chain(self.assumed.get(&k).into_iter().flatten()).collect()
    }

    /// Every known table.
    pub fn tables(&self) -> impl Iterator<Item = &Table> {
        self.tables.values()
    }

    /// Advances the model through one statement of migration `version`.
    pub fn apply(&mut self, op: &Op, version: &str) {
        match op {
            Op::CreateTable { table, columns, constraints, if_not_exists, .. } => {
                let mut created = Table::created(table.clone(), version);
                created.columns = columns.iter().map(Column::from_spec).collect();
                for c in columns {
                    if c.primary_key {
                        created.constraints.push(ConstraintInfo {
                            name: None,
                            kind: ConstraintKind::PrimaryKey,
                            validated: true,
                            definition: None,
                        });
                    }
                }
                created.constraints.extend(constraints.iter().map(info));
                let k = self.key(table);
                if *if_not_exists && self.tables.contains_key(&k) {
                    // IF NOT EXISTS over a table that exists: nothing happens.
                    return;
                }
                self.tables.insert(k, created);
            }
            Op::AlterTable { table, actions } => {
                let k = self.key(table);
                let mut renamed = None;
                if !self.tables.contains_key(&k) {
                    let assumed = self.assumed.entry(k.clone()).or_default();
                    for (action, _) in actions {
                        match action {
                            AlterAction::AddConstraint(c) => assumed.push(info(c)),
                            AlterAction::ValidateConstraint { name } => {
                                for c in assumed
                                    .iter_mut()
                                    .filter(|c| c.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                                {
                                    c.validated = true;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                if let Some(t) = self.tables.get_mut(&k) {
                    for (action, _) in actions {
                        if let AlterAction::RenameTable { to } = action {
                            renamed = Some(to.clone());
                        } else {
                            alter(t, action);
                        }
                    }
                }
                if let Some(to) = renamed {
                    let new_name = TableName { schema: table.schema.clone(), name: to };
                    self.rename(table, &new_name);
                }
            }
            Op::RenameTable { from, to } => self.rename(from, to),
            Op::DropTable { tables, .. } => {
                for t in tables {
                    let k = self.key(t);
                    self.tables.remove(&k);
                }
            }
            Op::CreateIndex { name, table, columns, unique, .. } => {
                let k = self.key(table);
                if let Some(t) = self.tables.get_mut(&k) {
                    let name = name.clone().unwrap_or_else(|| format!("{}_{}_idx", t.name.name, columns.join("_")));
                    t.indexes.push(Index { name, columns: columns.clone(), unique: *unique });
                }
            }
            Op::DropIndex { names, .. } => {
                for name in names {
                    let bare = name.rsplit('.').next().unwrap_or(name);
                    for t in self.tables.values_mut() {
                        t.indexes.retain(|i| !i.name.eq_ignore_ascii_case(bare));
                    }
                }
            }
            Op::CreateTrigger { name, table } => {
                let k = self.key(table);
                if let Some(t) = self.tables.get_mut(&k) {
                    t.triggers.push(name.clone());
                }
            }
            Op::Truncate { tables, .. } => {
                for t in tables {
                    let k = self.key(t);
                    if let Some(t) = self.tables.get_mut(&k) {
                        t.rows = Some(0.0);
                    }
                }
            }
            _ => {}
        }
    }

    fn rename(&mut self, from: &TableName, to: &TableName) {
        let (from_key, to_key) = (self.key(from), self.key(to));
        if let Some(mut t) = self.tables.remove(&from_key) {
            t.name = to.clone();
            self.tables.insert(to_key, t);
        }
    }
}

fn info(c: &Constraint) -> ConstraintInfo {
    let (kind, validated) = match c {
        Constraint::PrimaryKey { .. } => (ConstraintKind::PrimaryKey, true),
        Constraint::Unique { .. } => (ConstraintKind::Unique, true),
        Constraint::ForeignKey { not_valid, .. } => (ConstraintKind::ForeignKey, !not_valid),
        Constraint::Check { not_valid, .. } => (ConstraintKind::Check, !not_valid),
        Constraint::Other { .. } => (ConstraintKind::Other, true),
    };
    let definition = match c {
        Constraint::Check { expr, .. } => Some(format!("CHECK ({})", expr.text)),
        Constraint::ForeignKey { columns, references, ref_columns, .. } => {
            Some(format!("FOREIGN KEY ({}) REFERENCES {references} ({})", columns.join(", "), ref_columns.join(", ")))
        }
        _ => None,
    };
    ConstraintInfo { name: c.name().map(str::to_owned), kind, validated, definition }
}

fn alter(t: &mut Table, action: &AlterAction) {
    match action {
        AlterAction::AddColumn(spec) => t.columns.push(Column::from_spec(spec)),
        AlterAction::DropColumn { column } => t.columns.retain(|c| !c.name.eq_ignore_ascii_case(column)),
        AlterAction::AlterColumnType { column, data_type, .. } => {
            if let Some(c) = t.column_mut(column) {
                c.data_type = data_type.clone();
            }
        }
        AlterAction::RedefineColumn { old_name, column } => {
            let target = old_name.as_deref().unwrap_or(&column.name);
            if let Some(c) = t.column_mut(target) {
                // MODIFY/CHANGE replaces the whole definition: what it omits is gone.
                *c = Column::from_spec(column);
            }
        }
        AlterAction::SetNotNull { column } => {
            if let Some(c) = t.column_mut(column) {
                c.nullable = false;
            }
        }
        AlterAction::DropNotNull { column } => {
            if let Some(c) = t.column_mut(column) {
                c.nullable = true;
            }
        }
        AlterAction::SetDefault { column, default } => {
            if let Some(c) = t.column_mut(column) {
                c.default = Some(default.text.clone());
            }
        }
        AlterAction::DropDefault { column } => {
            if let Some(c) = t.column_mut(column) {
                c.default = None;
            }
        }
        AlterAction::AddConstraint(c) => t.constraints.push(info(c)),
        AlterAction::ValidateConstraint { name } => {
            for c in
                t.constraints.iter_mut().filter(|c| c.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            {
                c.validated = true;
            }
        }
        AlterAction::DropConstraint { name } => {
            t.constraints.retain(|c| !c.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)));
        }
        AlterAction::AddIndex { name, columns, unique } => t.indexes.push(Index {
            name: name.clone().unwrap_or_else(|| columns.join("_")),
            columns: columns.clone(),
            unique: *unique,
        }),
        AlterAction::RenameColumn { from, to } => {
            if let Some(c) = t.column_mut(from) {
                c.name = to.clone();
            }
        }
        AlterAction::RenameTable { .. } | AlterAction::Other { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sql::Dialect;
    use airlock_sql::parse::parse;

    fn run(catalog: &mut Catalog, sql: &str, dialect: Dialect) {
        for op in parse(sql, dialect).unwrap() {
            catalog.apply(&op, "1");
        }
    }

    #[test]
    fn statements_advance_the_model_in_order() {
        let mut c = Catalog::offline();
        assert!(matches!(c.table(&TableName::bare("users")), Lookup::Unknown));
        run(&mut c, "CREATE TABLE users (id bigint PRIMARY KEY, email text)", Dialect::Postgres);
        run(
            &mut c,
            "ALTER TABLE users ALTER COLUMN email SET NOT NULL, ADD COLUMN age int DEFAULT 0",
            Dialect::Postgres,
        );
        run(&mut c, "CREATE UNIQUE INDEX users_email ON users (email)", Dialect::Postgres);
        run(&mut c, "ALTER TABLE users RENAME TO people", Dialect::Postgres);
        let people = c.table(&TableName::bare("people")).table().unwrap();
        assert_eq!(people.origin, Origin::Created { version: "1".into() });
        assert!(!people.column("email").unwrap().nullable);
        assert_eq!(people.column("age").unwrap().default.as_deref(), Some("0"));
        assert_eq!(people.indexes[0].name, "users_email");
        assert!(matches!(c.table(&TableName::bare("users")), Lookup::Unknown));
        run(&mut c, "DROP TABLE people", Dialect::Postgres);
        assert!(c.table(&TableName::bare("people")).table().is_none());
    }

    #[test]
    fn unqualified_names_resolve_through_the_default_schemas() {
        let mut orders = Table::created(TableName { schema: Some("app".into()), name: "orders".into() }, "");
        orders.origin = Origin::Live;
        let c = Catalog::live_in(vec![orders], &["app".to_owned()]);
        assert!(c.table(&TableName::bare("orders")).table().is_some());
        assert!(c.table(&TableName { schema: Some("app".into()), name: "Orders".into() }).table().is_some());
        assert!(matches!(c.table(&TableName { schema: Some("other".into()), name: "orders".into() }), Lookup::Missing));
        // MySQL: the current database qualifies nothing.
        let carts = Table::created(TableName::bare("carts"), "");
        let c = Catalog::live_in(vec![carts], &["shopdb".to_owned()]);
        assert!(c.table(&TableName { schema: Some("shopdb".into()), name: "carts".into() }).table().is_some());
    }

    #[test]
    fn create_if_not_exists_leaves_a_live_table_alone() {
        let mut big = Table::created(TableName::bare("t"), "");
        big.origin = Origin::Live;
        big.rows = Some(1e7);
        let mut c = Catalog::live(vec![big]);
        run(&mut c, "CREATE TABLE IF NOT EXISTS t (a int)", Dialect::Postgres);
        assert_eq!(c.table(&TableName::bare("t")).table().unwrap().rows, Some(1e7));
    }

    #[test]
    fn constraints_on_unknown_tables_are_remembered() {
        let mut c = Catalog::offline();
        run(&mut c, "ALTER TABLE users ADD CONSTRAINT nn CHECK (email IS NOT NULL) NOT VALID", Dialect::Postgres);
        assert!(!c.constraints(&TableName::bare("users"))[0].proves_not_null("email"));
        run(&mut c, "ALTER TABLE users VALIDATE CONSTRAINT nn", Dialect::Postgres);
        assert!(c.constraints(&TableName::bare("users"))[0].proves_not_null("email"));
    }

    #[test]
    fn modify_replaces_the_live_definition() {
        let live = Table {
            name: TableName::bare("carts"),
            columns: vec![Column {
                name: "cart_id".into(),
                data_type: "int".into(),
                auto_increment: true,
                comment: Some("key".into()),
                ..Column::default()
            }],
            indexes: Vec::new(),
            constraints: Vec::new(),
            triggers: Vec::new(),
            rows: Some(1e6),
            bytes: None,
            origin: Origin::Live,
            charset: None,
        };
        let mut c = Catalog::live(vec![live]);
        assert!(matches!(c.table(&TableName::bare("nope")), Lookup::Missing));
        run(&mut c, "ALTER TABLE carts MODIFY cart_id BIGINT NOT NULL", Dialect::MySql);
        let col = c.table(&TableName::bare("carts")).table().unwrap().column("cart_id").unwrap().clone();
        assert_eq!(
            (col.data_type.as_str(), col.auto_increment, col.comment, col.nullable),
            ("BIGINT", false, None, false)
        );
    }
}
