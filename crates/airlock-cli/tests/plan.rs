//! `airlock plan` replays the incidents against real PostgreSQL and MariaDB: a
//! foreign key over orphaned rows, the MODIFY that dropped AUTO_INCREMENT, SET NOT NULL over
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
        assert!(
            tables.contains(&"orders") && tables.contains(&"users"),
            "a foreign key locks the referenced table too: {locks}"
        );
    }
    // Nothing was written, not even airlock's tables.
    assert!(!db.table_exists("airlock_history"));
    // People are told the examples are the orphans' keys.
    let human = project.run(&db, &["plan"]);
    assert!(human.stdout.contains("keys, e.g."), "{}", human.stdout);
    let refused = project.run(&db, &["migrate"]);
    assert!(refused.stderr.contains("(keys, e.g."), "{}", refused.stderr);

    // A data migration deletes the orphans first: now the plan is not blocked.
    db.exec("DELETE FROM orders WHERE user_id NOT IN (1, 2)");
    let fixed = plan(&project, &db);
    fixed.expect(0);
    assert_eq!(check(&checks(&fixed.json(), 1), "foreign-key-orphans")["violations"], 0);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_plan_counts_orphans_before_a_foreign_key() {
    foreign_key_over_orphans(Engine::Postgres);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_plan_counts_orphans_before_a_foreign_key() {
    foreign_key_over_orphans(Engine::MySql);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_plan_blocks_a_modify_that_drops_auto_increment_and_passes_the_corrected_one() {
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
    assert!(
        statement["findings"].as_array().unwrap().iter().any(
            |f| f["rule"] == "modify-drops-attributes" && f["message"].as_str().unwrap().contains("AUTO_INCREMENT")
        )
    );
    let loss = check(&checks(&json, 1), "attribute-loss").clone();
    assert_eq!(
        (loss["ok"].clone(), loss["examples"].clone()),
        (Value::from(false), serde_json::json!(["AUTO_INCREMENT"])),
        "{loss}"
    );
    let reason =
        &statement["reasons"].as_array().unwrap().iter().find(|r| r["code"] == "attribute-loss").unwrap().clone();
    assert!(
        reason["blocks"].as_bool().unwrap()
            && reason["fix"].as_str().unwrap().contains("MODIFY cart_id BIGINT NOT NULL AUTO_INCREMENT"),
        "{reason}"
    );
    // migrate refuses it too, and the table keeps its AUTO_INCREMENT.
    // With lint's rule turned off, the plan's own check still refuses it.
    project.write_config("[lint.rules]\nmodify-drops-attributes = \"off\"\n");
    let refused = project.run(&db, &["--format", "json", "migrate"]);
    refused.expect(3);
    assert_eq!(refused.json()["error"]["kind"], "data-check-failed", "{}", refused.stdout);
    assert!(!db.table_exists("airlock_history"), "refused before creating airlock's tables");
    assert!(db.scalar("SELECT EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'carts' AND COLUMN_NAME = 'cart_id'").unwrap().contains("auto_increment"));

    project.write("1_widen.up.sql", "ALTER TABLE carts MODIFY cart_id BIGINT NOT NULL AUTO_INCREMENT;\n");
    let fixed = plan(&project, &db);
    fixed.expect(0);
    assert_eq!(check(&checks(&fixed.json(), 1), "attribute-loss")["ok"], true);
    // The corrected statement applies, and inserts still get their ids.
    project.run(&db, &["migrate"]).expect(0);
    db.exec("INSERT INTO carts (note) VALUES ('after')");
    assert_eq!(db.count("SELECT COUNT(*) FROM carts WHERE cart_id IS NOT NULL AND note = 'after'"), 1);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
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
    project.write("3_short.up.sql", "ALTER TABLE accounts ADD CONSTRAINT code_short CHECK (length(code) <= 3);\n");
    let run = plan(&project, &db);
    run.expect(3);
    let json = run.json();
    let nulls = check(&checks(&json, 1), "not-null-violations").clone();
    assert_eq!((nulls["violations"].clone(), nulls["examples"][0].clone()), (Value::from(1), Value::from("3")));
    let casts = check(&checks(&json, 2), "cast-failures").clone();
    assert_eq!(
        (casts["violations"].clone(), casts["examples"][0].clone()),
        (Value::from(1), Value::from("3")),
        "' 13 ' converts, 'x12' does not"
    );
    let duplicates = json["migrations"][1]["statements"][0]["checks"].as_array().unwrap().clone();
    let duplicates = check(&duplicates, "unique-duplicates");
    assert_eq!(
        (duplicates["violations"].clone(), duplicates["examples"][0].clone()),
        (Value::from(1), Value::from("a@x"))
    );
    // The CHECK expression evaluated over the live rows: ' 13 ' is 4 long.
    let short = json["migrations"][2]["statements"][0]["checks"].as_array().unwrap().clone();
    let short = check(&short, "check-violations");
    assert_eq!(
        (short["violations"].clone(), short["examples"][0].clone()),
        (Value::from(1), Value::from("4")),
        "{short}"
    );
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
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
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_plan_works_with_a_select_only_role() {
    let db = Db::new(Engine::Postgres);
    orders_with_orphans(&db);
    let role = format!("reader_{:x}", rand::random::<u32>());
    db.exec(&format!("CREATE ROLE {role} LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"));
    let project = Project::new();
    project.write(
        "1_fk.up.sql",
        "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n",
    );
    project.write("2_validate.up.sql", "ALTER TABLE orders VALIDATE CONSTRAINT fk;\n");
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    let run = Run::of(
        project
            .bare()
            .args(["--database-url", &url, "--dir"])
            .arg(project.dir())
            .args(["plan", "--format", "json"])
            .output()
            .unwrap(),
    );
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
    // Every pending migration is judged before anything runs: nothing can
    // change the orphans before 2, so the run is refused with nothing applied.
    let refused = project.run(&db, &["migrate"]);
    refused.expect(3);
    assert!(
        refused.stderr.contains("migration 2 (fk) was not run")
            && refused.stderr.contains("3 row(s) of `orders` have no match in `users`"),
        "{}",
        refused.stderr
    );
    assert!(db.history().is_empty(), "a refused run applies nothing: {:?}", db.history());
    assert!(!refused.stderr.contains("applied before"), "{}", refused.stderr);

    // A data migration before it changes rows of `orders` but leaves the
    // orphans: the plan cannot know, so 1 and 2 run, and the check just
    // before 3 refuses it.
    project.write("2_fk.up.sql", "-- airlock:data\nUPDATE orders SET note = 'checked' WHERE id = 10;\n");
    project.write("3_fk.up.sql", "-- airlock:allow adding-foreign-key small table\nALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);\n");
    let refused = project.run(&db, &["migrate"]);
    refused.expect(3);
    assert!(refused.stderr.contains("migration 3 (fk) was not run"), "{}", refused.stderr);
    assert!(refused.stderr.contains("applied before the refusal: 1, 2"), "{}", refused.stderr);
    assert_eq!(db.history().len(), 2, "{:?}", db.history());

    // A data migration before it fixes the rows: the check sees the data as it is then.
    project.write("3_fk.up.sql", "-- airlock:data\nDELETE FROM orders WHERE user_id NOT IN (1, 2);\n");
    project.write("4_fk.up.sql", "-- airlock:allow adding-foreign-key small table\nALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);\n");
    project.run(&db, &["migrate"]).expect(0);
    assert_eq!(db.count("SELECT COUNT(*) FROM orders"), 3);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_migrate_checks_the_data_just_before_each_migration() {
    migrate_checks_the_data_just_before_each_migration(Engine::Postgres);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_migrate_checks_the_data_just_before_each_migration() {
    migrate_checks_the_data_just_before_each_migration(Engine::MySql);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
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
    assert_eq!(
        (duplicates["violations"].clone(), duplicates["examples"][0].clone()),
        (Value::from(1), Value::from("a@x"))
    );
    assert_eq!(json["migrations"][0]["statements"][0]["locks"][0]["mode"], "EXCLUSIVE");
    // Not analyzed: rows are read off the rowid b-tree (an upper bound).
    assert_eq!(json["migrations"][0]["statements"][0]["estimated_rows"], 3.0);
    // For people: the check, its examples and its fix, and a summary.
    let human = project.run(&db, &["plan"]);
    human.expect(3);
    for says in [
        "✗ unique-duplicates",
        "e.g. a@x",
        "fix: remove or merge the duplicate rows",
        "1 statement(s) in 1 migration(s): 1 blocked",
    ] {
        assert!(human.stdout.contains(says), "{says:?} missing from:\n{}", human.stdout);
    }
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
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
    let example = blockers["examples"][0].as_str().unwrap();
    assert!(
        example.contains("transaction open since") && example.contains("holds MDL_SHARED_WRITE on orders"),
        "{blockers}"
    );
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
    for (text, says) in [
        ("not json", "not JSON"),
        ("{\"verdict\": \"safe\"}", "no `migrations`"),
        ("{\"migrations\": [{\"version\": \"1\"}]}", "without version or checksum"),
    ] {
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

/// A table whose generated key is at 2,000,000,000 of integer's 2,147,483,647.
fn carts_near_the_integer_limit(db: &Db) {
    match db.engine {
        Engine::MySql => db.exec("CREATE TABLE carts (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, note VARCHAR(20))"),
        _ => db.exec("CREATE TABLE carts (id serial PRIMARY KEY, note text)"),
    }
    db.exec("INSERT INTO carts (id, note) VALUES (1, 'a'), (2000000000, 'b')");
}

fn id_exhaustion_is_reported_and_a_protected_environment_needs_an_allow(engine: Engine) {
    let db = Db::new(engine);
    carts_near_the_integer_limit(&db);
    let project = Project::new();
    project.write("1_qty.up.sql", "ALTER TABLE carts ADD COLUMN qty integer;\n");
    let run = plan(&project, &db);
    run.expect(0);
    let json = run.json();
    let ids = check(&checks(&json, 1), "id-exhaustion").clone();
    assert_eq!(
        (ids["ok"].clone(), ids["examples"][0].clone()),
        (Value::from(false), Value::from("2000000000")),
        "{ids}"
    );
    assert!(ids["message"].as_str().unwrap().contains("93.1%"), "{ids}");
    assert_eq!(json["verdict"], "risky");

    // In a protected environment a risky migration needs a person's reason.
    project.write_config(&format!("[environments.prod]\nurl = \"{}\"\nprotected = true\n", db.url));
    let prod = |args: &[&str]| {
        Run::of(project.bare().args(["--env", "prod", "--dir"]).arg(project.dir()).args(args).output().unwrap())
    };
    let refused = prod(&["migrate"]);
    refused.expect(3);
    assert!(
        refused.stderr.contains("environment `prod` is protected") && refused.stderr.contains("[id-exhaustion]"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("-- airlock:allow id-exhaustion"), "the fix names the allow: {}", refused.stderr);
    let json_refusal = prod(&["--format", "json", "migrate"]);
    json_refusal.expect(3);
    assert_eq!(json_refusal.json()["error"]["kind"], "risky-in-protected-environment");
    assert_eq!(json_refusal.json()["error"]["statements"][0]["risks"][0]["code"], "id-exhaustion");
    assert!(db.history().is_empty(), "nothing applied: {:?}", db.history());
    let here = if engine == Engine::MySql { "DATABASE()" } else { "current_schema()" };
    assert_eq!(db.count(&format!("SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = {here} AND table_name = 'carts' AND column_name = 'qty'")), 0);

    project.write("1_qty.up.sql", "-- airlock:allow id-exhaustion widening the key is migration 2, next sprint\nALTER TABLE carts ADD COLUMN qty integer;\n");
    let accepted = plan(&project, &db);
    accepted.expect(0);
    assert_eq!(
        accepted.json()["migrations"][0]["statements"][0]["reasons"][0]["allowed"],
        "widening the key is migration 2, next sprint"
    );
    // lint does not call an allow of the plan's unused.
    assert!(!project.run(&db, &["lint"]).all().contains("unused-allow"));
    prod(&["migrate"]).expect(0);

    // Widening the key is what the check asks for: it passes at the new type.
    let widen = match engine {
        Engine::MySql => "ALTER TABLE carts MODIFY id BIGINT NOT NULL AUTO_INCREMENT;\n",
        _ => {
            "-- airlock:allow changing-column-type the table is small\nALTER TABLE carts ALTER COLUMN id TYPE bigint;\n"
        }
    };
    project.write("2_widen.up.sql", widen);
    let widened = plan(&project, &db);
    let ids = check(&checks(&widened.json(), 1), "id-exhaustion").clone();
    if engine == Engine::MySql {
        assert_eq!(ids["ok"], true, "{ids}");
    } else {
        // A serial's sequence is `AS integer`: widening the column alone does not widen it.
        assert_eq!(ids["ok"], false, "{ids}");
        assert!(ids["message"].as_str().unwrap().contains("sequence"), "{ids}");
    }
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_an_allow_right_above_the_first_statement_is_that_statements_only() {
    let db = Db::new(Engine::Postgres);
    carts_near_the_integer_limit(&db);
    let project = Project::new();
    let two = "ALTER TABLE carts ADD COLUMN a integer;\nALTER TABLE carts ADD COLUMN b integer;\n";
    project.write("1_two.up.sql", &format!("-- airlock:allow id-exhaustion for the first statement\n{two}"));
    let json = plan(&project, &db).json();
    let allowed = |i: usize| json["migrations"][0]["statements"][i]["reasons"][0]["allowed"].clone();
    assert_eq!((allowed(0), allowed(1)), (Value::from("for the first statement"), Value::Null));
    // Set apart from the statements, a header allow is the whole file's.
    project.write("1_two.up.sql", &format!("-- airlock:allow id-exhaustion for the whole file\n\n{two}"));
    let json = plan(&project, &db).json();
    let allowed = |i: usize| json["migrations"][0]["statements"][i]["reasons"][0]["allowed"].clone();
    assert_eq!((allowed(0), allowed(1)), (Value::from("for the whole file"), Value::from("for the whole file")));
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_a_column_added_earlier_in_the_migration_is_not_unchecked() {
    let db = Db::new(Engine::Postgres);
    orders_with_orphans(&db);
    let project = Project::new();
    project.write(
        "1_status.up.sql",
        "ALTER TABLE orders ADD COLUMN status text;\nUPDATE orders SET status = 'new';\nALTER TABLE orders ALTER COLUMN status SET NOT NULL;\n",
    );
    let json = plan(&project, &db).json();
    let last = &json["migrations"][0]["statements"][2];
    assert!(last["reasons"].as_array().unwrap().iter().all(|r| r["code"] != "unchecked"), "{last}");
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_id_exhaustion_is_reported_and_a_protected_environment_needs_an_allow() {
    id_exhaustion_is_reported_and_a_protected_environment_needs_an_allow(Engine::Postgres);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_id_exhaustion_is_reported_and_a_protected_environment_needs_an_allow() {
    id_exhaustion_is_reported_and_a_protected_environment_needs_an_allow(Engine::MySql);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_narrowing_a_key_below_its_values_is_blocked() {
    let db = Db::new(Engine::MySql);
    carts_near_the_integer_limit(&db);
    let project = Project::new();
    project.write("1_narrow.up.sql", "ALTER TABLE carts MODIFY id SMALLINT NOT NULL AUTO_INCREMENT;\n");
    let run = plan(&project, &db);
    run.expect(3);
    let json = run.json();
    let ids = check(&checks(&json, 1), "id-exhaustion").clone();
    assert!(ids["message"].as_str().unwrap().to_lowercase().contains("more than smallint can hold"), "{ids}");
    let casts = check(&checks(&json, 1), "cast-failures").clone();
    assert_eq!(casts["violations"], 1, "{casts}");
}

fn calibrate_then_history_replace_the_default_rates(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id integer PRIMARY KEY, v integer);\n");
    project.run(&db, &["migrate"]).expect(0);
    let before = plan(&project, &db);
    assert_eq!(before.json()["rates"]["index"]["source"], "built-in default");

    let calibrated = project.run(&db, &["--format", "json", "calibrate", "--rows", "20000"]);
    calibrated.expect(0);
    let c = &calibrated.json()["calibration"];
    for work in ["scan", "index", "rewrite"] {
        assert!(c[work].as_f64().unwrap() > 1000.0, "{work}: {c}");
    }
    assert!(!db.table_exists("airlock_calibration_scratch"), "the scratch table is dropped");
    let after = plan(&project, &db);
    let rates = after.json()["rates"].clone();
    assert!(rates["index"]["source"].as_str().unwrap().starts_with("calibration of "), "{rates}");
    assert_eq!(rates["index"]["rows_per_second"], c["index"]);

    // A real index build over enough rows teaches the history figure.
    let fill = match engine {
        Engine::Postgres => "INSERT INTO t SELECT g, g % 1000 FROM generate_series(1, 300000) AS g; ANALYZE t",
        _ => {
            "INSERT INTO t WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 300000) SELECT n, n % 1000 FROM g; ANALYZE t"
        }
    };
    db.exec(fill);
    let index = match engine {
        Engine::Postgres => "-- airlock:no-transaction\nCREATE INDEX CONCURRENTLY t_v ON t (v);\n",
        _ => "CREATE INDEX t_v ON t (v);\n",
    };
    project.write("2_index.up.sql", index);
    project.run(&db, &["migrate"]).expect(0);
    project.write("3_index.up.sql", &index.replace("t_v", "t_v2"));
    let learned = plan(&project, &db);
    let json = learned.json();
    assert_eq!(json["rates"]["index"]["source"], "history (1 run(s))", "{}", learned.stdout);
    let statement = &json["migrations"][0]["statements"][0];
    assert_eq!(statement["work"], "index");
    // The most similar statements: the same kind of work on the same table.
    assert_eq!(statement["estimate_source"], "history of `t` (1 run(s))");
    assert!(statement["estimated_seconds"].as_f64().unwrap() > 0.0);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_calibrate_then_history_replace_the_default_rates() {
    calibrate_then_history_replace_the_default_rates(Engine::Postgres);
}

#[test]
fn sqlite_calibrate_then_history_replace_the_default_rates() {
    calibrate_then_history_replace_the_default_rates(Engine::Sqlite);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_calibrate_stores_rates_and_drops_its_scratch_table() {
    let db = Db::new(Engine::MySql);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id INT PRIMARY KEY);\n");
    let calibrated = project.run(&db, &["calibrate", "--rows", "20000"]);
    calibrated.expect(0);
    assert!(calibrated.stdout.contains("rewrite") && calibrated.stdout.contains("rows/s"), "{}", calibrated.stdout);
    assert!(!db.table_exists("airlock_calibration_scratch"));
    let rates = plan(&project, &db).json()["rates"].clone();
    assert!(rates["rewrite"]["source"].as_str().unwrap().starts_with("calibration of "), "{rates}");
    let small = project.run(&db, &["calibrate", "--rows", "10"]);
    small.expect(2);
    assert!(small.stderr.contains("--rows 10"), "{}", small.stderr);
}

/// While a check runs on MariaDB, its session holds only the shared
/// metadata locks every SELECT takes (writers go on), and nothing once it ends.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_checks_take_only_a_shared_read_metadata_lock_and_release_it() {
    let db = Db::new(Engine::MySql);
    orders_with_orphans(&db);
    let project = Project::new();
    // Each row's check sleeps 0.4 s: about 2.4 s of checking to watch.
    project.write("1_slow.up.sql", "ALTER TABLE orders ADD CONSTRAINT slow CHECK (SLEEP(0.4) = 0);\n");
    let mut child =
        project.airlock(&db).args(["plan", "--format", "json"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let watch = "SELECT LOCK_MODE FROM information_schema.METADATA_LOCK_INFO WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'orders'";
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    let mut wrote = false;
    // Watch until the plan ends: the schema is read first (brief shared
    // locks), then, after a gap with none, the check runs.
    while started.elapsed() < Duration::from_secs(20) && child.try_wait().unwrap().is_none() {
        let modes: Vec<String> = db.rows(watch).into_iter().filter_map(|r| r.into_iter().next().flatten()).collect();
        let checking = modes.iter().any(|m| m == "MDL_SHARED_READ");
        seen.extend(modes);
        if checking && !wrote {
            // A writer is not held up by the check.
            let t = std::time::Instant::now();
            db.exec("INSERT INTO orders VALUES (99, 1)");
            assert!(t.elapsed() < Duration::from_secs(1), "an insert waited {:?} behind the check", t.elapsed());
            wrote = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(wrote, "never saw the check's metadata lock");
    // SHARED and SHARED_HIGH_PRIO: reading the table's definition for the
    // schema model. All three are shared: none blocks a writer, none is an
    // exclusive or upgradable lock.
    let shared = ["MDL_SHARED_READ", "MDL_SHARED_HIGH_PRIO", "MDL_SHARED"];
    assert!(seen.iter().all(|m| shared.contains(&m.as_str())), "locks seen: {seen:?}");
    assert!(seen.iter().any(|m| m == "MDL_SHARED_READ"), "the check's own lock: {seen:?}");
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(check(&checks(&json, 1), "check-violations")["ok"], true, "{json}");
    assert!(db.rows(watch).is_empty(), "a metadata lock outlived the plan");
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_a_check_out_of_time_is_unknown_and_a_protected_environment_needs_an_allow() {
    let db = Db::new(Engine::Postgres);
    orders_with_orphans(&db);
    let project = Project::new();
    // Each row's check sleeps 2 s: far past a 1 s budget.
    project.write("1_slow.up.sql", "ALTER TABLE orders ADD CONSTRAINT slow CHECK (pg_sleep(2)::text = '') NOT VALID;\nALTER TABLE orders VALIDATE CONSTRAINT slow;\n");
    let run = project.run(&db, &["plan", "--format", "json", "--check-timeout", "1s"]);
    run.expect(0);
    let json = run.json();
    let statement = &json["migrations"][0]["statements"][1];
    let slow = check(statement["checks"].as_array().unwrap(), "check-violations").clone();
    assert_eq!(slow["ok"], Value::Null, "{slow}");
    assert_eq!(
        (statement["verdict"].clone(), statement["reasons"][0]["code"].clone()),
        (Value::from("risky"), Value::from("unchecked"))
    );
    assert!(statement["reasons"][0]["fix"].as_str().unwrap().contains("--check-timeout"));

    project.write_config(&format!(
        "[environments.prod]\nurl = \"{}\"\nprotected = true\ncheck_timeout = \"1s\"\n",
        db.url
    ));
    let prod =
        || Run::of(project.bare().args(["--env", "prod", "--dir"]).arg(project.dir()).arg("migrate").output().unwrap());
    let refused = prod();
    refused.expect(3);
    assert!(refused.stderr.contains("[unchecked]"), "{}", refused.stderr);
    assert!(db.history().is_empty());
    project
        .write_config(&format!("[environments.prod]\nurl = \"{}\"\nprotected = true\ncheck_timeout = \"0\"\n", db.url));
    let zero = prod();
    zero.expect(2);
    assert!(zero.stderr.contains("check_timeout"), "{}", zero.stderr);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_plan_finds_values_that_will_not_cast_nulls_and_cut_text() {
    let db = Db::new(Engine::MySql);
    db.exec("CREATE TABLE accounts (id INT PRIMARY KEY, code VARCHAR(20), note VARCHAR(50), email VARCHAR(50))");
    db.exec("INSERT INTO accounts VALUES (1, '10', 'short', 'a@x'), (2, 'x12', 'a note longer than ten', NULL), (3, ' 13 ', NULL, 'b@x')");
    let project = Project::new();
    project.write(
        "1_tighten.up.sql",
        "ALTER TABLE accounts MODIFY code INT;\nALTER TABLE accounts MODIFY note VARCHAR(10);\nALTER TABLE accounts MODIFY email VARCHAR(50) NOT NULL;\n",
    );
    let run = plan(&project, &db);
    run.expect(3);
    let json = run.json();
    let casts = check(&checks(&json, 1), "cast-failures").clone();
    assert_eq!(
        (casts["violations"].clone(), casts["examples"][0].clone()),
        (Value::from(1), Value::from("2")),
        "' 13 ' converts, 'x12' does not: {casts}"
    );
    let cut = check(&checks(&json, 2), "cast-failures").clone();
    assert_eq!((cut["violations"].clone(), cut["examples"][0].clone()), (Value::from(1), Value::from("2")), "{cut}");
    let nulls = check(&checks(&json, 3), "not-null-violations").clone();
    assert_eq!(
        (nulls["violations"].clone(), nulls["examples"][0].clone()),
        (Value::from(1), Value::from("2")),
        "{nulls}"
    );
    // A type change copies the table; NOT NULL rebuilds it in place, writes going on.
    let modes: Vec<&str> =
        (0..3).map(|i| json["migrations"][0]["statements"][i]["locks"][0]["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["ALGORITHM=COPY", "ALGORITHM=COPY", "ALGORITHM=INPLACE"]);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_plan_reads_inside_do_blocks() {
    let db = Db::new(Engine::Postgres);
    orders_with_orphans(&db);
    let project = Project::new();
    // The usual idempotent guard around a foreign key: its orphans are counted.
    project.write(
        "1_fk.up.sql",
        "-- airlock:allow adding-foreign-key small table\nDO $$ BEGIN\n  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'orders_user_fk') THEN\n    \
         ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);\n  END IF;\nEND $$;\n",
    );
    let run = plan(&project, &db);
    run.expect(3);
    assert_eq!(check(&checks(&run.json(), 1), "foreign-key-orphans")["violations"], 3);
    // Dynamic SQL cannot be seen: unchecked, so risky, and lint says why.
    project.write("1_fk.up.sql", "DO $$ BEGIN EXECUTE 'ALTER TABLE orders ADD COLUMN ' || 'note text'; END $$;\n");
    let run = plan(&project, &db);
    run.expect(0);
    let statement = run.json()["migrations"][0]["statements"][0].clone();
    assert_eq!(
        (statement["verdict"].clone(), statement["reasons"][0]["code"].clone()),
        (Value::from("risky"), Value::from("unchecked")),
        "{statement}"
    );
    assert!(statement["findings"].as_array().unwrap().iter().any(|f| f["rule"] == "dynamic-sql"), "{statement}");
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_resolve_retry_checks_the_statements_left_to_run() {
    let db = Db::new(Engine::MySql);
    db.exec("CREATE TABLE accounts (id INT PRIMARY KEY, email VARCHAR(50))");
    db.exec("INSERT INTO accounts VALUES (1, 'a@x'), (2, 'a@x')");
    let project = Project::new();
    // MySQL runs DDL statement by statement: the second fails, the first stays applied.
    project.write(
        "1_note.up.sql",
        "ALTER TABLE accounts ADD COLUMN note VARCHAR(10);\nALTER TABLE no_such_table ADD COLUMN x INT;\n",
    );
    project.run(&db, &["migrate"]).expect(1);
    // The failed statement is rewritten into one the live rows would break.
    project.write(
        "1_note.up.sql",
        "ALTER TABLE accounts ADD COLUMN note VARCHAR(10);\nCREATE UNIQUE INDEX accounts_email ON accounts (email);\n",
    );
    let refused = project.run(&db, &["--format", "json", "resolve", "1", "--retry-from-failed"]);
    refused.expect(3);
    assert_eq!(refused.json()["error"]["kind"], "data-check-failed", "{}", refused.stdout);
    assert_eq!(refused.json()["error"]["statements"][0]["index"], 2);
    assert_eq!(db.count("SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() AND index_name = 'accounts_email'"), 0);
    db.exec("DELETE FROM accounts WHERE id = 2");
    project.run(&db, &["resolve", "1", "--retry-from-failed"]).expect(0);
    assert_eq!(db.state_of("1").as_deref(), Some("succeeded"));
}
