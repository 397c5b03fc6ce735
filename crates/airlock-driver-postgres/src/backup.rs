//! Backups of a PostgreSQL database with the server's own tools: `pg_dump`
//! (custom format, uncompressed: the runner compresses) and `pg_restore`,
//! each of the server's major version or newer, found in `AIRLOCK_PG_BIN`,
//! Debian's `/usr/lib/postgresql/N/bin` or `PATH`. The dump runs in a
//! snapshot exported by the driver's own transaction; each saved table's
//! rows and digest are read from the archive as it streams past (or, for
//! an archive this airlock cannot read, from the tables in that snapshot).
//! A backup of tables holds the whole schema and the rows of those tables
//! and of the tables they reference (so that their foreign keys restore);
//! every other table's rows are left out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use airlock_core::schema::TableName;
use airlock_driver::backup::{
    BackupReader, BackupWriter, NO_KEY, PlainCopy, Replaced, RowsDigest, Saved, TableDigest, cannot_replace, cascading,
    columns_differ, feed_tool, tool_finished,
};
use airlock_driver::{DriverError, ErrorKind, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::Client;

use crate::archive::ArchiveDigests;
use crate::tls::{SslMode, TlsParams};
use crate::{error, quote_identifier};

/// The format of what [`backup`] writes.
pub(crate) const FORMAT: &str = "pg_dump-custom";

/// libpq's environment for the tools to reach the database the driver
/// reached: the password is never on a command line.
pub(crate) fn tool_env(config: &tokio_postgres::Config, tls: &TlsParams) -> Vec<(&'static str, String)> {
    let mut env = Vec::new();
    match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => env.push(("PGHOST", host.clone())),
        Some(tokio_postgres::config::Host::Unix(path)) => env.push(("PGHOST", path.display().to_string())),
        None => {}
    }
    if let Some(port) = config.get_ports().first() {
        env.push(("PGPORT", port.to_string()));
    }
    if let Some(user) = config.get_user() {
        env.push(("PGUSER", user.to_owned()));
    }
    if let Some(password) = config.get_password() {
        env.push(("PGPASSWORD", String::from_utf8_lossy(password).into_owned()));
    }
    if let Some(dbname) = config.get_dbname() {
        env.push(("PGDATABASE", dbname.to_owned()));
    }
    if let Some(options) = config.get_options() {
        env.push(("PGOPTIONS", options.to_owned()));
    }
    let mode = match tls.mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    };
    env.push(("PGSSLMODE", mode.to_owned()));
    if let Some(cert) = &tls.root_cert {
        env.push(("PGSSLROOTCERT", cert.clone()));
    }
    env.push(("PGAPPNAME", "airlock backup".to_owned()));
    env.push(("PGCONNECT_TIMEOUT", "10".to_owned()));
    env
}

/// The major version a tool says it is (`pg_dump (PostgreSQL) 15.18 (Debian ...)` → 15).
fn tool_major(said: &str) -> Option<u32> {
    let after = said.split(')').nth(1)?.trim_start();
    after.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// `name` (`pg_dump`, `pg_restore`) for a server of `major`: the one in
/// `AIRLOCK_PG_BIN` when it is set (and only there), else the first found
/// of Debian's directories of that major or a newer one (the nearest
/// first) and `PATH` that is not older than the server. Its path and its
/// `--version` line.
fn tool(name: &str, major: u32) -> Result<(PathBuf, String)> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    let chosen = std::env::var_os("AIRLOCK_PG_BIN");
    let looked = match &chosen {
        Some(dir) => {
            candidates.push(Path::new(dir).join(name));
            format!("AIRLOCK_PG_BIN={}", Path::new(dir).display())
        }
        None => "/usr/lib/postgresql/*/bin and PATH".to_owned(),
    };
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin").join(name))))
                .filter(|(v, _)| *v >= major)
                .collect()
        })
        .unwrap_or_default();
    debian.sort();
    if chosen.is_none() {
        candidates.extend(debian.into_iter().map(|(_, path)| path));
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|dir| dir.join(name)));
        }
    }
    let mut older = None;
    for candidate in candidates.into_iter().filter(|c| c.is_file()) {
        let Ok(out) = std::process::Command::new(&candidate).arg("--version").output() else { continue };
        let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        match tool_major(&said) {
            Some(v) if v >= major => return Ok((candidate, said)),
            Some(_) => older = older.or(Some(format!("{} ({said})", candidate.display()))),
            None => {}
        }
    }
    let found = older.map_or(String::new(), |o| format!("; found only {o}, older than the server"));
    Err(DriverError::new(
        ErrorKind::Unsupported,
        format!(
            "{name} for PostgreSQL {major} or newer is not installed (looked in {looked}{found}): install postgresql-client-{major}, or set AIRLOCK_PG_BIN to the bin directory of one"
        ),
    ))
}

/// The server's major version, and its version as it names it.
async fn server(client: &Client) -> Result<(u32, String)> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int / 10000, current_setting('server_version')", &[])
        .await
        .map_err(error)?;
    Ok((row.get::<_, i32>(0) as u32, row.get(1)))
}

/// Starts `tool` with `args` and libpq's environment, its standard error piped.
fn start(
    tool: &Path,
    args: &[String],
    env: &[(&'static str, String)],
    stdin: Stdio,
    stdout: Stdio,
) -> Result<tokio::process::Child> {
    tokio::process::Command::new(tool)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DriverError::new(ErrorKind::Unsupported, format!("{} cannot be started: {e}", tool.display())))
}

/// Every user table (partitions and partitioned tables included), by schema and name.
const USER_TABLES: &str = "SELECT n.nspname::text, c.relname::text FROM pg_class c \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_%' \
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') \
     ORDER BY 1, 2";

/// The tables named (resolved as the server resolves them), those their
/// foreign keys reference and their partitions, again and again.
const WITH_REFERENCED: &str = "WITH RECURSIVE picked(oid) AS ( \
       SELECT to_regclass(name)::oid FROM unnest($1::text[]) AS name WHERE to_regclass(name) IS NOT NULL \
       UNION SELECT n.next FROM picked p CROSS JOIN LATERAL ( \
         SELECT con.confrelid FROM pg_constraint con WHERE con.conrelid = p.oid AND con.contype = 'f' \
         UNION ALL SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = p.oid) AS n(next)) \
     SELECT n.nspname::text, c.relname::text FROM picked p JOIN pg_class c ON c.oid = p.oid \
     JOIN pg_namespace n ON n.oid = c.relnamespace ORDER BY 1, 2";

fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_identifier(schema), quote_identifier(name))
}

/// A pg_dump pattern matching exactly that table (quoted: no wildcards).
fn pattern(schema: &str, name: &str) -> String {
    format!("\"{}\".\"{}\"", schema.replace('"', "\"\""), name.replace('"', "\"\""))
}

/// The session settings under which a table's rows are written as text
/// for a digest, here and by `pg_dump` (which sets the date, interval and
/// float ones itself): a database's own TimeZone is not a scratch
/// database's.
/// `search_path` is empty as `pg_dump` sets it, so that `regclass` and the
/// like are written qualified on both sides.
const DIGEST_SETTINGS: &str = "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, MDY'; \
     SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'; \
     SET LOCAL search_path = ''";

/// The columns `pg_dump` writes of a table's rows: all but dropped and
/// generated ones, in order.
const DUMPED_COLUMNS: &str = "SELECT coalesce(string_agg(quote_ident(attname), ', ' ORDER BY attnum), '') \
     FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''";

/// Each table's rows and their [`RowsDigest`]: the rows `COPY` writes in
/// text, the columns `pg_dump` dumps, hashed here; so the server does no
/// more than a dump does, and a digest read from a dump's own archive
/// ([`crate::archive`]) compares with one read from a table. `client` is
/// in a transaction.
pub(crate) async fn digests(client: &Client, tables: &[(String, String)]) -> Result<Vec<TableDigest>> {
    // In a savepoint rolled back after: the settings end with the reading,
    // not with the caller's transaction.
    client.batch_execute("SAVEPOINT airlock_digests").await.map_err(error)?;
    client.batch_execute(DIGEST_SETTINGS).await.map_err(error)?;
    let read = read_each(client, None, tables, &[]).await;
    let ended = client.batch_execute("ROLLBACK TO SAVEPOINT airlock_digests; RELEASE SAVEPOINT airlock_digests").await;
    let read = read?;
    ended.map_err(error)?;
    Ok(read)
}

/// A table of at least this many pages is read in two halves at once
/// (by a second connection, in the same snapshot) when a digest is read
/// outside any transaction of the run's: a restored copy being verified,
/// when the server has nothing else to do.
pub(crate) const SPLIT_PAGES: i64 = 4096;

/// Each table's pages, where reading it in halves can be done (TID range
/// scans: PostgreSQL 14 and later); 0 elsewhere.
pub(crate) async fn split_pages(client: &Client, tables: &[(String, String)]) -> Result<Vec<i64>> {
    let names: Vec<String> = tables.iter().map(|(s, n)| qualified(s, n)).collect();
    let rows = client
        .query(
            "SELECT CASE WHEN current_setting('server_version_num')::int >= 140000 \
             THEN pg_relation_size(name::regclass) / current_setting('block_size')::int ELSE 0 END \
             FROM unnest($1::text[]) WITH ORDINALITY AS t(name, n) ORDER BY n",
            &[&names],
        )
        .await
        .map_err(error)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// [`digests`] of a database no transaction of the run's is reading, in a
/// transaction of its own; with `other` (a second connection to the same
/// database, in the same snapshot), each table of [`SPLIT_PAGES`] or more
/// (`pages`, as [`split_pages`] says) read in two halves at once.
pub(crate) async fn digests_apart(
    client: &Client,
    other: Option<&Client>,
    tables: &[(String, String)],
    pages: &[i64],
) -> Result<Vec<TableDigest>> {
    let begin = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    client.batch_execute(begin).await.map_err(error)?;
    let read = async {
        client.batch_execute(DIGEST_SETTINGS).await.map_err(error)?;
        if let Some(other) = other {
            let snapshot: String = client.query_one("SELECT pg_export_snapshot()", &[]).await.map_err(error)?.get(0);
            other.batch_execute(begin).await.map_err(error)?;
            other.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{snapshot}'")).await.map_err(error)?;
            other.batch_execute(DIGEST_SETTINGS).await.map_err(error)?;
        }
        read_each(client, other, tables, pages).await
    }
    .await;
    let ended = client.batch_execute("COMMIT").await.map_err(error);
    if let Some(other) = other {
        let _ = other.batch_execute("COMMIT").await;
    }
    let read = read?;
    ended?;
    Ok(read)
}

/// Each table's rows and digest, under the settings already made; a table
/// of [`SPLIT_PAGES`] or more read in halves when there is `other`.
async fn read_each(
    client: &Client,
    other: Option<&Client>,
    tables: &[(String, String)],
    pages: &[i64],
) -> Result<Vec<TableDigest>> {
    let mut out = Vec::new();
    for (i, (schema, name)) in tables.iter().enumerate() {
        let table = qualified(schema, name);
        let columns = dumped_columns(client, &table).await?;
        let digest = match other {
            Some(other) if pages.get(i).is_some_and(|p| *p >= SPLIT_PAGES) => {
                let half = pages[i] / 2;
                let (below, above) =
                    (format!(" WHERE ctid < '({half},0)'::tid"), format!(" WHERE ctid >= '({half},0)'::tid"));
                let (mut low, high) = tokio::try_join!(
                    digest_of(client, &table, &columns, &below),
                    digest_of(other, &table, &columns, &above),
                )?;
                low.merge(high);
                low
            }
            _ => digest_of(client, &table, &columns, "").await?,
        };
        let (rows, digest) = digest.finish();
        out.push(TableDigest { schema: Some(schema.clone()), table: name.clone(), rows, digest });
    }
    Ok(out)
}

/// The columns `pg_dump` writes of `table`, as a select list.
async fn dumped_columns(client: &Client, table: &str) -> Result<String> {
    Ok(client.query_one(DUMPED_COLUMNS, &[&table]).await.map_err(error)?.get(0))
}

/// The rows of `table` (those `filter` keeps) as `COPY` writes them, digested.
async fn digest_of(client: &Client, table: &str, columns: &str, filter: &str) -> Result<RowsDigest> {
    use futures_util::TryStreamExt;
    // No column at all is a row of an empty line, as pg_dump writes it too.
    let sql = format!("COPY (SELECT {columns} FROM ONLY {table}{filter}) TO STDOUT");
    let stream = client.copy_out(&sql).await.map_err(error)?;
    futures_util::pin_mut!(stream);
    let mut digest = RowsDigest::default();
    while let Some(chunk) = stream.try_next().await.map_err(error)? {
        digest.update(&chunk);
    }
    Ok(digest)
}

/// A table's columns as a plain copy declares them: name, type (as
/// `format_type` writes it, with its modifier), NOT NULL, a collation
/// other than the type's, and for a generated column its kind (`s`
/// stored, `v` virtual) and expression: generated in the copy too, so
/// that it holds the same values and digests alike.
const PLAIN_COLUMNS: &str = "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
       (SELECT quote_ident(n.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co \
        JOIN pg_namespace n ON n.oid = co.collnamespace WHERE co.oid = a.attcollation AND a.attcollation <> ty.typcollation), \
       a.attgenerated::text, pg_get_expr(d.adbin, d.adrelid) \
     FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid \
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.attgenerated <> '' \
     WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum";

/// A table's primary key columns, in the key's order.
const PLAIN_KEY: &str = "SELECT a.attname::text FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) \
     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
     WHERE i.indrelid = $1::text::regclass AND i.indisprimary ORDER BY k.n";

/// The definition of a plain table `name` beside `table`, holding its rows.
pub(crate) async fn plain_copy(client: &Client, table: &TableName, name: &str) -> Result<PlainCopy> {
    let Some((schema, found)) = resolve(client, std::slice::from_ref(table)).await?.into_iter().next() else {
        return Err(DriverError::new(ErrorKind::Statement, format!("there is no table `{table}`")));
    };
    let regclass = qualified(&schema, &found);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&regclass];
    let (columns, key) =
        tokio::try_join!(client.query(PLAIN_COLUMNS, &params), client.query(PLAIN_KEY, &params)).map_err(error)?;
    let mut parts: Vec<String> = columns
        .iter()
        .map(|c| {
            let (column, kind, not_null, collation): (String, String, bool, Option<String>) =
                (c.get(0), c.get(1), c.get(2), c.get(3));
            let collate = collation.map(|c| format!(" COLLATE {c}")).unwrap_or_default();
            let not_null = if not_null { " NOT NULL" } else { "" };
            let generated = match (c.get::<_, String>(4).as_str(), c.get::<_, Option<String>>(5)) {
                ("s", Some(expr)) => format!(" GENERATED ALWAYS AS ({expr}) STORED"),
                ("v", Some(expr)) => format!(" GENERATED ALWAYS AS ({expr}) VIRTUAL"),
                _ => String::new(),
            };
            format!("{} {kind}{collate}{generated}{not_null}", quote_identifier(&column))
        })
        .collect();
    if !key.is_empty() {
        let key: Vec<String> = key.iter().map(|r| quote_identifier(&r.get::<_, String>(0))).collect();
        parts.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    Ok(PlainCopy {
        create: format!("CREATE TABLE {} ({})", qualified(&schema, name), parts.join(", ")),
        drop: format!("DROP TABLE {}", qualified(&schema, name)),
        // The rows' columns: a generated one is written by the copy itself.
        columns: columns.iter().filter(|c| c.get::<_, String>(4).is_empty()).map(|c| c.get(0)).collect(),
    })
}

/// A table's columns for a replace: name, generated, identity `ALWAYS`.
const REPLACE_COLUMNS: &str = "SELECT attname::text, attgenerated <> '', attidentity = 'a' FROM pg_attribute \
     WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum";

/// Foreign keys into a table whose `ON DELETE` changes other tables' rows.
const CASCADING_INTO: &str = "SELECT conname::text, conrelid::regclass::text FROM pg_constraint \
     WHERE confrelid = $1::text::regclass AND contype = 'f' AND confdeltype IN ('c', 'n', 'd') ORDER BY 1";

/// `table`'s rows made `from`'s, by primary key, its rows before kept in `keep_as`.
pub(crate) async fn replace_rows(
    client: &Client,
    table: &TableName,
    from: &TableName,
    keep_as: &str,
) -> Result<Replaced> {
    let one = |t: &TableName| {
        let t = t.clone();
        async move {
            resolve(client, std::slice::from_ref(&t))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| DriverError::new(ErrorKind::Statement, format!("there is no table `{t}`")))
        }
    };
    let ((schema, name), (from_schema, from_name)) = (one(table).await?, one(from).await?);
    let (live, saved) = (qualified(&schema, &name), qualified(&from_schema, &from_name));
    // No write between the copy of the rows before and the replace: they would be in neither.
    client
        .batch_execute(&format!("SET LOCAL lock_timeout = '10s'; LOCK TABLE {live} IN SHARE ROW EXCLUSIVE MODE"))
        .await
        .map_err(error)?;
    let refuse = |why: &str| cannot_replace(&format!("{schema}.{name}"), why);
    let columns = client.query(REPLACE_COLUMNS, &[&live]).await.map_err(error)?;
    let names: Vec<String> = columns.iter().map(|c| c.get(0)).collect();
    let saved_names: Vec<String> =
        client.query(REPLACE_COLUMNS, &[&saved]).await.map_err(error)?.iter().map(|c| c.get(0)).collect();
    if let Some(why) = columns_differ(&format!("{schema}.{name}"), &names, &saved_names) {
        return Err(refuse(&why));
    }
    let key: Vec<String> = client.query(PLAIN_KEY, &[&live]).await.map_err(error)?.iter().map(|r| r.get(0)).collect();
    if key.is_empty() {
        return Err(refuse(NO_KEY));
    }
    let matched = key.iter().map(|k| format!("r.{0} = t.{0}", quote_identifier(k))).collect::<Vec<_>>().join(" AND ");
    let missing = format!("FROM ONLY {live} AS t WHERE NOT EXISTS (SELECT 1 FROM {saved} AS r WHERE {matched})");
    let going: i64 = client.query_one(&format!("SELECT count(*) {missing}"), &[]).await.map_err(error)?.get(0);
    if going > 0 {
        let found = client.query(CASCADING_INTO, &[&live]).await.map_err(error)?;
        if let Some(fk) = found.first() {
            let (fk, other): (String, String) = (fk.get(0), fk.get(1));
            return Err(refuse(&cascading(
                going as u64,
                &format!("foreign key {fk} of {other} changes that table's rows on delete"),
            )));
        }
    }
    let plain = plain_copy(client, table, keep_as).await?;
    client.batch_execute(&plain.create).await.map_err(error)?;
    let list = |cols: &[String]| cols.iter().map(|c| quote_identifier(c)).collect::<Vec<_>>().join(", ");
    let kept = client
        .execute(
            &format!(
                "INSERT INTO {} ({1}) SELECT {1} FROM ONLY {live}",
                qualified(&schema, keep_as),
                list(&plain.columns)
            ),
            &[],
        )
        .await
        .map_err(error)?;
    let deleted = client.execute(&format!("DELETE {missing}"), &[]).await.map_err(error)?;
    let writable: Vec<String> =
        columns.iter().filter(|c| !c.get::<_, bool>(1)).map(|c| c.get::<_, String>(0)).collect();
    let overriding = if columns.iter().any(|c| c.get::<_, bool>(2)) { " OVERRIDING SYSTEM VALUE" } else { "" };
    let set: Vec<String> = writable
        .iter()
        .filter(|c| !key.contains(c))
        .map(|c| format!("{0} = EXCLUDED.{0}", quote_identifier(c)))
        .collect();
    let action = if set.is_empty() { "NOTHING".to_owned() } else { format!("UPDATE SET {}", set.join(", ")) };
    let written = client
        .execute(
            &format!(
                "INSERT INTO {live} ({0}){overriding} SELECT {0} FROM {saved} ON CONFLICT ({1}) DO {action}",
                list(&writable),
                list(&key)
            ),
            &[],
        )
        .await
        .map_err(error)?;
    Ok(Replaced { kept_as: format!("{schema}.{keep_as}"), drop_kept: plain.drop, kept, deleted, written })
}

/// The names of `tables` as `to_regclass` reads them (quoted, qualified when they are).
fn regclass_names(tables: &[TableName]) -> Vec<String> {
    tables
        .iter()
        .map(|t| match &t.schema {
            Some(schema) => qualified(schema, &t.name),
            None => quote_identifier(&t.name),
        })
        .collect()
}

/// The tables named as (schema, name), resolved by the server.
pub(crate) async fn resolve(client: &Client, tables: &[TableName]) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM unnest($1::text[]) AS name \
             JOIN pg_class c ON c.oid = to_regclass(name) JOIN pg_namespace n ON n.oid = c.relnamespace",
            &[&regclass_names(tables)],
        )
        .await
        .map_err(error)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Runs `pg_dump` in a snapshot exported by a transaction of `client`,
/// reading the saved tables' digests in the same snapshot meanwhile.
pub(crate) async fn backup(
    client: &Client,
    env: &[(&'static str, String)],
    tables: Option<&[TableName]>,
    out: BackupWriter<'_>,
) -> Result<Saved> {
    let (major, server_version) = server(client).await?;
    let (pg_dump, tool_said) = tool("pg_dump", major)?;
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await.map_err(error)?;
    let dumped = async {
        let snapshot: String = client.query_one("SELECT pg_export_snapshot()", &[]).await.map_err(error)?.get(0);
        let all: Vec<(String, String)> =
            client.query(USER_TABLES, &[]).await.map_err(error)?.iter().map(|r| (r.get(0), r.get(1))).collect();
        let (saved, mut args): (Vec<(String, String)>, Vec<String>) = match tables {
            None => (all.clone(), Vec::new()),
            Some(tables) => {
                let rows = client.query(WITH_REFERENCED, &[&regclass_names(tables)]).await.map_err(error)?;
                let saved: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                // The whole schema, and only these tables' rows.
                let mut args = vec!["--no-blobs".to_owned()];
                args.extend(
                    all.iter()
                        .filter(|t| !saved.contains(t))
                        .map(|(s, n)| format!("--exclude-table-data={}", pattern(s, n))),
                );
                (saved, args)
            }
        };
        args.extend(["--format=custom".to_owned(), "--compress=0".to_owned(), "--no-password".to_owned()]);
        args.push(format!("--snapshot={snapshot}"));
        // Rows written as `digests` reads them: UTF-8 and in UTC (startup
        // parameters a pooler such as PgBouncer passes on), bytea in hex
        // (through `options`, which not every pooler takes: only when the
        // database says otherwise).
        let mut env = env.to_vec();
        env.push(("PGTZ", "UTC".to_owned()));
        env.push(("PGCLIENTENCODING", "UTF8".to_owned()));
        let bytea: String = client.query_one("SHOW bytea_output", &[]).await.map_err(error)?.get(0);
        if bytea != "hex" {
            let options = env.iter().find(|(k, _)| *k == "PGOPTIONS").map(|(_, v)| v.clone()).unwrap_or_default();
            env.retain(|(k, _)| *k != "PGOPTIONS");
            env.push(("PGOPTIONS", format!("{options} -c bytea_output=hex").trim_start().to_owned()));
        }
        let mut child = start(&pg_dump, &args, &env, Stdio::null(), Stdio::piped())?;
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        // Owns the dump's output: a store that fails closes it, so the dump
        // stops (a broken pipe) instead of waiting on a full one. Each
        // table's rows are digested from the archive on the way.
        let copy = async move {
            let mut archive = ArchiveDigests::new();
            let mut buffer = vec![0u8; 256 * 1024];
            loop {
                let n = stdout.read(&mut buffer).await?;
                if n == 0 {
                    break;
                }
                archive.update(&buffer[..n]);
                out.write_all(&buffer[..n]).await?;
            }
            out.flush().await?;
            Ok::<_, std::io::Error>(archive.finish())
        };
        let mut said = String::new();
        let (copied, _) = tokio::join!(copy, stderr.read_to_string(&mut said));
        tool_finished(&pg_dump, &mut child, &said).await?;
        let read = copied.map_err(|e| DriverError::new(ErrorKind::Connection, format!("writing the backup: {e}")))?;
        let Ok(data) = read else {
            // An archive this airlock cannot read: the server reads the
            // tables again, in the same snapshot, still open.
            return digests(client, &saved).await;
        };
        let mut data: HashMap<(String, String), (u64, String)> =
            data.into_iter().map(|d| ((d.schema, d.table), (d.rows, d.digest))).collect();
        // A table without data in the archive (a partitioned table, whose
        // rows are its partitions'; one an extension fills) is read from
        // the server, in the same snapshot.
        let unread: Vec<(String, String)> = saved.iter().filter(|t| !data.contains_key(*t)).cloned().collect();
        for read in digests(client, &unread).await? {
            data.insert((read.schema.clone().unwrap_or_default(), read.table), (read.rows, read.digest));
        }
        Ok(saved
            .iter()
            .map(|(schema, table)| {
                let (rows, digest) = data.remove(&(schema.clone(), table.clone())).unwrap_or_default();
                TableDigest { schema: Some(schema.clone()), table: table.clone(), rows, digest }
            })
            .collect())
    }
    .await;
    let ended = client.batch_execute("COMMIT").await.map_err(error);
    let tables = dumped?;
    ended?;
    Ok(Saved { format: FORMAT.to_owned(), tool: tool_said, server_version, tables })
}

/// Runs `pg_restore` into the database `env` reaches, from `input`.
pub(crate) async fn restore(client: &Client, env: &[(&'static str, String)], input: BackupReader<'_>) -> Result<()> {
    let (major, _) = server(client).await?;
    let (pg_restore, _) = tool("pg_restore", major)?;
    let dbname = env.iter().find(|(k, _)| *k == "PGDATABASE").map(|(_, v)| v.clone()).unwrap_or_default();
    let mut args: Vec<String> = [
        "--no-owner",
        "--no-privileges",
        "--no-subscriptions",
        "--no-publications",
        "--exit-on-error",
        "--no-password",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(["--dbname".to_owned(), dbname]);
    let mut child = start(&pg_restore, &args, env, Stdio::piped(), Stdio::null())?;
    feed_tool(&pg_restore, &mut child, input).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tools_major_version_is_read_off_what_it_says() {
        assert_eq!(tool_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"), Some(15));
        assert_eq!(tool_major("pg_restore (PostgreSQL) 18.6"), Some(18));
        assert_eq!(tool_major("pg_dump (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(tool_major("something else"), None);
    }

    #[test]
    fn patterns_match_one_table_whatever_its_name() {
        assert_eq!(pattern("public", "carts"), "\"public\".\"carts\"");
        assert_eq!(pattern("Sales", "a\"b*"), "\"Sales\".\"a\"\"b*\"");
    }
}
