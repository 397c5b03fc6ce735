//! `airlock drift` on every engine: against the applied migrations replayed
//! into a scratch database, and against another database.

mod common;

use common::{Db, Engine, Project, Run};

each_engine!(
    equivalent_statement_orders_have_no_drift,
    drift_names_each_difference_with_both_sides,
    drift_against_an_environment,
    drift_against_the_applied_migrations_replayed,
    a_replay_that_fails_names_the_migration_and_leaves_nothing_behind,
);

/// One schema, written all at once.
fn at_once(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => {
            "CREATE TABLE t (id bigint PRIMARY KEY, a text NOT NULL DEFAULT 'x', b int CHECK (b > 0));
             CREATE INDEX t_a ON t (a);
             CREATE TABLE u (id bigint PRIMARY KEY, t_id bigint REFERENCES t (id) ON DELETE CASCADE);
             CREATE VIEW v AS SELECT id, a FROM t;
             CREATE TYPE mood AS ENUM ('sad', 'ok');
             CREATE SEQUENCE counter START 10"
        }
        Engine::MySql => {
            "CREATE TABLE t (id bigint PRIMARY KEY AUTO_INCREMENT, a varchar(20) NOT NULL DEFAULT 'x', b int,
               CONSTRAINT t_b CHECK (b > 0), KEY t_a (a));
             CREATE TABLE u (id bigint PRIMARY KEY, t_id bigint,
               CONSTRAINT u_t FOREIGN KEY (t_id) REFERENCES t (id) ON DELETE CASCADE);
             CREATE VIEW v AS SELECT id, a FROM t"
        }
        Engine::Sqlite => {
            "CREATE TABLE t (id integer PRIMARY KEY, a text NOT NULL DEFAULT 'x', b int);
             CREATE INDEX t_a ON t (a);
             CREATE TABLE u (id integer PRIMARY KEY, t_id int REFERENCES t (id) ON DELETE CASCADE);
             CREATE VIEW v AS SELECT id, a FROM t;"
        }
    }
}

/// The same schema, built step by step the way a migration history does.
fn step_by_step(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => {
            "CREATE SEQUENCE counter START 10;
             CREATE TYPE mood AS ENUM ('sad');
             ALTER TYPE mood ADD VALUE 'ok';
             CREATE TABLE t (id bigint, gone int, a text);
             ALTER TABLE t DROP COLUMN gone;
             ALTER TABLE t ADD PRIMARY KEY (id);
             ALTER TABLE t ALTER COLUMN a SET DEFAULT 'x';
             ALTER TABLE t ALTER COLUMN a SET NOT NULL;
             ALTER TABLE t ADD COLUMN b int;
             ALTER TABLE t ADD CHECK (b > 0);
             CREATE TABLE u (id bigint PRIMARY KEY, t_id bigint);
             ALTER TABLE u ADD FOREIGN KEY (t_id) REFERENCES t (id) ON DELETE CASCADE;
             CREATE INDEX t_a ON t (a);
             CREATE VIEW v AS SELECT id, a FROM t"
        }
        Engine::MySql => {
            "CREATE TABLE t (id bigint, gone int, a varchar(20));
             ALTER TABLE t DROP COLUMN gone;
             ALTER TABLE t MODIFY id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY;
             ALTER TABLE t MODIFY a varchar(20) NOT NULL DEFAULT 'x';
             ALTER TABLE t ADD COLUMN b int;
             ALTER TABLE t ADD CONSTRAINT t_b CHECK (b > 0);
             CREATE INDEX t_a ON t (a);
             CREATE TABLE u (id bigint PRIMARY KEY, t_id bigint);
             ALTER TABLE u ADD CONSTRAINT u_t FOREIGN KEY (t_id) REFERENCES t (id) ON DELETE CASCADE;
             CREATE VIEW v AS SELECT id, a FROM t"
        }
        Engine::Sqlite => {
            "CREATE TABLE t (id integer PRIMARY KEY, a text NOT NULL DEFAULT 'x');
             ALTER TABLE t ADD COLUMN b int;
             CREATE TABLE u (id integer PRIMARY KEY, t_id int REFERENCES t (id) ON DELETE CASCADE);
             CREATE INDEX t_a ON t (a);
             CREATE VIEW v AS SELECT id, a FROM t;"
        }
    }
}

fn equivalent_statement_orders_have_no_drift(engine: Engine) {
    let (live, reference) = (Db::new(engine), Db::new(engine));
    live.exec(at_once(engine));
    reference.exec(step_by_step(engine));
    let project = Project::new();
    let same = project.run(&live, &["--format", "json", "drift", "--against-url", &reference.url]);
    same.expect(0);
    assert_eq!(same.json()["differences"], serde_json::json!([]), "{}", same.stdout);
    let human = project.run(&live, &["drift", "--against-url", &reference.url]);
    human.expect(0);
    assert!(human.stdout.contains("no drift"), "{}", human.stdout);

    // Column order is told on its own: the same columns, another order.
    let other = Db::new(engine);
    other.exec(match engine {
        Engine::MySql => "CREATE TABLE w (a int, b int)",
        _ => "CREATE TABLE w (a int, b int);",
    });
    let swapped = Db::new(engine);
    swapped.exec(match engine {
        Engine::MySql => "CREATE TABLE w (b int, a int)",
        _ => "CREATE TABLE w (b int, a int);",
    });
    let order = project.run(&other, &["--format", "json", "drift", "--against-url", &swapped.url]);
    order.expect(3);
    let differences = order.json()["differences"].as_array().unwrap().clone();
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert!(differences[0]["object"].as_str().unwrap().starts_with("column-order "), "{differences:?}");
}

fn trigger(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => {
            "CREATE FUNCTION lower_a() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.a := lower(NEW.a); RETURN NEW; END $$;
             CREATE TRIGGER t_lower BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION lower_a()"
        }
        Engine::MySql => "CREATE TRIGGER t_lower BEFORE INSERT ON t FOR EACH ROW SET NEW.a = LOWER(NEW.a)",
        Engine::Sqlite => "CREATE TRIGGER t_lower AFTER INSERT ON t BEGIN UPDATE t SET a = lower(a) WHERE id = NEW.id; END;",
    }
}

fn drift_names_each_difference_with_both_sides(engine: Engine) {
    let (live, reference) = (Db::new(engine), Db::new(engine));
    for db in [&live, &reference] {
        db.exec(at_once(engine));
        db.exec(trigger(engine));
    }
    // Made by hand on the live database, outside any migration.
    live.exec("CREATE INDEX t_by_hand ON t (b)");
    live.exec(match engine {
        Engine::Postgres => "DROP TRIGGER t_lower ON t",
        _ => "DROP TRIGGER t_lower",
    });
    if engine != Engine::Sqlite {
        live.exec("ALTER TABLE t ALTER COLUMN a SET DEFAULT 'y'");
    }
    let project = Project::new();
    let run = project.run(&live, &["--format", "json", "drift", "--against-url", &reference.url]);
    run.expect(3);
    let json = run.json();
    let differences = json["differences"].as_array().unwrap();
    let find = |prefix: &str| {
        differences
            .iter()
            .find(|d| d["object"].as_str().is_some_and(|o| o.starts_with(prefix)))
            .unwrap_or_else(|| panic!("no `{prefix}` in {json}"))
    };
    let index = find("index ");
    assert!(index["object"].as_str().unwrap().ends_with("t.t_by_hand"), "{json}");
    assert_eq!(index["change"], "unexpected");
    let trigger = find("trigger ");
    assert_eq!(trigger["change"], "missing");
    assert!(trigger["expected"].as_str().unwrap().to_lowercase().contains("lower"), "{json}");
    let expected = if engine == Engine::Sqlite { 2 } else { 3 };
    if engine != Engine::Sqlite {
        let column = find("column ");
        assert_eq!(
            (column["change"].as_str(), column["attribute"].as_str()),
            (Some("changed"), Some("default")),
            "{json}"
        );
        assert!(
            column["expected"].as_str().unwrap().contains('x') && column["actual"].as_str().unwrap().contains('y'),
            "{json}"
        );
    }
    assert_eq!(differences.len(), expected, "{json}");

    let human = project.run(&live, &["drift", "--against-url", &reference.url]);
    human.expect(3);
    assert!(human.stdout.contains(&format!("in {expected} places")), "{}", human.stdout);
    assert!(human.stdout.contains("t_by_hand: only here"), "{}", human.stdout);
    assert!(human.stdout.contains("t_lower: missing here"), "{}", human.stdout);
}

fn drift_against_an_environment(engine: Engine) {
    let (live, staging) = (Db::new(engine), Db::new(engine));
    live.exec(at_once(engine));
    staging.exec(at_once(engine));
    staging.exec(match engine {
        Engine::MySql => "CREATE TABLE only_staging (id int)",
        _ => "CREATE TABLE only_staging (id int);",
    });
    let project = Project::new();
    project.write_config(&format!("[environments.staging]\nurl = \"{}\"\n", staging.url));
    let run = project.run(&live, &["--format", "json", "drift", "--against-env", "staging"]);
    run.expect(3);
    let json = run.json();
    let missing: Vec<&str> = json["differences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["change"] == "missing")
        .filter_map(|d| d["object"].as_str())
        .collect();
    assert!(missing.iter().any(|o| o.starts_with("table ") && o.ends_with("only_staging")), "{json}");
    let unknown = project.run(&live, &["drift", "--against-env", "nowhere"]);
    unknown.expect(2);
    assert!(unknown.stderr.contains("--against-env nowhere"), "{}", unknown.stderr);
}

#[test]
fn drift_refuses_to_compare_two_engines_or_no_reference() {
    let db = Db::new(Engine::Sqlite);
    db.exec("CREATE TABLE t (id int);");
    let project = Project::new();
    let run = project.run(&db, &["drift", "--against-url", "postgres://127.0.0.1:1/nowhere"]);
    run.expect(2);
    assert!(run.stderr.contains("cannot compare a sqlite database with a postgres one"), "{}", run.stderr);
    project.run(&db, &["drift"]).expect(2);
}

/// `airlock drift` (no reference: the replay) with its own temporary
/// directory, where a SQLite scratch file goes.
fn drift_replayed(project: &Project, db: &Db, args: &[&str]) -> (Run, std::path::PathBuf) {
    let tmp = project.dir().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    // Its own flags after the command, the global ones before it.
    let (own, global): (Vec<&str>, Vec<&str>) = args.iter().partition(|a| **a == "--record");
    let output = project.airlock(db).env("TMPDIR", &tmp).args(global).arg("drift").args(own).output().unwrap();
    (Run::of(output), tmp)
}

/// Scratch databases `drift` left on the server for `db`, or files in `tmp`.
fn scratch_left(db: &Db, tmp: &std::path::Path) -> usize {
    match db.engine {
        Engine::Postgres => db.count(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'airlock\\_scratch\\_' || left(current_database(), 24) || '\\_%'",
        ) as usize,
        Engine::MySql => db.count(
            "SELECT count(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE CONCAT('airlock\\_scratch\\_', LEFT(DATABASE(), 24), '\\_%')",
        ) as usize,
        Engine::Sqlite => std::fs::read_dir(tmp).unwrap().count(),
    }
}

fn drift_against_the_applied_migrations_replayed(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id bigint PRIMARY KEY, a varchar(20));\nCREATE INDEX t_a ON t (a);\n");
    project.write("2_b.up.sql", "ALTER TABLE t ADD COLUMN b int DEFAULT 7;\n");
    project.run(&db, &["migrate"]).expect(0);
    let (clean, _) = drift_replayed(&project, &db, &["--format", "json"]);
    clean.expect(0);
    assert_eq!(clean.json()["differences"], serde_json::json!([]), "{}", clean.stdout);
    assert!(clean.json()["against"].as_str().unwrap().contains("2 applied migrations"), "{}", clean.stdout);

    // By hand, outside any migration: an index made, a default changed.
    db.exec("CREATE INDEX t_by_hand ON t (b)");
    if engine != Engine::Sqlite {
        db.exec("ALTER TABLE t ALTER COLUMN b SET DEFAULT 8");
    }
    let (drifted, tmp) = drift_replayed(&project, &db, &["--format", "json"]);
    drifted.expect(3);
    let json = drifted.json();
    let differences = json["differences"].as_array().unwrap();
    assert!(
        differences
            .iter()
            .any(|d| d["change"] == "unexpected" && d["object"].as_str().unwrap().ends_with("t.t_by_hand")),
        "{json}"
    );
    if engine != Engine::Sqlite {
        assert!(
            differences.iter().any(|d| d["attribute"] == "default" && d["object"].as_str().unwrap().ends_with("t.b")),
            "{json}"
        );
    }
    assert_eq!(scratch_left(&db, &tmp), 0, "the scratch database was not dropped");
}

fn a_replay_that_fails_names_the_migration_and_leaves_nothing_behind(engine: Engine) {
    let db = Db::new(engine);
    // Made outside the migrations: the replay does not have it.
    db.exec(match engine {
        Engine::MySql => "CREATE TABLE outside (id int)",
        _ => "CREATE TABLE outside (id int);",
    });
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id int);\n");
    project.write("2_fill.up.sql", "-- airlock:data\nINSERT INTO outside (id) VALUES (1);\n");
    project.run(&db, &["migrate"]).expect(0);
    let (run, tmp) = drift_replayed(&project, &db, &[]);
    run.expect(1);
    assert!(
        run.stderr.contains("replaying migration 2 (fill) into the scratch database, statement 1 of 1"),
        "{}",
        run.stderr
    );
    assert_eq!(scratch_left(&db, &tmp), 0, "the scratch database was not dropped after a failed replay");
    // The target is as it was.
    assert_eq!(db.count("SELECT count(*) FROM outside"), 1);
}

#[test]
fn drift_leaves_out_what_drift_ignore_names() {
    let (live, reference) = (Db::new(Engine::Sqlite), Db::new(Engine::Sqlite));
    for db in [&live, &reference] {
        db.exec("CREATE TABLE t (id integer PRIMARY KEY, a text);");
    }
    // Made by others: a partition manager's table, an index kept by hand on purpose.
    live.exec("CREATE TABLE partman_2026 (id int); CREATE INDEX partman_2026_id ON partman_2026 (id); CREATE INDEX t_by_hand ON t (a);");
    let project = Project::new();
    project.run(&live, &["drift", "--against-url", &reference.url]).expect(3);
    project.write_config("drift_ignore = [\"table partman_*\", \"index *_by_hand\"]\n");
    let quiet = project.run(&live, &["drift", "--against-url", &reference.url]);
    quiet.expect(0);
    assert!(quiet.stdout.contains("no drift"), "{}", quiet.stdout);
    project.write_config("drift_ignore = [\"table [partman\"]\n");
    let bad = project.run(&live, &["drift", "--against-url", &reference.url]);
    bad.expect(2);
    assert!(bad.stderr.contains("drift_ignore in airlock.toml: `table [partman`"), "{}", bad.stderr);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs the servers: run scripts/test")]
fn postgres_migrate_in_a_protected_environment_says_drift_on_a_table_it_changes() {
    migrate_says_drift_on_a_table_it_changes(Engine::Postgres);
}

#[test]
fn sqlite_migrate_in_a_protected_environment_says_drift_on_a_table_it_changes() {
    migrate_says_drift_on_a_table_it_changes(Engine::Sqlite);
}

fn migrate_says_drift_on_a_table_it_changes(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    project.write_config("[environments.prod]\nprotected = true\n");
    project.write("1_t.up.sql", "CREATE TABLE t (id int PRIMARY KEY, a text);\nCREATE TABLE u (id int PRIMARY KEY);\n");
    project.run(&db, &["--env", "prod", "migrate"]).expect(0);
    // By hand on the live database.
    db.exec("CREATE INDEX t_by_hand ON t (a)");

    // A migration on another table: nothing to say.
    project.write("2_u.up.sql", "ALTER TABLE u ADD COLUMN note text;\n");
    let quiet = project.run(&db, &["--env", "prod", "migrate"]);
    quiet.expect(0);
    assert!(!quiet.stderr.contains("drift"), "{}", quiet.stderr);

    // Its look is recorded once it ran: the difference is there, on any table.
    let checks = || db.count("SELECT count(*) FROM airlock_events WHERE kind = 'drift'");
    assert_eq!(checks(), 1, "the second run's look (the first had no history to replay)");
    let history = project.run(&db, &["--env", "prod", "--format", "json", "history"]);
    let entries = history.json()["entries"].clone();
    let newest = entries.as_array().unwrap().iter().find(|e| e["action"] == "drift").unwrap().clone();
    assert_eq!(newest["action"], "drift", "{newest}");
    assert_eq!(newest["outcome"], "differs", "{newest}");
    assert_eq!(newest["reason"], "1 difference from its 1 applied migrations, replayed (migrate's check)", "{newest}");

    // One on the drifted table: warned, then run.
    project.write("3_b.up.sql", "ALTER TABLE t ADD COLUMN b int;\n");
    let warned = project.run(&db, &["--env", "prod", "migrate"]);
    warned.expect(0);
    assert_eq!(checks(), 2);
    assert!(
        warned.stderr.contains("drift: index")
            && warned.stderr.contains("t_by_hand: not made by any migration; migration 3 (b) changes this table"),
        "{}",
        warned.stderr
    );

    // Configured to refuse: nothing runs.
    project.write_config("[environments.prod]\nprotected = true\ndrift = \"refuse\"\n");
    project.write("4_c.up.sql", "ALTER TABLE t ADD COLUMN c int;\n");
    let refused = project.run(&db, &["--env", "prod", "migrate"]);
    refused.expect(3);
    assert!(
        refused.stderr.contains("t_by_hand: not made by any migration; migration 4 (c) changes this table"),
        "{}",
        refused.stderr
    );
    assert_eq!(db.state_of("4"), None, "migration 4 ran");
    // A refused run writes nothing, its look included; nor does a dry run.
    assert_eq!(checks(), 2);
    project.run(&db, &["--env", "prod", "migrate", "--dry-run"]).expect(3);
    assert_eq!(checks(), 2);
    assert_eq!(db.state_of("3").as_deref(), Some("succeeded"));
    // A bad setting is named.
    project.write_config("[environments.prod]\nprotected = true\ndrift = \"loud\"\n");
    let bad = project.run(&db, &["--env", "prod", "migrate"]);
    bad.expect(2);
    assert!(bad.stderr.contains("`drift = \"loud\"`: use \"warn\", \"refuse\" or \"off\""), "{}", bad.stderr);
}

#[test]
fn sqlite_check_constraints_are_compared() {
    let (inline, added, without) = (Db::new(Engine::Sqlite), Db::new(Engine::Sqlite), Db::new(Engine::Sqlite));
    inline
        .exec("CREATE TABLE t (id integer PRIMARY KEY, b int CHECK (b > 0), CONSTRAINT t_small CHECK (id < 100000));");
    // The same checks, the column's added later: SQLite appends it to the stored CREATE TABLE.
    added.exec("CREATE TABLE t (id integer PRIMARY KEY, CONSTRAINT t_small CHECK (id < 100000)); ALTER TABLE t ADD COLUMN b int CHECK (b > 0);");
    without.exec("CREATE TABLE t (id integer PRIMARY KEY, b int);");
    let project = Project::new();
    project.run(&inline, &["drift", "--against-url", &added.url]).expect(0);
    let run = project.run(&inline, &["--format", "json", "drift", "--against-url", &without.url]);
    run.expect(3);
    let json = run.json();
    let objects: Vec<&str> =
        json["differences"].as_array().unwrap().iter().filter_map(|d| d["object"].as_str()).collect();
    assert_eq!(objects, ["constraint t.check (b)", "constraint t.t_small"], "{json}");
}

#[test]
fn an_environment_without_its_own_url_is_not_compared_with_another_database() {
    let db = Db::new(Engine::Sqlite);
    db.exec("CREATE TABLE t (id int);");
    let project = Project::new();
    // The top-level url is this very database: falling back to it would say "no drift".
    project.write_config(&format!("url = \"{}\"\n[environments.staging]\nprotected = true\n", db.url));
    let run = project.run(&db, &["drift", "--against-env", "staging"]);
    run.expect(2);
    assert!(run.stderr.contains("--against-env staging: [environments.staging] has no `url`"), "{}", run.stderr);
}

#[test]
fn when_drift_cannot_be_checked_migrate_warns_or_refuses_as_configured() {
    let db = Db::new(Engine::Sqlite);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id int PRIMARY KEY);\n");
    project.run(&db, &["migrate"]).expect(0);
    project.write("2_a.up.sql", "ALTER TABLE t ADD COLUMN a int;\n");
    // No scratch database can be made: its directory does not exist.
    let nowhere = project.dir().join("no-such-directory");
    let migrate = |config: &str| {
        project.write_config(config);
        let mut cmd = project.airlock(&db);
        cmd.env("TMPDIR", &nowhere).args(["--env", "prod", "migrate"]);
        Run::of(cmd.output().unwrap())
    };
    let refused = migrate("[environments.prod]\nprotected = true\ndrift = \"refuse\"\n");
    refused.expect(3);
    assert!(
        refused.stderr.contains("drift could not be checked") && refused.stderr.contains("scratch"),
        "{}",
        refused.stderr
    );
    assert_eq!(db.state_of("2"), None, "refused, yet migration 2 ran");
    // (A backup could not be verified without a scratch database either.)
    let warned = migrate("[environments.prod]\nprotected = true\nbackup = \"off\"\n");
    warned.expect(0);
    assert!(warned.stderr.contains("drift was not checked"), "{}", warned.stderr);
    assert_eq!(db.state_of("2").as_deref(), Some("succeeded"));
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs the servers: run scripts/test")]
fn postgres_drift_records_what_it_found_only_when_asked() {
    drift_records_what_it_found_only_when_asked(Engine::Postgres);
}

#[test]
fn sqlite_drift_records_what_it_found_only_when_asked() {
    drift_records_what_it_found_only_when_asked(Engine::Sqlite);
}

/// `drift --record` (a scheduled check) appends what it found to the audit
/// trail; a plain `drift` writes nothing; a comparison that could not be
/// made is recorded as such.
fn drift_records_what_it_found_only_when_asked(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id int PRIMARY KEY, a varchar(20));\n");
    project.run(&db, &["migrate"]).expect(0);
    let events = || db.count("SELECT count(*) FROM airlock_events");
    let before = events();
    drift_replayed(&project, &db, &[]).0.expect(0);
    assert_eq!(events(), before, "a plain drift wrote");

    drift_replayed(&project, &db, &["--record"]).0.expect(0);
    db.exec("CREATE INDEX t_by_hand ON t (a)");
    let (found, _) = drift_replayed(&project, &db, &["--format", "json", "--record"]);
    found.expect(3);
    assert_eq!(events(), before + 2);
    let history = project.run(&db, &["--format", "json", "history"]);
    let entries = history.json()["entries"].clone();
    assert_eq!(entries[0]["action"], "drift", "{entries}");
    assert_eq!(entries[0]["outcome"], "differs", "{entries}");
    assert_eq!(entries[0]["reason"], "1 difference from its 1 applied migrations, replayed", "{entries}");
    assert_eq!(entries[1]["outcome"], "matches", "{entries}");
    assert_eq!(entries[1]["reason"], "matches its 1 applied migrations, replayed", "{entries}");
    let recorded = db.scalar("SELECT detail FROM airlock_events WHERE kind = 'drift' ORDER BY id DESC LIMIT 1");
    let recorded: serde_json::Value = serde_json::from_str(&recorded.unwrap()).unwrap();
    assert_eq!(recorded["count"], 1, "{recorded}");
    assert!(recorded["differences"][0]["object"].as_str().unwrap().ends_with("t_by_hand"), "{recorded}");
    assert_eq!(recorded["differences"][0]["change"], "unexpected", "{recorded}");
}

#[test]
fn a_comparison_that_cannot_be_made_is_recorded_and_one_without_history_is_not() {
    let db = Db::new(Engine::Sqlite);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id int PRIMARY KEY);\n");
    project.run(&db, &["migrate"]).expect(0);
    // No scratch database can be made: its directory does not exist.
    let mut cmd = project.airlock(&db);
    cmd.env("TMPDIR", project.dir().join("no-such-directory")).args(["drift", "--record"]);
    let failed = Run::of(cmd.output().unwrap());
    assert_ne!(failed.code, 0, "{}", failed.stderr);
    let history = project.run(&db, &["--format", "json", "history"]);
    let newest = history.json()["entries"][0].clone();
    assert_eq!(newest["outcome"], "unchecked", "{newest}");
    assert!(
        newest["reason"].as_str().unwrap().starts_with("not compared: ")
            && newest["reason"].as_str().unwrap().contains("scratch"),
        "{newest}"
    );

    // A database airlock never migrated has nowhere to record: refused, nothing made.
    let (plain, reference) = (Db::new(Engine::Sqlite), Db::new(Engine::Sqlite));
    plain.exec("CREATE TABLE t (id int);");
    reference.exec("CREATE TABLE t (id int);");
    let refused = project.run(&plain, &["drift", "--record", "--against-url", &reference.url]);
    refused.expect(2);
    assert!(
        refused.stderr.contains("has no airlock history to record the comparison in")
            && refused.stderr.contains("nothing was recorded"),
        "{}",
        refused.stderr
    );
    assert!(!plain.table_exists("airlock_events"));
}
