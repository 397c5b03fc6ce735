//! The audit trail. Every invocation that changed the database under the
//! lock (`migrate`, `down`, `resolve`) ends with one `run` event: the
//! command, what it applied, how long, how it ended. `LastRun` is the newest
//! of them, so a run is one invocation, never several glued together by
//! their times. `history` reads the events back as entries: runs, repairs,
//! resolutions, allows used, adoptions, lock takeovers, with who, where,
//! when and why. Read with plain SELECTs on every engine (the same SQL).

use std::time::Instant;

use airlock_core::Event;
use airlock_driver::{Driver, DriverError};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::ExecError;
use crate::report::{LastRun, RunEntry};
use crate::{Context, Options, snapshot};

/// When an invocation started, for its `run` event.
pub(crate) struct RunStart {
    started: Instant,
    at: DateTime<Utc>,
}

impl RunStart {
    pub(crate) fn now() -> RunStart {
        RunStart { started: Instant::now(), at: Utc::now() }
    }
}

/// How a run ended, as its event says.
fn outcome_of(error: Option<&ExecError>) -> &'static str {
    match error {
        None => "succeeded",
        Some(
            ExecError::ChecksFailed(_)
            | ExecError::RiskRefused(_)
            | ExecError::LintRefused(_)
            | ExecError::Blocked { .. }
            | ExecError::PlanMismatch(_),
        ) => "refused",
        Some(ExecError::Interrupted { .. }) => "interrupted",
        Some(_) => "failed",
    }
}

/// Appends the `run` event of `command`, whose outcome is `outcome`
/// (`entries` picks what a success ran); nothing for a run that did nothing,
/// or that lost its lease (another run may hold the database now). Best
/// effort: losing the event loses no migration.
pub(crate) async fn record_run<T>(
    driver: &mut dyn Driver,
    ctx: &Context,
    command: &'static str,
    start: &RunStart,
    outcome: &Result<T, ExecError>,
    entries: impl Fn(&T) -> &[RunEntry],
) {
    let (versions, error) = match outcome {
        Ok(done) if entries(done).is_empty() => return,
        Ok(done) => (entries(done).iter().map(|r| r.version.clone()).collect(), None),
        Err(ExecError::LeaseLost) => return,
        Err(e) => (e.applied_versions(), Some(e)),
    };
    let detail = json!({
        "command": command,
        "started_at": start.at.to_rfc3339(),
        "finished_at": Utc::now().to_rfc3339(),
        "duration_ms": start.started.elapsed().as_millis() as u64,
        "versions": versions,
        "outcome": outcome_of(error),
        "error": error.map(ToString::to_string),
        "environment": ctx.options.environment,
    });
    let event = Event { kind: "run".into(), version: None, detail: detail.to_string() };
    let _ = driver.append_event(&event, &ctx.actor).await;
}

/// One row of `airlock_events`.
pub(crate) struct EventRow {
    /// As the engine printed it.
    at_text: String,
    /// Parsed, when the engine printed it in a form known here.
    at: Option<DateTime<Utc>>,
    pub(crate) kind: String,
    version: Option<String>,
    pub(crate) detail: Value,
    os_user: String,
    host: String,
}

/// A time as an engine prints it: PostgreSQL's `2026-11-30 15:07:47.123+00`,
/// MySQL's and SQLite's `2026-11-30 15:07:47.123` (UTC), or RFC 3339.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%#z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok().map(|t| t.and_utc())
}

pub(crate) async fn read_events(
    driver: &mut dyn Driver,
    filter: &str,
    limit: usize,
) -> Result<Vec<EventRow>, airlock_driver::DriverError> {
    let rows = driver
        .query_text(&format!("SELECT at, kind, version, detail, os_user, host FROM airlock_events {filter} ORDER BY id DESC LIMIT {limit}"))
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let cell = |i: usize| r.get(i).cloned().flatten();
            let at_text = cell(0)?;
            Some(EventRow {
                at: parse_time(&at_text),
                at_text,
                kind: cell(1)?,
                version: cell(2),
                detail: cell(3).and_then(|d| serde_json::from_str(&d).ok()).unwrap_or(Value::Null),
                os_user: cell(4).unwrap_or_default(),
                host: cell(5).unwrap_or_default(),
            })
        })
        .collect())
}

fn static_outcome(text: &str) -> &'static str {
    match text {
        "succeeded" => "succeeded",
        "refused" => "refused",
        "interrupted" => "interrupted",
        _ => "failed",
    }
}

/// The newest run, from its event; None when no run event was written yet
/// (the tables are missing, or history from before run events).
pub(crate) async fn last_run(driver: &mut dyn Driver) -> Option<LastRun> {
    let row = read_events(driver, "WHERE kind = 'run'", 1).await.ok()?.into_iter().next()?;
    // The event's own times (RFC 3339, written by airlock) first; the row's
    // `at` as the engine prints it only when they are missing.
    let finished = row.detail["finished_at"].as_str().and_then(parse_time).or(row.at)?;
    let duration_ms = row.detail["duration_ms"].as_i64().unwrap_or(0);
    let started = row.detail["started_at"]
        .as_str()
        .and_then(parse_time)
        .unwrap_or(finished - chrono::Duration::milliseconds(duration_ms));
    Some(LastRun {
        started_at: started.to_rfc3339(),
        finished_at: finished.to_rfc3339(),
        duration_ms,
        migrations: row.detail["versions"].as_array().map_or(0, Vec::len),
        outcome: static_outcome(row.detail["outcome"].as_str().unwrap_or("failed")),
        os_user: row.os_user,
        host: crate::actor::host_name(&row.host).to_owned(),
    })
}

/// The newest drift comparison recorded here; None when none was (or the
/// tables are missing).
pub(crate) async fn last_drift(driver: &mut dyn Driver) -> Option<crate::drift::DriftSeen> {
    let row = read_events(driver, "WHERE kind = 'drift'", 1).await.ok()?.into_iter().next()?;
    let at = row.at.map_or(row.at_text, |t| t.to_rfc3339());
    crate::drift::seen(at, &row.detail, row.os_user, crate::actor::host_name(&row.host).to_owned())
}

/// One entry of the audit trail (the JSON contract's keys).
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// When (RFC 3339).
    pub at: String,
    /// `migrate`, `down`, `resolve`, `repair`, `adopt`, `allow`, `lock-takeover`, `unlock`, `stamp`...
    pub action: String,
    /// The versions concerned.
    pub versions: Vec<String>,
    /// OS user.
    pub os_user: String,
    /// Host.
    pub host: String,
    /// Why, when someone said (a repair's or resolution's reason, an allow's, the tool adopted from).
    pub reason: Option<String>,
    /// How it ended (`succeeded`, `failed`, `refused`, `interrupted`), where that applies.
    pub outcome: Option<String>,
}

/// The audit trail, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryReport {
    /// The database (password hidden).
    pub database: String,
    /// Entries, newest first.
    pub entries: Vec<HistoryEntry>,
}

fn versions_of(detail: &Value, version: &Option<String>) -> Vec<String> {
    match detail["versions"].as_array() {
        Some(list) => list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        None => version.iter().cloned().collect(),
    }
}

/// An event as an audit entry; None for the per-migration events a run's
/// own entry already covers (`applied` without allows, `failed`, `rolled_back`...).
fn entry(row: EventRow) -> Option<HistoryEntry> {
    let text = |key: &str| row.detail[key].as_str().map(str::to_owned);
    let (action, reason, outcome) = match row.kind.as_str() {
        "run" => (text("command").unwrap_or_else(|| "migrate".to_owned()), text("error"), text("outcome")),
        "repaired" => ("repair".to_owned(), text("reason"), None),
        "resolved" => (
            format!("resolve {}", text("how").or_else(|| text("resolution")).unwrap_or_default()).trim().to_owned(),
            text("reason"),
            None,
        ),
        "adopted" => (
            "adopt".to_owned(),
            text("tool").map(|t| format!("from {t} (`{}`)", text("table").unwrap_or_default())),
            Some("succeeded".to_owned()),
        ),
        "applied" => {
            let allows: Vec<String> = row.detail["allows"]
                .as_array()?
                .iter()
                .map(|a| format!("{}: {}", a["rule"].as_str().unwrap_or("?"), a["reason"].as_str().unwrap_or("")))
                .collect();
            if allows.is_empty() {
                return None;
            }
            ("allow".to_owned(), Some(allows.join("; ")), None)
        }
        "backup" => {
            let tables: Vec<&str> =
                row.detail["tables"].as_array()?.iter().filter_map(|t| t["table"].as_str()).collect();
            let what = match text("mode").as_deref() {
                Some("database") => "the database".to_owned(),
                _ => tables.join(", "),
            };
            let said = format!("{} of {what} → {}", text("id").unwrap_or_default(), text("file").unwrap_or_default());
            ("backup".to_owned(), Some(said), Some("verified".to_owned()))
        }
        "backup_skipped" => ("no-backup".to_owned(), text("reason"), None),
        "backup_deleted" => (
            "backup-deleted".to_owned(),
            Some(format!("{}: {}", text("id").unwrap_or_default(), text("why").unwrap_or_default())),
            None,
        ),
        "restore" => {
            let tables: Vec<String> = row.detail["tables"]
                .as_array()?
                .iter()
                .map(|t| {
                    format!("{} → {}", t["table"].as_str().unwrap_or("?"), t["restored_as"].as_str().unwrap_or("?"))
                })
                .collect();
            let mut said = match row.detail["whole"].as_bool() {
                Some(true) => {
                    format!("{} into {}", text("id").unwrap_or_default(), text("database").unwrap_or_default())
                }
                _ => format!("{}: {}", text("id").unwrap_or_default(), tables.join(", ")),
            };
            if row.detail["tables"].as_array()?.iter().any(|t| t["replaced"].is_object()) {
                said.push_str(", live rows replaced");
            }
            if let Some(why) = text("reason") {
                said.push_str(&format!(": {why}"));
            }
            ("restore".to_owned(), Some(said), Some("verified".to_owned()))
        }
        "lock_taken_over" => ("lock-takeover".to_owned(), text("why"), None),
        "unlocked" => ("unlock".to_owned(), text("reason"), None),
        "stamped" => ("stamp".to_owned(), text("project").map(|p| format!("project {p}")), None),
        "invalid_index_dropped" => ("drop-invalid-index".to_owned(), text("index"), None),
        "drift" => {
            let by = if text("command").as_deref() == Some("migrate") { " (migrate's check)" } else { "" };
            ("drift".to_owned(), Some(format!("{}{by}", crate::drift::summary(&row.detail))), text("outcome"))
        }
        "timing" | "failed" | "rolled_back" | "down_failed" | "interrupted" => return None,
        other => (other.replace('_', "-"), None, None),
    };
    let at = row.detail["finished_at"]
        .as_str()
        .and_then(parse_time)
        .or(row.at)
        .map_or(row.at_text.clone(), |t| t.to_rfc3339());
    Some(HistoryEntry {
        at,
        action,
        versions: versions_of(&row.detail, &row.version),
        os_user: row.os_user,
        host: crate::actor::host_name(&row.host).to_owned(),
        reason,
        outcome,
    })
}

/// `airlock history`: the newest `limit` entries of the audit trail. Read-only.
pub async fn history(options: &Options, limit: usize) -> Result<HistoryReport, ExecError> {
    let database = options.url.to_string();
    if crate::database_file_missing(options) {
        return Ok(HistoryReport { database, entries: Vec::new() });
    }
    let ctx = Context::new(options);
    let mut driver = crate::connect_read_only(&options.url).await.map_err(ExecError::Connect)?;
    let snap = snapshot(driver.as_mut(), &ctx).await?;
    match recent(driver.as_mut(), limit).await {
        Ok(entries) => Ok(HistoryReport { database, entries }),
        // No airlock tables yet (nothing was ever recorded here).
        Err(_) if snap.history.is_empty() => Ok(HistoryReport { database, entries: Vec::new() }),
        Err(e) => Err(ExecError::db("reading airlock_events")(e)),
    }
}

/// The newest `limit` entries of the audit trail, newest first.
pub(crate) async fn recent(driver: &mut dyn Driver, limit: usize) -> Result<Vec<HistoryEntry>, DriverError> {
    // Read generously: some events (a plain `applied`) are not entries.
    let mut batch = limit.max(1) * 4;
    loop {
        let rows = read_events(driver, "", batch).await?;
        let exhausted = rows.len() < batch;
        let entries: Vec<HistoryEntry> = rows.into_iter().filter_map(entry).take(limit).collect();
        if entries.len() >= limit || exhausted {
            return Ok(entries);
        }
        batch *= 4;
    }
}

/// Everything recorded of one migration, newest first: its runs, failures,
/// rollbacks and the resolves, repairs and allows that name it.
pub(crate) async fn of_migration(
    driver: &mut dyn Driver,
    version: &airlock_core::Version,
    limit: usize,
) -> Result<Vec<HistoryEntry>, DriverError> {
    // A version is digits and dots (`Version` parsed it), so it is safe in the text.
    let rows = read_events(driver, &format!("WHERE version = '{version}'"), limit).await?;
    Ok(rows.into_iter().filter(|r| r.kind != "timing").map(|r| migration_entry(r, version)).collect())
}

/// An event of one migration as an entry, the per-migration kinds included.
fn migration_entry(row: EventRow, version: &airlock_core::Version) -> HistoryEntry {
    let fallback = HistoryEntry {
        at: row.at.map_or(row.at_text.clone(), |t| t.to_rfc3339()),
        action: row.kind.replace('_', "-"),
        versions: vec![version.to_string()],
        os_user: row.os_user.clone(),
        host: crate::actor::host_name(&row.host).to_owned(),
        reason: row.detail["error"].as_str().map(str::to_owned),
        outcome: match row.kind.as_str() {
            "failed" | "down_failed" => Some("failed".to_owned()),
            "rolled_back" => Some("rolled_back".to_owned()),
            "interrupted" => Some("interrupted".to_owned()),
            _ => None,
        },
    };
    entry(row).unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_every_engine_prints_them() {
        let want = "2026-11-30T15:07:47.123+00:00";
        for text in ["2026-11-30 15:07:47.123+00", "2026-11-30 15:07:47.123", "2026-11-30T15:07:47.123Z"] {
            assert_eq!(parse_time(text).map(|t| t.to_rfc3339()), Some(want.to_owned()), "{text}");
        }
    }
}
