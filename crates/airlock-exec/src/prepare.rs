//! Turning a migration's text into the statements to run and the way to run them.
//!
//! Decided here, before anything touches the database, so that a malformed file
//! is refused (exit 2) with nothing changed:
//! - a file wrapped in its own `BEGIN; ... COMMIT;` runs inside airlock's
//!   transaction as if those two lines were not there;
//! - a file with several transactions of its own runs as written, statement by statement;
//! - statements that cannot run in a transaction (`CREATE INDEX CONCURRENTLY`, `VACUUM`...)
//!   make the file run statement by statement when they are all it has or when it says
//!   `-- airlock:no-transaction`; mixed with other statements they are an error;
//! - on an engine without transactional DDL (MySQL), a file of only data statements
//!   still runs in one transaction with its history row; any other runs statement by statement.

use airlock_core::{Migration, RunMode, Script};
use airlock_sql::{Dialect, Statement, TxControl, TxNeed, classify, split};

use crate::error::InvalidMigration;

/// A migration ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Statements in order.
    pub statements: Vec<Statement>,
    /// How to run them.
    pub mode: RunMode,
    /// For each statement, the index name of a `CREATE INDEX CONCURRENTLY`.
    pub concurrent_index: Vec<Option<String>>,
    /// Said once to the user (e.g. "ran outside a transaction because...").
    pub notes: Vec<String>,
    /// A statement manages savepoints (`ROLLBACK TO`...): in a transaction,
    /// each statement's answer is awaited before the commit is sent, never all at once.
    pub manages_transaction: bool,
    /// For each statement, whether MySQL's `LOCK TABLES` holds after it (until
    /// `UNLOCK TABLES`): the session can touch no other table then, so the
    /// runner records its progress only once they are unlocked.
    pub tables_locked: Vec<bool>,
}

/// What `prepare` needs to know about the engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineTraits {
    /// The dialect for splitting.
    pub dialect: Dialect,
    /// Whether DDL is transactional.
    pub transactional_ddl: bool,
}

impl From<&airlock_driver::Profile> for EngineTraits {
    fn from(profile: &airlock_driver::Profile) -> EngineTraits {
        EngineTraits { dialect: profile.dialect, transactional_ddl: profile.capabilities.transactional_ddl }
    }
}

fn invalid(script: &Script, line: Option<usize>, message: String) -> InvalidMigration {
    InvalidMigration { path: script.path.clone(), line: line.map(|l| l + script.line_offset), message }
}

/// Splits a script, mapping split errors to the file's lines.
pub fn split_script(script: &Script, dialect: Dialect) -> Result<Vec<Statement>, InvalidMigration> {
    split(&script.sql, dialect).map_err(|e| invalid(script, Some(e.line), e.message))
}

const DATA_HEADS: [&str; 6] = ["INSERT", "UPDATE", "DELETE", "REPLACE", "SELECT", "WITH"];

/// Prepares the up script of `migration`.
pub fn prepare(migration: &Migration, engine: EngineTraits) -> Result<Prepared, InvalidMigration> {
    let mut prepared = prepare_script(&migration.up, migration.directives.no_transaction, engine)?;
    if migration.directives.backfill {
        prepared.mode = RunMode::Batches;
    }
    Ok(prepared)
}

/// Prepares any script (up or down) with the file's `no-transaction` setting.
pub fn prepare_script(
    script: &Script,
    no_transaction: bool,
    engine: EngineTraits,
) -> Result<Prepared, InvalidMigration> {
    let mut statements = split_script(script, engine.dialect)?;
    let mut infos: Vec<_> = statements.iter().map(|s| classify(&s.sql, engine.dialect)).collect();
    let mut notes = Vec::new();

    let control = |tx: &TxNeed| matches!(tx, TxNeed::Control(_));
    let controls: Vec<usize> = infos.iter().enumerate().filter(|(_, i)| control(&i.tx)).map(|(n, _)| n).collect();
    let wrapped = controls.len() == 2
        && controls[0] == 0
        && controls[1] == statements.len() - 1
        && infos[0].tx == TxNeed::Control(TxControl::Begin)
        && infos[statements.len() - 1].tx == TxNeed::Control(TxControl::Commit);
    let mut own_transactions = false;
    if wrapped {
        statements.pop();
        statements.remove(0);
        infos.pop();
        infos.remove(0);
        notes.push("its own BEGIN/COMMIT were folded into airlock's transaction".to_owned());
    } else if !controls.is_empty() {
        own_transactions = true;
        notes.push("it controls its own transactions, so it ran as written, statement by statement".to_owned());
    }

    let outside: Vec<(usize, &'static str)> = infos
        .iter()
        .enumerate()
        .filter_map(|(n, i)| match i.tx {
            TxNeed::OutsideTransaction(what) => Some((n, what)),
            _ => None,
        })
        .collect();
    let concurrent_index = infos.iter().map(|i| i.concurrent_index.clone()).collect();
    let manages_transaction = infos.iter().any(|i| i.manages_transaction);
    let mut locked = false;
    let tables_locked = infos
        .iter()
        .map(|i| {
            locked = i.locks_tables.unwrap_or(locked);
            locked
        })
        .collect();

    let mode = if own_transactions || no_transaction {
        RunMode::Statements
    } else if !outside.is_empty() {
        if outside.len() == statements.len() {
            notes.push(format!("{} cannot run in a transaction, so it ran on its own", outside[0].1));
            RunMode::Statements
        } else {
            let (first_outside, what) = outside[0];
            let other = (0..statements.len()).find(|n| !outside.iter().any(|(o, _)| o == n)).unwrap_or(0);
            return Err(invalid(
                script,
                Some(statements[first_outside].line),
                format!(
                    "{what} (statement {}) cannot run inside a transaction, and this file also has statements that should ({} at line {}); \
                     move the {what} into a migration of its own, or add `-- airlock:no-transaction` to the header to run every statement on its own",
                    first_outside + 1,
                    infos[other].head,
                    statements[other].line + script.line_offset
                ),
            ));
        }
    } else if !engine.transactional_ddl
        && !infos.iter().all(|i| DATA_HEADS.iter().any(|h| i.head.split(' ').next() == Some(h)))
    {
        RunMode::Statements
    } else {
        RunMode::Transaction
    };
    Ok(Prepared { statements, mode, concurrent_index, notes, manages_transaction, tables_locked })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const PG: EngineTraits = EngineTraits { dialect: Dialect::Postgres, transactional_ddl: true };
    const MY: EngineTraits = EngineTraits { dialect: Dialect::MySql, transactional_ddl: false };

    fn script(sql: &str) -> Script {
        Script { path: PathBuf::from("m/1_x.up.sql"), sql: sql.to_owned(), line_offset: 0 }
    }

    fn sqls(p: &Prepared) -> Vec<&str> {
        p.statements.iter().map(|s| s.sql.as_str()).collect()
    }

    #[test]
    fn plain_ddl_runs_in_a_transaction() {
        let p = prepare_script(&script("CREATE TABLE a (id int);\nCREATE TABLE b (id int);"), false, PG).unwrap();
        assert_eq!(p.mode, RunMode::Transaction);
        assert_eq!(sqls(&p), ["CREATE TABLE a (id int)", "CREATE TABLE b (id int)"]);
    }

    #[test]
    fn own_begin_commit_is_folded_in() {
        let p = prepare_script(&script("BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n"), false, PG).unwrap();
        assert_eq!(p.mode, RunMode::Transaction);
        assert_eq!(sqls(&p), ["CREATE TABLE a (id int)"]);
    }

    #[test]
    fn several_own_transactions_run_as_written() {
        let p = prepare_script(&script("BEGIN; SELECT 1; COMMIT; BEGIN; SELECT 2; COMMIT;"), false, PG).unwrap();
        assert_eq!(p.mode, RunMode::Statements);
        assert_eq!(p.statements.len(), 6);
    }

    #[test]
    fn concurrent_index_alone_runs_outside_and_mixed_is_refused() {
        let p = prepare_script(&script("CREATE INDEX CONCURRENTLY i ON t (x);"), false, PG).unwrap();
        assert_eq!(p.mode, RunMode::Statements);
        assert_eq!(p.concurrent_index, [Some("i".to_owned())]);

        let e = prepare_script(&script("CREATE TABLE t (x int);\nCREATE INDEX CONCURRENTLY i ON t (x);"), false, PG)
            .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(
            e.message.contains("CREATE INDEX CONCURRENTLY (statement 2) cannot run inside a transaction"),
            "{}",
            e.message
        );
        assert!(e.message.contains("CREATE TABLE at line 1"), "{}", e.message);

        let p = prepare_script(&script("CREATE TABLE t (x int);\nCREATE INDEX CONCURRENTLY i ON t (x);"), true, PG)
            .unwrap();
        assert_eq!(p.mode, RunMode::Statements);
    }

    #[test]
    fn mysql_ddl_runs_statement_by_statement_but_data_in_a_transaction() {
        let p = prepare_script(&script("CREATE TABLE a (id int);"), false, MY).unwrap();
        assert_eq!(p.mode, RunMode::Statements);
        let p = prepare_script(&script("INSERT INTO a VALUES (1);\nUPDATE a SET id = 2;"), false, MY).unwrap();
        assert_eq!(p.mode, RunMode::Transaction);
    }

    #[test]
    fn split_errors_name_the_line_in_the_file() {
        let s =
            Script { path: PathBuf::from("m/1_x.sql"), sql: "SELECT 1;\nSELECT 'oops;\n".to_owned(), line_offset: 3 };
        let e = prepare_script(&s, false, PG).unwrap_err();
        assert_eq!(e.line, Some(5));
    }
}
