//! MySQL/MariaDB and SQLite: `sqlparser`'s tree → [`Op`]s. Type names are
//! lower-cased as `information_schema.COLUMNS.COLUMN_TYPE` prints them.
//! Also PostgreSQL, in a build without its own parser (the
//! `postgres-parser` feature off): less exact, never certain.

use sqlparser::ast::{
    self, AlterColumnOperation, AlterTableOperation, ColumnOption, ObjectName, ObjectNamePart, ObjectType,
    RenameTableNameKind, Statement, TableConstraint,
};
use sqlparser::dialect::{MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::{AlterAction, ColumnSpec, Constraint, Expr, Op, ParseError, TableName, TxKind};
use crate::Dialect;

pub(super) fn parse(sql: &str, dialect: Dialect) -> Result<Vec<Op>, ParseError> {
    let parsed = match dialect {
        Dialect::Sqlite => Parser::parse_sql(&SQLiteDialect {}, sql),
        Dialect::Postgres => Parser::parse_sql(&PostgreSqlDialect {}, sql),
        Dialect::MySql => Parser::parse_sql(&MySqlDialect {}, sql),
    };
    let statements = parsed.map_err(|e| ParseError { message: e.to_string(), position: None, certain: false })?;
    Ok(statements.iter().map(op).collect())
}

fn table(name: &ObjectName) -> TableName {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(ident) => ident.value.clone(),
            other => other.to_string(),
        })
        .collect();
    TableName::from_parts(&parts)
}

/// Function names called in an expression's text: identifiers followed by `(`.
fn functions_in(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphabetic() || bytes[i] == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            if bytes.get(i) == Some(&b'(') {
                out.push(text[start..i].to_ascii_lowercase());
            }
        } else if bytes[i] == b'\'' {
            // Skip string literals.
            i += 1;
            while i < bytes.len() && bytes[i] != b'\'' {
                i += 1;
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    out
}

fn expr(e: &ast::Expr) -> Expr {
    let text = e.to_string();
    Expr { functions: functions_in(&text), text }
}

fn column_from(name: &ast::Ident, data_type: &ast::DataType, options: &[&ColumnOption]) -> ColumnSpec {
    // As written (ENUM values keep their case); comparisons lower-case it themselves.
    let data_type = data_type.to_string();
    // sqlparser's spans are line/column, not offsets: `at` stays 0 (the statement).
    let mut spec = ColumnSpec {
        name: name.value.clone(),
        unsigned: data_type.to_lowercase().contains("unsigned"),
        data_type,
        ..ColumnSpec::default()
    };
    for option in options {
        match option {
            ColumnOption::NotNull => spec.not_null = true,
            ColumnOption::Null => {
                spec.not_null = false;
                spec.explicit_null = true;
            }
            ColumnOption::Check(c) => spec.check = Some(expr(&c.expr)),
            ColumnOption::Default(e) => spec.default = Some(expr(e)),
            ColumnOption::PrimaryKey(_) => {
                spec.primary_key = true;
                spec.not_null = true;
            }
            ColumnOption::Unique(_) => spec.unique = true,
            ColumnOption::ForeignKey(fk) => spec.references = Some(table(&fk.foreign_table)),
            ColumnOption::DialectSpecific(tokens) => {
                for token in tokens {
                    if let Token::Word(w) = token {
                        let word = w.value.to_ascii_uppercase();
                        if word == "AUTO_INCREMENT" || word == "AUTOINCREMENT" {
                            spec.auto_increment = true;
                        }
                    }
                }
            }
            ColumnOption::CharacterSet(name) => spec.charset = Some(name.to_string()),
            ColumnOption::Collation(name) => spec.collation = Some(name.to_string()),
            ColumnOption::Comment(text) => spec.comment = Some(text.clone()),
            ColumnOption::OnUpdate(e) => spec.on_update = Some(e.to_string()),
            ColumnOption::Generated { .. } => spec.generated_stored = true,
            _ => {}
        }
    }
    spec
}

fn column(def: &ast::ColumnDef) -> ColumnSpec {
    let options: Vec<&ColumnOption> = def.options.iter().map(|o| &o.option).collect();
    column_from(&def.name, &def.data_type, &options)
}

fn idents(list: &[ast::Ident]) -> Vec<String> {
    list.iter().map(|i| i.value.clone()).collect()
}

fn index_columns(list: &[ast::IndexColumn]) -> Vec<String> {
    list.iter().map(|c| c.column.expr.to_string()).collect()
}

fn constraint(c: &TableConstraint, not_valid: bool) -> Option<Constraint> {
    let name = |n: &Option<ast::Ident>| n.as_ref().map(|i| i.value.clone());
    Some(match c {
        TableConstraint::PrimaryKey(c) => {
            Constraint::PrimaryKey { name: name(&c.name), columns: index_columns(&c.columns), using_index: None }
        }
        TableConstraint::Unique(c) => {
            Constraint::Unique { name: name(&c.name), columns: index_columns(&c.columns), using_index: None }
        }
        TableConstraint::PrimaryKeyUsingIndex(c) => Constraint::PrimaryKey {
            name: name(&c.name),
            columns: Vec::new(),
            using_index: Some(c.index_name.value.clone()),
        },
        TableConstraint::UniqueUsingIndex(c) => Constraint::Unique {
            name: name(&c.name),
            columns: Vec::new(),
            using_index: Some(c.index_name.value.clone()),
        },
        TableConstraint::ForeignKey(c) => Constraint::ForeignKey {
            name: name(&c.name),
            columns: idents(&c.columns),
            references: table(&c.foreign_table),
            ref_columns: idents(&c.referred_columns),
            not_valid,
        },
        TableConstraint::Check(c) => Constraint::Check { name: name(&c.name), expr: expr(&c.expr), not_valid },
        TableConstraint::Index(_) | TableConstraint::FulltextOrSpatial(_) | TableConstraint::Exclude(_) => return None,
    })
}

fn alter_action(operation: &AlterTableOperation) -> AlterAction {
    match operation {
        AlterTableOperation::AddColumn { column_def, .. } => AlterAction::AddColumn(column(column_def)),
        AlterTableOperation::DropColumn { column_names, .. } => {
            AlterAction::DropColumn { column: idents(column_names).join(", ") }
        }
        AlterTableOperation::ModifyColumn { col_name, data_type, options, .. } => AlterAction::RedefineColumn {
            old_name: None,
            column: column_from(col_name, data_type, &options.iter().collect::<Vec<_>>()),
        },
        AlterTableOperation::ChangeColumn { old_name, new_name, data_type, options, .. } => {
            AlterAction::RedefineColumn {
                old_name: Some(old_name.value.clone()),
                column: column_from(new_name, data_type, &options.iter().collect::<Vec<_>>()),
            }
        }
        AlterTableOperation::RenameColumn { old_column_name, new_column_name } => {
            AlterAction::RenameColumn { from: old_column_name.value.clone(), to: new_column_name.value.clone() }
        }
        AlterTableOperation::RenameTable { table_name } => AlterAction::RenameTable {
            to: match table_name {
                RenameTableNameKind::As(name) | RenameTableNameKind::To(name) => table(name).name,
            },
        },
        AlterTableOperation::AddConstraint { constraint: TableConstraint::Index(i), .. } => AlterAction::AddIndex {
            name: i.name.as_ref().map(|n| n.value.clone()),
            columns: index_columns(&i.columns),
            unique: false,
        },
        AlterTableOperation::AddConstraint { constraint: c, not_valid } => match constraint(c, *not_valid) {
            Some(c) => AlterAction::AddConstraint(c),
            None => AlterAction::Other { what: "ADD INDEX".to_owned() },
        },
        AlterTableOperation::DropConstraint { name, .. } | AlterTableOperation::DropForeignKey { name, .. } => {
            AlterAction::DropConstraint { name: name.value.clone() }
        }
        AlterTableOperation::ValidateConstraint { name } => {
            AlterAction::ValidateConstraint { name: name.value.clone() }
        }
        AlterTableOperation::AlterColumn { column_name, op } => {
            let column = column_name.value.clone();
            match op {
                AlterColumnOperation::SetNotNull => AlterAction::SetNotNull { column },
                AlterColumnOperation::DropNotNull => AlterAction::DropNotNull { column },
                AlterColumnOperation::SetDefault { value } => AlterAction::SetDefault { column, default: expr(value) },
                AlterColumnOperation::DropDefault => AlterAction::DropDefault { column },
                AlterColumnOperation::SetDataType { data_type, using, .. } => AlterAction::AlterColumnType {
                    column,
                    data_type: data_type.to_string().to_lowercase(),
                    using: using.as_ref().map(expr),
                },
                other => AlterAction::Other { what: other.to_string() },
            }
        }
        other => AlterAction::Other { what: other.to_string() },
    }
}

fn op(statement: &Statement) -> Op {
    match statement {
        Statement::CreateTable(t) => Op::CreateTable {
            table: table(&t.name),
            columns: t.columns.iter().map(column).collect(),
            constraints: t.constraints.iter().filter_map(|c| constraint(c, false)).collect(),
            as_select: t.query.is_some(),
            if_not_exists: t.if_not_exists,
        },
        Statement::AlterTable(a) => Op::AlterTable {
            table: table(&a.name),
            actions: a.operations.iter().map(|o| (alter_action(o), 0)).collect(),
        },
        Statement::CreateIndex(i) => Op::CreateIndex {
            name: i.name.as_ref().map(|n| table(n).name),
            table: table(&i.table_name),
            columns: index_columns(&i.columns),
            unique: i.unique,
            concurrently: i.concurrently,
        },
        Statement::Drop { object_type: ObjectType::Table, names, cascade, .. } => {
            Op::DropTable { tables: names.iter().map(table).collect(), cascade: *cascade }
        }
        Statement::Drop { object_type: ObjectType::Index, names, .. } => {
            Op::DropIndex { names: names.iter().map(|n| table(n).to_string()).collect(), concurrently: false }
        }
        Statement::RenameTable(renames) if renames.len() == 1 => {
            Op::RenameTable { from: table(&renames[0].old_name), to: table(&renames[0].new_name) }
        }
        Statement::Truncate(t) => Op::Truncate {
            tables: t.table_names.iter().map(|t| table(&t.name)).collect(),
            cascade: matches!(t.cascade, Some(ast::CascadeOption::Cascade)),
        },
        Statement::Insert(i) => Op::Insert {
            table: match &i.table {
                ast::TableObject::TableName(name) => table(name),
                other => TableName::bare(&other.to_string()),
            },
        },
        Statement::Update(u) => Op::Update {
            table: match &u.table.relation {
                ast::TableFactor::Table { name, .. } => table(name),
                other => TableName::bare(&other.to_string()),
            },
            has_where: u.selection.is_some(),
        },
        Statement::Delete(d) => {
            let from = match &d.from {
                ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
            };
            let target = match from.first().map(|t| &t.relation) {
                Some(ast::TableFactor::Table { name, .. }) => table(name),
                _ => TableName::bare("?"),
            };
            Op::Delete { table: target, has_where: d.selection.is_some() }
        }
        Statement::CreateTrigger(t) => Op::CreateTrigger { name: t.name.to_string(), table: table(&t.table_name) },
        Statement::StartTransaction { .. } => Op::Transaction(TxKind::Begin),
        Statement::Commit { .. } => Op::Transaction(TxKind::Commit),
        Statement::Rollback { savepoint: None, .. } => Op::Transaction(TxKind::Rollback),
        Statement::Rollback { .. } | Statement::Savepoint { .. } | Statement::ReleaseSavepoint { .. } => {
            Op::Transaction(TxKind::Other)
        }
        other => Op::Other { kind: statement_kind(other) },
    }
}

/// The statement's leading keywords, e.g. `CREATE VIEW`, `SELECT`.
fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.as_slice() {
        [first, second] if ["CREATE", "ALTER", "DROP"].contains(first) => format!("{first} {second}"),
        [first, ..] => (*first).to_owned(),
        [] => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str, dialect: Dialect) -> Op {
        let mut ops = parse(sql, dialect).unwrap();
        assert_eq!(ops.len(), 1, "{ops:?}");
        ops.remove(0)
    }

    #[test]
    fn mysql_modify_keeps_what_it_says_and_only_that() {
        let Op::AlterTable { table, actions } = one("ALTER TABLE carts MODIFY cart_id BIGINT NOT NULL", Dialect::MySql)
        else {
            panic!()
        };
        assert_eq!(table.name, "carts");
        let AlterAction::RedefineColumn { old_name: None, column } = &actions[0].0 else { panic!("{actions:?}") };
        assert_eq!((column.name.as_str(), column.data_type.as_str(), column.not_null), ("cart_id", "BIGINT", true));
        assert!(!column.auto_increment && column.default.is_none() && column.comment.is_none());

        let Op::AlterTable { actions, .. } = one(
            "ALTER TABLE carts CHANGE cart_id id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT COMMENT 'key' ON UPDATE CURRENT_TIMESTAMP",
            Dialect::MySql,
        ) else {
            panic!()
        };
        let AlterAction::RedefineColumn { old_name: Some(old), column } = &actions[0].0 else { panic!("{actions:?}") };
        assert_eq!((old.as_str(), column.name.as_str()), ("cart_id", "id"));
        assert!(column.auto_increment && column.unsigned);
        assert_eq!(column.comment.as_deref(), Some("key"));
        assert!(column.on_update.is_some());
    }

    /// What a build without PostgreSQL's own parser reads.
    #[test]
    fn postgres_without_its_own_parser() {
        assert_eq!(
            one("CREATE INDEX CONCURRENTLY i ON t (a)", Dialect::Postgres),
            Op::CreateIndex {
                name: Some("i".into()),
                table: TableName::bare("t"),
                columns: vec!["a".into()],
                unique: false,
                concurrently: true
            }
        );
        let Op::AlterTable { actions, .. } = one("ALTER TABLE t ADD COLUMN a integer NOT NULL", Dialect::Postgres)
        else {
            panic!()
        };
        assert!(matches!(&actions[0].0, AlterAction::AddColumn(c) if c.not_null && c.default.is_none()));
        let refused = parse("CREATE TABEL t (a int)", Dialect::Postgres).unwrap_err();
        assert!(!refused.certain, "sqlparser may lag PostgreSQL: never certain");
    }

    #[test]
    fn mysql_and_sqlite_statements() {
        assert_eq!(
            one("CREATE INDEX i ON t (a, b)", Dialect::MySql),
            Op::CreateIndex {
                name: Some("i".into()),
                table: TableName::bare("t"),
                columns: vec!["a".into(), "b".into()],
                unique: false,
                concurrently: false
            }
        );
        assert_eq!(
            one("RENAME TABLE a TO b", Dialect::MySql),
            Op::RenameTable { from: TableName::bare("a"), to: TableName::bare("b") }
        );
        assert_eq!(one("DELETE FROM t", Dialect::Sqlite), Op::Delete { table: TableName::bare("t"), has_where: false });
        assert_eq!(
            one("UPDATE t SET a = 1 WHERE id < 10", Dialect::MySql),
            Op::Update { table: TableName::bare("t"), has_where: true }
        );
        let Op::CreateTable { columns, .. } = one(
            "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT DEFAULT (datetime('now')))",
            Dialect::Sqlite,
        ) else {
            panic!()
        };
        assert!(columns[0].auto_increment && columns[0].primary_key);
        assert_eq!(columns[1].default.as_ref().unwrap().functions, ["datetime"]);
        assert!(parse("ALTER TABLE", Dialect::MySql).is_err());
    }
}
