//! The library as an app uses it: migrations embedded at build time, run, and
//! a startup gate that refuses, waits, or lets the app start.

use std::time::{Duration, Instant};

use airlock::{Error, Migrations, Requirement};

/// Release 1 of an app: one migration.
static V1: Migrations = airlock::embed_migrations!("tests/fixtures/v1");
/// Release 2: the same first migration, and a second.
static V2: Migrations = airlock::embed_migrations!("tests/fixtures/v2");

fn sqlite() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("app.db").display());
    (dir, url)
}

#[test]
fn embedded_migrations_are_listed_in_order() {
    let names: Vec<String> = V2.list().into_iter().map(|(v, n)| format!("{v} {n}")).collect();
    assert_eq!(names, ["1 create_todos", "2 add_done"]);
    assert_eq!(V1.latest().unwrap().to_string(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_refuses_to_start_until_its_schema_is_there() {
    let (_dir, url) = sqlite();
    let old = V1.database(&url).unwrap().project("todo");
    let new = V2.database(&url).unwrap().project("todo");

    let report = old.migrate().await.unwrap();
    assert_eq!(report.migrations.len(), 1);

    // Release 2 deployed before its migration: not ready, and says why.
    let started = Instant::now();
    let refused = new.wait_until_ready(Requirement::Latest, Duration::from_millis(500)).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(400), "waited for the time given");
    match &refused {
        Error::NotReady(report) => {
            assert_eq!(report.current_version.as_deref(), Some("1"));
            assert_eq!(report.reasons, ["behind by 1 migration: 2 (add_done)"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(refused.exit_code(), 4);
    // Release 1 is happy with what is there.
    assert!(old.gate(Requirement::Latest).await.unwrap().satisfied);

    new.migrate().await.unwrap();
    let ready = new.wait_until_ready(Requirement::Latest, Duration::from_secs(5)).await.unwrap();
    assert_eq!(ready.current_version.as_deref(), Some("2"));
    // An older build still starts on a newer schema.
    assert!(old.gate(Requirement::Latest).await.unwrap().satisfied);
    assert_eq!(new.status().await.unwrap().state, "clean");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_projects_database_is_refused() {
    let (_dir, url) = sqlite();
    V1.database(&url).unwrap().project("todo").migrate().await.unwrap();
    let err = V2.database(&url).unwrap().project("billing").migrate().await.unwrap_err();
    assert_eq!(err.exit_code(), 3, "{err}");
    assert!(err.to_string().contains("belongs to project `todo`"), "{err}");
}

#[test]
fn a_bad_url_is_named() {
    let err = V1.database("oracle://db/x").unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("oracle"), "{err}");
}

/// A schema migration that writes rows into a table an earlier one created.
static LINTED: Migrations = airlock::embed_migrations!("tests/fixtures/lint");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_lints_first_and_can_be_told_otherwise() {
    let (_dir, url) = sqlite();
    let refused = LINTED.database(&url).unwrap().migrate().await.unwrap_err();
    assert_eq!(refused.exit_code(), 3, "{refused}");
    assert!(refused.to_string().contains("dml-in-schema-migration"), "{refused}");
    let applied =
        LINTED.database(&url).unwrap().lint_severity("dml-in-schema-migration", None).migrate().await.unwrap();
    assert_eq!(applied.migrations.len(), 2);
}
