//! A run whose lock is taken over while it works never records a migration it
//! had not finished (the double-apply the lease exists to prevent).

mod common;

use std::process::Stdio;
use std::thread;
use std::time::Duration;

use common::{Db, Engine, Project, Run, create_table};

fn steal(db: &Db) {
    db.exec("UPDATE airlock_lock SET owner = 'thief', beat = beat + 1 WHERE id = 1");
}

fn wait_for_holder(db: &Db) {
    for _ in 0..200 {
        if db.count("SELECT count(*) FROM airlock_lock WHERE owner IS NOT NULL") == 1 {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("the run never took the lock");
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_a_transaction_that_lost_its_lease_rolls_back() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    project.write("1_t.up.sql", &create_table(1));
    project.run(&db, &["migrate"]).expect(0);
    project.write("2_slow.up.sql", "SELECT pg_sleep(1.5);\nCREATE TABLE t_2 (id bigint primary key);\n");
    let child = project.airlock(&db).arg("migrate").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for_holder(&db);
    thread::sleep(Duration::from_millis(400));
    steal(&db);
    let run = Run::of(child.wait_with_output().unwrap());
    run.expect(1);
    assert!(run.stderr.contains("lost its lock"), "{}", run.stderr);
    assert!(!db.table_exists("t_2"), "the migration's transaction was rolled back");
    assert_ne!(db.state_of("2").as_deref(), Some("succeeded"));
    assert_eq!(db.scalar("SELECT owner FROM airlock_lock").as_deref(), Some("thief"), "the new holder keeps its lock");
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_a_run_that_lost_its_lease_stops_before_the_next_statement() {
    let db = Db::new(Engine::MySql);
    let project = Project::new();
    // A short lease so that the heartbeat (every quarter of it) notices quickly.
    project.write_config("lease_ttl = \"2s\"\n");
    project.write("1_t.up.sql", &create_table(1));
    project.run(&db, &["migrate"]).expect(0);
    project.write("2_slow.up.sql", "SELECT SLEEP(2);\nCREATE TABLE t_2 (id bigint primary key);\n");
    let child = project.airlock(&db).arg("migrate").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for_holder(&db);
    thread::sleep(Duration::from_millis(300));
    steal(&db);
    let run = Run::of(child.wait_with_output().unwrap());
    run.expect(1);
    assert!(run.stderr.contains("lost its lock"), "{}", run.stderr);
    assert!(!db.table_exists("t_2"), "the statement after the loss did not run");
    let history = db.history();
    let two = history.iter().find(|h| h.0 == "2").expect("a record of the cut-off run");
    assert_eq!((two.1.as_str(), two.2), ("running", 1), "history says exactly how far it got");
}
