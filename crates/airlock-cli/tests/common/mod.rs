//! Test helpers: a fresh database per test on a real engine, a migrations
//! directory per test, and the `airlock` binary. Databases are checked through
//! the engines' own client crates, never through airlock's drivers.
#![allow(dead_code, missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use mysql_async::prelude::Queryable;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    MySql,
    Sqlite,
}

/// Runs one scenario function against every engine: `postgres::name`, `mysql::name`, `sqlite::name`.
#[macro_export]
macro_rules! each_engine {
    ($($name:ident),* $(,)?) => {
        mod postgres { $( #[test] #[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")] fn $name() { super::$name(super::common::Engine::Postgres) } )* }
        mod mysql { $( #[test] #[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")] fn $name() { super::$name(super::common::Engine::MySql) } )* }
        mod sqlite { $( #[test] fn $name() { super::$name(super::common::Engine::Sqlite) } )* }
    };
}

/// As `each_engine!`, for scenarios that also need the peer tools `scripts/test` installs (dbmate).
#[macro_export]
macro_rules! each_engine_with_tools {
    ($($name:ident),* $(,)?) => {
        mod postgres { $( #[test] #[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")] fn $name() { super::$name(super::common::Engine::Postgres) } )* }
        mod mysql { $( #[test] #[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL and MariaDB: run `scripts/test`, which starts them")] fn $name() { super::$name(super::common::Engine::MySql) } )* }
        mod sqlite { $( #[test] #[cfg_attr(not(airlock_test_servers), ignore = "needs dbmate: run `scripts/test`, which installs it")] fn $name() { super::$name(super::common::Engine::Sqlite) } )* }
    };
}

fn admin_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests through `scripts/test`, which starts throwaway PostgreSQL and MariaDB servers")
    })
}

fn unique_name() -> String {
    format!("airlock_t_{:x}_{:x}", std::process::id(), rand::random::<u64>())
}

fn with_database(admin: &str, db: &str) -> String {
    let (base, _) = admin.rsplit_once('/').expect("admin URL has a path");
    format!("{base}/{db}")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A fresh, empty database on one engine.
pub struct Db {
    pub engine: Engine,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    pub fn new(engine: Engine) -> Db {
        match engine {
            Engine::Postgres => {
                let admin = admin_url("AIRLOCK_TEST_POSTGRES_URL");
                let name = unique_name();
                pg_exec(&admin, &format!("CREATE DATABASE {name}"));
                Db { engine, url: with_database(&admin, &name), _dir: None }
            }
            Engine::MySql => {
                let admin = admin_url("AIRLOCK_TEST_MYSQL_URL");
                let name = unique_name();
                my_rows(&admin, &format!("CREATE DATABASE {name}"));
                Db { engine, url: with_database(&admin, &name), _dir: None }
            }
            Engine::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite:{}", dir.path().join("test.db").display());
                Db { engine, url, _dir: Some(dir) }
            }
        }
    }

    /// Another handle on the same database (for another thread); the first
    /// keeps a SQLite file's directory.
    #[allow(dead_code)]
    pub fn handle(&self) -> Db {
        Db { engine: self.engine, url: self.url.clone(), _dir: None }
    }

    /// Runs statements (several allowed, separated by `;`).
    pub fn exec(&self, sql: &str) {
        match self.engine {
            Engine::Postgres => pg_exec(&self.url, sql),
            Engine::MySql => {
                my_rows(&self.url, sql);
            }
            Engine::Sqlite => sqlite_conn(&self.url).execute_batch(sql).unwrap(),
        }
    }

    /// Rows as text.
    pub fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match self.engine {
            Engine::Postgres => pg_rows(&self.url, sql),
            Engine::MySql => my_rows(&self.url, sql),
            Engine::Sqlite => {
                let conn = sqlite_conn(&self.url);
                let mut stmt = conn.prepare(sql).unwrap();
                let n = stmt.column_count();
                let rows = stmt
                    .query_map([], |r| {
                        Ok((0..n)
                            .map(|i| match r.get::<_, rusqlite::types::Value>(i).unwrap() {
                                rusqlite::types::Value::Null => None,
                                rusqlite::types::Value::Integer(v) => Some(v.to_string()),
                                rusqlite::types::Value::Real(v) => Some(v.to_string()),
                                rusqlite::types::Value::Text(v) => Some(v),
                                rusqlite::types::Value::Blob(v) => Some(String::from_utf8_lossy(&v).into_owned()),
                            })
                            .collect())
                    })
                    .unwrap();
                rows.map(Result::unwrap).collect()
            }
        }
    }

    pub fn scalar(&self, sql: &str) -> Option<String> {
        self.rows(sql).into_iter().next().and_then(|r| r.into_iter().next().flatten())
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.scalar(sql).map(|s| s.parse().unwrap()).unwrap_or(0)
    }

    pub fn table_exists(&self, table: &str) -> bool {
        let sql = match self.engine {
            Engine::Postgres => format!(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '{table}'"
            ),
            Engine::MySql => format!(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = '{table}'"
            ),
            Engine::Sqlite => format!("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'"),
        };
        self.count(&sql) == 1
    }

    pub fn column_exists(&self, table: &str, column: &str) -> bool {
        let sql = match self.engine {
            Engine::Postgres => format!(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '{table}' AND column_name = '{column}'"
            ),
            Engine::MySql => format!(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = '{table}' AND column_name = '{column}'"
            ),
            Engine::Sqlite => format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE name = '{column}'"),
        };
        self.count(&sql) == 1
    }

    /// Runs statements, returning the error's text (with the server's detail) instead of panicking.
    pub fn try_exec(&self, sql: &str) -> Result<(), String> {
        match self.engine {
            Engine::Postgres => runtime().block_on(async {
                let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                client.batch_execute(sql).await.map_err(|e| match e.as_db_error() {
                    Some(db) => format!("{} {:?} {:?}", db.message(), db.hint(), db.detail()),
                    None => e.to_string(),
                })
            }),
            Engine::MySql => runtime().block_on(async {
                let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&self.url).unwrap()).await.unwrap();
                conn.query_drop(sql).await.map_err(|e| e.to_string())
            }),
            Engine::Sqlite => sqlite_conn(&self.url).execute_batch(sql).map_err(|e| e.to_string()),
        }
    }

    /// `(version, state, statements_done)` from airlock_history, by version.
    pub fn history(&self) -> Vec<(String, String, i64)> {
        if !self.table_exists("airlock_history") {
            return Vec::new();
        }
        let mut rows: Vec<(String, String, i64)> = self
            .rows("SELECT version, state, statements_done FROM airlock_history")
            .into_iter()
            .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap(), r[2].clone().unwrap().parse().unwrap()))
            .collect();
        rows.sort_by_key(|r| r.0.split('.').map(|s| s.parse::<u64>().unwrap_or(0)).collect::<Vec<_>>());
        rows
    }

    pub fn state_of(&self, version: &str) -> Option<String> {
        self.history().into_iter().find(|r| r.0 == version).map(|r| r.1)
    }

    /// Keeps a transaction open in another session (`sql` runs inside it) until
    /// the returned guard is dropped or `hold` elapses.
    pub fn hold(&self, sql: &str, hold: Duration) -> Holder {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (url, sql, engine) = (self.url.clone(), sql.to_owned(), self.engine);
        let thread = thread::spawn(move || {
            runtime().block_on(async move {
                match engine {
                    Engine::Postgres => {
                        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
                        tokio::spawn(conn);
                        client.batch_execute(&format!("BEGIN; {sql}")).await.unwrap();
                        ready_tx.send(()).unwrap();
                        let _ = tokio::task::spawn_blocking(move || stop_rx.recv_timeout(hold)).await;
                        client.batch_execute("COMMIT").await.unwrap();
                    }
                    Engine::MySql => {
                        let mut conn =
                            mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap()).await.unwrap();
                        conn.query_drop("START TRANSACTION").await.unwrap();
                        conn.query_drop(sql).await.unwrap();
                        ready_tx.send(()).unwrap();
                        let _ = tokio::task::spawn_blocking(move || stop_rx.recv_timeout(hold)).await;
                        conn.query_drop("COMMIT").await.unwrap();
                    }
                    Engine::Sqlite => {
                        let conn = sqlite_conn(&url);
                        conn.execute_batch(&format!("BEGIN IMMEDIATE; {sql}")).unwrap();
                        ready_tx.send(()).unwrap();
                        let _ = stop_rx.recv_timeout(hold);
                        conn.execute_batch("COMMIT").unwrap();
                    }
                }
            });
        });
        ready_rx.recv().expect("the holding session started");
        Holder { stop: Some(stop_tx), thread: Some(thread) }
    }
}

pub struct Holder {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pg_exec(url: &str, sql: &str) {
    runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

fn pg_rows(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect()
    })
}

fn my_rows(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    runtime().block_on(async {
        let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(url).unwrap()).await.unwrap();
        let rows: Vec<mysql_async::Row> = conn.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let out = rows
            .into_iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| match row.as_ref(i) {
                        Some(mysql_async::Value::NULL) | None => None,
                        Some(mysql_async::Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                        Some(other) => Some(other.as_sql(true).trim_matches('\'').to_owned()),
                    })
                    .collect()
            })
            .collect();
        conn.disconnect().await.unwrap();
        out
    })
}

fn sqlite_conn(url: &str) -> rusqlite::Connection {
    let path = url.strip_prefix("sqlite:").unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    conn
}

/// A migrations directory of its own.
pub struct Project {
    pub root: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("migrations")).unwrap();
        Project { root }
    }

    pub fn dir(&self) -> PathBuf {
        self.root.path().join("migrations")
    }

    pub fn write(&self, name: &str, content: &str) -> &Project {
        let path = self.dir().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self
    }

    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir().join(name)).unwrap();
    }

    pub fn write_config(&self, content: &str) {
        std::fs::write(self.root.path().join("airlock.toml"), content).unwrap();
    }

    /// `airlock` run from the project root, with no database chosen and no
    /// colour. Its temporary files (a SQLite scratch database) and its cache
    /// of the migrations directory go in the project, so that a run a test
    /// kills leaves none behind it and no test reads another's cache.
    pub fn bare(&self) -> Command {
        let tmp = self.root.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let mut cmd = Command::new(airlock_bin());
        cmd.current_dir(self.root.path())
            .env_remove("DATABASE_URL")
            .env("NO_COLOR", "1")
            .env("TMPDIR", tmp)
            .env("AIRLOCK_CACHE_DIR", self.cache_dir());
        cmd
    }

    /// Where this project's runs keep what they read of the migrations directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    /// `airlock` with this project's directory and `db`'s URL, run from the project root.
    pub fn airlock(&self, db: &Db) -> Command {
        let mut cmd = self.bare();
        cmd.arg("--database-url").arg(&db.url).arg("--dir").arg(self.dir()).arg("--lock-wait").arg("60s");
        cmd
    }

    pub fn run(&self, db: &Db, args: &[&str]) -> Run {
        Run::of(self.airlock(db).args(args).output().unwrap())
    }
}

/// Runs `command` and calls `release` once it prints a line containing
/// `said` on stdout (or after 30 s, if it never does); returns the run.
#[allow(dead_code)]
pub fn run_releasing_on(mut command: Command, said: &str, release: impl FnOnce()) -> Run {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (hit, hit_rx) = mpsc::channel();
    let said = said.to_owned();
    let reader = thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(&said) {
                let _ = hit.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let _ = hit_rx.recv_timeout(Duration::from_secs(30));
    release();
    let stdout = reader.join().unwrap();
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn airlock_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_airlock"))
}

/// A finished `airlock` process.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn expect(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "exit code\n--- stdout:\n{}\n--- stderr:\n{}", self.stdout, self.stderr);
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// `CREATE TABLE t_<i> (id bigint primary key, v text)`: valid on every engine.
pub fn create_table(i: usize) -> String {
    format!("CREATE TABLE t_{i} (id bigint primary key, v text);\n")
}

/// This machine's identity as airlock writes it in the lease: `name#boot#pidns`.
pub fn host_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    let boot: String =
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap().trim().chars().take(8).collect();
    let ns = std::fs::read_link("/proc/self/ns/pid").unwrap().to_string_lossy().into_owned();
    let ns = ns.trim_start_matches("pid:[").trim_end_matches(']').to_owned();
    format!("{host}#{boot}#{ns}")
}

/// Makes the run lease look held by process `pid` of this host, applying version 2.
pub fn hold_lease(db: &Db, pid: u32) {
    db.exec(&format!(
        "UPDATE airlock_lock SET owner = 'other', host = '{}', pid = {pid}, os_user = 'deployer', version = '2', acquired_at = {now}, heartbeat_at = {now} WHERE id = 1",
        host_identity(),
        now = now_sql(db.engine)
    ));
}

/// SQL for "now" in the engine's lease columns.
pub fn now_sql(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "now()",
        Engine::MySql => "NOW(6)",
        Engine::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    }
}

/// A running `airlock serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    // The child is waited for in Drop, or before the panic.
    #[allow(clippy::zombie_processes)]
    pub fn start(mut command: std::process::Command) -> Server {
        let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("airlock serve exited before listening: {:?}", child.wait());
            }
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
                // Keep draining stderr so the server never blocks on a full pipe.
                thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
                return Server { child, addr };
            }
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut response = agent.get(format!("http://{}{path}", self.addr)).call().unwrap();
        let code = response.status().as_u16();
        (code, response.body_mut().read_to_string().unwrap())
    }

    /// A GET with one request header; the status, the headers asked for and the body.
    pub fn get_with(&self, path: &str, header: Option<(&str, &str)>) -> (u16, String, Option<String>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut request = agent.get(format!("http://{}{path}", self.addr));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let mut response = request.call().unwrap();
        let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap_or_default().to_owned());
        (response.status().as_u16(), response.body_mut().read_to_string().unwrap(), challenge)
    }

    pub fn json(&self, path: &str) -> (u16, serde_json::Value) {
        let (code, body) = self.get(path);
        (code, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}")))
    }

    /// The value of one metric line, e.g. `airlock_up{environment="default"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (code, text) = self.get("/metrics");
        assert_eq!(code, 200, "{text}");
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
