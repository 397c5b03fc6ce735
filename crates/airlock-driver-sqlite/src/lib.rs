//! SQLite driver: the embedded default.
//!
//! Quirks kept here: DDL is transactional, so a migration and its history row
//! commit together under `BEGIN IMMEDIATE`, which also takes SQLite's write lock.
//! The database is a local file, so the run lease needs no heartbeat: it is stale
//! only when the process that holds it is gone (checked by the runner from host
//! and pid). Lock waits are bounded by the busy timeout. There is no statement
//! timeout on SQLite.

mod backup;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use airlock_core::schema::{Catalog, Column, ConstraintInfo, ConstraintKind, Index, Origin, Table, TableName};
use airlock_core::snapshot::{Attributes, ObjectKind, ObjectPath, SchemaSnapshot, squash_whitespace};
use airlock_core::{Actor, Event, HistoryRecord, Kind, Lease, RunMode, RunState, Version};
use airlock_driver::{
    BaseRates, CHUNK_ROWS, Capabilities, Cell, DatabaseUrl, Driver, DriverError, Engine, ErrorKind, LeaseClaim,
    Profile, Result, RowChunk, RowSink, Timeouts, Workload, tables,
};
use airlock_sql::backfill::{KeyColumn, KeyKind};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

/// SQLite's fixed facts.
pub const PROFILE: Profile = Profile {
    engine: Engine::Sqlite,
    dialect: airlock_sql::Dialect::Sqlite,
    capabilities: Capabilities { transactional_ddl: true, lease_heartbeat: false, local_file: true, backups: true },
    // Slower than `airlock calibrate` measures on a temp file (scan 8.4 M,
    // index 1.3 M, copy 2.2 M rows/s): with nothing better known, an estimate errs long.
    default_rates: BaseRates { scan: 3_000_000.0, index: 1_000_000.0, rewrite: 500_000.0 },
    online_form: "keep writers away while it runs",
    calibration,
    hex: |column| format!("hex({column})"),
};

/// SQLite rewrites a table by copying it (the documented 12-step ALTER), so
/// the rewrite timed is a copy.
fn calibration(table: &str, rows: u64) -> Workload {
    Workload {
        fill: vec![
            format!("CREATE TABLE {table} (id INTEGER PRIMARY KEY, val INTEGER, pad TEXT)"),
            format!(
                "INSERT INTO {table} WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {rows}) \
                 SELECT n, (n * 7919) % 1000003, hex(randomblob(16)) FROM g"
            ),
        ],
        scan: format!("SELECT count(*) FROM {table} WHERE pad IS NULL"),
        rewrite: format!("CREATE TABLE {table}_copy AS SELECT * FROM {table}"),
        index: format!("CREATE INDEX {table}_val ON {table} (val)"),
    }
}

/// A connection to one SQLite file.
pub struct SqliteDriver {
    conn: Connection,
    /// Set by `begin_load`: whether foreign keys were enforced, and the
    /// triggers dropped (each `CREATE TRIGGER` statement), for `end_load`.
    load: Option<(bool, Vec<String>)>,
}

fn error(e: rusqlite::Error) -> DriverError {
    let kind = match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => ErrorKind::LockTimeout,
            rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::PermissionDenied => ErrorKind::Permission,
            rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::NotADatabase => ErrorKind::Connection,
            _ => ErrorKind::Statement,
        },
        _ => ErrorKind::Statement,
    };
    let code = match &e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.extended_code.to_string()),
        _ => None,
    };
    let mut err = DriverError::new(kind, e.to_string());
    err.code = code;
    err
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS airlock_history (
    version TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    checksum TEXT NOT NULL,
    up_sql TEXT NOT NULL,
    down_sql TEXT,
    state TEXT NOT NULL,
    mode TEXT NOT NULL,
    statements_done INTEGER NOT NULL,
    statements_total INTEGER NOT NULL,
    failed_statement INTEGER,
    error TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    duration_ms INTEGER,
    os_user TEXT NOT NULL,
    host TEXT NOT NULL,
    airlock_version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS airlock_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    kind TEXT NOT NULL,
    version TEXT,
    detail TEXT NOT NULL,
    os_user TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    airlock_version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS airlock_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS airlock_lock (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    owner TEXT,
    host TEXT,
    pid INTEGER,
    os_user TEXT,
    version TEXT,
    acquired_at TEXT,
    heartbeat_at TEXT,
    beat INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO airlock_lock (id) VALUES (1);
";

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

impl SqliteDriver {
    /// Opens the file named by a `sqlite:` URL; creates it only when `create` is set.
    pub fn connect(url: &DatabaseUrl, create: bool) -> Result<SqliteDriver> {
        let path = url.sqlite_path().unwrap_or_default();
        let mut flags =
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        } else if !Path::new(path).exists() {
            return Err(DriverError::new(
                ErrorKind::Connection,
                format!("the SQLite database `{path}` does not exist (`airlock migrate` creates it)"),
            ));
        }
        let conn = Connection::open_with_flags(path, flags).map_err(|e| {
            DriverError::new(ErrorKind::Connection, format!("cannot open the SQLite database `{path}`: {e}"))
        })?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(error)?;
        Ok(SqliteDriver { conn, load: None })
    }

    /// Opens an existing file read-only (for `serve` and the gate): SQLite then
    /// never writes to it, not even to roll back a leftover journal, and a
    /// locked file is waited for at most a second.
    pub fn open_read_only(url: &DatabaseUrl) -> Result<SqliteDriver> {
        let path = url.sqlite_path().unwrap_or_default();
        if !Path::new(path).exists() {
            return Err(DriverError::new(
                ErrorKind::Connection,
                format!("the SQLite database `{path}` does not exist (`airlock migrate` creates it)"),
            ));
        }
        // A process killed in a write transaction leaves a hot journal that
        // only a writer can roll back: SQLite does so when a writable
        // connection first reads, which changes nothing committed. Only
        // where a journal lies beside the file is that looked into.
        let read = |sql: &str, conn: &Connection| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
        if Path::new(&format!("{path}-journal")).exists() {
            let probe = SqliteDriver::open_file(path)?;
            if let Err(rusqlite::Error::SqliteFailure(e, _)) = read("SELECT count(*) FROM sqlite_master", &probe)
                && e.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK
            {
                let writer = SqliteDriver::connect(url, false)?;
                read("SELECT count(*) FROM sqlite_master", &writer.conn).map_err(error)?;
            }
        }
        Ok(SqliteDriver { conn: SqliteDriver::open_file(path)?, load: None })
    }

    /// The file opened read-only, waiting a second for a writer's lock.
    fn open_file(path: &str) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| {
            DriverError::new(ErrorKind::Connection, format!("cannot open the SQLite database `{path}`: {e}"))
        })?;
        conn.busy_timeout(Duration::from_secs(1)).map_err(error)?;
        Ok(conn)
    }

    fn table_exists(&self, table: &str) -> Result<bool> {
        self.conn
            .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |_| Ok(()))
            .optional()
            .map(|row| row.is_some())
            .map_err(error)
    }
}

fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}

fn time_text(time: &DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn bad_row(what: &str, value: &str) -> DriverError {
    DriverError::new(ErrorKind::Statement, format!("airlock_history holds an unreadable {what} `{value}`"))
}

#[async_trait::async_trait]
impl Driver for SqliteDriver {
    fn profile(&self) -> &'static Profile {
        &PROFILE
    }

    async fn server_version(&mut self) -> Result<String> {
        Ok(format!("SQLite {}", rusqlite::version()))
    }

    async fn ensure_tables(&mut self) -> Result<()> {
        // A read first: it needs no write lock, which another connection may hold.
        if self.table_exists(tables::LOCK)? && self.table_exists(tables::HISTORY)? {
            return Ok(());
        }
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(error)?;
        tx.execute_batch(SCHEMA).map_err(error)?;
        tx.commit().map_err(error)
    }

    async fn stamp_project(&mut self, project: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO airlock_meta (key, value) VALUES ('project', ?1), ('stamped_at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                [project],
            )
            .map(drop)
            .map_err(error)
    }

    async fn read_meta(&mut self, key: &str) -> Result<Option<String>> {
        if !self.table_exists(tables::META)? {
            return Ok(None);
        }
        self.conn
            .query_row("SELECT value FROM airlock_meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(error)
    }

    async fn write_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO airlock_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(drop)
            .map_err(error)
    }

    async fn read_history(&mut self) -> Result<Vec<HistoryRecord>> {
        if !self.table_exists(tables::HISTORY)? {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT version, name, kind, checksum, up_sql, down_sql, state, mode, statements_done, statements_total, \
                 failed_statement, error, started_at, finished_at, duration_ms, os_user, host, airlock_version FROM airlock_history",
            )
            .map_err(error)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    (r.get::<_, u32>(8)?, r.get::<_, u32>(9)?, r.get::<_, Option<u32>>(10)?),
                    r.get::<_, Option<String>>(11)?,
                    (r.get::<_, String>(12)?, r.get::<_, Option<String>>(13)?, r.get::<_, Option<i64>>(14)?),
                    (r.get::<_, String>(15)?, r.get::<_, String>(16)?, r.get::<_, String>(17)?),
                ))
            })
            .map_err(error)?;
        let mut records = Vec::new();
        for row in rows {
            let (version, name, kind, checksum, up_sql, down_sql, state, mode, counts, err, times, who) =
                row.map_err(error)?;
            records.push(HistoryRecord {
                version: Version::parse(&version).map_err(|_| bad_row("version", &version))?,
                name,
                kind: Kind::parse(&kind).ok_or_else(|| bad_row("kind", &kind))?,
                checksum,
                up_sql,
                down_sql,
                state: RunState::parse(&state).ok_or_else(|| bad_row("state", &state))?,
                mode: RunMode::parse(&mode).ok_or_else(|| bad_row("mode", &mode))?,
                statements_done: counts.0,
                statements_total: counts.1,
                failed_statement: counts.2,
                error: err,
                started_at: parse_time(&times.0),
                finished_at: times.1.as_deref().map(parse_time),
                duration_ms: times.2,
                os_user: who.0,
                host: who.1,
                airlock_version: who.2,
            });
        }
        Ok(records)
    }

    async fn write_history(&mut self, r: &HistoryRecord) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO airlock_history (version, name, kind, checksum, up_sql, down_sql, state, mode, \
                 statements_done, statements_total, failed_statement, error, started_at, finished_at, duration_ms, \
                 os_user, host, airlock_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
                params![
                    r.version.to_string(),
                    r.name,
                    r.kind.as_str(),
                    r.checksum,
                    r.up_sql,
                    r.down_sql,
                    r.state.as_str(),
                    r.mode.as_str(),
                    r.statements_done,
                    r.statements_total,
                    r.failed_statement,
                    r.error,
                    time_text(&r.started_at),
                    r.finished_at.as_ref().map(time_text),
                    r.duration_ms,
                    r.os_user,
                    r.host,
                    r.airlock_version,
                ],
            )
            .map(drop)
            .map_err(error)
    }

    async fn append_event(&mut self, event: &Event, actor: &Actor) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO airlock_events (kind, version, detail, os_user, host, pid, airlock_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    event.kind,
                    event.version.as_ref().map(ToString::to_string),
                    event.detail,
                    actor.os_user,
                    actor.host,
                    actor.pid,
                    actor.airlock_version,
                ],
            )
            .map(drop)
            .map_err(error)
    }

    async fn read_lease(&mut self) -> Result<Option<Lease>> {
        if !self.table_exists(tables::LOCK)? {
            return Ok(None);
        }
        self.conn
            .query_row(
                &format!(
                    "SELECT owner, host, pid, os_user, version, acquired_at, (julianday({NOW}) - julianday(heartbeat_at)) * 86400.0, beat \
                     FROM airlock_lock WHERE id = 1 AND owner IS NOT NULL"
                ),
                [],
                |r| {
                    Ok(Lease {
                        owner: r.get(0)?,
                        host: r.get(1)?,
                        pid: r.get(2)?,
                        os_user: r.get(3)?,
                        version: r.get(4)?,
                        acquired_at: parse_time(&r.get::<_, String>(5)?),
                        heartbeat_age_secs: r.get(6)?,
                        beat: r.get(7)?,
                    })
                },
            )
            .optional()
            .map_err(error)
    }

    async fn claim_lease(&mut self, claim: &LeaseClaim, previous: Option<&Lease>) -> Result<bool> {
        if previous.is_none() {
            self.conn.execute("INSERT OR IGNORE INTO airlock_lock (id) VALUES (1)", []).map_err(error)?;
        }
        let changed = self
            .conn
            .execute(
                &format!(
                    "UPDATE airlock_lock SET owner = ?1, host = ?2, pid = ?3, os_user = ?4, version = NULL, \
                     acquired_at = {NOW}, heartbeat_at = {NOW}, beat = beat + 1 \
                     WHERE id = 1 AND ((?5 IS NULL AND owner IS NULL) OR (owner = ?5 AND beat = ?6))"
                ),
                params![
                    claim.owner,
                    claim.host,
                    claim.pid,
                    claim.os_user,
                    previous.map(|l| &l.owner),
                    previous.map(|l| l.beat)
                ],
            )
            .map_err(error)?;
        Ok(changed == 1)
    }

    async fn renew_lease(&mut self, owner: &str, version: Option<&str>) -> Result<bool> {
        let changed = self
            .conn
            .execute(
                &format!("UPDATE airlock_lock SET heartbeat_at = {NOW}, version = ?2, beat = beat + 1 WHERE id = 1 AND owner = ?1"),
                params![owner, version],
            )
            .map_err(error)?;
        Ok(changed == 1)
    }

    async fn release_lease(&mut self, owner: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE airlock_lock SET owner = NULL, host = NULL, pid = NULL, os_user = NULL, version = NULL, \
                 acquired_at = NULL, heartbeat_at = NULL WHERE id = 1 AND owner = ?1",
                [owner],
            )
            .map(drop)
            .map_err(error)
    }

    async fn set_timeouts(&mut self, timeouts: Timeouts) -> Result<()> {
        // SQLite has no statement timeout; the lock timeout is the busy timeout.
        let busy = if timeouts.lock.is_zero() { Duration::from_secs(24 * 3600) } else { timeouts.lock };
        self.conn.busy_timeout(busy).map_err(error)
    }

    async fn backup(
        &mut self,
        tables: Option<&[TableName]>,
        out: airlock_driver::backup::BackupWriter<'_>,
    ) -> Result<airlock_driver::backup::Saved> {
        backup::backup(&mut self.conn, tables, out).await
    }

    async fn restore(&mut self, input: airlock_driver::backup::BackupReader<'_>) -> Result<()> {
        backup::restore(&mut self.conn, input).await
    }

    async fn digests(&mut self, tables: &[TableName]) -> Result<Vec<airlock_driver::backup::TableDigest>> {
        backup::digests(&self.conn, tables)
    }

    async fn plain_copy(&mut self, table: &TableName, name: &str) -> Result<airlock_driver::backup::PlainCopy> {
        backup::plain_copy(&self.conn, table, name)
    }

    async fn replace_rows(
        &mut self,
        table: &TableName,
        from: &TableName,
        keep_as: &str,
    ) -> Result<airlock_driver::backup::Replaced> {
        backup::replace_rows(&self.conn, table, from, keep_as)
    }

    async fn schema_snapshot(&mut self) -> Result<SchemaSnapshot> {
        let rows = |sql: &str, params: &[&dyn rusqlite::ToSql]| text_rows(&self.conn, sql, params);
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let objects = rows(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             AND tbl_name NOT LIKE 'airlock\\_%' ESCAPE '\\' ORDER BY type, name",
            &[],
        )?;
        let mut snapshot = SchemaSnapshot::default();
        let definition = |sql: &Option<String>| -> Attributes {
            sql.iter().map(|s| ("definition".to_owned(), squash_whitespace(s))).collect()
        };
        for object in &objects {
            let (kind, name, table, sql) = (text(&object[0]), text(&object[1]), text(&object[2]), &object[3]);
            match kind.as_str() {
                "table" => {
                    let mut attributes = Attributes::new();
                    for info in
                        rows("SELECT wr, strict FROM pragma_table_list WHERE schema = 'main' AND name = ?1", &[&name])
                            .unwrap_or_default()
                    {
                        if info[0].as_deref() == Some("1") {
                            attributes.insert("without_rowid".into(), "true".into());
                        }
                        if info[1].as_deref() == Some("1") {
                            attributes.insert("strict".into(), "true".into());
                        }
                    }
                    snapshot.insert(ObjectPath::new(ObjectKind::Table, None, &name), attributes);
                    self.snapshot_table(&mut snapshot, &name, &rows)?;
                    snapshot_checks(&mut snapshot, &name, sql.as_deref());
                }
                // Indexes SQLite makes for UNIQUE and PRIMARY KEY have no SQL: the table's constraints say them.
                "index" if sql.is_some() => {
                    let mut attributes = definition(sql);
                    let unique = sql
                        .as_deref()
                        .is_some_and(|s| s.trim_start().to_ascii_uppercase().starts_with("CREATE UNIQUE"));
                    attributes.insert("unique".into(), unique.to_string());
                    snapshot.insert(ObjectPath::of_table(ObjectKind::Index, None, &table, &name), attributes);
                }
                "trigger" => {
                    snapshot.insert(ObjectPath::of_table(ObjectKind::Trigger, None, &table, &name), definition(sql));
                }
                "view" => {
                    snapshot.insert(ObjectPath::new(ObjectKind::View, None, &name), definition(sql));
                }
                _ => {}
            }
        }
        Ok(snapshot)
    }

    async fn create_database(&mut self, _name: &str) -> Result<()> {
        Ok(())
    }

    async fn drop_database(&mut self, name: &str) -> Result<()> {
        for path in [name.to_owned(), format!("{name}-wal"), format!("{name}-shm"), format!("{name}-journal")] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(DriverError::new(ErrorKind::Permission, format!("removing {path}: {e}"))),
            }
        }
        Ok(())
    }

    async fn empty_database(&mut self, _keep: &SchemaSnapshot) -> Result<()> {
        let objects: Vec<(String, String)> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT upper(type), name FROM sqlite_schema WHERE type IN ('table', 'view') \
                     AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE 'airlock\\_%' ESCAPE '\\' \
                     ORDER BY type = 'table'",
                )
                .map_err(error)?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(error)?
                .collect::<rusqlite::Result<_>>()
                .map_err(error)?
        };
        // Dropping a table deletes its rows first, which checks foreign keys when they are on.
        let enforced: bool = self.conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).map_err(error)?;
        self.conn.execute_batch("PRAGMA foreign_keys = OFF").map_err(error)?;
        let dropped = objects.iter().try_for_each(|(kind, name)| {
            self.conn.execute_batch(&format!("DROP {kind} IF EXISTS \"{}\"", name.replace('"', "\"\""))).map_err(error)
        });
        if enforced {
            self.conn.execute_batch("PRAGMA foreign_keys = ON").map_err(error)?;
        }
        dropped?;
        // SQLite's AUTOINCREMENT counters outlive their tables' drop and the
        // table holding them cannot be dropped: emptied instead.
        let counters: bool = self
            .conn
            .query_row("SELECT count(*) > 0 FROM sqlite_schema WHERE name = 'sqlite_sequence'", [], |r| r.get(0))
            .map_err(error)?;
        if counters {
            self.conn.execute_batch("DELETE FROM sqlite_sequence").map_err(error)?;
        }
        Ok(())
    }

    async fn read_rows(
        &mut self,
        table: &ObjectPath,
        columns: &[String],
        limit: Option<u64>,
        sink: &mut dyn RowSink,
    ) -> Result<u64> {
        let (name, list) = (quote(&table.name), column_list(columns));
        // Pages by rowid; a WITHOUT ROWID table by offset.
        let by_rowid = self.conn.prepare(&format!("SELECT rowid FROM {name} LIMIT 0")).is_ok();
        let sql = if by_rowid {
            format!("SELECT rowid, {list} FROM {name} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2")
        } else {
            format!("SELECT 0, {list} FROM {name} LIMIT ?2 OFFSET ?1")
        };
        let (mut after, mut rows) = (if by_rowid { i64::MIN } else { 0 }, 0u64);
        loop {
            let want = limit.map_or(CHUNK_ROWS as u64, |l| (l - rows).min(CHUNK_ROWS as u64));
            if want == 0 {
                break;
            }
            let mut chunk: Vec<Vec<Cell>> = Vec::new();
            {
                let mut stmt = self.conn.prepare_cached(&sql).map_err(error)?;
                let mut found = stmt.query(params![after, want as i64]).map_err(error)?;
                while let Some(row) = found.next().map_err(error)? {
                    if by_rowid {
                        after = row.get(0).map_err(error)?;
                    }
                    let cells = (1..=columns.len()).map(|i| row.get_ref(i).map(cell)).collect::<rusqlite::Result<_>>();
                    chunk.push(cells.map_err(error)?);
                }
            }
            if !by_rowid {
                after += chunk.len() as i64;
            }
            let got = chunk.len() as u64;
            if got > 0 {
                rows += got;
                sink.take(RowChunk::Cells(chunk)).await?;
            }
            if got < want {
                break;
            }
        }
        Ok(rows)
    }

    async fn begin_load(&mut self) -> Result<()> {
        let enforced: bool = self.conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).map_err(error)?;
        self.conn.execute_batch("PRAGMA foreign_keys = OFF").map_err(error)?;
        // SQLite cannot switch triggers off: they are dropped and made again after.
        let triggers: Vec<(String, String)> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND sql IS NOT NULL ORDER BY rowid",
                )
                .map_err(error)?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(error)?
                .collect::<rusqlite::Result<_>>()
                .map_err(error)?
        };
        for (name, _) in &triggers {
            self.conn.execute_batch(&format!("DROP TRIGGER {}", quote(name))).map_err(error)?;
        }
        self.load = Some((enforced, triggers.into_iter().map(|(_, sql)| sql).collect()));
        Ok(())
    }

    async fn load_rows(&mut self, table: &ObjectPath, columns: &[String], chunk: RowChunk) -> Result<()> {
        let RowChunk::Cells(rows) = chunk else {
            return Err(DriverError::new(ErrorKind::Statement, "rows not in SQLite's form".to_owned()));
        };
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(&table.name),
            column_list(columns),
            vec!["?"; columns.len()].join(", ")
        );
        // In the caller's transaction when there is one, else in its own.
        let own = self.conn.is_autocommit();
        if own {
            self.conn.execute_batch("BEGIN").map_err(error)?;
        }
        let inserted = (|| {
            let mut stmt = self.conn.prepare_cached(&sql)?;
            for row in &rows {
                stmt.execute(rusqlite::params_from_iter(row.iter().map(value)))?;
            }
            Ok::<_, rusqlite::Error>(())
        })();
        match (own, inserted) {
            (true, Ok(())) => self.conn.execute_batch("COMMIT").map_err(error),
            (true, Err(e)) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(error(e))
            }
            (false, inserted) => inserted.map_err(error),
        }
    }

    async fn end_load(&mut self) -> Result<()> {
        let Some((enforced, triggers)) = self.load.take() else { return Ok(()) };
        for sql in &triggers {
            self.conn.execute_batch(sql).map_err(error)?;
        }
        if enforced {
            self.conn.execute_batch("PRAGMA foreign_keys = ON").map_err(error)?;
        }
        Ok(())
    }

    async fn load_catalog(&mut self) -> Result<Catalog> {
        // Rows come from ANALYZE's sqlite_stat1 (its first figure is the
        // table's row count) when it was run.
        let analyzed: std::collections::HashMap<String, f64> = {
            let stat = "SELECT tbl, max(CAST(stat AS INTEGER)) FROM sqlite_stat1 GROUP BY tbl";
            match self.conn.prepare(stat) {
                Ok(mut stmt) => stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as f64)))
                    .map(|rows| rows.filter_map(std::result::Result::ok).collect())
                    .unwrap_or_default(),
                Err(_) => Default::default(),
            }
        };
        let objects: Vec<(String, String, String)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND tbl_name NOT LIKE 'airlock\\_%' ESCAPE '\\'")
                .map_err(error)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(error)?;
            rows.collect::<std::result::Result<_, _>>().map_err(error)?
        };
        let mut foreign_keys = foreign_keys(&self.conn)?;
        let mut tables = Vec::new();
        for (_, name, _) in objects.iter().filter(|(kind, _, _)| kind == "table") {
            let mut table = Table::created(TableName::bare(name), "");
            table.origin = Origin::Live;
            // Else max(rowid): an upper bound (deleted rows leave gaps),
            // read off the rowid b-tree's last page; None for WITHOUT ROWID.
            table.rows = analyzed.get(name).copied().or_else(|| {
                let sql = format!("SELECT coalesce(max(rowid), 0) FROM \"{}\"", name.replace('"', "\"\""));
                self.conn.query_row(&sql, [], |r| r.get::<_, i64>(0)).ok().map(|n| n as f64)
            });
            table.bytes = None;
            let mut stmt = self
                .conn
                .prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)")
                .map_err(error)?;
            let columns = stmt
                .query_map([name], |r| {
                    Ok(Column {
                        name: r.get(0)?,
                        data_type: r.get::<_, String>(1)?.to_lowercase(),
                        nullable: r.get::<_, i64>(2)? == 0 && r.get::<_, i64>(4)? == 0,
                        default: r.get(3)?,
                        ..Column::default()
                    })
                })
                .map_err(error)?;
            table.columns = columns.collect::<std::result::Result<_, _>>().map_err(error)?;
            table.constraints = foreign_keys.remove(name).unwrap_or_default();
            let keyed: i64 = self
                .conn
                .query_row("SELECT count(*) FROM pragma_table_info(?1) WHERE pk > 0", [name], |r| r.get(0))
                .map_err(error)?;
            if keyed > 0 {
                // SQLite names no primary key: known to exist, by no name.
                table.constraints.push(ConstraintInfo {
                    name: None,
                    kind: ConstraintKind::PrimaryKey,
                    validated: true,
                    definition: None,
                });
            }
            for (kind, object, _) in objects.iter().filter(|(_, _, on)| on == name) {
                match kind.as_str() {
                    "index" => table.indexes.push(Index { name: object.clone(), columns: Vec::new(), unique: false }),
                    "trigger" => table.triggers.push(object.clone()),
                    _ => {}
                }
            }
            tables.push(table);
        }
        let mut catalog = Catalog::live_in(tables, &["main".to_owned()]);
        catalog.server_version = Some(format!("SQLite {}", rusqlite::version()));
        catalog.database_bytes = self
            .conn
            .query_row("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()", [], |r| {
                r.get::<_, i64>(0)
            })
            .ok()
            .map(|b| b.max(0) as u64);
        Ok(catalog)
    }

    async fn query_text(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        text_rows(&self.conn, sql, &[])
    }

    async fn begin_read_only(&mut self) -> Result<()> {
        // Deferred: a shared lock at the first read, one snapshot for all of them.
        self.conn.execute_batch("BEGIN DEFERRED").map_err(error)
    }

    async fn begin(&mut self) -> Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(error)
    }

    async fn commit(&mut self) -> Result<()> {
        self.conn.execute_batch("COMMIT").map_err(error)
    }

    async fn rollback(&mut self) -> Result<()> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn.execute_batch("ROLLBACK").map_err(error)
    }

    async fn execute(&mut self, sql: &str) -> Result<()> {
        // `prepare` takes the first statement of `sql`; the runner hands over one at a time.
        let mut stmt = self.conn.prepare(sql).map_err(error)?;
        let mut rows = stmt.raw_query();
        while rows.next().map_err(error)?.is_some() {}
        Ok(())
    }

    async fn execute_counted(&mut self, sql: &str) -> Result<u64> {
        self.conn.execute(sql, []).map(|n| n as u64).map_err(error)
    }

    async fn primary_key(&mut self, table: &TableName) -> Result<Option<Vec<KeyColumn>>> {
        let schema = table.schema.as_deref().unwrap_or("main");
        let exists = format!(
            "SELECT 1 FROM \"{}\".sqlite_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
            schema.replace('"', "\"\"")
        );
        let found = self.conn.query_row(&exists, [&table.name], |_| Ok(())).optional().map_err(error)?;
        if found.is_none() {
            return Err(DriverError::new(ErrorKind::Statement, format!("there is no table `{table}`")));
        }
        let mut stmt = self
            .conn
            .prepare("SELECT name, upper(type) FROM pragma_table_info(?1, ?2) WHERE pk > 0 ORDER BY pk")
            .map_err(error)?;
        let key = stmt
            .query_map([&table.name, schema], |r| {
                let kind: String = r.get(1)?;
                // SQLite's affinity rules: a type naming INT is an integer, REAL/FLOA/DOUB/NUMERIC/DECIMAL a number.
                let kind = if ["INT", "REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL"].iter().any(|k| kind.contains(k)) {
                    KeyKind::Number
                } else if kind.contains("BLOB") {
                    KeyKind::Binary
                } else {
                    KeyKind::Text
                };
                Ok(KeyColumn { name: r.get(0)?, kind })
            })
            .map_err(error)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(error)?;
        Ok((!key.is_empty()).then_some(key))
    }

    async fn describe_blockers(&mut self) -> Result<Vec<String>> {
        Ok(vec!["another connection holds SQLite's write lock on this file (SQLite cannot say which)".to_owned()])
    }

    async fn index_is_invalid(&mut self, _name: &str) -> Result<bool> {
        Ok(false)
    }

    async fn drop_invalid_index(&mut self, _name: &str) -> Result<Option<String>> {
        Ok(None)
    }

    fn canceller(&self) -> Option<std::sync::Arc<dyn airlock_driver::Cancel>> {
        Some(std::sync::Arc::new(SqliteCancel(self.conn.get_interrupt_handle())))
    }
}

/// SQLite's interrupt: the running statement stops with SQLITE_INTERRUPT
/// at its next step (the statement runs on the runner's thread, so this is
/// called from another).
struct SqliteCancel(rusqlite::InterruptHandle);

#[async_trait::async_trait]
impl airlock_driver::Cancel for SqliteCancel {
    async fn cancel(&self) -> Result<()> {
        self.0.interrupt();
        Ok(())
    }
}

/// Every table's foreign keys, in one query: unnamed (SQLite keeps no
/// name it can give back), each with a definition saying what it
/// references and its actions.
fn foreign_keys(conn: &rusqlite::Connection) -> Result<BTreeMap<String, Vec<ConstraintInfo>>> {
    let mut stmt = conn
        .prepare(
            "SELECT owner, \"table\", group_concat('\"' || \"from\" || '\"', ', '), \
             group_concat('\"' || coalesce(\"to\", '') || '\"', ', '), min(on_update), min(on_delete) \
             FROM (SELECT m.name AS owner, f.* FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f \
                   WHERE m.type = 'table' ORDER BY owner, f.id, f.seq) GROUP BY owner, id",
        )
        .map_err(error)?;
    let keys = stmt
        .query_map([], |r| {
            let (owner, references, from, to): (String, String, String, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            let (on_update, on_delete): (String, String) = (r.get(4)?, r.get(5)?);
            let to = if to == "\"\"" { String::new() } else { format!("({to})") };
            let key = ConstraintInfo {
                name: None,
                kind: ConstraintKind::ForeignKey,
                validated: true,
                definition: Some(format!(
                    "FOREIGN KEY ({from}) REFERENCES \"{}\"{to} ON UPDATE {on_update} ON DELETE {on_delete}",
                    references.replace('"', "\"\"")
                )),
            };
            Ok((owner, key))
        })
        .map_err(error)?;
    let mut by_table: BTreeMap<String, Vec<ConstraintInfo>> = BTreeMap::new();
    for key in keys {
        let (owner, key) = key.map_err(error)?;
        by_table.entry(owner).or_default().push(key);
    }
    Ok(by_table)
}

/// A table's CHECK constraints: SQLite keeps them only in the table's SQL,
/// read here with the SQLite parser. Named as written, else by their column
/// (`check (b)`) or their expression.
fn snapshot_checks(snapshot: &mut SchemaSnapshot, table: &str, sql: Option<&str>) {
    use airlock_sql::parse::{Constraint, Op};
    let ops = match sql.map(|sql| airlock_sql::parse::parse(sql, airlock_sql::Dialect::Sqlite)) {
        Some(Ok(ops)) => ops,
        // Said on the table rather than left out: its checks cannot be compared.
        Some(Err(e)) => {
            if let Some(attributes) = snapshot.objects.get_mut(&ObjectPath::new(ObjectKind::Table, None, table)) {
                attributes.insert("checks".to_owned(), format!("not read: {}", e.message));
            }
            return;
        }
        None => return,
    };
    for op in ops {
        let Op::CreateTable { columns, constraints, .. } = op else { continue };
        let from_columns =
            columns.iter().filter_map(|c| c.check.as_ref().map(|e| (format!("check ({})", c.name), &e.text)));
        let from_table = constraints.iter().filter_map(|c| match c {
            Constraint::Check { name, expr, .. } => {
                Some((name.clone().unwrap_or_else(|| format!("check {}", squash_whitespace(&expr.text))), &expr.text))
            }
            _ => None,
        });
        for (name, text) in from_columns.chain(from_table).collect::<Vec<_>>() {
            let definition = format!("CHECK ({})", squash_whitespace(text));
            snapshot.insert(
                ObjectPath::of_table(ObjectKind::Constraint, None, table, &name),
                [("type".to_owned(), "check".to_owned()), ("definition".to_owned(), definition)].into_iter().collect(),
            );
        }
    }
}

type SnapshotRows<'a> = dyn Fn(&str, &[&dyn rusqlite::ToSql]) -> Result<Vec<Vec<Option<String>>>> + 'a;

/// Every row of a query, each value as text (NULL as None; a blob as lossy UTF-8).
fn text_rows(conn: &Connection, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<Vec<Vec<Option<String>>>> {
    use rusqlite::types::ValueRef;
    let mut stmt = conn.prepare(sql).map_err(error)?;
    let width = stmt.column_count();
    let rows = stmt
        .query_map(params, |r| {
            (0..width)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        ValueRef::Null => None,
                        ValueRef::Integer(n) => Some(n.to_string()),
                        ValueRef::Real(x) => Some(x.to_string()),
                        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(error)?;
    rows.collect::<std::result::Result<_, _>>().map_err(error)
}

/// A double-quoted identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn column_list(columns: &[String]) -> String {
    columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
}

/// A stored value as a copied one, storage class kept.
fn cell(value: rusqlite::types::ValueRef<'_>) -> Cell {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Integer(i),
        ValueRef::Real(f) => Cell::Real(f),
        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Cell::Bytes(b.to_vec()),
    }
}

/// A copied value as a parameter.
fn value(cell: &Cell) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match cell {
        Cell::Null => Value::Null,
        Cell::Integer(i) => Value::Integer(*i),
        Cell::Real(f) => Value::Real(*f),
        Cell::Text(t) => Value::Text(t.clone()),
        Cell::Bytes(b) => Value::Blob(b.clone()),
    }
}

impl SqliteDriver {
    /// A table's columns, their order, its primary key, unique constraints and foreign keys.
    fn snapshot_table(&self, snapshot: &mut SchemaSnapshot, table: &str, rows: &SnapshotRows<'_>) -> Result<()> {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        // name, type, notnull, dflt_value, pk, hidden (2: generated virtual, 3: stored)
        let columns = rows(
            "SELECT name, type, \"notnull\", dflt_value, pk, hidden FROM pragma_table_xinfo(?1) ORDER BY cid",
            &[&table],
        )?;
        let mut order = Vec::new();
        let mut key: Vec<(i64, String)> = Vec::new();
        for c in &columns {
            let name = text(&c[0]);
            let mut attributes = Attributes::new();
            attributes.insert("type".into(), text(&c[1]).to_lowercase());
            attributes.insert("nullable".into(), (c[2].as_deref() != Some("1")).to_string());
            if let Some(default) = &c[3] {
                attributes.insert("default".into(), default.clone());
            }
            if matches!(c[5].as_deref(), Some("2" | "3")) {
                attributes
                    .insert("generated".into(), if c[5].as_deref() == Some("3") { "stored" } else { "virtual" }.into());
            }
            if let Some(position) = c[4].as_deref().and_then(|p| p.parse::<i64>().ok()).filter(|p| *p > 0) {
                key.push((position, name.clone()));
            }
            order.push(format!("\"{}\"", name.replace('"', "\"\"")));
            snapshot.insert(ObjectPath::of_table(ObjectKind::Column, None, table, &name), attributes);
        }
        snapshot.insert(
            ObjectPath::of_table(ObjectKind::ColumnOrder, None, table, ""),
            [("columns".to_owned(), order.join(", "))].into_iter().collect(),
        );
        if !key.is_empty() {
            key.sort();
            let columns: Vec<String> = key.into_iter().map(|(_, c)| c).collect();
            let definition = format!("PRIMARY KEY ({})", columns.join(", "));
            snapshot.insert(
                ObjectPath::of_table(ObjectKind::Constraint, None, table, "primary key"),
                [("type".to_owned(), "primary key".to_owned()), ("definition".to_owned(), definition)]
                    .into_iter()
                    .collect(),
            );
        }
        // UNIQUE constraints: SQLite names their indexes by position; named here by their columns.
        for index in rows("SELECT name FROM pragma_index_list(?1) WHERE origin = 'u'", &[&table])? {
            let name = text(&index[0]);
            let keys = rows("SELECT name FROM pragma_index_info(?1) ORDER BY seqno", &[&name])?;
            let columns: Vec<String> = keys.iter().map(|k| text(&k[0])).collect();
            let definition = format!("UNIQUE ({})", columns.join(", "));
            snapshot.insert(
                ObjectPath::of_table(ObjectKind::Constraint, None, table, &format!("unique ({})", columns.join(", "))),
                [("type".to_owned(), "unique".to_owned()), ("definition".to_owned(), definition)].into_iter().collect(),
            );
        }
        // Foreign keys: id, seq, table, from, to, on_update, on_delete; unnamed in SQLite, named by their columns.
        let keys = rows(
            "SELECT id, \"table\", \"from\", \"to\", on_update, on_delete FROM pragma_foreign_key_list(?1) ORDER BY id, seq",
            &[&table],
        )?;
        let mut by_id: BTreeMap<String, Vec<&Vec<Option<String>>>> = BTreeMap::new();
        for k in &keys {
            by_id.entry(text(&k[0])).or_default().push(k);
        }
        for parts in by_id.values() {
            let from: Vec<String> = parts.iter().map(|k| text(&k[2])).collect();
            let to: Vec<String> = parts.iter().map(|k| text(&k[3])).collect();
            let target = text(&parts[0][1]);
            let definition = format!(
                "FOREIGN KEY ({}) REFERENCES {target}({}) ON UPDATE {} ON DELETE {}",
                from.join(", "),
                to.join(", "),
                text(&parts[0][4]),
                text(&parts[0][5])
            );
            snapshot.insert(
                ObjectPath::of_table(
                    ObjectKind::Constraint,
                    None,
                    table,
                    &format!("foreign key ({})", from.join(", ")),
                ),
                [("type".to_owned(), "foreign key".to_owned()), ("definition".to_owned(), definition)]
                    .into_iter()
                    .collect(),
            );
        }
        Ok(())
    }
}
