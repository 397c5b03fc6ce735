//! `status`, `down`, `repair` and `resolve`: reading the state, and the explicit
//! ways out of a problem. None of them un-applies anything it was not told to.

use std::time::Instant;

use airlock_core::{
    Discovered, Event, HistoryRecord, Migration, Problem, ProblemCode, RunMode, RunState, Settings, Version, reconcile,
};
use airlock_driver::{Driver, Ran};
use chrono::Utc;
use serde_json::json;

use crate::error::ExecError;
use crate::lease::{self, HeldLease};
use crate::prepare::{prepare, prepare_script};
use crate::report::{
    AppliedEntry, LastRun, LockEntry, PendingEntry, ProblemEntry, Reporter, RunEntry, RunReport, StatusReport,
};
use crate::run::apply;
use crate::{Context, Options, Snapshot, project_problem, snapshot};

/// Reads where the database stands. Changes nothing.
pub async fn status(options: &Options) -> Result<StatusReport, ExecError> {
    assess(options).await.map(|(status, _)| status)
}

/// The status, and the newest migration version in the directory.
pub(crate) async fn assess(options: &Options) -> Result<(StatusReport, Option<Version>), ExecError> {
    let ctx = Context::new(options);
    let (discovered, snap) = tokio::join!(options.discover_lenient(), async {
        let mut driver = crate::connect(&options.url, false).await.map_err(ExecError::Connect)?;
        let snap = snapshot(driver.as_mut(), &ctx).await?;
        // No airlock history yet: did another tool migrate it?
        let foreign =
            if snap.history.is_empty() { crate::adopt::foreign_tools(driver.as_mut()).await } else { Vec::new() };
        // The newest run is one invocation, as its event says.
        let last = if snap.history.is_empty() { None } else { crate::audit::last_run(driver.as_mut()).await };
        Ok::<_, ExecError>((snap, foreign, last))
    });
    let (snap, foreign, last) = snap?;
    let (discovered, unreadable) = discovered?;
    let (mut status, latest) = judge_status(options, &discovered, snap);
    // A file that cannot be read: the database is still shown, with the file as a problem.
    for e in unreadable.iter().rev() {
        let problem = Problem {
            code: ProblemCode::UnreadableFile,
            version: None,
            message: format!("{e}; until it is fixed, `migrate` refuses to run"),
            detail: None,
            blocking: true,
        };
        status.problems.insert(0, ProblemEntry::from(&problem));
    }
    if last.is_some() && status.lock.is_none() {
        status.last_run = last;
    }
    if let Some(problem) = crate::adopt::foreign_problem(&foreign) {
        status.problems.insert(0, ProblemEntry::from(&problem));
    }
    Ok((status, latest))
}

/// The status of a database whose state was read as `snap`, against the
/// migrations `discovered`; and the newest migration version there is. Pure.
pub(crate) fn judge_status(
    options: &Options,
    discovered: &Discovered,
    snap: Snapshot,
) -> (StatusReport, Option<Version>) {
    let latest = discovered.migrations.last().map(|m| m.version.clone());
    let settings = Settings { target: None, out_of_order: options.out_of_order, run_in_progress: snap.lease.is_some() };
    let mut plan = reconcile(&discovered.migrations, &snap.history, &settings);
    plan.problems.extend(project_problem(snap.project.as_deref(), options.project.as_deref(), &options.url));
    if let Some(holder) = &snap.lease {
        if !plan.problems.iter().any(|p| p.code == ProblemCode::InProgress) {
            plan.problems.insert(
                0,
                Problem {
                    code: ProblemCode::InProgress,
                    version: holder.version.as_deref().and_then(|v| Version::parse(v).ok()),
                    message: format!("a migration run is in progress: {}", holder.describe()),
                    detail: None,
                    blocking: true,
                },
            );
        }
    }
    let has = |code| plan.problems.iter().any(|p| p.code == code);
    let state = if has(ProblemCode::InProgress) || has(ProblemCode::Interrupted) {
        "dirty"
    } else if has(ProblemCode::Failed) {
        "failed"
    } else {
        "clean"
    };
    let report = StatusReport {
        state,
        current_version: plan.current_version().map(ToString::to_string),
        applied: plan
            .applied
            .iter()
            .map(|r| AppliedEntry {
                version: r.version.to_string(),
                name: r.name.clone(),
                kind: r.kind.as_str(),
                checksum: r.checksum.clone(),
                applied_at: r.finished_at.map(|t| t.to_rfc3339()),
                duration_ms: r.duration_ms,
            })
            .collect(),
        pending: plan.pending.iter().map(|m| PendingEntry::from(*m)).collect(),
        problems: plan.problems.iter().map(ProblemEntry::from).collect(),
        lock: snap.lease.as_ref().map(LockEntry::from),
        project: snap.project,
        database: options.url.to_string(),
        warnings: discovered.warnings.iter().map(|w| format!("{}: {}", w.path.display(), w.message)).collect(),
        last_run: LastRun::of(&snap.history, snap.lease.as_ref().map(|l| l.acquired_at)),
    };
    (report, latest)
}

/// Opens the database for a command that changes existing history (`down`,
/// `repair`, `resolve`): refuses a database with no airlock history without
/// creating anything there, then takes the lease.
async fn locked(
    options: &Options,
    command: &str,
    reporter: &mut dyn Reporter,
) -> Result<(Discovered, Context, Box<dyn Driver>, HeldLease), ExecError> {
    let discovered = options.discover()?;
    let ctx = Context::new(options);
    let mut driver = crate::connect(&options.url, false).await.map_err(ExecError::Connect)?;
    let state = driver.read_state().await.map_err(ExecError::db("reading airlock's tables"))?;
    if state.history.is_empty() {
        return Err(ExecError::Usage(format!(
            "nothing to {command}: {} has no airlock history (is this the right database?)",
            options.url
        )));
    }
    driver.ensure_tables().await.map_err(ExecError::db("creating airlock's tables"))?;
    let held = lease::acquire(driver.as_mut(), &ctx, reporter).await?;
    Ok((discovered, ctx, driver, held))
}

async fn read_checked(driver: &mut dyn Driver, ctx: &Context) -> Result<Vec<HistoryRecord>, ExecError> {
    let snap = snapshot(driver, ctx).await?;
    if let Some(problem) = project_problem(snap.project.as_deref(), ctx.options.project.as_deref(), &ctx.options.url) {
        return Err(ExecError::Blocked { problems: vec![problem] });
    }
    Ok(snap.history)
}

fn find<'a>(history: &'a [HistoryRecord], version: &Version) -> Option<&'a HistoryRecord> {
    history.iter().find(|r| &r.version == version)
}

fn event(kind: &str, version: &Version, detail: serde_json::Value) -> Event {
    Event { kind: kind.to_owned(), version: Some(version.clone()), detail: detail.to_string() }
}

/// Applies down scripts, newest first, until `to` is the newest applied version.
/// Refused in protected environments.
pub async fn down(options: &Options, to: Version, reporter: &mut dyn Reporter) -> Result<RunReport, ExecError> {
    if options.protected {
        return Err(ExecError::Protected(format!(
            "`down` is refused: environment `{}` is protected (`protected = true` in airlock.toml); roll forward with a new migration instead",
            options.environment.as_deref().unwrap_or("?")
        )));
    }
    let (started, started_at) = (std::time::Instant::now(), Utc::now());
    let (discovered, ctx, mut driver, held) = locked(options, "roll back", reporter).await?;
    let outcome = down_locked(driver.as_mut(), &ctx, &held, &discovered, &to, reporter).await;
    options.interrupt.disarm().await;
    record_run(driver.as_mut(), &ctx, "down", started, started_at, &outcome).await;
    held.release(driver.as_mut()).await;
    outcome
}

/// The `run` event of a `down` or `resolve` that did something.
async fn record_run(
    driver: &mut dyn Driver,
    ctx: &Context,
    command: &'static str,
    started: std::time::Instant,
    started_at: chrono::DateTime<Utc>,
    outcome: &Result<RunReport, ExecError>,
) {
    let versions = match outcome {
        Ok(report) => report.migrations.iter().map(|r| r.version.clone()).collect(),
        Err(e) => e.applied_versions(),
    };
    if matches!(outcome, Ok(report) if report.migrations.is_empty()) || matches!(outcome, Err(ExecError::LeaseLost)) {
        return;
    }
    let run = crate::audit::RunRecord { command, started, started_at, versions: &versions };
    let error = outcome.as_ref().err().map(ToString::to_string);
    crate::audit::record_run(driver, ctx, run, crate::audit::outcome_of(outcome), error).await;
}

async fn down_locked(
    driver: &mut dyn Driver,
    ctx: &Context,
    held: &HeldLease,
    discovered: &Discovered,
    to: &Version,
    reporter: &mut dyn Reporter,
) -> Result<RunReport, ExecError> {
    let history = read_checked(driver, ctx).await?;
    let plan = reconcile(&discovered.migrations, &history, &Settings { out_of_order: true, ..Settings::default() });
    if plan.is_blocked() {
        return Err(ExecError::Blocked { problems: plan.problems.into_iter().filter(|p| p.blocking).collect() });
    }
    let mut undo: Vec<&HistoryRecord> = plan.applied.iter().copied().filter(|r| &r.version > to).collect();
    undo.reverse();
    let files: Vec<&Migration> =
        undo.iter().filter_map(|r| discovered.migrations.iter().find(|m| m.version == r.version)).collect();
    let missing: Vec<String> =
        files.iter().filter(|m| m.down.is_none()).map(|m| format!("{} ({})", m.version, m.name)).collect();
    if !missing.is_empty() {
        return Err(ExecError::Usage(format!(
            "cannot go down to {to}: no down script for {}; nothing was changed. Write the down scripts, or roll forward with a new migration",
            missing.join(", ")
        )));
    }
    let traits = ctx.options.engine_traits();
    let mut prepared = Vec::new();
    let mut errors = Vec::new();
    for m in &files {
        let Some(down) = &m.down else { continue };
        match prepare_script(down, m.down_directives.no_transaction, traits) {
            Ok(p) => prepared.push(p),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(ExecError::Invalid(errors));
    }
    let mut ran = Vec::new();
    let done = |ran: &[RunEntry]| ran.iter().map(|r| r.version.clone()).collect::<Vec<_>>();
    for ((migration, prepared), record) in files.iter().zip(&prepared).zip(&undo) {
        if let Some(signal) = ctx.options.interrupt.raised() {
            let state = format!(
                "it stopped before rolling back migration {} ({}), which is still applied",
                migration.version, migration.name
            );
            return Err(ExecError::Interrupted { signal, state, applied: done(&ran) });
        }
        reporter.migration_started(migration, prepared.mode);
        let version = migration.version.to_string();
        driver
            .set_timeouts(crate::run::timeouts(ctx, &migration.down_directives))
            .await
            .map_err(ExecError::db("setting timeouts"))?;
        let started = Instant::now();
        let in_tx = prepared.mode == RunMode::Transaction;
        let mut marker = (*record).clone();
        if !in_tx {
            // Outside a transaction the schema changes statement by statement:
            // history must never claim the migration is still fully applied.
            held.working_on(driver, Some(&version)).await?;
            marker.state = RunState::RollingBack;
            marker.error = Some("its down script was running".to_owned());
            driver.write_history(&marker).await.map_err(ExecError::db("recording the start of the rollback"))?;
        }
        let mut attempt = 0;
        'attempt: loop {
            if in_tx {
                held.note_version(Some(&version));
                match driver.begin_and_run(held.owner(), Some(&version), &[]).await {
                    Ok(Ran::All) => {}
                    Ok(_) => return Err(ExecError::LeaseLost),
                    Err(e) => return Err(ExecError::db("opening a transaction")(e)),
                }
            }
            for (index, statement) in prepared.statements.iter().enumerate() {
                loop {
                    if held.lost() {
                        return Err(ExecError::LeaseLost);
                    }
                    let outcome = if ctx.options.interrupt.raised().is_some() {
                        None
                    } else {
                        ctx.options.interrupt.arm(driver.canceller());
                        let executed = driver.execute(&statement.sql).await;
                        ctx.options.interrupt.disarm().await;
                        Some(executed)
                    };
                    if let (Some(signal), None | Some(Err(_))) = (ctx.options.interrupt.raised(), &outcome) {
                        ctx.options.interrupt.settled().await;
                        let _ = driver.rollback().await;
                        let state = if in_tx {
                            format!(
                                "the down script of migration {v} was stopped and rolled back: migration {v} is still applied",
                                v = migration.version
                            )
                        } else {
                            marker.error = Some(format!("its down script was interrupted at statement {}", index + 1));
                            let _ = driver.write_history(&marker).await;
                            format!(
                                "the down script of migration {v} runs outside a transaction and stopped at statement {n}: statements before it stayed applied, and history says migration {v} is partly rolled back; \
                                 finish or undo it by hand, then `airlock resolve {v} --mark-rolled-back --reason ...` or `--mark-applied --reason ...`",
                                v = migration.version,
                                n = index + 1
                            )
                        };
                        let _ = driver
                            .append_event(
                                &event(
                                    "interrupted",
                                    &migration.version,
                                    json!({ "signal": signal, "down": true, "statement": index + 1 }),
                                ),
                                &ctx.actor,
                            )
                            .await;
                        return Err(ExecError::Interrupted { signal, state, applied: done(&ran) });
                    }
                    let Some(Err(error)) = outcome else { break };
                    if error.kind == airlock_driver::ErrorKind::LockTimeout && attempt < ctx.options.lock_retries {
                        attempt += 1;
                        if in_tx {
                            // In a transaction the whole down script starts over, holding no lock meanwhile.
                            let _ = driver.rollback().await;
                            crate::run::pause_before_retry(driver, ctx, migration, index, attempt, reporter).await;
                            continue 'attempt;
                        }
                        crate::run::pause_before_retry(driver, ctx, migration, index, attempt, reporter).await;
                        continue;
                    }
                    let _ = driver.rollback().await;
                    let down_path = migration.down.as_ref().map(|d| d.path.clone()).unwrap_or_default();
                    let aftermath = if in_tx {
                        format!(
                            "it ran in a transaction that was rolled back: migration {} is still applied",
                            migration.version
                        )
                    } else {
                        marker.error =
                            Some(format!("its down script failed at statement {}: {}", index + 1, error.message));
                        let _ = driver.write_history(&marker).await;
                        format!(
                            "it ran outside a transaction: of the down script, {kept}, and history says migration {v} is partly rolled back; \
                             finish or undo it by hand, then `airlock resolve {v} --mark-rolled-back --reason ...` or `--mark-applied --reason ...`",
                            v = migration.version,
                            kept = airlock_core::statements_kept(index)
                        )
                    };
                    let _ = driver
                        .append_event(
                            &event(
                                "down_failed",
                                &migration.version,
                                json!({ "statement": index + 1, "error": error.message }),
                            ),
                            &ctx.actor,
                        )
                        .await;
                    return Err(ExecError::MigrationFailed(
                        Box::new(crate::error::FailedStatement {
                            version: version.clone(),
                            name: migration.name.clone(),
                            line: statement.line + migration.down.as_ref().map_or(0, |d| d.line_offset),
                            path: down_path,
                            index: index + 1,
                            sql: statement.sql.clone(),
                            error,
                            aftermath,
                        }),
                        ran.iter().map(|r: &RunEntry| r.version.clone()).collect(),
                    ));
                }
            }
            break;
        }
        if let (Some(signal), true) = (ctx.options.interrupt.raised(), in_tx) {
            // Every statement ran, but nothing is committed yet: keep it as it was.
            ctx.options.interrupt.settled().await;
            let _ = driver.rollback().await;
            let state = format!(
                "the down script of migration {v} was stopped and rolled back: migration {v} is still applied",
                v = migration.version
            );
            return Err(ExecError::Interrupted { signal, state, applied: done(&ran) });
        }
        let mut rolled_back = (*record).clone();
        rolled_back.state = RunState::RolledBack;
        rolled_back.finished_at = Some(Utc::now());
        rolled_back.duration_ms = Some(started.elapsed().as_millis() as i64);
        let ev =
            event("rolled_back", &migration.version, json!({ "name": migration.name, "mode": prepared.mode.as_str() }));
        if in_tx {
            match driver.record_and_commit(held.owner(), &rolled_back, &ev, &ctx.actor).await {
                Ok(true) => {}
                Ok(false) => return Err(ExecError::LeaseLost),
                Err(e) => {
                    let _ = driver.rollback().await;
                    return Err(ExecError::db(format!("recording the rollback of {}", migration.version))(e));
                }
            }
        } else {
            driver
                .record(&rolled_back, &ev, &ctx.actor)
                .await
                .map_err(ExecError::db(format!("recording the rollback of {}", migration.version)))?;
        }
        reporter.migration_finished(migration, started.elapsed());
        ran.push(RunEntry {
            version,
            name: migration.name.clone(),
            kind: migration.kind.as_str(),
            mode: prepared.mode.as_str(),
            statements: prepared.statements.len(),
            duration_ms: started.elapsed().as_millis() as u64,
        });
    }
    let remaining = plan.applied.iter().map(|r| &r.version).filter(|v| *v <= to).max();
    Ok(RunReport {
        migrations: ran,
        dry_run: false,
        current_version: remaining.map(ToString::to_string),
        left_pending: Vec::new(),
        warnings: Vec::new(),
    })
}

/// Accepts the current text of an applied migration whose file changed,
/// recording the old and new checksum, who and why. Returns the old checksum
/// (None when the file already matched).
pub async fn repair(
    options: &Options,
    version: Version,
    reason: &str,
    reporter: &mut dyn Reporter,
) -> Result<Option<String>, ExecError> {
    let (discovered, ctx, mut driver, held) = locked(options, "repair", reporter).await?;
    let outcome = async {
        let history = read_checked(driver.as_mut(), &ctx).await?;
        let record = find(&history, &version)
            .filter(|r| r.state.is_applied())
            .ok_or_else(|| ExecError::Usage(format!("migration {version} is not applied in this database; `repair --accept` only accepts edits to applied migrations")))?;
        let file = discovered
            .migrations
            .iter()
            .find(|m| m.version == version)
            .ok_or_else(|| ExecError::Usage(format!("migration {version} has no file in {}", options.source)))?;
        if file.checksum == record.checksum {
            return Ok(None);
        }
        let mut updated = record.clone();
        updated.checksum = file.checksum.clone();
        updated.up_sql = file.up.sql.clone();
        updated.name = file.name.clone();
        let ev = event(
            "repaired",
            &version,
            json!({ "old_checksum": record.checksum, "new_checksum": file.checksum, "reason": reason, "path": file.up.path }),
        );
        driver.write_history(&updated).await.map_err(ExecError::db("updating the checksum"))?;
        driver.append_event(&ev, &ctx.actor).await.map_err(ExecError::db("recording the repair"))?;
        Ok(Some(record.checksum.clone()))
    }
    .await;
    held.release(driver.as_mut()).await;
    outcome
}

/// Frees the run lock: at once when its holder is gone; with `force`, also
/// from a holder that looks alive (for a process on another machine airlock
/// cannot see). Recorded. Returns the holder that was freed, if any.
pub async fn unlock(options: &Options, force: bool, reason: Option<&str>) -> Result<Option<LockEntry>, ExecError> {
    let ctx = Context::new(options);
    let mut driver = crate::connect(&options.url, false).await.map_err(ExecError::Connect)?;
    let freed = lease::unlock(driver.as_mut(), &ctx, force, reason).await?;
    Ok(freed.as_ref().map(LockEntry::from))
}

/// How to close a failed or interrupted statement-by-statement migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Run the statements from the failed one onward.
    RetryFromFailed,
    /// The migration was completed by hand.
    MarkApplied,
    /// What it applied was undone by hand: it is pending again.
    MarkRolledBack,
}

impl Resolution {
    fn as_str(self) -> &'static str {
        match self {
            Resolution::RetryFromFailed => "retry-from-failed",
            Resolution::MarkApplied => "mark-applied",
            Resolution::MarkRolledBack => "mark-rolled-back",
        }
    }
}

/// Closes a failed or interrupted migration as told, recorded in history.
pub async fn resolve(
    options: &Options,
    version: Version,
    how: Resolution,
    reason: Option<&str>,
    reporter: &mut dyn Reporter,
) -> Result<RunReport, ExecError> {
    if how != Resolution::RetryFromFailed && reason.is_none_or(|r| r.trim().is_empty()) {
        return Err(ExecError::Usage(format!(
            "`resolve --{}` changes what history says without running anything: say why with --reason TEXT (kept in the audit log)",
            how.as_str()
        )));
    }
    let (started, started_at) = (std::time::Instant::now(), Utc::now());
    let (discovered, ctx, mut driver, held) = locked(options, "resolve", reporter).await?;
    let outcome = resolve_locked(driver.as_mut(), &ctx, &held, &discovered, &version, how, reason, reporter).await;
    options.interrupt.disarm().await;
    if how == Resolution::RetryFromFailed {
        record_run(driver.as_mut(), &ctx, "resolve", started, started_at, &outcome).await;
    }
    held.release(driver.as_mut()).await;
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn resolve_locked(
    driver: &mut dyn Driver,
    ctx: &Context,
    held: &HeldLease,
    discovered: &Discovered,
    version: &Version,
    how: Resolution,
    reason: Option<&str>,
    reporter: &mut dyn Reporter,
) -> Result<RunReport, ExecError> {
    let history = read_checked(driver, ctx).await?;
    let record = find(&history, version).ok_or_else(|| {
        ExecError::Usage(format!("migration {version} has no record in this database; nothing to resolve"))
    })?;
    let open = matches!(record.state, RunState::Failed | RunState::Running);
    let allowed = match how {
        Resolution::MarkRolledBack => open || record.state.is_applied() || record.state == RunState::RollingBack,
        Resolution::MarkApplied => open || record.state == RunState::RollingBack,
        Resolution::RetryFromFailed => open,
    };
    if how == Resolution::MarkRolledBack && record.state.is_applied() && ctx.options.protected {
        return Err(ExecError::Protected(format!(
            "`resolve --mark-rolled-back` on the applied migration {version} would make `migrate` apply it again: refused in the protected environment `{}`",
            ctx.options.environment.as_deref().unwrap_or("?")
        )));
    }
    if !allowed {
        return Err(ExecError::Usage(format!(
            "migration {version} is {}; `resolve --{}` is for a failed or interrupted migration",
            record.state.as_str(),
            how.as_str()
        )));
    }
    let file = discovered.migrations.iter().find(|m| &m.version == version);
    let detail = json!({ "resolution": how.as_str(), "reason": reason, "previous_state": record.state.as_str(),
        "statements_done": record.statements_done, "error": record.error });
    let mut ran = Vec::new();
    match how {
        Resolution::RetryFromFailed => {
            let migration = file.ok_or_else(|| {
                ExecError::Usage(format!("migration {version} has no file in {}", ctx.options.source))
            })?;
            let prepared = prepare(migration, ctx.options.engine_traits()).map_err(|e| ExecError::Invalid(vec![e]))?;
            let done = if record.mode == RunMode::Transaction { 0 } else { record.statements_done as usize };
            if done > 0 && prepared.mode != RunMode::Statements {
                return Err(ExecError::Usage(format!(
                    "migration {version} ran statement by statement and {done} statement(s) stayed applied, but `{}` would now run in one transaction (its header changed?); restore the header, or finish by hand and use --mark-applied",
                    migration.up.path.display()
                )));
            }
            check_prefix_unchanged(record, migration, &prepared, done, ctx)?;
            let start = if prepared.mode == RunMode::Statements { done } else { 0 };
            // What is still to run is judged like any migration: the data as it is now.
            let script = airlock_lint::parse_migration(migration, ctx.options.engine_traits().dialect);
            let mut assessor = crate::plan::Assessor::reading(&ctx.options, driver).await?;
            let mut assessed = assessor.migration(migration, &script, Default::default()).await?;
            assessed.statements.retain(|s| s.index > start);
            crate::run::decide(&ctx.options, migration, &assessed, reporter)?;
            driver
                .append_event(&event("resolved", version, detail), &ctx.actor)
                .await
                .map_err(ExecError::db("recording the resolution"))?;
            reporter.migration_started(migration, prepared.mode);
            let elapsed = apply(driver, ctx, held, migration, &prepared, start, reporter).await?;
            reporter.migration_finished(migration, elapsed);
            ran.push(RunEntry {
                version: version.to_string(),
                name: migration.name.clone(),
                kind: migration.kind.as_str(),
                mode: prepared.mode.as_str(),
                statements: prepared.statements.len() - start,
                duration_ms: elapsed.as_millis() as u64,
            });
        }
        Resolution::MarkApplied | Resolution::MarkRolledBack => {
            let mut updated = record.clone();
            updated.state = if how == Resolution::MarkApplied { RunState::Succeeded } else { RunState::RolledBack };
            updated.finished_at = Some(Utc::now());
            if how == Resolution::MarkApplied {
                updated.statements_done = updated.statements_total;
                if let Some(m) = file {
                    updated.checksum = m.checksum.clone();
                    updated.up_sql = m.up.sql.clone();
                }
            }
            driver.write_history(&updated).await.map_err(ExecError::db("recording the resolution"))?;
            driver
                .append_event(&event("resolved", version, detail), &ctx.actor)
                .await
                .map_err(ExecError::db("recording the resolution"))?;
        }
    }
    let history = driver.read_history().await.map_err(ExecError::db("reading airlock_history"))?;
    let current = history.iter().filter(|r| r.state.is_applied()).map(|r| &r.version).max();
    Ok(RunReport {
        migrations: ran,
        dry_run: false,
        current_version: current.map(ToString::to_string),
        left_pending: Vec::new(),
        warnings: Vec::new(),
    })
}

/// Statements that already ran must not have changed since; the rest may (that is the fix).
fn check_prefix_unchanged(
    record: &HistoryRecord,
    migration: &Migration,
    prepared: &crate::Prepared,
    done: usize,
    ctx: &Context,
) -> Result<(), ExecError> {
    if done == 0 {
        return Ok(());
    }
    // The recorded text goes through the same preparation, so a folded BEGIN/COMMIT counts alike.
    let old_script = airlock_core::Script {
        path: migration.up.path.clone(),
        sql: record.up_sql.clone(),
        line_offset: migration.up.line_offset,
    };
    let old =
        prepare_script(&old_script, true, ctx.options.engine_traits()).map_err(|e| ExecError::Invalid(vec![e]))?;
    let changed =
        (0..done).find(|&i| old.statements.get(i).map(|s| &s.sql) != prepared.statements.get(i).map(|s| &s.sql));
    if let Some(i) = changed {
        return Err(ExecError::Blocked {
            problems: vec![Problem {
                code: ProblemCode::ChecksumMismatch,
                version: Some(migration.version.clone()),
                message: format!(
                    "statement {} of migration {} already ran, but `{}` now says something else there; only the statements from {} onward may change before `--retry-from-failed`",
                    i + 1,
                    migration.version,
                    migration.up.path.display(),
                    done + 1
                ),
                detail: None,
                blocking: true,
            }],
        });
    }
    Ok(())
}
