//! The runner: the one place that decides in what order things happen.
//!
//! Every command follows the same shape: read the migration files (exit 2 on bad
//! ones, before any connection), read the database's history without locking,
//! reconcile (a pure function in `airlock-core`), refuse or stop early when there
//! is nothing to do, and only then create airlock's tables, take the run lease,
//! read again under it and act, recording every step in history and events.

/// `$call` (an awaited driver call), made again while it fails with a
/// conflict the database asks to retry: a deadlock, or a certification
/// failure on a Galera cluster (another node's write to the same row won, and
/// this transaction was rolled back whole). Several runners started on
/// different nodes race on airlock's own tables; losing such a race is no
/// reason to fail a deploy. Up to [`CONFLICT_RETRIES`] times, after a short,
/// growing, jittered pause.
macro_rules! retry_conflicts {
    ($call:expr) => {{
        let mut attempt = 0u32;
        loop {
            match $call {
                Err(e) if e.kind == airlock_driver::ErrorKind::Conflict && attempt < crate::CONFLICT_RETRIES => {
                    attempt += 1;
                    crate::conflict_pause(attempt).await;
                }
                other => break other,
            }
        }
    }};
}

mod actor;
mod admin;
mod adopt;
mod apply;
mod audit;
mod backfill;
mod backup;
mod down;
mod drift;
mod error;
mod expand;
mod fleet;
mod gate;
mod human;
mod interrupt;
mod lease;
mod live;
mod plan;
mod prepare;
mod rates;
mod rehearse;
mod rehearsed;
mod repair;
mod replicas;
mod report;
mod resolve;
mod run;
mod scope;
mod status;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use airlock_core::{Actor, Embedded, HistoryRecord, Lease, Problem, ProblemCode};
use airlock_driver::{DatabaseUrl, Driver, LeaseClaim, Profile, Timeouts};

pub use crate::actor::AIRLOCK_VERSION;
pub use crate::admin::unlock;
pub use crate::adopt::{AdoptReport, AdoptedEntry, adopt};
pub use crate::audit::{HistoryEntry, HistoryReport, history};
pub use crate::backfill::{
    BackfillEntry, BackfillProgress, BackfillSettings, Checkpoint, Control, ControlAction, backfill_control,
};
pub use crate::backup::{
    BackupBudget, BackupChoice, BackupMode, BackupPlan, BackupSettings, BackupStore, Everything, Manifest,
    ManifestTable, StakedTable,
};
pub use crate::backup::{
    BackupList, ListedBackup, Pruned, RestoreRequest, Restored, RestoredTable, Verified, backup_list, backup_restore,
    backup_verify,
};
pub use crate::down::down;
pub use crate::drift::{DriftCheck, DriftEntry, DriftReport, DriftSeen, drift, drift_from_history, record_drift};
pub use crate::error::{ExecError, FailedStatement, InvalidMigration, MigrationRefused, Refusal, exit};
pub use crate::expand::expansion;
pub use crate::fleet::{
    FleetGateReport, FleetPlanReport, FleetReporter, FleetRunReport, FleetStatusReport, Member, MemberGate, MemberPlan,
    MemberRun, MemberStatus, Rollout, Stage, StageSize, catalog_rows, fleet_gate, fleet_migrate, fleet_plan,
    fleet_status, gravest,
};
pub use crate::gate::{GateReport, Requirement, gate, gate_wait, judge};
pub use crate::human::{human_bytes, human_duration, human_estimate};
pub use crate::interrupt::{Interrupt, SIGINT, SIGTERM, signal_name};
pub use crate::live::{LiveState, live_catalog, live_state};
pub use crate::plan::{
    BackfillPlan, MigrationPlan, PlanFinding, PlanReport, Risk, RiskCode, StatementPlan, Verdict, plan,
};
pub use crate::prepare::{EngineTraits, Prepared, prepare, prepare_script};
pub use crate::rates::{BackupPace, Calibration, MIN_ROWS, Rate, Rates, Work, calibrate};
pub use crate::rehearse::{CopiedRows, RehearsalData, RehearsalEntry, RehearsalReport, rehearse};
pub use crate::rehearsed::{RehearsalTimings, RehearsedStatement, ScaledRehearsal};
pub use crate::repair::repair;
pub use crate::replicas::ReplicaPlan;
pub use crate::report::{
    AppliedEntry, LastRun, LockEntry, PendingEntry, ProblemEntry, Reporter, RunEntry, RunReport, Silent, Started,
    StatusReport, Tally,
};
pub use crate::resolve::{Resolution, resolve};
pub use crate::run::migrate;
pub use crate::status::status;
pub use crate::watch::{Assessment, Watcher};
pub use airlock_core::foreign::Tool;
pub use airlock_engines::connect;
pub(crate) use airlock_engines::connect_read_only;

/// Everything a command needs to know, already validated.
#[derive(Debug, Clone)]
pub struct Options {
    /// The database.
    pub url: DatabaseUrl,
    /// Where the migrations are: a directory, or files compiled into the program.
    pub source: Source,
    /// The project identity stamped on the database (`project` in airlock.toml).
    pub project: Option<String>,
    /// The environment's name, for messages.
    pub environment: Option<String>,
    /// `protected = true`: `down` is refused, and a risky statement runs only with an allow.
    pub protected: bool,
    /// Lock and statement timeouts. Defaults to 5 s and none.
    pub timeouts: Timeouts,
    /// How often a statement that hit the lock timeout is tried again. Defaults to 3.
    pub lock_retries: u32,
    /// First wait before such a retry; doubles each time, with jitter. Defaults to 1 s.
    pub retry_backoff: Duration,
    /// How long to wait for another run's lock. Defaults to 5 minutes.
    pub lock_wait: Duration,
    /// A lease without heartbeat for this long is taken over. Defaults to 60 s.
    pub lease_ttl: Duration,
    /// Allow pending migrations below the newest applied one. Defaults to `false`.
    pub out_of_order: bool,
    /// How `migrate` lints pending migrations before it applies them.
    pub lint: LintSettings,
    /// `migrate --plan`: the (version, checksum) of every pending migration, in order, as planned.
    pub planned: Option<Vec<(String, String)>>,
    /// Time budget of each data check. Defaults to 30 s.
    pub check_budget: Duration,
    /// A statement estimated to take longer is risky. Zero: no budget. Defaults to 5 minutes.
    pub estimate_budget: Duration,
    /// Raised by Ctrl-C or SIGTERM (the caller owns the signals). Defaults to never.
    pub interrupt: Interrupt,
    /// Globs of files in the migrations directory to leave out (`exclude` in airlock.toml).
    pub exclude: Vec<String>,
    /// Globs of schema objects `drift` leaves out (`drift_ignore` in airlock.toml):
    /// objects others own, such as a partition manager's partitions.
    pub drift_ignore: Vec<String>,
    /// A database lent for rehearsal and drift's replay (`rehearsal_url` in
    /// airlock.toml, `--scratch-url`): must be empty, and is emptied again
    /// after. None: a temporary database is made beside the target and dropped.
    pub scratch_url: Option<DatabaseUrl>,
    /// Whether `migrate` compares the schema with the applied migrations
    /// replayed before it runs, and what drift on a table it will change does.
    pub drift_check: DriftCheck,
    /// Where `rehearse --data` keeps each heavy statement's time and rows,
    /// which `plan` and `migrate` scale by the live rows. None: not kept.
    pub rehearsal_timings: Option<std::path::PathBuf>,
    /// What `migrate` saves before it changes anything, and where.
    pub backup: backup::BackupSettings,
    /// How backfills run: batch sizes, pace, lock timeout.
    pub backfill: backfill::BackfillSettings,
    /// `migrate --skip-backfills`: stop before the first pending backfill,
    /// leaving it and what follows for `airlock backfill run`.
    pub skip_backfills: bool,
    /// `migrate --contract`: also run contract migrations (`-- airlock:contract`),
    /// which otherwise stop the run before them.
    pub contract: bool,
}

/// Lint settings for `migrate`: severities and a baseline from airlock.toml.
#[derive(Debug, Clone, Default)]
pub struct LintSettings {
    /// Severity overrides by rule id; None turns a rule off.
    pub severities: std::collections::BTreeMap<String, Option<airlock_lint::Severity>>,
    /// Findings of unchanged files this baseline recorded are held back.
    pub baseline: Option<airlock_lint::Baseline>,
}

impl Options {
    /// Options with the documented defaults.
    pub fn new(url: DatabaseUrl, source: impl Into<Source>) -> Options {
        Options {
            url,
            source: source.into(),
            project: None,
            environment: None,
            protected: false,
            timeouts: Timeouts { lock: Duration::from_secs(5), statement: Duration::ZERO },
            lock_retries: 3,
            retry_backoff: Duration::from_secs(1),
            lock_wait: Duration::from_secs(300),
            lease_ttl: Duration::from_secs(60),
            out_of_order: false,
            lint: LintSettings::default(),
            planned: None,
            check_budget: Duration::from_secs(30),
            estimate_budget: Duration::from_secs(300),
            interrupt: Interrupt::default(),
            exclude: Vec::new(),
            drift_ignore: Vec::new(),
            scratch_url: None,
            drift_check: DriftCheck::Off,
            rehearsal_timings: None,
            backup: backup::BackupSettings::default(),
            backfill: backfill::BackfillSettings::default(),
            skip_backfills: false,
            contract: false,
        }
    }

    /// What is known of the database's engine before connecting.
    pub fn profile(&self) -> &'static Profile {
        airlock_engines::profile(self.url.engine())
    }

    /// How `prepare` should treat this engine.
    pub fn engine_traits(&self) -> EngineTraits {
        EngineTraits::from(self.profile())
    }
}

/// Where migrations come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A directory, read at each command.
    Dir(PathBuf),
    /// Files compiled into the program (the `airlock` crate's `embed_migrations!`).
    Embedded(&'static Embedded),
}

impl From<PathBuf> for Source {
    fn from(dir: PathBuf) -> Source {
        Source::Dir(dir)
    }
}

impl From<&'static Embedded> for Source {
    fn from(embedded: &'static Embedded) -> Source {
        Source::Embedded(embedded)
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Dir(dir) => write!(f, "{}", dir.display()),
            Source::Embedded(embedded) => write!(f, "the migrations built into this program (from `{}`)", embedded.dir),
        }
    }
}

impl Source {
    /// Reads the migrations as `options` says (the engine's files, what to leave out).
    pub fn discover(&self, options: &airlock_core::DiscoverOptions) -> Result<airlock_core::Discovered, ExecError> {
        Ok(match self {
            Source::Dir(dir) => airlock_core::discover_with(dir, options)?,
            Source::Embedded(embedded) => airlock_core::discover_embedded_with(embedded, options)?,
        })
    }
}

impl Options {
    /// How to read the migrations for this database.
    pub fn discover_options(&self) -> airlock_core::DiscoverOptions {
        let flavor = self.engine_traits().dialect.into();
        airlock_core::DiscoverOptions {
            flavor: Some(flavor),
            exclude: self.exclude.clone(),
            cache_dir: airlock_core::read_cache::default_dir(),
        }
    }

    /// Reads the migrations.
    pub fn discover(&self) -> Result<airlock_core::Discovered, ExecError> {
        self.source.discover(&self.discover_options())
    }

    /// Reads what can be read and says what cannot (`status`, `gate`: the
    /// database is shown whatever the checkout holds). Built-in migrations
    /// were checked when the program was built.
    pub(crate) async fn discover_lenient(
        &self,
    ) -> Result<(airlock_core::Discovered, Vec<airlock_core::FileError>), ExecError> {
        let (source, layout) = (self.source.clone(), self.discover_options());
        let read = move || match &source {
            Source::Dir(dir) => Ok(airlock_core::discover_lenient(dir, &layout)),
            Source::Embedded(_) => source.discover(&layout).map(|d| (d, Vec::new())),
        };
        match tokio::task::spawn_blocking(read).await {
            Ok(found) => found,
            Err(e) => Err(ExecError::Usage(format!("reading the migrations directory failed: {e}"))),
        }
    }

    /// Reads the migrations on a blocking thread, so that a caller can talk to
    /// the database meanwhile.
    pub(crate) async fn discover_in_background(&self) -> Result<airlock_core::Discovered, ExecError> {
        let (source, layout) = (self.source.clone(), self.discover_options());
        match tokio::task::spawn_blocking(move || source.discover(&layout)).await {
            Ok(found) => found,
            Err(e) => Err(ExecError::Usage(format!("reading the migrations directory failed: {e}"))),
        }
    }
}

/// A database kept in a file (SQLite) whose file does not exist (yet).
pub(crate) fn database_file_missing(options: &Options) -> bool {
    options.url.sqlite_path().is_some_and(|p| !std::path::Path::new(p).exists())
}

/// One command's identity and settings.
pub(crate) struct Context {
    pub options: Options,
    pub actor: Actor,
    pub claim: LeaseClaim,
    /// Milliseconds spent waiting before lock-timeout retries, so that a
    /// migration's timing can leave them out.
    pub paused_ms: std::sync::atomic::AtomicU64,
}

impl Context {
    pub(crate) fn new(options: &Options) -> Context {
        let actor = actor::current();
        let owner = format!("{:016x}", rand::random::<u64>());
        let claim = LeaseClaim {
            owner,
            host: actor::host_identity(&actor.host),
            pid: actor.pid,
            os_user: actor.os_user.clone(),
        };
        Context { options: options.clone(), actor, claim, paused_ms: Default::default() }
    }
}

/// What the database says, read without locking.
pub(crate) struct Snapshot {
    pub project: Option<String>,
    pub history: Vec<HistoryRecord>,
    pub lease: Option<Lease>,
}

/// How often a write to airlock's own tables is made again after a conflict.
pub(crate) const CONFLICT_RETRIES: u32 = 8;

/// The pause before attempt `attempt` after a conflict: 20 ms doubling up to
/// 1 s, jittered so that racing runners do not collide again in step.
pub(crate) async fn conflict_pause(attempt: u32) {
    use rand::Rng;
    let base = Duration::from_millis(20).saturating_mul(1 << attempt.min(6)).min(Duration::from_secs(1));
    let jitter = rand::rng().random_range(0.5..1.0);
    tokio::time::sleep(base.mul_f64(jitter)).await;
}

pub(crate) async fn snapshot(driver: &mut dyn Driver, ctx: &Context) -> Result<Snapshot, ExecError> {
    // The lease is read first: a run that holds it when history is read shows as in progress.
    let state = driver.read_state().await.map_err(ExecError::db("reading airlock's tables"))?;
    let lease = lease::live(state.lease, driver.capabilities().lease_heartbeat, ctx);
    Ok(Snapshot { project: state.project, history: state.history, lease })
}

/// The project check: a database stamped by another project is not ours to touch.
pub(crate) fn project_problem(stamped: Option<&str>, configured: Option<&str>, url: &DatabaseUrl) -> Option<Problem> {
    let stamped = stamped?;
    let message = match configured {
        Some(mine) if mine == stamped => return None,
        Some(mine) => format!(
            "the database {url} belongs to project `{stamped}`, and this is project `{mine}`: is --database-url (or the environment) pointing at the right database?"
        ),
        None => format!(
            "the database {url} belongs to project `{stamped}`, and this run names no project: set `project = \"{stamped}\"` in airlock.toml if this is that project"
        ),
    };
    Some(Problem { code: ProblemCode::WrongProject, version: None, message, detail: None, blocking: true })
}
