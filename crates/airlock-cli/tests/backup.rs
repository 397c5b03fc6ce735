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
    assert!(backup["unsupported"].is_null(), "{json}");

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

/// The rows of `table` in a stored backup of a SQLite database.
fn rows_in_backup(file: &std::path::Path, table: &str) -> i64 {
    let bytes = zstd::decode_all(std::fs::File::open(file).unwrap()).unwrap();
    let copy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(copy.path(), bytes).unwrap();
    let conn = rusqlite::Connection::open(copy.path()).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

/// Files of the store `dir`, by name.
fn stored(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

#[test]
fn sqlite_migrate_saves_and_verifies_what_it_changes_before_changing_it() {
    migrate_saves_and_verifies_what_it_changes_before_changing_it(Engine::Sqlite);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_migrate_saves_and_verifies_what_it_changes_before_changing_it() {
    migrate_saves_and_verifies_what_it_changes_before_changing_it(Engine::Postgres);
}

fn migrate_saves_and_verifies_what_it_changes_before_changing_it(engine: Engine) {
    let db = Db::new(engine);
    db.exec(
        "CREATE TABLE carts (id integer PRIMARY KEY, total int); INSERT INTO carts VALUES (1, 10), (2, 20), (3, 30)",
    );
    db.exec("CREATE TABLE other (id integer PRIMARY KEY)");
    let project = Project::new();
    protected(&project, &db, "");
    project.write("1_prune.up.sql", "-- airlock:data\nDELETE FROM carts WHERE id > 1;\n");
    let run = in_prod(&project, &["migrate"]);
    run.expect(0);
    assert!(run.all().contains("backup "), "{}", run.all());
    assert_eq!(db.count("SELECT count(*) FROM carts"), 1);

    let dir = project.root.path().join("saved");
    let files = stored(&dir);
    assert_eq!(files.len(), 2, "{files:?}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(&files[1])).unwrap()).unwrap();
    assert!(files[1].ends_with(".json") && files[0].ends_with(".backup.zst"), "{files:?}");
    assert_eq!(manifest["mode"], "tables");
    assert_eq!(manifest["environment"], "prod");
    let carts = if engine == Engine::Postgres { "public.carts" } else { "carts" };
    assert_eq!(manifest["tables"][0]["table"], carts, "{manifest}");
    assert_eq!(manifest["tables"][0]["rows"], 3, "{manifest}");
    assert_eq!(manifest["tables"].as_array().unwrap().len(), 1, "{manifest}");
    // The stored bytes are what the manifest says, and hold the rows as they were.
    let data = dir.join(&files[0]);
    let bytes = std::fs::read(&data).unwrap();
    assert_eq!(manifest["stored_bytes"], bytes.len());
    let sha = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes));
    assert_eq!(manifest["sha256"], sha);
    match engine {
        Engine::Sqlite => {
            assert_eq!(manifest["format"], "sqlite-file");
            assert_eq!(rows_in_backup(&data, "carts"), 3);
        }
        Engine::MySql => {
            assert_eq!(manifest["format"], "mariadb-dump-sql");
            assert!(manifest["tool"].as_str().unwrap().contains("mariadb-dump"), "{manifest}");
            let sql = String::from_utf8(zstd::decode_all(&bytes[..]).unwrap()).unwrap();
            assert!(sql.contains("CREATE TABLE `carts`") && !sql.contains("CREATE TABLE `other`"), "{sql}");
        }
        _ => {
            assert_eq!(manifest["format"], "pg_dump-custom");
            assert!(manifest["tool"].as_str().unwrap().starts_with("pg_dump (PostgreSQL) "), "{manifest}");
            // A custom-format archive, whole.
            assert_eq!(&zstd::decode_all(&bytes[..]).unwrap()[..5], b"PGDMP");
        }
    }

    // In history, with the run.
    let history = in_prod(&project, &["--format", "json", "history"]);
    history.expect(0);
    let entries = history.json()["entries"].clone();
    let backup = entries.as_array().unwrap().iter().find(|e| e["action"] == "backup").expect("a backup entry");
    assert_eq!(backup["outcome"], "verified");
    assert!(backup["reason"].as_str().unwrap().contains(&format!(" of {carts} → ")), "{backup}");

    // Nothing pending: no backup.
    in_prod(&project, &["migrate"]).expect(0);
    assert_eq!(stored(&dir).len(), 2);
}

#[test]
fn a_store_that_fails_refuses_the_migration_and_changes_nothing() {
    let db = Db::new(Engine::Sqlite);
    db.exec("CREATE TABLE carts (id integer PRIMARY KEY, total int); INSERT INTO carts VALUES (1, 10), (2, 20)");
    let project = Project::new();
    project.write("1_prune.up.sql", "-- airlock:data\nDELETE FROM carts WHERE id > 1;\n");
    for store in ["backup_command = \"cat > /dev/full\"", "backup_command = \"exit 7\""] {
        project.write_config(&format!("[environments.prod]\nurl = \"{}\"\nprotected = true\n{store}\n", db.url));
        let run = in_prod(&project, &["migrate"]);
        run.expect(3);
        assert!(run.stderr.contains("the store failed: `"), "{store}: {}", run.stderr);
        assert!(run.stderr.contains("nothing was applied"), "{}", run.stderr);
        assert_eq!(db.count("SELECT count(*) FROM carts"), 2);
        assert_eq!(db.count("SELECT count(*) FROM airlock_history"), 0);
    }
    // A directory that cannot be made.
    protected(&project, &db, "");
    project.write_config(&format!(
        "[environments.prod]\nurl = \"{}\"\nprotected = true\nbackup_dir = \"/dev/full/x\"\n",
        db.url
    ));
    let run = in_prod(&project, &["migrate"]);
    run.expect(3);
    assert!(run.stderr.contains("/dev/full/x"), "{}", run.stderr);
    assert_eq!(db.count("SELECT count(*) FROM carts"), 2);
    // With a reason, the run goes on without one, and history says why.
    let run = in_prod(&project, &["migrate", "--no-backup", "--reason", "the disk is being replaced"]);
    run.expect(0);
    let history = in_prod(&project, &["--format", "json", "history"]);
    let entries = history.json()["entries"].clone();
    let skipped = entries.as_array().unwrap().iter().find(|e| e["action"] == "no-backup").expect("a no-backup entry");
    assert_eq!(skipped["reason"], "the disk is being replaced");
}

#[test]
fn a_command_store_receives_the_backup_and_then_its_manifest() {
    let db = Db::new(Engine::Sqlite);
    db.exec("CREATE TABLE carts (id integer PRIMARY KEY, total int); INSERT INTO carts VALUES (1, 10), (2, 20)");
    let project = Project::new();
    let elsewhere = tempfile::tempdir().unwrap();
    project.write_config(&format!(
        "[environments.prod]\nurl = \"{}\"\nprotected = true\nbackup_command = \"cat > '{}'/$AIRLOCK_BACKUP_FILE\"\n",
        db.url,
        elsewhere.path().display()
    ));
    project.write("1_prune.up.sql", "-- airlock:data\nDELETE FROM carts WHERE id > 1;\n");
    in_prod(&project, &["migrate"]).expect(0);
    let files = stored(elsewhere.path());
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(rows_in_backup(&elsewhere.path().join(&files[0]), "carts"), 2);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(elsewhere.path().join(&files[1])).unwrap()).unwrap();
    assert_eq!(manifest["file"].as_str().unwrap(), files[0]);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_migrate_saves_and_verifies_what_it_changes_before_changing_it() {
    migrate_saves_and_verifies_what_it_changes_before_changing_it(Engine::MySql);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_backups_are_listed_and_verified_and_a_damaged_one_is_caught() {
    listed_verified_and_caught_damaged(Engine::MySql);
}

/// On MariaDB the dump's snapshot and the digests' are started together
/// under a brief read lock: rows written all through the backup never
/// make it disagree with what it saved.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_a_backup_taken_while_rows_are_written_holds_what_its_digests_say() {
    let db = Db::new(Engine::MySql);
    db.exec(
        "CREATE TABLE users (id int PRIMARY KEY, name varchar(20)); INSERT INTO users VALUES (1, 'a'), (2, NULL); \
         CREATE TABLE carts (id int AUTO_INCREMENT PRIMARY KEY, user_id int REFERENCES users (id), note blob, price double); \
         CREATE TABLE big (id int); INSERT INTO big VALUES (1), (2), (3)",
    );
    db.exec(
        "INSERT INTO carts (user_id, note, price) SELECT 1 + seq % 2, UNHEX(MD5(seq)), seq / 7 FROM seq_1_to_50000",
    );
    let project = Project::new();
    protected(&project, &db, "");
    project.write("1_prune.up.sql", "-- airlock:data\nDELETE FROM carts WHERE id < 0;\n");
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (db, writing) = (db.handle(), writing.clone());
        std::thread::spawn(move || {
            let mut written = 0;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                db.exec("INSERT INTO carts (user_id, note, price) VALUES (2, 'x', 0.5); UPDATE carts SET price = price + 1 WHERE id = 7");
                written += 1;
            }
            written
        })
    };
    let run = in_prod(&project, &["migrate"]);
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    run.expect(0);
    assert!(written > 0);
    let dir = project.root.path().join("saved");
    let files = stored(&dir);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(&files[1])).unwrap()).unwrap();
    let tables: Vec<&str> =
        manifest["tables"].as_array().unwrap().iter().map(|t| t["table"].as_str().unwrap()).collect();
    assert_eq!(tables, ["carts", "users"], "the referenced table too, not the others: {manifest}");
    assert!(manifest["tables"][0]["rows"].as_u64().unwrap() >= 50_000, "{manifest}");
    // And it verifies again from the store.
    let id = manifest["id"].as_str().unwrap();
    in_prod(&project, &["backup", "verify", id]).expect(0);
    // The saved rows come back beside the live table, blobs and all.
    in_prod(&project, &["backup", "restore", id, "--table", "carts", "--as", "carts_saved"]).expect(0);
    let saved = manifest["tables"][0]["rows"].as_i64().unwrap();
    assert_eq!(db.count("SELECT COUNT(*) FROM carts_saved"), saved);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM carts_saved AS s JOIN carts AS c USING (id) WHERE s.note = c.note AND s.user_id = c.user_id"),
        saved
    );
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_a_missing_dump_tool_is_named_and_nothing_is_applied() {
    let db = Db::new(Engine::MySql);
    db.exec("CREATE TABLE carts (id int PRIMARY KEY); INSERT INTO carts VALUES (1), (2)");
    let project = Project::new();
    protected(&project, &db, "");
    project.write("1_prune.up.sql", "-- airlock:data\nDELETE FROM carts WHERE id > 1;\n");
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = project.bare();
    cmd.env("AIRLOCK_MYSQL_BIN", empty.path()).args(["--env", "prod", "--dir"]).arg(project.dir()).arg("migrate");
    let run = Run::of(cmd.output().unwrap());
    run.expect(3);
    assert!(
        run.stderr.contains("mariadb-dump or mysqldump is not installed (looked in AIRLOCK_MYSQL_BIN="),
        "{}",
        run.stderr
    );
    assert_eq!(db.count("SELECT count(*) FROM carts"), 2);
}

#[test]
fn without_a_scratch_database_a_backup_cannot_be_verified_and_the_run_is_refused() {
    let db = Db::new(Engine::Sqlite);
    db.exec("CREATE TABLE carts (id integer PRIMARY KEY); INSERT INTO carts VALUES (1), (2)");
    let project = Project::new();
    protected(&project, &db, "");
    project.write("1_prune.up.sql", "-- airlock:data\nDELETE FROM carts WHERE id > 1;\n");
    let mut cmd = project.bare();
    // The scratch file, and the copy, go to the temporary directory: one that does not exist.
    cmd.env("TMPDIR", project.root.path().join("nowhere"))
        .args(["--env", "prod", "--dir"])
        .arg(project.dir())
        .arg("migrate");
    let run = Run::of(cmd.output().unwrap());
    run.expect(3);
    assert!(run.stderr.contains("cannot be verified without a database to restore it into"), "{}", run.stderr);
    assert_eq!(db.count("SELECT count(*) FROM carts"), 2);
    assert!(stored(&project.root.path().join("saved")).iter().all(|f| !f.ends_with(".json")));
}

/// A table's rows are saved with those of the tables its foreign keys
/// reference, so that the backup restores whole; the other tables' rows
/// are left out, their definitions kept.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_a_backup_of_tables_holds_what_their_foreign_keys_need() {
    let db = Db::new(Engine::Postgres);
    db.exec("CREATE SCHEMA billing; CREATE TABLE billing.\"Users\" (id int PRIMARY KEY); INSERT INTO billing.\"Users\" VALUES (1), (2)");
    db.exec("CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES billing.\"Users\" (id)); INSERT INTO orders (user_id) VALUES (1), (2), (2)");
    db.exec("CREATE TABLE big (id int); INSERT INTO big SELECT generate_series(1, 5000)");
    let project = Project::new();
    protected(&project, &db, "");
    project.write("1_prune.up.sql", "-- airlock:data\nDELETE FROM orders WHERE user_id = 2;\n");
    in_prod(&project, &["migrate"]).expect(0);
    let dir = project.root.path().join("saved");
    let files = stored(&dir);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(&files[1])).unwrap()).unwrap();
    let tables: Vec<(&str, u64)> = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["table"].as_str().unwrap(), t["rows"].as_u64().unwrap()))
        .collect();
    assert_eq!(tables, [("billing.Users", 2), ("public.orders", 3)], "{manifest}");
    assert_eq!(db.count("SELECT count(*) FROM orders"), 1);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_a_missing_or_too_old_pg_dump_is_named_and_nothing_is_applied() {
    let db = Db::new(Engine::Postgres);
    db.exec("CREATE TABLE carts (id int PRIMARY KEY); INSERT INTO carts VALUES (1), (2)");
    let project = Project::new();
    protected(&project, &db, "");
    project.write("1_prune.up.sql", "-- airlock:data\nDELETE FROM carts WHERE id > 1;\n");
    let tools = tempfile::tempdir().unwrap();
    let migrate = || {
        let mut cmd = project.bare();
        cmd.env("AIRLOCK_PG_BIN", tools.path()).args(["--env", "prod", "--dir"]).arg(project.dir()).arg("migrate");
        Run::of(cmd.output().unwrap())
    };
    let missing = migrate();
    missing.expect(3);
    assert!(
        missing.stderr.contains("pg_dump for PostgreSQL")
            && missing.stderr.contains("is not installed (looked in AIRLOCK_PG_BIN="),
        "{}",
        missing.stderr
    );
    let fake = tools.path().join("pg_dump");
    std::fs::write(&fake, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let old = migrate();
    old.expect(3);
    assert!(old.stderr.contains("older than the server"), "{}", old.stderr);
    assert_eq!(db.count("SELECT count(*) FROM carts"), 2);
    assert!(stored(&project.root.path().join("saved")).iter().all(|f| !f.ends_with(".json")));
}

#[test]
fn sqlite_backups_are_listed_and_verified_and_a_damaged_one_is_caught() {
    listed_verified_and_caught_damaged(Engine::Sqlite);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_backups_are_listed_and_verified_and_a_damaged_one_is_caught() {
    listed_verified_and_caught_damaged(Engine::Postgres);
}

fn listed_verified_and_caught_damaged(engine: Engine) {
    let db = Db::new(engine);
    db.exec(
        "CREATE TABLE carts (id integer PRIMARY KEY, total int); INSERT INTO carts VALUES (1, 10), (2, 20), (3, 30)",
    );
    let project = Project::new();
    protected(&project, &db, "");
    project.write("1_prune.up.sql", "-- airlock:data\nDELETE FROM carts WHERE id > 1;\n");
    in_prod(&project, &["migrate"]).expect(0);

    let list = in_prod(&project, &["--format", "json", "backup", "list"]);
    list.expect(0);
    let json = list.json();
    let backup = &json["backups"][0];
    let id = backup["id"].as_str().unwrap().to_owned();
    assert_eq!(backup["present"], true, "{json}");
    assert_eq!(backup["tables"][0]["rows"], 3, "{json}");
    let file = std::path::PathBuf::from(backup["file"].as_str().unwrap());

    let verified = in_prod(&project, &["--format", "json", "backup", "verify", &id]);
    verified.expect(0);
    assert_eq!(verified.json()["tables"][0][1], 3, "{}", verified.stdout);

    // One byte changed in the middle: the checksum says so.
    let good = std::fs::read(&file).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x55;
    std::fs::write(&file, &bad).unwrap();
    let damaged = in_prod(&project, &["backup", "verify", &id]);
    damaged.expect(3);
    assert!(damaged.stderr.contains("the file was changed or damaged"), "{}", damaged.stderr);
    // Cut short.
    std::fs::write(&file, &good[..good.len() - 10]).unwrap();
    let short = in_prod(&project, &["backup", "verify", &id]);
    short.expect(3);
    assert!(short.stderr.contains("bytes, the manifest says"), "{}", short.stderr);
    // Gone: listed as missing, and not verifiable.
    std::fs::remove_file(&file).unwrap();
    let list = in_prod(&project, &["--format", "json", "backup", "list"]);
    assert_eq!(list.json()["backups"][0]["present"], false);
    in_prod(&project, &["backup", "verify", &id]).expect(3);
    // Given back from elsewhere, it verifies again.
    let fetched = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(fetched.path(), &good).unwrap();
    in_prod(&project, &["backup", "verify", &id, "--file", fetched.path().to_str().unwrap()]).expect(0);
    // No such backup.
    in_prod(&project, &["backup", "verify", "nope"]).expect(2);
}

/// The bin directory of the PostgreSQL tools the tests' server needs.
fn real_pg_bin() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("AIRLOCK_PG_BIN") {
        return dir.into();
    }
    let mut dirs: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    dirs.sort();
    dirs.pop().expect("a PostgreSQL installed by scripts/test").1
}

/// A tool that says it is of a version new enough, then fails as `script` does.
fn failing_tool(dir: &std::path::Path, name: &str, script: &str) {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("#!/bin/sh\nif [ \"$1\" = --version ]; then echo '{name} (PostgreSQL) 99.0'; exit 0; fi\n{script}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_a_failing_pg_dump_or_pg_restore_is_named_with_what_it_said_and_nothing_is_applied() {
    let db = Db::new(Engine::Postgres);
    db.exec("CREATE TABLE carts (id int PRIMARY KEY); INSERT INTO carts VALUES (1), (2)");
    let project = Project::new();
    protected(&project, &db, "");
    project.write("1_prune.up.sql", "-- airlock:data\nDELETE FROM carts WHERE id > 1;\n");
    let tools = tempfile::tempdir().unwrap();
    let migrate = || {
        let mut cmd = project.bare();
        cmd.env("AIRLOCK_PG_BIN", tools.path()).args(["--env", "prod", "--dir"]).arg(project.dir()).arg("migrate");
        Run::of(cmd.output().unwrap())
    };
    failing_tool(tools.path(), "pg_dump", "echo 'pg_dump: error: could not write: disk full' >&2; exit 1");
    let dump = migrate();
    dump.expect(3);
    assert!(
        dump.stderr.contains("the backup failed: ")
            && dump.stderr.contains("pg_dump exited with status 1: pg_dump: error: could not write: disk full"),
        "{}",
        dump.stderr
    );
    std::os::unix::fs::symlink(real_pg_bin().join("pg_dump"), tools.path().join("pg_dump.real")).unwrap();
    std::fs::rename(tools.path().join("pg_dump.real"), tools.path().join("pg_dump")).unwrap();
    failing_tool(
        tools.path(),
        "pg_restore",
        "cat > /dev/null; echo 'pg_restore: error: could not execute query' >&2; exit 1",
    );
    let restore = migrate();
    restore.expect(3);
    assert!(
        restore.stderr.contains("it did not restore: ")
            && restore.stderr.contains("pg_restore exited with status 1: pg_restore: error: could not execute query"),
        "{}",
        restore.stderr
    );
    assert_eq!(db.count("SELECT count(*) FROM carts"), 2);
    assert!(stored(&project.root.path().join("saved")).is_empty(), "a failed backup leaves nothing in the store");
}

#[test]
fn a_backup_over_budget_is_taken_only_when_told() {
    let db = Db::new(Engine::Sqlite);
    db.exec("CREATE TABLE carts (id integer PRIMARY KEY); INSERT INTO carts VALUES (1), (2)");
    let project = Project::new();
    protected(&project, &db, "backup_budget = \"1kB\"\n");
    project.write("1_prune.up.sql", "-- airlock:data\nDELETE FROM carts WHERE id > 1;\n");
    let refused = in_prod(&project, &["migrate"]);
    refused.expect(3);
    assert!(
        refused.stderr.contains(
            "the backup before migrating is over the 1 kB budget (`backup_budget`): run with --backup to take it anyway, or --no-backup to run without one (with --reason, in a protected environment)"
        ),
        "{}",
        refused.stderr
    );
    assert_eq!(db.count("SELECT count(*) FROM carts"), 2);
    in_prod(&project, &["migrate", "--backup"]).expect(0);
    assert_eq!(db.count("SELECT count(*) FROM carts"), 1);
    assert_eq!(stored(&project.root.path().join("saved")).len(), 2);

    // Until then the time was reckoned at a default pace; from now on at
    // this database's own: say its backup took a minute for what it saved.
    let listed = in_prod(&project, &["--format", "json", "backup", "list"]);
    let catalog_bytes = listed.json()["backups"][0]["catalog_bytes"].as_u64().expect("the catalog size recorded");
    assert!(catalog_bytes > 0, "{}", listed.stdout);
    db.exec("UPDATE airlock_events SET detail = json_set(detail, '$.duration_ms', 60000) WHERE kind = 'backup'");
    protected(&project, &db, "backup_budget = \"10s\"\n");
    project.write("2_prune.up.sql", "-- airlock:data\nDELETE FROM carts WHERE id > 0;\n");
    let plan = plan_json(&project, 0);
    let backup = &plan["backup"];
    assert_eq!(backup["pace"], "at the pace of this database's last 1 backup(s)", "{plan}");
    let seconds = backup["estimated_seconds"].as_f64().unwrap();
    let bytes = backup["estimated_bytes"].as_f64().unwrap();
    assert!((seconds - 60.0 * bytes / catalog_bytes as f64).abs() < 0.01, "{plan}");
    assert!(backup["estimated_stored_bytes"].as_u64().unwrap() > 0, "{plan}");
    assert_eq!(backup["over_budget"], "over the 10 s budget (`backup_budget`)", "{plan}");
    let text = in_prod(&project, &["plan"]);
    assert!(
        text.stdout.contains("time reckoned at the pace of this database's last 1 backup(s); about"),
        "{}",
        text.stdout
    );
    in_prod(&project, &["migrate"]).expect(3);
    assert_eq!(db.count("SELECT count(*) FROM carts"), 1);
}

#[test]
fn sqlite_a_damaged_table_comes_back_beside_the_live_one_and_whole_into_another_database() {
    a_damaged_table_comes_back_beside_the_live_one_and_whole_into_another_database(Engine::Sqlite);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_a_damaged_table_comes_back_beside_the_live_one_and_whole_into_another_database() {
    a_damaged_table_comes_back_beside_the_live_one_and_whole_into_another_database(Engine::Postgres);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_a_damaged_table_comes_back_beside_the_live_one_and_whole_into_another_database() {
    a_damaged_table_comes_back_beside_the_live_one_and_whole_into_another_database(Engine::MySql);
}

/// A migration accepted in a protected environment damages `carts` (a
/// rounding type change on PostgreSQL, a data change on SQLite): its
/// backup brings the rows back beside the live table, identical, and
/// nothing live is overwritten.
fn a_damaged_table_comes_back_beside_the_live_one_and_whole_into_another_database(engine: Engine) {
    let db = Db::new(engine);
    db.exec(
        "CREATE TABLE carts (id integer PRIMARY KEY, total numeric(10,2), note text NOT NULL); \
         INSERT INTO carts VALUES (1, 10.25, 'a'), (2, 20.50, ''), (3, 30.75, 'ünï \"q\" ''s'); \
         CREATE TABLE other (id integer PRIMARY KEY)",
    );
    let before = db.rows("SELECT id, total, note FROM carts ORDER BY id");
    let project = Project::new();
    protected(&project, &db, "");
    // (A rounding type change would be refused by plan's cast check: a dropped column is not.)
    let damage = match engine {
        Engine::Postgres => {
            "-- airlock:allow drop-column totals move to the ledger\nALTER TABLE carts DROP COLUMN total;\n"
        }
        _ => "-- airlock:data\nUPDATE carts SET total = 0 WHERE id > 1;\n",
    };
    project.write("1_damage.up.sql", damage);
    in_prod(&project, &["migrate"]).expect(0);
    let damaged = db.rows("SELECT * FROM carts ORDER BY id");
    assert_ne!(damaged, before);

    let list = in_prod(&project, &["--format", "json", "backup", "list"]);
    let id = list.json()["backups"][0]["id"].as_str().unwrap().to_owned();
    let name = format!("carts_restored_{}", id.to_lowercase().replace('-', "_"));
    let restore = in_prod(&project, &["--format", "json", "backup", "restore", &id, "--table", "carts"]);
    restore.expect(0);
    let json = restore.json();
    let shown = if engine == Engine::Postgres { format!("public.{name}") } else { name.clone() };
    assert_eq!(json["tables"][0]["restored_as"], shown.as_str(), "{json}");
    assert_eq!(json["tables"][0]["rows"], 3, "{json}");
    assert_eq!(db.rows(&format!("SELECT id, total, note FROM {name} ORDER BY id")), before);
    assert_eq!(db.rows("SELECT * FROM carts ORDER BY id"), damaged, "the live table is left alone");
    // Restored with its key: a person can join on it to copy rows back.
    db.exec(&match engine {
        Engine::MySql => format!("UPDATE carts JOIN {name} AS r ON r.id = carts.id SET carts.note = r.note"),
        _ => format!("UPDATE carts SET note = r.note FROM {name} AS r WHERE r.id = carts.id"),
    });

    // The name is taken now: refused, saying which, and nothing changes.
    let again = in_prod(&project, &["backup", "restore", &id, "--table", "carts"]);
    again.expect(1);
    assert!(again.stderr.contains(&name), "{}", again.stderr);
    assert_eq!(db.count(&format!("SELECT count(*) FROM {name}")), 3);
    // Under another name.
    in_prod(&project, &["backup", "restore", &id, "--table", "carts", "--as", "carts_back"]).expect(0);
    assert_eq!(db.rows("SELECT id, total, note FROM carts_back ORDER BY id"), before);
    // What it did not save is named with what it did.
    let missing = in_prod(&project, &["backup", "restore", &id, "--table", "other"]);
    missing.expect(2);
    assert!(
        missing.stderr.contains("holds no rows of `other`") && missing.stderr.contains("carts"),
        "{}",
        missing.stderr
    );
    in_prod(&project, &["backup", "restore", &id, "--as", "x"]).expect(2);
    assert!(!db.table_exists("x"));

    // Each restore is in history.
    let history = in_prod(&project, &["--format", "json", "history"]);
    let entries = history.json()["entries"].clone();
    let restores: Vec<&serde_json::Value> =
        entries.as_array().unwrap().iter().filter(|e| e["action"] == "restore").collect();
    assert_eq!(restores.len(), 2, "{entries}");
    assert!(restores.iter().any(|e| e["reason"].as_str().unwrap().contains(&shown)), "{entries}");

    // The whole backup into another database, empty (for SQLite, a file not made yet).
    let spare = Db::new(engine);
    in_prod(&project, &["backup", "restore", &id, "--into", &spare.url]).expect(0);
    assert_eq!(spare.rows("SELECT id, total, note FROM carts ORDER BY id"), before);
    // Not empty any more: refused, and what it holds stays.
    let refused = in_prod(&project, &["backup", "restore", &id, "--into", &spare.url]);
    refused.expect(2);
    assert!(
        refused.stderr.contains("the database to restore into")
            && refused.stderr.contains("must be empty (nothing was changed in it)"),
        "{}",
        refused.stderr
    );
    assert_eq!(spare.rows("SELECT id, total, note FROM carts ORDER BY id"), before);
    // Nor the database itself.
    let itself = in_prod(&project, &["backup", "restore", &id, "--into", &db.url]);
    itself.expect(2);
    assert!(itself.stderr.contains("is the target itself"), "{}", itself.stderr);
    assert_eq!(db.count("SELECT count(*) FROM carts"), 3);
    // Nor one of another engine.
    let other = if engine == Engine::Sqlite { "postgres://nobody@127.0.0.1:1/none" } else { "sqlite:elsewhere.db" };
    let engines = in_prod(&project, &["backup", "restore", &id, "--into", other]);
    engines.expect(2);
    assert!(engines.stderr.contains("a database to restore into is on the target's engine"), "{}", engines.stderr);
    // A restored table's name too long for the engine says how to name it.
    if engine != Engine::Sqlite {
        let long = "t".repeat(60);
        let named = in_prod(&project, &["backup", "restore", &id, "--table", "carts", "--as", &long]);
        named.expect(0);
        let too_long =
            in_prod(&project, &["backup", "restore", &id, "--table", "carts", "--as", &format!("{long}xxxx")]);
        too_long.expect(2);
        assert!(too_long.stderr.contains("longer than the 63 bytes"), "{}", too_long.stderr);
    }
}

/// `airlock --env prod migrate` with one new data migration on `carts`.
fn migrate_another(project: &Project, version: u32) -> Run {
    project.write(
        &format!("{version}_touch.up.sql"),
        &format!("-- airlock:data\nUPDATE carts SET total = {version} WHERE id = 1;\n"),
    );
    in_prod(project, &["migrate"])
}

#[test]
fn retention_deletes_what_backup_keep_and_backup_max_age_no_longer_cover() {
    let db = Db::new(Engine::Sqlite);
    db.exec("CREATE TABLE carts (id integer PRIMARY KEY, total int); INSERT INTO carts VALUES (1, 10)");
    let project = Project::new();
    protected(&project, &db, "backup_keep = 2\n");
    let dir = project.root.path().join("saved");
    for version in 1..=4 {
        let run = migrate_another(&project, version);
        run.expect(0);
        if version == 3 {
            assert!(
                run.all().contains("deleted backup ") && run.all().contains("backup_keep = 2 keeps"),
                "{}",
                run.all()
            );
        }
    }
    // The two newest are in the store; the two oldest were deleted, data and manifest.
    let list = in_prod(&project, &["--format", "json", "backup", "list"]);
    let backups = list.json()["backups"].as_array().unwrap().clone();
    assert_eq!(backups.len(), 4);
    let ids: Vec<String> = backups.iter().map(|b| b["id"].as_str().unwrap().to_owned()).collect();
    let mut kept: Vec<String> =
        ids[..2].iter().flat_map(|id| [format!("{id}.backup.zst"), format!("{id}.json")]).collect();
    kept.sort();
    assert_eq!(stored(&dir), kept);
    assert!(backups[..2].iter().all(|b| b["deleted"].is_null() && b["present"] == true), "{backups:?}");
    assert!(
        backups[2..].iter().all(|b| b["deleted"].as_str().unwrap().ends_with("backup_keep = 2 keeps")),
        "{backups:?}"
    );
    // A deleted backup cannot be verified or restored without its data.
    let gone = in_prod(&project, &["backup", "verify", &ids[3]]);
    gone.expect(3);
    assert!(gone.stderr.contains("retention deleted it"), "{}", gone.stderr);
    in_prod(&project, &["backup", "verify", &ids[0]]).expect(0);
    // In history.
    let history = in_prod(&project, &["--format", "json", "history"]);
    let entries = history.json()["entries"].clone();
    let deleted = entries.as_array().unwrap().iter().filter(|e| e["action"] == "backup-deleted").count();
    assert_eq!(deleted, 2, "{entries}");

    // By age: a backup older than backup_max_age goes once a newer one is taken.
    protected(&project, &db, "backup_max_age = \"1s\"\n");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    migrate_another(&project, 5).expect(0);
    let list = in_prod(&project, &["--format", "json", "backup", "list"]);
    let backups = list.json()["backups"].as_array().unwrap().clone();
    assert_eq!(backups.iter().filter(|b| b["deleted"].is_null()).count(), 1, "{backups:?}");
    assert!(backups[1]["deleted"].as_str().unwrap().starts_with("backup_max_age: "), "{backups:?}");
    assert_eq!(stored(&dir).len(), 2);
}

#[test]
fn a_backup_killed_at_any_instant_is_never_listed_as_made() {
    let db = Db::new(Engine::Sqlite);
    db.exec(
        "CREATE TABLE carts (id integer PRIMARY KEY, total int, note text); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) \
         INSERT INTO carts SELECT i, i, printf('%0100d', i) FROM n",
    );
    let project = Project::new();
    protected(&project, &db, "");
    let dir = project.root.path().join("saved");
    // A whole run, timed, to spread the kills over one.
    let started = std::time::Instant::now();
    migrate_another(&project, 1).expect(0);
    let whole = started.elapsed();
    for round in 0..10u32 {
        let version = round + 2;
        project.write(
            &format!("{version}_touch.up.sql"),
            &format!("-- airlock:data\nUPDATE carts SET total = {version} WHERE id = 1;\n"),
        );
        let mut child = project
            .bare()
            .args(["--env", "prod", "--dir"])
            .arg(project.dir())
            .arg("migrate")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // From the start to past the end of a run: the kills land before, in
        // and after the backup (its commit included).
        std::thread::sleep(whole * round * 3 / 20);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Whatever the instant: a listed backup is whole, with its manifest beside it.
        let list = in_prod(&project, &["--format", "json", "backup", "list"]);
        list.expect(0);
        let files = stored(&dir);
        for backup in list.json()["backups"].as_array().unwrap() {
            let id = backup["id"].as_str().unwrap();
            assert_eq!(backup["present"], true, "round {round}: {backup}");
            assert!(
                files.contains(&format!("{id}.json")),
                "round {round}: {id} listed without its manifest: {files:?}"
            );
        }
        // Anything else in the store is a part, named as one or without a manifest.
        for file in &files {
            let id = file.split('.').next().unwrap();
            let whole_pair = files.contains(&format!("{id}.json")) && files.contains(&format!("{id}.backup.zst"));
            assert!(
                whole_pair || file.ends_with(".partial") || file.ends_with(".backup.zst"),
                "round {round}: {files:?}"
            );
        }
    }
    // Some were killed in the middle of their backup (most are), and say so.
    let parts = stored(&dir).iter().filter(|f| f.ends_with(".partial")).count();
    assert!(parts > 0, "no round was killed in the middle of a backup: {:?}", stored(&dir));
    let list = in_prod(&project, &["--format", "json", "backup", "list"]);
    assert_eq!(list.json()["leftovers"].as_array().unwrap().len(), parts, "{}", list.stdout);
    // Every listed backup verifies, and a run after it all finishes the work.
    for backup in list.json()["backups"].as_array().unwrap() {
        in_prod(&project, &["backup", "verify", backup["id"].as_str().unwrap()]).expect(0);
    }
    in_prod(&project, &["migrate"]).expect(0);
    assert_eq!(db.count("SELECT total FROM carts WHERE id = 1"), 11);
}

#[test]
fn sqlite_replace_puts_the_saved_rows_back_and_keeps_the_live_ones_beside() {
    replace_puts_the_saved_rows_back_and_keeps_the_live_ones_beside(Engine::Sqlite);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_replace_puts_the_saved_rows_back_and_keeps_the_live_ones_beside() {
    replace_puts_the_saved_rows_back_and_keeps_the_live_ones_beside(Engine::Postgres);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_replace_puts_the_saved_rows_back_and_keeps_the_live_ones_beside() {
    replace_puts_the_saved_rows_back_and_keeps_the_live_ones_beside(Engine::MySql);
}

fn replace_puts_the_saved_rows_back_and_keeps_the_live_ones_beside(engine: Engine) {
    let db = Db::new(engine);
    db.exec(
        "CREATE TABLE carts (id integer PRIMARY KEY, total int, note text); \
         INSERT INTO carts VALUES (1, 10, 'a'), (2, 20, 'b'), (3, 30, NULL); \
         CREATE TABLE items (id integer PRIMARY KEY, cart integer REFERENCES carts (id)); INSERT INTO items VALUES (1, 2)",
    );
    let carts = |table: &str| db.rows(&format!("SELECT id, total, note FROM {table} ORDER BY id"));
    let before = carts("carts");
    let project = Project::new();
    protected(&project, &db, "");
    project.write(
        "1_damage.up.sql",
        "-- airlock:data\nUPDATE carts SET total = 0 WHERE id > 1;\nDELETE FROM carts WHERE id = 3;\n",
    );
    in_prod(&project, &["migrate"]).expect(0);
    // A row written after the backup.
    db.exec("INSERT INTO carts VALUES (4, 40, 'new')");
    let live = carts("carts");
    let list = in_prod(&project, &["--format", "json", "backup", "list"]);
    let id = list.json()["backups"][0]["id"].as_str().unwrap().to_owned();
    let suffix = id.to_lowercase().replace('-', "_");

    // Protected: not without a reason, and nothing changes.
    let refused = in_prod(&project, &["backup", "restore", &id, "--table", "carts", "--replace"]);
    refused.expect(3);
    assert!(refused.stderr.contains("--reason"), "{}", refused.stderr);
    assert_eq!(carts("carts"), live);
    assert!(!db.table_exists(&format!("carts_restored_{suffix}")));

    let run = in_prod(
        &project,
        &[
            "--format",
            "json",
            "backup",
            "restore",
            &id,
            "--table",
            "carts",
            "--replace",
            "--reason",
            "the prune was wrong",
        ],
    );
    run.expect(0);
    assert_eq!(carts("carts"), before, "the saved rows, by key");
    assert_eq!(carts(&format!("carts_replaced_{suffix}")), live, "the live rows before, kept");
    let replaced = run.json()["tables"][0]["replaced"].clone();
    assert_eq!(
        (replaced["kept"].clone(), replaced["deleted"].clone(), replaced["written"].clone()),
        (3.into(), 1.into(), 3.into()),
        "{replaced}"
    );
    assert_eq!(db.count("SELECT cart FROM items WHERE id = 1"), 2, "rows that refer to it are untouched");
    let history = in_prod(&project, &["--format", "json", "history"]);
    assert!(history.stdout.contains("the prune was wrong"), "{}", history.stdout);

    // A row to delete would cascade into another table: refused, nothing changed.
    db.exec(
        "CREATE TABLE cart_lines (id integer PRIMARY KEY, cart integer REFERENCES carts (id) ON DELETE CASCADE); \
         INSERT INTO carts VALUES (5, 50, 'x'); INSERT INTO cart_lines VALUES (1, 5)",
    );
    let cascading = in_prod(
        &project,
        &["backup", "restore", &id, "--table", "carts", "--as", "carts_again", "--replace", "--reason", "again"],
    );
    cascading.expect(1);
    assert!(
        cascading.stderr.contains("cart_lines") && cascading.stderr.contains("nothing was changed"),
        "{}",
        cascading.stderr
    );
    assert!(!db.table_exists("carts_again"));
    assert_eq!(db.count("SELECT count(*) FROM cart_lines"), 1);
    assert_eq!(db.count("SELECT count(*) FROM carts"), 4);
}

/// Ctrl-C (or a SIGTERM) while the backup is taken stops the run there,
/// as an interruption (exit 130), with nothing applied, no backup kept
/// and no part of one left behind.
#[test]
fn an_interrupted_backup_stops_the_run_and_keeps_nothing() {
    let db = Db::new(Engine::Sqlite);
    db.exec(
        "CREATE TABLE carts (id integer PRIMARY KEY, total int, note text); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) \
         INSERT INTO carts SELECT i, i, printf('%0100d', i) FROM n",
    );
    let project = Project::new();
    protected(&project, &db, "");
    let dir = project.root.path().join("saved");
    migrate_another(&project, 1).expect(0);
    let mut landed = 0;
    for version in 2..=4u32 {
        project.write(
            &format!("{version}_touch.up.sql"),
            &format!("-- airlock:data\nUPDATE carts SET total = {version} WHERE id = 1;\n"),
        );
        // An attempt whose signal came after its backup kept that one.
        let kept = stored(&dir).iter().filter(|f| f.ends_with(".json")).count();
        let mut child = project
            .bare()
            .args(["--env", "prod", "--dir"])
            .arg(project.dir())
            .arg("migrate")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The signal goes as soon as the backup's data file appears: on a
        // busy machine a fixed delay lands before or after it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !stored(&dir).iter().any(|f| f.ends_with(".partial") && !f.ends_with(".json.partial"))
            && child.try_wait().unwrap().is_none()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        let run = Run::of(child.wait_with_output().unwrap());
        if !run.stderr.contains("while taking the backup") {
            continue;
        }
        landed += 1;
        run.expect(130);
        assert!(run.stderr.contains("nothing was changed, and no backup was kept"), "{}", run.stderr);
        assert_ne!(db.count("SELECT total FROM carts WHERE id = 1"), version as i64, "not applied");
        let files = stored(&dir);
        assert_eq!(files.iter().filter(|f| f.ends_with(".json")).count(), kept, "{files:?}");
        assert!(!files.iter().any(|f| f.ends_with(".partial")), "{files:?}");
        // And the next run takes it from there.
        in_prod(&project, &["migrate"]).expect(0);
        assert_eq!(db.count("SELECT total FROM carts WHERE id = 1"), version as i64);
        break;
    }
    assert_eq!(landed, 1, "no signal landed while the backup was taken");
}

/// A partitioned table's rows are its partitions': they are saved with
/// it. And a database with a time zone of its own (which a scratch
/// database does not inherit) still verifies: digests read rows under
/// the same settings everywhere.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_a_partitioned_table_is_saved_with_its_partitions_whatever_the_databases_time_zone() {
    let db = Db::new(Engine::Postgres);
    let name = db.url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    db.exec(&format!("ALTER DATABASE {name} SET timezone = 'America/New_York'"));
    db.exec(
        "CREATE TABLE events (id int, at timestamptz NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at); \
         CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01'); \
         CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01'); \
         INSERT INTO events VALUES (1, '2025-06-01 12:00+00'), (2, '2026-06-01 12:00+00'), (3, '2026-07-01 12:00+00')",
    );
    let project = Project::new();
    protected(&project, &db, "");
    project.write("1_prune.up.sql", "-- airlock:data\nDELETE FROM events WHERE id = 3;\n");
    in_prod(&project, &["migrate"]).expect(0);
    let list = in_prod(&project, &["--format", "json", "backup", "list"]);
    let backup = list.json()["backups"][0].clone();
    let tables: Vec<(&str, u64)> = backup["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["table"].as_str().unwrap(), t["rows"].as_u64().unwrap()))
        .collect();
    assert_eq!(tables, [("public.events", 0), ("public.events_2025", 1), ("public.events_2026", 2)], "{backup}");
    in_prod(&project, &["backup", "verify", backup["id"].as_str().unwrap()]).expect(0);
}

/// The digests saved are read from pg_dump's own archive and compared with
/// the restored copy's, read from the table: both must write every kind of
/// value alike, whatever the database's own settings say.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_values_of_every_kind_are_saved_and_verified_whatever_the_databases_settings() {
    let db = Db::new(Engine::Postgres);
    let name = db.url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    for setting in [
        "timezone = 'Asia/Kolkata'",
        "datestyle = 'SQL, DMY'",
        "intervalstyle = 'iso_8601'",
        "bytea_output = 'escape'",
        "extra_float_digits = 0",
    ] {
        db.exec(&format!("ALTER DATABASE {name} SET {setting}"));
    }
    db.exec(
        "CREATE TABLE kinds (id int PRIMARY KEY, at timestamptz, day date, span interval, raw bytea, ratio float8, \
         tiny real, amount numeric(20,6), doc jsonb, tags text[], note text, key uuid, rel regclass, twice int GENERATED ALWAYS AS (id * 2) STORED); \
         INSERT INTO kinds VALUES \
         (1, '2026-03-01 23:30:00+00', '2026-02-28', '1 year 2 mons 3 days 04:05:06.789', '\\x00ff5c0a', 0.1, 1.1, 12345.678901, \
          '{\"b\": [1, 2.50], \"a\": null}', ARRAY['x', 'y z', NULL], E'tab\\there\\nnew line \\\\ back', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'kinds'), \
         (2, '-infinity', 'infinity', '-1 day', '', 'NaN', '-Infinity', -0.000001, '[]', '{}', '', NULL, NULL), \
         (3, NULL, NULL, NULL, NULL, 1e-310, 3.4e38, NULL, NULL, NULL, NULL, NULL, NULL)",
    );
    let project = Project::new();
    protected(&project, &db, "");
    project.write("1_prune.up.sql", "-- airlock:data\nDELETE FROM kinds WHERE id = 3;\n");
    let run = in_prod(&project, &["migrate"]);
    run.expect(0);
    let list = in_prod(&project, &["--format", "json", "backup", "list"]);
    let backup = list.json()["backups"][0].clone();
    assert_eq!(backup["tables"][0]["rows"], 3, "{backup}");
    assert!(backup["tables"][0]["digest"].as_str().unwrap().starts_with("xxh3-128:"), "{backup}");
    in_prod(&project, &["backup", "verify", backup["id"].as_str().unwrap()]).expect(0);
    // And back beside the live table, every value as it was.
    in_prod(&project, &["backup", "restore", backup["id"].as_str().unwrap(), "--table", "kinds", "--as", "kinds_back"])
        .expect(0);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM kinds_back b JOIN kinds k USING (id) WHERE (b.at, b.day, b.span, b.raw, b.ratio, b.tiny, b.amount, b.doc, b.tags, b.note, b.key, b.rel) \
             IS NOT DISTINCT FROM (k.at, k.day, k.span, k.raw, k.ratio, k.tiny, k.amount, k.doc, k.tags, k.note, k.key, k.rel)"
        ),
        2
    );
    assert_eq!(db.count("SELECT count(*) FROM kinds_back"), 3);
}

/// A large table's restored copy is read in two halves at once (a second
/// connection, one snapshot): the two digests added up are the dump's.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_a_large_table_is_verified_in_two_halves_that_add_up_to_the_dump() {
    let db = Db::new(Engine::Postgres);
    db.exec(
        "CREATE TABLE big (id bigint PRIMARY KEY, note text); \
         INSERT INTO big SELECT i, repeat(md5(i::text), 3) FROM generate_series(1, 250000) AS i",
    );
    // Past the size read in halves (4096 pages of 8 kB).
    assert!(db.count("SELECT pg_relation_size('big') / 8192") >= 4096);
    let project = Project::new();
    protected(&project, &db, "");
    project.write("1_prune.up.sql", "-- airlock:data\nDELETE FROM big WHERE id % 2 = 0;\n");
    in_prod(&project, &["migrate"]).expect(0);
    let list = in_prod(&project, &["--format", "json", "backup", "list"]);
    let backup = list.json()["backups"][0].clone();
    assert_eq!(backup["tables"][0]["rows"], 250_000, "{backup}");
    // Both halves, or the rows would not add up to the dump's.
    in_prod(&project, &["backup", "verify", backup["id"].as_str().unwrap()]).expect(0);
    assert_eq!(db.count("SELECT count(*) FROM big"), 125_000);
}
