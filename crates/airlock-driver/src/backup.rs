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

/// The digest of rows given as lines of text (a PostgreSQL `COPY ... TO
/// STDOUT` in text format, one row a line), whatever their order: the sum,
/// modulo 2^128, of each line's XXH3-128. XXH3 is specified and stable, so
/// a digest read today compares with one read by another airlock later;
/// the sum keeps rows that appear twice apart from rows that appear once.
#[derive(Debug, Default)]
pub struct RowsDigest {
    rows: u64,
    sum: u128,
    /// A row split across two chunks: its start.
    pending: Vec<u8>,
    /// COPY's end-of-data line (`\.`, which no row can be: a backslash in a
    /// value is written doubled) was seen: nothing after it is a row.
    ended: bool,
}

/// How a [`RowsDigest`] is written: the hash, then the sum in hexadecimal.
pub const ROWS_DIGEST_KIND: &str = "xxh3-128";

impl RowsDigest {
    /// Takes the next bytes of the rows' text, cut anywhere.
    pub fn update(&mut self, mut chunk: &[u8]) {
        if !self.pending.is_empty() {
            let Some(end) = memchr::memchr(b'\n', chunk) else {
                self.pending.extend_from_slice(chunk);
                return;
            };
            self.pending.extend_from_slice(&chunk[..end]);
            let row = std::mem::take(&mut self.pending);
            self.add(&row);
            chunk = &chunk[end + 1..];
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', chunk) {
            self.add(&chunk[start..end]);
            start = end + 1;
        }
        self.pending.extend_from_slice(&chunk[start..]);
    }

    fn add(&mut self, row: &[u8]) {
        if self.ended || row == b"\\." {
            self.ended = true;
            return;
        }
        self.rows += 1;
        self.sum = self.sum.wrapping_add(twox_hash::XxHash3_128::oneshot(row));
    }

    /// Adds the rows another digest saw: the digest of both sets of rows.
    pub fn merge(&mut self, mut other: RowsDigest) {
        if !other.pending.is_empty() {
            let row = std::mem::take(&mut other.pending);
            other.add(&row);
        }
        self.rows += other.rows;
        self.sum = self.sum.wrapping_add(other.sum);
    }

    /// The rows seen and their digest (`xxh3-128:` and 32 hex digits); a
    /// last row without its line end counts.
    pub fn finish(mut self) -> (u64, String) {
        if !self.pending.is_empty() {
            let row = std::mem::take(&mut self.pending);
            self.add(&row);
        }
        (self.rows, format!("{ROWS_DIGEST_KIND}:{:032x}", self.sum))
    }
}

/// The kind of a digest as written (`xxh3-128` for `xxh3-128:…`), or
/// `None` for the plain numbers digests were written as before kinds.
pub fn digest_kind(digest: &str) -> Option<&str> {
    digest.split_once(':').map(|(kind, _)| kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(chunks: &[&[u8]]) -> (u64, String) {
        let mut d = RowsDigest::default();
        for chunk in chunks {
            d.update(chunk);
        }
        d.finish()
    }

    #[test]
    fn rows_digest_the_same_in_any_order_and_however_cut() {
        let whole = digest(&[b"1\tapple\n2\tpear\n3\t\\N\n"]);
        assert_eq!(whole.0, 3);
        assert!(whole.1.starts_with("xxh3-128:") && whole.1.len() == 9 + 32, "{}", whole.1);
        assert_eq!(digest(&[b"3\t\\N\n1\tapple\n", b"2\tpear\n"]), whole);
        assert_eq!(digest(&[b"1\tap", b"", b"ple\n2", b"\tpear\n3\t\\N", b"\n"]), whole);
        assert_eq!(digest(&[b"1\tapple\n2\tpear\n3\t\\N"]), whole, "a last row without its line end");
        assert_eq!(
            digest(&[b"1\tapple\n2\tpear\n3\t\\N\n\\.\n\n\n"]),
            whole,
            "COPY's end of data, and what follows it"
        );
        assert_ne!(digest(&[b"1\tapple\n2\tpear\n3\t\\N\n\\\\.\n"]), whole, "a value that is a backslash and a dot");
        let (mut first, mut second) = (RowsDigest::default(), RowsDigest::default());
        first.update(b"2\tpear\n");
        second.update(b"3\t\\N\n1\tapple");
        first.merge(second);
        assert_eq!(first.finish(), whole, "two halves merged");
    }

    #[test]
    fn rows_digest_tells_other_rows_and_a_row_twice() {
        let base = digest(&[b"1\tapple\n2\tpear\n"]);
        assert_ne!(digest(&[b"1\tapple\n2\tpeas\n"]), base);
        assert_ne!(digest(&[b"1\tapple\n2\tpear\n2\tpear\n2\tpear\n"]).1, base.1, "three times is not once");
        let empty = digest(&[]);
        assert_eq!(empty, (0, format!("xxh3-128:{:032x}", 0)));
        assert_eq!(digest_kind(&base.1), Some("xxh3-128"));
        assert_eq!(digest_kind("1234567"), None);
    }
}
