//! Backups before migrating: what the pending migrations put at stake
//! (`airlock_plan::stake`, statement by statement on the advancing schema
//! model), how much that is and how long saving it should take, and the
//! settings that say when a backup is taken and where it goes.

mod restore;
mod retain;
mod store;
mod stored;
mod take;

use std::path::PathBuf;
use std::time::Duration;

use airlock_core::schema::{Catalog, TableName};
use airlock_plan::Stake;
use serde::{Deserialize, Serialize};

use crate::human::human_bytes;

pub use restore::{RestoreRequest, Restored, RestoredTable, backup_restore};
pub use retain::Pruned;
pub(crate) use retain::prune;
pub use store::{Manifest, ManifestTable};
pub(crate) use stored::recent;
pub use stored::{BackupList, ListedBackup, Verified, backup_list, backup_verify};
pub(crate) use take::take;

/// What `migrate` saves before it changes anything (`backup` in airlock.toml).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupMode {
    /// The tables the pending migrations change; the whole database when
    /// one of them can change any table.
    Tables,
    /// The whole database.
    Database,
    /// Nothing.
    Off,
}

impl BackupMode {
    /// `"tables"`, `"database"` or `"off"`.
    pub fn parse(text: &str) -> Result<BackupMode, String> {
        match text {
            "tables" => Ok(BackupMode::Tables),
            "database" => Ok(BackupMode::Database),
            "off" => Ok(BackupMode::Off),
            _ => Err("use \"tables\", \"database\" or \"off\"".to_owned()),
        }
    }

    /// As airlock.toml writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupMode::Tables => "tables",
            BackupMode::Database => "database",
            BackupMode::Off => "off",
        }
    }
}

/// Where backups go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupStore {
    /// A local directory (`backup_dir`; default `.airlock/backups` beside airlock.toml).
    Directory(PathBuf),
    /// A shell command that receives each backup file on its standard input
    /// (`backup_command`), with `AIRLOCK_BACKUP_ID` and `AIRLOCK_BACKUP_FILE` set.
    Command(String),
}

/// A limit past which `migrate` takes a backup only when told to (`--backup`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupBudget {
    /// Estimated time.
    Time(Duration),
    /// Estimated size before compression, in bytes.
    Bytes(u64),
}

impl BackupBudget {
    /// `"10m"`, `"30s"` (time) or `"5GB"`, `"500MB"`, `"0"` (no budget).
    pub fn parse(text: &str) -> Result<Option<BackupBudget>, String> {
        let trimmed = text.trim();
        if trimmed == "0" {
            return Ok(None);
        }
        let upper = trimmed.to_ascii_uppercase();
        for (suffix, scale) in [("TB", 1u64 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1)] {
            if let Some(number) = upper.strip_suffix(suffix) {
                let n: f64 = number.trim().parse().map_err(|_| {
                    format!("`{trimmed}`: a size is a number and a unit (`500MB`, `5GB`), a time a duration (`10m`)")
                })?;
                if n <= 0.0 || !n.is_finite() {
                    return Err(format!("`{trimmed}`: must be more than 0, or \"0\" for no budget"));
                }
                return Ok(Some(BackupBudget::Bytes((n * scale as f64) as u64)));
            }
        }
        match airlock_core::migration::parse_duration(trimmed) {
            Ok(d) if d.is_zero() => Ok(None),
            Ok(d) => Ok(Some(BackupBudget::Time(d))),
            Err(e) => Err(format!("`{trimmed}`: {e}; or a size such as `5GB`")),
        }
    }

    /// Whether an estimate goes past it (an unknown estimate does not).
    fn exceeded_by(self, bytes: Option<u64>, seconds: Option<f64>) -> bool {
        match self {
            BackupBudget::Time(limit) => seconds.is_some_and(|s| s > limit.as_secs_f64()),
            BackupBudget::Bytes(limit) => bytes.is_some_and(|b| b > limit),
        }
    }
}

impl std::fmt::Display for BackupBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackupBudget::Time(d) => write!(f, "{} s", d.as_secs()),
            BackupBudget::Bytes(b) => f.write_str(&human_bytes(*b)),
        }
    }
}

/// `--backup` or `--no-backup`, over the environment's setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupChoice {
    /// Take one (the environment's mode, or `tables` where it is off), over budget or not.
    Take,
    /// Take none; in a protected environment only with a reason, which history keeps.
    Skip {
        /// Why (`--reason`).
        reason: Option<String>,
    },
}

/// The backup settings of a run.
#[derive(Clone, Debug)]
pub struct BackupSettings {
    /// The environment's mode (its default already applied: `tables` where
    /// protected, `off` elsewhere).
    pub mode: BackupMode,
    /// Where backups go.
    pub store: BackupStore,
    /// How many backups of this database to keep (older ones are deleted
    /// after a new one is verified). None: all.
    pub keep: Option<u32>,
    /// Backups older than this are deleted after a new one is verified. None: never.
    pub max_age: Option<Duration>,
    /// Past this estimate a backup is taken only with `--backup`.
    pub budget: Option<BackupBudget>,
    /// The flags of this run.
    pub choice: Option<BackupChoice>,
    /// `backup` is set in airlock.toml (not the protected environment's
    /// default): an engine that cannot back up refuses instead of warning.
    pub explicit: bool,
}

impl Default for BackupSettings {
    fn default() -> BackupSettings {
        BackupSettings {
            mode: BackupMode::Off,
            store: BackupStore::Directory(PathBuf::from(".airlock/backups")),
            keep: None,
            max_age: None,
            budget: None,
            choice: None,
            explicit: false,
        }
    }
}

impl BackupSettings {
    /// Why this run takes no backup though it should: the engine's driver
    /// cannot take one. An error when a backup was asked for (in airlock.toml
    /// or with `--backup`); a warning when it is only the protected
    /// environment's default. None when there is nothing to say.
    pub fn unsupported(&self, profile: &airlock_driver::Profile) -> Option<Result<String, String>> {
        if profile.capabilities.backups || self.effective_mode() == BackupMode::Off {
            return None;
        }
        let engine = profile.engine.name();
        let asked = self.explicit || self.choice == Some(BackupChoice::Take);
        Some(if asked {
            Err(format!(
                "backups before migrating are not supported on {engine} yet: set `backup = \"off\"` for this environment (and take one by hand), or run with --no-backup --reason TEXT"
            ))
        } else {
            Ok(format!(
                "backups before migrating are not supported on {engine} yet: none is taken (the default of a protected environment; say `backup = \"off\"` to silence this)"
            ))
        })
    }

    /// The mode this run uses, flags over settings.
    pub fn effective_mode(&self) -> BackupMode {
        match (&self.choice, self.mode) {
            (Some(BackupChoice::Skip { .. }), _) => BackupMode::Off,
            (Some(BackupChoice::Take), BackupMode::Off) => BackupMode::Tables,
            (_, mode) => mode,
        }
    }
}

/// Refuses `--no-backup` in a protected environment without a reason
/// (exit 3), before anything is read.
pub(crate) fn check_choice(options: &crate::Options) -> Result<(), crate::ExecError> {
    let skipped_silently = matches!(&options.backup.choice, Some(BackupChoice::Skip { reason: None }));
    if options.protected && skipped_silently && options.backup.mode != BackupMode::Off {
        return Err(crate::ExecError::Protected(format!(
            "`--no-backup` is refused: environment `{}` is protected and backs up {} before migrating; say why with `--reason TEXT` (kept in history), or let the backup run",
            options.environment.as_deref().unwrap_or("?"),
            match options.backup.mode {
                BackupMode::Database => "the database",
                _ => "the tables its migrations change",
            }
        )));
    }
    Ok(())
}

/// Throughput assumed for an estimate until backups of this database have
/// been timed: a dump with fast compression on a local disk streams
/// somewhat faster; a remote server, a slow disk or a busy one slower.
pub const DEFAULT_BYTES_PER_SECOND: f64 = 50.0 * 1024.0 * 1024.0;

/// A table a backup would hold.
#[derive(Clone, Debug, Serialize)]
pub struct StakedTable {
    /// As output shows it (schema-qualified outside the default ones).
    pub table: String,
    /// As the catalog resolves it, for the driver.
    #[serde(skip)]
    pub name: TableName,
    /// Estimated rows (catalog statistics).
    pub rows: Option<f64>,
    /// Total bytes, indexes included.
    pub bytes: Option<i64>,
    /// The first pending migration that changes it, `version (name)`.
    pub changed_by: String,
}

/// Why a backup of tables must hold the whole database.
#[derive(Clone, Debug, Serialize)]
pub struct Everything {
    /// Said to a person.
    pub why: String,
    /// The migration, `version (name)`.
    pub migration: String,
    /// The statement's 1-based line in its file.
    pub line: usize,
}

/// What the pending migrations put at stake, gathered migration by migration.
#[derive(Clone, Debug, Default)]
pub struct AtStake {
    /// Tables of the live database, each once, in the order first changed.
    pub tables: Vec<StakedTable>,
    /// The first statement that can change any table, if any.
    pub everything: Option<Everything>,
}

impl AtStake {
    /// Adds what one statement of `migration` (at `line`) puts at stake; `catalog` is the model before it.
    pub fn add(&mut self, stake: Stake, migration: &str, line: usize, catalog: &Catalog) {
        match stake {
            Stake::Everything(why) => {
                if self.everything.is_none() {
                    self.everything = Some(Everything { why, migration: migration.to_owned(), line });
                }
            }
            Stake::Tables(tables) => {
                for name in tables {
                    if self.tables.iter().any(|t| catalog.same_table(&t.name, &name)) {
                        continue;
                    }
                    let table = catalog.table(&name).table();
                    self.tables.push(StakedTable {
                        table: qualified(&name, catalog),
                        rows: table.and_then(|t| t.rows),
                        bytes: table.and_then(|t| t.bytes),
                        changed_by: migration.to_owned(),
                        name,
                    });
                }
            }
        }
    }
}

/// A name as output shows it: bare in a default schema, qualified elsewhere.
fn qualified(name: &TableName, catalog: &Catalog) -> String {
    match &name.schema {
        Some(schema) if !catalog.same_table(&TableName::bare(&name.name), name) => format!("{schema}.{}", name.name),
        _ => name.name.clone(),
    }
}

/// What a run would save before it changes anything, as `plan` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct BackupPlan {
    /// `tables`, `database` or `off`, as this run would take it.
    pub mode: BackupMode,
    /// `tables` was asked for, but a statement can change any table: the
    /// whole database is saved, and this says which and why.
    pub everything: Option<Everything>,
    /// The tables saved (in `database` mode, those the migrations change, for restoring one).
    pub tables: Vec<StakedTable>,
    /// What is saved, before compression (catalog sizes, indexes included), when known.
    pub estimated_bytes: Option<u64>,
    /// How long saving and verifying it should take.
    pub estimated_seconds: Option<f64>,
    /// What the store should keep of it (compressed), when past backups tell.
    pub estimated_stored_bytes: Option<u64>,
    /// What the time is reckoned from: `the last N backups' pace` or the
    /// built-in default throughput.
    pub pace: String,
    /// Where it goes.
    pub store: String,
    /// The estimate goes past `backup_budget`: `migrate` takes it only
    /// with `--backup` (or skips it with `--no-backup`).
    pub over_budget: Option<String>,
    /// The database is a file saved whole (its pages, through SQLite's
    /// backup API), whatever the mode: the tables are those to restore.
    pub whole_file: bool,
    /// The engine's driver cannot take backups yet: what `migrate` will do
    /// instead (refuse when one was asked for, else warn and go on).
    pub unsupported: Option<String>,
}

impl BackupPlan {
    /// The backup `settings` call for before migrations that put `stake` at
    /// stake on a database of `database_bytes` on the engine of `profile`.
    /// None when off.
    pub fn of(
        settings: &BackupSettings,
        stake: &AtStake,
        database_bytes: Option<u64>,
        profile: &airlock_driver::Profile,
        pace: Option<&crate::rates::BackupPace>,
    ) -> Option<BackupPlan> {
        let whole_file = profile.capabilities.local_file;
        let asked = settings.effective_mode();
        let mode = match (asked, &stake.everything) {
            (BackupMode::Off, _) => return None,
            (BackupMode::Tables, Some(_)) => BackupMode::Database,
            (mode, _) => mode,
        };
        let estimated_bytes = match mode {
            _ if whole_file => database_bytes,
            BackupMode::Database => database_bytes,
            _ => stake.tables.iter().map(|t| t.bytes.map(|b| b.max(0) as u64)).sum(),
        };
        let (estimated_seconds, estimated_stored_bytes, pace) = match pace {
            Some(p) => (
                estimated_bytes.map(|b| b as f64 / p.bytes_per_second),
                estimated_bytes.map(|b| (b as f64 * p.stored_per_byte).round() as u64),
                format!("at the pace of this database's last {} backup(s)", p.backups),
            ),
            // Written once, read back once to verify.
            None => (
                estimated_bytes.map(|b| 2.0 * b as f64 / DEFAULT_BYTES_PER_SECOND),
                None,
                format!(
                    "at a default {} per second, until a backup here is timed",
                    human_bytes(DEFAULT_BYTES_PER_SECOND as u64)
                ),
            ),
        };
        let over_budget = match (settings.budget, &settings.choice) {
            (Some(budget), None) if budget.exceeded_by(estimated_bytes, estimated_seconds) => {
                Some(format!("over the {budget} budget (`backup_budget`)"))
            }
            _ => None,
        };
        Some(BackupPlan {
            mode,
            everything: if asked == BackupMode::Tables { stake.everything.clone() } else { None },
            tables: stake.tables.clone(),
            estimated_bytes,
            estimated_seconds,
            estimated_stored_bytes,
            pace,
            store: match &settings.store {
                BackupStore::Directory(dir) => dir.display().to_string(),
                BackupStore::Command(command) => format!("command `{command}`"),
            },
            over_budget,
            whole_file,
            unsupported: settings.unsupported(profile).map(|said| match said {
                Ok(warned) => warned,
                Err(refused) => format!("`migrate` refuses: {refused}"),
            }),
        })
    }
}

/// The database's size as its catalog tells it (tables with their
/// indexes), when the catalog is live and knows every table's.
pub fn database_bytes(catalog: &Catalog) -> Option<u64> {
    if !catalog.live {
        return None;
    }
    catalog.database_bytes.or_else(|| catalog.tables().map(|t| t.bytes.map(|b| b.max(0) as u64)).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::schema::{Origin, Table};

    fn catalog() -> Catalog {
        let table = |name: &str, bytes: i64| {
            let mut t = Table::created(TableName::bare(name), "0");
            t.origin = Origin::Live;
            t.bytes = Some(bytes);
            t.rows = Some(bytes as f64 / 100.0);
            t
        };
        Catalog::live(vec![table("carts", 3 << 20), table("users", 1 << 20)])
    }

    fn pg() -> &'static airlock_driver::Profile {
        airlock_engines::profile(airlock_driver::Engine::Postgres)
    }

    fn settings(mode: BackupMode, choice: Option<BackupChoice>, budget: &str) -> BackupSettings {
        BackupSettings { mode, choice, budget: BackupBudget::parse(budget).unwrap(), ..BackupSettings::default() }
    }

    #[test]
    fn a_backup_of_tables_holds_each_changed_table_once_and_falls_back_to_the_database_when_it_must() {
        let catalog = catalog();
        let mut stake = AtStake::default();
        stake.add(Stake::Tables(vec![TableName::bare("carts")]), "1 (a)", 1, &catalog);
        stake.add(Stake::Tables(vec![TableName::bare("CARTS"), TableName::bare("users")]), "2 (b)", 3, &catalog);
        let names: Vec<(&str, &str)> = stake.tables.iter().map(|t| (t.table.as_str(), t.changed_by.as_str())).collect();
        assert_eq!(names, [("carts", "1 (a)"), ("users", "2 (b)")]);

        let plan =
            BackupPlan::of(&settings(BackupMode::Tables, None, "0"), &stake, Some(100 << 20), pg(), None).unwrap();
        assert_eq!((plan.mode, plan.estimated_bytes), (BackupMode::Tables, Some(4 << 20)));
        let plan =
            BackupPlan::of(&settings(BackupMode::Database, None, "0"), &stake, Some(100 << 20), pg(), None).unwrap();
        assert_eq!((plan.mode, plan.estimated_bytes), (BackupMode::Database, Some(100 << 20)));
        assert!(BackupPlan::of(&settings(BackupMode::Off, None, "0"), &stake, None, pg(), None).is_none());

        stake.add(Stake::Everything("a `CALL`".into()), "3 (c)", 7, &catalog);
        stake.add(Stake::Everything("later".into()), "4 (d)", 1, &catalog);
        let plan =
            BackupPlan::of(&settings(BackupMode::Tables, None, "0"), &stake, Some(100 << 20), pg(), None).unwrap();
        assert_eq!((plan.mode, plan.estimated_bytes), (BackupMode::Database, Some(100 << 20)));
        let everything = plan.everything.unwrap();
        assert_eq!((everything.why.as_str(), everything.migration.as_str(), everything.line), ("a `CALL`", "3 (c)", 7));
    }

    #[test]
    fn flags_win_over_the_environment_and_a_budget_asks_for_one() {
        let catalog = catalog();
        let mut stake = AtStake::default();
        stake.add(Stake::Tables(vec![TableName::bare("carts")]), "1 (a)", 1, &catalog);
        let take = Some(BackupChoice::Take);
        let skip = Some(BackupChoice::Skip { reason: Some("restored from a snapshot".into()) });
        assert_eq!(
            BackupPlan::of(&settings(BackupMode::Off, take.clone(), "0"), &stake, None, pg(), None).unwrap().mode,
            BackupMode::Tables
        );
        assert!(BackupPlan::of(&settings(BackupMode::Database, skip, "0"), &stake, None, pg(), None).is_none());

        let over = BackupPlan::of(&settings(BackupMode::Tables, None, "2MB"), &stake, None, pg(), None).unwrap();
        assert_eq!(over.over_budget.as_deref(), Some("over the 2 MB budget (`backup_budget`)"));
        assert!(
            BackupPlan::of(&settings(BackupMode::Tables, None, "4MB"), &stake, None, pg(), None)
                .unwrap()
                .over_budget
                .is_none()
        );
        // 3 MB written and read back at 50 MB/s: 0.12 s.
        assert!(
            BackupPlan::of(&settings(BackupMode::Tables, None, "1s"), &stake, None, pg(), None)
                .unwrap()
                .over_budget
                .is_none()
        );
        // `--backup` is the explicit yes.
        assert!(
            BackupPlan::of(&settings(BackupMode::Tables, take, "2MB"), &stake, None, pg(), None)
                .unwrap()
                .over_budget
                .is_none()
        );
        // This database's own backups went at 1 MB/s: 3 MB is over a 2 s budget.
        let slow = crate::rates::BackupPace { bytes_per_second: (1 << 20) as f64, stored_per_byte: 0.25, backups: 3 };
        let plan = BackupPlan::of(&settings(BackupMode::Tables, None, "2s"), &stake, None, pg(), Some(&slow)).unwrap();
        assert_eq!(plan.estimated_seconds, Some(3.0));
        assert_eq!(plan.estimated_stored_bytes, Some(3 << 18));
        assert_eq!(plan.pace, "at the pace of this database's last 3 backup(s)");
        assert_eq!(plan.over_budget.as_deref(), Some("over the 2 s budget (`backup_budget`)"));
    }

    #[test]
    fn budgets_are_times_or_sizes() {
        assert_eq!(BackupBudget::parse("10m"), Ok(Some(BackupBudget::Time(Duration::from_secs(600)))));
        assert_eq!(BackupBudget::parse("5GB"), Ok(Some(BackupBudget::Bytes(5 << 30))));
        assert_eq!(BackupBudget::parse("1.5 mb"), Ok(Some(BackupBudget::Bytes(3 << 19))));
        assert_eq!(BackupBudget::parse("0"), Ok(None));
        assert!(BackupBudget::parse("-1GB").unwrap_err().contains("more than 0"));
        assert!(BackupBudget::parse("lots").unwrap_err().contains("`lots`"));
    }
}
