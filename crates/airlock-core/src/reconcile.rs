//! Deciding what to run: a pure function of the discovered migrations, the history and the settings.

use similar::TextDiff;

use crate::checksum::normalize;
use crate::history::{HistoryRecord, RunMode, RunState};
use crate::migration::Migration;
use crate::version::Version;

/// Settings that change what is pending.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Apply only up to this version (`--to`).
    pub target: Option<Version>,
    /// Allow a pending migration below the newest applied one (`out_of_order = true`).
    pub out_of_order: bool,
    /// Another process holds a live run lease right now.
    pub run_in_progress: bool,
}

/// What kind of problem; the stable `code` in JSON output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemCode {
    /// An applied migration's file changed.
    ChecksumMismatch,
    /// History has an applied version with no file here.
    UnknownApplied,
    /// A non-transactional migration failed part-way.
    Failed,
    /// A transactional migration failed and was rolled back; it will be retried.
    FailedRolledBack,
    /// A non-transactional migration was cut off (the process died).
    Interrupted,
    /// A migration is being applied by another process now.
    InProgress,
    /// A pending migration sorts below an applied one.
    OutOfOrder,
    /// An applied migration's file has another name now.
    Renamed,
    /// The database is stamped with another project (or this run names none).
    WrongProject,
    /// Another tool migrated this database and airlock has not adopted it.
    ForeignHistory,
    /// A file of the migrations directory cannot be read as a migration.
    UnreadableFile,
    /// `adopt` on a database airlock already runs.
    AlreadyManaged,
    /// The live schema differs from the applied migrations' where a pending migration changes it.
    Drift,
    /// A backfill was paused or cancelled (`airlock backfill pause|cancel`).
    BackfillHeld,
    /// The server is a cluster node that should not take a migration now (a Galera node not `Synced`).
    ClusterNode,
}

impl ProblemCode {
    /// The kebab-case code.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemCode::ChecksumMismatch => "checksum-mismatch",
            ProblemCode::UnknownApplied => "unknown-applied",
            ProblemCode::Failed => "failed",
            ProblemCode::FailedRolledBack => "failed-rolled-back",
            ProblemCode::Interrupted => "interrupted",
            ProblemCode::InProgress => "in-progress",
            ProblemCode::OutOfOrder => "out-of-order",
            ProblemCode::Renamed => "renamed",
            ProblemCode::WrongProject => "wrong-project",
            ProblemCode::ForeignHistory => "foreign-history",
            ProblemCode::UnreadableFile => "unreadable-file",
            ProblemCode::AlreadyManaged => "already-managed",
            ProblemCode::Drift => "drift",
            ProblemCode::BackfillHeld => "backfill-held",
            ProblemCode::ClusterNode => "cluster-node",
        }
    }
}

/// What stayed applied of a migration that stopped after `done` statements
/// outside a transaction: "no statement of it was applied", "statement 1
/// stayed applied", "statements 1 to 3 stayed applied".
pub fn statements_kept(done: usize) -> String {
    match done {
        0 => "no statement of it was applied".to_owned(),
        1 => "statement 1 stayed applied".to_owned(),
        n => format!("statements 1 to {n} stayed applied"),
    }
}

/// Something wrong between the files and the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Stable code.
    pub code: ProblemCode,
    /// The version concerned.
    pub version: Option<Version>,
    /// What is wrong and what to do, in a sentence or two.
    pub message: String,
    /// More text to show under the message, e.g. a diff.
    pub detail: Option<String>,
    /// Whether `migrate` must refuse to run (exit 3).
    pub blocking: bool,
}

/// The outcome of comparing files with history.
#[derive(Clone, Debug)]
pub struct Reconciliation<'a> {
    /// History records of applied migrations, in version order.
    pub applied: Vec<&'a HistoryRecord>,
    /// Migrations to apply, in order (bounded by the target).
    pub pending: Vec<&'a Migration>,
    /// Migrations after the target, not to be applied now.
    pub beyond_target: Vec<&'a Migration>,
    /// Problems, blocking first.
    pub problems: Vec<Problem>,
}

impl Reconciliation<'_> {
    /// Whether any problem forbids applying migrations.
    pub fn is_blocked(&self) -> bool {
        self.problems.iter().any(|p| p.blocking)
    }

    /// The newest applied version.
    pub fn current_version(&self) -> Option<&Version> {
        self.applied.iter().map(|r| &r.version).max()
    }
}

/// A unified diff of the applied text against the file, for the checksum message.
pub fn checksum_diff(applied: &str, current: &str, path: &str) -> String {
    // Normalized texts end without a newline; the diff compares lines, so
    // each gets its newline back (else it says "No newline at end of file"
    // about a difference that is not there).
    let lines = |text: &str| {
        let mut text = normalize(text);
        if !text.is_empty() {
            text.push('\n');
        }
        text
    };
    let (old, new) = (lines(applied), lines(current));
    TextDiff::from_lines(&old, &new).unified_diff().context_radius(2).header("applied (from history)", path).to_string()
}

fn resolve_help(version: &Version, first_left: u32) -> String {
    format!(
        "fix the cause, then run one of: `airlock resolve {version} --retry-from-failed` (runs statements {first_left} onward), \
         `airlock resolve {version} --mark-applied` (you completed it by hand), \
         `airlock resolve {version} --mark-rolled-back` (you undid what it applied)"
    )
}

/// Compares the migration files with the history records.
///
/// `migrations` must be sorted by version (as [`crate::discovery::discover`] returns them).
pub fn reconcile<'a>(
    migrations: &'a [Migration],
    history: &'a [HistoryRecord],
    settings: &Settings,
) -> Reconciliation<'a> {
    // Sorted lists searched by halving, not trees: this runs over the whole
    // history on every run. Discovery gives the files sorted already.
    let mut files: Vec<&Migration> = migrations.iter().collect();
    if !files.is_sorted_by(|a, b| a.version <= b.version) {
        files.sort_by(|a, b| a.version.cmp(&b.version));
    }
    let file_of = |version: &Version| files.binary_search_by(|m| m.version.cmp(version)).ok().map(|i| files[i]);
    let mut records: Vec<&HistoryRecord> = history.iter().collect();
    records.sort_by(|a, b| a.version.cmp(&b.version));

    let mut problems = Vec::new();
    let mut applied = Vec::new();
    // Versions whose history decides them, in order (records are sorted).
    let mut settled: Vec<&Version> = Vec::with_capacity(records.len());
    for record in records {
        let file = file_of(&record.version);
        let version = record.version.clone();
        let mut problem = |code, blocking, message: String, detail: Option<String>| {
            problems.push(Problem { code, version: Some(version.clone()), message, detail, blocking });
        };
        match record.state {
            RunState::RolledBack => continue,
            RunState::Succeeded | RunState::Adopted => {
                applied.push(record);
                settled.push(&record.version);
            }
            RunState::RollingBack => {
                settled.push(&record.version);
                problem(
                    ProblemCode::Interrupted,
                    true,
                    format!(
                        "the down script of migration {} ({}) ran outside a transaction and did not finish{}: the schema is partly rolled back; \
                         finish or undo it by hand, then `airlock resolve {v} --mark-rolled-back --reason ...` or `airlock resolve {v} --mark-applied --reason ...`",
                        record.version,
                        record.name,
                        record.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default(),
                        v = record.version
                    ),
                    None,
                );
                continue;
            }
            RunState::Running if settings.run_in_progress => {
                settled.push(&record.version);
                problem(
                    ProblemCode::InProgress,
                    true,
                    format!(
                        "migration {} ({}) is being applied now: statement {} of {} done",
                        record.version, record.name, record.statements_done, record.statements_total
                    ),
                    None,
                );
                continue;
            }
            RunState::Running | RunState::Failed if record.mode == RunMode::Transaction => {
                // Rolled back with its transaction: nothing of it stayed; it is pending again.
                let what = record.error.as_deref().unwrap_or("the run was cut off");
                problem(
                    ProblemCode::FailedRolledBack,
                    false,
                    format!(
                        "the last attempt at migration {} ({}) failed at statement {} and was rolled back: {what}; it will be retried",
                        record.version,
                        record.name,
                        record.failed_statement.unwrap_or(0)
                    ),
                    None,
                );
                continue;
            }
            RunState::Running => {
                settled.push(&record.version);
                problem(
                    ProblemCode::Interrupted,
                    true,
                    format!(
                        "migration {} ({}) was cut off while running outside a transaction (by {}@{} at {}): {} of {} statements completed, and statement {} may or may not have been applied; check the schema, then {}",
                        record.version,
                        record.name,
                        record.os_user,
                        record.host,
                        record.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                        record.statements_done,
                        record.statements_total,
                        record.statements_done + 1,
                        resolve_help(&record.version, record.statements_done + 1)
                    ),
                    None,
                );
                continue;
            }
            RunState::Failed => {
                settled.push(&record.version);
                let failed_at = record.failed_statement.unwrap_or(record.statements_done + 1);
                problem(
                    ProblemCode::Failed,
                    true,
                    format!(
                        "migration {} ({}) failed at statement {} of {}: {}; it ran outside a transaction, so {}; {}",
                        record.version,
                        record.name,
                        failed_at,
                        record.statements_total,
                        record.error.as_deref().unwrap_or("unknown error"),
                        statements_kept(record.statements_done as usize),
                        resolve_help(&record.version, failed_at)
                    ),
                    None,
                );
                continue;
            }
        }
        let Some(file) = file else {
            problem(
                ProblemCode::UnknownApplied,
                true,
                format!(
                    "migration {} ({}) is applied in this database but has no file in the migrations directory: is this the right database, and is this checkout up to date? airlock never un-applies a migration it does not know",
                    record.version, record.name
                ),
                None,
            );
            continue;
        };
        if file.checksum != record.checksum {
            let path = file.up.path.display().to_string();
            problem(
                ProblemCode::ChecksumMismatch,
                true,
                format!(
                    "`{path}` was changed after migration {} was applied ({}); applied migrations are immutable: restore the file and put the change in a new migration, or, if the database already matches the new text, run `airlock repair --accept {} --reason \"...\"`",
                    record.version,
                    record.finished_at.unwrap_or(record.started_at).format("%Y-%m-%d %H:%M:%S UTC"),
                    record.version
                ),
                Some(checksum_diff(&record.up_sql, &file.up.sql, &path)),
            );
        } else if file.name != record.name {
            problem(
                ProblemCode::Renamed,
                false,
                format!(
                    "migration {} was applied as `{}` and its file is now named `{}`; the text is unchanged, so this is only a note",
                    record.version, record.name, file.name
                ),
                None,
            );
        }
    }
    // Unknown versions in a non-final state were reported above through their state.
    for record in history {
        if matches!(record.state, RunState::Failed | RunState::Running)
            && record.mode == RunMode::Statements
            && file_of(&record.version).is_none()
        {
            problems.push(Problem {
                code: ProblemCode::UnknownApplied,
                version: Some(record.version.clone()),
                message: format!(
                    "migration {} ({}) is {} in this database but has no file here: is this the right database?",
                    record.version,
                    record.name,
                    record.state.as_str()
                ),
                detail: None,
                blocking: true,
            });
        }
    }

    let newest_applied = applied.iter().map(|r| &r.version).max().cloned();
    let mut pending = Vec::new();
    let mut beyond_target = Vec::new();
    for migration in migrations {
        if settled.binary_search(&&migration.version).is_ok() {
            continue;
        }
        if let Some(newest) = &newest_applied {
            if &migration.version < newest {
                problems.push(Problem {
                    code: ProblemCode::OutOfOrder,
                    version: Some(migration.version.clone()),
                    message: format!(
                        "migration {} ({}) is pending but the newer {newest} is already applied (a branch merged late?); give it a version above {newest}, or set `out_of_order = true` in airlock.toml to apply it anyway",
                        migration.version, migration.name
                    ),
                    detail: None,
                    blocking: !settings.out_of_order,
                });
            }
        }
        match &settings.target {
            Some(target) if &migration.version > target => beyond_target.push(migration),
            _ => pending.push(migration),
        }
    }
    problems.sort_by_key(|p| !p.blocking);
    Reconciliation { applied, pending, beyond_target, problems }
}

#[cfg(test)]
mod kept_tests {
    #[test]
    fn what_stayed_applied_is_said_in_words() {
        assert_eq!(super::statements_kept(0), "no statement of it was applied");
        assert_eq!(super::statements_kept(1), "statement 1 stayed applied");
        assert_eq!(super::statements_kept(3), "statements 1 to 3 stayed applied");
    }
}

#[cfg(test)]
mod diff_tests {
    #[test]
    fn the_checksum_diff_shows_only_real_differences() {
        let diff = super::checksum_diff("CREATE TABLE t (a int);\n", "CREATE TABLE t (a bigint);", "1_t.up.sql");
        assert!(diff.contains("-CREATE TABLE t (a int);") && diff.contains("+CREATE TABLE t (a bigint);"), "{diff}");
        assert!(!diff.contains("No newline"), "{diff}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::RunMode;
    use crate::migration::{Directives, Kind, Script};
    use chrono::Utc;

    fn migration(version: &str, sql: &str) -> Migration {
        Migration {
            version: Version::parse(version).unwrap(),
            name: format!("m{version}"),
            kind: Kind::Schema,
            up: Script { path: format!("{version}_m{version}.up.sql").into(), sql: sql.to_owned(), line_offset: 0 },
            down: None,
            directives: Directives::default(),
            down_directives: Directives::default(),
            checksum: crate::checksum::checksum(sql),
        }
    }

    fn record(m: &Migration, state: RunState, mode: RunMode) -> HistoryRecord {
        HistoryRecord {
            version: m.version.clone(),
            name: m.name.clone(),
            kind: m.kind,
            checksum: m.checksum.clone(),
            up_sql: m.up.sql.clone(),
            down_sql: None,
            state,
            mode,
            statements_done: 1,
            statements_total: 3,
            failed_statement: Some(2),
            error: Some("boom".into()),
            started_at: Utc::now(),
            finished_at: None,
            duration_ms: None,
            os_user: "u".into(),
            host: "h".into(),
            airlock_version: "0".into(),
        }
    }

    fn codes(r: &Reconciliation) -> Vec<&'static str> {
        r.problems.iter().map(|p| p.code.as_str()).collect()
    }

    fn versions(ms: &[&Migration]) -> Vec<String> {
        ms.iter().map(|m| m.version.to_string()).collect()
    }

    #[test]
    fn fresh_database_has_everything_pending() {
        let ms = vec![migration("1", "a"), migration("2", "b")];
        let r = reconcile(&ms, &[], &Settings::default());
        assert_eq!(versions(&r.pending), ["1", "2"]);
        assert!(r.problems.is_empty());
        assert_eq!(r.current_version(), None);
    }

    #[test]
    fn applied_ones_are_not_pending_and_target_bounds() {
        let ms = vec![migration("1", "a"), migration("2", "b"), migration("10", "c")];
        let h = vec![record(&ms[0], RunState::Succeeded, RunMode::Transaction)];
        let settings = Settings { target: Some(Version::parse("2").unwrap()), ..Settings::default() };
        let r = reconcile(&ms, &h, &settings);
        assert_eq!(versions(&r.pending), ["2"]);
        assert_eq!(versions(&r.beyond_target), ["10"]);
        assert_eq!(r.current_version().unwrap().to_string(), "1");
    }

    #[test]
    fn changed_file_blocks_with_a_diff() {
        let ms = vec![migration("1", "CREATE TABLE a (id int);\n")];
        let mut h = vec![record(&ms[0], RunState::Succeeded, RunMode::Transaction)];
        h[0].up_sql = "CREATE TABLE a (id bigint);\n".into();
        h[0].checksum = crate::checksum::checksum(&h[0].up_sql);
        let r = reconcile(&ms, &h, &Settings::default());
        assert_eq!(codes(&r), ["checksum-mismatch"]);
        assert!(r.is_blocked());
        let diff = r.problems[0].detail.as_deref().unwrap();
        assert!(diff.contains("-CREATE TABLE a (id bigint);"), "{diff}");
        assert!(diff.contains("+CREATE TABLE a (id int);"), "{diff}");
    }

    #[test]
    fn unknown_applied_versions_block_and_nothing_is_unapplied() {
        let ms = vec![migration("1", "a")];
        let other = migration("7", "x");
        let h = vec![
            record(&ms[0], RunState::Succeeded, RunMode::Transaction),
            record(&other, RunState::Succeeded, RunMode::Transaction),
        ];
        let r = reconcile(&ms, &h, &Settings::default());
        assert_eq!(codes(&r), ["unknown-applied"]);
        assert_eq!(r.problems[0].version.as_ref().unwrap().to_string(), "7");
        assert!(r.pending.is_empty());
    }

    #[test]
    fn transactional_failure_is_retried_partial_one_blocks() {
        let ms = vec![migration("1", "a"), migration("2", "b")];
        let h = vec![record(&ms[0], RunState::Failed, RunMode::Transaction)];
        let r = reconcile(&ms, &h, &Settings::default());
        assert_eq!(codes(&r), ["failed-rolled-back"]);
        assert!(!r.is_blocked());
        assert_eq!(versions(&r.pending), ["1", "2"]);

        let h = vec![record(&ms[0], RunState::Failed, RunMode::Statements)];
        let r = reconcile(&ms, &h, &Settings::default());
        assert_eq!(codes(&r), ["failed"]);
        assert!(r.is_blocked());
        assert!(r.problems[0].message.contains("airlock resolve 1 --retry-from-failed"));
        assert_eq!(versions(&r.pending), ["2"]);
    }

    #[test]
    fn running_record_is_in_progress_or_interrupted() {
        let ms = vec![migration("1", "a")];
        let h = vec![record(&ms[0], RunState::Running, RunMode::Statements)];
        let live = Settings { run_in_progress: true, ..Settings::default() };
        assert_eq!(codes(&reconcile(&ms, &h, &live)), ["in-progress"]);
        let r = reconcile(&ms, &h, &Settings::default());
        assert_eq!(codes(&r), ["interrupted"]);
        assert!(r.problems[0].message.contains("statement 2 may or may not have been"));
    }

    #[test]
    fn late_migration_is_out_of_order_unless_allowed() {
        let ms = vec![migration("1", "a"), migration("2", "b"), migration("3", "c")];
        let h = vec![
            record(&ms[0], RunState::Succeeded, RunMode::Transaction),
            record(&ms[2], RunState::Succeeded, RunMode::Transaction),
        ];
        let r = reconcile(&ms, &h, &Settings::default());
        assert_eq!(codes(&r), ["out-of-order"]);
        assert!(r.is_blocked());
        let allowed = Settings { out_of_order: true, ..Settings::default() };
        let r = reconcile(&ms, &h, &allowed);
        assert!(!r.is_blocked());
        assert_eq!(versions(&r.pending), ["2"]);
    }

    #[test]
    fn rolled_back_is_pending_again_and_rename_is_a_note() {
        let ms = vec![migration("1", "a"), migration("2", "b")];
        let mut renamed = record(&ms[0], RunState::Succeeded, RunMode::Transaction);
        renamed.name = "old_name".into();
        let h = vec![renamed, record(&ms[1], RunState::RolledBack, RunMode::Transaction)];
        let r = reconcile(&ms, &h, &Settings::default());
        assert_eq!(codes(&r), ["renamed"]);
        assert!(!r.is_blocked());
        assert_eq!(versions(&r.pending), ["2"]);
    }
}
