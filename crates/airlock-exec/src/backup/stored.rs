//! Backups already taken: `backup list` (history's `backup` events, each
//! with whether its data is still in a directory store) and `backup verify
//! ID` (the stored bytes checked against the manifest's size and SHA-256,
//! then restored into a scratch database and each table's rows and digest
//! compared with the manifest's). Both only read the database.

use airlock_core::schema::TableName;
use serde::Serialize;

use airlock_driver::backup::TableDigest;

use super::store::{Manifest, ManifestTable};
use super::{BackupStore, human_bytes};
use crate::error::ExecError;
use crate::{Context, Options};

/// A backup as `backup list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ListedBackup {
    /// Its manifest, as history keeps it.
    #[serde(flatten)]
    pub manifest: Manifest,
    /// Its data is where the manifest says (a directory store); None when
    /// a command stored it and airlock cannot look.
    pub present: Option<bool>,
}

/// `backup list`.
#[derive(Clone, Debug, Serialize)]
pub struct BackupList {
    /// The database (password hidden).
    pub database: String,
    /// Newest first.
    pub backups: Vec<ListedBackup>,
}

/// Every backup history records for this database, newest first.
pub async fn backup_list(options: &Options) -> Result<BackupList, ExecError> {
    let ctx = Context::new(options);
    let manifests = recorded(&ctx).await?;
    let backups = manifests
        .into_iter()
        .map(|manifest| {
            let present = match &options.backup.store {
                BackupStore::Directory(_) => Some(
                    std::fs::metadata(&manifest.file).is_ok_and(|m| m.is_file() && m.len() == manifest.stored_bytes),
                ),
                BackupStore::Command(_) => None,
            };
            ListedBackup { manifest, present }
        })
        .collect();
    Ok(BackupList { database: options.url.to_string(), backups })
}

/// The manifests of history's `backup` events, newest first.
async fn recorded(ctx: &Context) -> Result<Vec<Manifest>, ExecError> {
    if crate::database_file_missing(&ctx.options) {
        return Ok(Vec::new());
    }
    let mut driver = crate::connect_read_only(&ctx.options.url).await.map_err(ExecError::Connect)?;
    let snap = crate::snapshot(driver.as_mut(), ctx).await?;
    let rows = match crate::audit::read_events(driver.as_mut(), "WHERE kind = 'backup'", 1000).await {
        Ok(rows) => rows,
        // No airlock tables yet: nothing was ever recorded here.
        Err(_) if snap.history.is_empty() => return Ok(Vec::new()),
        Err(e) => return Err(ExecError::db("reading airlock_events")(e)),
    };
    Ok(rows.into_iter().filter_map(|r| serde_json::from_value(r.detail).ok()).collect())
}

/// What `backup verify` found.
#[derive(Clone, Debug, Serialize)]
pub struct Verified {
    /// The backup.
    pub id: String,
    /// The file read.
    pub file: String,
    /// Each table restored and compared: `table` with its rows.
    pub tables: Vec<(String, u64)>,
    /// Reading, restoring and comparing, in milliseconds.
    pub duration_ms: u64,
}

/// Reads backup `id` (from `file`, else where its manifest says), checks
/// its size and checksum, restores it into a scratch database and compares
/// each table's rows and digest with the manifest's. A backup that fails
/// any of it is `BackupInvalid` (exit 3), saying what.
pub async fn backup_verify(options: &Options, id: &str, file: Option<&str>) -> Result<Verified, ExecError> {
    let started = std::time::Instant::now();
    let ctx = Context::new(options);
    let manifests = recorded(&ctx).await?;
    let manifest = manifests.into_iter().find(|m| m.id == id).ok_or_else(|| {
        ExecError::Usage(format!("no backup `{id}` in this database's history (`airlock backup list` shows them)"))
    })?;
    let path = file.map(str::to_owned).unwrap_or_else(|| manifest.file.clone());
    let invalid = |why: String| ExecError::BackupInvalid(format!("backup {id} ({path}): {why}"));
    let bytes_read = std::fs::metadata(&path).map_err(|e| invalid(format!("cannot be read: {e}")))?.len();
    if bytes_read != manifest.stored_bytes {
        return Err(invalid(format!("{bytes_read} bytes, the manifest says {}", manifest.stored_bytes)));
    }
    let sha256 = sha256_of(&path).await.map_err(|e| invalid(format!("cannot be read: {e}")))?;
    if sha256 != manifest.sha256 {
        return Err(invalid(format!(
            "its SHA-256 is {sha256}, the manifest says {}: the file was changed or damaged",
            manifest.sha256
        )));
    }
    let scratch = crate::drift::Scratch::create(options).await?;
    let outcome = async {
        let mut restored = scratch.connect().await?;
        let file = tokio::fs::File::open(&path).await.map_err(|e| invalid(format!("cannot be read: {e}")))?;
        let mut decoder = async_compression::tokio::bufread::ZstdDecoder::new(tokio::io::BufReader::new(file));
        restored.restore(&mut decoder).await.map_err(|e| invalid(format!("it did not restore: {e}")))?;
        let saved: Vec<TableDigest> = manifest.tables.iter().map(ManifestTable::digest).collect();
        let names: Vec<TableName> =
            saved.iter().map(|t| TableName { schema: t.schema.clone(), name: t.table.clone() }).collect();
        let digests = restored.digests(&names).await.map_err(|e| invalid(format!("reading the restored copy: {e}")))?;
        super::take::compare_rows(&saved, &digests).map_err(invalid)
    }
    .await;
    let dropped = scratch.finish().await;
    outcome?;
    dropped?;
    Ok(Verified {
        id: manifest.id,
        file: format!("{path} ({})", human_bytes(bytes_read)),
        tables: manifest.tables.iter().map(|t| (t.table.clone(), t.rows)).collect(),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// SHA-256 of a file, read in chunks.
async fn sha256_of(path: &str) -> std::io::Result<String> {
    use sha2::Digest;
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await?;
    let mut hash = sha2::Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            return Ok(format!("{:x}", hash.finalize()));
        }
        hash.update(&buffer[..n]);
    }
}
