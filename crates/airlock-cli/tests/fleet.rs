//! `--fleet`: one set of migrations over many databases. Every member is
//! looked at before any changes; a canary, then stages; the first failure
//! stops the rollout with the rest untouched, and running again resumes.

mod common;

use common::{Db, Engine, Project, Run};
use serde_json::Value;

/// `airlock --fleet NAME ARGS` from the project, its migrations directory given.
fn fleet(project: &Project, name: &str, args: &[&str]) -> Run {
    let mut command = project.bare();
    command.args(["--dir"]).arg(project.dir()).args(["--fleet", name, "--lock-wait", "60s"]).args(args);
    Run::of(command.output().unwrap())
}

/// Members listed by a command, each `name url` on its line.
fn listed_by_command(project: &Project, members: &[(String, &Db)]) {
    let lines: Vec<String> = members.iter().map(|(name, db)| format!("{name} {}", db.url)).collect();
    std::fs::write(project.root.path().join("members.txt"), lines.join("\n") + "\n").unwrap();
}

fn outcomes(json: &Value) -> Vec<(String, String)> {
    json["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap().to_owned(), m["outcome"].as_str().unwrap().to_owned()))
        .collect()
}

fn time(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("no time: {value}"))).unwrap()
}

/// Each stage started after the one before it had ended, the canary first.
fn stages_in_order(json: &Value) {
    let members = json["members"].as_array().unwrap();
    let stages = json["stages"].as_array().unwrap();
    for pair in stages.windows(2) {
        let in_stage = |stage: &Value| -> Vec<&Value> {
            let names: Vec<&str> = stage["members"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
            members.iter().filter(|m| names.contains(&m["name"].as_str().unwrap())).collect()
        };
        let ended = in_stage(&pair[0]).iter().map(|m| time(&m["finished_at"])).max().unwrap();
        let started = in_stage(&pair[1]).iter().map(|m| time(&m["started_at"])).min().unwrap();
        assert!(ended <= started, "a stage started at {started} before the one before it ended at {ended}: {json}");
    }
}

/// Fifty members, half PostgreSQL and half SQLite, listed by a command: a
/// canary, then stages of ten, four at a time; a member whose migration
/// fails stops the rollout with every later member untouched, and running
/// again goes on from there.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn fifty_members_roll_out_canary_first_then_in_stages_and_resume_after_a_failure() {
    let dbs: Vec<Db> = (0..50).map(|i| Db::new(if i % 2 == 0 { Engine::Postgres } else { Engine::Sqlite })).collect();
    let project = Project::new();
    let members: Vec<(String, &Db)> = dbs.iter().enumerate().map(|(i, db)| (format!("t{:02}", i + 1), db)).collect();
    listed_by_command(&project, &members);
    project.write_config(
        "[fleets.tenants]\nurls_command = \"cat members.txt\"\ncanary = 1\nstage_size = 10\nparallel = 4\n",
    );
    project.write("1_users.up.sql", "CREATE TABLE users (id integer PRIMARY KEY, email text);\n");
    let first = fleet(&project, "tenants", &["--format", "json", "migrate"]);
    first.expect(0);
    let json = first.json();
    assert!(outcomes(&json).iter().all(|(_, o)| o == "applied"), "{json}");
    let sizes: Vec<usize> =
        json["stages"].as_array().unwrap().iter().map(|w| w["members"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [1, 10, 10, 10, 10, 9], "{json}");
    assert_eq!(json["stages"][0]["stage"], 0, "{json}");
    assert_eq!(json["stages"][0]["members"][0], "t01", "the canary is the first member");
    stages_in_order(&json);

    // t27 (in the third stage) refuses the rows the next migration writes.
    dbs[26].exec(match dbs[26].engine {
        Engine::Postgres => {
            "CREATE FUNCTION no_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no new users here'; END $$; \
             CREATE TRIGGER users_closed BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION no_insert();"
        }
        _ => "CREATE TRIGGER users_closed BEFORE INSERT ON users BEGIN SELECT RAISE(ABORT, 'no new users here'); END;",
    });
    project
        .write("2_admin.up.sql", "-- airlock:data\nINSERT INTO users (id, email) VALUES (1, 'admin@example.com');\n");
    let stopped = fleet(&project, "tenants", &["--format", "json", "migrate"]);
    stopped.expect(1);
    let json = stopped.json();
    let by_name: std::collections::HashMap<String, String> = outcomes(&json).into_iter().collect();
    assert_eq!(by_name["t27"], "failed", "{json}");
    assert!(json["stopped"].as_str().unwrap().starts_with("t27 did not migrate"), "{json}");
    for (i, db) in dbs.iter().enumerate() {
        let name = format!("t{:02}", i + 1);
        match by_name[&name].as_str() {
            "applied" => assert_eq!(db.state_of("2").as_deref(), Some("succeeded"), "{name}"),
            "not_started" => assert_eq!(db.state_of("2"), None, "{name} was changed: {json}"),
            "failed" => assert_eq!(db.count("SELECT count(*) FROM users"), 0, "{name}"),
            other => panic!("{name}: {other}: {json}"),
        }
    }
    // Every member after the third stage was left alone.
    assert!((32..=50).all(|i| by_name[&format!("t{i:02}")] == "not_started"), "{json}");
    assert!(by_name.values().filter(|o| *o == "applied").count() >= 21, "{json}");

    // Status and the gate say who is behind.
    let status = fleet(&project, "tenants", &["--format", "json", "status"]);
    status.expect(0);
    let behind = status.json()["behind"].as_array().unwrap().len();
    assert_eq!(behind, by_name.values().filter(|o| *o != "applied").count(), "{}", status.stdout);
    let gate = fleet(&project, "tenants", &["gate", "--require", "latest"]);
    gate.expect(4);
    assert!(gate.stdout.contains("t27: ") && gate.stdout.contains("t50: "), "{}", gate.stdout);

    // Fixed, and run again: it goes on where it stopped.
    dbs[26].exec(match dbs[26].engine {
        Engine::Postgres => "DROP TRIGGER users_closed ON users;",
        _ => "DROP TRIGGER users_closed;",
    });
    let resumed = fleet(&project, "tenants", &["--format", "json", "migrate"]);
    resumed.expect(0);
    let json = resumed.json();
    for (name, outcome) in outcomes(&json) {
        let before = &by_name[&name];
        let want = if before == "applied" { "current" } else { "applied" };
        assert_eq!(outcome, want, "{name} (was {before}): {json}");
    }
    assert!(dbs.iter().all(|db| db.state_of("2").as_deref() == Some("succeeded")));
    fleet(&project, "tenants", &["gate", "--require", "latest"]).expect(0);
}

/// One tenant whose rows would break the foreign key blocks the whole
/// fleet before any member changes, and is named; `plan --fleet` says so
/// too. Members come from a catalog query.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn one_member_with_orphaned_rows_blocks_the_fleet_before_any_change() {
    let catalog = Db::new(Engine::Postgres);
    let dbs: Vec<Db> = (0..6).map(|_| Db::new(Engine::Postgres)).collect();
    catalog.exec("CREATE TABLE tenants (name text PRIMARY KEY, url text NOT NULL, active boolean NOT NULL);");
    for (i, db) in dbs.iter().enumerate() {
        catalog.exec(&format!("INSERT INTO tenants VALUES ('shop{}', '{}', true)", i + 1, db.url));
    }
    // An inactive tenant is not a member.
    catalog.exec("INSERT INTO tenants VALUES ('gone', 'postgres://nowhere.invalid/gone', false)");
    let project = Project::new();
    project.write_config(&format!(
        "[fleets.shops]\ncatalog_url = \"{}\"\nurls_query = \"SELECT name, url FROM tenants WHERE active ORDER BY name\"\n",
        catalog.url
    ));
    project.write(
        "1_orders.up.sql",
        "CREATE TABLE users (id int PRIMARY KEY);\nCREATE TABLE orders (id int PRIMARY KEY, user_id int);\n",
    );
    fleet(&project, "shops", &["migrate"]).expect(0);
    for db in &dbs {
        db.exec("INSERT INTO users VALUES (1); INSERT INTO orders VALUES (1, 1);");
    }
    // shop4 has an order whose user is gone.
    dbs[3].exec("INSERT INTO orders VALUES (2, 99);");
    project.write(
        "2_orders_user_fk.up.sql",
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n\
         ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk;\n",
    );

    let plan = fleet(&project, "shops", &["plan"]);
    plan.expect(3);
    assert!(plan.stdout.contains("blocked shop4: 1 pending"), "{}", plan.stdout);
    assert!(plan.stdout.contains("plan blocked; blocked on shop4"), "{}", plan.stdout);
    assert!(plan.stdout.contains("safe shop1: 1 pending"), "{}", plan.stdout);

    let refused = fleet(&project, "shops", &["--format", "json", "migrate"]);
    refused.expect(3);
    let json = refused.json();
    let got = outcomes(&json);
    assert_eq!(got.len(), 6, "{json}");
    for (name, outcome) in &got {
        assert_eq!(outcome, if name == "shop4" { "refused" } else { "not_started" }, "{json}");
    }
    let shop4 = &json["members"][3];
    assert!(shop4["error"].as_str().unwrap().contains("orders"), "{shop4}");
    assert!(json["stopped"].as_str().unwrap().contains("nothing was changed on any member"), "{json}");
    for db in &dbs {
        assert_eq!(db.state_of("2"), None, "a member was changed");
    }

    // Its orphan fixed, the fleet goes through.
    dbs[3].exec("DELETE FROM orders WHERE id = 2;");
    fleet(&project, "shops", &["migrate"]).expect(0);
    assert!(dbs.iter().all(|db| db.state_of("2").as_deref() == Some("succeeded")));
}

/// A fleet whose settings cannot work is refused before anything runs,
/// naming what is wrong.
#[test]
fn fleet_settings_that_cannot_work_are_refused_naming_the_key() {
    let (a, b) = (Db::new(Engine::Sqlite), Db::new(Engine::Sqlite));
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id int);\n");
    let refused = |config: &str, args: &[&str], says: &str| {
        project.write_config(config);
        let run = fleet(&project, "f", args);
        run.expect(2);
        assert!(run.stderr.contains(says), "{config}\n{}", run.stderr);
    };
    refused("", &["migrate"], "--fleet f: no [fleets.f] in the configuration");
    refused("[fleets.f]\n", &["migrate"], "[fleets.f]: no members: set `urls`, `urls_command` or `urls_query`");
    let both = format!("[fleets.f]\nurls = [\"{}\"]\nurls_command = \"echo\"\n", a.url);
    refused(&both, &["migrate"], "set one of `urls`, `urls_command` and `urls_query`, not several");
    let twice = format!("[fleets.f]\nurls = [\"{}\", \"{}\", \"{}\"]\n", a.url, b.url, a.url);
    refused(&twice, &["migrate"], "fleet `f`: members 1 and 3 have the same URL");
    let stage = format!("[fleets.f]\nurls = [\"{}\"]\nstage_size = \"150%\"\n", a.url);
    refused(&stage, &["migrate"], "stage_size = `150%`: a number of members (`10`) or a share of them (`25%`)");
    let env = format!("[fleets.f]\nurls = [\"{}\"]\nenvironment = \"prod\"\n", a.url);
    refused(&env, &["migrate"], "environment `prod`: no [environments.prod]");
    let weaker = format!(
        "[environments.prod]\nprotected = true\n[environments.dev]\n[fleets.f]\nurls = [\"{}\"]\nenvironment = \"prod\"\n",
        a.url
    );
    refused(&weaker, &["--env", "dev", "migrate"], "its members are in environment `prod`: not with --env dev");
    refused(
        "[fleets.f]\nurls_command = \"echo oops >&2; exit 3\"\n",
        &["migrate"],
        "urls_command `echo oops >&2; exit 3` failed",
    );
    refused("[fleets.f]\nurls_command = \"echo a b c\"\n", &["migrate"], "line 1: `a b c`: a URL, or a name and a URL");
    refused("[fleets.f]\nurls_command = \"true\"\n", &["migrate"], "fleet `f` has no members");
    refused("[fleets.f]\nurls_query = \"SELECT 1\"\n", &["migrate"], "`urls_query` needs `catalog_url`");
    refused("[fleets.f]\nurl = \"x\"\n", &["migrate"], "unknown key `url` in [fleets.f]; known: urls, urls_command");
    let fine = format!("[fleets.f]\nurls = [\"{}\"]\n", a.url);
    refused(&fine, &["history"], "--fleet works with `plan`, `migrate`, `status` and `gate`");
    refused(&fine, &["migrate", "--parallel", "0"], "--parallel 0: at least 1");
    let single = project.run(&a, &["migrate", "--canary", "1"]);
    single.expect(2);
    assert!(single.stderr.contains("--canary is for a fleet's rollout: with --fleet NAME"), "{}", single.stderr);
    // Nothing ran anywhere.
    assert!(!a.table_exists("t") && !b.table_exists("t"));
}

/// A dry run looks at every member and says which stage each would be in,
/// changing nothing.
#[test]
fn a_dry_run_says_the_stages_and_changes_nothing() {
    let dbs: Vec<Db> = (0..5).map(|_| Db::new(Engine::Sqlite)).collect();
    let project = Project::new();
    let urls: Vec<String> = dbs.iter().map(|d| format!("\"{}\"", d.url)).collect();
    project.write_config(&format!("[fleets.f]\nurls = [{}]\nstage_size = \"50%\"\n", urls.join(", ")));
    project.write("1_t.up.sql", "CREATE TABLE t (id int);\n");
    let run = fleet(&project, "f", &["--format", "json", "migrate", "--dry-run", "--canary", "2"]);
    run.expect(0);
    let json = run.json();
    let stages: Vec<Option<u64>> = json["members"].as_array().unwrap().iter().map(|m| m["stage"].as_u64()).collect();
    // Two canaries, then stages of half the five (3): 3, then the last.
    assert_eq!(stages, [Some(0), Some(0), Some(1), Some(1), Some(1)], "{json}");
    assert!(outcomes(&json).iter().all(|(_, o)| o == "would_apply"), "{json}");
    assert!(dbs.iter().all(|d| !d.table_exists("t")));
}

/// Ctrl-C during a rollout stops the statement each running member runs on
/// its server and starts no other member; the run exits 130 and the next
/// one goes on.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs PostgreSQL: run `scripts/test`, which starts it")]
fn ctrl_c_stops_every_running_member_and_starts_no_other() {
    let dbs: Vec<Db> = (0..5).map(|_| Db::new(Engine::Postgres)).collect();
    let project = Project::new();
    let urls: Vec<String> = dbs.iter().map(|d| format!("\"{}\"", d.url)).collect();
    project.write_config(&format!("[fleets.f]\nurls = [{}]\ncanary = 0\nparallel = 2\n", urls.join(", ")));
    project.write("1_slow.up.sql", "-- airlock:data\nSELECT pg_sleep(30);\n");
    let sleeping = |db: &Db| {
        db.count("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(30)%' AND pid <> pg_backend_pid()")
    };
    let mut command = project.bare();
    command.args(["--dir"]).arg(project.dir()).args(["--fleet", "f", "--format", "json", "migrate"]);
    let child = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let started = std::time::Instant::now();
    while dbs.iter().map(sleeping).sum::<i64>() < 2 {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "two members never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let signalled = std::time::Instant::now();
    let run = Run::of(child.wait_with_output().unwrap());
    assert!(signalled.elapsed() < std::time::Duration::from_secs(10), "took {:?}", signalled.elapsed());
    run.expect(130);
    let json = run.json();
    let got = outcomes(&json);
    assert_eq!(got.iter().filter(|(_, o)| o == "interrupted").count(), 2, "{json}");
    assert_eq!(got.iter().filter(|(_, o)| o == "not_started").count(), 3, "{json}");
    assert!(json["stopped"].as_str().unwrap().contains("Ctrl-C"), "{json}");
    // Nothing left sleeping on any server, nothing recorded as applied.
    assert_eq!(dbs.iter().map(sleeping).sum::<i64>(), 0);
    assert!(dbs.iter().all(|d| d.state_of("1").as_deref() != Some("succeeded")));
}

/// `serve` lists the fleets on its overview, shows each one's members on
/// `/fleet/NAME` (names escaped) and its status as JSON on `/fleets/NAME`.
#[test]
fn serve_shows_a_fleet_and_who_is_behind() {
    let dbs: Vec<Db> = (0..3).map(|_| Db::new(Engine::Sqlite)).collect();
    let project = Project::new();
    let members: Vec<(String, &Db)> =
        ["acme".to_owned(), "<b>globex</b>".to_owned(), "initech".to_owned()].into_iter().zip(&dbs).collect();
    listed_by_command(&project, &members);
    project.write_config("url = \"sqlite:main.db\"\n[fleets.tenants]\nurls_command = \"cat members.txt\"\n");
    project.write("1_users.up.sql", "CREATE TABLE users (id integer PRIMARY KEY);\n");
    fleet(&project, "tenants", &["migrate"]).expect(0);
    project.write("2_orders.up.sql", "CREATE TABLE orders (id integer PRIMARY KEY);\n");
    // Only the first member takes the second migration.
    project.run(&dbs[0], &["migrate"]).expect(0);

    let mut command = project.bare();
    command.arg("--dir").arg(project.dir()).args(["serve", "--listen", "127.0.0.1:0"]);
    let server = common::Server::start(command);
    let (code, json) = server.json("/fleets/tenants");
    assert_eq!(code, 200, "{json}");
    assert_eq!(json["latest"], "2", "{json}");
    assert_eq!(json["behind"], serde_json::json!(["<b>globex</b>", "initech"]), "{json}");
    let (code, html) = server.get("/fleet/tenants");
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("1 of 3 member(s) at the latest version (2); 2 behind"), "{html}");
    assert!(html.contains("&#60;b&#62;globex&#60;/b&#62;") && !html.contains("<b>globex"), "{html}");
    let (_, overview) = server.get("/");
    assert!(overview.contains("href=\"/fleet/tenants\""), "{overview}");
    assert!(overview.contains("1 of 3 member(s) at the latest version"), "{overview}");
    let (code, missing) = server.json("/fleets/nope");
    assert_eq!(code, 404);
    assert_eq!(missing["error"], "no fleet `nope` (known: tenants)");
}
