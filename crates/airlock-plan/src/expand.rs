//! Expand/contract: one statement that renames a column or changes its type,
//! as a developer writes it, turned into migrations that keep the release
//! running now and the next one working at every step:
//!
//! 1. **expand**: the new column, and a trigger that keeps the old and the
//!    new column equal in both directions on every insert and update;
//! 2. **backfill** (`-- airlock:backfill`): copies the rows written before
//!    the trigger, in batches;
//! 3. **constraints** (when the old column has any): its indexes, foreign
//!    keys, checks and NOT NULL built again on the new column, online;
//! 4. **contract** (`-- airlock:contract`): the trigger and the old column
//!    dropped, the new column given the old one's default, NOT NULL and
//!    index names. `migrate` stops before it until `--contract`.
//!
//! The trigger decides which side an application wrote by what changed: an
//! insert that sets the new column wins over the old one (which may hold only
//! its default); an update that changes the new column (to other than the
//! old one's value converted) is copied back to the old, else one that
//! changes the old column is copied forward. Neither writes a row again, so
//! nothing recurses. Pure: the statement and the live table in, files out.

use airlock_core::schema::{Catalog, Column, ConstraintKind, Table};
use airlock_sql::Dialect;
use airlock_sql::parse::{AlterAction, Op, TableName};

/// How the triggers an expand creates are named (`airlock_sync_<table>_<column>`).
pub const SYNC_TRIGGER_PREFIX: &str = "airlock_sync_";

/// What the statement asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// `RENAME COLUMN from TO to` (MySQL: `CHANGE from to <same type>`).
    Rename {
        /// The name now.
        from: String,
        /// The name after.
        to: String,
    },
    /// `ALTER COLUMN c TYPE t [USING e]` (MySQL: `MODIFY c t`).
    Retype {
        /// The column.
        column: String,
        /// Its type after.
        to_type: String,
        /// How the old value converts, when the statement says.
        using: Option<String>,
    },
    /// `ALTER TABLE t RENAME TO u` (MySQL also `RENAME TABLE t TO u`).
    RenameTable {
        /// The name after.
        to: String,
    },
}

/// One migration of the expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phase {
    /// `expand`, `backfill`, `constraints` or `contract`: the file's name ends with it.
    pub name: &'static str,
    /// The up script.
    pub up: String,
    /// The down script, when the phase can be undone.
    pub down: Option<String>,
}

/// The migrations for one statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expansion {
    /// The table changed.
    pub table: TableName,
    /// What changes.
    pub change: Change,
    /// In order.
    pub phases: Vec<Phase>,
}

/// An index of the table as the engine would create it again: its name, and
/// `CREATE [UNIQUE] INDEX name ON table ...` as the server prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexDefinition {
    /// The index's name.
    pub name: String,
    /// The statement that creates it.
    pub definition: String,
}

/// Why a statement cannot be expanded, with what to do instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

const SQLITE_RECIPE: &str = "SQLite has no triggers that can keep two columns in step across app versions the way this needs; expand/contract is not supported there: use a table rebuild migration (CREATE TABLE new_t with the new column; INSERT INTO new_t SELECT ... FROM t; DROP TABLE t; ALTER TABLE new_t RENAME TO t; in one transaction, with `PRAGMA foreign_keys` off around it), deployed with the app that uses the new name";

/// What a file asks to expand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The table.
    pub table: TableName,
    /// The change.
    pub change: StatementChange,
    /// The statement as written, on one line, without its `;`.
    pub statement: String,
}

/// The table and change `sql` asks for: exactly one `ALTER TABLE` with one
/// column rename or type change (comments around it allowed).
pub fn change_of(sql: &str, dialect: Dialect) -> Result<Request, Refusal> {
    if dialect == Dialect::Sqlite {
        return Err(Refusal(SQLITE_RECIPE.to_owned()));
    }
    let statements = airlock_sql::split(sql, dialect).map_err(|e| Refusal(format!("it does not read as SQL: {e}")))?;
    let [one] = statements.as_slice() else {
        return Err(Refusal(format!(
            "expand takes one statement, a column rename or type change; this has {}",
            statements.len()
        )));
    };
    if one.sql.contains("--") || one.sql.contains("/*") {
        return Err(Refusal("take the comments out of the statement itself (above it they may stay)".to_owned()));
    }
    let statement = one.sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let ops = airlock_sql::parse::parse(&one.sql, dialect).map_err(|e| Refusal(format!("it does not parse: {e}")))?;
    if let [Op::RenameTable { from, to }] = ops.as_slice() {
        if to.schema.is_some() && to.schema != from.schema {
            return Err(Refusal("expand renames a table within its schema, not into another one".to_owned()));
        }
        let change = StatementChange::Known(Change::RenameTable { to: to.name.clone() });
        return Ok(Request { table: from.clone(), change, statement });
    }
    let [Op::AlterTable { table, actions }] = ops.as_slice() else {
        return Err(Refusal(format!(
            "expand takes one ALTER TABLE that renames a column or changes its type; this is {} statement(s){}",
            ops.len(),
            if ops.len() == 1 { " of another kind" } else { "" }
        )));
    };
    let [(action, _)] = actions.as_slice() else {
        return Err(Refusal(
            "expand takes an ALTER TABLE with one change (a column rename or a type change); write one statement per change"
                .to_owned(),
        ));
    };
    let change = match action {
        AlterAction::RenameColumn { from, to } => {
            StatementChange::Known(Change::Rename { from: from.clone(), to: to.clone() })
        }
        AlterAction::AlterColumnType { column, data_type, using } => StatementChange::Known(Change::Retype {
            column: column.clone(),
            to_type: data_type.clone(),
            // As written: the parser's text of it is approximate.
            using: using.as_ref().map(|_| using_as_written(&one.sql)),
        }),
        AlterAction::RedefineColumn { old_name, column } => StatementChange::Redefine {
            old: old_name.clone().unwrap_or_else(|| column.name.clone()),
            new: column.name.clone(),
            data_type: column.data_type.clone(),
        },
        AlterAction::RenameTable { to } => StatementChange::Known(Change::RenameTable { to: to.clone() }),
        other => {
            return Err(Refusal(format!("expand handles a column rename or type change, not {}", describe(other))));
        }
    };
    Ok(Request { table: table.clone(), change, statement })
}

/// A change as the statement says it; MySQL's `CHANGE`/`MODIFY` repeats the
/// whole column, so whether it renames or retypes is known against the live column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatementChange {
    /// The statement says which.
    Known(Change),
    /// `CHANGE old new type` / `MODIFY old type`.
    Redefine {
        /// The column's name now.
        old: String,
        /// Its name after.
        new: String,
        /// Its type after.
        data_type: String,
    },
}

/// The text after the statement's last word `USING`, as written.
fn using_as_written(statement: &str) -> String {
    let upper = statement.to_ascii_uppercase();
    let bytes = upper.as_bytes();
    let word_at = |at: usize| {
        at > 0
            && bytes[at - 1].is_ascii_whitespace()
            && bytes.get(at + "USING".len()).is_some_and(u8::is_ascii_whitespace)
    };
    match upper.match_indices("USING").map(|(at, _)| at).filter(|at| word_at(*at)).last() {
        Some(at) => statement[at + "USING".len()..].trim().to_owned(),
        None => String::new(),
    }
}

fn describe(action: &AlterAction) -> String {
    match action {
        AlterAction::AddColumn(c) => format!("ADD COLUMN {}", c.name),
        AlterAction::DropColumn { column } => format!("DROP COLUMN {column}"),
        AlterAction::Other { what } => what.clone(),
        _ => "this change".to_owned(),
    }
}

/// The migrations that make `change` to `table` without a moment where the
/// running app or the next one breaks. `indexes` are the table's indexes as
/// the server would create them again.
pub fn expand(
    request: &Request,
    table: &Table,
    catalog: &Catalog,
    indexes: &[IndexDefinition],
    dialect: Dialect,
) -> Result<Expansion, Refusal> {
    if dialect == Dialect::Sqlite {
        return Err(Refusal(SQLITE_RECIPE.to_owned()));
    }
    let table_name = &request.table;
    if let StatementChange::Known(Change::RenameTable { to }) = &request.change {
        return table_rename(request, catalog, to, dialect);
    }
    let change = match &request.change {
        StatementChange::Known(c) => c.clone(),
        StatementChange::Redefine { old, new, data_type } => {
            let live = column(table, old)?;
            let same_type = normalize(&live.data_type) == normalize(data_type);
            match (old.eq_ignore_ascii_case(new), same_type) {
                (false, true) => Change::Rename { from: old.clone(), to: new.clone() },
                (true, false) => Change::Retype { column: old.clone(), to_type: data_type.clone(), using: None },
                (true, true) => {
                    return Err(Refusal(format!(
                        "`{old}` keeps its name and type ({data_type}): nothing for expand to do (a change of its attributes needs no second column)"
                    )));
                }
                (false, false) => {
                    return Err(Refusal(format!(
                        "this both renames `{old}` to `{new}` and changes its type: expand one at a time (CHANGE to the new name with the old type first)"
                    )));
                }
            }
        }
    };
    let named = match &change {
        Change::Rename { from, .. } | Change::Retype { column: from, .. } => from.clone(),
        Change::RenameTable { .. } => unreachable!("a table rename is written by table_rename"),
    };
    let live = column(table, &named)?.clone();
    // The column as the server spells it (a MySQL statement may not).
    let old = live.name.clone();
    let new = match &change {
        Change::Retype { .. } => format!("{old}_new"),
        Change::Rename { to, .. } | Change::RenameTable { to } => to.clone(),
    };
    if table.column(&new).is_some() {
        return Err(Refusal(format!(
            "`{}` already has a column `{new}`: {}",
            table.name,
            match change {
                Change::Rename { .. } | Change::RenameTable { .. } => "pick another name",
                Change::Retype { .. } => "expand adds the new type under that name; drop or rename it first",
            }
        )));
    }
    refuse_keys(table, catalog, &live)?;
    refuse_triggers(table)?;
    let g = Gen::new(dialect, request, (&old, &new), &live, &change)?;
    let mut phases = vec![g.expand_phase(), g.backfill_phase()];
    let built = g.rebuilt(table, indexes)?;
    if let Some(phase) = g.constraints_phase(&built) {
        phases.push(phase);
    }
    phases.push(g.contract_phase(&built));
    Ok(Expansion { table: table_name.clone(), change, phases })
}

/// A table rename: the running app keeps the old name through a view of
/// one table, which both engines let it insert, update and delete through
/// (defaults, `RETURNING` and `ON CONFLICT` included on PostgreSQL).
/// PostgreSQL renames the table and puts the view under the old name in one
/// transaction, and the contract drops the view. MySQL, whose DDL commits
/// on its own, puts a view under the new name, and the contract swaps the
/// view and the table in one `RENAME TABLE`.
fn table_rename(request: &Request, catalog: &Catalog, to: &str, dialect: Dialect) -> Result<Expansion, Refusal> {
    let from = &request.table;
    let target = TableName { schema: from.schema.clone(), name: to.to_owned() };
    if catalog.table(&target).table().is_some() {
        return Err(Refusal(format!("there is a table `{target}` already: pick another name")));
    }
    let major = catalog.server_version.as_deref().and_then(|v| v.split(['.', ' ']).next()?.parse::<u32>().ok());
    if let (Dialect::Postgres, Some(major @ ..15)) = (dialect, major) {
        return Err(Refusal(format!(
            "PostgreSQL {major} has no security_invoker views: a view under the old name would run with its owner's rights, past the table's row-level security and grants; rename the table when no old app runs, or expand on PostgreSQL 15 or later"
        )));
    }
    let q = |n: &str| quote(n, dialect);
    let qualify = |name: &str| match &from.schema {
        Some(schema) => format!("{}.{}", q(schema), q(name)),
        None => q(name),
    };
    let (old, new) = (qualify(&from.name), qualify(to));
    let header = |what: &str| {
        format!(
            "-- {what} of: {};\n-- Written by `airlock expand`: an ordinary migration, yours to read and edit.\n",
            request.statement
        )
    };
    let mut expand = header("Expand");
    let mut contract = header("Contract");
    let contract_intro = format!(
        "-- Run only once no app version that uses `{}` is running:\n-- `airlock migrate` stops before this file; `airlock migrate --contract` runs it.\n-- airlock:contract\n-- airlock:roll-forward a later migration puts a view of the old name back if one is needed\n",
        from.name
    );
    let down;
    if dialect == Dialect::Postgres {
        expand.push_str(&format!(
            "-- The table takes its new name and a view of it keeps the old one, in one\n-- transaction: the running app reads and writes through the view.\n-- airlock:expand {}\n-- airlock:allow rename-table the view under the old name keeps the running app working\n",
            request.statement
        ));
        expand.push_str(&format!("ALTER TABLE {old} RENAME TO {};\n", q(to)));
        // With the rights of whoever queries it, not its owner's: row-level
        // security and the table's grants apply through it as they did.
        expand.push_str(&format!("CREATE VIEW {old} WITH (security_invoker = true) AS SELECT * FROM {new};\n"));
        // The view gets the table's grants: a role that could use the table
        // by its old name still can (a view's own grants are its own).
        expand.push_str(&format!(
            "-- The table's grants (PUBLIC's, per column, with grant option) given on the view too.\n-- airlock:allow dynamic-sql the grants are read from the catalog when it runs\n-- airlock:allow unchecked the grants are read from the catalog when it runs\nDO $airlock$\nDECLARE\n  g record;\nBEGIN\n  FOR g IN\n    SELECT a.privilege_type AS what, NULL::name AS col, a.grantee, a.is_grantable\n      FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = to_regclass({new_text}) AND a.grantee <> c.relowner\n    UNION ALL\n    SELECT a.privilege_type, att.attname, a.grantee, a.is_grantable\n      FROM pg_attribute att, aclexplode(att.attacl) a\n      WHERE att.attrelid = to_regclass({new_text}) AND att.attacl IS NOT NULL\n  LOOP\n    EXECUTE format('GRANT %s%s ON %s TO %s%s', g.what, coalesce(' (' || quote_ident(g.col) || ')', ''), {old_text},\n      CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END,\n      CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);\n  END LOOP;\nEND\n$airlock$;\n",
            new_text = literal(&new),
            old_text = literal(&old)
        ));
        down = format!(
            "DROP VIEW IF EXISTS {old};\n-- airlock:allow rename-table back to the name it had\nALTER TABLE {new} RENAME TO {};\n",
            q(&from.name)
        );
        contract.push_str(&contract_intro);
        contract.push_str(&format!("DROP VIEW {old};\n"));
    } else {
        expand.push_str(&format!(
            "-- A view under the new name: the next app reads and writes through it\n-- while the running one uses the table; the contract swaps them in one step.\n-- airlock:expand {}\nCREATE VIEW {new} AS SELECT * FROM {old};\n",
            request.statement
        ));
        down = format!("DROP VIEW IF EXISTS {new};\n");
        let swap = qualify(&object_name(&format!("airlock_swap_{}", from.name)));
        contract.push_str(&contract_intro);
        contract.push_str(&format!(
            "-- One statement, so no query finds neither: the view steps aside, the table takes its name.\n-- airlock:allow rename-table the view under the new name gives way to the table in one step\nRENAME TABLE {new} TO {swap}, {old} TO {new};\nDROP VIEW {swap};\n"
        ));
    }
    Ok(Expansion {
        table: from.clone(),
        change: Change::RenameTable { to: to.to_owned() },
        phases: vec![
            Phase { name: "expand", up: expand, down: Some(down) },
            Phase { name: "contract", up: contract, down: None },
        ],
    })
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn column<'a>(table: &'a Table, name: &str) -> Result<&'a Column, Refusal> {
    table.column(name).ok_or_else(|| {
        Refusal(format!(
            "`{}` has no column `{name}` (its columns: {})",
            table.name,
            table.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })
}

fn normalize(data_type: &str) -> String {
    data_type.to_ascii_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Key columns and generated values cannot be split in two.
fn refuse_keys(table: &Table, catalog: &Catalog, live: &Column) -> Result<(), Refusal> {
    let name = &live.name;
    if live.identity || live.auto_increment {
        return Err(Refusal(format!(
            "`{}.{name}` is generated (identity or auto-increment): two columns cannot share its generator; keep its name and type",
            table.name
        )));
    }
    if table.primary_key().is_some_and(|key| mentions(&key.columns, name)) {
        return Err(Refusal(format!(
            "`{}.{name}` is part of the primary key: rows are found by it, so it cannot be split into two columns; add a new key column as its own change",
            table.name
        )));
    }
    for other in catalog.tables() {
        for c in other.constraints.iter().filter(|c| c.kind == ConstraintKind::ForeignKey) {
            let Some(def) = &c.definition else { continue };
            let Some((_, target)) = def.split_once("REFERENCES") else { continue };
            let target = target.trim();
            let (target_table, target_cols) = target.split_once('(').unwrap_or((target, ""));
            let target_table = target_table.trim().trim_matches(['"', '`']);
            let target_table = target_table.rsplit('.').next().unwrap_or(target_table).trim_matches(['"', '`']);
            if target_table == table.name.name
                && target_cols.split([',', ')']).any(|c| c.trim().trim_matches(['"', '`']) == name)
            {
                return Err(Refusal(format!(
                    "`{}.{name}` is referenced by the foreign key {} of `{}`: expand does not move other tables' keys; rename the referencing column's target in a change of its own",
                    table.name,
                    c.name.as_deref().unwrap_or("(unnamed)"),
                    other.name
                )));
            }
        }
    }
    Ok(())
}

/// Another trigger may change the column after airlock's copy of it (or
/// before, in an order airlock does not choose): it would go out of step.
fn refuse_triggers(table: &Table) -> Result<(), Refusal> {
    let others: Vec<&str> =
        table.triggers.iter().map(String::as_str).filter(|t| !t.starts_with(SYNC_TRIGGER_PREFIX)).collect();
    if others.is_empty() {
        return Ok(());
    }
    Err(Refusal(format!(
        "`{}` has triggers of its own ({}): one that changes the column could run before or after airlock's copy and leave the two columns apart; expand does not handle tables with triggers yet",
        table.name,
        others.join(", ")
    )))
}

fn mentions(columns: &[String], name: &str) -> bool {
    columns.iter().any(|c| c.trim_matches(['"', '`']) == name)
}

/// What is built again on the new column, and how the contract finishes it.
#[derive(Default)]
struct Rebuilt {
    /// (old index name, new index name, CREATE statement for the new one, backs a UNIQUE constraint)
    indexes: Vec<(String, String, String, bool)>,
    /// (old constraint name, new name, its definition on the new column, validated: an
    /// old `NOT VALID` one stays so, over rows it was never checked against)
    constraints: Vec<(String, String, String, bool)>,
    /// The NOT NULL stand-in check's name, when the old column is NOT NULL.
    not_null: Option<String>,
}

/// Writes the SQL for one change on one dialect.
struct Gen<'a> {
    dialect: Dialect,
    table: String,
    bare_table: &'a str,
    old: String,
    new: String,
    old_raw: &'a str,
    new_raw: &'a str,
    live: &'a Column,
    new_type: String,
    old_type: String,
    using: Option<String>,
    base: String,
    original: String,
}

impl<'a> Gen<'a> {
    /// `old` and `new`: the columns' names; `live`: the old column as it is.
    fn new(
        dialect: Dialect,
        request: &'a Request,
        (old, new): (&'a str, &'a str),
        live: &'a Column,
        change: &Change,
    ) -> Result<Gen<'a>, Refusal> {
        let (table, statement) = (&request.table, &request.statement);
        let q = |n: &str| quote(n, dialect);
        let qualified = match &table.schema {
            Some(schema) => format!("{}.{}", q(schema), q(&table.name)),
            None => q(&table.name),
        };
        let old_type = column_type(live, dialect);
        let (new_type, using) = match change {
            Change::Rename { .. } | Change::RenameTable { .. } => (old_type.clone(), None),
            Change::Retype { to_type, using, .. } => {
                if let Some(u) = using {
                    airlock_sql::replace_column(u, dialect, old, old)
                        .ok_or_else(|| Refusal(format!("the USING expression `{u}` does not read as SQL")))?;
                }
                (to_type.clone(), using.clone())
            }
        };
        let original = statement.to_owned();
        Ok(Gen {
            dialect,
            table: qualified,
            bare_table: &table.name,
            old: q(old),
            new: q(new),
            old_raw: old,
            new_raw: new,
            live,
            new_type,
            old_type,
            using,
            base: object_name(&format!("{SYNC_TRIGGER_PREFIX}{}_{}", table.name, old)),
            original,
        })
    }

    fn postgres(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    /// The new column's value from the old one's: in the trigger (columns
    /// read from `NEW`) or in the backfill (columns as they are).
    fn forward(&self, in_trigger: bool) -> String {
        let old = if in_trigger { format!("NEW.{}", self.old) } else { self.old.clone() };
        match (&self.using, self.postgres(), self.new_type == self.old_type) {
            (_, _, true) | (_, false, _) => old,
            // The expression as written, over the row being written: its
            // columns read as in the table, its functions and types untouched.
            (Some(using), true, false) if in_trigger => {
                format!("(SELECT {using} FROM (SELECT (NEW).*) AS airlock_row)")
            }
            (Some(using), true, false) => using.clone(),
            (None, true, false) => format!("CAST({old} AS {})", self.new_type),
        }
    }

    /// The old column's value from the new one's.
    fn back(&self, value: &str) -> String {
        if self.new_type == self.old_type || !self.postgres() {
            value.to_owned()
        } else {
            format!("CAST({value} AS {})", self.old_type)
        }
    }

    fn header(&self, what: &str) -> String {
        format!(
            "-- {what} of: {};\n-- Written by `airlock expand`: an ordinary migration, yours to read and edit.\n",
            self.original
        )
    }

    fn expand_phase(&self) -> Phase {
        let (t, old, new) = (&self.table, &self.old, &self.new);
        let mut up = self.header("Expand");
        up.push_str(&format!(
            "-- Both names work from here until the contract: a trigger copies every\n-- write to `{}` into `{}` and back.\n-- airlock:expand {}\n",
            self.old_raw, self.new_raw, self.original
        ));
        up.push_str(&format!("ALTER TABLE {t} ADD COLUMN {new} {}{};\n\n", self.new_type, self.collation()));
        let down = if self.postgres() {
            let function = quote(&self.base, self.dialect);
            let back = format!("NEW.{old} := {};", self.back(&format!("NEW.{new}")));
            let forward = format!("NEW.{new} := {};", self.forward(true));
            let assign_back = self.guarded(&back, new, old, 3);
            let assign_forward = self.guarded(&forward, old, new, 3);
            let assign_forward_outer = self.guarded(&forward, old, new, 2);
            up.push_str(&format!(
                "CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $airlock$\n\
                 BEGIN\n\
                 \x20 IF TG_OP = 'INSERT' THEN\n\
                 \x20   -- The new app sets {new}; the old app leaves it NULL.\n\
                 \x20   IF NEW.{new} IS NULL THEN\n{assign_forward}\
                 \x20   ELSE\n{assign_back}\
                 \x20   END IF;\n\
                 \x20 -- Compared as text: a type's own equality may ignore case or be missing (json).\n\
                 \x20 ELSIF NEW.{new}::text IS DISTINCT FROM OLD.{new}::text THEN\n\
                 \x20   -- Written through the new name (the backfill writes the old value converted: kept).\n\
                 \x20   IF NEW.{new}::text IS DISTINCT FROM ({})::text THEN\n{assign_back}\
                 \x20   END IF;\n\
                 \x20 ELSIF NEW.{old}::text IS DISTINCT FROM OLD.{old}::text THEN\n{assign_forward_outer}\
                 \x20 END IF;\n\
                 \x20 RETURN NEW;\n\
                 END\n\
                 $airlock$;\n\n",
                self.forward(true)
            ));
            up.push_str(&format!(
                "CREATE TRIGGER {function} BEFORE INSERT OR UPDATE OF {old}, {new} ON {t}\n  FOR EACH ROW EXECUTE FUNCTION {function}();\n"
            ));
            format!(
                "DROP TRIGGER IF EXISTS {function} ON {t};\nDROP FUNCTION IF EXISTS {function}();\n-- airlock:allow drop-column the column this migration added\nALTER TABLE {t} DROP COLUMN IF EXISTS {new};\n"
            )
        } else {
            let (insert, update) = self.mysql_triggers();
            let b = |s: &str| self.back(s);
            up.push_str(&format!(
                "CREATE TRIGGER {insert} BEFORE INSERT ON {t} FOR EACH ROW\n\
                 BEGIN\n\
                 \x20 -- The new app sets {new}; the old app leaves it NULL.\n\
                 \x20 IF NEW.{new} IS NULL THEN\n\
                 \x20   SET NEW.{new} = {};\n\
                 \x20 ELSE\n\
                 \x20   SET NEW.{old} = {};\n\
                 \x20 END IF;\n\
                 END;\n\n",
                self.forward(true),
                b(&format!("NEW.{new}"))
            ));
            up.push_str(&format!(
                "CREATE TRIGGER {update} BEFORE UPDATE ON {t} FOR EACH ROW\n\
                 BEGIN\n\
                 \x20 -- Compared as bytes: a collation may ignore case or accents.\n\
                 \x20 IF NOT (CAST(NEW.{new} AS BINARY) <=> CAST(OLD.{new} AS BINARY)) THEN\n\
                 \x20   -- Written through the new name (the backfill writes the old value: kept).\n\
                 \x20   IF NOT (CAST(NEW.{new} AS BINARY) <=> CAST(NEW.{old} AS BINARY)) THEN\n\
                 \x20     SET NEW.{old} = {};\n\
                 \x20   END IF;\n\
                 \x20 ELSEIF NOT (CAST(NEW.{old} AS BINARY) <=> CAST(OLD.{old} AS BINARY)) THEN\n\
                 \x20   SET NEW.{new} = {};\n\
                 \x20 END IF;\n\
                 END;\n",
                b(&format!("NEW.{new}")),
                self.forward(true)
            ));
            format!(
                "DROP TRIGGER IF EXISTS {insert};\nDROP TRIGGER IF EXISTS {update};\n-- airlock:allow drop-column the column this migration added\nALTER TABLE {t} DROP COLUMN {new};\n"
            )
        };
        Phase { name: "expand", up, down: Some(down) }
    }

    /// An assignment in the PostgreSQL trigger; one that converts a type
    /// fails with the value and both columns named.
    fn guarded(&self, assignment: &str, from: &str, to: &str, depth: usize) -> String {
        let pad = "  ".repeat(depth);
        if self.new_type == self.old_type {
            return format!("{pad}{assignment}\n");
        }
        format!(
            "{pad}BEGIN\n{pad}  {assignment}\n{pad}EXCEPTION WHEN data_exception THEN\n{pad}  RAISE EXCEPTION 'cannot copy %.{from} = % into {to}: %', TG_TABLE_NAME, NEW.{from}, SQLERRM\n{pad}    USING ERRCODE = SQLSTATE, HINT = 'airlock keeps {} and {} equal until the contract: write a value both types hold';\n{pad}END;\n",
            self.old_raw, self.new_raw
        )
    }

    fn mysql_triggers(&self) -> (String, String) {
        (
            quote(&object_name(&format!("{}_ins", self.base)), self.dialect),
            quote(&object_name(&format!("{}_upd", self.base)), self.dialect),
        )
    }

    /// The old column's collation, for a column of the same type (a rename).
    fn collation(&self) -> String {
        if self.new_type != self.old_type {
            return String::new();
        }
        match (&self.live.collation, self.postgres()) {
            (Some(c), true) if c != "default" => format!(" COLLATE {}", quote(c, self.dialect)),
            (Some(c), false) => {
                let charset = self.live.charset.as_ref().map(|s| format!(" CHARACTER SET {s}")).unwrap_or_default();
                format!("{charset} COLLATE {c}")
            }
            _ => String::new(),
        }
    }

    fn backfill_phase(&self) -> Phase {
        let mut up = self.header("Backfill");
        up.push_str(&format!(
            "-- Rows written before the trigger: copied in batches. Rows written since\n-- already hold both.\n-- airlock:backfill\n-- airlock:roll-forward the expand's down drops the column this fills\nUPDATE {} SET {} = {} WHERE {} IS NULL{};\n",
            self.table,
            self.new,
            self.forward(false),
            self.new,
            // A USING expression may make something of NULL.
            if self.using.is_some() { String::new() } else { format!(" AND {} IS NOT NULL", self.old) }
        ));
        Phase { name: "backfill", up, down: None }
    }

    /// The old column's indexes and constraints, on the new column.
    fn rebuilt(&self, table: &Table, indexes: &[IndexDefinition]) -> Result<Rebuilt, Refusal> {
        let mut built = Rebuilt::default();
        let named = |kind: ConstraintKind| -> Vec<&str> {
            table.constraints.iter().filter(|c| c.kind == kind).filter_map(|c| c.name.as_deref()).collect()
        };
        let (unique_constraints, other_constraints) = (named(ConstraintKind::Unique), named(ConstraintKind::Other));
        for index in indexes {
            // `CREATE [UNIQUE] INDEX <name> ON <table> [USING m] (<columns>) ...`:
            // the name between INDEX and ON; the column only from the list on.
            let parts = index.definition.find(" INDEX ").and_then(|at| {
                let rest = &index.definition[at + " INDEX ".len()..];
                let on = rest.find(" ON ")?;
                let list = rest[on..].find('(')?;
                Some((&index.definition[..at], &rest[on..on + list], &rest[on + list..]))
            });
            let Some((create, on, list)) = parts else {
                return Err(Refusal(format!(
                    "the index {} reads `{}`: expand cannot tell its name and columns",
                    index.name, index.definition
                )));
            };
            let Some(moved) = airlock_sql::replace_column(list, self.dialect, self.old_raw, &self.new) else {
                continue;
            };
            if moved == list {
                continue;
            }
            if !self.postgres() && (create.ends_with("FULLTEXT") || create.ends_with("SPATIAL")) {
                return Err(Refusal(format!(
                    "`{}.{}` is in the {} index {}, which MySQL cannot build without blocking writes; drop it, expand, and add it back",
                    self.bare_table,
                    self.old_raw,
                    create.trim_start_matches("CREATE ").to_lowercase(),
                    index.name
                )));
            }
            if other_constraints.contains(&index.name.as_str()) {
                return Err(Refusal(format!(
                    "`{}.{}` is in the constraint {} (an exclusion constraint), which expand cannot build again on a new column; drop it, expand, and add it back",
                    self.bare_table, self.old_raw, index.name
                )));
            }
            let new_name = object_name(&renamed(&index.name, self.old_raw, self.new_raw));
            let online = if self.postgres() { "INDEX CONCURRENTLY IF NOT EXISTS" } else { "INDEX" };
            let mut create = format!("{create} {online} {}{on}{moved}", quote(&new_name, self.dialect));
            if !self.postgres() {
                create.push_str(" ALGORITHM=INPLACE LOCK=NONE");
            }
            let backs_constraint = unique_constraints.contains(&index.name.as_str());
            built.indexes.push((index.name.clone(), new_name, create, backs_constraint));
        }
        for c in &table.constraints {
            if !matches!(c.kind, ConstraintKind::ForeignKey | ConstraintKind::Check) {
                continue;
            }
            let (Some(name), Some(def)) = (&c.name, &c.definition) else {
                if c.kind == ConstraintKind::Check {
                    return Err(Refusal(format!(
                        "`{}` has the check {} whose text airlock cannot read from this server: it cannot tell whether it needs building again on the new column",
                        self.bare_table,
                        c.name.as_deref().unwrap_or("(unnamed)")
                    )));
                }
                continue;
            };
            // A foreign key's own columns only: the referenced ones are another table's.
            let (local, referenced) = match def.find(" REFERENCES ") {
                Some(at) if c.kind == ConstraintKind::ForeignKey => (&def[..at], &def[at..]),
                _ => (def.as_str(), ""),
            };
            let Some(moved) = airlock_sql::replace_column(local, self.dialect, self.old_raw, &self.new) else {
                continue;
            };
            if moved == local {
                continue;
            }
            if !self.postgres() && c.kind == ConstraintKind::ForeignKey {
                return Err(Refusal(format!(
                    "`{}.{}` has the foreign key {name}: on MySQL and MariaDB a foreign key is added with a table copy, which expand does not do; drop the key, expand, and add it back on the new column",
                    self.bare_table, self.old_raw
                )));
            }
            let moved = format!("{moved}{referenced}").trim_end_matches(" NOT VALID").to_owned();
            let new_name = object_name(&renamed(name, self.old_raw, self.new_raw));
            built.constraints.push((name.clone(), new_name, moved, c.validated));
        }
        if !self.live.nullable && self.postgres() {
            // Not `<table>_<column>_not_null`: PostgreSQL 18 names its own NOT NULL so.
            built.not_null = Some(object_name(&format!("airlock_{}_{}_not_null", self.bare_table, self.new_raw)));
        }
        Ok(built)
    }

    fn constraints_phase(&self, built: &Rebuilt) -> Option<Phase> {
        if built.indexes.is_empty() && built.constraints.is_empty() && built.not_null.is_none() {
            return None;
        }
        let t = &self.table;
        let mut up = self.header("Constraints");
        up.push_str(&format!(
            "-- `{}`'s indexes and constraints, built again on `{}` without blocking writes.\n",
            self.old_raw, self.new_raw
        ));
        let mut down = String::new();
        if self.postgres() {
            up.push_str("-- airlock:no-transaction\n");
            down.push_str("-- airlock:no-transaction\n");
        }
        for (_, new_name, create, _) in &built.indexes {
            up.push_str(&format!("{create};\n"));
            let drop = if self.postgres() {
                format!("DROP INDEX CONCURRENTLY IF EXISTS {};\n", quote(new_name, self.dialect))
            } else {
                format!("ALTER TABLE {t} DROP INDEX {};\n", quote(new_name, self.dialect))
            };
            down.push_str(&drop);
        }
        let mut checks = built.constraints.clone();
        if let Some(name) = &built.not_null {
            checks.push((String::new(), name.clone(), format!("CHECK ({} IS NOT NULL)", self.new), true));
        }
        for (_, new_name, def, validated) in &checks {
            let n = quote(new_name, self.dialect);
            up.push_str(&format!("ALTER TABLE {t} ADD CONSTRAINT {n} {def} NOT VALID;\n"));
            if *validated {
                up.push_str(&format!("ALTER TABLE {t} VALIDATE CONSTRAINT {n};\n"));
            }
            down.push_str(&format!("ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {n};\n"));
        }
        Some(Phase { name: "constraints", up, down: Some(down) })
    }

    fn contract_phase(&self, built: &Rebuilt) -> Phase {
        let (t, old, new) = (&self.table, &self.old, &self.new);
        let mut up = self.header("Contract");
        up.push_str(&format!(
            "-- Run only once no app version that uses `{}`{} is running:\n-- `airlock migrate` stops before this file; `airlock migrate --contract` runs it.\n-- airlock:contract\n-- airlock:roll-forward the old column's values are gone: take them back from the backup\n-- airlock:allow drop-column the old column, kept in step until now\n-- airlock:allow up-destroys-data only the old column's copy of the values goes\n",
            self.old_raw,
            if self.new_type != self.old_type { format!(" as {}", self.old_type) } else { String::new() }
        ));
        let retype = self.new_type != self.old_type;
        if retype {
            up.push_str(&format!(
                "-- airlock:allow rename-column the new column takes the old one's name: no app reads `{}`\n",
                self.new_raw
            ));
        }
        let final_name = if retype { old } else { new };
        if self.postgres() {
            let function = quote(&self.base, self.dialect);
            up.push_str(&format!("DROP TRIGGER {function} ON {t};\nDROP FUNCTION {function}();\n"));
            up.push_str(&format!("ALTER TABLE {t} DROP COLUMN {old};\n"));
            // The validated check proves it: no scan.
            if let Some(check) = &built.not_null {
                up.push_str(&format!(
                    "ALTER TABLE {t} ALTER COLUMN {new} SET NOT NULL;\nALTER TABLE {t} DROP CONSTRAINT {};\n",
                    quote(check, self.dialect)
                ));
            }
            if retype {
                up.push_str(&format!("ALTER TABLE {t} RENAME COLUMN {new} TO {old};\n"));
            }
            if let Some(default) = &self.live.default {
                let default = if retype { format!("CAST({default} AS {})", self.new_type) } else { default.clone() };
                up.push_str(&format!("ALTER TABLE {t} ALTER COLUMN {final_name} SET DEFAULT {default};\n"));
            }
            for (old_name, new_name, _, backs_constraint) in &built.indexes {
                let (o, n) = (quote(old_name, self.dialect), quote(new_name, self.dialect));
                if *backs_constraint {
                    up.push_str(&format!("ALTER TABLE {t} ADD CONSTRAINT {o} UNIQUE USING INDEX {n};\n"));
                } else {
                    up.push_str(&format!("ALTER INDEX {n} RENAME TO {o};\n"));
                }
            }
            for (old_name, new_name, _, _) in &built.constraints {
                up.push_str(&format!(
                    "ALTER TABLE {t} RENAME CONSTRAINT {} TO {};\n",
                    quote(new_name, self.dialect),
                    quote(old_name, self.dialect)
                ));
            }
        } else {
            let (insert, update) = self.mysql_triggers();
            // The old column's indexes first, online: nothing reads them through
            // the old app any more (a type change's queries do without for a moment).
            if !built.indexes.is_empty() {
                let drops: Vec<String> =
                    built.indexes.iter().map(|(o, _, _, _)| format!("DROP INDEX {}", quote(o, self.dialect))).collect();
                up.push_str(&format!("ALTER TABLE {t} {}, ALGORITHM=INPLACE, LOCK=NONE;\n", drops.join(", ")));
            }
            // Then the old column and the triggers together while the table is
            // locked, so no write falls between them (DDL commits on its own
            // here): dropping a column (and renaming one) is instant on
            // MariaDB 10.4+ and MySQL 8.0.29+. The default comes with it, so no
            // insert after the unlock misses it. The column first: should
            // dropping a trigger fail, writes fail loudly rather than go out of step.
            let default = self
                .live
                .default
                .as_ref()
                .map(|d| format!(" DEFAULT {}", mysql_default(d, &self.new_type)))
                .unwrap_or_default();
            let typed = format!("{}{}", self.new_type, self.collation());
            let mut parts = vec![format!("DROP COLUMN {old}")];
            if retype || !default.is_empty() {
                // The column said again with its default (`SET DEFAULT` takes only a literal on MySQL).
                parts.push(format!("CHANGE {new} {final_name} {typed} NULL{default}"));
            }
            up.push_str(&format!(
                "LOCK TABLES {t} WRITE;\nALTER TABLE {t} {};\nDROP TRIGGER {insert};\nDROP TRIGGER {update};\nUNLOCK TABLES;\n",
                parts.join(", ")
            ));
            // What else the old column had: NOT NULL, ON UPDATE, its comment (online).
            if !self.live.nullable || self.live.on_update.is_some() || self.live.comment.is_some() {
                let null = if self.live.nullable { "NULL" } else { "NOT NULL" };
                let on_update = self.live.on_update.as_ref().map(|u| format!(" ON UPDATE {u}")).unwrap_or_default();
                let comment = self
                    .live
                    .comment
                    .as_ref()
                    .filter(|c| !c.is_empty())
                    .map(|c| format!(" COMMENT '{}'", c.replace('\\', "\\\\").replace('\'', "''")))
                    .unwrap_or_default();
                up.push_str(&format!(
                    "ALTER TABLE {t} MODIFY {final_name} {typed} {null}{default}{on_update}{comment}, ALGORITHM=INPLACE, LOCK=NONE;\n"
                ));
            }
            // The new indexes keep their names (`RENAME INDEX` would need a
            // statement airlock's MySQL parser cannot read).
        }
        Phase { name: "contract", up, down: None }
    }
}

/// The column's type as a column definition writes it.
fn column_type(column: &Column, dialect: Dialect) -> String {
    match dialect {
        Dialect::MySql => column.data_type.clone(),
        _ => column.data_type.clone(),
    }
}

/// A MySQL default as `information_schema` prints it, as a DEFAULT clause writes it.
/// MariaDB prints a literal quoted and an expression bare; MySQL 8 prints a
/// literal bare: a number stays a number only in a numeric column.
fn mysql_default(default: &str, data_type: &str) -> String {
    let upper = default.to_ascii_uppercase();
    let numeric =
        ["int", "tinyint", "smallint", "mediumint", "bigint", "decimal", "numeric", "float", "double", "real"]
            .iter()
            .any(|t| data_type.to_ascii_lowercase().split(['(', ' ']).next() == Some(*t));
    let as_printed = default.starts_with('\'')
        || default.starts_with('(')
        || upper == "NULL"
        || upper.starts_with("CURRENT_TIMESTAMP")
        || (numeric && default.parse::<f64>().is_ok());
    if as_printed {
        default.to_owned()
    } else if default.contains('(') {
        // An expression default (`uuid()`, `curdate()`): in parentheses, as MySQL 8 wants it.
        format!("({default})")
    } else {
        format!("'{}'", default.replace('\\', "\\\\").replace('\'', "''"))
    }
}

/// `name` with `old` in it replaced by `new`, else `name` followed by `_new`.
fn renamed(name: &str, old: &str, new: &str) -> String {
    if name.contains(old) { name.replacen(old, new, 1) } else { format!("{name}_new") }
}

/// At most 63 bytes (PostgreSQL's limit; MySQL's is 64): a longer name keeps its
/// start and ends with a hash of the whole.
fn object_name(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_owned();
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let mut cut = 54;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{:08x}", &name[..cut], hash as u32)
}

/// A name as SQL writes it: bare when it is a plain lower-case word that is
/// not a keyword of any dialect, else quoted.
pub fn quote(name: &str, dialect: Dialect) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !airlock_sql::is_keyword(name);
    match (plain, dialect) {
        (true, _) => name.to_owned(),
        (false, Dialect::MySql) => format!("`{}`", name.replace('`', "``")),
        (false, _) => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::schema::{ConstraintInfo, Index};

    fn users(nullable: bool) -> Table {
        let mut t = Table::created(TableName::bare("users"), "0");
        let col = |name: &str, data_type: &str, nullable: bool, default: Option<&str>| Column {
            name: name.into(),
            data_type: data_type.into(),
            nullable,
            default: default.map(Into::into),
            ..Column::default()
        };
        t.columns = vec![
            col("id", "bigint", false, None),
            col("email", "text", nullable, Some("''::text")),
            col("price", "numeric(10,2)", true, None),
        ];
        t.indexes = vec![
            Index { name: "users_pkey".into(), columns: vec!["id".into()], unique: true },
            Index { name: "users_email_key".into(), columns: vec!["email".into()], unique: true },
        ];
        t.constraints = vec![
            ConstraintInfo {
                name: Some("users_pkey".into()),
                kind: ConstraintKind::PrimaryKey,
                validated: true,
                definition: None,
            },
            ConstraintInfo {
                name: Some("users_email_key".into()),
                kind: ConstraintKind::Unique,
                validated: true,
                definition: None,
            },
            ConstraintInfo {
                name: Some("users_email_check".into()),
                kind: ConstraintKind::Check,
                validated: true,
                definition: Some("CHECK ((email <> 'x'::text))".into()),
            },
        ];
        t
    }

    fn run(sql: &str, dialect: Dialect, table: &Table) -> Result<Expansion, Refusal> {
        let request = change_of(sql, dialect)?;
        let indexes = vec![IndexDefinition {
            name: "users_email_key".into(),
            definition: "CREATE UNIQUE INDEX users_email_key ON public.users USING btree (email)".into(),
        }];
        let catalog = Catalog::live(vec![table.clone()]);
        expand(&request, table, &catalog, &indexes, dialect)
    }

    #[test]
    fn a_rename_on_postgres_has_four_phases() {
        let e =
            run("ALTER TABLE users RENAME COLUMN email TO email_address;", Dialect::Postgres, &users(false)).unwrap();
        let names: Vec<&str> = e.phases.iter().map(|p| p.name).collect();
        assert_eq!(names, ["expand", "backfill", "constraints", "contract"]);
        let [expand, backfill, constraints, contract] = e.phases.as_slice() else { unreachable!() };
        assert!(expand.up.contains("ALTER TABLE users ADD COLUMN email_address text;"), "{}", expand.up);
        assert!(expand.up.contains("BEFORE INSERT OR UPDATE OF email, email_address ON users"), "{}", expand.up);
        assert!(!expand.up.contains("EXCEPTION"), "a rename converts nothing: {}", expand.up);
        assert!(
            backfill
                .up
                .contains("UPDATE users SET email_address = email WHERE email_address IS NULL AND email IS NOT NULL;")
        );
        assert!(constraints.up.contains(
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_address_key ON public.users USING btree (email_address);"
        ), "{}", constraints.up);
        assert!(constraints.up.contains("CHECK ((email_address <> 'x'::text)) NOT VALID"), "{}", constraints.up);
        assert!(constraints.up.contains(
            "ADD CONSTRAINT airlock_users_email_address_not_null CHECK (email_address IS NOT NULL) NOT VALID"
        ));
        assert!(contract.up.contains("-- airlock:contract"));
        assert!(
            contract.up.contains("ALTER TABLE users ALTER COLUMN email_address SET DEFAULT ''::text;"),
            "{}",
            contract.up
        );
        assert!(
            contract.up.contains("ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_address_key"),
            "{}",
            contract.up
        );
        assert!(
            contract.up.contains("RENAME CONSTRAINT users_email_address_check TO users_email_check"),
            "{}",
            contract.up
        );
    }

    #[test]
    fn a_type_change_converts_both_ways_and_names_failures() {
        let e = run(
            "ALTER TABLE users ALTER COLUMN price TYPE numeric(12,4) USING round(price, 4);",
            Dialect::Postgres,
            &users(true),
        )
        .unwrap();
        let expand = &e.phases[0];
        assert!(expand.up.contains("ADD COLUMN price_new numeric(12,4);"), "{}", expand.up);
        assert!(
            expand.up.contains("NEW.price_new := (SELECT round(price, 4) FROM (SELECT (NEW).*) AS airlock_row);"),
            "{}",
            expand.up
        );
        assert!(expand.up.contains("NEW.price := CAST(NEW.price_new AS numeric(10,2));"), "{}", expand.up);
        assert!(expand.up.contains("EXCEPTION WHEN data_exception"), "{}", expand.up);
        assert!(e.phases[1].up.contains("SET price_new = round(price, 4) WHERE"), "{}", e.phases[1].up);
        let contract = &e.phases.last().unwrap().up;
        assert!(
            contract.contains("DROP COLUMN price;\nALTER TABLE users RENAME COLUMN price_new TO price;"),
            "{contract}"
        );
    }

    #[test]
    fn mysql_change_is_a_rename_or_a_type_change_against_the_live_column() {
        let mut t = users(false);
        t.columns[1].data_type = "varchar(255)".into();
        t.columns[1].default = Some("".into());
        let e = run("ALTER TABLE users CHANGE email email_address varchar(255) NOT NULL", Dialect::MySql, &t).unwrap();
        assert!(matches!(e.change, Change::Rename { .. }));
        assert!(e.phases[0].up.contains("BEFORE INSERT ON users FOR EACH ROW"), "{}", e.phases[0].up);
        let contract = &e.phases.last().unwrap().up;
        let steps = [
            "ALTER TABLE users DROP INDEX users_email_key, ALGORITHM=INPLACE, LOCK=NONE;\nLOCK TABLES users WRITE;",
            "ALTER TABLE users DROP COLUMN email, CHANGE email_address email_address varchar(255) NULL DEFAULT '';\nDROP TRIGGER",
            "UNLOCK TABLES;\nALTER TABLE users MODIFY email_address varchar(255) NOT NULL DEFAULT ''",
        ];
        for step in steps {
            assert!(contract.contains(step), "{step}\n{contract}");
        }
        let both = run("ALTER TABLE users CHANGE email email_address text", Dialect::MySql, &t).unwrap_err();
        assert!(both.0.contains("one at a time"), "{both}");
        // MySQL column names ignore case: the live spelling is used.
        let cased =
            run("ALTER TABLE users CHANGE EMAIL email_address varchar(255) NOT NULL", Dialect::MySql, &t).unwrap();
        assert!(cased.phases[1].up.contains("SET email_address = email WHERE"), "{}", cased.phases[1].up);
        // Compared as bytes: a case-only change is a change.
        assert!(
            e.phases[0].up.contains("CAST(NEW.email AS BINARY) <=> CAST(OLD.email AS BINARY)"),
            "{}",
            e.phases[0].up
        );
    }

    #[test]
    fn a_using_expression_reads_the_row_and_keeps_its_literals() {
        let mut t = users(true);
        t.columns.push(Column { name: "tz".into(), data_type: "text".into(), nullable: true, ..Column::default() });
        let e = run(
            "ALTER TABLE users ALTER COLUMN email TYPE jsonb USING COALESCE(NULLIF(email, '')::jsonb, '{}') || to_jsonb(tz)",
            Dialect::Postgres,
            &t,
        )
        .unwrap();
        let expand = &e.phases[0].up;
        assert!(
            expand.contains(
                "NEW.email_new := (SELECT COALESCE(NULLIF(email, '')::jsonb, '{}') || to_jsonb(tz) FROM (SELECT (NEW).*) AS airlock_row);"
            ),
            "{expand}"
        );
        assert!(expand.contains("NEW.email_new::text IS DISTINCT FROM OLD.email_new::text"), "{expand}");
        let backfill = &e.phases[1].up;
        assert!(
            backfill.contains(
                "SET email_new = COALESCE(NULLIF(email, '')::jsonb, '{}') || to_jsonb(tz) WHERE email_new IS NULL;"
            ),
            "NULL rows too: {backfill}"
        );
    }

    #[test]
    fn only_the_columns_own_constraints_move() {
        let mut t = users(true);
        t.columns.push(Column {
            name: "tenant_id".into(),
            data_type: "bigint".into(),
            nullable: true,
            ..Column::default()
        });
        t.constraints.push(ConstraintInfo {
            name: Some("users_tenant_id_fkey".into()),
            kind: ConstraintKind::ForeignKey,
            validated: true,
            definition: Some("FOREIGN KEY (tenant_id) REFERENCES tenants(tenant_id)".into()),
        });
        t.constraints.push(ConstraintInfo {
            name: Some("users_price_fkey".into()),
            kind: ConstraintKind::ForeignKey,
            validated: false,
            definition: Some("FOREIGN KEY (price) REFERENCES prices(email) NOT VALID".into()),
        });
        let e = run("ALTER TABLE users RENAME COLUMN tenant_id TO org_id", Dialect::Postgres, &t).unwrap();
        let constraints = &e.phases[2].up;
        assert!(constraints.contains("FOREIGN KEY (org_id) REFERENCES tenants(tenant_id) NOT VALID;"), "{constraints}");
        assert!(constraints.contains("VALIDATE CONSTRAINT users_org_id_fkey"), "{constraints}");
        let e = run("ALTER TABLE users RENAME COLUMN email TO email_address", Dialect::Postgres, &t).unwrap();
        assert!(!e.phases[2].up.contains("prices"), "another column's key: {}", e.phases[2].up);
        let e = run("ALTER TABLE users RENAME COLUMN price TO price_cents", Dialect::Postgres, &t).unwrap();
        let constraints = &e.phases[2].up;
        assert!(constraints.contains("FOREIGN KEY (price_cents) REFERENCES prices(email) NOT VALID;"), "{constraints}");
        assert!(
            !constraints.contains("VALIDATE CONSTRAINT users_price_cents_fkey"),
            "a key never validated stays so: {constraints}"
        );
    }

    #[test]
    fn a_table_rename_keeps_the_old_name_in_a_view() {
        let t = users(false);
        let pg = run("ALTER TABLE users RENAME TO people", Dialect::Postgres, &t).unwrap();
        assert_eq!(pg.phases.iter().map(|p| p.name).collect::<Vec<_>>(), ["expand", "contract"]);
        assert!(
            pg.phases[0]
                .up
                .contains("ALTER TABLE users RENAME TO people;\nCREATE VIEW users WITH (security_invoker = true) AS SELECT * FROM people;"),
            "{}",
            pg.phases[0].up
        );
        assert!(pg.phases[0].up.contains("aclexplode(c.relacl)") && pg.phases[0].up.contains("aclexplode(att.attacl)"));
        let mut old = Catalog::live(vec![t.clone()]);
        old.server_version = Some("14.11".into());
        let request = change_of("ALTER TABLE users RENAME TO people", Dialect::Postgres).unwrap();
        let refused = expand(&request, &t, &old, &[], Dialect::Postgres).unwrap_err();
        assert!(refused.0.contains("PostgreSQL 14 has no security_invoker views"), "{refused}");
        assert!(pg.phases[1].up.contains("-- airlock:contract") && pg.phases[1].up.contains("DROP VIEW users;"));
        let my = run("RENAME TABLE users TO people", Dialect::MySql, &t).unwrap();
        assert!(my.phases[0].up.contains("CREATE VIEW people AS SELECT * FROM users;"), "{}", my.phases[0].up);
        assert!(
            my.phases[1]
                .up
                .contains("RENAME TABLE people TO airlock_swap_users, users TO people;\nDROP VIEW airlock_swap_users;"),
            "{}",
            my.phases[1].up
        );
        let taken = Table::created(TableName::bare("people"), "0");
        let catalog = Catalog::live(vec![t.clone(), taken]);
        let request = change_of("ALTER TABLE users RENAME TO people", Dialect::Postgres).unwrap();
        let refused = expand(&request, &t, &catalog, &[], Dialect::Postgres).unwrap_err();
        assert!(refused.0.contains("there is a table `people` already"), "{refused}");
    }

    #[test]
    fn a_table_with_triggers_of_its_own_is_refused() {
        let mut t = users(true);
        t.triggers.push("users_audit".into());
        let refused = run("ALTER TABLE users RENAME COLUMN email TO e", Dialect::Postgres, &t).unwrap_err();
        assert!(refused.0.contains("triggers of its own (users_audit)"), "{refused}");
    }

    #[test]
    fn what_cannot_be_split_is_refused_with_the_reason() {
        let refused = |sql: &str, dialect| run(sql, dialect, &users(false)).unwrap_err().0;
        assert!(refused("ALTER TABLE users RENAME COLUMN id TO user_id", Dialect::Postgres).contains("primary key"));
        assert!(
            refused("ALTER TABLE users RENAME COLUMN nope TO x", Dialect::Postgres).contains("has no column `nope`")
        );
        assert!(refused("ALTER TABLE users RENAME COLUMN email TO price", Dialect::Postgres).contains("already has"));
        assert!(refused("ALTER TABLE users ADD COLUMN x int", Dialect::Postgres).contains("ADD COLUMN"));
        assert!(refused("ALTER TABLE users RENAME COLUMN email TO e", Dialect::Sqlite).contains("table rebuild"));
    }

    #[test]
    fn long_names_are_cut_with_a_hash() {
        let long = "a".repeat(80);
        let cut = object_name(&long);
        assert_eq!(cut.len(), 63);
        assert_ne!(object_name(&format!("{long}b")), cut);
    }
}
