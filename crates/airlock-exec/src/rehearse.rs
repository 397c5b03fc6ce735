//! `rehearse`: each pending migration run up, down and up again on a scratch
//! copy of the target's schema, with the schema compared after each step, so
//! that a down script that leaves a table behind, forgets an index, a
//! default or a trigger, or fails outright is found before the day it is
//! needed. The target is only read.

use std::borrow::Cow;
use std::time::Instant;

use airlock_core::snapshot::{ObjectKind, ObjectPath, SchemaSnapshot, Scope, diff, diff_within};
use airlock_core::{HistoryRecord, Migration, Settings, reconcile};
use airlock_driver::{Driver, RowChunk, RowSink};
use serde::Serialize;

use crate::Options;
use crate::drift::{DriftEntry, Scratch, applied_in_order, replay, run_prepared};
use crate::error::ExecError;
use crate::prepare::{EngineTraits, prepare, prepare_script};
use crate::rehearsed::{Heavy, RehearsalTimings, RehearsedStatement, heavy_statements};

/// One migration's rehearsal, as the JSON contract has it.
#[derive(Debug, Clone, Serialize)]
pub struct RehearsalEntry {
    /// Its version.
    pub version: String,
    /// Its name.
    pub name: String,
    /// How long the up script took.
    pub up_ms: Option<u64>,
    /// The down script.
    pub down_ms: Option<u64>,
    /// The up script, run again after the down.
    pub reup_ms: Option<u64>,
    /// `clean`, `residue` (the down did not restore the schema, or the up
    /// run again does not give the same), `failed`, or `no-down`.
    pub outcome: &'static str,
    /// What differs: after the down, from the schema before the up
    /// (`expected` before, `actual` after); after the second up, from the first.
    pub differences: Vec<DriftEntry>,
    /// For `failed`: which script, which statement, and the server's error.
    pub error: Option<String>,
}

/// What `rehearse` copies of the target's rows besides its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RehearsalData {
    /// No rows: the schema only.
    Schema,
    /// Up to this many rows of each table.
    Sample(u64),
    /// Every row.
    Full,
}

impl std::str::FromStr for RehearsalData {
    type Err = String;

    /// `schema`, `sample` (1,000 rows a table), `sample:N` or `full`.
    fn from_str(text: &str) -> Result<RehearsalData, String> {
        match text.split_once(':') {
            None if text == "schema" => Ok(RehearsalData::Schema),
            None if text == "full" => Ok(RehearsalData::Full),
            None if text == "sample" => Ok(RehearsalData::Sample(1000)),
            Some(("sample", n)) => match n.parse::<u64>() {
                Ok(n) if n > 0 => Ok(RehearsalData::Sample(n)),
                _ => Err(format!("`{text}`: N in sample:N is a number of rows above 0")),
            },
            _ => Err(format!("`{text}`: use schema, sample, sample:N (rows per table) or full")),
        }
    }
}

impl std::fmt::Display for RehearsalData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RehearsalData::Schema => f.write_str("schema"),
            RehearsalData::Sample(n) => write!(f, "sample:{n}"),
            RehearsalData::Full => f.write_str("full"),
        }
    }
}

/// The rows copied into the scratch database before the first migration.
#[derive(Debug, Clone, Serialize)]
pub struct CopiedRows {
    /// `sample:N` or `full`.
    pub data: String,
    /// Tables copied.
    pub tables: usize,
    /// Rows copied, all tables.
    pub rows: u64,
    /// How long the copy took.
    pub ms: u64,
}

/// What `rehearse` found.
#[derive(Debug, Clone, Serialize)]
pub struct RehearsalReport {
    /// The target (password hidden); only read.
    pub database: String,
    /// The target's rows copied first (`--data sample|full`), if any.
    pub copied: Option<CopiedRows>,
    /// Each rehearsed migration, in order (none after a failure: the ones
    /// after it would run on a schema the real run would not have).
    pub migrations: Vec<RehearsalEntry>,
    /// With the target's rows: each heavy statement's time and the rows of
    /// its table, kept for `plan`'s estimates.
    pub timed: Vec<RehearsedStatement>,
    /// The file they were kept in, if any.
    pub timings_file: Option<String>,
    /// Why they could not be kept (the file could not be written), if so.
    pub timings_error: Option<String>,
    /// `clean`, or `problems` when a migration left residue or failed.
    pub verdict: &'static str,
}

/// Rehearses the pending migrations on a scratch database holding the
/// target's schema (its applied migrations' recorded text, replayed), or,
/// with `all`, every migration from an empty database (no target needed
/// beyond its server). The scratch database is dropped whatever happens.
pub async fn rehearse(
    options: &Options,
    all: bool,
    data: RehearsalData,
    reporter: &mut dyn crate::Reporter,
) -> Result<RehearsalReport, ExecError> {
    if all && data != RehearsalData::Schema {
        return Err(ExecError::Usage(format!(
            "--data {data} with --all: rehearsing every migration starts from an empty database, with no rows to copy"
        )));
    }
    let discovered = options.discover_in_background().await?;
    let (mut target, state) = if all {
        (None, None)
    } else {
        let mut target = crate::connect_read_only(&options.url).await.map_err(ExecError::Connect)?;
        let state = target.read_state().await.map_err(ExecError::db("reading the migration history"))?;
        (Some(target).filter(|_| data != RehearsalData::Schema), Some(state))
    };
    let history: &[HistoryRecord] = state.as_ref().map_or(&[], |s| s.history.as_slice());
    let settings = Settings { target: None, out_of_order: options.out_of_order, run_in_progress: false };
    let plan = reconcile(&discovered.migrations, history, &settings);
    if let Some(problem) = plan.problems.iter().find(|p| p.blocking) {
        return Err(ExecError::Blocked { problems: vec![problem.clone()] });
    }
    let pending: Vec<&Migration> = plan.pending.clone();
    // A file that cannot be run as written is named before any database is made,
    // and so is a timings file that cannot be read.
    crate::run::check_prepared(&pending, options)?;
    let mut timings = match (&options.rehearsal_timings, target.is_some()) {
        (Some(path), true) => Some((path, RehearsalTimings::read(path)?)),
        _ => None,
    };
    let applied = applied_in_order(history);

    let mut scratch = Scratch::create(options).await?;
    let source = target.as_mut().map(|target| Source {
        target: target.as_mut(),
        data,
        database: options.url.to_string(),
        at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    });
    let rehearsed = rehearse_all(&mut scratch, options, &applied, &pending, source, reporter).await;
    reporter.worked();
    let dropped = scratch.finish().await;
    let (copied, migrations, timed) = rehearsed?;
    dropped?;
    let (mut timings_file, mut timings_error) = (None, None);
    if let Some((path, timings)) = timings.as_mut() {
        // Rehearsed in order, stopping at a failure: the first so many pending ones.
        timings.merge(&pending[..migrations.len()], timed.clone());
        match timings.write(path) {
            Ok(()) => timings_file = Some(path.display().to_string()),
            // What the rehearsal found is not lost for want of a file: it is said with it.
            Err(e) => timings_error = Some(e.to_string()),
        }
    }
    let problems = migrations.iter().any(|m| matches!(m.outcome, "residue" | "failed"));
    Ok(RehearsalReport {
        database: options.url.to_string(),
        copied,
        migrations,
        timed,
        timings_file,
        timings_error,
        verdict: if problems { "problems" } else { "clean" },
    })
}

/// The target whose rows a rehearsal copies, and how it names the timings it makes.
struct Source<'a> {
    target: &'a mut dyn Driver,
    data: RehearsalData,
    /// The target, password hidden.
    database: String,
    /// When the rehearsal started.
    at: String,
}

/// What a rehearsal gives: the rows copied, each migration's entry, and the heavy statements timed.
type Rehearsed = (Option<CopiedRows>, Vec<RehearsalEntry>, Vec<RehearsedStatement>);

/// Replays the applied migrations into the scratch database, then rehearses
/// each pending one. After residue the scratch schema is not what the real
/// run would have: it is made again (the applied migrations replayed, then
/// the ups so far) before the next migration. A failure ends the rehearsal.
async fn rehearse_all(
    scratch: &mut Scratch,
    options: &Options,
    applied: &[&HistoryRecord],
    pending: &[&Migration],
    mut source: Option<Source<'_>>,
    reporter: &mut dyn crate::Reporter,
) -> Result<Rehearsed, ExecError> {
    let traits = options.engine_traits();
    let mut driver = scratch.connect().await?;
    reporter.working(&format!("replaying {} applied migrations into the scratch database", applied.len()));
    replay(driver.as_mut(), applied, options).await?;
    let copied = match source.as_mut() {
        Some(source) => {
            reporter.working(&format!("copying the target's rows (--data {})", source.data));
            Some(copy_rows(source.target, driver.as_mut(), source.data).await?)
        }
        None => None,
    };
    // With rows, the heavy statements are timed: which they are is judged
    // as `plan` judges them, on the scratch database's schema.
    let mut catalog = match source {
        Some(_) => Some(driver.load_catalog().await.map_err(ExecError::db("reading the scratch database's schema"))?),
        None => None,
    };
    let mut entries = Vec::new();
    let mut timed = Vec::new();
    // The schema after a clean rehearsal is the next one's schema before: not read twice.
    let mut known = None;
    for (i, migration) in pending.iter().enumerate() {
        reporter.working(&format!(
            "rehearsing {}/{}: {} {} (up, down, up)",
            i + 1,
            pending.len(),
            migration.version,
            migration.name
        ));
        let heavy = match catalog.as_mut() {
            Some(catalog) => {
                let script = airlock_lint::parse_migration(migration, traits.dialect);
                heavy_statements(migration, &script, catalog, traits.dialect)
            }
            None => Vec::new(),
        };
        let (entry, after, times) = rehearse_one(driver.as_mut(), migration, traits, known.take(), &heavy).await?;
        if let Some(source) = &source {
            timed.extend(times.into_iter().map(|(heavy, rows, ms)| RehearsedStatement {
                version: migration.version.to_string(),
                checksum: migration.checksum.clone(),
                line: heavy.line,
                work: heavy.work,
                table: heavy.table.to_string(),
                rows,
                ms,
                at: source.at.clone(),
                database: source.database.clone(),
                data: source.data.to_string(),
            }));
        }
        let outcome = entry.outcome;
        entries.push(entry);
        known = after.filter(|_| outcome == "clean");
        match outcome {
            "failed" => break,
            "residue" if i + 1 < pending.len() => {
                drop(driver);
                scratch.reset(options).await?;
                driver = scratch.connect().await?;
                replay(driver.as_mut(), applied, options).await?;
                if let Some(source) = source.as_mut() {
                    copy_rows(source.target, driver.as_mut(), source.data).await?;
                }
                for m in &pending[..=i] {
                    let up = prepare(m, traits).map_err(|e| ExecError::Invalid(vec![e]))?;
                    run_prepared(driver.as_mut(), &up, traits, false).await.map_err(|(n, e)| {
                        ExecError::db(format!(
                            "making the scratch database again after migration {}'s residue: migration {}, statement {n}",
                            migration.version, m.version
                        ))(e)
                    })?;
                }
            }
            _ => {}
        }
    }
    Ok((copied, entries, timed))
}

/// Copies the target's rows into the scratch database's tables (as the
/// replayed migrations made them; generated columns left to the engine),
/// foreign keys unchecked and triggers silent meanwhile.
async fn copy_rows(
    target: &mut dyn Driver,
    scratch: &mut dyn Driver,
    data: RehearsalData,
) -> Result<CopiedRows, ExecError> {
    let started = Instant::now();
    let limit = match data {
        RehearsalData::Sample(n) => Some(n),
        _ => None,
    };
    let schema = snapshot(scratch).await?;
    // A partitioned table's rows are its partitions': each is copied on its own.
    let tables: Vec<&ObjectPath> = schema
        .objects
        .iter()
        .filter(|(p, a)| p.kind == ObjectKind::Table && !a.contains_key("partitioned"))
        .map(|(p, _)| p)
        .collect();
    scratch.begin_load().await.map_err(ExecError::db("preparing the scratch database for the copied rows"))?;
    let mut rows = 0;
    for table in &tables {
        let columns: Vec<String> = schema
            .objects
            .iter()
            .filter(|(p, a)| {
                p.kind == ObjectKind::Column
                    && p.schema == table.schema
                    && p.table.as_deref() == Some(table.name.as_str())
                    && !a.contains_key("generated")
            })
            .map(|(p, _)| p.name.clone())
            .collect();
        let mut loader = Loader { into: &mut *scratch, table, columns: &columns };
        rows += target.read_rows(table, &columns, limit, &mut loader).await.map_err(ExecError::db(format!(
            "copying the rows of table {} (a target that drifted from its migrations may lack a column: see `airlock drift`)",
            table.qualified()
        )))?;
    }
    scratch.end_load().await.map_err(ExecError::db("restoring triggers and foreign keys after the copied rows"))?;
    Ok(CopiedRows { data: data.to_string(), tables: tables.len(), rows, ms: started.elapsed().as_millis() as u64 })
}

/// Hands rows read from one database to `columns` of `table` in another
/// of the same engine, chunk by chunk.
pub(crate) struct Loader<'a> {
    pub into: &'a mut dyn Driver,
    pub table: &'a ObjectPath,
    pub columns: &'a [String],
}

#[async_trait::async_trait]
impl RowSink for Loader<'_> {
    async fn take(&mut self, chunk: RowChunk) -> airlock_driver::Result<()> {
        self.into.load_rows(self.table, self.columns, chunk).await
    }
}

/// A heavy statement timed: its rows before the migration, and its milliseconds.
type Timed<'a> = (&'a Heavy, u64, f64);

/// Up, snapshot; down, compare with before; up again, compare with the first up.
/// `before`: the schema now, when the previous rehearsal already read it.
/// `heavy`: statements whose table's rows are counted before the up and
/// whose time in it is kept. Returns the entry, when all steps ran the
/// schema after the second up, and the heavy statements timed.
async fn rehearse_one<'h>(
    driver: &mut dyn Driver,
    migration: &Migration,
    traits: EngineTraits,
    before: Option<SchemaSnapshot>,
    heavy: &'h [Heavy],
) -> Result<(RehearsalEntry, Option<SchemaSnapshot>, Vec<Timed<'h>>), ExecError> {
    let mut entry = RehearsalEntry {
        version: migration.version.to_string(),
        name: migration.name.clone(),
        up_ms: None,
        down_ms: None,
        reup_ms: None,
        outcome: "clean",
        differences: Vec::new(),
        error: None,
    };
    let up = prepare(migration, traits).map_err(|e| ExecError::Invalid(vec![e]))?;
    let before = match before {
        Some(known) => known,
        None => snapshot(driver).await?,
    };
    let rows = count_rows(driver, heavy, traits.dialect).await;
    let mut times = Vec::new();
    // Without a down, the schema after the up is not compared with anything: not read.
    let read_after = migration.down.is_some().then_some(Cow::Borrowed(&before));
    let first = match step(driver, &up, traits, read_after, !heavy.is_empty()).await? {
        Ok(first) => first,
        Err(error) => return Ok((failed(entry, "the up script", error), None, Vec::new())),
    };
    entry.up_ms = Some(first.ms);
    for (h, rows) in heavy.iter().zip(rows) {
        let at = up.statements.iter().position(|s| s.line + migration.up.line_offset == h.line);
        if let (Some(rows), Some(time)) = (rows.filter(|r| *r > 0), at.and_then(|i| first.each.get(i))) {
            times.push((h, rows, time.as_secs_f64() * 1000.0));
        }
    }
    let (Some(down_script), Some((after_up, up_read))) = (&migration.down, first.after) else {
        entry.outcome = "no-down";
        return Ok((entry, None, times));
    };
    let down = prepare_script(down_script, migration.down_directives.no_transaction, traits)
        .map_err(|e| ExecError::Invalid(vec![e]))?;
    let (after_down, down_read) = match step(driver, &down, traits, Some(Cow::Borrowed(&after_up)), false).await? {
        Ok(Stepped { ms, after: Some(after), .. }) => {
            entry.down_ms = Some(ms);
            after
        }
        Ok(Stepped { after: None, .. }) => unreachable!("a step asked to read the schema after it reads it"),
        Err(error) => return Ok((failed(entry, "the down script", error), None, times)),
    };
    // Where only parts were read again, the schemas differ only there.
    let mut reached = up_read.zip(down_read).map(|(up, down)| up.union(&down));
    entry.differences.extend(match &reached {
        Some(reached) => crate::drift::entries_within(&before, &after_down, reached),
        None => crate::drift::entries(&before, &after_down),
    });
    let (again, again_read) = match step(driver, &up, traits, Some(Cow::Owned(after_down)), false).await? {
        Ok(Stepped { ms, after: Some(after), .. }) => {
            entry.reup_ms = Some(ms);
            after
        }
        Ok(Stepped { after: None, .. }) => unreachable!("a step asked to read the schema after it reads it"),
        // What the down left behind is usually why: that is the finding.
        Err(error) if !entry.differences.is_empty() => {
            let mut entry = failed(entry, REUP, error);
            entry.outcome = "residue";
            return Ok((entry, None, times));
        }
        Err(error) => return Ok((failed(entry, REUP, error), None, times)),
    };
    reached = reached.zip(again_read).map(|(reached, again)| reached.union(&again));
    let differences = match &reached {
        Some(reached) => diff_within(&after_up, &again, reached),
        None => diff(&after_up, &again),
    };
    entry.differences.extend(differences.iter().map(|d| {
        let mut e = crate::drift::entry(d);
        e.object = format!("{} (after the up run again)", e.object);
        e
    }));
    if !entry.differences.is_empty() {
        entry.outcome = "residue";
    }
    Ok((entry, Some(again), times))
}

/// The third step, as failures name it.
const REUP: &str = "the up script, run again after the down,";

/// `script` names the step: "the down script".
fn failed(mut entry: RehearsalEntry, script: &str, error: String) -> RehearsalEntry {
    entry.outcome = "failed";
    entry.error = Some(format!("{script} failed: {error}"));
    entry
}

async fn snapshot(driver: &mut dyn Driver) -> Result<SchemaSnapshot, ExecError> {
    driver.schema_snapshot().await.map_err(ExecError::db("reading the scratch database's schema"))
}

/// A step of a rehearsal that ran: its milliseconds, each statement's time
/// (when asked for), and, when asked for, the schema after it with the
/// scope read again (None: all of it).
struct Stepped {
    ms: u64,
    each: Vec<std::time::Duration>,
    after: Option<(SchemaSnapshot, Option<Scope>)>,
}

/// Runs `script` and, given the schema `before` it (owned: updated in
/// place), reads the schema after it: only what its statements can have
/// changed (`scope::scope_of`) where the engine can read a part and the
/// statements allow it, else all of it; where the script is one
/// transaction, the read goes with it ([`Driver::run_transaction_and_read`]).
/// Debug builds (the tests) read all of it too and stop with an error if
/// the two differ. `each_timed`: each statement timed on its own. A failed
/// script as "statement N of M: error".
async fn step(
    driver: &mut dyn Driver,
    script: &crate::prepare::Prepared,
    traits: EngineTraits,
    before: Option<Cow<'_, SchemaSnapshot>>,
    each_timed: bool,
) -> Result<Result<Stepped, String>, ExecError> {
    let statements: Vec<&str> = script.statements.iter().map(|s| s.sql.as_str()).collect();
    let failure =
        |n: usize, e: airlock_driver::DriverError| format!("statement {n} of {}: {}", statements.len(), e.message);
    let scope = before.as_deref().and_then(|before| crate::scope::scope_of(&statements, traits.dialect, before));
    let (ms, each, part) = match &scope {
        Some(scope) if crate::drift::one_transaction(script, traits, each_timed) => {
            match driver.run_transaction_and_read(&statements, scope).await {
                Ok((airlock_driver::Ran::Failed { index, error }, ..)) => return Ok(Err(failure(index + 1, error))),
                Ok((_, took, part)) => (millis(took), Vec::new(), part),
                Err(e) => return Ok(Err(failure(statements.len(), e))),
            }
        }
        _ => {
            let started = Instant::now();
            let each = match run_prepared(driver, script, traits, each_timed).await {
                Ok(each) => each,
                Err((n, e)) => return Ok(Err(failure(n, e))),
            };
            let ms = millis(started.elapsed());
            let part = match (&scope, &before) {
                (Some(scope), Some(_)) => driver
                    .schema_snapshot_of(scope)
                    .await
                    .map_err(ExecError::db("reading the scratch database's schema"))?,
                _ => None,
            };
            (ms, each, part)
        }
    };
    let Some(before) = before else {
        return Ok(Ok(Stepped { ms, each, after: None }));
    };
    let after = match (scope, part) {
        (Some(scope), Some(part)) => {
            let after = match before {
                Cow::Borrowed(before) => before.refreshed(&scope, part),
                Cow::Owned(mut before) => {
                    before.refresh(&scope, part);
                    before
                }
            };
            check_part(driver, &after, &scope, &statements).await?;
            (after, Some(scope))
        }
        _ => (snapshot(driver).await?, None),
    };
    Ok(Ok(Stepped { ms, each, after: Some(after) }))
}

/// In debug builds (the tests), reads the whole schema after a step whose
/// scope only was read again, and stops with an error if the two differ:
/// an error, not a panic, so that the scratch database is still dropped.
async fn check_part(
    driver: &mut dyn Driver,
    after: &SchemaSnapshot,
    scope: &Scope,
    statements: &[&str],
) -> Result<(), ExecError> {
    if !cfg!(debug_assertions) {
        return Ok(());
    }
    let whole = snapshot(driver).await?;
    let missed = diff(&whole, after);
    if missed.is_empty() {
        return Ok(());
    }
    Err(ExecError::Usage(format!(
        "internal check of a debug build: a rehearsal read only {:?} ({:?}) after {statements:?}, and missed: {missed:?}",
        scope.relations, scope.parts
    )))
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The rows of each heavy statement's table, counted before its migration
/// runs (outside its transaction, so a count that fails spoils nothing):
/// None where the count failed.
async fn count_rows(driver: &mut dyn Driver, heavy: &[Heavy], dialect: airlock_sql::Dialect) -> Vec<Option<u64>> {
    let mut counted: Vec<(String, Option<u64>)> = Vec::new();
    let mut rows = Vec::with_capacity(heavy.len());
    for h in heavy {
        let sql = airlock_plan::checks::count_rows(&h.table, dialect);
        let n = match counted.iter().find(|(q, _)| *q == sql) {
            Some((_, n)) => *n,
            None => {
                let answer = driver.query_text(&sql).await.ok();
                let n = answer.and_then(|r| r.first()?.first()?.as_deref()?.parse::<u64>().ok());
                counted.push((sql, n));
                n
            }
        };
        rows.push(n);
    }
    rows
}
