//! `airlock init` in an empty directory and over other tools' layouts and
//! histories; `completions` and `man`.

mod common;

use common::{Project, Run};

fn init(project: &Project, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = project.bare();
    command.arg("init").args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    Run::of(command.output().unwrap())
}

fn config(project: &Project) -> String {
    std::fs::read_to_string(project.root.path().join("airlock.toml")).unwrap()
}

#[test]
fn init_in_an_empty_directory_is_ready_to_migrate() {
    let project = Project::new();
    std::fs::remove_dir(project.dir()).unwrap();
    let run = init(&project, &[], &["--project", "shop"]);
    run.expect(0);
    assert!(run.stdout.contains("wrote airlock.toml"), "{}", run.stdout);
    assert!(run.stdout.contains("airlock new create_users"), "{}", run.stdout);
    let text = config(&project);
    assert!(text.contains("project = \"shop\""), "{text}");
    assert!(text.contains("dir = \"migrations\""), "{text}");
    assert!(text.contains("url = \"sqlite:app.db\""), "{text}");
    assert!(project.dir().is_dir());
    // The next steps it names work as they are.
    Run::of(project.bare().args(["new", "create_users"]).output().unwrap()).expect(0);
    let migrated = Run::of(project.bare().arg("migrate").output().unwrap());
    migrated.expect(0);
    assert!(project.root.path().join("app.db").exists());

    // Run again: refused, nothing changed.
    let again = init(&project, &[], &[]);
    again.expect(2);
    assert!(again.stderr.contains("airlock.toml already exists: nothing was written"), "{}", again.stderr);
    assert_eq!(config(&project), text);
}

#[test]
fn init_takes_a_flyway_folder_and_points_at_its_history() {
    let project = Project::new();
    let dir = project.root.path().join("src/main/resources/db/migration");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("V1__init.sql"), "CREATE TABLE a (id integer);\n").unwrap();
    std::fs::write(dir.join("V2__b.sql"), "CREATE TABLE b (id integer);\n").unwrap();
    let db = project.root.path().join("app.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE flyway_schema_history (installed_rank INT NOT NULL PRIMARY KEY, version VARCHAR(50), \
         description VARCHAR(200) NOT NULL, type VARCHAR(20) NOT NULL, script VARCHAR(1000) NOT NULL, checksum INT, \
         installed_by VARCHAR(100) NOT NULL, installed_on TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, \
         execution_time INT NOT NULL, success BOOLEAN NOT NULL);",
    )
    .unwrap();
    drop(conn);
    let url = format!("sqlite:{}", db.display());
    let run = init(&project, &[("DATABASE_URL", &url)], &["--format", "json"]);
    run.expect(0);
    let said = run.json();
    assert!(said["dir"].as_str().unwrap().ends_with("src/main/resources/db/migration"), "{said}");
    assert_eq!(said["migrations"], 2);
    assert_eq!(said["layout"], "Flyway (V1__name.sql)");
    assert_eq!(said["foreign"], serde_json::json!(["flyway"]));
    assert!(said["next"][0].as_str().unwrap().starts_with("airlock adopt --from flyway --dry-run"), "{said}");
    let text = config(&project);
    assert!(text.contains("dir = \"src/main/resources/db/migration\""), "{text}");
    // The folder is read where it is: status sees both migrations.
    let status = Run::of(project.bare().args(["--format", "json", "status"]).output().unwrap());
    status.expect(0);
    assert_eq!(status.json()["pending"].as_array().map(Vec::len), Some(2), "{}", status.stdout);
}

#[test]
fn init_takes_a_dbmate_folder_and_keeps_a_password_out_of_the_file() {
    let project = Project::new();
    std::fs::remove_dir(project.dir()).unwrap();
    let dir = project.root.path().join("db/migrations");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("20240101000000_users.sql"),
        "-- migrate:up\nCREATE TABLE users (id integer);\n\n-- migrate:down\nDROP TABLE users;\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://app:hunter2@127.0.0.1:{port}/app");
    let run = init(&project, &[("DATABASE_URL", &url)], &[]);
    run.expect(0);
    assert!(run.stdout.contains("1 found, dbmate"), "{}", run.stdout);
    assert!(run.stdout.contains("could not look in postgres://app:***@127.0.0.1"), "{}", run.stdout);
    assert!(!run.all().contains("hunter2"), "{}", run.all());
    let text = config(&project);
    assert!(text.contains("dir = \"db/migrations\""), "{text}");
    assert!(text.contains("url = \"${DATABASE_URL}\""), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_definition() {
    let project = Project::new();
    for (shell, expected) in [("bash", "_airlock()"), ("zsh", "#compdef airlock"), ("fish", "complete -c airlock")] {
        let run = Run::of(project.bare().args(["completions", shell]).output().unwrap());
        run.expect(0);
        assert!(run.stdout.contains(expected), "{shell}: {}", run.stdout);
        assert!(run.stdout.contains("migrate"), "{shell}");
    }
    let man = Run::of(project.bare().arg("man").output().unwrap());
    man.expect(0);
    assert!(man.stdout.starts_with(".ie") || man.stdout.contains(".TH airlock 1"), "{}", man.stdout);
    assert!(man.stdout.contains("serve"), "{}", man.stdout);
    let unknown = Run::of(project.bare().args(["completions", "tcsh"]).output().unwrap());
    unknown.expect(2);
    assert!(unknown.stderr.contains("invalid value 'tcsh'"), "{}", unknown.stderr);
}

/// `dir` is written as the file reads it, relative to its own folder; a
/// URL's path as airlock reads it, from where it runs.
#[test]
fn init_writes_paths_as_the_configuration_reads_them() {
    let project = Project::new();
    std::fs::create_dir_all(project.root.path().join("sub")).unwrap();
    let args = ["--config", "sub/airlock.toml", "--dir", "sub/migrations"];
    init(&project, &[("DATABASE_URL", "sqlite:sub/app.db")], &args).expect(0);
    let text = std::fs::read_to_string(project.root.path().join("sub/airlock.toml")).unwrap();
    assert!(text.contains("dir = \"migrations\""), "{text}");
    assert!(text.contains("url = \"sqlite:sub/app.db\""), "{text}");
    assert!(project.root.path().join("sub/migrations").is_dir());
    // Read back, `dir` names the same folder.
    let new = project.bare().args(["--config", "sub/airlock.toml", "new", "create_users"]).output().unwrap();
    Run::of(new).expect(0);
    assert_eq!(std::fs::read_dir(project.root.path().join("sub/migrations")).unwrap().count(), 2);
}

/// A folder with files airlock cannot take as they are: the file is still
/// written, each such file named, and the way out said.
#[test]
fn init_names_the_files_it_cannot_read_and_still_writes_the_configuration() {
    let project = Project::new();
    project.write("1_users.up.sql", "CREATE TABLE users (id int);\n");
    project.write("1_accounts.up.sql", "CREATE TABLE accounts (id int);\n");
    project.write("2_orders.up.sql", "CREATE TABLE orders (id int);\n");
    let run = init(&project, &[], &[]);
    run.expect(0);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains("1_accounts.up.sql") && said.contains("1_users.up.sql"), "{said}");
    assert!(said.contains("exclude = [\"...\"]"), "{said}");
    // Not an empty folder: no first migration to write.
    assert!(!said.contains("airlock new create_users"), "{said}");
    assert!(config(&project).contains("dir = \"migrations\""), "{}", config(&project));
}
