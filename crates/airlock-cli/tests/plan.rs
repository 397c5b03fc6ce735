//! `airlock plan` replays the seeds against real PostgreSQL and MariaDB: a
//! foreign key over orphaned rows, seed 002's MODIFY, SET NOT NULL over
//! NULLs, a unique index over duplicates, a text→int change over a
//! non-numeric value, a lock held by another session. The checks write
//! nothing and take no lock stronger than ACCESS SHARE.

mod common;

use std::time::Duration;

use common::{Db, Engine, Project, Run};
use serde_json::Value;

fn plan(project: &Project, db: &Db) -> Run {
    project.run(db, &["plan", "--format", "json"])
}

/// The checks of statement `index` (1-based) of the first migration.
fn checks(json: &Value, index: usize) -> Vec<Value> {
    json["migrations"][0]["statements"][index - 1]["checks"].as_array().unwrap().clone()
}

fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks.iter().find(|c| c["check"] == name).unwrap_or_else(|| panic!("no {name} in {checks:?}"))
}

fn orders_with_orphans(db: &Db) {
    db.exec("CREATE TABLE users (id integer PRIMARY KEY)");
    db.exec("CREATE TABLE orders (id integer PRIMARY KEY, user_id integer)");
    db.exec("INSERT INTO users VALUES (1), (2)");
    db.exec("INSERT INTO orders VALUES (10, 1), (11, 2), (12, 7), (13, 8), (14, NULL), (15, 9)");
}

fn foreign_key_over_orphans(engine: Engine) {
    let db = Db::new(engine);
    orders_with_orphans(&db);
    let project = Project::new();
    project.write("1_fk.up.sql", "-- airlock:allow adding-foreign-key planned in a quiet hour\nALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);\n");
    let run = plan(&project, &db);
    run.expect(3);
    let json = run.json();
    assert_eq!(json["verdict"], "blocked");
    let orphans = check(&checks(&json, 1), "foreign-key-orphans").clone();
    assert_eq!(orphans["ok"], false);
    assert_eq!(orphans["violations"], 3);
    let examples: Vec<&str> = orphans["examples"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert_eq!(examples.len(), 3);
    for id in ["12", "13", "15"] {
        assert!(examples.contains(&id), "{examples:?}");
    }
    let locks = &json["migrations"][0]["statements"][0]["locks"];
    if engine == Engine::Postgres {
        let tables: Vec<&str> = locks.as_array().unwrap().iter().map(|l| l["table"].as_str().unwrap()).collect();
        assert!(tables.contains(&"orders") && tables.contains(&"users"), "a foreign key locks the referenced table too: {locks}");
    }
    // Nothing was written, not even airlock's tables.
    assert!(!db.table_exists("airlock_history"));

    // A data migration deletes the orphans first: now the plan is not blocked.
    db.exec("DELETE FROM orders WHERE user_id NOT IN (1, 2)");
    let fixed = plan(&project, &db);
    fixed.expect(0);
    assert_eq!(check(&checks(&fixed.json(), 1), "foreign-key-orphans")["violations"], 0);
}

#[test]
fn postgres_plan_counts_orphans_before_a_foreign_key() {
    foreign_key_over_orphans(Engine::Postgres);
}

#[test]
fn mysql_plan_counts_orphans_before_a_foreign_key() {
    foreign_key_over_orphans(Engine::MySql);
}

#[test]
fn mysql_plan_blocks_seed_002_modify_and_passes_the_corrected_one() {
    let db = Db::new(Engine::MySql);
    db.exec("CREATE TABLE carts (cart_id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, note VARCHAR(20))");
    let project = Project::new();
    project.write("1_widen.up.sql", "ALTER TABLE carts MODIFY cart_id BIGINT NOT NULL;\n");
    let run = plan(&project, &db);
    run.expect(3);
    let json = run.json();
    let statement = &json["migrations"][0]["statements"][0];
    assert_eq!(statement["verdict"], "blocked");
    assert_eq!(statement["locks"][0]["mode"], "ALGORITHM=COPY");
    assert!(statement["findings"].as_array().unwrap().iter().any(|f| f["rule"] == "modify-drops-attributes"
        && f["message"].as_str().unwrap().contains("AUTO_INCREMENT")));
    project.write("1_widen.up.sql", "ALTER TABLE carts MODIFY cart_id BIGINT NOT NULL AUTO_INCREMENT;\n");
    plan(&project, &db).expect(0);
}

#[test]
fn postgres_plan_finds_nulls_duplicates_and_values_that_will_not_cast() {
    let db = Db::new(Engine::Postgres);
    db.exec("CREATE TABLE accounts (id integer PRIMARY KEY, email text, code text)");
    db.exec("INSERT INTO accounts VALUES (1, 'a@x', '10'), (2, 'a@x', '11'), (3, NULL, 'x12'), (4, 'b@x', ' 13 ')");
    let project = Project::new();
    project.write(
        "1_tighten.up.sql",
        "-- airlock:allow setting-not-null the table is small\n-- airlock:allow changing-column-type the table is small\n\
         ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;\n\
         ALTER TABLE accounts ALTER COLUMN code TYPE integer USING code::integer;\n",
    );
    project.write("2_unique.up.sql", "CREATE UNIQUE INDEX CONCURRENTLY accounts_email ON accounts (email);\n");
    let run = plan(&project, &db);
    run.expect(3);
    let json = run.json();
    let nulls = check(&checks(&json, 1), "not-null-violations").clone();
    assert_eq!((nulls["violations"].clone(), nulls["examples"][0].clone()), (Value::from(1), Value::from("3")));
    let casts = check(&checks(&json, 2), "cast-failures").clone();
    assert_eq!((casts["violations"].clone(), casts["examples"][0].clone()), (Value::from(1), Value::from("3")), "' 13 ' converts, 'x12' does not");
    let duplicates = json["migrations"][1]["statements"][0]["checks"].as_array().unwrap().clone();
    let duplicates = check(&duplicates, "unique-duplicates");
    assert_eq!((duplicates["violations"].clone(), duplicates["examples"][0].clone()), (Value::from(1), Value::from("a@x")));
}

#[test]
fn postgres_plan_reports_a_session_holding_a_lock_and_takes_only_access_share() {
    let db = Db::new(Engine::Postgres);
    orders_with_orphans(&db);
    let project = Project::new();
    project.write("1_index.up.sql", "CREATE INDEX CONCURRENTLY orders_user ON orders (user_id);\n");
    // EXCLUSIVE conflicts with every lock but ACCESS SHARE: the plan's checks
    // still finish, so they took nothing stronger.
    let holder = db.hold("LOCK TABLE orders IN EXCLUSIVE MODE", Duration::from_secs(30));
    let run = plan(&project, &db);
    drop(holder);
    run.expect(0);
    let json = run.json();
    let blockers = check(&checks(&json, 1), "lock-blockers").clone();
    assert_eq!(blockers["ok"], false, "{blockers}");
    assert!(blockers["examples"][0].as_str().unwrap().contains("ExclusiveLock"), "{blockers}");
    assert_eq!(json["migrations"][0]["statements"][0]["verdict"], "risky");
}

#[test]
fn postgres_plan_works_with_a_select_only_role() {
    let db = Db::new(Engine::Postgres);
    orders_with_orphans(&db);
    let role = format!("reader_{:x}", rand::random::<u32>());
    db.exec(&format!("CREATE ROLE {role} LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"));
    let project = Project::new();
    project.write("1_fk.up.sql", "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n");
    project.write("2_validate.up.sql", "ALTER TABLE orders VALIDATE CONSTRAINT fk;\n");
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    let run = Run::of(project.bare().args(["--database-url", &url, "--dir"]).arg(project.dir()).args(["plan", "--format", "json"]).output().unwrap());
    // VALIDATE checks every row: the orphans are counted from the definition the earlier statement gave.
    run.expect(3);
    let json = run.json();
    let validate = json["migrations"][1]["statements"][0]["checks"].as_array().unwrap().clone();
    assert_eq!(check(&validate, "foreign-key-orphans")["violations"], 3, "{validate:?}");
}

fn migrate_checks_the_data_just_before_each_migration(engine: Engine) {
    let db = Db::new(engine);
    orders_with_orphans(&db);
    let project = Project::new();
    project.write("1_note.up.sql", "ALTER TABLE orders ADD COLUMN note varchar(20);\n");
    project.write("2_fk.up.sql", "-- airlock:allow adding-foreign-key small table\nALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);\n");
    let refused = project.run(&db, &["migrate"]);
    refused.expect(3);
    assert!(refused.stderr.contains("migration 2 (fk) was not run") && refused.stderr.contains("3 row(s) of `orders` have no match in `users`"), "{}", refused.stderr);
    assert_eq!(db.history().len(), 1, "migration 1 applied, 2 refused: {:?}", db.history());

    // A data migration before it fixes the rows: the check sees the data as it is then.
    project.write("2_fk.up.sql", "-- airlock:data\nDELETE FROM orders WHERE user_id NOT IN (1, 2);\n");
    project.write("3_fk.up.sql", "-- airlock:allow adding-foreign-key small table\nALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);\n");
    project.run(&db, &["migrate"]).expect(0);
    assert_eq!(db.count("SELECT COUNT(*) FROM orders"), 3);
}

#[test]
fn postgres_migrate_checks_the_data_just_before_each_migration() {
    migrate_checks_the_data_just_before_each_migration(Engine::Postgres);
}

#[test]
fn mysql_migrate_checks_the_data_just_before_each_migration() {
    migrate_checks_the_data_just_before_each_migration(Engine::MySql);
}

#[test]
fn migrate_applies_only_what_was_planned() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id integer PRIMARY KEY);\n");
    let plan_file = project.root.path().join("plan.json");
    let planned = Run::of(project.airlock(&db).args(["plan", "--out"]).arg(&plan_file).output().unwrap());
    planned.expect(0);
    // Edited after review: refused, nothing applied.
    project.write("1_t.up.sql", "CREATE TABLE t (id integer PRIMARY KEY, extra text);\n");
    let refused = Run::of(project.airlock(&db).args(["migrate", "--plan"]).arg(&plan_file).output().unwrap());
    refused.expect(3);
    assert!(refused.stderr.contains("the plan was made for pending migrations 1"), "{}", refused.stderr);
    assert!(!db.table_exists("t"));
    // A new migration since the plan: refused too.
    project.write("1_t.up.sql", "CREATE TABLE t (id integer PRIMARY KEY);\n");
    project.write("2_u.up.sql", "CREATE TABLE u (id integer PRIMARY KEY);\n");
    Run::of(project.airlock(&db).args(["migrate", "--plan"]).arg(&plan_file).output().unwrap()).expect(3);
    project.remove("2_u.up.sql");
    Run::of(project.airlock(&db).args(["migrate", "--plan"]).arg(&plan_file).output().unwrap()).expect(0);
    assert!(db.table_exists("t"));
}

#[test]
fn sqlite_plan_finds_duplicates_before_a_unique_index() {
    let db = Db::new(Engine::Sqlite);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT);\n");
    project.run(&db, &["migrate"]).expect(0);
    db.exec("INSERT INTO accounts (email) VALUES ('a@x'), ('a@x'), ('b@x')");
    project.write("2_unique.up.sql", "CREATE UNIQUE INDEX accounts_email ON accounts (email);\n");
    let run = plan(&project, &db);
    run.expect(3);
    let json = run.json();
    let duplicates = check(&checks(&json, 1), "unique-duplicates").clone();
    assert_eq!((duplicates["violations"].clone(), duplicates["examples"][0].clone()), (Value::from(1), Value::from("a@x")));
    assert_eq!(json["migrations"][0]["statements"][0]["locks"][0]["mode"], "EXCLUSIVE");
}

#[test]
fn mysql_plan_reports_an_open_transaction_as_a_blocker() {
    let db = Db::new(Engine::MySql);
    orders_with_orphans(&db);
    let project = Project::new();
    project.write("1_note.up.sql", "ALTER TABLE orders ADD COLUMN note VARCHAR(20);\n");
    let holder = db.hold("SELECT * FROM orders FOR UPDATE", Duration::from_secs(30));
    // InnoDB refreshes information_schema.INNODB_TRX at most every 0.1 s: a
    // transaction this young may not be listed yet (a real blocker is older).
    std::thread::sleep(Duration::from_millis(300));
    let run = plan(&project, &db);
    drop(holder);
    run.expect(0);
    let json = run.json();
    let blockers = check(&checks(&json, 1), "lock-blockers").clone();
    assert_eq!(blockers["ok"], false, "{blockers}");
    assert!(blockers["examples"][0].as_str().unwrap().contains("transaction open since"), "{blockers}");
    assert_eq!(json["migrations"][0]["statements"][0]["locks"][0]["mode"], "ALGORITHM=INSTANT");
}

#[test]
fn bad_plan_files_and_budgets_are_named_and_a_missing_sqlite_file_is_planned_as_empty() {
    let db = Db::new(Engine::Sqlite);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id INTEGER PRIMARY KEY);\n");
    // Nothing there yet: everything pending, nothing created.
    let run = plan(&project, &db);
    run.expect(0);
    assert_eq!(run.json()["migrations"].as_array().unwrap().len(), 1);
    assert!(!std::path::Path::new(db.url.trim_start_matches("sqlite:")).exists(), "plan created the SQLite file");

    let file = project.root.path().join("plan.json");
    for (text, says) in [("not json", "not JSON"), ("{\"verdict\": \"safe\"}", "no `migrations`"), ("{\"migrations\": [{\"version\": \"1\"}]}", "without version or checksum")] {
        std::fs::write(&file, text).unwrap();
        let bad = Run::of(project.airlock(&db).args(["migrate", "--plan"]).arg(&file).output().unwrap());
        bad.expect(2);
        assert!(bad.stderr.contains("plan.json") && bad.stderr.contains(says), "{}", bad.stderr);
    }
    assert!(!std::path::Path::new(db.url.trim_start_matches("sqlite:")).exists(), "a refused migrate created the file");
    let budget = project.run(&db, &["plan", "--check-timeout", "soon"]);
    budget.expect(2);
    assert!(budget.stderr.contains("--check-timeout soon"), "{}", budget.stderr);
}
