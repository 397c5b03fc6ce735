//! `airlock rehearse` on every engine: up, down and up again on a scratch
//! copy of the schema, with the target only read.

mod common;

use common::{Db, Engine, Project, Run};

each_engine!(
    rehearsal_names_what_each_down_script_leaves_behind,
    rehearsing_everything_from_an_empty_database,
    a_long_chain_with_every_forgotten_attribute,
    rehearse_and_drift_only_read_the_target,
);

fn project_with_downs() -> Project {
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id int PRIMARY KEY, a varchar(20));\n");
    project.write("1_t.down.sql", "DROP TABLE t;\n");
    // Clean: its down undoes it.
    project.write("2_t_a.up.sql", "CREATE INDEX t_a ON t (a);\n");
    project.write("2_t_a.down.sql", "DROP INDEX t_a ON t;\n");
    // A typo'd DROP TABLE IF EXISTS: the table stays.
    project.write("3_u.up.sql", "CREATE TABLE u (id int);\n");
    project.write("3_u.down.sql", "DROP TABLE IF EXISTS uu;\n");
    // No down script at all.
    project.write("4_v.up.sql", "CREATE TABLE v (id int);\n");
    // A down that fails.
    project.write("5_w.up.sql", "CREATE TABLE w (id int);\n");
    project.write("5_w.down.sql", "DROP TABLE nope;\n");
    project.write("6_x.up.sql", "CREATE TABLE x (id int);\n");
    project.write("6_x.down.sql", "DROP TABLE x;\n");
    project
}

fn rehearsal_names_what_each_down_script_leaves_behind(engine: Engine) {
    let db = Db::new(engine);
    let project = project_with_downs();
    if engine != Engine::MySql {
        project.write("2_t_a.down.sql", "DROP INDEX t_a;\n");
    }
    project.run(&db, &["migrate", "--to", "1"]).expect(0);

    let run = project.run(&db, &["--format", "json", "rehearse"]);
    run.expect(3);
    let json = run.json();
    assert_eq!(json["verdict"], "problems");
    let migrations = json["migrations"].as_array().unwrap();
    let outcomes: Vec<(&str, &str)> =
        migrations.iter().map(|m| (m["version"].as_str().unwrap(), m["outcome"].as_str().unwrap())).collect();
    // Rehearsal stops at the failure: what follows would run on a schema the real run would not have.
    assert_eq!(outcomes, [("2", "clean"), ("3", "residue"), ("4", "no-down"), ("5", "failed")], "{json}");
    let residue = &migrations[1]["differences"];
    assert!(
        residue.as_array().unwrap().iter().any(|d| d["change"] == "unexpected"
            && d["object"].as_str().unwrap().starts_with("table ")
            && d["object"].as_str().unwrap().ends_with("u")),
        "{json}"
    );
    let failure = migrations[3]["error"].as_str().unwrap();
    assert!(failure.starts_with("the down script failed: statement 1 of 1: "), "{json}");
    assert!(
        migrations[0]["up_ms"].is_u64() && migrations[0]["down_ms"].is_u64() && migrations[0]["reup_ms"].is_u64(),
        "{json}"
    );

    // The target was only read: still at version 1, and none of the rehearsed tables.
    assert_eq!(db.history().len(), 1);
    assert!(!db.table_exists("u") && !db.table_exists("w"));

    let human = project.run(&db, &["rehearse"]);
    human.expect(3);
    assert!(human.stdout.contains("3 u: residue"), "{}", human.stdout);
    assert!(human.stdout.contains(": left behind by the down"), "{}", human.stdout);
    assert!(human.stdout.contains("5 w: failed"), "{}", human.stdout);
}

fn rehearsing_everything_from_an_empty_database(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id int PRIMARY KEY, a varchar(20));\n");
    project.write("1_t.down.sql", "DROP TABLE t;\n");
    project.write("2_b.up.sql", "ALTER TABLE t ADD COLUMN b int DEFAULT 3;\n");
    project.write("2_b.down.sql", "ALTER TABLE t DROP COLUMN b;\n");
    let run = project.run(&db, &["--format", "json", "rehearse", "--all"]);
    run.expect(0);
    let json = run.json();
    assert_eq!(json["verdict"], "clean", "{json}");
    assert_eq!(json["migrations"].as_array().unwrap().len(), 2, "{json}");
    project.run(&db, &["rehearse", "--all"]).expect(0);
}

/// A few dozen migrations: most undo themselves; some downs forget an index,
/// a default, AUTO_INCREMENT (MySQL), a trigger, a check constraint.
fn a_long_chain_with_every_forgotten_attribute(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    let mut version = 0;
    let mut add = |up: &str, down: Option<&str>| {
        version += 1;
        project.write(&format!("{version}_m{version}.up.sql"), up);
        if let Some(down) = down {
            project.write(&format!("{version}_m{version}.down.sql"), down);
        }
        version
    };
    let mut expected: Vec<(usize, &str, String)> = Vec::new();
    let first = add("CREATE TABLE t (id int PRIMARY KEY, a varchar(20), b int);\n", Some("DROP TABLE t;\n"));
    expected.push((first, "clean", String::new()));
    for i in 0..24 {
        let v = add(&format!("CREATE TABLE c{i} (id int PRIMARY KEY);\n"), Some(&format!("DROP TABLE c{i};\n")));
        expected.push((v, "clean", String::new()));
        match i {
            3 => {
                let v = add("CREATE INDEX t_a ON t (a);\n", Some("SELECT 1;\n"));
                expected.push((v, "residue", "index ".into()));
            }
            7 if engine != Engine::Sqlite => {
                let v = add("ALTER TABLE t ALTER COLUMN b SET DEFAULT 5;\n", Some("SELECT 1;\n"));
                expected.push((v, "residue", "column ".into()));
            }
            11 if engine != Engine::Sqlite => {
                let v = add("ALTER TABLE t ADD CONSTRAINT t_b_pos CHECK (b > 0);\n", Some("SELECT 1;\n"));
                expected.push((v, "residue", "constraint ".into()));
            }
            15 => {
                let trigger = match engine {
                    Engine::Postgres => {
                        "CREATE FUNCTION t_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\nCREATE TRIGGER t_touch BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION t_touch();\n"
                    }
                    Engine::MySql => "CREATE TRIGGER t_touch BEFORE INSERT ON t FOR EACH ROW SET NEW.b = 1;\n",
                    Engine::Sqlite => {
                        "CREATE TRIGGER t_touch AFTER INSERT ON t BEGIN UPDATE t SET b = 1 WHERE id = NEW.id; END;\n"
                    }
                };
                let v = add(trigger, Some("SELECT 1;\n"));
                expected.push((v, "residue", "trigger ".into()));
            }
            19 if engine == Engine::MySql => {
                let v =
                    add("CREATE TABLE seq (id int NOT NULL AUTO_INCREMENT PRIMARY KEY);\n", Some("DROP TABLE seq;\n"));
                expected.push((v, "clean", String::new()));
                // The down's MODIFY forgets AUTO_INCREMENT: the attribute silently lost.
                let v = add(
                    "ALTER TABLE seq MODIFY id bigint NOT NULL AUTO_INCREMENT;\n",
                    Some("ALTER TABLE seq MODIFY id int NOT NULL;\n"),
                );
                expected.push((v, "residue", "column seq.id".into()));
            }
            _ => {}
        }
    }
    let run = project.run(&db, &["--format", "json", "rehearse", "--all"]);
    run.expect(3);
    let json = run.json();
    let migrations = json["migrations"].as_array().unwrap();
    assert_eq!(migrations.len(), expected.len(), "{json}");
    for ((version, outcome, object), m) in expected.iter().zip(migrations) {
        assert_eq!(m["version"], version.to_string(), "{json}");
        assert_eq!(m["outcome"], *outcome, "migration {version}: {m}");
        if !object.is_empty() {
            assert!(
                m["differences"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| d["object"].as_str().unwrap().starts_with(object.as_str())),
                "migration {version}: no `{object}` difference: {m}"
            );
        }
    }
}

/// Through a user that may only read the target (and create the scratch
/// databases beside it): rehearse and drift work, and the target is unchanged.
fn rehearse_and_drift_only_read_the_target(engine: Engine) {
    let db = Db::new(engine);
    let project = project_with_downs();
    if engine != Engine::MySql {
        project.write("2_t_a.down.sql", "DROP INDEX t_a;\n");
    }
    project.run(&db, &["migrate", "--to", "1"]).expect(0);
    let database = db.url.rsplit('/').next().unwrap().to_owned();
    let reader = format!("ro_{}", &database[database.len().saturating_sub(12)..]);
    let url = match engine {
        Engine::Postgres => {
            db.exec(&format!(
                "CREATE ROLE {reader} LOGIN CREATEDB; GRANT USAGE ON SCHEMA public TO {reader}; \
                 GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}"
            ));
            db.url.replacen("postgres@", &format!("{reader}@"), 1)
        }
        Engine::MySql => {
            db.exec(&format!("CREATE USER '{reader}'@'%'"));
            db.exec(&format!("GRANT SELECT ON `{database}`.* TO '{reader}'@'%'"));
            db.exec(&format!("GRANT ALL ON `airlock\\_scratch\\_%`.* TO '{reader}'@'%'"));
            db.url.replacen("root@", &format!("{reader}@"), 1)
        }
        Engine::Sqlite => {
            let path = db.url.strip_prefix("sqlite:").unwrap();
            let mut permissions = std::fs::metadata(path).unwrap().permissions();
            permissions.set_readonly(true);
            std::fs::set_permissions(path, permissions).unwrap();
            db.url.clone()
        }
    };
    let before = db.history();
    let run = |args: &[&str]| {
        let mut cmd = project.bare();
        cmd.arg("--database-url").arg(&url).arg("--dir").arg(project.dir()).args(args);
        Run::of(cmd.output().unwrap())
    };
    let rehearsal = run(&["--format", "json", "rehearse"]);
    rehearsal.expect(3);
    assert_eq!(rehearsal.json()["migrations"].as_array().unwrap().len(), 4, "{}", rehearsal.stdout);
    let drift = run(&["--format", "json", "drift"]);
    drift.expect(0);
    assert_eq!(db.history(), before);
    assert!(!db.table_exists("u") && !db.table_exists("w"));
    // Writing is refused to this user: migrate fails and changes nothing
    // (a read-only file does not stop root, who runs these tests).
    if engine != Engine::Sqlite {
        assert_ne!(run(&["migrate"]).code, 0);
        assert_eq!(db.history(), before);
    }
}
