//! The audit trail on every engine: a run is one invocation (a `down` of one
//! migration after a `migrate` of three is a run of one), and `airlock
//! history` lists runs, allows, repairs and failures with who, where, when
//! and why, newest first.

mod common;

use common::{Db, Engine, Project};

fn a_run_is_one_invocation_and_history_tells_who_did_what_and_why(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    project.write("1_a.up.sql", "CREATE TABLE a (id integer PRIMARY KEY);\n").write("1_a.down.sql", "DROP TABLE a;\n");
    project.write("2_b.up.sql", "-- airlock:allow drop-table nothing reads it since v12\nCREATE TABLE b (id integer PRIMARY KEY);\nDROP TABLE b;\n");
    project.write("2_b.down.sql", "SELECT 1;\n");
    project.write("3_c.up.sql", "CREATE TABLE c (id integer PRIMARY KEY);\n").write("3_c.down.sql", "DROP TABLE c;\n");
    project.run(&db, &["migrate"]).expect(0);
    project.run(&db, &["down", "--to", "2"]).expect(0);

    let status = project.run(&db, &["--format", "json", "status"]);
    let last = status.json()["last_run"].clone();
    assert_eq!(
        (last["migrations"].as_u64(), last["outcome"].as_str()),
        (Some(1), Some("succeeded")),
        "the down alone: {last}"
    );
    let human = project.run(&db, &["status"]);
    assert!(human.stdout.contains("1 migration by"), "{}", human.stdout);

    project.write("1_a.up.sql", "CREATE TABLE a (id integer PRIMARY KEY); -- comment\n");
    project.run(&db, &["repair", "--accept", "1", "--reason", "comment only"]).expect(0);
    project.write("4_bad.up.sql", "CREATE TABLE a (id integer PRIMARY KEY);\n");
    project.run(&db, &["migrate"]).expect(1);

    let history = project.run(&db, &["--format", "json", "history"]);
    history.expect(0);
    let json = history.json();
    let entries = json["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["migrate", "repair", "down", "migrate", "allow"], "{json}");
    // The failed run: what it tried, how it ended, the error.
    assert_eq!(entries[0]["outcome"], "failed");
    assert!(entries[0]["reason"].as_str().unwrap().contains("migration 4"), "{}", entries[0]);
    assert_eq!(entries[1]["reason"], "comment only");
    assert_eq!(
        (entries[2]["versions"].clone(), entries[2]["outcome"].clone()),
        (serde_json::json!(["3"]), "succeeded".into())
    );
    assert_eq!(entries[3]["versions"], serde_json::json!(["1", "2", "3"]));
    assert!(
        entries[4]["reason"].as_str().unwrap().contains("drop-table: nothing reads it since v12"),
        "{}",
        entries[4]
    );
    for e in entries {
        for key in ["at", "os_user", "host"] {
            assert!(e[key].as_str().is_some_and(|v| !v.is_empty()), "{key} in {e}");
        }
    }
    let limited = project.run(&db, &["--format", "json", "history", "--limit", "2"]);
    assert_eq!(limited.json()["entries"].as_array().unwrap().len(), 2);
    let human = project.run(&db, &["history"]);
    assert!(
        human.stdout.contains("repair") && human.stdout.contains("comment only") && human.stdout.contains("failed"),
        "{}",
        human.stdout
    );
}

each_engine!(a_run_is_one_invocation_and_history_tells_who_did_what_and_why);
