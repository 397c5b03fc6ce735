//! `migrate`: check, then apply pending migrations in order, recording each one.

use std::time::Duration;

use airlock_core::{Event, Migration, Problem, ProblemCode, RunMode, Settings, Version, reconcile};
use airlock_driver::{Driver, ErrorKind};
use serde_json::json;

use crate::apply::{self, Direction, Job};
use crate::error::{ExecError, MigrationRefused, Refusal};
use crate::lease::{self, HeldLease};
use crate::plan::{Assessor, MigrationPlan, Risk, StatementPlan, Verdict};
use crate::prepare::{Prepared, prepare};
use crate::report::{PendingEntry, Reporter, RunEntry, RunReport};
use crate::{Context, Options, project_problem, snapshot};

/// Lints the pending migrations against the live schema: error findings (not
/// allowed, not in the baseline) refuse the run before anything changes;
/// warnings are told. Each is parsed on a worker thread and linted as soon as
/// it and those before it are, and nothing parsed is kept: over a long
/// history every pending migration's syntax tree at once was most of the
/// run's memory.
fn lint_pending(
    options: &Options,
    pending: &[&Migration],
    catalog: airlock_core::schema::Catalog,
    reporter: &mut dyn Reporter,
) -> Result<(), ExecError> {
    let lint_options = airlock_lint::LintOptions {
        least: airlock_lint::Severity::Warning,
        ..airlock_lint::LintOptions::with_severities(options.engine_traits().dialect, options.lint.severities.clone())
    };
    let mut report = airlock_lint::lint(pending, catalog, &lint_options);
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
///
/// In five steps: **look** at the files and the database without locking;
/// **judge** every pending migration (lint against the live schema, then
/// the plan's verdict on each), refusing before anything changes; **lock**
/// (airlock's tables, the lease); **apply** under the lease, each migration
/// judged again just before it runs; **record** the run and let go.
pub async fn migrate(
    options: &Options,
    target: Option<Version>,
    dry_run: bool,
    reporter: &mut dyn Reporter,
) -> Result<RunReport, ExecError> {
    crate::backup::check_choice(options)?;
    match options.backup.unsupported(options.profile()) {
        Some(Err(refused)) => return Err(ExecError::BackupFailed(refused)),
        Some(Ok(warning)) => reporter.warning(&warning),
        None => {}
    }
    let ctx = Context::new(options);
    let start = crate::audit::RunStart::now();
    // The connection apart from what was seen: `Look` is shared across awaits, a connection is not.
    let (mut look, mut connection) = look(options, &ctx, target, reporter).await?;
    let judge = judge_pending(options, &mut look, &mut connection, reporter).await?;
    options.interrupt.check(|| "it stopped before changing anything".into())?;
    if (look.pending.is_empty() && !look.decide_under_lock) || dry_run {
        return Ok(look.report(options, dry_run));
    }
    let (mut driver, held) = lock(options, &ctx, connection.take(), reporter).await?;
    if let Some(drift) = look.drift.take() {
        crate::drift::append(driver.as_mut(), &ctx, drift).await;
    }
    let outcome = apply_pending(driver.as_mut(), &ctx, &held, &look, judge, reporter).await;
    // One event per invocation that did (or refused) something under the lock.
    crate::audit::record_run(driver.as_mut(), &ctx, "migrate", &start, &outcome, |(ran, _)| ran).await;
    held.release(driver.as_mut()).await;
    let (ran, current_version) = outcome?;
    Ok(RunReport {
        migrations: ran,
        dry_run: false,
        current_version,
        left_pending: look.left_pending,
        warnings: look.warnings,
    })
}

/// What `migrate` saw before deciding anything.
struct Look {
    /// The migration files.
    discovered: airlock_core::Discovered,
    /// The run's settings (target, out of order).
    settings: Settings,
    /// The database has no airlock history (another tool's may be there).
    history_empty: bool,
    /// What is pending, in order (indices into `discovered.migrations`), and how each will run.
    pending: Vec<usize>,
    /// The newest applied version.
    current_version: Option<String>,
    /// Pending migrations after the target.
    left_pending: Vec<PendingEntry>,
    /// Told to the person, and in the report.
    warnings: Vec<String>,
    /// Another run holds the lease, or left a record only the lease can explain.
    decide_under_lock: bool,
    /// The drift check's `drift` event, recorded once the run holds the lease
    /// (a refused or dry run writes nothing).
    drift: Option<serde_json::Value>,
}

impl Look {
    /// The pending migrations, in order.
    fn pending(&self) -> Vec<&Migration> {
        self.pending.iter().map(|&i| &self.discovered.migrations[i]).collect()
    }

    /// The report of a run that stops here: nothing pending, or a dry run.
    fn report(self, options: &Options, dry_run: bool) -> RunReport {
        let traits = options.engine_traits();
        let migrations = self
            .pending()
            .into_iter()
            .filter_map(|m| prepare(m, traits).ok().map(|p| entry(m, &p, Duration::ZERO)))
            .collect();
        RunReport {
            migrations,
            dry_run,
            current_version: self.current_version,
            left_pending: self.left_pending,
            warnings: self.warnings,
        }
    }
}

/// Step one: reads the files and the database at the same time, without
/// locking or creating anything, and reconciles them; refuses what blocks.
/// Bad files win over a bad connection (exit 2).
async fn look(
    options: &Options,
    ctx: &Context,
    target: Option<Version>,
    reporter: &mut dyn Reporter,
) -> Result<(Look, Option<Box<dyn Driver>>), ExecError> {
    let (discovered, looked) = tokio::join!(options.discover_in_background(), async {
        let mut driver = match crate::connect(&options.url, false).await {
            Ok(driver) => driver,
            Err(e) if e.kind == ErrorKind::Connection && crate::database_file_missing(options) => {
                return Ok((None, None));
            }
            Err(e) => return Err(ExecError::Connect(e)),
        };
        // A Galera node outside the primary component refuses to read
        // tables: its state, read first, says why better than that error.
        let cluster = driver.cluster().await.ok().flatten();
        let snap = snapshot(driver.as_mut(), ctx).await.map_err(|e| {
            match cluster.as_ref().and_then(airlock_driver::Cluster::unfit) {
                Some(why) => cluster_refusal(why),
                None => e,
            }
        })?;
        Ok((Some(driver), Some(snap)))
    });
    let discovered = discovered?;
    let (driver, snap) = looked?;
    for w in &discovered.warnings {
        reporter.warning(&format!("{}: {}", w.path.display(), w.message));
    }
    let mut settings = Settings { target, out_of_order: options.out_of_order, run_in_progress: false };
    let history = snap.as_ref().map(|s| s.history.as_slice()).unwrap_or_default();
    let stamped = snap.as_ref().and_then(|s| s.project.as_deref());
    let another_run = snap.as_ref().is_some_and(|s| s.lease.is_some());
    let seen = Settings { run_in_progress: another_run, ..settings.clone() };
    let mut plan = reconcile(&discovered.migrations, history, &seen);
    // Migrations this run leaves, and every migration after them: a
    // backfill under --skip-backfills, a contract without --contract.
    let held_back = |m: &Migration| {
        if options.skip_backfills && m.directives.backfill {
            Some(format!(
                "migration {} ({}) is a backfill: --skip-backfills leaves it, and the migrations after it, for `airlock backfill run`",
                m.version, m.name
            ))
        } else if !options.contract && m.directives.contract {
            Some(format!(
                "migration {} ({}) is a contract: {}; it and the migrations after it wait for `airlock migrate --contract`, once no old app version runs",
                m.version,
                m.name,
                airlock_core::migration::CONTRACT_PENDING
            ))
        } else {
            None
        }
    };
    if let Some((first, why)) = plan.pending.iter().find_map(|m| held_back(m).map(|why| (*m, why))) {
        // The target stops before it: it, and every migration after it, waits.
        let before = discovered.migrations.iter().map(|m| &m.version).filter(|v| **v < first.version).max();
        let before = before.cloned().unwrap_or_else(|| Version::parse("0").expect("0 is a version"));
        reporter.warning(&why);
        settings.target = Some(settings.target.map_or(before.clone(), |t| t.min(before)));
        plan =
            reconcile(&discovered.migrations, history, &Settings { run_in_progress: another_run, ..settings.clone() });
    }
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
    check_prepared(&plan.pending, options)?;
    check_planned(options, &plan.pending)?;
    // Indices, not copies: a long history's pending migrations are held once.
    let pending: Vec<usize> = plan
        .pending
        .iter()
        .filter_map(|m| discovered.migrations.binary_search_by(|d| d.version.cmp(&m.version)).ok())
        .collect();
    let current_version = plan.current_version().map(ToString::to_string);
    let history_empty = history.is_empty();
    let look = Look {
        discovered,
        settings,
        history_empty,
        pending,
        current_version,
        left_pending,
        warnings,
        decide_under_lock,
        drift: None,
    };
    // The open connection goes with it; None for a database file not created yet.
    Ok((look, driver))
}

/// The refusal of a cluster node that should take no migration now.
fn cluster_refusal(why: String) -> ExecError {
    ExecError::Blocked {
        problems: vec![airlock_core::Problem {
            code: airlock_core::ProblemCode::ClusterNode,
            version: None,
            message: format!("{why}; run the migration through a node that is (nothing was changed)"),
            detail: None,
            blocking: true,
        }],
    }
}

/// Step two: lints the pending migrations against the live schema and
/// judges every one as `plan` does, before anything is created or locked,
/// so that a refusal (or a dry run) leaves the database as it was. Returns
/// the judge that judges each again under the lock, just before it runs
/// (None when nothing is pending).
async fn judge_pending(
    options: &Options,
    look: &mut Look,
    connection: &mut Option<Box<dyn Driver>>,
    reporter: &mut dyn Reporter,
) -> Result<Option<Judge>, ExecError> {
    if look.pending.is_empty() {
        return Ok(None);
    }
    // A cluster node that is not in step (a Galera donor, a joiner) takes no migration.
    if let Some(driver) = connection.as_mut()
        && let Ok(Some(cluster)) = driver.cluster().await
        && let Some(why) = cluster.unfit()
    {
        return Err(cluster_refusal(why));
    }
    let catalog = match connection.as_mut() {
        Some(driver) => driver.load_catalog().await.map_err(ExecError::db("reading the live schema to lint"))?,
        // A database file not created yet: an empty database.
        None => airlock_core::schema::Catalog::live(Vec::new()),
    };
    // Another tool migrated this database: running its migrations again would fail or half-succeed.
    if let (true, Some(driver)) = (look.history_empty, connection.as_mut()) {
        let tools = crate::adopt::not_adopted(driver.as_mut(), airlock_core::foreign::detect(&catalog)).await;
        if let Some(problem) = crate::adopt::foreign_problem(&tools) {
            return Err(ExecError::Blocked { problems: vec![problem] });
        }
    }
    let rates = match connection.as_mut() {
        Some(driver) => crate::rates::Rates::read(driver.as_mut()).await,
        None => crate::rates::Rates::defaults(options.profile().default_rates),
    };
    let pending = look.pending();
    lint_pending(options, &pending, catalog.clone(), reporter)?;
    let database_bytes = crate::backup::database_bytes(&catalog);
    let mut judge = Judge {
        expected: pending.iter().map(|m| m.version.to_string()).collect(),
        assessor: Assessor::new(options, catalog, rates, false)?,
        database_bytes,
    };
    let touched = judge.look(&pending, options).await?;
    if let Some(over) = judge.backup(options).and_then(|b| b.over_budget) {
        return Err(ExecError::BackupFailed(format!(
            "the backup before migrating is {over}: run with --backup to take it anyway, or --no-backup to run without one{}",
            if options.protected { " (with --reason, in a protected environment)" } else { "" }
        )));
    }
    if let (false, Some(driver)) = (look.history_empty, connection.as_mut()) {
        look.drift = crate::drift::check_before_migrate(options, driver.as_mut(), &touched, reporter).await?;
    }
    Ok(Some(judge))
}

/// Step three: creates airlock's tables if missing (and the database file)
/// and takes the lease.
async fn lock(
    options: &Options,
    ctx: &Context,
    driver: Option<Box<dyn Driver>>,
    reporter: &mut dyn Reporter,
) -> Result<(Box<dyn Driver>, HeldLease), ExecError> {
    let mut driver = match driver {
        Some(d) => d,
        None => crate::connect(&options.url, true).await.map_err(ExecError::Connect)?,
    };
    retry_conflicts!(driver.ensure_tables().await).map_err(ExecError::db("creating airlock's tables"))?;
    let held = lease::acquire(driver.as_mut(), ctx, reporter).await?;
    Ok((driver, held))
}

/// Refuses the run (exit 2) naming every pending file that cannot be split
/// into statements or mixes what cannot share a transaction. What it
/// prepares is not kept: each is prepared again just before it runs.
pub(crate) fn check_prepared(pending: &[&Migration], options: &Options) -> Result<(), ExecError> {
    let traits = options.engine_traits();
    let errors: Vec<_> = pending.iter().filter_map(|m| prepare(m, traits).err()).collect();
    if errors.is_empty() { Ok(()) } else { Err(ExecError::Invalid(errors)) }
}

pub(crate) fn entry(m: &Migration, p: &Prepared, elapsed: Duration) -> RunEntry {
    RunEntry {
        version: m.version.to_string(),
        name: m.name.clone(),
        kind: m.kind.as_str(),
        mode: p.mode.as_str(),
        statements: p.statements.len(),
        duration_ms: elapsed.as_millis() as u64,
    }
}

/// Step four, under the lease: reads history again (another run may have
/// applied some), and applies what is pending now, each migration judged
/// just before it runs against the data as it is then.
async fn apply_pending(
    driver: &mut dyn Driver,
    ctx: &Context,
    held: &HeldLease,
    look: &Look,
    judge: Option<Judge>,
    reporter: &mut dyn Reporter,
) -> Result<(Vec<RunEntry>, Option<String>), ExecError> {
    let snap = snapshot(driver, ctx).await?;
    let mut plan = reconcile(&look.discovered.migrations, &snap.history, &look.settings);
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
    let versions: Vec<String> = plan.pending.iter().map(|m| m.version.to_string()).collect();
    let (mut judge, fresh) = match judge {
        Some(judge) => (judge, false),
        // Nothing was pending before the lock and nothing is now.
        None if plan.pending.is_empty() => return Ok((Vec::new(), plan.current_version().map(ToString::to_string))),
        // Nothing was pending before the lock, but a run that was cut off left some.
        None => (Judge::empty(&ctx.options, driver).await?, true),
    };
    let same = versions == judge.expected;
    if !same {
        // Every file of the new set readable before any of it runs.
        check_prepared(&plan.pending, &ctx.options)?;
        // The pending set changed since the look (another run applied some, or
        // a cut-off run left some): the schema model starts from now (read
        // just now for a fresh judge), and what is pending now is linted like
        // anything else that runs.
        if !fresh {
            judge.assessor.catalog = driver.load_catalog().await.map_err(ExecError::db("reading the live schema"))?;
        }
        let pending = &plan.pending;
        lint_pending(&ctx.options, pending, judge.assessor.catalog.clone(), reporter)?;
        // And judged as a whole before any of it runs, as before the lock.
        judge.look(pending, &ctx.options).await?;
    }
    if let Some(crate::backup::BackupChoice::Skip { reason: Some(reason) }) = &ctx.options.backup.choice {
        let event = Event {
            kind: "backup_skipped".into(),
            version: None,
            detail: json!({ "reason": reason, "mode": ctx.options.backup.mode.as_str() }).to_string(),
        };
        driver.append_event(&event, &ctx.actor).await.map_err(ExecError::db("recording --no-backup in history"))?;
    }
    // What the backup holds was judged on what is pending now (looked at again above when that changed).
    if let Some(backup) = judge.backup(&ctx.options) {
        ctx.options.interrupt.check(|| "it stopped before changing anything".into())?;
        let read = crate::report::Tally::default();
        reporter.backup_started(&backup, &read);
        let manifest = crate::backup::take(ctx, driver, &backup, &read).await?;
        reporter.backed_up(&manifest);
        let pruned = crate::backup::prune(ctx, driver, &manifest).await;
        if !pruned.is_empty() {
            reporter.backups_pruned(&pruned);
        }
    }
    let mut ran = Vec::new();
    // Out-of-order runs may apply versions below the newest: keep the maximum.
    let mut newest = plan.current_version();
    let traits = ctx.options.engine_traits();
    let of = plan.pending.len();
    for (index, migration) in plan.pending.iter().enumerate() {
        // Prepared again (cheap: split and classify): checked whole before, not kept.
        let prepared = &prepare(migration, traits).map_err(|e| with_applied(ExecError::Invalid(vec![e]), &ran))?;
        for note in &prepared.notes {
            reporter.warning(&format!("{} {}: {note}", migration.version, migration.name));
        }
        // The data as it is now, after the migrations before this one.
        let assessed = judge.assess(migration, &ctx.options).await.map_err(|e| with_applied(e, &ran))?;
        decide(&ctx.options, migration, &assessed, reporter).map_err(|e| with_applied(e, &ran))?;
        let job = Job { migration, prepared, direction: Direction::Up };
        ctx.options.interrupt.check(|| job.stopped_before()).map_err(|e| with_applied(e, &ran))?;
        let estimate = crate::report::Started::estimate_of(&assessed);
        let started = crate::report::Started { mode: prepared.mode, position: index + 1, of, estimate };
        reporter.migration_started(migration, &started);
        let paused = || Duration::from_millis(ctx.paused_ms.load(std::sync::atomic::Ordering::Relaxed));
        let paused_before = paused();
        let elapsed = if migration.directives.backfill {
            crate::backfill::run(driver, ctx, held, migration, prepared, reporter).await
        } else {
            apply::run(driver, ctx, held, &job, 0, reporter).await
        }
        .map_err(|e| with_applied(e, &ran))?;
        reporter.migration_finished(migration, elapsed);
        // Heavy DDL (a lock replicas replay, a rewrite): let them catch up first.
        if crate::replicas::heavy(&assessed) {
            crate::replicas::catch_up(&ctx.options, &migration.version.to_string(), reporter).await;
        }
        // Waits before retries are not work (a transactional migration's
        // time already starts at its last attempt).
        let working = match prepared.mode {
            RunMode::Statements | RunMode::Batches => elapsed.saturating_sub(paused() - paused_before),
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
    /// The pending versions seen before the lock, which `assessor.catalog` assumes.
    expected: Vec<String>,
    /// The database's size before the run, for a backup's estimate.
    database_bytes: Option<u64>,
}

impl Judge {
    /// For a run that found nothing pending before the lock.
    async fn empty(options: &Options, driver: &mut dyn Driver) -> Result<Judge, ExecError> {
        let assessor = Assessor::reading(options, driver).await?;
        let database_bytes = crate::backup::database_bytes(&assessor.catalog);
        Ok(Judge { assessor, expected: Vec::new(), database_bytes })
    }

    /// The backup to take before the migrations [`Judge::look`] judged
    /// last; None when off or when the engine cannot take one (`migrate`
    /// said so before it started).
    fn backup(&self, options: &Options) -> Option<crate::backup::BackupPlan> {
        crate::backup::BackupPlan::of(
            &options.backup,
            &self.assessor.stake,
            self.database_bytes,
            options.profile(),
            self.assessor.backup_pace(),
        )
        .filter(|backup| backup.unsupported.is_none())
    }

    /// Judges the migration about to run, and advances the schema model past it.
    /// Parsed again here: keeping every pending script parsed from the look
    /// until it runs cost more memory than parsing twice costs time.
    async fn assess(&mut self, migration: &Migration, options: &Options) -> Result<MigrationPlan, ExecError> {
        let script = airlock_lint::parse_migration(migration, options.engine_traits().dialect);
        self.assessor.migration(migration, &script, Default::default()).await
    }

    /// Judges every pending migration as `plan` does, none of them run yet,
    /// and refuses the run if any is blocked; leaves the schema model as it
    /// was (each is judged again when it runs), on the same checker connection.
    async fn look(&mut self, pending: &[&Migration], options: &Options) -> Result<Touched, ExecError> {
        let before = self.assessor.catalog.clone();
        self.assessor.start_look();
        let mut touched = Touched::new();
        let mut outcome = Ok(());
        for migration in pending {
            let script = airlock_lint::parse_migration(migration, options.engine_traits().dialect);
            outcome = match self.assessor.migration(migration, &script, Default::default()).await {
                Ok(assessed) => decide(options, migration, &assessed, &mut crate::report::Silent)
                    .map(|()| note_touched(&mut touched, migration, &assessed)),
                Err(e) => Err(e),
            };
            if outcome.is_err() {
                break;
            }
        }
        self.assessor.end_look();
        self.assessor.catalog = before;
        outcome.map(|()| touched)
    }
}

/// The tables the pending migrations change (locked, rewritten, altered,
/// dropped: plan's effects), by bare name, each with the first migration that does.
pub(crate) type Touched = std::collections::BTreeMap<String, String>;

fn note_touched(touched: &mut Touched, migration: &Migration, assessed: &MigrationPlan) {
    let bare = |name: &str| name.rsplit('.').next().unwrap_or(name).trim_matches(['"', '`']).to_owned();
    for statement in &assessed.statements {
        let locked = statement.locks.iter().map(|l| l.table.as_str());
        for table in statement.table.as_deref().into_iter().chain(locked) {
            touched.entry(bare(table)).or_insert_with(|| format!("{} ({})", migration.version, migration.name));
        }
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

/// The error, saying which migrations ran (or were rolled back) before it.
pub(crate) fn with_applied(e: ExecError, ran: &[RunEntry]) -> ExecError {
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
