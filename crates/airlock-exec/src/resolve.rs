//! `resolve`: closes a failed or interrupted statement-by-statement
//! migration as a person says: retry from the failed statement, or mark it
//! applied or rolled back (with a reason).

use airlock_core::{Discovered, HistoryRecord, Migration, Problem, ProblemCode, RunMode, RunState, Version};
use airlock_driver::Driver;
use chrono::Utc;
use serde_json::json;

use crate::admin::{event, find, locked, read_checked};
use crate::apply::{self, Direction, Job};
use crate::audit::{RunStart, record_run};
use crate::error::ExecError;
use crate::lease::HeldLease;
use crate::prepare::{prepare, prepare_script};
use crate::report::{Reporter, RunEntry, RunReport};
use crate::{Context, Options};

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
    let start = RunStart::now();
    let (discovered, ctx, mut driver, held) = locked(options, "resolve", reporter).await?;
    let outcome = resolve_locked(driver.as_mut(), &ctx, &held, &discovered, &version, how, reason, reporter).await;
    if how == Resolution::RetryFromFailed {
        record_run(driver.as_mut(), &ctx, "resolve", &start, &outcome, |report| &report.migrations).await;
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
            let estimate = crate::report::Started::estimate_of(&assessed);
            let started = crate::report::Started { mode: prepared.mode, position: 1, of: 1, estimate };
            reporter.migration_started(migration, &started);
            let job = Job { migration, prepared: &prepared, direction: Direction::Up };
            let elapsed = apply::run(driver, ctx, held, &job, start, reporter).await?;
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
