//! Where backups go, and what says one is whole. A directory store writes
//! `<id>.partial`, syncs it, renames it `<id>.backup.zst`, then writes the
//! manifest `<id>.json` the same way: a process killed at any instant
//! leaves a `.partial` file or a data file without a manifest, and only a
//! manifest makes a backup. A command store pipes the data to the command,
//! then the manifest to it again, each with `AIRLOCK_BACKUP_ID` and
//! `AIRLOCK_BACKUP_FILE` (the name it would have in a directory) set; a
//! command that exits with an error fails the backup.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BackupMode, BackupStore};

/// A backup's account of itself, beside its data and in history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// Its id: when it was taken, and a random part.
    pub id: String,
    /// The environment (`--env`), if any.
    pub environment: Option<String>,
    /// The database (password hidden).
    pub database: String,
    /// `tables` or `database`.
    pub mode: BackupMode,
    /// The tables saved, each with its rows and content digest.
    pub tables: Vec<ManifestTable>,
    /// The format of the data before compression (`sqlite-file`, `pg_dump-custom`).
    pub format: String,
    /// What wrote it.
    pub tool: String,
    /// The server's version.
    pub server_version: String,
    /// What the catalog said the saved tables (with their indexes) or the
    /// database held before: what a later backup's estimate is reckoned from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_bytes: Option<u64>,
    /// Bytes before compression.
    pub raw_bytes: u64,
    /// Bytes stored (zstd).
    pub stored_bytes: u64,
    /// SHA-256 of the stored bytes.
    pub sha256: String,
    /// Taking and verifying it, in milliseconds.
    pub duration_ms: u64,
    /// Of that, saving it, in milliseconds: the engine's tool writing it
    /// with the digests read beside it, compressed and stored, before it
    /// is verified (what compares with the tool run alone). For a command
    /// store the verifying restore runs beside, and is in it.
    #[serde(default)]
    pub dump_ms: u64,
    /// When (UTC).
    pub taken_at: String,
    /// Who, `user@host`.
    pub taken_by: String,
    /// Where its data is: a path for a directory store, the name given to a command.
    pub file: String,
}

/// A saved table in a manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManifestTable {
    /// As output shows it (`schema.name` where the engine has schemas).
    pub table: String,
    /// Its schema, where the engine has them.
    pub schema: Option<String>,
    /// Its name.
    pub name: String,
    /// Rows saved.
    pub rows: u64,
    /// Digest of its rows' content.
    pub digest: String,
}

impl ManifestTable {
    /// Its name, to find it in a database.
    pub(crate) fn name(&self) -> airlock_core::schema::TableName {
        airlock_core::schema::TableName { schema: self.schema.clone(), name: self.name.clone() }
    }

    /// What a driver said of the table.
    pub(crate) fn of(digest: &airlock_driver::backup::TableDigest) -> ManifestTable {
        ManifestTable {
            table: match &digest.schema {
                Some(schema) => format!("{schema}.{}", digest.table),
                None => digest.table.clone(),
            },
            schema: digest.schema.clone(),
            name: digest.table.clone(),
            rows: digest.rows,
            digest: digest.digest.clone(),
        }
    }

    /// As a driver says it, to compare.
    pub(crate) fn digest(&self) -> airlock_driver::backup::TableDigest {
        airlock_driver::backup::TableDigest {
            schema: self.schema.clone(),
            table: self.name.clone(),
            rows: self.rows,
            digest: self.digest.clone(),
        }
    }
}

/// The name of a backup's data in a store.
pub(crate) fn data_name(id: &str) -> String {
    format!("{id}.backup.zst")
}

/// The open end of a store, taking one backup's bytes.
pub(crate) enum Sink {
    /// `<dir>/<id>.partial`, open.
    File { dir: PathBuf, id: String, partial: PathBuf, file: tokio::fs::File },
    /// The command, its standard input open.
    Command { command: String, id: String, child: tokio::process::Child, stdin: Option<tokio::process::ChildStdin> },
}

impl Sink {
    /// Opens the store for backup `id`: the directory made if missing, or the command started.
    pub(crate) async fn open(store: &BackupStore, id: &str) -> Result<Sink, String> {
        match store {
            BackupStore::Directory(dir) => {
                tokio::fs::create_dir_all(dir).await.map_err(|e| format!("{}: {e}", dir.display()))?;
                let partial = dir.join(format!("{id}.partial"));
                let file =
                    tokio::fs::File::create(&partial).await.map_err(|e| format!("{}: {e}", partial.display()))?;
                Ok(Sink::File { dir: dir.clone(), id: id.to_owned(), partial, file })
            }
            BackupStore::Command(command) => {
                let (child, stdin) = spawn(command, id, &data_name(id))?;
                Ok(Sink::Command { command: command.clone(), id: id.to_owned(), child, stdin: Some(stdin) })
            }
        }
    }

    /// Writes the next bytes.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::File { file, .. } => file.write_all(bytes).await,
            Sink::Command { stdin, .. } => match stdin {
                Some(stdin) => stdin.write_all(bytes).await,
                None => Err(std::io::Error::other("the command's input is closed")),
            },
        }
    }

    /// Writes out what is buffered.
    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File { file, .. } => file.flush().await,
            Sink::Command { stdin: Some(stdin), .. } => stdin.flush().await,
            Sink::Command { stdin: None, .. } => Ok(()),
        }
    }

    /// Where what was written can be read back before it is committed (a
    /// directory store's partial file); None for a command.
    pub(crate) fn read_back(&self) -> Option<&Path> {
        match self {
            Sink::File { partial, .. } => Some(partial),
            Sink::Command { .. } => None,
        }
    }

    /// Makes the data whole and stores the manifest beside it; returns the
    /// manifest with where its data is.
    pub(crate) async fn commit(self, mut manifest: Manifest) -> Result<Manifest, String> {
        match self {
            Sink::File { dir, id, partial, mut file } => {
                let named = |e: std::io::Error, path: &Path| format!("{}: {e}", path.display());
                file.flush().await.map_err(|e| named(e, &partial))?;
                file.sync_all().await.map_err(|e| named(e, &partial))?;
                drop(file);
                let data = dir.join(data_name(&id));
                tokio::fs::rename(&partial, &data).await.map_err(|e| named(e, &data))?;
                manifest.file = data.display().to_string();
                let text = serde_json::to_string_pretty(&manifest).unwrap_or_default() + "\n";
                let written = dir.join(format!("{id}.json.partial"));
                let mut out = tokio::fs::File::create(&written).await.map_err(|e| named(e, &written))?;
                out.write_all(text.as_bytes()).await.map_err(|e| named(e, &written))?;
                out.sync_all().await.map_err(|e| named(e, &written))?;
                drop(out);
                let path = dir.join(format!("{id}.json"));
                tokio::fs::rename(&written, &path).await.map_err(|e| named(e, &path))?;
                // The renames themselves last only once the directory is synced.
                if let Ok(dir) = std::fs::File::open(&dir) {
                    let _ = dir.sync_all();
                }
                Ok(manifest)
            }
            Sink::Command { command, id, mut child, mut stdin } => {
                finish(&command, &mut child, stdin.take()).await?;
                manifest.file = data_name(&id);
                let text = serde_json::to_string_pretty(&manifest).unwrap_or_default() + "\n";
                let (mut child, mut stdin) = spawn(&command, &id, &format!("{id}.json"))?;
                let wrote = stdin.write_all(text.as_bytes()).await;
                finish(&command, &mut child, Some(stdin)).await?;
                wrote.map_err(|e| format!("`{command}`: writing the manifest: {e}"))?;
                Ok(manifest)
            }
        }
    }

    /// Why writing failed, as the store says it (a command's exit and what
    /// it printed, rather than the broken pipe it left), what was written dropped.
    pub(crate) async fn failure(self, e: std::io::Error) -> String {
        match self {
            Sink::File { partial, file, .. } => {
                drop(file);
                let _ = tokio::fs::remove_file(&partial).await;
                format!("{}: {e}", partial.display())
            }
            Sink::Command { command, mut child, stdin, .. } => match finish(&command, &mut child, stdin).await {
                Err(said) => said,
                Ok(()) => format!("`{command}`: {e}"),
            },
        }
    }

    /// Drops what was written: the partial file removed, the command stopped.
    pub(crate) async fn abandon(self) {
        match self {
            Sink::File { partial, file, .. } => {
                drop(file);
                let _ = tokio::fs::remove_file(&partial).await;
            }
            Sink::Command { mut child, stdin, .. } => {
                // Killed before its input closes: a command that saw the
                // end of its input could store what was not verified. The
                // whole group, so a pipeline's commands stop too.
                if let Some(pid) = child.id() {
                    let _ = tokio::process::Command::new("kill")
                        .args(["-KILL", "--", &format!("-{pid}")])
                        .stderr(Stdio::null())
                        .status()
                        .await;
                }
                let _ = child.kill().await;
                drop(stdin);
            }
        }
    }
}

/// Starts `command` through the shell for the file `name` of backup `id`.
fn spawn(command: &str, id: &str, name: &str) -> Result<(tokio::process::Child, tokio::process::ChildStdin), String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("AIRLOCK_BACKUP_ID", id)
        .env("AIRLOCK_BACKUP_FILE", name)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // A group of its own: abandoning a backup stops every command of it.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("`{command}` cannot be started: {e}"))?;
    let stdin = child.stdin.take().ok_or_else(|| format!("`{command}`: no standard input"))?;
    Ok((child, stdin))
}

/// Closes the command's input and waits for it: an exit with an error is
/// the store's failure, said with the end of what it printed.
async fn finish(
    command: &str,
    child: &mut tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
) -> Result<(), String> {
    if let Some(mut stdin) = stdin {
        let _ = stdin.shutdown().await;
    }
    let mut said = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut said).await;
    }
    let status = child.wait().await.map_err(|e| format!("`{command}`: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let said = said.trim();
    let tail: String = said.chars().rev().take(400).collect::<Vec<_>>().into_iter().rev().collect();
    Err(format!(
        "`{command}` exited with {}{}",
        status.code().map_or("a signal".to_owned(), |c| format!("status {c}")),
        if tail.is_empty() { String::new() } else { format!(": {tail}") }
    ))
}
