//! `airlock lint` through the binary: exit codes, the four output formats,
//! configuration of severities, and the MODIFY that dropped AUTO_INCREMENT, without a database.

mod common;

use common::{Project, Run};

fn lint(project: &Project, args: &[&str]) -> Run {
    Run::of(project.bare().args(["--dir"]).arg(project.dir()).arg("lint").args(args).output().unwrap())
}

fn shop() -> Project {
    let project = Project::new();
    project.write(
        "1_orders.up.sql",
        "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint);\nCREATE INDEX orders_user ON orders (user_id);\n",
    );
    project.write("1_orders.down.sql", "DROP TABLE orders;\n");
    project.write("2_index.up.sql", "-- index the lookups\nCREATE INDEX orders_user2 ON orders (user_id);\n");
    project.write("2_index.down.sql", "DROP INDEX orders_user2;\n");
    project
}

#[test]
fn errors_exit_3_with_rustc_style_diagnostics() {
    let project = shop();
    let run = lint(&project, &["--dialect", "postgres"]);
    run.expect(3);
    assert!(
        run.stdout.contains("error[require-concurrent-index]: CREATE INDEX on `orders` takes a SHARE lock"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("2_index.up.sql:2:1"), "{}", run.stdout);
    assert!(run.stdout.contains("2 | CREATE INDEX orders_user2 ON orders (user_id);"), "{}", run.stdout);
    assert!(run.stdout.contains("= help: use CREATE INDEX CONCURRENTLY"), "{}", run.stdout);
    // The index on the table created in the same migration is fine.
    assert!(!run.stdout.contains("1_orders.up.sql:2"), "{}", run.stdout);
    assert!(run.stderr.contains("lint: 1 error"), "{}", run.stderr);
}

#[test]
fn json_sarif_and_github_formats() {
    let project = shop();
    let json = lint(&project, &["--dialect", "postgres", "--format", "json"]);
    json.expect(3);
    let value = json.json();
    assert_eq!(value["summary"]["errors"], 1);
    let finding = &value["findings"].as_array().unwrap().iter().find(|f| f["severity"] == "error").unwrap();
    assert_eq!(finding["rule"], "require-concurrent-index");
    assert_eq!(finding["line"], 2);
    assert!(finding["file"].as_str().unwrap().ends_with("2_index.up.sql"));
    for key in ["message", "help"] {
        assert!(finding[key].is_string(), "{finding}");
    }

    let sarif = lint(&project, &["--dialect", "postgres", "--format", "sarif"]);
    sarif.expect(3);
    let value = sarif.json();
    assert_eq!(value["version"], "2.1.0");
    let result = &value["runs"][0]["results"].as_array().unwrap().iter().find(|r| r["level"] == "error").unwrap();
    assert_eq!(result["ruleId"], "require-concurrent-index");
    let region = &result["locations"][0]["physicalLocation"]["region"];
    assert_eq!((region["startLine"].clone(), region["startColumn"].clone()), (2.into(), 1.into()), "{region}");
    assert!(region["endColumn"].as_u64().unwrap() > 1, "a region with columns: {region}");

    let github = lint(&project, &["--dialect", "postgres", "--format", "github"]);
    github.expect(3);
    assert!(
        github
            .stdout
            .lines()
            .any(|l| l.starts_with("::error file=")
                && l.contains(",line=2,col=1,title=airlock require-concurrent-index::")),
        "{}",
        github.stdout
    );
}

#[test]
fn severities_come_from_airlock_toml_and_bad_ones_are_named() {
    let project = shop();
    project.write_config("[lint.rules]\nrequire-concurrent-index = \"warning\"\nmissing-down = \"off\"\n");
    let run = lint(&project, &["--dialect", "postgres", "--format", "json"]);
    run.expect(0);
    assert_eq!(run.json()["summary"]["warnings"], 1);

    project.write_config("[lint.rules]\nrequire-concurent-index = \"off\"\n");
    let bad = lint(&project, &["--dialect", "postgres"]);
    bad.expect(2);
    assert!(bad.stderr.contains("there is no rule `require-concurent-index`"), "{}", bad.stderr);
    project.write_config("[lint.rules]\ndrop-table = \"fatal\"\n");
    lint(&project, &["--dialect", "postgres"]).expect(2);
}

#[test]
fn the_dialect_comes_from_the_url_or_must_be_given() {
    let project = shop();
    let none = lint(&project, &[]);
    none.expect(2);
    assert!(none.stderr.contains("--dialect postgres|mysql|sqlite"), "{}", none.stderr);
    // From the URL's scheme, without connecting.
    lint(&project, &["--database-url", "postgres://nobody@127.0.0.1:1/none", "--offline"]).expect(3);
    // With a URL lint reads the live schema, and says how to do without.
    let down = lint(&project, &["--database-url", "postgres://nobody@127.0.0.1:1/none"]);
    down.expect(1);
    assert!(down.stderr.contains("--offline"), "{}", down.stderr);
}

#[test]
fn paths_limit_the_report() {
    let project = shop();
    let only_first = Run::of(
        project
            .bare()
            .args(["--dir"])
            .arg(project.dir())
            .args(["lint", "--dialect", "postgres"])
            .arg(project.dir().join("1_orders.up.sql"))
            .output()
            .unwrap(),
    );
    only_first.expect(0);
}

#[test]
fn a_modify_that_drops_auto_increment_is_flagged_without_a_database() {
    let project = Project::new();
    project.write("1_carts.up.sql", "ALTER TABLE carts MODIFY cart_id BIGINT NOT NULL;\n");
    project.write("1_carts.down.sql", "SELECT 1;\n");
    let run = lint(&project, &["--dialect", "mysql"]);
    run.expect(0);
    assert!(run.stdout.contains("warning[modify-drops-attributes]"), "{}", run.stdout);
    assert!(run.stdout.contains("AUTO_INCREMENT"), "{}", run.stdout);
}

#[test]
fn sarif_is_only_for_lint() {
    let project = shop();
    let run = Run::of(
        project.bare().args(["--database-url", "sqlite:x.db", "status", "--format", "sarif"]).output().unwrap(),
    );
    run.expect(2);
}

#[test]
fn a_baseline_holds_old_files_and_not_new_or_edited_ones() {
    let project = shop();
    let baseline = project.root.path().join("lint-baseline.json");
    let write = lint(&project, &["--dialect", "postgres", "--write-baseline"]);
    write.expect(2); // the flag needs a file
    let write = Run::of(
        project
            .bare()
            .args(["--dir"])
            .arg(project.dir())
            .args(["lint", "--dialect", "postgres", "--write-baseline"])
            .arg(&baseline)
            .output()
            .unwrap(),
    );
    write.expect(0);
    let with = |args: &[&str]| {
        Run::of(
            project
                .bare()
                .args(["--dir"])
                .arg(project.dir())
                .args(["lint", "--dialect", "postgres", "--format", "json", "--baseline"])
                .arg(&baseline)
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let held = with(&[]);
    held.expect(0);
    assert_eq!(held.json()["summary"]["errors"], 0);
    assert!(held.json()["summary"]["baselined"].as_u64().unwrap() >= 1);

    // A new migration is held to the rules.
    project.write("3_more.up.sql", "CREATE INDEX orders_user3 ON orders (user_id);\n");
    with(&[]).expect(3);
    project.remove("3_more.up.sql");
    // So is an edited one.
    project.write("2_index.up.sql", "-- index the lookups, edited\nCREATE INDEX orders_user2 ON orders (user_id);\n");
    with(&[]).expect(3);

    // From airlock.toml, relative to it.
    project.write("2_index.up.sql", "-- index the lookups\nCREATE INDEX orders_user2 ON orders (user_id);\n");
    project.write_config("[lint]\nbaseline = \"lint-baseline.json\"\n");
    lint(&project, &["--dialect", "postgres"]).expect(0);
    std::fs::write(&baseline, "not json").unwrap();
    let bad = lint(&project, &["--dialect", "postgres"]);
    bad.expect(2);
    assert!(bad.stderr.contains("lint-baseline.json"), "{}", bad.stderr);
}

/// `airlock lint FILE` anywhere: no migrations directory needed.
#[test]
fn a_file_outside_any_migrations_directory_is_linted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.sql");
    std::fs::write(&file, "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id);\n")
        .unwrap();
    let run = Run::of(
        common::Project::new()
            .bare()
            .current_dir(dir.path())
            .args(["lint", "--dialect", "postgres", "x.sql"])
            .output()
            .unwrap(),
    );
    run.expect(3);
    assert!(run.stdout.contains("error[adding-foreign-key]") && run.stdout.contains("x.sql:1:"), "{}", run.all());

    // Beside a migrations directory, a file elsewhere is linted too, not skipped.
    let project = shop();
    let other = project.root.path().join("other.sql");
    std::fs::write(&other, "SELECT 1;\nCREATE INDEX i ON users (email);\n").unwrap();
    let run = lint(&project, &["--dialect", "postgres", "--format", "json", other.to_str().unwrap()]);
    run.expect(3);
    let json = run.json();
    let files: Vec<&str> = json["findings"].as_array().unwrap().iter().map(|f| f["file"].as_str().unwrap()).collect();
    assert!(files.iter().all(|f| f.ends_with("other.sql")), "only the named file is reported: {files:?}");
    assert!(
        json["findings"].as_array().unwrap().iter().any(|f| f["rule"] == "require-concurrent-index" && f["line"] == 2),
        "{json}"
    );
}

#[test]
fn standard_input_is_linted_as_a_file() {
    let project = Project::new();
    let mut child = project
        .bare()
        .args(["lint", "--dialect", "postgres", "--format", "json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"CREATE INDEX i ON users (email);\n").unwrap();
    drop(child.stdin.take());
    let run = Run::of(child.wait_with_output().unwrap());
    run.expect(3);
    let json = run.json();
    assert_eq!(json["findings"][0]["file"], "<stdin>", "{json}");
    assert_eq!(json["findings"][0]["rule"], "require-concurrent-index");
}

#[test]
fn a_directory_of_plain_sql_files_is_linted_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("queries")).unwrap();
    std::fs::write(dir.path().join("queries/a.sql"), "CREATE TABLE t (id int);\n").unwrap();
    std::fs::write(dir.path().join("queries/b.sql"), "CREATE INDEX i ON t (id);\n").unwrap();
    std::fs::write(dir.path().join("queries/notes.txt"), "not sql\n").unwrap();
    let run = Run::of(
        Project::new()
            .bare()
            .current_dir(dir.path())
            .args(["lint", "--dialect", "postgres", "--format", "json", "queries"])
            .output()
            .unwrap(),
    );
    // b.sql on its own: the table is not created by it, so it may hold rows.
    run.expect(3);
    let json = run.json();
    assert_eq!(json["findings"].as_array().unwrap().len(), 1, "{json}");
    assert!(json["findings"][0]["file"].as_str().unwrap().ends_with("b.sql"));

    // A directory laid out as migrations is read as one, in order.
    let project = shop();
    let run = Run::of(
        Project::new()
            .bare()
            .args(["lint", "--dialect", "postgres", "--format", "json"])
            .arg(project.dir())
            .output()
            .unwrap(),
    );
    run.expect(3);
    let json = run.json();
    let rules: Vec<&str> = json["findings"].as_array().unwrap().iter().map(|f| f["rule"].as_str().unwrap()).collect();
    assert_eq!(rules.iter().filter(|r| **r == "require-concurrent-index").count(), 1, "only the index of 2: {rules:?}");
}

#[test]
fn a_path_that_names_no_sql_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello\n").unwrap();
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    for (path, says) in [("missing.sql", "missing.sql"), ("notes.txt", "not an SQL file"), ("empty", "no `.sql` file")]
    {
        let run = Run::of(
            Project::new()
                .bare()
                .current_dir(dir.path())
                .args(["lint", "--dialect", "postgres", path])
                .output()
                .unwrap(),
        );
        run.expect(2);
        assert!(run.stderr.contains(says), "{path}: {}", run.stderr);
    }
}

#[test]
fn a_postgres_syntax_error_is_an_error_with_its_line_and_column_and_sarif_carries_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.sql"), "-- a header\nSELECT 1;\nCREATE TABLE t (\n  a int,,\n  b int\n);\n")
        .unwrap();
    let human = Run::of(
        Project::new()
            .bare()
            .current_dir(dir.path())
            .args(["lint", "--dialect", "postgres", "x.sql"])
            .output()
            .unwrap(),
    );
    human.expect(3);
    assert!(
        human.stdout.contains("error[syntax-error]") && human.stdout.contains("line 4, column 9"),
        "{}",
        human.all()
    );
    let sarif = Run::of(
        Project::new()
            .bare()
            .current_dir(dir.path())
            .args(["lint", "--dialect", "postgres", "--format", "sarif", "x.sql"])
            .output()
            .unwrap(),
    );
    sarif.expect(3);
    let json = sarif.json();
    let result =
        json["runs"][0]["results"].as_array().unwrap().iter().find(|r| r["ruleId"] == "syntax-error").unwrap().clone();
    let region = result["locations"][0]["physicalLocation"]["region"].clone();
    assert_eq!((region["startLine"].clone(), region["startColumn"].clone()), (4.into(), 9.into()), "{region}");
    // MySQL's parser is general: a statement it cannot read is a warning, an error with --strict.
    std::fs::write(dir.path().join("m.sql"), "CREATE TABLE t (a int) FROBNICATE;\n").unwrap();
    let lax = Run::of(
        Project::new().bare().current_dir(dir.path()).args(["lint", "--dialect", "mysql", "m.sql"]).output().unwrap(),
    );
    lax.expect(0);
    assert!(lax.stdout.contains("warning[unparsed-statement]"), "{}", lax.all());
    let strict = Run::of(
        Project::new()
            .bare()
            .current_dir(dir.path())
            .args(["lint", "--dialect", "mysql", "--strict", "m.sql"])
            .output()
            .unwrap(),
    );
    strict.expect(3);
}
