//! Backups of a MariaDB/MySQL database with the server's own client tools:
//! `mariadb-dump` (or `mysqldump`) writes SQL, `mariadb` (or `mysql`)
//! reads it into an empty database. The connection's settings reach them
//! in an option file of the current user's alone, never on a command line.
//!
//! The server cannot export a snapshot for another session, so the digests
//! of the saved tables are made to describe exactly what the dump holds
//! another way: a second connection holds `FLUSH TABLES ... WITH READ
//! LOCK` on the saved tables (the whole database in `database` mode) while
//! the driver's own connection starts a consistent snapshot and the dump
//! starts its own; the lock is let go as soon as the dump writes its first
//! table, so writes to those tables wait only that long. The digests are
//! then read in the driver's snapshot while the dump streams.
//!
//! A backup of tables holds those tables and the tables their foreign keys
//! reference (so that their foreign keys restore), with their triggers, and
//! the database's routines.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use airlock_core::schema::TableName;
use airlock_driver::backup::{
    BackupReader, BackupWriter, NO_KEY, PlainCopy, Replaced, Saved, TableDigest, cannot_replace, cascading,
    columns_differ, feed_tool, tool_finished,
};
use airlock_driver::{DriverError, ErrorKind, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{error, quote};

/// The format of what [`backup`] writes.
pub(crate) const FORMAT: &str = "mariadb-dump-sql";

/// Written by the dump once it is in its own snapshot: the first table's
/// definition follows.
const STARTED: &[u8] = b"-- Table structure for table";

/// How long the read lock may wait for statements running on the saved
/// tables before the backup gives up, in seconds.
const LOCK_WAIT: u32 = 30;

/// A client tool, found: its path, what `--version` says, and whether it
/// is MariaDB's (whose option names differ a little from MySQL's).
struct Tool {
    path: PathBuf,
    said: String,
    mariadb: bool,
}

/// The first of `names` in `AIRLOCK_MYSQL_BIN` when it is set (and only
/// there), else in `PATH`.
fn tool(names: &[&str]) -> Result<Tool> {
    let chosen = std::env::var_os("AIRLOCK_MYSQL_BIN");
    let dirs: Vec<PathBuf> = match &chosen {
        Some(dir) => vec![PathBuf::from(dir)],
        None => std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default(),
    };
    for name in names {
        for dir in &dirs {
            let candidate = dir.join(name);
            if !candidate.is_file() {
                continue;
            }
            let Ok(out) = std::process::Command::new(&candidate).arg("--version").output() else { continue };
            let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let mariadb = name.starts_with("mariadb") || said.contains("MariaDB");
            return Ok(Tool { path: candidate, said, mariadb });
        }
    }
    let looked = match chosen {
        Some(dir) => format!("AIRLOCK_MYSQL_BIN={}", Path::new(&dir).display()),
        None => "PATH".to_owned(),
    };
    Err(DriverError::new(
        ErrorKind::Unsupported,
        format!(
            "{} is not installed (looked in {looked}): install mariadb-client (or mysql-client), or set AIRLOCK_MYSQL_BIN to the directory that holds it",
            names.join(" or ")
        ),
    ))
}

/// A value in an option file, quoted and escaped.
fn option_value(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An option file with the connection's settings, readable by this user
/// only, removed when dropped: what `--defaults-extra-file` reads.
fn option_file(opts: &Opts, tool: &Tool) -> Result<tempfile::NamedTempFile> {
    let mut text = String::from("[client]\n");
    match opts.socket() {
        Some(socket) => text.push_str(&format!("socket={}\n", option_value(socket))),
        None => {
            text.push_str(&format!("host={}\n", option_value(opts.ip_or_hostname())));
            text.push_str(&format!("port={}\n", opts.tcp_port()));
            text.push_str("protocol=TCP\n");
        }
    }
    if let Some(user) = opts.user() {
        text.push_str(&format!("user={}\n", option_value(user)));
    }
    if let Some(password) = opts.pass() {
        text.push_str(&format!("password={}\n", option_value(password)));
    }
    // As the driver connects: with TLS only when the URL asks for it.
    if opts.ssl_opts().is_none() {
        text.push_str(if tool.mariadb { "skip-ssl\n" } else { "ssl-mode=DISABLED\n" });
    }
    let io = |e: std::io::Error| {
        DriverError::new(ErrorKind::Connection, format!("an option file for {}: {e}", tool.path.display()))
    };
    // tempfile makes it 0600.
    let mut file = tempfile::Builder::new().prefix("airlock-mysql-").suffix(".cnf").tempfile().map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(file)
}

/// Starts `tool` with its option file first, then `args`; standard error piped.
fn start(tool: &Tool, options: &Path, args: &[String], stdin: Stdio, stdout: Stdio) -> Result<tokio::process::Child> {
    tokio::process::Command::new(&tool.path)
        .arg(format!("--defaults-extra-file={}", options.display()))
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            DriverError::new(ErrorKind::Unsupported, format!("{} cannot be started: {e}", tool.path.display()))
        })
}

/// The tables named and those their foreign keys reference, again and
/// again, within this database; by name.
async fn with_referenced(conn: &mut Conn, tables: &[TableName]) -> Result<Vec<String>> {
    let mut saved: Vec<String> = Vec::new();
    let mut next: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    while let Some(name) = next.pop() {
        if saved.contains(&name) {
            continue;
        }
        let exists: Option<String> = conn
            .exec_first(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
                 AND TABLE_NAME = ? AND TABLE_TYPE = 'BASE TABLE'",
                (name.as_str(),),
            )
            .await
            .map_err(error)?;
        let Some(name) = exists else { continue };
        let referenced: Vec<String> = conn
            .exec(
                "SELECT DISTINCT REFERENCED_TABLE_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? \
                 AND REFERENCED_TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME IS NOT NULL",
                (name.as_str(),),
            )
            .await
            .map_err(error)?;
        next.extend(referenced);
        saved.push(name);
    }
    saved.sort();
    Ok(saved)
}

/// Every base table of the database but airlock's own.
async fn user_tables(conn: &mut Conn) -> Result<Vec<String>> {
    conn.query(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
         AND TABLE_TYPE = 'BASE TABLE' AND TABLE_NAME NOT LIKE 'airlock\\_%' ORDER BY TABLE_NAME",
    )
    .await
    .map_err(error)
}

/// Each table's rows and the sum of its rows' MD5s (the first 60 bits, as
/// numbers; each row as its values quoted by the server, NULL apart): the
/// same for the same rows in any order.
pub(crate) async fn digests(conn: &mut Conn, tables: &[TableName]) -> Result<Vec<TableDigest>> {
    let mut out = Vec::new();
    for table in tables {
        let columns: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
                 AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (table.name.as_str(),),
            )
            .await
            .map_err(error)?;
        if columns.is_empty() {
            return Err(DriverError::new(ErrorKind::Statement, format!("there is no table `{}`", table.name)));
        }
        let row = columns.iter().map(|c| format!("CAST(QUOTE({}) AS BINARY)", quote(c))).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT COUNT(*), CAST(COALESCE(SUM(CAST(CONV(SUBSTRING(MD5(CONCAT_WS(',', {row})), 1, 15), 16, 10) \
             AS DECIMAL(65))), 0) AS CHAR) FROM {}",
            quote(&table.name)
        );
        let found: Option<(u64, String)> = conn.query_first(sql).await.map_err(error)?;
        let (rows, digest) = found.unwrap_or_default();
        out.push(TableDigest { schema: None, table: table.name.clone(), rows, digest });
    }
    Ok(out)
}

/// Runs the dump of `tables` (None: the whole database) to `out`, its
/// snapshot and the driver's started under a brief read lock, and reads
/// the saved tables' digests in the driver's snapshot meanwhile.
pub(crate) async fn backup(
    conn: &mut Conn,
    opts: &Opts,
    tables: Option<&[TableName]>,
    out: BackupWriter<'_>,
) -> Result<Saved> {
    let dump = tool(&["mariadb-dump", "mysqldump"])?;
    let server_version: String = conn.query_first("SELECT VERSION()").await.map_err(error)?.unwrap_or_default();
    let database = database(opts)?;
    let saved = match tables {
        None => user_tables(conn).await?,
        Some(tables) => with_referenced(conn, tables).await?,
    };
    let options = option_file(opts, &dump)?;
    let mut args: Vec<String> = [
        "--single-transaction",
        "--quick",
        "--hex-blob",
        "--no-tablespaces",
        "--routines",
        "--triggers",
        "--default-character-set=utf8mb4",
    ]
    .map(str::to_owned)
    .to_vec();
    if tables.is_none() {
        args.push("--events".to_owned());
    }
    if !dump.mariadb {
        // MySQL's own dump would take a global read lock of its own for GTIDs,
        // and write GTID_PURGED, which a restore on the same server refuses.
        args.push("--set-gtid-purged=OFF".to_owned());
    }
    args.push(database.clone());
    if tables.is_some() {
        args.extend(saved.iter().cloned());
    }

    // The lock, from a connection of its own; the snapshot, on the driver's.
    let mut holder = Conn::new(opts.clone()).await.map_err(error)?;
    holder.query_drop(format!("SET SESSION lock_wait_timeout = {LOCK_WAIT}")).await.map_err(error)?;
    let lock = match tables {
        None => "FLUSH TABLES WITH READ LOCK".to_owned(),
        Some(_) if saved.is_empty() => String::new(),
        Some(_) => {
            format!("FLUSH TABLES {} WITH READ LOCK", saved.iter().map(|t| quote(t)).collect::<Vec<_>>().join(", "))
        }
    };
    if !lock.is_empty() {
        holder.query_drop(&lock).await.map_err(|e| {
            let e = error(e);
            DriverError::new(
                e.kind,
                format!(
                    "holding the saved tables still while the backup starts (`{lock}`: the user needs RELOAD and LOCK TABLES): {}",
                    e.message
                ),
            )
        })?;
    }
    let started = async {
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ").await?;
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").await
    }
    .await
    .map_err(error);
    if let Err(e) = started {
        let _ = holder.query_drop("UNLOCK TABLES").await;
        let _ = holder.disconnect().await;
        return Err(e);
    }

    let mut child = match start(&dump, options.path(), &args, Stdio::null(), Stdio::piped()) {
        Ok(child) => child,
        Err(e) => {
            release(Some(holder)).await;
            let _ = conn.query_drop("COMMIT").await;
            return Err(e);
        }
    };
    let dumped = async {
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        // Streams the dump out; lets the lock go once the dump is in its snapshot (or has ended).
        // Owns the dump's output: a store that fails closes it, so the dump
        // stops (a broken pipe) instead of waiting on a full one.
        let copy = async move {
            let mut holder = Some(holder);
            let mut buffer = vec![0u8; 256 * 1024];
            let mut tail: Vec<u8> = Vec::new();
            let copied = async {
                loop {
                    let n = stdout.read(&mut buffer).await?;
                    if holder.is_some() {
                        tail.extend_from_slice(&buffer[..n]);
                        let seen = n == 0 || tail.windows(STARTED.len()).any(|w| w == STARTED);
                        if seen {
                            release(holder.take()).await;
                        } else if tail.len() > STARTED.len() {
                            tail.drain(..tail.len() - STARTED.len());
                        }
                    }
                    if n == 0 {
                        break;
                    }
                    out.write_all(&buffer[..n]).await?;
                }
                out.flush().await
            }
            .await;
            release(holder.take()).await;
            copied
        };
        let mut said = String::new();
        let names: Vec<TableName> = saved.iter().map(|t| TableName::bare(t)).collect();
        let (digests, copied, _) = tokio::join!(digests(conn, &names), copy, stderr.read_to_string(&mut said));
        tool_finished(&dump.path, &mut child, &said).await?;
        copied.map_err(|e| DriverError::new(ErrorKind::Connection, format!("writing the backup: {e}")))?;
        digests
    }
    .await;
    let ended = conn.query_drop("COMMIT").await.map_err(error);
    let digests = dumped?;
    ended?;
    Ok(Saved { format: FORMAT.to_owned(), tool: dump.said, server_version, tables: digests })
}

/// A table's primary key columns, in the key's order.
async fn primary_key(conn: &mut Conn, table: &str) -> Result<Vec<String>> {
    conn.exec(
        "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE() \
         AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
        (table,),
    )
    .await
    .map_err(error)
}

/// A column as `information_schema.COLUMNS` gives it to a plain copy:
/// name, type, nullable, character set, collation.
type ColumnRow = (String, String, String, Option<String>, Option<String>);

/// The definition of a plain table `name` holding `table`'s rows: each
/// column (a generated one as a plain one) with its type, character set
/// and collation, NOT NULL, and the primary key.
pub(crate) async fn plain_copy(conn: &mut Conn, table: &TableName, name: &str) -> Result<PlainCopy> {
    let columns: Vec<ColumnRow> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME, COLLATION_NAME \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (table.name.as_str(),),
        )
        .await
        .map_err(error)?;
    if columns.is_empty() {
        return Err(DriverError::new(ErrorKind::Statement, format!("there is no table `{}`", table.name)));
    }
    let mut parts: Vec<String> = columns
        .iter()
        .map(|(column, kind, nullable, charset, collation)| {
            let text = match (charset, collation) {
                (Some(charset), Some(collation)) => format!(" CHARACTER SET {charset} COLLATE {collation}"),
                _ => String::new(),
            };
            let not_null = if nullable == "NO" { " NOT NULL" } else { "" };
            format!("{} {kind}{text}{not_null}", quote(column))
        })
        .collect();
    let key = primary_key(conn, &table.name).await?;
    if !key.is_empty() {
        parts.push(format!("PRIMARY KEY ({})", key.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ")));
    }
    Ok(PlainCopy {
        create: format!("CREATE TABLE {} ({})", quote(name), parts.join(", ")),
        drop: format!("DROP TABLE {}", quote(name)),
        columns: columns.into_iter().map(|c| c.0).collect(),
    })
}

/// A table's columns, each with whether it is generated. (MySQL's EXTRA
/// says DEFAULT_GENERATED of a plain column with an expression default:
/// the generation expression tells them apart.)
async fn generated_or_not(conn: &mut Conn, table: &str) -> Result<Vec<(String, bool)>> {
    conn.exec(
        "SELECT COLUMN_NAME, COALESCE(GENERATION_EXPRESSION, '') <> '' FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        (table,),
    )
    .await
    .map_err(error)
}

/// `table`'s rows made `from`'s, by primary key, its rows before kept in
/// `keep_as`. DDL commits at once here: the table `keep_as` is made first;
/// then the rows before are copied into it and the rows changed, in a
/// transaction the caller ends; a failure in it drops `keep_as` again.
pub(crate) async fn replace_rows(
    conn: &mut Conn,
    table: &TableName,
    from: &TableName,
    keep_as: &str,
) -> Result<Replaced> {
    let refuse = |why: &str| cannot_replace(&table.name, why);
    let columns = generated_or_not(conn, &table.name).await?;
    let saved = generated_or_not(conn, &from.name).await?;
    if columns.is_empty() || saved.is_empty() {
        let missing = if columns.is_empty() { &table.name } else { &from.name };
        return Err(DriverError::new(ErrorKind::Statement, format!("there is no table `{missing}`")));
    }
    let names: Vec<String> = columns.iter().map(|c| c.0.clone()).collect();
    let saved_names: Vec<String> = saved.iter().map(|c| c.0.clone()).collect();
    if let Some(why) = columns_differ(&table.name, &names, &saved_names) {
        return Err(refuse(&why));
    }
    let key = primary_key(conn, &table.name).await?;
    if key.is_empty() {
        return Err(refuse(NO_KEY));
    }
    let (live, source) = (quote(&table.name), quote(&from.name));
    let matched = key.iter().map(|k| format!("r.{0} = t.{0}", quote(k))).collect::<Vec<_>>().join(" AND ");
    let missing = format!("NOT EXISTS (SELECT 1 FROM {source} AS r WHERE {matched})");
    let going: Option<u64> =
        conn.query_first(format!("SELECT COUNT(*) FROM {live} AS t WHERE {missing}")).await.map_err(error)?;
    let going = going.unwrap_or_default();
    if going > 0 {
        let found: Option<(String, String, String)> = conn
            .exec_first(
                "SELECT CONSTRAINT_NAME, TABLE_NAME, DELETE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME = ? \
                 AND DELETE_RULE IN ('CASCADE', 'SET NULL', 'SET DEFAULT') ORDER BY 1 LIMIT 1",
                (table.name.as_str(),),
            )
            .await
            .map_err(error)?;
        if let Some((fk, other, rule)) = found {
            return Err(refuse(&cascading(going, &format!("foreign key {fk} of {other} is ON DELETE {rule}"))));
        }
    }
    let plain = plain_copy(conn, table, keep_as).await?;
    conn.query_drop(&plain.create).await.map_err(error)?;
    let list = |cols: &[String]| cols.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
    let changed = async {
        // The copy of the rows before in the same transaction as the replace.
        conn.query_drop("START TRANSACTION").await?;
        conn.query_drop(format!(
            "INSERT INTO {} ({1}) SELECT {1} FROM {live} LOCK IN SHARE MODE",
            quote(keep_as),
            list(&plain.columns)
        ))
        .await?;
        let kept = conn.affected_rows();
        conn.query_drop(format!("DELETE t FROM {live} AS t WHERE {missing}")).await?;
        let deleted = conn.affected_rows();
        let writable: Vec<String> = columns.iter().filter(|c| !c.1).map(|c| c.0.clone()).collect();
        let set: Vec<String> =
            writable.iter().filter(|c| !key.contains(c)).map(|c| format!("{0} = VALUES({0})", quote(c))).collect();
        let on_duplicate = if set.is_empty() { format!("{0} = {0}", quote(&key[0])) } else { set.join(", ") };
        conn.query_drop(format!(
            "INSERT INTO {live} ({0}) SELECT {0} FROM {source} ON DUPLICATE KEY UPDATE {on_duplicate}",
            list(&writable)
        ))
        .await?;
        let written: Option<u64> = conn.query_first(format!("SELECT COUNT(*) FROM {source}")).await?;
        Ok::<_, mysql_async::Error>((kept, deleted, written.unwrap_or_default()))
    }
    .await;
    match changed {
        Ok((kept, deleted, written)) => {
            Ok(Replaced { kept_as: keep_as.to_owned(), drop_kept: plain.drop, kept, deleted, written })
        }
        Err(e) => {
            let _ = conn.query_drop("ROLLBACK").await;
            let _ = conn.query_drop(&plain.drop).await;
            Err(error(e))
        }
    }
}

/// The database the connection's URL names, which the tools are pointed at.
fn database(opts: &Opts) -> Result<String> {
    opts.db_name().map(str::to_owned).ok_or_else(|| {
        DriverError::new(ErrorKind::Connection, "the URL names no database: add it to the URL's path".to_owned())
    })
}

/// Lets the read lock go, and the connection that held it.
async fn release(holder: Option<Conn>) {
    if let Some(mut holder) = holder {
        let _ = holder.query_drop("UNLOCK TABLES").await;
        let _ = holder.disconnect().await;
    }
}

/// Runs the client with the dump on its standard input, into the
/// (empty) database the driver is connected to.
pub(crate) async fn restore(opts: &Opts, input: BackupReader<'_>) -> Result<()> {
    let client = tool(&["mariadb", "mysql"])?;
    let database = database(opts)?;
    let options = option_file(opts, &client)?;
    let args = vec![
        "--binary-mode".to_owned(),
        "--default-character-set=utf8mb4".to_owned(),
        format!("--database={database}"),
    ];
    let mut child = start(&client, options.path(), &args, Stdio::piped(), Stdio::null())?;
    feed_tool(&client.path, &mut child, input).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_are_quoted_whatever_they_hold() {
        assert_eq!(option_value("secret"), "\"secret\"");
        assert_eq!(option_value("a\"b\\c #d"), "\"a\\\"b\\\\c #d\"");
    }
}
