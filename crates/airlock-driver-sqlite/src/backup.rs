//! Backups of a SQLite database: the whole file, copied page by page by
//! SQLite's backup API inside one read transaction, in which the saved
//! tables' digests are read too, so that they describe exactly the copy.
//! The copy goes to a temporary file (the API writes to a database, not a
//! stream), which is then streamed out and removed.

use std::time::Duration;

use airlock_core::schema::TableName;
use airlock_driver::backup::{
    BackupReader, BackupWriter, NO_KEY, PlainCopy, Replaced, Saved, TableDigest, cannot_replace, cascading,
    columns_differ,
};
use airlock_driver::{DriverError, ErrorKind, Result};
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::{error, quote};

/// The format of what [`backup`] writes.
pub(crate) const FORMAT: &str = "sqlite-file";

/// Pages copied per step of the backup API.
const PAGES_PER_STEP: std::ffi::c_int = 1024;

fn io(what: &str) -> impl Fn(std::io::Error) -> DriverError + '_ {
    move |e| DriverError::new(ErrorKind::Connection, format!("{what}: {e}"))
}

/// Every table of the database but SQLite's and airlock's own.
fn user_tables(conn: &Connection) -> Result<Vec<TableName>> {
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             AND name NOT LIKE 'airlock\\_%' ESCAPE '\\' ORDER BY name",
        )
        .map_err(error)?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(error)?;
    names.map(|n| n.map(|n| TableName::bare(&n)).map_err(error)).collect()
}

/// Each table's rows and the sum of its rows' hashes (SHA-256 of each
/// value with its type, the first 128 bits added up): the same for the same
/// rows in any order.
pub(crate) fn digests(conn: &Connection, tables: &[TableName]) -> Result<Vec<TableDigest>> {
    let mut out = Vec::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {}", quote(&table.name))).map_err(error)?;
        let width = stmt.column_count();
        let mut rows = stmt.query([]).map_err(error)?;
        let (mut count, mut sum) = (0u64, 0u128);
        while let Some(row) = rows.next().map_err(error)? {
            let mut hash = Sha256::new();
            for i in 0..width {
                match row.get_ref(i).map_err(error)? {
                    ValueRef::Null => hash.update([0]),
                    ValueRef::Integer(v) => {
                        hash.update([1]);
                        hash.update(v.to_le_bytes());
                    }
                    ValueRef::Real(v) => {
                        hash.update([2]);
                        hash.update(v.to_bits().to_le_bytes());
                    }
                    ValueRef::Text(v) | ValueRef::Blob(v) => {
                        hash.update([3]);
                        hash.update((v.len() as u64).to_le_bytes());
                        hash.update(v);
                    }
                }
            }
            let first: [u8; 16] = hash.finalize()[..16].try_into().unwrap_or_default();
            sum = sum.wrapping_add(u128::from_le_bytes(first));
            count += 1;
        }
        out.push(TableDigest { schema: None, table: table.name.clone(), rows: count, digest: format!("{sum:032x}") });
    }
    Ok(out)
}

/// The definition of a plain table `name` holding `table`'s rows: each
/// column (a generated one as a plain one) with its declared type and NOT
/// NULL, and the primary key.
pub(crate) fn plain_copy(conn: &Connection, table: &TableName, name: &str) -> Result<PlainCopy> {
    let mut stmt = conn
        .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_xinfo(?1) WHERE hidden <> 1 ORDER BY cid")
        .map_err(error)?;
    let columns: Vec<(String, String, bool, i64)> = stmt
        .query_map([&table.name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .map_err(error)?
        .collect::<rusqlite::Result<_>>()
        .map_err(error)?;
    if columns.is_empty() {
        return Err(DriverError::new(ErrorKind::Statement, format!("there is no table `{}`", table.name)));
    }
    let mut parts: Vec<String> = columns
        .iter()
        .map(|(column, kind, not_null, _)| {
            let kind = if kind.is_empty() { String::new() } else { format!(" {kind}") };
            format!("{}{kind}{}", quote(column), if *not_null { " NOT NULL" } else { "" })
        })
        .collect();
    let mut key: Vec<&(String, String, bool, i64)> = columns.iter().filter(|c| c.3 > 0).collect();
    key.sort_by_key(|c| c.3);
    if !key.is_empty() {
        parts.push(format!("PRIMARY KEY ({})", key.iter().map(|c| quote(&c.0)).collect::<Vec<_>>().join(", ")));
    }
    Ok(PlainCopy {
        create: format!("CREATE TABLE {} ({})", quote(name), parts.join(", ")),
        drop: format!("DROP TABLE {}", quote(name)),
        columns: columns.into_iter().map(|c| c.0).collect(),
    })
}

/// A table's columns: name, generated, place in the primary key (0: none).
fn columns_of(conn: &Connection, table: &str) -> Result<Vec<(String, bool, i64)>> {
    let mut stmt = conn
        .prepare("SELECT name, hidden IN (2, 3), pk FROM pragma_table_xinfo(?1) WHERE hidden <> 1 ORDER BY cid")
        .map_err(error)?;
    stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(error)?
        .collect::<rusqlite::Result<_>>()
        .map_err(error)
}

/// `table`'s rows made `from`'s, by primary key, its rows before kept in `keep_as`.
pub(crate) fn replace_rows(conn: &Connection, table: &TableName, from: &TableName, keep_as: &str) -> Result<Replaced> {
    let refuse = |why: &str| cannot_replace(&table.name, why);
    let columns = columns_of(conn, &table.name)?;
    let saved = columns_of(conn, &from.name)?;
    if columns.is_empty() || saved.is_empty() {
        let missing = if columns.is_empty() { &table.name } else { &from.name };
        return Err(DriverError::new(ErrorKind::Statement, format!("there is no table `{missing}`")));
    }
    let names: Vec<String> = columns.iter().map(|c| c.0.clone()).collect();
    let saved_names: Vec<String> = saved.iter().map(|c| c.0.clone()).collect();
    if let Some(why) = columns_differ(&table.name, &names, &saved_names) {
        return Err(refuse(&why));
    }
    let mut key: Vec<&(String, bool, i64)> = columns.iter().filter(|c| c.2 > 0).collect();
    key.sort_by_key(|c| c.2);
    let key: Vec<String> = key.into_iter().map(|c| c.0.clone()).collect();
    if key.is_empty() {
        return Err(refuse(NO_KEY));
    }
    let (live, source) = (quote(&table.name), quote(&from.name));
    let matched = key.iter().map(|k| format!("r.{0} = t.{0}", quote(k))).collect::<Vec<_>>().join(" AND ");
    let missing = format!("FROM {live} AS t WHERE NOT EXISTS (SELECT 1 FROM {source} AS r WHERE {matched})");
    let going: i64 = conn.query_row(&format!("SELECT count(*) {missing}"), [], |r| r.get(0)).map_err(error)?;
    if going > 0 {
        let found: Option<(String, String)> = conn
            .query_row(
                "SELECT m.name, f.on_delete FROM sqlite_master AS m, pragma_foreign_key_list(m.name) AS f \
                 WHERE m.type = 'table' AND f.\"table\" = ?1 COLLATE NOCASE \
                 AND f.on_delete IN ('CASCADE', 'SET NULL', 'SET DEFAULT') ORDER BY 1 LIMIT 1",
                [&table.name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map(Some)
            .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })
            .map_err(error)?;
        if let Some((other, action)) = found {
            return Err(refuse(&cascading(going as u64, &format!("a foreign key of {other} is ON DELETE {action}"))));
        }
    }
    let plain = plain_copy(conn, table, keep_as)?;
    conn.execute_batch(&plain.create).map_err(error)?;
    let list = |cols: &[String]| cols.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
    let kept = conn
        .execute(&format!("INSERT INTO {} ({1}) SELECT {1} FROM {live}", quote(keep_as), list(&plain.columns)), [])
        .map_err(error)?;
    let deleted = conn.execute(&format!("DELETE {missing}"), []).map_err(error)?;
    let writable: Vec<String> = columns.iter().filter(|c| !c.1).map(|c| c.0.clone()).collect();
    let set: Vec<String> =
        writable.iter().filter(|c| !key.contains(c)).map(|c| format!("{0} = excluded.{0}", quote(c))).collect();
    let action = if set.is_empty() { "NOTHING".to_owned() } else { format!("UPDATE SET {}", set.join(", ")) };
    let written = conn
        .execute(
            &format!(
                "INSERT INTO {live} ({0}) SELECT {0} FROM {source} WHERE true ON CONFLICT ({1}) DO {action}",
                list(&writable),
                list(&key)
            ),
            [],
        )
        .map_err(error)?;
    Ok(Replaced {
        kept_as: keep_as.to_owned(),
        drop_kept: plain.drop,
        kept: kept as u64,
        deleted: deleted as u64,
        written: written as u64,
    })
}

/// Copies the database into a temporary file in one read transaction,
/// reading the digests of `tables` (None: every table) in it, then streams
/// the file to `out`.
pub(crate) async fn backup(
    conn: &mut Connection,
    tables: Option<&[TableName]>,
    out: BackupWriter<'_>,
) -> Result<Saved> {
    let copy = tempfile::Builder::new()
        .prefix("airlock-backup-")
        .suffix(".db")
        .tempfile()
        .map_err(io("a temporary file for the copy"))?;
    conn.execute_batch("BEGIN DEFERRED").map_err(error)?;
    let taken = (|| {
        // The first read starts the snapshot the digests and the copy share.
        let tables = match tables {
            Some(tables) => tables.to_vec(),
            None => user_tables(conn)?,
        };
        let digests = digests(conn, &tables)?;
        let mut target = Connection::open(copy.path()).map_err(error)?;
        rusqlite::backup::Backup::new(&*conn, &mut target)
            .and_then(|b| b.run_to_completion(PAGES_PER_STEP, Duration::ZERO, None))
            .map_err(error)?;
        Ok(digests)
    })();
    let ended = conn.execute_batch("COMMIT").map_err(error);
    let digests = taken?;
    ended?;
    let mut file = tokio::fs::File::open(copy.path()).await.map_err(io("reading the copy"))?;
    tokio::io::copy(&mut file, out).await.map_err(io("writing the backup"))?;
    out.flush().await.map_err(io("writing the backup"))?;
    Ok(Saved {
        format: FORMAT.to_owned(),
        tool: format!("SQLite {} backup API", rusqlite::version()),
        server_version: format!("SQLite {}", rusqlite::version()),
        tables: digests,
    })
}

/// Replaces the (empty) database of `conn` with the file read from `input`.
pub(crate) async fn restore(conn: &mut Connection, input: BackupReader<'_>) -> Result<()> {
    let file = tempfile::Builder::new()
        .prefix("airlock-restore-")
        .suffix(".db")
        .tempfile()
        .map_err(io("a temporary file for the restore"))?;
    let mut writer = tokio::fs::File::create(file.path()).await.map_err(io("writing the restored file"))?;
    tokio::io::copy(input, &mut writer).await.map_err(io("reading the backup"))?;
    writer.flush().await.map_err(io("writing the restored file"))?;
    drop(writer);
    let source = Connection::open_with_flags(file.path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(error)?;
    // Not a database file: said before anything is copied.
    source
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))
        .map_err(|e| DriverError::new(ErrorKind::Statement, format!("the backup is not a SQLite database: {e}")))?;
    rusqlite::backup::Backup::new(&source, conn)
        .and_then(|b| b.run_to_completion(PAGES_PER_STEP, Duration::ZERO, None))
        .map_err(error)
}
