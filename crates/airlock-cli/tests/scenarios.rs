//! The runner's scenarios, each run on PostgreSQL, MariaDB and SQLite.

mod common;

use std::process::Stdio;
use std::thread;
use std::time::Duration;

use common::{Db, Engine, Project, Run, create_table, host_identity, now_sql};

each_engine!(
    applies_then_rerun_is_a_noop,
    edited_applied_file_is_refused_and_repair_accepts_it,
    a_file_edited_after_a_run_kept_it_is_still_refused,
    unknown_applied_versions_are_refused_and_nothing_is_unapplied,
    another_projects_database_is_refused,
    failing_migration_leaves_history_and_schema_consistent,
    concurrent_runs_apply_each_migration_exactly_once,
    killed_runs_never_leave_history_and_schema_disagreeing,
    live_lock_holder_makes_others_wait_and_dead_one_is_taken_over,
    down_applies_down_scripts_and_protected_environment_refuses,
    own_begin_commit_is_folded_into_the_transaction,
    to_stops_at_target_and_dry_run_changes_nothing,
    lock_timeout_is_retried_and_names_the_blocker,
    unlock_frees_a_gone_holder_and_needs_force_for_a_live_one,
    down_retries_a_lock_timeout_like_migrate,
);

fn migrations(project: &Project, n: usize) {
    for i in 1..=n {
        project.write(&format!("{i}_table_{i}.up.sql"), &create_table(i));
    }
}

fn applied_events(db: &Db) -> Vec<(String, i64)> {
    db.rows("SELECT version, count(*) FROM airlock_events WHERE kind = 'applied' GROUP BY version")
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap().parse().unwrap()))
        .collect()
}

fn applies_then_rerun_is_a_noop(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    migrations(&project, 3);
    let run = project.run(&db, &["migrate"]);
    run.expect(0);
    assert!(run.stdout.contains("Applied 3 migrations"), "{}", run.stdout);
    for i in 1..=3 {
        assert!(db.table_exists(&format!("t_{i}")));
    }
    let history = db.history();
    assert_eq!(history.iter().map(|h| h.1.as_str()).collect::<Vec<_>>(), ["succeeded"; 3]);

    let again = project.run(&db, &["migrate"]);
    again.expect(0);
    assert!(again.stdout.contains("Nothing to do: the database is at version 3"), "{}", again.stdout);
    assert_eq!(db.history(), history, "a no-op run writes nothing");
    assert_eq!(db.count("SELECT count(*) FROM airlock_events WHERE kind = 'applied'"), 3);

    let status = project.run(&db, &["status", "--format", "json"]);
    status.expect(0);
    let json = status.json();
    assert_eq!(json["state"], "clean");
    assert_eq!(json["current_version"], "3");
    assert_eq!(json["applied"].as_array().unwrap().len(), 3);
    assert_eq!(json["pending"].as_array().unwrap().len(), 0);
    for key in ["version", "name", "kind", "checksum", "applied_at", "duration_ms"] {
        assert!(json["applied"][0].get(key).is_some(), "applied entries have {key}");
    }
}

fn edited_applied_file_is_refused_and_repair_accepts_it(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    migrations(&project, 2);
    project.run(&db, &["migrate"]).expect(0);
    project.write("2_table_2.up.sql", "CREATE TABLE t_2 (id bigint primary key, v text, w text);\n");
    project.write("3_table_3.up.sql", &create_table(3));

    let refused = project.run(&db, &["migrate"]);
    refused.expect(3);
    assert!(refused.stderr.contains("checksum-mismatch"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("2_table_2.up.sql` was changed after migration 2 was applied"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("+CREATE TABLE t_2 (id bigint primary key, v text, w text);"),
        "shows a diff: {}",
        refused.stderr
    );
    assert!(!db.table_exists("t_3"), "nothing else runs");

    // Whitespace and line endings are not changes.
    project.write("2_table_2.up.sql", "CREATE TABLE t_2 (id bigint primary key, v text);   \r\n\r\n");
    project.run(&db, &["migrate", "--dry-run"]).expect(0);

    project.write("2_table_2.up.sql", "-- reviewed\nCREATE TABLE t_2 (id bigint primary key, v text);\n");
    project.run(&db, &["migrate"]).expect(3);
    project.run(&db, &["repair", "--accept", "2", "--reason", "added a comment"]).expect(0);
    let detail = db.scalar("SELECT detail FROM airlock_events WHERE kind = 'repaired'").unwrap();
    assert!(detail.contains("added a comment") && detail.contains("old_checksum"), "{detail}");
    project.run(&db, &["migrate"]).expect(0);
    assert!(db.table_exists("t_3"));
}

/// A run keeps what it read of the migrations directory, so that the next
/// need not open every file; an edit is still seen, even one that keeps the
/// file's length and puts its modification time back.
fn a_file_edited_after_a_run_kept_it_is_still_refused(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    migrations(&project, 2);
    // A file is kept once it has not changed for two seconds.
    thread::sleep(Duration::from_millis(2_200));
    project.run(&db, &["migrate"]).expect(0);
    let kept: Vec<_> = std::fs::read_dir(project.cache_dir()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(kept.len(), 1, "one cache for the directory: {kept:?}");
    let cache = std::fs::read(&kept[0]).unwrap();
    assert!(cache.windows(16).any(|w| w == b"2_table_2.up.sql"), "the files are kept");
    project.run(&db, &["migrate"]).expect(0);

    let path = project.dir().join("2_table_2.up.sql");
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    project.write("2_table_2.up.sql", &create_table(2).replace(" v ", " w "));
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(modified).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), create_table(2).len() as u64);
    let refused = project.run(&db, &["migrate"]);
    refused.expect(3);
    assert!(refused.stderr.contains("checksum-mismatch"), "{}", refused.stderr);
    assert!(refused.stderr.contains("+CREATE TABLE t_2 (id bigint primary key, w text);"), "{}", refused.stderr);
}

fn unknown_applied_versions_are_refused_and_nothing_is_unapplied(engine: Engine) {
    let db = Db::new(engine);
    let newer = Project::new();
    migrations(&newer, 3);
    newer.run(&db, &["migrate"]).expect(0);

    let older = Project::new();
    migrations(&older, 2);
    older.write("4_table_4.up.sql", &create_table(4));
    let refused = older.run(&db, &["migrate", "--format", "json"]);
    refused.expect(3);
    let json = refused.json();
    let problems = json["error"]["problems"].as_array().unwrap();
    assert_eq!(problems[0]["code"], "unknown-applied");
    assert_eq!(problems[0]["version"], "3");
    assert!(problems[0]["message"].as_str().unwrap().contains("is this the right database"));
    assert!(db.table_exists("t_3"), "nothing was un-applied");
    assert!(!db.table_exists("t_4"), "nothing was applied");
    assert_eq!(db.state_of("3").as_deref(), Some("succeeded"));

    let status = older.run(&db, &["status", "--format", "json"]);
    status.expect(0);
    assert_eq!(status.json()["problems"][0]["code"], "unknown-applied");
}

fn another_projects_database_is_refused(engine: Engine) {
    let db = Db::new(engine);
    let shop = Project::new();
    shop.write_config("project = \"shop\"\n");
    migrations(&shop, 1);
    shop.run(&db, &["migrate"]).expect(0);

    let billing = Project::new();
    billing.write_config("project = \"billing\"\n");
    migrations(&billing, 1);
    billing.write("2_table_2.up.sql", &create_table(2));
    let refused = billing.run(&db, &["migrate"]);
    refused.expect(3);
    assert!(refused.stderr.contains("wrong-project"), "{}", refused.stderr);
    assert!(refused.stderr.contains("belongs to project `shop`, and this is project `billing`"), "{}", refused.stderr);
    assert!(!db.table_exists("t_2"));

    let anonymous = Project::new();
    migrations(&anonymous, 2);
    let refused = anonymous.run(&db, &["migrate"]);
    refused.expect(3);
    assert!(refused.stderr.contains("set `project = \"shop\"`"), "{}", refused.stderr);
}

fn failing_migration_leaves_history_and_schema_consistent(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    migrations(&project, 1);
    let bad = "CREATE TABLE t_2 (id bigint primary key);\nINSERT INTO no_such_table VALUES (1);\n";
    project.write("2_two_statements.up.sql", bad);
    project.write("3_table_3.up.sql", &create_table(3));

    let failed = project.run(&db, &["migrate"]);
    failed.expect(1);
    assert!(failed.stderr.contains("migration 2 (two_statements) failed at statement 2"), "{}", failed.stderr);
    assert!(failed.stderr.contains("2_two_statements.up.sql:2"), "names file and line: {}", failed.stderr);
    assert!(failed.stderr.contains("applied before the failure: 1"), "{}", failed.stderr);
    assert!(db.table_exists("t_1"));
    assert!(!db.table_exists("t_3"), "stops at the failure");
    assert_eq!(db.state_of("2").as_deref(), Some("failed"));
    let fixed = "CREATE TABLE t_2 (id bigint primary key);\nINSERT INTO t_2 VALUES (1);\n";

    if engine == Engine::MySql {
        // DDL committed: statement 1 stayed, and history says so.
        assert!(db.table_exists("t_2"));
        assert_eq!(db.history()[1].2, 1, "one statement done");
        let blocked = project.run(&db, &["migrate"]);
        blocked.expect(3);
        assert!(blocked.stderr.contains("airlock resolve 2 --retry-from-failed"), "{}", blocked.stderr);
        let status = project.run(&db, &["status", "--format", "json"]);
        assert_eq!(status.json()["state"], "failed");
        // Changing a statement that already ran is refused; fixing the failed one is the point.
        project.write("2_two_statements.up.sql", "CREATE TABLE t_2 (id bigint);\nINSERT INTO t_2 VALUES (1);\n");
        project.run(&db, &["resolve", "2", "--retry-from-failed"]).expect(3);
        project.write("2_two_statements.up.sql", fixed);
        project.run(&db, &["resolve", "2", "--retry-from-failed", "--reason", "typo"]).expect(0);
        assert_eq!(db.state_of("2").as_deref(), Some("succeeded"));
    } else {
        // Rolled back with its transaction: nothing of it stayed.
        assert!(!db.table_exists("t_2"));
        assert!(failed.stderr.contains("rolled back"), "{}", failed.stderr);
        let status = project.run(&db, &["status", "--format", "json"]);
        let json = status.json();
        assert_eq!(json["state"], "clean");
        assert_eq!(json["problems"][0]["code"], "failed-rolled-back");
        project.write("2_two_statements.up.sql", fixed);
    }
    project.run(&db, &["migrate"]).expect(0);
    assert_eq!(db.count("SELECT count(*) FROM t_2"), 1);
    assert!(db.table_exists("t_3"));
    assert!(db.history().iter().all(|h| h.1 == "succeeded"));
}

fn concurrent_runs_apply_each_migration_exactly_once(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    migrations(&project, 30);
    let children: Vec<_> = (0..8)
        .map(|_| project.airlock(&db).arg("migrate").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    for child in children {
        Run::of(child.wait_with_output().unwrap()).expect(0);
    }
    let events = applied_events(&db);
    assert_eq!(events.len(), 30, "{events:?}");
    assert!(events.iter().all(|(_, n)| *n == 1), "each applied exactly once: {events:?}");
    assert!((1..=30).all(|i| db.table_exists(&format!("t_{i}"))));
}

/// Waits until no other session works in this MySQL database (a killed client's
/// statement may still be finishing on the server).
fn settle(db: &Db) {
    if db.engine != Engine::MySql {
        return;
    }
    for _ in 0..100 {
        let busy = db.count("SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND COMMAND <> 'Sleep'");
        if busy == 0 {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn killed_runs_never_leave_history_and_schema_disagreeing(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    // MariaDB runs statement by statement with a history write around each,
    // and SQLite applies a migration in a few milliseconds: more of them
    // widen the window a kill must land in.
    let mut n = if engine == Engine::Postgres { 150 } else { 300 };
    migrations(&project, n);
    let mut cut_midway = 0;
    let mut applied_before = 0;
    // Where to cut: random within a window that moves later whenever a round
    // was cut before it applied anything (migrate reads the live schema and
    // lints first, which takes longer on a loaded machine or on MariaDB).
    let mut from = 30u64;
    for round in 0..16 {
        if applied_before == n {
            // A run finished before any kill landed in its middle (a loaded
            // machine can be that uneven): more migrations, and go on.
            if cut_midway > 0 || n >= 1200 {
                break;
            }
            for i in n + 1..=n * 2 {
                project.write(&format!("{i}_table_{i}.up.sql"), &create_table(i));
            }
            n *= 2;
        }
        let mut child =
            project.airlock(&db).arg("migrate").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        if round % 2 == 0 {
            thread::sleep(Duration::from_millis(rand::random::<u64>() % from + from));
        } else {
            // Every other round cuts once the run has visibly started applying,
            // wherever its start-up (reading and judging everything) ends.
            let waiting = std::time::Instant::now();
            while waiting.elapsed() < Duration::from_secs(30) && child.try_wait().unwrap().is_none() {
                let recorded = if db.table_exists("airlock_history") {
                    db.count("SELECT count(*) FROM airlock_history")
                } else {
                    0
                };
                if recorded as usize > applied_before {
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
            thread::sleep(Duration::from_millis(rand::random::<u64>() % 30));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        settle(&db);
        let history = db.history();
        let applied = history.iter().filter(|h| h.1 == "succeeded").count();
        if applied > applied_before && applied < n {
            cut_midway += 1;
        }
        let progressed = applied > applied_before || history.iter().any(|h| h.1 == "running");
        if !progressed {
            from = (from * 2).min(5_000);
        }
        applied_before = applied;
        let mut running = 0;
        for i in 1..=n {
            let state = history.iter().find(|h| h.0 == i.to_string()).map(|h| h.1.as_str());
            let exists = db.table_exists(&format!("t_{i}"));
            match (engine, state) {
                (_, Some("succeeded")) => assert!(exists, "round {round}: {i} recorded but its table is missing"),
                (_, None) => assert!(!exists, "round {round}: t_{i} exists but {i} is not recorded"),
                // Only a statement-by-statement run can be cut off, and history says so.
                (Engine::MySql, Some("running")) => running += 1,
                (_, other) => panic!("round {round}: migration {i} left as {other:?}"),
            }
        }
        assert!(running <= 1, "round {round}: at most one migration was cut off");
        if running == 1 {
            // Cut off inside a migration: the middle of a run, whatever applied before it.
            cut_midway += 1;
            // Leave the cut-off migration for the end; the next rounds are refused until it is resolved.
            break;
        }
    }
    assert!(cut_midway >= 1, "no round was killed in the middle of a run: the test proved nothing");
    // The next run handles it: on MySQL an operator resolves the cut-off migration first.
    if let Some((version, _, _)) = db.history().into_iter().find(|h| h.1 == "running") {
        let status = project.run(&db, &["status", "--format", "json"]);
        let json = status.json();
        assert_eq!(json["state"], "dirty");
        assert_eq!(json["problems"][0]["code"], "interrupted");
        project.run(&db, &["migrate"]).expect(3);
        if db.table_exists(&format!("t_{version}")) {
            project.run(&db, &["resolve", &version, "--mark-applied"]).expect(2); // a reason is required
            project.run(&db, &["resolve", &version, "--mark-applied", "--reason", "the table is there"]).expect(0);
        } else {
            project.run(&db, &["resolve", &version, "--retry-from-failed"]).expect(0);
        }
    }
    project.run(&db, &["migrate"]).expect(0);
    assert!((1..=n).all(|i| db.table_exists(&format!("t_{i}"))));
    assert!(db.history().iter().all(|h| h.1 == "succeeded"));
    let events = applied_events(&db);
    assert!(events.iter().all(|(_, c)| *c == 1), "nothing applied twice: {events:?}");
}

fn live_lock_holder_makes_others_wait_and_dead_one_is_taken_over(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    migrations(&project, 1);
    project.run(&db, &["migrate"]).expect(0);
    project.write("2_table_2.up.sql", &create_table(2));
    let now = now_sql(engine);
    let hold = |pid: u32| {
        db.exec(&format!(
            "UPDATE airlock_lock SET owner = 'other', host = '{}', pid = {pid}, os_user = 'deployer', version = '2', acquired_at = {now}, heartbeat_at = {now} WHERE id = 1",
            host_identity()
        ));
    };
    // This test process is alive: its lock is respected.
    hold(std::process::id());
    let status = project.run(&db, &["status", "--format", "json"]);
    let json = status.json();
    assert_eq!(json["state"], "dirty");
    assert_eq!(json["lock"]["os_user"], "deployer");
    let waited = Run::of(project.airlock(&db).args(["migrate", "--lock-wait", "1s"]).output().unwrap());
    waited.expect(1);
    assert!(waited.stdout.contains("waiting for the lock held by pid"), "{}", waited.stdout);
    assert!(waited.stderr.contains(&format!("pid {}", std::process::id())), "{}", waited.stderr);
    assert!(!db.table_exists("t_2"));

    // A process that is gone: its lock is taken over at once, and that is recorded.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    hold(dead_pid);
    let run = project.run(&db, &["migrate", "--lock-wait", "1s"]);
    run.expect(0);
    assert!(run.stdout.contains("took over the lock"), "{}", run.stdout);
    assert!(db.table_exists("t_2"));
    assert_eq!(db.count("SELECT count(*) FROM airlock_events WHERE kind = 'lock_taken_over'"), 1);
    assert_eq!(db.count("SELECT count(*) FROM airlock_lock WHERE owner IS NOT NULL"), 0, "released");

    // A holder on this host name before a reboot (another boot id) is gone too.
    project.write("3_table_3.up.sql", &create_table(3));
    let identity = host_identity();
    let mut parts: Vec<&str> = identity.split('#').collect();
    parts[1] = "00000000";
    db.exec(&format!(
        "UPDATE airlock_lock SET owner = 'before-reboot', host = '{}', pid = {}, os_user = 'deployer', acquired_at = {now}, heartbeat_at = {now} WHERE id = 1",
        parts.join("#"),
        std::process::id()
    ));
    let run = project.run(&db, &["migrate", "--lock-wait", "1s"]);
    run.expect(0);
    assert!(run.stdout.contains("has restarted since"), "{}", run.stdout);

    // Someone deleted the lock row by hand: the next run puts it back.
    db.exec("DELETE FROM airlock_lock");
    project.write("4_table_4.up.sql", &create_table(4));
    project.run(&db, &["migrate", "--lock-wait", "5s"]).expect(0);
    assert!(db.table_exists("t_4"));
}

fn unlock_frees_a_gone_holder_and_needs_force_for_a_live_one(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    migrations(&project, 1);
    project.run(&db, &["migrate"]).expect(0);
    project.run(&db, &["unlock"]).expect(0);
    let hold = |host: &str, pid: u32| {
        db.exec(&format!(
            "UPDATE airlock_lock SET owner = 'other', host = '{host}', pid = {pid}, os_user = 'deployer', acquired_at = {now}, heartbeat_at = {now} WHERE id = 1",
            now = now_sql(engine)
        ));
    };
    // A process on another machine: airlock cannot see whether it is alive.
    hold("elsewhere#12345678#1", 4242);
    let refused = project.run(&db, &["unlock"]);
    refused.expect(3);
    assert!(
        refused.stderr.contains("may still be running") && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    project.run(&db, &["unlock", "--force"]).expect(2); // --force needs --reason
    let forced = project.run(&db, &["unlock", "--force", "--reason", "the CI runner was deleted"]);
    forced.expect(0);
    assert!(forced.stdout.contains("Freed the lock held by pid 4242 (deployer@elsewhere)"), "{}", forced.stdout);
    let detail = db.scalar("SELECT detail FROM airlock_events WHERE kind = 'unlocked'").unwrap();
    assert!(detail.contains("the CI runner was deleted") && detail.contains("\"forced\":true"), "{detail}");
    assert_eq!(db.count("SELECT count(*) FROM airlock_lock WHERE owner IS NOT NULL"), 0);
}

fn down_applies_down_scripts_and_protected_environment_refuses(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    migrations(&project, 3);
    for i in 2..=3 {
        project.write(&format!("{i}_table_{i}.down.sql"), &format!("DROP TABLE t_{i};\n"));
    }
    project.run(&db, &["migrate"]).expect(0);

    let missing = project.run(&db, &["down", "--to", "0"]);
    missing.expect(2);
    assert!(missing.stderr.contains("no down script for 1 (table_1)"), "{}", missing.stderr);
    assert!(db.table_exists("t_3"), "refused before changing anything");

    project.write_config("[environments.prod]\nprotected = true\n");
    let refused = Run::of(project.airlock(&db).args(["--env", "prod", "down", "--to", "1"]).output().unwrap());
    refused.expect(3);
    assert!(refused.stderr.contains("environment `prod` is protected"), "{}", refused.stderr);
    assert!(db.table_exists("t_3"));

    // A down script that fails part-way outside a transaction leaves the
    // migration marked as partly rolled back, never as still applied.
    if engine == Engine::MySql {
        project.write("3_table_3.down.sql", "DROP TABLE t_3;\nDROP TABLE no_such_table;\n");
        let failed = project.run(&db, &["down", "--to", "2"]);
        failed.expect(1);
        assert!(failed.stderr.contains("partly rolled back"), "{}", failed.stderr);
        assert_eq!(db.state_of("3").as_deref(), Some("rolling_back"));
        let status = project.run(&db, &["status", "--format", "json"]).json();
        assert_eq!(status["state"], "dirty");
        project.run(&db, &["gate", "--require", "latest"]).expect(4);
        project.run(&db, &["migrate"]).expect(3);
        project.run(&db, &["resolve", "3", "--mark-rolled-back", "--reason", "dropped by hand"]).expect(0);
        project.write("3_table_3.down.sql", "DROP TABLE t_3;\n");
        project.run(&db, &["migrate"]).expect(0);
    }

    project.run(&db, &["down", "--to", "1"]).expect(0);
    assert!(!db.table_exists("t_3") && !db.table_exists("t_2") && db.table_exists("t_1"));
    assert_eq!(db.state_of("3").as_deref(), Some("rolled_back"));
    let status = project.run(&db, &["status", "--format", "json"]).json();
    assert_eq!(status["current_version"], "1");
    assert_eq!(status["pending"].as_array().unwrap().len(), 2);
    project.run(&db, &["migrate"]).expect(0);
    assert!(db.table_exists("t_3"));
}

fn own_begin_commit_is_folded_into_the_transaction(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    let begin = if engine == Engine::MySql { "START TRANSACTION" } else { "BEGIN" };
    project.write(
        "1_wrapped.up.sql",
        &format!("{begin};\nCREATE TABLE t_1 (id bigint primary key);\nINSERT INTO t_1 VALUES (1);\nCOMMIT;\n"),
    );
    project.write("2_data.up.sql", "-- airlock:data\nINSERT INTO t_1 VALUES (2);\nINSERT INTO t_1 VALUES (3);\n");
    project.run(&db, &["migrate"]).expect(0);
    assert_eq!(db.count("SELECT count(*) FROM t_1"), 3);
    let modes = db.rows("SELECT version, mode, kind FROM airlock_history ORDER BY version");
    let expected_first = if engine == Engine::MySql { "statements" } else { "transaction" };
    assert_eq!(modes[0][1].as_deref(), Some(expected_first));
    assert_eq!(modes[1][1].as_deref(), Some("transaction"), "data-only files run in one transaction everywhere");
    assert_eq!(modes[1][2].as_deref(), Some("data"));
}

fn to_stops_at_target_and_dry_run_changes_nothing(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    migrations(&project, 3);
    project.write("10_table_10.up.sql", &create_table(10));
    let dry = project.run(&db, &["migrate", "--dry-run", "--format", "json"]);
    dry.expect(0);
    let json = dry.json();
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["migrations"].as_array().unwrap().len(), 4);
    assert!(!db.table_exists("airlock_history"), "a dry run creates nothing");

    project.run(&db, &["migrate", "--to", "2"]).expect(0);
    assert!(db.table_exists("t_2") && !db.table_exists("t_3"));
    let rest = project.run(&db, &["migrate", "--format", "json"]);
    rest.expect(0);
    let versions: Vec<_> = rest.json()["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(versions, ["3", "10"], "numeric order");
}

/// Runs `args` while another session holds `lock`, and lets go once the run
/// says its statement hit the lock timeout (so the retry succeeds, however
/// slowly the run started). SQLite's writer waits at the run lock instead,
/// saying nothing: there the lock is held for 1.5 s.
fn run_through_a_held_lock(project: &Project, db: &Db, lock: &str, args: &[&str]) -> Run {
    let holder = db.hold(lock, Duration::from_secs(30));
    if db.engine == Engine::Sqlite {
        let release = thread::spawn(move || {
            thread::sleep(Duration::from_millis(1500));
            drop(holder);
        });
        let run = project.run(db, args);
        release.join().unwrap();
        return run;
    }
    let mut command = project.airlock(db);
    command.args(args);
    common::run_releasing_on(command, "hit the lock timeout", || drop(holder))
}

fn lock_timeout_is_retried_and_names_the_blocker(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    migrations(&project, 1);
    project.run(&db, &["migrate"]).expect(0);
    project.write_config("lock_timeout = \"300ms\"\nlock_retries = 6\nlock_retry_backoff = \"200ms\"\n");
    project.write("2_alter.up.sql", "ALTER TABLE t_1 ADD COLUMN w text;\n");
    let lock = match engine {
        Engine::Postgres => "LOCK TABLE t_1 IN ACCESS SHARE MODE",
        Engine::MySql => "SELECT * FROM t_1",
        // BEGIN IMMEDIATE (in `hold`) already holds SQLite's write lock.
        Engine::Sqlite => "SELECT 1",
    };
    let run = run_through_a_held_lock(&project, &db, lock, &["migrate"]);
    run.expect(0);
    if engine != Engine::Sqlite {
        // SQLite's writer waits at the run lock (busy timeout) before the migration starts.
        assert!(run.stdout.contains("hit the lock timeout; retry 1"), "{}", run.stdout);
        assert!(run.stdout.contains("blocked by"), "names the blocker: {}", run.stdout);
    }
    assert_eq!(db.state_of("2").as_deref(), Some("succeeded"));

    // A lock that outlasts every retry fails the migration with exit 1, the database as it was.
    project.write_config("lock_timeout = \"200ms\"\nlock_retries = 1\nlock_retry_backoff = \"100ms\"\n");
    project.write("3_alter.up.sql", "ALTER TABLE t_1 ADD COLUMN x text;\n");
    let holder = db.hold(lock, Duration::from_secs(20));
    let run = project.run(&db, &["migrate"]);
    drop(holder);
    run.expect(1);
    let expected =
        if engine == Engine::Sqlite { "database is locked" } else { "migration 3 (alter) failed at statement 1" };
    assert!(run.stderr.contains(expected), "{}", run.stderr);
    assert!(!db.history().iter().any(|h| h.0 == "3" && h.1 == "succeeded"));
}

fn down_retries_a_lock_timeout_like_migrate(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    migrations(&project, 2);
    project.write("2_table_2.down.sql", "DROP TABLE t_2;\n");
    project.run(&db, &["migrate"]).expect(0);
    project.write_config("lock_timeout = \"300ms\"\nlock_retries = 6\nlock_retry_backoff = \"200ms\"\n");
    let lock = match engine {
        Engine::Postgres => "LOCK TABLE t_2 IN ACCESS SHARE MODE",
        Engine::MySql => "SELECT * FROM t_2",
        Engine::Sqlite => "SELECT 1",
    };
    let run = run_through_a_held_lock(&project, &db, lock, &["down", "--to", "1"]);
    run.expect(0);
    if engine != Engine::Sqlite {
        assert!(run.stdout.contains("hit the lock timeout; retry 1"), "{}", run.stdout);
    }
    assert!(!db.table_exists("t_2"));
    assert_eq!(db.state_of("2").as_deref(), Some("rolled_back"));
}
