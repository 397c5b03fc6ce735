//! `airlock lint --database-url` against real PostgreSQL and MariaDB: the live
//! catalog decides (the MODIFY that lost AUTO_INCREMENT, binary-coercible type
//! changes, user functions' volatility, triggers), and only pending
//! migrations are linted.

mod common;

use common::{Db, Engine, Project, Run};

fn lint(project: &Project, db: &Db, args: &[&str]) -> Run {
    project.run(db, &[&["lint", "--format", "json"], args].concat())
}

fn rules(run: &Run) -> Vec<(String, String)> {
    run.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["rule"].as_str().unwrap().to_owned(), f["severity"].as_str().unwrap().to_owned()))
        .filter(|(rule, _)| rule != "missing-down")
        .collect()
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_modify_names_what_the_live_column_loses() {
    let db = Db::new(Engine::MySql);
    db.exec(
        "CREATE TABLE carts (cart_id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY COMMENT 'cart key', \
             updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP)",
    );
    let project = Project::new();
    project.write("1_widen.up.sql", "ALTER TABLE carts MODIFY cart_id BIGINT NOT NULL;\n");
    let run = lint(&project, &db, &[]);
    run.expect(3);
    // migrate refuses it too, and the column keeps its AUTO_INCREMENT.
    project.run(&db, &["migrate"]).expect(3);
    assert_eq!(db.scalar("SELECT EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'carts' AND COLUMN_NAME = 'cart_id'").as_deref(), Some("auto_increment"));
    let json = run.json();
    let finding = json["findings"].as_array().unwrap().iter().find(|f| f["rule"] == "modify-drops-attributes").unwrap();
    assert_eq!(finding["severity"], "error");
    let message = finding["message"].as_str().unwrap();
    for lost in ["AUTO_INCREMENT", "UNSIGNED", "COMMENT"] {
        assert!(message.contains(lost), "{message}");
    }
    let fix = finding["fix"].as_str().unwrap();
    assert_eq!(fix, "ALTER TABLE carts MODIFY cart_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT COMMENT 'cart key'");

    // The corrected statement passes this rule, and applies; inserts still number themselves.
    project.write("1_widen.up.sql", &format!("{fix};\n"));
    let fixed = lint(&project, &db, &[]);
    assert!(!rules(&fixed).iter().any(|(r, _)| r == "modify-drops-attributes"), "{}", fixed.stdout);
    project.run(&db, &["migrate"]).expect(0);
    db.exec("INSERT INTO carts () VALUES ()");
    assert_eq!(db.count("SELECT COUNT(*) FROM carts"), 1);

    // ON UPDATE is an attribute too.
    project.write("2_ts.up.sql", "ALTER TABLE carts MODIFY updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP;\n");
    let on_update = lint(&project, &db, &[]);
    on_update.expect(3);
    assert!(on_update.stdout.contains("ON UPDATE"), "{}", on_update.stdout);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_live_types_functions_and_triggers_decide() {
    let db = Db::new(Engine::Postgres);
    db.exec("CREATE TABLE orders (id integer PRIMARY KEY, note varchar(20), total numeric(10,2))");
    db.exec("INSERT INTO orders SELECT g, 'n', 1 FROM generate_series(1, 20000) g");
    db.exec("ANALYZE orders");
    db.exec("CREATE FUNCTION pick() RETURNS int VOLATILE LANGUAGE sql AS 'SELECT 1'");
    db.exec("CREATE FUNCTION fixed() RETURNS int STABLE LANGUAGE sql AS 'SELECT 1'");
    let project = Project::new();
    project.write(
        "1_note.up.sql",
        "ALTER TABLE orders ALTER COLUMN note TYPE text;\nALTER TABLE orders ALTER COLUMN total TYPE numeric(12,2);\n",
    );
    project.write("2_fixed.up.sql", "ALTER TABLE orders ADD COLUMN a int DEFAULT fixed();\n");
    let clean = lint(&project, &db, &[]);
    clean.expect(0);
    assert_eq!(rules(&clean), Vec::<(String, String)>::new(), "binary-coercible changes and a stable default are safe");

    project.write("3_id.up.sql", "ALTER TABLE orders ALTER COLUMN id TYPE bigint;\n");
    project.write("4_pick.up.sql", "ALTER TABLE orders ADD COLUMN b int DEFAULT pick();\n");
    project.write("5_index.up.sql", "CREATE INDEX orders_note ON orders (note);\n");
    let found = rules(&lint(&project, &db, &[]));
    for rule in ["changing-column-type", "volatile-default", "require-concurrent-index"] {
        assert!(found.contains(&(rule.to_owned(), "error".to_owned())), "{rule} missing in {found:?}");
    }

    // `migrate` lints first and refuses before anything runs, even the clean migrations.
    let refused = project.run(&db, &["migrate"]);
    refused.expect(3);
    assert!(
        refused.stderr.contains("[changing-column-type]") && refused.stderr.contains("-- airlock:allow"),
        "{}",
        refused.stderr
    );
    assert_eq!(db.scalar("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'note'").as_deref(), Some("character varying(20)"));
    assert!(!db.table_exists("airlock_history"), "a refused run creates nothing");
    // An allow with a reason lets one through; the others still refuse.
    project.write("3_id.up.sql", "-- airlock:allow changing-column-type maintenance window 2026-11-22\nALTER TABLE orders ALTER COLUMN id TYPE bigint;\n");
    let still = project.run(&db, &["migrate"]);
    still.expect(3);
    assert!(!still.stderr.contains("[changing-column-type]"), "{}", still.stderr);

    // Applied migrations are history: only pending ones are linted.
    project.remove("3_id.up.sql");
    project.remove("4_pick.up.sql");
    project.remove("5_index.up.sql");
    project.run(&db, &["migrate"]).expect(0);
    db.exec("CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'");
    db.exec("CREATE TRIGGER orders_audit BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION audit()");
    project.write("6_backfill.up.sql", "-- airlock:data\nUPDATE orders SET a = 1 WHERE id < 100;\n");
    let found = rules(&lint(&project, &db, &[]));
    assert_eq!(found, [("table-has-triggers".to_owned(), "warning".to_owned())]);
}

#[test]
fn sqlite_live_schema_is_read() {
    let db = Db::new(Engine::Sqlite);
    let project = Project::new();
    project.write("1_users.up.sql", "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);\n");
    project.run(&db, &["migrate"]).expect(0);
    // A table created outside airlock is live too; one the database lacks is not "existing".
    db.exec("CREATE TABLE legacy (id INTEGER)");
    project.write("2_cleanup.up.sql", "DELETE FROM users;\nDROP TABLE legacy;\nINSERT INTO nowhere VALUES (1);\n");
    let found = rules(&lint(&project, &db, &[]));
    assert!(found.contains(&("dml-in-schema-migration".to_owned(), "error".to_owned())), "{found:?}");
    assert!(found.contains(&("drop-table".to_owned(), "warning".to_owned())), "{found:?}");
    assert_eq!(
        found.iter().filter(|(r, _)| r == "dml-in-schema-migration").count(),
        1,
        "not for a missing table: {found:?}"
    );
}
