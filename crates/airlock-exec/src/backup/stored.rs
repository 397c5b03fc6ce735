//! Backups already taken: `backup list` (history's `backup` events, each
//! with whether its data is still in a directory store) and `backup verify
//! ID` (the stored bytes checked against the manifest's size, then
//! restored into a scratch database, their SHA-256 taken on the way, and
//! each table's rows and digest compared with the manifest's). Both only
//! read the database.

use airlock_core::schema::TableName;
use serde::Serialize;
use sha2::Digest;

use airlock_driver::backup::TableDigest;

use super::BackupStore;
use super::store::{Manifest, ManifestTable};
use crate::error::ExecError;
use crate::human::human_bytes;
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
    /// Why retention deleted it, if it did.
    pub deleted: Option<String>,
}

/// `backup list`.
#[derive(Clone, Debug, Serialize)]
pub struct BackupList {
    /// The database (password hidden).
    pub database: String,
    /// Newest first.
    pub backups: Vec<ListedBackup>,
    /// Files of a directory store that no backup owns: parts left by
    /// backups that were killed or failed (`.partial`), safe to delete.
    pub leftovers: Vec<String>,
}

/// Every backup history records for this database, newest first.
pub async fn backup_list(options: &Options) -> Result<BackupList, ExecError> {
    let ctx = Context::new(options);
    let manifests = recorded(&ctx).await?;
    let backups = listed(options, manifests);
    let leftovers = match &options.backup.store {
        BackupStore::Directory(dir) => leftovers(dir),
        BackupStore::Command(_) => Vec::new(),
    };
    Ok(BackupList { database: options.url.to_string(), backups, leftovers })
}

/// Manifests as listed: whether each one's file is where it says.
fn listed(options: &Options, manifests: Vec<(Manifest, Option<String>)>) -> Vec<ListedBackup> {
    manifests
        .into_iter()
        .map(|(manifest, deleted)| {
            let present = match &options.backup.store {
                BackupStore::Directory(_) => Some(
                    std::fs::metadata(&manifest.file).is_ok_and(|m| m.is_file() && m.len() == manifest.stored_bytes),
                ),
                BackupStore::Command(_) => None,
            };
            ListedBackup { manifest, present, deleted }
        })
        .collect()
}

/// The newest `limit` backups history records, over a connection in a
/// read-only transaction (the page's).
pub(crate) async fn recent(
    driver: &mut dyn airlock_driver::Driver,
    options: &Options,
    limit: usize,
) -> Result<Vec<ListedBackup>, airlock_driver::DriverError> {
    let mut manifests = from_history(driver).await?;
    manifests.truncate(limit);
    Ok(listed(options, manifests))
}

/// The parts in a store's directory, by path.
fn leftovers(dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .map(|e| e.path().display().to_string())
        .collect();
    found.sort();
    found
}

/// The manifests of history's `backup` events, newest first, each with why
/// retention deleted it if it did.
async fn recorded(ctx: &Context) -> Result<Vec<(Manifest, Option<String>)>, ExecError> {
    if crate::database_file_missing(&ctx.options) {
        return Ok(Vec::new());
    }
    let mut driver = crate::connect_read_only(&ctx.options.url).await.map_err(ExecError::Connect)?;
    let snap = crate::snapshot(driver.as_mut(), ctx).await?;
    match from_history(driver.as_mut()).await {
        Ok(backups) => Ok(backups),
        // No airlock tables yet: nothing was ever recorded here.
        Err(_) if snap.history.is_empty() => Ok(Vec::new()),
        Err(e) => Err(ExecError::db("reading airlock_events")(e)),
    }
}

/// History's backups, newest first, each with why retention deleted it if it did.
async fn from_history(
    driver: &mut dyn airlock_driver::Driver,
) -> Result<Vec<(Manifest, Option<String>)>, airlock_driver::DriverError> {
    let rows = crate::audit::read_events(driver, "WHERE kind IN ('backup', 'backup_deleted')", 100_000).await?;
    let deleted: std::collections::HashMap<&str, &str> = rows
        .iter()
        .filter(|r| r.kind == "backup_deleted")
        .filter_map(|r| Some((r.detail["id"].as_str()?, r.detail["why"].as_str().unwrap_or("deleted"))))
        .collect();
    Ok(rows
        .iter()
        .filter(|r| r.kind == "backup")
        .filter_map(|r| serde_json::from_value::<Manifest>(r.detail.clone()).ok())
        .map(|m| {
            let why = deleted.get(m.id.as_str()).map(|w| (*w).to_owned());
            (m, why)
        })
        .collect())
}

/// The backups history records and retention has not deleted, newest first.
pub(super) async fn kept(
    driver: &mut dyn airlock_driver::Driver,
) -> Result<Vec<Manifest>, airlock_driver::DriverError> {
    Ok(from_history(driver).await?.into_iter().filter(|(_, deleted)| deleted.is_none()).map(|(m, _)| m).collect())
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
    let (manifest, path) = checked(&ctx, id, file).await?;
    let invalid = invalid(id, &path);
    let bytes_read = manifest.stored_bytes;
    let scratch = crate::drift::Scratch::create(options).await?;
    let outcome = async {
        let mut restored = scratch.connect().await?;
        restore_file(restored.as_mut(), &path, &manifest.sha256, &invalid).await?;
        let saved: Vec<TableDigest> = manifest.tables.iter().map(ManifestTable::digest).collect();
        compare_restored(restored.as_mut(), &saved, &invalid).await
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

/// How a backup that cannot be used is told: its id, its file, and why.
pub(super) fn invalid<'a>(id: &'a str, path: &'a str) -> impl Fn(String) -> ExecError + 'a {
    move |why| ExecError::BackupInvalid(format!("backup {id} ({path}): {why}"))
}

/// Backup `id` as history records it, and the path of its data (`file`,
/// else where the manifest says) once its size and SHA-256 are the
/// manifest's. No such backup is a usage error (exit 2); data that is
/// missing or not what was stored is `BackupInvalid` (exit 3).
pub(super) async fn checked(ctx: &Context, id: &str, file: Option<&str>) -> Result<(Manifest, String), ExecError> {
    let manifests = recorded(ctx).await?;
    let (manifest, deleted) = manifests.into_iter().find(|(m, _)| m.id == id).ok_or_else(|| {
        ExecError::Usage(format!("no backup `{id}` in this database's history (`airlock backup list` shows them)"))
    })?;
    let path = file.map(str::to_owned).unwrap_or_else(|| manifest.file.clone());
    check_file(&manifest, &path, deleted.filter(|_| file.is_none())).await?;
    Ok((manifest, path))
}

/// The stored data at `path` checked against `manifest` before anything
/// reads it whole: there, and of the size stored (its SHA-256 is checked as
/// it is restored, see [`restore_file`]); a backup retention `deleted` is
/// not looked for.
async fn check_file(manifest: &Manifest, path: &str, deleted: Option<String>) -> Result<(), ExecError> {
    let invalid = invalid(&manifest.id, path);
    if let Some(why) = deleted {
        return Err(invalid(format!("retention deleted it ({why}); give a copy of its data with --file")));
    }
    let bytes_read = std::fs::metadata(path).map_err(|e| invalid(format!("cannot be read: {e}")))?.len();
    if bytes_read != manifest.stored_bytes {
        return Err(invalid(format!("{bytes_read} bytes, the manifest says {}", manifest.stored_bytes)));
    }
    Ok(())
}

/// Restores the stored (zstd) backup at `path` into `driver`'s empty
/// database, reading the file once: its SHA-256 is taken as it goes, and a
/// file that is not the `sha256` it was stored with is told as such, before
/// any error the restore met on its way.
pub(super) async fn restore_file(
    driver: &mut dyn airlock_driver::Driver,
    path: &str,
    sha256: &str,
    invalid: &impl Fn(String) -> ExecError,
) -> Result<(), ExecError> {
    let file = tokio::fs::File::open(path).await.map_err(|e| invalid(format!("cannot be read: {e}")))?;
    let mut reader = Hashing { file, hash: sha2::Sha256::new() };
    let restored = {
        let mut decoder = async_compression::tokio::bufread::ZstdDecoder::new(tokio::io::BufReader::new(&mut reader));
        driver.restore(&mut decoder).await
    };
    // What a restore that stopped early left unread.
    tokio::io::copy(&mut reader, &mut tokio::io::sink()).await.map_err(|e| invalid(format!("cannot be read: {e}")))?;
    let read = format!("{:x}", reader.hash.finalize());
    if read != sha256 {
        return Err(invalid(format!(
            "its SHA-256 is {read}, not the {sha256} it was stored with: the file was changed or damaged"
        )));
    }
    restored.map_err(|e| invalid(format!("it did not restore: {e}")))
}

/// `saved`'s tables in `driver`'s database (a restored copy): their rows
/// and digests compared with what was saved.
pub(super) async fn compare_restored(
    driver: &mut dyn airlock_driver::Driver,
    saved: &[TableDigest],
    invalid: &impl Fn(String) -> ExecError,
) -> Result<(), ExecError> {
    let names: Vec<TableName> =
        saved.iter().map(|t| TableName { schema: t.schema.clone(), name: t.table.clone() }).collect();
    let found = driver.digests(&names).await.map_err(|e| invalid(format!("reading the restored copy: {e}")))?;
    super::take::compare_rows(saved, &found).map_err(invalid)
}

/// A file read through SHA-256.
struct Hashing {
    file: tokio::fs::File,
    hash: sha2::Sha256,
}

impl tokio::io::AsyncRead for Hashing {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.file).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &polled {
            let read = &buf.filled()[before..];
            self.hash.update(read);
        }
        polled
    }
}
