//! The throughput model behind `estimated_seconds`: rows per second for each
//! kind of work (a scan, an index build, a table rewrite) on this
//! installation. Three sources, best first:
//! 1. history: every migration that did one kind of heavy work on a table of
//!    at least [`MIN_ROWS`] rows leaves a `timing` event (work, rows, ms); the
//!    median of the newest [`HISTORY_RUNS`] of a kind (among the newest 500
//!    timing events; those on the statement's own table first, the most
//!    similar statements there are) is this database's own figure. Only a migration that is
//!    all heavy DDL of one kind over tables of known size leaves one;
//! 2. calibration: `airlock calibrate` times the three kinds of work on a
//!    scratch table and stores the rates in `airlock_meta` (key `calibration`);
//! 3. built-in defaults per engine, measured by bench/plan.sh.
//!
//! The same history gives a backup's pace: bytes of catalog size saved and
//! verified per second, and how much of that the store kept, from the
//! newest [`BACKUPS_READ`] backups' manifests.
//!
//! Reading them is read-only; a database without airlock's tables reads as defaults.

use std::time::{Duration, Instant};

use airlock_core::Event;
use airlock_driver::{BaseRates, Driver};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::ExecError;
use crate::report::Reporter;
use crate::{Context, Options, lease};

/// Tables smaller than this time mostly fixed costs: their runs teach nothing.
pub const MIN_ROWS: f64 = 10_000.0;
/// How many recent runs of a kind of work the history figure is the median of.
pub const HISTORY_RUNS: usize = 20;
/// How many of the newest timing events (all kinds) are read.
const TIMINGS_READ: usize = 500;
/// Runs shorter than this are mostly round trips and planning.
const MIN_MS: f64 = 50.0;
/// How many of the newest backups a backup's pace is the median of.
const BACKUPS_READ: usize = 5;
/// Backups shorter than this are mostly making and dropping a scratch database.
const MIN_BACKUP_MS: u64 = 1_000;

/// The heavy part of a statement's work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Work {
    /// Every row read (a validation, a full UPDATE).
    Scan,
    /// Every row read and sorted into a new index.
    Index,
    /// Every row written to a new copy of the table.
    Rewrite,
}

impl Work {
    /// All kinds, in a fixed order.
    pub const ALL: [Work; 3] = [Work::Scan, Work::Index, Work::Rewrite];

    /// The kind of work of a statement's effects, if any is heavy.
    pub fn of(effects: &airlock_plan::Effects) -> Option<Work> {
        match (effects.rewrites_table, effects.builds_index, effects.scans_table) {
            (true, _, _) => Some(Work::Rewrite),
            (false, true, _) => Some(Work::Index),
            (false, false, true) => Some(Work::Scan),
            _ => None,
        }
    }

    /// Its name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Work::Scan => "scan",
            Work::Index => "index",
            Work::Rewrite => "rewrite",
        }
    }
}

/// One kind of work's throughput and where the figure comes from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rate {
    /// Rows per second.
    pub rows_per_second: f64,
    /// `history (N runs)`, `calibration of <time>` or `built-in default`.
    pub source: String,
}

/// The throughput of each kind of work on this installation.
#[derive(Clone, Debug, PartialEq)]
pub struct Rates {
    scan: Rate,
    index: Rate,
    rewrite: Rate,
    /// The timings read, newest first, for per-table figures.
    timings: Vec<Timing>,
    /// How past backups of this database went, when any was timed.
    backup: Option<BackupPace>,
}

/// How fast backups of this database were taken and verified, and how
/// much of what they saved their store kept.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackupPace {
    /// Catalog bytes (tables with their indexes) saved and verified per second.
    pub bytes_per_second: f64,
    /// Stored (compressed) bytes per catalog byte.
    pub stored_per_byte: f64,
    /// The backups it is the median of.
    pub backups: usize,
}

/// What a backup's manifest says of its pace (the rest of it is not read here).
#[derive(Deserialize)]
struct BackupTimed {
    #[serde(default)]
    catalog_bytes: Option<u64>,
    stored_bytes: u64,
    duration_ms: u64,
}

impl BackupPace {
    /// The median pace of `backups` (newest first), or None when none of
    /// them knew its size and took long enough to tell.
    fn of(backups: &[BackupTimed]) -> Option<BackupPace> {
        let timed: Vec<(f64, f64)> = backups
            .iter()
            .filter(|b| b.duration_ms >= MIN_BACKUP_MS)
            .filter_map(|b| {
                let bytes = b.catalog_bytes.filter(|&c| c > 0)? as f64;
                Some((bytes / (b.duration_ms as f64 / 1000.0), b.stored_bytes as f64 / bytes))
            })
            .take(BACKUPS_READ)
            .collect();
        let median = |mut seen: Vec<f64>| {
            seen.sort_by(f64::total_cmp);
            let n = seen.len();
            if n % 2 == 1 { seen[n / 2] } else { (seen[n / 2 - 1] + seen[n / 2]) / 2.0 }
        };
        (!timed.is_empty()).then(|| BackupPace {
            bytes_per_second: median(timed.iter().map(|t| t.0).collect()),
            stored_per_byte: median(timed.iter().map(|t| t.1).collect()),
            backups: timed.len(),
        })
    }
}

/// What `airlock calibrate` measured and stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// When, UTC, RFC 3339.
    pub measured_at: String,
    /// Rows in the scratch table.
    pub rows: u64,
    /// Rows per second of a full scan.
    pub scan: f64,
    /// Rows per second of an index build.
    pub index: f64,
    /// Rows per second of a table rewrite.
    pub rewrite: f64,
}

impl Rates {
    /// The engine's built-in figures (its profile's), until history or a
    /// calibration replaces them.
    pub fn defaults(base: BaseRates) -> Rates {
        let rate = |rows_per_second| Rate { rows_per_second, source: "built-in default".to_owned() };
        Rates {
            scan: rate(base.scan),
            index: rate(base.index),
            rewrite: rate(base.rewrite),
            timings: Vec::new(),
            backup: None,
        }
    }

    /// How past backups of this database went, if any was timed.
    pub fn backup(&self) -> Option<&BackupPace> {
        self.backup.as_ref()
    }

    /// The rate of one kind of work.
    pub fn get(&self, work: Work) -> &Rate {
        match work {
            Work::Scan => &self.scan,
            Work::Index => &self.index,
            Work::Rewrite => &self.rewrite,
        }
    }

    fn set(&mut self, work: Work, rate: Rate) {
        match work {
            Work::Scan => self.scan = rate,
            Work::Index => self.index = rate,
            Work::Rewrite => self.rewrite = rate,
        }
    }

    /// Replaces the defaults with a stored calibration, then with history
    /// where this database has timed runs of that kind of work.
    pub fn refine(&mut self, calibration: Option<&Calibration>, timings: &[Timing]) {
        if let Some(c) = calibration {
            for (work, rows_per_second) in [(Work::Scan, c.scan), (Work::Index, c.index), (Work::Rewrite, c.rewrite)] {
                if rows_per_second.is_finite() && rows_per_second > 0.0 {
                    self.set(work, Rate { rows_per_second, source: format!("calibration of {}", c.measured_at) });
                }
            }
        }
        self.timings = timings.iter().filter(|t| t.rows >= MIN_ROWS && t.ms >= MIN_MS).cloned().collect();
        for work in Work::ALL {
            if let Some((median, runs)) = median_rate(self.timings.iter().filter(|t| t.work == work)) {
                self.set(work, Rate { rows_per_second: median, source: format!("history ({runs} run(s))") });
            }
        }
    }

    /// The rate for `work` on `table`: this table's own history when it has
    /// some (the most similar statements there are), else [`Rates::get`].
    pub fn for_table(&self, work: Work, table: &str) -> Rate {
        let own = self
            .timings
            .iter()
            .filter(|t| t.work == work && t.table.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(table)));
        match median_rate(own) {
            Some((median, runs)) => {
                Rate { rows_per_second: median, source: format!("history of `{table}` ({runs} run(s))") }
            }
            None => self.get(work).clone(),
        }
    }

    /// Reads the stored calibration and the timings history, newest first.
    /// Anything missing or unreadable leaves the defaults.
    pub(crate) async fn read(driver: &mut dyn Driver) -> Rates {
        let mut rates = Rates::defaults(driver.profile().default_rates);
        let stored = driver.read_meta(CALIBRATION_KEY).await;
        let calibration = stored.ok().flatten().and_then(|text| serde_json::from_str::<Calibration>(&text).ok());
        // One round trip for both kinds, each its newest; sorted here, as a
        // union keeps no order.
        let events = driver
            .query_text(&format!(
                "SELECT id, kind, detail FROM (SELECT id, kind, detail FROM airlock_events WHERE kind = 'timing' \
                 ORDER BY id DESC LIMIT {TIMINGS_READ}) AS t UNION ALL \
                 SELECT id, kind, detail FROM (SELECT id, kind, detail FROM airlock_events WHERE kind = 'backup' \
                 ORDER BY id DESC LIMIT {BACKUPS_READ}) AS b"
            ))
            .await
            .unwrap_or_default();
        let mut events: Vec<(i64, String, String)> = events
            .into_iter()
            .filter_map(|row| match <[Option<String>; 3]>::try_from(row).ok()? {
                [Some(id), Some(kind), Some(detail)] => Some((id.parse().ok()?, kind, detail)),
                _ => None,
            })
            .collect();
        events.sort_by_key(|e| std::cmp::Reverse(e.0));
        let of_kind = |kind: &'static str| events.iter().filter(move |e| e.1 == kind).map(|e| e.2.as_str());
        let timings: Vec<Timing> = of_kind("timing").filter_map(|text| serde_json::from_str(text).ok()).collect();
        let backups: Vec<BackupTimed> = of_kind("backup").filter_map(|text| serde_json::from_str(text).ok()).collect();
        rates.refine(calibration.as_ref(), &timings);
        rates.backup = BackupPace::of(&backups);
        rates
    }
}

/// The median rows per second of the newest [`HISTORY_RUNS`] timings, and how many there were.
fn median_rate<'a>(timings: impl Iterator<Item = &'a Timing>) -> Option<(f64, usize)> {
    let mut seen: Vec<f64> = timings.take(HISTORY_RUNS).map(|t| t.rows / (t.ms / 1000.0)).collect();
    if seen.is_empty() {
        return None;
    }
    seen.sort_by(f64::total_cmp);
    let n = seen.len();
    let median = if n % 2 == 1 { seen[n / 2] } else { (seen[n / 2 - 1] + seen[n / 2]) / 2.0 };
    Some((median, n))
}

/// One migration's heavy work and how long it took, as a `timing` event records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// The kind of work.
    pub work: Work,
    /// Rows of the tables worked on, from the catalog statistics before the run.
    pub rows: f64,
    /// How long the migration took.
    pub ms: f64,
    /// The table, when all the work was on one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

/// The `timing` event for a migration just applied in `working` time (waits
/// before retries left out), or None when it teaches nothing: only one that
/// is all heavy DDL of one kind over tables of known size does; anything
/// else in it would count against the work.
pub(crate) fn timing_of(
    version: &airlock_core::Version,
    assessed: &crate::plan::MigrationPlan,
    working: Duration,
) -> Option<Event> {
    let work: Option<Vec<_>> = assessed
        .statements
        .iter()
        .map(|s| match (s.work, s.estimated_rows, s.changes_rows, &s.table) {
            (Some(work), Some(rows), false, Some(table)) => Some((work, rows, table.clone())),
            _ => None,
        })
        .collect();
    timing_event(version, &work?, working)
}

/// The `timing` event for heavy work all of one kind (work, rows, table),
/// or None when it is mixed or too small or quick to teach a rate.
fn timing_event(version: &airlock_core::Version, work: &[(Work, f64, String)], elapsed: Duration) -> Option<Event> {
    let (first, _, table) = work.first()?;
    if work.iter().any(|(w, _, _)| w != first) {
        return None;
    }
    let rows: f64 = work.iter().map(|(_, r, _)| r).sum();
    let ms = elapsed.as_secs_f64() * 1000.0;
    if rows < MIN_ROWS || ms < MIN_MS {
        return None;
    }
    let table = work.iter().all(|(_, _, t)| t == table).then(|| table.clone());
    let detail = serde_json::to_string(&Timing { work: *first, rows, ms, table }).ok()?;
    Some(Event { kind: "timing".to_owned(), version: Some(version.clone()), detail })
}

const SCRATCH: &str = "airlock_calibration_scratch";

/// Where the calibration is kept in airlock's key/value table.
const CALIBRATION_KEY: &str = "calibration";

/// `airlock calibrate`: times a scan, a rewrite and an index build of a
/// scratch table of `rows` rows, under the run lock (never beside a
/// migration), drops the table and stores the rates for `plan` and
/// `migrate`. Touches no table but its own scratch table and airlock's.
pub async fn calibrate(options: &Options, rows: u64, reporter: &mut dyn Reporter) -> Result<Calibration, ExecError> {
    if rows < MIN_ROWS as u64 {
        return Err(ExecError::Usage(format!(
            "--rows {rows}: calibrating needs at least {} rows to time more than fixed costs",
            MIN_ROWS as u64
        )));
    }
    let ctx = Context::new(options);
    let mut driver = crate::connect(&options.url, true).await.map_err(ExecError::Connect)?;
    retry_conflicts!(driver.ensure_tables().await).map_err(ExecError::db("creating airlock's tables"))?;
    // No statement limit: the scratch table is airlock's own.
    driver
        .set_timeouts(airlock_driver::Timeouts { lock: options.timeouts.lock, statement: Duration::ZERO })
        .await
        .map_err(ExecError::db("setting timeouts"))?;
    let held = lease::acquire(driver.as_mut(), &ctx, reporter).await?;
    let measured = measure(driver.as_mut(), rows).await;
    let cleanup = drop_scratch(driver.as_mut()).await;
    let outcome = match (measured, cleanup) {
        (Ok(c), Ok(())) => store(driver.as_mut(), &ctx, &c).await.map(|()| c),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    };
    held.release(driver.as_mut()).await;
    outcome
}

async fn drop_scratch(driver: &mut dyn Driver) -> Result<(), ExecError> {
    for table in [format!("{SCRATCH}_copy"), SCRATCH.to_owned()] {
        driver
            .execute(&format!("DROP TABLE IF EXISTS {table}"))
            .await
            .map_err(ExecError::db("dropping the calibration's scratch table"))?;
    }
    Ok(())
}

async fn measure(driver: &mut dyn Driver, rows: u64) -> Result<Calibration, ExecError> {
    drop_scratch(driver).await?;
    let workload = (driver.profile().calibration)(SCRATCH, rows);
    for sql in &workload.fill {
        driver.execute(sql).await.map_err(ExecError::db("filling the calibration's scratch table"))?;
    }
    let mut rates = BaseRates { scan: 0.0, index: 0.0, rewrite: 0.0 };
    // The scan first (the table as filled), the rewrite before the index build.
    for (work, sql) in
        [(Work::Scan, &workload.scan), (Work::Rewrite, &workload.rewrite), (Work::Index, &workload.index)]
    {
        let started = Instant::now();
        driver.execute(sql).await.map_err(ExecError::db(&format!("timing a {} for calibration", work.as_str())))?;
        let rate = rows as f64 / started.elapsed().as_secs_f64().max(1e-6);
        match work {
            Work::Scan => rates.scan = rate,
            Work::Index => rates.index = rate,
            Work::Rewrite => rates.rewrite = rate,
        }
    }
    Ok(Calibration {
        measured_at: Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        rows,
        scan: rates.scan,
        index: rates.index,
        rewrite: rates.rewrite,
    })
}

async fn store(driver: &mut dyn Driver, ctx: &Context, c: &Calibration) -> Result<(), ExecError> {
    let value = serde_json::to_string(c).map_err(|e| ExecError::Usage(e.to_string()))?;
    driver.write_meta(CALIBRATION_KEY, &value).await.map_err(ExecError::db("storing the calibration"))?;
    let event = Event { kind: "calibrated".to_owned(), version: None, detail: json!(c).to_string() };
    driver.append_event(&event, &ctx.actor).await.map_err(ExecError::db("recording the calibration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Built-in figures of some engine.
    const BASE: BaseRates = BaseRates { scan: 2.5e6, index: 2.5e6, rewrite: 8e5 };

    fn timing(work: Work, rows: f64, ms: f64) -> Timing {
        Timing { work, rows, ms, table: None }
    }

    #[test]
    fn a_backups_pace_is_the_median_of_the_newest_that_tell() {
        let backup = |catalog_bytes: Option<u64>, stored_bytes: u64, duration_ms: u64| BackupTimed {
            catalog_bytes,
            stored_bytes,
            duration_ms,
        };
        assert_eq!(BackupPace::of(&[]), None);
        // Too quick, or of an unknown size: nothing to tell.
        assert_eq!(BackupPace::of(&[backup(Some(1 << 30), 1 << 28, 999), backup(None, 10, 60_000)]), None);
        let pace = BackupPace::of(&[
            backup(Some(100_000_000), 25_000_000, 10_000), // 10 MB/s, a quarter kept
            backup(Some(100_000_000), 50_000_000, 2_000),  // 50 MB/s, half
            backup(Some(100_000_000), 20_000_000, 5_000),  // 20 MB/s, a fifth
            backup(Some(100), 1, 10),                      // too quick: skipped
        ])
        .unwrap();
        assert_eq!(pace, BackupPace { bytes_per_second: 20e6, stored_per_byte: 0.25, backups: 3 });
        // Only the newest BACKUPS_READ count.
        let many: Vec<BackupTimed> =
            (0..8).map(|i| backup(Some(1_000_000), 1, if i < BACKUPS_READ { 1_000 } else { 100_000 })).collect();
        assert_eq!(BackupPace::of(&many).unwrap().bytes_per_second, 1e6);
    }

    #[test]
    fn history_beats_calibration_beats_defaults() {
        let mut rates = Rates::defaults(BASE);
        let calibration = Calibration {
            measured_at: "2026-11-21T10:00:00Z".into(),
            rows: 200_000,
            scan: 4e6,
            index: 1e6,
            rewrite: 5e5,
        };
        let timings = [
            timing(Work::Rewrite, 1e6, 2000.0),
            timing(Work::Rewrite, 1e6, 4000.0),
            timing(Work::Rewrite, 1e6, 1000.0),
            // Too small or too quick to count.
            timing(Work::Rewrite, 500.0, 1000.0),
            timing(Work::Index, 1e6, 10.0),
        ];
        rates.refine(Some(&calibration), &timings);
        assert_eq!(rates.get(Work::Rewrite).rows_per_second, 500_000.0);
        assert_eq!(rates.get(Work::Rewrite).source, "history (3 run(s))");
        assert_eq!(rates.get(Work::Index).rows_per_second, 1e6);
        assert!(rates.get(Work::Index).source.starts_with("calibration of 2026-11-21"));
        assert_eq!(rates.get(Work::Scan).rows_per_second, 4e6);
    }

    #[test]
    fn a_tables_own_history_comes_first() {
        let mut rates = Rates::defaults(BASE);
        let orders = Timing { table: Some("orders".into()), ..timing(Work::Rewrite, 1e6, 10_000.0) };
        rates.refine(None, &[orders, timing(Work::Rewrite, 1e6, 1000.0), timing(Work::Rewrite, 1e6, 1000.0)]);
        let own = rates.for_table(Work::Rewrite, "ORDERS");
        assert_eq!((own.rows_per_second, own.source.as_str()), (100_000.0, "history of `ORDERS` (1 run(s))"));
        assert_eq!(rates.for_table(Work::Rewrite, "users").source, "history (3 run(s))");
    }

    #[test]
    fn only_single_kind_heavy_work_is_timed() {
        let v = airlock_core::Version::parse("1").unwrap();
        let t = |work, rows: f64, table: &str| (work, rows, table.to_owned());
        let one = timing_event(&v, &[t(Work::Index, 50_000.0, "orders")], Duration::from_millis(200)).unwrap();
        let timing: Timing = serde_json::from_str(&one.detail).unwrap();
        assert_eq!((timing.work, timing.rows, timing.table.as_deref()), (Work::Index, 50_000.0, Some("orders")));
        let two =
            timing_event(&v, &[t(Work::Index, 50_000.0, "a"), t(Work::Index, 1.0, "b")], Duration::from_millis(200))
                .unwrap();
        assert_eq!(serde_json::from_str::<Timing>(&two.detail).unwrap().table, None);
        assert!(
            timing_event(&v, &[t(Work::Index, 50_000.0, "a"), t(Work::Rewrite, 50_000.0, "a")], Duration::from_secs(1))
                .is_none()
        );
        assert!(timing_event(&v, &[t(Work::Index, 500.0, "a")], Duration::from_secs(1)).is_none());
        assert!(timing_event(&v, &[], Duration::from_secs(1)).is_none());
    }
}
