//! airlock for applications: compile the migrations into the program, run them,
//! and refuse to start (or wait) until the database's schema is ready for this
//! build — an app "deployed before its migration" made impossible.
//!
//! (A runnable version of this is `examples/app` in the repository.)
//!
//! ```ignore
//! static MIGRATIONS: airlock::Migrations = airlock::embed_migrations!("migrations");
//!
//! # async fn start() -> Result<(), airlock::Error> {
//! let db = MIGRATIONS.database("postgres://app@db/shop")?.project("shop");
//! // In a release step (or at startup, if the app owns its schema):
//! db.migrate().await?;
//! // At startup: wait up to a minute for a running migration, then refuse
//! // to start unless every migration this build carries is applied.
//! let ready = db.wait_until_ready(airlock::Requirement::Latest, std::time::Duration::from_secs(60)).await?;
//! println!("schema at version {}", ready.current_version.unwrap_or_default());
//! # Ok(()) }
//! ```
//!
//! The same history table, lock and checks as the `airlock` CLI: a database
//! migrated by one can be read and gated by the other. Add a `build.rs` with
//! `println!("cargo:rerun-if-changed=migrations");` so that adding or removing a
//! file rebuilds the program; edits to embedded files rebuild it by themselves.

use std::time::Duration;

use airlock_driver::DatabaseUrl;
use airlock_exec::{Options, Silent, Source};

pub use airlock_core::Version;
pub use airlock_exec::{ExecError, GateReport, Requirement, RunReport, StatusReport};
pub use airlock_lint::{Baseline, Severity};

/// Embeds a migrations directory (relative to the crate's `Cargo.toml`) in the
/// program, as a [`Migrations`] usable in a `static`. The directory is checked
/// at build time: a file the CLI would refuse fails the build, naming it.
pub use airlock_macros::embed_migrations;

/// What the macro expands to; not a stable interface.
#[doc(hidden)]
pub mod __private {
    pub use airlock_core::{Embedded, EmbeddedFile};
}

/// Everything that can go wrong, with what to do in its message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL cannot be used.
    #[error("{0}")]
    Url(String),
    /// airlock refused or failed; [`Error::exit_code`] gives the CLI's exit code.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The schema is not ready for this build, and waiting (if asked) did not help.
    #[error("the database is not ready for this build: {}", .0.reasons.join("; "))]
    NotReady(Box<GateReport>),
}

impl Error {
    /// The exit code the `airlock` CLI uses for the same outcome (4 for [`Error::NotReady`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Url(_) => airlock_exec::exit::USAGE,
            Error::Exec(e) => e.exit_code(),
            Error::NotReady(_) => airlock_exec::exit::GATE,
        }
    }
}

/// Migrations compiled into the program by [`embed_migrations!`].
pub struct Migrations {
    embedded: &'static airlock_core::Embedded,
}

impl Migrations {
    #[doc(hidden)]
    pub const fn __from_embedded(embedded: &'static airlock_core::Embedded) -> Migrations {
        Migrations { embedded }
    }

    /// The versions and names, oldest first.
    pub fn list(&'static self) -> Vec<(Version, String)> {
        match airlock_core::discover_embedded(self.embedded) {
            Ok(found) => found.migrations.into_iter().map(|m| (m.version, m.name)).collect(),
            // Checked when the program was built.
            Err(_) => Vec::new(),
        }
    }

    /// The newest version: what [`Requirement::Latest`] asks for.
    pub fn latest(&'static self) -> Option<Version> {
        self.list().pop().map(|(version, _)| version)
    }

    /// These migrations against the database at `url` (`postgres://`, `mysql://`,
    /// `mariadb://`, `sqlite:PATH`). Connects only when asked something.
    pub fn database(&'static self, url: &str) -> Result<Database, Error> {
        let url = DatabaseUrl::parse(url).map_err(|e| Error::Url(e.to_string()))?;
        Ok(Database { options: Options::new(url, Source::Embedded(self.embedded)) })
    }
}

/// One database and the program's migrations. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Database {
    options: Options,
}

impl Database {
    /// The project identity stamped on the database (`project` in airlock.toml):
    /// a database stamped by another project is refused. Defaults to none.
    pub fn project(mut self, name: &str) -> Database {
        self.options.project = Some(name.to_owned());
        self
    }

    /// How long a statement waits for a lock before it is retried. Defaults to 5 seconds.
    pub fn lock_timeout(mut self, timeout: Duration) -> Database {
        self.options.timeouts.lock = timeout;
        self
    }

    /// How long one statement may run; zero means no limit. Defaults to no limit.
    pub fn statement_timeout(mut self, timeout: Duration) -> Database {
        self.options.timeouts.statement = timeout;
        self
    }

    /// How long to wait for another process's migration run. Defaults to 5 minutes.
    pub fn lock_wait(mut self, wait: Duration) -> Database {
        self.options.lock_wait = wait;
        self
    }

    /// Sets a lint rule's severity for [`Database::migrate`] (None turns it off),
    /// as `[lint.rules]` in airlock.toml does for the CLI. Defaults to each rule's own.
    pub fn lint_severity(mut self, rule: &str, severity: Option<Severity>) -> Database {
        self.options.lint.severities.insert(rule.to_owned(), severity);
        self
    }

    /// Holds back the findings a baseline (written by `airlock lint
    /// --write-baseline`) recorded for files unchanged since. Defaults to none.
    pub fn lint_baseline(mut self, baseline: Baseline) -> Database {
        self.options.lint.baseline = Some(baseline);
        self
    }

    /// Applies every pending migration, as `airlock migrate` does: lints them
    /// against the live schema first (error findings refuse the run, exit code
    /// 3, before anything changes), refuses edited or unknown applied
    /// migrations and another project's database, takes the run lock, and
    /// records everything in history.
    pub async fn migrate(&self) -> Result<RunReport, Error> {
        Ok(airlock_exec::migrate(&self.options, None, false, &mut Silent).await?)
    }

    /// Where the database stands, as `airlock status`. Changes nothing.
    pub async fn status(&self) -> Result<StatusReport, Error> {
        Ok(airlock_exec::status(&self.options).await?)
    }

    /// The gate's answer now, satisfied or not. Changes nothing.
    pub async fn gate(&self, requirement: Requirement) -> Result<GateReport, Error> {
        Ok(airlock_exec::gate(&self.options, &requirement).await?)
    }

    /// Waits up to `wait` for the requirement (returning as soon as a running
    /// migration completes), and returns the satisfied report; otherwise
    /// [`Error::NotReady`] with the reasons. Returns at once when waiting cannot
    /// help (a failed migration, an edited file). A database that cannot be
    /// reached is asked again until the time is up.
    pub async fn wait_until_ready(&self, requirement: Requirement, wait: Duration) -> Result<GateReport, Error> {
        let report = airlock_exec::gate_wait(&self.options, &requirement, wait, &mut Silent).await?;
        if report.satisfied { Ok(report) } else { Err(Error::NotReady(Box::new(report))) }
    }
}
