//! Taking a backup: the driver's stream is compressed (zstd) and
//! checksummed (SHA-256 of the stored bytes) on its way to the store, and
//! at the same time decompressed and restored into a scratch database,
//! where each saved table's rows and digest, and its schema, are compared
//! with what the source said in the backup's own snapshot. Nothing is
//! written in full before it is needed: memory stays at a few buffers
//! whatever the database's size. Only a verified backup gets a manifest;
//! a store left with a partial file says so by its name (`.partial`).

use std::time::Instant;

use airlock_core::Event;
use airlock_core::schema::TableName;
use airlock_core::snapshot::{ObjectKind, SchemaSnapshot, Scope};
use airlock_driver::Driver;
use airlock_driver::backup::{Saved, TableDigest};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::store::{Manifest, ManifestTable, Sink};
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
pub(crate) async fn take(ctx: &Context, driver: &mut dyn Driver, plan: &BackupPlan) -> Result<Manifest, ExecError> {
    let options = &ctx.options;
    let started = Instant::now();
    let id = format!("{}-{:08x}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), rand::random::<u32>());
    let failed = |why: String| ExecError::BackupFailed(format!("backup {id}: {why}"));
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
    let scratch = crate::drift::Scratch::create(options).await.map_err(unverifiable)?;
    let outcome = async {
        let mut restored = scratch.connect().await.map_err(unverifiable)?;
        let sink = Sink::open(&options.backup.store, &id).await.map_err(&failed)?;
        // A signal stops the backup where it is: the tools are killed, the
        // part written removed, the scratch database dropped below.
        let streamed = tokio::select! {
            streamed = stream(driver, tables, restored.as_mut(), sink) => Some(streamed),
            () = options.interrupt.wait() => None,
        };
        let Some(((saved, dump_ms), pumped, restore)) = streamed else {
            // The dump's transaction, left open when it was cut off.
            let _ = driver.rollback().await;
            if let super::BackupStore::Directory(dir) = &options.backup.store {
                let _ = tokio::fs::remove_file(dir.join(format!("{id}.partial"))).await;
            }
            return Err(ExecError::Interrupted {
                signal: options.interrupt.raised().unwrap_or(crate::SIGINT),
                state:
                    "it stopped while taking the backup before migrating: nothing was changed, and no backup was kept"
                        .to_owned(),
                applied: Vec::new(),
            });
        };
        let (sink, raw_bytes, stored_bytes, sha256) = match pumped {
            Ok(pumped) => pumped,
            Err((sink, e)) => return Err(failed(format!("the store failed: {}", sink.failure(e).await))),
        };
        let checked = async {
            let saved = saved.map_err(|e| format!("the backup failed: {e}"))?;
            restore.map_err(|e| format!("it did not restore: {e}"))?;
            let restored_tables: Vec<TableName> =
                saved.tables.iter().map(|t| TableName { schema: t.schema.clone(), name: t.table.clone() }).collect();
            let digests =
                restored.digests(&restored_tables).await.map_err(|e| format!("reading the restored copy: {e}"))?;
            compare_rows(&saved.tables, &digests)?;
            let after = read_within(restored.as_mut(), &scope)
                .await
                .map_err(|e| format!("reading the restored schema: {e}"))?;
            compare_schema(&before, &after)?;
            Ok::<Saved, String>(saved)
        }
        .await;
        let saved = match checked {
            Ok(saved) => saved,
            Err(why) => {
                sink.abandon().await;
                return Err(failed(why));
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

/// What the three steps gave: the driver's account, the store's (the sink
/// back, raw and stored bytes, the stored bytes' SHA-256; or the sink and
/// the error), and the restore's.
type Streamed = (
    (airlock_driver::Result<Saved>, u64),
    Result<(Sink, u64, u64, String), (Sink, std::io::Error)>,
    airlock_driver::Result<()>,
);

/// Runs the backup, the compression into the store and the restore at
/// once, joined by bounded pipes. A step that stops closes its pipe, so
/// the others stop too instead of waiting.
async fn stream(
    source: &mut dyn Driver,
    tables: Option<&[TableName]>,
    target: &mut dyn Driver,
    mut sink: Sink,
) -> Streamed {
    let (mut raw_tx, mut raw_rx) = tokio::io::duplex(CHUNK);
    let (mut zst_tx, zst_rx) = tokio::io::duplex(CHUNK);
    let produce = async move {
        let started = Instant::now();
        let saved = source.backup(tables, &mut raw_tx).await;
        let _ = raw_tx.shutdown().await;
        (saved, started.elapsed().as_millis() as u64)
    };
    let pump = async move {
        let pumped = async {
            let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), LEVEL)?;
            let mut hash = Sha256::new();
            let (mut raw, mut stored) = (0u64, 0u64);
            let mut buffer = vec![0u8; CHUNK];
            // Verification is best effort here: its own error is the one told.
            let mut verifying = true;
            loop {
                let n = raw_rx.read(&mut buffer).await?;
                let out = if n == 0 {
                    std::mem::replace(&mut encoder, zstd::stream::write::Encoder::new(Vec::new(), LEVEL)?).finish()?
                } else {
                    raw += n as u64;
                    std::io::Write::write_all(&mut encoder, &buffer[..n])?;
                    std::mem::take(encoder.get_mut())
                };
                if !out.is_empty() {
                    hash.update(&out);
                    stored += out.len() as u64;
                    sink.write(&out).await?;
                    if verifying && zst_tx.write_all(&out).await.is_err() {
                        verifying = false;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let _ = zst_tx.shutdown().await;
            Ok::<_, std::io::Error>((raw, stored, format!("{:x}", hash.finalize())))
        }
        .await;
        drop(raw_rx);
        match pumped {
            Ok((raw, stored, sha)) => Ok((sink, raw, stored, sha)),
            Err(e) => Err((sink, e)),
        }
    };
    let restore = async move {
        let mut decoder = async_compression::tokio::bufread::ZstdDecoder::new(tokio::io::BufReader::new(zst_rx));
        target.restore(&mut decoder).await
    };
    tokio::join!(produce, pump, restore)
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
            compare_rows(&saved, &[digest("carts", 3, "ff"), digest("users", 2, "b2")]),
            Err("table `carts` restored with other content than was saved (the same 3 rows, another digest)".to_owned())
        );
    }
}
