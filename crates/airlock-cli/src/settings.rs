//! From flags, environment variables and airlock.toml to validated [`Options`].
//!
//! Database URL precedence: `--database-url`, then the `--env` environment's
//! `url`, then `DATABASE_URL`, then the top-level `url` of airlock.toml.
//! Paths in airlock.toml (`dir`, relative `sqlite:` files) are relative to the
//! file; paths on the command line are relative to the working directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock_core::migration::parse_duration;
use airlock_driver::DatabaseUrl;
use airlock_exec::{
    BackfillSettings, BackupBudget, BackupMode, BackupSettings, BackupStore, DriftCheck, LintSettings, Options,
};
use airlock_lint::{Baseline, Severity};
use serde::Deserialize;

use crate::args::Global;

/// A configuration or usage problem (exit 2).
#[derive(Debug)]
pub struct SettingsError(pub String);

/// airlock.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The project identity stamped on databases.
    pub project: Option<String>,
    /// Migrations directory, relative to the file.
    pub dir: Option<PathBuf>,
    /// Globs of files and folders in the migrations directory to leave out (`["*.rb", "schema.sql"]`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Default database URL.
    pub url: Option<String>,
    /// Globs of schema objects `drift` leaves out (`["table partman.*"]`).
    #[serde(default)]
    pub drift_ignore: Vec<String>,
    /// Where `rehearse --data` keeps heavy statements' times for `plan`'s
    /// estimates, relative to the file (default `.airlock/rehearsal-timings.json`).
    pub rehearsal_timings: Option<PathBuf>,
    /// Shared settings.
    #[serde(flatten)]
    pub tuning: Tuning,
    /// Named environments.
    #[serde(default)]
    pub environments: BTreeMap<String, Environment>,
    /// `[lint]`.
    #[serde(default)]
    pub lint: LintConfig,
    /// Named fleets: many databases migrated as one (`--fleet NAME`).
    #[serde(default)]
    pub fleets: BTreeMap<String, FleetConfig>,
}

/// `[fleets.NAME]`: the members (one of `urls`, `urls_command`,
/// `urls_query`) and how a rollout over them goes.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// The members' URLs, `${VAR}` expanded.
    pub urls: Option<Vec<String>>,
    /// A shell command (run in airlock.toml's directory) that prints the
    /// members, one a line: a URL, or a name and a URL.
    pub urls_command: Option<String>,
    /// A query whose rows are the members (a URL, or a name and a URL), run
    /// read-only on `catalog_url`.
    pub urls_query: Option<String>,
    /// The database `urls_query` reads.
    pub catalog_url: Option<String>,
    /// The environment whose settings every member takes (protected,
    /// backup, drift, timeouts); unset: the top level's.
    pub environment: Option<String>,
    /// Members migrated first, on their own (default 1).
    pub canary: Option<usize>,
    /// Members per stage after the canary: a number, or a share such as "25%" (default: all).
    pub stage_size: Option<CountOrShare>,
    /// Members migrated, or looked at, at the same time (default 4).
    pub parallel: Option<usize>,
}

/// A number, or a text such as "25%".
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CountOrShare {
    /// `stage_size = 10`.
    Count(usize),
    /// `stage_size = "25%"`.
    Text(String),
}

/// Where a fleet's members come from.
pub enum FleetSource {
    /// Listed: (name, URL) pairs, names given or not.
    Listed(Vec<(Option<String>, String)>),
    /// Printed by a shell command, run in `dir`.
    Command { command: String, dir: PathBuf },
    /// Rows of a query on a catalog database.
    Query { catalog: DatabaseUrl, sql: String },
}

/// A fleet as airlock.toml defines it.
pub struct Fleet {
    /// Its name.
    pub name: String,
    /// Where its members come from.
    pub source: FleetSource,
    /// How a rollout goes, before the command line's flags.
    pub rollout: airlock_exec::Rollout,
    /// The environment whose settings the members take.
    pub environment: Option<String>,
    /// airlock.toml's directory: relative `sqlite:` paths of members are read from there.
    base: PathBuf,
}

impl Fleet {
    /// The members' options, from the listed or printed `(name, URL)`
    /// pairs: each as `--database-url URL` under the fleet's environment.
    /// Names are the given ones or the URL with its password hidden; two
    /// members with the same URL or name are refused.
    pub fn members(
        &self,
        global: &Global,
        found: Vec<(Option<String>, String)>,
    ) -> Result<Vec<airlock_exec::Member>, SettingsError> {
        let what = |i: usize| format!("fleet `{}`, member {}", self.name, i + 1);
        if found.is_empty() {
            return Err(SettingsError(format!("fleet `{}` has no members", self.name)));
        }
        let mut members: Vec<airlock_exec::Member> = Vec::with_capacity(found.len());
        let mut seen = std::collections::HashMap::new();
        for (i, (name, url)) in found.into_iter().enumerate() {
            let url = anchor_sqlite(url, &self.base);
            let parsed = DatabaseUrl::parse(&url).map_err(|e| SettingsError(format!("{}: {e}", what(i))))?;
            let name = name.unwrap_or_else(|| parsed.to_string());
            for (what, shown, key) in [
                ("URL", parsed.to_string(), format!("url {}", parsed.expose())),
                ("name", name.clone(), format!("name {name}")),
            ] {
                if let Some(first) = seen.insert(key, i) {
                    return Err(SettingsError(format!(
                        "fleet `{}`: members {} and {} have the same {what} ({shown}): each database once",
                        self.name,
                        first + 1,
                        i + 1,
                    )));
                }
            }
            let member = Global { database_url: Some(url), environment: self.environment.clone(), ..global.clone() };
            let options = options(&member).map_err(|e| SettingsError(format!("{} ({name}): {}", what(i), e.0)))?;
            members.push(airlock_exec::Member { name, options });
        }
        Ok(members)
    }
}

/// The names of airlock.toml's fleets.
pub fn fleet_names(global: &Global) -> Result<Vec<String>, SettingsError> {
    Ok(load_config(global)?.0.fleets.into_keys().collect())
}

/// `[fleets.NAME]` of airlock.toml, checked: one source of members, a
/// stage size that reads, an environment that exists.
pub fn fleet(global: &Global, name: &str) -> Result<Fleet, SettingsError> {
    let (config, base) = load_config(global)?;
    let base = base.unwrap_or_default();
    let Some(f) = config.fleets.get(name) else {
        let known: Vec<&str> = config.fleets.keys().map(String::as_str).collect();
        return Err(SettingsError(format!(
            "--fleet {name}: no [fleets.{name}] in the configuration{}",
            if known.is_empty() { String::new() } else { format!(" (known: {})", known.join(", ")) }
        )));
    };
    let said = |why: String| SettingsError(format!("[fleets.{name}]: {why}"));
    let source = match (&f.urls, &f.urls_command, &f.urls_query) {
        (Some(urls), None, None) => FleetSource::Listed(
            urls.iter()
                .enumerate()
                .map(|(i, u)| expand(u, &format!("[fleets.{name}] urls[{i}]")).map(|u| (None, u)))
                .collect::<Result<_, _>>()?,
        ),
        (None, Some(command), None) => FleetSource::Command { command: command.clone(), dir: base.clone() },
        (None, None, Some(sql)) => {
            let catalog = f
                .catalog_url
                .as_ref()
                .ok_or_else(|| said("`urls_query` needs `catalog_url`, the database it reads".to_owned()))?;
            let catalog = anchor_sqlite(expand(catalog, &format!("[fleets.{name}] catalog_url"))?, &base);
            let catalog = DatabaseUrl::parse(&catalog).map_err(|e| said(format!("catalog_url: {e}")))?;
            FleetSource::Query { catalog, sql: sql.clone() }
        }
        (None, None, None) => return Err(said("no members: set `urls`, `urls_command` or `urls_query`".to_owned())),
        _ => return Err(said("set one of `urls`, `urls_command` and `urls_query`, not several".to_owned())),
    };
    if f.catalog_url.is_some() && f.urls_query.is_none() {
        return Err(said("`catalog_url` is read by `urls_query` only".to_owned()));
    }
    // The fleet's environment is the members' (protected, backups...): another given by --env would weaken it unnoticed.
    if let (Some(given), Some(own)) = (&global.environment, &f.environment)
        && given != own
    {
        return Err(said(format!("its members are in environment `{own}`: not with --env {given}")));
    }
    let environment = global.environment.clone().or_else(|| f.environment.clone());
    if let Some(env) = &environment
        && !config.environments.contains_key(env)
    {
        return Err(said(format!("environment `{env}`: no [environments.{env}] in the configuration")));
    }
    let mut rollout = airlock_exec::Rollout::default();
    if let Some(canary) = f.canary {
        rollout.canary = canary;
    }
    if let Some(size) = &f.stage_size {
        let text = match size {
            CountOrShare::Count(n) => n.to_string(),
            CountOrShare::Text(t) => t.clone(),
        };
        rollout.stage_size = airlock_exec::StageSize::parse(&text).map_err(|e| said(format!("stage_size = {e}")))?;
    }
    match f.parallel {
        Some(0) => return Err(said("`parallel = 0`: at least 1".to_owned())),
        Some(n) => rollout.parallel = n,
        None => {}
    }
    Ok(Fleet { name: name.to_owned(), source, rollout, environment, base })
}

/// A member line as a command prints it or a row as a query returns it:
/// a URL, or a name and a URL. None for a blank line or a `#` comment.
pub fn member_line(fields: &[&str]) -> Result<Option<(Option<String>, String)>, String> {
    match fields {
        [] => Ok(None),
        [first, ..] if first.starts_with('#') => Ok(None),
        [url] => Ok(Some((None, (*url).to_owned()))),
        [name, url] => Ok(Some((Some((*name).to_owned()), (*url).to_owned()))),
        _ => Err(format!("`{}`: a URL, or a name and a URL", fields.join(" "))),
    }
}

/// `[lint]` in airlock.toml.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LintConfig {
    /// Severity per rule id: `error`, `warning`, `info` or `off`.
    #[serde(default)]
    pub rules: BTreeMap<String, String>,
    /// A baseline file (relative to airlock.toml): findings of unchanged files it records are held back.
    pub baseline: Option<PathBuf>,
}

/// Settings an environment may override.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    /// Lock timeout per statement, e.g. "5s".
    pub lock_timeout: Option<String>,
    /// Statement timeout, "0" for none.
    pub statement_timeout: Option<String>,
    /// Retries after a lock timeout.
    pub lock_retries: Option<u32>,
    /// First backoff before a retry.
    pub lock_retry_backoff: Option<String>,
    /// How long to wait for another run's lock.
    pub lock_wait: Option<String>,
    /// Lease time to live without heartbeat.
    pub lease_ttl: Option<String>,
    /// Allow out-of-order pending migrations.
    pub out_of_order: Option<bool>,
    /// Time budget of each data check (`plan`, and `migrate` before each migration), e.g. "30s".
    pub check_timeout: Option<String>,
    /// A statement estimated to take longer is risky, e.g. "5m"; "0" for no budget.
    pub estimate_budget: Option<String>,
    /// Before `migrate` runs, compare the schema with the applied migrations
    /// replayed: "warn", "refuse" or "off" (default: "warn" in protected
    /// environments, "off" elsewhere).
    pub drift: Option<String>,
    /// An empty database lent to `rehearse` and `drift`'s replay (emptied
    /// again after); unset: a temporary one is made beside the target.
    pub rehearsal_url: Option<String>,
    /// What `migrate` saves first: "tables", "database" or "off" (default:
    /// "tables" in protected environments, "off" elsewhere).
    pub backup: Option<String>,
    /// Where backups go: a directory, relative to the file (default `.airlock/backups`).
    pub backup_dir: Option<String>,
    /// Or a shell command that receives each backup on its standard input.
    pub backup_command: Option<String>,
    /// How many backups of a database to keep.
    pub backup_keep: Option<u32>,
    /// Backups older than this are deleted, e.g. "30d".
    pub backup_max_age: Option<String>,
    /// Past this estimate ("10m", "5GB") a backup is taken only with `--backup`.
    pub backup_budget: Option<String>,
    /// The duration each backfill batch aims at, e.g. "200ms".
    pub batch_target: Option<String>,
    /// The smallest backfill batch, in rows.
    pub batch_min: Option<u64>,
    /// The largest backfill batch, in rows.
    pub batch_max: Option<u64>,
    /// A backfill passes over at most this many rows per second.
    pub max_rows_per_second: Option<u64>,
    /// How long a backfill batch waits for a lock before it is tried again, smaller.
    pub batch_lock_timeout: Option<String>,
    /// Replicas of the database (URLs, `${VAR}` expanded): backfill batches
    /// wait while one replays more than `max_replica_lag` behind.
    pub replicas: Option<Vec<String>>,
    /// How far behind a replica may replay, e.g. "5s".
    pub max_replica_lag: Option<String>,
    /// After a migration whose locks replicas replay, wait up to this long (e.g. "2m") for them to catch up.
    pub wait_for_replicas: Option<String>,
}

/// `[environments.NAME]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// URL, `${VAR}` expanded.
    pub url: Option<String>,
    /// Refuse `down` here, and risky statements without an allow.
    #[serde(default)]
    pub protected: bool,
    /// Overrides.
    #[serde(flatten)]
    pub tuning: Tuning,
}

/// Expands `${VAR}` from the environment; a missing variable is an error naming it.
pub fn expand(text: &str, what: &str) -> Result<String, SettingsError> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| SettingsError(format!("{what}: unclosed `${{` in `{}`", airlock_driver_redact(text))))?;
        let name = &after[..end];
        let value = std::env::var(name).map_err(|_| {
            SettingsError(format!("{what} uses ${{{name}}}, but the environment variable {name} is not set"))
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn airlock_driver_redact(text: &str) -> String {
    DatabaseUrl::parse(text).map(|u| u.to_string()).unwrap_or_else(|_| "…".to_owned())
}

fn duration(value: &Option<String>, key: &str, default: Duration) -> Result<Duration, SettingsError> {
    match value {
        None => Ok(default),
        Some(text) => parse_duration(text).map_err(|e| SettingsError(format!("`{key} = \"{text}\"`: {e}"))),
    }
}

/// A data check's time budget (`--check-timeout`, `check_timeout`): a
/// duration above zero, since a check without one could run for hours on production.
pub fn check_budget(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(d) if d.is_zero() => {
            Err("must be more than 0: a check without a budget could run for hours on production".to_owned())
        }
        Ok(d) => Ok(d),
        Err(e) => Err(e),
    }
}

/// Reads the config file named by `--config`, or airlock.toml when present.
/// `airlock.toml` in the working directory, else in the nearest directory
/// above it, as cargo finds `Cargo.toml`; the search stops at the
/// repository's root (a directory with `.git`), so a stray file above the
/// project is never picked up.
fn find_config() -> Option<PathBuf> {
    let here = PathBuf::from("airlock.toml");
    if here.is_file() {
        return Some(here);
    }
    let cwd = std::env::current_dir().ok()?;
    if cwd.join(".git").exists() {
        // The repository's root: nothing above it is the project's.
        return None;
    }
    for dir in cwd.ancestors().skip(1) {
        let candidate = dir.join("airlock.toml");
        if candidate.is_file() {
            return Some(candidate);
        }
        if dir.join(".git").exists() {
            break;
        }
    }
    None
}

/// Keys each table of airlock.toml takes, for naming an unknown one.
const TUNING_KEYS: [&str; 25] = [
    "lock_timeout",
    "statement_timeout",
    "lock_retries",
    "lock_retry_backoff",
    "lock_wait",
    "lease_ttl",
    "out_of_order",
    "check_timeout",
    "estimate_budget",
    "drift",
    "rehearsal_url",
    "backup",
    "backup_dir",
    "backup_command",
    "backup_keep",
    "backup_max_age",
    "backup_budget",
    "batch_target",
    "batch_min",
    "batch_max",
    "max_rows_per_second",
    "batch_lock_timeout",
    "replicas",
    "max_replica_lag",
    "wait_for_replicas",
];

/// A parse error of airlock.toml, pointed at the offending key's own line:
/// the parser puts an unknown key at its table's first line.
fn config_error(path: &Path, text: &str, e: &toml::de::Error) -> SettingsError {
    let message = e.message().trim();
    let unknown = message.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next());
    let (Some(key), Some(span)) = (unknown, e.span()) else {
        return SettingsError(format!("{}: {e}", path.display()));
    };
    let start_line = text[..span.start.min(text.len())].matches('\n').count();
    let at = text.lines().enumerate().skip(start_line).find(|(_, line)| {
        let line = line.trim_start();
        line.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    // The table the key is in: the nearest header at or above where the parser points.
    let table = text
        .lines()
        .take(start_line + 1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['));
    let known: Vec<&str> = match table {
        Some(t) if t.starts_with("[environments.") => ["url", "protected"].into_iter().chain(TUNING_KEYS).collect(),
        Some(t) if t.starts_with("[lint") => vec!["rules", "baseline"],
        Some(t) if t.starts_with("[fleets.") => {
            vec!["urls", "urls_command", "urls_query", "catalog_url", "environment", "canary", "stage_size", "parallel"]
        }
        _ => ["project", "dir", "exclude", "url", "drift_ignore", "rehearsal_timings"]
            .into_iter()
            .chain(TUNING_KEYS)
            .chain(["[environments.NAME]", "[fleets.NAME]", "[lint]"])
            .collect(),
    };
    let line = at.map_or(start_line + 1, |(i, _)| i + 1);
    SettingsError(format!(
        "{}:{line}: unknown key `{key}`{}; known: {}",
        path.display(),
        table.map(|t| format!(" in {t}")).unwrap_or_default(),
        known.join(", ")
    ))
}

fn load_config(global: &Global) -> Result<(ConfigFile, Option<PathBuf>), SettingsError> {
    let path = match &global.config {
        Some(p) if !p.exists() => {
            return Err(SettingsError(format!("{}: the configuration file does not exist", p.display())));
        }
        Some(p) => p.clone(),
        None => match find_config() {
            Some(p) => p,
            None => return Ok((ConfigFile::default(), None)),
        },
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| SettingsError(format!("{}: cannot read it: {e}", path.display())))?;
    let config: ConfigFile = toml::from_str(&text).map_err(|e| config_error(&path, &text, &e))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((config, Some(base)))
}

/// Resolves a relative `sqlite:` path against the config file's directory.
fn anchor_sqlite(url: String, base: &Path) -> String {
    for prefix in ["sqlite://", "sqlite:"] {
        if let Some(path) = url.strip_prefix(prefix) {
            if !path.is_empty()
                && !Path::new(path).is_absolute()
                && !path.starts_with(':')
                && !base.as_os_str().is_empty()
            {
                return format!("sqlite:{}", base.join(path).display());
            }
            break;
        }
    }
    url
}

/// airlock.toml's `[lint]` table (empty without a file), the baseline path
/// made relative to the file.
pub fn lint_config(global: &Global) -> Result<LintConfig, SettingsError> {
    let (config, base) = load_config(global)?;
    let mut lint = config.lint;
    lint.baseline = lint.baseline.map(|b| base.unwrap_or_default().join(b));
    Ok(lint)
}

/// `[lint.rules]` checked: an unknown rule or severity is an error naming it.
pub fn lint_severities(config: &LintConfig) -> Result<BTreeMap<String, Option<Severity>>, SettingsError> {
    let known = airlock_lint::rules::ids();
    config
        .rules
        .iter()
        .map(|(rule, level)| {
            if !known.contains(&rule.as_str()) {
                return Err(SettingsError(format!(
                    "[lint.rules] in airlock.toml: there is no rule `{rule}` (known: {})",
                    known.join(", ")
                )));
            }
            let severity =
                Severity::parse(level).map_err(|e| SettingsError(format!("[lint.rules] {rule} = \"{level}\": {e}")))?;
            Ok((rule.clone(), severity))
        })
        .collect()
}

/// Reads a baseline written by `airlock lint --write-baseline`.
pub fn read_baseline(path: &Path) -> Result<Baseline, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| SettingsError(format!("baseline {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        SettingsError(format!(
            "baseline {}: not a baseline written by `airlock lint --write-baseline`: {e}",
            path.display()
        ))
    })
}

/// What `migrate` lints with: `[lint]` of airlock.toml, and `baseline` (a flag) over its file.
pub fn lint_settings(global: &Global, baseline: Option<&Path>) -> Result<LintSettings, SettingsError> {
    let config = lint_config(global)?;
    let baseline = match baseline.map(Path::to_path_buf).or(config.baseline.clone()) {
        Some(path) => Some(read_baseline(&path)?),
        None => None,
    };
    Ok(LintSettings { severities: lint_severities(&config)?, baseline })
}

/// Everything resolved for a command that needs no database (`new`).
pub fn migrations_dir(global: &Global) -> Result<PathBuf, SettingsError> {
    let (config, base) = load_config(global)?;
    Ok(resolve_dir(global, &config, base.as_deref()))
}

/// `exclude` of airlock.toml (empty without a file).
pub fn exclude(global: &Global) -> Result<Vec<String>, SettingsError> {
    Ok(load_config(global)?.0.exclude)
}

fn resolve_dir(global: &Global, config: &ConfigFile, base: Option<&Path>) -> PathBuf {
    match (&global.dir, &config.dir) {
        (Some(dir), _) => dir.clone(),
        (None, Some(dir)) => base.unwrap_or(Path::new("")).join(dir),
        (None, None) => base.unwrap_or(Path::new("")).join("migrations"),
    }
}

/// Where `rehearse --data` keeps its timings when airlock.toml does not say.
pub const DEFAULT_TIMINGS: &str = ".airlock/rehearsal-timings.json";

/// Flags + environment + airlock.toml → validated options.
pub fn options(global: &Global) -> Result<Options, SettingsError> {
    let (config, base) = load_config(global)?;
    let base_dir = base.clone().unwrap_or_default();
    let environment = match &global.environment {
        None => None,
        Some(name) => Some(config.environments.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = config.environments.keys().map(String::as_str).collect();
            SettingsError(format!(
                "--env {name}: no [environments.{name}] in the configuration{}",
                if known.is_empty() { String::new() } else { format!(" (known: {})", known.join(", ")) }
            ))
        })?),
    };
    let from_env_var = std::env::var("DATABASE_URL").ok().filter(|v| !v.is_empty());
    let url_text = if let Some(url) = &global.database_url {
        url.clone()
    } else if let Some(url) = environment.as_ref().and_then(|e| e.url.as_ref()) {
        let name = global.environment.as_deref().unwrap_or_default();
        anchor_sqlite(expand(url, &format!("[environments.{name}] url"))?, &base_dir)
    } else if let Some(url) = from_env_var {
        url
    } else if let Some(url) = &config.url {
        anchor_sqlite(expand(url, "url in airlock.toml")?, &base_dir)
    } else {
        return Err(SettingsError(
            "no database: pass --database-url URL, set DATABASE_URL, or set `url` in airlock.toml".to_owned(),
        ));
    };
    let url = DatabaseUrl::parse(&url_text).map_err(|e| SettingsError(e.to_string()))?;
    let dir = resolve_dir(global, &config, base.as_deref());
    // Beside airlock.toml, else beside the migrations directory.
    let project_dir = base.unwrap_or_else(|| dir.parent().map(Path::to_path_buf).unwrap_or_default());
    let timings = config.rehearsal_timings.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_TIMINGS));
    let mut options = Options::new(url, dir);
    options.rehearsal_timings = Some(project_dir.join(timings));
    options.project = config.project.clone();
    options.exclude = config.exclude.clone();
    options.drift_ignore = config.drift_ignore.clone();
    options.environment = global.environment.clone();
    options.protected = environment.as_ref().is_some_and(|e| e.protected);

    // Environment settings override top-level ones, which override the defaults.
    let env_tuning = environment.map(|e| e.tuning).unwrap_or_default();
    let pick = |f: fn(&Tuning) -> &Option<String>| f(&env_tuning).clone().or_else(|| f(&config.tuning).clone());
    options.timeouts.lock = duration(&pick(|t| &t.lock_timeout), "lock_timeout", options.timeouts.lock)?;
    options.timeouts.statement =
        duration(&pick(|t| &t.statement_timeout), "statement_timeout", options.timeouts.statement)?;
    options.retry_backoff = duration(&pick(|t| &t.lock_retry_backoff), "lock_retry_backoff", options.retry_backoff)?;
    options.lease_ttl = duration(&pick(|t| &t.lease_ttl), "lease_ttl", options.lease_ttl)?;
    if let Some(text) = pick(|t| &t.check_timeout) {
        options.check_budget =
            check_budget(&text).map_err(|e| SettingsError(format!("`check_timeout = \"{text}\"`: {e}")))?;
    }
    options.estimate_budget = duration(&pick(|t| &t.estimate_budget), "estimate_budget", options.estimate_budget)?;
    let lock_wait = global.lock_wait.clone().or_else(|| pick(|t| &t.lock_wait));
    options.lock_wait = duration(&lock_wait, "lock_wait", options.lock_wait)?;
    options.lock_retries = env_tuning.lock_retries.or(config.tuning.lock_retries).unwrap_or(options.lock_retries);
    options.out_of_order = env_tuning.out_of_order.or(config.tuning.out_of_order).unwrap_or(false);
    if let Some(text) = pick(|t| &t.rehearsal_url) {
        let text = anchor_sqlite(expand(&text, "rehearsal_url")?, &base_dir);
        options.scratch_url =
            Some(DatabaseUrl::parse(&text).map_err(|e| SettingsError(format!("rehearsal_url in airlock.toml: {e}")))?);
    }
    options.drift_check = match pick(|t| &t.drift).as_deref() {
        None if options.protected => DriftCheck::Warn,
        None => DriftCheck::Off,
        Some("warn") => DriftCheck::Warn,
        Some("refuse") => DriftCheck::Refuse,
        Some("off") => DriftCheck::Off,
        Some(other) => {
            return Err(SettingsError(format!("`drift = \"{other}\"`: use \"warn\", \"refuse\" or \"off\"")));
        }
    };
    options.backup = backup_settings(&env_tuning, &config.tuning, options.protected, &base_dir, &project_dir)?;
    options.backfill = backfill_settings(&env_tuning, &config.tuning)?;
    if options.lease_ttl < Duration::from_secs(1) {
        return Err(SettingsError("`lease_ttl` must be at least 1s".to_owned()));
    }
    Ok(options)
}

/// The backup settings: the environment's over the top level's, the store
/// as a pair (an environment that names a store names its own).
fn backup_settings(
    env: &Tuning,
    top: &Tuning,
    protected: bool,
    base_dir: &Path,
    project_dir: &Path,
) -> Result<BackupSettings, SettingsError> {
    let pick = |f: fn(&Tuning) -> &Option<String>| f(env).clone().or_else(|| f(top).clone());
    let explicit = pick(|t| &t.backup).is_some();
    let mode = match pick(|t| &t.backup) {
        None if protected => BackupMode::Tables,
        None => BackupMode::Off,
        Some(text) => BackupMode::parse(&text).map_err(|e| SettingsError(format!("`backup = \"{text}\"`: {e}")))?,
    };
    let named = |t: &Tuning| t.backup_dir.is_some() || t.backup_command.is_some();
    let store_of = if named(env) { env } else { top };
    let store = match (&store_of.backup_dir, &store_of.backup_command) {
        (Some(_), Some(_)) => {
            return Err(SettingsError(
                "`backup_dir` and `backup_command` are both set: a backup goes to one store; keep one".to_owned(),
            ));
        }
        (Some(dir), None) => BackupStore::Directory(base_dir.join(expand(dir, "backup_dir")?)),
        (None, Some(command)) if command.trim().is_empty() => {
            return Err(SettingsError("`backup_command` is empty: name the command that stores a backup".to_owned()));
        }
        (None, Some(command)) => BackupStore::Command(command.clone()),
        (None, None) => BackupStore::Directory(project_dir.join(DEFAULT_BACKUP_DIR)),
    };
    // Manifests and history name where the data is: a path that means the same from anywhere.
    let store = match store {
        BackupStore::Directory(dir) if dir.is_relative() => {
            let here = std::env::current_dir().map_err(|e| SettingsError(format!("the working directory: {e}")))?;
            BackupStore::Directory(here.join(dir))
        }
        other => other,
    };
    let max_age = match pick(|t| &t.backup_max_age) {
        None => None,
        Some(text) => match parse_duration(&text) {
            Ok(d) if d.is_zero() => {
                return Err(SettingsError(format!(
                    "`backup_max_age = \"{text}\"`: must be more than 0 (leave it out to keep backups of any age)"
                )));
            }
            Ok(d) => Some(d),
            Err(e) => return Err(SettingsError(format!("`backup_max_age = \"{text}\"`: {e}"))),
        },
    };
    let keep = env.backup_keep.or(top.backup_keep);
    if keep == Some(0) {
        return Err(SettingsError(
            "`backup_keep = 0` would delete the backup just taken: keep at least 1 (leave it out to keep all)"
                .to_owned(),
        ));
    }
    let budget = match pick(|t| &t.backup_budget) {
        None => None,
        Some(text) => BackupBudget::parse(&text).map_err(|e| SettingsError(format!("`backup_budget`: {e}")))?,
    };
    Ok(BackupSettings { mode, store, keep, max_age, budget, choice: None, explicit })
}

/// Where backups go when airlock.toml does not say.
pub const DEFAULT_BACKUP_DIR: &str = ".airlock/backups";

/// The database of `[environments.NAME]` itself: never `--database-url`,
/// DATABASE_URL or the top-level `url` in its place (for `drift
/// --against-env`, where a fallback would compare a database with itself).
pub fn environment_url(global: &Global, name: &str) -> Result<DatabaseUrl, SettingsError> {
    let (config, base) = load_config(global)?;
    let Some(environment) = config.environments.get(name) else {
        let known: Vec<&str> = config.environments.keys().map(String::as_str).collect();
        return Err(SettingsError(format!(
            "no [environments.{name}] in the configuration{}",
            if known.is_empty() { String::new() } else { format!(" (known: {})", known.join(", ")) }
        )));
    };
    let url = environment.url.as_ref().ok_or_else(|| SettingsError(format!("[environments.{name}] has no `url`")))?;
    let text = anchor_sqlite(expand(url, &format!("[environments.{name}] url"))?, &base.unwrap_or_default());
    DatabaseUrl::parse(&text).map_err(|e| SettingsError(e.to_string()))
}

/// Named environments, each with its options or why they are unusable.
pub type Environments = Vec<(String, Result<Options, String>)>;

/// Every environment `serve` answers for: the one the flags select (named
/// `default` unless `--env` names it), then each `[environments.NAME]`. An
/// environment whose settings are unusable is kept with the reason, so the
/// server can say it instead of refusing to start. Also returns the name of the
/// environment answered when a request names none.
pub fn all_environments(global: &Global) -> Result<(Environments, Option<String>), SettingsError> {
    let (config, _) = load_config(global)?;
    let mut out = Vec::new();
    let default = match &global.environment {
        Some(name) => {
            options(global)?;
            Some(name.clone())
        }
        None => {
            let env_var = std::env::var("DATABASE_URL").is_ok_and(|v| !v.is_empty());
            let has_database = global.database_url.is_some() || env_var || config.url.is_some();
            if has_database || config.environments.is_empty() {
                if config.environments.contains_key("default") {
                    return Err(SettingsError(
                        "airlock.toml has an [environments.default], and `default` is also the name `serve` gives the database chosen by --database-url, DATABASE_URL or `url`: rename that environment, or pass --env default".to_owned(),
                    ));
                }
                out.push(("default".to_owned(), Ok(options(global)?)));
                Some("default".to_owned())
            } else {
                // No database outside the environments: requests must name one.
                None
            }
        }
    };
    for name in config.environments.keys() {
        let only_this = Global {
            environment: Some(name.clone()),
            database_url: if global.environment.as_deref() == Some(name) { global.database_url.clone() } else { None },
            ..global.clone()
        };
        out.push((name.clone(), options(&only_this).map_err(|e| e.0)));
    }
    Ok((out, default))
}

/// How backfills run: batch sizes, pace and lock timeout, an environment's over the file's.
fn backfill_settings(env: &Tuning, top: &Tuning) -> Result<BackfillSettings, SettingsError> {
    let defaults = BackfillSettings::default();
    let pick = |f: fn(&Tuning) -> &Option<String>| f(env).clone().or_else(|| f(top).clone());
    let number = |f: fn(&Tuning) -> Option<u64>| f(env).or(f(top));
    let settings = BackfillSettings {
        batch_target: duration(&pick(|t| &t.batch_target), "batch_target", defaults.batch_target)?,
        batch_min: number(|t| t.batch_min).unwrap_or(defaults.batch_min),
        batch_max: number(|t| t.batch_max).unwrap_or(defaults.batch_max),
        batch_first: defaults.batch_first,
        max_rows_per_second: number(|t| t.max_rows_per_second),
        lock_timeout: duration(&pick(|t| &t.batch_lock_timeout), "batch_lock_timeout", defaults.lock_timeout)?,
        replicas: env
            .replicas
            .as_ref()
            .or(top.replicas.as_ref())
            .into_iter()
            .flatten()
            .map(|text| {
                let text = expand(text, "replicas")?;
                DatabaseUrl::parse(&text).map_err(|e| SettingsError(format!("`replicas` in airlock.toml: {e}")))
            })
            .collect::<Result<_, _>>()?,
        max_replica_lag: duration(&pick(|t| &t.max_replica_lag), "max_replica_lag", defaults.max_replica_lag)?,
        wait_for_replicas: pick(|t| &t.wait_for_replicas)
            .map(|text| duration(&Some(text), "wait_for_replicas", Duration::ZERO))
            .transpose()?,
    };
    if settings.batch_target.is_zero() {
        return Err(SettingsError("`batch_target` must be more than 0, e.g. \"200ms\"".to_owned()));
    }
    if settings.batch_min == 0 || settings.batch_min > settings.batch_max {
        return Err(SettingsError(format!(
            "`batch_min = {}` and `batch_max = {}`: a batch needs at least 1 row, and the smallest cannot be above the largest",
            settings.batch_min, settings.batch_max
        )));
    }
    if settings.max_rows_per_second == Some(0) {
        return Err(SettingsError("`max_rows_per_second = 0` would never finish: leave it out for no cap".to_owned()));
    }
    Ok(BackfillSettings { batch_first: settings.batch_first.clamp(settings.batch_min, settings.batch_max), ..settings })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys an unknown-key message offers are keys airlock.toml takes.
    #[test]
    fn the_keys_named_in_messages_are_accepted() {
        let tuning: String = TUNING_KEYS
            .iter()
            .map(|k| match *k {
                "lock_retries" => format!("{k} = 1\n"),
                "out_of_order" => format!("{k} = false\n"),
                "drift" => format!("{k} = \"warn\"\n"),
                "backup" => format!("{k} = \"tables\"\n"),
                "backup_keep" | "batch_min" | "batch_max" | "max_rows_per_second" => format!("{k} = 3\n"),
                "replicas" => format!("{k} = [\"postgres://replica/db\"]\n"),
                _ => format!("{k} = \"1s\"\n"),
            })
            .collect();
        let text = format!(
            "project = \"p\"\ndir = \"m\"\nexclude = []\nurl = \"sqlite:a\"\ndrift_ignore = []\nrehearsal_timings = \"t.json\"\n{tuning}[environments.e]\nurl = \"sqlite:b\"\nprotected = true\n{tuning}[lint]\nrules = {{}}\nbaseline = \"b.json\"\n"
        );
        toml::from_str::<ConfigFile>(&text).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn expands_variables_and_names_missing_ones() {
        // SAFETY-free: a variable no other test uses.
        let e = expand("postgres://${AIRLOCK_TEST_SURELY_UNSET}/x", "url").unwrap_err();
        assert!(e.0.contains("AIRLOCK_TEST_SURELY_UNSET is not set"), "{}", e.0);
        assert_eq!(expand("sqlite:a.db", "url").unwrap(), "sqlite:a.db");
    }

    #[test]
    fn sqlite_paths_in_config_are_relative_to_it() {
        assert_eq!(anchor_sqlite("sqlite:shop.db".into(), Path::new("examples/shop")), "sqlite:examples/shop/shop.db");
        assert_eq!(anchor_sqlite("sqlite:///tmp/x.db".into(), Path::new("examples")), "sqlite:///tmp/x.db");
        assert_eq!(anchor_sqlite("postgres://h/db".into(), Path::new("examples")), "postgres://h/db");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = toml::from_str::<ConfigFile>("projet = \"x\"").unwrap_err().to_string();
        assert!(e.contains("projet"), "{e}");
        let e = toml::from_str::<ConfigFile>("[environments.prod]\nprotect = true").unwrap_err().to_string();
        assert!(e.contains("protect"), "{e}");
    }
}
