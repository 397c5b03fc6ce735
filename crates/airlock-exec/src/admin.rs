//! What the commands that change existing history (`down`, `repair`,
//! `resolve`, `unlock`) share: opening a database that has airlock history
//! (`locked`), reading it checked, and their events. None of them un-applies
//! anything it was not told to; each lives in a file of its own.

use airlock_core::{Discovered, Event, HistoryRecord, Version};
use airlock_driver::Driver;

use crate::error::ExecError;
use crate::lease::{self, HeldLease};
use crate::report::{LockEntry, Reporter};
use crate::{Context, Options, project_problem, snapshot};

/// Opens the database for a command that changes existing history (`down`,
/// `repair`, `resolve`): refuses a database with no airlock history without
/// creating anything there, then takes the lease.
pub(crate) async fn locked(
    options: &Options,
    command: &str,
    reporter: &mut dyn Reporter,
) -> Result<(Discovered, Context, Box<dyn Driver>, HeldLease), ExecError> {
    let discovered = options.discover()?;
    let ctx = Context::new(options);
    let mut driver = crate::connect(&options.url, false).await.map_err(ExecError::Connect)?;
    let state = driver.read_state().await.map_err(ExecError::db("reading airlock's tables"))?;
    if state.history.is_empty() {
        return Err(ExecError::Usage(format!(
            "nothing to {command}: {} has no airlock history (is this the right database?)",
            options.url
        )));
    }
    retry_conflicts!(driver.ensure_tables().await).map_err(ExecError::db("creating airlock's tables"))?;
    let held = lease::acquire(driver.as_mut(), &ctx, reporter).await?;
    Ok((discovered, ctx, driver, held))
}

pub(crate) async fn read_checked(driver: &mut dyn Driver, ctx: &Context) -> Result<Vec<HistoryRecord>, ExecError> {
    let snap = snapshot(driver, ctx).await?;
    if let Some(problem) = project_problem(snap.project.as_deref(), ctx.options.project.as_deref(), &ctx.options.url) {
        return Err(ExecError::Blocked { problems: vec![problem] });
    }
    Ok(snap.history)
}

pub(crate) fn find<'a>(history: &'a [HistoryRecord], version: &Version) -> Option<&'a HistoryRecord> {
    history.iter().find(|r| &r.version == version)
}

pub(crate) fn event(kind: &str, version: &Version, detail: serde_json::Value) -> Event {
    Event { kind: kind.to_owned(), version: Some(version.clone()), detail: detail.to_string() }
}

/// Frees the run lock: at once when its holder is gone; with `force`, also
/// from a holder that looks alive (for a process on another machine airlock
/// cannot see). Recorded. Returns the holder that was freed, if any.
pub async fn unlock(options: &Options, force: bool, reason: Option<&str>) -> Result<Option<LockEntry>, ExecError> {
    let ctx = Context::new(options);
    let mut driver = crate::connect(&options.url, false).await.map_err(ExecError::Connect)?;
    let freed = lease::unlock(driver.as_mut(), &ctx, force, reason).await?;
    Ok(freed.as_ref().map(LockEntry::from))
}
