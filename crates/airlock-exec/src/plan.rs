//! `plan`: a read-only preflight. For every pending statement: the locks it
//! takes, whether it rewrites or scans its table, the table's rows and size,
//! an estimate, the data checks run against the live data (each in its own
//! read-only transaction, bounded by a time budget; a check that times out is
//! `unknown`), the lint findings, and a verdict.

use std::collections::BTreeMap;
use std::time::Duration;

use airlock_core::Migration;
use airlock_core::schema::{Catalog, Origin, TableName};
use airlock_driver::{Driver, Profile};
use airlock_lint::{Finding, LintOptions, ParsedScript, Severity};
use airlock_plan::checks::{self, CheckResult};
pub(crate) use airlock_plan::verdict_of;
use airlock_plan::{CheckSpec, Lock, Stake, at_stake, effects};
pub use airlock_plan::{Risk, RiskCode, Verdict};
use airlock_sql::parse::{AlterAction, Op};
use serde::Serialize;

use crate::Options;
use crate::error::ExecError;
use crate::rates::{Rate, Rates, Work};
use crate::rehearsed::{RehearsalTimings, ScaledRehearsal};

/// A finding as the plan shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PlanFinding {
    /// Rule id.
    pub rule: &'static str,
    /// Severity.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub help: String,
    /// The corrected statement, when known.
    pub fix: Option<String>,
}

/// One statement's plan: the JSON contract's keys and a few more.
#[derive(Clone, Debug, Serialize)]
pub struct StatementPlan {
    /// 1-based index in its file.
    pub index: usize,
    /// Its text.
    pub sql: String,
    /// 1-based line in the file.
    pub line: usize,
    /// Locks taken.
    pub locks: Vec<Lock>,
    /// Every row rewritten.
    pub rewrites_table: bool,
    /// Every row read.
    pub scans_table: bool,
    /// The heavy part of its work, which the estimate is made from.
    pub work: Option<Work>,
    /// The table it works on (the one its rows and estimate are of).
    #[serde(skip)]
    pub table: Option<String>,
    /// The table's estimated rows (catalog statistics).
    pub estimated_rows: Option<f64>,
    /// The table's total bytes.
    pub estimated_bytes: Option<i64>,
    /// How long it should take, from the throughput model.
    pub estimated_seconds: Option<f64>,
    /// Where the rate behind the estimate comes from.
    pub estimate_source: Option<String>,
    /// The estimate is this statement's time in a rehearsal with the
    /// target's rows, scaled by the live rows (`rehearse --data`).
    pub rehearsal: Option<ScaledRehearsal>,
    /// Data checks.
    pub checks: Vec<CheckResult>,
    /// Lint findings.
    pub findings: Vec<PlanFinding>,
    /// The verdict.
    pub verdict: Verdict,
    /// Why the verdict is not `safe`.
    pub reasons: Vec<Risk>,
    /// It changes rows (INSERT, UPDATE, DELETE): its time is not a DDL rate.
    #[serde(skip)]
    pub changes_rows: bool,
    /// A backfill's statement: how it runs in batches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill: Option<BackfillPlan>,
}

/// How a backfill's statement runs: the rows its batches pass over, how
/// many batches, and how long at the configured pace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackfillPlan {
    /// The table batches are cut on.
    pub table: String,
    /// Its rows (catalog statistics): every one is passed over, the statement's WHERE picks those changed.
    pub rows: Option<f64>,
    /// The rows its `WHERE` matches now (counted by `plan` within the
    /// check budget; None when not counted or out of budget).
    pub matched: Option<u64>,
    /// Rows per batch at the target duration, at the rate below.
    pub batch_rows: u64,
    /// Batches.
    pub batches: Option<u64>,
    /// Seconds: at the rate of a rewrite of the table (a batch writes the
    /// rows it changes), or at `max_rows_per_second`, whichever is slower.
    pub seconds: Option<f64>,
    /// The duration each batch aims at, in milliseconds.
    pub batch_target_ms: u64,
    /// The cap on the pace, if any.
    pub max_rows_per_second: Option<u64>,
    /// The table is in the live database (not made by a pending migration).
    #[serde(skip)]
    live: bool,
}

impl StatementPlan {
    /// A statement with nothing found yet.
    fn new(index: usize, sql: String, line: usize) -> StatementPlan {
        StatementPlan {
            index,
            sql,
            line,
            locks: Vec::new(),
            rewrites_table: false,
            scans_table: false,
            work: None,
            table: None,
            estimated_rows: None,
            estimated_bytes: None,
            estimated_seconds: None,
            estimate_source: None,
            rehearsal: None,
            checks: Vec::new(),
            findings: Vec::new(),
            verdict: Verdict::Safe,
            reasons: Vec::new(),
            changes_rows: false,
            backfill: None,
        }
    }

    /// Marks the risks an `-- airlock:allow` accepts, then sets the verdict.
    /// Among what blocks, only losing attributes on purpose can be accepted:
    /// the rest fails anyway.
    fn settle(&mut self, migration: &Migration, script: &ParsedScript, protected: bool) {
        for r in &mut self.reasons {
            let acceptable = r.acceptable();
            if let Some(a) = airlock_lint::allow_for(migration, &script.statements, self.index, r.code.as_str())
                .filter(|_| acceptable)
            {
                r.allowed = Some(a.reason.clone());
            }
        }
        self.verdict = verdict_of(&self.reasons, protected);
    }

    /// Adds its lint findings. An error lint did not let an allow or the
    /// baseline accept refuses the run in `migrate`: it blocks here too.
    fn take_findings(&mut self, findings: Vec<Finding>, profile: &Profile) {
        for f in findings {
            if f.severity == Severity::Error {
                self.reasons.push(Risk {
                    fix: f.help.clone(),
                    ..risk(RiskCode::Lint(f.rule), f.message.clone(), true, profile)
                });
            }
            self.findings.push(PlanFinding {
                rule: f.rule,
                severity: f.severity,
                message: f.message,
                help: f.help,
                fix: f.fix,
            });
        }
    }

    /// Risks no allow accepts that make it blocked.
    pub fn blocking(&self) -> impl Iterator<Item = &Risk> {
        self.reasons.iter().filter(|r| r.blocks && r.allowed.is_none())
    }

    /// Risks no allow accepts.
    pub fn unaccepted(&self) -> impl Iterator<Item = &Risk> {
        self.reasons.iter().filter(|r| r.allowed.is_none())
    }

    /// Risks no allow accepts that a protected environment refuses.
    pub fn refused_when_protected(&self) -> impl Iterator<Item = &Risk> {
        self.unaccepted().filter(|r| r.rechecked_after.is_none())
    }
}

/// One migration's plan.
#[derive(Clone, Debug, Serialize)]
pub struct MigrationPlan {
    /// Version.
    pub version: String,
    /// Name.
    pub name: String,
    /// Its checksum (what `migrate --plan` will compare).
    pub checksum: String,
    /// Statements in order.
    pub statements: Vec<StatementPlan>,
    /// The worst statement verdict.
    pub verdict: Verdict,
}

/// The whole plan.
#[derive(Clone, Debug, Serialize)]
pub struct PlanReport {
    /// The database (password hidden).
    pub database: String,
    /// Pending migrations in order.
    pub migrations: Vec<MigrationPlan>,
    /// The worst verdict.
    pub verdict: Verdict,
    /// The throughput behind the estimates, per kind of work.
    pub rates: BTreeMap<Work, Rate>,
    /// What `migrate` would save before changing anything; None when it takes no backup.
    pub backup: Option<crate::backup::BackupPlan>,
    /// On a node of a synchronous cluster (Galera): how schema changes run
    /// there, and why `migrate` would refuse this node, if it would.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The replicas of `replicas` in airlock.toml: how far behind each is,
    /// and what the pending statements' locks would do there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<crate::replicas::ReplicaPlan>,
}

/// Runs one check in a read-only transaction of its own, bounded by `budget`.
pub(crate) async fn run_check(
    driver: &mut dyn Driver,
    spec: &CheckSpec,
    catalog: &Catalog,
    budget: Duration,
) -> CheckResult {
    let dialect = driver.profile().dialect;
    if let Some(answer) = checks::without_query(spec) {
        return answer;
    }
    let Some(sql) = checks::query(spec, catalog, dialect) else {
        return checks::unknown(spec, "not checked: airlock cannot write this check for this statement yet");
    };
    let run = async {
        // A check queues behind no DDL for long, and stops at its budget.
        driver.begin_check(budget).await?;
        let mut rows = driver.query_text(&sql).await;
        if let (Err(_), Some(second)) = (&rows, checks::fallback_query(spec, dialect)) {
            // The transaction is still usable on MySQL, the only dialect with a fallback.
            rows = driver.query_text(&second).await;
        }
        let _ = driver.rollback().await;
        rows
    };
    let started = std::time::Instant::now();
    match tokio::time::timeout(budget + Duration::from_secs(2), run).await {
        Ok(Ok(rows)) => {
            CheckResult { duration_ms: Some(started.elapsed().as_millis() as u64), ..checks::read(spec, &rows) }
        }
        Ok(Err(e)) => checks::unknown(spec, &format!("unknown: the check did not finish ({})", e.message)),
        Err(_) => checks::unknown(spec, &format!("unknown: the check ran out of its {} s budget", budget.as_secs())),
    }
}

/// A read-only connection for data checks (each bounded by its budget when it begins).
pub(crate) async fn connect_checker(options: &Options) -> Result<Box<dyn Driver>, ExecError> {
    crate::connect_read_only(&options.url).await.map_err(ExecError::Connect)
}

/// What to do about a statement airlock could not read.
const UNREAD_FIX: &str = "review it by hand (its locks, the rows it needs); write it so the parser can read it, or, if it is right as it is, say why with `-- airlock:allow unchecked <reason>` on the line before it";

/// Rows above which blocking writes for the statement is risky.
pub const LARGE_TABLE_ROWS: f64 = 100_000.0;

/// Judges pending migrations one at a time against the live database: the
/// schema model advanced through each, the data checks run read-only on a
/// connection of their own (opened at the first check), the verdict. `plan`
/// judges them all at once; `migrate` judges each just before it runs it.
pub(crate) struct Assessor {
    options: Options,
    /// The schema as it will be before the next migration.
    pub catalog: Catalog,
    rates: Rates,
    /// Heavy statements' times in rehearsals with the target's rows.
    rehearsed: RehearsalTimings,
    /// Whether to look for sessions the statements would queue behind
    /// (`plan`; `migrate` relies on its lock timeout instead).
    lock_blockers: bool,
    checker: Option<Box<dyn Driver>>,
    /// What the pending migrations judged so far change rows of, when they
    /// have not run yet (`plan`); None when each runs before the next is
    /// judged (`migrate`).
    earlier_writes: Option<Vec<Writes>>,
    /// What the migrations judged in the last look put at stake, for the
    /// backup (gathered only when the run takes one).
    pub stake: crate::backup::AtStake,
    /// Whether a look is gathering `stake`.
    gathering_stake: bool,
}

/// The rows a pending migration may change, for the checks of later ones.
#[derive(Clone, Debug)]
struct Writes {
    version: String,
    name: String,
    /// The tables its statements insert into, update, delete from or
    /// truncate; None when it cannot be told (an unparsable statement in a
    /// data migration, a DO block airlock cannot read, MERGE).
    tables: Option<Vec<TableName>>,
}

impl Writes {
    /// What `migration`'s statements change rows of, if anything.
    fn of(migration: &Migration, script: &ParsedScript) -> Option<Writes> {
        let mut tables = Some(Vec::new());
        let mut any = false;
        for parsed in &script.statements {
            match &parsed.ops {
                Err(_) if migration.kind == airlock_core::Kind::Data => tables = None,
                Err(_) => {}
                Ok(ops) => {
                    for op in ops {
                        let written: Vec<&TableName> = match op {
                            Op::Insert { table } | Op::Update { table, .. } | Op::Delete { table, .. } => vec![table],
                            Op::Truncate { tables, .. } => tables.iter().collect(),
                            Op::Other { kind } if kind == "MERGE" || kind == airlock_sql::parse::DO_UNSEEN => {
                                tables = None;
                                any = true;
                                continue;
                            }
                            _ => continue,
                        };
                        any = true;
                        if let Some(tables) = tables.as_mut() {
                            tables.extend(written.into_iter().cloned());
                        }
                    }
                }
            }
        }
        if script.split_error.is_some() && migration.kind == airlock_core::Kind::Data {
            tables = None;
        }
        (any || tables.is_none()).then(|| Writes {
            version: migration.version.to_string(),
            name: migration.name.clone(),
            tables,
        })
    }

    /// Which of `tables` it may change rows of (all of them when it cannot
    /// be told), tables told apart as `catalog` resolves names.
    fn touches<'a>(&self, tables: &[&'a TableName], catalog: &Catalog) -> Vec<&'a TableName> {
        match &self.tables {
            None => tables.to_vec(),
            Some(written) => {
                tables.iter().copied().filter(|t| written.iter().any(|w| catalog.same_table(w, t))).collect()
            }
        }
    }
}

impl Assessor {
    /// Reads the rehearsal timings file, if any: one that cannot be read is an error naming it.
    pub(crate) fn new(
        options: &Options,
        catalog: Catalog,
        rates: Rates,
        lock_blockers: bool,
    ) -> Result<Assessor, ExecError> {
        let rehearsed = match &options.rehearsal_timings {
            Some(path) => RehearsalTimings::read(path)?,
            None => RehearsalTimings::default(),
        };
        Ok(Assessor {
            options: options.clone(),
            catalog,
            rates,
            rehearsed,
            lock_blockers,
            checker: None,
            earlier_writes: None,
            stake: crate::backup::AtStake::default(),
            gathering_stake: false,
        })
    }

    /// From now on, judges migrations none of which has run yet (`plan`,
    /// `migrate`'s look before the lock): a check that fails over rows an
    /// earlier pending migration changes is not blocked.
    pub(crate) fn start_look(&mut self) {
        self.earlier_writes = Some(Vec::new());
        self.stake = crate::backup::AtStake::default();
        self.gathering_stake = self.options.backup.effective_mode() != crate::backup::BackupMode::Off;
    }

    /// From now on, judges each migration just before it runs (the ones
    /// before it have).
    pub(crate) fn end_look(&mut self) {
        self.earlier_writes = None;
        self.gathering_stake = false;
    }

    /// The newest pending migration judged before this one that may change
    /// rows `spec` reads, and which of its tables.
    fn changed_before<'a>(&'a self, spec: &'a CheckSpec) -> Option<(&'a Writes, Vec<&'a TableName>)> {
        let tables = spec.tables();
        self.earlier_writes
            .as_ref()?
            .iter()
            .rev()
            .map(|w| (w, w.touches(&tables, &self.catalog)))
            .find(|(_, t)| !t.is_empty())
    }

    /// One for `migrate`'s kind of judging (no lock-blocker checks), with the
    /// schema and rates read from `driver` now.
    pub(crate) async fn reading(options: &Options, driver: &mut dyn Driver) -> Result<Assessor, ExecError> {
        let catalog = driver.load_catalog().await.map_err(ExecError::db("reading the live schema"))?;
        let rates = Rates::read(driver).await;
        Assessor::new(options, catalog, rates, false)
    }

    async fn check(&mut self, spec: &CheckSpec) -> Result<CheckResult, ExecError> {
        if let Some(answer) = checks::without_query(spec) {
            return Ok(answer);
        }
        let conn = match self.checker.as_mut() {
            Some(conn) => conn,
            None => self.checker.insert(connect_checker(&self.options).await?),
        };
        // Ctrl-C stops a check on the server too.
        let cancel = conn.canceller();
        let budget = self.options.check_budget;
        let result =
            self.options.interrupt.cancellable(cancel, run_check(conn.as_mut(), spec, &self.catalog, budget)).await;
        if result.ok.is_none() || self.options.interrupt.raised().is_some() {
            // Cut off by its budget or a signal: the connection may be mid-query.
            self.checker = None;
        }
        self.options.interrupt.check(|| "it stopped during the data checks, which only read".into())?;
        Ok(result)
    }

    /// The rows a backfill statement's `WHERE` matches now, on the checker
    /// connection in a read-only transaction within the check budget.
    async fn count_matching(&mut self, sql: &str, dialect: airlock_sql::Dialect) -> Result<Option<u64>, ExecError> {
        let Ok(batchable) = airlock_sql::backfill::analyze(sql, dialect) else { return Ok(None) };
        let query = batchable.count_matching();
        let conn = match self.checker.as_mut() {
            Some(conn) => conn,
            None => self.checker.insert(connect_checker(&self.options).await?),
        };
        let cancel = conn.canceller();
        let budget = self.options.check_budget;
        let run = async {
            conn.begin_check(budget).await?;
            let rows = conn.query_text(&query).await;
            let _ = conn.rollback().await;
            rows
        };
        let counted = self
            .options
            .interrupt
            .cancellable(cancel, tokio::time::timeout(budget + Duration::from_secs(2), run))
            .await;
        self.options.interrupt.check(|| "it stopped during the data checks, which only read".into())?;
        match counted {
            Ok(Ok(rows)) => Ok(rows.first().and_then(|r| r.first().cloned().flatten()).and_then(|n| n.parse().ok())),
            _ => {
                // Cut off by its budget: the connection may be mid-query.
                self.checker = None;
                Ok(None)
            }
        }
    }

    /// How a backfill statement runs in batches over its table as the model knows it now.
    fn backfill_plan(&self, sql: &str, dialect: airlock_sql::Dialect) -> Option<BackfillPlan> {
        let batchable = airlock_sql::backfill::analyze(sql, dialect).ok()?;
        let settings = &self.options.backfill;
        let table = self.catalog.table(&batchable.table).table();
        let rows = table.and_then(|t| t.rows);
        let rate = self.rates.for_table(Work::Rewrite, &batchable.table.name).rows_per_second;
        let batch_rows =
            ((rate * settings.batch_target.as_secs_f64()) as u64).clamp(settings.batch_min, settings.batch_max);
        let cap = settings.max_rows_per_second;
        let seconds = rows.map(|r| (r / rate).max(cap.map_or(0.0, |c| r / c as f64)));
        Some(BackfillPlan {
            live: table.is_some_and(|t| t.origin == Origin::Live),
            table: batchable.table.to_string(),
            rows,
            matched: None,
            batch_rows,
            batches: rows.map(|r| (r / batch_rows as f64).ceil() as u64),
            seconds,
            batch_target_ms: settings.batch_target.as_millis() as u64,
            max_rows_per_second: cap,
        })
    }

    /// Judges `migration` (parsed as `script`) against the data as it is now,
    /// then advances the schema model past it. `findings` are its lint
    /// findings by statement (1-based).
    pub(crate) async fn migration(
        &mut self,
        migration: &Migration,
        script: &ParsedScript,
        mut findings: BTreeMap<usize, Vec<Finding>>,
    ) -> Result<MigrationPlan, ExecError> {
        let profile = self.options.profile();
        let dialect = profile.dialect;
        let version = migration.version.to_string();
        let mut statements = Vec::new();
        // Columns earlier statements of this migration add or rename.
        let mut added: std::collections::HashSet<(String, String)> = std::collections::HashSet::new();
        for (i, parsed) in script.statements.iter().enumerate() {
            let mut plan = StatementPlan::new(i + 1, parsed.sql.clone(), parsed.line);
            let label = || format!("{} ({})", migration.version, migration.name);
            if let Err(why) = &parsed.ops {
                let message =
                    format!("airlock could not parse this statement ({why}), so nothing about it was checked");
                plan.reasons.push(unread(message));
                if self.gathering_stake {
                    let why = "airlock could not parse a statement, so cannot tell which tables it changes".to_owned();
                    self.stake.add(Stake::Everything(why), &label(), parsed.line, &self.catalog);
                }
            }
            let mut found: Vec<(CheckSpec, CheckResult)> = Vec::new();
            // The first migration of an expand/contract: the live rows are
            // checked as for the statement it expands (values the new type
            // cannot hold), before anything of it runs.
            if let (0, Some(original)) = (i, &migration.directives.expand) {
                for op in airlock_sql::parse::parse(original, dialect).unwrap_or_default() {
                    let e = effects(&op, &self.catalog, dialect);
                    let live = e
                        .table
                        .as_ref()
                        .and_then(|t| self.catalog.table(t).table())
                        .is_some_and(|t| t.origin == Origin::Live);
                    // Only the values: the contract keeps the column's other attributes.
                    for spec in e.checks.iter().filter(|s| live && matches!(s, CheckSpec::CastFailures { .. })) {
                        found.push((spec.clone(), self.check(spec).await?));
                    }
                }
            }
            for op in parsed.ops.iter().flatten() {
                plan.changes_rows |= op.is_dml();
                if matches!(op, Op::Other { kind } if kind == airlock_sql::parse::DO_UNSEEN) {
                    let message = "this DO block runs SQL airlock cannot see (EXECUTE of a string, another language, or a body that does not parse)";
                    plan.reasons.push(unread(message.to_owned()));
                }
                let e = effects(op, &self.catalog, dialect);
                // The worked-on table as the model knows it (name, rows, size), before the op.
                let table = e
                    .table
                    .as_ref()
                    .and_then(|t| self.catalog.table(t).table())
                    .map(|t| (t.name.name.clone(), t.rows, t.bytes, t.origin == Origin::Live));
                let live = table.as_ref().is_some_and(|t| t.3);
                let work = Work::of(&e);
                if let Some((name, rows, bytes, _)) = &table {
                    plan.table = Some(name.clone());
                    plan.estimated_rows = *rows;
                    plan.estimated_bytes = *bytes;
                    let so_far = plan.estimated_seconds.unwrap_or(0.0);
                    plan.estimated_seconds = match (work, *rows) {
                        // The statement's whole time is already counted from a rehearsal.
                        (Some(_), Some(_)) if plan.rehearsal.is_some() => plan.estimated_seconds,
                        (Some(work), Some(rows)) => match self.rehearsed.find(migration, parsed.line, work) {
                            // Timed on a copy of this table's rows: scaled by the live rows.
                            Some(timing) => {
                                let scaled = ScaledRehearsal::new(timing, rows);
                                plan.estimate_source = Some(scaled.source());
                                let seconds = so_far + scaled.seconds();
                                plan.rehearsal = Some(scaled);
                                Some(seconds)
                            }
                            None => {
                                let rate = self.rates.for_table(work, name);
                                plan.estimate_source = Some(rate.source.clone());
                                Some(so_far + rows / rate.rows_per_second)
                            }
                        },
                        (None, Some(_)) => Some(so_far),
                        (_, None) => plan.estimated_seconds,
                    };
                }
                plan.work = plan.work.max(work);
                for spec in &e.checks {
                    let blockers = matches!(spec, CheckSpec::LockBlockers { .. });
                    // A table created by a pending migration is empty when it runs.
                    if (blockers && !self.lock_blockers) || (!blockers && !live) {
                        continue;
                    }
                    // The checks read the data as it is before this migration: a
                    // column an earlier statement of it adds is not there yet.
                    if let Some((table, columns)) = spec.reads() {
                        if columns.iter().any(|c| added.contains(&(table.name.to_lowercase(), c.to_lowercase()))) {
                            continue;
                        }
                    }
                    found.push((spec.clone(), self.check(spec).await?));
                }
                // A lock held only for a catalog change is brief (the lock
                // timeout bounds its queueing); one held through a scan or a
                // rewrite of a large table blocks writes for all of it.
                let large = plan.estimated_rows.is_none_or(|r| r >= LARGE_TABLE_ROWS);
                for lock in e.locks.iter().filter(|l| l.blocks_writes) {
                    if let (true, true, Some(work), Some((name, ..))) = (live, large, work, &table) {
                        let rows = plan.estimated_rows.map_or("rows unknown".to_owned(), |r| format!("~{r:.0} rows"));
                        let doing = match work {
                            Work::Scan => "scans",
                            Work::Index => "builds an index over",
                            Work::Rewrite => "rewrites",
                        };
                        let on = if lock.table == "(database)" {
                            "the database".to_owned()
                        } else {
                            format!("`{}`", lock.table)
                        };
                        let message = format!("{} on {on} blocks writes while it {doing} `{name}` ({rows})", lock.mode);
                        plan.reasons.push(risk(RiskCode::BlocksWrites, message, false, profile));
                    }
                }
                plan.locks.extend(e.locks);
                plan.rewrites_table |= e.rewrites_table;
                plan.scans_table |= e.scans_table;
                added.extend(columns_added(op));
                if self.gathering_stake {
                    let stake = at_stake(op, &parsed.sql, &self.catalog);
                    self.stake.add(stake, &label(), parsed.line, &self.catalog);
                }
                self.catalog.apply(op, &version);
            }
            if migration.directives.backfill {
                plan.backfill = self.backfill_plan(&parsed.sql, dialect);
                // `plan` (the judge that also looks for lock blockers) counts the
                // rows it matches, a scan within the check budget; `migrate` does not.
                if let (Some(b), true) = (plan.backfill.as_mut(), self.lock_blockers) {
                    if b.live {
                        b.matched = self.count_matching(&parsed.sql, dialect).await?;
                    }
                }
            }
            let budget = self.options.estimate_budget;
            // A backfill's batches each hold their locks briefly, however long all of them take.
            let over = plan.estimated_seconds.filter(|s| !budget.is_zero() && *s > budget.as_secs_f64());
            if let Some(seconds) = over.filter(|_| plan.backfill.is_none()) {
                plan.reasons.push(risk(
                    RiskCode::OverBudget,
                    format!("estimated at {seconds:.0} s, over the {} s budget (`estimate_budget`)", budget.as_secs()),
                    false,
                    profile,
                ));
            }
            for (spec, result) in found {
                match result.ok {
                    Some(true) => {}
                    Some(false) => {
                        let mut r = risk(result.check, result.message.clone(), !result.warns_only, profile);
                        if let CheckSpec::AttributeLoss { fix, .. } = &spec {
                            r.fix = format!("{fix}; {}", r.fix);
                        }
                        if !result.examples.is_empty() && !matches!(spec, CheckSpec::AttributeLoss { .. }) {
                            r.message.push_str(&format!(
                                " ({} {})",
                                result.examples_label(),
                                result.examples.join("; ")
                            ));
                        }
                        if let Some((writes, tables)) = self.changed_before(&spec).filter(|_| r.blocks) {
                            let names: Vec<String> = tables.iter().map(|t| format!("`{t}`")).collect();
                            r.message.push_str(&format!(
                                "; but pending migration {} ({}) runs before it and changes rows of {}: what it leaves is known only once it has run, and `migrate` checks again just before this statement",
                                writes.version,
                                writes.name,
                                names.join(", ")
                            ));
                            r.fix = format!(
                                "make sure {} ({}) leaves no such rows; otherwise {}",
                                writes.version, writes.name, r.fix
                            );
                            r.blocks = false;
                            r.rechecked_after = Some(writes.version.clone());
                        }
                        plan.reasons.push(r);
                    }
                    None => plan.reasons.push(risk(
                        RiskCode::Unchecked,
                        format!("{}: {}", result.check, result.message),
                        false,
                        profile,
                    )),
                }
                plan.checks.push(result);
            }
            let mut mine = findings.remove(&(i + 1)).unwrap_or_default();
            if i == 0 {
                // Findings about the whole file go with its first statement.
                mine.extend(findings.remove(&0).unwrap_or_default());
            }
            plan.take_findings(mine, profile);
            plan.settle(migration, script, self.options.protected);
            statements.push(plan);
        }
        // Findings about a file with no statement to carry them (one that
        // cannot be split): a statement of their own, so they still count.
        let leftover: Vec<Finding> = findings.into_values().flatten().collect();
        if script.split_error.is_some() || !leftover.is_empty() {
            let line = script.split_error.as_ref().map_or(1, |(line, _)| *line);
            let mut plan = StatementPlan::new(1, String::new(), line);
            if let Some((_, why)) = &script.split_error {
                let message =
                    format!("airlock could not split this file into statements ({why}), so nothing in it was checked");
                plan.reasons.push(unread(message));
            }
            plan.take_findings(leftover, profile);
            plan.settle(migration, script, self.options.protected);
            statements.push(plan);
        }
        if let Some(earlier) = self.earlier_writes.as_mut() {
            earlier.extend(Writes::of(migration, script));
        }
        let verdict = statements.iter().map(|s| s.verdict).max().unwrap_or(Verdict::Safe);
        Ok(MigrationPlan {
            version,
            name: migration.name.clone(),
            checksum: migration.checksum.clone(),
            statements,
            verdict,
        })
    }

    /// How past backups of this database went, for a backup's estimate.
    pub(crate) fn backup_pace(&self) -> Option<&crate::rates::BackupPace> {
        self.rates.backup()
    }

    /// The throughput figures behind the estimates.
    pub(crate) fn rates(&self) -> BTreeMap<Work, Rate> {
        Work::ALL.iter().map(|w| (*w, self.rates.get(*w).clone())).collect()
    }
}

/// The (table, column) pairs, lowercased, that `op` adds or renames into being.
fn columns_added(op: &Op) -> Vec<(String, String)> {
    let Op::AlterTable { table, actions } = op else { return Vec::new() };
    actions
        .iter()
        .filter_map(|(action, _)| match action {
            AlterAction::AddColumn(spec) => Some(spec.name.as_str()),
            AlterAction::RenameColumn { to, .. } => Some(to.as_str()),
            AlterAction::RedefineColumn { old_name: Some(_), column } => Some(column.name.as_str()),
            _ => None,
        })
        .map(|c| (table.name.to_lowercase(), c.to_lowercase()))
        .collect()
}

/// A risk with its fix, accepted by no allow yet.
fn risk(code: RiskCode, message: String, blocks: bool, profile: &Profile) -> Risk {
    Risk::new(code, message, blocks, profile.online_form)
}

/// An `unchecked` risk for what airlock could not read (a statement, a DO
/// block, a file it cannot split): review it by hand.
fn unread(message: String) -> Risk {
    Risk { fix: UNREAD_FIX.to_owned(), ..Risk::new(RiskCode::Unchecked, message, false, "") }
}

/// Plans every pending migration against the live database. Changes nothing.
pub async fn plan(options: &Options) -> Result<PlanReport, ExecError> {
    let dialect = options.engine_traits().dialect;
    let live = crate::live_state(options).await?;
    // Another tool migrated it: every migration would look pending, and new.
    if let Some(problem) = crate::adopt::foreign_problem(&live.foreign) {
        return Err(ExecError::Blocked { problems: vec![problem] });
    }
    let pending = live.pending;
    let cluster = live.cluster.as_ref().filter(|_| !pending.is_empty()).map(|c| match c.unfit() {
        Some(why) => format!("{}; {why}: `migrate` refuses this node", c.ddl_note()),
        None => c.ddl_note(),
    });
    // Parsed once, for lint and for the walk below.
    let scripts = airlock_lint::parse_all(&pending, dialect);
    let lint_options = LintOptions::with_severities(dialect, options.lint.severities.clone());
    let mut report = airlock_lint::lint_parsed(&pending, &scripts, live.catalog.clone(), &lint_options);
    if let Some(baseline) = &options.lint.baseline {
        baseline.apply(&mut report);
    }
    let mut findings: BTreeMap<String, BTreeMap<usize, Vec<Finding>>> = BTreeMap::new();
    for f in report.findings {
        findings.entry(f.version.clone()).or_default().entry(f.statement.unwrap_or(0)).or_default().push(f);
    }
    let database_bytes = crate::backup::database_bytes(&live.catalog);
    let mut assessor = Assessor::new(options, live.catalog, live.rates, true)?;
    assessor.start_look();
    let mut migrations = Vec::new();
    for (migration, script) in pending.iter().zip(&scripts) {
        let found = findings.remove(&migration.version.to_string()).unwrap_or_default();
        migrations.push(assessor.migration(migration, script, found).await?);
    }
    let verdict = migrations.iter().map(|m| m.verdict).max().unwrap_or(Verdict::Safe);
    let backup = match pending.is_empty() {
        true => None,
        false => crate::backup::BackupPlan::of(
            &options.backup,
            &assessor.stake,
            database_bytes,
            options.profile(),
            assessor.backup_pace(),
        ),
    };
    let replicas = match migrations.is_empty() {
        true => Vec::new(),
        false => crate::replicas::look(options, &migrations).await,
    };
    Ok(PlanReport {
        database: options.url.to_string(),
        migrations,
        verdict,
        rates: assessor.rates(),
        backup,
        cluster,
        replicas,
    })
}
