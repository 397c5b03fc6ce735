//! MySQL and MariaDB driver.
//!
//! Quirks kept here:
//! - DDL commits implicitly: no migration with DDL can share a transaction with
//!   its history row. The runner therefore records `running` before, advances
//!   the statement counter after each statement, and marks the end; this driver
//!   says so through `transactional_ddl = false`.
//! - The session runs in UTC (`time_zone = '+00:00'`) so `NOW(6)` and stored
//!   `DATETIME(6)` values are UTC.
//! - Lock waits are bounded by `lock_wait_timeout` (metadata locks, what DDL
//!   waits on) and `innodb_lock_wait_timeout` (row locks), in whole seconds;
//!   error 1205 is a lock timeout. Statement time is bounded by MariaDB's
//!   `max_statement_time` (error 1969) or MySQL's `max_execution_time` (SELECT only, 3024).
//! - `mariadb://` URLs are read as `mysql://`.

mod backup;

use std::collections::BTreeMap;

use airlock_core::schema::{Catalog, Column, ConstraintInfo, ConstraintKind, Index, Origin, Table, TableName};
use airlock_core::snapshot::{Attributes, ObjectKind, ObjectPath, SchemaSnapshot, Scope};
use airlock_core::{Actor, Event, HistoryRecord, Kind, Lease, RunMode, RunState, Version};
use airlock_driver::{
    BaseRates, CHUNK_ROWS, Capabilities, Cell, DatabaseUrl, Driver, DriverError, Engine, ErrorKind, LeaseClaim,
    Profile, Result, RowChunk, RowSink, Timeouts, Workload,
};
use airlock_sql::backfill::{KeyColumn, KeyKind};
use chrono::{DateTime, NaiveDateTime, Utc};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row, Value};

/// MySQL's and MariaDB's fixed facts.
pub const PROFILE: Profile = Profile {
    engine: Engine::MySql,
    dialect: airlock_sql::Dialect::MySql,
    capabilities: Capabilities { transactional_ddl: false, lease_heartbeat: true, local_file: false, backups: true },
    // Slower than `airlock calibrate` measures on a small in-memory table
    // (MariaDB 10.11: scan 7.2 M, index 1.5 M, copy 0.37 M rows/s): with
    // nothing better known, an estimate errs long.
    default_rates: BaseRates { scan: 1_000_000.0, index: 500_000.0, rewrite: 200_000.0 },
    online_form: "use an INPLACE or INSTANT form, or an online schema change tool (gh-ost, pt-online-schema-change)",
    calibration,
    hex: |column| format!("hex({column})"),
};

/// No `generate_series`: the rows come from a cross join of digit tables.
fn calibration(table: &str, rows: u64) -> Workload {
    let digits = rows.max(1).to_string().len();
    let tables: Vec<String> = (0..digits)
        .map(|i| format!("(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) AS d{i}"))
        .collect();
    let number: Vec<String> = (0..digits).map(|i| format!("d{i}.d * {}", 10u64.pow(i as u32))).collect();
    Workload {
        fill: vec![
            format!("CREATE TABLE {table} (id BIGINT NOT NULL PRIMARY KEY, val INT, pad VARCHAR(64)) ENGINE=InnoDB"),
            format!(
                "INSERT INTO {table} SELECT n + 1, ((n + 1) * 7919) % 1000003, MD5(n) FROM (SELECT {} AS n FROM {}) AS s WHERE n < {rows}",
                number.join(" + "),
                tables.join(" CROSS JOIN ")
            ),
            format!("ANALYZE TABLE {table}"),
        ],
        scan: format!("SELECT count(*) FROM {table} WHERE pad IS NULL"),
        rewrite: format!("ALTER TABLE {table} MODIFY val BIGINT, ALGORITHM=COPY"),
        index: format!("ALTER TABLE {table} ADD INDEX {table}_val (val), ALGORITHM=INPLACE"),
    }
}

/// The schema snapshot's queries: the table an object belongs to and its
/// name, after a NULL where PostgreSQL has the schema (one database is
/// compared at a time), then one column per attribute, named as the
/// attribute (NULL: not set). airlock's own tables are left out. Table
/// names are joined and grouped as bytes too: MariaDB's catalog compares
/// them without case, while `Orders` and `orders` are two tables on a
/// server that keeps case. Those of a
/// relation end their WHERE with `/*scope*/`, where a snapshot of a scope
/// puts its filter on the relation's name (see [`scope_filter`]).
mod snapshot_sql {
    pub const TABLES: &str = "SELECT NULL, NULL, TABLE_NAME, ENGINE AS engine, TABLE_COLLATION AS collation, \
         ROW_FORMAT AS row_format, NULLIF(CREATE_OPTIONS, '') AS options, NULLIF(TABLE_COMMENT, '') AS comment \
         FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' \
         AND TABLE_NAME NOT LIKE 'airlock\\_%' /*scope*/";
    /// MariaDB's sequences are tables of their own type.
    pub const SEQUENCES: &str = "SELECT NULL, NULL, TABLE_NAME FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'SEQUENCE'";
    /// Columns of base tables; MariaDB writes "no default" as the text NULL.
    pub const COLUMNS: &str = "SELECT NULL, c.TABLE_NAME, c.COLUMN_NAME, c.COLUMN_TYPE AS type, \
         CASE c.IS_NULLABLE WHEN 'YES' THEN 'true' ELSE 'false' END AS nullable, NULLIF(c.COLUMN_DEFAULT, 'NULL') AS `default`, \
         NULLIF(c.EXTRA, '') AS extra, NULLIF(c.GENERATION_EXPRESSION, '') AS generated, c.CHARACTER_SET_NAME AS charset, \
         c.COLLATION_NAME AS collation, NULLIF(c.COLUMN_COMMENT, '') AS comment \
         FROM information_schema.COLUMNS c JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
         AND CAST(t.TABLE_NAME AS BINARY) = CAST(c.TABLE_NAME AS BINARY) \
         WHERE c.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE' AND c.TABLE_NAME NOT LIKE 'airlock\\_%' /*scope*/";
    pub const COLUMN_ORDER: &str = "SELECT NULL, c.TABLE_NAME, '', \
         GROUP_CONCAT(CONCAT('`', c.COLUMN_NAME, '`') ORDER BY c.ORDINAL_POSITION SEPARATOR ', ') AS columns \
         FROM information_schema.COLUMNS c JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
         AND CAST(t.TABLE_NAME AS BINARY) = CAST(c.TABLE_NAME AS BINARY) \
         WHERE c.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE' AND c.TABLE_NAME NOT LIKE 'airlock\\_%' /*scope*/\
         GROUP BY CAST(c.TABLE_NAME AS BINARY), c.TABLE_NAME";
    /// Indexes (PRIMARY and unique keys among them): method, key parts with prefix length and order.
    pub const INDEXES: &str = "SELECT NULL, TABLE_NAME, INDEX_NAME, \
         CASE WHEN MIN(NON_UNIQUE) = 0 THEN 'true' ELSE 'false' END AS `unique`, MIN(INDEX_TYPE) AS method, \
         GROUP_CONCAT(CONCAT(COALESCE(CONCAT('`', COLUMN_NAME, '`'), '(expression)'), COALESCE(CONCAT('(', SUB_PART, ')'), ''), \
         CASE WHEN COLLATION = 'D' THEN ' DESC' ELSE '' END) ORDER BY SEQ_IN_INDEX SEPARATOR ', ') AS columns, \
         NULLIF(MIN(INDEX_COMMENT), '') AS comment \
         FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME NOT LIKE 'airlock\\_%' /*scope*/\
         GROUP BY CAST(TABLE_NAME AS BINARY), TABLE_NAME, INDEX_NAME";
    pub const FOREIGN_KEYS: &str = "SELECT NULL, k.TABLE_NAME, k.CONSTRAINT_NAME, 'foreign key' AS type, \
         CONCAT('FOREIGN KEY (', GROUP_CONCAT(CONCAT('`', k.COLUMN_NAME, '`') ORDER BY k.ORDINAL_POSITION SEPARATOR ', '), \
         ') REFERENCES `', MIN(k.REFERENCED_TABLE_NAME), '` (', \
         GROUP_CONCAT(CONCAT('`', k.REFERENCED_COLUMN_NAME, '`') ORDER BY k.ORDINAL_POSITION SEPARATOR ', '), \
         ') ON UPDATE ', MIN(r.UPDATE_RULE), ' ON DELETE ', MIN(r.DELETE_RULE)) AS definition \
         FROM information_schema.KEY_COLUMN_USAGE k JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
         ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND r.TABLE_NAME = k.TABLE_NAME \
         AND CAST(r.TABLE_NAME AS BINARY) = CAST(k.TABLE_NAME AS BINARY) \
         WHERE k.TABLE_SCHEMA = DATABASE() AND k.REFERENCED_TABLE_NAME IS NOT NULL /*scope*/\
         GROUP BY CAST(k.TABLE_NAME AS BINARY), k.TABLE_NAME, k.CONSTRAINT_NAME";
    /// MariaDB names a table's checks per table (a column's check by the column).
    pub const CHECKS_MARIADB: &str = "SELECT NULL, TABLE_NAME, CONSTRAINT_NAME, 'check' AS type, CHECK_CLAUSE AS definition \
         FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE() /*scope*/";
    /// MySQL 8's CHECK_CONSTRAINTS has no table: TABLE_CONSTRAINTS does.
    pub const CHECKS_MYSQL: &str = "SELECT NULL, t.TABLE_NAME, c.CONSTRAINT_NAME, 'check' AS type, c.CHECK_CLAUSE AS definition \
         FROM information_schema.CHECK_CONSTRAINTS c JOIN information_schema.TABLE_CONSTRAINTS t \
         ON t.CONSTRAINT_SCHEMA = c.CONSTRAINT_SCHEMA AND t.CONSTRAINT_NAME = c.CONSTRAINT_NAME AND t.CONSTRAINT_TYPE = 'CHECK' \
         WHERE c.CONSTRAINT_SCHEMA = DATABASE() /*scope*/";
    pub const TRIGGERS: &str = "SELECT NULL, EVENT_OBJECT_TABLE, TRIGGER_NAME, \
         CONCAT(ACTION_TIMING, ' ', EVENT_MANIPULATION) AS event, ACTION_STATEMENT AS definition, \
         CAST(ACTION_ORDER AS CHAR) AS `order` FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() /*scope*/";
    pub const VIEWS: &str = "SELECT NULL, NULL, TABLE_NAME, VIEW_DEFINITION AS definition, CHECK_OPTION AS check_option, \
         SECURITY_TYPE AS security FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() /*scope*/";
    pub const ROUTINES: &str = "SELECT NULL, NULL, r.ROUTINE_NAME, LOWER(r.ROUTINE_TYPE) AS kind, r.DTD_IDENTIFIER AS returns, \
         (SELECT GROUP_CONCAT(CONCAT_WS(' ', p.PARAMETER_MODE, p.PARAMETER_NAME, p.DTD_IDENTIFIER) ORDER BY p.ORDINAL_POSITION SEPARATOR ', ') \
          FROM information_schema.PARAMETERS p WHERE p.SPECIFIC_SCHEMA = r.ROUTINE_SCHEMA AND p.SPECIFIC_NAME = r.SPECIFIC_NAME \
          AND p.ORDINAL_POSITION > 0) AS parameters, r.ROUTINE_DEFINITION AS definition \
         FROM information_schema.ROUTINES r WHERE r.ROUTINE_SCHEMA = DATABASE()";
}

/// A connection to one MySQL or MariaDB database.
pub struct MySqlDriver {
    conn: Conn,
    mariadb: bool,
    /// airlock's tables are known to exist (checked once, then trusted).
    tables_ready: bool,
    /// How the connection was made, for the second one `KILL QUERY` needs.
    opts: Opts,
    /// Triggers dropped by `begin_load` (sql_mode, statement), made again by `end_load`.
    unloaded_triggers: Vec<(String, String)>,
    /// Which of `LOCK_WAITERS` this server answers: None until asked; then
    /// the one that answered, or none (no PROCESS privilege): not asked
    /// again on this connection, so each batch costs one query.
    lock_waits: Option<Option<&'static str>>,
}

/// Sessions waiting for locks this connection's transaction holds: MariaDB
/// (and MySQL 5.7) list lock waits in information_schema, MySQL 8 in
/// performance_schema.
const LOCK_WAITERS: [&str; 2] = [
    "SELECT COUNT(*) FROM information_schema.INNODB_LOCK_WAITS w \
     JOIN information_schema.INNODB_TRX t ON t.trx_id = w.blocking_trx_id \
     WHERE t.trx_mysql_thread_id = CONNECTION_ID()",
    "SELECT COUNT(*) FROM performance_schema.data_lock_waits w \
     JOIN information_schema.INNODB_TRX t ON CAST(t.trx_id AS UNSIGNED) = w.BLOCKING_ENGINE_TRANSACTION_ID \
     WHERE t.trx_mysql_thread_id = CONNECTION_ID()",
];

/// `KILL QUERY <id>` from a connection of its own: MySQL stops the
/// statement the first connection runs and keeps that connection open.
struct MySqlCancel {
    opts: Opts,
    id: u32,
}

#[async_trait::async_trait]
impl airlock_driver::Cancel for MySqlCancel {
    async fn cancel(&self) -> Result<()> {
        let mut conn = Conn::new(self.opts.clone()).await.map_err(error)?;
        let killed = conn.query_drop(format!("KILL QUERY {}", self.id)).await.map_err(error);
        let _ = conn.disconnect().await;
        killed
    }
}

fn error(e: mysql_async::Error) -> DriverError {
    match e {
        mysql_async::Error::Server(s) => {
            let kind = match s.code {
                1205 => ErrorKind::LockTimeout,
                1213 => ErrorKind::Conflict,
                1969 | 3024 => ErrorKind::StatementTimeout,
                1044 | 1045 | 1142 | 1143 | 1227 | 1290 => ErrorKind::Permission,
                _ => ErrorKind::Statement,
            };
            DriverError::new(kind, format!("ERROR {} ({}): {}", s.code, s.state, s.message))
                .with_code(s.code.to_string())
        }
        mysql_async::Error::Io(io) => DriverError::new(ErrorKind::Connection, io.to_string()),
        mysql_async::Error::Driver(d) => DriverError::new(ErrorKind::Connection, d.to_string()),
        other => DriverError::new(ErrorKind::Statement, other.to_string()),
    }
}

const SCHEMA: [&str; 5] = [
    "CREATE TABLE IF NOT EXISTS airlock_history (
        version VARCHAR(191) NOT NULL PRIMARY KEY,
        name VARCHAR(512) NOT NULL,
        kind VARCHAR(16) NOT NULL,
        checksum CHAR(64) NOT NULL,
        up_sql LONGTEXT NOT NULL,
        down_sql LONGTEXT,
        state VARCHAR(16) NOT NULL,
        mode VARCHAR(16) NOT NULL,
        statements_done INT NOT NULL,
        statements_total INT NOT NULL,
        failed_statement INT,
        error TEXT,
        started_at DATETIME(6) NOT NULL,
        finished_at DATETIME(6),
        duration_ms BIGINT,
        os_user VARCHAR(255) NOT NULL,
        host VARCHAR(255) NOT NULL,
        airlock_version VARCHAR(64) NOT NULL
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
    "CREATE TABLE IF NOT EXISTS airlock_events (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        kind VARCHAR(64) NOT NULL,
        version VARCHAR(191),
        detail LONGTEXT NOT NULL,
        os_user VARCHAR(255) NOT NULL,
        host VARCHAR(255) NOT NULL,
        pid BIGINT NOT NULL,
        airlock_version VARCHAR(64) NOT NULL
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
    "CREATE TABLE IF NOT EXISTS airlock_meta (
        `key` VARCHAR(191) NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
    "CREATE TABLE IF NOT EXISTS airlock_lock (
        id INT NOT NULL PRIMARY KEY,
        owner VARCHAR(64),
        host VARCHAR(255),
        pid BIGINT,
        os_user VARCHAR(255),
        version VARCHAR(191),
        acquired_at DATETIME(6),
        heartbeat_at DATETIME(6),
        beat BIGINT NOT NULL DEFAULT 0
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
    "INSERT IGNORE INTO airlock_lock (id) VALUES (1)",
];

fn bad_row(what: &str, value: &str) -> DriverError {
    DriverError::new(ErrorKind::Statement, format!("airlock_history holds an unreadable {what} `{value}`"))
}

fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

fn naive(t: &DateTime<Utc>) -> NaiveDateTime {
    t.naive_utc()
}

fn get<T: mysql_async::prelude::FromValue>(row: &Row, index: usize) -> Result<T> {
    row.get_opt::<T, usize>(index)
        .unwrap_or_else(|| Err(mysql_async::FromValueError(Value::NULL)))
        .map_err(|e| DriverError::new(ErrorKind::Statement, format!("airlock_history: unreadable column {index}: {e}")))
}

fn record(row: &Row) -> Result<HistoryRecord> {
    let version: String = get(row, 0)?;
    let kind: String = get(row, 2)?;
    let state: String = get(row, 6)?;
    let mode: String = get(row, 7)?;
    Ok(HistoryRecord {
        version: Version::parse(&version).map_err(|_| bad_row("version", &version))?,
        name: get(row, 1)?,
        kind: Kind::parse(&kind).ok_or_else(|| bad_row("kind", &kind))?,
        checksum: get(row, 3)?,
        up_sql: get(row, 4)?,
        down_sql: get(row, 5)?,
        state: RunState::parse(&state).ok_or_else(|| bad_row("state", &state))?,
        mode: RunMode::parse(&mode).ok_or_else(|| bad_row("mode", &mode))?,
        statements_done: get(row, 8)?,
        statements_total: get(row, 9)?,
        failed_statement: get(row, 10)?,
        error: get(row, 11)?,
        started_at: utc(get(row, 12)?),
        finished_at: get::<Option<NaiveDateTime>>(row, 13)?.map(utc),
        duration_ms: get(row, 14)?,
        os_user: get(row, 15)?,
        host: get(row, 16)?,
        airlock_version: get(row, 17)?,
    })
}

impl MySqlDriver {
    /// Connects and sets the session to UTC.
    pub async fn connect(url: &DatabaseUrl) -> Result<MySqlDriver> {
        let raw = url.expose();
        let raw = match raw.get(..10) {
            Some(prefix) if prefix.eq_ignore_ascii_case("mariadb://") => format!("mysql://{}", &raw[10..]),
            _ => raw.to_owned(),
        };
        let opts = Opts::from_url(&raw).map_err(|e| DriverError::new(ErrorKind::Connection, format!("{url}: {e}")))?;
        let mut conn = Conn::new(opts.clone()).await.map_err(|e| {
            DriverError::new(ErrorKind::Connection, format!("cannot connect to {url}: {}", error(e).message))
        })?;
        conn.query_drop("SET time_zone = '+00:00'").await.map_err(error)?;
        let version: Option<String> = conn.query_first("SELECT VERSION()").await.map_err(error)?;
        let mariadb = version.is_some_and(|v| v.contains("MariaDB"));
        Ok(MySqlDriver { conn, mariadb, tables_ready: false, opts, unloaded_triggers: Vec::new(), lock_waits: None })
    }

    /// Whether all of airlock's tables exist; remembered once true.
    async fn tables_ready(&mut self) -> Result<bool> {
        if !self.tables_ready {
            let found: Option<i64> = self
                .conn
                .query_first(
                    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
                     AND TABLE_NAME IN ('airlock_history', 'airlock_events', 'airlock_meta', 'airlock_lock')",
                )
                .await
                .map_err(error)?;
            self.tables_ready = found == Some(4);
        }
        Ok(self.tables_ready)
    }
}

#[async_trait::async_trait]
impl Driver for MySqlDriver {
    fn profile(&self) -> &'static Profile {
        &PROFILE
    }

    async fn server_version(&mut self) -> Result<String> {
        let version: Option<String> = self.conn.query_first("SELECT VERSION()").await.map_err(error)?;
        Ok(version.unwrap_or_default())
    }

    async fn ensure_tables(&mut self) -> Result<()> {
        if self.tables_ready().await? {
            return Ok(());
        }
        for statement in SCHEMA {
            self.conn.query_drop(statement).await.map_err(error)?;
        }
        self.tables_ready = true;
        Ok(())
    }

    async fn stamp_project(&mut self, project: &str) -> Result<()> {
        self.conn
            .exec_drop(
                "INSERT INTO airlock_meta (`key`, value) VALUES ('project', ?), ('stamped_at', DATE_FORMAT(NOW(6), '%Y-%m-%dT%H:%i:%s.%fZ'))",
                (project,),
            )
            .await
            .map_err(error)
    }

    async fn read_meta(&mut self, key: &str) -> Result<Option<String>> {
        if !self.tables_ready().await? {
            return Ok(None);
        }
        self.conn.exec_first("SELECT value FROM airlock_meta WHERE `key` = ?", (key,)).await.map_err(error)
    }

    async fn write_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.conn
            .exec_drop(
                "INSERT INTO airlock_meta (`key`, value) VALUES (?, ?) ON DUPLICATE KEY UPDATE value = VALUES(value)",
                (key, value),
            )
            .await
            .map_err(error)
    }

    async fn read_history(&mut self) -> Result<Vec<HistoryRecord>> {
        if !self.tables_ready().await? {
            return Ok(Vec::new());
        }
        let rows: Vec<Row> = self
            .conn
            .query(
                "SELECT version, name, kind, checksum, up_sql, down_sql, state, mode, statements_done, statements_total, \
                 failed_statement, error, started_at, finished_at, duration_ms, os_user, host, airlock_version FROM airlock_history",
            )
            .await
            .map_err(error)?;
        rows.iter().map(record).collect()
    }

    async fn write_history(&mut self, r: &HistoryRecord) -> Result<()> {
        let values: Vec<Value> = vec![
            r.version.to_string().into(),
            r.name.clone().into(),
            r.kind.as_str().into(),
            r.checksum.clone().into(),
            r.up_sql.clone().into(),
            r.down_sql.clone().into(),
            r.state.as_str().into(),
            r.mode.as_str().into(),
            r.statements_done.into(),
            r.statements_total.into(),
            r.failed_statement.into(),
            r.error.clone().into(),
            naive(&r.started_at).into(),
            r.finished_at.as_ref().map(naive).into(),
            r.duration_ms.into(),
            r.os_user.clone().into(),
            r.host.clone().into(),
            r.airlock_version.clone().into(),
        ];
        self.conn
            .exec_drop(
                "REPLACE INTO airlock_history (version, name, kind, checksum, up_sql, down_sql, state, mode, \
                 statements_done, statements_total, failed_statement, error, started_at, finished_at, duration_ms, \
                 os_user, host, airlock_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            .await
            .map_err(error)
    }

    async fn append_event(&mut self, event: &Event, actor: &Actor) -> Result<()> {
        let values: Vec<Value> = vec![
            event.kind.clone().into(),
            event.version.as_ref().map(ToString::to_string).into(),
            event.detail.clone().into(),
            actor.os_user.clone().into(),
            actor.host.clone().into(),
            actor.pid.into(),
            actor.airlock_version.clone().into(),
        ];
        self.conn
            .exec_drop(
                "INSERT INTO airlock_events (kind, version, detail, os_user, host, pid, airlock_version) VALUES (?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            .await
            .map_err(error)
    }

    async fn read_lease(&mut self) -> Result<Option<Lease>> {
        if !self.tables_ready().await? {
            return Ok(None);
        }
        let row: Option<Row> = self
            .conn
            .query_first(
                "SELECT owner, host, pid, os_user, version, acquired_at, \
                 TIMESTAMPDIFF(MICROSECOND, heartbeat_at, NOW(6)) / 1000000.0, beat \
                 FROM airlock_lock WHERE id = 1 AND owner IS NOT NULL",
            )
            .await
            .map_err(error)?;
        let Some(row) = row else { return Ok(None) };
        let age: f64 = match row.get::<Value, usize>(6) {
            Some(Value::Bytes(b)) => String::from_utf8_lossy(&b).parse().unwrap_or(0.0),
            Some(Value::Double(d)) => d,
            Some(Value::Float(f)) => f64::from(f),
            Some(Value::Int(i)) => i as f64,
            _ => 0.0,
        };
        Ok(Some(Lease {
            owner: get(&row, 0)?,
            host: get(&row, 1)?,
            pid: get::<i64>(&row, 2)? as u32,
            os_user: get(&row, 3)?,
            version: get(&row, 4)?,
            acquired_at: utc(get(&row, 5)?),
            heartbeat_age_secs: age,
            beat: get(&row, 7)?,
        }))
    }

    async fn claim_lease(&mut self, claim: &LeaseClaim, previous: Option<&Lease>) -> Result<bool> {
        if previous.is_none() {
            self.conn.query_drop("INSERT IGNORE INTO airlock_lock (id) VALUES (1)").await.map_err(error)?;
        }
        let (prev_owner, prev_beat) = (previous.map(|l| l.owner.clone()), previous.map(|l| l.beat));
        let values: Vec<Value> = vec![
            claim.owner.clone().into(),
            claim.host.clone().into(),
            claim.pid.into(),
            claim.os_user.clone().into(),
            prev_owner.clone().into(),
            prev_owner.into(),
            prev_beat.into(),
        ];
        self.conn
            .exec_drop(
                "UPDATE airlock_lock SET owner = ?, host = ?, pid = ?, os_user = ?, version = NULL, \
                 acquired_at = NOW(6), heartbeat_at = NOW(6), beat = beat + 1 \
                 WHERE id = 1 AND ((? IS NULL AND owner IS NULL) OR (owner = ? AND beat = ?))",
                values,
            )
            .await
            .map_err(error)?;
        Ok(self.conn.affected_rows() == 1)
    }

    async fn renew_lease(&mut self, owner: &str, version: Option<&str>) -> Result<bool> {
        // beat always changes, so "affected" means "matched".
        self.conn
            .exec_drop(
                "UPDATE airlock_lock SET heartbeat_at = NOW(6), version = ?, beat = beat + 1 WHERE id = 1 AND owner = ?",
                (version, owner),
            )
            .await
            .map_err(error)?;
        Ok(self.conn.affected_rows() == 1)
    }

    async fn release_lease(&mut self, owner: &str) -> Result<()> {
        self.conn
            .exec_drop(
                "UPDATE airlock_lock SET owner = NULL, host = NULL, pid = NULL, os_user = NULL, version = NULL, \
                 acquired_at = NULL, heartbeat_at = NULL WHERE id = 1 AND owner = ?",
                (owner,),
            )
            .await
            .map_err(error)
    }

    async fn set_timeouts(&mut self, timeouts: Timeouts) -> Result<()> {
        // Whole seconds, at least 1; "no limit" is the server's maximum (one year).
        let lock =
            if timeouts.lock.is_zero() { 31_536_000 } else { timeouts.lock.as_secs_f64().ceil().max(1.0) as u64 };
        let mut sql = format!(
            "SET SESSION lock_wait_timeout = {lock}, SESSION innodb_lock_wait_timeout = {}",
            lock.min(1_073_741_824)
        );
        if self.mariadb {
            sql.push_str(&format!(", SESSION max_statement_time = {}", timeouts.statement.as_secs_f64()));
        } else {
            sql.push_str(&format!(", SESSION max_execution_time = {}", timeouts.statement.as_millis()));
        }
        self.conn.query_drop(sql).await.map_err(error)
    }

    async fn backup(
        &mut self,
        tables: Option<&[TableName]>,
        out: airlock_driver::backup::BackupWriter<'_>,
    ) -> Result<airlock_driver::backup::Saved> {
        backup::backup(&mut self.conn, &self.opts, tables, out).await
    }

    async fn restore(&mut self, input: airlock_driver::backup::BackupReader<'_>) -> Result<()> {
        backup::restore(&self.opts, input).await
    }

    async fn digests(&mut self, tables: &[TableName]) -> Result<Vec<airlock_driver::backup::TableDigest>> {
        backup::digests(&mut self.conn, tables).await
    }

    async fn plain_copy(&mut self, table: &TableName, name: &str) -> Result<airlock_driver::backup::PlainCopy> {
        backup::plain_copy(&mut self.conn, table, name).await
    }

    async fn replace_rows(
        &mut self,
        table: &TableName,
        from: &TableName,
        keep_as: &str,
    ) -> Result<airlock_driver::backup::Replaced> {
        backup::replace_rows(&mut self.conn, table, from, keep_as).await
    }

    async fn schema_snapshot(&mut self) -> Result<SchemaSnapshot> {
        self.read_snapshot(None).await
    }

    async fn schema_snapshot_of(&mut self, scope: &Scope) -> Result<Option<SchemaSnapshot>> {
        // A server that folds table names' case stores `Orders` as `orders`:
        // the names a script writes would not find their objects.
        let folds: Option<u8> = self.conn.query_first("SELECT @@lower_case_table_names").await.map_err(error)?;
        if folds != Some(0) {
            return Ok(None);
        }
        self.read_snapshot(Some(scope)).await.map(Some)
    }

    async fn create_database(&mut self, name: &str) -> Result<()> {
        let sql = format!("CREATE DATABASE `{}`", name.replace('`', "``"));
        self.conn.query_drop(sql).await.map_err(error)
    }

    async fn drop_database(&mut self, name: &str) -> Result<()> {
        let sql = format!("DROP DATABASE IF EXISTS `{}`", name.replace('`', "``"));
        self.conn.query_drop(sql).await.map_err(error)
    }

    async fn empty_database(&mut self, _keep: &SchemaSnapshot) -> Result<()> {
        // A MySQL database has no schemas or extensions inside it: all goes.
        let objects: Vec<(String, String)> = self
            .conn
            .query(
                "SELECT CASE TABLE_TYPE WHEN 'VIEW' THEN 'VIEW' WHEN 'SEQUENCE' THEN 'SEQUENCE' ELSE 'TABLE' END, TABLE_NAME \
                 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME NOT LIKE 'airlock\\_%' \
                 UNION ALL SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() \
                 UNION ALL SELECT 'EVENT', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()",
            )
            .await
            .map_err(error)?;
        let mut statements = vec!["SET @airlock_fk_checks = @@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS = 0".to_owned()];
        // Views first: a view over a table dropped before it would be left invalid, not gone.
        for (kind, name) in
            objects.iter().filter(|(k, _)| k == "VIEW").chain(objects.iter().filter(|(k, _)| k != "VIEW"))
        {
            statements.push(format!("DROP {kind} IF EXISTS `{}`", name.replace('`', "``")));
        }
        let run = async {
            for statement in &statements {
                self.conn.query_drop(statement).await.map_err(error)?;
            }
            Ok(())
        }
        .await;
        let restored = self.conn.query_drop("SET FOREIGN_KEY_CHECKS = @airlock_fk_checks").await.map_err(error);
        run.and(restored)
    }

    async fn read_rows(
        &mut self,
        table: &ObjectPath,
        columns: &[String],
        limit: Option<u64>,
        sink: &mut dyn RowSink,
    ) -> Result<u64> {
        let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
        let sql = format!("SELECT {} FROM {}{limit}", column_list(columns), quote(&table.name));
        let mut result = self.conn.query_iter(sql).await.map_err(error)?;
        let (mut chunk, mut rows) = (Vec::with_capacity(CHUNK_ROWS), 0u64);
        while let Some(row) = result.next().await.map_err(error)? {
            // The text protocol gives every value as its text, NULL apart.
            chunk.push(
                row.unwrap()
                    .into_iter()
                    .map(|v| if let Value::Bytes(b) = v { Cell::Bytes(b) } else { Cell::Null })
                    .collect(),
            );
            if chunk.len() == CHUNK_ROWS {
                rows += chunk.len() as u64;
                sink.take(RowChunk::Cells(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ROWS)))).await?;
            }
        }
        if !chunk.is_empty() {
            rows += chunk.len() as u64;
            sink.take(RowChunk::Cells(chunk)).await?;
        }
        Ok(rows)
    }

    async fn begin_load(&mut self) -> Result<()> {
        self.conn.query_drop("SET FOREIGN_KEY_CHECKS = 0").await.map_err(error)?;
        // MySQL cannot switch triggers off: they are dropped and made again after.
        let names: Vec<String> = self
            .conn
            .query(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() \
                 ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
            )
            .await
            .map_err(error)?;
        for name in names {
            let row: Option<Row> =
                self.conn.query_first(format!("SHOW CREATE TRIGGER {}", quote(&name))).await.map_err(error)?;
            let (mode, statement): (Option<String>, Option<String>) =
                row.map_or((None, None), |r| (r.get("sql_mode"), r.get("SQL Original Statement")));
            let statement = statement.ok_or_else(|| {
                DriverError::new(ErrorKind::Statement, format!("SHOW CREATE TRIGGER {name} gave no statement"))
            })?;
            self.conn.query_drop(format!("DROP TRIGGER {}", quote(&name))).await.map_err(error)?;
            self.unloaded_triggers.push((mode.unwrap_or_default(), statement));
        }
        Ok(())
    }

    async fn load_rows(&mut self, table: &ObjectPath, columns: &[String], chunk: RowChunk) -> Result<()> {
        let RowChunk::Cells(rows) = chunk else {
            return Err(DriverError::new(ErrorKind::Statement, "rows not in MySQL's form".to_owned()));
        };
        // A statement takes at most 65,535 placeholders.
        let per = (60_000 / columns.len().max(1)).clamp(1, CHUNK_ROWS);
        let row = format!("({})", vec!["?"; columns.len()].join(", "));
        for batch in rows.chunks(per) {
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {}",
                quote(&table.name),
                column_list(columns),
                vec![row.as_str(); batch.len()].join(", ")
            );
            let params: Vec<Value> = batch.iter().flatten().map(cell_value).collect();
            self.conn.exec_drop(sql, params).await.map_err(error)?;
        }
        Ok(())
    }

    async fn end_load(&mut self) -> Result<()> {
        let triggers = std::mem::take(&mut self.unloaded_triggers);
        if !triggers.is_empty() {
            self.conn.query_drop("SET @airlock_sql_mode = @@SESSION.sql_mode").await.map_err(error)?;
            for (mode, statement) in &triggers {
                self.conn.exec_drop("SET SESSION sql_mode = ?", (mode,)).await.map_err(error)?;
                self.conn.query_drop(statement).await.map_err(error)?;
            }
            self.conn.query_drop("SET SESSION sql_mode = @airlock_sql_mode").await.map_err(error)?;
        }
        self.conn.query_drop("SET FOREIGN_KEY_CHECKS = 1").await.map_err(error)
    }

    async fn load_catalog(&mut self) -> Result<Catalog> {
        let tables: Vec<(String, Option<i64>, Option<i64>, Option<String>)> = self
            .conn
            .query(
                "SELECT TABLE_NAME, CAST(TABLE_ROWS AS SIGNED), CAST(DATA_LENGTH + INDEX_LENGTH AS SIGNED), TABLE_COLLATION \
                 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' \
                 AND TABLE_NAME NOT LIKE 'airlock\\_%'",
            )
            .await
            .map_err(error)?;
        let columns: Vec<Row> = self
            .conn
            .query(
                "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, CHARACTER_SET_NAME, \
                 COLLATION_NAME, COLUMN_COMMENT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
                 ORDER BY TABLE_NAME, ORDINAL_POSITION",
            )
            .await
            .map_err(error)?;
        // A functional key part (MySQL 8) has no column name: its expression stands in.
        let indexes: Vec<(String, String, i64, Option<String>)> = self
            .conn
            .query(
                "SELECT TABLE_NAME, INDEX_NAME, CAST(MIN(NON_UNIQUE) AS SIGNED), GROUP_CONCAT(COALESCE(COLUMN_NAME, '?') ORDER BY SEQ_IN_INDEX) \
                 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() GROUP BY CAST(TABLE_NAME AS BINARY), TABLE_NAME, INDEX_NAME",
            )
            .await
            .map_err(error)?;
        let constraints: Vec<(String, String, String)> = self
            .conn
            .query(
                "SELECT TABLE_NAME, CONSTRAINT_NAME, CONSTRAINT_TYPE FROM information_schema.TABLE_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = DATABASE()",
            )
            .await
            .map_err(error)?;
        let triggers: Vec<(String, String)> = self
            .conn
            .query("SELECT EVENT_OBJECT_TABLE, TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()")
            .await
            .map_err(error)?;

        let mut by_name: BTreeMap<String, (Table, Option<String>)> = BTreeMap::new();
        for (name, rows, bytes, collation) in tables {
            let mut table = Table::created(TableName::bare(&name), "");
            table.origin = Origin::Live;
            table.rows = rows.map(|r| r as f64);
            table.bytes = bytes;
            table.charset = collation.as_deref().and_then(|c| c.split('_').next()).map(str::to_owned);
            by_name.insert(name, (table, collation));
        }
        for row in &columns {
            let text = |i: usize| -> Option<String> { row.get::<Option<String>, _>(i).flatten() };
            let Some((table, table_collation)) = text(0).and_then(|t| by_name.get_mut(&t)) else { continue };
            let column_type = text(2).unwrap_or_default();
            let extra = text(5).unwrap_or_default().to_lowercase();
            let collation = text(7);
            // Only what differs from the table's default counts as the column's own.
            let table_charset = table_collation.as_deref().and_then(|c| c.split('_').next());
            let charset = text(6).filter(|c| Some(c.as_str()) != table_charset);
            let collation = collation.filter(|c| Some(c) != table_collation.as_ref());
            // MariaDB writes a NULL default as the text `NULL` and quotes
            // strings; MySQL writes strings bare and expressions without their
            // parentheses (EXTRA says DEFAULT_GENERATED): made SQL again here.
            let default = text(4).filter(|d| !self.mariadb || !d.eq_ignore_ascii_case("null")).map(|d| {
                if self.mariadb {
                    d
                } else if extra.contains("default_generated") {
                    if d.to_lowercase().starts_with("current_timestamp") { d } else { format!("({d})") }
                } else if d.parse::<f64>().is_ok() {
                    d
                } else {
                    format!("'{}'", d.replace('\'', "''"))
                }
            });
            let on_update = extra.split("on update ").nth(1).map(|rest| rest.trim().to_uppercase());
            table.columns.push(Column {
                name: text(1).unwrap_or_default(),
                unsigned: column_type.contains("unsigned"),
                data_type: column_type,
                nullable: text(3).as_deref() == Some("YES"),
                default,
                auto_increment: extra.contains("auto_increment"),
                identity: false,
                charset,
                collation,
                comment: text(8).filter(|c| !c.is_empty()),
                on_update,
            });
        }
        for (table, name, non_unique, columns) in indexes {
            if let Some((t, _)) = by_name.get_mut(&table) {
                let columns = columns.unwrap_or_default().split(',').map(str::to_owned).collect();
                t.indexes.push(Index { name, unique: non_unique == 0, columns });
            }
        }
        // Foreign keys' definitions, as the snapshot writes them: what they reference.
        let foreign_keys: Vec<(Option<String>, String, String, String, String)> =
            self.conn.query(snapshot_sql::FOREIGN_KEYS).await.map_err(error)?;
        let definitions: BTreeMap<(String, String), String> =
            foreign_keys.into_iter().map(|(_, table, name, _, definition)| ((table, name), definition)).collect();
        for (table, name, kind) in constraints {
            if let Some((t, _)) = by_name.get_mut(&table) {
                let definition = definitions.get(&(table.clone(), name.clone())).cloned();
                let kind = match kind.as_str() {
                    "PRIMARY KEY" => ConstraintKind::PrimaryKey,
                    "UNIQUE" => ConstraintKind::Unique,
                    "FOREIGN KEY" => ConstraintKind::ForeignKey,
                    "CHECK" => ConstraintKind::Check,
                    _ => ConstraintKind::Other,
                };
                let definition = definition.filter(|_| kind == ConstraintKind::ForeignKey);
                t.constraints.push(ConstraintInfo { name: Some(name), kind, validated: true, definition });
            }
        }
        for (table, name) in triggers {
            if let Some((t, _)) = by_name.get_mut(&table) {
                t.triggers.push(name);
            }
        }
        let (database, version): (Option<String>, String) =
            self.conn.query_first("SELECT DATABASE(), VERSION()").await.map_err(error)?.unwrap_or_default();
        let mut catalog = Catalog::live_in(
            by_name.into_values().map(|(t, _)| t).collect(),
            &database.into_iter().collect::<Vec<_>>(),
        );
        catalog.server_version = Some(version);
        Ok(catalog)
    }

    async fn query_text(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        // The text protocol: every value arrives as bytes.
        let rows: Vec<Row> = self.conn.query(sql).await.map_err(error)?;
        Ok(rows.into_iter().map(|row| row.unwrap().into_iter().map(text_value).collect()).collect())
    }

    async fn begin_read_only(&mut self) -> Result<()> {
        self.conn.query_drop("START TRANSACTION READ ONLY").await.map_err(error)
    }

    async fn begin(&mut self) -> Result<()> {
        self.conn.query_drop("START TRANSACTION").await.map_err(error)
    }

    async fn commit(&mut self) -> Result<()> {
        self.conn.query_drop("COMMIT").await.map_err(error)
    }

    async fn rollback(&mut self) -> Result<()> {
        self.conn.query_drop("ROLLBACK").await.map_err(error)
    }

    async fn execute(&mut self, sql: &str) -> Result<()> {
        self.conn.query_drop(sql).await.map_err(error)
    }

    async fn execute_counted(&mut self, sql: &str) -> Result<u64> {
        self.conn.query_drop(sql).await.map_err(error)?;
        Ok(self.conn.affected_rows())
    }

    async fn cluster(&mut self) -> Result<Option<airlock_driver::Cluster>> {
        // `wsrep_on` exists on MariaDB only (MySQL: error 1193, no cluster).
        let on: Option<(i64, String)> = match self.conn.query_first("SELECT @@wsrep_on, @@wsrep_OSU_method").await {
            Ok(row) => row,
            Err(mysql_async::Error::Server(s)) if s.code == 1193 => return Ok(None),
            Err(e) => return Err(error(e)),
        };
        let Some((1, ddl_method)) = on else { return Ok(None) };
        let rows: Vec<(String, String)> = self
            .conn
            .query(
                "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state_comment', 'wsrep_cluster_size', 'wsrep_cluster_status')",
            )
            .await
            .map_err(error)?;
        let status = |name: &str| rows.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        Ok(Some(airlock_driver::Cluster {
            kind: "Galera",
            nodes: status("wsrep_cluster_size").and_then(|n| n.parse().ok()).unwrap_or(0),
            state: status("wsrep_local_state_comment").unwrap_or_default(),
            primary: status("wsrep_cluster_status").is_some_and(|s| s == "Primary"),
            ddl_method,
        }))
    }

    async fn replica_lag(&mut self) -> Result<Option<std::time::Duration>> {
        // MariaDB 10.5+ and MySQL 8.0.22+ say REPLICA; older servers only SLAVE
        // (a syntax error, 1064, says which). One row per replication channel.
        let rows: Vec<Row> = match self.conn.query("SHOW REPLICA STATUS").await {
            Ok(rows) => rows,
            Err(mysql_async::Error::Server(s)) if s.code == 1064 => {
                self.conn.query("SHOW SLAVE STATUS").await.map_err(error)?
            }
            Err(e) => return Err(error(e)),
        };
        if rows.is_empty() {
            return Err(DriverError::new(ErrorKind::Statement, "it is not a replica (SHOW REPLICA STATUS is empty)"));
        }
        // The channel furthest behind; NULL (its threads stopped) is unknown.
        let mut furthest = Some(std::time::Duration::ZERO);
        for status in &rows {
            let lag = status
                .columns_ref()
                .iter()
                .position(|c| matches!(c.name_str().as_ref(), "Seconds_Behind_Source" | "Seconds_Behind_Master"))
                .ok_or_else(|| {
                    DriverError::new(ErrorKind::Statement, "SHOW REPLICA STATUS has no Seconds_Behind_Source")
                })?;
            let seconds = status.get::<Option<u64>, usize>(lag).flatten().map(std::time::Duration::from_secs);
            furthest = match (furthest, seconds) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        Ok(furthest)
    }

    async fn primary_key(&mut self, table: &TableName) -> Result<Option<Vec<KeyColumn>>> {
        let schema = table.schema.as_deref();
        let exists: Option<i64> = self
            .conn
            .exec_first(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
                (schema, &table.name),
            )
            .await
            .map_err(error)?;
        if exists.is_none() {
            return Err(DriverError::new(ErrorKind::Statement, format!("there is no table `{table}`")));
        }
        let rows: Vec<(String, i64, i64, i64)> = self
            .conn
            .exec(
                "SELECT s.COLUMN_NAME, c.DATA_TYPE IN ('tinyint', 'smallint', 'mediumint', 'int', 'integer', 'bigint', 'decimal', 'numeric', 'float', 'double'), \
                 c.DATA_TYPE IN ('binary', 'varbinary', 'tinyblob', 'blob', 'mediumblob', 'longblob'), c.DATA_TYPE = 'bit' \
                 FROM information_schema.STATISTICS s JOIN information_schema.COLUMNS c \
                 ON c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME \
                 WHERE s.TABLE_SCHEMA = COALESCE(?, DATABASE()) AND s.TABLE_NAME = ? AND s.INDEX_NAME = 'PRIMARY' \
                 ORDER BY s.SEQ_IN_INDEX",
                (schema, &table.name),
            )
            .await
            .map_err(error)?;
        if let Some((name, ..)) = rows.iter().find(|r| r.3 == 1) {
            return Err(DriverError::new(
                ErrorKind::Unsupported,
                format!(
                    "the primary key of `{table}` has the BIT column `{name}`, which airlock cannot cut batches on"
                ),
            ));
        }
        let key: Vec<KeyColumn> = rows
            .into_iter()
            .map(|(name, number, bytes, _)| {
                let kind = match (number, bytes) {
                    (1, _) => KeyKind::Number,
                    (_, 1) => KeyKind::Binary,
                    _ => KeyKind::Text,
                };
                KeyColumn { name, kind }
            })
            .collect();
        Ok((!key.is_empty()).then_some(key))
    }

    async fn index_definitions(&mut self, table: &TableName) -> Result<Vec<(String, String)>> {
        let quote = |name: &str| format!("`{}`", name.replace('`', "``"));
        let rows: Vec<(String, i64, String, Option<String>)> = self
            .conn
            .exec(
                "SELECT INDEX_NAME, MIN(NON_UNIQUE), MIN(INDEX_TYPE), \
                 GROUP_CONCAT(CONCAT('`', REPLACE(COLUMN_NAME, '`', '``'), '`', \
                 IF(SUB_PART IS NULL, '', CONCAT('(', SUB_PART, ')')), IF(COLLATION = 'D', ' DESC', '')) \
                 ORDER BY SEQ_IN_INDEX SEPARATOR ', ') \
                 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? \
                 AND INDEX_NAME <> 'PRIMARY' GROUP BY INDEX_NAME ORDER BY INDEX_NAME",
                (table.schema.as_deref(), table.name.as_str()),
            )
            .await
            .map_err(error)?;
        let mut out = Vec::new();
        for (name, non_unique, kind, columns) in rows {
            let Some(columns) = columns else {
                return Err(DriverError::new(
                    ErrorKind::Unsupported,
                    format!("the index {name} of `{table}` is on an expression, which airlock cannot write again"),
                ));
            };
            let kind = match kind.as_str() {
                "FULLTEXT" => "FULLTEXT ",
                "SPATIAL" => "SPATIAL ",
                _ if non_unique == 0 => "UNIQUE ",
                _ => "",
            };
            let on = match &table.schema {
                Some(schema) => format!("{}.{}", quote(schema), quote(&table.name)),
                None => quote(&table.name),
            };
            out.push((name.clone(), format!("CREATE {kind}INDEX {} ON {on} ({columns})", quote(&name))));
        }
        Ok(out)
    }

    async fn release_table_locks(&mut self) -> Result<()> {
        self.conn.query_drop("UNLOCK TABLES").await.map_err(error)
    }

    async fn lock_waiters(&mut self) -> Result<u64> {
        let queries: &[&'static str] = match self.lock_waits {
            Some(None) => return Ok(0),
            Some(Some(known)) => &[known],
            None if self.mariadb => &LOCK_WAITERS[..1],
            None => &LOCK_WAITERS[..],
        };
        for query in queries.iter().copied() {
            // A failed read of the catalog leaves InnoDB's transaction as it was.
            if let Ok(Some(count)) = self.conn.query_first::<Option<u64>, _>(query).await {
                self.lock_waits = Some(Some(query));
                return Ok(count.unwrap_or(0));
            }
        }
        self.lock_waits = Some(None);
        Ok(0)
    }

    async fn describe_blockers(&mut self) -> Result<Vec<String>> {
        let rows: Vec<Row> = self
            .conn
            .query(
                "SELECT p.ID, p.USER, p.COMMAND, p.TIME, COALESCE(p.STATE, ''), LEFT(COALESCE(p.INFO, ''), 120), \
                 t.trx_started IS NOT NULL FROM information_schema.PROCESSLIST p \
                 LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID \
                 WHERE p.ID <> CONNECTION_ID() AND p.DB = DATABASE() AND (t.trx_id IS NOT NULL OR p.COMMAND <> 'Sleep') \
                 ORDER BY p.TIME DESC LIMIT 5",
            )
            .await
            .map_err(error)?;
        Ok(rows
            .iter()
            .map(|r| {
                let field = |i: usize| r.get::<Option<String>, usize>(i).flatten().unwrap_or_default();
                let open_tx = r.get::<Option<i64>, usize>(6).flatten().unwrap_or(0) == 1;
                format!(
                    "connection {} (user {}) {} for {} s{}{}; last query: {}",
                    r.get::<Option<i64>, usize>(0).flatten().unwrap_or(0),
                    field(1),
                    field(2),
                    r.get::<Option<i64>, usize>(3).flatten().unwrap_or(0),
                    if open_tx { ", in an open transaction" } else { "" },
                    match field(4) {
                        s if s.is_empty() => String::new(),
                        s => format!(", {s}"),
                    },
                    field(5).replace('\n', " ")
                )
            })
            .collect())
    }

    async fn index_is_invalid(&mut self, _name: &str) -> Result<bool> {
        Ok(false)
    }

    async fn drop_invalid_index(&mut self, _name: &str) -> Result<Option<String>> {
        Ok(None)
    }

    fn canceller(&self) -> Option<std::sync::Arc<dyn airlock_driver::Cancel>> {
        Some(std::sync::Arc::new(MySqlCancel { opts: self.opts.clone(), id: self.conn.id() }))
    }
}

/// A value as text: the text protocol gives every value as bytes, NULL apart.
fn text_value(value: Value) -> Option<String> {
    match value {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    }
}

impl MySqlDriver {
    /// The schema snapshot; with a scope, only the objects of its kinds of
    /// its relations and those of its other kinds.
    async fn read_snapshot(&mut self, scope: Option<&Scope>) -> Result<SchemaSnapshot> {
        // Column and key lists are GROUP_CONCATs, cut at 1,024 bytes by default.
        self.conn.query_drop("SET SESSION group_concat_max_len = 4194304").await.map_err(error)?;
        let database: Option<String> = self.conn.query_first("SELECT DATABASE()").await.map_err(error)?;
        let checks = if self.mariadb {
            (snapshot_sql::CHECKS_MARIADB, "TABLE_NAME")
        } else {
            (snapshot_sql::CHECKS_MYSQL, "t.TABLE_NAME")
        };
        let mut snapshot = SchemaSnapshot::default();
        // Each query, the kind it reads, and the column naming the relation of one that belongs to a relation.
        for (kind, sql, relation) in [
            (ObjectKind::Table, snapshot_sql::TABLES, Some("TABLE_NAME")),
            (ObjectKind::Sequence, snapshot_sql::SEQUENCES, None),
            (ObjectKind::Column, snapshot_sql::COLUMNS, Some("c.TABLE_NAME")),
            (ObjectKind::ColumnOrder, snapshot_sql::COLUMN_ORDER, Some("c.TABLE_NAME")),
            (ObjectKind::Index, snapshot_sql::INDEXES, Some("TABLE_NAME")),
            (ObjectKind::Constraint, snapshot_sql::FOREIGN_KEYS, Some("k.TABLE_NAME")),
            (ObjectKind::Constraint, checks.0, Some(checks.1)),
            (ObjectKind::Trigger, snapshot_sql::TRIGGERS, Some("EVENT_OBJECT_TABLE")),
            (ObjectKind::View, snapshot_sql::VIEWS, Some("TABLE_NAME")),
            (ObjectKind::Function, snapshot_sql::ROUTINES, None),
        ] {
            let sql = match (scope, relation) {
                (None, _) => std::borrow::Cow::Borrowed(sql),
                (Some(scope), Some(column)) if scope.parts.contains(&kind) && !scope.relations.is_empty() => {
                    std::borrow::Cow::Owned(sql.replace("/*scope*/", &scope_filter(column, &scope.relations)))
                }
                (Some(scope), None) if scope.others.contains(&kind) => std::borrow::Cow::Borrowed(sql),
                _ => continue,
            };
            let rows: Vec<Row> = self.conn.query(sql.as_ref()).await.map_err(error)?;
            for row in rows {
                let names: Vec<String> = row.columns_ref().iter().map(|c| c.name_str().into_owned()).collect();
                let values: Vec<Option<String>> = row.unwrap().into_iter().map(text_value).collect();
                let mut attributes = Attributes::new();
                for (name, value) in names.iter().zip(&values).skip(3) {
                    if let Some(value) = value {
                        // Definitions (views', triggers', routines') name their database: another database's copy must compare equal.
                        let value = match &database {
                            Some(db) => value.replace(&format!("`{db}`."), ""),
                            None => value.clone(),
                        };
                        attributes.insert(name.clone(), value);
                    }
                }
                let name = values.get(2).cloned().flatten().unwrap_or_default();
                let path = ObjectPath { kind, schema: None, table: values.get(1).cloned().flatten(), name };
                snapshot.insert(path, attributes);
            }
        }
        Ok(snapshot)
    }
}

/// The filter of a relation-bound snapshot query to `relations`, by its
/// relation's name `column`: the names written as hexadecimal text, so that
/// no name needs escaping under any `sql_mode`.
fn scope_filter(column: &str, relations: &std::collections::BTreeSet<String>) -> String {
    let names: Vec<String> = relations
        .iter()
        .map(|name| {
            let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
            format!("CONVERT(X'{hex}' USING utf8mb4)")
        })
        .collect();
    format!("AND {column} IN ({}) ", names.join(", "))
}

/// A backquoted identifier.
fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn column_list(columns: &[String]) -> String {
    columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
}

/// A copied value as a statement parameter.
fn cell_value(cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::NULL,
        Cell::Integer(i) => Value::Int(*i),
        Cell::Real(f) => Value::Double(*f),
        Cell::Text(t) => Value::Bytes(t.clone().into_bytes()),
        Cell::Bytes(b) => Value::Bytes(b.clone()),
    }
}
