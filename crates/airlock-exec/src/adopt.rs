//! `adopt`: takes over a database another tool migrated. Reads that tool's
//! history table (read-only; it is left as it was, so going back to the old
//! tool stays possible), matches each applied version to a file here,
//! compares checksums where the tool keeps comparable ones, and records the
//! migrations in airlock's history as `adopted`, without running any SQL.
//! Refuses, changing nothing, when the history lists versions the checkout
//! lacks, a checksum differs, or the tool marks a run failed or dirty.

use airlock_core::foreign::{self, ForeignRow, Tool};
use airlock_core::{Event, Migration, Problem, ProblemCode, RunMode, RunState};
use airlock_driver::Driver;
use chrono::Utc;
use serde::Serialize;
use serde_json::json;

use crate::error::ExecError;
use crate::report::{PendingEntry, Reporter};
use crate::{Context, Options, lease, snapshot};

/// What `adopt` did, or would do with `--dry-run`.
#[derive(Debug, Serialize)]
pub struct AdoptReport {
    /// The tool whose history was read.
    pub tool: &'static str,
    /// Its history table.
    pub table: &'static str,
    /// The migrations recorded as applied (or that would be).
    pub adopted: Vec<AdoptedEntry>,
    /// How many of them had a checksum compared with the tool's.
    pub checksums_compared: usize,
    /// Migrations the tool never applied: `migrate` runs them.
    pub pending: Vec<PendingEntry>,
    /// Remarks that did not stop the adoption.
    pub notes: Vec<String>,
    /// Nothing was written.
    pub dry_run: bool,
}

/// One adopted migration.
#[derive(Debug, Serialize)]
pub struct AdoptedEntry {
    /// Version.
    pub version: String,
    /// Name.
    pub name: String,
    /// How the tool's history shows it applied.
    pub how: &'static str,
}

/// The SQL that reads `tool`'s history as [`ForeignRow`] columns
/// (version, name, kind, checksum, ok), oldest first.
fn history_query(tool: Tool, profile: &airlock_driver::Profile) -> String {
    let table = tool.table();
    match tool {
        Tool::Flyway => {
            format!("SELECT version, description, type, checksum, success FROM {table} ORDER BY installed_rank")
        }
        Tool::GolangMigrate => format!("SELECT version, NULL, NULL, NULL, NOT dirty FROM {table}"),
        Tool::Dbmate | Tool::Rails | Tool::Diesel => format!("SELECT version, NULL, NULL, NULL, 1 FROM {table}"),
        Tool::Sqlx => {
            let hex = (profile.hex)("checksum");
            format!("SELECT version, description, NULL, {hex}, success FROM {table} ORDER BY version")
        }
        Tool::Refinery => format!("SELECT version, name, NULL, checksum, 1 FROM {table} ORDER BY version"),
    }
}

fn truthy(text: Option<&str>) -> bool {
    matches!(text.map(|t| t.trim().to_ascii_lowercase()).as_deref(), Some("t" | "true" | "1" | "yes"))
}

async fn read_rows(driver: &mut dyn Driver, tool: Tool) -> Result<Vec<ForeignRow>, ExecError> {
    let rows = driver
        .query_text(&history_query(tool, driver.profile()))
        .await
        .map_err(ExecError::db(format!("reading {tool}'s history table `{}`", tool.table())))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let cell = |i: usize| r.get(i).cloned().flatten();
            ForeignRow {
                version: cell(0),
                name: cell(1),
                kind: cell(2),
                checksum: cell(3),
                ok: truthy(cell(4).as_deref()),
            }
        })
        .collect())
}

/// The tool to adopt from: the one `--from` names (its table must be
/// there: `schema_migrations` serves three tools, and `--from` says which),
/// else the only one whose table the database holds.
fn choose(
    found: &[Tool],
    from: Option<Tool>,
    catalog: &airlock_core::schema::Catalog,
    options: &Options,
) -> Result<Tool, ExecError> {
    let has_table = |tool: Tool| catalog.table(&airlock_core::schema::TableName::bare(tool.table())).table().is_some();
    match (from, found) {
        (Some(tool), _) if found.contains(&tool) || has_table(tool) => Ok(tool),
        (Some(tool), _) => Err(ExecError::Usage(format!(
            "--from {tool}: {} has no `{}` table{}",
            options.url,
            tool.table(),
            if found.is_empty() { String::new() } else { format!(" (it has the history of: {})", names(found)) }
        ))),
        (None, [one]) => Ok(*one),
        (None, []) => Err(ExecError::Usage(format!(
            "nothing to adopt: {} holds no other tool's history table (looked for {})",
            options.url,
            Tool::ALL.iter().map(|t| format!("{t} `{}`", t.table())).collect::<Vec<_>>().join(", ")
        ))),
        (None, many) => Err(ExecError::Usage(format!(
            "{} holds the history of several tools ({}): say which with --from",
            options.url,
            names(many)
        ))),
    }
}

fn names(tools: &[Tool]) -> String {
    tools.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
}

/// The problem `status`, `plan` and `migrate` report on a database another
/// tool migrated and airlock has not adopted: running the migrations again
/// would fail or, worse, half-succeed.
pub(crate) fn foreign_problem(tools: &[Tool]) -> Option<Problem> {
    let first = tools.first()?;
    Some(Problem {
        code: ProblemCode::ForeignHistory,
        version: None,
        message: format!(
            "this database was migrated by {} (its history is in `{}`) and airlock has no history here: run `airlock adopt{}` to take it over without running any SQL",
            names(tools),
            first.table(),
            if tools.len() > 1 { format!(" --from {first}") } else { String::new() }
        ),
        detail: None,
        blocking: true,
    })
}

/// The tools whose history tables the database holds, when airlock has not
/// adopted it yet (best effort: a catalog that cannot be read says none).
pub(crate) async fn foreign_tools(driver: &mut dyn Driver) -> Vec<Tool> {
    match driver.load_catalog().await {
        Ok(catalog) => not_adopted(driver, foreign::detect(&catalog)).await,
        Err(_) => Vec::new(),
    }
}

/// `tools`, unless airlock already adopted this database (an adoption that
/// found nothing to record leaves only its event).
pub(crate) async fn not_adopted(driver: &mut dyn Driver, tools: Vec<Tool>) -> Vec<Tool> {
    if tools.is_empty() || adopted_before(driver).await {
        return Vec::new();
    }
    tools
}

async fn adopted_before(driver: &mut dyn Driver) -> bool {
    let rows = driver.query_text("SELECT count(*) FROM airlock_events WHERE kind = 'adopted'").await;
    rows.ok().and_then(|r| r.first()?.first()?.clone()).and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n > 0)
}

/// The file's bytes as on disk (checksums of other tools are over them), or
/// its text for migrations built into a program.
fn raw(migration: &Migration) -> Option<Vec<u8>> {
    std::fs::read(&migration.up.path).ok().or_else(|| Some(migration.up.sql.clone().into_bytes()))
}

/// Takes over a database another tool migrated. Changes nothing with
/// `dry_run`, or when it refuses.
pub async fn adopt(
    options: &Options,
    from: Option<Tool>,
    dry_run: bool,
    reporter: &mut dyn Reporter,
) -> Result<AdoptReport, ExecError> {
    let discovered = options.discover()?;
    if crate::database_file_missing(options) {
        return Err(ExecError::Usage(format!("nothing to adopt: {} does not exist", options.url)));
    }
    let ctx = Context::new(options);
    let mut driver = crate::connect(&options.url, false).await.map_err(ExecError::Connect)?;
    let snap = snapshot(driver.as_mut(), &ctx).await?;
    if !snap.history.is_empty() || adopted_before(driver.as_mut()).await {
        return Err(ExecError::Blocked {
            problems: vec![Problem {
                code: ProblemCode::AlreadyManaged,
                version: None,
                message: format!(
                    "{} already has airlock history ({} migration(s){}): adopt only takes over a database airlock has not run on; nothing was changed",
                    options.url,
                    snap.history.len(),
                    if snap.history.is_empty() { ", and an earlier adoption" } else { "" }
                ),
                detail: None,
                blocking: true,
            }],
        });
    }
    let catalog = driver.load_catalog().await.map_err(ExecError::db("reading the live schema"))?;
    let tool = choose(&foreign::detect(&catalog), from, &catalog, options)?;
    let rows = read_rows(driver.as_mut(), tool).await?;
    let decided = foreign::plan_adoption(tool, &rows, &discovered.migrations, &raw);
    if !decided.refusals.is_empty() {
        return Err(ExecError::AdoptRefused { tool: tool.name(), reasons: decided.refusals });
    }
    let report = AdoptReport {
        tool: tool.name(),
        table: tool.table(),
        adopted: decided
            .adopt
            .iter()
            .map(|(m, how)| AdoptedEntry { version: m.version.to_string(), name: m.name.clone(), how })
            .collect(),
        checksums_compared: decided.checksums_compared,
        pending: decided.pending.iter().map(|m| PendingEntry::from(*m)).collect(),
        notes: decided.notes.clone(),
        dry_run,
    };
    if dry_run {
        return Ok(report);
    }
    retry_conflicts!(driver.ensure_tables().await).map_err(ExecError::db("creating airlock's tables"))?;
    let held = lease::acquire(driver.as_mut(), &ctx, reporter).await?;
    let outcome = record(driver.as_mut(), &ctx, tool, &decided.adopt, decided.checksums_compared).await;
    held.release(driver.as_mut()).await;
    outcome?;
    Ok(report)
}

/// Writes the adopted records and one `adopted` event, under the lease,
/// after checking that no airlock run got there first.
async fn record(
    driver: &mut dyn Driver,
    ctx: &Context,
    tool: Tool,
    adopt: &[(&Migration, &'static str)],
    compared: usize,
) -> Result<(), ExecError> {
    let snap = snapshot(driver, ctx).await?;
    if !snap.history.is_empty() {
        return Err(ExecError::Usage(
            "another airlock run wrote history while adopt was reading; nothing was adopted: run `airlock status`"
                .to_owned(),
        ));
    }
    if let (None, Some(project)) = (&snap.project, &ctx.options.project) {
        driver.stamp_project(project).await.map_err(ExecError::db("stamping the project"))?;
    }
    let now = Utc::now();
    // All or nothing: a half-recorded adoption would be a history that lies.
    driver.begin().await.map_err(ExecError::db("opening a transaction"))?;
    let written = write_all(driver, ctx, tool, adopt, compared, now).await;
    match written {
        Ok(()) => driver.commit().await.map_err(ExecError::db("committing the adoption")),
        Err(e) => {
            let _ = driver.rollback().await;
            Err(e)
        }
    }
}

async fn write_all(
    driver: &mut dyn Driver,
    ctx: &Context,
    tool: Tool,
    adopt: &[(&Migration, &'static str)],
    compared: usize,
    now: chrono::DateTime<Utc>,
) -> Result<(), ExecError> {
    for (migration, _) in adopt {
        let mut record = crate::apply::new_record(ctx, migration, RunMode::Transaction, 0);
        record.state = RunState::Adopted;
        record.started_at = now;
        record.finished_at = Some(now);
        record.duration_ms = Some(0);
        driver
            .write_history(&record)
            .await
            .map_err(ExecError::db(format!("recording migration {} as adopted", migration.version)))?;
    }
    let versions: Vec<String> = adopt.iter().map(|(m, _)| m.version.to_string()).collect();
    let detail =
        json!({ "tool": tool.name(), "table": tool.table(), "versions": versions, "checksums_compared": compared });
    let event = Event { kind: "adopted".into(), version: None, detail: detail.to_string() };
    driver.append_event(&event, &ctx.actor).await.map_err(ExecError::db("recording the adoption"))?;
    Ok(())
}
