//! `backup restore`: a stored backup brought back where a person can use
//! it, never over live data. By default each table (or those named) comes
//! back beside the live one, as `<table>_restored_<id>`, made with the
//! table's columns, types, NOT NULL and primary key, filled with the saved
//! rows and checked against the manifest's digest, all in one transaction:
//! a person compares and copies rows back. `--replace` then makes the live
//! table's rows the saved ones by primary key, in the same transaction,
//! its rows before kept beside as `<table>_replaced_<id>`, and checks the
//! live table's digest against the manifest's. `--into URL` restores the whole
//! backup into another, empty database of the engine. The backup is checked
//! first (size, SHA-256) and restored into a scratch database; the restore
//! is an event in the database's history.

use std::time::Instant;

use airlock_core::Event;
use airlock_core::schema::TableName;
use airlock_core::snapshot::{ObjectKind, ObjectPath};
use airlock_driver::DatabaseUrl;
use airlock_driver::Driver;
use serde::Serialize;

use super::store::{Manifest, ManifestTable};
use super::stored::{checked, compare_restored, invalid, restore_file};
use crate::error::ExecError;
use crate::rehearse::Loader;
use crate::{Context, Options};

/// What `backup restore` is asked.
#[derive(Clone, Debug, Default)]
pub struct RestoreRequest {
    /// The backup's id.
    pub id: String,
    /// Read its data from this file, not where its manifest says.
    pub file: Option<String>,
    /// The tables to restore, as the manifest or a person names them
    /// (`carts`, `public.carts`); none: every table it saved.
    pub tables: Vec<String>,
    /// The name of the restored table (with one table).
    pub as_name: Option<String>,
    /// Restore the whole backup into this empty database instead.
    pub into: Option<DatabaseUrl>,
    /// Then make the live tables' rows the saved ones (their rows before
    /// kept beside as `<table>_replaced_<id>`).
    pub replace: bool,
    /// Why (`--reason`): needed for `replace` in a protected environment; kept in history.
    pub reason: Option<String>,
}

/// A table brought back.
#[derive(Clone, Debug, Serialize)]
pub struct RestoredTable {
    /// The table saved (`schema.name` where the engine has schemas).
    pub table: String,
    /// Where its rows are now.
    pub restored_as: String,
    /// Rows restored: those saved, checked by digest.
    pub rows: u64,
    /// With `--replace`: what the live table's rows became, and where they were kept.
    pub replaced: Option<airlock_driver::backup::Replaced>,
}

/// What `backup restore` did.
#[derive(Clone, Debug, Serialize)]
pub struct Restored {
    /// The backup.
    pub id: String,
    /// The database restored into (password hidden).
    pub database: String,
    /// The whole backup went into another database (`--into`).
    pub whole: bool,
    /// Each table, with its rows.
    pub tables: Vec<RestoredTable>,
    /// Why, when given.
    pub reason: Option<String>,
    /// Checking, restoring and copying, in milliseconds.
    pub duration_ms: u64,
}

/// Restores backup `request.id`: beside the live tables, or whole into
/// another database. Nothing live is changed but the tables it makes; a
/// failure at any point leaves the databases as they were.
pub async fn backup_restore(options: &Options, request: &RestoreRequest) -> Result<Restored, ExecError> {
    let started = Instant::now();
    let ctx = Context::new(options);
    let (manifest, path) = checked(&ctx, &request.id, request.file.as_deref()).await?;
    let (database, tables) = match &request.into {
        Some(url) => (url.to_string(), whole(options, &manifest, &path, url).await?),
        None => (options.url.to_string(), beside(options, &manifest, &path, request).await?),
    };
    let restored = Restored {
        id: manifest.id.clone(),
        database,
        whole: request.into.is_some(),
        tables,
        reason: request.reason.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
    };
    let mut driver = crate::connect(&options.url, false).await.map_err(ExecError::Connect)?;
    let event =
        Event { kind: "restore".into(), version: None, detail: serde_json::to_string(&restored).unwrap_or_default() };
    driver.append_event(&event, &ctx.actor).await.map_err(ExecError::db("recording the restore in history"))?;
    Ok(restored)
}

/// The manifest's tables a request names (all when it names none); a name
/// the backup does not hold is a usage error listing those it does.
fn chosen<'m>(manifest: &'m Manifest, asked: &[String]) -> Result<Vec<&'m ManifestTable>, ExecError> {
    if asked.is_empty() {
        return Ok(manifest.tables.iter().collect());
    }
    asked
        .iter()
        .map(|name| {
            let exact = manifest.tables.iter().find(|t| &t.table == name);
            let mut bare = manifest.tables.iter().filter(|t| &t.name == name);
            match (exact, bare.next(), bare.next()) {
                (Some(t), _, _) | (None, Some(t), None) => Ok(t),
                (None, Some(a), Some(b)) => Err(ExecError::Usage(format!(
                    "`{name}` is both {} and {} in backup {}: say which",
                    a.table, b.table, manifest.id
                ))),
                (None, None, _) => {
                    let held: Vec<&str> = manifest.tables.iter().map(|t| t.table.as_str()).collect();
                    Err(ExecError::Usage(format!(
                        "backup {} holds no rows of `{name}`: it saved {}",
                        manifest.id,
                        if held.is_empty() { "no table".to_owned() } else { held.join(", ") }
                    )))
                }
            }
        })
        .collect()
}

/// A restored table's name beside the live one: `<table>_restored_<id>`,
/// the id in lower case with `_` for `-`, so that it needs no quoting.
pub(crate) fn beside_name(table: &str, id: &str) -> String {
    format!("{table}_restored_{}", id.to_ascii_lowercase().replace('-', "_"))
}

/// The longest table name PostgreSQL and MySQL keep whole.
const MAX_NAME: usize = 63;

/// Each chosen table made beside its live one and filled from the backup,
/// in one transaction on the live database.
async fn beside(
    options: &Options,
    manifest: &Manifest,
    path: &str,
    request: &RestoreRequest,
) -> Result<Vec<RestoredTable>, ExecError> {
    let tables = chosen(manifest, &request.tables)?;
    if request.as_name.is_some() && tables.len() != 1 {
        return Err(ExecError::Usage(format!(
            "--as names one table, and backup {} saved {}: say which with --table",
            manifest.id,
            tables.len()
        )));
    }
    if request.replace && tables.len() > 1 && !options.profile().capabilities.transactional_ddl {
        return Err(ExecError::Usage(format!(
            "--replace takes one table at a time on {} (its DDL commits at once, so two could not be replaced together): say which with --table",
            options.profile().engine.name()
        )));
    }
    if request.replace && options.protected && request.reason.is_none() {
        return Err(ExecError::Protected(format!(
            "`--replace` writes the saved rows over live ones: environment `{}` is protected; say why with `--reason TEXT` (kept in history), or restore beside the live table without --replace",
            options.environment.as_deref().unwrap_or("?")
        )));
    }
    let names: Vec<String> =
        tables.iter().map(|t| request.as_name.clone().unwrap_or_else(|| beside_name(&t.name, &manifest.id))).collect();
    let kept: Vec<String> = tables.iter().map(|t| replaced_name(&t.name, &manifest.id)).collect();
    let checked = if request.replace { names.iter().chain(&kept).collect::<Vec<_>>() } else { names.iter().collect() };
    if !options.profile().capabilities.local_file
        && let Some(long) = checked.into_iter().find(|n| n.len() > MAX_NAME)
    {
        return Err(ExecError::Usage(format!(
            "`{long}` is longer than the {MAX_NAME} bytes a table name may have: name it with --table and --as"
        )));
    }
    let invalid = invalid(&manifest.id, path);
    let mut live = crate::connect(&options.url, false).await.map_err(ExecError::Connect)?;
    let scratch = crate::drift::Scratch::create(options).await?;
    let outcome = async {
        let mut copy = scratch.connect().await?;
        restore_file(copy.as_mut(), path, &manifest.sha256, &invalid).await?;
        let saved: Vec<_> = tables.iter().map(|t| t.digest()).collect();
        compare_restored(copy.as_mut(), &saved, &invalid).await?;
        live.begin().await.map_err(ExecError::db("starting the restore's transaction"))?;
        // What was made, to drop again where DDL commits at once.
        let mut undo: Vec<String> = Vec::new();
        let copied = async {
            let mut restored = Vec::new();
            for ((table, name), keep_as) in tables.iter().zip(&names).zip(&kept) {
                let mut beside = copy_beside(copy.as_mut(), live.as_mut(), table, name, &invalid, &mut undo).await?;
                if request.replace {
                    beside.replaced = Some(replace(live.as_mut(), table, name, keep_as, &mut undo).await?);
                }
                restored.push(beside);
            }
            live.commit().await.map_err(ExecError::db("committing the restored tables"))?;
            Ok::<_, ExecError>(restored)
        }
        .await;
        match copied {
            Ok(restored) => Ok(restored),
            Err(e) => {
                let _ = live.rollback().await;
                if !live.capabilities().transactional_ddl {
                    for statement in undo.iter().rev() {
                        let _ = live.execute(statement).await;
                    }
                }
                Err(e)
            }
        }
    }
    .await;
    let dropped = scratch.finish().await;
    let restored = outcome?;
    dropped?;
    Ok(restored)
}

/// One table of the restored copy made as `name` in the live database,
/// its rows copied and their digest checked against the manifest's.
async fn copy_beside(
    copy: &mut dyn Driver,
    live: &mut dyn Driver,
    table: &ManifestTable,
    name: &str,
    invalid: &impl Fn(String) -> ExecError,
    undo: &mut Vec<String>,
) -> Result<RestoredTable, ExecError> {
    let shown = match &table.schema {
        Some(schema) => format!("{schema}.{name}"),
        None => name.to_owned(),
    };
    let plain = copy
        .plain_copy(&table.name(), name)
        .await
        .map_err(ExecError::db(format!("reading table {} in the restored backup", table.table)))?;
    live.execute(&plain.create).await.map_err(ExecError::db(format!(
        "making table {shown} for the restored rows (nothing was changed; another name with --as)"
    )))?;
    undo.push(plain.drop.clone());
    let from = ObjectPath::new(ObjectKind::Table, table.schema.as_deref(), &table.name);
    let to = ObjectPath::new(ObjectKind::Table, table.schema.as_deref(), name);
    let mut loader = Loader { into: live, table: &to, columns: &plain.columns };
    copy.read_rows(&from, &plain.columns, None, &mut loader)
        .await
        .map_err(ExecError::db(format!("copying the saved rows of {} into {shown}", table.table)))?;
    let mut found = loader
        .into
        .digests(&[TableName { schema: table.schema.clone(), name: name.to_owned() }])
        .await
        .map_err(ExecError::db(format!("reading {shown} back")))?;
    // The copy answers for the table saved: compared under its name.
    for digest in &mut found {
        digest.table = table.name.clone();
    }
    super::take::compare_rows(&[table.digest()], &found)
        .map_err(|why| invalid(format!("copied into {shown}: {why}")))?;
    Ok(RestoredTable { table: table.table.clone(), restored_as: shown, rows: table.rows, replaced: None })
}

/// The live table's rows made those of its restored copy `from`, its rows
/// before kept as `keep_as`; then its digest must be the saved one.
async fn replace(
    live: &mut dyn Driver,
    table: &ManifestTable,
    from: &str,
    keep_as: &str,
    undo: &mut Vec<String>,
) -> Result<airlock_driver::backup::Replaced, ExecError> {
    let nothing = "nothing was changed";
    let source = TableName { schema: table.schema.clone(), name: from.to_owned() };
    let replaced = live
        .replace_rows(&table.name(), &source, keep_as)
        .await
        .map_err(ExecError::db(format!("replacing the rows of {} ({nothing})", table.table)))?;
    undo.push(replaced.drop_kept.clone());
    let found = live.digests(&[table.name()]).await.map_err(ExecError::db(format!("reading {} back", table.table)))?;
    super::take::compare_rows(&[table.digest()], &found).map_err(|why| {
        let said = format!(
            "after the replace, {why}: its columns' types or order are not the saved ones; put them back first ({nothing})"
        );
        ExecError::Database {
            context: format!("replacing the rows of {}", table.table),
            source: airlock_driver::DriverError::new(airlock_driver::ErrorKind::Statement, said),
        }
    })?;
    Ok(replaced)
}

/// Where `--replace` keeps a live table's rows before: `<table>_replaced_<id>`.
pub(crate) fn replaced_name(table: &str, id: &str) -> String {
    format!("{table}_replaced_{}", id.to_ascii_lowercase().replace('-', "_"))
}

/// The whole backup restored into `url`, a database of the engine that
/// must be empty, and checked against the manifest; emptied again when
/// anything fails.
async fn whole(
    options: &Options,
    manifest: &Manifest,
    path: &str,
    url: &DatabaseUrl,
) -> Result<Vec<RestoredTable>, ExecError> {
    let invalid = invalid(&manifest.id, path);
    // A database file not made yet is as empty as one can be.
    if url.engine() == options.url.engine() && url.sqlite_path().is_some_and(|p| !std::path::Path::new(p).exists()) {
        crate::connect(url, true).await.map_err(ExecError::Connect)?;
    }
    let into = crate::drift::Scratch::lend(options, url, "database to restore into").await?;
    let outcome = async {
        let mut driver = into.connect().await?;
        restore_file(driver.as_mut(), path, &manifest.sha256, &invalid).await?;
        let saved: Vec<_> = manifest.tables.iter().map(ManifestTable::digest).collect();
        compare_restored(driver.as_mut(), &saved, &invalid).await
    }
    .await;
    match outcome {
        Ok(()) => into.keep(),
        Err(e) => {
            into.finish().await?;
            return Err(e);
        }
    }
    Ok(manifest
        .tables
        .iter()
        .map(|t| RestoredTable { table: t.table.clone(), restored_as: t.table.clone(), rows: t.rows, replaced: None })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_restored_beside_needs_no_quoting() {
        assert_eq!(beside_name("carts", "20261201T133500Z-0a1b2c3d"), "carts_restored_20261201t133500z_0a1b2c3d");
    }
}
