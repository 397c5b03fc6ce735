//! Table tests for `classify`: statement in, transaction need / index name / head out.

use airlock_sql::{Dialect, TxControl, TxNeed, classify};

use Dialect::{MySql, Postgres, Sqlite};
use TxControl::{Begin, Commit, Rollback};
use TxNeed::{Any, Control, OutsideTransaction as Outside};

fn run(cases: &[(Dialect, &str, TxNeed)]) {
    for (i, (dialect, sql, tx)) in cases.iter().enumerate() {
        let info = classify(sql, *dialect);
        assert_eq!(&info.tx, tx, "case {i} ({dialect:?}) {sql:?}");
    }
}

#[test]
fn postgres_outside_transaction() {
    run(&[
        (Postgres, "CREATE INDEX CONCURRENTLY i ON t (a)", Outside("CREATE INDEX CONCURRENTLY")),
        (Postgres, "create unique index concurrently i on t (a)", Outside("CREATE INDEX CONCURRENTLY")),
        (Postgres, "-- why\n/* c */ CREATE INDEX\n  CONCURRENTLY ON t (a)", Outside("CREATE INDEX CONCURRENTLY")),
        (Postgres, "CREATE INDEX i ON t (a)", Any),
        (Postgres, "DROP INDEX CONCURRENTLY IF EXISTS i", Outside("DROP INDEX CONCURRENTLY")),
        (Postgres, "DROP INDEX i", Any),
        (Postgres, "REINDEX INDEX CONCURRENTLY x", Outside("REINDEX CONCURRENTLY")),
        (Postgres, "REINDEX (VERBOSE) TABLE CONCURRENTLY t", Outside("REINDEX CONCURRENTLY")),
        (Postgres, "REINDEX (CONCURRENTLY, VERBOSE) TABLE t", Outside("REINDEX CONCURRENTLY")),
        (Postgres, "REINDEX TABLE t", Any),
        (Postgres, "REINDEX (VERBOSE) SCHEMA s", Outside("REINDEX SCHEMA")),
        (Postgres, "REINDEX DATABASE d", Outside("REINDEX DATABASE")),
        (Postgres, "REINDEX SYSTEM", Outside("REINDEX SYSTEM")),
        (Postgres, "VACUUM", Outside("VACUUM")),
        (Postgres, "vacuum (analyze) t", Outside("VACUUM")),
        (Postgres, "CREATE DATABASE d", Outside("CREATE DATABASE")),
        (Postgres, "DROP DATABASE d WITH (FORCE)", Outside("DROP DATABASE")),
        (Postgres, "CREATE TABLESPACE s LOCATION '/x'", Outside("CREATE TABLESPACE")),
        (Postgres, "DROP TABLESPACE s", Outside("DROP TABLESPACE")),
        (Postgres, "ALTER SYSTEM SET work_mem = '64MB'", Outside("ALTER SYSTEM")),
        (Postgres, "CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p", Outside("CREATE SUBSCRIPTION")),
        (Postgres, "DROP SUBSCRIPTION s", Outside("DROP SUBSCRIPTION")),
        (Postgres, "COMMIT PREPARED 'x'", Outside("COMMIT PREPARED")),
        (Postgres, "ROLLBACK PREPARED 'x'", Outside("ROLLBACK PREPARED")),
        (Postgres, "ALTER TABLE t ADD COLUMN a int", Any),
        (Postgres, "ALTER DATABASE d SET x = 1", Any),
        (Postgres, "CREATE TABLE \"VACUUM\" (a int)", Any),
    ]);
}

#[test]
fn postgres_control() {
    run(&[
        (Postgres, "BEGIN", Control(Begin)),
        (Postgres, "begin transaction isolation level serializable", Control(Begin)),
        (Postgres, "BEGIN WORK", Control(Begin)),
        (Postgres, "BEGIN ATOMIC SELECT 1; END", Any),
        (Postgres, "START TRANSACTION", Control(Begin)),
        (Postgres, "COMMIT", Control(Commit)),
        (Postgres, "COMMIT AND CHAIN", Control(Commit)),
        (Postgres, "END", Control(Commit)),
        (Postgres, "END TRANSACTION", Control(Commit)),
        (Postgres, "end work", Control(Commit)),
        (Postgres, "END IF", Any),
        (Postgres, "ROLLBACK", Control(Rollback)),
        (Postgres, "ROLLBACK WORK", Control(Rollback)),
        (Postgres, "ROLLBACK TO SAVEPOINT s", Any),
        (Postgres, "ROLLBACK TO s", Any),
        (Postgres, "ROLLBACK TRANSACTION TO SAVEPOINT s", Any),
        (Postgres, "ABORT", Control(Rollback)),
        (Postgres, "SAVEPOINT s", Any),
        (Postgres, "RELEASE SAVEPOINT s", Any),
    ]);
}

#[test]
fn mysql_rules() {
    run(&[
        (MySql, "BEGIN", Control(Begin)),
        (MySql, "begin work", Control(Begin)),
        (MySql, "BEGIN NOT ATOMIC SELECT 1; END", Any),
        (MySql, "START TRANSACTION", Control(Begin)),
        (MySql, "START TRANSACTION WITH CONSISTENT SNAPSHOT", Control(Begin)),
        (MySql, "COMMIT", Control(Commit)),
        (MySql, "COMMIT WORK AND NO CHAIN", Control(Commit)),
        (MySql, "ROLLBACK", Control(Rollback)),
        (MySql, "ROLLBACK WORK", Control(Rollback)),
        (MySql, "ROLLBACK TO SAVEPOINT s", Any),
        (MySql, "ROLLBACK WORK TO s", Any),
        (MySql, "# c\nCOMMIT", Control(Commit)),
        (MySql, "END", Any),
        (MySql, "ABORT", Any),
        (MySql, "VACUUM", Any),
        (MySql, "CREATE INDEX CONCURRENTLY i ON t (a)", Any),
        (MySql, "CREATE DATABASE d", Any),
        (MySql, "/*!40101 START TRANSACTION */", Control(Begin)),
    ]);
}

#[test]
fn sqlite_rules() {
    run(&[
        (Sqlite, "VACUUM", Outside("VACUUM")),
        (Sqlite, "vacuum main into 'x.db'", Outside("VACUUM")),
        (Sqlite, "BEGIN", Control(Begin)),
        (Sqlite, "BEGIN DEFERRED", Control(Begin)),
        (Sqlite, "BEGIN IMMEDIATE TRANSACTION", Control(Begin)),
        (Sqlite, "begin exclusive", Control(Begin)),
        (Sqlite, "BEGIN TRANSACTION", Control(Begin)),
        (Sqlite, "COMMIT", Control(Commit)),
        (Sqlite, "COMMIT TRANSACTION", Control(Commit)),
        (Sqlite, "END", Control(Commit)),
        (Sqlite, "END TRANSACTION", Control(Commit)),
        (Sqlite, "ROLLBACK", Control(Rollback)),
        (Sqlite, "ROLLBACK TRANSACTION", Control(Rollback)),
        (Sqlite, "ROLLBACK TO SAVEPOINT s", Any),
        (Sqlite, "ROLLBACK TRANSACTION TO s", Any),
        (Sqlite, "START TRANSACTION", Any),
        (Sqlite, "CREATE INDEX CONCURRENTLY i ON t (a)", Any),
        (Sqlite, "CREATE TABLE t (a)", Any),
    ]);
}

#[test]
fn concurrent_index_names() {
    let cases: &[(&str, Option<&str>)] = &[
        ("CREATE INDEX CONCURRENTLY idx_a ON t (a)", Some("idx_a")),
        ("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS Idx_A ON t (a)", Some("Idx_A")),
        ("create index concurrently \"My \"\"Idx\"\"\" on t (a)", Some("My \"Idx\"")),
        ("CREATE INDEX CONCURRENTLY app.idx ON t (a)", Some("app.idx")),
        ("CREATE INDEX CONCURRENTLY \"App\" . \"idx\" ON t (a)", Some("App.idx")),
        ("CREATE INDEX CONCURRENTLY \"on\" ON t (a)", Some("on")),
        ("CREATE INDEX CONCURRENTLY ON t (a)", None),
        ("CREATE INDEX CONCURRENTLY ON ONLY t (a)", None),
        ("CREATE INDEX CONCURRENTLY", None),
        ("CREATE INDEX idx ON t (a)", None),
        ("DROP INDEX CONCURRENTLY idx", None),
    ];
    for (sql, name) in cases {
        assert_eq!(classify(sql, Postgres).concurrent_index.as_deref(), *name, "{sql:?}");
    }
    assert_eq!(classify("CREATE INDEX CONCURRENTLY idx ON t (a)", Sqlite).concurrent_index, None);
}

#[test]
fn heads() {
    let cases: &[(Dialect, &str, &str)] = &[
        (Postgres, "CREATE TABLE users (id int)", "CREATE TABLE"),
        (Postgres, "alter table users add column a int", "ALTER TABLE"),
        (Postgres, "INSERT INTO users VALUES (1)", "INSERT INTO"),
        (Postgres, "-- lead\nDROP TABLE users", "DROP TABLE"),
        (Postgres, "CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)", "CREATE UNIQUE INDEX"),
        (Postgres, "CREATE OR REPLACE FUNCTION f()", "CREATE OR REPLACE"),
        (Postgres, "UPDATE t SET a = 1", "UPDATE"),
        (Postgres, "SELECT 1", "SELECT"),
        (Postgres, "COMMIT", "COMMIT"),
        (Postgres, "(SELECT 1)", ""),
        (Postgres, "", ""),
        (MySql, "/*!40101 SET NAMES utf8 */", "SET"),
        (MySql, "# c\nrename table a to b", "RENAME TABLE"),
        (Sqlite, "CREATE TEMP TRIGGER t", "CREATE TEMP TRIGGER"),
    ];
    for (dialect, sql, head) in cases {
        assert_eq!(classify(sql, *dialect).head, *head, "{dialect:?} {sql:?}");
    }
}

#[test]
fn classify_tolerates_unlexable_text() {
    let info = classify("VACUUM 'unterminated", Postgres);
    assert_eq!(info.tx, Outside("VACUUM"));
    assert_eq!(info.head, "VACUUM");
    let info = classify("/* open", Sqlite);
    assert_eq!((info.tx, info.head.as_str()), (Any, ""));
}
