//! What a person sees while a run works, through a pseudo-terminal (util-linux
//! `script`): a migration that runs longer than a second gets a spinner with
//! its place in the run, the time so far and the plan's estimate; nothing of
//! it in JSON or when stderr is not a terminal.

mod common;

use std::process::Command;

use common::{Db, Engine, Project};

/// Runs `airlock ARGS` on a pseudo-terminal; everything it drew, as text.
fn on_a_terminal(project: &Project, db: &Db, args: &[&str]) -> String {
    let mut line =
        format!("{} --database-url '{}' --dir '{}'", common::airlock_bin().display(), db.url, project.dir().display());
    for arg in args {
        line.push_str(&format!(" '{arg}'"));
    }
    let output = Command::new("script")
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .current_dir(project.root.path())
        .env("COLUMNS", "120")
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .output()
        .expect("util-linux `script` runs a command on a pseudo-terminal");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A table the plan has statistics for, and a migration that builds an
/// index on it and then waits two seconds.
fn slow_project(db: &Db) -> Project {
    db.exec("CREATE TABLE big (id bigint PRIMARY KEY, v text)");
    db.exec("INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 50000) g");
    db.exec("ANALYZE big");
    let project = Project::new();
    project.write("1_quick.up.sql", "CREATE TABLE small (id bigint PRIMARY KEY);\n");
    project.write(
        "2_index_big.up.sql",
        "-- airlock:no-transaction\nCREATE INDEX CONCURRENTLY big_v ON big (v);\nSELECT pg_sleep(2);\n",
    );
    project
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn a_long_migration_shows_a_spinner_on_a_terminal() {
    let db = Db::new(Engine::Postgres);
    let project = slow_project(&db);
    let seen = on_a_terminal(&project, &db, &["migrate"]);
    // The spinner: which migration of how many, the time so far, the plan's estimate.
    assert!(seen.contains("2/2 2 index_big · 1.") && seen.contains(" s (plan: under 1 s)"), "{seen}");
    assert!(seen.contains("2/2 2 index_big · 2."), "{seen}");
    // The quick one never showed one.
    assert!(!seen.contains("1/2 1 quick"), "{seen}");
    // Cleared before the line that says it is done.
    assert!(seen.contains("2 migrations in"), "{seen}");
    let last = seen.rsplit("index_big · ").next().unwrap();
    assert!(last.contains("\x1b[2K"), "the spinner was not cleared: {seen:?}");
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn no_spinner_in_json_or_off_a_terminal() {
    let db = Db::new(Engine::Postgres);
    let project = slow_project(&db);
    let seen = on_a_terminal(&project, &db, &["--format", "json", "migrate", "--to", "1"]);
    assert!(!seen.contains("1/1"), "{seen}");
    assert!(seen.contains("\"current_version\""), "{seen}");

    let run = project.run(&db, &["migrate"]);
    run.expect(0);
    assert!(!run.all().contains("1/1 2 index_big"), "{}", run.all());
    assert!(!run.all().contains('\r'), "{:?}", run.all());
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn a_backup_before_migrating_shows_a_bar_of_bytes_on_a_terminal() {
    let db = Db::new(Engine::Postgres);
    db.exec("CREATE TABLE big (id bigint PRIMARY KEY, v text, w text)");
    db.exec("INSERT INTO big SELECT g, md5(g::text), repeat(md5(g::text), 4) FROM generate_series(1, 300000) g");
    db.exec("ANALYZE big");
    let project = Project::new();
    project.write("1_drop_w.up.sql", "ALTER TABLE big DROP COLUMN w;\n");
    let seen = on_a_terminal(&project, &db, &["migrate", "--backup"]);
    // Bytes read of about how many, the rate and the time left.
    assert!(seen.contains("backup of "), "{seen}");
    assert!(seen.contains("big ["), "{seen}");
    assert!(seen.contains("MiB/~"), "{seen}");
    assert!(seen.contains("ETA"), "{seen}");
    assert!(seen.contains("✓") && seen.contains("backup "), "{seen}");
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn a_rehearsal_says_which_migration_it_rehearses() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    project.write("1_quick.up.sql", "CREATE TABLE small (id bigint PRIMARY KEY);\n");
    project.write("1_quick.down.sql", "DROP TABLE small;\n");
    project.write("2_slow.up.sql", "CREATE TABLE slow (id bigint PRIMARY KEY);\nSELECT pg_sleep(0.8);\n");
    project.write("2_slow.down.sql", "DROP TABLE slow;\n");
    let seen = on_a_terminal(&project, &db, &["rehearse"]);
    // Up, down and up again: 1.6 s of sleep, so the spinner shows.
    assert!(seen.contains("rehearsing 2/2: 2 slow (up, down, up) · 1."), "{seen}");
    assert!(!seen.contains("rehearsing 1/2"), "{seen}");
}
