//! `migrate`: check, then apply pending migrations in order, recording each one.

use std::time::{Duration, Instant};

use airlock_core::{
    Event, HistoryRecord, Migration, Problem, ProblemCode, RunMode, RunState, Settings, Version, reconcile,
};
use airlock_driver::{Driver, DriverError, ErrorKind, Ran, Timeouts};
use chrono::Utc;
use rand::Rng;
use serde_json::json;

use crate::error::{ExecError, FailedStatement, MigrationRefused, Refusal};
use crate::lease::{self, HeldLease};
use crate::plan::{Assessor, MigrationPlan, Risk, StatementPlan, Verdict};
use crate::prepare::{Prepared, prepare};
use crate::report::{PendingEntry, Reporter, RunEntry, RunReport};
use crate::{Context, Options, project_problem, snapshot};

/// Lints the pending migrations against the live schema: error findings (not
/// allowed, not in the baseline) refuse the run before anything changes;
/// warnings are told.
fn lint_pending(
    options: &Options,
    pending: &[Migration],
    scripts: &[airlock_lint::ParsedScript],
    catalog: airlock_core::schema::Catalog,
    reporter: &mut dyn Reporter,
) -> Result<(), ExecError> {
    let lint_options =
        airlock_lint::LintOptions::with_severities(options.engine_traits().dialect, options.lint.severities.clone());
    let mut report = airlock_lint::lint_parsed(pending, scripts, catalog, &lint_options);
    if let Some(baseline) = &options.lint.baseline {
        baseline.apply(&mut report);
    }
    let (errors, others): (Vec<_>, Vec<_>) =
        report.findings.into_iter().partition(|f| f.severity == airlock_lint::Severity::Error);
    for f in others.iter().filter(|f| f.severity == airlock_lint::Severity::Warning) {
        reporter.warning(&format!("{}:{}: {} [{}]", f.file.display(), f.line, f.message, f.rule));
    }
    if errors.is_empty() { Ok(()) } else { Err(ExecError::LintRefused(errors)) }
}

/// Applies pending migrations up to `target` (all when None). With `dry_run`,
/// checks everything and reports what would run without changing anything.
pub async fn migrate(
    options: &Options,
    target: Option<Version>,
    dry_run: bool,
    reporter: &mut dyn Reporter,
) -> Result<RunReport, ExecError> {
    let ctx = Context::new(options);
    let start = crate::audit::RunStart::now();
    // Look first, without locking or creating anything: read the files and the
    // database at the same time; bad files win over a bad connection (exit 2).
    let (discovered, looked) = tokio::join!(options.discover_in_background(), async {
        let mut driver = match crate::connect(&options.url, false).await {
            Ok(driver) => driver,
            Err(e) if e.kind == ErrorKind::Connection && crate::sqlite_file_missing(options) => {
                return Ok((None, None));
            }
            Err(e) => return Err(ExecError::Connect(e)),
        };
        let snap = snapshot(driver.as_mut(), &ctx).await?;
        Ok((Some(driver), Some(snap)))
    });
    let discovered = discovered?;
    let (mut driver, snap) = looked?;
    for w in &discovered.warnings {
        reporter.warning(&format!("{}: {}", w.path.display(), w.message));
    }
    let settings = Settings { target: target.clone(), out_of_order: options.out_of_order, run_in_progress: false };
    let migrations = &discovered.migrations;
    let history = snap.as_ref().map(|s| s.history.as_slice()).unwrap_or_default();
    let stamped = snap.as_ref().and_then(|s| s.project.as_deref());
    let another_run = snap.as_ref().is_some_and(|s| s.lease.is_some());
    let look = Settings { run_in_progress: another_run, ..settings.clone() };
    let mut plan = reconcile(migrations, history, &look);
    plan.problems.extend(project_problem(stamped, options.project.as_deref(), &options.url));
    // A running record may belong to a run that is starting or just finishing:
    // only under the lease can it be told apart from one that was cut off.
    let racy = |p: &Problem| matches!(p.code, ProblemCode::Interrupted | ProblemCode::InProgress);
    let decide_under_lock = another_run || plan.problems.iter().any(racy);
    if plan.problems.iter().any(|p| p.blocking && !racy(p)) {
        return Err(ExecError::Blocked { problems: plan.problems.into_iter().filter(|p| p.blocking).collect() });
    }
    let warnings: Vec<String> = plan.problems.iter().filter(|p| !racy(p)).map(|p| p.message.clone()).collect();
    for w in &warnings {
        reporter.warning(w);
    }
    let left_pending: Vec<PendingEntry> = plan.beyond_target.iter().map(|m| PendingEntry::from(*m)).collect();
    let prepared = prepare_all(&plan.pending, options)?;
    check_planned(options, &plan.pending)?;
    let mut judge = None;
    if !plan.pending.is_empty() {
        // Parsed once (on every core, while the live schema is read) for both lint and the data checks.
        let dialect = options.engine_traits().dialect;
        let pending: Vec<Migration> = plan.pending.iter().map(|m| (*m).clone()).collect();
        let parsing = tokio::task::spawn_blocking({
            let pending = pending.clone();
            move || airlock_lint::parse_all(&pending, dialect)
        });
        let catalog = match driver.as_mut() {
            Some(driver) => driver.load_catalog().await.map_err(ExecError::db("reading the live schema to lint"))?,
            // A SQLite file not created yet: an empty database.
            None => airlock_core::schema::Catalog::live(Vec::new()),
        };
        // Another tool migrated this database: running its migrations again would fail or half-succeed.
        if let (true, Some(driver)) = (history.is_empty(), driver.as_mut()) {
            let tools = crate::adopt::not_adopted(driver.as_mut(), airlock_core::foreign::detect(&catalog)).await;
            if let Some(problem) = crate::adopt::foreign_problem(&tools) {
                return Err(ExecError::Blocked { problems: vec![problem] });
            }
        }
        let rates = match driver.as_mut() {
            Some(driver) => crate::rates::Rates::read(driver.as_mut()).await,
            None => crate::rates::Rates::defaults(options.url.engine()),
        };
        let scripts =
            parsing.await.map_err(|e| ExecError::Usage(format!("parsing the pending migrations failed: {e}")))?;
        lint_pending(options, &pending, &scripts, catalog.clone(), reporter)?;
        let mut before_lock = Judge {
            expected: pending.iter().map(|m| m.version.to_string()).collect(),
            scripts: pending.iter().map(|m| m.version.to_string()).zip(scripts).collect(),
            assessor: Assessor::new(options, catalog, rates, false),
        };
        // Every pending migration is judged before anything is created or
        // locked, as `plan` judges them, so that a refusal (or a dry run)
        // leaves the database as it was; each is judged again under the
        // lock, just before it runs, against the data as it is then.
        before_lock.look(&pending, options).await?;
        judge = Some(before_lock);
    }
    options.interrupt.check(|| "it stopped before changing anything".into())?;
    if (plan.pending.is_empty() && !decide_under_lock) || dry_run {
        let migrations = plan.pending.iter().zip(&prepared).map(|(m, p)| entry(m, p, Duration::ZERO)).collect();
        return Ok(RunReport {
            migrations,
            dry_run,
            current_version: plan.current_version().map(ToString::to_string),
            left_pending,
            warnings,
        });
    }

    // Something to do: create airlock's tables, take the lease, read again under it.
    let mut driver = match driver {
        Some(d) => d,
        None => crate::connect(&options.url, true).await.map_err(ExecError::Connect)?,
    };
    driver.ensure_tables().await.map_err(ExecError::db("creating airlock's tables"))?;
    let held = lease::acquire(driver.as_mut(), &ctx, reporter).await?;
    let outcome = match judge.as_mut() {
        Some(judge) => migrate_locked(driver.as_mut(), &ctx, &held, migrations, &settings, judge, reporter).await,
        // Nothing was pending before the lock: under it, a run that was cut off may leave some.
        None => {
            let mut judge = Judge::empty(options, driver.as_mut()).await?;
            migrate_locked(driver.as_mut(), &ctx, &held, migrations, &settings, &mut judge, reporter).await
        }
    };
    // One event per invocation that did (or refused) something under the lock.
    crate::audit::record_run(driver.as_mut(), &ctx, "migrate", &start, &outcome, |(ran, _)| ran).await;
    held.release(driver.as_mut()).await;
    let (ran, current_version) = outcome?;
    Ok(RunReport { migrations: ran, dry_run: false, current_version, left_pending, warnings })
}

fn prepare_all(pending: &[&Migration], options: &Options) -> Result<Vec<Prepared>, ExecError> {
    let traits = options.engine_traits();
    let mut prepared = Vec::with_capacity(pending.len());
    let mut errors = Vec::new();
    for m in pending {
        match prepare(m, traits) {
            Ok(p) => prepared.push(p),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(prepared) } else { Err(ExecError::Invalid(errors)) }
}

fn entry(m: &Migration, p: &Prepared, elapsed: Duration) -> RunEntry {
    RunEntry {
        version: m.version.to_string(),
        name: m.name.clone(),
        kind: m.kind.as_str(),
        mode: p.mode.as_str(),
        statements: p.statements.len(),
        duration_ms: elapsed.as_millis() as u64,
    }
}

async fn migrate_locked(
    driver: &mut dyn Driver,
    ctx: &Context,
    held: &HeldLease,
    migrations: &[Migration],
    settings: &Settings,
    judge: &mut Judge,
    reporter: &mut dyn Reporter,
) -> Result<(Vec<RunEntry>, Option<String>), ExecError> {
    let snap = snapshot(driver, ctx).await?;
    let mut plan = reconcile(migrations, &snap.history, settings);
    // Under the lock the pending set may differ (another run applied some): the plan must still match.
    check_planned(&ctx.options, &plan.pending)?;
    plan.problems.extend(project_problem(snap.project.as_deref(), ctx.options.project.as_deref(), &ctx.options.url));
    if plan.is_blocked() {
        return Err(ExecError::Blocked { problems: plan.problems.into_iter().filter(|p| p.blocking).collect() });
    }
    if snap.project.is_none() {
        if let Some(project) = &ctx.options.project {
            driver.stamp_project(project).await.map_err(ExecError::db("stamping the project"))?;
            let event =
                Event { kind: "stamped".into(), version: None, detail: json!({ "project": project }).to_string() };
            driver.append_event(&event, &ctx.actor).await.map_err(ExecError::db("recording the project stamp"))?;
        }
    }
    let prepared = prepare_all(&plan.pending, &ctx.options)?;
    let versions: Vec<String> = plan.pending.iter().map(|m| m.version.to_string()).collect();
    if versions != judge.expected {
        // The pending set changed since the look (another run applied some, or
        // a cut-off run left some): the schema model starts from now, and
        // what is pending now is linted like anything else that runs.
        judge.assessor.catalog = driver.load_catalog().await.map_err(ExecError::db("reading the live schema"))?;
        let pending: Vec<Migration> = plan.pending.iter().map(|m| (*m).clone()).collect();
        let scripts: Vec<airlock_lint::ParsedScript> = pending.iter().map(|m| judge.script(m, &ctx.options)).collect();
        lint_pending(&ctx.options, &pending, &scripts, judge.assessor.catalog.clone(), reporter)?;
        // And judged as a whole before any of it runs, as before the lock.
        judge.look(&pending, &ctx.options).await?;
    }
    let mut ran = Vec::new();
    // Out-of-order runs may apply versions below the newest: keep the maximum.
    let mut newest = plan.current_version();
    for (migration, prepared) in plan.pending.iter().zip(&prepared) {
        for note in &prepared.notes {
            reporter.warning(&format!("{} {}: {note}", migration.version, migration.name));
        }
        // The data as it is now, after the migrations before this one.
        let assessed = judge.assess(migration, &ctx.options).await.map_err(|e| with_applied(e, &ran))?;
        decide(&ctx.options, migration, &assessed, reporter).map_err(|e| with_applied(e, &ran))?;
        ctx.options.interrupt.check(|| stopped_before(migration)).map_err(|e| with_applied(e, &ran))?;
        reporter.migration_started(migration, prepared.mode);
        let paused = || Duration::from_millis(ctx.paused_ms.load(std::sync::atomic::Ordering::Relaxed));
        let paused_before = paused();
        let elapsed =
            apply(driver, ctx, held, migration, prepared, 0, reporter).await.map_err(|e| with_applied(e, &ran))?;
        reporter.migration_finished(migration, elapsed);
        // Waits before retries are not work (a transactional migration's
        // time already starts at its last attempt).
        let working = match prepared.mode {
            RunMode::Statements => elapsed.saturating_sub(paused() - paused_before),
            RunMode::Transaction => elapsed,
        };
        if let Some(event) = crate::rates::timing_of(&migration.version, &assessed, working) {
            // A hint for later estimates: losing it loses nothing else.
            let _ = driver.append_event(&event, &ctx.actor).await;
        }
        newest = newest.max(Some(&migration.version));
        ran.push(entry(migration, prepared, elapsed));
    }
    Ok((ran, newest.map(ToString::to_string)))
}

/// `migrate --plan`: refuses unless the pending migrations are exactly the planned ones.
fn check_planned(options: &Options, pending: &[&Migration]) -> Result<(), ExecError> {
    let Some(planned) = &options.planned else { return Ok(()) };
    let now: Vec<(String, String)> = pending.iter().map(|m| (m.version.to_string(), m.checksum.clone())).collect();
    if &now == planned {
        return Ok(());
    }
    let list = |v: &[(String, String)]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.iter()
                .map(|(version, sum)| format!("{version} ({}…)", &sum[..8.min(sum.len())]))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    Err(ExecError::PlanMismatch(format!(
        "the plan was made for pending migrations {}, but now they are {}: nothing was applied; run `airlock plan` again and review it",
        list(planned),
        list(&now)
    )))
}

/// Judges each migration just before it runs: the data checks against the
/// data as it is then, the verdict, and whether the environment lets it run.
struct Judge {
    assessor: Assessor,
    /// Parsed scripts by version, parsed once before the lock.
    scripts: std::collections::BTreeMap<String, airlock_lint::ParsedScript>,
    /// The pending versions seen before the lock, which `assessor.catalog` assumes.
    expected: Vec<String>,
}

impl Judge {
    /// For a run that found nothing pending before the lock.
    async fn empty(options: &Options, driver: &mut dyn Driver) -> Result<Judge, ExecError> {
        Ok(Judge {
            assessor: Assessor::reading(options, driver).await?,
            scripts: Default::default(),
            expected: Vec::new(),
        })
    }

    /// The migration's parsed script: parsed before the lock, or now.
    fn script(&self, migration: &Migration, options: &Options) -> airlock_lint::ParsedScript {
        match self.scripts.get(&migration.version.to_string()) {
            Some(script) => script.clone(),
            None => airlock_lint::parse_migration(migration, options.engine_traits().dialect),
        }
    }

    /// Judges the migration about to run, and advances the schema model past it.
    async fn assess(&mut self, migration: &Migration, options: &Options) -> Result<MigrationPlan, ExecError> {
        let script =
            self.scripts.remove(&migration.version.to_string()).unwrap_or_else(|| self.script(migration, options));
        self.assessor.migration(migration, &script, Default::default()).await
    }

    /// Judges every pending migration as `plan` does, none of them run yet,
    /// and refuses the run if any is blocked; leaves the schema model as it
    /// was (each is judged again when it runs), on the same checker connection.
    async fn look(&mut self, pending: &[Migration], options: &Options) -> Result<(), ExecError> {
        let before = self.assessor.catalog.clone();
        self.assessor.start_look();
        let mut outcome = Ok(());
        for migration in pending {
            let script = self.script(migration, options);
            outcome = match self.assessor.migration(migration, &script, Default::default()).await {
                Ok(assessed) => decide(options, migration, &assessed, &mut crate::report::Silent),
                Err(e) => Err(e),
            };
            if outcome.is_err() {
                break;
            }
        }
        self.assessor.end_look();
        self.assessor.catalog = before;
        outcome
    }
}

/// Refuses a blocked migration (exit 3), and a risky one in a protected
/// environment unless an allow accepts each risk; elsewhere, tells the risks.
pub(crate) fn decide(
    options: &Options,
    migration: &Migration,
    assessed: &MigrationPlan,
    reporter: &mut dyn Reporter,
) -> Result<(), ExecError> {
    let refusals = |pick: fn(&StatementPlan) -> Vec<Risk>| -> Vec<Refusal> {
        assessed
            .statements
            .iter()
            .filter_map(|s| {
                let risks = pick(s);
                (!risks.is_empty()).then_some(Refusal { index: s.index, line: s.line, risks })
            })
            .collect()
    };
    let refused = |statements: Vec<Refusal>| {
        Box::new(MigrationRefused {
            version: migration.version.to_string(),
            name: migration.name.clone(),
            file: migration.up.path.clone(),
            environment: options.environment.clone().unwrap_or_default(),
            statements,
            applied: Vec::new(),
        })
    };
    // The statements' verdicts (`verdict_of`, the plan's rule) decide: a
    // blocked statement is refused, for what will fail or else for the
    // risks a protected environment needs an allow for.
    if assessed.statements.iter().any(|s| s.verdict == Verdict::Blocked) {
        let blocked = refusals(|s| s.blocking().cloned().collect());
        if !blocked.is_empty() {
            return Err(ExecError::ChecksFailed(refused(blocked)));
        }
        return Err(ExecError::RiskRefused(refused(refusals(|s| s.refused_when_protected().cloned().collect()))));
    }
    let risky = refusals(|s| s.unaccepted().cloned().collect());
    for refusal in &risky {
        for r in &refusal.risks {
            reporter.warning(&format!(
                "{}:{}: risky [{}]: {}; {}",
                migration.up.path.display(),
                refusal.line,
                r.code,
                r.message,
                r.fix
            ));
        }
    }
    Ok(())
}

fn with_applied(e: ExecError, ran: &[RunEntry]) -> ExecError {
    let versions = || ran.iter().map(|r| r.version.clone()).collect();
    match e {
        ExecError::MigrationFailed(f, _) => ExecError::MigrationFailed(f, versions()),
        ExecError::ChecksFailed(mut r) => {
            r.applied = versions();
            ExecError::ChecksFailed(r)
        }
        ExecError::RiskRefused(mut r) => {
            r.applied = versions();
            ExecError::RiskRefused(r)
        }
        ExecError::Interrupted { signal, state, .. } => ExecError::Interrupted { signal, state, applied: versions() },
        other => other,
    }
}

/// The configured timeouts, overridden by a script's directives.
pub(crate) fn timeouts(ctx: &Context, directives: &airlock_core::Directives) -> Timeouts {
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
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = ctx.options.interrupt.wait() => {}
    }
    ctx.paused_ms.fetch_add(started.elapsed().as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
}

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

/// Applies one migration from statement `start` (0-based; >0 only when resuming a
/// failed statement-by-statement run). Returns how long it took.
pub(crate) async fn apply(
    driver: &mut dyn Driver,
    ctx: &Context,
    held: &HeldLease,
    migration: &Migration,
    prepared: &Prepared,
    start: usize,
    reporter: &mut dyn Reporter,
) -> Result<Duration, ExecError> {
    driver.set_timeouts(timeouts(ctx, &migration.directives)).await.map_err(ExecError::db("setting timeouts"))?;
    match prepared.mode {
        RunMode::Transaction => apply_in_transaction(driver, ctx, held, migration, prepared, reporter).await,
        RunMode::Statements => {
            held.working_on(driver, Some(&migration.version.to_string())).await?;
            apply_statements(driver, ctx, held, migration, prepared, start, reporter).await
        }
    }
}

async fn apply_in_transaction(
    driver: &mut dyn Driver,
    ctx: &Context,
    held: &HeldLease,
    migration: &Migration,
    prepared: &Prepared,
    reporter: &mut dyn Reporter,
) -> Result<Duration, ExecError> {
    let total = prepared.statements.len();
    let mut attempt = 0;
    loop {
        let started = Instant::now();
        let mut record = new_record(ctx, migration, RunMode::Transaction, total);
        if held.lost() {
            return Err(ExecError::LeaseLost);
        }
        let version = migration.version.to_string();
        held.note_version(Some(&version));
        let statements: Vec<&str> = prepared.statements.iter().map(|s| s.sql.as_str()).collect();
        // Before this attempt began (a signal during a back-off wait).
        ctx.options.interrupt.check(|| stopped_before(migration))?;
        // A signal now cancels these statements on the server; none after them.
        let cancel = driver.canceller();
        let ran = ctx
            .options
            .interrupt
            .cancellable(cancel, driver.begin_and_run(held.owner(), Some(&version), &statements))
            .await;
        if let Some(signal) = ctx.options.interrupt.raised() {
            // Cancelled mid-statement, or done but not committed: roll back either way.
            let _ = driver.rollback().await;
            let event = Event {
                kind: "interrupted".into(),
                version: Some(migration.version.clone()),
                detail: json!({ "signal": signal, "mode": "transaction" }).to_string(),
            };
            let _ = driver.append_event(&event, &ctx.actor).await;
            let state = format!(
                "migration {} ({}) was stopped and rolled back, so the database is as it was before it; `airlock migrate` runs it again",
                migration.version, migration.name
            );
            return Err(ExecError::Interrupted { signal, state, applied: Vec::new() });
        }
        let failure = match ran {
            Ok(Ran::All) => None,
            Ok(Ran::Failed { index, error }) => Some((index, error)),
            Ok(Ran::LeaseLost) => return Err(ExecError::LeaseLost),
            // SQLite takes its write lock at BEGIN: waiting for it is a lock timeout like any other.
            Err(e) if e.kind == ErrorKind::LockTimeout && !prepared.statements.is_empty() => Some((0, e)),
            Err(e) => return Err(ExecError::Database { context: "opening a transaction".into(), source: e }),
        };
        let Some((index, error)) = failure else {
            record.statements_done = total as u32;
            finish(&mut record, RunState::Succeeded, started);
            let event = applied_event(migration, &record);
            match driver.record_and_commit(held.owner(), &record, &event, &ctx.actor).await {
                Ok(true) => return Ok(started.elapsed()),
                Ok(false) => return Err(ExecError::LeaseLost),
                Err(e) => {
                    let _ = driver.rollback().await;
                    return Err(ExecError::Database {
                        context: format!("recording migration {}", migration.version),
                        source: e,
                    });
                }
            }
        };
        let _ = driver.rollback().await;
        if error.kind == ErrorKind::LockTimeout && attempt < ctx.options.lock_retries {
            attempt += 1;
            pause_before_retry(driver, ctx, migration, index, attempt, reporter).await;
            continue;
        }
        let aftermath = "it ran in a transaction that was rolled back, so the database is as it was before it; fix the statement and run `airlock migrate` again".to_owned();
        return Err(record_failure(driver, ctx, migration, prepared, record, index, error, aftermath, started).await);
    }
}

async fn apply_statements(
    driver: &mut dyn Driver,
    ctx: &Context,
    held: &HeldLease,
    migration: &Migration,
    prepared: &Prepared,
    start: usize,
    reporter: &mut dyn Reporter,
) -> Result<Duration, ExecError> {
    let started = Instant::now();
    let total = prepared.statements.len();
    let mut record = new_record(ctx, migration, RunMode::Statements, total);
    record.statements_done = start as u32;
    driver.write_history(&record).await.map_err(ExecError::db("recording the start of the migration"))?;
    for index in start..total {
        if held.lost() {
            return Err(ExecError::LeaseLost);
        }
        if ctx.options.interrupt.raised().is_some() {
            return Err(interrupted_statements(driver, ctx, migration, prepared, record, index, false, started).await);
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
                let event = Event {
                    kind: "invalid_index_dropped".into(),
                    version: Some(migration.version.clone()),
                    detail: json!({ "index": dropped }).to_string(),
                };
                driver.append_event(&event, &ctx.actor).await.map_err(ExecError::db("recording the dropped index"))?;
            }
        }
        let mut attempt = 0;
        loop {
            if ctx.options.interrupt.raised().is_some() {
                // A signal during a back-off wait: the statement has not run again.
                return Err(
                    interrupted_statements(driver, ctx, migration, prepared, record, index, false, started).await
                );
            }
            let cancel = driver.canceller();
            match ctx.options.interrupt.cancellable(cancel, driver.execute(&statement.sql)).await {
                Ok(()) => break,
                Err(_) if ctx.options.interrupt.raised().is_some() => {
                    return Err(
                        interrupted_statements(driver, ctx, migration, prepared, record, index, true, started).await
                    );
                }
                Err(e) if e.kind == ErrorKind::LockTimeout && attempt < ctx.options.lock_retries => {
                    attempt += 1;
                    pause_before_retry(driver, ctx, migration, index, attempt, reporter).await;
                }
                Err(e) => {
                    // A file with transactions of its own may have left one open
                    // and aborted: close it, or the failure could not be recorded.
                    let _ = driver.rollback().await;
                    let mut aftermath =
                        format!("it ran outside a transaction, so {}", airlock_core::statements_kept(index));
                    if let Some(name) = &prepared.concurrent_index[index] {
                        if driver.index_is_invalid(name).await.unwrap_or(false) {
                            aftermath.push_str(&format!(
                                "; the failed CREATE INDEX CONCURRENTLY left the INVALID index {name} behind (it slows writes and is never used): `--retry-from-failed` drops it and builds it again"
                            ));
                        }
                    }
                    aftermath.push_str(&format!(
                        "; fix the cause, then `airlock resolve {v} --retry-from-failed` (runs statement {n} onward), `--mark-applied` or `--mark-rolled-back`",
                        v = migration.version,
                        n = index + 1
                    ));
                    return Err(
                        record_failure(driver, ctx, migration, prepared, record, index, e, aftermath, started).await
                    );
                }
            }
        }
        record.statements_done = index as u32 + 1;
        if index + 1 < total {
            // A signal that came as the statement finished stops the loop at the next one.
            driver.write_history(&record).await.map_err(ExecError::db("recording progress"))?;
        }
    }
    finish(&mut record, RunState::Succeeded, started);
    let event = applied_event(migration, &record);
    driver.record(&record, &event, &ctx.actor).await.map_err(ExecError::db("recording the migration"))?;
    Ok(started.elapsed())
}

/// What a run that stopped before `migration` leaves.
fn stopped_before(migration: &Migration) -> String {
    format!(
        "it stopped before migration {} ({}), which did not run; `airlock migrate` runs it",
        migration.version, migration.name
    )
}

/// A statement-by-statement migration stopped by a signal before (or, when
/// `cancelled`, during) statement `index`: recorded as failed there, like
/// any other failure outside a transaction, so `resolve` can go on from it.
#[allow(clippy::too_many_arguments)]
async fn interrupted_statements(
    driver: &mut dyn Driver,
    ctx: &Context,
    migration: &Migration,
    prepared: &Prepared,
    record: HistoryRecord,
    index: usize,
    cancelled: bool,
    started: Instant,
) -> ExecError {
    let signal = ctx.options.interrupt.raised().unwrap_or(crate::interrupt::SIGINT);
    // A file with transactions of its own may have one open.
    let _ = driver.rollback().await;
    let how = if cancelled { "was cancelled on the server" } else { "had not started" };
    let error = DriverError::new(
        ErrorKind::Statement,
        format!("interrupted by {}: statement {} {how}", crate::interrupt::signal_name(signal), index + 1),
    );
    let kept = airlock_core::statements_kept(index);
    let state = format!(
        "migration {v} ({name}) runs outside a transaction and stopped at statement {n} of {total} ({how}): {kept}; it is recorded as failed at statement {n}: `airlock resolve {v} --retry-from-failed` runs statement {n} onward",
        v = migration.version,
        name = migration.name,
        n = index + 1,
        total = prepared.statements.len(),
    );
    let _ = record_failure(driver, ctx, migration, prepared, record, index, error, state.clone(), started).await;
    ExecError::Interrupted { signal, state, applied: Vec::new() }
}

fn applied_event(migration: &Migration, record: &HistoryRecord) -> Event {
    let allows: Vec<_> =
        migration.directives.allows.iter().map(|a| json!({ "rule": a.rule, "reason": a.reason })).collect();
    Event {
        kind: "applied".into(),
        version: Some(migration.version.clone()),
        detail: json!({
            "name": migration.name,
            "checksum": migration.checksum,
            "mode": record.mode.as_str(),
            "statements": record.statements_total,
            "duration_ms": record.duration_ms,
            "allows": allows,
        })
        .to_string(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn record_failure(
    driver: &mut dyn Driver,
    ctx: &Context,
    migration: &Migration,
    prepared: &Prepared,
    mut record: HistoryRecord,
    index: usize,
    error: DriverError,
    aftermath: String,
    started: Instant,
) -> ExecError {
    let statement = &prepared.statements[index];
    record.failed_statement = Some(index as u32 + 1);
    record.error = Some(error.message.clone());
    if record.mode == RunMode::Transaction {
        record.statements_done = 0;
    }
    finish(&mut record, RunState::Failed, started);
    let event = Event {
        kind: "failed".into(),
        version: Some(migration.version.clone()),
        detail: json!({
            "statement": index + 1,
            "line": statement.line + migration.up.line_offset,
            "error": error.message,
            "code": error.code,
            "mode": record.mode.as_str(),
        })
        .to_string(),
    };
    // Best effort: the connection may be what failed.
    let _ = driver.write_history(&record).await;
    let _ = driver.append_event(&event, &ctx.actor).await;
    ExecError::MigrationFailed(
        Box::new(FailedStatement {
            version: migration.version.to_string(),
            name: migration.name.clone(),
            path: migration.up.path.clone(),
            index: index + 1,
            line: statement.line + migration.up.line_offset,
            sql: statement.sql.clone(),
            error,
            aftermath,
        }),
        Vec::new(),
    )
}
