//! Ctrl-C and SIGTERM during `migrate`, on every engine: the statement
//! running on the server is stopped (PostgreSQL cancel request, MySQL `KILL
//! QUERY`, SQLite interrupt) within 2 s, the migration is rolled back or
//! recorded where it stopped, the lock is released (the next run needs no
//! takeover), and the exit code is 130 (143 for SIGTERM).

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Db, Engine, Project, Run};

/// A statement that runs for about 30 s (or far longer, on SQLite).
fn slow_statement(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "SELECT pg_sleep(30);",
        // A long scan fails when killed ("Query execution was interrupted");
        // SLEEP and BENCHMARK just return early.
        Engine::MySql => "SELECT count(*) FROM seq_1_to_1000000000 WHERE sha2(seq, 256) = '';",
        Engine::Sqlite => {
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 4000000000) SELECT count(*) FROM c;"
        }
    }
}

/// Whether the slow statement is still running on the server.
fn still_running(db: &Db) -> bool {
    match db.engine {
        Engine::Postgres => db.count("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(30)%' AND pid <> pg_backend_pid()") > 0,
        Engine::MySql => db.count("SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND INFO LIKE 'SELECT count(*) FROM seq_1_to_1000000000 WHERE%'") > 0,
        Engine::Sqlite => false,
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(project: &Project, db: &Db) -> Child {
    project.airlock(db).arg("migrate").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn send(child: &Child, signal: &str) {
    let sent =
        std::process::Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
}

/// Waits for the slow statement to be running inside the run.
fn wait_for_the_statement(db: &Db) {
    match db.engine {
        // SQLite cannot show a running statement: wait until the migration
        // before it is recorded (or, for `down`, the run holds the lock).
        Engine::Sqlite => {
            wait_until("the run reaching the slow migration", Duration::from_secs(20), || {
                db.table_exists("airlock_lock")
                    && db.count("SELECT count(*) FROM airlock_lock WHERE owner IS NOT NULL AND owner <> ''") > 0
                    && db.count("SELECT count(*) FROM airlock_history WHERE version = '1' AND state = 'succeeded'") > 0
            });
            std::thread::sleep(Duration::from_millis(300));
        }
        _ => wait_until("the slow statement starting", Duration::from_secs(20), || still_running(db)),
    }
}

/// Waits for the run to stop; one still running after 15 s is killed and the test fails.
fn finish(mut child: Child) -> Run {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let run = Run::of(child.wait_with_output().unwrap());
            panic!("the run did not stop within 15 s of the signal:\n{}", run.all());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Run::of(child.wait_with_output().unwrap())
}

fn ctrl_c_rolls_a_transaction_back_and_releases_the_lock(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id integer PRIMARY KEY);\n");
    project
        .write("2_slow.up.sql", &format!("-- airlock:data\nINSERT INTO t VALUES (1);\n{}\n", slow_statement(engine)));
    let child = start(&project, &db);
    wait_for_the_statement(&db);
    let sent = Instant::now();
    send(&child, "INT");
    wait_until("the server stopping the statement", Duration::from_secs(2), || !still_running(&db));
    let run = finish(child);
    assert!(sent.elapsed() < Duration::from_secs(10));
    run.expect(130);
    assert!(run.stderr.contains("interrupted by Ctrl-C (SIGINT)"), "{}", run.stderr);
    let history = db.history();
    assert_eq!(history.iter().find(|h| h.0 == "1").map(|h| h.1.as_str()), Some("succeeded"), "{history:?}");
    assert_eq!(db.state_of("2"), None, "rolled back: {history:?}");
    assert_eq!(db.count("SELECT count(*) FROM t"), 0, "the INSERT was rolled back");
    if engine != Engine::Sqlite {
        // Seen running on the server, so stopped inside it (on SQLite the
        // signal may also land just before it starts: nothing of it runs either way).
        assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
        assert_eq!(db.count("SELECT count(*) FROM airlock_events WHERE kind = 'interrupted'"), 1);
    }
    // The lock is free: the next run takes it without a takeover.
    project.write("2_slow.up.sql", "-- airlock:data\nINSERT INTO t VALUES (1);\n");
    let next = project.run(&db, &["migrate"]);
    next.expect(0);
    assert!(!next.all().contains("took over"), "{}", next.all());
    assert_eq!(db.state_of("2").as_deref(), Some("succeeded"));
}

each_engine!(ctrl_c_rolls_a_transaction_back_and_releases_the_lock);

/// Outside a transaction, the stop is recorded at the statement it cut, and
/// `resolve --retry-from-failed` goes on from there.
fn sigterm_outside_a_transaction_is_recorded_at_the_statement(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    let text = format!(
        "-- airlock:no-transaction\nCREATE TABLE a (id integer PRIMARY KEY);\n{}\nCREATE TABLE b (id integer PRIMARY KEY);\n",
        slow_statement(engine)
    );
    project.write("1_slow.up.sql", &text);
    let child = start(&project, &db);
    wait_for_the_statement(&db);
    send(&child, "TERM");
    wait_until("the server stopping the statement", Duration::from_secs(2), || !still_running(&db));
    let run = finish(child);
    run.expect(143);
    assert!(
        run.stderr.contains("interrupted by SIGTERM") && run.stderr.contains("stopped at statement 2 of 3"),
        "{}",
        run.stderr
    );
    assert_eq!(db.history(), [("1".to_owned(), "failed".to_owned(), 1)]);
    assert!(db.table_exists("a") && !db.table_exists("b"));
    let error = db.scalar("SELECT error FROM airlock_history WHERE version = '1'").unwrap();
    assert!(error.contains("interrupted by SIGTERM"), "{error}");
    // JSON says the same to scripts.
    let status = project.run(&db, &["--format", "json", "status"]);
    assert_eq!(status.json()["state"], "failed", "{}", status.stdout);

    // The next run finds the lock free and the failure to resolve.
    let next = project.run(&db, &["migrate"]);
    next.expect(3);
    assert!(!next.all().contains("took over") && next.all().contains("resolve"), "{}", next.all());
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_sigterm_outside_a_transaction_is_recorded_at_the_statement() {
    sigterm_outside_a_transaction_is_recorded_at_the_statement(Engine::Postgres);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_sigterm_outside_a_transaction_is_recorded_at_the_statement() {
    sigterm_outside_a_transaction_is_recorded_at_the_statement(Engine::MySql);
}

/// `down` stops the same way: its transaction rolled back, the migration still applied.
fn ctrl_c_during_down_keeps_the_migration_applied(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id integer PRIMARY KEY);\n");
    project.write("1_t.down.sql", &format!("-- airlock:data\nDELETE FROM t;\n{}\n", slow_statement(engine)));
    project.run(&db, &["migrate"]).expect(0);
    db.exec("INSERT INTO t VALUES (1)");
    let child =
        project.airlock(&db).args(["down", "--to", "0"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for_the_statement(&db);
    send(&child, "INT");
    wait_until("the server stopping the statement", Duration::from_secs(2), || !still_running(&db));
    let run = finish(child);
    run.expect(130);
    assert!(run.stderr.contains("is still applied"), "{}", run.stderr);
    assert_eq!(db.state_of("1").as_deref(), Some("succeeded"));
    assert_eq!(db.count("SELECT count(*) FROM t"), 1, "the down script's DELETE was rolled back");
    assert_eq!(db.count("SELECT count(*) FROM airlock_lock WHERE owner IS NOT NULL"), 0, "the lock was released");
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_ctrl_c_during_down_keeps_the_migration_applied() {
    ctrl_c_during_down_keeps_the_migration_applied(Engine::Postgres);
}

#[test]
fn sqlite_ctrl_c_during_down_keeps_the_migration_applied() {
    ctrl_c_during_down_keeps_the_migration_applied(Engine::Sqlite);
}
