//! `down`: applies down scripts, newest first, until a version is the newest
//! applied; refused in protected environments.

use std::time::Instant;

use airlock_core::{Discovered, HistoryRecord, Migration, RunMode, RunState, Settings, Version, reconcile};
use airlock_driver::{Driver, Ran};
use chrono::Utc;
use serde_json::json;

use crate::admin::{event, locked, read_checked};
use crate::audit::{RunStart, record_run};
use crate::error::ExecError;
use crate::lease::HeldLease;
use crate::prepare::prepare_script;
use crate::report::{Reporter, RunEntry, RunReport};
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
                        let cancel = driver.canceller();
                        Some(ctx.options.interrupt.cancellable(cancel, driver.execute(&statement.sql)).await)
                    };
                    if let (Some(signal), None | Some(Err(_))) = (ctx.options.interrupt.raised(), &outcome) {
                        let _ = driver.rollback().await;
                        let state = if in_tx {
                            down_rolled_back(migration)
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
                        done(&ran),
                    ));
                }
            }
            break;
        }
        if let (Some(signal), true) = (ctx.options.interrupt.raised(), in_tx) {
            // Every statement ran, but nothing is committed yet: keep it as it was.
            let _ = driver.rollback().await;
            return Err(ExecError::Interrupted { signal, state: down_rolled_back(migration), applied: done(&ran) });
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

/// What a `down` stopped inside a transaction leaves.
fn down_rolled_back(migration: &Migration) -> String {
    format!(
        "the down script of migration {v} was stopped and rolled back: migration {v} is still applied",
        v = migration.version
    )
}
