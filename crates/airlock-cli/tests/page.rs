//! The page of `airlock serve`, in a real browser: headless Chromium driven
//! through ChromeDriver (both Debian's; `scripts/test` installs and starts
//! them). What a person sees on PostgreSQL and SQLite: every environment,
//! one that is down, a pending migration with its plan, a failed one with
//! the commands that resolve it; links followed; an update that arrives
//! without a reload; names and SQL that try to run script; the token.
//! Screenshots go to `target/page-screenshots/` for review.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Db, Engine, Project, Server};
use fantoccini::{Client, ClientBuilder, Locator};

/// A headless Chromium session, closed when dropped.
struct Browser {
    client: Option<Client>,
    runtime: tokio::runtime::Runtime,
}

impl Browser {
    fn open() -> Browser {
        let url = std::env::var("AIRLOCK_TEST_WEBDRIVER_URL").expect(
            "AIRLOCK_TEST_WEBDRIVER_URL is not set: run the tests through `scripts/test`, which starts ChromeDriver",
        );
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut options = serde_json::json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1200,1000", "--hide-scrollbars",
            ]
        });
        if let Ok(binary) = std::env::var("AIRLOCK_TEST_CHROMIUM") {
            options["binary"] = serde_json::Value::String(binary);
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".to_owned(), options);
        let client = runtime.block_on(async {
            // ChromeDriver listens on loopback: plain HTTP, no TLS stack.
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            ClientBuilder::new(connector).capabilities(capabilities).connect(&url).await
        });
        Browser { client: Some(client.unwrap_or_else(|e| panic!("no browser session from {url}: {e}"))), runtime }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    fn goto(&self, url: &str) {
        self.runtime.block_on(self.client().goto(url)).unwrap_or_else(|e| panic!("{url}: {e}"));
    }

    /// What a person reads on the page.
    fn text(&self) -> String {
        self.eval("return document.body.innerText").as_str().unwrap_or_default().to_owned()
    }

    fn eval(&self, script: &str) -> serde_json::Value {
        self.runtime.block_on(self.client().execute(script, Vec::new())).unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    fn path(&self) -> String {
        self.runtime.block_on(self.client().current_url()).unwrap().path().to_owned()
    }

    /// Clicks the link that reads `text` exactly, and waits for the page it leads to.
    fn follow(&self, text: &str) {
        let before = self.path();
        let mut tries = 0;
        loop {
            let clicked = self.runtime.block_on(async {
                let link = self.client().find(Locator::LinkText(text)).await?;
                link.click().await
            });
            match clicked {
                Ok(()) => break,
                // A live update replaced the content between finding the link and clicking it.
                Err(e) if tries < 5 => {
                    tries += 1;
                    eprintln!("following `{text}` again: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("cannot follow `{text}`: {e}"),
            }
        }
        self.until(&format!("the link `{text}` to lead away from {before}"), || self.path() != before);
    }

    /// Waits up to 30 s for `done`.
    fn until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "waited 30 s for {what}; the page reads:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Makes the window a phone's: 390 CSS pixels wide.
    fn be_a_phone(&self) {
        self.runtime.block_on(self.client().set_window_size(390, 844)).unwrap();
    }

    /// Whether the page fits the window's width (nothing to scroll sideways).
    fn fits(&self) -> bool {
        self.eval("return document.documentElement.scrollWidth <= window.innerWidth") == true
    }

    /// Saves what the browser shows under `target/page-screenshots/NAME.png`.
    fn screenshot(&self, name: &str) {
        let png = self.runtime.block_on(self.client().screenshot()).unwrap();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
        let dir = target.join("page-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
    }
}

/// A name and a comment that would run script if the page did not escape them.
const HOSTILE_NAME: &str = "<img src=x onerror=alert(1)>";
const HOSTILE_SQL: &str = "-- </pre></script><script>document.title = 'pwned'</script>\n";

/// Three migrations: a table, a column under a hostile name, and one
/// outside a transaction whose second statement fails.
fn project() -> Project {
    let project = Project::new();
    project.write("1_users.up.sql", "CREATE TABLE users (id bigint PRIMARY KEY, email text);\n");
    project
        .write(&format!("2_{HOSTILE_NAME}.up.sql"), &format!("{HOSTILE_SQL}ALTER TABLE users ADD COLUMN name text;\n"));
    project.write(
        "3_names.up.sql",
        "-- airlock:no-transaction\nCREATE TABLE names (id bigint PRIMARY KEY);\nCREATE INDEX names_missing ON missing_table (id);\n",
    );
    project
}

/// A URL on which nothing listens, with a password the page must never show.
fn unreachable_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("postgres://app:hunter2@127.0.0.1:{port}/app")
}

/// `airlock serve` over `ready` (at version 1), `broken` (migration 3 failed
/// part-way) and `down` (nothing listens).
fn three_environments(engine: Engine) -> (Project, Db, Db, Server) {
    let (ready, broken) = (Db::new(engine), Db::new(engine));
    let project = project();
    project.run(&ready, &["migrate", "--to", "1"]).expect(0);
    project.run(&broken, &["migrate"]).expect(1);
    project.write_config(&format!(
        "[environments.ready]\nurl = \"{}\"\n[environments.broken]\nurl = \"{}\"\n[environments.down]\nurl = \"{}\"\n",
        ready.url,
        broken.url,
        unreachable_url()
    ));
    let mut command = project.bare();
    command.args(["serve", "--listen", "127.0.0.1:0", "--max-age", "0", "--read-timeout", "5s"]);
    let server = Server::start(command);
    (project, ready, broken, server)
}

#[test]
#[cfg_attr(
    not(airlock_test_servers),
    ignore = "needs PostgreSQL and ChromeDriver: run `scripts/test`, which starts them"
)]
fn page_in_a_browser_on_postgres() {
    page_in_a_browser(Engine::Postgres);
}

#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs ChromeDriver: run `scripts/test`, which starts it")]
fn page_in_a_browser_on_sqlite() {
    page_in_a_browser(Engine::Sqlite);
}

fn page_in_a_browser(engine: Engine) {
    let (project, ready, _broken, server) = three_environments(engine);
    let base = format!("http://{}", server.addr);
    let browser = Browser::open();
    let engine_name = format!("{engine:?}").to_lowercase();

    // Every environment at a glance; the one that is down says so, the others still show.
    browser.goto(&format!("{base}/"));
    let seen = browser.text();
    for expected in ["ready", "broken", "down", "unreachable", "cannot read the database", "not ready for latest"] {
        assert!(seen.contains(expected), "`{expected}` is not on the page:\n{seen}");
    }
    assert!(seen.contains(&format!("behind by 2 migrations: 2 ({HOSTILE_NAME}), 3 (names)")), "{seen}");
    assert!(!seen.contains("hunter2"), "the password shows:\n{seen}");
    assert!(seen.contains("app:***@127.0.0.1"), "{seen}");
    // The hostile name is text, not an element; the hostile SQL ran nothing.
    assert_eq!(browser.eval("return document.querySelectorAll('img').length"), 0);
    assert_ne!(browser.eval("return document.title"), "pwned");
    browser.until("the plan of `ready`'s pending migrations", || {
        let verdicts = "#env-ready dd .badge.safe, #env-ready dd .badge.risky, #env-ready dd .badge.blocked";
        browser.eval(&format!("return document.querySelectorAll('{verdicts}').length")) == 1
    });
    browser.screenshot(&format!("overview-{engine_name}"));

    // The failed migration: its environment's page names the commands that resolve it.
    browser.follow("broken");
    assert_eq!(browser.path(), "/env/broken");
    let seen = browser.text();
    for expected in [
        "failed",
        "airlock resolve 3 --retry-from-failed",
        "airlock resolve 3 --mark-applied",
        "airlock resolve 3 --mark-rolled-back",
        HOSTILE_NAME,
    ] {
        assert!(seen.contains(expected), "`{expected}` is not on the page:\n{seen}");
    }
    browser.screenshot(&format!("environment-{engine_name}"));

    // The migration's own page: its SQL, as written, and its history.
    browser.follow("migration 3");
    assert_eq!(browser.path(), "/env/broken/migrations/3");
    let seen = browser.text();
    assert!(seen.contains("CREATE INDEX names_missing ON missing_table (id);"), "{seen}");
    assert!(seen.contains("airlock resolve 3 --retry-from-failed"), "{seen}");
    browser.until("the failure in the migration's history", || {
        let history = browser.eval("return document.getElementById('history').innerText");
        history.as_str().is_some_and(|h| h.contains("failed") && h.contains("missing_table"))
    });
    browser.screenshot(&format!("migration-{engine_name}"));

    // The hostile migration's page shows its comment as text.
    browser.goto(&format!("{base}/env/ready/migrations/2"));
    assert!(browser.text().contains("document.title = 'pwned'"), "{}", browser.text());
    assert_ne!(browser.eval("return document.title"), "pwned");
    assert_eq!(browser.eval("return document.querySelectorAll('img, script:not(:last-of-type)').length"), 0);

    // Live: a run elsewhere shows on the open page without a reload.
    browser.goto(&format!("{base}/env/ready"));
    browser.until("the page to go live", || browser.text().contains("· live ·"));
    browser.eval("window.airlockMarker = 42; return null");
    assert!(browser.text().contains("version\t1") || browser.text().contains("version\n1"), "{}", browser.text());
    project.run(&ready, &["migrate", "--to", "2", "--backup"]).expect(0);
    browser.until("version 2 to show", || {
        browser.eval("return document.querySelector('dl dd:nth-of-type(2)').textContent") == "2"
    });
    // The backup it took first, kept where history says.
    let backups = browser.eval("return (document.getElementById('backups') || {}).innerText || ''");
    let backups = backups.as_str().unwrap_or_default();
    assert!(
        backups.contains("Backups before migrating") && backups.contains("users") && backups.contains("kept"),
        "{backups}"
    );
    assert_eq!(browser.eval("return window.airlockMarker"), 42, "the page was reloaded, not updated");
    browser.screenshot(&format!("live-{engine_name}"));

    // On a phone: nothing wider than the screen, tables scroll inside their cards.
    browser.be_a_phone();
    for path in ["/", "/env/broken", "/env/broken/migrations/3", "/env/ready"] {
        let started = Instant::now();
        browser.goto(&format!("{base}{path}"));
        // A page left behind gave its event stream's connection back: the next loads at once.
        assert!(started.elapsed() < Duration::from_secs(10), "{path} took {:?} to load", started.elapsed());
        assert!(browser.fits(), "{path} is wider than a phone's screen");
    }
    browser.screenshot(&format!("phone-{engine_name}"));
    drop(browser);
}

/// Raw HTML: the hostile name escaped, no password in any answer, and
/// clear 404 pages.
#[test]
fn page_escapes_what_it_shows_and_never_shows_a_password() {
    let (_project, _ready, _broken, server) = three_environments(Engine::Sqlite);
    let (code, html) = server.get("/");
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("&#60;img src=x onerror=alert(1)&#62;"), "{html}");
    assert!(!html.contains(HOSTILE_NAME), "{html}");
    for path in ["/", "/env/down", "/status?env=down", "/gate?env=down", "/metrics", "/env/down/migrations/1"] {
        let (_, body) = server.get(path);
        assert!(!body.contains("hunter2"), "{path} shows the password:\n{body}");
    }
    let (code, html) = server.get("/env/ready/migrations/2");
    assert_eq!(code, 200, "{html}");
    assert!(!html.contains("<script>document.title"), "{html}");
    assert!(!html.contains("</pre></script>"), "{html}");

    let (code, html) = server.get("/env/nope");
    assert_eq!(code, 404);
    assert!(html.contains("no environment `nope` (known: broken, down, ready)"), "{html}");
    let (code, html) = server.get("/env/ready/migrations/9");
    assert_eq!(code, 404);
    assert!(html.contains("environment `ready` has no migration 9"), "{html}");
    // Versions as history spells them: `01` is migration 1.
    let (code, html) = server.get("/env/ready/migrations/01");
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("applied 20"), "{html}");
    let (code, html) = server.get("/env/ready/migrations/x.y");
    assert_eq!(code, 404);
    assert!(html.contains("`x.y` is not a version"), "{html}");
}

#[test]
fn serve_asks_for_its_token() {
    let db = Db::new(Engine::Sqlite);
    let project = project();
    project.run(&db, &["migrate", "--to", "1"]).expect(0);
    let token = project.root.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let mut command = project.airlock(&db);
    command.args(["serve", "--listen", "127.0.0.1:0", "--auth-token-file"]).arg(&token);
    let server = Server::start(command);

    assert_eq!(server.get("/healthz"), (200, "ok\n".to_owned()), "probes need no token");
    for path in ["/", "/env/default", "/status", "/gate?require=1", "/metrics", "/events", "/nope"] {
        let (code, body, challenge) = server.get_with(path, None);
        assert_eq!(code, 401, "{path}: {body}");
        assert_eq!(challenge.as_deref(), Some(r#"Basic realm="airlock", charset="UTF-8""#), "{path}");
        let (code, _, _) = server.get_with(path, Some(("Authorization", "Bearer wrong")));
        assert_eq!(code, 401, "{path} with a wrong token");
    }
    let (code, body, _) = server.get_with("/gate?require=1", Some(("Authorization", "Bearer s3cret-token")));
    assert_eq!(code, 200, "{body}");
    // A browser's basic authentication: any user, the token as password ("user:s3cret-token").
    let (code, body, _) = server.get_with("/", Some(("Authorization", "Basic dXNlcjpzM2NyZXQtdG9rZW4=")));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("default"), "{body}");

    // A token file that cannot serve is refused, naming it.
    std::fs::write(&token, "\n").unwrap();
    let refused = project.run(&db, &["serve", "--listen", "127.0.0.1:0", "--auth-token-file", token.to_str().unwrap()]);
    refused.expect(2);
    assert!(
        refused.stderr.contains(&format!("--auth-token-file {}: it is empty", token.display())),
        "{}",
        refused.stderr
    );
    std::fs::write(&token, "s3cret-token\nsecond line\n").unwrap();
    let refused = project.run(&db, &["serve", "--listen", "127.0.0.1:0", "--auth-token-file", token.to_str().unwrap()]);
    refused.expect(2);
    assert!(refused.stderr.contains("it holds more than one line"), "{}", refused.stderr);
    let refused = project.run(&db, &["serve", "--listen", "127.0.0.1:0", "--auth-token-file", "/nonexistent/token"]);
    refused.expect(2);
    assert!(refused.stderr.contains("--auth-token-file /nonexistent/token: cannot read it"), "{}", refused.stderr);
}

/// Reads an event stream for up to `how_long`, or until `until` arrives.
fn read_for(stream: &mut std::net::TcpStream, seen: &mut Vec<u8>, how_long: Duration, until: &str) {
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buffer = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < how_long && !String::from_utf8_lossy(seen).contains(until) {
        match stream.read(&mut buffer) {
            Ok(0) => panic!("the stream ended: {}", String::from_utf8_lossy(seen)),
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

/// `airlock serve` over one SQLite database at version 1 of `project()`.
fn one_environment() -> (Project, Db, Server) {
    let db = Db::new(Engine::Sqlite);
    let project = project();
    project.run(&db, &["migrate", "--to", "1"]).expect(0);
    let mut command = project.airlock(&db);
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    let server = Server::start(command);
    (project, db, server)
}

/// A page that shows what is current hears nothing until something changes;
/// then it hears of it.
#[test]
fn events_come_only_when_something_changed() {
    let (project, db, server) = one_environment();
    let (code, html) = server.get("/env/default");
    assert_eq!(code, 200, "{html}");
    let attribute = |name: &str| {
        let rest = html.split(&format!("{name}=\"")).nth(1).unwrap();
        rest.split('"').next().unwrap().replace("&#38;", "&")
    };
    // As live.js asks: from what the page shows.
    let events = format!("{}&since={}", attribute("data-events"), attribute("data-fingerprint"));

    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    write!(stream, "GET {events} HTTP/1.1\r\nHost: airlock\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    let mut seen = Vec::new();
    read_for(&mut stream, &mut seen, Duration::from_secs(4), "event: change");
    assert!(!String::from_utf8_lossy(&seen).contains("event: change"), "{}", String::from_utf8_lossy(&seen));
    project.run(&db, &["migrate", "--to", "2"]).expect(0);
    read_for(&mut stream, &mut seen, Duration::from_secs(20), "event: change");
    assert!(String::from_utf8_lossy(&seen).contains("event: change"), "{}", String::from_utf8_lossy(&seen));
}

/// An open page's event stream does not keep the server from stopping.
#[test]
fn serve_stops_while_a_page_listens_for_changes() {
    let (_project, _db, mut server) = one_environment();

    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    write!(stream, "GET /events?since=x HTTP/1.1\r\nHost: airlock\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    // The first event: the page's fingerprint `x` is not what it shows now.
    while !String::from_utf8_lossy(&seen).contains("event: change") {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "the stream ended: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buffer[..n]);
    }
    assert!(
        String::from_utf8_lossy(&seen).contains("content-type: text/event-stream"),
        "{}",
        String::from_utf8_lossy(&seen)
    );

    let stopped = Instant::now();
    std::process::Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "serve did not stop within 10 s of SIGTERM with a page open"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

/// The page shows the newest recorded drift comparison (the page itself
/// compares nothing: a comparison replays into a scratch database), with
/// its differences escaped, and says how to record one when none was.
#[test]
fn drift_on_the_page_is_the_newest_recorded_comparison() {
    let (project, db, server) = one_environment();
    let (_, html) = server.get("/env/default");
    assert!(html.contains("No comparison recorded yet"), "{html}");
    assert!(html.contains("airlock --env default drift --record"), "{html}");
    let (_, overview) = server.get("/");
    assert!(!overview.contains("<dt>drift</dt>"), "{overview}");

    project.run(&db, &["drift", "--record"]).expect(0);
    shows(&server, "/env/default", "no difference from its 1 applied migrations, replayed");

    // By hand, under a name that tries to be markup.
    db.exec("CREATE TABLE \"<b>by_hand</b>\" (id int);");
    project.run(&db, &["drift", "--record"]).expect(3);
    let html = shows(&server, "/env/default", "3 differences from its 1 applied migrations, replayed");
    assert!(html.contains("airlock drift at "), "{html}");
    assert!(html.contains("table &#60;b&#62;by_hand&#60;/b&#62;"), "{html}");
    assert!(!html.contains("<b>by_hand"), "{html}");
    let (_, overview) = server.get("/");
    assert!(overview.contains("<dt>drift</dt>") && overview.contains("3 differences from"), "{overview}");
}

/// The page at `path` once it shows `text` (a page may be up to a second
/// old), within 10 seconds.
fn shows(server: &Server, path: &str, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, html) = server.get(path);
        if code == 200 && html.contains(text) {
            return html;
        }
        assert!(Instant::now() < deadline, "{path} never showed {text:?}:\n{html}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
