//! `plan` and `migrate` judge alike: the same pending sets run through both
//! on every engine, and the plan says `blocked` exactly when `migrate`
//! refuses (exit 3, nothing of the refused migration applied). The one
//! documented exception: a check that fails over rows a pending data
//! migration before it changes is `risky` in the plan (what that migration
//! leaves is known only once it has run), and `migrate` checks again just
//! before the statement.

mod common;

use common::{Db, Engine, Project, Run};

/// One pending set and what both commands must say of it.
struct Case {
    name: &'static str,
    engines: &'static [Engine],
    /// Statements run on the fresh database first (the live state).
    setup: fn(&Db),
    files: &'static [(&'static str, &'static str)],
    /// Run in a `protected` environment.
    protected: bool,
    /// The plan's verdict.
    verdict: &'static str,
    /// `migrate`'s exit code.
    migrate: i32,
    /// Versions applied after `migrate`.
    applied: &'static [&'static str],
    /// Something every engine's plan output must contain (JSON text).
    plan_says: &'static [&'static str],
}

const ALL: &[Engine] = &[Engine::Postgres, Engine::MySql, Engine::Sqlite];
const PG: &[Engine] = &[Engine::Postgres];
const PG_MYSQL: &[Engine] = &[Engine::Postgres, Engine::MySql];

fn nothing(_: &Db) {}

fn users_and_orders(db: &Db) {
    db.exec("CREATE TABLE users (id integer PRIMARY KEY)");
    db.exec("CREATE TABLE orders (id integer PRIMARY KEY, user_id integer)");
    db.exec("CREATE TABLE notes (id integer PRIMARY KEY, body text)");
    db.exec("INSERT INTO users VALUES (1), (2)");
    db.exec("INSERT INTO orders VALUES (10, 1), (11, 2), (12, 7), (13, 8)");
    db.exec("INSERT INTO notes VALUES (1, 'x')");
}

fn orders_200k(db: &Db) {
    db.exec("CREATE TABLE orders (id integer PRIMARY KEY, note text)");
    match db.engine {
        Engine::Postgres => db.exec("INSERT INTO orders (id) SELECT g FROM generate_series(1, 200000) AS g"),
        Engine::MySql => db.exec("INSERT INTO orders (id) SELECT seq FROM seq_1_to_200000"),
        Engine::Sqlite => db.exec("WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 200000) INSERT INTO orders (id) SELECT i FROM g"),
    }
}

fn small_table(db: &Db) {
    db.exec("CREATE TABLE t (id integer PRIMARY KEY, x integer)");
    db.exec("INSERT INTO t VALUES (1, 1), (2, 2)");
}

const CASES: &[Case] = &[
    Case {
        name: "a table an earlier pending migration creates is new to the later ones",
        engines: ALL,
        setup: nothing,
        files: &[
            ("1_t.up.sql", "CREATE TABLE t (id integer PRIMARY KEY, x integer);\n"),
            ("2_t_x.up.sql", "CREATE INDEX t_x ON t (x);\n"),
            ("3_t_y.up.sql", "ALTER TABLE t ADD COLUMN y integer NOT NULL;\n"),
        ],
        protected: true,
        verdict: "safe",
        migrate: 0,
        applied: &["1", "2", "3"],
        plan_says: &[],
    },
    Case {
        name: "a NOT NULL column without a default over 200,000 rows is certain to fail, and an allow does not change that",
        engines: PG,
        setup: orders_200k,
        files: &[(
            "1_shipped.up.sql",
            "-- airlock:allow adding-required-column the app fills it\nALTER TABLE orders ADD COLUMN shipped_at timestamptz NOT NULL;\n",
        )],
        protected: false,
        verdict: "blocked",
        migrate: 3,
        applied: &[],
        plan_says: &["\"new-column-nulls\"", "\"violations\": 200000"],
    },
    Case {
        name: "a foreign key over orphans is blocked",
        engines: PG_MYSQL,
        setup: users_and_orders,
        files: &[(
            "1_fk.up.sql",
            "-- airlock:allow adding-foreign-key quiet hour\nALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);\n",
        )],
        protected: false,
        verdict: "blocked",
        migrate: 3,
        applied: &[],
        plan_says: &["\"foreign-key-orphans\""],
    },
    Case {
        name: "orphans a pending data migration deletes first are risky, and migrate runs all three",
        engines: PG,
        setup: users_and_orders,
        files: &[
            (
                "1_fk.up.sql",
                "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n",
            ),
            ("2_clean.up.sql", "-- airlock:data\nDELETE FROM orders WHERE user_id NOT IN (SELECT id FROM users);\n"),
            ("3_validate.up.sql", "ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk;\n"),
        ],
        protected: true,
        verdict: "risky",
        migrate: 0,
        applied: &["1", "2", "3"],
        plan_says: &["\"rechecked_after\": \"2\"", "pending migration 2 (clean)"],
    },
    Case {
        name: "a data migration that leaves the orphans: risky in the plan, refused by migrate just before the check",
        engines: PG,
        setup: users_and_orders,
        files: &[
            (
                "1_fk.up.sql",
                "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n",
            ),
            ("2_touch.up.sql", "-- airlock:data\nUPDATE orders SET user_id = user_id WHERE id = 10;\n"),
            ("3_validate.up.sql", "ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk;\n"),
        ],
        protected: false,
        verdict: "risky",
        migrate: 3,
        applied: &["1", "2"],
        plan_says: &["\"rechecked_after\": \"2\""],
    },
    Case {
        name: "a data migration on another table leaves the check blocked",
        engines: PG,
        setup: users_and_orders,
        files: &[
            (
                "1_fk.up.sql",
                "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n",
            ),
            ("2_notes.up.sql", "-- airlock:data\nUPDATE notes SET body = 'y' WHERE id = 1;\n"),
            ("3_validate.up.sql", "ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk;\n"),
        ],
        protected: false,
        verdict: "blocked",
        migrate: 3,
        applied: &[],
        plan_says: &["\"foreign-key-orphans\""],
    },
    Case {
        name: "a lint error blocks the plan as it refuses migrate",
        engines: ALL,
        setup: small_table,
        files: &[("1_touch.up.sql", "UPDATE t SET x = 3 WHERE id = 1;\n")],
        protected: false,
        verdict: "blocked",
        migrate: 3,
        applied: &[],
        plan_says: &["\"dml-in-schema-migration\""],
    },
    Case {
        name: "an index build that holds writes on 200,000 rows is risky",
        engines: PG,
        setup: orders_200k,
        files: &[(
            "1_idx.up.sql",
            "-- airlock:allow require-concurrent-index measured: 2 s\nCREATE INDEX orders_note ON orders (note);\n",
        )],
        protected: false,
        verdict: "risky",
        migrate: 0,
        applied: &["1"],
        plan_says: &["\"blocks-writes\""],
    },
    Case {
        name: "the same in a protected environment is blocked and refused",
        engines: PG,
        setup: orders_200k,
        files: &[(
            "1_idx.up.sql",
            "-- airlock:allow require-concurrent-index measured: 2 s\nCREATE INDEX orders_note ON orders (note);\n",
        )],
        protected: true,
        verdict: "blocked",
        migrate: 3,
        applied: &[],
        plan_says: &["\"blocks-writes\""],
    },
    Case {
        name: "a clean change is safe everywhere",
        engines: ALL,
        setup: small_table,
        files: &[("1_y.up.sql", "ALTER TABLE t ADD COLUMN y integer;\n")],
        protected: true,
        verdict: "safe",
        migrate: 0,
        applied: &["1"],
        plan_says: &[],
    },
];

fn run(project: &Project, db: &Db, protected: bool, args: &[&str]) -> Run {
    if !protected {
        return project.run(db, args);
    }
    project.write_config(&format!("[environments.prod]\nurl = \"{}\"\nprotected = true\n", db.url));
    Run::of(project.bare().args(["--env", "prod", "--dir"]).arg(project.dir()).args(args).output().unwrap())
}

fn plan_and_migrate_agree(engine: Engine) {
    for case in CASES.iter().filter(|c| c.engines.contains(&engine)) {
        let db = Db::new(engine);
        (case.setup)(&db);
        if engine == Engine::Postgres {
            db.exec("ANALYZE");
        }
        let project = Project::new();
        for (name, text) in case.files {
            project.write(name, text);
        }
        let plan = run(&project, &db, case.protected, &["--format", "json", "plan"]);
        let json = plan.json();
        assert_eq!(json["verdict"], case.verdict, "{engine:?}: {}: plan\n{}", case.name, plan.stdout);
        assert_eq!(plan.code, if case.verdict == "blocked" { 3 } else { 0 }, "{engine:?}: {}", case.name);
        for text in case.plan_says {
            assert!(
                plan.stdout.contains(text),
                "{engine:?}: {}: the plan should say {text}:\n{}",
                case.name,
                plan.stdout
            );
        }
        let migrate = run(&project, &db, case.protected, &["migrate"]);
        assert_eq!(migrate.code, case.migrate, "{engine:?}: {}: migrate\n{}", case.name, migrate.all());
        let rechecked = plan.stdout.contains("\"rechecked_after\"");
        if !rechecked {
            assert_eq!(case.verdict == "blocked", migrate.code == 3, "{engine:?}: {}: blocked ⇔ refused", case.name);
        }
        let applied: Vec<String> =
            db.history().into_iter().filter(|(_, state, _)| state == "succeeded").map(|(v, _, _)| v).collect();
        assert_eq!(applied, case.applied, "{engine:?}: {}: applied", case.name);
    }
}

each_engine!(plan_and_migrate_agree);
