//! Through PgBouncer in transaction pooling mode (Debian's, started by
//! `scripts/test` in front of the test PostgreSQL): each transaction may run
//! on another server connection, so a lock or setting kept in a session
//! would leak to other clients or vanish. The lease, the timeouts, the
//! lock-timeout retries, the gate and `serve` all work through it.

mod common;

use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use common::{Db, Engine, Project, Run, Server};

/// `db` as reached through PgBouncer: the same database name on its port.
fn in_the_pool(db: &Db) -> Db {
    let bouncer = std::env::var("AIRLOCK_TEST_PGBOUNCER_URL")
        .expect("AIRLOCK_TEST_PGBOUNCER_URL is not set: run the tests through `scripts/test`, which starts PgBouncer");
    let (_, name) = db.url.rsplit_once('/').unwrap();
    let (base, _) = bouncer.rsplit_once('/').unwrap();
    let mut pooled = db.handle();
    pooled.url = format!("{base}/{name}");
    pooled
}

/// The same, for airlock: told that the URL leads to a transaction pooler.
fn through_the_pool(db: &Db) -> Db {
    let mut pooled = in_the_pool(db);
    let separator = if pooled.url.contains('?') { '&' } else { '?' };
    pooled.url = format!("{}{separator}pgbouncer=true", pooled.url);
    pooled
}

/// Eight runners started at once through the pool each exit 0, and every
/// migration ran exactly once.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and PgBouncer: run `scripts/test`, which starts them")]
fn eight_racing_runners_through_pgbouncer_apply_each_migration_once() {
    let db = Db::new(Engine::Postgres);
    let pooled = through_the_pool(&db);
    let project = Project::new();
    project.write("01_log.up.sql", "CREATE TABLE runs_log (version int NOT NULL);\n");
    for i in 2..=20 {
        project.write(
            &format!("{i:02}_t{i}.up.sql"),
            &format!("-- airlock:data\nINSERT INTO runs_log VALUES ({i});\nSELECT pg_sleep(0.02);\n"),
        );
    }
    let runners: Vec<_> = (0..8)
        .map(|_| project.airlock(&pooled).arg("migrate").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    for runner in runners {
        Run::of(runner.wait_with_output().unwrap()).expect(0);
    }
    assert_eq!(db.count("SELECT count(*) FROM runs_log"), 19);
    assert_eq!(db.count("SELECT count(DISTINCT version) FROM runs_log"), 19);
    assert_eq!(db.count("SELECT count(*) FROM airlock_history WHERE state = 'succeeded'"), 20);
    // The lease was let go: nobody holds the run lock.
    assert_eq!(db.count("SELECT count(*) FROM airlock_lock WHERE owner IS NOT NULL AND owner <> ''"), 0);
}

/// A migration's lock and statement timeouts (and those of a statement run
/// outside a transaction) never reach another client of the pool: clients
/// asking the whole time see the server's defaults.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and PgBouncer: run `scripts/test`, which starts them")]
fn pgbouncer_never_passes_a_migrations_timeouts_to_another_client() {
    let db = Db::new(Engine::Postgres);
    let pooled = through_the_pool(&db);
    let project = Project::new();
    project.write_config("lock_timeout = \"4321ms\"\nstatement_timeout = \"98765ms\"\n");
    project.write("01_t.up.sql", "CREATE TABLE t (id int, v text);\n");
    for i in 2..=12 {
        let sql = if i % 3 == 0 {
            format!(
                "-- airlock:no-transaction\nCREATE INDEX CONCURRENTLY t_{i} ON t (id, v);\nSELECT pg_sleep(0.05);\n"
            )
        } else {
            format!("ALTER TABLE t ADD COLUMN c{i} int;\nSELECT pg_sleep(0.05);\n")
        };
        project.write(&format!("{i:02}_step.up.sql"), &sql);
    }
    let run = project.airlock(&pooled).arg("migrate").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Four clients of the same pool, each asking in transactions of their own.
    let seen: Vec<_> = (0..4)
        .map(|_| {
            let pooled = in_the_pool(&db);
            thread::spawn(move || {
                let mut seen = Vec::new();
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(3) {
                    seen.push(pooled.scalar("SHOW lock_timeout").unwrap_or_default());
                    seen.push(pooled.scalar("SHOW statement_timeout").unwrap_or_default());
                }
                seen
            })
        })
        .collect();
    let seen: Vec<String> = seen.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let run = Run::of(run.wait_with_output().unwrap());
    run.expect(0);
    // Said of each migration that runs outside a transaction.
    assert!(
        run.stderr.contains("migration 3 runs outside a transaction through a transaction pooler (`pgbouncer=true`)"),
        "{}",
        run.stderr
    );
    assert!(seen.len() > 20, "the other clients asked too little: {seen:?}");
    assert!(
        seen.iter().all(|v| v != "4321ms" && v != "98765ms"),
        "a setting of the migration reached another client: {:?}",
        seen.iter().filter(|v| *v == "4321ms" || *v == "98765ms").collect::<Vec<_>>()
    );
    assert_eq!(db.count("SELECT count(*) FROM airlock_history WHERE state = 'succeeded'"), 12);
    // And afterwards, on every server connection the pool hands out.
    let asking = in_the_pool(&db);
    for _ in 0..16 {
        assert_eq!(asking.scalar("SHOW lock_timeout").as_deref(), Some("0"));
    }
}

/// A statement that hits the lock timeout through the pool is retried
/// and goes through once the lock is gone; the gate, `status` and `serve`
/// answer through the pool too.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and PgBouncer: run `scripts/test`, which starts them")]
fn lock_timeout_retries_the_gate_and_serve_work_through_pgbouncer() {
    let db = Db::new(Engine::Postgres);
    let pooled = through_the_pool(&db);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id int);\n");
    project.run(&pooled, &["migrate"]).expect(0);
    project.write_config("lock_timeout = \"300ms\"\nlock_retries = 6\nlock_retry_backoff = \"200ms\"\n");
    project.write("2_alter.up.sql", "ALTER TABLE t ADD COLUMN w text;\n");
    // Held directly on the server, outside the pool.
    let holder = db.hold("LOCK TABLE t IN ACCESS SHARE MODE", Duration::from_secs(30));
    let mut command = project.airlock(&pooled);
    command.arg("migrate");
    let run = common::run_releasing_on(command, "hit the lock timeout", || drop(holder));
    run.expect(0);
    let stdout = run.stdout;
    assert!(stdout.contains("hit the lock timeout; retry 1"), "{stdout}");
    assert_eq!(db.state_of("2").as_deref(), Some("succeeded"));

    project.run(&pooled, &["gate", "--require", "latest"]).expect(0);
    let status = project.run(&pooled, &["--format", "json", "status"]);
    status.expect(0);
    assert_eq!(status.json()["state"], "clean", "{}", status.stdout);

    let mut command = project.airlock(&pooled);
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    let server = Server::start(command);
    for _ in 0..5 {
        let (code, body) = server.get("/gate?require=latest");
        assert_eq!(code, 200, "{body}");
        let (code, body) = server.get("/env/default");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("ready for latest"), "{body}");
    }
}

/// A backup before migrating is refused through the pool (the dump tool's
/// session settings would reach other clients), nothing changed; told to
/// take none, the run goes through.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and PgBouncer: run `scripts/test`, which starts them")]
fn a_backup_is_refused_through_pgbouncer_and_nothing_changes() {
    let db = Db::new(Engine::Postgres);
    let pooled = through_the_pool(&db);
    let project = Project::new();
    project.write_config("project = \"shop\"\n[environments.prod]\nprotected = true\ndrift = \"off\"\n");
    project.write("1_t.up.sql", "CREATE TABLE t (id int PRIMARY KEY);\n");
    project.run(&pooled, &["--env", "prod", "migrate", "--no-backup", "--reason", "empty database"]).expect(0);
    project.write("2_u.up.sql", "ALTER TABLE t ADD COLUMN u int;\n");
    let refused = project.run(&pooled, &["--env", "prod", "migrate"]);
    refused.expect(3);
    assert!(refused.stderr.contains("a backup cannot be taken through a transaction pooler"), "{}", refused.stderr);
    assert_eq!(db.state_of("2"), None);
    project.run(&pooled, &["--env", "prod", "migrate", "--no-backup", "--reason", "behind the pool"]).expect(0);
    assert_eq!(db.state_of("2").as_deref(), Some("succeeded"));
    // The project was stamped through the pool on the first run.
    assert_eq!(db.scalar("SELECT value FROM airlock_meta WHERE key = 'project'").as_deref(), Some("shop"));
}
