//! A three-node MariaDB Galera cluster (Debian's galera-4, started by
//! `scripts/test` on loopback): runners started on different nodes race on
//! airlock's tables, and Galera reports a lost race as a deadlock (ERROR
//! 1213) at commit. None of them may fail because of it, and each migration
//! runs exactly once: the lease is a row, which holds cluster-wide.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Db, Engine, Project, Run};

/// The cluster's nodes, as `mysql` database URLs.
fn nodes() -> Vec<String> {
    std::env::var("AIRLOCK_TEST_GALERA_URLS")
        .expect("AIRLOCK_TEST_GALERA_URLS is not set: run the tests through `scripts/test`, which starts the cluster")
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// A handle on `url` (a MariaDB database).
fn on(url: &str) -> Db {
    let mut db = Db::new(Engine::Sqlite).handle();
    db.engine = Engine::MySql;
    db.url = url.to_owned();
    db
}

/// `url` with `database` in place of its database.
fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{database}")
}

/// Eight runners, spread over the three nodes, started at once, several
/// times over: every one exits 0, and each migration ran exactly once.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs the Galera cluster: run `scripts/test`, which starts it")]
fn galera_eight_runners_on_three_nodes_all_succeed_and_apply_each_migration_once() {
    let nodes = nodes();
    let project = Project::new();
    project.write("01_log.up.sql", "CREATE TABLE runs_log (version int NOT NULL PRIMARY KEY);\n");
    for i in 2..=40 {
        let sql = if i % 2 == 0 {
            format!("CREATE TABLE t{i} (id int PRIMARY KEY, v varchar(20));\n")
        } else {
            format!("-- airlock:data\nINSERT INTO runs_log VALUES ({i});\n")
        };
        project.write(&format!("{i:02}_step.up.sql"), &sql);
    }
    for round in 0..4 {
        let name = format!("airlock_galera_{}_{round}", std::process::id());
        on(&nodes[0]).exec(&format!("CREATE DATABASE {name}"));
        let urls: Vec<String> = nodes.iter().map(|n| with_database(n, &name)).collect();
        // Made in total order on every node; seen everywhere before going on.
        let started = Instant::now();
        while !urls.iter().all(|u| on(u).try_exec("SELECT 1").is_ok()) {
            assert!(started.elapsed() < Duration::from_secs(20), "{name} never reached every node");
            std::thread::sleep(Duration::from_millis(50));
        }
        let runners: Vec<_> = (0..8)
            .map(|r| {
                let mut command = project.bare();
                command.arg("--database-url").arg(&urls[r % urls.len()]).arg("--dir").arg(project.dir()).args([
                    "--lock-wait",
                    "120s",
                    "migrate",
                ]);
                command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
            })
            .collect();
        for (r, runner) in runners.into_iter().enumerate() {
            let run = Run::of(runner.wait_with_output().unwrap());
            assert_eq!(run.code, 0, "round {round}, runner {r} (node {}):\n{}", r % 3 + 1, run.all());
        }
        // Read on another node than the first: the cluster agrees.
        let db = on(&urls[1]);
        assert_eq!(db.count("SELECT count(*) FROM runs_log"), 19, "round {round}");
        assert_eq!(db.count("SELECT count(*) FROM airlock_history WHERE state = 'succeeded'"), 40, "round {round}");
        assert_eq!(db.count("SELECT count(DISTINCT version) FROM airlock_history"), 40, "round {round}");
        on(&nodes[0]).exec(&format!("DROP DATABASE {name}"));
    }
}

/// `plan` on a node says schema changes run in TOI (writes stall on every
/// node while one runs); `migrate` refuses a node that is not `Synced`
/// (here one desynced on purpose), nothing changed, and runs on it again
/// once it is.
#[test]
#[cfg_attr(not(airlock_test_servers), ignore = "needs the Galera cluster: run `scripts/test`, which starts it")]
fn galera_plan_names_toi_and_migrate_refuses_a_node_that_is_not_synced() {
    let nodes = nodes();
    let name = format!("airlock_galera_state_{}", std::process::id());
    on(&nodes[0]).exec(&format!("CREATE DATABASE {name}"));
    let url = with_database(&nodes[2], &name);
    let project = Project::new();
    project.write("1_t.up.sql", "CREATE TABLE t (id int PRIMARY KEY);\n");
    let run = |args: &[&str]| {
        let mut command = project.bare();
        command.arg("--database-url").arg(&url).arg("--dir").arg(project.dir()).args(args);
        Run::of(command.output().unwrap())
    };
    let plan = run(&["plan"]);
    plan.expect(0);
    assert!(plan.stdout.contains("Cluster: Galera cluster of 3 nodes, schema changes in TOI"), "{}", plan.stdout);
    assert_eq!(run(&["--format", "json", "plan"]).json()["cluster"].as_str().map(|c| c.contains("TOI")), Some(true));

    /// Puts the node back in step however the test ends.
    struct Resync(Db);
    impl Drop for Resync {
        fn drop(&mut self) {
            let _ = self.0.try_exec("SET GLOBAL wsrep_desync = OFF");
        }
    }
    let node = Resync(on(&nodes[2]));
    node.0.exec("SET GLOBAL wsrep_desync = ON");
    let refused = run(&["migrate"]);
    refused.expect(3);
    assert!(
        refused.stderr.contains("this node of the Galera cluster is `Donor/Desynced`, not `Synced`"),
        "{}",
        refused.stderr
    );
    assert!(!on(&url).table_exists("t"), "a refused run changed the database");
    drop(node);
    run(&["migrate"]).expect(0);
    assert!(on(&with_database(&nodes[0], &name)).table_exists("t"));
    on(&nodes[0]).exec(&format!("DROP DATABASE {name}"));
}
