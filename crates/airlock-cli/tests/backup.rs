//! Backups before migrating: what `plan` says `migrate` would save, the
//! settings that choose it, and the flags that override them.

mod common;

use common::{Db, Engine, Project, Run};

each_engine!(plan_names_the_tables_a_backup_would_save, a_statement_that_can_reach_any_table_saves_the_whole_database,);

/// A protected environment over `db`, backing up what its migrations change.
fn protected(project: &Project, db: &Db, extra: &str) {
    project.write_config(&format!(
        "[environments.prod]\nurl = \"{}\"\nprotected = true\nbackup_dir = \"saved\"\n{extra}",
        db.url.replace('\\', "\\\\")
    ));
}

/// `airlock --env prod ARGS`.
fn in_prod(project: &Project, args: &[&str]) -> Run {
    Run::of(project.bare().args(["--env", "prod", "--dir"]).arg(project.dir()).args(args).output().unwrap())
}

fn plan_json(project: &Project, code: i32) -> serde_json::Value {
    let run = in_prod(project, &["--format", "json", "plan"]);
    run.expect(code);
    run.json()
}

fn plan_names_the_tables_a_backup_would_save(engine: Engine) {
    let db = Db::new(engine);
    db.exec("CREATE TABLE users (id int PRIMARY KEY, name varchar(20))");
    db.exec("CREATE TABLE orders (id int PRIMARY KEY, user_id int, FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE)");
    db.exec("CREATE TABLE carts (id int PRIMARY KEY, total int)");
    db.exec("CREATE TABLE untouched (id int PRIMARY KEY)");
    let project = Project::new();
    protected(&project, &db, "");
    // Made by a pending migration: nothing of it to save.
    project.write("1_made.up.sql", "CREATE TABLE made (id int);\nINSERT INTO made VALUES (1);\n");
    project.write("2_carts.up.sql", "ALTER TABLE carts DROP COLUMN total;\n");
    project.write("3_users.up.sql", "-- airlock:data\nDELETE FROM users WHERE name = 'test';\n");
    let json = plan_json(&project, 0);
    let backup = &json["backup"];
    assert_eq!(backup["mode"], "tables", "{json}");
    let tables: Vec<(&str, &str)> = backup["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["table"].as_str().unwrap(), t["changed_by"].as_str().unwrap()))
        .collect();
    // The delete reaches orders through its foreign key's ON DELETE CASCADE.
    assert_eq!(tables, [("carts", "2 (carts)"), ("users", "3 (users)"), ("orders", "3 (users)")], "{json}");
    assert!(backup["everything"].is_null(), "{json}");
    assert!(backup["store"].as_str().unwrap().ends_with("saved"), "{json}");

    // `backup = "off"`: no backup, nothing said of one.
    protected(&project, &db, "backup = \"off\"\n");
    assert!(plan_json(&project, 0)["backup"].is_null());
    // Elsewhere the default is off.
    let run = project.run(&db, &["--format", "json", "plan"]);
    run.expect(0);
    assert!(run.json()["backup"].is_null(), "{}", run.stdout);
}

fn a_statement_that_can_reach_any_table_saves_the_whole_database(engine: Engine) {
    let db = Db::new(engine);
    db.exec("CREATE TABLE carts (id int PRIMARY KEY, total int)");
    db.exec("CREATE TABLE audited (id int PRIMARY KEY)");
    db.exec("CREATE TABLE audit_log (id int)");
    db.exec(match engine {
        Engine::Postgres => {
            "CREATE FUNCTION log_it() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO audit_log VALUES (NEW.id); RETURN NEW; END$$;\n\
             CREATE TRIGGER audited_log AFTER UPDATE ON audited FOR EACH ROW EXECUTE FUNCTION log_it()"
        }
        Engine::MySql => "CREATE TRIGGER audited_log AFTER UPDATE ON audited FOR EACH ROW INSERT INTO audit_log VALUES (NEW.id)",
        Engine::Sqlite => {
            "CREATE TRIGGER audited_log AFTER UPDATE ON audited BEGIN INSERT INTO audit_log VALUES (NEW.id); END"
        }
    });
    let project = Project::new();
    protected(&project, &db, "");
    project.write("1_carts.up.sql", "CREATE INDEX carts_total ON carts (total);\n");
    project.write("2_audited.up.sql", "-- airlock:data\nUPDATE audited SET id = id WHERE id = 1;\n");
    let json = plan_json(&project, 0);
    let backup = &json["backup"];
    assert_eq!(backup["mode"], "database", "{json}");
    assert_eq!(backup["everything"]["migration"], "2 (audited)", "{json}");
    assert_eq!(backup["everything"]["line"], 2, "{json}");
    assert_eq!(
        backup["everything"]["why"], "`audited` has triggers (audited_log), which may write any table",
        "{json}"
    );
    // `database` mode never needed a reason.
    protected(&project, &db, "backup = \"database\"\n");
    let json = plan_json(&project, 0);
    assert_eq!(json["backup"]["mode"], "database", "{json}");
    assert!(json["backup"]["everything"].is_null(), "{json}");
}

#[test]
fn backup_settings_that_cannot_work_are_refused_naming_the_key() {
    let db = Db::new(Engine::Sqlite);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id int);\n");
    for (extra, said) in [
        ("backup = \"sometimes\"\n", "`backup = \"sometimes\"`: use \"tables\", \"database\" or \"off\""),
        ("backup_command = \"cat > x\"\n", "`backup_dir` and `backup_command` are both set"),
        ("backup_keep = 0\n", "`backup_keep = 0` would delete the backup just taken"),
        ("backup_budget = \"lots\"\n", "`backup_budget`: `lots`:"),
        ("backup_max_age = \"0\"\n", "`backup_max_age = \"0\"`: must be more than 0"),
    ] {
        protected(&project, &db, extra);
        let run = in_prod(&project, &["plan"]);
        run.expect(2);
        assert!(run.stderr.contains(said), "{extra}: {}", run.stderr);
    }
}

#[test]
fn no_backup_in_a_protected_environment_needs_a_reason() {
    let db = Db::new(Engine::Sqlite);
    db.exec("CREATE TABLE carts (id int PRIMARY KEY, total int)");
    let project = Project::new();
    protected(&project, &db, "");
    project.write("1_carts.up.sql", "CREATE INDEX carts_total ON carts (total);\n");
    let run = in_prod(&project, &["migrate", "--no-backup"]);
    run.expect(3);
    assert!(
        run.stderr.contains("`--no-backup` is refused: environment `prod` is protected and backs up the tables its migrations change before migrating; say why with `--reason TEXT`"),
        "{}",
        run.stderr
    );
    // Nothing was touched: not even airlock's tables.
    assert_eq!(db.count("SELECT count(*) FROM sqlite_master WHERE name LIKE 'airlock%'"), 0);
    // --reason needs --no-backup; --backup and --no-backup exclude each other.
    in_prod(&project, &["migrate", "--reason", "x"]).expect(2);
    in_prod(&project, &["migrate", "--backup", "--no-backup"]).expect(2);
}
