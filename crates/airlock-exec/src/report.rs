//! What commands return (serializable as the JSON contract) and what they say while working.

use std::time::Duration;

use airlock_core::{Lease, Migration, Problem, RunMode};
use serde::Serialize;

/// Told while a command works; the CLI prints it, a library user may ignore it.
pub trait Reporter: Send {
    /// A non-fatal remark (empty scripts, notes on how a file ran).
    fn warning(&mut self, _message: &str) {}
    /// Another run holds the lock; this one waits up to `wait`.
    fn waiting_for_lock(&mut self, _holder: &Lease, _wait: Duration) {}
    /// A lock left by a gone process was taken over.
    fn lock_taken_over(&mut self, _previous: &Lease, _why: &str) {}
    /// A migration (or down script) starts.
    fn migration_started(&mut self, _migration: &Migration, _mode: RunMode) {}
    /// It finished.
    fn migration_finished(&mut self, _migration: &Migration, _elapsed: Duration) {}
    /// `gate --wait` is still waiting, for these reasons (said when they change).
    fn gate_waiting(&mut self, _reasons: &[String]) {}
    /// A statement hit the lock timeout and will be retried after `wait`.
    fn retrying(&mut self, _migration: &Migration, _statement: usize, _attempt: u32, _wait: Duration, _blockers: &[String]) {}
}

/// A reporter that says nothing.
pub struct Silent;
impl Reporter for Silent {}

/// A problem as printed in JSON: `{code, version, message}` plus optional detail.
#[derive(Debug, Clone, Serialize)]
pub struct ProblemEntry {
    /// Stable kebab-case code.
    pub code: &'static str,
    /// The version concerned.
    pub version: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
    /// E.g. a diff.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Whether it stops `migrate`.
    pub blocking: bool,
}

impl From<&Problem> for ProblemEntry {
    fn from(p: &Problem) -> ProblemEntry {
        ProblemEntry {
            code: p.code.as_str(),
            version: p.version.as_ref().map(ToString::to_string),
            message: p.message.clone(),
            detail: p.detail.clone(),
            blocking: p.blocking,
        }
    }
}

/// An applied migration in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct AppliedEntry {
    /// Version.
    pub version: String,
    /// Name.
    pub name: String,
    /// `schema` or `data`.
    pub kind: &'static str,
    /// Checksum recorded.
    pub checksum: String,
    /// When it finished (RFC 3339).
    pub applied_at: Option<String>,
    /// How long it took.
    pub duration_ms: Option<i64>,
}

/// A pending migration.
#[derive(Debug, Clone, Serialize)]
pub struct PendingEntry {
    /// Version.
    pub version: String,
    /// Name.
    pub name: String,
    /// `schema` or `data`.
    pub kind: &'static str,
}

impl From<&Migration> for PendingEntry {
    fn from(m: &Migration) -> PendingEntry {
        PendingEntry { version: m.version.to_string(), name: m.name.clone(), kind: m.kind.as_str() }
    }
}

/// Who holds the run lock now.
#[derive(Debug, Clone, Serialize)]
pub struct LockEntry {
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// OS user.
    pub os_user: String,
    /// Since when (RFC 3339).
    pub since: String,
    /// The migration being applied.
    pub version: Option<String>,
}

impl From<&Lease> for LockEntry {
    fn from(l: &Lease) -> LockEntry {
        LockEntry {
            pid: l.pid,
            host: crate::actor::host_name(&l.host).to_owned(),
            os_user: l.os_user.clone(),
            since: l.acquired_at.to_rfc3339(),
            version: l.version.clone(),
        }
    }
}

/// `status`: the JSON contract's keys and a few more.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// `clean`, `dirty` (a migration in progress or cut off) or `failed`.
    pub state: &'static str,
    /// The newest applied version.
    pub current_version: Option<String>,
    /// Applied migrations, oldest first.
    pub applied: Vec<AppliedEntry>,
    /// Pending migrations, in order.
    pub pending: Vec<PendingEntry>,
    /// Problems, blocking first.
    pub problems: Vec<ProblemEntry>,
    /// The live holder of the run lock, if any.
    pub lock: Option<LockEntry>,
    /// The project stamped on the database.
    pub project: Option<String>,
    /// The database, password hidden.
    pub database: String,
    /// Remarks about the files.
    pub warnings: Vec<String>,
}

/// One migration run by `migrate`, `down` or `resolve`.
#[derive(Debug, Clone, Serialize)]
pub struct RunEntry {
    /// Version.
    pub version: String,
    /// Name.
    pub name: String,
    /// `schema` or `data`.
    pub kind: &'static str,
    /// `transaction` or `statements`.
    pub mode: &'static str,
    /// Statements run.
    pub statements: usize,
    /// How long it took.
    pub duration_ms: u64,
}

/// `migrate` and `down`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// What ran (or, with `--dry-run`, would run), in order.
    pub migrations: Vec<RunEntry>,
    /// `--dry-run`: nothing was changed.
    pub dry_run: bool,
    /// The newest applied version afterwards.
    pub current_version: Option<String>,
    /// Migrations after `--to`, left pending.
    pub left_pending: Vec<PendingEntry>,
    /// Non-blocking problems and remarks.
    pub warnings: Vec<String>,
}
