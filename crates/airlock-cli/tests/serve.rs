//! `airlock serve` on every engine: the gate, status and metrics over HTTP, a run
//! in progress, a failed migration, many concurrent requests, a database that
//! goes away and comes back, environments, and that it never writes.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Db, Engine, Project, Server, create_table, hold_lease};
use serde_json::Value;

each_engine!(
    serve_answers_like_the_cli,
    serve_reports_a_run_in_progress_and_a_failed_migration,
    serve_answers_200_concurrent_requests,
    serve_shows_a_backfill_part_way,
);

fn serve(project: &Project, db: &Db) -> Server {
    let mut command = project.airlock(db);
    command.args(["serve", "--listen", "127.0.0.1:0", "--max-age", "0"]);
    Server::start(command)
}

/// A backfill stopped part-way and paused: `/status` has how far it came,
/// `/metrics` its rows done, total and whether it is paused.
fn serve_shows_a_backfill_part_way(engine: Engine) {
    let db = Db::new(engine);
    db.exec("CREATE TABLE items (id bigint PRIMARY KEY, n integer NOT NULL DEFAULT 0)");
    db.exec("INSERT INTO items (id) VALUES (1), (2), (3)");
    let project = Project::new();
    project.write("1_touch.up.sql", "-- airlock:backfill\nUPDATE items SET n = n + 1;\n");
    project.run(&db, &["backfill", "pause", "1", "--reason", "later"]).expect(0);
    let server = serve(&project, &db);
    let (_, status) = server.json("/status");
    let backfill = &status["backfills"][0];
    assert_eq!((backfill["version"].as_str(), backfill["state"].as_str()), (Some("1"), Some("paused")), "{status}");
    assert_eq!(backfill["table"], "items");
    assert_eq!(server.metric(r#"airlock_backfill_paused{environment="default",version="1"}"#), Some(1.0));
    assert_eq!(server.metric(r#"airlock_backfill_rows_total{environment="default",version="1"}"#), Some(0.0));
    project.run(&db, &["backfill", "resume", "1"]).expect(0);
    project.run(&db, &["migrate"]).expect(0);
    let (_, status) = server.json("/status");
    assert_eq!(status["backfills"], serde_json::json!([]), "{status}");
}

fn serve_answers_like_the_cli(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    for i in 1..=3 {
        project.write(&format!("{i}_t_{i}.up.sql"), &create_table(i));
    }
    let server = serve(&project, &db);
    assert_eq!(server.get("/healthz"), (200, "ok\n".to_owned()));

    // A database airlock never touched: read, never written.
    let (code, fresh) = server.json("/status");
    if engine == Engine::Sqlite {
        assert_eq!(code, 503, "{fresh}");
        assert!(fresh["error"].as_str().unwrap().starts_with("cannot read the database"), "{fresh}");
        assert!(!std::path::Path::new(db.url.trim_start_matches("sqlite:")).exists(), "serve created the SQLite file");
    } else {
        assert_eq!(code, 200, "{fresh}");
        assert_eq!(fresh["current_version"], Value::Null);
        assert_eq!(fresh["pending"].as_array().unwrap().len(), 3);
        assert!(
            !db.table_exists("airlock_history") && !db.table_exists("airlock_lock"),
            "serve created airlock's tables"
        );
    }

    project.run(&db, &["migrate", "--to", "1"]).expect(0);
    let (code, behind) = server.json("/gate?require=latest");
    assert_eq!(code, 503, "{behind}");
    assert_eq!(behind["satisfied"], false);
    assert_eq!(behind["required"], "3");
    assert_eq!(behind["current_version"], "1");
    assert_eq!(behind["state"], "clean");
    assert_eq!(behind["environment"], "default");
    assert_eq!(behind["reasons"][0], "behind by 2 migrations: 2 (t_2), 3 (t_3)");
    let (code, ready) = server.json("/gate?require=1");
    assert_eq!(
        (code, &ready["satisfied"], &ready["required"]),
        (200, &Value::Bool(true), &Value::from("1")),
        "{ready}"
    );

    let (code, status) = server.json("/status");
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["state"], "clean");
    assert_eq!(status["current_version"], "1");
    assert_eq!(status["pending"].as_array().unwrap().len(), 2);
    assert_eq!(server.metric("airlock_up{environment=\"default\"}"), Some(1.0));
    assert_eq!(server.metric("airlock_schema_version{environment=\"default\"}"), Some(1.0));
    assert_eq!(server.metric("airlock_pending_migrations{environment=\"default\"}"), Some(2.0));
    assert_eq!(server.metric("airlock_migration_in_progress{environment=\"default\"}"), Some(0.0));

    project.run(&db, &["migrate"]).expect(0);
    let (code, ready) = server.json("/gate?require=latest");
    assert_eq!((code, &ready["current_version"]), (200, &Value::from("3")), "{ready}");
    assert_eq!(server.metric("airlock_pending_migrations{environment=\"default\"}"), Some(0.0));
    assert_eq!(server.metric("airlock_last_run_succeeded{environment=\"default\"}"), Some(1.0));
    let finished = server.metric("airlock_last_run_timestamp_seconds{environment=\"default\"}").unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - finished).abs() < 120.0, "last run at {finished}, now {now}");
    assert!(server.metric("airlock_last_run_duration_seconds{environment=\"default\"}").is_some());

    // Bad questions get a clear 4xx.
    let (code, bad) = server.json("/gate?require=v1.x");
    assert_eq!(code, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().starts_with("require=v1.x:"), "{bad}");
    let (code, unknown) = server.json("/status?env=nope");
    assert_eq!(code, 404, "{unknown}");
    assert_eq!(unknown["error"], "no environment `nope` (known: default)");
    assert_eq!(server.json("/migrate").0, 404);
}

fn serve_reports_a_run_in_progress_and_a_failed_migration(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    project.write("1_t_1.up.sql", &create_table(1));
    project.run(&db, &["migrate"]).expect(0);
    let server = serve(&project, &db);

    let mut runner = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    hold_lease(&db, runner.id());
    let (code, dirty) = server.json("/gate?require=latest");
    assert_eq!(code, 503, "{dirty}");
    assert_eq!(dirty["state"], "dirty");
    assert!(
        dirty["reasons"][0].as_str().unwrap().starts_with("in progress: a migration run is in progress: pid"),
        "{dirty}"
    );
    assert_eq!(dirty["lock"]["pid"], runner.id());
    assert_eq!(server.metric("airlock_migration_in_progress{environment=\"default\"}"), Some(1.0));
    // The run's process ends: the lease is dead, the gate opens.
    runner.kill().unwrap();
    runner.wait().unwrap();
    assert_eq!(server.json("/gate?require=latest").0, 200);

    project.write("2_bad.up.sql", "CREATE TABLE t_2 (id bigint primary key);\nINSERT INTO missing VALUES (1);\n");
    project.run(&db, &["migrate"]).expect(1);
    let (code, failed) = server.json("/gate?require=latest");
    assert_eq!(code, 503, "{failed}");
    if engine == Engine::MySql {
        // Half-applied: the table exists, the insert failed.
        assert_eq!(failed["state"], "failed");
        assert!(
            failed["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r.as_str().unwrap().starts_with("failed: migration 2")),
            "{failed}"
        );
        assert_eq!(server.metric("airlock_failed_migrations{environment=\"default\"}"), Some(1.0));
        assert_eq!(server.metric("airlock_last_run_succeeded{environment=\"default\"}"), Some(0.0));
    } else {
        assert_eq!(failed["state"], "clean");
        assert_eq!(failed["reasons"][0], "behind by 1 migration: 2 (bad)");
        assert_eq!(server.metric("airlock_failed_migrations{environment=\"default\"}"), Some(0.0));
    }
}

fn serve_answers_200_concurrent_requests(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    for i in 1..=2 {
        project.write(&format!("{i}_t_{i}.up.sql"), &create_table(i));
    }
    project.run(&db, &["migrate", "--to", "1"]).expect(0);
    // The default freshness: requests share reads.
    let mut command = project.airlock(&db);
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    let server = Arc::new(Server::start(command));
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let server = Arc::clone(&server);
            thread::spawn(move || match i % 4 {
                0 => server.json("/gate?require=2"),
                1 => server.json("/gate?require=1"),
                2 => server.json("/status"),
                _ => (server.get("/healthz").0, Value::Null),
            })
        })
        .collect();
    for (i, thread) in threads.into_iter().enumerate() {
        let (code, body) = thread.join().unwrap();
        match i % 4 {
            0 => {
                assert_eq!(
                    (code, &body["reasons"][0]),
                    (503, &Value::from("behind by 1 migration: 2 (t_2)")),
                    "{body}"
                );
            }
            1 => assert_eq!((code, &body["satisfied"]), (200, &Value::Bool(true)), "{body}"),
            2 => assert_eq!((code, &body["current_version"]), (200, &Value::from("1")), "{body}"),
            _ => assert_eq!(code, 200),
        }
    }
}

/// A TCP proxy in front of a real server that can be taken down (listener
/// closed, every connection cut) and brought back on the same port.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn to(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy { port, down: Arc::default(), conns: Arc::default() };
        let (down, conns) = (Arc::clone(&proxy.down), Arc::clone(&proxy.conns));
        thread::spawn(move || {
            let mut listener = Some(listener);
            loop {
                match (&listener, down.load(Ordering::SeqCst)) {
                    (Some(_), true) => listener = None,
                    (None, false) => listener = Some(TcpListener::bind(("127.0.0.1", port)).unwrap()),
                    (None, true) => thread::sleep(Duration::from_millis(10)),
                    (Some(l), false) => {
                        l.set_nonblocking(true).unwrap();
                        match l.accept() {
                            Ok((client, _)) => {
                                client.set_nonblocking(false).unwrap();
                                let server = TcpStream::connect(target).unwrap();
                                conns
                                    .lock()
                                    .unwrap()
                                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                                let (mut c1, mut s1) = (client, server);
                                thread::spawn(move || std::io::copy(&mut c1, &mut s1));
                                thread::spawn(move || std::io::copy(&mut s2, &mut c2));
                            }
                            Err(_) => thread::sleep(Duration::from_millis(5)),
                        }
                    }
                }
            }
        });
        proxy
    }

    fn take_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().drain(..) {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        // The listener is closed within one turn of the loop.
        thread::sleep(Duration::from_millis(100));
    }

    fn bring_back(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

/// The server a URL points at, and the same URL through a proxy on `port`.
fn through(url: &str, port: u16) -> (SocketAddr, String) {
    let parsed = url::Url::parse(url).unwrap();
    let target = format!("{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap()).parse().unwrap();
    let mut proxied = parsed;
    proxied.set_port(Some(port)).unwrap();
    (target, proxied.to_string())
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_serve_recovers_when_the_database_comes_back() {
    recovers_when_the_database_comes_back(Engine::Postgres);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_serve_recovers_when_the_database_comes_back() {
    recovers_when_the_database_comes_back(Engine::MySql);
}

fn recovers_when_the_database_comes_back(engine: Engine) {
    let db = Db::new(engine);
    let project = Project::new();
    project.write("1_t_1.up.sql", &create_table(1));
    project.run(&db, &["migrate"]).expect(0);
    let (target, _) = through(&db.url, 0);
    let proxy = Proxy::to(target);
    let (_, mut proxied) = through(&db.url, proxy.port);
    if engine == Engine::MySql {
        // mysql_async would otherwise switch to the server's Unix socket, around the proxy.
        proxied.push_str("?prefer_socket=false");
    }
    let mut command = project.bare();
    command.args(["--database-url", &proxied, "--dir"]).arg(project.dir());
    command.args(["serve", "--listen", "127.0.0.1:0", "--max-age", "0", "--read-timeout", "3s"]);
    let server = Server::start(command);
    assert_eq!(server.json("/gate?require=1").0, 200);

    proxy.take_down();
    let (code, down) = server.json("/gate?require=1");
    assert_eq!(code, 503, "{down}");
    assert_eq!(down["state"], "unknown");
    assert!(down["reasons"][0].as_str().unwrap().starts_with("cannot read the database"), "{down}");
    assert_eq!(server.json("/status").0, 503);
    assert_eq!(server.metric("airlock_up{environment=\"default\"}"), Some(0.0));
    assert_eq!(server.get("/healthz").0, 200, "the server itself stays up");

    proxy.bring_back();
    let started = Instant::now();
    loop {
        let (code, body) = server.json("/gate?require=1");
        if code == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "still {code} after the database came back: {body}");
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.metric("airlock_up{environment=\"default\"}"), Some(1.0));
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn postgres_serve_reports_a_real_migration_in_progress() {
    real_migration_in_progress(Engine::Postgres, "SELECT pg_sleep(5);\n");
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn mysql_serve_reports_a_real_migration_in_progress() {
    real_migration_in_progress(Engine::MySql, "DO SLEEP(5);\n");
}

/// A slow migration really running in another process: dirty while it runs, ready right after.
fn real_migration_in_progress(engine: Engine, slow: &str) {
    let db = Db::new(engine);
    let project = Project::new();
    project.write("1_t_1.up.sql", &create_table(1));
    project.run(&db, &["migrate"]).expect(0);
    project.write("2_slow.up.sql", slow);
    let server = serve(&project, &db);
    let mut runner = project.airlock(&db).arg("migrate").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();

    let started = Instant::now();
    let dirty = loop {
        let (code, body) = server.json("/gate?require=latest");
        assert_eq!(code, 503, "{body}");
        // On MySQL, wait for the version too: the lock is taken a moment
        // before the migration's first statement records it.
        if body["state"] == "dirty" && (engine != Engine::MySql || body["lock"]["version"] == "2") {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(4), "never saw the run in progress: {body}");
        thread::sleep(Duration::from_millis(50));
    };
    assert!(dirty["reasons"][0].as_str().unwrap().starts_with("in progress:"), "{dirty}");
    assert_eq!(dirty["lock"]["pid"], runner.id());
    if engine == Engine::MySql {
        // Statement by statement, the version is recorded as it starts; on
        // PostgreSQL it is written inside the migration's transaction (or by
        // the next heartbeat), so it may not be visible yet.
        assert_eq!(dirty["lock"]["version"], "2", "{dirty}");
    }

    assert!(runner.wait().unwrap().success());
    let ended = Instant::now();
    let (code, ready) = server.json("/gate?require=latest");
    assert_eq!((code, &ready["current_version"]), (200, &Value::from("2")), "{ready}");
    assert!(ended.elapsed() < Duration::from_secs(1), "answered at once after the run ended");
}

#[test]
fn serve_answers_for_each_environment() {
    let project = Project::new();
    project.write("1_t_1.up.sql", &create_table(1));
    let (a, b) = (Db::new(Engine::Sqlite), Db::new(Engine::Sqlite));
    project.run(&a, &["migrate"]).expect(0);
    project.write_config(&format!(
        "project = \"shop\"\n[environments.a]\nurl = \"{}\"\n[environments.b]\nurl = \"{}\"\n[environments.c]\nurl = \"${{AIRLOCK_TEST_SURELY_UNSET}}\"\n",
        a.url, b.url
    ));
    let mut command = project.bare();
    command.args(["serve", "--listen", "127.0.0.1:0", "--max-age", "0"]);
    let server = Server::start(command);

    let (code, body) = server.json("/gate?env=a&require=1");
    assert_eq!((code, &body["environment"]), (200, &Value::from("a")), "{body}");
    let (code, body) = server.json("/gate?env=b&require=1");
    assert_eq!((code, &body["environment"]), (503, &Value::from("b")), "{body}");
    let (code, body) = server.json("/status?env=c");
    assert_eq!(code, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("AIRLOCK_TEST_SURELY_UNSET is not set"), "{body}");
    // No database outside the environments: a request must name one.
    let (code, body) = server.json("/status");
    assert_eq!(
        (code, &body["error"]),
        (400, &Value::from("name an environment with ?env=NAME (known: a, b, c)")),
        "{body}"
    );
    assert_eq!(server.metric("airlock_up{environment=\"a\"}"), Some(1.0));
    assert_eq!(server.metric("airlock_up{environment=\"c\"}"), Some(0.0));
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")]
fn serve_never_shows_a_password() {
    let db = Db::new(Engine::Postgres);
    let project = Project::new();
    project.write("1_t_1.up.sql", &create_table(1));
    project.run(&db, &["migrate"]).expect(0);
    // The harness trusts loopback, so these passwords are sent and ignored.
    let with_password = db.url.replacen("postgres@", "postgres:hunter2@", 1);
    let in_query = format!("{}?password=hunter2", db.url);
    project.write_config(&format!(
        "[environments.query]\nurl = \"{in_query}\"\n[environments.broken]\nurl = \"postgres://app:hunter2/x@db:notaport/shop\"\n"
    ));
    let mut command = project.bare();
    command.args(["--database-url", &with_password, "--dir"]).arg(project.dir());
    command.args(["serve", "--listen", "127.0.0.1:0", "--max-age", "0"]);
    let server = Server::start(command);
    for path in [
        "/status",
        "/gate?require=1",
        "/status?env=query",
        "/gate?env=query",
        "/status?env=broken",
        "/gate?env=broken",
        "/metrics",
    ] {
        let (_, body) = server.get(path);
        assert!(!body.contains("hunter2"), "{path} shows the password: {body}");
    }
    assert_eq!(server.json("/status?env=query").0, 200);
    let (code, broken) = server.json("/status?env=broken");
    assert_eq!(code, 503, "{broken}");
}

#[test]
fn serve_refuses_a_misspelt_question_and_a_bad_setup() {
    let project = Project::new();
    project.write("1_t_1.up.sql", &create_table(1));
    let db = Db::new(Engine::Sqlite);
    project.run(&db, &["migrate"]).expect(0);
    let server = serve(&project, &db);
    let (code, body) = server.json("/gate?require=1&enviroment=prod");
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("enviroment"), "{body}");
    drop(server);

    // A bad --database-url is an error even when airlock.toml has environments.
    project.write_config(&format!("[environments.a]\nurl = \"{}\"\n", db.url));
    let bad = common::Run::of(
        project.bare().args(["--database-url", "oracle://x/y", "serve", "--listen", "127.0.0.1:0"]).output().unwrap(),
    );
    bad.expect(2);
    assert!(bad.stderr.contains("oracle://x/y"), "{}", bad.stderr);
    // An environment called `default` would be shadowed by the flag's database.
    project.write_config(&format!("[environments.default]\nurl = \"{}\"\n", db.url));
    let clash = common::Run::of(
        project.bare().args(["--database-url", &db.url, "serve", "--listen", "127.0.0.1:0"]).output().unwrap(),
    );
    clash.expect(2);
    assert!(clash.stderr.contains("[environments.default]"), "{}", clash.stderr);
}
