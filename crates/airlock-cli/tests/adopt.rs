//! `airlock adopt` takes over databases other tools migrated: the real
//! dbmate binary (installed by `scripts/test` from npm) on every engine, and
//! the documented history tables of Flyway, golang-migrate, sqlx, diesel,
//! refinery and Rails. Until adopted, `status`, `plan` and `migrate` say so.
//! The expected checksums were computed outside airlock (Python's zlib.crc32
//! and hashlib.sha384), so the tests check airlock against the tools' own
//! algorithms, not against itself.

mod common;

use std::process::Command;

use common::{Db, Engine, Project, Run};

const USERS: &str = "CREATE TABLE users (id integer PRIMARY KEY);\n";
/// Flyway's checksum of `USERS`: CRC-32 of the text without line breaks, signed.
const USERS_FLYWAY_CRC: i32 = -1203868596;
/// sqlx's checksum of `USERS`: SHA-384 of the bytes.
const USERS_SQLX_SHA384: &str =
    "437017eb62d69346a20a7a782db446bb5c44f5478410382b12e875c325bad18a68ac734232d9821b5ca130f51c090ff3";

fn dbmate_url(db: &Db) -> String {
    match db.engine {
        Engine::Postgres => format!("{}?sslmode=disable", db.url),
        Engine::MySql => db.url.clone(),
        Engine::Sqlite => db.url.replacen("sqlite://", "sqlite:", 1),
    }
}

fn dbmate() -> String {
    std::env::var("AIRLOCK_TEST_DBMATE").unwrap_or_else(|_| {
        panic!("AIRLOCK_TEST_DBMATE is not set: run the tests through `scripts/test`, which installs dbmate from npm")
    })
}

fn dbmate_file(name: &str, up: &str, down: &str) -> (String, String) {
    (name.to_owned(), format!("-- migrate:up\n{up}\n-- migrate:down\n{down}\n"))
}

fn a_database_dbmate_migrated_is_adopted(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    for (name, text) in [
        dbmate_file("20240101000000_users.sql", "CREATE TABLE users (id integer PRIMARY KEY);", "DROP TABLE users;"),
        dbmate_file(
            "20240102000000_orders.sql",
            "CREATE TABLE orders (id integer PRIMARY KEY, user_id integer);",
            "DROP TABLE orders;",
        ),
    ] {
        project.write(&name, &text);
    }
    let ran = Command::new(dbmate())
        .args(["--url", &dbmate_url(&db), "--migrations-dir"])
        .arg(project.dir())
        .args(["--no-dump-schema", "up"])
        .output()
        .unwrap();
    assert!(ran.status.success(), "dbmate: {}", String::from_utf8_lossy(&ran.stderr));
    assert_eq!(db.count("SELECT count(*) FROM schema_migrations"), 2);
    let (name, text) =
        dbmate_file("20240103000000_later.sql", "CREATE TABLE later (id integer PRIMARY KEY);", "DROP TABLE later;");
    project.write(&name, &text);

    // Until adopted, status, plan and migrate say what to do, and change nothing.
    let status = project.run(&db, &["status"]);
    assert!(status.all().contains("migrated by dbmate") && status.all().contains("airlock adopt"), "{}", status.all());
    let plan = project.run(&db, &["plan"]);
    plan.expect(3);
    assert!(plan.all().contains("airlock adopt"), "{}", plan.all());
    let migrate = project.run(&db, &["migrate"]);
    migrate.expect(3);
    assert!(migrate.all().contains("migrated by dbmate"), "{}", migrate.all());
    assert!(!db.table_exists("airlock_history"), "nothing was created");

    let dry = project.run(&db, &["--format", "json", "adopt", "--dry-run"]);
    dry.expect(0);
    let json = dry.json();
    assert_eq!((json["tool"].as_str(), json["adopted"].as_array().unwrap().len()), (Some("dbmate"), 2), "{json}");
    assert_eq!(json["pending"][0]["version"], "20240103000000");
    assert!(!db.table_exists("airlock_history"), "a dry run writes nothing");

    let adopted = project.run(&db, &["adopt"]);
    adopted.expect(0);
    assert!(adopted.stdout.contains("Adopted 2 migration(s) from dbmate"), "{}", adopted.all());
    assert_eq!(
        db.history(),
        [
            ("20240101000000".to_owned(), "adopted".to_owned(), 0),
            ("20240102000000".to_owned(), "adopted".to_owned(), 0)
        ]
    );
    assert_eq!(db.count("SELECT count(*) FROM schema_migrations"), 2, "dbmate's table is left as it was");
    assert_eq!(db.count("SELECT count(*) FROM airlock_events WHERE kind = 'adopted'"), 1);

    // From now on airlock runs what is left, and only that.
    project.run(&db, &["migrate"]).expect(0);
    assert!(db.table_exists("later"));
    assert_eq!(db.state_of("20240103000000").as_deref(), Some("succeeded"));
    let status = project.run(&db, &["--format", "json", "status"]);
    assert_eq!(status.json()["problems"].as_array().unwrap().len(), 0, "{}", status.stdout);
    // A second adoption is refused: airlock runs this database now.
    let again = project.run(&db, &["adopt"]);
    again.expect(3);
    assert!(again.all().contains("already has airlock history"), "{}", again.all());
    let again = project.run(&db, &["--format", "json", "adopt"]);
    assert_eq!(again.json()["error"]["problems"][0]["code"], "already-managed", "{}", again.stdout);
}

each_engine_with_tools!(a_database_dbmate_migrated_is_adopted);

fn flyway_table(db: &Db) {
    let boolean = if db.engine == Engine::MySql { "BOOL" } else { "BOOLEAN" };
    db.exec(&format!(
        "CREATE TABLE flyway_schema_history (installed_rank INT NOT NULL PRIMARY KEY, version VARCHAR(50), description VARCHAR(200) NOT NULL, \
         type VARCHAR(20) NOT NULL, script VARCHAR(1000) NOT NULL, checksum INT, installed_by VARCHAR(100) NOT NULL, \
         installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, execution_time INT NOT NULL, success {boolean} NOT NULL)"
    ));
}

fn flyway_row(db: &Db, rank: i32, version: &str, kind: &str, checksum: Option<i32>, success: bool) {
    let (t, f) = if db.engine == Engine::Postgres { ("TRUE", "FALSE") } else { ("1", "0") };
    db.exec(&format!(
        "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success) \
         VALUES ({rank}, '{version}', 'x', '{kind}', 'V{version}__x.sql', {}, 'ci', 1, {})",
        checksum.map_or("NULL".to_owned(), |c| c.to_string()),
        if success { t } else { f }
    ));
}

fn flyway_checksums_are_compared_and_refusals_name_the_file(engine: Engine) {
    let db = Db::new(engine);
    flyway_table(&db);
    db.exec("CREATE TABLE users (id integer PRIMARY KEY)");
    flyway_row(&db, 1, "0.9", "BASELINE", None, true);
    flyway_row(&db, 2, "1", "SQL", Some(USERS_FLYWAY_CRC), true);
    let project = Project::new();
    project.write("V0_5__legacy.sql", "SELECT 1;\n");
    // The same text with Windows line endings: Flyway's checksum ignores them.
    project.write("V1__users.sql", &USERS.replace('\n', "\r\n"));
    project.write("V2__orders.sql", "CREATE TABLE orders (id integer PRIMARY KEY);\n");
    let adopted = project.run(&db, &["--format", "json", "adopt", "--from", "flyway", "--dry-run"]);
    adopted.expect(0);
    let json = adopted.json();
    let versions: Vec<&str> =
        json["adopted"].as_array().unwrap().iter().map(|a| a["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["0.5", "1"], "{json}");
    assert_eq!(json["checksums_compared"], 1);

    // An edited file: refused, naming the version, the file and both checksums.
    project.write("V1__users.sql", "CREATE TABLE users (id bigint PRIMARY KEY);\n");
    let refused = project.run(&db, &["adopt"]);
    refused.expect(3);
    assert!(
        refused.all().contains("migration 1 (")
            && refused.all().contains("V1__users.sql")
            && refused.all().contains(&USERS_FLYWAY_CRC.to_string()),
        "{}",
        refused.all()
    );
    assert!(!db.table_exists("airlock_history"), "a refusal changes nothing");
    project.write("V1__users.sql", USERS);
    // A version the checkout lacks, and a failed run.
    flyway_row(&db, 3, "7", "SQL", None, true);
    flyway_row(&db, 4, "2", "SQL", None, false);
    let refused = project.run(&db, &["--format", "json", "adopt"]);
    refused.expect(3);
    let reasons = refused.json()["error"]["reasons"].to_string();
    assert!(reasons.contains("no migration for: 7") && reasons.contains("migration 2 as failed"), "{reasons}");
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_flyway_checksums_are_compared_and_refusals_name_the_file() {
    flyway_checksums_are_compared_and_refusals_name_the_file(Engine::Postgres);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_flyway_checksums_are_compared_and_refusals_name_the_file() {
    flyway_checksums_are_compared_and_refusals_name_the_file(Engine::MySql);
}

fn golang_migrate_is_adopted_up_to_its_version_and_dirty_is_refused(engine: Engine) {
    let db = Db::new(engine);
    let boolean = if engine == Engine::MySql { "BOOLEAN" } else { "boolean" };
    db.exec(&format!("CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty {boolean} NOT NULL)"));
    let (t, f) = if engine == Engine::Postgres { ("TRUE", "FALSE") } else { ("1", "0") };
    db.exec(&format!("INSERT INTO schema_migrations VALUES (2, {t})"));
    let project = Project::new();
    project
        .write("1_users.up.sql", USERS)
        .write("2_orders.up.sql", "SELECT 2;\n")
        .write("3_later.up.sql", "SELECT 3;\n");
    let dirty = project.run(&db, &["adopt"]);
    dirty.expect(3);
    assert!(dirty.all().contains("dirty") && dirty.all().contains("migrate force"), "{}", dirty.all());
    db.exec(&format!("UPDATE schema_migrations SET dirty = {f}"));
    let adopted = project.run(&db, &["--format", "json", "adopt"]);
    adopted.expect(0);
    assert_eq!(adopted.json()["tool"], "golang-migrate");
    assert_eq!(db.history().iter().map(|h| h.0.as_str()).collect::<Vec<_>>(), ["1", "2"]);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_golang_migrate_is_adopted_up_to_its_version_and_dirty_is_refused() {
    golang_migrate_is_adopted_up_to_its_version_and_dirty_is_refused(Engine::Postgres);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_golang_migrate_is_adopted_up_to_its_version_and_dirty_is_refused() {
    golang_migrate_is_adopted_up_to_its_version_and_dirty_is_refused(Engine::MySql);
}

#[test]
fn sqlite_sqlx_checksums_are_sha384_of_the_file() {
    let db = Db::new(Engine::Sqlite);
    db.exec(
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
         success BOOLEAN NOT NULL, checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
    );
    db.exec(&format!("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (1, 'users', 1, X'{USERS_SQLX_SHA384}', 1)"));
    let project = Project::new();
    project.write("1_users.sql", USERS).write("2_more.sql", "SELECT 2;\n");
    let adopted = project.run(&db, &["--format", "json", "adopt"]);
    adopted.expect(0);
    let json = adopted.json();
    assert_eq!((json["tool"].as_str(), json["checksums_compared"].as_u64()), (Some("sqlx"), Some(1)), "{json}");
    // An unsuccessful run (a MySQL migration cut off half-way) refuses.
    let db = Db::new(Engine::Sqlite);
    db.exec("CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT, success BOOLEAN, checksum BLOB, execution_time BIGINT)");
    db.exec(&format!("INSERT INTO _sqlx_migrations VALUES (1, 'users', 0, X'{USERS_SQLX_SHA384}', -1)"));
    let refused = project.run(&db, &["adopt"]);
    refused.expect(3);
    assert!(refused.all().contains("not successful"), "{}", refused.all());
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_diesel_refinery_and_rails_tables_are_read() {
    // diesel: versions without their dashes, the initial setup folder included.
    let db = Db::new(Engine::Postgres);
    db.exec("CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)");
    db.exec("INSERT INTO __diesel_schema_migrations (version) VALUES ('00000000000000'), ('20190226002946')");
    let project = Project::new();
    project.write("00000000000000_diesel_initial_setup/up.sql", "SELECT 0;\n");
    project.write("2019-02-26-002946_create_users/up.sql", USERS);
    project.write("2019-03-01-000000_create_orders/up.sql", "SELECT 1;\n");
    let adopted = project.run(&db, &["--format", "json", "adopt"]);
    adopted.expect(0);
    assert_eq!(adopted.json()["adopted"].as_array().unwrap().len(), 2, "{}", adopted.stdout);
    assert_eq!(adopted.json()["pending"][0]["version"], "20190301000000");

    // refinery: one row per version.
    let db = Db::new(Engine::Postgres);
    db.exec("CREATE TABLE refinery_schema_history (version INT4 PRIMARY KEY, name VARCHAR(255), applied_on VARCHAR(255), checksum VARCHAR(255))");
    db.exec("INSERT INTO refinery_schema_history VALUES (1, 'users', '2024-01-01T00:00:00Z', NULL)");
    let project = Project::new();
    project.write("V1__users.sql", USERS);
    let adopted = project.run(&db, &["--format", "json", "adopt"]);
    adopted.expect(0);
    assert_eq!(adopted.json()["tool"], "refinery");

    // Rails: `schema_migrations` beside `ar_internal_metadata`; with a second
    // tool's table too, --from must say which.
    let db = Db::new(Engine::Postgres);
    db.exec("CREATE TABLE schema_migrations (version varchar PRIMARY KEY)");
    db.exec("CREATE TABLE ar_internal_metadata (key varchar PRIMARY KEY, value varchar, created_at timestamp, updated_at timestamp)");
    db.exec("INSERT INTO schema_migrations VALUES ('20240101000000')");
    let project = Project::new();
    project.write("20240101000000_users.up.sql", USERS);
    let adopted = project.run(&db, &["--format", "json", "adopt", "--dry-run"]);
    adopted.expect(0);
    assert_eq!(adopted.json()["tool"], "rails");
    db.exec("CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY)");
    let ambiguous = project.run(&db, &["adopt"]);
    ambiguous.expect(2);
    assert!(ambiguous.all().contains("--from"), "{}", ambiguous.all());
    let wrong = project.run(&db, &["adopt", "--from", "flyway"]);
    wrong.expect(2);
    assert!(wrong.all().contains("no `flyway_schema_history` table"), "{}", wrong.all());
    let unknown_tool = project.run(&db, &["adopt", "--from", "liquibase"]);
    unknown_tool.expect(2);
    assert!(unknown_tool.all().contains("no tool `liquibase`"), "{}", unknown_tool.all());
    project.run(&db, &["adopt", "--from", "rails"]).expect(0);
}

/// A Flyway baseline below every file adopts nothing, and still takes the
/// database over: `migrate` runs everything after it.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_an_adoption_that_records_nothing_still_takes_the_database_over() {
    let db = Db::new(Engine::Postgres);
    flyway_table(&db);
    flyway_row(&db, 1, "0", "BASELINE", None, true);
    let project = Project::new();
    project.write("V1__users.sql", USERS);
    project.run(&db, &["migrate"]).expect(3);
    let adopted = project.run(&db, &["--format", "json", "adopt"]);
    adopted.expect(0);
    assert_eq!(adopted.json()["adopted"].as_array().unwrap().len(), 0);
    project.run(&db, &["migrate"]).expect(0);
    assert_eq!(db.state_of("1").as_deref(), Some("succeeded"));
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn nothing_to_adopt_is_said() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    project.write("1_users.up.sql", USERS);
    let run = Run::of(project.airlock(&db).args(["adopt"]).output().unwrap());
    run.expect(2);
    assert!(run.all().contains("nothing to adopt"), "{}", run.all());
    // A SQLite file that does not exist: said, and not created.
    let missing = Db::new(Engine::Sqlite);
    let run = project.run(&missing, &["adopt"]);
    run.expect(2);
    assert!(run.all().contains("nothing to adopt") && run.all().contains("does not exist"), "{}", run.all());
    assert!(!std::path::Path::new(missing.url.trim_start_matches("sqlite:")).exists());
    // Nor has it any history to show.
    let history = project.run(&missing, &["history"]);
    history.expect(0);
    assert!(history.stdout.contains("No history yet"), "{}", history.stdout);
}
