//! `drift`: the schema of this database compared with what it should be:
//! the schema its applied migrations' recorded text produces, replayed into
//! a scratch database beside it; or another database's (staging with
//! production, a copy with its source). The target is only read.

use airlock_core::snapshot::{Attributes, Change, Difference, Ignore, ObjectKind, SchemaSnapshot, diff};
use airlock_core::{HistoryRecord, RunMode, Script};
use airlock_driver::{DatabaseUrl, Driver};
use serde::Serialize;
use serde_json::{Value, json};

use crate::Options;
use crate::error::ExecError;

/// What `migrate` does about drift before it runs (`drift` in airlock.toml).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DriftCheck {
    /// No comparison (the default outside protected environments).
    #[default]
    Off,
    /// Say which differences touch a table a pending migration changes, then run.
    Warn,
    /// Refuse the run (exit 3, nothing applied) when one does, or when the comparison cannot be made.
    Refuse,
}

/// One difference, as the JSON contract has it: `expected` is the reference
/// database's side, `actual` this database's.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DriftEntry {
    /// `column public.orders.note`, `index public.orders.orders_user_idx`...
    pub object: String,
    /// `missing` (only in the reference), `unexpected` (only here) or `changed`.
    pub change: &'static str,
    /// For `changed`: which attribute (`type`, `default`, `definition`...).
    pub attribute: Option<String>,
    /// The reference's value (for missing objects, their attributes).
    pub expected: Option<String>,
    /// This database's value.
    pub actual: Option<String>,
}

impl DriftEntry {
    /// The reference's value on one line, or "not set".
    pub fn expected_shown(&self) -> String {
        shown(self.expected.as_deref())
    }

    /// This database's value on one line, or "not set".
    pub fn actual_shown(&self) -> String {
        shown(self.actual.as_deref())
    }
}

fn shown(value: Option<&str>) -> String {
    value.map_or_else(|| "not set".to_owned(), airlock_core::snapshot::squash_whitespace)
}

/// What `drift` found.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    /// This database (password hidden).
    pub database: String,
    /// The reference it was compared with.
    pub against: String,
    /// Every difference, in object order; empty when the schemas match.
    pub differences: Vec<DriftEntry>,
}

/// Compares this database's schema with `against`'s. Both are read at the
/// same time, on read-only connections.
pub async fn drift(options: &Options, against: &DatabaseUrl) -> Result<DriftReport, ExecError> {
    if options.url.engine() != against.engine() {
        return Err(ExecError::Usage(format!(
            "cannot compare a {} database with a {} one ({against})",
            options.url.engine().name(),
            against.engine().name()
        )));
    }
    let read = |url: &DatabaseUrl| {
        let url = url.clone();
        async move {
            let mut driver = crate::connect_read_only(&url).await.map_err(ExecError::Connect)?;
            driver.schema_snapshot().await.map_err(ExecError::db(format!("reading the schema of {url}")))
        }
    };
    let ignore = ignore(options)?;
    let (reference, live) = tokio::try_join!(read(against), read(&options.url))?;
    Ok(DriftReport {
        database: options.url.to_string(),
        against: against.to_string(),
        differences: entries(&reference.without(|p| ignore.matches(p)), &live.without(|p| ignore.matches(p))),
    })
}

/// Compares this database's schema with the one its applied migrations
/// produce: their recorded up scripts, in version order, replayed into a
/// scratch database made beside it (same server and credentials; for a
/// SQLite file, a temporary file), which is dropped afterwards whatever
/// happens. The target database is only read.
pub async fn drift_from_history(options: &Options) -> Result<DriftReport, ExecError> {
    let mut target = crate::connect_read_only(&options.url).await.map_err(ExecError::Connect)?;
    let (differences, applied) = replay_and_compare(options, target.as_mut()).await?;
    Ok(DriftReport {
        database: options.url.to_string(),
        against: format!("its {applied} applied migrations, replayed"),
        differences: differences.iter().map(entry).collect(),
    })
}

/// Differences a recorded comparison keeps (its count is always whole).
const RECORDED: usize = 50;

/// A drift comparison as the audit trail holds it: the newest one is what
/// `serve`'s page shows. Recorded by `airlock drift --record` (a scheduled
/// check) and by `migrate`'s look before it runs.
#[derive(Debug, Clone, Serialize)]
pub struct DriftSeen {
    /// When (RFC 3339, as the engine printed it when it is not).
    pub at: String,
    /// Who compared: `drift` (the command) or `migrate` (its look before it ran).
    pub command: String,
    /// What this database was compared with.
    pub against: String,
    /// `matches`, `differs`, or `unchecked` (the comparison could not be made).
    pub outcome: String,
    /// How many differences there were.
    pub count: usize,
    /// The first of them (at most 50), in object order.
    pub differences: Vec<DriftEntry>,
    /// Why the comparison could not be made.
    pub error: Option<String>,
    /// OS user.
    pub os_user: String,
    /// Host.
    pub host: String,
}

/// The `drift` event of one comparison by `command`: its differences
/// (against `against`), or why it could not be made.
pub(crate) fn event(command: &str, options: &Options, against: &str, found: Result<&[DriftEntry], String>) -> Value {
    let (outcome, count, kept, error) = match found {
        Ok([]) => ("matches", 0, &[][..], None),
        Ok(all) => ("differs", all.len(), &all[..all.len().min(RECORDED)], None),
        Err(why) => ("unchecked", 0, &[][..], Some(why)),
    };
    json!({
        "command": command,
        "against": against,
        "outcome": outcome,
        "count": count,
        "differences": kept,
        "error": error,
        "environment": options.environment,
    })
}

/// Appends a comparison's event (see [`event`]). Best effort, like every
/// audit event: losing it loses no migration.
pub(crate) async fn append(driver: &mut dyn Driver, ctx: &crate::Context, detail: Value) {
    let event = airlock_core::Event { kind: "drift".into(), version: None, detail: detail.to_string() };
    let _ = driver.append_event(&event, &ctx.actor).await;
}

/// `airlock drift --record`: appends what `outcome` found (or why it found
/// nothing) to this database's audit trail, the one write `drift` makes
/// when asked. Refused where airlock keeps no history: its tables are
/// not made for a comparison.
pub async fn record_drift(options: &Options, outcome: Result<&DriftReport, &ExecError>) -> Result<(), ExecError> {
    let against = match outcome {
        Ok(report) => report.against.clone(),
        Err(_) => options.url.to_string(),
    };
    let found = match outcome {
        Ok(report) => Ok(&report.differences[..]),
        Err(e) => Err(e.to_string()),
    };
    let detail = event("drift", options, &against, found);
    let ctx = crate::Context::new(options);
    if crate::database_file_missing(options) {
        return Err(ExecError::Usage(format!("{} does not exist: nothing was recorded", options.url)));
    }
    let mut driver = crate::connect(&options.url, false).await.map_err(ExecError::Connect)?;
    let state = driver.read_state().await.map_err(ExecError::db("reading the migration history"))?;
    if state.history.is_empty() {
        return Err(ExecError::Usage(format!(
            "{} has no airlock history to record the comparison in (`airlock migrate` or `airlock adopt` makes one); nothing was recorded",
            options.url
        )));
    }
    let event = airlock_core::Event { kind: "drift".into(), version: None, detail: detail.to_string() };
    driver.append_event(&event, &ctx.actor).await.map_err(ExecError::db("recording the comparison in airlock_events"))
}

/// A recorded comparison read back; None for an event that is not one.
pub(crate) fn seen(at: String, detail: &Value, os_user: String, host: String) -> Option<DriftSeen> {
    let text = |key: &str| detail[key].as_str().map(str::to_owned);
    let differences = detail["differences"]
        .as_array()?
        .iter()
        .map(|d| DriftEntry {
            object: d["object"].as_str().unwrap_or("?").to_owned(),
            change: match d["change"].as_str() {
                Some("missing") => "missing",
                Some("unexpected") => "unexpected",
                _ => "changed",
            },
            attribute: d["attribute"].as_str().map(str::to_owned),
            expected: d["expected"].as_str().map(str::to_owned),
            actual: d["actual"].as_str().map(str::to_owned),
        })
        .collect();
    Some(DriftSeen {
        at,
        command: text("command")?,
        against: text("against").unwrap_or_default(),
        outcome: text("outcome")?,
        count: detail["count"].as_u64().unwrap_or(0) as usize,
        differences,
        error: text("error"),
        os_user,
        host,
    })
}

/// What a recorded comparison found, in a few words: `3 differences from
/// its 42 applied migrations, replayed`.
pub(crate) fn summary(detail: &Value) -> String {
    let against = detail["against"].as_str().unwrap_or("?");
    match detail["outcome"].as_str() {
        Some("matches") => format!("matches {against}"),
        Some("differs") => {
            let count = detail["count"].as_u64().unwrap_or(0);
            format!("{count} difference{} from {against}", if count == 1 { "" } else { "s" })
        }
        _ => format!("not compared: {}", detail["error"].as_str().unwrap_or("?")),
    }
}

/// `migrate`'s look before it runs (`drift = "warn" | "refuse"`): the
/// differences from the applied migrations replayed that touch a table one
/// of `touched` (table name → the pending migration that changes it) names.
/// Warns and goes on, or refuses the run, nothing applied.
pub(crate) async fn check_before_migrate(
    options: &Options,
    target: &mut dyn Driver,
    touched: &crate::run::Touched,
    reporter: &mut dyn crate::report::Reporter,
) -> Result<Option<Value>, ExecError> {
    let refuse = match options.drift_check {
        DriftCheck::Off => return Ok(None),
        DriftCheck::Warn => false,
        DriftCheck::Refuse => true,
    };
    let problem = |message: String| airlock_core::Problem {
        code: airlock_core::ProblemCode::Drift,
        version: None,
        message,
        detail: None,
        blocking: true,
    };
    let (differences, recorded) = match replay_and_compare(options, target).await {
        Ok((differences, applied)) => {
            let all: Vec<DriftEntry> = differences.iter().map(entry).collect();
            let against = format!("its {applied} applied migrations, replayed");
            let recorded = event("migrate", options, &against, Ok(&all));
            (differences, recorded)
        }
        Err(e) if refuse => {
            return Err(ExecError::Blocked {
                problems: vec![problem(format!(
                    "drift could not be checked ({e}); with `drift = \"refuse\"` nothing runs unchecked: fix that, or set `drift = \"warn\"` for this environment"
                ))],
            });
        }
        Err(e) => {
            reporter.warning(&format!("drift was not checked: {e}"));
            return Ok(Some(event("migrate", options, "its applied migrations, replayed", Err(e.to_string()))));
        }
    };
    let mut found = Vec::new();
    for d in &differences {
        let table = d
            .object
            .table
            .as_ref()
            .or((d.object.kind == airlock_core::snapshot::ObjectKind::Table).then_some(&d.object.name));
        if let Some(migration) = table.and_then(|t| touched.get(t)) {
            let e = entry(d);
            let what = match e.change {
                "missing" => "missing from the database".to_owned(),
                "unexpected" => "not made by any migration".to_owned(),
                _ => format!(
                    "{} is {} here, {} by the migrations",
                    e.attribute.as_deref().unwrap_or("?"),
                    e.actual_shown(),
                    e.expected_shown()
                ),
            };
            found.push(format!("{}: {what}; migration {migration} changes this table", e.object));
        }
    }
    if found.is_empty() {
        return Ok(Some(recorded));
    }
    if refuse {
        return Err(ExecError::Blocked {
            problems: found
                .into_iter()
                .map(|f| problem(format!("drift: {f} (see `airlock drift`; `drift = \"refuse\"` in this environment)")))
                .collect(),
        });
    }
    for f in found {
        reporter.warning(&format!("drift: {f} (see `airlock drift`)"));
    }
    Ok(Some(recorded))
}

/// The differences from the applied migrations replayed to the live schema
/// (ignored objects left out), and how many migrations were replayed.
/// `target` is only read.
async fn replay_and_compare(options: &Options, target: &mut dyn Driver) -> Result<(Vec<Difference>, usize), ExecError> {
    let ignore = ignore(options)?;
    let state = target.read_state().await.map_err(ExecError::db("reading the migration history"))?;
    if state.history.is_empty() {
        return Err(ExecError::Usage(format!(
            "{} has no applied migration in airlock's history to replay; compare it with another database: `airlock drift --against-env NAME` or `--against-url URL`",
            options.url
        )));
    }
    let applied = applied_in_order(&state.history);
    let live = target.schema_snapshot().await.map_err(ExecError::db("reading the schema"))?;

    let scratch = Scratch::create(options).await?;
    let replayed = async {
        let mut driver = scratch.connect().await?;
        replay(driver.as_mut(), &applied, options).await?;
        driver.schema_snapshot().await.map_err(ExecError::db("reading the replayed schema"))
    }
    .await;
    let dropped = scratch.finish().await;
    let expected = replayed?;
    dropped?;
    Ok((diff(&expected.without(|p| ignore.matches(p)), &live.without(|p| ignore.matches(p))), applied.len()))
}

/// `drift_ignore` of airlock.toml, compiled; a bad glob is a usage error naming it.
fn ignore(options: &Options) -> Result<Ignore, ExecError> {
    Ignore::new(&options.drift_ignore).map_err(|e| ExecError::Usage(format!("drift_ignore in airlock.toml: {e}")))
}

/// The empty database drift's replay and rehearsal run in: made beside the
/// target (same server and credentials; for a SQLite file, a temporary
/// file) under a name that cannot collide and dropped afterwards, or lent
/// (`rehearsal_url`, `--scratch-url`): then it must be empty, and is emptied
/// again afterwards. Whoever opens one calls [`Scratch::finish`] whatever
/// happened in between.
pub(crate) struct Scratch {
    /// Its URL.
    pub url: DatabaseUrl,
    origin: Origin,
}

enum Origin {
    /// Made by airlock: `admin` is the connection that made it and drops it
    /// (in a mutex only so that a `&Scratch` may cross threads: it is used
    /// once, by value).
    Made { admin: std::sync::Mutex<Box<dyn Driver>>, name: String },
    /// Lent: `held` is what it held before (schemas and extensions only).
    Lent { held: SchemaSnapshot },
}

impl Scratch {
    /// Opens the lent database when there is one, else makes one.
    pub(crate) async fn create(options: &Options) -> Result<Scratch, ExecError> {
        match &options.scratch_url {
            Some(url) => Scratch::lent(options, url, "scratch database").await,
            None => Scratch::make(options).await,
        }
    }

    /// Creating a database is the server's business, not the target
    /// database's: through a plain connection to the target's URL.
    async fn make(options: &Options) -> Result<Scratch, ExecError> {
        let name = scratch_name(&options.url);
        let local = options.profile().capabilities.local_file;
        let name = if local { std::env::temp_dir().join(format!("{name}.db")).display().to_string() } else { name };
        let url = options
            .url
            .with_database(&name)
            .map_err(|e| ExecError::Scratch(format!("a scratch database beside {}: {e}", options.url)))?;
        // A database in a local file has no server to ask: the scratch file is its own.
        let admin_url = if local { &url } else { &options.url };
        let mut admin = crate::connect(admin_url, local).await.map_err(ExecError::Connect)?;
        admin.create_database(&name).await.map_err(|e| {
            ExecError::Scratch(format!(
                "cannot create the scratch database {url}: {e} (the user needs the right to create databases; \
                 or lend an empty one with `rehearsal_url` in airlock.toml or --scratch-url)"
            ))
        })?;
        Ok(Scratch { url, origin: Origin::Made { admin: std::sync::Mutex::new(admin), name } })
    }

    /// A database lent for this run by URL (`backup restore --into`): the
    /// same checks as `rehearsal_url`, its refusals naming it as `what`
    /// (`database to restore into`).
    pub(crate) async fn lend(options: &Options, url: &DatabaseUrl, what: &str) -> Result<Scratch, ExecError> {
        Scratch::lent(options, url, what).await
    }

    /// Keeps what it holds now: a lent database someone asked to fill.
    pub(crate) fn keep(self) {}

    /// A lent database is used only when it is plainly not the target and
    /// holds nothing but schemas and extensions; otherwise it is left as it is.
    async fn lent(options: &Options, url: &DatabaseUrl, what: &str) -> Result<Scratch, ExecError> {
        let refuse = |why: String| ExecError::Scratch(format!("the {what} {url} {why}"));
        if url.engine() != options.url.engine() {
            return Err(refuse(format!(
                "is {}, the target {}: a {what} is on the target's engine",
                url.engine().name(),
                options.url.engine().name()
            )));
        }
        if url.expose() == options.url.expose() {
            return Err(refuse(format!("is the target itself: a {what} must be another, empty one")));
        }
        let mut driver = crate::connect(url, false).await.map_err(|e| refuse(format!("cannot be reached: {e}")))?;
        let state = driver.read_state().await.map_err(|e| refuse(format!("cannot be read: {e}")))?;
        if !state.history.is_empty() {
            return Err(refuse(format!(
                "holds airlock's history of {} migration(s): it is a migrated database, not an empty one; nothing was changed",
                state.history.len()
            )));
        }
        let held = driver.schema_snapshot().await.map_err(|e| refuse(format!("cannot be read: {e}")))?;
        let objects: Vec<String> = held
            .objects
            .keys()
            .filter(|p| !matches!(p.kind, ObjectKind::Schema | ObjectKind::Extension))
            .map(ToString::to_string)
            .collect();
        if !objects.is_empty() {
            let shown = objects.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            let more = if objects.len() > 5 { format!(" and {} more", objects.len() - 5) } else { String::new() };
            return Err(refuse(format!(
                "is not empty: it holds {shown}{more}; a {what} must be empty (nothing was changed in it)"
            )));
        }
        Ok(Scratch { url: url.clone(), origin: Origin::Lent { held } })
    }

    /// A connection to it, which may keep the schema snapshot's queries
    /// prepared: the database is airlock's alone for the run.
    pub(crate) async fn connect(&self) -> Result<Box<dyn Driver>, ExecError> {
        let mut driver = crate::connect(&self.url, true).await.map_err(ExecError::Connect)?;
        driver.snapshots_repeat();
        Ok(driver)
    }

    /// Empty again, as it was opened: a made one dropped and made anew, a
    /// lent one emptied.
    pub(crate) async fn reset(&mut self, options: &Options) -> Result<(), ExecError> {
        match &self.origin {
            Origin::Made { .. } => {
                let fresh = Scratch::make(options).await?;
                std::mem::replace(self, fresh).finish().await
            }
            Origin::Lent { held } => empty(&self.url, held).await,
        }
    }

    /// Drops a made one; empties a lent one and checks that it is.
    pub(crate) async fn finish(self) -> Result<(), ExecError> {
        let url = self.url.to_string();
        match self.origin {
            Origin::Made { admin, name } => {
                let mut admin = admin.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
                admin.drop_database(&name).await.map_err(ExecError::db(format!("dropping the scratch database {url}")))
            }
            Origin::Lent { held } => empty(&self.url, &held).await,
        }
    }
}

/// Empties a lent scratch database back to `held`, and says what is left if anything is.
async fn empty(url: &DatabaseUrl, held: &SchemaSnapshot) -> Result<(), ExecError> {
    let mut driver = crate::connect(url, true).await.map_err(ExecError::Connect)?;
    let context = format!("emptying the scratch database {url} after use");
    driver.empty_database(held).await.map_err(ExecError::db(context.clone()))?;
    let left = driver.schema_snapshot().await.map_err(ExecError::db(context.clone()))?;
    let extra: Vec<String> =
        left.objects.keys().filter(|p| held.get(p).is_none()).map(ToString::to_string).take(5).collect();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(ExecError::Scratch(format!("{context}: still holds {} (drop them by hand)", extra.join(", "))))
    }
}

/// A scratch database's name: `airlock_scratch_`, the target's name (so a
/// person who finds one left by a killed process knows whose it is), this
/// process and the time, so two runs never meet; at most 63 characters.
fn scratch_name(target: &DatabaseUrl) -> String {
    let raw = target.expose();
    let path = raw.split(['?', '#']).next().unwrap_or(raw);
    let last = path.rsplit(['/', ':']).next().unwrap_or_default();
    let stem = last.split('.').next().unwrap_or_default();
    let hint: String = stem.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(24).collect();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("airlock_scratch_{hint}_{:x}{:x}", std::process::id(), nanos & 0xff_ffff_ffff)
}

/// The applied migrations of a history, in version order: what a replay runs.
pub(crate) fn applied_in_order(history: &[HistoryRecord]) -> Vec<&HistoryRecord> {
    let mut applied: Vec<&HistoryRecord> = history.iter().filter(|r| r.state.is_applied()).collect();
    applied.sort_by(|a, b| a.version.cmp(&b.version));
    applied
}

/// Runs each recorded up script as it ran: in a transaction when it did and
/// the engine has transactional DDL, else statement by statement.
pub(crate) async fn replay(
    driver: &mut dyn Driver,
    applied: &[&HistoryRecord],
    options: &Options,
) -> Result<(), ExecError> {
    let traits = options.engine_traits();
    for record in applied {
        let script = Script {
            path: format!("(recorded text of migration {})", record.version).into(),
            sql: record.up_sql.clone(),
            line_offset: 0,
        };
        let prepared = crate::prepare::prepare_script(&script, record.mode == RunMode::Statements, traits)
            .map_err(|e| ExecError::Invalid(vec![e]))?;
        if let Err((n, e)) = run_prepared(driver, &prepared, traits, false).await {
            return Err(ExecError::db(format!(
                "replaying migration {} ({}) into the scratch database, statement {n} of {}",
                record.version,
                record.name,
                prepared.statements.len()
            ))(e));
        }
    }
    Ok(())
}

/// Whether [`run_prepared`] sends `prepared` as one transaction
/// ([`airlock_driver::Driver::run_transaction`]): a transactional script
/// on an engine with transactional DDL that does not manage its own
/// transaction, its statements not timed one by one.
pub(crate) fn one_transaction(
    prepared: &crate::prepare::Prepared,
    traits: crate::prepare::EngineTraits,
    each_timed: bool,
) -> bool {
    prepared.mode == RunMode::Transaction && traits.transactional_ddl && !each_timed && !prepared.manages_transaction
}

/// Runs a prepared script on a scratch database as it would run for real:
/// in one transaction when its mode says so and the engine has transactional
/// DDL (rolled back on a failure, so no lock is left behind), else statement
/// by statement. With `each_timed`, each statement's time, in order (one
/// round trip each); without, a transaction may go in one round trip and
/// no time is given. A failure gives the 1-based statement and the error.
pub(crate) async fn run_prepared(
    driver: &mut dyn Driver,
    prepared: &crate::prepare::Prepared,
    traits: crate::prepare::EngineTraits,
    each_timed: bool,
) -> Result<Vec<std::time::Duration>, (usize, airlock_driver::DriverError)> {
    let in_transaction = prepared.mode == RunMode::Transaction && traits.transactional_ddl;
    if one_transaction(prepared, traits, each_timed) {
        let statements: Vec<&str> = prepared.statements.iter().map(|s| s.sql.as_str()).collect();
        return match driver.run_transaction(&statements).await {
            Ok(airlock_driver::Ran::Failed { index, error }) => Err((index + 1, error)),
            // No lease here: never lost.
            Ok(airlock_driver::Ran::All | airlock_driver::Ran::LeaseLost) => Ok(Vec::new()),
            Err(e) => Err((prepared.statements.len(), e)),
        };
    }
    if in_transaction {
        driver.begin().await.map_err(|e| (0, e))?;
    }
    let mut times = Vec::with_capacity(prepared.statements.len());
    for (i, statement) in prepared.statements.iter().enumerate() {
        let started = std::time::Instant::now();
        if let Err(e) = driver.execute(&statement.sql).await {
            if in_transaction {
                let _ = driver.rollback().await;
            }
            return Err((i + 1, e));
        }
        times.push(started.elapsed());
    }
    if in_transaction {
        driver.commit().await.map_err(|e| (prepared.statements.len(), e))?;
    }
    Ok(times)
}

/// The differences from `reference` to `live`, as drift reports them.
pub fn entries(reference: &SchemaSnapshot, live: &SchemaSnapshot) -> Vec<DriftEntry> {
    diff(reference, live).iter().map(entry).collect()
}

/// [`entries`] of two schemas equal outside `scope` (see `diff_within`).
pub(crate) fn entries_within(
    reference: &SchemaSnapshot,
    live: &SchemaSnapshot,
    scope: &airlock_core::snapshot::Scope,
) -> Vec<DriftEntry> {
    airlock_core::snapshot::diff_within(reference, live, scope).iter().map(entry).collect()
}

/// One difference as drift reports it.
pub(crate) fn entry(d: &Difference) -> DriftEntry {
    let object = d.object.to_string();
    match &d.change {
        Change::Removed => DriftEntry {
            object,
            change: "missing",
            attribute: None,
            expected: d.before.as_ref().map(render),
            actual: None,
        },
        Change::Added => DriftEntry {
            object,
            change: "unexpected",
            attribute: None,
            expected: None,
            actual: d.after.as_ref().map(render),
        },
        Change::Changed { attribute, before, after } => DriftEntry {
            object,
            change: "changed",
            attribute: Some(attribute.clone()),
            expected: before.clone(),
            actual: after.clone(),
        },
    }
}

/// An object's attributes on one line: its definition when it has one, else `key=value, ...`.
pub fn render(attributes: &Attributes) -> String {
    if let Some(definition) = attributes.get("definition") {
        return definition.clone();
    }
    attributes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::snapshot::{ObjectKind, ObjectPath};

    #[test]
    fn a_scratch_name_says_whose_it_is_and_fits_an_identifier() {
        let url = DatabaseUrl::parse("postgres://u:p@h/shop_production_eu_west_primary?sslmode=require").unwrap();
        let name = scratch_name(&url);
        assert!(name.starts_with("airlock_scratch_shop_production_eu_west__"), "{name}");
        assert!(name.len() <= 63 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{name}");
        let file = scratch_name(&DatabaseUrl::parse("sqlite:/srv/app/data.db").unwrap());
        assert!(file.starts_with("airlock_scratch_data_"), "{file}");
        assert_ne!(scratch_name(&url), name, "two scratch databases of one process must differ");
    }

    #[test]
    fn missing_unexpected_and_changed_read_from_the_reference_to_this_database() {
        let mut reference = SchemaSnapshot::default();
        let t = |name: &str| ObjectPath::new(ObjectKind::Table, Some("public"), name);
        reference.insert(t("orders"), Attributes::new());
        let idx = ObjectPath::of_table(ObjectKind::Index, Some("public"), "orders", "orders_user");
        reference.insert(idx.clone(), [("definition".to_owned(), "btree (user_id)".to_owned())].into());
        let mut live = reference.clone();
        live.objects.remove(&idx);
        live.insert(t("scratch"), [("comment".to_owned(), "tmp".to_owned())].into());
        live.insert(t("orders"), [("comment".to_owned(), "hot".to_owned())].into());
        let found = entries(&reference, &live);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!((found[0].change, found[0].attribute.as_deref()), ("changed", Some("comment")));
        assert_eq!((found[0].expected.as_deref(), found[0].actual.as_deref()), (None, Some("hot")));
        assert_eq!(found[1].object, "table public.scratch");
        assert_eq!((found[1].change, found[1].actual.as_deref()), ("unexpected", Some("comment=tmp")));
        assert_eq!(found[2].object, "index public.orders.orders_user");
        assert_eq!((found[2].change, found[2].expected.as_deref()), ("missing", Some("btree (user_id)")));
    }
}
