//! What the database remembers: history records, events, the project stamp and the run lease.

use chrono::{DateTime, Utc};

use crate::migration::Kind;
use crate::version::Version;

/// Where a migration stands in history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Started and not finished: in progress, or cut off (only non-transactional runs leave this behind).
    Running,
    /// Applied.
    Succeeded,
    /// Applied by another tool and taken over by `airlock adopt`, which
    /// recorded it from that tool's history without running any SQL.
    Adopted,
    /// Failed; see `mode` for whether anything stayed applied.
    Failed,
    /// Undone by `down` or `resolve --mark-rolled-back`: not applied.
    RolledBack,
    /// Its down script is running outside a transaction, or failed or was cut
    /// off part-way: partly rolled back, and only a person can say how far.
    RollingBack,
}

impl RunState {
    /// Whether the migration is applied: run by airlock, or adopted from another tool.
    pub fn is_applied(self) -> bool {
        matches!(self, RunState::Succeeded | RunState::Adopted)
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Adopted => "adopted",
            RunState::Failed => "failed",
            RunState::RolledBack => "rolled_back",
            RunState::RollingBack => "rolling_back",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<RunState> {
        Some(match s {
            "running" => RunState::Running,
            "succeeded" => RunState::Succeeded,
            "adopted" => RunState::Adopted,
            "failed" => RunState::Failed,
            "rolled_back" => RunState::RolledBack,
            "rolling_back" => RunState::RollingBack,
            _ => return None,
        })
    }
}

/// How a migration was run, which decides what a failure leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// The migration and its history row in one transaction: a failure leaves nothing.
    Transaction,
    /// Statement by statement (MySQL DDL, `-- airlock:no-transaction`): a failure
    /// leaves the statements before it applied.
    Statements,
    /// A backfill (`-- airlock:backfill`): each statement over one key range
    /// at a time, each batch a transaction with its checkpoint.
    Batches,
}

impl RunMode {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Transaction => "transaction",
            RunMode::Statements => "statements",
            RunMode::Batches => "batches",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<RunMode> {
        match s {
            "transaction" => Some(RunMode::Transaction),
            "statements" => Some(RunMode::Statements),
            "batches" => Some(RunMode::Batches),
            _ => None,
        }
    }
}

/// Who and where: stamped on every record and event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// OS user name.
    pub os_user: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// airlock's version.
    pub airlock_version: String,
}

/// One row of the history table: the latest state of one migration version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRecord {
    /// Version (canonical text in the table).
    pub version: Version,
    /// Name at the time it ran.
    pub name: String,
    /// Schema or data.
    pub kind: Kind,
    /// Checksum of the up script that ran (or was accepted by `repair`).
    pub checksum: String,
    /// The up script that ran, so a changed file can be shown as a diff.
    pub up_sql: String,
    /// The down script known when it ran.
    pub down_sql: Option<String>,
    /// Where it stands.
    pub state: RunState,
    /// How it was run.
    pub mode: RunMode,
    /// Statements completed (for `Statements` mode, those that stayed applied).
    pub statements_done: u32,
    /// Statements in the up script.
    pub statements_total: u32,
    /// 1-based index of the statement that failed.
    pub failed_statement: Option<u32>,
    /// The error of the failed statement, as the server said it.
    pub error: Option<String>,
    /// When the run started (server clock).
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// How long it took.
    pub duration_ms: Option<i64>,
    /// OS user that ran it.
    pub os_user: String,
    /// Host it ran from.
    pub host: String,
    /// airlock version that ran it.
    pub airlock_version: String,
}

/// An entry of the audit log: every run, failure, repair, resolution and rollback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened: `applied`, `failed`, `repaired`, `resolved`, `rolled_back`, `stamped`, `invalid_index_dropped`.
    pub kind: String,
    /// The migration concerned, if any.
    pub version: Option<Version>,
    /// Details as JSON text (reason, old and new checksum, error...).
    pub detail: String,
}

/// The lease row that makes one runner at a time: who holds it and how fresh it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    /// Random id of the holding process's run.
    pub owner: String,
    /// Host of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// OS user of the holder.
    pub os_user: String,
    /// The migration being applied, when one is.
    pub version: Option<String>,
    /// When it was taken (server clock).
    pub acquired_at: DateTime<Utc>,
    /// Seconds since the last heartbeat, by the server's clock.
    pub heartbeat_age_secs: f64,
    /// Generation of the lease row, bumped by every claim and heartbeat: a
    /// takeover succeeds only if the row is still exactly as it was seen stale.
    pub beat: i64,
}

impl Lease {
    /// `pid 4242 (deploy@ci-runner-7) since 2026-11-21 10:00:00 UTC`.
    pub fn describe(&self) -> String {
        let doing = self.version.as_deref().map(|v| format!(", applying {v}")).unwrap_or_default();
        format!(
            "pid {} ({}@{}) since {}{}",
            self.pid,
            self.os_user,
            self.host,
            self.acquired_at.format("%Y-%m-%d %H:%M:%S UTC"),
            doing
        )
    }
}
