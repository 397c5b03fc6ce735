//! PostgreSQL driver.
//!
//! Quirks kept here:
//! - DDL is transactional: a migration and its history row commit together.
//! - Creating airlock's tables is serialized with a *transaction-scoped* advisory
//!   lock (`pg_advisory_xact_lock`), because concurrent `CREATE TABLE IF NOT
//!   EXISTS` can still fail on the catalog's unique index. Transaction-scoped, so
//!   it also works behind a transaction-pooling PgBouncer.
//! - The run lease is a row, not a session advisory lock, for the same reason;
//!   its age is measured with the server's `clock_timestamp()`, never the client's clock.
//! - Timeouts are `lock_timeout` and `statement_timeout`; a lock timeout is
//!   SQLSTATE 55P03, a statement timeout 57014. They are sent once per
//!   migration: with `BEGIN` as `SET LOCAL` (no extra round trip, and right
//!   behind PgBouncer), or before the first statement of a migration that runs
//!   outside a transaction.
//! - Every query is one round trip (`query_typed`: no separate prepare), and
//!   independent ones are pipelined on the connection: what every deploy pays
//!   for "nothing to do" is a handful of round trips. The one exception is a
//!   scratch database's connection, which reads the schema after every step
//!   of a rehearsal: there the snapshot's sixteen queries are prepared once
//!   (`snapshots_repeat`), since planning them was two thirds of each
//!   snapshot; a proxy that loses them sends the connection back to planning.

use std::collections::BTreeMap;

use airlock_core::schema::{
    Catalog, Column, ConstraintInfo, ConstraintKind, Index, Origin, Table, TableName, Volatility,
};
use airlock_core::snapshot::{Attributes, ObjectKind, ObjectPath, SchemaSnapshot, Scope};
use airlock_core::{Actor, Event, HistoryRecord, Kind, Lease, RunMode, RunState, Version};
use airlock_driver::{
    BaseRates, CHUNK_BYTES, Capabilities, Committed, DatabaseUrl, Driver, DriverError, Engine, ErrorKind, LeaseClaim,
    Profile, Ran, Result, RowChunk, RowSink, State, Timeouts, Workload,
};
use airlock_sql::backfill::{KeyColumn, KeyKind};
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

mod archive;
mod backup;
mod tls;

/// PostgreSQL's fixed facts.
pub const PROFILE: Profile = Profile {
    engine: Engine::Postgres,
    dialect: airlock_sql::Dialect::Postgres,
    capabilities: Capabilities { transactional_ddl: true, lease_heartbeat: true, local_file: false, backups: true },
    // From bench/plan.sh on the machine in docs/benchmarks.md.
    default_rates: BaseRates { scan: 2_500_000.0, index: 2_500_000.0, rewrite: 800_000.0 },
    online_form: "use the online form (CREATE INDEX CONCURRENTLY, NOT VALID then VALIDATE, a new column and a backfill) as the lint findings say",
    calibration,
    hex: |column| format!("encode({column}, 'hex')"),
};

fn calibration(table: &str, rows: u64) -> Workload {
    Workload {
        fill: vec![
            format!("CREATE TABLE {table} (id bigint PRIMARY KEY, val integer, pad text)"),
            format!(
                "INSERT INTO {table} SELECT g, (g * 7919) % 1000003, md5(g::text) FROM generate_series(1, {rows}) AS g"
            ),
            format!("ANALYZE {table}"),
        ],
        scan: format!("SELECT count(*) FROM {table} WHERE pad IS NULL"),
        rewrite: format!("ALTER TABLE {table} ALTER COLUMN val TYPE bigint"),
        index: format!("CREATE INDEX {table}_val ON {table} (val)"),
    }
}

const SELECT_META: &str = "SELECT value FROM airlock_meta WHERE key = $1";
const UPSERT_META: &str =
    "INSERT INTO airlock_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value";

/// A connection to one PostgreSQL database.
pub struct PostgresDriver {
    client: Client,
    /// airlock's tables are known to exist (checked once, then trusted).
    tables_ready: bool,
    /// airlock's commit function is known to exist (checked by `ensure_tables`).
    commit_ready: bool,
    /// Timeouts sent as `SET LOCAL` with every `BEGIN`.
    timeouts: Option<Timeouts>,
    /// The session-level timeouts must be set before the next statement outside a transaction.
    session_timeouts_stale: bool,
    /// The URL leads to a transaction-pooling proxy (`pgbouncer=true`): no
    /// session setting is made, since the next transaction may run on
    /// another server connection and this one go to another client.
    pooled: bool,
    in_transaction: bool,
    /// The TLS the connection was made with, for cancel requests (None: plain).
    cancel_tls: Option<MakeRustlsConnect>,
    /// The schema snapshot's queries: prepared once on this connection when
    /// it reads the schema again and again (`snapshots_repeat`).
    snapshot_statements: Prepared,
    /// libpq's environment for `pg_dump` and `pg_restore` to reach the same database.
    tool_env: Vec<(&'static str, String)>,
    /// Where it connected: a second connection reads a large table's
    /// digest in halves.
    url: DatabaseUrl,
}

/// Whether the snapshot's queries are prepared on a connection.
enum Prepared {
    /// Planned with each snapshot (one round trip, through any proxy).
    No,
    /// To be prepared at the next snapshot.
    Wanted,
    /// Prepared, in the order of the snapshot's queries: each whole, and
    /// each relation-bound one also filtered to a scope (None for the others).
    Ready {
        /// For a whole snapshot.
        whole: Vec<tokio_postgres::Statement>,
        /// For a snapshot of a scope.
        scoped: Vec<Option<tokio_postgres::Statement>>,
        /// Whether the server has generic plans to ask for (12 and later: see [`SCOPED_SETTINGS`]).
        generic: bool,
    },
}

/// A PostgreSQL cancel request: a new connection to the server (over the same
/// TLS) naming the backend and its secret key. PgBouncer forwards it.
struct PostgresCancel {
    token: tokio_postgres::CancelToken,
    tls: Option<MakeRustlsConnect>,
}

#[async_trait::async_trait]
impl airlock_driver::Cancel for PostgresCancel {
    async fn cancel(&self) -> Result<()> {
        let sent = match &self.tls {
            None => self.token.cancel_query(NoTls).await,
            Some(tls) => self.token.cancel_query(tls.clone()).await,
        };
        sent.map_err(|e| DriverError::new(ErrorKind::Connection, format!("sending the cancel request failed: {e}")))
    }
}

type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// The schemas lint and plan look at: those on the search path, not the system ones.
const CATALOG_TABLES: &str = "SELECT c.oid::int8, n.nspname::text, c.relname::text, c.reltuples::float8, pg_total_relation_size(c.oid)::int8, \
     pg_relation_size(c.oid)::int8, c.relkind::text, \
     (SELECT sum(greatest(p.reltuples, 0))::float8 FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid WHERE i.inhparent = c.oid) \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (current_schemas(false)) AND c.relname NOT LIKE 'airlock\\_%'";
const CATALOG_COLUMNS: &str = "SELECT a.attrelid::int8, a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, \
     pg_get_expr(d.adbin, d.adrelid), a.attidentity <> '', \
     CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN co.collname::text END \
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
     LEFT JOIN pg_collation co ON co.oid = a.attcollation \
     WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p') AND n.nspname = ANY (current_schemas(false)) \
     ORDER BY a.attrelid, a.attnum";
const CATALOG_INDEXES: &str = "SELECT i.indrelid::int8, ic.relname::text, i.indisunique, \
     ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) k) \
     FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace \
     WHERE n.nspname = ANY (current_schemas(false))";
const CATALOG_CONSTRAINTS: &str = "SELECT co.conrelid::int8, co.conname::text, co.contype::text, co.convalidated, \
     CASE WHEN co.contype IN ('c', 'f') THEN pg_get_constraintdef(co.oid) END \
     FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace \
     WHERE co.conrelid <> 0 AND n.nspname = ANY (current_schemas(false))";
const CATALOG_TRIGGERS: &str = "SELECT tg.tgrelid::int8, tg.tgname::text FROM pg_trigger tg \
     JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE NOT tg.tgisinternal AND n.nspname = ANY (current_schemas(false))";
/// Every function's volatility, built-ins included; of overloads, the most volatile.
const CATALOG_FUNCTIONS: &str = "SELECT p.proname::text, max(p.provolatile::text) FROM pg_proc p \
     WHERE p.proname <> 'airlock_commit_v1' GROUP BY p.proname";
const CATALOG_SEARCH_PATH: &str = "SELECT unnest(current_schemas(false))::text";

/// The schema snapshot's queries. Each returns the object's schema, the
/// table it belongs to and its name, then one text column per attribute,
/// named as the attribute (NULL: not set). Objects in system schemas, those
/// an extension owns and airlock's own are left out.
mod snapshot_sql {
    /// A namespace `n` the user made.
    macro_rules! user_schema {
        () => {
            "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' \
             AND n.nspname NOT LIKE 'pg\\_temp\\_%' "
        };
    }
    /// Made after initdb: every object a user (or an extension) makes has an
    /// id of at least `FirstNormalObjectId`, the built-in ones below it, so
    /// the catalogs' oid indexes skip the thousands of built-in rows.
    macro_rules! made {
        ($oid:literal) => {
            concat!($oid, " >= 16384 AND ")
        };
    }
    /// Where a snapshot of a scope asks that the relation `c` be one of `$1`
    /// ([`super::SCOPE_FILTER`] in place of this comment).
    macro_rules! in_scope {
        () => {
            "/*scope*/ "
        };
    }
    /// Not owned by an extension: `$catalog` is the object's system catalog, `$oid` its id.
    macro_rules! not_extension {
        ($catalog:literal, $oid:literal) => {
            concat!(
                "NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '",
                $catalog,
                "'::regclass AND e.objid = ",
                $oid,
                " AND e.deptype = 'e') "
            )
        };
    }
    pub const SCHEMAS: &str = concat!(
        "SELECT NULL::text, NULL::text, n.nspname::text, (SELECT d.description FROM pg_description d WHERE d.objoid = n.oid AND d.classoid = 'pg_namespace'::regclass AND d.objsubid = 0) AS comment \
         FROM pg_namespace n WHERE ",
        user_schema!(),
        "AND ",
        not_extension!("pg_namespace", "n.oid")
    );
    pub const EXTENSIONS: &str = "SELECT NULL::text, NULL::text, e.extname::text, e.extversion AS version, \
         n.nspname::text AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace";
    pub const ENUMS: &str = concat!(
        "SELECT n.nspname::text, NULL::text, t.typname::text, \
         (SELECT string_agg(quote_literal(v.enumlabel), ', ' ORDER BY v.enumsortorder) FROM pg_enum v WHERE v.enumtypid = t.oid) AS labels, \
         (SELECT d.description FROM pg_description d WHERE d.objoid = t.oid AND d.classoid = 'pg_type'::regclass AND d.objsubid = 0) AS comment \
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typtype = 'e' AND ",
        made!("t.oid"),
        user_schema!(),
        "AND ",
        not_extension!("pg_type", "t.oid")
    );
    pub const DOMAINS: &str = concat!(
        "SELECT n.nspname::text, NULL::text, t.typname::text, format_type(t.typbasetype, t.typtypmod) AS type, \
         CASE WHEN t.typnotnull THEN 'false' ELSE 'true' END AS nullable, t.typdefault AS default, \
         (SELECT string_agg(pg_get_constraintdef(c.oid), ' AND ' ORDER BY c.conname) FROM pg_constraint c WHERE c.contypid = t.oid) AS checks, \
         CASE WHEN t.typcollation <> 0 AND t.typcollation <> b.typcollation THEN (SELECT collname::text FROM pg_collation WHERE oid = t.typcollation) END AS collation \
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_type b ON b.oid = t.typbasetype \
         WHERE t.typtype = 'd' AND ",
        made!("t.oid"),
        user_schema!(),
        "AND ",
        not_extension!("pg_type", "t.oid")
    );
    pub const COMPOSITE_TYPES: &str = concat!(
        "SELECT n.nspname::text, NULL::text, t.typname::text, \
         (SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) \
          FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) AS attributes \
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_class c ON c.oid = t.typrelid \
         WHERE t.typtype = 'c' AND c.relkind = 'c' AND ",
        made!("t.oid"),
        user_schema!(),
        "AND ",
        not_extension!("pg_type", "t.oid")
    );
    /// Sequences, except those behind identity columns (the column says it).
    pub const SEQUENCES: &str = concat!(
        "SELECT n.nspname::text, NULL::text, c.relname::text, format_type(s.seqtypid, NULL) AS type, \
         s.seqstart::text AS start, s.seqincrement::text AS increment, s.seqmin::text AS min, s.seqmax::text AS max, \
         s.seqcache::text AS cache, CASE WHEN s.seqcycle THEN 'true' END AS cycle, \
         (SELECT tc.relname || '.' || a.attname FROM pg_depend d JOIN pg_class tc ON tc.oid = d.refobjid \
          JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a') AS owned_by \
         FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_class'::regclass AND i.objid = c.oid AND i.deptype = 'i') \
         AND NOT (c.relname LIKE 'airlock\\_%' AND n.nspname = ANY (current_schemas(false))) AND ",
        user_schema!(),
        "AND ",
        not_extension!("pg_class", "c.oid")
    );
    /// Functions and procedures by name and argument types, with their whole definition.
    pub const FUNCTIONS: &str = concat!(
        "SELECT n.nspname::text, NULL::text, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', \
         CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END AS kind, pg_get_functiondef(p.oid) AS definition, \
         (SELECT d.description FROM pg_description d WHERE d.objoid = p.oid AND d.classoid = 'pg_proc'::regclass AND d.objsubid = 0) AS comment \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE p.prokind IN ('f', 'p') AND p.proname NOT LIKE 'airlock\\_commit\\_v%' AND ",
        made!("p.oid"),
        user_schema!(),
        "AND ",
        not_extension!("pg_proc", "p.oid")
    );
    /// A table of `c` the user made (ordinary or partitioned), not airlock's.
    macro_rules! user_table {
        () => {
            concat!(
                "c.relkind IN ('r', 'p') AND NOT (c.relname LIKE 'airlock\\_%' AND n.nspname = ANY (current_schemas(false))) AND ",
                in_scope!(),
                user_schema!(),
                "AND ",
                not_extension!("pg_class", "c.oid")
            )
        };
    }
    pub const TABLES: &str = concat!(
        "SELECT n.nspname::text, NULL::text, c.relname::text, \
         CASE c.relkind WHEN 'p' THEN 'true' END AS partitioned, pg_get_partkeydef(c.oid) AS partition_by, \
         (SELECT string_agg(pn.nspname || '.' || pc.relname, ', ' ORDER BY i.inhseqno) FROM pg_inherits i \
          JOIN pg_class pc ON pc.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE i.inhrelid = c.oid) AS parent, \
         pg_get_expr(c.relpartbound, c.oid) AS partition_bound, CASE c.relpersistence WHEN 'u' THEN 'unlogged' END AS persistence, \
         array_to_string(c.reloptions, ', ') AS options, CASE WHEN c.relrowsecurity THEN 'true' END AS row_security, \
         CASE WHEN c.relforcerowsecurity THEN 'true' END AS force_row_security, \
         CASE c.relreplident WHEN 'f' THEN 'full' WHEN 'n' THEN 'nothing' WHEN 'i' THEN 'index' END AS replica_identity, \
         (SELECT d.description FROM pg_description d WHERE d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0) AS comment \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ",
        user_table!()
    );
    pub const COLUMNS: &str = concat!(
        "SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod) AS type, \
         CASE WHEN a.attnotnull THEN 'false' ELSE 'true' END AS nullable, \
         CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END AS default, \
         CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END AS identity, \
         CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END AS generated, \
         CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN co.collname::text END AS collation, \
         (SELECT d.description FROM pg_description d WHERE d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = a.attnum) AS comment \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         LEFT JOIN pg_collation co ON co.oid = a.attcollation \
         WHERE a.attnum > 0 AND NOT a.attisdropped AND ",
        user_table!()
    );
    /// Each table's column names in order (dropped columns' gaps left out).
    pub const COLUMN_ORDER: &str = concat!(
        "SELECT n.nspname::text, c.relname::text, ''::text, \
         string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) AS columns \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE a.attnum > 0 AND NOT a.attisdropped AND ",
        user_table!(),
        "GROUP BY n.nspname, c.relname"
    );
    /// Constraints with their definition (actions, deferrability and NOT VALID
    /// included); PostgreSQL 18's NOT NULL constraints are the column's `nullable`.
    pub const CONSTRAINTS: &str = concat!(
        "SELECT n.nspname::text, c.relname::text, co.conname::text, \
         CASE co.contype WHEN 'p' THEN 'primary key' WHEN 'f' THEN 'foreign key' WHEN 'u' THEN 'unique' \
          WHEN 'c' THEN 'check' WHEN 'x' THEN 'exclusion' ELSE co.contype::text END AS type, \
         pg_get_constraintdef(co.oid) AS definition \
         FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE co.contype NOT IN ('n', 't') AND ",
        user_table!()
    );
    /// Indexes of tables and materialized views: method, keys, INCLUDE and
    /// WHERE as `pg_get_indexdef` writes them after `USING`.
    pub const INDEXES: &str = concat!(
        "SELECT n.nspname::text, c.relname::text, ic.relname::text, \
         CASE WHEN i.indisunique THEN 'true' ELSE 'false' END AS unique, \
         substring(pg_get_indexdef(i.indexrelid) from ' USING (.*)$') AS definition, \
         CASE WHEN NOT i.indisvalid THEN 'false' END AS valid, CASE WHEN i.indisclustered THEN 'true' END AS clustered, \
         (SELECT d.description FROM pg_description d WHERE d.objoid = ic.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0) AS comment \
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'm') AND NOT (c.relname LIKE 'airlock\\_%' AND n.nspname = ANY (current_schemas(false))) AND ",
        in_scope!(),
        user_schema!(),
        "AND ",
        not_extension!("pg_class", "c.oid")
    );
    pub const TRIGGERS: &str = concat!(
        "SELECT n.nspname::text, c.relname::text, tg.tgname::text, pg_get_triggerdef(tg.oid) AS definition, \
         CASE tg.tgenabled WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'replica' WHEN 'A' THEN 'always' END AS enabled \
         FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT tg.tgisinternal AND ",
        made!("tg.tgrelid"),
        in_scope!(),
        user_schema!(),
        "AND ",
        not_extension!("pg_class", "c.oid")
    );
    /// Row-level security policies: command, permissive or not, roles, USING and WITH CHECK.
    pub const POLICIES: &str = concat!(
        "SELECT n.nspname::text, c.relname::text, p.polname::text, \
         CASE p.polcmd WHEN 'r' THEN 'select' WHEN 'a' THEN 'insert' WHEN 'w' THEN 'update' WHEN 'd' THEN 'delete' ELSE 'all' END AS command, \
         CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END AS mode, \
         (SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END, ', ' ORDER BY 1) FROM unnest(p.polroles) r) AS roles, \
         pg_get_expr(p.polqual, p.polrelid) AS \"using\", pg_get_expr(p.polwithcheck, p.polrelid) AS with_check \
         FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ",
        made!("p.polrelid"),
        in_scope!(),
        user_schema!(),
        "AND ",
        not_extension!("pg_class", "c.oid")
    );
    /// What `empty_database` drops, as statements: the user's schemas and
    /// the installed extensions (each name; those to keep are left out by
    /// the caller), then every relation, routine and type in the user's
    /// schemas not owned by an extension, tables first.
    pub const EMPTY_SCHEMAS: &str = concat!(
        "SELECT 'schema', n.nspname::text FROM pg_namespace n WHERE ",
        user_schema!(),
        "AND ",
        not_extension!("pg_namespace", "n.oid"),
        "UNION ALL SELECT 'extension', extname::text FROM pg_extension"
    );
    pub const EMPTY_OBJECTS: &str = concat!(
        "SELECT format('DROP %s IF EXISTS %I.%I CASCADE', CASE c.relkind WHEN 'v' THEN 'VIEW' \
          WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, \
          n.nspname, c.relname), position(c.relkind IN 'rpfvmS') \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') \
         AND NOT (c.relname LIKE 'airlock\\_%' AND n.nspname = ANY (current_schemas(false))) \
         AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_class'::regclass \
          AND i.objid = c.oid AND i.deptype = 'i')) AND ",
        user_schema!(),
        "AND ",
        not_extension!("pg_class", "c.oid"),
        "UNION ALL SELECT format('DROP ROUTINE IF EXISTS %I.%I(%s) CASCADE', n.nspname, p.proname, \
          pg_get_function_identity_arguments(p.oid)), 7 \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE p.prokind IN ('f', 'p', 'a', 'w') AND p.proname NOT LIKE 'airlock\\_commit\\_v%' AND ",
        user_schema!(),
        "AND ",
        not_extension!("pg_proc", "p.oid"),
        "UNION ALL SELECT format('DROP %s IF EXISTS %I.%I CASCADE', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, \
          n.nspname, t.typname), 8 \
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace LEFT JOIN pg_class c ON c.oid = t.typrelid \
         WHERE (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND c.relkind = 'c')) AND ",
        user_schema!(),
        "AND ",
        not_extension!("pg_type", "t.oid"),
        "ORDER BY 2"
    );
    /// Views (`v`) and materialized views (`m`): `relkind!` names which.
    macro_rules! views {
        ($relkind:literal) => {
            concat!(
                "SELECT n.nspname::text, NULL::text, c.relname::text, pg_get_viewdef(c.oid, true) AS definition, \
                 (SELECT d.description FROM pg_description d WHERE d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0) AS comment \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = '",
                $relkind,
                "' AND ",
                in_scope!(),
                user_schema!(),
                "AND ",
                not_extension!("pg_class", "c.oid")
            )
        };
    }
    pub const VIEWS: &str = views!("v");
    pub const MATERIALIZED_VIEWS: &str = views!("m");
}

/// In a relation-bound snapshot query, where the scope's filter goes.
const SCOPE_MARK: &str = "/*scope*/ ";
/// The filter of a snapshot of a scope: the relation `c` is one of `$1`
/// (an index on the relation's name, where the unfiltered query reads all).
const SCOPE_FILTER: &str = "c.relname = ANY ($1::text[]) AND ";

/// The relation-bound snapshot query `sql` filtered to the relations given as `$1`.
fn scoped_query(sql: &str) -> String {
    sql.replace(SCOPE_MARK, SCOPE_FILTER)
}

/// The settings of a scoped snapshot's queries, in the transaction they run
/// in so that they end with it; `[1]` for PostgreSQL 12 and later. A scoped
/// statement is run after each step of a rehearsal: left to itself,
/// PostgreSQL may plan some of them anew at each run for the names given
/// (the views' did, at several times the cost of running them), and a
/// generic plan guesses ten relations and, on a small catalog, would rather
/// read all of `pg_class` than its index on the relation's name (a third of
/// each query's time). Before 12 there is no `plan_cache_mode`.
const SCOPED_SETTINGS: [&str; 2] = [
    "SET LOCAL enable_seqscan = off",
    "SET LOCAL enable_seqscan = off; SET LOCAL plan_cache_mode = force_generic_plan",
];
/// A read-only transaction of its own for a scoped snapshot, with [`SCOPED_SETTINGS`].
const SCOPED_BEGIN: [&str; 2] = [
    "BEGIN READ ONLY; SET LOCAL enable_seqscan = off",
    "BEGIN READ ONLY; SET LOCAL enable_seqscan = off; SET LOCAL plan_cache_mode = force_generic_plan",
];

/// The queries a snapshot of `scope` (None: all) needs, by their place in [`SNAPSHOT_QUERIES`].
fn needed_queries(scope: Option<&Scope>) -> Vec<usize> {
    (0..SNAPSHOT_QUERIES.len())
        .filter(|i| {
            let (kind, _, bound) = SNAPSHOT_QUERIES[*i];
            scope.is_none_or(|s| if bound { s.parts.contains(&kind) } else { s.others.contains(&kind) })
        })
        .collect()
}

/// The `needed` queries with prepared statements, the relation-bound ones
/// filtered to `relations` when there are some.
fn prepared_queries<'a>(
    c: &'a Client,
    needed: &'a [usize],
    whole: &'a [tokio_postgres::Statement],
    scoped: &'a [Option<tokio_postgres::Statement>],
    relations: &'a Option<Vec<String>>,
) -> impl Iterator<Item = impl std::future::Future<Output = std::result::Result<Vec<Row>, tokio_postgres::Error>> + 'a> + 'a
{
    needed.iter().map(move |&i| async move {
        match (relations.is_some() && SNAPSHOT_QUERIES[i].2, &scoped[i]) {
            (true, Some(statement)) => c.query(statement, &[relations as &(dyn ToSql + Sync)]).await,
            _ => c.query(&whole[i], &[]).await,
        }
    })
}

/// The snapshot the `needed` queries answered with `results`.
fn assemble_snapshot(needed: &[usize], results: &[Vec<Row>]) -> SchemaSnapshot {
    let mut snapshot = SchemaSnapshot::default();
    for (i, rows) in needed.iter().zip(results) {
        snapshot_rows(&mut snapshot, SNAPSHOT_QUERIES[*i].0, rows);
    }
    snapshot
}

/// The schema snapshot's queries: the kind each reads, and whether it
/// belongs to a relation (then a scope's relations filter it: `scoped_query`).
const SNAPSHOT_QUERIES: [(ObjectKind, &str, bool); 16] = {
    use snapshot_sql::*;
    [
        (ObjectKind::Schema, SCHEMAS, false),
        (ObjectKind::Extension, EXTENSIONS, false),
        (ObjectKind::Enum, ENUMS, false),
        (ObjectKind::Domain, DOMAINS, false),
        (ObjectKind::CompositeType, COMPOSITE_TYPES, false),
        (ObjectKind::Sequence, SEQUENCES, false),
        (ObjectKind::Function, FUNCTIONS, false),
        (ObjectKind::Table, TABLES, true),
        (ObjectKind::Column, COLUMNS, true),
        (ObjectKind::ColumnOrder, COLUMN_ORDER, true),
        (ObjectKind::Constraint, CONSTRAINTS, true),
        (ObjectKind::Index, INDEXES, true),
        (ObjectKind::Trigger, TRIGGERS, true),
        (ObjectKind::Policy, POLICIES, true),
        (ObjectKind::View, VIEWS, true),
        (ObjectKind::MaterializedView, MATERIALIZED_VIEWS, true),
    ]
};

/// Adds one object per row of a snapshot query: (schema, table, name, attributes...).
fn snapshot_rows(snapshot: &mut SchemaSnapshot, kind: ObjectKind, rows: &[Row]) {
    for row in rows {
        let (schema, table, name): (Option<String>, Option<String>, String) = (row.get(0), row.get(1), row.get(2));
        let mut attributes = Attributes::new();
        for (i, column) in row.columns().iter().enumerate().skip(3) {
            if let Some(value) = row.get::<_, Option<String>>(i) {
                attributes.insert(column.name().to_owned(), value);
            }
        }
        let path = ObjectPath { kind, schema, table, name };
        snapshot.insert(path, attributes);
    }
}

const SELECT_HISTORY: &str = "SELECT version, name, kind, checksum, up_sql, down_sql, state, mode, statements_done, statements_total, \
     failed_statement, error, started_at, finished_at, duration_ms, os_user, host, airlock_version FROM airlock_history";

const SELECT_LEASE: &str = "SELECT owner, host, pid, os_user, version, acquired_at, \
     extract(epoch FROM clock_timestamp() - heartbeat_at)::float8, beat \
     FROM airlock_lock WHERE id = 1 AND owner IS NOT NULL";

const RENEW_LEASE: &str = "UPDATE airlock_lock SET heartbeat_at = clock_timestamp(), version = $2, beat = beat + 1 \
     WHERE id = 1 AND owner = $1 RETURNING 1";

/// Whether all of airlock's tables exist, and whether its commit function does.
const TABLES_EXIST: &str = "SELECT to_regclass('airlock_history') IS NOT NULL \
     AND to_regclass('airlock_events') IS NOT NULL AND to_regclass('airlock_meta') IS NOT NULL \
     AND to_regclass('airlock_lock') IS NOT NULL, to_regproc('airlock_commit_v1') IS NOT NULL";

/// What commits a migration: a function airlock keeps beside its tables
/// (created with them), so that the server plans its statements once per
/// connection instead of for every migration (parsing and planning one
/// statement that did the same work took ~250 µs of the server's time per
/// migration; a call takes a tenth of that), and so that it works behind a
/// transaction-pooling PgBouncer, where a prepared statement would not. It
/// confirms the lease is still its caller's, share-locking the lease row
/// until the commit so that no takeover (an UPDATE of that row) can slip in
/// before it (a lock, not a renewal: the heartbeat renews it), raising
/// `AL001` when it is not; then writes the history record and the event. A
/// NULL finish time or duration is the server's: now, and since the
/// transaction began.
const COMMIT_FUNCTION: &str = "
CREATE OR REPLACE FUNCTION airlock_commit_v1(
    p_owner text, p_version text, p_name text, p_kind text, p_checksum text, p_up_sql text, p_down_sql text,
    p_state text, p_mode text, p_done int4, p_total int4, p_failed int4, p_error text, p_started timestamptz,
    p_finished timestamptz, p_duration int8, p_os_user text, p_host text, p_airlock_version text,
    e_kind text, e_version text, e_detail text, e_os_user text, e_host text, e_pid int8, e_airlock_version text)
RETURNS void LANGUAGE plpgsql AS $airlock$
BEGIN
    PERFORM 1 FROM airlock_lock WHERE id = 1 AND owner = p_owner FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the run lease is no longer this run''s' USING ERRCODE = 'AL001';
    END IF;
    INSERT INTO airlock_history (version, name, kind, checksum, up_sql, down_sql, state, mode, statements_done,
        statements_total, failed_statement, error, started_at, finished_at, duration_ms, os_user, host,
        airlock_version)
    VALUES (p_version, p_name, p_kind, p_checksum, p_up_sql, p_down_sql, p_state, p_mode, p_done, p_total,
        p_failed, p_error, p_started, coalesce(p_finished, clock_timestamp()),
        coalesce(p_duration, (extract(epoch FROM clock_timestamp() - now()) * 1000)::int8), p_os_user, p_host,
        p_airlock_version)
    ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, checksum = EXCLUDED.checksum,
        up_sql = EXCLUDED.up_sql, down_sql = EXCLUDED.down_sql, state = EXCLUDED.state, mode = EXCLUDED.mode,
        statements_done = EXCLUDED.statements_done, statements_total = EXCLUDED.statements_total,
        failed_statement = EXCLUDED.failed_statement, error = EXCLUDED.error, started_at = EXCLUDED.started_at,
        finished_at = EXCLUDED.finished_at, duration_ms = EXCLUDED.duration_ms, os_user = EXCLUDED.os_user,
        host = EXCLUDED.host, airlock_version = EXCLUDED.airlock_version;
    INSERT INTO airlock_events (kind, version, detail, os_user, host, pid, airlock_version)
    VALUES (e_kind, e_version, e_detail, e_os_user, e_host, e_pid, e_airlock_version);
END
$airlock$;
";

/// The call of [`COMMIT_FUNCTION`], its arguments in [`Commit::params`]'s order.
const CONFIRM_AND_RECORD: &str = "SELECT airlock_commit_v1($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
     $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)";

/// The SQLSTATE `airlock_commit_v1` raises when the lease is no longer the caller's.
const LEASE_LOST: &str = "AL001";

const UPSERT_HISTORY: &str = "INSERT INTO airlock_history (version, name, kind, checksum, up_sql, down_sql, state, mode, \
     statements_done, statements_total, failed_statement, error, started_at, finished_at, duration_ms, \
     os_user, host, airlock_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
     ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, checksum = EXCLUDED.checksum, \
     up_sql = EXCLUDED.up_sql, down_sql = EXCLUDED.down_sql, state = EXCLUDED.state, mode = EXCLUDED.mode, \
     statements_done = EXCLUDED.statements_done, statements_total = EXCLUDED.statements_total, \
     failed_statement = EXCLUDED.failed_statement, error = EXCLUDED.error, started_at = EXCLUDED.started_at, \
     finished_at = EXCLUDED.finished_at, duration_ms = EXCLUDED.duration_ms, os_user = EXCLUDED.os_user, \
     host = EXCLUDED.host, airlock_version = EXCLUDED.airlock_version";

const INSERT_EVENT: &str = "INSERT INTO airlock_events (kind, version, detail, os_user, host, pid, airlock_version) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// A history record as the parameters of [`UPSERT_HISTORY`] (and of the
/// commit function, in the same order).
struct HistoryValues<'a> {
    r: &'a HistoryRecord,
    version: String,
    kind: &'static str,
    state: &'static str,
    mode: &'static str,
    done: i32,
    total: i32,
    failed: Option<i32>,
    finished_at: Option<DateTime<Utc>>,
    duration_ms: Option<i64>,
}

impl<'a> HistoryValues<'a> {
    fn new(r: &'a HistoryRecord) -> HistoryValues<'a> {
        HistoryValues {
            r,
            version: r.version.to_string(),
            kind: r.kind.as_str(),
            state: r.state.as_str(),
            mode: r.mode.as_str(),
            done: r.statements_done as i32,
            total: r.statements_total as i32,
            failed: r.failed_statement.map(|n| n as i32),
            finished_at: r.finished_at,
            duration_ms: r.duration_ms,
        }
    }

    fn params(&self) -> [Param<'_>; 18] {
        let r = self.r;
        [
            (&self.version, Type::TEXT),
            (&r.name, Type::TEXT),
            (&self.kind, Type::TEXT),
            (&r.checksum, Type::TEXT),
            (&r.up_sql, Type::TEXT),
            (&r.down_sql, Type::TEXT),
            (&self.state, Type::TEXT),
            (&self.mode, Type::TEXT),
            (&self.done, Type::INT4),
            (&self.total, Type::INT4),
            (&self.failed, Type::INT4),
            (&r.error, Type::TEXT),
            (&r.started_at, Type::TIMESTAMPTZ),
            (&self.finished_at, Type::TIMESTAMPTZ),
            (&self.duration_ms, Type::INT8),
            (&r.os_user, Type::TEXT),
            (&r.host, Type::TEXT),
            (&r.airlock_version, Type::TEXT),
        ]
    }
}

/// An event as the parameters of [`INSERT_EVENT`] (and of the commit function).
struct EventValues<'a> {
    event: &'a Event,
    version: Option<String>,
    actor: &'a Actor,
    pid: i64,
}

impl<'a> EventValues<'a> {
    fn new(event: &'a Event, actor: &'a Actor) -> EventValues<'a> {
        EventValues {
            event,
            version: event.version.as_ref().map(ToString::to_string),
            actor,
            pid: i64::from(actor.pid),
        }
    }

    fn params(&self) -> [Param<'_>; 7] {
        [
            (&self.event.kind, Type::TEXT),
            (&self.version, Type::TEXT),
            (&self.event.detail, Type::TEXT),
            (&self.actor.os_user, Type::TEXT),
            (&self.actor.host, Type::TEXT),
            (&self.pid, Type::INT8),
            (&self.actor.airlock_version, Type::TEXT),
        ]
    }
}

/// The values of [`CONFIRM_AND_RECORD`]: the lease owner, the record, the event.
struct Commit<'a> {
    owner: &'a str,
    history: HistoryValues<'a>,
    event: EventValues<'a>,
}

impl<'a> Commit<'a> {
    fn new(owner: &'a str, r: &'a HistoryRecord, event: &'a Event, actor: &'a Actor) -> Commit<'a> {
        Commit { owner, history: HistoryValues::new(r), event: EventValues::new(event, actor) }
    }

    /// The finish time and duration left to the server, which knows them as it commits.
    fn server_clock(mut self) -> Self {
        self.history.finished_at = None;
        self.history.duration_ms = None;
        self
    }

    fn params(&self) -> Vec<Param<'_>> {
        let owner: Param<'_> = (&self.owner, Type::TEXT);
        std::iter::once(owner).chain(self.history.params()).chain(self.event.params()).collect()
    }
}

/// What the commit call and the COMMIT behind it came to: the lease gone
/// (the call raised [`LEASE_LOST`]), done, or an error. Waiting for the lease
/// row is not a statement of the migration's to retry.
fn committed_with(
    recorded: std::result::Result<Vec<Row>, tokio_postgres::Error>,
    committed: std::result::Result<(), tokio_postgres::Error>,
) -> Result<Committed> {
    match recorded {
        Err(e) if e.code().is_some_and(|c| c.code() == LEASE_LOST) => return Ok(Committed::LeaseLost),
        Err(e) => return Err(DriverError { kind: ErrorKind::Statement, ..error(e) }),
        Ok(_) => {}
    }
    committed.map_err(error)?;
    Ok(Committed::Done)
}

async fn insert_history(client: &Client, r: &HistoryRecord) -> std::result::Result<(), tokio_postgres::Error> {
    client.query_typed(UPSERT_HISTORY, &HistoryValues::new(r).params()).await.map(drop)
}

async fn insert_event(client: &Client, event: &Event, actor: &Actor) -> std::result::Result<(), tokio_postgres::Error> {
    client.query_typed(INSERT_EVENT, &EventValues::new(event, actor).params()).await.map(drop)
}

fn lease(r: &Row) -> Lease {
    Lease {
        owner: r.get(0),
        host: r.get(1),
        pid: r.get::<_, i64>(2) as u32,
        os_user: r.get(3),
        version: r.get(4),
        acquired_at: r.get::<_, DateTime<Utc>>(5),
        heartbeat_age_secs: r.get(6),
        beat: r.get(7),
    }
}

fn error(e: tokio_postgres::Error) -> DriverError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let kind = if *code == SqlState::LOCK_NOT_AVAILABLE {
            ErrorKind::LockTimeout
        } else if *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE {
            ErrorKind::Conflict
        } else if *code == SqlState::QUERY_CANCELED {
            ErrorKind::StatementTimeout
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE || *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            ErrorKind::Permission
        } else if code.code().starts_with("08") || code.code().starts_with("57P") {
            ErrorKind::Connection
        } else {
            ErrorKind::Statement
        };
        let mut message = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            message.push_str(&format!("; DETAIL: {detail}"));
        }
        if let Some(hint) = db.hint() {
            message.push_str(&format!("; HINT: {hint}"));
        }
        return DriverError::new(kind, message).with_code(code.code());
    }
    let kind = if e.is_closed() { ErrorKind::Connection } else { ErrorKind::Statement };
    // The cause (a refused connection, a TLS certificate problem) is in the source chain.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    DriverError::new(kind, message)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS airlock_history (
    version text PRIMARY KEY,
    name text NOT NULL,
    kind text NOT NULL,
    checksum text NOT NULL,
    up_sql text NOT NULL,
    down_sql text,
    state text NOT NULL,
    mode text NOT NULL,
    statements_done integer NOT NULL,
    statements_total integer NOT NULL,
    failed_statement integer,
    error text,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    duration_ms bigint,
    os_user text NOT NULL,
    host text NOT NULL,
    airlock_version text NOT NULL
);
CREATE TABLE IF NOT EXISTS airlock_events (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind text NOT NULL,
    version text,
    detail text NOT NULL,
    os_user text NOT NULL,
    host text NOT NULL,
    pid bigint NOT NULL,
    airlock_version text NOT NULL
);
CREATE TABLE IF NOT EXISTS airlock_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS airlock_lock (
    id integer PRIMARY KEY CHECK (id = 1),
    owner text,
    host text,
    pid bigint,
    os_user text,
    version text,
    acquired_at timestamptz,
    heartbeat_at timestamptz,
    beat bigint NOT NULL DEFAULT 0
);
INSERT INTO airlock_lock (id) VALUES (1) ON CONFLICT DO NOTHING;
";

/// Key of the advisory lock that serializes creating airlock's tables ("airlock" in ASCII).
const SCHEMA_LOCK_KEY: i64 = 0x0061_6972_6c6f_636b;

/// `name` as a quoted identifier.
/// For each sequence behind a column (serial or identity), a statement
/// moving it to the column's largest value, when there is one at or above
/// the sequence's minimum: after copied rows, the next value is new.
const SEQUENCE_MOVES: &str = "SELECT format('SELECT setval(%L, m) FROM (SELECT max(%I) AS m FROM %I.%I) x WHERE m >= %s', \
     s.oid::regclass::text, a.attname, n.nspname, t.relname, q.seqmin) \
     FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_sequence q ON q.seqrelid = s.oid \
     JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace n ON n.oid = t.relnamespace \
     JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid \
     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') \
     AND t.relkind IN ('r', 'p')";

/// `schema.name` of a snapshot's object, quoted.
fn qualified(path: &ObjectPath) -> String {
    match &path.schema {
        Some(schema) => format!("{}.{}", quote_identifier(schema), quote_identifier(&path.name)),
        None => quote_identifier(&path.name),
    }
}

fn column_list(columns: &[String]) -> String {
    columns.iter().map(|c| quote_identifier(c)).collect::<Vec<_>>().join(", ")
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn bad_row(what: &str, value: &str) -> DriverError {
    DriverError::new(ErrorKind::Statement, format!("airlock_history holds an unreadable {what} `{value}`"))
}

fn record(row: &Row) -> Result<HistoryRecord> {
    let version: String = row.get(0);
    let kind: String = row.get(2);
    let state: String = row.get(6);
    let mode: String = row.get(7);
    Ok(HistoryRecord {
        version: Version::parse(&version).map_err(|_| bad_row("version", &version))?,
        name: row.get(1),
        kind: Kind::parse(&kind).ok_or_else(|| bad_row("kind", &kind))?,
        checksum: row.get(3),
        up_sql: row.get(4),
        down_sql: row.get(5),
        state: RunState::parse(&state).ok_or_else(|| bad_row("state", &state))?,
        mode: RunMode::parse(&mode).ok_or_else(|| bad_row("mode", &mode))?,
        statements_done: row.get::<_, i32>(8).max(0) as u32,
        statements_total: row.get::<_, i32>(9).max(0) as u32,
        failed_statement: row.get::<_, Option<i32>>(10).map(|n| n.max(0) as u32),
        error: row.get(11),
        started_at: row.get(12),
        finished_at: row.get(13),
        duration_ms: row.get(14),
        os_user: row.get(15),
        host: row.get(16),
        airlock_version: row.get(17),
    })
}

impl PostgresDriver {
    /// Connects; the connection's I/O runs on a task of the current tokio runtime.
    pub async fn connect(url: &DatabaseUrl) -> Result<PostgresDriver> {
        let (without, pooled) =
            pooled_param(url.expose()).map_err(|e| DriverError::new(e.kind, format!("{url}: {}", e.message)))?;
        let tls = tls::split_params(&without).map_err(|e| DriverError::new(e.kind, format!("{url}: {}", e.message)))?;
        let mut config: tokio_postgres::Config = tls
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| DriverError::new(ErrorKind::Connection, format!("{url}: {e}")))?;
        config.ssl_mode(match tls.mode {
            tls::SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            tls::SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        if config.get_application_name().is_none() {
            config.application_name("airlock");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        let tool_env = backup::tool_env(&config, &tls);
        let failed = |e: tokio_postgres::Error| {
            DriverError::new(ErrorKind::Connection, format!("cannot connect to {url}: {}", error(e).message))
        };
        let (client, cancel_tls) = if tls.mode == tls::SslMode::Disable {
            let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
            // Errors surface on the client's next call as a closed connection.
            tokio::spawn(async move { drop(connection.await) });
            (client, None)
        } else {
            let connector = MakeRustlsConnect::new(tls::client_config(tls.mode, tls.root_cert.as_deref())?);
            let (client, connection) = config.connect(connector.clone()).await.map_err(failed)?;
            tokio::spawn(async move { drop(connection.await) });
            (client, Some(connector))
        };
        Ok(PostgresDriver {
            client,
            tables_ready: false,
            commit_ready: false,
            timeouts: None,
            session_timeouts_stale: false,
            in_transaction: false,
            cancel_tls,
            snapshot_statements: Prepared::No,
            tool_env,
            url: url.clone(),
            pooled,
        })
    }

    /// Prepares the snapshot's statements when asked to (see
    /// [`Driver::snapshots_repeat`]); refused (a proxy that does not keep
    /// prepared statements), they are planned each time after all.
    async fn prepare_snapshots(&mut self) {
        if !matches!(self.snapshot_statements, Prepared::Wanted) {
            return;
        }
        let c = &self.client;
        let count = SNAPSHOT_QUERIES.len();
        let whole = futures_util::future::try_join_all((0..count).map(|i| c.prepare(SNAPSHOT_QUERIES[i].1)));
        let scoped = futures_util::future::try_join_all((0..count).map(|i| async move {
            match SNAPSHOT_QUERIES[i].2 {
                true => c.prepare(&scoped_query(SNAPSHOT_QUERIES[i].1)).await.map(Some),
                false => Ok(None),
            }
        }));
        let version = c.query_typed("SELECT current_setting('server_version_num')::int", &[]);
        self.snapshot_statements = match tokio::join!(whole, scoped, version) {
            (Ok(whole), Ok(scoped), Ok(version)) => {
                let generic = version.first().is_some_and(|r| r.get::<_, i32>(0) >= 120000);
                Prepared::Ready { whole, scoped, generic }
            }
            _ => Prepared::No,
        };
    }

    /// The schema snapshot; with a scope, only the objects of its relations
    /// and those of no relation of the kinds it names.
    async fn read_snapshot(&mut self, scope: Option<&Scope>) -> Result<SchemaSnapshot> {
        self.prepare_snapshots().await;
        let relations: Option<Vec<String>> = scope.map(|s| s.relations.iter().cloned().collect());
        let needed = needed_queries(scope);
        let c = &self.client;
        // All sent at once: one round trip's wait, not sixteen.
        let results = match &self.snapshot_statements {
            Prepared::Ready { whole, scoped, generic } => {
                let queries = prepared_queries(c, &needed, whole, scoped, &relations);
                // Scoped, in a transaction of their own for their settings (see SCOPED_SETTINGS).
                let own = relations.is_some() && !self.in_transaction;
                let run = async {
                    if !own {
                        return futures_util::future::try_join_all(queries).await;
                    }
                    let (_, rows, _) = tokio::try_join!(
                        c.batch_execute(if *generic { SCOPED_BEGIN[1] } else { SCOPED_BEGIN[0] }),
                        futures_util::future::try_join_all(queries),
                        c.batch_execute("COMMIT"),
                    )?;
                    Ok(rows)
                };
                match run.await {
                    Err(e) if e.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME) => {
                        self.snapshot_statements = Prepared::No;
                        None
                    }
                    run => Some(run.map_err(error)?),
                }
            }
            _ => None,
        };
        let results = match results {
            Some(results) => results,
            None => {
                let filtered = |i: usize| relations.is_some() && SNAPSHOT_QUERIES[i].2;
                let typed: [(&(dyn ToSql + Sync), Type); 1] = [(&relations, Type::TEXT_ARRAY)];
                let texts: Vec<_> = needed
                    .iter()
                    .map(|&i| match filtered(i) {
                        true => std::borrow::Cow::Owned(scoped_query(SNAPSHOT_QUERIES[i].1)),
                        false => std::borrow::Cow::Borrowed(SNAPSHOT_QUERIES[i].1),
                    })
                    .collect();
                let queries = needed
                    .iter()
                    .zip(&texts)
                    .map(|(&i, sql)| c.query_typed(sql, if filtered(i) { &typed[..] } else { &[] }));
                futures_util::future::try_join_all(queries).await.map_err(error)?
            }
        };
        Ok(assemble_snapshot(&needed, &results))
    }

    /// Whether all of airlock's tables exist; remembered once true.
    async fn tables_ready(&mut self) -> Result<bool> {
        if !self.tables_ready {
            let rows = self.client.query_typed(TABLES_EXIST, &[]).await.map_err(error)?;
            self.note_existence(&rows);
        }
        Ok(self.tables_ready)
    }

    /// Remembers what [`TABLES_EXIST`] answered.
    fn note_existence(&mut self, rows: &[Row]) {
        self.tables_ready = rows.first().is_some_and(|r| r.get(0));
        self.commit_ready = rows.first().is_some_and(|r| r.get(1));
    }

    /// `BEGIN`, with the timeouts as `SET LOCAL` in the same round trip.
    fn begin_sql(&self) -> String {
        match self.timeouts {
            Some(t) => format!(
                "BEGIN; SET LOCAL lock_timeout = '{}'; SET LOCAL statement_timeout = '{}'",
                millis(t.lock),
                millis(t.statement)
            ),
            None => "BEGIN".to_owned(),
        }
    }

    /// Sets the session's timeouts when they changed since the last
    /// statement outside a transaction (a transaction sets its own at BEGIN).
    async fn session_timeouts(&mut self) -> Result<()> {
        if !self.in_transaction && self.session_timeouts_stale && !self.pooled {
            self.session_timeouts_stale = false;
            if let Some(t) = self.timeouts {
                let set = format!(
                    "SET lock_timeout = '{}'; SET statement_timeout = '{}'",
                    millis(t.lock),
                    millis(t.statement)
                );
                self.client.batch_execute(&set).await.map_err(error)?;
            }
        }
        Ok(())
    }

    /// `UPDATE ... RETURNING 1` in one round trip; the number of rows it changed.
    async fn update(&self, sql: &str, params: &[Param<'_>]) -> Result<usize> {
        self.client.query_typed(sql, params).await.map(|rows| rows.len()).map_err(error)
    }
}

/// Takes `pgbouncer=true|false` out of a URL (the name other tools give it
/// too): true when the URL leads to a transaction-pooling proxy such as
/// PgBouncer with `pool_mode = transaction`, pgcat or Supavisor.
fn pooled_param(url: &str) -> Result<(String, bool), DriverError> {
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_owned(), false)) };
    let mut pooled = false;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("pgbouncer", "true" | "1" | "") => pooled = true,
            ("pgbouncer", "false" | "0") => pooled = false,
            ("pgbouncer", other) => {
                return Err(DriverError::new(ErrorKind::Connection, format!("pgbouncer={other}: true or false")));
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, pooled))
}

fn millis(d: std::time::Duration) -> String {
    format!("{}ms", d.as_millis())
}

#[async_trait::async_trait]
impl Driver for PostgresDriver {
    fn profile(&self) -> &'static Profile {
        &PROFILE
    }

    async fn server_version(&mut self) -> Result<String> {
        // One round trip, no named statement: right behind a transaction pooler.
        let rows = self.client.query_typed("SELECT version()", &[]).await.map_err(error)?;
        rows.first()
            .map(|r| r.get(0))
            .ok_or_else(|| DriverError::new(ErrorKind::Statement, "SELECT version() returned no row"))
    }

    async fn ensure_tables(&mut self) -> Result<()> {
        // Usually known from `read_state`; tables made by an airlock without
        // the commit function get it too.
        if !self.commit_ready {
            let rows = self.client.query_typed(TABLES_EXIST, &[]).await.map_err(error)?;
            self.note_existence(&rows);
        }
        if self.tables_ready && self.commit_ready {
            return Ok(());
        }
        let sql = format!("BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY}); {SCHEMA} {COMMIT_FUNCTION} COMMIT;");
        if let Err(e) = self.client.batch_execute(&sql).await {
            let _ = self.client.batch_execute("ROLLBACK").await;
            return Err(error(e));
        }
        self.tables_ready = true;
        self.commit_ready = true;
        Ok(())
    }

    async fn stamp_project(&mut self, project: &str) -> Result<()> {
        self.client
            .query_typed(
                "INSERT INTO airlock_meta (key, value) VALUES ('project', $1), ('stamped_at', clock_timestamp()::text)",
                &[(&project, Type::TEXT)],
            )
            .await
            .map(drop)
            .map_err(error)
    }

    async fn read_meta(&mut self, key: &str) -> Result<Option<String>> {
        if !self.tables_ready().await? {
            return Ok(None);
        }
        let rows = self.client.query_typed(SELECT_META, &[(&key, Type::TEXT)]).await.map_err(error)?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    async fn write_meta(&mut self, key: &str, value: &str) -> Result<()> {
        let params: [Param<'_>; 2] = [(&key, Type::TEXT), (&value, Type::TEXT)];
        self.client.query_typed(UPSERT_META, &params).await.map(drop).map_err(error)
    }

    async fn read_history(&mut self) -> Result<Vec<HistoryRecord>> {
        if !self.tables_ready().await? {
            return Ok(Vec::new());
        }
        let rows = self.client.query_typed(SELECT_HISTORY, &[]).await.map_err(error)?;
        rows.iter().map(record).collect()
    }

    async fn write_history(&mut self, r: &HistoryRecord) -> Result<()> {
        insert_history(&self.client, r).await.map_err(error)
    }

    async fn append_event(&mut self, event: &Event, actor: &Actor) -> Result<()> {
        insert_event(&self.client, event, actor).await.map_err(error)
    }

    async fn record(&mut self, r: &HistoryRecord, event: &Event, actor: &Actor) -> Result<()> {
        tokio::try_join!(insert_history(&self.client, r), insert_event(&self.client, event, actor)).map_err(error)?;
        Ok(())
    }

    async fn begin_and_run(&mut self, _owner: &str, _version: Option<&str>, statements: &[&str]) -> Result<Ran> {
        // One round trip: BEGIN with the timeouts, then every statement. After a
        // failure the server answers the rest with "transaction is aborted"; the
        // first error counts. The lease is not renewed here: record_and_commit
        // confirms it inside this transaction (CONFIRM_AND_RECORD) before anything
        // commits, and the heartbeat keeps it fresh meanwhile, so a renewal here
        // would only add a write to the lease row per migration.
        let begin = self.begin_sql();
        let client = &self.client;
        let (began, ran) = tokio::join!(
            client.batch_execute(&begin),
            join_all(statements.iter().map(|sql| client.batch_execute(sql)))
        );
        began.map_err(error)?;
        self.in_transaction = true;
        for (index, result) in ran.into_iter().enumerate() {
            if let Err(e) = result {
                return Ok(Ran::Failed { index, error: error(e) });
            }
        }
        Ok(Ran::All)
    }

    async fn record_and_commit(
        &mut self,
        owner: &str,
        r: &HistoryRecord,
        event: &Event,
        actor: &Actor,
    ) -> Result<bool> {
        self.in_transaction = false;
        let commit = Commit::new(owner, r, event, actor);
        let params = commit.params();
        // Pipelined with the COMMIT: if the statement fails, PostgreSQL
        // answers the COMMIT of the aborted transaction with a rollback.
        let (recorded, committed) =
            tokio::join!(self.client.query_typed(CONFIRM_AND_RECORD, &params), self.client.batch_execute("COMMIT"),);
        Ok(committed_with(recorded, committed)? == Committed::Done)
    }

    async fn run_and_commit(
        &mut self,
        owner: &str,
        statements: &[&str],
        r: &HistoryRecord,
        event: &Event,
        actor: &Actor,
        _stop: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<Committed> {
        // All at once, so nothing to check between the statements and the
        // commit: a signal cancels whatever runs (the canceller), which
        // aborts the transaction.
        // All of it in one round trip: BEGIN with the timeouts, the
        // statements, the lease check with the record, COMMIT. After a failure
        // the server answers the rest with "transaction is aborted" and the
        // COMMIT with a rollback; the first error counts.
        let begin = self.begin_sql();
        let commit = Commit::new(owner, r, event, actor).server_clock();
        let params = commit.params();
        let client = &self.client;
        let (began, ran, recorded, committed) = tokio::join!(
            client.batch_execute(&begin),
            join_all(statements.iter().map(|sql| client.batch_execute(sql))),
            client.query_typed(CONFIRM_AND_RECORD, &params),
            client.batch_execute("COMMIT"),
        );
        self.in_transaction = false;
        began.map_err(error)?;
        if let Some((index, e)) = ran.into_iter().enumerate().find_map(|(i, r)| r.err().map(|e| (i, e))) {
            return Ok(Committed::Failed { index, error: error(e) });
        }
        committed_with(recorded, committed)
    }

    async fn run_transaction(&mut self, statements: &[&str]) -> Result<Ran> {
        // One round trip: BEGIN, the statements, COMMIT. After a failure the
        // server answers the rest with "transaction is aborted" and the
        // COMMIT with a rollback; the first error counts.
        let begin = self.begin_sql();
        let client = &self.client;
        let (began, ran, committed) = tokio::join!(
            client.batch_execute(&begin),
            join_all(statements.iter().map(|sql| client.batch_execute(sql))),
            client.batch_execute("COMMIT"),
        );
        self.in_transaction = false;
        began.map_err(error)?;
        if let Some((index, e)) = ran.into_iter().enumerate().find_map(|(i, r)| r.err().map(|e| (i, e))) {
            return Ok(Ran::Failed { index, error: error(e) });
        }
        committed.map_err(error)?;
        Ok(Ran::All)
    }

    async fn run_transaction_and_read(
        &mut self,
        statements: &[&str],
        scope: &Scope,
    ) -> Result<(Ran, std::time::Duration, Option<SchemaSnapshot>)> {
        self.prepare_snapshots().await;
        let Prepared::Ready { whole, scoped, generic } = &self.snapshot_statements else {
            return airlock_driver::run_then_read(self, statements, scope).await;
        };
        // One round trip: BEGIN, the statements, the read (its settings
        // after the statements, so that they do not plan with them), COMMIT.
        let relations = Some(scope.relations.iter().cloned().collect::<Vec<String>>());
        let needed = needed_queries(Some(scope));
        let begin = self.begin_sql();
        let client = &self.client;
        let started = std::time::Instant::now();
        let statements_ran = async {
            let ran = join_all(statements.iter().map(|sql| client.batch_execute(sql))).await;
            (ran, started.elapsed())
        };
        let settings = if *generic { SCOPED_SETTINGS[1] } else { SCOPED_SETTINGS[0] };
        let (began, (ran, took), set, read, committed) = tokio::join!(
            client.batch_execute(&begin),
            statements_ran,
            client.batch_execute(settings),
            futures_util::future::try_join_all(prepared_queries(client, &needed, whole, scoped, &relations)),
            client.batch_execute("COMMIT"),
        );
        self.in_transaction = false;
        began.map_err(error)?;
        if let Some((index, e)) = ran.into_iter().enumerate().find_map(|(i, r)| r.err().map(|e| (i, e))) {
            return Ok((Ran::Failed { index, error: error(e) }, took, None));
        }
        match set.and(read) {
            Ok(rows) => {
                committed.map_err(error)?;
                Ok((Ran::All, took, Some(assemble_snapshot(&needed, &rows))))
            }
            // The statements ran, but the read failed and the COMMIT rolled
            // them back: run again, then read on its own (planned anew if
            // the prepared statements were lost).
            Err(e) => {
                if e.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME) {
                    self.snapshot_statements = Prepared::No;
                }
                airlock_driver::run_then_read(self, statements, scope).await
            }
        }
    }

    async fn read_state(&mut self) -> Result<State> {
        // Pipelined, and executed by the server in this order. The existence
        // check rides along (no round trip of its own; `ensure_tables` needs
        // it); a database without airlock's tables answers `undefined_table`.
        let (existing, leases, projects, history) = tokio::join!(
            self.client.query_typed(TABLES_EXIST, &[]),
            self.client.query_typed(SELECT_LEASE, &[]),
            self.client.query_typed(SELECT_META, &[(&"project", Type::TEXT)]),
            self.client.query_typed(SELECT_HISTORY, &[]),
        );
        self.note_existence(&existing.map_err(error)?);
        let missing = |r: &std::result::Result<Vec<Row>, tokio_postgres::Error>| {
            r.as_ref().err().and_then(|e| e.code()) == Some(&SqlState::UNDEFINED_TABLE)
        };
        if missing(&leases) || missing(&projects) || missing(&history) {
            self.tables_ready = false;
            return Ok(State { lease: None, project: None, history: Vec::new() });
        }
        let (leases, projects, history) = (leases.map_err(error)?, projects.map_err(error)?, history.map_err(error)?);
        Ok(State {
            lease: leases.first().map(lease),
            project: projects.first().map(|r| r.get(0)),
            history: history.iter().map(record).collect::<Result<_>>()?,
        })
    }

    async fn read_lease(&mut self) -> Result<Option<Lease>> {
        if !self.tables_ready().await? {
            return Ok(None);
        }
        let rows = self.client.query_typed(SELECT_LEASE, &[]).await.map_err(error)?;
        Ok(rows.first().map(lease))
    }

    async fn claim_lease(&mut self, claim: &LeaseClaim, previous: Option<&Lease>) -> Result<bool> {
        if previous.is_none() {
            self.client
                .batch_execute("INSERT INTO airlock_lock (id) VALUES (1) ON CONFLICT DO NOTHING")
                .await
                .map_err(error)?;
        }
        let pid = i64::from(claim.pid);
        let (prev_owner, prev_beat) = (previous.map(|l| l.owner.as_str()), previous.map(|l| l.beat));
        let changed = self
            .update(
                "UPDATE airlock_lock SET owner = $1, host = $2, pid = $3, os_user = $4, version = NULL, \
                 acquired_at = clock_timestamp(), heartbeat_at = clock_timestamp(), beat = beat + 1 \
                 WHERE id = 1 AND (($5::text IS NULL AND owner IS NULL) OR (owner = $5 AND beat = $6)) RETURNING 1",
                &[
                    (&claim.owner, Type::TEXT),
                    (&claim.host, Type::TEXT),
                    (&pid, Type::INT8),
                    (&claim.os_user, Type::TEXT),
                    (&prev_owner, Type::TEXT),
                    (&prev_beat, Type::INT8),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn renew_lease(&mut self, owner: &str, version: Option<&str>) -> Result<bool> {
        let changed = self.update(RENEW_LEASE, &[(&owner, Type::TEXT), (&version, Type::TEXT)]).await?;
        Ok(changed == 1)
    }

    async fn release_lease(&mut self, owner: &str) -> Result<()> {
        self.update(
            "UPDATE airlock_lock SET owner = NULL, host = NULL, pid = NULL, os_user = NULL, version = NULL, \
             acquired_at = NULL, heartbeat_at = NULL WHERE id = 1 AND owner = $1 RETURNING 1",
            &[(&owner, Type::TEXT)],
        )
        .await
        .map(drop)
    }

    fn session_settings_hold(&self) -> bool {
        !self.pooled
    }

    async fn set_timeouts(&mut self, timeouts: Timeouts) -> Result<()> {
        self.timeouts = Some(timeouts);
        self.session_timeouts_stale = true;
        Ok(())
    }

    async fn backup(
        &mut self,
        tables: Option<&[TableName]>,
        out: airlock_driver::backup::BackupWriter<'_>,
    ) -> Result<airlock_driver::backup::Saved> {
        backup::backup(&self.client, &self.tool_env, tables, out).await
    }

    async fn restore(&mut self, input: airlock_driver::backup::BackupReader<'_>) -> Result<()> {
        backup::restore(&self.client, &self.tool_env, input).await
    }

    async fn digests(&mut self, tables: &[TableName]) -> Result<Vec<airlock_driver::backup::TableDigest>> {
        let resolved = backup::resolve(&self.client, tables).await?;
        if self.in_transaction {
            return backup::digests(&self.client, &resolved).await;
        }
        // Nothing of the run's is reading it: large tables in two halves
        // at once, over a second connection, when one can be had.
        let pages = backup::split_pages(&self.client, &resolved).await?;
        let other = match pages.iter().any(|p| *p >= backup::SPLIT_PAGES) {
            true => PostgresDriver::connect(&self.url).await.ok(),
            false => None,
        };
        backup::digests_apart(&self.client, other.as_ref().map(|o| &o.client), &resolved, &pages).await
    }

    async fn plain_copy(&mut self, table: &TableName, name: &str) -> Result<airlock_driver::backup::PlainCopy> {
        backup::plain_copy(&self.client, table, name).await
    }

    async fn replace_rows(
        &mut self,
        table: &TableName,
        from: &TableName,
        keep_as: &str,
    ) -> Result<airlock_driver::backup::Replaced> {
        backup::replace_rows(&self.client, table, from, keep_as).await
    }

    async fn schema_snapshot(&mut self) -> Result<SchemaSnapshot> {
        self.read_snapshot(None).await
    }

    async fn schema_snapshot_of(&mut self, scope: &Scope) -> Result<Option<SchemaSnapshot>> {
        self.read_snapshot(Some(scope)).await.map(Some)
    }

    fn snapshots_repeat(&mut self) {
        // Behind a transaction pooler a prepared statement may be on another server connection.
        if matches!(self.snapshot_statements, Prepared::No) && !self.pooled {
            self.snapshot_statements = Prepared::Wanted;
        }
    }

    async fn create_database(&mut self, name: &str) -> Result<()> {
        let sql = format!("CREATE DATABASE {}", quote_identifier(name));
        self.client.batch_execute(&sql).await.map_err(error)
    }

    async fn drop_database(&mut self, name: &str) -> Result<()> {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_identifier(name));
        match self.client.batch_execute(&sql).await {
            // FORCE refuses a role that may not signal every session in the
            // database, and an autovacuum worker visiting a database just
            // made counts as one (PostgreSQL 15). Without FORCE the server
            // stops such workers itself and refuses only real sessions.
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                let plain = format!("DROP DATABASE IF EXISTS {}", quote_identifier(name));
                self.client.batch_execute(&plain).await.map_err(error)
            }
            done => done.map_err(error),
        }
    }

    async fn empty_database(&mut self, keep: &SchemaSnapshot) -> Result<()> {
        let mut statements = vec!["BEGIN".to_owned()];
        for row in self.client.query_typed(snapshot_sql::EMPTY_SCHEMAS, &[]).await.map_err(error)? {
            let (what, name): (&str, String) = (row.get(0), row.get(1));
            let kind = if what == "schema" { ObjectKind::Schema } else { ObjectKind::Extension };
            if keep.get(&ObjectPath::new(kind, None, &name)).is_none() {
                statements.push(format!("DROP {} IF EXISTS {} CASCADE", what.to_uppercase(), quote_identifier(&name)));
            }
        }
        // Dropped before the objects are listed: what they held goes with them.
        statements.push("COMMIT".to_owned());
        self.client.batch_execute(&statements.join(";\n")).await.map_err(error)?;
        let mut statements = vec!["BEGIN".to_owned()];
        for row in self.client.query_typed(snapshot_sql::EMPTY_OBJECTS, &[]).await.map_err(error)? {
            statements.push(row.get(0));
        }
        statements.push("COMMIT".to_owned());
        self.client.batch_execute(&statements.join(";\n")).await.map_err(error)
    }

    async fn read_rows(
        &mut self,
        table: &ObjectPath,
        columns: &[String],
        limit: Option<u64>,
        sink: &mut dyn RowSink,
    ) -> Result<u64> {
        let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
        let sql = format!("COPY (SELECT {} FROM ONLY {}{limit}) TO STDOUT", column_list(columns), qualified(table));
        let mut stream = std::pin::pin!(self.client.copy_out(&sql).await.map_err(error)?);
        let (mut buffer, mut rows) = (Vec::with_capacity(CHUNK_BYTES), 0u64);
        while let Some(bytes) = stream.next().await {
            buffer.extend_from_slice(&bytes.map_err(error)?);
            if buffer.len() >= CHUNK_BYTES {
                // COPY text escapes newlines inside values: a newline ends a row.
                let cut = buffer.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                let rest = buffer.split_off(cut);
                let chunk = RowChunk::Lines(std::mem::replace(&mut buffer, rest));
                rows += chunk.rows() as u64;
                sink.take(chunk).await?;
            }
        }
        if !buffer.is_empty() {
            let chunk = RowChunk::Lines(buffer);
            rows += chunk.rows() as u64;
            sink.take(chunk).await?;
        }
        Ok(rows)
    }

    async fn begin_load(&mut self) -> Result<()> {
        self.client.batch_execute("SET session_replication_role = replica").await.map_err(|e| {
            let e = error(e);
            DriverError::new(
                e.kind,
                format!(
                    "copying rows without firing triggers or checking foreign keys needs `SET session_replication_role` \
                     (a superuser, or GRANT SET ON PARAMETER session_replication_role TO the user): {}",
                    e.message
                ),
            )
        })
    }

    async fn load_rows(&mut self, table: &ObjectPath, columns: &[String], chunk: RowChunk) -> Result<()> {
        let RowChunk::Lines(lines) = chunk else {
            return Err(DriverError::new(ErrorKind::Statement, "rows not in PostgreSQL's COPY form".to_owned()));
        };
        let list = if columns.is_empty() { String::new() } else { format!(" ({})", column_list(columns)) };
        let sql = format!("COPY {}{list} FROM STDIN", qualified(table));
        let mut copy = std::pin::pin!(self.client.copy_in::<_, bytes::Bytes>(&sql).await.map_err(error)?);
        copy.send(bytes::Bytes::from(lines)).await.map_err(error)?;
        copy.as_mut().finish().await.map_err(error).map(|_| ())
    }

    async fn end_load(&mut self) -> Result<()> {
        self.client.batch_execute("RESET session_replication_role").await.map_err(error)?;
        let moves: Vec<String> =
            self.client.query_typed(SEQUENCE_MOVES, &[]).await.map_err(error)?.iter().map(|r| r.get(0)).collect();
        if moves.is_empty() { Ok(()) } else { self.client.batch_execute(&moves.join(";\n")).await.map_err(error) }
    }

    async fn load_catalog(&mut self) -> Result<Catalog> {
        let (tables, columns, indexes, constraints, triggers, functions, search_path, version) = tokio::try_join!(
            self.client.query_typed(CATALOG_TABLES, &[]),
            self.client.query_typed(CATALOG_COLUMNS, &[]),
            self.client.query_typed(CATALOG_INDEXES, &[]),
            self.client.query_typed(CATALOG_CONSTRAINTS, &[]),
            self.client.query_typed(CATALOG_TRIGGERS, &[]),
            self.client.query_typed(CATALOG_FUNCTIONS, &[]),
            self.client.query_typed(CATALOG_SEARCH_PATH, &[]),
            self.client.query_typed("SELECT current_setting('server_version')", &[]),
        )
        .map_err(error)?;
        let mut by_oid: BTreeMap<i64, Table> = BTreeMap::new();
        for row in &tables {
            let schema: String = row.get(1);
            let mut table = Table::created(TableName { schema: Some(schema), name: row.get(2) }, "");
            table.origin = Origin::Live;
            // reltuples is -1 for a table never analyzed: then an empty heap
            // means empty, and anything else unknown. A partitioned table's
            // rows are its partitions'.
            let (rows, heap, kind, partitions): (f64, i64, String, Option<f64>) =
                (row.get(3), row.get(5), row.get(6), row.get(7));
            table.rows = if kind == "p" {
                partitions.filter(|r| *r > 0.0)
            } else if rows >= 0.0 {
                Some(rows)
            } else {
                (heap == 0).then_some(0.0)
            };
            table.bytes = Some(row.get(4));
            by_oid.insert(row.get(0), table);
        }
        for row in &columns {
            let Some(table) = by_oid.get_mut(&row.get::<_, i64>(0)) else { continue };
            let default: Option<String> = row.get(4);
            table.columns.push(Column {
                name: row.get(1),
                data_type: row.get(2),
                nullable: row.get(3),
                identity: row.get::<_, bool>(5) || default.as_deref().is_some_and(|d| d.starts_with("nextval(")),
                default,
                collation: row.get(6),
                ..Column::default()
            });
        }
        for row in &indexes {
            if let Some(table) = by_oid.get_mut(&row.get::<_, i64>(0)) {
                table.indexes.push(Index { name: row.get(1), unique: row.get(2), columns: row.get(3) });
            }
        }
        for row in &constraints {
            let Some(table) = by_oid.get_mut(&row.get::<_, i64>(0)) else { continue };
            let kind = match row.get::<_, String>(2).as_str() {
                "p" => ConstraintKind::PrimaryKey,
                "u" => ConstraintKind::Unique,
                "f" => ConstraintKind::ForeignKey,
                "c" => ConstraintKind::Check,
                _ => ConstraintKind::Other,
            };
            table.constraints.push(ConstraintInfo {
                name: Some(row.get(1)),
                kind,
                validated: row.get(3),
                definition: row.get(4),
            });
        }
        for row in &triggers {
            if let Some(table) = by_oid.get_mut(&row.get::<_, i64>(0)) {
                table.triggers.push(row.get(1));
            }
        }
        let schemas: Vec<String> = search_path.iter().map(|r| r.get(0)).collect();
        // Tables of earlier schemas on the search path first: they win a bare name.
        let mut tables: Vec<Table> = by_oid.into_values().collect();
        tables.sort_by_key(|t| {
            t.name.schema.as_ref().and_then(|s| schemas.iter().position(|x| x == s)).unwrap_or(usize::MAX)
        });
        let mut catalog = Catalog::live_in(tables, &schemas);
        catalog.server_version = version.first().map(|r| r.get(0));
        for row in &functions {
            let volatility = match row.get::<_, String>(1).as_str() {
                "i" => Volatility::Immutable,
                "s" => Volatility::Stable,
                _ => Volatility::Volatile,
            };
            catalog.functions.insert(row.get::<_, String>(0).to_lowercase(), volatility);
        }
        Ok(catalog)
    }

    async fn query_text(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let messages = self.client.simple_query(sql).await.map_err(error)?;
        Ok(messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect())
    }

    async fn begin_read_only(&mut self) -> Result<()> {
        // A transaction, not a session setting: behind a transaction-pooling
        // PgBouncer a session setting would stay on a server connection that
        // other clients get next.
        self.client.batch_execute("BEGIN READ ONLY").await.map_err(error)?;
        self.in_transaction = true;
        Ok(())
    }

    async fn begin_check(&mut self, budget: std::time::Duration) -> Result<()> {
        // Scoped to the transaction: right behind a transaction-pooling PgBouncer.
        let sql = format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = '{}'; SET LOCAL lock_timeout = '{}'",
            millis(budget),
            millis(airlock_driver::CHECK_LOCK_TIMEOUT)
        );
        self.client.batch_execute(&sql).await.map_err(error)?;
        self.in_transaction = true;
        Ok(())
    }

    async fn begin(&mut self) -> Result<()> {
        let sql = self.begin_sql();
        self.client.batch_execute(&sql).await.map_err(error)?;
        self.in_transaction = true;
        Ok(())
    }

    async fn commit(&mut self) -> Result<()> {
        self.in_transaction = false;
        self.client.batch_execute("COMMIT").await.map_err(error)
    }

    async fn rollback(&mut self) -> Result<()> {
        self.in_transaction = false;
        // Outside a transaction PostgreSQL only warns.
        self.client.batch_execute("ROLLBACK").await.map_err(error)
    }

    async fn execute(&mut self, sql: &str) -> Result<()> {
        self.session_timeouts().await?;
        self.client.batch_execute(sql).await.map_err(error)
    }

    async fn execute_counted(&mut self, sql: &str) -> Result<u64> {
        self.session_timeouts().await?;
        let messages = self.client.simple_query(sql).await.map_err(error)?;
        Ok(messages
            .iter()
            .map(|m| match m {
                tokio_postgres::SimpleQueryMessage::CommandComplete(n) => *n,
                _ => 0,
            })
            .sum())
    }

    async fn index_definitions(&mut self, table: &TableName) -> Result<Vec<(String, String)>> {
        let qualified = match &table.schema {
            Some(schema) => format!("{}.{}", quote_identifier(schema), quote_identifier(&table.name)),
            None => quote_identifier(&table.name),
        };
        let rows = self
            .client
            .query_typed(
                "SELECT c.relname::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass($1) AND NOT i.indisprimary \
                 ORDER BY 1",
                &[(&qualified, Type::TEXT)],
            )
            .await
            .map_err(error)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn lock_waiters(&mut self) -> Result<u64> {
        let rows = self
            .client
            .query_typed(
                "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))",
                &[],
            )
            .await
            .map_err(error)?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
    }

    async fn replica_lag(&mut self) -> Result<Option<std::time::Duration>> {
        // Behind by the time since the newest transaction it replayed, when
        // it holds WAL it has not replayed; else not behind at all; unknown
        // (NULL) when it is not streaming from its primary now.
        let rows = self
            .client
            .query_typed(
                "SELECT pg_is_in_recovery(), CASE \
                 WHEN NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') THEN NULL \
                 WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0::float8 \
                 ELSE extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8 END",
                &[],
            )
            .await
            .map_err(error)?;
        let row = rows.first().ok_or_else(|| DriverError::new(ErrorKind::Statement, "no answer"))?;
        if !row.get::<_, bool>(0) {
            return Err(DriverError::new(ErrorKind::Statement, "it is not a replica (not in recovery)"));
        }
        Ok(row.get::<_, Option<f64>>(1).map(|s| std::time::Duration::from_secs_f64(s.max(0.0))))
    }

    async fn standby(&mut self) -> Result<Option<airlock_driver::Standby>> {
        let rows = self
            .client
            .query_typed(
                "SELECT pg_is_in_recovery(), \
                 (SELECT setting::float8 * CASE unit WHEN 'ms' THEN 0.001 WHEN 's' THEN 1 WHEN 'min' THEN 60 ELSE 1 END \
                  FROM pg_settings WHERE name = 'max_standby_streaming_delay'), \
                 (SELECT extract(epoch FROM max(clock_timestamp() - coalesce(xact_start, query_start)))::float8 \
                  FROM pg_stat_activity WHERE state <> 'idle' AND backend_type = 'client backend' \
                  AND pid <> pg_backend_pid())",
                &[],
            )
            .await
            .map_err(error)?;
        let Some(row) = rows.first() else { return Ok(None) };
        if !row.get::<_, bool>(0) {
            return Ok(None);
        }
        let seconds = |s: f64| std::time::Duration::from_secs_f64(s.max(0.0));
        Ok(Some(airlock_driver::Standby {
            // -1: replay waits for as long as the queries run.
            max_delay: row.get::<_, Option<f64>>(1).filter(|d| *d >= 0.0).map(seconds),
            longest_query: row.get::<_, Option<f64>>(2).map(seconds),
        }))
    }

    async fn primary_key(&mut self, table: &TableName) -> Result<Option<Vec<KeyColumn>>> {
        let qualified = match &table.schema {
            Some(schema) => format!("{}.{}", quote_identifier(schema), quote_identifier(&table.name)),
            None => quote_identifier(&table.name),
        };
        let found =
            self.client.query_typed("SELECT to_regclass($1)::oid", &[(&qualified, Type::TEXT)]).await.map_err(error)?;
        let Some(oid) = found.first().and_then(|r| r.get::<_, Option<u32>>(0)) else {
            return Err(DriverError::new(ErrorKind::Statement, format!("there is no table `{table}`")));
        };
        let rows = self
            .client
            .query_typed(
                "SELECT a.attname::text, t.typcategory = 'N', t.typname = 'bytea' FROM pg_index i \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
                 JOIN pg_type t ON t.oid = a.atttypid \
                 WHERE i.indrelid = $1 AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)",
                &[(&oid, Type::OID)],
            )
            .await
            .map_err(error)?;
        let kind = |number: bool, bytes: bool| match (number, bytes) {
            (true, _) => KeyKind::Number,
            (_, true) => KeyKind::Binary,
            _ => KeyKind::Text,
        };
        let key: Vec<KeyColumn> =
            rows.iter().map(|r| KeyColumn { name: r.get(0), kind: kind(r.get(1), r.get(2)) }).collect();
        Ok((!key.is_empty()).then_some(key))
    }

    async fn describe_blockers(&mut self) -> Result<Vec<String>> {
        let rows = self
            .client
            .query_typed(
                "SELECT a.pid, coalesce(a.usename, '?'), coalesce(a.application_name, ''), coalesce(a.state, '?'), \
                 coalesce(extract(epoch FROM clock_timestamp() - a.xact_start)::bigint, 0), \
                 left(coalesce(a.query, ''), 120), \
                 string_agg(DISTINCT l.relation::regclass::text || ' ' || l.mode, ', ') \
                 FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid AND l.granted AND l.relation IS NOT NULL \
                 WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.xact_start IS NOT NULL \
                 AND l.relation NOT IN (SELECT oid FROM pg_class WHERE relnamespace = 'pg_catalog'::regnamespace) \
                 GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 5 DESC LIMIT 5",
                &[],
            )
            .await
            .map_err(error)?;
        Ok(rows
            .iter()
            .map(|r| {
                format!(
                    "pid {} (user {}{}) {} for {} s, holding {}; last query: {}",
                    r.get::<_, i32>(0),
                    r.get::<_, String>(1),
                    match r.get::<_, String>(2) {
                        app if app.is_empty() => String::new(),
                        app => format!(", application {app}"),
                    },
                    r.get::<_, String>(3),
                    r.get::<_, i64>(4),
                    r.get::<_, Option<String>>(6).unwrap_or_default(),
                    r.get::<_, String>(5).replace('\n', " "),
                )
            })
            .collect())
    }

    async fn index_is_invalid(&mut self, name: &str) -> Result<bool> {
        let rows = self
            .client
            .query_typed(
                "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
                &[(&name, Type::TEXT)],
            )
            .await
            .map_err(error)?;
        Ok(rows.first().is_some_and(|r| r.get(0)))
    }

    async fn drop_invalid_index(&mut self, name: &str) -> Result<Option<String>> {
        let rows = self
            .client
            .query_typed(
                "SELECT indexrelid::regclass::text FROM pg_index WHERE indexrelid = to_regclass($1) AND NOT indisvalid",
                &[(&name, Type::TEXT)],
            )
            .await
            .map_err(error)?;
        let Some(row) = rows.first() else { return Ok(None) };
        // The name comes back quoted as PostgreSQL needs it.
        let quoted: String = row.get(0);
        self.client.batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {quoted}")).await.map_err(error)?;
        Ok(Some(quoted))
    }

    fn canceller(&self) -> Option<std::sync::Arc<dyn airlock_driver::Cancel>> {
        Some(std::sync::Arc::new(PostgresCancel { token: self.client.cancel_token(), tls: self.cancel_tls.clone() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbouncer_is_taken_out_of_the_url() {
        let url = "postgres://app@db:6432/shop?sslmode=disable&pgbouncer=true";
        assert_eq!(pooled_param(url).unwrap(), ("postgres://app@db:6432/shop?sslmode=disable".to_owned(), true));
        assert_eq!(pooled_param("postgres://db/shop").unwrap(), ("postgres://db/shop".to_owned(), false));
        assert!(!pooled_param("postgres://db/shop?pgbouncer=false").unwrap().1);
        assert!(pooled_param("postgres://db/shop?pgbouncer=maybe").is_err());
    }

    /// The column list between `INSERT INTO <table> (` and the next `)`.
    fn columns(sql: &str, table: &str) -> Vec<String> {
        let start = sql.find(&format!("INSERT INTO {table} (")).expect("an insert into the table") + table.len() + 13;
        let end = start + sql[start..].find(')').expect("the list ends");
        sql[start..end].split(',').map(|c| c.split_whitespace().collect::<String>()).collect()
    }

    /// The commit function writes what the upsert and the event insert write,
    /// in the order of the parameters `Commit::params` binds, so that the two
    /// ways of recording a migration never disagree.
    #[test]
    fn the_commit_function_writes_the_same_columns_as_the_upsert_and_the_event_insert() {
        assert_eq!(columns(COMMIT_FUNCTION, "airlock_history"), columns(UPSERT_HISTORY, "airlock_history"));
        assert_eq!(columns(COMMIT_FUNCTION, "airlock_events"), columns(INSERT_EVENT, "airlock_events"));
        let arguments = COMMIT_FUNCTION.split("airlock_commit_v1(").nth(1).and_then(|s| s.split(')').next());
        let count = arguments.map_or(0, |a| a.split(',').count());
        assert_eq!(count, 1 + 18 + 7, "owner, the history record, the event");
        assert_eq!(CONFIRM_AND_RECORD.matches('$').count(), count);
        let r = HistoryRecord {
            version: Version::parse("1").unwrap(),
            name: "a".into(),
            kind: Kind::Schema,
            checksum: String::new(),
            up_sql: String::new(),
            down_sql: None,
            state: RunState::Succeeded,
            mode: RunMode::Transaction,
            statements_done: 1,
            statements_total: 1,
            failed_statement: None,
            error: None,
            started_at: Utc::now(),
            finished_at: None,
            duration_ms: None,
            os_user: String::new(),
            host: String::new(),
            airlock_version: String::new(),
        };
        let event = Event { kind: "applied".into(), version: None, detail: "{}".into() };
        let actor = Actor { os_user: String::new(), host: String::new(), pid: 1, airlock_version: String::new() };
        assert_eq!(Commit::new("me", &r, &event, &actor).params().len(), count);
    }
}
