//! `airlock rehearse` on every engine: up, down and up again on a scratch
//! copy of the schema, with the target only read.

mod common;

use common::{Db, Engine, Project, Run};

each_engine!(
    rehearsal_names_what_each_down_script_leaves_behind,
    rehearsing_everything_from_an_empty_database,
    a_long_chain_with_every_forgotten_attribute,
    rehearse_and_drift_only_read_the_target,
    a_lent_scratch_database_is_given_back_empty,
    a_scratch_database_that_is_not_empty_or_is_the_target_is_refused,
    without_the_right_to_create_databases_rehearsal_says_so_and_a_lent_one_works,
    rehearsal_with_the_targets_rows_copied_without_triggers_or_foreign_key_checks,
    a_rehearsal_with_rows_times_heavy_statements_and_plan_scales_them_by_the_live_rows,
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
    project.write("5_w.down.sql", "CREATE TABLE w_log (id int);\nDROP TABLE nope;\nDROP TABLE w;\n");
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
    // The failed statement named, even where the whole script went to the server at once.
    assert!(failure.starts_with("the down script failed: statement 2 of 3: "), "{json}");
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
    if engine == Engine::Postgres {
        // Loading rows with triggers silent takes a right this role lacks: said, with the grant to ask for.
        let copy = run(&["rehearse", "--data", "sample"]);
        copy.expect(1);
        assert!(copy.stderr.contains("GRANT SET ON PARAMETER session_replication_role"), "{}", copy.stderr);
    }
    assert_eq!(db.history(), before);
    assert!(!db.table_exists("u") && !db.table_exists("w"));
    // Writing is refused to this user: migrate fails and changes nothing
    // (a read-only file does not stop root, who runs these tests).
    if engine != Engine::Sqlite {
        assert_ne!(run(&["migrate"]).code, 0);
        assert_eq!(db.history(), before);
    }
}

/// Objects of every kind the engine has, so that emptying a lent database is
/// shown to take them all.
fn project_with_every_kind(engine: Engine) -> Project {
    let project = Project::new();
    match engine {
        Engine::Postgres => {
            project.write(
                "1_kinds.up.sql",
                "CREATE SCHEMA billing;\n\
                 CREATE TYPE mood AS ENUM ('calm', 'cross');\n\
                 CREATE DOMAIN positive AS int CHECK (VALUE > 0);\n\
                 CREATE TYPE pair AS (a int, b int);\n\
                 CREATE SEQUENCE counter;\n\
                 CREATE EXTENSION IF NOT EXISTS pgcrypto;\n\
                 CREATE TABLE billing.invoice (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, m mood, p positive);\n\
                 CREATE TABLE item (id serial PRIMARY KEY, invoice int REFERENCES billing.invoice);\n\
                 CREATE TABLE part (id int, at date) PARTITION BY RANGE (at);\n\
                 CREATE TABLE part_2026 PARTITION OF part FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');\n\
                 CREATE VIEW item_view AS SELECT * FROM item;\n\
                 CREATE MATERIALIZED VIEW item_ids AS SELECT id FROM item;\n\
                 CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;\n\
                 CREATE TRIGGER item_touch BEFORE INSERT ON item FOR EACH ROW EXECUTE FUNCTION touch();\n\
                 CREATE PROCEDURE noop() LANGUAGE sql AS $$SELECT 1$$;\n",
            );
        }
        Engine::MySql => {
            project.write(
                "1_kinds.up.sql",
                "CREATE TABLE invoice (id int AUTO_INCREMENT PRIMARY KEY);\n\
                 CREATE TABLE item (id int PRIMARY KEY, invoice int, FOREIGN KEY (invoice) REFERENCES invoice (id));\n\
                 CREATE VIEW item_view AS SELECT * FROM item;\n\
                 CREATE TRIGGER item_touch BEFORE INSERT ON item FOR EACH ROW SET NEW.id = NEW.id;\n\
                 CREATE PROCEDURE noop() SELECT 1;\n\
                 CREATE FUNCTION one() RETURNS int DETERMINISTIC RETURN 1;\n\
                 CREATE SEQUENCE counter;\n",
            );
        }
        Engine::Sqlite => {
            project.write(
                "1_kinds.up.sql",
                "CREATE TABLE invoice (id INTEGER PRIMARY KEY AUTOINCREMENT);\n\
                 CREATE TABLE item (id int PRIMARY KEY, invoice int REFERENCES invoice (id));\n\
                 CREATE INDEX item_invoice ON item (invoice);\n\
                 CREATE VIEW item_view AS SELECT * FROM item;\n\
                 CREATE TRIGGER item_touch AFTER INSERT ON item BEGIN SELECT 1; END;\n",
            );
        }
    }
    let invoice = if engine == Engine::Postgres { "billing.invoice" } else { "invoice" };
    project.write("2_rows.up.sql", &format!("-- airlock:data\nINSERT INTO {invoice} (id) VALUES (1);\n"));
    project
}

fn a_lent_scratch_database_is_given_back_empty(engine: Engine) {
    let db = Db::new(engine);
    let lent = Db::new(engine);
    if engine == Engine::Sqlite {
        // A lent SQLite file exists before it is lent.
        lent.exec("PRAGMA user_version = 0");
    }
    let project = project_with_every_kind(engine);
    project.write_config(&format!("rehearsal_url = \"{}\"\n", lent.url));
    let before = lent_objects(&lent);

    // Twice: the second run finds it empty again, or it is refused (exit 2).
    for _ in 0..2 {
        let run = project.run(&db, &["--format", "json", "rehearse", "--all"]);
        run.expect(0);
        assert_eq!(run.json()["migrations"].as_array().unwrap().len(), 2, "{}", run.stdout);
    }
    assert_eq!(lent_objects(&lent), before, "the lent database holds what it held before");
    assert!(!lent.table_exists("item") && !lent.table_exists("invoice"));
    assert!(!db.table_exists("item"), "the target was not touched");

    // drift's replay uses it too, and gives it back as well.
    project.run(&db, &["migrate"]).expect(0);
    project.run(&db, &["drift"]).expect(0);
    assert_eq!(lent_objects(&lent), before);
}

/// Every object name in the lent database, as its engine lists them.
fn lent_objects(db: &Db) -> Vec<Vec<Option<String>>> {
    let sql = match db.engine {
        Engine::Postgres => {
            "SELECT c.relkind::text, n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
             UNION ALL SELECT 'schema', nspname::text FROM pg_namespace UNION ALL SELECT 'extension', extname::text FROM pg_extension \
             UNION ALL SELECT 'type', typname::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public' \
             UNION ALL SELECT 'routine', proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' \
             ORDER BY 1, 2"
        }
        Engine::MySql => {
            "SELECT TABLE_TYPE, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
             UNION ALL SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() \
             UNION ALL SELECT 'TRIGGER', TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() \
             ORDER BY 1, 2"
        }
        // sqlite_sequence, SQLite's AUTOINCREMENT counters, cannot be dropped once made (it is emptied).
        Engine::Sqlite => "SELECT type, name FROM sqlite_schema WHERE name <> 'sqlite_sequence' ORDER BY 1, 2",
    };
    db.rows(sql)
}

fn a_scratch_database_that_is_not_empty_or_is_the_target_is_refused(engine: Engine) {
    let db = Db::new(engine);
    let lent = Db::new(engine);
    lent.exec("CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (7)");
    let project = project_with_downs();
    project.run(&db, &["migrate", "--to", "1"]).expect(0);
    let history = db.history();

    let run = project.run(&db, &["rehearse", "--scratch-url", &lent.url]);
    run.expect(2);
    assert!(run.stderr.contains("is not empty: it holds table"), "{}", run.stderr);
    assert!(run.stderr.contains("keep_me"), "{}", run.stderr);
    assert_eq!(lent.count("SELECT count(*) FROM keep_me"), 1, "the lent database is left as it was");
    let json = project.run(&db, &["--format", "json", "drift", "--scratch-url", &lent.url]);
    json.expect(2);
    assert_eq!(json.json()["error"]["kind"], "scratch-database", "{}", json.stdout);
    assert_eq!(lent.count("SELECT count(*) FROM keep_me"), 1);

    // The target itself, as written and spelled another way (where the
    // history it holds gives it away).
    project.run(&db, &["rehearse", "--scratch-url", &db.url]).expect(2).stderr.contains("is the target itself");
    let respelled = match engine {
        Engine::Sqlite => db.url.replacen("sqlite:", "sqlite://", 1),
        Engine::Postgres => format!("{}?application_name=other", db.url),
        Engine::MySql => format!("{}?prefer_socket=false", db.url),
    };
    let run = project.run(&db, &["rehearse", "--scratch-url", &respelled]);
    run.expect(2);
    assert!(run.stderr.contains("holds airlock's history of 1 migration(s)"), "{}", run.stderr);
    assert_eq!(db.history(), history);
    assert!(!db.table_exists("u"));

    let unreachable = match engine {
        Engine::Postgres => "postgres://postgres@127.0.0.1:1/x",
        Engine::MySql => "mysql://root@127.0.0.1:1/x",
        Engine::Sqlite => "sqlite:/nonexistent-directory/x.db",
    };
    let run = project.run(&db, &["rehearse", "--scratch-url", unreachable]);
    run.expect(2);
    assert!(run.stderr.contains("cannot be reached"), "{}", run.stderr);

    let other = if engine == Engine::Sqlite { "postgres://127.0.0.1:1/x" } else { "sqlite:/tmp/x.db" };
    let run = project.run(&db, &["rehearse", "--scratch-url", other]);
    run.expect(2);
    assert!(run.stderr.contains("a scratch database is on the target's engine"), "{}", run.stderr);
}

fn without_the_right_to_create_databases_rehearsal_says_so_and_a_lent_one_works(engine: Engine) {
    if engine == Engine::Sqlite {
        return; // A temporary file needs no right beyond the temp directory.
    }
    let db = Db::new(engine);
    let lent = Db::new(engine);
    let project = project_with_downs();
    if engine != Engine::MySql {
        project.write("2_t_a.down.sql", "DROP INDEX t_a;\n");
    }
    project.run(&db, &["migrate", "--to", "1"]).expect(0);
    let database = |url: &str| url.rsplit('/').next().unwrap().to_owned();
    let (target_db, lent_db) = (database(&db.url), database(&lent.url));
    let user = format!("nc_{}", &target_db[target_db.len().saturating_sub(12)..]);
    let (url, lent_url) = match engine {
        Engine::Postgres => {
            db.exec(&format!(
                "CREATE ROLE {user} LOGIN NOCREATEDB; GRANT USAGE ON SCHEMA public TO {user}; \
                 GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}"
            ));
            lent.exec(&format!("GRANT ALL ON SCHEMA public TO {user}"));
            (
                db.url.replacen("postgres@", &format!("{user}@"), 1),
                lent.url.replacen("postgres@", &format!("{user}@"), 1),
            )
        }
        _ => {
            db.exec(&format!("CREATE USER '{user}'@'%'"));
            db.exec(&format!("GRANT SELECT ON `{target_db}`.* TO '{user}'@'%'"));
            db.exec(&format!("GRANT ALL ON `{lent_db}`.* TO '{user}'@'%'"));
            (db.url.replacen("root@", &format!("{user}@"), 1), lent.url.replacen("root@", &format!("{user}@"), 1))
        }
    };
    let run = |args: &[&str]| {
        let mut cmd = project.bare();
        cmd.arg("--database-url").arg(&url).arg("--dir").arg(project.dir()).args(args);
        Run::of(cmd.output().unwrap())
    };
    let refused = run(&["rehearse"]);
    refused.expect(2);
    assert!(refused.stderr.contains("cannot create the scratch database"), "{}", refused.stderr);
    assert!(refused.stderr.contains("--scratch-url"), "{}", refused.stderr);

    let lent_run = run(&["--format", "json", "rehearse", "--scratch-url", &lent_url]);
    lent_run.expect(3);
    let outcomes: Vec<String> = lent_run.json()["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, ["clean", "residue", "no-down", "failed"], "{}", lent_run.stdout);
    assert!(!lent.table_exists("t") && !lent.table_exists("u") && !lent.table_exists("w"), "emptied after");
    assert_eq!(db.history().len(), 1);
}

fn rehearsal_with_the_targets_rows_copied_without_triggers_or_foreign_key_checks(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    let (serial, generated) = match engine {
        Engine::Postgres => ("id serial PRIMARY KEY", "shout varchar(20) GENERATED ALWAYS AS (upper(name)) STORED"),
        Engine::MySql => {
            ("id int AUTO_INCREMENT PRIMARY KEY", "shout varchar(20) GENERATED ALWAYS AS (upper(name)) STORED")
        }
        Engine::Sqlite => ("id INTEGER PRIMARY KEY", "shout varchar(20) GENERATED ALWAYS AS (upper(name)) STORED"),
    };
    project.write(
        "1_tables.up.sql",
        &format!(
            "CREATE TABLE parent ({serial}, name varchar(20), {generated});\n\
             CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id), note varchar(50));\n"
        ),
    );
    // A trigger that refuses every new child: rows copied while it fired would fail.
    let trigger = match engine {
        Engine::Postgres => {
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'no new children'; END$$;\n\
             CREATE TRIGGER child_refuse BEFORE INSERT ON child FOR EACH ROW EXECUTE FUNCTION refuse();\n"
        }
        Engine::MySql => {
            "CREATE TRIGGER child_refuse BEFORE INSERT ON child FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'no new children';\n"
        }
        Engine::Sqlite => {
            "CREATE TRIGGER child_refuse BEFORE INSERT ON child BEGIN SELECT RAISE(ABORT, 'no new children'); END;\n"
        }
    };
    project.write("2_refuse.up.sql", trigger);
    // Pending: a new parent, numbered after the copied ones.
    project.write("3_new.up.sql", "-- airlock:data\nINSERT INTO parent (name) VALUES ('new');\n");
    project.write("3_new.down.sql", "-- airlock:data\nDELETE FROM parent WHERE name = 'new';\n");
    project.run(&db, &["migrate", "--to", "1"]).expect(0);
    db.exec(
        "INSERT INTO parent (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e');\n\
         INSERT INTO child (id, parent_id, note) VALUES (1, 5, 'x'), (2, 5, 'it''s\\ttab\nnewline'), (3, 4, NULL), \
         (4, 3, 'y'), (5, 2, 'z'), (6, 1, 'w')",
    );
    project.run(&db, &["migrate", "--to", "2"]).expect(0);
    let history = db.history();

    let full = project.run(&db, &["--format", "json", "rehearse", "--data", "full"]);
    full.expect(0);
    let json = full.json();
    assert_eq!(json["copied"]["rows"], 11, "{json}");
    assert_eq!(json["copied"]["tables"], 2, "{json}");
    assert_eq!(json["copied"]["data"], "full", "{json}");
    assert_eq!(json["migrations"][0]["outcome"], "clean", "{json}");

    // A sample: children whose parent was not sampled load all the same.
    let sample = project.run(&db, &["--format", "json", "rehearse", "--data", "sample:2"]);
    sample.expect(0);
    assert_eq!(sample.json()["copied"]["rows"], 4, "{}", sample.stdout);
    let human = project.run(&db, &["rehearse", "--data", "sample"]);
    human.expect(0);
    assert!(human.stdout.contains("Copied 11 row(s) of 2 table(s) from the target (sample:1000)"), "{}", human.stdout);

    assert_eq!(db.history(), history, "the target was only read");
    assert_eq!(db.count("SELECT count(*) FROM parent"), 5);

    // A pending file that cannot be run as written is named before any scratch database is made.
    project.write("4_broken.up.sql", "SELECT 'unterminated;\n");
    let broken = project.run(&db, &["rehearse"]);
    broken.expect(2);
    assert!(broken.stderr.contains("4_broken.up.sql:1"), "{}", broken.stderr);
    project.remove("4_broken.up.sql");

    let bad = project.run(&db, &["rehearse", "--data", "sample:0"]);
    bad.expect(2);
    assert!(bad.stderr.contains("sample:N is a number of rows above 0"), "{}", bad.stderr);
    let all = project.run(&db, &["rehearse", "--all", "--data", "full"]);
    all.expect(2);
    assert!(all.stderr.contains("--data full with --all"), "{}", all.stderr);
}

/// `n` more rows in `t (id, v)`, ids after `from`, and fresh statistics.
fn fill(db: &Db, engine: Engine, from: u64, n: u64) {
    let to = from + n;
    db.exec(&match engine {
        Engine::Postgres => {
            format!("INSERT INTO t SELECT g, g % 1000 FROM generate_series({}, {to}) AS g; ANALYZE t", from + 1)
        }
        Engine::MySql => format!("INSERT INTO t SELECT seq, seq % 1000 FROM seq_{}_to_{to}; ANALYZE TABLE t", from + 1),
        Engine::Sqlite => format!(
            "INSERT INTO t WITH RECURSIVE g(n) AS (SELECT {} UNION ALL SELECT n + 1 FROM g WHERE n < {to}) SELECT n, n % 1000 FROM g; ANALYZE t",
            from + 1
        ),
    });
}

fn a_rehearsal_with_rows_times_heavy_statements_and_plan_scales_them_by_the_live_rows(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id int PRIMARY KEY, v int);\n");
    project.run(&db, &["migrate"]).expect(0);
    fill(&db, engine, 0, 20_000);
    // Line 3 builds an index over the copied rows; line 2's table is made
    // by the migration itself, empty before it: nothing to time there.
    let index = "CREATE TABLE n (id int);\nCREATE INDEX n_id ON n (id);\nCREATE INDEX t_v ON t (v);\n";
    project.write("2_index.up.sql", index);
    let history = db.history();

    let run = project.run(&db, &["--format", "json", "rehearse", "--data", "full"]);
    run.expect(0);
    let json = run.json();
    let timed = json["timed"].as_array().unwrap();
    assert_eq!(timed.len(), 1, "{json}");
    let t = &timed[0];
    // As the catalog names it: PostgreSQL's with its schema.
    let table = if engine == Engine::Postgres { "public.t" } else { "t" };
    assert_eq!(
        (&t["version"], &t["line"], &t["work"], &t["table"]),
        (&"2".into(), &3.into(), &"index".into(), &table.into())
    );
    assert_eq!(t["rows"], 20_000, "the rows counted in the scratch database: {json}");
    let ms = t["ms"].as_f64().unwrap();
    assert!(ms > 0.0 && ms <= json["migrations"][0]["up_ms"].as_f64().unwrap() + 1.0, "{json}");
    let file = project.root.path().join(".airlock/rehearsal-timings.json");
    assert_eq!(json["timings_file"], file.display().to_string());
    assert!(file.is_file());
    assert_eq!(db.history(), history, "the target was only read");

    // Twice the rows live: the rehearsal's time, doubled.
    fill(&db, engine, 20_000, 20_000);
    let planned = project.run(&db, &["--format", "json", "plan"]);
    let json = planned.json();
    let statement = &json["migrations"][0]["statements"][2];
    let source = statement["estimate_source"].as_str().unwrap();
    assert!(source.starts_with("rehearsal of ") && source.contains("(20000 rows in"), "{source}");
    let scale = statement["rehearsal"]["scale"].as_f64().unwrap();
    // MariaDB's row counts are InnoDB's estimates.
    assert!((1.5..2.7).contains(&scale), "live rows / rehearsed rows: {statement}");
    let seconds = statement["estimated_seconds"].as_f64().unwrap();
    assert!((seconds - ms / 1000.0 * scale).abs() < 1e-6, "{statement}");
    let human = project.run(&db, &["plan"]);
    assert!(human.stdout.contains(&format!("(rehearsed: {ms:.0} ms × {scale:.1})")), "{}", human.stdout);
    assert!(human.stdout.contains("1 estimate(s) from a rehearsal with "), "{}", human.stdout);
    // The statement on the table the migration makes keeps the rates' estimate.
    assert!(json["migrations"][0]["statements"][1]["rehearsal"].is_null(), "{json}");

    // A changed file's times are not its times any more.
    project.write("2_index.up.sql", &format!("-- with a comment\n{index}"));
    let changed = project.run(&db, &["--format", "json", "plan"]).json();
    let source = changed["migrations"][0]["statements"][2]["estimate_source"].as_str().unwrap().to_owned();
    assert!(!source.starts_with("rehearsal"), "{source}");

    // A small sample times fixed costs: kept, said, and not scaled.
    let small = project.run(&db, &["rehearse", "--data", "sample:100"]);
    small.expect(0);
    assert!(small.stdout.contains(&format!("line 4: built an index over `{table}` (100 rows)")), "{}", small.stdout);
    assert!(small.stdout.contains("too few for `plan` to scale its time"), "{}", small.stdout);
    let unscaled = project.run(&db, &["--format", "json", "plan"]).json();
    assert!(unscaled["migrations"][0]["statements"][2]["rehearsal"].is_null(), "{unscaled}");

    // A timings file that cannot be read is named, and nothing runs.
    std::fs::write(&file, "not json").unwrap();
    let broken = project.run(&db, &["plan"]);
    broken.expect(2);
    assert!(broken.stderr.contains("rehearsal-timings.json: not a timings file"), "{}", broken.stderr);
    let refused = project.run(&db, &["rehearse", "--data", "full"]);
    refused.expect(2);
    assert!(refused.stderr.contains("delete it, or rehearse again"), "{}", refused.stderr);
    assert_eq!(db.history(), history);

    // Timings that cannot be written (a folder where the new file goes):
    // the rehearsal is still reported, and says so.
    std::fs::create_dir(project.root.path().join("kept.json.partial")).unwrap();
    project.write_config("rehearsal_timings = \"kept.json\"\n");
    let unkept = project.run(&db, &["rehearse", "--data", "full"]);
    unkept.expect(0);
    assert!(unkept.stdout.contains("2 index: no down script"), "{}", unkept.stdout);
    assert!(
        unkept.stdout.contains("timings not kept: rehearsal timings ")
            && unkept.stdout.contains("kept.json: cannot write it: ")
            && unkept.stdout.contains("set `rehearsal_timings` in airlock.toml"),
        "{}",
        unkept.stdout
    );
}

/// After each step a rehearsal reads again only what the step's statements
/// can reach; debug builds also read the whole schema and stop on any
/// difference. Steps that reach further than they name: serial columns'
/// sequences, partitions that take their parent's index or trigger, a write
/// whose trigger makes a table, comments on indexes and routines, views, a
/// key that makes its column NOT NULL, a column whose type or removal shows
/// in its checks and indexes, a materialized view's index, a view's
/// INSTEAD OF trigger.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_rehearsal_reads_again_what_each_step_can_reach() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    let steps: [(&str, &str, &str); 20] = [
        ("t", "CREATE TABLE t (id serial PRIMARY KEY, a text);", "DROP TABLE t;"),
        ("t_n", "ALTER TABLE t ADD COLUMN n bigserial;", "ALTER TABLE t DROP COLUMN n;"),
        (
            "events",
            "CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);\n\
             CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');",
            "DROP TABLE events;",
        ),
        ("events_at", "CREATE INDEX events_at ON events (at);", "DROP INDEX events_at;"),
        (
            "maker",
            "CREATE FUNCTION make_log() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN \
             EXECUTE 'CREATE TABLE IF NOT EXISTS made_by_trigger (id int)'; RETURN NEW; END$$;\n\
             CREATE TRIGGER t_make AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION make_log();",
            "DROP TRIGGER t_make ON t;\nDROP FUNCTION make_log();",
        ),
        ("insert", "-- airlock:data\nINSERT INTO t (a) VALUES ('x');", "-- airlock:data\nDELETE FROM t;"),
        (
            "notes",
            "COMMENT ON INDEX t_pkey IS 'the key';\nCOMMENT ON FUNCTION make_log() IS 'makes a table';",
            "COMMENT ON INDEX t_pkey IS NULL;\nCOMMENT ON FUNCTION make_log() IS NULL;",
        ),
        ("v", "CREATE VIEW v AS SELECT id, a FROM t;\nCOMMENT ON VIEW v IS 'a view';", "DROP VIEW v;"),
        ("mood", "CREATE TYPE mood AS ENUM ('ok');\nALTER TYPE mood ADD VALUE 'sad';", "DROP TYPE mood;"),
        ("u", "CREATE TABLE u (id int, b int CHECK (b > 0));\nCREATE INDEX u_b ON u (b);", "DROP TABLE u;"),
        // A primary key makes its column NOT NULL.
        (
            "u_key",
            "ALTER TABLE u ADD PRIMARY KEY (id);",
            "ALTER TABLE u DROP CONSTRAINT u_pkey;\nALTER TABLE u ALTER COLUMN id DROP NOT NULL;",
        ),
        // A new type shows in the column, its check and its index.
        ("u_b", "ALTER TABLE u ALTER COLUMN b TYPE bigint;", "ALTER TABLE u ALTER COLUMN b TYPE int;"),
        // The column's index and check go with it.
        (
            "u_no_b",
            "ALTER TABLE u DROP COLUMN b;",
            "ALTER TABLE u ADD COLUMN b bigint CHECK (b > 0);\nCREATE INDEX u_b ON u (b);",
        ),
        (
            "events_log",
            "CREATE TRIGGER events_log AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION make_log();",
            "DROP TRIGGER events_log ON events;",
        ),
        // A new partition takes its parent's row trigger.
        (
            "events_2027",
            "CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');",
            "DROP TABLE events_2027;",
        ),
        // A materialized view goes with its index.
        (
            "m",
            "CREATE MATERIALIZED VIEW m AS SELECT id FROM t;\nCREATE UNIQUE INDEX m_id ON m (id);",
            "DROP MATERIALIZED VIEW m;",
        ),
        (
            "w_function",
            "CREATE FUNCTION w_insert() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;",
            "DROP FUNCTION w_insert();",
        ),
        // A view goes with its INSTEAD OF trigger; made again, it keeps it.
        (
            "w",
            "CREATE VIEW w AS SELECT id FROM t;\n\
             CREATE TRIGGER w_insert INSTEAD OF INSERT ON w FOR EACH ROW EXECUTE FUNCTION w_insert();",
            "DROP VIEW w;",
        ),
        (
            "w_a",
            "CREATE OR REPLACE VIEW w AS SELECT id FROM t WHERE id > 0;",
            "CREATE OR REPLACE VIEW w AS SELECT id FROM t;",
        ),
        (
            "m_notes",
            "COMMENT ON MATERIALIZED VIEW m IS 'kept';\nCOMMENT ON COLUMN u.id IS 'the id';",
            "COMMENT ON MATERIALIZED VIEW m IS NULL;\nCOMMENT ON COLUMN u.id IS NULL;",
        ),
    ];
    for (i, (name, up, down)) in steps.iter().enumerate() {
        project.write(&format!("{}_{name}.up.sql", i + 1), &format!("{up}\n"));
        project.write(&format!("{}_{name}.down.sql", i + 1), &format!("{down}\n"));
    }
    let run = project.run(&db, &["--format", "json", "rehearse"]);
    // Exit 3, not 2: no internal check of the reads failed.
    run.expect(3);
    let json = run.json();
    // The insert's trigger made a table its down does not drop: residue, found.
    let outcomes: Vec<&str> =
        json["migrations"].as_array().unwrap().iter().map(|m| m["outcome"].as_str().unwrap()).collect();
    let mut clean = ["clean"; 20];
    clean[5] = "residue";
    assert_eq!(outcomes, clean, "{json}");
    assert!(json["migrations"][5]["differences"].to_string().contains("made_by_trigger"), "{json}");
}

/// MariaDB's reads after a step are scoped as PostgreSQL's are: each is
/// checked against a whole read in debug builds, names that need more than
/// ASCII among them.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_rehearsal_reads_again_what_each_step_can_reach() {
    let db = Db::new(Engine::MySql);
    let project = Project::new();
    let steps: [(&str, &str, &str); 12] = [
        (
            "orders",
            "CREATE TABLE `Ördrës` (id int AUTO_INCREMENT PRIMARY KEY, a varchar(20) COMMENT 'the a');",
            "DROP TABLE `Ördrës`;",
        ),
        (
            "orders_n",
            "ALTER TABLE `Ördrës` ADD COLUMN n int NOT NULL DEFAULT 0;",
            "ALTER TABLE `Ördrës` DROP COLUMN n;",
        ),
        ("orders_a", "CREATE INDEX o_a ON `Ördrës` (a);", "DROP INDEX o_a ON `Ördrës`;"),
        // A foreign key brings an index of its own on MySQL.
        (
            "items",
            "CREATE TABLE items (id int PRIMARY KEY, o int, q int CHECK (q > 0));\n\
             ALTER TABLE items ADD CONSTRAINT items_o FOREIGN KEY (o) REFERENCES `Ördrës` (id);",
            "DROP TABLE items;",
        ),
        (
            "items_q",
            "ALTER TABLE items ADD CONSTRAINT q_small CHECK (q < 100);",
            "ALTER TABLE items DROP CONSTRAINT q_small;",
        ),
        (
            "items_default",
            "ALTER TABLE items ALTER COLUMN q SET DEFAULT 1;",
            "ALTER TABLE items ALTER COLUMN q DROP DEFAULT;",
        ),
        // The column's index goes with it.
        (
            "orders_no_a",
            "ALTER TABLE `Ördrës` DROP COLUMN a;",
            "ALTER TABLE `Ördrës` ADD COLUMN a varchar(20) COMMENT 'the a' AFTER id;\nCREATE INDEX o_a ON `Ördrës` (a);",
        ),
        (
            "touch",
            "CREATE TRIGGER items_touch BEFORE INSERT ON items FOR EACH ROW SET NEW.q = 1;",
            "DROP TRIGGER items_touch;",
        ),
        (
            "insert",
            "-- airlock:data\nINSERT INTO `Ördrës` (id) VALUES (1);\nINSERT INTO items (id, o) VALUES (1, 1);",
            "-- airlock:data\nDELETE FROM items;\nDELETE FROM `Ördrës`;",
        ),
        // Two tables whose names differ only in case are two tables.
        ("mixed", "CREATE TABLE Mixed (id int);\nCREATE TABLE mixed (id int, b int);", "DROP TABLE Mixed, mixed;"),
        ("mixed_c", "ALTER TABLE Mixed ADD COLUMN c int;", "ALTER TABLE Mixed DROP COLUMN c;"),
        ("v", "CREATE VIEW v AS SELECT id FROM items;", "DROP VIEW v;"),
    ];
    for (i, (name, up, down)) in steps.iter().enumerate() {
        project.write(&format!("{}_{name}.up.sql", i + 1), &format!("{up}\n"));
        project.write(&format!("{}_{name}.down.sql", i + 1), &format!("{down}\n"));
    }
    let run = project.run(&db, &["--format", "json", "rehearse"]);
    // Exit 0, not 2: no internal check of the reads failed.
    run.expect(0);
    let json = run.json();
    let outcomes: Vec<&str> =
        json["migrations"].as_array().unwrap().iter().map(|m| m["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["clean"; 12], "{json}");
}
