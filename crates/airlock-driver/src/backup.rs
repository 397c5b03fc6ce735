//! What the seam says of backups: each engine writes a backup in its own
//! format (a `pg_dump` archive, a SQLite database file...) to a byte
//! stream the runner compresses, checksums and stores, restores one into
//! an empty database, and reads each table's rows and a digest of their
//! content, so that a restore can be compared with what was saved.

use serde::{Deserialize, Serialize};

/// A table's rows and a digest of its content, order aside: equal for two
/// tables with the same rows whatever their physical order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDigest {
    /// Its schema, where the engine has them.
    pub schema: Option<String>,
    /// Its name.
    pub table: String,
    /// Rows.
    pub rows: u64,
    /// The digest, as text.
    pub digest: String,
}

/// What a driver tells of a backup it wrote.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Saved {
    /// The format of the bytes: `sqlite-file`, `pg_dump-custom`, `mariadb-dump-sql`.
    pub format: String,
    /// What wrote them, with its version (`pg_dump (PostgreSQL) 15.18`).
    pub tool: String,
    /// The server's version.
    pub server_version: String,
    /// The tables saved, each with its rows and digest read in the snapshot the backup holds.
    pub tables: Vec<TableDigest>,
}

/// Where a backup's bytes go, as the driver writes them.
pub type BackupWriter<'a> = &'a mut (dyn tokio::io::AsyncWrite + Send + Unpin);

/// Where a backup's bytes come from, for a restore.
pub type BackupReader<'a> = &'a mut (dyn tokio::io::AsyncRead + Send + Unpin);

/// A plain table made to hold another's rows ([`crate::Driver::plain_copy`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlainCopy {
    /// The statement that makes it.
    pub create: String,
    /// The statement that drops it again: where DDL commits at once
    /// (MySQL), how a failed restore takes back what it made.
    pub drop: String,
    /// Its columns, in order: the rows' columns in the table copied.
    pub columns: Vec<String>,
}

/// What [`crate::Driver::replace_rows`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    /// Where the rows before went (`schema.name` where the engine has schemas).
    pub kept_as: String,
    /// The statement that drops that table again (see [`PlainCopy::drop`]).
    #[serde(skip)]
    pub drop_kept: String,
    /// Rows kept there.
    pub kept: u64,
    /// Rows deleted: in the table, not in the backup.
    pub deleted: u64,
    /// Rows written from the backup (updated or inserted).
    pub written: u64,
}

/// Why a replace is refused, before anything is changed: `table` and the reason.
pub fn cannot_replace(table: &str, why: &str) -> crate::DriverError {
    crate::DriverError::new(crate::ErrorKind::Statement, format!("`{table}` cannot be replaced: {why}"))
}

/// The reason when the live table has no primary key to match rows by.
pub const NO_KEY: &str =
    "it has no primary key to match the saved rows by; copy them back from the restored table by hand";

/// The reason when rows to delete would change another table through a
/// foreign key (`foreign_key` says which, and what it does on delete).
pub fn cascading(rows: u64, foreign_key: &str) -> String {
    format!(
        "{rows} row(s) not in the backup would be deleted, and {foreign_key}; copy the saved rows back from the restored table by hand"
    )
}

/// Why two tables' columns do not match for a replace, or None when they do.
pub fn columns_differ(table: &str, live: &[String], saved: &[String]) -> Option<String> {
    let only = |a: &[String], b: &[String]| a.iter().filter(|c| !b.contains(c)).cloned().collect::<Vec<_>>();
    let (live_only, saved_only) = (only(live, saved), only(saved, live));
    if live_only.is_empty() && saved_only.is_empty() {
        return None;
    }
    let mut said = Vec::new();
    if !live_only.is_empty() {
        said.push(format!("`{table}` has {} that the backup does not", live_only.join(", ")));
    }
    if !saved_only.is_empty() {
        said.push(format!("the backup has {} that `{table}` does not", saved_only.join(", ")));
    }
    Some(format!(
        "{}: put its columns back as they were first (a down migration), then replace; or copy rows back from the restored table by hand",
        said.join(", and ")
    ))
}

/// Waits for an engine's tool (`pg_dump`, `mariadb`...); a failure says
/// how it ended and what it printed (`said`, its standard error).
pub async fn tool_finished(tool: &std::path::Path, child: &mut tokio::process::Child, said: &str) -> crate::Result<()> {
    let status = child
        .wait()
        .await
        .map_err(|e| crate::DriverError::new(crate::ErrorKind::Connection, format!("{}: {e}", tool.display())))?;
    if status.success() {
        return Ok(());
    }
    let exit = status.code().map_or("was killed".to_owned(), |c| format!("exited with status {c}"));
    Err(crate::DriverError::new(crate::ErrorKind::Statement, format!("{} {exit}: {}", tool.display(), said.trim())))
}

/// Feeds a backup to a started tool's standard input (restoring it),
/// reading its standard error meanwhile, then waits for it.
pub async fn feed_tool(
    tool: &std::path::Path,
    child: &mut tokio::process::Child,
    input: BackupReader<'_>,
) -> crate::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let feed = async {
        let fed = tokio::io::copy(input, &mut stdin).await;
        drop(stdin);
        fed
    };
    let mut said = String::new();
    let (fed, _) = tokio::join!(feed, stderr.read_to_string(&mut said));
    tool_finished(tool, child, &said).await?;
    fed.map_err(|e| crate::DriverError::new(crate::ErrorKind::Connection, format!("reading the backup: {e}")))?;
    Ok(())
}
