//! The command-line contract without a server: bad input exits 2 naming the file,
//! line or value; passwords never show; `new` numbers files as the directory does.

mod common;

use common::{Db, Engine, Project, Run};

fn airlock(project: &Project, args: &[&str]) -> Run {
    Run::of(project.bare().args(args).output().unwrap())
}

#[test]
fn malformed_files_exit_2_naming_each_file_and_change_nothing() {
    let db = Db::new(Engine::Sqlite);
    let project = Project::new();
    project.write("1_ok.up.sql", "CREATE TABLE a (id int);");
    project.write("2_bad.up.sql", "-- airlock:no-such-thing\nSELECT 1;");
    project.write("notes.sql", "SELECT 1;");
    project.write("3_quote.up.sql", "SELECT 1;\nSELECT 'unterminated;\n");
    let run = project.run(&db, &["migrate"]);
    run.expect(2);
    assert!(run.stderr.contains("2_bad.up.sql:1: unknown directive `-- airlock:no-such-thing`"), "{}", run.stderr);
    assert!(run.stderr.contains("notes.sql: `notes.sql` is not a migration file name"), "{}", run.stderr);
    assert!(
        !std::path::Path::new(db.url.strip_prefix("sqlite:").unwrap()).exists(),
        "the database was not even created"
    );

    project.remove("2_bad.up.sql");
    project.remove("notes.sql");
    let run = project.run(&db, &["migrate"]);
    run.expect(2);
    assert!(
        run.stderr.contains("3_quote.up.sql:2:"),
        "a statement that cannot be split names its line: {}",
        run.stderr
    );
    assert!(!std::path::Path::new(db.url.strip_prefix("sqlite:").unwrap()).exists());
}

#[test]
fn passwords_never_appear_in_output() {
    let project = Project::new();
    let run = airlock(&project, &["--database-url", "postgres://app:hunter2@127.0.0.1:1/shop", "--dir", ".", "status"]);
    run.expect(1);
    assert!(run.stderr.contains("postgres://app:***@127.0.0.1:1/shop"), "{}", run.stderr);
    assert!(!run.all().contains("hunter2"));
    let run = airlock(
        &project,
        &["--database-url", "mysql://root:hunter2@127.0.0.1:1/x", "--dir", ".", "status", "--format", "json"],
    );
    run.expect(1);
    assert!(!run.all().contains("hunter2"), "{}", run.all());
    assert_eq!(run.json()["error"]["kind"], "connection");
}

#[test]
fn configuration_errors_exit_2_and_name_the_problem() {
    let project = Project::new();
    project.write_config("projet = \"typo\"\n");
    let run = airlock(&project, &["status"]);
    run.expect(2);
    assert!(run.stderr.contains("airlock.toml") && run.stderr.contains("projet"), "{}", run.stderr);

    project.write_config("[environments.prod]\nurl = \"${AIRLOCK_TEST_UNSET_VARIABLE}\"\n");
    let run = airlock(&project, &["--env", "prod", "status"]);
    run.expect(2);
    assert!(run.stderr.contains("AIRLOCK_TEST_UNSET_VARIABLE is not set"), "{}", run.stderr);

    let run = airlock(&project, &["--env", "staging", "status"]);
    run.expect(2);
    assert!(run.stderr.contains("no [environments.staging]") && run.stderr.contains("known: prod"), "{}", run.stderr);

    project.write_config("");
    let run = airlock(&project, &["status"]);
    run.expect(2);
    assert!(run.stderr.contains("no database"), "{}", run.stderr);

    let run = airlock(&project, &["--database-url", "oracle://x", "status"]);
    run.expect(2);
    let run = airlock(&project, &["--database-url", "sqlite:x.db", "migrate", "--to", "v2"]);
    run.expect(2);
    assert!(run.stderr.contains("--to: `v2` is not a version"), "{}", run.stderr);
    let run = airlock(&project, &["frobnicate"]);
    run.expect(2);
}

#[test]
fn status_of_a_missing_sqlite_file_fails_without_creating_it() {
    let project = Project::new();
    let run = airlock(&project, &["--database-url", "sqlite:missing.db", "status"]);
    run.expect(1);
    assert!(run.stderr.contains("missing.db` does not exist"), "{}", run.stderr);
    assert!(!project.root.path().join("missing.db").exists());
}

#[test]
fn new_numbers_files_as_the_directory_does() {
    let project = Project::new();
    project.write("0007_existing.up.sql", "SELECT 1;");
    let run = airlock(&project, &["new", "Add Orders Index", "--no-down"]);
    run.expect(0);
    assert!(project.dir().join("0008_add_orders_index.up.sql").exists(), "{}", run.stdout);
    let run = airlock(&project, &["new", "backfill", "--data", "--format", "json"]);
    run.expect(0);
    let up = project.dir().join("0009_backfill.up.sql");
    assert!(std::fs::read_to_string(&up).unwrap().starts_with("-- airlock:data"));
    assert!(project.dir().join("0009_backfill.down.sql").exists());
    assert_eq!(run.json()["created"].as_array().unwrap().len(), 2);
}

#[test]
fn peer_layouts_apply_end_to_end() {
    let db = Db::new(Engine::Sqlite);
    let project = Project::new();
    project.write("V1__flyway.sql", "CREATE TABLE a (id int);");
    project.write(
        "20240101000000_dbmate.sql",
        "-- migrate:up\nCREATE TABLE b (id int);\n-- migrate:down\nDROP TABLE b;\n",
    );
    project.write("2024-02-01-000000_diesel/up.sql", "CREATE TABLE c (id int);");
    project.write("2024-02-01-000000_diesel/down.sql", "DROP TABLE c;");
    project.run(&db, &["migrate"]).expect(0);
    assert!(db.table_exists("a") && db.table_exists("b") && db.table_exists("c"));
    project.run(&db, &["down", "--to", "20240101000000"]).expect(0);
    assert!(!db.table_exists("c") && db.table_exists("b"));
}

#[test]
fn empty_migration_is_applied_as_a_noop_with_a_warning() {
    let db = Db::new(Engine::Sqlite);
    let project = Project::new();
    project.write("1_placeholder.up.sql", "-- nothing yet\n");
    let run = project.run(&db, &["migrate"]);
    run.expect(0);
    assert!(run.stderr.contains("has no statements; it will be recorded as applied"), "{}", run.stderr);
    assert_eq!(db.state_of("1").as_deref(), Some("succeeded"));
}

#[test]
fn airlock_toml_is_found_from_a_subdirectory_and_an_unknown_key_is_named_at_its_line() {
    let project = Project::new();
    project.write("1_a.up.sql", "CREATE TABLE a (id int);\n");
    project.write_config("url = \"sqlite:app.db\"\n");
    let sub = project.root.path().join("src/deep");
    std::fs::create_dir_all(&sub).unwrap();
    let run = Run::of(project.bare().current_dir(&sub).arg("migrate").output().unwrap());
    run.expect(0);
    assert!(project.root.path().join("app.db").exists(), "the URL is relative to the file that was found");

    project.write_config("url = \"sqlite:app.db\"\n\nlock_timeout = \"5s\"\nlok_wait = \"1m\"\n[environments.prod]\nurl = \"sqlite:b.db\"\n");
    let run = airlock(&project, &["status"]);
    run.expect(2);
    assert!(run.stderr.contains("airlock.toml:4: unknown key `lok_wait`"), "{}", run.stderr);
    project.write_config("url = \"sqlite:app.db\"\n[environments.prod]\nurl = \"sqlite:b.db\"\n\nprotectd = true\n");
    let run = airlock(&project, &["status"]);
    assert!(
        run.stderr.contains("airlock.toml:5: unknown key `protectd` in [environments.prod]; known: url, protected"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_file_that_cannot_be_read_still_shows_the_database() {
    let db = Db::new(Engine::Sqlite);
    let project = Project::new();
    project.write("1_a.up.sql", "CREATE TABLE a (id int);\n");
    project.run(&db, &["migrate"]).expect(0);
    std::fs::write(project.dir().join("2_b.up.sql"), b"SELECT '\xff';\n").unwrap();
    let status = project.run(&db, &["--format", "json", "status"]);
    status.expect(0);
    let json = status.json();
    assert_eq!(json["current_version"], "1");
    assert_eq!(json["problems"][0]["code"], "unreadable-file", "{json}");
    assert!(
        json["problems"][0]["message"].as_str().unwrap().contains("2_b.up.sql:1: the file is not valid UTF-8"),
        "{json}"
    );
    project.run(&db, &["gate", "--require", "1"]).expect(0);
    let far = project.run(&db, &["gate", "--require", "7"]);
    far.expect(4);
    assert!(far.stdout.contains("no migration has version 7"), "{}", far.stdout);
    project.run(&db, &["migrate"]).expect(2);
}

#[test]
fn each_command_s_help_lists_only_the_formats_it_takes() {
    let project = Project::new();
    let status = airlock(&project, &["status", "--help"]);
    assert!(status.stdout.contains("json") && !status.stdout.contains("sarif"), "{}", status.stdout);
    let lint = airlock(&project, &["lint", "--help"]);
    assert!(lint.stdout.contains("sarif") && lint.stdout.contains("github"), "{}", lint.stdout);
}
