//! The runner's errors: each names the migration, file, statement or holder, says
//! what to do next, and maps to one documented exit code.

use std::path::PathBuf;

use airlock_core::{DiscoveryError, Lease, Problem};
use airlock_driver::DriverError;

/// Exit codes: the command-line contract (see PRODUCT.md).
pub mod exit {
    /// Success or nothing to do.
    pub const OK: i32 = 0;
    /// A migration or the connection failed.
    pub const FAILED: i32 = 1;
    /// Bad usage, bad config or malformed migration files.
    pub const USAGE: i32 = 2;
    /// Blocked by a safety check.
    pub const BLOCKED: i32 = 3;
    /// Gate not satisfied.
    pub const GATE: i32 = 4;
}

/// A statement of a migration that could not be run as written (exit 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMigration {
    /// The file.
    pub path: PathBuf,
    /// 1-based line in the file.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

/// Where a migration failed.
#[derive(Debug, Clone)]
pub struct FailedStatement {
    /// The migration's version.
    pub version: String,
    /// The migration's name.
    pub name: String,
    /// The file holding the statement.
    pub path: PathBuf,
    /// 1-based index of the statement in the migration.
    pub index: usize,
    /// 1-based line of the statement in the file.
    pub line: usize,
    /// The statement text (possibly long).
    pub sql: String,
    /// What the server said.
    pub error: DriverError,
    /// What stayed applied and what to do next.
    pub aftermath: String,
}

/// Everything that stops a command.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The migrations directory has bad files.
    #[error("{0}")]
    Discovery(#[from] DiscoveryError),
    /// A migration cannot be run as written.
    #[error("{}", .0.iter().map(|e| match e.line {
        Some(line) => format!("{}:{}: {}", e.path.display(), line, e.message),
        None => format!("{}: {}", e.path.display(), e.message),
    }).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<InvalidMigration>),
    /// Bad usage or configuration.
    #[error("{0}")]
    Usage(String),
    /// Could not connect.
    #[error("{0}")]
    Connect(DriverError),
    /// Reading or writing airlock's own tables failed.
    #[error("{context}: {source}")]
    Database {
        /// What airlock was doing.
        context: String,
        /// The driver's error.
        source: DriverError,
    },
    /// Safety checks refuse the run; nothing was changed.
    #[error("{}", .problems.iter().map(|p| p.message.clone()).collect::<Vec<_>>().join("\n"))]
    Blocked {
        /// The blocking problems.
        problems: Vec<Problem>,
    },
    /// The environment is protected against this command.
    #[error("{0}")]
    Protected(String),
    /// A stored backup failed its verification (`backup verify`).
    #[error("{0}")]
    BackupInvalid(String),
    /// The backup before migrating could not be taken, stored or verified: nothing was applied.
    #[error("{0}; nothing was applied")]
    BackupFailed(String),
    /// A migration failed.
    #[error("migration {} ({}) failed at statement {} ({}:{}): {}", .0.version, .0.name, .0.index, .0.path.display(), .0.line, .0.error.message)]
    MigrationFailed(Box<FailedStatement>, Vec<String>),
    /// Another process holds the run lease and did not let go in time.
    #[error("another airlock run holds the lock on this database: {}; waited {waited_secs} s (--lock-wait); {}", holder.describe(), match ttl_secs {
        Some(ttl) => format!("try again later; if that process is gone, its lock is taken over {ttl} s after its last heartbeat"),
        None => "try again later; if that process is gone on another machine, airlock cannot tell: check, then `airlock unlock --force`".to_owned(),
    })]
    LockBusy {
        /// The holder.
        holder: Box<Lease>,
        /// How long this run waited.
        waited_secs: u64,
        /// The lease's time to live, on engines where it expires.
        ttl_secs: Option<u64>,
    },
    /// `gate` answered "not ready"; the report was already printed.
    #[error("the database does not satisfy the requirement")]
    GateNotSatisfied,
    /// A fleet command's members did not all succeed; its report, which
    /// says which and why, was already printed. The exit code is the
    /// gravest of theirs.
    #[error("not every member of the fleet succeeded")]
    FleetIncomplete(i32),
    /// A data check just before a migration shows it would fail or lose data
    /// or attributes; it was not run.
    #[error("migration {} ({}) was not run: {}; {}", .0.version, .0.name, refusals(&.0.file, &.0.statements), applied_note(&.0.applied))]
    ChecksFailed(Box<MigrationRefused>),
    /// A risky migration in a protected environment without an allow for each risk.
    #[error("migration {} ({}) was not run: environment `{}` is protected, and it is risky: {}; {}", .0.version, .0.name, .0.environment, refusals(&.0.file, &.0.statements), applied_note(&.0.applied))]
    RiskRefused(Box<MigrationRefused>),
    /// `migrate --plan`: the pending migrations are not the ones planned.
    #[error("{0}")]
    PlanMismatch(String),
    /// `plan` found a blocked statement; the plan was already printed.
    #[error("the plan has a blocked statement")]
    PlanBlocked,
    /// `drift` found differences; the report was already printed.
    #[error("the schemas differ")]
    DriftFound,
    /// The scratch database for rehearsal or drift cannot be made or used:
    /// not allowed to create it, not reachable, not empty, or the target itself.
    #[error("{0}")]
    Scratch(String),
    /// `rehearse` found a down script that leaves residue, or a failure; the report was already printed.
    #[error("the rehearsal found problems")]
    RehearsalProblems,
    /// `lint` found errors; the findings were already printed.
    #[error("lint found {0} error(s)")]
    LintErrors(usize),
    /// `migrate` linted the pending migrations and refuses: nothing was changed.
    #[error("{}\nnothing was applied: fix these, or accept one with `-- airlock:allow <rule> <reason>` on the line before its statement", .0.iter().map(describe_finding).collect::<Vec<_>>().join("\n"))]
    LintRefused(Vec<airlock_lint::Finding>),
    /// Ctrl-C or SIGTERM: the running statement was cancelled on the server,
    /// the run stopped at a safe point, released its lock and says where
    /// the database stands.
    #[error("interrupted by {}: {}", crate::interrupt::signal_name(*signal), state)]
    Interrupted {
        /// The signal's number (the exit code is 128 plus it).
        signal: i32,
        /// The state the database is in, in a sentence.
        state: String,
        /// Versions this run applied before it stopped.
        applied: Vec<String>,
    },
    /// `adopt` found reasons not to take the database over; nothing was changed.
    #[error("not adopted from {tool}; nothing was changed:\n{}", reasons.iter().map(|r| format!("  - {r}")).collect::<Vec<_>>().join("\n"))]
    AdoptRefused {
        /// The tool whose history was read.
        tool: &'static str,
        /// Each reason, naming the version and file.
        reasons: Vec<String>,
    },
    /// This run lost its lease while working (its heartbeat stopped for too long).
    #[error(
        "this run lost its lock on the database (its heartbeat failed for too long, or another run took the lock over); it stopped, and nothing it had not finished was recorded as applied: run `airlock status` to see where things stand"
    )]
    LeaseLost,
}

impl ExecError {
    /// The versions the run applied (or rolled back) before this error stopped it.
    pub fn applied_versions(&self) -> Vec<String> {
        match self {
            ExecError::MigrationFailed(_, applied) | ExecError::Interrupted { applied, .. } => applied.clone(),
            ExecError::ChecksFailed(r) | ExecError::RiskRefused(r) => r.applied.clone(),
            _ => Vec::new(),
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ExecError::Discovery(_) | ExecError::Invalid(_) | ExecError::Usage(_) | ExecError::Scratch(_) => {
                exit::USAGE
            }
            ExecError::Blocked { .. }
            | ExecError::Protected(_)
            | ExecError::BackupFailed(_)
            | ExecError::BackupInvalid(_)
            | ExecError::LintErrors(_)
            | ExecError::LintRefused(_)
            | ExecError::PlanBlocked
            | ExecError::DriftFound
            | ExecError::RehearsalProblems
            | ExecError::ChecksFailed(_)
            | ExecError::RiskRefused(_)
            | ExecError::AdoptRefused { .. }
            | ExecError::PlanMismatch(_) => exit::BLOCKED,
            ExecError::GateNotSatisfied => exit::GATE,
            ExecError::FleetIncomplete(code) => *code,
            ExecError::Interrupted { signal, .. } => 128 + signal,
            ExecError::Connect(_)
            | ExecError::Database { .. }
            | ExecError::MigrationFailed(..)
            | ExecError::LockBusy { .. }
            | ExecError::LeaseLost => exit::FAILED,
        }
    }

    pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(DriverError) -> ExecError {
        let context = context.into();
        move |source| ExecError::Database { context, source }
    }
}

/// One lint finding on a few lines: where, what, what to do.
fn describe_finding(f: &airlock_lint::Finding) -> String {
    let mut text = format!("{}:{}: {} [{}]\n  help: {}", f.file.display(), f.line, f.message, f.rule, f.help);
    if let Some(fix) = &f.fix {
        text.push_str(&format!("\n  fix: {fix}"));
    }
    text
}

/// A migration `migrate` refused to run, and why.
#[derive(Clone, Debug)]
pub struct MigrationRefused {
    /// Its version.
    pub version: String,
    /// Its name.
    pub name: String,
    /// Its file.
    pub file: std::path::PathBuf,
    /// The environment (for a risky migration in a protected one).
    pub environment: String,
    /// Its statements that stand in the way, and why.
    pub statements: Vec<Refusal>,
    /// Migrations this run applied before it.
    pub applied: Vec<String>,
}

/// One statement `migrate` refused to run, and why.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Refusal {
    /// 1-based statement index.
    pub index: usize,
    /// 1-based line in the file.
    pub line: usize,
    /// What stands in the way, with the fix for each.
    pub risks: Vec<crate::plan::Risk>,
}

fn refusals(file: &std::path::Path, refused: &[Refusal]) -> String {
    let mut parts = Vec::new();
    for r in refused {
        for risk in &r.risks {
            parts.push(format!(
                "statement {} ({}:{}) [{}]: {}; fix: {}",
                r.index,
                file.display(),
                r.line,
                risk.code,
                risk.message,
                risk.fix
            ));
        }
    }
    parts.join("; ")
}

/// What a refusal left behind, for its message.
fn applied_note(applied: &[String]) -> &'static str {
    if applied.is_empty() {
        "nothing was applied"
    } else {
        "migrations before it in this run stay applied; nothing of this one ran"
    }
}
