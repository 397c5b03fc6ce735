//! `airlock rehearse` on every engine: up, down and up again on a scratch
//! copy of the schema, with the target only read.

mod common;

use common::{Db, Engine, Project};

each_engine!(rehearsal_names_what_each_down_script_leaves_behind, rehearsing_everything_from_an_empty_database);

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
