//! Retention: once a new backup is verified and stored, the older backups
//! of this database that `backup_keep` and `backup_max_age` no longer
//! cover are deleted from a directory store (a command store keeps its own
//! rules), data and manifest, each deletion an event in history. The
//! backup just taken is never deleted, whatever the settings say; a file
//! that cannot be deleted is a warning, not a failed run: the migration's
//! own backup is good.

use std::path::Path;
use std::time::Duration;

use airlock_core::Event;
use airlock_driver::Driver;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::store::{Manifest, data_name};
use super::{BackupSettings, BackupStore};
use crate::Context;

/// A backup retention deleted (or tried to).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Its id.
    pub id: String,
    /// Its data file.
    pub file: String,
    /// Why it went: past `backup_keep`, or older than `backup_max_age`.
    pub why: String,
    /// What stopped the deletion, if something did.
    pub error: Option<String>,
}

/// Which of `backups` (newest first, history's order) retention deletes
/// at `now`, and why; never `taken`.
pub(crate) fn doomed<'m>(
    backups: &'m [Manifest],
    settings: &BackupSettings,
    taken: &str,
    now: DateTime<Utc>,
) -> Vec<(&'m Manifest, String)> {
    let mut out = Vec::new();
    for (i, backup) in backups.iter().enumerate() {
        if backup.id == taken {
            continue;
        }
        let age = DateTime::parse_from_rfc3339(&backup.taken_at)
            .ok()
            .and_then(|at| (now - at.with_timezone(&Utc)).to_std().ok())
            .unwrap_or(Duration::ZERO);
        if let Some(keep) = settings.keep
            && i >= keep as usize
        {
            out.push((backup, format!("older than the {keep} newest that backup_keep = {keep} keeps")));
        } else if let Some(max) = settings.max_age
            && age > max
        {
            out.push((backup, format!("backup_max_age: {} old, past {}", days(age), days(max))));
        }
    }
    out
}

/// A duration as a person reads an age.
fn days(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86_400 => format!("{:.1} days", s as f64 / 86_400.0),
        s if s >= 3_600 => format!("{:.1} hours", s as f64 / 3_600.0),
        s => format!("{s} s"),
    }
}

/// Deletes what retention no longer keeps, after backup `taken` was
/// stored; says each in history. Only in a directory store, and only files
/// named as that store names a backup's.
pub(crate) async fn prune(ctx: &Context, driver: &mut dyn Driver, taken: &Manifest) -> Vec<Pruned> {
    let settings = &ctx.options.backup;
    if !matches!(settings.store, BackupStore::Directory(_)) || (settings.keep.is_none() && settings.max_age.is_none()) {
        return Vec::new();
    }
    let backups = match super::stored::kept(driver).await {
        Ok(backups) => backups,
        Err(e) => {
            return vec![Pruned {
                id: String::new(),
                file: String::new(),
                why: "reading the backups history records".to_owned(),
                error: Some(e.to_string()),
            }];
        }
    };
    let mut pruned = Vec::new();
    for (backup, why) in doomed(&backups, settings, &taken.id, Utc::now()) {
        let error = delete(backup).err();
        let gone = Pruned { id: backup.id.clone(), file: backup.file.clone(), why, error };
        if gone.error.is_none() {
            let event = Event {
                kind: "backup_deleted".into(),
                version: None,
                detail: serde_json::to_string(&gone).unwrap_or_default(),
            };
            if let Err(e) = driver.append_event(&event, &ctx.actor).await {
                pruned.push(Pruned { error: Some(format!("deleted, but not recorded in history: {e}")), ..gone });
                continue;
            }
        }
        pruned.push(gone);
    }
    pruned
}

/// Removes a backup's data and manifest from its directory; a file already
/// gone is not an error.
fn delete(backup: &Manifest) -> Result<(), String> {
    let data = Path::new(&backup.file);
    let named = data.file_name().and_then(|n| n.to_str()) == Some(data_name(&backup.id).as_str());
    if !named {
        return Err(format!("{} is not named as a stored backup: left alone", backup.file));
    }
    let manifest = data.with_file_name(format!("{}.json", backup.id));
    for path in [data, manifest.as_path()] {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str, taken_at: &str) -> Manifest {
        Manifest {
            id: id.to_owned(),
            environment: None,
            database: String::new(),
            mode: super::super::BackupMode::Tables,
            tables: Vec::new(),
            format: String::new(),
            tool: String::new(),
            server_version: String::new(),
            catalog_bytes: None,
            raw_bytes: 0,
            stored_bytes: 0,
            sha256: String::new(),
            duration_ms: 0,
            dump_ms: 0,
            taken_at: taken_at.to_owned(),
            taken_by: String::new(),
            file: String::new(),
        }
    }

    fn ids(doomed: &[(&Manifest, String)]) -> Vec<String> {
        doomed.iter().map(|(m, _)| m.id.clone()).collect()
    }

    #[test]
    fn retention_keeps_the_newest_and_the_young_and_never_the_one_just_taken() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").unwrap().with_timezone(&Utc);
        let backups = [
            manifest("d", "2026-12-01T11:00:00Z"),
            manifest("c", "2026-11-30T12:00:00Z"),
            manifest("b", "2026-11-20T12:00:00Z"),
            manifest("a", "2026-11-01T12:00:00Z"),
        ];
        let mut settings = BackupSettings::default();
        assert!(doomed(&backups, &settings, "d", now).is_empty(), "no settings: all kept");
        settings.keep = Some(2);
        assert_eq!(ids(&doomed(&backups, &settings, "d", now)), ["b", "a"]);
        settings.keep = None;
        settings.max_age = Some(Duration::from_secs(7 * 86_400));
        let old = doomed(&backups, &settings, "d", now);
        assert_eq!(ids(&old), ["b", "a"]);
        assert_eq!(old[0].1, "backup_max_age: 11.0 days old, past 7.0 days");
        // The one just taken stays, even when it is past every limit.
        settings.keep = Some(1);
        settings.max_age = Some(Duration::from_secs(1));
        assert_eq!(ids(&doomed(&backups, &settings, "a", now)), ["d", "c", "b"]);
        // Both limits: each backup is named once, by the first that takes it.
        settings.max_age = Some(Duration::from_secs(3 * 86_400));
        let both = doomed(&backups, &settings, "d", now);
        assert_eq!(ids(&both), ["c", "b", "a"]);
        assert!(both.iter().all(|(_, why)| why.ends_with("backup_keep = 1 keeps")), "{both:?}");
    }
}
