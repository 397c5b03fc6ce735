//! Backfills on every engine: a data migration marked `-- airlock:backfill`
//! runs in primary-key batches, each a transaction with its checkpoint.
//! Every row is changed exactly once (a counter column the backfill
//! increments proves it), also across SIGKILLs at random moments and a
//! Ctrl-C, each followed by a resume; writers on the same table never fail;
//! what cannot be batched is refused before anything runs.

mod common;

use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Db, Engine, Project, Run};

/// `items (id, n, v)` with `rows` rows, ids 1..=rows, n = 0.
fn items(db: &Db, rows: u64) {
    db.exec("CREATE TABLE items (id bigint PRIMARY KEY, n integer NOT NULL DEFAULT 0, v varchar(20))");
    let fill = match db.engine {
        Engine::Postgres => format!("INSERT INTO items (id) SELECT g FROM generate_series(1, {rows}) g"),
        Engine::MySql => format!("INSERT INTO items (id) SELECT seq FROM seq_1_to_{rows}"),
        Engine::Sqlite => format!(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {rows}) INSERT INTO items (id) SELECT i FROM s"
        ),
    };
    db.exec(&fill);
}

/// A project whose backfill batches are small, so a few thousand rows take many batches.
fn project(batch_max: u64) -> Project {
    let project = Project::new();
    project.write_config(&format!("batch_min = 10\nbatch_max = {batch_max}\nbatch_target = \"20ms\"\n"));
    project
}

/// As `project`, its backfills held to 5,000 rows a second: slow enough to
/// stop part-way on any engine, whatever the machine.
fn slow_project() -> Project {
    let project = Project::new();
    project.write_config("batch_min = 10\nbatch_max = 100\nbatch_target = \"20ms\"\nmax_rows_per_second = 5000\n");
    project
}

fn counts(db: &Db) -> (i64, i64, i64) {
    (
        db.count("SELECT count(*) FROM items WHERE n = 0"),
        db.count("SELECT count(*) FROM items WHERE n = 1"),
        db.count("SELECT count(*) FROM items WHERE n > 1"),
    )
}

fn applied_detail(db: &Db, version: &str) -> serde_json::Value {
    let detail = db
        .scalar(&format!("SELECT detail FROM airlock_events WHERE kind = 'applied' AND version = '{version}'"))
        .expect("an applied event");
    serde_json::from_str(&detail).unwrap()
}

fn every_row_once_in_batches(engine: Engine) {
    let db = Db::new(engine);
    items(&db, 3000);
    let project = project(200);
    project.write(
        "1_touch.up.sql",
        "-- airlock:backfill\nUPDATE items SET n = n + 1, v = 'done' WHERE v IS NULL;\nDELETE FROM items WHERE id > 2900;\n",
    );
    project.run(&db, &["migrate"]).expect(0);
    assert_eq!(counts(&db), (0, 2900, 0), "every row changed once, the deleted ones gone");
    assert_eq!(db.state_of("1").as_deref(), Some("succeeded"));
    let detail = applied_detail(&db, "1");
    assert_eq!(detail["mode"], "batches");
    assert_eq!(detail["rows"], 3100, "3000 updated, then 100 deleted: {detail}");
    assert!(detail["batches"].as_u64().unwrap() >= 30, "batches of at most 200 rows: {detail}");
    // History says how it ran; the checkpoint says it is done.
    assert_eq!(db.scalar("SELECT mode FROM airlock_history WHERE version = '1'").as_deref(), Some("batches"));
    let checkpoint =
        db.scalar("SELECT value FROM airlock_meta WHERE `key` = 'backfill:1'".replace('`', quote(engine)).as_str());
    let checkpoint: serde_json::Value = serde_json::from_str(&checkpoint.unwrap()).unwrap();
    assert_eq!(checkpoint["done"], true);
    // Nothing left to do.
    let again = project.run(&db, &["migrate"]);
    again.expect(0);
    assert!(again.stdout.contains("Nothing to do"), "{}", again.all());
}

fn quote(engine: Engine) -> &'static str {
    if engine == Engine::MySql { "`" } else { "\"" }
}

fn insert_select_copies_each_row_once(engine: Engine) {
    let db = Db::new(engine);
    items(&db, 1000);
    db.exec("CREATE TABLE archive (id bigint PRIMARY KEY, n integer NOT NULL)");
    let project = project(100);
    project.write(
        "1_archive.up.sql",
        "-- airlock:backfill\nINSERT INTO archive (id, n) SELECT id, n + 7 FROM items WHERE id % 2 = 0;\n",
    );
    project.run(&db, &["migrate"]).expect(0);
    assert_eq!(db.count("SELECT count(*) FROM archive"), 500);
    assert_eq!(db.count("SELECT count(*) FROM archive WHERE n <> 7"), 0);
}

fn composite_keys_are_batched_in_key_order(engine: Engine) {
    let db = Db::new(engine);
    db.exec("CREATE TABLE pairs (tenant varchar(10) NOT NULL, k integer NOT NULL, n integer NOT NULL DEFAULT 0, PRIMARY KEY (tenant, k))");
    let mut values = Vec::new();
    for tenant in ["a", "b", "c'd", "e\\f"] {
        for k in 1..=150 {
            values.push(format!(
                "('{}', {k})",
                tenant.replace('\'', "''").replace('\\', if engine == Engine::MySql { "\\\\" } else { "\\" })
            ));
        }
    }
    db.exec(&format!("INSERT INTO pairs (tenant, k) VALUES {}", values.join(", ")));
    let project = project(40);
    project.write("1_pairs.up.sql", "-- airlock:backfill\nUPDATE pairs SET n = n + 1;\n");
    project.run(&db, &["migrate"]).expect(0);
    assert_eq!(db.count("SELECT count(*) FROM pairs WHERE n = 1"), 600);
    assert_eq!(db.count("SELECT count(*) FROM pairs WHERE n <> 1"), 0);
}

/// Keys of bytes that are not text (a zero byte, a backslash, a quote,
/// 0xFF): read back in hexadecimal, every row is still changed once.
fn binary_keys_are_batched_in_hexadecimal(engine: Engine) {
    let db = Db::new(engine);
    let (kind, literal): (&str, fn(&str) -> String) = match engine {
        Engine::Postgres => ("bytea", |h| format!("decode('{h}', 'hex')")),
        Engine::MySql => ("varbinary(16)", |h| format!("X'{h}'")),
        Engine::Sqlite => ("BLOB", |h| format!("X'{h}'")),
    };
    db.exec(&format!("CREATE TABLE blobs (id {kind} PRIMARY KEY, n integer NOT NULL DEFAULT 0)"));
    let values: Vec<String> =
        (0..600u32).map(|i| format!("({})", literal(&format!("{:02x}{:02x}5c2700ff", i % 256, i / 256)))).collect();
    db.exec(&format!("INSERT INTO blobs (id) VALUES {}", values.join(", ")));
    let project = project(50);
    project.write("1_blobs.up.sql", "-- airlock:backfill\nUPDATE blobs SET n = n + 1;\n");
    project.run(&db, &["migrate"]).expect(0);
    assert_eq!(db.count("SELECT count(*) FROM blobs WHERE n = 1"), 600);
    assert_eq!(db.count("SELECT count(*) FROM blobs WHERE n <> 1"), 0);
    assert!(applied_detail(&db, "1")["batches"].as_u64().unwrap() >= 12);
}

/// Rolled back with `down`, a backfill runs again from its first row.
fn rolled_back_it_runs_again_from_the_start(engine: Engine) {
    let db = Db::new(engine);
    items(&db, 1000);
    let project = project(100);
    project.write("1_touch.up.sql", "-- airlock:backfill\nUPDATE items SET n = n + 1;\n");
    project.write("1_touch.down.sql", "UPDATE items SET n = n - 1;\n");
    project.run(&db, &["migrate"]).expect(0);
    assert_eq!(counts(&db), (0, 1000, 0));
    project.run(&db, &["down", "--to", "0"]).expect(0);
    assert_eq!(counts(&db), (1000, 0, 0));
    project.run(&db, &["migrate"]).expect(0);
    assert_eq!(counts(&db), (0, 1000, 0));
}

fn start(project: &Project, db: &Db, args: &[&str]) -> Child {
    project.airlock(db).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn batches_done(db: &Db, engine: Engine) -> u64 {
    if !db.table_exists("airlock_meta") {
        return 0;
    }
    let sql = "SELECT value FROM airlock_meta WHERE `key` = 'backfill:1'".replace('`', quote(engine));
    db.scalar(&sql)
        .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
        .and_then(|v| v["batches"].as_u64())
        .unwrap_or(0)
}

fn wait_for_batches(db: &Db, engine: Engine, more_than: u64, child: &mut Child) {
    let started = Instant::now();
    while batches_done(db, engine) <= more_than {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before its batches were seen");
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no new batch within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn killed_at_random_moments_it_resumes_and_changes_no_row_twice(engine: Engine) {
    let db = Db::new(engine);
    let rows = 30_000;
    items(&db, rows);
    let project = slow_project();
    // Two statements, so that kills land in either and between them.
    project.write(
        "1_touch.up.sql",
        "-- airlock:backfill\nUPDATE items SET n = n + 1 WHERE id <= 12000;\nUPDATE items SET n = n + 1 WHERE id > 12000;\n",
    );
    let mut seen = 0;
    for round in 0..5 {
        let mut child = start(&project, &db, &["migrate"]);
        wait_for_batches(&db, engine, seen, &mut child);
        std::thread::sleep(Duration::from_millis(rand::random::<u64>() % 300));
        child.kill().unwrap();
        child.wait().unwrap();
        let now = batches_done(&db, engine);
        assert!(now > seen, "round {round}: progress was kept");
        seen = now;
        let (_, once, twice) = counts(&db);
        assert_eq!(twice, 0, "round {round}: no row changed twice");
        assert!(once > 0 && once < rows as i64, "round {round}: part-way ({once} rows)");
        assert_eq!(db.state_of("1"), None, "not recorded before it is done");
    }
    let status = project.run(&db, &["status", "--format", "json"]);
    let backfill = &status.json()["backfills"][0];
    assert_eq!(backfill["version"], "1");
    assert_eq!(backfill["state"], "stopped", "{backfill}");
    assert_eq!(backfill["rows_total"], rows);
    assert!(backfill["rows_done"].as_u64().unwrap() > 0 || backfill["statement"] == 2, "{backfill}");
    // The gate for it is not satisfied, and says how far it is.
    let gate = project.run(&db, &["gate", "--require", "1"]);
    gate.expect(4);
    assert!(
        gate.all().contains("backfill 1 (touch): stopped, statement ")
            && gate.all().contains(" of 30000 rows of `items`"),
        "{}",
        gate.all()
    );
    project.run(&db, &["migrate"]).expect(0);
    assert_eq!(counts(&db), (0, rows as i64, 0), "every row exactly once after five kills");
    assert_eq!(db.state_of("1").as_deref(), Some("succeeded"));
}

fn ctrl_c_stops_between_batches_and_migrate_resumes(engine: Engine) {
    let db = Db::new(engine);
    items(&db, 20_000);
    let project = slow_project();
    project.write("1_touch.up.sql", "-- airlock:backfill\nUPDATE items SET n = n + 1;\n");
    let mut child = start(&project, &db, &["migrate"]);
    wait_for_batches(&db, engine, 3, &mut child);
    let sent = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let run = Run::of(child.wait_with_output().unwrap());
    run.expect(130);
    assert!(
        run.stderr.contains("stopped between batches") && run.stderr.contains("`airlock migrate` resumes it"),
        "{}",
        run.all()
    );
    // The lock was let go: the next run needs no takeover.
    assert_eq!(db.count("SELECT count(*) FROM airlock_lock WHERE owner IS NOT NULL AND owner <> ''"), 0);
    let (_, once, twice) = counts(&db);
    assert!(once > 0 && twice == 0);
    project.run(&db, &["migrate"]).expect(0);
    assert_eq!(counts(&db), (0, 20_000, 0));
}

fn unbatchable_statements_are_refused_before_anything_runs(engine: Engine) {
    let db = Db::new(engine);
    items(&db, 100);
    db.exec("CREATE TABLE keyless (a integer)");
    let project = project(100);
    project.write("1_schema.up.sql", "CREATE TABLE other (id bigint PRIMARY KEY);\n");
    project.write(
        "2_limit.up.sql",
        "-- airlock:backfill\nUPDATE items SET n = n + 1;\nINSERT INTO other (id) SELECT max(id) FROM items GROUP BY n;\n",
    );
    let run = project.run(&db, &["migrate"]);
    run.expect(3);
    assert!(run.stderr.contains("[unbatchable-backfill]") && run.stderr.contains("groups rows"), "{}", run.all());
    assert_eq!(counts(&db).0, 100, "nothing changed");
    assert!(db.history().is_empty(), "not even the schema migration before it");
    // A table without a primary key: lint knows from the live schema.
    project.write("2_limit.up.sql", "-- airlock:backfill\nUPDATE keyless SET a = 1;\n");
    let run = project.run(&db, &["migrate"]);
    run.expect(3);
    assert!(run.stderr.contains("`keyless` has no primary key"), "{}", run.all());
    // The key itself.
    project.write("2_limit.up.sql", "-- airlock:backfill\nUPDATE items SET id = id + 1000;\n");
    let run = project.run(&db, &["migrate"]);
    assert!(run.code == 2 || run.code == 3, "refused: {}", run.all());
    assert!(run.all().contains("sets `id`, part of the primary key"), "{}", run.all());
    assert_eq!(db.count("SELECT max(id) FROM items"), 100);
}

fn skip_backfills_leaves_them_for_backfill_run(engine: Engine) {
    let db = Db::new(engine);
    items(&db, 500);
    let project = project(100);
    project.write("1_schema.up.sql", "CREATE TABLE before_it (id bigint PRIMARY KEY);\n");
    project.write("2_fill.up.sql", "-- airlock:backfill\nUPDATE items SET n = n + 1;\n");
    project.write("3_schema.up.sql", "CREATE TABLE after_it (id bigint PRIMARY KEY);\n");
    let run = project.run(&db, &["migrate", "--skip-backfills"]);
    run.expect(0);
    assert!(run.stderr.contains("migration 2 (fill) is a backfill"), "{}", run.all());
    assert_eq!(db.history().iter().map(|h| h.0.as_str()).collect::<Vec<_>>(), ["1"]);
    let status = project.run(&db, &["backfill", "status", "--format", "json"]).json();
    assert_eq!(status["backfills"][0]["state"], "pending");
    assert_eq!(status["backfills"][0]["table"], "items");
    project.run(&db, &["backfill", "run"]).expect(0);
    assert_eq!(db.history().iter().map(|h| h.0.as_str()).collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!(counts(&db), (0, 500, 0));
    let none = project.run(&db, &["backfill", "run"]);
    none.expect(0);
    assert!(none.stdout.contains("No pending backfill"), "{}", none.all());
    project.run(&db, &["migrate"]).expect(0);
    assert!(db.table_exists("after_it"));
}

fn a_changed_file_does_not_resume(engine: Engine) {
    let db = Db::new(engine);
    items(&db, 20_000);
    let project = slow_project();
    project.write("1_touch.up.sql", "-- airlock:backfill\nUPDATE items SET n = n + 1;\n");
    let mut child = start(&project, &db, &["migrate"]);
    wait_for_batches(&db, engine, 2, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    let before = counts(&db);
    project.write("1_touch.up.sql", "-- airlock:backfill\nUPDATE items SET n = n + 2;\n");
    let run = project.run(&db, &["migrate"]);
    run.expect(2);
    assert!(run.stderr.contains("started from a different file"), "{}", run.all());
    assert_eq!(counts(&db), before, "nothing more changed");
}

each_engine!(
    every_row_once_in_batches,
    insert_select_copies_each_row_once,
    composite_keys_are_batched_in_key_order,
    binary_keys_are_batched_in_hexadecimal,
    rolled_back_it_runs_again_from_the_start,
    killed_at_random_moments_it_resumes_and_changes_no_row_twice,
    ctrl_c_stops_between_batches_and_migrate_resumes,
    unbatchable_statements_are_refused_before_anything_runs,
    skip_backfills_leaves_them_for_backfill_run,
    a_changed_file_does_not_resume,
    pause_holds_batches_and_resume_lets_them_go_on,
    cancel_stops_it_and_runs_refuse_it_until_resumed,
);

/// Writers on the same table during a PostgreSQL backfill: many short
/// transactions updating and inserting rows never fail, and their latency
/// is reported; every row that was there is changed exactly once.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn postgres_writers_never_fail_during_a_backfill() {
    let db = Db::new(Engine::Postgres);
    let rows = 200_000;
    items(&db, rows);
    db.exec("ALTER TABLE items ADD COLUMN w integer NOT NULL DEFAULT 0");
    let project = Project::new();
    project.write("1_touch.up.sql", "-- airlock:backfill\nUPDATE items SET n = n + 1 WHERE id <= 200000;\n");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (url, stop) = (db.url.clone(), stop.clone());
            std::thread::spawn(move || writer(&url, w, rows, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let run = project.run(&db, &["migrate"]);
    stop.store(true, Ordering::SeqCst);
    run.expect(0);
    let mut latencies = Vec::new();
    for writer in writers {
        let (l, failures) = writer.join().unwrap();
        assert!(failures.is_empty(), "writer transactions failed: {failures:?}");
        latencies.extend(l);
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!("{} writer transactions during the backfill, none failed; p99 latency {p99:?}", latencies.len());
    assert!(latencies.len() > 100, "the writers ran during the backfill");
    assert_eq!(db.count("SELECT count(*) FROM items WHERE id <= 200000 AND n <> 1"), 0, "every row once");
    assert_eq!(db.count("SELECT count(*) FROM items WHERE id > 200000 AND n <> 0"), 0);
}

/// Short transactions until `stop`: one row of the backfill's updated, one
/// new row inserted. Returns each transaction's latency and the failures.
fn writer(url: &str, w: u64, rows: u64, stop: &AtomicBool) -> (Vec<Duration>, Vec<String>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let mut latencies = Vec::new();
        let mut failures = Vec::new();
        let mut next_id = 1_000_000 + w as i64 * 1_000_000;
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let id = 1 + (rand::random::<u64>() % rows) as i64;
            let sql = format!(
                "BEGIN; UPDATE items SET w = w + 1 WHERE id = {id}; INSERT INTO items (id, n) VALUES ({next_id}, 0); COMMIT"
            );
            if let Err(e) = client.batch_execute(&sql).await {
                failures.push(e.to_string());
                let _ = client.batch_execute("ROLLBACK").await;
            }
            next_id += 1;
            latencies.push(started.elapsed());
        }
        (latencies, failures)
    })
}

/// Resumes the standby's replay when dropped, whatever the test did.
struct Replaying(Db);

impl Drop for Replaying {
    fn drop(&mut self) {
        self.0.exec("SELECT pg_wal_replay_resume()");
    }
}

/// A real streaming standby (`pg_basebackup` of the test cluster, started
/// by `scripts/test`) whose replay is paused: batches stop while it is
/// more than `max_replica_lag` behind, saying why, and go on once it
/// replays again; every row is still changed once.
#[test]
#[cfg_attr(
    not(airlock_test_servers),
    ignore = "needs PostgreSQL and its standby: run `scripts/test`, which starts them"
)]
fn postgres_batches_wait_while_the_replica_lags() {
    let standby = std::env::var("AIRLOCK_TEST_POSTGRES_STANDBY_URL")
        .expect("AIRLOCK_TEST_POSTGRES_STANDBY_URL is not set: run the tests through `scripts/test`");
    let db = Db::new(Engine::Postgres);
    let rows = 30_000;
    items(&db, rows);
    let (_, name) = db.url.rsplit_once('/').unwrap();
    let (base, _) = standby.rsplit_once('/').unwrap();
    let mut replica = db.handle();
    replica.url = format!("{base}/{name}");
    // Caught up: the standby replayed all the primary wrote so far (the
    // insert position: with asynchronous commit the commit record may not
    // be written out yet).
    let written = db.scalar("SELECT pg_current_wal_insert_lsn()::text").unwrap();
    let started = Instant::now();
    while db.count(&format!("SELECT count(*) FROM pg_stat_replication WHERE replay_lsn >= '{written}'::pg_lsn")) == 0 {
        assert!(started.elapsed() < Duration::from_secs(180), "the standby did not catch up within 180 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(replica.count("SELECT count(*) FROM items"), rows as i64);
    let project = slow_project();
    project.write_config(&format!(
        "batch_min = 10\nbatch_max = 100\nbatch_target = \"20ms\"\nmax_rows_per_second = 5000\nreplicas = [\"{}\"]\nmax_replica_lag = \"1s\"\n",
        replica.url
    ));
    project.write("1_touch.up.sql", "-- airlock:backfill\nUPDATE items SET n = n + 1;\n");
    replica.exec("SELECT pg_wal_replay_pause()");
    let replaying = Replaying(replica.handle());
    let mut child = start(&project, &db, &["migrate"]);
    std::thread::sleep(Duration::from_secs(4));
    let before = batches_done(&db, Engine::Postgres);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(batches_done(&db, Engine::Postgres), before, "a batch ran while the replica lagged");
    assert!(child.try_wait().unwrap().is_none(), "the run waits");
    assert!(counts(&db).1 < rows as i64, "it stopped part-way");
    drop(replaying);
    let run = Run::of(child.wait_with_output().unwrap());
    run.expect(0);
    let all = run.all();
    assert!(all.contains("backfill paused: replica") && all.contains("max_replica_lag 1.0 s"), "{all}");
    assert!(all.contains("backfill resumed after"), "{all}");
    assert_eq!(counts(&db), (0, rows as i64, 0));
}

/// A replica that is not one refuses the run before its first batch.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn postgres_a_replica_that_is_not_one_is_refused() {
    let db = Db::new(Engine::Postgres);
    items(&db, 100);
    let project = Project::new();
    project.write_config(&format!("replicas = [\"{}\"]\n", db.url));
    project.write("1_touch.up.sql", "-- airlock:backfill\nUPDATE items SET n = n + 1;\n");
    let run = project.run(&db, &["migrate"]);
    run.expect(2);
    assert!(run.stderr.contains("(`replicas` in airlock.toml): it is not a replica"), "{}", run.all());
    assert_eq!(counts(&db).0, 100);
}

fn pause_holds_batches_and_resume_lets_them_go_on(engine: Engine) {
    let db = Db::new(engine);
    items(&db, 40_000);
    let project = slow_project();
    project.write("1_touch.up.sql", "-- airlock:backfill\nUPDATE items SET n = n + 1;\n");
    let mut child = start(&project, &db, &["migrate"]);
    wait_for_batches(&db, engine, 2, &mut child);
    let paused = project.run(&db, &["backfill", "pause", "1", "--reason", "peak traffic"]);
    paused.expect(0);
    assert!(paused.stdout.contains("Paused backfill 1"), "{}", paused.all());
    std::thread::sleep(Duration::from_secs(1));
    let before = batches_done(&db, engine);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(batches_done(&db, engine), before, "no batch while paused");
    assert!(child.try_wait().unwrap().is_none(), "the run waits");
    project.run(&db, &["backfill", "resume", "1"]).expect(0);
    let run = Run::of(child.wait_with_output().unwrap());
    run.expect(0);
    assert!(run.all().contains("is paused by") && run.all().contains("(peak traffic)"), "{}", run.all());
    assert!(run.all().contains("backfill resumed after"), "{}", run.all());
    assert_eq!(counts(&db), (0, 40_000, 0));
}

fn cancel_stops_it_and_runs_refuse_it_until_resumed(engine: Engine) {
    let db = Db::new(engine);
    items(&db, 40_000);
    let project = slow_project();
    project.write("1_touch.up.sql", "-- airlock:backfill\nUPDATE items SET n = n + 1;\n");
    let mut child = start(&project, &db, &["migrate"]);
    wait_for_batches(&db, engine, 2, &mut child);
    project.run(&db, &["backfill", "cancel", "1", "--reason", "wrong column"]).expect(0);
    let run = Run::of(child.wait_with_output().unwrap());
    run.expect(3);
    assert!(run.stderr.contains("was cancelled by") && run.stderr.contains("(wrong column)"), "{}", run.all());
    let part = counts(&db);
    assert!(part.1 > 0 && part.1 < 40_000 && part.2 == 0, "{part:?}");
    // Refused, and nothing more changes.
    project.run(&db, &["migrate"]).expect(3);
    assert_eq!(counts(&db), part);
    // A new file starts over from the first row once told to.
    project.write("1_touch.up.sql", "-- airlock:backfill\nUPDATE items SET n = 0;\n");
    project.run(&db, &["backfill", "resume", "1", "--from-start"]).expect(0);
    project.run(&db, &["migrate"]).expect(0);
    assert_eq!(counts(&db), (40_000, 0, 0));
    // Paused before it starts: a run refuses it, changing nothing.
    project.write("2_again.up.sql", "-- airlock:backfill\nUPDATE items SET n = n + 1;\n");
    project.run(&db, &["backfill", "pause", "2"]).expect(0);
    let refused = project.run(&db, &["migrate"]);
    refused.expect(3);
    assert!(refused.stderr.contains("backfill 2 is paused by"), "{}", refused.all());
    assert_eq!(counts(&db), (40_000, 0, 0));
    project.run(&db, &["backfill", "resume", "2"]).expect(0);
    project.run(&db, &["migrate"]).expect(0);
    assert_eq!(counts(&db), (0, 40_000, 0));
    // Only backfills, and only pending ones.
    let done = project.run(&db, &["backfill", "pause", "2"]);
    done.expect(2);
    assert!(done.stderr.contains("is done: it is applied"), "{}", done.all());
}

/// A session waiting for a row a batch holds: the batch counts it before
/// it commits, and the backfill gives way (pauses, smaller batches), saying
/// so, until a batch goes by with nobody waiting. Each batch here holds the
/// first rows for about 200 ms (each row sleeps 20 ms) while a writer keeps
/// updating row 1, so the first batch is waited on and the later ones are not.
fn waiters_on_a_batch_make_it_give_way(engine: Engine) {
    let db = Db::new(engine);
    items(&db, 50);
    db.exec("ALTER TABLE items ADD COLUMN w integer NOT NULL DEFAULT 0");
    let project = Project::new();
    project.write_config("batch_min = 10\nbatch_max = 10\nbatch_target = \"200ms\"\n");
    let slow = match engine {
        Engine::Postgres => "length(pg_sleep(0.02)::text)",
        _ => "SLEEP(0.02)",
    };
    project.write("1_touch.up.sql", &format!("-- airlock:backfill\nUPDATE items SET n = n + 1 + {slow};\n"));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.handle(), stop.clone());
        std::thread::spawn(move || {
            let mut writes = 0;
            while !stop.load(Ordering::SeqCst) {
                db.exec("UPDATE items SET w = w + 1 WHERE id = 1");
                writes += 1;
            }
            writes
        })
    };
    let run = project.run(&db, &["migrate"]);
    stop.store(true, Ordering::SeqCst);
    let writes = writer.join().expect("no write of the writer failed");
    run.expect(0);
    let all = run.all();
    assert!(all.contains("backfill paused: 1 session waited for locks its last batch held"), "{all}");
    assert!(all.contains("backfill resumed after"), "{all}");
    assert!(writes > 1, "the writer wrote during the backfill");
    assert_eq!(counts(&db), (0, 50, 0), "every row once");
    assert_eq!(db.count("SELECT w FROM items WHERE id = 1"), writes);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn postgres_waiters_on_a_batch_make_it_give_way() {
    waiters_on_a_batch_make_it_give_way(Engine::Postgres);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs MariaDB: run `scripts/test`, which starts it")]
fn mariadb_waiters_on_a_batch_make_it_give_way() {
    waiters_on_a_batch_make_it_give_way(Engine::MySql);
}
