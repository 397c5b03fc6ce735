//! The seam between airlock's runner and a database engine.
//!
//! The runner (`airlock-exec`) decides; a [`Driver`] obeys. A driver supplies
//! primitives — read and write airlock's own tables, claim the run lease, run
//! one statement, open and close a transaction — and keeps its engine's quirks
//! where they live, documented. Drivers never split or parse migration SQL and
//! never decide what to run.

pub mod backup;
mod profile;
mod url;

use std::time::Duration;

use airlock_core::{Actor, Event, HistoryRecord, Lease};

pub use crate::profile::{BaseRates, Profile, Workload};
pub use crate::url::{DatabaseUrl, Engine, UrlError};

/// Names of airlock's own tables, the same on every engine.
pub mod tables {
    /// One row per migration version: its latest state.
    pub const HISTORY: &str = "airlock_history";
    /// Append-only audit log.
    pub const EVENTS: &str = "airlock_events";
    /// Key/value facts about the database, e.g. the project stamp.
    pub const META: &str = "airlock_meta";
    /// The single run-lease row.
    pub const LOCK: &str = "airlock_lock";
}

/// A hot standby's view of the locks it replays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standby {
    /// How long replay waits for queries a replayed lock conflicts with
    /// before cancelling them; None: as long as they run.
    pub max_delay: Option<Duration>,
    /// The longest query running there now.
    pub longest_query: Option<Duration>,
}

/// A node of a synchronous cluster, as it describes itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// `Galera`.
    pub kind: &'static str,
    /// Nodes in the cluster now.
    pub nodes: u32,
    /// This node's state (`Synced`, `Donor/Desynced`, `Joining`...).
    pub state: String,
    /// Whether this node is in the primary component (it takes writes).
    pub primary: bool,
    /// How schema changes run (`TOI`: on every node at once, in total order; `RSU`: on this node alone).
    pub ddl_method: String,
}

impl Cluster {
    /// Why a migration should not run through this node; None when it may.
    pub fn unfit(&self) -> Option<String> {
        if !self.primary {
            return Some(format!(
                "this node of the {} cluster is not in its primary component: it takes no writes",
                self.kind
            ));
        }
        (self.state != "Synced").then(|| {
            format!("this node of the {} cluster is `{}`, not `Synced`: a migration run through it could stall or miss the cluster's latest writes", self.kind, self.state)
        })
    }

    /// What running schema changes on this cluster means, in a sentence.
    pub fn ddl_note(&self) -> String {
        match self.ddl_method.as_str() {
            "TOI" => format!(
                "{} cluster of {} nodes, schema changes in TOI: each one runs on every node at once, in total order, and writes to the cluster wait while it runs (RSU, node by node by hand, avoids that for changes each node can take alone)",
                self.kind, self.nodes
            ),
            other => format!(
                "{} cluster of {} nodes, schema changes in {other}: each runs on this node alone; the others need it too",
                self.kind, self.nodes
            ),
        }
    }
}

/// What an engine can do, which decides how the runner uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// DDL can run inside a transaction and be rolled back (PostgreSQL, SQLite).
    pub transactional_ddl: bool,
    /// The lease must be renewed from a second connection while a statement runs,
    /// because another host may be waiting on it (client/server engines).
    /// Without it (SQLite, a local file) a lease is stale only when its holder's
    /// process is gone.
    pub lease_heartbeat: bool,
    /// The database is a file on this machine: `serve` opens it afresh for
    /// every read, so a file replaced by a restore is seen.
    pub local_file: bool,
    /// The driver takes, restores and digests backups (`Driver::backup`).
    pub backups: bool,
}

/// What kind of failure, so the runner can choose: retry, report or stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Could not connect or the connection broke.
    Connection,
    /// The statement gave up waiting for a lock (`lock_timeout`, `lock_wait_timeout`, SQLITE_BUSY).
    LockTimeout,
    /// The transaction lost a deadlock or a serialization conflict and was
    /// rolled back: the same transaction may succeed if tried again.
    Conflict,
    /// The statement ran longer than `statement_timeout` / `max_statement_time`.
    StatementTimeout,
    /// The server refused the statement (syntax, constraint, missing object...).
    Statement,
    /// The server refused for lack of privileges or a read-only database.
    Permission,
    /// This engine, or the tools it needs on this machine, cannot do it.
    Unsupported,
}

/// A failure reported by a driver: kind, the server's own message, and its code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DriverError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The server's message (never containing a password).
    pub message: String,
    /// SQLSTATE or the engine's error number, when known.
    pub code: Option<String>,
}

impl DriverError {
    /// Builds an error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> DriverError {
        DriverError { kind, message: message.into(), code: None }
    }

    /// Adds the engine's code.
    pub fn with_code(mut self, code: impl Into<String>) -> DriverError {
        self.code = Some(code.into());
        self
    }
}

/// Shorthand for driver results.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;

/// A process asking for the run lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseClaim {
    /// Random id of this run.
    pub owner: String,
    /// Host identity (host name and boot id).
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// OS user.
    pub os_user: String,
}

/// What [`Driver::begin_and_run`] did.
#[derive(Debug)]
pub enum Ran {
    /// Every statement ran; the transaction is open.
    All,
    /// Statement `index` (0-based) failed; the transaction is open and aborted.
    Failed {
        /// Which statement.
        index: usize,
        /// What the server said.
        error: DriverError,
    },
    /// The lease is no longer this run's; no transaction is open.
    LeaseLost,
}

/// What [`Driver::run_and_commit`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Committed {
    /// Every statement ran and the transaction committed with its record.
    Done,
    /// Statement `index` (0-based) failed; the transaction is rolled back.
    Failed {
        /// Which statement.
        index: usize,
        /// What the server said.
        error: DriverError,
    },
    /// The lease is no longer this run's; the transaction is rolled back.
    LeaseLost,
    /// Asked to stop (Ctrl-C) after the statements ran: rolled back, not committed.
    Stopped,
}

/// What a database says about itself, read in one go by [`Driver::read_state`].
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    /// The run lease, if held (stale or not).
    pub lease: Option<Lease>,
    /// The project stamp.
    pub project: Option<String>,
    /// All history records.
    pub history: Vec<HistoryRecord>,
}

/// Rows on their way from one database to another of the same engine
/// (rehearsal's copy of the target's data), in the form that engine reads
/// and writes fastest. Only a driver of the engine that made it reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum RowChunk {
    /// Whole lines of PostgreSQL's COPY text format.
    Lines(Vec<u8>),
    /// One value per requested column, row by row.
    Cells(Vec<Vec<Cell>>),
}

impl RowChunk {
    /// How many rows it holds.
    pub fn rows(&self) -> usize {
        match self {
            RowChunk::Lines(bytes) => bytes.iter().filter(|b| **b == b'\n').count(),
            RowChunk::Cells(rows) => rows.len(),
        }
    }
}

/// One value of a copied row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// NULL.
    Null,
    /// An integer (SQLite's storage class).
    Integer(i64),
    /// A floating point number (SQLite's storage class).
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes: a blob, or a value in the engine's text form.
    Bytes(Vec<u8>),
}

/// Where [`Driver::read_rows`] hands its chunks: usually another
/// database's [`Driver::load_rows`].
#[async_trait::async_trait]
pub trait RowSink: Send {
    /// Takes one chunk.
    async fn take(&mut self, chunk: RowChunk) -> Result<()>;
}

/// Rows per chunk when copying row by row; PostgreSQL's chunks are about
/// [`CHUNK_BYTES`] of COPY text.
pub const CHUNK_ROWS: usize = 1000;

/// Bytes per chunk of COPY text.
pub const CHUNK_BYTES: usize = 1 << 20;

/// How long a data check waits for a lock: it never queues behind DDL for long.
pub const CHECK_LOCK_TIMEOUT: Duration = Duration::from_secs(1);

/// What one committed batch of a backfill did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Rows its statement changed.
    pub changed: u64,
    /// Other sessions that were waiting for its locks just before it committed.
    pub waiters: u64,
}

/// Timeouts applied to the session before a migration runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// How long one statement may wait for a lock; zero means no limit.
    pub lock: Duration,
    /// How long one statement may run; zero means no limit.
    pub statement: Duration,
}

/// One database connection as the runner sees it.
///
/// Methods on airlock's tables must work before [`Driver::ensure_tables`] has
/// ever run: reads then return "nothing" rather than failing.
#[async_trait::async_trait]
pub trait Driver: Send {
    /// The engine's fixed facts (the driver crate's `PROFILE`).
    fn profile(&self) -> &'static Profile;

    /// Which engine this is.
    fn engine(&self) -> Engine {
        self.profile().engine
    }

    /// What the engine can do.
    fn capabilities(&self) -> Capabilities {
        self.profile().capabilities
    }

    /// The server's version string, for messages and records.
    async fn server_version(&mut self) -> Result<String>;

    /// Creates airlock's tables and the free lease row when missing. Safe to call
    /// from many processes at once.
    async fn ensure_tables(&mut self) -> Result<()>;

    /// The project stamped on this database, if any.
    async fn read_project(&mut self) -> Result<Option<String>> {
        self.read_meta("project").await
    }

    /// Stamps the project on this database (first run).
    async fn stamp_project(&mut self, project: &str) -> Result<()>;

    /// A value of airlock's key/value table (`airlock_meta`), None when
    /// missing or when the table does not exist yet.
    async fn read_meta(&mut self, key: &str) -> Result<Option<String>>;

    /// Sets a value of airlock's key/value table, replacing an older one.
    /// The tables must exist ([`Driver::ensure_tables`]).
    async fn write_meta(&mut self, key: &str, value: &str) -> Result<()>;

    /// All history records (empty when the table does not exist yet).
    async fn read_history(&mut self) -> Result<Vec<HistoryRecord>>;

    /// Inserts or replaces the record of `record.version`.
    async fn write_history(&mut self, record: &HistoryRecord) -> Result<()>;

    /// Appends an event to the audit log.
    async fn append_event(&mut self, event: &Event, actor: &Actor) -> Result<()>;

    /// Writes a history record and its event. Engines that can pipeline the two
    /// do so; the default writes them one after the other.
    async fn record(&mut self, record: &HistoryRecord, event: &Event, actor: &Actor) -> Result<()> {
        self.write_history(record).await?;
        self.append_event(event, actor).await
    }

    /// Renews the lease (as [`Driver::renew_lease`]); if it is still `owner`'s,
    /// opens a transaction and runs `statements` in it, stopping at the first
    /// failure. The transaction is left open (aborted after a failure) for the
    /// caller to finish with [`Driver::record_and_commit`] or roll back.
    /// Engines that can pipeline all of it in one round trip do so: in a
    /// transaction, nothing that runs after a failure or a lost lease can stay.
    async fn begin_and_run(&mut self, owner: &str, version: Option<&str>, statements: &[&str]) -> Result<Ran> {
        if !self.renew_lease(owner, version).await? {
            return Ok(Ran::LeaseLost);
        }
        self.begin().await?;
        for (index, sql) in statements.iter().enumerate() {
            if let Err(error) = self.execute(sql).await {
                return Ok(Ran::Failed { index, error });
            }
        }
        Ok(Ran::All)
    }

    /// Inside the open transaction: confirms the lease is still `owner`'s
    /// (locking its row until the commit, so no takeover can slip in
    /// between; the default renews it, an engine may only lock it), writes
    /// the history record and its event, and commits.
    /// Returns false, with the transaction rolled back, when the lease was lost;
    /// on any error nothing is committed.
    async fn record_and_commit(
        &mut self,
        owner: &str,
        record: &HistoryRecord,
        event: &Event,
        actor: &Actor,
    ) -> Result<bool> {
        if !self.renew_lease(owner, Some(&record.version.to_string())).await? {
            self.rollback().await?;
            return Ok(false);
        }
        self.record(record, event, actor).await?;
        self.commit().await?;
        Ok(true)
    }

    /// Runs `statements` in one transaction and commits it, stopping at the
    /// first failure, rolled back (`Ran::Failed`; `Ran::All`: committed): a
    /// script on a database airlock alone uses, a scratch database, with no
    /// lease and no history. The statements must not manage the transaction
    /// themselves. An engine may send it all at once (PostgreSQL does),
    /// trusting that a failed statement aborts the transaction; the default
    /// runs them one after the other.
    async fn run_transaction(&mut self, statements: &[&str]) -> Result<Ran> {
        self.begin().await?;
        for (index, sql) in statements.iter().enumerate() {
            if let Err(error) = self.execute(sql).await {
                let _ = self.rollback().await;
                return Ok(Ran::Failed { index, error });
            }
        }
        self.commit().await?;
        Ok(Ran::All)
    }

    /// [`Driver::run_transaction`], then [`Driver::schema_snapshot_of`] of
    /// `scope`: how long the statements took (the read not counted), what
    /// they did, and, when they all ran and the engine reads parts, the
    /// part read. An engine may read it in the same transaction, before it
    /// commits, sent with the statements (PostgreSQL does: one round trip a
    /// step of a rehearsal); a read that fails must then not cost the
    /// statements their effect. The default runs, then reads.
    async fn run_transaction_and_read(
        &mut self,
        statements: &[&str],
        scope: &airlock_core::snapshot::Scope,
    ) -> Result<(Ran, std::time::Duration, Option<airlock_core::snapshot::SchemaSnapshot>)> {
        run_then_read(self, statements, scope).await
    }

    /// Runs a migration's `statements` in one transaction and commits it with
    /// its history `record` and `event` if the lease is still `owner`'s: the
    /// whole of a transactional migration. `record.finished_at` and
    /// `record.duration_ms` are set as it commits (by the engine's clock where
    /// it can). Stops at the first failure, rolled back. The statements must
    /// not manage the transaction themselves (no savepoints): an engine may
    /// send all of it at once, commit included (PostgreSQL does: one round
    /// trip per migration), trusting that a failed statement aborts the
    /// transaction. `stop` says a person asked the run to stop: checked
    /// before the commit where the engine waits for the statements first (a
    /// signal also cancels the running statement through [`Driver::canceller`]).
    /// The default is [`run_then_commit`].
    async fn run_and_commit(
        &mut self,
        owner: &str,
        statements: &[&str],
        record: &HistoryRecord,
        event: &Event,
        actor: &Actor,
        stop: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<Committed> {
        run_then_commit(self, owner, statements, record, event, actor, stop).await
    }

    /// Reads the lease, the project stamp and the history: what every command
    /// looks at first. Engines that can pipeline the three reads do so.
    async fn read_state(&mut self) -> Result<State> {
        let lease = self.read_lease().await?;
        let project = self.read_project().await?;
        let history = self.read_history().await?;
        Ok(State { lease, project, history })
    }

    /// The current lease, if any process holds it (None when free or the table is missing).
    async fn read_lease(&mut self) -> Result<Option<Lease>>;

    /// Takes the lease. With `previous` None, only if it is free (recreating
    /// the lease row if someone deleted it); otherwise only if the row is still
    /// exactly `previous` (same owner and same `beat`), so a holder whose
    /// heartbeat came back in the meantime keeps it. Bumps `beat`. Returns
    /// whether this claim won; of many claims on the same row, exactly one wins.
    async fn claim_lease(&mut self, claim: &LeaseClaim, previous: Option<&Lease>) -> Result<bool>;

    /// Renews the heartbeat (bumping `beat`) and records the version being
    /// applied; false when the lease is no longer `owner`'s.
    async fn renew_lease(&mut self, owner: &str, version: Option<&str>) -> Result<bool>;

    /// Frees the lease if `owner` holds it.
    async fn release_lease(&mut self, owner: &str) -> Result<()>;

    /// Sets the session's lock and statement timeouts.
    async fn set_timeouts(&mut self, timeouts: Timeouts) -> Result<()>;

    /// Reads the live schema of the connection's default schema/database for
    /// lint and plan: tables with every column attribute, indexes,
    /// constraints, triggers, row estimates and sizes (airlock's own tables
    /// left out), and user functions' volatility where the engine has it.
    async fn load_catalog(&mut self) -> Result<airlock_core::schema::Catalog>;

    /// Reads every object a migration can change into a comparable snapshot
    /// (see `airlock_core::snapshot`): tables, columns, constraints, indexes,
    /// triggers, views, sequences, types, functions, extensions, in the
    /// schemas the connection's user created (system schemas, objects that
    /// belong to an extension and airlock's own tables left out). Reads only.
    async fn schema_snapshot(&mut self) -> Result<airlock_core::snapshot::SchemaSnapshot>;

    /// What [`Driver::schema_snapshot`] would read of `scope` (see
    /// `airlock_core::snapshot::Scope`): every object of its kinds of its
    /// relations and every object of its other kinds; other objects may be
    /// left out. None when the engine reads only whole schemas (the
    /// default): the caller reads the whole schema instead.
    async fn schema_snapshot_of(
        &mut self,
        scope: &airlock_core::snapshot::Scope,
    ) -> Result<Option<airlock_core::snapshot::SchemaSnapshot>> {
        let _ = scope;
        Ok(None)
    }

    /// Writes a backup of `tables` (None: the whole database) to `out`, in
    /// the engine's own format, and says what it saved: each table's rows
    /// and digest, read in the snapshot the backup holds. Reads only.
    async fn backup(
        &mut self,
        tables: Option<&[airlock_core::schema::TableName]>,
        out: backup::BackupWriter<'_>,
    ) -> Result<backup::Saved> {
        let _ = (tables, out);
        Err(DriverError::new(ErrorKind::Unsupported, "backups are not supported on this engine yet"))
    }

    /// Restores a backup [`Driver::backup`] wrote into this database, which
    /// is empty (a scratch database).
    async fn restore(&mut self, input: backup::BackupReader<'_>) -> Result<()> {
        let _ = input;
        Err(DriverError::new(ErrorKind::Unsupported, "restoring backups is not supported on this engine yet"))
    }

    /// Each table's rows and digest, as [`Driver::backup`] reads them.
    async fn digests(&mut self, tables: &[airlock_core::schema::TableName]) -> Result<Vec<backup::TableDigest>> {
        let _ = tables;
        Err(DriverError::new(ErrorKind::Unsupported, "table digests are not supported on this engine yet"))
    }

    /// How a plain table `name` beside `table` (in its schema) is made to
    /// hold `table`'s rows: its columns (a generated one as a plain column),
    /// their types, NOT NULL and the primary key; no defaults, foreign keys,
    /// other indexes or triggers. Read where `table` is (a restored backup);
    /// the statement runs on another database of the engine, where a person
    /// compares the rows with the live table's and copies them back.
    async fn plain_copy(&mut self, table: &airlock_core::schema::TableName, name: &str) -> Result<backup::PlainCopy> {
        let _ = (table, name);
        Err(DriverError::new(
            ErrorKind::Unsupported,
            "restoring a table beside the live one is not supported on this engine yet",
        ))
    }

    /// In the caller's transaction, makes `table`'s rows those of `from` (a
    /// table beside it with the same columns: one restored from a backup),
    /// matched by primary key: rows `from` lacks deleted, the others
    /// updated, the missing inserted; `table`'s definition, indexes and
    /// triggers stay as they are. Its rows before are kept first in a plain
    /// table `keep_as` beside it. Refused before anything is changed when
    /// the columns differ, `table` has no primary key, or a row to delete
    /// would cascade into another table through a foreign key.
    async fn replace_rows(
        &mut self,
        table: &airlock_core::schema::TableName,
        from: &airlock_core::schema::TableName,
        keep_as: &str,
    ) -> Result<backup::Replaced> {
        let _ = (table, from, keep_as);
        Err(DriverError::new(
            ErrorKind::Unsupported,
            "replacing a table's rows from a backup is not supported on this engine yet",
        ))
    }

    /// Says this connection will read the schema again and again, on a
    /// database airlock alone uses for the run (a scratch database, made or
    /// lent): an engine may then prepare the snapshot's queries once, so
    /// that each snapshot after the first is not planned again. Not for a
    /// target, which may be reached through a transaction-pooling proxy.
    /// The default does nothing.
    fn snapshots_repeat(&mut self) {}

    /// Whether a session setting made outside a transaction holds for the
    /// statements after it: false behind a transaction-pooling proxy (each
    /// transaction may run on another server connection), where statements
    /// outside a transaction then run without [`Timeouts`] rather than leave
    /// them on a connection other clients will get. True by default.
    fn session_settings_hold(&self) -> bool {
        true
    }

    /// Creates an empty database `name` beside this one (same server, same
    /// credentials), for rehearsal and drift's replay; fails if it exists or
    /// the user may not create databases. SQLite: nothing to do (the file is
    /// created when opened).
    async fn create_database(&mut self, name: &str) -> Result<()>;

    /// Drops the database `name` made by `create_database` (on PostgreSQL
    /// closing its other connections first). SQLite: removes the file `name`
    /// and its journal.
    async fn drop_database(&mut self, name: &str) -> Result<()>;

    /// Reads `table`'s own rows (not those of its partitions or children),
    /// `columns` of them, at most `limit` (all when None), handing them to
    /// `sink` a bounded chunk at a time; returns how many rows were read.
    /// For rehearsal's copy of the target's data; reads only.
    async fn read_rows(
        &mut self,
        table: &airlock_core::snapshot::ObjectPath,
        columns: &[String],
        limit: Option<u64>,
        sink: &mut dyn RowSink,
    ) -> Result<u64>;

    /// Starts loading copied rows into this database: until `end_load`,
    /// foreign keys are not checked and triggers do not fire on this
    /// session (engines that cannot switch triggers off have them dropped
    /// and made again by `end_load`).
    async fn begin_load(&mut self) -> Result<()>;

    /// Loads one chunk `read_rows` of the same engine gave, into `columns` of `table`.
    async fn load_rows(
        &mut self,
        table: &airlock_core::snapshot::ObjectPath,
        columns: &[String],
        chunk: RowChunk,
    ) -> Result<()>;

    /// Ends loading: triggers and foreign key checks as before, and each
    /// sequence behind a column moved past the column's largest value, so
    /// that rows inserted later do not collide with the copied ones.
    async fn end_load(&mut self) -> Result<()>;

    /// Drops from this database every object `schema_snapshot` would list
    /// except the schemas and extensions `keep` holds (what a database lent
    /// for rehearsal held before: see the caller's emptiness check), with
    /// their contents: tables, views, sequences, routines, types, triggers,
    /// and the schemas and extensions made since. Foreign keys are not
    /// checked meanwhile. Gives a lent scratch database back as it came.
    async fn empty_database(&mut self, keep: &airlock_core::snapshot::SchemaSnapshot) -> Result<()>;

    /// Runs a read query and returns every row with each value as text (NULL
    /// as None): for plan's data checks, whose SQL `airlock-plan` writes.
    async fn query_text(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>>;

    /// Opens a read-only transaction (ended by `rollback`): for `serve`, whose
    /// reads then see one snapshot and cannot write. A transaction rather than a
    /// session setting, which would outlive the read behind a connection pooler.
    async fn begin_read_only(&mut self) -> Result<()>;

    /// Opens a read-only transaction for one of plan's data checks (ended by
    /// `rollback`), whose statements stop after `budget` and wait at most a
    /// second for a lock, so a check never queues behind DDL for long. The
    /// default sets the session's timeouts, then begins; an engine that can
    /// scope them to the transaction does (behind a pooler a session setting
    /// outlives the check).
    async fn begin_check(&mut self, budget: Duration) -> Result<()> {
        self.set_timeouts(Timeouts { lock: CHECK_LOCK_TIMEOUT, statement: budget }).await?;
        self.begin_read_only().await
    }

    /// Opens a transaction.
    async fn begin(&mut self) -> Result<()>;

    /// Commits the open transaction.
    async fn commit(&mut self) -> Result<()>;

    /// Rolls back the open transaction (a no-op when none is open).
    async fn rollback(&mut self) -> Result<()>;

    /// Runs one statement, discarding any rows.
    async fn execute(&mut self, sql: &str) -> Result<()>;

    /// Runs one data statement and returns how many rows it changed.
    async fn execute_counted(&mut self, sql: &str) -> Result<u64>;

    /// The primary key of `table`, its columns in key order (None when it
    /// has none); an error naming the table when there is no such table.
    async fn primary_key(
        &mut self,
        table: &airlock_core::schema::TableName,
    ) -> Result<Option<Vec<airlock_sql::backfill::KeyColumn>>>;

    /// What replaying a lock here means, on a hot standby that can say
    /// (PostgreSQL): how long replay waits for the queries it conflicts
    /// with, and the longest query running now. None elsewhere.
    async fn standby(&mut self) -> Result<Option<Standby>> {
        Ok(None)
    }

    /// The synchronous cluster this server is a node of, when it is one (a
    /// MariaDB Galera cluster); None for a server on its own.
    async fn cluster(&mut self) -> Result<Option<Cluster>> {
        Ok(None)
    }

    /// How far behind its primary this database (a replica) replays: zero
    /// when it has replayed all it received; None when it cannot tell
    /// (replication stopped, nothing replayed yet). An error when it is
    /// not a replica.
    async fn replica_lag(&mut self) -> Result<Option<Duration>> {
        Err(DriverError::new(
            ErrorKind::Unsupported,
            format!("{} has no replicas airlock can watch", self.profile().engine.name()),
        ))
    }

    /// The indexes of `table` other than its primary key, each as its name and
    /// the `CREATE INDEX` statement that would build it again, as the server
    /// prints it (expand/contract builds them again on a new column).
    async fn index_definitions(&mut self, table: &airlock_core::schema::TableName) -> Result<Vec<(String, String)>> {
        let _ = table;
        Err(DriverError::new(
            ErrorKind::Unsupported,
            format!("{} cannot print its indexes' definitions", self.profile().engine.name()),
        ))
    }

    /// Lets go of table locks a script took for this session (MySQL's
    /// `LOCK TABLES`), so that a failure can be recorded. A no-op where
    /// there are none.
    async fn release_table_locks(&mut self) -> Result<()> {
        Ok(())
    }

    /// How many other sessions wait, now, for locks this session holds
    /// (zero when none, or when the engine cannot tell).
    async fn lock_waiters(&mut self) -> Result<u64> {
        Ok(0)
    }

    /// One batch of a backfill in a transaction of its own: `statement`,
    /// the checkpoint (`airlock_meta`'s `key` set to `value` of the rows
    /// the statement changed) and the lease confirmed as still `owner`'s
    /// (its row locked until the commit, as `record_and_commit` does)
    /// commit together, so a process killed at any instant leaves both or
    /// neither, and a run that lost its lease commits no batch. Before the
    /// commit, while the batch holds all its locks, it counts the sessions
    /// waiting for them. None, rolled back, when the lease was lost.
    async fn run_batch(
        &mut self,
        owner: &str,
        version: &str,
        statement: &str,
        key: &str,
        value: &(dyn Fn(u64) -> String + Sync),
    ) -> Result<Option<Batch>> {
        self.begin().await?;
        let batch = async {
            let changed = self.execute_counted(statement).await?;
            let waiters = self.lock_waiters().await?;
            self.write_meta(key, &value(changed)).await?;
            let held = self.renew_lease(owner, Some(version)).await?;
            Ok::<_, DriverError>(held.then_some(Batch { changed, waiters }))
        }
        .await;
        match batch {
            Ok(Some(batch)) => {
                self.commit().await?;
                Ok(Some(batch))
            }
            Ok(None) => {
                self.rollback().await?;
                Ok(None)
            }
            Err(e) => {
                let _ = self.rollback().await;
                Err(e)
            }
        }
    }

    /// Describes sessions that hold locks others wait for, or that sit in long
    /// transactions, for a message after a lock timeout. Best effort.
    async fn describe_blockers(&mut self) -> Result<Vec<String>>;

    /// Whether an index of this name exists and is INVALID (a failed
    /// `CREATE INDEX CONCURRENTLY` leaves one). Engines without the notion answer false.
    async fn index_is_invalid(&mut self, name: &str) -> Result<bool>;

    /// Drops the index `name` with `DROP INDEX CONCURRENTLY` if, and only if, it
    /// exists and is INVALID; returns the name it dropped. Runs outside a transaction.
    async fn drop_invalid_index(&mut self, name: &str) -> Result<Option<String>>;

    /// A handle that stops whatever statement this connection is running,
    /// on the server, from another thread (Ctrl-C). None when the engine
    /// has no way to.
    fn canceller(&self) -> Option<std::sync::Arc<dyn Cancel>> {
        None
    }
}

/// [`Driver::run_transaction_and_read`] in two round trips: the transaction, then the read.
pub async fn run_then_read<D: Driver + ?Sized>(
    driver: &mut D,
    statements: &[&str],
    scope: &airlock_core::snapshot::Scope,
) -> Result<(Ran, std::time::Duration, Option<airlock_core::snapshot::SchemaSnapshot>)> {
    let started = std::time::Instant::now();
    let ran = driver.run_transaction(statements).await?;
    let took = started.elapsed();
    let part = match ran {
        Ran::All => driver.schema_snapshot_of(scope).await?,
        _ => None,
    };
    Ok((ran, took, part))
}

/// [`Driver::run_and_commit`] one step at a time: [`Driver::begin_and_run`]
/// (each statement's answer awaited), then [`Driver::record_and_commit`]; for
/// any engine, and for scripts that manage savepoints.
pub async fn run_then_commit<D: Driver + ?Sized>(
    driver: &mut D,
    owner: &str,
    statements: &[&str],
    record: &HistoryRecord,
    event: &Event,
    actor: &Actor,
    stop: &(dyn Fn() -> bool + Send + Sync),
) -> Result<Committed> {
    let began = std::time::Instant::now();
    match driver.begin_and_run(owner, Some(&record.version.to_string()), statements).await? {
        Ran::All => {}
        Ran::Failed { index, error } => {
            // The statement's error is what counts; the rollback is best effort.
            let _ = driver.rollback().await;
            return Ok(Committed::Failed { index, error });
        }
        Ran::LeaseLost => return Ok(Committed::LeaseLost),
    }
    if stop() {
        let _ = driver.rollback().await;
        return Ok(Committed::Stopped);
    }
    let mut record = record.clone();
    record.finished_at = Some(chrono::Utc::now());
    record.duration_ms = Some(began.elapsed().as_millis() as i64);
    match driver.record_and_commit(owner, &record, event, actor).await {
        Ok(true) => Ok(Committed::Done),
        Ok(false) => Ok(Committed::LeaseLost),
        Err(e) => {
            let _ = driver.rollback().await;
            Err(e)
        }
    }
}

/// Stops the statement a connection is running, on the server: PostgreSQL's
/// cancel request, MySQL's `KILL QUERY` from a second connection, SQLite's
/// interrupt. Doing so when the connection is idle does nothing.
#[async_trait::async_trait]
pub trait Cancel: Send + Sync {
    /// Asks the server to stop the running statement; it then fails with an error.
    async fn cancel(&self) -> Result<()>;
}
