//! Backups of a SQLite database: the whole file, copied page by page by
//! SQLite's backup API inside one read transaction, in which the saved
//! tables' digests are read too, so that they describe exactly the copy.
//! The copy goes to a temporary file (the API writes to a database, not a
//! stream), which is then streamed out and removed.

use std::time::Duration;

use airlock_core::schema::TableName;
use airlock_driver::backup::{BackupReader, BackupWriter, Saved, TableDigest};
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
