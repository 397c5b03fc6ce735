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
