//! PostgreSQL-only behaviour: statements that cannot run in a transaction, and
//! the INVALID index a failed `CREATE INDEX CONCURRENTLY` leaves behind.

mod common;

use common::{Db, Engine, Project, create_table};

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn concurrent_index_runs_outside_a_transaction_and_mixing_is_refused() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    project.write("1_t.up.sql", &create_table(1));
    project.write("2_index.up.sql", "CREATE INDEX CONCURRENTLY t_1_v ON t_1 (v);\n");
    project.run(&db, &["migrate"]).expect(0);
    assert_eq!(
        db.scalar("SELECT indisvalid::text FROM pg_index WHERE indexrelid = 't_1_v'::regclass").as_deref(),
        Some("true")
    );
    assert_eq!(db.scalar("SELECT mode FROM airlock_history WHERE version = '2'").as_deref(), Some("statements"));

    project
        .write("3_mixed.up.sql", "ALTER TABLE t_1 ADD COLUMN w text;\nCREATE INDEX CONCURRENTLY t_1_w ON t_1 (w);\n");
    let refused = project.run(&db, &["migrate"]);
    refused.expect(2);
    assert!(
        refused
            .stderr
            .contains("3_mixed.up.sql:2: CREATE INDEX CONCURRENTLY (statement 2) cannot run inside a transaction"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("airlock:no-transaction"), "{}", refused.stderr);
    assert!(!db.table_exists("airlock_x"));
    assert_eq!(
        db.count("SELECT count(*) FROM information_schema.columns WHERE table_name = 't_1' AND column_name = 'w'"),
        0,
        "nothing ran"
    );

    project.write(
        "3_mixed.up.sql",
        "-- airlock:no-transaction\nALTER TABLE t_1 ADD COLUMN w text;\nCREATE INDEX CONCURRENTLY t_1_w ON t_1 (w);\n",
    );
    project.run(&db, &["migrate"]).expect(0);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn failed_concurrent_index_is_reported_invalid_and_retry_rebuilds_it() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE accounts (id bigint primary key, email text);\nINSERT INTO accounts VALUES (1, 'a@x'), (2, 'a@x');\n");
    project.write("2_unique_email.up.sql", "CREATE UNIQUE INDEX CONCURRENTLY accounts_email ON accounts (email);\n");
    let failed = project.run(&db, &["migrate"]);
    failed.expect(1);
    assert!(failed.stderr.contains("left the INVALID index accounts_email behind"), "{}", failed.stderr);
    assert!(failed.stderr.contains("airlock resolve 2 --retry-from-failed"), "{}", failed.stderr);
    assert_eq!(
        db.scalar("SELECT indisvalid::text FROM pg_index WHERE indexrelid = 'accounts_email'::regclass").as_deref(),
        Some("false")
    );
    let status = project.run(&db, &["status", "--format", "json"]).json();
    assert_eq!(status["state"], "failed");
    assert_eq!(status["problems"][0]["code"], "failed");

    db.exec("DELETE FROM accounts WHERE id = 2");
    let retried = project.run(&db, &["resolve", "2", "--retry-from-failed", "--reason", "removed the duplicate"]);
    retried.expect(0);
    assert!(retried.stderr.contains("dropped the INVALID index"), "{}", retried.stderr);
    assert_eq!(
        db.scalar("SELECT indisvalid::text FROM pg_index WHERE indexrelid = 'accounts_email'::regclass").as_deref(),
        Some("true")
    );
    assert_eq!(db.state_of("2").as_deref(), Some("succeeded"));
    assert_eq!(db.count("SELECT count(*) FROM airlock_events WHERE kind = 'invalid_index_dropped'"), 1);
    assert_eq!(db.count("SELECT count(*) FROM airlock_events WHERE kind = 'resolved'"), 1);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn dollar_quoted_function_and_statement_timeout_directive() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    project.write(
        "1_fn.up.sql",
        "CREATE FUNCTION add_one(i int) RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n  RETURN i + 1; -- ; inside\nEND;\n$$;\n",
    );
    project.write("2_slow.up.sql", "-- airlock:statement-timeout 200ms\nSELECT pg_sleep(2);\n");
    let run = project.run(&db, &["migrate"]);
    run.expect(1);
    assert_eq!(db.scalar("SELECT add_one(1)::text").as_deref(), Some("2"));
    assert!(run.stderr.contains("canceling statement due to statement timeout"), "{}", run.stderr);
}

/// The test server's role `airlock_tls` is refused without TLS (pg_hba
/// `hostnossl ... reject`), so getting in as it proves the connection was encrypted.
fn tls_url(db: &Db, params: &str) -> String {
    let url = db.url.replacen("postgres@", "airlock_tls@", 1);
    format!("{url}?{params}")
}

fn ca() -> String {
    std::env::var("AIRLOCK_TEST_POSTGRES_CA").expect("scripts/test exports AIRLOCK_TEST_POSTGRES_CA")
}

fn migrate_with(project: &Project, url: &str) -> common::Run {
    common::Run::of(
        project.bare().args(["--database-url", url, "--dir"]).arg(project.dir()).arg("migrate").output().unwrap(),
    )
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn tls_encrypts_by_default_and_verifies_when_asked() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    project.write("1_t.up.sql", &create_table(1));

    // sslmode=disable: the TLS-only role is turned away, and the message says why.
    let refused = migrate_with(&project, &tls_url(&db, "sslmode=disable"));
    refused.expect(1);
    assert!(refused.stderr.contains("no encryption") || refused.stderr.contains("pg_hba.conf"), "{}", refused.stderr);

    // The default (prefer) and require encrypt.
    migrate_with(&project, &db.url.replacen("postgres@", "airlock_tls@", 1)).expect(0);
    project.write("2_t.up.sql", &create_table(2));
    migrate_with(&project, &tls_url(&db, "sslmode=require")).expect(0);

    // verify-full needs a trusted root: the system store does not know the test CA.
    project.write("3_t.up.sql", &create_table(3));
    let untrusted = migrate_with(&project, &tls_url(&db, "sslmode=verify-full"));
    untrusted.expect(1);
    assert!(untrusted.stderr.to_lowercase().contains("certificate"), "{}", untrusted.stderr);
    assert!(!db.table_exists("t_3"));

    let verified = migrate_with(&project, &tls_url(&db, &format!("sslmode=verify-full&sslrootcert={}", ca())));
    verified.expect(0);
    migrate_with(&project, &tls_url(&db, &format!("sslmode=verify-ca&sslrootcert={}", ca()))).expect(0);
    assert!(db.table_exists("t_3"));

    let missing = migrate_with(&project, &tls_url(&db, "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"));
    missing.expect(1);
    assert!(missing.stderr.contains("sslrootcert=/nonexistent/ca.pem: cannot read it"), "{}", missing.stderr);
    let bad_mode = migrate_with(&project, &tls_url(&db, "sslmode=strict"));
    assert!(bad_mode.stderr.contains("sslmode=strict is not one of"), "{}", bad_mode.stderr);
}

/// A script with savepoints could recover from its own failed statement
/// (`ROLLBACK TO`) and let a commit sent with it go through: such a script's
/// statements are each awaited before the commit, and a failure fails the
/// migration whole, as it does without savepoints.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn a_failed_statement_before_rollback_to_savepoint_fails_the_migration() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    project.write("1_t.up.sql", &create_table(1));
    project.write(
        "2_savepoint.up.sql",
        "CREATE TABLE kept (id int);\nSAVEPOINT s;\nSELECT 1 / 0;\nROLLBACK TO SAVEPOINT s;\nCREATE TABLE after_recovery (id int);\n",
    );
    let failed = project.run(&db, &["migrate"]);
    failed.expect(1);
    assert!(failed.stderr.contains("division by zero"), "{}", failed.stderr);
    assert!(!db.table_exists("kept") && !db.table_exists("after_recovery"), "nothing of it stayed");
    assert_eq!(db.state_of("2").as_deref(), Some("failed"));
    assert_eq!(db.state_of("1").as_deref(), Some("succeeded"));
}

/// On a scratch connection a script and the read of what it can change go
/// together in one transaction; a failed statement reads nothing and keeps
/// nothing, and a read that fails (the script lost the prepared statements)
/// costs the script nothing: it is run again and read on its own.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn a_script_and_the_read_after_it_go_together_and_a_failed_read_costs_the_script_nothing() {
    use airlock_core::snapshot::{ObjectKind, Scope};
    let db = Db::new(Engine::Postgres);
    db.exec("CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE u (id int)");
    let url = airlock_driver::DatabaseUrl::parse(&db.url).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut plain = airlock_engines::connect(&url, true).await.unwrap();
        let mut scratch = airlock_engines::connect(&url, true).await.unwrap();
        scratch.snapshots_repeat();
        let before = scratch.schema_snapshot().await.unwrap();
        let scope = Scope {
            relations: ["t".to_owned()].into(),
            parts: [ObjectKind::Column, ObjectKind::ColumnOrder].into(),
            others: Default::default(),
        };
        let columns = |s: &airlock_core::snapshot::SchemaSnapshot| -> Vec<String> {
            s.objects.keys().filter(|p| p.kind == ObjectKind::Column).map(ToString::to_string).collect()
        };

        let (ran, _, part) =
            scratch.run_transaction_and_read(&["ALTER TABLE t ADD COLUMN c int"], &scope).await.unwrap();
        assert!(matches!(ran, airlock_driver::Ran::All), "{ran:?}");
        let after = before.refreshed(&scope, part.expect("PostgreSQL reads the part"));
        assert_eq!(after, plain.schema_snapshot().await.unwrap());
        assert_eq!(columns(&after), ["column public.t.c", "column public.t.id", "column public.u.id"]);

        let (ran, _, part) =
            scratch.run_transaction_and_read(&["ALTER TABLE t ADD COLUMN d int", "SELECT 1/0"], &scope).await.unwrap();
        assert!(matches!(ran, airlock_driver::Ran::Failed { index: 1, .. }), "{ran:?}");
        assert!(part.is_none());
        assert_eq!(plain.schema_snapshot().await.unwrap(), after, "the failed script is rolled back");

        // The read in the script's transaction fails: the script is not lost.
        let (ran, _, part) = scratch
            .run_transaction_and_read(&["ALTER TABLE t ADD COLUMN d int", "DEALLOCATE ALL"], &scope)
            .await
            .unwrap();
        assert!(matches!(ran, airlock_driver::Ran::All), "{ran:?}");
        let again = after.refreshed(&scope, part.expect("read on its own"));
        assert_eq!(again, plain.schema_snapshot().await.unwrap());
        assert!(columns(&again).contains(&"column public.t.d".to_owned()), "{again:?}");
        // Planned each time from then on, and still together.
        let (ran, _, part) = scratch.run_transaction_and_read(&["ALTER TABLE t DROP COLUMN c"], &scope).await.unwrap();
        assert!(matches!(ran, airlock_driver::Ran::All), "{ran:?}");
        assert_eq!(again.refreshed(&scope, part.unwrap()), plain.schema_snapshot().await.unwrap());
    });
}

/// A scratch connection keeps the snapshot's queries prepared; what it reads
/// is what a plain connection reads, a part of the schema read after a change
/// and laid over the schema before is the schema after, and a connection
/// that lost its prepared statements (as behind a proxy that does not keep
/// them) plans them again.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn a_prepared_schema_snapshot_reads_what_a_planned_one_reads_part_by_part_too_and_survives_losing_its_statements() {
    let db = Db::new(Engine::Postgres);
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, a text DEFAULT 'x'); COMMENT ON TABLE t IS 'kept'; \
         COMMENT ON COLUMN t.a IS 'a column'; CREATE INDEX t_a ON t (a); CREATE VIEW v AS SELECT id FROM t; \
         CREATE TYPE mood AS ENUM ('ok', 'sad'); CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    );
    let url = airlock_driver::DatabaseUrl::parse(&db.url).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut plain = airlock_engines::connect(&url, true).await.unwrap();
        let mut repeating = airlock_engines::connect(&url, true).await.unwrap();
        repeating.snapshots_repeat();
        let planned = plain.schema_snapshot().await.unwrap();
        assert_eq!(repeating.schema_snapshot().await.unwrap(), planned);
        repeating.execute("ALTER TABLE t ADD COLUMN b int").await.unwrap();
        let after = repeating.schema_snapshot().await.unwrap();
        assert_eq!(after, plain.schema_snapshot().await.unwrap(), "the prepared queries see the new column");
        assert_ne!(after, planned);
        // Only what the change can reach, read again: the rest carried over.
        let scope = airlock_core::snapshot::Scope {
            relations: ["t".to_owned()].into(),
            parts: airlock_core::snapshot::ObjectKind::OF_RELATIONS.into(),
            others: airlock_core::snapshot::ObjectKind::ALL.into_iter().collect(),
        };
        let part = repeating.schema_snapshot_of(&scope).await.unwrap().expect("PostgreSQL reads a part");
        assert!(part.objects.keys().all(|p| p.name != "v"), "the view is not read again: {part:?}");
        assert_eq!(planned.refreshed(&scope, part), after);
        repeating.execute("DEALLOCATE ALL").await.unwrap();
        assert_eq!(repeating.schema_snapshot().await.unwrap(), after, "planned again once its statements are gone");
    });
}
