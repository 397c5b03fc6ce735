//! Expand/contract on real engines: `airlock expand` turns a column rename
//! or type change into expand, backfill, constraints and contract
//! migrations; `migrate` stops before the contract until `--contract`; an
//! "old app" writing through the old name and a "new app" writing through
//! the new one both keep working at every phase, and every row ends with
//! the last value either wrote.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Db, Engine, Project};
use mysql_async::prelude::Queryable;

/// `accounts (id, email NOT NULL DEFAULT '')`, rows 1..=200, with an index on email.
fn accounts(project: &Project, db: &Db) {
    let fill = match db.engine {
        Engine::Postgres => "INSERT INTO accounts (id, email) SELECT g, 'seed-' || g FROM generate_series(1, 200) g;",
        _ => "INSERT INTO accounts (id, email) SELECT seq, CONCAT('seed-', seq) FROM seq_1_to_200;",
    };
    project.write(
        "1_accounts.up.sql",
        &format!(
            "CREATE TABLE accounts (id bigint PRIMARY KEY, email varchar(100) NOT NULL DEFAULT '', note varchar(20));\nCREATE INDEX accounts_email_idx ON accounts (email);\n{fill}\n"
        ),
    );
    project.write("1_accounts.down.sql", "DROP TABLE accounts;\n");
    project.run(db, &["migrate"]).expect(0);
}

fn created(project: &Project) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(project.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The files, the stop before the contract, what status and the gate say,
/// and the contract: the old column gone, the new one with its NOT NULL,
/// default and index name.
fn a_rename_expands_and_contracts_on_command(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    accounts(&project, &db);
    project.write("2_rename_email.up.sql", "ALTER TABLE accounts RENAME COLUMN email TO email_address;\n");
    let file = project.dir().join("2_rename_email.up.sql");
    let run = project.run(&db, &["expand", file.to_str().unwrap()]);
    run.expect(0);
    assert!(run.stdout.contains("replaced") && run.stdout.contains("rename of `accounts.email` to `email_address`"));
    let names = created(&project);
    assert!(names.contains(&"2_rename_email_expand.up.sql".to_owned()), "{names:?}");
    assert!(names.contains(&"2_rename_email_expand.down.sql".to_owned()), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("3_rename_email_backfill")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("4_rename_email_constraints")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("5_rename_email_contract")), "{names:?}");
    assert!(!names.contains(&"2_rename_email.up.sql".to_owned()), "the file it expanded is replaced: {names:?}");
    // What it wrote passes airlock's own lint.
    project.run(&db, &["lint"]).expect(0);

    let run = project.run(&db, &["migrate"]);
    run.expect(0);
    assert!(
        run.all().contains("is a contract: expanded; contract pending (old app versions may still be running)"),
        "{}",
        run.all()
    );
    assert!(db.column_exists("accounts", "email") && db.column_exists("accounts", "email_address"));
    assert_eq!(db.count("SELECT count(*) FROM accounts WHERE email_address = email"), 200, "backfilled");
    // One row written by each app in turn, case-only changes included
    // (MariaDB's default collation calls 'Case' and 'case' equal).
    db.exec("INSERT INTO accounts (id, email) VALUES (500, 'Case')");
    let both = "SELECT concat(email, '|', email_address) FROM accounts WHERE id = 500";
    assert_eq!(db.scalar(both).as_deref(), Some("Case|Case"));
    for (column, value) in
        [("email", "case"), ("email_address", "Other"), ("email_address", "other"), ("email", "Last")]
    {
        db.exec(&format!("UPDATE accounts SET {column} = '{value}' WHERE id = 500"));
        assert_eq!(db.scalar(both), Some(format!("{value}|{value}")), "after {column} = {value}");
    }
    db.exec("INSERT INTO accounts (id, email_address) VALUES (501, 'New')");
    assert_eq!(db.scalar("SELECT email FROM accounts WHERE id = 501").as_deref(), Some("New"));
    let status = project.run(&db, &["status"]);
    assert!(status.stdout.contains("Expanded") && status.stdout.contains("contract pending"), "{}", status.all());
    let json = project.run(&db, &["--format", "json", "status"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(v["expanded"].as_str().unwrap().contains("5 (rename_email_contract)"), "{v}");
    assert_eq!(v["pending"][0]["contract"], true);
    // The new app's release needs the expand, not the contract.
    project.run(&db, &["gate", "--require", "latest"]).expect(0);
    let gate = project.run(&db, &["gate", "--require", "5"]);
    gate.expect(4);
    assert!(gate.all().contains("contract 5 (rename_email_contract): expanded; contract pending"), "{}", gate.all());

    project.run(&db, &["migrate", "--contract"]).expect(0);
    assert!(!db.column_exists("accounts", "email") && db.column_exists("accounts", "email_address"));
    db.exec("INSERT INTO accounts (id) VALUES (1000)");
    assert_eq!(db.scalar("SELECT email_address FROM accounts WHERE id = 1000").as_deref(), Some(""), "default kept");
    let null = match engine {
        Engine::Postgres => {
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'email_address' AND is_nullable = 'NO'"
        }
        _ => {
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'accounts' AND column_name = 'email_address' AND is_nullable = 'NO'"
        }
    };
    assert_eq!(db.count(null), 1, "NOT NULL kept");
    let index = match engine {
        Engine::Postgres => {
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'accounts_email_idx' AND indexdef LIKE '%(email_address)%'"
        }
        _ => {
            "SELECT count(*) FROM information_schema.statistics WHERE table_schema = DATABASE() AND index_name = 'accounts_email_address_idx' AND column_name = 'email_address'"
        }
    };
    assert_eq!(
        db.count(index),
        1,
        "the index on the new column (PostgreSQL: under its old name; MySQL and MariaDB: its new one)"
    );
    assert_eq!(db.count("SELECT count(*) FROM accounts WHERE email_address LIKE 'seed-%'"), 200);
}

/// SQLite: refused with the recipe, the file left as it was.
fn sqlite_is_refused_with_the_rebuild_recipe(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id integer PRIMARY KEY, a text);\n");
    project.run(&db, &["migrate"]).expect(0);
    let sql = "ALTER TABLE t RENAME COLUMN a TO b;\n";
    project.write("2_rename.up.sql", sql);
    let run = project.run(&db, &["expand", project.dir().join("2_rename.up.sql").to_str().unwrap()]);
    run.expect(2);
    assert!(run.stderr.contains("use a table rebuild migration"), "{}", run.all());
    assert_eq!(std::fs::read_to_string(project.dir().join("2_rename.up.sql")).unwrap(), sql);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn postgres_a_rename_expands_and_contracts_on_command() {
    a_rename_expands_and_contracts_on_command(Engine::Postgres);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs MariaDB: run `scripts/test`, which starts it")]
fn mariadb_a_rename_expands_and_contracts_on_command() {
    a_rename_expands_and_contracts_on_command(Engine::MySql);
}

#[test]
fn sqlite_expand_is_refused_with_the_rebuild_recipe() {
    sqlite_is_refused_with_the_rebuild_recipe(Engine::Sqlite);
}

/// A connection an app writes through.
enum Conn {
    Pg(tokio_postgres::Client),
    My(mysql_async::Conn),
}

impl Conn {
    async fn open(db: &Db) -> Conn {
        match db.engine {
            Engine::Postgres => {
                let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                Conn::Pg(client)
            }
            _ => Conn::My(mysql_async::Conn::new(mysql_async::Opts::from_url(&db.url).unwrap()).await.unwrap()),
        }
    }

    async fn exec(&mut self, sql: &str) -> Result<(), String> {
        match self {
            Conn::Pg(c) => c.batch_execute(sql).await.map_err(|e| format!("{sql}: {e:?}")),
            Conn::My(c) => c.query_drop(sql).await.map_err(|e| format!("{sql}: {e}")),
        }
    }

    async fn text(&mut self, sql: &str) -> Result<Option<String>, String> {
        match self {
            Conn::Pg(c) => {
                let rows = c.simple_query(sql).await.map_err(|e| format!("{sql}: {e:?}"))?;
                Ok(rows.into_iter().find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                    _ => None,
                }))
            }
            Conn::My(c) => {
                c.query_first::<Option<String>, _>(sql).await.map(Option::flatten).map_err(|e| format!("{sql}: {e}"))
            }
        }
    }
}

/// What one app did: the last value it wrote to each row, how many writes, the errors.
#[derive(Default)]
struct Wrote {
    last: HashMap<i64, String>,
    writes: u64,
    errors: Vec<String>,
}

/// An app until `stop`: inserts rows of its own and updates the seed rows
/// it owns (`owns`), through `column`, a few hundred writes a second; once
/// `check` is set, reads each write back through `other` and counts a
/// difference as an error.
/// Where an app writes (`table.column`) and where it reads its writes back.
#[derive(Clone, Copy)]
struct Through {
    table: &'static str,
    column: &'static str,
    read_back: (&'static str, &'static str),
}

fn app(
    db: Db,
    through: Through,
    first_id: i64,
    owns: fn(i64) -> bool,
    stop: Arc<AtomicBool>,
    check: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Wrote> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut conn = Conn::open(&db).await;
            let Through { table, column, read_back: (other_table, other) } = through;
            let mut wrote = Wrote::default();
            let mut next = first_id;
            let seeds: Vec<i64> = (1..=200).filter(|i| owns(*i)).collect();
            while !stop.load(Ordering::SeqCst) {
                wrote.writes += 1;
                let value = format!("{column}-{}", wrote.writes);
                let (id, sql) = if wrote.writes % 2 == 0 {
                    next += 1;
                    (next, format!("INSERT INTO {table} (id, {column}) VALUES ({next}, '{value}')"))
                } else {
                    let id = seeds[rand::random::<u64>() as usize % seeds.len()];
                    (id, format!("UPDATE {table} SET {column} = '{value}' WHERE id = {id}"))
                };
                match conn.exec(&sql).await {
                    Ok(()) => {
                        wrote.last.insert(id, value.clone());
                    }
                    Err(e) => wrote.errors.push(e),
                }
                if check.load(Ordering::SeqCst) {
                    match conn.text(&format!("SELECT {other} FROM {other_table} WHERE id = {id}")).await {
                        Ok(seen) if seen.as_deref() == Some(value.as_str()) => {}
                        Ok(seen) => {
                            wrote.errors.push(format!("row {id}: wrote {column} = {value}, {other} reads {seen:?}"));
                        }
                        Err(e) => wrote.errors.push(e),
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            wrote
        })
    })
}

/// The two apps through the phases: the old one writes `old` from before
/// the expand until the contract, the new one `new` from the expand on, and
/// each reads its writes back through the other's name while both exist.
/// `expanded` runs once `migrate` has stopped before the contract. Returns
/// what each wrote (neither saw an error) and `SELECT id, <column> FROM
/// <table>` (`rows`) at the end.
fn through_the_phases(
    db: &Db,
    project: &Project,
    (old_way, new_way): (Through, Through),
    expanded: impl FnOnce(),
    rows: (&str, &str),
) -> (Wrote, Wrote, HashMap<i64, String>) {
    let (stop_old, stop_new) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (old_checks, new_checks) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let old = app(db.handle(), old_way, 100_000, |i| i % 2 == 0, stop_old.clone(), old_checks.clone());
    std::thread::sleep(Duration::from_millis(300));
    let run = project.run(db, &["migrate"]);
    run.expect(0);
    assert!(run.all().contains("contract pending"), "{}", run.all());
    expanded();
    // Expanded: the new release deploys while the old one still runs.
    old_checks.store(true, Ordering::SeqCst);
    let new = app(db.handle(), new_way, 200_000, |i| i % 2 == 1, stop_new.clone(), new_checks.clone());
    new_checks.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1500));
    // The old release is gone: the contract.
    stop_old.store(true, Ordering::SeqCst);
    let old = old.join().unwrap();
    new_checks.store(false, Ordering::SeqCst);
    let started = Instant::now();
    project.run(db, &["migrate", "--contract"]).expect(0);
    eprintln!("contract took {:?}", started.elapsed());
    std::thread::sleep(Duration::from_millis(300));
    stop_new.store(true, Ordering::SeqCst);
    let new = new.join().unwrap();
    eprintln!("old app: {} writes, new app: {} writes", old.writes, new.writes);
    assert!(old.errors.is_empty(), "the old app failed: {:?}", &old.errors[..old.errors.len().min(5)]);
    assert!(new.errors.is_empty(), "the new app failed: {:?}", &new.errors[..new.errors.len().min(5)]);
    assert!(old.writes > 100 && new.writes > 100, "both apps wrote: {} and {}", old.writes, new.writes);
    let rows: HashMap<i64, String> = db
        .rows(&format!("SELECT id, {} FROM {}", rows.1, rows.0))
        .into_iter()
        .map(|r| (r[0].as_ref().unwrap().parse().unwrap(), r[1].clone().unwrap_or_default()))
        .collect();
    for (id, value) in old.last.iter().chain(new.last.iter()) {
        assert_eq!(rows.get(id), Some(value), "row {id}: the last write was {value}");
    }
    (old, new, rows)
}

/// The old app writes `email`, the new app `email_address`, concurrently
/// through expand → backfill → constraints → contract: neither sees an
/// error, each reads its writes back through the other name while both
/// exist, and every row ends with the last value written to it.
fn both_apps_work_at_every_phase(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    accounts(&project, &db);
    project.write("2_rename_email.up.sql", "ALTER TABLE accounts RENAME COLUMN email TO email_address;\n");
    project.run(&db, &["expand", project.dir().join("2_rename_email.up.sql").to_str().unwrap()]).expect(0);
    let old_way = Through { table: "accounts", column: "email", read_back: ("accounts", "email_address") };
    let new_way = Through { table: "accounts", column: "email_address", read_back: ("accounts", "email") };
    let (old, new, rows) = through_the_phases(&db, &project, (old_way, new_way), || {}, ("accounts", "email_address"));
    let untouched = (1..=200).filter(|i| !old.last.contains_key(i) && !new.last.contains_key(i));
    for id in untouched {
        assert_eq!(rows.get(&id), Some(&format!("seed-{id}")), "row {id} was copied");
    }
    assert_eq!(
        rows.len(),
        200 + old.last.keys().filter(|k| **k > 200).count() + new.last.keys().filter(|k| **k > 200).count()
    );
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn postgres_both_apps_work_at_every_phase() {
    both_apps_work_at_every_phase(Engine::Postgres);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs MariaDB: run `scripts/test`, which starts it")]
fn mariadb_both_apps_work_at_every_phase() {
    both_apps_work_at_every_phase(Engine::MySql);
}

/// A type change whose live rows hold a value the new type cannot: the plan
/// of the expand blocks it before anything of it runs.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn postgres_a_type_change_that_does_not_fit_is_blocked_before_the_expand() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    project.write(
        "1_prices.up.sql",
        "CREATE TABLE prices (id bigint PRIMARY KEY, amount numeric(10,2));\nINSERT INTO prices VALUES (1, 12.50), (2, 12345.67);\n",
    );
    project.run(&db, &["migrate"]).expect(0);
    project.write("2_amount.up.sql", "ALTER TABLE prices ALTER COLUMN amount TYPE numeric(5,2);\n");
    project.run(&db, &["expand", project.dir().join("2_amount.up.sql").to_str().unwrap()]).expect(0);
    let run = project.run(&db, &["migrate"]);
    run.expect(3);
    assert!(run.all().contains("cast-failures") || run.all().contains("cannot"), "{}", run.all());
    assert!(run.all().contains("keys, e.g. 2"), "names the row: {}", run.all());
    assert!(!db.column_exists("prices", "amount_new"), "nothing ran");
}

/// A type change end to end on PostgreSQL: the new column takes the old
/// one's name at the contract, values converted.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn postgres_a_type_change_runs_to_its_contract() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    project.write(
        "1_counts.up.sql",
        "CREATE TABLE counts (id bigint PRIMARY KEY, n integer NOT NULL DEFAULT 0);\nINSERT INTO counts SELECT g, g FROM generate_series(1, 500) g;\n",
    );
    project.run(&db, &["migrate"]).expect(0);
    project.write("2_widen.up.sql", "ALTER TABLE counts ALTER COLUMN n TYPE bigint;\n");
    project.run(&db, &["expand", project.dir().join("2_widen.up.sql").to_str().unwrap()]).expect(0);
    project.run(&db, &["lint"]).expect(0);
    project.run(&db, &["migrate"]).expect(0);
    // The old app writes n; the copy follows.
    db.exec("UPDATE counts SET n = 7 WHERE id = 1");
    assert_eq!(db.count("SELECT n_new FROM counts WHERE id = 1"), 7);
    // A value the old type cannot hold, written through the new column: refused, naming both.
    let refused = db.try_exec("UPDATE counts SET n_new = 5000000000 WHERE id = 2").unwrap_err();
    assert!(refused.contains("cannot copy") && refused.contains("n_new"), "{refused}");
    project.run(&db, &["migrate", "--contract"]).expect(0);
    assert_eq!(
        db.scalar("SELECT data_type FROM information_schema.columns WHERE table_name = 'counts' AND column_name = 'n'")
            .as_deref(),
        Some("bigint")
    );
    assert_eq!(db.count("SELECT sum(n) FROM counts"), 500 * 501 / 2 - 1 + 7);
    db.exec("INSERT INTO counts (id) VALUES (1000)");
    assert_eq!(db.count("SELECT n FROM counts WHERE id = 1000"), 0, "default kept");
}

/// A rename of a column with a foreign key and an index: both built again on
/// the new column (the index concurrently), under their old names at the end.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn postgres_a_rename_keeps_the_foreign_key_and_index() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    project.write(
        "1_orders.up.sql",
        "CREATE TABLE customers (id bigint PRIMARY KEY);\nCREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers (id));\nCREATE INDEX orders_customer_id_idx ON orders (customer_id);\nINSERT INTO customers SELECT g FROM generate_series(1, 10) g;\nINSERT INTO orders SELECT g, 1 + g % 10 FROM generate_series(1, 100) g;\n",
    );
    project.run(&db, &["migrate"]).expect(0);
    project.write("2_client.up.sql", "ALTER TABLE orders RENAME COLUMN customer_id TO client_id;\n");
    project.run(&db, &["expand", project.dir().join("2_client.up.sql").to_str().unwrap()]).expect(0);
    let constraints = std::fs::read_dir(project.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("constraints.up"))
        .expect("a constraints migration");
    let text = std::fs::read_to_string(constraints).unwrap();
    assert!(text.contains("CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_client_id_idx"), "{text}");
    assert!(text.contains("FOREIGN KEY (client_id) REFERENCES customers(id) NOT VALID"), "{text}");
    project.run(&db, &["lint"]).expect(0);
    project.run(&db, &["migrate", "--contract"]).expect(0);
    assert_eq!(
        db.count("SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_customer_id_idx' AND indexdef LIKE '%(client_id)%'"),
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM pg_constraint WHERE conname = 'orders_customer_id_fkey' AND convalidated AND pg_get_constraintdef(oid) LIKE 'FOREIGN KEY (client_id)%'"),
        1
    );
    assert!(db.try_exec("INSERT INTO orders VALUES (1000, 99)").unwrap_err().contains("orders_customer_id_fkey"));
}

/// A type change on MariaDB to its contract: the swap of the two columns
/// and the triggers happens under `LOCK TABLES`, which the runner keeps
/// (it records progress once they are unlocked).
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs MariaDB: run `scripts/test`, which starts it")]
fn mariadb_a_type_change_runs_to_its_contract() {
    let db = Db::new(Engine::MySql);
    let project = Project::new();
    project.write(
        "1_counts.up.sql",
        "CREATE TABLE counts (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);\nINSERT INTO counts SELECT seq, seq FROM seq_1_to_500;\n",
    );
    project.run(&db, &["migrate"]).expect(0);
    project.write("2_widen.up.sql", "ALTER TABLE counts MODIFY n bigint NOT NULL DEFAULT 0;\n");
    project.run(&db, &["expand", project.dir().join("2_widen.up.sql").to_str().unwrap()]).expect(0);
    project.run(&db, &["lint"]).expect(0);
    project.run(&db, &["migrate"]).expect(0);
    db.exec("UPDATE counts SET n = 7 WHERE id = 1");
    assert_eq!(db.count("SELECT n_new FROM counts WHERE id = 1"), 7);
    db.exec("UPDATE counts SET n_new = 8 WHERE id = 2");
    assert_eq!(db.count("SELECT n FROM counts WHERE id = 2"), 8);
    project.run(&db, &["migrate", "--contract"]).expect(0);
    assert_eq!(
        db.scalar("SELECT data_type FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'counts' AND column_name = 'n'").as_deref(),
        Some("bigint")
    );
    assert!(!db.column_exists("counts", "n_new"));
    assert_eq!(db.count("SELECT sum(n) FROM counts"), 500 * 501 / 2 - 1 + 7 - 2 + 8);
    assert_eq!(db.count("SELECT count(*) FROM information_schema.triggers WHERE trigger_schema = DATABASE()"), 0);
}

/// A statement that fails while `LOCK TABLES` holds: the tables are
/// unlocked, the failure recorded, the run refused as for any failure.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs MariaDB: run `scripts/test`, which starts it")]
fn mariadb_a_failure_under_lock_tables_is_recorded() {
    let db = Db::new(Engine::MySql);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id int PRIMARY KEY);\n");
    project.write(
        "2_locked.up.sql",
        "LOCK TABLES t WRITE;\nALTER TABLE t ADD COLUMN a int;\nALTER TABLE t ADD COLUMN a int;\nUNLOCK TABLES;\n",
    );
    let run = project.run(&db, &["migrate"]);
    run.expect(1);
    assert!(run.stderr.contains("failed at statement 3"), "{}", run.all());
    assert_eq!(db.state_of("2").as_deref(), Some("failed"), "{}", run.all());
    db.exec("INSERT INTO t (id) VALUES (2)");
}

/// The phases are read from the live table: a pending migration that may
/// still change it refuses `expand` and `new --expand`, files untouched.
/// A column without an equality operator (json) syncs like any other.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn postgres_expand_reads_a_table_no_pending_migration_changes() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    project.write("1_docs.up.sql", "CREATE TABLE docs (id bigint PRIMARY KEY, body json);\n");
    project.run(&db, &["migrate"]).expect(0);
    project.write("2_index.up.sql", "CREATE INDEX CONCURRENTLY docs_body_idx ON docs ((body->>'k'));\n");
    let run = project.run(&db, &["new", "rename_body", "--expand", "ALTER TABLE docs RENAME COLUMN body TO content"]);
    run.expect(2);
    assert!(run.stderr.contains("2 (index) is pending"), "{}", run.all());
    project.write("3_rename.up.sql", "ALTER TABLE docs RENAME COLUMN body TO content;\n");
    let run = project.run(&db, &["expand", project.dir().join("3_rename.up.sql").to_str().unwrap()]);
    run.expect(2);
    assert!(run.stderr.contains("2 (index) is pending"), "{}", run.all());
    assert!(project.dir().join("3_rename.up.sql").exists());
    std::fs::remove_file(project.dir().join("3_rename.up.sql")).unwrap();
    std::fs::remove_file(project.dir().join("2_index.up.sql")).unwrap();
    let run = project.run(&db, &["new", "rename_body", "--expand", "ALTER TABLE docs RENAME COLUMN body TO content"]);
    run.expect(0);
    project.run(&db, &["migrate"]).expect(0);
    db.exec("INSERT INTO docs (id, body) VALUES (1, '{\"a\": 1}')");
    db.exec("UPDATE docs SET body = '{\"a\": 2}' WHERE id = 1");
    assert_eq!(db.scalar("SELECT content::text FROM docs WHERE id = 1").as_deref(), Some("{\"a\": 2}"));
    db.exec("UPDATE docs SET content = '{\"a\": 3}' WHERE id = 1");
    assert_eq!(db.scalar("SELECT body::text FROM docs WHERE id = 1").as_deref(), Some("{\"a\": 3}"));
}

/// A table rename: the old app writes `accounts`, the new app `members`,
/// concurrently through expand and contract; neither sees an error, each
/// reads its writes back through the other name while both exist, and
/// every row ends with the last value written to it.
fn both_apps_work_through_a_table_rename(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    accounts(&project, &db);
    project.write("2_members.up.sql", "ALTER TABLE accounts RENAME TO members;\n");
    let run = project.run(&db, &["expand", project.dir().join("2_members.up.sql").to_str().unwrap()]);
    run.expect(0);
    assert!(run.stdout.contains("rename of the table `accounts` to `members`"), "{}", run.all());
    project.run(&db, &["lint"]).expect(0);

    // A role of least privilege that the old app could run as.
    let role = format!("app_{}", db.url.rsplit('/').next().unwrap());
    if engine == Engine::Postgres {
        db.exec(&format!("CREATE ROLE {role}; GRANT SELECT, INSERT ON accounts TO {role}"));
    }
    let grants_kept = || {
        if engine == Engine::Postgres {
            let can = |what: &str| db.scalar(&format!("SELECT has_table_privilege('{role}', 'accounts', '{what}')"));
            assert_eq!(can("INSERT").as_deref(), Some("t"), "the view has the table's grants");
            assert_eq!(can("DELETE").as_deref(), Some("f"), "and no more");
        }
    };
    let old_way = Through { table: "accounts", column: "email", read_back: ("members", "email") };
    let new_way = Through { table: "members", column: "email", read_back: ("accounts", "email") };
    through_the_phases(&db, &project, (old_way, new_way), grants_kept, ("members", "email"));
    assert!(db.table_exists("members") && !db.table_exists("accounts"), "one table, under the new name");
    let views = match engine {
        Engine::Postgres => "SELECT count(*) FROM information_schema.views WHERE table_schema = current_schema()",
        _ => "SELECT count(*) FROM information_schema.views WHERE table_schema = DATABASE()",
    };
    assert_eq!(db.count(views), 0, "the view is gone");
    if engine == Engine::Postgres {
        db.exec(&format!("REVOKE ALL ON members FROM {role}; DROP ROLE {role}"));
    }
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn postgres_both_apps_work_through_a_table_rename() {
    both_apps_work_through_a_table_rename(Engine::Postgres);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs MariaDB: run `scripts/test`, which starts it")]
fn mariadb_both_apps_work_through_a_table_rename() {
    both_apps_work_through_a_table_rename(Engine::MySql);
}

/// A USING expression that reads another column and calls functions: the
/// trigger evaluates it as written over the row being written.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn postgres_a_using_expression_reads_the_row_being_written() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    project.write(
        "1_events.up.sql",
        "CREATE TABLE events (id bigint PRIMARY KEY, at timestamp, timezone text NOT NULL DEFAULT 'UTC');\nINSERT INTO events VALUES (1, '2026-01-01 12:00', 'Europe/Paris');\n",
    );
    project.run(&db, &["migrate"]).expect(0);
    project.write(
        "2_at.up.sql",
        "ALTER TABLE events\n  ALTER COLUMN at TYPE timestamptz\n  USING timezone(timezone, at);\n",
    );
    project.run(&db, &["expand", project.dir().join("2_at.up.sql").to_str().unwrap()]).expect(0);
    project.run(&db, &["migrate"]).expect(0);
    let utc = |id: i64| {
        db.scalar(&format!("SELECT to_char(at_new AT TIME ZONE 'UTC', 'HH24:MI') FROM events WHERE id = {id}"))
    };
    assert_eq!(utc(1).as_deref(), Some("11:00"), "backfilled through the expression");
    db.exec("INSERT INTO events (id, at, timezone) VALUES (2, '2026-01-01 12:00', 'America/New_York')");
    assert_eq!(utc(2).as_deref(), Some("17:00"), "an insert by the old app, through the expression");
    db.exec("UPDATE events SET at = '2026-01-01 08:00' WHERE id = 1");
    assert_eq!(utc(1).as_deref(), Some("07:00"), "an update by the old app");
}

/// A file that is applied already is not replaced: the refusal names the
/// file and what to do instead; so does a file that is not one change.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn postgres_an_applied_or_unfit_file_is_refused_naming_it() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id bigint PRIMARY KEY, a text);\n");
    let run = project.run(&db, &["expand", project.dir().join("1_t.up.sql").to_str().unwrap()]);
    run.expect(2);
    assert!(
        run.stderr.contains("1_t.up.sql: cannot expand") && run.stderr.contains("one ALTER TABLE"),
        "{}",
        run.all()
    );
    project.write("2_r.up.sql", "ALTER TABLE t RENAME COLUMN a TO b;\n");
    project.run(&db, &["migrate"]).expect(0);
    let file = project.dir().join("2_r.up.sql");
    let run = project.run(&db, &["expand", file.to_str().unwrap()]);
    run.expect(2);
    assert!(run.stderr.contains("2_r.up.sql: cannot expand"), "{}", run.all());
    assert!(
        run.stderr.contains("is applied to") && run.stderr.contains("write its reverse as a new migration"),
        "{}",
        run.all()
    );
    assert_eq!(std::fs::read_to_string(file).unwrap(), "ALTER TABLE t RENAME COLUMN a TO b;\n");
}
