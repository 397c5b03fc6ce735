//! Taking a backup: the driver's stream is compressed (zstd) and
//! checksummed (SHA-256 of the stored bytes) on its way to the store, at
//! the pace of the engine's tool. It is then verified: restored into a
//! scratch database, where each saved table's rows and digest, and its
//! schema, are compared with what the source said in the backup's own
//! snapshot. A directory store's file is restored once it is written (read
//! back once, its SHA-256 checked on the way); what a command stores
//! cannot be read back, so it is restored as it is sent, the same bytes
//! decompressed beside. Nothing is held whole in memory: a few buffers
//! whatever the database's size. Only a verified backup gets a manifest; a
//! store left with a partial file says so by its name (`.partial`).

use std::time::Instant;

use airlock_core::Event;
use airlock_core::schema::TableName;
use airlock_core::snapshot::{ObjectKind, SchemaSnapshot, Scope};
use airlock_driver::Driver;
use airlock_driver::backup::{Saved, TableDigest, digest_kind};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::store::{Manifest, ManifestTable, Sink};
use super::stored::{compare_restored, restore_file};
use super::{BackupMode, BackupPlan};
use crate::Context;
use crate::error::ExecError;

/// Bytes read from the driver at a time, and buffered between the steps.
const CHUNK: usize = 256 * 1024;

/// zstd's level: fast, and most of what higher levels give on table data.
const LEVEL: i32 = 3;

/// Takes the backup `plan` describes (its tables, or the whole database in
/// `database` mode) through `driver`, verifies it, stores it with its
/// manifest and records it in history. Any failure is an error that leaves
/// no manifest behind.
pub(crate) async fn take(
    ctx: &Context,
    driver: &mut dyn Driver,
    plan: &BackupPlan,
    read: &crate::report::Tally,
) -> Result<Manifest, ExecError> {
    let options = &ctx.options;
    let started = Instant::now();
    let id = format!("{}-{:08x}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), rand::random::<u32>());
    let failed = |why: String| ExecError::BackupFailed(format!("backup {id}: {why}"));
    if !driver.session_settings_hold() {
        return Err(ExecError::BackupFailed(
            "a backup cannot be taken through a transaction pooler (`pgbouncer=true`): the dump tool sets session settings (search_path, timeouts) that would reach the pool's other clients; migrate over a direct connection, or run with --no-backup (and --reason in a protected environment); nothing was changed".to_owned(),
        ));
    }
    let whole = plan.mode == BackupMode::Database;
    let names: Vec<TableName> = plan.tables.iter().map(|t| t.name.clone()).collect();
    let tables: Option<&[TableName]> = if whole { None } else { Some(&names) };
    // The schema of what is saved, to compare with the restored copy's.
    let scope = (!whole).then(|| Scope {
        relations: names.iter().map(|n| n.name.clone()).collect(),
        parts: ObjectKind::OF_RELATIONS.iter().copied().collect(),
        others: Default::default(),
    });
    let before = read_within(driver, &scope).await.map_err(ExecError::db("reading the schema to back up"))?;

    let unverifiable =
        |e: ExecError| failed(format!("it cannot be verified without a database to restore it into: {e}"));
    // Made first: a server that will not make one refuses before the dump.
    let scratch = crate::drift::Scratch::create(options).await.map_err(unverifiable)?;
    let interrupted = || ExecError::Interrupted {
        signal: options.interrupt.raised().unwrap_or(crate::SIGINT),
        state: "it stopped while taking the backup before migrating: nothing was changed, and no backup was kept"
            .to_owned(),
        applied: Vec::new(),
    };
    let outcome = async {
        let mut restored = scratch.connect().await.map_err(unverifiable)?;
        let mut sink = Sink::open(&options.backup.store, &id).await.map_err(&failed)?;
        // Where the stored file can be read back to verify it; a command
        // store cannot be, and is restored as it is sent instead.
        let read_back = sink.read_back().map(|p| p.display().to_string());
        // A signal stops the backup where it is: the tools are killed, the
        // part written removed, the scratch database dropped below.
        let saving = Instant::now();
        let streamed = tokio::select! {
            streamed = stream(driver, tables, read_back.is_none().then_some(restored.as_mut()), &mut sink, read) => Some(streamed),
            () = options.interrupt.wait() => None,
        };
        let dump_ms = saving.elapsed().as_millis() as u64;
        let Some((saved, pumped, restore)) = streamed else {
            // The dump's transaction, left open when it was cut off.
            let _ = driver.rollback().await;
            sink.abandon().await;
            return Err(interrupted());
        };
        let (raw_bytes, stored_bytes, sha256) = match pumped {
            Ok(pumped) => pumped,
            Err(e) => return Err(failed(format!("the store failed: {}", sink.failure(e).await))),
        };
        let checked = async {
            let saved = saved.map_err(|e| failed(format!("the backup failed: {e}")))?;
            match (restore, &read_back) {
                (Some(restore), _) => restore.map_err(|e| failed(format!("it did not restore: {e}")))?,
                (None, Some(path)) => {
                    let not_restored = |why: String| failed(format!("{path}: {why}"));
                    restore_file(restored.as_mut(), path, &sha256, &not_restored).await?;
                }
                (None, None) => unreachable!("a store that cannot be read back is restored beside"),
            }
            compare_restored(restored.as_mut(), &saved.tables, &failed).await?;
            let after = read_within(restored.as_mut(), &scope)
                .await
                .map_err(|e| failed(format!("reading the restored schema: {e}")))?;
            compare_schema(&before, &after).map_err(&failed)?;
            Ok::<Saved, ExecError>(saved)
        };
        let checked = tokio::select! {
            checked = checked => checked,
            () = options.interrupt.wait() => Err(interrupted()),
        };
        let saved = match checked {
            Ok(saved) => saved,
            Err(e) => {
                sink.abandon().await;
                return Err(e);
            }
        };
        let manifest = Manifest {
            id: id.clone(),
            environment: options.environment.clone(),
            database: options.url.to_string(),
            mode: plan.mode,
            tables: saved.tables.iter().map(ManifestTable::of).collect(),
            format: saved.format,
            tool: saved.tool,
            server_version: saved.server_version,
            catalog_bytes: plan.estimated_bytes,
            raw_bytes,
            stored_bytes,
            sha256,
            duration_ms: started.elapsed().as_millis() as u64,
            dump_ms,
            taken_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            taken_by: format!("{}@{}", ctx.actor.os_user, ctx.actor.host),
            file: String::new(),
        };
        let manifest = sink.commit(manifest).await.map_err(|e| failed(format!("the store failed: {e}")))?;
        Ok(manifest)
    }
    .await;
    let dropped = scratch.finish().await;
    let manifest = outcome?;
    dropped?;
    let event =
        Event { kind: "backup".into(), version: None, detail: serde_json::to_string(&manifest).unwrap_or_default() };
    driver.append_event(&event, &ctx.actor).await.map_err(ExecError::db("recording the backup in history"))?;
    Ok(manifest)
}

/// What the three steps gave: the driver's account, the store's (raw and
/// stored bytes, the stored bytes' SHA-256), and the restore's when one
/// ran beside.
type Streamed =
    (airlock_driver::Result<Saved>, std::io::Result<(u64, u64, String)>, Option<airlock_driver::Result<()>>);

/// Runs the backup and the compression into the store at once, joined by
/// a bounded pipe, and the restore into `target` beside them when there
/// is one. A step that stops closes its pipe, so the others stop too
/// instead of waiting.
async fn stream(
    source: &mut dyn Driver,
    tables: Option<&[TableName]>,
    target: Option<&mut dyn Driver>,
    sink: &mut Sink,
    read: &crate::report::Tally,
) -> Streamed {
    let (mut raw_tx, mut raw_rx) = tokio::io::duplex(CHUNK);
    let (zst_tx, zst_rx) = tokio::io::duplex(CHUNK);
    let mut zst_tx = target.is_some().then_some(zst_tx);
    let produce = async move {
        let saved = source.backup(tables, &mut raw_tx).await;
        let _ = raw_tx.shutdown().await;
        saved
    };
    let pump = async move {
        let pumped = async {
            let mut encoder = new_encoder()?;
            let mut hash = Sha256::new();
            let (mut raw, mut stored) = (0u64, 0u64);
            let mut buffer = vec![0u8; CHUNK];
            loop {
                let n = raw_rx.read(&mut buffer).await?;
                let out = if n == 0 {
                    std::mem::replace(&mut encoder, new_encoder()?).finish()?
                } else {
                    raw += n as u64;
                    read.add(n as u64);
                    std::io::Write::write_all(&mut encoder, &buffer[..n])?;
                    std::mem::take(encoder.get_mut())
                };
                if !out.is_empty() {
                    hash.update(&out);
                    stored += out.len() as u64;
                    sink.write(&out).await?;
                    // Verification beside is best effort here: its own error is the one told.
                    if let Some(tx) = &mut zst_tx
                        && tx.write_all(&out).await.is_err()
                    {
                        zst_tx = None;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            sink.flush().await?;
            if let Some(mut tx) = zst_tx.take() {
                let _ = tx.shutdown().await;
            }
            Ok::<_, std::io::Error>((raw, stored, format!("{:x}", hash.finalize())))
        }
        .await;
        drop(raw_rx);
        drop(zst_tx);
        pumped
    };
    let restore = async move {
        let target = target?;
        let mut decoder = async_compression::tokio::bufread::ZstdDecoder::new(tokio::io::BufReader::new(zst_rx));
        Some(target.restore(&mut decoder).await)
    };
    tokio::join!(produce, pump, restore)
}

/// A zstd encoder that compresses on a worker thread of its own, as a
/// `pg_dump | zstd` pipeline does in a process of its own: the thread that
/// reads the dump, hashes and stores it is then never the one compressing.
fn new_encoder() -> std::io::Result<zstd::stream::write::Encoder<'static, Vec<u8>>> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), LEVEL)?;
    encoder.multithread(1)?;
    Ok(encoder)
}

/// The schema's objects a scope holds (all without one): read by scope
/// where the engine can, else read whole and filtered.
async fn read_within(driver: &mut dyn Driver, scope: &Option<Scope>) -> airlock_driver::Result<SchemaSnapshot> {
    let Some(scope) = scope else { return driver.schema_snapshot().await };
    let snapshot = match driver.schema_snapshot_of(scope).await? {
        Some(part) => part,
        None => driver.schema_snapshot().await?,
    };
    Ok(SchemaSnapshot { objects: snapshot.objects.into_iter().filter(|(path, _)| scope.holds(path)).collect() })
}

/// Each saved table's rows and digest against the restored copy's.
pub(super) fn compare_rows(saved: &[TableDigest], restored: &[TableDigest]) -> Result<(), String> {
    for s in saved {
        match restored.iter().find(|r| r.table == s.table && r.schema == s.schema) {
            None => return Err(format!("table `{}` is missing from the restored copy", s.table)),
            Some(r) if r.rows != s.rows => {
                return Err(format!("table `{}` has {} rows restored, {} saved", s.table, r.rows, s.rows));
            }
            Some(r) if digest_kind(&r.digest) != digest_kind(&s.digest) => {
                return Err(format!(
                    "table `{}` was saved with another kind of digest ({}) than this airlock reads ({}): \
                     its {} rows are there, but their content cannot be compared; take a new backup",
                    s.table,
                    digest_kind(&s.digest).unwrap_or("an earlier one"),
                    digest_kind(&r.digest).unwrap_or("an earlier one"),
                    s.rows
                ));
            }
            Some(r) if r.digest != s.digest => {
                return Err(format!(
                    "table `{}` restored with other content than was saved (the same {} rows, another digest)",
                    s.table, s.rows
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The schema of what was saved against the restored copy's.
fn compare_schema(before: &SchemaSnapshot, after: &SchemaSnapshot) -> Result<(), String> {
    let differences = airlock_core::snapshot::diff(before, after);
    if differences.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = differences.iter().take(5).map(|d| d.object.to_string()).collect();
    Err(format!("the restored schema differs from the saved one: {}", shown.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(table: &str, rows: u64, digest: &str) -> TableDigest {
        TableDigest { schema: None, table: table.to_owned(), rows, digest: digest.to_owned() }
    }

    #[test]
    fn a_restored_table_that_differs_is_named_with_how() {
        let saved = [digest("carts", 3, "a1"), digest("users", 2, "b2")];
        assert_eq!(compare_rows(&saved, &[digest("users", 2, "b2"), digest("carts", 3, "a1")]), Ok(()));
        assert_eq!(
            compare_rows(&saved, &[digest("carts", 3, "a1")]),
            Err("table `users` is missing from the restored copy".to_owned())
        );
        assert_eq!(
            compare_rows(&saved, &[digest("carts", 2, "a1"), digest("users", 2, "b2")]),
            Err("table `carts` has 2 rows restored, 3 saved".to_owned())
        );
        assert_eq!(
            compare_rows(&[digest("carts", 3, "12345")], &[digest("carts", 3, "xxh3-128:00ff")]),
            Err("table `carts` was saved with another kind of digest (an earlier one) than this airlock reads \
                 (xxh3-128): its 3 rows are there, but their content cannot be compared; take a new backup"
                .to_owned())
        );
        assert_eq!(
            compare_rows(&saved, &[digest("carts", 3, "ff"), digest("users", 2, "b2")]),
            Err("table `carts` restored with other content than was saved (the same 3 rows, another digest)".to_owned())
        );
    }
}
