//! What a person sees when airlock refuses or fails, pinned as snapshots
//! (insta; `tests/snapshots/`): a checksum mismatch, a lint error, a blocked
//! plan, a busy lock, a failed migration, an interrupted run. Paths, ports,
//! database names, times and durations are replaced by placeholders, so a
//! snapshot changes only when the words do. After changing a message on
//! purpose, review and accept the new text (`INSTA_UPDATE=always`, or
//! `cargo insta review`).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Db, Engine, Project, Run};

/// Stdout and stderr as one text, with what changes from run to run replaced.
fn seen(run: &Run) -> String {
    format!("exit {}\n--- stdout\n{}--- stderr\n{}", run.code, run.stdout, run.stderr)
}

macro_rules! snapshot {
    ($name:expr, $text:expr) => {
        insta::with_settings!({
            filters => vec![
                (r"/tmp/\.tmp[A-Za-z0-9]+", "[dir]"),
                (r"airlock_t_[0-9a-f_]+", "[db]"),
                (r"127\.0\.0\.1:\d+", "[server]"),
                (r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?( UTC|Z|[+-]\d{2}:\d{2})?", "[time]"),
                (r"\b\d+ ms\b", "[n] ms"),
                (r"\bpid \d+", "pid [pid]"),
                (r"[\w.-]+#[0-9a-f]{8}#\d+", "[host]"),
                (r"root@[\w.-]+", "[user]@[host]"),
                (r"\d{8}[Tt]\d{6}[Zz][-_][0-9a-f]{8}", "[backup-id]"),
                (r"\b\d+(\.\d+)? (B|kB|MB|GB)\b", "[size]"),
            ],
            prepend_module_to_snapshot => false,
        }, {
            insta::assert_snapshot!($name, $text);
        });
    };
}

#[test]
fn checksum_mismatch() {
    let db = Db::new(Engine::Sqlite);
    let project = Project::new();
    project.write("1_users.up.sql", "CREATE TABLE users (id integer PRIMARY KEY);\n");
    project.run(&db, &["migrate"]).expect(0);
    project.write("1_users.up.sql", "CREATE TABLE users (id integer PRIMARY KEY, email text);\n");
    let run = project.run(&db, &["migrate"]);
    run.expect(3);
    snapshot!("checksum_mismatch", seen(&run));
}

#[test]
fn lint_error() {
    let db = Db::new(Engine::Sqlite);
    db.exec("CREATE TABLE accounts (id integer PRIMARY KEY, plan text)");
    let project = Project::new();
    project.write("1_free.up.sql", "UPDATE accounts SET plan = 'free' WHERE plan IS NULL;\n");
    let run = project.run(&db, &["migrate"]);
    run.expect(3);
    snapshot!("lint_error", seen(&run));
}

#[test]
fn blocked_plan() {
    let db = Db::new(Engine::Sqlite);
    db.exec("CREATE TABLE users (id integer PRIMARY KEY, email text)");
    db.exec("INSERT INTO users VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x')");
    let project = Project::new();
    project.write("1_email.up.sql", "CREATE UNIQUE INDEX users_email ON users (email);\n");
    let run = project.run(&db, &["plan"]);
    run.expect(3);
    snapshot!("blocked_plan", seen(&run));
    let refused = project.run(&db, &["migrate"]);
    refused.expect(3);
    snapshot!("blocked_migrate", seen(&refused));
}

#[test]
fn lock_busy() {
    let db = Db::new(Engine::Sqlite);
    let project = Project::new();
    project.write("1_a.up.sql", "CREATE TABLE a (id integer PRIMARY KEY);\n");
    project.run(&db, &["migrate"]).expect(0);
    project.write("2_b.up.sql", "CREATE TABLE b (id integer PRIMARY KEY);\n");
    // Held by a live process on this machine: this test's own.
    common::hold_lease(&db, std::process::id());
    let run = Run::of(
        project
            .bare()
            .args(["--database-url", &db.url, "--dir"])
            .arg(project.dir())
            .args(["--lock-wait", "1s", "migrate"])
            .output()
            .unwrap(),
    );
    run.expect(1);
    snapshot!("lock_busy", seen(&run));
}

#[test]
fn failed_migration() {
    let db = Db::new(Engine::Sqlite);
    let project = Project::new();
    project.write("1_a.up.sql", "CREATE TABLE a (id integer PRIMARY KEY);\n");
    project.write("2_b.up.sql", "CREATE TABLE b (id integer PRIMARY KEY);\nINSERT INTO missing VALUES (1);\n");
    let run = project.run(&db, &["migrate"]);
    run.expect(1);
    snapshot!("failed_migration", seen(&run));
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn interrupted_run() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    project.write("1_slow.up.sql", "-- airlock:data\nSELECT pg_sleep(30);\n");
    let child = project.airlock(&db).arg("migrate").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    let running = || {
        db.count("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(30)%'") > 0
    };
    while !running() {
        assert!(started.elapsed() < Duration::from_secs(20), "the statement never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let run = Run::of(child.wait_with_output().unwrap());
    run.expect(130);
    snapshot!("interrupted_run", seen(&run));
}

#[test]
fn drift_found() {
    let (live, reference) = (Db::new(Engine::Sqlite), Db::new(Engine::Sqlite));
    let schema = "CREATE TABLE orders (id integer PRIMARY KEY, note text DEFAULT 'x');
        CREATE VIEW recent AS SELECT id
            FROM orders WHERE id > 10;
        CREATE TRIGGER orders_touch AFTER INSERT ON orders BEGIN UPDATE orders SET note = 'y' WHERE id = NEW.id; END;";
    live.exec(schema);
    reference.exec(schema);
    live.exec("CREATE INDEX orders_by_hand ON orders (note); DROP TRIGGER orders_touch;");
    let project = Project::new();
    let run = project.run(&live, &["drift", "--against-url", &reference.url]);
    run.expect(3);
    snapshot!("drift_found", seen(&run).replace(&reference.url, "[reference]").replace(&live.url, "[database]"));
    // Asked to record it where airlock keeps no history: the report, then the refusal.
    let run = project.run(&live, &["drift", "--record", "--against-url", &reference.url]);
    run.expect(2);
    snapshot!("drift_not_recorded", seen(&run).replace(&reference.url, "[reference]").replace(&live.url, "[database]"));
}

#[test]
fn rehearsal_problems() {
    let db = Db::new(Engine::Sqlite);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id integer PRIMARY KEY, a text);\n");
    project.write("1_t.down.sql", "DROP TABLE t;\n");
    project.write("2_coupons.up.sql", "CREATE TABLE coupons (id integer PRIMARY KEY);\n");
    project.write("2_coupons.down.sql", "DROP TABLE IF EXISTS coupon;\n");
    project.write("3_idx.up.sql", "CREATE INDEX t_a ON t (a);\n");
    project.write("4_bad.up.sql", "CREATE TABLE bad (id int);\n");
    project.write("4_bad.down.sql", "DROP TABLE nowhere;\n");
    let run = project.run(&db, &["rehearse", "--all"]);
    run.expect(3);
    snapshot!("rehearsal_problems", seen(&run));
}

#[test]
fn rehearsal_timed_and_plan_scaled() {
    let db = Db::new(Engine::Sqlite);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id integer PRIMARY KEY, v integer);\n");
    project.run(&db, &["migrate"]).expect(0);
    let fill = |from: u32| {
        format!(
            "INSERT INTO t WITH RECURSIVE g(n) AS (SELECT {} UNION ALL SELECT n + 1 FROM g WHERE n < {}) SELECT n, n % 100 FROM g; ANALYZE t",
            from + 1,
            from + 20_000
        )
    };
    db.exec(&fill(0));
    project.write("2_t_v.up.sql", "CREATE INDEX t_v ON t (v);\n");
    project.write("2_t_v.down.sql", "DROP INDEX t_v;\n");
    let rehearsed = project.run(&db, &["rehearse", "--data", "full"]);
    rehearsed.expect(0);
    db.exec(&fill(20_000));
    let planned = project.run(&db, &["plan"]);
    planned.expect(0);
    snapshot!("rehearsal_timed_and_plan_scaled", format!("{}\n{}", seen(&rehearsed), seen(&planned)));
}

#[test]
fn plan_with_a_backup() {
    let db = Db::new(Engine::Sqlite);
    db.exec("CREATE TABLE users (id integer PRIMARY KEY, name text)");
    db.exec("CREATE TABLE orders (id integer PRIMARY KEY, user_id int REFERENCES users (id) ON DELETE CASCADE)");
    db.exec("CREATE TABLE audited (id integer PRIMARY KEY)");
    db.exec("CREATE TRIGGER audited_log AFTER UPDATE ON audited BEGIN DELETE FROM users; END");
    let project = Project::new();
    project.write_config(&format!(
        "[environments.prod]\nurl = \"{}\"\nprotected = true\nbackup_dir = \"saved\"\nbackup_budget = \"1s\"\n",
        db.url
    ));
    project.write("1_test_users.up.sql", "-- airlock:data\nDELETE FROM users WHERE name = 'test';\n");
    let plan = |sql: Option<&str>| {
        if let Some(sql) = sql {
            project.write("2_audited.up.sql", sql);
        }
        Run::of(project.bare().args(["--env", "prod", "--dir"]).arg(project.dir()).arg("plan").output().unwrap())
    };
    let tables = plan(None);
    tables.expect(0);
    snapshot!(
        "plan_with_a_backup_of_tables",
        seen(&tables).replace(&project.root.path().display().to_string(), "[project]")
    );
    let whole = plan(Some("-- airlock:data\nUPDATE audited SET id = id;\n"));
    whole.expect(0);
    snapshot!(
        "plan_with_a_backup_of_the_database",
        seen(&whole).replace(&project.root.path().display().to_string(), "[project]")
    );
}

#[test]
fn backups_listed_restored_and_pruned() {
    let db = Db::new(Engine::Sqlite);
    db.exec("CREATE TABLE carts (id integer PRIMARY KEY, total int); INSERT INTO carts VALUES (1, 10), (2, 20)");
    let project = Project::new();
    project.write_config(&format!(
        "[environments.prod]\nurl = \"{}\"\nprotected = true\nbackup_dir = \"saved\"\nbackup_keep = 1\n",
        db.url
    ));
    let prod = |args: &[&str]| {
        Run::of(project.bare().args(["--env", "prod", "--dir"]).arg(project.dir()).args(args).output().unwrap())
    };
    let shown = |run: &Run| seen(run).replace(&project.root.path().display().to_string(), "[project]");
    project.write("1_zero.up.sql", "-- airlock:data\nUPDATE carts SET total = 0 WHERE id = 2;\n");
    prod(&["migrate"]).expect(0);
    project.write("2_more.up.sql", "-- airlock:data\nUPDATE carts SET total = 1 WHERE id = 1;\n");
    let pruned = prod(&["migrate"]);
    pruned.expect(0);
    snapshot!("backup_taken_and_an_older_one_pruned", shown(&pruned));
    let list = prod(&["backup", "list"]);
    list.expect(0);
    snapshot!("backup_list_with_a_pruned_backup", shown(&list));
    let newest = prod(&["--format", "json", "backup", "list"]).json()["backups"][0]["id"].as_str().unwrap().to_owned();
    let refused = prod(&["backup", "restore", &newest, "--table", "carts", "--replace"]);
    refused.expect(3);
    snapshot!("backup_restore_replace_refused_without_a_reason", shown(&refused));
    let restored = prod(&["backup", "restore", &newest, "--table", "carts", "--replace", "--reason", "bad update"]);
    restored.expect(0);
    snapshot!("backup_restored_and_replaced", shown(&restored));
}

#[test]
fn backfill_refused_planned_skipped_and_listed() {
    let db = Db::new(Engine::Sqlite);
    db.exec(
        "CREATE TABLE orders (id integer PRIMARY KEY, total real, total_cents integer);
         CREATE TABLE cents (id integer PRIMARY KEY, cents integer);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 500)
         INSERT INTO orders (id, total) SELECT i, i / 100.0 FROM s;
         ANALYZE;",
    );
    let project = Project::new();
    project.write(
        "1_fill.up.sql",
        "-- airlock:backfill\nUPDATE orders SET total_cents = c.cents FROM cents c WHERE c.id = orders.id;\n",
    );
    let refused = project.run(&db, &["migrate"]);
    refused.expect(3);
    project.write(
        "1_fill.up.sql",
        "-- airlock:backfill\nUPDATE orders SET total_cents = round(total * 100) WHERE total_cents IS NULL;\n",
    );
    project.write("2_after.up.sql", "CREATE INDEX orders_cents ON orders (total_cents);\n");
    let plan = project.run(&db, &["plan"]);
    plan.expect(0);
    let skipped = project.run(&db, &["migrate", "--skip-backfills"]);
    skipped.expect(0);
    let listed = project.run(&db, &["backfill", "status"]);
    listed.expect(0);
    let text = [&refused, &plan, &skipped, &listed].map(seen).join("\n");
    snapshot!("backfill_refused_planned_skipped_and_listed", text);
}

#[test]
fn fleet_stopped_by_a_failing_member() {
    let dbs: Vec<Db> = (0..3).map(|_| Db::new(Engine::Sqlite)).collect();
    let project = Project::new();
    let lines: Vec<String> =
        ["acme", "globex", "initech"].iter().zip(&dbs).map(|(n, d)| format!("{n} {}", d.url)).collect();
    std::fs::write(project.root.path().join("members.txt"), lines.join("\n") + "\n").unwrap();
    project.write_config("[fleets.tenants]\nurls_command = \"cat members.txt\"\nparallel = 1\n");
    project.write("1_users.up.sql", "CREATE TABLE users (id integer PRIMARY KEY, email text);\n");
    let fleet = |args: &[&str]| {
        let mut command = project.bare();
        command.arg("--dir").arg(project.dir()).args(["--fleet", "tenants"]).args(args);
        Run::of(command.output().unwrap())
    };
    fleet(&["migrate"]).expect(0);
    dbs[1].exec(
        "CREATE TRIGGER users_closed BEFORE INSERT ON users BEGIN SELECT RAISE(ABORT, 'no new users here'); END;",
    );
    project
        .write("2_admin.up.sql", "-- airlock:data\nINSERT INTO users (id, email) VALUES (1, 'admin@example.com');\n");
    let run = fleet(&["migrate"]);
    run.expect(1);
    snapshot!("fleet_stopped_by_a_failing_member", seen(&run));
    let run = fleet(&["status"]);
    snapshot!("fleet_status_with_members_behind", seen(&run));
}
