//! `plan`: a read-only preflight. For every pending statement: the locks it
//! takes, whether it rewrites or scans its table, the table's rows and size,
//! an estimate, the data checks run against the live data (each in its own
//! read-only transaction, bounded by a time budget; a check that times out is
//! `unknown`), the lint findings, and a verdict.

use std::collections::BTreeMap;
use std::time::Duration;

use airlock_core::schema::{Catalog, Origin};
use airlock_driver::{Driver, Engine};
use airlock_lint::{Finding, LintOptions, Severity};
use airlock_plan::checks::{self, CheckResult};
use airlock_plan::{effects, CheckSpec, Lock};
use serde::Serialize;

use crate::error::ExecError;
use crate::Options;

/// The verdict on a statement, a migration or the whole plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing found that blocks writes for long or will fail.
    Safe,
    /// Blocks writes on a large table, or a check could not tell.
    Risky,
    /// A check shows it will fail, or lose data or attributes.
    Blocked,
}

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
    /// The table's estimated rows (catalog statistics).
    pub estimated_rows: Option<f64>,
    /// The table's total bytes.
    pub estimated_bytes: Option<i64>,
    /// How long it should take, from the engine's throughput model.
    pub estimated_seconds: Option<f64>,
    /// Data checks.
    pub checks: Vec<CheckResult>,
    /// Lint findings.
    pub findings: Vec<PlanFinding>,
    /// The verdict.
    pub verdict: Verdict,
    /// Why the verdict is not `safe`.
    pub reasons: Vec<String>,
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
}

/// Rows above which blocking writes for the statement is risky.
const LARGE_TABLE_ROWS: f64 = 100_000.0;

/// Rows per second for each kind of work. PostgreSQL's figures come from
/// bench/plan.sh (5 M rows: an index build at about 2.8 M rows/s, a rewrite
/// at about 0.9 M rows/s, on the machine in docs/benchmarks.md); MySQL's are
/// a default. Not yet calibrated per installation, from history or a
/// measurement the tool runs.
fn rows_per_second(engine: Engine, rewrites: bool, scans: bool) -> f64 {
    match (engine, rewrites, scans) {
        (Engine::MySql, true, _) => 200_000.0,
        (_, true, _) => 800_000.0,
        (_, false, true) => 2_500_000.0,
        _ => f64::INFINITY,
    }
}

/// Runs one check in a read-only transaction of its own, bounded by `budget`.
pub(crate) async fn run_check(driver: &mut dyn Driver, engine: Engine, spec: &CheckSpec, catalog: &Catalog, budget: Duration) -> CheckResult {
    let dialect = match engine {
        Engine::Postgres => airlock_sql::Dialect::Postgres,
        Engine::MySql => airlock_sql::Dialect::MySql,
        Engine::Sqlite => airlock_sql::Dialect::Sqlite,
    };
    let Some(sql) = checks::query(spec, catalog, dialect) else {
        return checks::unknown(spec, "not checked: airlock cannot write this check for this statement yet");
    };
    let ms = budget.as_millis();
    let limit = match engine {
        // A check queues behind no DDL: ACCESS SHARE only, and never for long.
        Engine::Postgres => Some(format!("SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = 1000")),
        Engine::MySql => None,
        Engine::Sqlite => None,
    };
    let run = async {
        driver.begin_read_only().await?;
        if let Some(limit) = &limit {
            driver.execute(limit).await?;
        }
        let rows = driver.query_text(&sql).await;
        let _ = driver.rollback().await;
        rows
    };
    let started = std::time::Instant::now();
    match tokio::time::timeout(budget + Duration::from_secs(2), run).await {
        Ok(Ok(rows)) => CheckResult { duration_ms: Some(started.elapsed().as_millis() as u64), ..checks::read(spec, &rows) },
        Ok(Err(e)) => checks::unknown(spec, &format!("unknown: the check did not finish ({})", e.message)),
        Err(_) => checks::unknown(spec, &format!("unknown: the check ran out of its {} s budget", budget.as_secs())),
    }
}

/// A read-only connection for data checks, each bounded by `options.check_budget`
/// (on MySQL through the session's statement time limit; on PostgreSQL each
/// check sets its own in its transaction).
pub(crate) async fn connect_checker(options: &Options) -> Result<Box<dyn Driver>, ExecError> {
    let mut conn = crate::connect_read_only(&options.url).await.map_err(ExecError::Connect)?;
    if options.url.engine() == Engine::MySql {
        let limits = airlock_driver::Timeouts { lock: Duration::from_secs(1), statement: options.check_budget };
        conn.set_timeouts(limits).await.map_err(ExecError::db("setting the checks' time budget"))?;
    }
    Ok(conn)
}

/// Plans every pending migration against the live database. Changes nothing.
pub async fn plan(options: &Options) -> Result<PlanReport, ExecError> {
    let engine = options.url.engine();
    let dialect = options.engine_traits().dialect;
    let check_budget = options.check_budget;
    let live = crate::live_state(options).await?;
    let (mut catalog, pending) = (live.catalog, live.pending);
    // Parsed once, for lint and for the walk below.
    let scripts = airlock_lint::parse_all(&pending, dialect);
    let lint_options = LintOptions { dialect, severities: options.lint.severities.clone() };
    let mut report = airlock_lint::lint_parsed(&pending, &scripts, catalog.clone(), &lint_options);
    if let Some(baseline) = &options.lint.baseline {
        baseline.apply(&mut report);
    }
    let mut findings: BTreeMap<(String, usize), Vec<Finding>> = BTreeMap::new();
    for f in report.findings {
        findings.entry((f.version.clone(), f.statement.unwrap_or(0))).or_default().push(f);
    }

    // Connected at the first check that needs the database.
    let mut checker: Option<Box<dyn Driver>> = None;
    let mut migrations = Vec::new();
    for (migration, script) in pending.iter().zip(&scripts) {
        let version = migration.version.to_string();
        let mut statements = Vec::new();
        for (i, parsed) in script.statements.iter().enumerate() {
            let mut plan = StatementPlan {
                index: i + 1,
                sql: parsed.sql.clone(),
                line: parsed.line,
                locks: Vec::new(),
                rewrites_table: false,
                scans_table: false,
                estimated_rows: None,
                estimated_bytes: None,
                estimated_seconds: None,
                checks: Vec::new(),
                findings: Vec::new(),
                verdict: Verdict::Safe,
                reasons: Vec::new(),
            };
            for op in parsed.ops.iter().flatten() {
                let e = effects(op, &catalog, dialect);
                let table = e.table.as_ref().and_then(|t| catalog.table(t).table());
                let live = table.is_some_and(|t| t.origin == Origin::Live);
                if let Some(t) = table {
                    plan.estimated_rows = t.rows;
                    plan.estimated_bytes = t.bytes;
                    let rate = rows_per_second(engine, e.rewrites_table, e.scans_table);
                    plan.estimated_seconds = t.rows.map(|r| if rate.is_finite() { r / rate } else { 0.0 });
                }
                for spec in &e.checks {
                    let result = if live || matches!(spec, CheckSpec::LockBlockers { .. }) {
                        let conn = match checker.as_mut() {
                            Some(conn) => conn,
                            None => checker.insert(connect_checker(options).await?),
                        };
                        let result = run_check(conn.as_mut(), engine, spec, &catalog, check_budget).await;
                        if result.ok.is_none() {
                            // Cut off by its budget: the connection may be mid-query.
                            checker = None;
                        }
                        result
                    } else {
                        checks::unknown(spec, "skipped: the table is created by a pending migration, so it is empty")
                    };
                    let skipped = result.message.starts_with("skipped");
                    if !skipped {
                        plan.checks.push(result);
                    }
                }
                let large = !live || plan.estimated_rows.is_none_or(|r| r >= LARGE_TABLE_ROWS);
                for lock in e.locks.iter().filter(|l| l.blocks_writes) {
                    if table.is_some() && large && live {
                        plan.reasons.push(format!("{} on `{}` blocks writes on a large table", lock.mode, lock.table));
                        plan.verdict = plan.verdict.max(Verdict::Risky);
                    }
                }
                plan.locks.extend(e.locks);
                plan.rewrites_table |= e.rewrites_table;
                plan.scans_table |= e.scans_table;
                catalog.apply(op, &version);
            }
            for check in &plan.checks {
                match (check.ok, check.check) {
                    (Some(false), "lock-blockers") => {
                        plan.reasons.push(check.message.clone());
                        plan.verdict = plan.verdict.max(Verdict::Risky);
                    }
                    (Some(false), _) => {
                        plan.reasons.push(check.message.clone());
                        plan.verdict = Verdict::Blocked;
                    }
                    (None, _) => {
                        plan.reasons.push(format!("{}: {}", check.check, check.message));
                        plan.verdict = plan.verdict.max(Verdict::Risky);
                    }
                    _ => {}
                }
            }
            for f in findings.remove(&(version.clone(), i + 1)).unwrap_or_default() {
                if f.rule == "modify-drops-attributes" && f.severity == Severity::Error {
                    plan.reasons.push(f.message.clone());
                    plan.verdict = Verdict::Blocked;
                }
                plan.findings.push(PlanFinding { rule: f.rule, severity: f.severity, message: f.message, help: f.help, fix: f.fix });
            }
            statements.push(plan);
        }
        let verdict = statements.iter().map(|s| s.verdict).max().unwrap_or(Verdict::Safe);
        migrations.push(MigrationPlan {
            version,
            name: migration.name.clone(),
            checksum: migration.checksum.clone(),
            statements,
            verdict,
        });
    }
    let verdict = migrations.iter().map(|m| m.verdict).max().unwrap_or(Verdict::Safe);
    Ok(PlanReport { database: options.url.to_string(), migrations, verdict })
}
