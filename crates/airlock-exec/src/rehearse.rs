//! `rehearse`: each pending migration run up, down and up again on a scratch
//! copy of the target's schema, with the schema compared after each step, so
//! that a down script that leaves a table behind, forgets an index, a
//! default or a trigger, or fails outright is found before the day it is
//! needed. The target is only read.

use std::time::Instant;

use airlock_core::snapshot::{ObjectKind, ObjectPath, SchemaSnapshot, diff};
use airlock_core::{HistoryRecord, Migration, Settings, reconcile};
use airlock_driver::{Driver, RowChunk, RowSink};
use serde::Serialize;

use crate::Options;
use crate::drift::{DriftEntry, Scratch, applied_in_order, replay, run_prepared};
use crate::error::ExecError;
use crate::prepare::{EngineTraits, prepare, prepare_script};

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
    /// `clean`, or `problems` when a migration left residue or failed.
    pub verdict: &'static str,
}

/// Rehearses the pending migrations on a scratch database holding the
/// target's schema (its applied migrations' recorded text, replayed), or,
/// with `all`, every migration from an empty database (no target needed
/// beyond its server). The scratch database is dropped whatever happens.
pub async fn rehearse(options: &Options, all: bool, data: RehearsalData) -> Result<RehearsalReport, ExecError> {
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
    // A file that cannot be run as written is named before any database is made.
    crate::run::check_prepared(&pending, options)?;
    let applied = applied_in_order(history);

    let mut scratch = Scratch::create(options).await?;
    let source: Option<(&mut dyn Driver, RehearsalData)> = match target.as_mut() {
        Some(target) => Some((target.as_mut(), data)),
        None => None,
    };
    let rehearsed = rehearse_all(&mut scratch, options, &applied, &pending, source).await;
    let dropped = scratch.finish().await;
    let (copied, migrations) = rehearsed?;
    dropped?;
    let problems = migrations.iter().any(|m| matches!(m.outcome, "residue" | "failed"));
    Ok(RehearsalReport {
        database: options.url.to_string(),
        copied,
        migrations,
        verdict: if problems { "problems" } else { "clean" },
    })
}

/// Replays the applied migrations into the scratch database, then rehearses
/// each pending one. After residue the scratch schema is not what the real
/// run would have: it is made again (the applied migrations replayed, then
/// the ups so far) before the next migration. A failure ends the rehearsal.
async fn rehearse_all(
    scratch: &mut Scratch,
    options: &Options,
    applied: &[&HistoryRecord],
    pending: &[&Migration],
    mut source: Option<(&mut dyn Driver, RehearsalData)>,
) -> Result<(Option<CopiedRows>, Vec<RehearsalEntry>), ExecError> {
    let traits = options.engine_traits();
    let mut driver = scratch.connect().await?;
    replay(driver.as_mut(), applied, options).await?;
    let copied = match source.as_mut() {
        Some((target, data)) => Some(copy_rows(*target, driver.as_mut(), *data).await?),
        None => None,
    };
    let mut entries = Vec::new();
    // The schema after a clean rehearsal is the next one's schema before: not read twice.
    let mut known = None;
    for (i, migration) in pending.iter().enumerate() {
        let (entry, after) = rehearse_one(driver.as_mut(), migration, traits, known.take()).await?;
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
                if let Some((target, data)) = source.as_mut() {
                    copy_rows(*target, driver.as_mut(), *data).await?;
                }
                for m in &pending[..=i] {
                    let up = prepare(m, traits).map_err(|e| ExecError::Invalid(vec![e]))?;
                    run_prepared(driver.as_mut(), &up, traits).await.map_err(|(n, e)| {
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
    Ok((copied, entries))
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
        let mut loader = Loader { scratch: &mut *scratch, table, columns: &columns };
        rows += target.read_rows(table, &columns, limit, &mut loader).await.map_err(ExecError::db(format!(
            "copying the rows of table {} (a target that drifted from its migrations may lack a column: see `airlock drift`)",
            table.qualified()
        )))?;
    }
    scratch.end_load().await.map_err(ExecError::db("restoring triggers and foreign keys after the copied rows"))?;
    Ok(CopiedRows { data: data.to_string(), tables: tables.len(), rows, ms: started.elapsed().as_millis() as u64 })
}

/// Hands the target's rows to the scratch database, chunk by chunk.
struct Loader<'a> {
    scratch: &'a mut dyn Driver,
    table: &'a ObjectPath,
    columns: &'a [String],
}

#[async_trait::async_trait]
impl RowSink for Loader<'_> {
    async fn take(&mut self, chunk: RowChunk) -> airlock_driver::Result<()> {
        self.scratch.load_rows(self.table, self.columns, chunk).await
    }
}

/// Up, snapshot; down, compare with before; up again, compare with the first up.
/// `before`: the schema now, when the previous rehearsal already read it.
/// Returns the entry and, when all steps ran, the schema after the second up.
async fn rehearse_one(
    driver: &mut dyn Driver,
    migration: &Migration,
    traits: EngineTraits,
    before: Option<SchemaSnapshot>,
) -> Result<(RehearsalEntry, Option<SchemaSnapshot>), ExecError> {
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
    match timed(driver, &up, traits).await {
        Ok(ms) => entry.up_ms = Some(ms),
        Err(error) => return Ok((failed(entry, "the up script", error), None)),
    }
    let Some(down_script) = &migration.down else {
        entry.outcome = "no-down";
        return Ok((entry, None));
    };
    let after_up = snapshot(driver).await?;
    let down = prepare_script(down_script, migration.down_directives.no_transaction, traits)
        .map_err(|e| ExecError::Invalid(vec![e]))?;
    match timed(driver, &down, traits).await {
        Ok(ms) => entry.down_ms = Some(ms),
        Err(error) => return Ok((failed(entry, "the down script", error), None)),
    }
    let after_down = snapshot(driver).await?;
    entry.differences.extend(crate::drift::entries(&before, &after_down));
    match timed(driver, &up, traits).await {
        Ok(ms) => entry.reup_ms = Some(ms),
        // What the down left behind is usually why: that is the finding.
        Err(error) if !entry.differences.is_empty() => {
            let mut entry = failed(entry, REUP, error);
            entry.outcome = "residue";
            return Ok((entry, None));
        }
        Err(error) => return Ok((failed(entry, REUP, error), None)),
    }
    let again = snapshot(driver).await?;
    let differences = diff(&after_up, &again);
    entry.differences.extend(differences.iter().map(|d| {
        let mut e = crate::drift::entry(d);
        e.object = format!("{} (after the up run again)", e.object);
        e
    }));
    if !entry.differences.is_empty() {
        entry.outcome = "residue";
    }
    Ok((entry, Some(again)))
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

/// Runs a script, its time in milliseconds; a failure as "statement N of M: error".
async fn timed(
    driver: &mut dyn Driver,
    prepared: &crate::prepare::Prepared,
    traits: EngineTraits,
) -> Result<u64, String> {
    let started = Instant::now();
    run_prepared(driver, prepared, traits)
        .await
        .map_err(|(n, e)| format!("statement {n} of {}: {}", prepared.statements.len(), e.message))?;
    Ok(started.elapsed().as_millis() as u64)
}
