//! `airlock lint` through the binary: exit codes, the four output formats,
//! configuration of severities, and the seed-002 MODIFY without a database.

mod common;

use common::{Project, Run};

fn lint(project: &Project, args: &[&str]) -> Run {
    Run::of(project.bare().args(["--dir"]).arg(project.dir()).arg("lint").args(args).output().unwrap())
}

fn shop() -> Project {
    let project = Project::new();
    project.write("1_orders.up.sql", "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint);\nCREATE INDEX orders_user ON orders (user_id);\n");
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
    assert!(run.stdout.contains("error[require-concurrent-index]: CREATE INDEX on `orders` takes a SHARE lock"), "{}", run.stdout);
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
    assert_eq!(result["locations"][0]["physicalLocation"]["region"]["startLine"], 2);

    let github = lint(&project, &["--dialect", "postgres", "--format", "github"]);
    github.expect(3);
    assert!(github.stdout.lines().any(|l| l.starts_with("::error file=") && l.contains(",line=2,title=airlock require-concurrent-index::")), "{}", github.stdout);
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
        project.bare().args(["--dir"]).arg(project.dir()).args(["lint", "--dialect", "postgres"]).arg(project.dir().join("1_orders.up.sql")).output().unwrap(),
    );
    only_first.expect(0);
}

#[test]
fn seed_002_modify_is_flagged_without_a_database() {
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
    let run = Run::of(project.bare().args(["--database-url", "sqlite:x.db", "status", "--format", "sarif"]).output().unwrap());
    run.expect(2);
}

#[test]
fn a_baseline_holds_old_files_and_not_new_or_edited_ones() {
    let project = shop();
    let baseline = project.root.path().join("lint-baseline.json");
    let write = lint(&project, &["--dialect", "postgres", "--write-baseline"]);
    write.expect(2); // the flag needs a file
    let write = Run::of(
        project.bare().args(["--dir"]).arg(project.dir()).args(["lint", "--dialect", "postgres", "--write-baseline"]).arg(&baseline).output().unwrap(),
    );
    write.expect(0);
    let with = |args: &[&str]| {
        Run::of(project.bare().args(["--dir"]).arg(project.dir()).args(["lint", "--dialect", "postgres", "--format", "json", "--baseline"]).arg(&baseline).args(args).output().unwrap())
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
