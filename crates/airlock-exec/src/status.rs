//! `status`: where the database stands, read without locking or writing,
//! and the pure judgement (`judge_status`) the gate and `serve` share.

use airlock_core::{Discovered, Problem, ProblemCode, Settings, Version, reconcile};

use crate::error::ExecError;
use crate::report::{AppliedEntry, LastRun, LockEntry, PendingEntry, ProblemEntry, StatusReport};
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
        Ok::<_, ExecError>((driver, snap, foreign, last))
    });
    let (mut driver, snap, foreign, last) = snap?;
    let (discovered, unreadable) = discovered?;
    let running = snap.lease.as_ref().and_then(|l| l.version.clone());
    let (mut status, latest) = judge_status(options, &discovered, snap);
    let pending: Vec<&airlock_core::Migration> = status
        .pending
        .iter()
        .filter_map(|p| discovered.migrations.iter().find(|m| m.version.to_string() == p.version))
        .collect();
    let dialect = options.engine_traits().dialect;
    status.backfills = crate::backfill::entries(driver.as_mut(), &pending, running.as_deref(), dialect).await?;
    // A file that cannot be read: the database is still shown, with the file as a problem.
    for e in unreadable.iter().rev() {
        let problem = Problem {
            code: ProblemCode::UnreadableFile,
            version: e.version.clone(),
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
        backfills: Vec::new(),
        expanded: plan.pending.first().filter(|m| m.directives.contract).map(|m| {
            format!(
                "{}: migration {} ({}) waits for `airlock migrate --contract`, once no old app version runs",
                airlock_core::migration::CONTRACT_PENDING,
                m.version,
                m.name
            )
        }),
    };
    (report, latest)
}
