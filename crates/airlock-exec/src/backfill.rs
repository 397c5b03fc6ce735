//! Backfills: a data migration marked `-- airlock:backfill` runs each of
//! its statements over one range of its table's primary key at a time.
//!
//! Each batch is a short transaction of its own (under the lock timeout, so
//! it never queues long behind a lock), and the checkpoint — the last key
//! done, the rows changed — is written in that same transaction
//! (`Driver::run_batch`): a process killed at any instant resumes where the
//! last committed batch ended, and no row is changed twice or skipped. The
//! checkpoint lives in `airlock_meta` under `backfill:<version>` until the
//! migration is recorded applied.
//!
//! The batch size moves toward a target duration per batch (halved at
//! most, doubled at most, each time), within bounds; `max_rows_per_second`
//! caps the pace; a batch that hits the lock timeout is tried again,
//! smaller, after a backoff.

use std::time::{Duration, Instant};

use airlock_core::{Event, Migration, RunMode, RunState};
use airlock_driver::{Driver, DriverError, ErrorKind, Timeouts};
use airlock_sql::backfill::{Batchable, KeyColumn};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Context;
use crate::error::{ExecError, FailedStatement, InvalidMigration};
use crate::lease::HeldLease;
use crate::prepare::Prepared;
use crate::report::Reporter;

/// How backfills run (`[backfill]` in airlock.toml).
#[derive(Clone, Debug, PartialEq)]
pub struct BackfillSettings {
    /// The duration each batch aims at. Defaults to 200 ms.
    pub batch_target: Duration,
    /// The smallest batch, in rows. Defaults to 100.
    pub batch_min: u64,
    /// The largest batch, in rows. Defaults to 50,000.
    pub batch_max: u64,
    /// The first batch, in rows. Defaults to 1,000.
    pub batch_first: u64,
    /// At most this many rows (of the table, passed over) per second. None: no cap.
    pub max_rows_per_second: Option<u64>,
    /// How long a batch may wait for a lock before it is tried again smaller.
    /// Defaults to 2 s; a migration's `-- airlock:lock-timeout` wins.
    pub lock_timeout: Duration,
    /// Replicas of the database (`replicas` in airlock.toml): batches wait
    /// while one replays more than `max_replica_lag` behind, or cannot be reached.
    pub replicas: Vec<airlock_driver::DatabaseUrl>,
    /// How far behind a replica may be. Defaults to 5 s.
    pub max_replica_lag: Duration,
    /// After a migration that takes a lock replicas replay (or rewrites a
    /// table), `migrate` waits up to this long for them to replay within
    /// `max_replica_lag`; None: it does not wait.
    pub wait_for_replicas: Option<Duration>,
}

impl Default for BackfillSettings {
    fn default() -> BackfillSettings {
        BackfillSettings {
            batch_target: Duration::from_millis(200),
            batch_min: 100,
            batch_max: 50_000,
            batch_first: 1_000,
            max_rows_per_second: None,
            lock_timeout: Duration::from_secs(2),
            replicas: Vec::new(),
            max_replica_lag: Duration::from_secs(5),
            wait_for_replicas: None,
        }
    }
}

/// Where a backfill stands, kept in `airlock_meta` and committed with each batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The checksum of the file it started with: a changed file does not resume.
    pub checksum: String,
    /// The statement running (0-based); the number of statements when all are done.
    pub statement: usize,
    /// The key of the last row of this statement's table done; None before its first batch.
    pub after: Option<Vec<String>>,
    /// Rows of this statement's table passed over.
    pub keys_done: u64,
    /// Rows of this statement's table when it started.
    pub keys_total: u64,
    /// Rows changed, every statement so far.
    pub rows_done: u64,
    /// Batches committed, every statement so far.
    pub batches: u64,
    /// The size of the next batch.
    pub batch_size: u64,
    /// When the first batch started.
    pub started_at: DateTime<Utc>,
    /// When the last batch committed.
    pub updated_at: DateTime<Utc>,
    /// Recorded applied, in the same transaction as this.
    #[serde(default)]
    pub done: bool,
    /// The key columns of the statement running, as its batches were cut:
    /// a key that changed since does not resume.
    #[serde(default)]
    pub key: Vec<String>,
    /// When the statement running began (its ETA's pace).
    #[serde(default)]
    pub statement_started_at: Option<DateTime<Utc>>,
}

/// What a person asked of a backfill (`airlock backfill pause|resume|cancel`),
/// kept in `airlock_meta` under `backfill-control:<version>` and read
/// between batches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    /// `pause`, `cancel` or `resume`.
    pub action: String,
    /// Who asked (`user@host`).
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Why, when they said.
    #[serde(default)]
    pub reason: Option<String>,
}

impl Control {
    fn describe(&self, version: &str) -> String {
        let why = self.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        let at = self.at.format("%Y-%m-%d %H:%M:%S UTC");
        match self.action.as_str() {
            "pause" => format!(
                "backfill {version} is paused by {} since {at}{why}: `airlock backfill resume {version}` lets it go on",
                self.by
            ),
            _ => format!(
                "backfill {version} was cancelled by {} at {at}{why}: `airlock backfill resume {version}` goes on where it stopped, `--from-start` starts it over",
                self.by
            ),
        }
    }
}

/// What `backfill pause|resume|cancel` can ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlAction {
    /// Batches wait: a run going on waits between batches, a new run refuses.
    Pause,
    /// Batches go on (from where they stopped, or with `from_start` from the first row).
    Resume {
        /// Forget the checkpoint: the next run starts at the first row.
        from_start: bool,
    },
    /// A run going on stops between batches; runs refuse it until it is resumed.
    Cancel,
}

fn control_key(version: &str) -> String {
    format!("backfill-control:{version}")
}

/// The pause or cancel in force for a backfill, None when none is.
async fn read_control(driver: &mut dyn Driver, version: &str) -> Result<Option<Control>, ExecError> {
    let text = driver.read_meta(&control_key(version)).await.map_err(ExecError::db("reading a backfill's control"))?;
    Ok(text.and_then(|t| serde_json::from_str::<Control>(&t).ok()).filter(|c| c.action != "resume"))
}

fn held_back(control: &Control, version: &airlock_core::Version) -> ExecError {
    ExecError::Blocked {
        problems: vec![airlock_core::Problem {
            code: airlock_core::ProblemCode::BackfillHeld,
            version: Some(version.clone()),
            message: control.describe(&version.to_string()),
            detail: None,
            blocking: true,
        }],
    }
}

/// `airlock backfill pause|resume|cancel VERSION`: records what was asked
/// where a run reads it between batches, and in history. Returns the message to show.
pub async fn backfill_control(
    options: &crate::Options,
    version: &airlock_core::Version,
    action: ControlAction,
    reason: Option<String>,
) -> Result<String, ExecError> {
    let ctx = Context::new(options);
    let discovered = options.discover()?;
    let Some(migration) = discovered.migrations.iter().find(|m| &m.version == version) else {
        return Err(ExecError::Usage(format!("there is no migration {version} in the migrations directory")));
    };
    if !migration.directives.backfill {
        return Err(ExecError::Usage(format!(
            "migration {version} ({}) is not a backfill (`-- airlock:backfill`)",
            migration.name
        )));
    }
    let mut driver = crate::connect(&options.url, false).await.map_err(ExecError::Connect)?;
    let applied = driver
        .read_history()
        .await
        .map_err(ExecError::db("reading history"))?
        .iter()
        .any(|r| &r.version == version && r.state.is_applied());
    if applied {
        return Err(ExecError::Usage(format!("backfill {version} ({}) is done: it is applied", migration.name)));
    }
    retry_conflicts!(driver.ensure_tables().await).map_err(ExecError::db("creating airlock's tables"))?;
    let v = version.to_string();
    if matches!(action, ControlAction::Resume { from_start: true }) {
        let lease = driver.read_lease().await.map_err(ExecError::db("reading the run lock"))?;
        if let Some(holder) = lease.filter(|l| l.version.as_deref() == Some(v.as_str())) {
            return Err(ExecError::Usage(format!(
                "a run is applying backfill {v} now ({}): `airlock backfill cancel {v}` first, then start it over",
                holder.describe()
            )));
        }
    }
    let (name, event) = match action {
        ControlAction::Pause => ("pause", "backfill_paused"),
        ControlAction::Resume { .. } => ("resume", "backfill_resumed"),
        ControlAction::Cancel => ("cancel", "backfill_cancelled"),
    };
    let control = Control {
        action: name.to_owned(),
        by: format!("{}@{}", ctx.actor.os_user, ctx.actor.host),
        at: Utc::now(),
        reason: reason.clone(),
    };
    let text = serde_json::to_string(&control).unwrap_or_default();
    driver.write_meta(&control_key(&v), &text).await.map_err(ExecError::db("recording the backfill's control"))?;
    let from_start = matches!(action, ControlAction::Resume { from_start: true });
    if from_start {
        driver.write_meta(&meta_key(&v), "null").await.map_err(ExecError::db("forgetting the checkpoint"))?;
    }
    let detail = json!({ "reason": reason, "from_start": from_start });
    let _ = driver.append_event(&crate::admin::event(event, version, detail), &ctx.actor).await;
    Ok(match action {
        ControlAction::Pause => format!(
            "Paused backfill {v}: a run going on waits between batches; new runs refuse it until `airlock backfill resume {v}`."
        ),
        ControlAction::Resume { from_start: false } => format!(
            "Backfill {v} may go on: a waiting run continues; `airlock migrate` or `airlock backfill run` resumes it where it stopped."
        ),
        ControlAction::Resume { from_start: true } => format!(
            "Backfill {v} starts over: its checkpoint is forgotten, and the next run begins at the first row (rows changed so far stay changed)."
        ),
        ControlAction::Cancel => format!(
            "Cancelled backfill {v}: a run going on stops between batches; runs refuse it until `airlock backfill resume {v}`."
        ),
    })
}

/// The `airlock_meta` key of a version's checkpoint.
pub(crate) fn meta_key(version: &str) -> String {
    format!("backfill:{version}")
}

/// A backfill's progress, told after each batch.
#[derive(Clone, Debug)]
pub struct BackfillProgress {
    /// The migration's version.
    pub version: String,
    /// The table of the statement running.
    pub table: String,
    /// The statement running (1-based) and how many there are.
    pub statement: (usize, usize),
    /// Rows of the table passed over, and its rows when the statement started.
    pub keys: (u64, u64),
    /// Rows changed so far.
    pub rows_done: u64,
    /// The next batch's size.
    pub batch_size: u64,
    /// Rows passed over per second since this run started.
    pub rate: f64,
}

/// The size after a batch of `size` rows took `took`: toward `target`,
/// at most halved or doubled, within the bounds.
pub(crate) fn next_size(size: u64, took: Duration, settings: &BackfillSettings) -> u64 {
    let ratio = settings.batch_target.as_secs_f64() / took.as_secs_f64().max(0.000_1);
    let proposed = (size as f64 * ratio.clamp(0.5, 2.0)).round() as u64;
    proposed.clamp(settings.batch_min.max(1), settings.batch_max.max(settings.batch_min.max(1)))
}

/// How long a replica has to answer before it counts as unreachable.
const REPLICA_ANSWER: Duration = Duration::from_secs(5);

/// The replicas a backfill waits for, each on a connection of its own.
struct Replicas {
    urls: Vec<airlock_driver::DatabaseUrl>,
    connections: Vec<Option<Box<dyn Driver>>>,
    max: Duration,
    /// When they were last asked: at most twice a second.
    asked: Option<Instant>,
}

impl Replicas {
    /// Connects to each and asks once: a database that is not a replica
    /// (or not of this engine) refuses the run before its first batch.
    async fn open(settings: &BackfillSettings, engine: airlock_driver::Engine) -> Result<Replicas, ExecError> {
        if let Some(other) = settings.replicas.iter().find(|u| u.engine() != engine) {
            return Err(ExecError::Usage(format!(
                "replica {other} (`replicas` in airlock.toml) is not a {} database",
                engine.name()
            )));
        }
        let mut replicas = Replicas {
            urls: settings.replicas.clone(),
            connections: Vec::new(),
            max: settings.max_replica_lag,
            asked: None,
        };
        for url in &replicas.urls {
            let mut connection = crate::connect(url, false).await.map_err(|e| {
                ExecError::Usage(format!("replica {url} (`replicas` in airlock.toml) cannot be reached: {e}"))
            })?;
            if let Err(e) = connection.replica_lag().await {
                return Err(ExecError::Usage(format!("replica {url} (`replicas` in airlock.toml): {e}")));
            }
            replicas.connections.push(Some(connection));
        }
        Ok(replicas)
    }

    /// Why batches should wait now: a replica too far behind, one that
    /// cannot say how far, or one that cannot be reached. None: go on.
    async fn behind(&mut self) -> Option<String> {
        if self.urls.is_empty() || self.asked.is_some_and(|t| t.elapsed() < Duration::from_millis(500)) {
            return None;
        }
        self.asked = Some(Instant::now());
        for (url, slot) in self.urls.iter().zip(self.connections.iter_mut()) {
            if slot.is_none() {
                match tokio::time::timeout(REPLICA_ANSWER, crate::connect(url, false)).await {
                    Ok(Ok(connection)) => *slot = Some(connection),
                    Ok(Err(e)) => return Some(format!("replica {url} cannot be reached ({e})")),
                    Err(_) => return Some(format!("replica {url} cannot be reached (no answer within 5 s)")),
                }
            }
            let Some(connection) = slot.as_mut() else { continue };
            let Ok(lag) = tokio::time::timeout(REPLICA_ANSWER, connection.replica_lag()).await else {
                *slot = None;
                return Some(format!("replica {url} did not answer within 5 s"));
            };
            match lag {
                Ok(Some(lag)) if lag > self.max => {
                    return Some(format!(
                        "replica {url} replays {:.1} s behind (max_replica_lag {:.1} s)",
                        lag.as_secs_f64(),
                        self.max.as_secs_f64()
                    ));
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Some(format!("replica {url} cannot say how far behind it is (is replication stopped?)"));
                }
                Err(e) => {
                    *slot = None;
                    return Some(format!("replica {url} did not answer ({e})"));
                }
            }
        }
        None
    }
}

/// Waits while `replicas` say to, telling each new reason; returns at once
/// when they do not. A signal ends the wait (the caller then stops).
async fn wait_for_replicas(ctx: &Context, replicas: &mut Replicas, version: &str, reporter: &mut dyn Reporter) {
    let asked = tokio::select! {
        why = replicas.behind() => why,
        () = ctx.options.interrupt.wait() => return,
    };
    let Some(mut why) = asked else { return };
    let started = Instant::now();
    reporter.backfill_paused(version, &why);
    loop {
        ctx.options.interrupt.sleep(Duration::from_millis(500)).await;
        if ctx.options.interrupt.raised().is_some() {
            return;
        }
        let asked = tokio::select! {
            why = replicas.behind() => why,
            () = ctx.options.interrupt.wait() => return,
        };
        match asked {
            None => break,
            Some(now) if now != why && !same_reason(&now, &why) => {
                reporter.backfill_paused(version, &now);
                why = now;
            }
            Some(_) => {}
        }
    }
    reporter.backfill_resumed(version, started.elapsed());
}

/// The longest a backfill gives way after one batch others waited on.
const GIVE_WAY_MAX: Duration = Duration::from_secs(2);

/// After a batch that other sessions waited on (for its locks, just before
/// it committed), the backfill pauses as long as that batch took, so the
/// waiters get the table for at least as long as the batch had it, and its
/// batches shrink (the caller halves them). Said once when it starts giving
/// way, and once when a batch goes by with nobody waiting: `paused` holds
/// how long it has paused since it started giving way.
async fn give_way(
    ctx: &Context,
    paused: &mut Option<Duration>,
    batch: &airlock_driver::Batch,
    took: Duration,
    next_size: u64,
    version: &str,
    reporter: &mut dyn Reporter,
) {
    if batch.waiters == 0 {
        if let Some(paused) = paused.take() {
            reporter.backfill_resumed(version, paused);
        }
        return;
    }
    let paused = paused.get_or_insert_with(|| {
        reporter.backfill_paused(
            version,
            &format!(
                "{} waited for locks its last batch held; it pauses after each batch for as long as the batch took, with smaller batches ({next_size} keys), until a batch goes by with nobody waiting",
                match batch.waiters {
                    1 => "1 session".to_string(),
                    n => format!("{n} sessions"),
                }
            ),
        );
        Duration::ZERO
    });
    let pause = took.clamp(Duration::from_millis(10), GIVE_WAY_MAX);
    ctx.options.interrupt.sleep(pause).await;
    *paused += pause;
    ctx.paused_ms.fetch_add(pause.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
}

/// Reads the control at most twice a second: paused, waits (saying so)
/// until resumed or cancelled; returns the cancel, if it comes.
async fn wait_while_paused(
    driver: &mut dyn Driver,
    ctx: &Context,
    version: &str,
    asked: &mut Instant,
    reporter: &mut dyn Reporter,
) -> Result<Option<Control>, ExecError> {
    if asked.elapsed() < Duration::from_millis(500) {
        return Ok(None);
    }
    *asked = Instant::now();
    let Some(mut control) = read_control(driver, version).await? else { return Ok(None) };
    if control.action == "pause" {
        let started = Instant::now();
        reporter.backfill_paused(version, &control.describe(version));
        loop {
            ctx.options.interrupt.sleep(Duration::from_millis(500)).await;
            if ctx.options.interrupt.raised().is_some() {
                return Ok(None);
            }
            match read_control(driver, version).await? {
                None => {
                    reporter.backfill_resumed(version, started.elapsed());
                    return Ok(None);
                }
                Some(c) if c.action == "pause" => {}
                Some(c) => {
                    control = c;
                    break;
                }
            }
        }
    }
    Ok(Some(control))
}

/// Two reasons that differ only in a figure (the lag grew) are one pause.
fn same_reason(a: &str, b: &str) -> bool {
    fn words(s: &str) -> Vec<&str> {
        s.split_whitespace().filter(|w| !w.chars().any(|c| c.is_ascii_digit())).collect()
    }
    words(a) == words(b)
}

/// One statement ready to batch: what it does and the key cutting it.
struct Cut<'a> {
    batchable: Batchable,
    key: Vec<KeyColumn>,
    statement: &'a airlock_sql::Statement,
}

fn invalid(migration: &Migration, statement: &airlock_sql::Statement, message: String) -> ExecError {
    ExecError::Invalid(vec![InvalidMigration {
        path: migration.up.path.clone(),
        line: Some(statement.line + migration.up.line_offset),
        message,
    }])
}

/// Each statement of a backfill analyzed and its table's key read; any
/// that cannot be batched refuses the whole migration before a batch runs.
async fn cut<'a>(
    driver: &mut dyn Driver,
    migration: &Migration,
    prepared: &'a Prepared,
    dialect: airlock_sql::Dialect,
) -> Result<Vec<Cut<'a>>, ExecError> {
    let mut cuts = Vec::new();
    for statement in &prepared.statements {
        let batchable = airlock_sql::backfill::analyze(&statement.sql, dialect).map_err(|why| {
            invalid(migration, statement, format!("this backfill statement cannot run in batches: {why}"))
        })?;
        let key = match driver.primary_key(&batchable.table).await {
            Ok(Some(key)) => key,
            Ok(None) => {
                return Err(invalid(
                    migration,
                    statement,
                    format!(
                        "table `{}` has no primary key, which a backfill cuts its batches on; add one in a schema migration before the backfill",
                        batchable.table
                    ),
                ));
            }
            Err(e) if matches!(e.kind, ErrorKind::Statement | ErrorKind::Unsupported) => {
                return Err(invalid(migration, statement, e.message));
            }
            Err(e) => return Err(ExecError::db("reading the primary key of a backfill's table")(e)),
        };
        batchable.check_key(&key).map_err(|why| {
            invalid(migration, statement, format!("this backfill statement cannot run in batches: {why}"))
        })?;
        cuts.push(Cut { batchable, key, statement });
    }
    Ok(cuts)
}

/// Reads a backfill's checkpoint, None before its first batch.
pub(crate) async fn read_checkpoint(driver: &mut dyn Driver, version: &str) -> Result<Option<Checkpoint>, ExecError> {
    let Some(text) =
        driver.read_meta(&meta_key(version)).await.map_err(ExecError::db("reading a backfill's checkpoint"))?
    else {
        return Ok(None);
    };
    serde_json::from_str::<Option<Checkpoint>>(&text).map_err(|e| {
        ExecError::Usage(format!(
            "the checkpoint of backfill {version} in airlock_meta cannot be read ({e}): it was written by another airlock, or by hand"
        ))
    })
}

fn key_text(key: &Option<Vec<String>>) -> String {
    match key {
        Some(key) if key.len() == 1 => key[0].clone(),
        Some(key) => format!("({})", key.join(", ")),
        None => "the start".to_owned(),
    }
}

/// Runs a backfill migration from its checkpoint to its end and records it
/// applied. Returns how long this run of it took.
pub(crate) async fn run(
    driver: &mut dyn Driver,
    ctx: &Context,
    held: &HeldLease,
    migration: &Migration,
    prepared: &Prepared,
    reporter: &mut dyn Reporter,
) -> Result<Duration, ExecError> {
    let started = Instant::now();
    let version = migration.version.to_string();
    let settings = &ctx.options.backfill;
    let cuts = cut(driver, migration, prepared, ctx.options.engine_traits().dialect).await?;
    let now = Utc::now();
    let mut checkpoint = match read_checkpoint(driver, &version).await?.filter(|c| !c.done) {
        Some(c) if c.checksum != migration.checksum => {
            return Err(invalid(
                migration,
                &prepared.statements[c.statement.min(prepared.statements.len().saturating_sub(1))],
                format!(
                    "this backfill started from a different file ({} rows changed, up to key {} of statement {}); put the file back as it was to resume it, or start the new one over with `airlock backfill resume {} --from-start`",
                    c.rows_done,
                    key_text(&c.after),
                    c.statement + 1,
                    migration.version
                ),
            ));
        }
        // (A checkpoint of a run recorded applied: the migration was rolled back since, and runs anew.)
        Some(c) => c,
        None => Checkpoint {
            checksum: migration.checksum.clone(),
            statement: 0,
            after: None,
            keys_done: 0,
            keys_total: 0,
            rows_done: 0,
            batches: 0,
            batch_size: settings.batch_first.clamp(settings.batch_min.max(1), settings.batch_max.max(1)),
            started_at: now,
            updated_at: now,
            done: false,
            key: Vec::new(),
            statement_started_at: Some(now),
        },
    };
    if let Some(cut) = cuts.get(checkpoint.statement) {
        let names: Vec<String> = cut.key.iter().map(|k| k.name.clone()).collect();
        if checkpoint.after.is_some() && checkpoint.key != names {
            return Err(invalid(
                migration,
                cut.statement,
                format!(
                    "the primary key of `{}` is ({}) now, but this backfill's batches were cut on ({}) up to key {}; it cannot resume on another key: `airlock backfill resume {} --from-start` starts it over",
                    cut.batchable.table,
                    names.join(", "),
                    checkpoint.key.join(", "),
                    key_text(&checkpoint.after),
                    migration.version
                ),
            ));
        }
    }
    if let Some(control) = read_control(driver, &version).await? {
        return Err(held_back(&control, &migration.version));
    }
    let mut replicas = Replicas::open(settings, ctx.options.url.engine()).await?;
    held.working_on(driver, Some(&version)).await?;
    let directives = &migration.directives;
    let timeouts = Timeouts {
        lock: directives.lock_timeout.unwrap_or(settings.lock_timeout),
        statement: directives.statement_timeout.unwrap_or(ctx.options.timeouts.statement),
    };
    driver.set_timeouts(timeouts).await.map_err(ExecError::db("setting timeouts"))?;
    let meta = meta_key(&version);
    let mut passed_this_run = 0u64;
    let mut asked = Instant::now();
    let mut giving_way = None;
    while checkpoint.statement < cuts.len() {
        let cut = &cuts[checkpoint.statement];
        if checkpoint.after.is_none() && checkpoint.keys_done == 0 {
            let count = driver.query_text(&cut.batchable.count_rows()).await.map_err(ExecError::db("counting rows"))?;
            checkpoint.keys_total =
                count.first().and_then(|r| r.first().cloned().flatten()).and_then(|n| n.parse().ok()).unwrap_or(0);
            checkpoint.key = cut.key.iter().map(|k| k.name.clone()).collect();
            checkpoint.statement_started_at = Some(Utc::now());
        }
        let mut attempt = 0;
        loop {
            let stopped = || {
                format!(
                    "backfill {version} ({}) stopped between batches: {} rows changed so far, committed with its checkpoint at key {} of statement {}; `airlock migrate` resumes it there",
                    migration.name,
                    checkpoint.rows_done,
                    key_text(&checkpoint.after),
                    checkpoint.statement + 1
                )
            };
            if held.lost() {
                return Err(ExecError::LeaseLost);
            }
            ctx.options.interrupt.check(stopped)?;
            wait_for_replicas(ctx, &mut replicas, &version, reporter).await;
            ctx.options.interrupt.check(stopped)?;
            if let Some(cancelled) = wait_while_paused(driver, ctx, &version, &mut asked, reporter).await? {
                return Err(held_back(&cancelled, &migration.version));
            }
            ctx.options.interrupt.check(stopped)?;
            let size = checkpoint.batch_size;
            let boundary = cut.batchable.next_boundary(&cut.key, checkpoint.after.as_deref(), size);
            let rows =
                driver.query_text(&boundary).await.map_err(ExecError::db("reading where the next batch ends"))?;
            let through: Option<Vec<String>> = match rows.into_iter().next() {
                None => None,
                Some(row) if row.iter().any(Option::is_none) => {
                    return Err(invalid(
                        migration,
                        cut.statement,
                        format!(
                            "`{}` has a row whose primary key ({}) is NULL (SQLite allows it): no key range holds it, so a backfill would skip it; give it a key, or make the key NOT NULL",
                            cut.batchable.table,
                            checkpoint.key.join(", ")
                        ),
                    ));
                }
                Some(row) => Some(row.into_iter().flatten().collect()),
            };
            if through.is_some() && through == checkpoint.after {
                // The key read back does not compare as the server printed it: never loop on it.
                return Err(invalid(
                    migration,
                    cut.statement,
                    format!(
                        "the key of `{}` read back as {} does not compare as written, so batches would not move on; airlock cannot batch on a key of this type",
                        cut.batchable.table,
                        key_text(&through)
                    ),
                ));
            }
            let sql = cut.batchable.batch(&cut.key, checkpoint.after.as_deref(), through.as_deref());
            let mut next = checkpoint.clone();
            next.batches += 1;
            next.updated_at = Utc::now();
            match &through {
                Some(_) => {
                    next.after = through.clone();
                    next.keys_done += size;
                }
                None => {
                    next.statement += 1;
                    next.after = None;
                    next.keys_done = 0;
                    next.keys_total = 0;
                    next.key = Vec::new();
                    next.statement_started_at = None;
                }
            }
            let record_of = |changed: u64| {
                let mut next = next.clone();
                next.rows_done += changed;
                serde_json::to_string(&next).unwrap_or_default()
            };
            let batch_started = Instant::now();
            let cancel = driver.canceller();
            let batch = driver.run_batch(held.owner(), &version, &sql, &meta, &record_of);
            let ran = ctx.options.interrupt.cancellable(cancel, batch).await;
            let took = batch_started.elapsed();
            let done = match ran {
                Ok(Some(done)) => done,
                Ok(None) => return Err(ExecError::LeaseLost),
                Err(_) if ctx.options.interrupt.raised().is_some() => {
                    let _ = driver.rollback().await;
                    return Err(ctx.options.interrupt.check(stopped).expect_err("a signal was raised"));
                }
                // A batch is atomic: one that waited too long for a lock, or lost a
                // deadlock to a writer, is tried again, smaller.
                Err(e)
                    if matches!(e.kind, ErrorKind::LockTimeout | ErrorKind::Conflict)
                        && attempt < ctx.options.lock_retries =>
                {
                    attempt += 1;
                    checkpoint.batch_size = (size / 2).max(settings.batch_min.max(1));
                    crate::apply::pause_before_retry(driver, ctx, migration, checkpoint.statement, attempt, reporter)
                        .await;
                    continue;
                }
                Err(e) => return Err(failed(driver, ctx, migration, cut, &checkpoint, e).await),
            };
            attempt = 0;
            let last = through.is_none();
            let passed = if last { checkpoint.keys_total.saturating_sub(checkpoint.keys_done) } else { size };
            passed_this_run += passed;
            let table = cut.batchable.table.to_string();
            let keys = (checkpoint.keys_done + passed, checkpoint.keys_total.max(checkpoint.keys_done + passed));
            checkpoint = next;
            checkpoint.rows_done += done.changed;
            checkpoint.batch_size = next_size(size, took, settings);
            if done.waiters > 0 {
                checkpoint.batch_size = checkpoint.batch_size.min(size / 2).max(settings.batch_min.max(1));
            }
            let rate = passed_this_run as f64 / started.elapsed().as_secs_f64().max(0.001);
            reporter.backfill_progress(&BackfillProgress {
                version: version.clone(),
                table,
                statement: (cut_index(&checkpoint, last), cuts.len()),
                keys,
                rows_done: checkpoint.rows_done,
                batch_size: checkpoint.batch_size,
                rate,
            });
            give_way(ctx, &mut giving_way, &done, took, checkpoint.batch_size, &version, reporter).await;
            if let Some(cap) = settings.max_rows_per_second.filter(|c| *c > 0) {
                let due = Duration::from_secs_f64(passed_this_run as f64 / cap as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    ctx.options.interrupt.sleep(wait).await;
                }
            }
            if last {
                break;
            }
        }
    }
    record(driver, ctx, held, migration, checkpoint, cuts.len(), started).await?;
    Ok(started.elapsed())
}

/// The 1-based statement a batch belonged to (the checkpoint has moved past it after the last).
fn cut_index(checkpoint: &Checkpoint, last: bool) -> usize {
    if last { checkpoint.statement } else { checkpoint.statement + 1 }
}

/// A batch failed (not a lock timeout, nor a signal): what the batches
/// before it committed stays, with its checkpoint; the next run resumes there.
async fn failed(
    driver: &mut dyn Driver,
    ctx: &Context,
    migration: &Migration,
    cut: &Cut<'_>,
    checkpoint: &Checkpoint,
    error: DriverError,
) -> ExecError {
    let _ = driver.rollback().await;
    let index = checkpoint.statement;
    let detail = json!({
        "statement": index + 1,
        "after": checkpoint.after,
        "rows_done": checkpoint.rows_done,
        "error": error.message,
        "code": error.code,
    });
    let _ = driver.append_event(&crate::admin::event("backfill_failed", &migration.version, detail), &ctx.actor).await;
    ExecError::MigrationFailed(
        Box::new(FailedStatement {
            version: migration.version.to_string(),
            name: migration.name.clone(),
            path: migration.up.path.clone(),
            index: index + 1,
            line: cut.statement.line + migration.up.line_offset,
            sql: cut.statement.sql.clone(),
            error,
            aftermath: format!(
                "it runs in batches: the batch after key {} was rolled back, and the {} rows changed by the batches before it stay, with its checkpoint; fix the cause and `airlock migrate` resumes at that key",
                key_text(&checkpoint.after),
                checkpoint.rows_done
            ),
        }),
        Vec::new(),
    )
}

/// The backfill done: history records it applied, and its checkpoint says
/// so, in one transaction (a run killed before it records it next time
/// without a batch).
async fn record(
    driver: &mut dyn Driver,
    ctx: &Context,
    held: &HeldLease,
    migration: &Migration,
    mut checkpoint: Checkpoint,
    statements: usize,
    started: Instant,
) -> Result<(), ExecError> {
    let version = migration.version.to_string();
    let mut record = crate::apply::new_record(ctx, migration, RunMode::Batches, statements);
    record.started_at = checkpoint.started_at;
    record.statements_done = statements as u32;
    record.state = RunState::Succeeded;
    record.finished_at = Some(Utc::now());
    record.duration_ms = Some(started.elapsed().as_millis() as i64);
    let allows: Vec<_> =
        migration.directives.allows.iter().map(|a| json!({ "rule": a.rule, "reason": a.reason })).collect();
    let detail = json!({
        "name": migration.name,
        "checksum": migration.checksum,
        "mode": RunMode::Batches.as_str(),
        "statements": statements,
        "batches": checkpoint.batches,
        "rows": checkpoint.rows_done,
        "allows": allows,
    });
    let event = Event { kind: "applied".into(), version: Some(migration.version.clone()), detail: detail.to_string() };
    checkpoint.done = true;
    checkpoint.updated_at = Utc::now();
    let done = serde_json::to_string(&checkpoint).unwrap_or_default();
    let context = "recording the backfill";
    driver.begin().await.map_err(ExecError::db(context))?;
    if let Err(e) = driver.write_meta(&meta_key(&version), &done).await {
        let _ = driver.rollback().await;
        return Err(ExecError::db(context)(e));
    }
    match driver.record_and_commit(held.owner(), &record, &event, &ctx.actor).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ExecError::LeaseLost),
        Err(e) => {
            let _ = driver.rollback().await;
            Err(ExecError::db(context)(e))
        }
    }
}

/// A backfill in `status`: pending, running or stopped part-way.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BackfillEntry {
    /// The migration's version.
    pub version: String,
    /// Its name.
    pub name: String,
    /// The table of the statement it is at.
    pub table: Option<String>,
    /// `pending` (no batch yet), `running` (a run holds the lock on it),
    /// `stopped` (part-way, no run: `airlock migrate` or `backfill run`
    /// resumes it), `paused` or `cancelled` (`airlock backfill pause|cancel`:
    /// until `backfill resume`, no batch runs).
    pub state: &'static str,
    /// The statement it is at (1-based), and how many there are.
    pub statement: usize,
    /// Statements in the migration.
    pub statements: usize,
    /// Rows of that statement's table passed over.
    pub rows_done: u64,
    /// Rows of the table when the statement started.
    pub rows_total: u64,
    /// Rows changed so far, every statement.
    pub rows_changed: u64,
    /// Batches committed.
    pub batches: u64,
    /// At the pace so far, seconds until this statement is done.
    pub eta_seconds: Option<u64>,
    /// When the last batch committed (RFC 3339).
    pub updated_at: Option<String>,
}

/// The backfills among `pending`, each with its checkpoint; `running` is
/// the version a live run holds the lock for.
pub(crate) async fn entries(
    driver: &mut dyn Driver,
    pending: &[&Migration],
    running: Option<&str>,
    dialect: airlock_sql::Dialect,
) -> Result<Vec<BackfillEntry>, ExecError> {
    let mut out = Vec::new();
    for migration in pending.iter().filter(|m| m.directives.backfill) {
        let version = migration.version.to_string();
        // One unreadable checkpoint hides only its own progress.
        let checkpoint = read_checkpoint(driver, &version).await.ok().flatten().filter(|c| !c.done);
        let statements = airlock_sql::split(&migration.up.sql, dialect).unwrap_or_default();
        let at = checkpoint.as_ref().map_or(0, |c| c.statement).min(statements.len().saturating_sub(1));
        let table = statements
            .get(at)
            .and_then(|s| airlock_sql::backfill::analyze(&s.sql, dialect).ok())
            .map(|b| b.table.to_string());
        let control = read_control(driver, &version).await.ok().flatten();
        let state = match (&control, &checkpoint, running == Some(version.as_str())) {
            (Some(c), _, _) if c.action == "pause" => "paused",
            (Some(_), _, _) => "cancelled",
            (None, _, true) => "running",
            (None, Some(_), false) => "stopped",
            (None, None, false) => "pending",
        };
        let c = checkpoint.as_ref();
        let eta_seconds = c.and_then(|c| {
            let since = c.statement_started_at.unwrap_or(c.started_at);
            let elapsed = (c.updated_at - since).num_milliseconds() as f64 / 1000.0;
            let rate = c.keys_done as f64 / elapsed;
            (rate.is_finite() && rate > 0.0).then(|| (c.keys_total.saturating_sub(c.keys_done) as f64 / rate) as u64)
        });
        out.push(BackfillEntry {
            version,
            name: migration.name.clone(),
            table,
            state,
            statement: at + 1,
            statements: statements.len(),
            rows_done: c.map_or(0, |c| c.keys_done),
            rows_total: c.map_or(0, |c| c.keys_total.max(c.keys_done)),
            rows_changed: c.map_or(0, |c| c.rows_done),
            batches: c.map_or(0, |c| c.batches),
            eta_seconds,
            updated_at: c.map(|c| c.updated_at.to_rfc3339()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_size_moves_toward_the_target_within_bounds() {
        let s = BackfillSettings::default();
        assert_eq!(next_size(1000, Duration::from_millis(100), &s), 2000);
        assert_eq!(next_size(1000, Duration::from_millis(10), &s), 2000, "at most doubled");
        assert_eq!(next_size(1000, Duration::from_secs(5), &s), 500, "at most halved");
        assert_eq!(next_size(1000, Duration::from_millis(250), &s), 800);
        assert_eq!(next_size(40_000, Duration::from_millis(50), &s), 50_000, "capped");
        assert_eq!(next_size(150, Duration::from_secs(1), &s), 100, "floored");
    }
}
