//! `airlock expand`: reads the live table a statement changes (its column,
//! indexes, constraints and the foreign keys that point at it) and returns
//! the expand/contract migrations for it (`airlock_plan::expand`), which the
//! command line writes as files. Reads only; changes nothing.

use airlock_core::{RunState, Version};
use airlock_plan::expand::{Change, Expansion, IndexDefinition, StatementChange, change_of, expand};

use crate::{Context, ExecError, Options, snapshot};

/// The phases of `sql` against the live database. `replacing`: the version
/// of the file being expanded, refused if it is applied already.
pub async fn expansion(options: &Options, sql: &str, replacing: Option<&Version>) -> Result<Expansion, ExecError> {
    let dialect = options.profile().dialect;
    let refused = |why: String| ExecError::Usage(format!("cannot expand `{}`: {why}", one_line(sql)));
    let request = change_of(sql, dialect).map_err(|r| refused(r.0))?;
    let table_name = &request.table;
    if crate::database_file_missing(options) {
        return Err(refused(format!("the database {} does not exist yet", options.url)));
    }
    let mut driver = crate::connect_read_only(&options.url).await.map_err(ExecError::Connect)?;
    driver.begin_read_only().await.map_err(ExecError::db("opening a read-only transaction"))?;
    let catalog = driver.load_catalog().await.map_err(ExecError::db("reading the live schema"));
    let snap = snapshot(driver.as_mut(), &Context::new(options)).await;
    let _ = driver.rollback().await;
    let (catalog, snap) = (catalog?, snap?);
    // The newest record of each version says where it stands.
    let state_of = |version: &Version| snap.history.iter().rev().find(|r| &r.version == version).map(|r| r.state);
    if let Some(version) = replacing {
        match state_of(version) {
            Some(s) if s.is_applied() => {
                return Err(refused(format!(
                    "migration {version} is applied to {} already: expand a change before it runs, or write its reverse as a new migration",
                    options.url
                )));
            }
            None | Some(RunState::RolledBack) => {}
            Some(s) => {
                return Err(refused(format!(
                    "migration {version} is {} in {}: see `airlock status`, and resolve it first",
                    s.as_str(),
                    options.url
                )));
            }
        }
    }
    // The phases are written from the live table: one a pending migration
    // changes first (an index, NOT NULL, a wider type) would be read wrong.
    let discovered = options.discover()?;
    let pending: Vec<String> = discovered
        .migrations
        .iter()
        .filter(|m| Some(&m.version) != replacing && !state_of(&m.version).is_some_and(RunState::is_applied))
        .map(|m| {
            let contract = if m.directives.contract { ", a contract: `airlock migrate --contract`" } else { "" };
            format!("{} ({}{contract})", m.version, m.name)
        })
        .collect();
    if !pending.is_empty() {
        return Err(refused(format!(
            "{} {} pending in {}: expand reads the live table, which {} may still change; apply {} first",
            pending.join(", "),
            if pending.len() == 1 { "is" } else { "are" },
            options.url,
            if pending.len() == 1 { "it" } else { "they" },
            if pending.len() == 1 { "it" } else { "them" },
        )));
    }
    let Some(table) = catalog.table(table_name).table() else {
        return Err(refused(format!(
            "there is no table `{table_name}` in {}: expand reads the live column it changes; apply the migrations before it first",
            options.url
        )));
    };
    // A table rename builds no index again.
    let indexes = match request.change {
        StatementChange::Known(Change::RenameTable { .. }) => Vec::new(),
        _ => driver
            .index_definitions(table_name)
            .await
            .map_err(ExecError::db("reading the table's indexes"))?
            .into_iter()
            .map(|(name, definition)| IndexDefinition { name, definition })
            .collect(),
    };
    expand(&request, table, &catalog, &indexes, dialect).map_err(|r| refused(r.0))
}

fn one_line(sql: &str) -> String {
    let text = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    text.trim_end_matches(';').to_owned()
}
