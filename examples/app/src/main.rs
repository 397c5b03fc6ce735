//! An application that carries its schema: `migrate` is its release step (run
//! once per deploy, e.g. as an init container), and plain start-up refuses to
//! serve until the database has every migration this build carries.
//!
//! ```text
//! DATABASE_URL=sqlite:todo.db cargo run -p airlock-example-app -- migrate
//! DATABASE_URL=sqlite:todo.db cargo run -p airlock-example-app -- start --wait 30
//! ```
//!
//! Exit codes are the airlock CLI's: 0 ready, 1 a migration or the connection
//! failed, 2 bad usage, 3 refused by a safety check, 4 the schema is not ready.

use std::process::ExitCode;
use std::time::Duration;

use airlock::{Error, Requirement};

/// Compiled in at build time; a bad file fails the build.
static MIGRATIONS: airlock::Migrations = airlock::embed_migrations!("migrations");

const USAGE: &str =
    "usage: airlock-example-app migrate | start [--wait SECONDS]  (database from DATABASE_URL, default sqlite:todo.db)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite:todo.db".to_owned());
    let outcome = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["migrate"] => migrate(&url).await,
        ["start"] => start(&url, 0).await,
        ["start", "--wait", secs] => match secs.parse() {
            Ok(secs) => start(&url, secs).await,
            Err(_) => return usage(&format!("--wait {secs}: not a number of seconds")),
        },
        _ => return usage("which command?"),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("todo-app: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("todo-app: {why}\n{USAGE}");
    ExitCode::from(2)
}

/// The release step: apply what this build carries.
async fn migrate(url: &str) -> Result<(), Error> {
    let report = MIGRATIONS.database(url)?.project("todo-example").migrate().await?;
    if report.migrations.is_empty() {
        println!("todo-app: nothing to migrate");
    }
    for migration in &report.migrations {
        println!("todo-app: applied {} {} in {} ms", migration.version, migration.name, migration.duration_ms);
    }
    Ok(())
}

/// Start-up: never serve on a schema this build does not match.
async fn start(url: &str, wait_secs: u64) -> Result<(), Error> {
    let db = MIGRATIONS.database(url)?.project("todo-example");
    let ready = db.wait_until_ready(Requirement::Latest, Duration::from_secs(wait_secs)).await?;
    println!(
        "todo-app: schema ready at version {} ({} migrations in this build); serving",
        ready.current_version.unwrap_or_default(),
        MIGRATIONS.list().len()
    );
    Ok(())
}
