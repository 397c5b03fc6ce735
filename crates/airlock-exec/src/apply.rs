//! The one executor: runs one migration's prepared script, up or down, in
//! its mode — all statements in one transaction committed with the history
//! record, or statement by statement with history kept true after each —
//! retrying a statement that hit the lock timeout (with backoff, telling who
//! blocks it), recording a failure where it happened, and stopping cleanly
//! on Ctrl-C or SIGTERM (the statement cancelled on the server).
//!
//! `migrate`, `resolve --retry-from-failed` and `down` all come through
//! [`run`]; what differs between up and down (the records, the events, the
//! words) is [`Direction`]'s.

use std::time::{Duration, Instant};

use airlock_core::{Directives, Event, HistoryRecord, Migration, RunMode, RunState, Script};
use airlock_driver::{Committed, Driver, DriverError, ErrorKind, Timeouts};
use chrono::Utc;
use rand::Rng;
use serde_json::json;

use crate::Context;
use crate::error::{ExecError, FailedStatement};
use crate::lease::HeldLease;
use crate::prepare::Prepared;
use crate::report::Reporter;

/// Which way a migration runs.
#[derive(Clone, Copy)]
pub(crate) enum Direction<'a> {
    /// Its up script: applied when it succeeds.
    Up,
    /// Its down script, undoing `applied` (its history record): rolled back when it succeeds.
    Down {
        /// The record of the migration as applied.
        applied: &'a HistoryRecord,
        /// The down script.
        script: &'a Script,
    },
}

/// One migration to run one way.
pub(crate) struct Job<'a> {
    /// The migration.
    pub migration: &'a Migration,
    /// Its script, split and classified.
    pub prepared: &'a Prepared,
    /// Up or down.
    pub direction: Direction<'a>,
}

impl Job<'_> {
    fn version(&self) -> String {
        self.migration.version.to_string()
    }

    fn script(&self) -> &Script {
        match self.direction {
            Direction::Up => &self.migration.up,
            Direction::Down { script, .. } => script,
        }
    }

    fn directives(&self) -> &Directives {
        match self.direction {
            Direction::Up => &self.migration.directives,
            Direction::Down { .. } => &self.migration.down_directives,
        }
    }

    /// What a run that stopped before this job leaves.
    pub(crate) fn stopped_before(&self) -> String {
        let m = self.migration;
        match self.direction {
            Direction::Up => {
                format!(
                    "it stopped before migration {} ({}), which did not run; `airlock migrate` runs it",
                    m.version, m.name
                )
            }
            Direction::Down { .. } => {
                format!("it stopped before rolling back migration {} ({}), which is still applied", m.version, m.name)
            }
        }
    }

    /// What history says while a statement-by-statement script runs.
    fn marker(&self, ctx: &Context, start: usize) -> HistoryRecord {
        match self.direction {
            Direction::Up => {
                let mut record = new_record(ctx, self.migration, RunMode::Statements, self.prepared.statements.len());
                record.statements_done = start as u32;
                record
            }
            // History must never claim the migration is still fully applied.
            Direction::Down { applied, .. } => HistoryRecord {
                state: RunState::RollingBack,
                error: Some("its down script was running".to_owned()),
                ..applied.clone()
            },
        }
    }

    /// What history says while a script runs in a transaction (written
    /// only with its outcome): up, a new record; down, the applied one.
    fn running(&self, ctx: &Context) -> HistoryRecord {
        match self.direction {
            Direction::Up => new_record(ctx, self.migration, RunMode::Transaction, self.prepared.statements.len()),
            Direction::Down { applied, .. } => applied.clone(),
        }
    }

    /// The record and event of a script that ran to its end (`running` is
    /// the record it ran under).
    fn done(&self, running: HistoryRecord, started: Instant) -> (HistoryRecord, Event) {
        let m = self.migration;
        match self.direction {
            Direction::Up => {
                let mut record = running;
                record.statements_done = self.prepared.statements.len() as u32;
                finish(&mut record, RunState::Succeeded, started);
                let event = applied_event(m, &record);
                (record, event)
            }
            Direction::Down { applied, .. } => {
                let mut record = applied.clone();
                finish(&mut record, RunState::RolledBack, started);
                let detail = json!({ "name": m.name, "mode": self.prepared.mode.as_str() });
                (record, event_of("rolled_back", m, detail))
            }
        }
    }

    /// What a transaction that was stopped and rolled back leaves.
    fn rolled_back_on_signal(&self) -> String {
        let m = self.migration;
        match self.direction {
            Direction::Up => format!(
                "migration {} ({}) was stopped and rolled back, so the database is as it was before it; `airlock migrate` runs it again",
                m.version, m.name
            ),
            Direction::Down { .. } => format!(
                "the down script of migration {v} was stopped and rolled back: migration {v} is still applied",
                v = m.version
            ),
        }
    }

    /// What a failed statement in a rolled-back transaction leaves.
    fn rolled_back_on_failure(&self) -> String {
        match self.direction {
            Direction::Up => "it ran in a transaction that was rolled back, so the database is as it was before it; fix the statement and run `airlock migrate` again".to_owned(),
            Direction::Down { .. } => format!(
                "it ran in a transaction that was rolled back: migration {} is still applied",
                self.migration.version
            ),
        }
    }

    /// What a statement-by-statement script that failed at `index` leaves
    /// (before any note on an INVALID index).
    fn kept_on_failure(&self, index: usize) -> String {
        let kept = airlock_core::statements_kept(index);
        match self.direction {
            Direction::Up => format!("it ran outside a transaction, so {kept}"),
            Direction::Down { .. } => format!(
                "it ran outside a transaction: of the down script, {kept}, and history says migration {v} is partly rolled back; \
                 finish or undo it by hand, then `airlock resolve {v} --mark-rolled-back --reason ...` or `--mark-applied --reason ...`",
                v = self.migration.version
            ),
        }
    }

    /// How to go on after a statement-by-statement script failed at `index`.
    fn next_step(&self, index: usize) -> Option<String> {
        match self.direction {
            Direction::Up => Some(format!(
                "; fix the cause, then `airlock resolve {v} --retry-from-failed` (runs statement {n} onward), `--mark-applied` or `--mark-rolled-back`",
                v = self.migration.version,
                n = index + 1
            )),
            Direction::Down { .. } => None,
        }
    }
}

/// Runs `job` from statement `start` (0-based; above 0 only when resuming a
/// failed statement-by-statement run). Returns how long it took.
pub(crate) async fn run(
    driver: &mut dyn Driver,
    ctx: &Context,
    held: &HeldLease,
    job: &Job<'_>,
    start: usize,
    reporter: &mut dyn Reporter,
) -> Result<Duration, ExecError> {
    driver.set_timeouts(timeouts(ctx, job.directives())).await.map_err(ExecError::db("setting timeouts"))?;
    match job.prepared.mode {
        RunMode::Transaction => in_transaction(driver, ctx, held, job, reporter).await,
        // A backfill runs through `backfill::run`; never here.
        RunMode::Statements | RunMode::Batches => {
            let limits = timeouts(ctx, job.directives());
            if !driver.session_settings_hold() && (!limits.lock.is_zero() || !limits.statement.is_zero()) {
                reporter.warning(&format!(
                    "migration {} runs outside a transaction through a transaction pooler (`pgbouncer=true`): its statements run without lock_timeout and statement_timeout, which a session setting would leave to other clients of the pool; run it over a direct connection to have them",
                    job.version()
                ));
            }
            held.working_on(driver, Some(&job.version())).await?;
            statement_by_statement(driver, ctx, held, job, start, reporter).await
        }
    }
}

async fn in_transaction(
    driver: &mut dyn Driver,
    ctx: &Context,
    held: &HeldLease,
    job: &Job<'_>,
    reporter: &mut dyn Reporter,
) -> Result<Duration, ExecError> {
    let migration = job.migration;
    let version = job.version();
    let statements: Vec<&str> = job.prepared.statements.iter().map(|s| s.sql.as_str()).collect();
    let mut attempt = 0;
    loop {
        let started = Instant::now();
        let running = job.running(ctx);
        if held.lost() {
            return Err(ExecError::LeaseLost);
        }
        held.note_version(Some(&version));
        // Before this attempt began (a signal during a back-off wait).
        ctx.options.interrupt.check(|| job.stopped_before())?;
        // The statements and the commit with its record, at once where the
        // engine can. A signal now cancels them on the server; none after them.
        let (record, event) = job.done(running.clone(), started);
        let cancel = driver.canceller();
        let owner = held.owner();
        let interrupt = ctx.options.interrupt.clone();
        let stop = move || interrupt.raised().is_some();
        let ran = if job.prepared.manages_transaction {
            // Savepoints: a failed statement may be recovered from, so each
            // answer is awaited before the commit is sent.
            let commit =
                airlock_driver::run_then_commit(driver, owner, &statements, &record, &event, &ctx.actor, &stop);
            ctx.options.interrupt.cancellable(cancel, commit).await
        } else {
            let commit = driver.run_and_commit(owner, &statements, &record, &event, &ctx.actor, &stop);
            ctx.options.interrupt.cancellable(cancel, commit).await
        };
        // Committed, even if a signal came as it did: the caller stops before the next one.
        let signal = ctx.options.interrupt.raised().filter(|_| !matches!(ran, Ok(Committed::Done)));
        if let Some(signal) = signal {
            // Cancelled mid-statement, or stopped before the commit: rolled back either way.
            let _ = driver.rollback().await;
            let detail = match job.direction {
                Direction::Up => json!({ "signal": signal, "mode": "transaction" }),
                Direction::Down { .. } => json!({ "signal": signal, "mode": "transaction", "down": true }),
            };
            let _ = driver.append_event(&event_of("interrupted", migration, detail), &ctx.actor).await;
            return Err(ExecError::Interrupted { signal, state: job.rolled_back_on_signal(), applied: Vec::new() });
        }
        let (index, error) = match ran {
            Ok(Committed::Done) => return Ok(started.elapsed()),
            Ok(Committed::Failed { index, error }) => (index, error),
            Ok(Committed::LeaseLost) => return Err(ExecError::LeaseLost),
            // Asked to stop with no signal raised: cannot happen, but it was not committed.
            Ok(Committed::Stopped) => {
                let state = job.rolled_back_on_signal();
                return Err(ExecError::Interrupted { signal: crate::interrupt::SIGINT, state, applied: Vec::new() });
            }
            // SQLite takes its write lock at BEGIN: waiting for it is a lock timeout like any other.
            Err(e) if e.kind == ErrorKind::LockTimeout && !statements.is_empty() => (0, e),
            Err(e) => {
                let _ = driver.rollback().await;
                return Err(ExecError::Database {
                    context: format!("running migration {} in a transaction", migration.version),
                    source: e,
                });
            }
        };
        let _ = driver.rollback().await;
        if error.kind == ErrorKind::LockTimeout && attempt < ctx.options.lock_retries {
            attempt += 1;
            pause_before_retry(driver, ctx, migration, index, attempt, reporter).await;
            continue;
        }
        // Up, the failure is history's (a failed record); down, the migration is still applied as it was.
        let record = matches!(job.direction, Direction::Up).then_some(running);
        let aftermath = job.rolled_back_on_failure();
        return Err(record_failure(driver, ctx, job, record, index, error, None, aftermath, started).await);
    }
}

async fn statement_by_statement(
    driver: &mut dyn Driver,
    ctx: &Context,
    held: &HeldLease,
    job: &Job<'_>,
    start: usize,
    reporter: &mut dyn Reporter,
) -> Result<Duration, ExecError> {
    let migration = job.migration;
    let prepared = job.prepared;
    let started = Instant::now();
    let total = prepared.statements.len();
    let mut record = job.marker(ctx, start);
    retry_conflicts!(driver.write_history(&record).await)
        .map_err(ExecError::db("recording the start of the migration"))?;
    for index in start..total {
        if held.lost() {
            return Err(ExecError::LeaseLost);
        }
        if ctx.options.interrupt.raised().is_some() {
            return Err(interrupted(driver, ctx, job, record, index, false, started).await);
        }
        let statement = &prepared.statements[index];
        if let Some(name) = &prepared.concurrent_index[index] {
            if let Some(dropped) =
                driver.drop_invalid_index(name).await.map_err(ExecError::db("dropping an INVALID index"))?
            {
                reporter.warning(&format!(
                    "{} {}: dropped the INVALID index {dropped} left by an earlier failed attempt, to build it again",
                    migration.version, migration.name
                ));
                let event = event_of("invalid_index_dropped", migration, json!({ "index": dropped }));
                driver.append_event(&event, &ctx.actor).await.map_err(ExecError::db("recording the dropped index"))?;
            }
        }
        let mut attempt = 0;
        loop {
            if ctx.options.interrupt.raised().is_some() {
                // A signal during a back-off wait: the statement has not run again.
                return Err(interrupted(driver, ctx, job, record, index, false, started).await);
            }
            let cancel = driver.canceller();
            match ctx.options.interrupt.cancellable(cancel, driver.execute(&statement.sql)).await {
                Ok(()) => break,
                Err(_) if ctx.options.interrupt.raised().is_some() => {
                    return Err(interrupted(driver, ctx, job, record, index, true, started).await);
                }
                Err(e) if e.kind == ErrorKind::LockTimeout && attempt < ctx.options.lock_retries => {
                    attempt += 1;
                    pause_before_retry(driver, ctx, migration, index, attempt, reporter).await;
                }
                Err(e) => {
                    // A file with transactions of its own may have left one open
                    // and aborted: close it, or the failure could not be recorded.
                    let _ = driver.rollback().await;
                    if locked_before(prepared, index) {
                        let _ = driver.release_table_locks().await;
                    }
                    let mut aftermath = job.kept_on_failure(index);
                    if let Some(name) = &prepared.concurrent_index[index] {
                        if driver.index_is_invalid(name).await.unwrap_or(false) {
                            aftermath.push_str(&format!(
                                "; the failed CREATE INDEX CONCURRENTLY left the INVALID index {name} behind (it slows writes and is never used): `--retry-from-failed` drops it and builds it again"
                            ));
                        }
                    }
                    aftermath.extend(job.next_step(index));
                    return Err(
                        record_failure(driver, ctx, job, Some(record), index, e, None, aftermath, started).await
                    );
                }
            }
        }
        if let Direction::Up = job.direction {
            record.statements_done = index as u32 + 1;
            if index + 1 < total && !prepared.tables_locked[index] {
                // A signal that came as the statement finished stops the loop at the next one.
                // Not retried: inside a transaction the script opened, a conflict means
                // that transaction was rolled back, and a retry would record its
                // statements as done.
                driver.write_history(&record).await.map_err(ExecError::db("recording progress"))?;
            }
        }
    }
    let (record, event) = job.done(record, started);
    retry_conflicts!(driver.record(&record, &event, &ctx.actor).await)
        .map_err(ExecError::db("recording the migration"))?;
    Ok(started.elapsed())
}

/// Whether `LOCK TABLES` of an earlier statement still holds when statement `index` runs.
fn locked_before(prepared: &Prepared, index: usize) -> bool {
    index > 0 && prepared.tables_locked.get(index - 1).copied().unwrap_or(false)
}

/// A statement-by-statement script stopped by a signal before (or, when
/// `cancelled`, during) statement `index`: recorded as failed there, like
/// any other failure outside a transaction, so `resolve` can go on from it.
async fn interrupted(
    driver: &mut dyn Driver,
    ctx: &Context,
    job: &Job<'_>,
    record: HistoryRecord,
    index: usize,
    cancelled: bool,
    started: Instant,
) -> ExecError {
    if locked_before(job.prepared, index) {
        let _ = driver.release_table_locks().await;
    }
    let migration = job.migration;
    let signal = ctx.options.interrupt.raised().unwrap_or(crate::interrupt::SIGINT);
    // A file with transactions of its own may have one open.
    let _ = driver.rollback().await;
    let how = if cancelled { "was cancelled on the server" } else { "had not started" };
    let error = DriverError::new(
        ErrorKind::Statement,
        format!("interrupted by {}: statement {} {how}", crate::interrupt::signal_name(signal), index + 1),
    );
    let v = &migration.version;
    let n = index + 1;
    let state = match job.direction {
        Direction::Up => format!(
            "migration {v} ({name}) runs outside a transaction and stopped at statement {n} of {total} ({how}): {kept}; it is recorded as failed at statement {n}: `airlock resolve {v} --retry-from-failed` runs statement {n} onward",
            name = migration.name,
            total = job.prepared.statements.len(),
            kept = airlock_core::statements_kept(index),
        ),
        Direction::Down { .. } => format!(
            "the down script of migration {v} runs outside a transaction and stopped at statement {n}: statements before it stayed applied, and history says migration {v} is partly rolled back; \
             finish or undo it by hand, then `airlock resolve {v} --mark-rolled-back --reason ...` or `--mark-applied --reason ...`"
        ),
    };
    let _ = record_failure(driver, ctx, job, Some(record), index, error, Some(signal), state.clone(), started).await;
    ExecError::Interrupted { signal, state, applied: Vec::new() }
}

/// Records statement `index`'s failure, or its stop by `signal` (best
/// effort: the connection may be what failed): up, `record` becomes failed
/// there; down, the marker says where the down script stopped. Returns the
/// error to report.
#[allow(clippy::too_many_arguments)]
async fn record_failure(
    driver: &mut dyn Driver,
    ctx: &Context,
    job: &Job<'_>,
    record: Option<HistoryRecord>,
    index: usize,
    error: DriverError,
    signal: Option<i32>,
    aftermath: String,
    started: Instant,
) -> ExecError {
    let migration = job.migration;
    let script = job.script();
    let statement = &job.prepared.statements[index];
    let line = statement.line + script.line_offset;
    let event = match (job.direction, signal) {
        (Direction::Up, _) => event_of(
            "failed",
            migration,
            json!({
                "statement": index + 1,
                "line": line,
                "error": error.message,
                "code": error.code,
                "mode": job.prepared.mode.as_str(),
            }),
        ),
        (Direction::Down { .. }, Some(signal)) => {
            event_of("interrupted", migration, json!({ "signal": signal, "down": true, "statement": index + 1 }))
        }
        (Direction::Down { .. }, None) => {
            event_of("down_failed", migration, json!({ "statement": index + 1, "error": error.message }))
        }
    };
    if let Some(mut record) = record {
        match (job.direction, signal) {
            (Direction::Up, _) => {
                record.failed_statement = Some(index as u32 + 1);
                record.error = Some(error.message.clone());
                if record.mode == RunMode::Transaction {
                    record.statements_done = 0;
                }
                finish(&mut record, RunState::Failed, started);
            }
            (Direction::Down { .. }, Some(_)) => {
                record.error = Some(format!("its down script was interrupted at statement {}", index + 1));
            }
            (Direction::Down { .. }, None) => {
                record.error = Some(format!("its down script failed at statement {}: {}", index + 1, error.message));
            }
        }
        let _ = driver.write_history(&record).await;
    }
    let _ = driver.append_event(&event, &ctx.actor).await;
    ExecError::MigrationFailed(
        Box::new(FailedStatement {
            version: migration.version.to_string(),
            name: migration.name.clone(),
            path: script.path.clone(),
            index: index + 1,
            line,
            sql: statement.sql.clone(),
            error,
            aftermath,
        }),
        Vec::new(),
    )
}

fn event_of(kind: &str, migration: &Migration, detail: serde_json::Value) -> Event {
    crate::admin::event(kind, &migration.version, detail)
}

fn applied_event(migration: &Migration, record: &HistoryRecord) -> Event {
    let allows: Vec<_> =
        migration.directives.allows.iter().map(|a| json!({ "rule": a.rule, "reason": a.reason })).collect();
    event_of(
        "applied",
        migration,
        json!({
            "name": migration.name,
            "checksum": migration.checksum,
            "mode": record.mode.as_str(),
            "statements": record.statements_total,
            "allows": allows,
        }),
    )
}

/// The configured timeouts, overridden by a script's directives.
pub(crate) fn timeouts(ctx: &Context, directives: &Directives) -> Timeouts {
    Timeouts {
        lock: directives.lock_timeout.unwrap_or(ctx.options.timeouts.lock),
        statement: directives.statement_timeout.unwrap_or(ctx.options.timeouts.statement),
    }
}

fn backoff(ctx: &Context, attempt: u32) -> Duration {
    let base = ctx.options.retry_backoff.saturating_mul(1 << attempt.min(5)).min(Duration::from_secs(30));
    base.mul_f64(rand::rng().random_range(0.5..1.0))
}

/// After statement `index` (0-based) hit the lock timeout: says who blocks it,
/// then waits out retry number `attempt` (1-based) with backoff and jitter.
pub(crate) async fn pause_before_retry(
    driver: &mut dyn Driver,
    ctx: &Context,
    migration: &Migration,
    index: usize,
    attempt: u32,
    reporter: &mut dyn Reporter,
) {
    let blockers = driver.describe_blockers().await.unwrap_or_default();
    let wait = backoff(ctx, attempt - 1);
    reporter.retrying(migration, index + 1, attempt, wait, &blockers);
    let started = Instant::now();
    ctx.options.interrupt.sleep(wait).await;
    ctx.paused_ms.fetch_add(started.elapsed().as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
}

/// A new history record of `migration` as it starts running.
pub(crate) fn new_record(ctx: &Context, migration: &Migration, mode: RunMode, total: usize) -> HistoryRecord {
    HistoryRecord {
        version: migration.version.clone(),
        name: migration.name.clone(),
        kind: migration.kind,
        checksum: migration.checksum.clone(),
        up_sql: migration.up.sql.clone(),
        down_sql: migration.down.as_ref().map(|d| d.sql.clone()),
        state: RunState::Running,
        mode,
        statements_done: 0,
        statements_total: total as u32,
        failed_statement: None,
        error: None,
        started_at: Utc::now(),
        finished_at: None,
        duration_ms: None,
        os_user: ctx.actor.os_user.clone(),
        host: ctx.actor.host.clone(),
        airlock_version: ctx.actor.airlock_version.clone(),
    }
}

fn finish(record: &mut HistoryRecord, state: RunState, started: Instant) {
    record.state = state;
    record.finished_at = Some(Utc::now());
    record.duration_ms = Some(started.elapsed().as_millis() as i64);
}
