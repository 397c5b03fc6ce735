//! `down`: applies down scripts, newest first, until a version is the newest
//! applied; refused in protected environments.

use airlock_core::{Discovered, HistoryRecord, Migration, Settings, Version, reconcile};
use airlock_driver::Driver;

use crate::admin::{locked, read_checked};
use crate::apply::{self, Direction, Job};
use crate::audit::{RunStart, record_run};
use crate::error::ExecError;
use crate::lease::HeldLease;
use crate::prepare::prepare_script;
use crate::report::{Reporter, RunEntry, RunReport};
use crate::run::{entry, with_applied};
use crate::{Context, Options};

/// Applies down scripts, newest first, until `to` is the newest applied version.
/// Refused in protected environments.
pub async fn down(options: &Options, to: Version, reporter: &mut dyn Reporter) -> Result<RunReport, ExecError> {
    if options.protected {
        return Err(ExecError::Protected(format!(
            "`down` is refused: environment `{}` is protected (`protected = true` in airlock.toml); roll forward with a new migration instead",
            options.environment.as_deref().unwrap_or("?")
        )));
    }
    let start = RunStart::now();
    let (discovered, ctx, mut driver, held) = locked(options, "roll back", reporter).await?;
    let outcome = down_locked(driver.as_mut(), &ctx, &held, &discovered, &to, reporter).await;
    record_run(driver.as_mut(), &ctx, "down", &start, &outcome, |report| &report.migrations).await;
    held.release(driver.as_mut()).await;
    outcome
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
            Ok(p) => prepared.push((down, p)),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(ExecError::Invalid(errors));
    }
    let mut ran: Vec<RunEntry> = Vec::new();
    let of = prepared.len();
    for (index, ((migration, (script, prepared)), applied)) in files.iter().zip(&prepared).zip(&undo).enumerate() {
        let job = Job { migration, prepared, direction: Direction::Down { applied, script } };
        ctx.options.interrupt.check(|| job.stopped_before()).map_err(|e| with_applied(e, &ran))?;
        let started = crate::report::Started { mode: prepared.mode, position: index + 1, of, estimate: None };
        reporter.migration_started(migration, &started);
        let elapsed = apply::run(driver, ctx, held, &job, 0, reporter).await.map_err(|e| with_applied(e, &ran))?;
        reporter.migration_finished(migration, elapsed);
        ran.push(entry(migration, prepared, elapsed));
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
