//! `replicas` in airlock.toml, against the real streaming standby
//! `scripts/test` starts (`pg_basebackup` of the test cluster): `plan` shows
//! each replica's lag and what replaying a pending ACCESS EXCLUSIVE lock
//! would do to the queries reading there; `migrate` waits for the replicas
//! after such a migration (`wait_for_replicas`). One test in this file: it
//! pauses the standby's replay, which no other test may see meanwhile.

mod common;

use std::time::{Duration, Instant};

use common::{Db, Engine, Project, Run};

/// `db` on the standby.
fn on_the_standby(db: &Db) -> Db {
    let standby = std::env::var("AIRLOCK_TEST_POSTGRES_STANDBY_URL")
        .expect("AIRLOCK_TEST_POSTGRES_STANDBY_URL is not set: run the tests through `scripts/test`");
    let (_, name) = db.url.rsplit_once('/').unwrap();
    let (base, _) = standby.rsplit_once('/').unwrap();
    let mut replica = db.handle();
    replica.url = format!("{base}/{name}");
    replica
}

/// Waits until the standby replayed everything the primary wrote so far.
fn caught_up(db: &Db) {
    let written = db.scalar("SELECT pg_current_wal_insert_lsn()::text").unwrap();
    let started = Instant::now();
    while db.count(&format!("SELECT count(*) FROM pg_stat_replication WHERE replay_lsn >= '{written}'::pg_lsn")) == 0 {
        assert!(started.elapsed() < Duration::from_secs(120), "the standby did not catch up within 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Resumes the standby's replay however the test ends.
struct Replaying(Db);

impl Drop for Replaying {
    fn drop(&mut self) {
        let _ = self.0.try_exec("SELECT pg_wal_replay_resume()");
    }
}

#[test]
#[cfg_attr(
    not(airlock_test_servers),
    ignore = "needs PostgreSQL and its standby: run `scripts/test`, which starts them"
)]
fn plan_warns_of_locks_replayed_on_the_standby_and_migrate_waits_for_it() {
    let db = Db::new(Engine::Postgres);
    let replica = on_the_standby(&db);
    let project = Project::new();
    project.write_config(&format!(
        "replicas = [\"{}\"]\nmax_replica_lag = \"1s\"\nwait_for_replicas = \"60s\"\n",
        replica.url
    ));
    project.write("1_orders.up.sql", "CREATE TABLE orders (id int PRIMARY KEY);\n");
    project.run(&db, &["migrate"]).expect(0);
    caught_up(&db);
    project.write("2_orders_note.up.sql", "ALTER TABLE orders ADD COLUMN note text NOT NULL DEFAULT '';\n");

    // A report reading on the standby while the plan is made.
    let reader = replica.handle();
    let reading = std::thread::spawn(move || reader.try_exec("SELECT pg_sleep(4)"));
    let started = Instant::now();
    while replica.count("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(4)'") == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the reader never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let plan = project.run(&db, &["plan"]);
    plan.expect(0);
    assert!(plan.stdout.contains("Replica postgres://"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains(
            "replaying migration 2 statement 1 (ACCESS EXCLUSIVE on `orders`) waits up to 30 s (max_standby_streaming_delay) for the queries reading those tables there, then cancels them; its longest query has run"
        ),
        "{}",
        plan.stdout
    );
    let json = project.run(&db, &["--format", "json", "plan"]).json();
    assert!(json["replicas"][0]["lag_seconds"].is_number(), "{json}");
    reading.join().unwrap().unwrap();

    // Replay paused: after the ALTER, migrate waits until the standby has it.
    replica.exec("SELECT pg_wal_replay_pause()");
    let replaying = Replaying(replica.handle());
    let resume = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        drop(replaying);
    });
    let started = Instant::now();
    let run = project.run(&db, &["migrate"]);
    resume.join().unwrap();
    run.expect(0);
    assert!(started.elapsed() >= Duration::from_secs(2), "it did not wait: {}", run.all());
    let all = run.all();
    assert!(all.contains("after migration 2, waiting for the replicas: replica postgres://"), "{all}");
    assert!(all.contains("after migration 2, the replicas caught up in"), "{all}");
    assert_eq!(replica.count("SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'"), 1);

    // Unreachable, it is named in the plan, and the plan still stands.
    let gone = Run::of({
        project.write_config("replicas = [\"postgres://postgres@127.0.0.1:1/nowhere\"]\n");
        project.write("3_orders_total.up.sql", "ALTER TABLE orders ADD COLUMN total int NOT NULL DEFAULT 0;\n");
        project.airlock(&db).arg("plan").output().unwrap()
    });
    gone.expect(0);
    assert!(
        gone.stdout.contains("Replica postgres://postgres@127.0.0.1:1/nowhere: cannot be asked"),
        "{}",
        gone.stdout
    );
}
