//! What commands return (serializable as the JSON contract) and what they say while working.

use std::time::Duration;

use airlock_core::{HistoryRecord, Lease, Migration, Problem, RunMode};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Told while a command works; the CLI prints it, a library user may ignore it.
pub trait Reporter: Send {
    /// A non-fatal remark (empty scripts, notes on how a file ran).
    fn warning(&mut self, _message: &str) {}
    /// A backup before migrating starts: `read` counts the bytes read from
    /// the database so far (the plan's `estimated_bytes` is about where it ends).
    fn backup_started(&mut self, _plan: &crate::backup::BackupPlan, _read: &Tally) {}
    /// A backup was taken and verified before migrating.
    fn backed_up(&mut self, _manifest: &crate::backup::Manifest) {}
    /// Older backups retention deleted after it (or could not).
    fn backups_pruned(&mut self, _pruned: &[crate::backup::Pruned]) {}
    /// Another run holds the lock; this one waits up to `wait`.
    fn waiting_for_lock(&mut self, _holder: &Lease, _wait: Duration) {}
    /// A lock left by a gone process was taken over.
    fn lock_taken_over(&mut self, _previous: &Lease, _why: &str) {}
    /// A long step of a command starts (`rehearse`: replaying, copying
    /// rows, each migration's up, down and up); it ends at the next one, or
    /// at [`Reporter::worked`].
    fn working(&mut self, _what: &str) {}
    /// The last step said by [`Reporter::working`] is over.
    fn worked(&mut self) {}
    /// A migration (or down script) starts.
    fn migration_started(&mut self, _migration: &Migration, _started: &Started) {}
    /// It finished.
    fn migration_finished(&mut self, _migration: &Migration, _elapsed: Duration) {}
    /// A backfill committed a batch.
    fn backfill_progress(&mut self, _progress: &crate::backfill::BackfillProgress) {}
    /// A backfill waits before its next batch, for this reason (said again when it changes).
    fn backfill_paused(&mut self, _version: &str, _why: &str) {}
    /// It goes on after waiting this long.
    fn backfill_resumed(&mut self, _version: &str, _waited: Duration) {}
    /// `gate --wait` is still waiting, for these reasons (said when they change).
    fn gate_waiting(&mut self, _reasons: &[String]) {}
    /// A statement hit the lock timeout and will be retried after `wait`.
    fn retrying(
        &mut self,
        _migration: &Migration,
        _statement: usize,
        _attempt: u32,
        _wait: Duration,
        _blockers: &[String],
    ) {
    }
}

/// How a migration starts: how it runs, where it stands in its run, and
/// how long the plan expects it to take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Started {
    /// In one transaction, statement by statement, or in batches.
    pub mode: RunMode,
    /// Its place in the run, from 1.
    pub position: usize,
    /// Migrations in the run.
    pub of: usize,
    /// The plan's estimate of its time, when it has one.
    pub estimate: Option<Duration>,
}

impl Started {
    /// The plan's estimate of a migration's time: the sum of its statements'
    /// estimates, when any has one.
    pub fn estimate_of(plan: &crate::plan::MigrationPlan) -> Option<Duration> {
        let seconds: Vec<f64> = plan.statements.iter().filter_map(|s| s.estimated_seconds).collect();
        (!seconds.is_empty()).then(|| Duration::from_secs_f64(seconds.iter().sum::<f64>().max(0.0)))
    }
}

/// A count that work in progress raises and a reporter's thread reads
/// (the bytes a backup has read so far).
#[derive(Debug, Clone, Default)]
pub struct Tally(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Tally {
    /// The count now.
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
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
    /// A contract migration (`-- airlock:contract`): run only by `migrate --contract`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub contract: bool,
}

impl From<&Migration> for PendingEntry {
    fn from(m: &Migration) -> PendingEntry {
        PendingEntry {
            version: m.version.to_string(),
            name: m.name.clone(),
            kind: m.kind.as_str(),
            contract: m.directives.contract,
        }
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
    /// The most recent run that finished, as far as history tells.
    pub last_run: Option<LastRun>,
    /// Pending backfills, with how far each has come.
    pub backfills: Vec<crate::backfill::BackfillEntry>,
    /// When the next pending migration is a contract, what that means:
    /// "expanded; contract pending (old app versions may still be running)".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expanded: Option<String>,
}

/// The most recent run: the newest migrations that one user on one host applied
/// back to back (history keeps migrations, not runs, so a run is read off their times).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastRun {
    /// When its first migration started (RFC 3339).
    pub started_at: String,
    /// When its last migration finished (RFC 3339).
    pub finished_at: String,
    /// From the first start to the last finish.
    pub duration_ms: i64,
    /// How many migrations it ran.
    pub migrations: usize,
    /// The state its last migration ended in: `succeeded`, `failed`, `rolled_back`.
    pub outcome: &'static str,
    /// Who ran it.
    pub os_user: String,
    /// Where.
    pub host: String,
}

/// Migrations that started within this long of the previous one's finish count as one run.
const RUN_GAP_SECS: i64 = 5;

impl LastRun {
    /// Reads the last run off history, leaving out what a run in progress
    /// since `running_since` has done so far. Pure.
    pub fn of(history: &[HistoryRecord], running_since: Option<DateTime<Utc>>) -> Option<LastRun> {
        let mut done: Vec<(&HistoryRecord, DateTime<Utc>)> = history
            .iter()
            .filter(|r| running_since.is_none_or(|since| r.started_at < since))
            .filter_map(|r| r.finished_at.map(|f| (r, f)))
            .collect();
        done.sort_by_key(|(r, finished)| (*finished, r.started_at));
        let (last, finished) = *done.last()?;
        let mut first = last;
        for (record, record_finished) in done.iter().rev().skip(1) {
            let same_runner = record.host == last.host && record.os_user == last.os_user;
            if !same_runner || (first.started_at - *record_finished).num_seconds() > RUN_GAP_SECS {
                break;
            }
            first = record;
        }
        let migrations = done.iter().filter(|(r, f)| *f <= finished && r.started_at >= first.started_at).count();
        Some(LastRun {
            started_at: first.started_at.to_rfc3339(),
            finished_at: finished.to_rfc3339(),
            duration_ms: (finished - first.started_at).num_milliseconds().max(0),
            migrations,
            outcome: last.state.as_str(),
            os_user: last.os_user.clone(),
            host: crate::actor::host_name(&last.host).to_owned(),
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::{Kind, RunState, Version};
    use chrono::TimeZone;

    fn record(version: &str, host: &str, start: i64, secs: i64, state: RunState) -> HistoryRecord {
        let started_at = Utc.timestamp_opt(1_700_000_000 + start, 0).unwrap();
        HistoryRecord {
            version: Version::parse(version).unwrap(),
            name: format!("m{version}"),
            kind: Kind::Schema,
            checksum: String::new(),
            up_sql: String::new(),
            down_sql: None,
            state,
            mode: RunMode::Transaction,
            statements_done: 1,
            statements_total: 1,
            failed_statement: None,
            error: None,
            started_at,
            finished_at: Some(started_at + chrono::Duration::seconds(secs)),
            duration_ms: Some(secs * 1000),
            os_user: "deploy".into(),
            host: host.into(),
            airlock_version: "0".into(),
        }
    }

    #[test]
    fn last_run_is_the_newest_back_to_back_group_of_one_runner() {
        assert_eq!(LastRun::of(&[], None), None);
        let history = [
            record("1", "ci", 0, 1, RunState::Succeeded),
            // An hour later, three migrations back to back; the last one failed.
            record("2", "ci", 3600, 2, RunState::Succeeded),
            record("3", "ci", 3602, 1, RunState::Succeeded),
            record("4", "ci", 3604, 3, RunState::Failed),
        ];
        let run = LastRun::of(&history, None).unwrap();
        assert_eq!((run.migrations, run.duration_ms, run.outcome), (3, 7000, "failed"));
        assert_eq!(run.host, "ci");

        // Another host's migration right after is a run of its own.
        let mut other = history.to_vec();
        other.push(record("5", "laptop", 3608, 1, RunState::Succeeded));
        let run = LastRun::of(&other, None).unwrap();
        assert_eq!((run.migrations, run.outcome, run.host.as_str()), (1, "succeeded", "laptop"));

        // A migration still running has not finished a run.
        let mut running = history.to_vec();
        let mut r = record("5", "ci", 3700, 0, RunState::Running);
        r.finished_at = None;
        running.push(r);
        assert_eq!(LastRun::of(&running, None).unwrap().migrations, 3);

        // While a run holds the lock, what it has finished so far is not "the last run".
        let mut in_progress = history.to_vec();
        in_progress.push(record("5", "ci", 3700, 1, RunState::Succeeded));
        let since = in_progress[4].started_at;
        assert_eq!(LastRun::of(&in_progress, Some(since)).unwrap().migrations, 3);
        assert_eq!(LastRun::of(&in_progress, None).unwrap().migrations, 1);
    }
}
