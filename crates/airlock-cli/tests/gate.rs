//! `airlock gate` on every engine: behind, ready, in progress, waiting, failed.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Db, Engine, Project, Run, create_table, hold_lease};

each_engine!(
    gate_says_behind_then_ready,
    gate_waits_for_a_run_in_progress_and_returns_when_it_ends,
    gate_stops_waiting_when_a_migration_needs_a_person,
);

fn gate_says_behind_then_ready(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    for i in 1..=3 {
        project.write(&format!("{i}_t_{i}.up.sql"), &create_table(i));
    }
    project.run(&db, &["migrate", "--to", "1"]).expect(0);
    let behind = project.run(&db, &["gate", "--require", "latest", "--format", "json"]);
    behind.expect(4);
    let json = behind.json();
    assert_eq!(json["satisfied"], false);
    assert_eq!(json["required"], "3");
    assert_eq!(json["current_version"], "1");
    assert_eq!(json["state"], "clean");
    assert_eq!(json["reasons"][0], "behind by 2 migrations: 2 (t_2), 3 (t_3)");

    // A release that needs only version 1 is ready now.
    project.run(&db, &["gate", "--require", "1"]).expect(0);
    let human = project.run(&db, &["gate", "--require", "2"]);
    human.expect(4);
    assert!(
        human.stdout.contains("not ready") && human.stdout.contains("behind by 1 migration: 2 (t_2)"),
        "{}",
        human.stdout
    );

    project.run(&db, &["migrate"]).expect(0);
    let ready = project.run(&db, &["--format", "json", "gate", "--require", "latest"]);
    ready.expect(0);
    assert_eq!(ready.json()["satisfied"], true);

    // An edited applied file: not ready, whatever the version.
    project.write("2_t_2.up.sql", "CREATE TABLE t_2 (id bigint primary key, v text, w text);\n");
    let edited = project.run(&db, &["gate", "--require", "1"]);
    edited.expect(4);
    assert!(edited.stdout.contains("edited: the applied migration 2 differs from its file"), "{}", edited.stdout);
}

fn gate_waits_for_a_run_in_progress_and_returns_when_it_ends(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    project.write("1_t_1.up.sql", &create_table(1));
    project.run(&db, &["migrate"]).expect(0);

    // Another run holds the lock: a live process on this host.
    let mut runner = std::process::Command::new("sleep").arg("2").spawn().unwrap();
    hold_lease(&db, runner.id());
    let dirty = project.run(&db, &["gate", "--require", "latest", "--format", "json"]);
    dirty.expect(4);
    let json = dirty.json();
    assert_eq!(json["state"], "dirty");
    assert!(
        json["reasons"][0].as_str().unwrap().starts_with("in progress: a migration run is in progress: pid"),
        "{json}"
    );

    let started = Instant::now();
    let waiter = project
        .airlock(&db)
        .args(["gate", "--require", "latest", "--wait", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    runner.wait().unwrap();
    let ended = started.elapsed();
    let waited = Run::of(waiter.wait_with_output().unwrap());
    waited.expect(0);
    assert!(waited.stdout.contains("waiting: in progress"), "{}", waited.stdout);
    assert!(waited.stdout.contains("ready"), "{}", waited.stdout);
    assert!(
        started.elapsed() < ended + Duration::from_secs(4),
        "returned soon after the run ended: {:?}",
        started.elapsed()
    );

    // Time running out while still in progress is exit 4.
    let live = std::process::id();
    hold_lease(&db, live);
    let timed_out = project.run(&db, &["gate", "--require", "latest", "--wait", "1s"]);
    timed_out.expect(4);
}

fn gate_stops_waiting_when_a_migration_needs_a_person(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    project.write("1_t_1.up.sql", &create_table(1));
    project.write("2_bad.up.sql", "CREATE TABLE t_2 (id bigint primary key);\nINSERT INTO missing VALUES (1);\n");
    project.run(&db, &["migrate"]).expect(1);
    let started = Instant::now();
    let wait = if engine == Engine::MySql { "60s" } else { "2s" };
    let run = project.run(&db, &["gate", "--require", "latest", "--wait", wait, "--format", "json"]);
    run.expect(4);
    let json = run.json();
    if engine == Engine::MySql {
        // Half-applied: waiting cannot help, so it does not wait.
        assert_eq!(json["state"], "failed");
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        assert!(
            json["reasons"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().starts_with("failed: migration 2")),
            "{json}"
        );
    } else {
        // Rolled back: it is simply pending, and a later run may apply it.
        assert_eq!(json["state"], "clean");
        assert_eq!(json["reasons"][0], "behind by 1 migration: 2 (bad)");
    }
}

#[test]
fn a_file_that_cannot_be_read_keeps_the_latest_gate_shut() {
    let db = Db::new(Engine::Sqlite);
    let project = Project::new();
    project.write("1_t_1.up.sql", &create_table(1));
    project.run(&db, &["migrate"]).expect(0);
    project.run(&db, &["gate", "--require", "latest"]).expect(0);

    // The newest file is not valid UTF-8: what it needs is unknown.
    std::fs::write(project.dir().join("2_t_2.up.sql"), b"SELECT '\xff';\n").unwrap();
    let shut = project.run(&db, &["--format", "json", "gate", "--require", "latest"]);
    shut.expect(4);
    let json = shut.json();
    assert_eq!(json["satisfied"], false);
    let reason = json["reasons"][0].as_str().unwrap();
    assert!(
        reason.starts_with("unreadable: ") && reason.contains("2_t_2.up.sql:1: the file is not valid UTF-8"),
        "{json}"
    );
    // Waiting cannot fix a file: `--wait` answers at once.
    let started = Instant::now();
    project.run(&db, &["gate", "--require", "latest", "--wait", "30s"]).expect(4);
    assert!(started.elapsed() < Duration::from_secs(20), "gate --wait waited for a file to mend itself");
    // A release that needs version 1 only is not concerned by version 2's file.
    project.run(&db, &["gate", "--require", "1"]).expect(0);

    // A file whose name gives no version may be any version.
    std::fs::remove_file(project.dir().join("2_t_2.up.sql")).unwrap();
    project.write("add_things.up.sql", "CREATE TABLE things (id int);\n");
    let misnamed = project.run(&db, &["gate", "--require", "1"]);
    misnamed.expect(4);
    assert!(misnamed.stdout.contains("is not a migration file name"), "{}", misnamed.stdout);
}
