//! `repair`: accepts the current text of an edited applied migration,
//! recording the old and new checksum, who and why.

use airlock_core::Version;
use serde_json::json;

use crate::Options;
use crate::admin::{event, find, locked, read_checked};
use crate::error::ExecError;
use crate::report::Reporter;

/// Accepts the current text of an applied migration whose file changed,
/// recording the old and new checksum, who and why. Returns the old checksum
/// (None when the file already matched).
pub async fn repair(
    options: &Options,
    version: Version,
    reason: &str,
    reporter: &mut dyn Reporter,
) -> Result<Option<String>, ExecError> {
    let (discovered, ctx, mut driver, held) = locked(options, "repair", reporter).await?;
    let outcome = async {
        let history = read_checked(driver.as_mut(), &ctx).await?;
        let record = find(&history, &version)
            .filter(|r| r.state.is_applied())
            .ok_or_else(|| ExecError::Usage(format!("migration {version} is not applied in this database; `repair --accept` only accepts edits to applied migrations")))?;
        let file = discovered
            .migrations
            .iter()
            .find(|m| m.version == version)
            .ok_or_else(|| ExecError::Usage(format!("migration {version} has no file in {}", options.source)))?;
        if file.checksum == record.checksum {
            return Ok(None);
        }
        let mut updated = record.clone();
        updated.checksum = file.checksum.clone();
        updated.up_sql = file.up.sql.clone();
        updated.name = file.name.clone();
        let ev = event(
            "repaired",
            &version,
            json!({ "old_checksum": record.checksum, "new_checksum": file.checksum, "reason": reason, "path": file.up.path }),
        );
        driver.write_history(&updated).await.map_err(ExecError::db("updating the checksum"))?;
        driver.append_event(&ev, &ctx.actor).await.map_err(ExecError::db("recording the repair"))?;
        Ok(Some(record.checksum.clone()))
    }
    .await;
    held.release(driver.as_mut()).await;
    outcome
}
