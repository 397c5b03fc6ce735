//! Raw command-line flags, as clap reads them; validated in `settings`.

use std::path::PathBuf;

use airlock_driver::Engine;
use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// airlock: schema migrations that look before they leap.
#[derive(Debug, Parser)]
#[command(
    name = "airlock",
    version,
    about = "airlock: schema migrations that look before they leap",
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Options valid before or after the command name.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people: concise, coloured on a terminal.
    Human,
    /// One JSON object on stdout.
    Json,
    /// SARIF 2.1.0 for code scanning (`lint` only: hidden from the other commands' help).
    #[value(hide = true)]
    Sarif,
    /// GitHub Actions workflow annotations (`lint` only: hidden from the other commands' help).
    #[value(hide = true)]
    Github,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Database URL: postgres://, mysql://, mariadb://, sqlite:PATH [env: DATABASE_URL].
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Migrations directory [default: `dir` in airlock.toml, else `migrations`].
    #[arg(long, global = true, value_name = "PATH")]
    pub dir: Option<PathBuf>,
    /// Configuration file [default: airlock.toml when present].
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// An environment from the configuration's [environments.NAME].
    #[arg(long = "env", global = true, value_name = "NAME")]
    pub environment: Option<String>,
    /// A fleet from the configuration's [fleets.NAME]: `plan`, `migrate`, `status` and `gate` over every member.
    #[arg(long, global = true, value_name = "NAME", conflicts_with = "database_url")]
    pub fleet: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// How long to wait for another run's lock, e.g. 30s, 5m [default: 5m].
    #[arg(long, global = true, value_name = "DURATION")]
    pub lock_wait: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the next migration file(s).
    #[command(
        after_help = "Examples:\n  airlock new create_users\n  airlock new backfill_names --data\n  airlock new rename_email --expand \"ALTER TABLE users RENAME COLUMN email TO email_address\""
    )]
    New(NewArgs),
    /// Check, then apply pending migrations in order.
    #[command(
        after_help = "Examples:\n  airlock migrate\n  airlock --env production migrate\n  airlock migrate --to 20261130120000\n  airlock migrate --plan plan.json   # only what `airlock plan --format json > plan.json` reviewed"
    )]
    Migrate(MigrateArgs),
    /// Replace a pending column rename or type change with expand/contract migrations that keep the old and the new app version working.
    #[command(after_help = "Examples:\n  airlock expand migrations/7_rename_email.up.sql")]
    Expand(ExpandArgs),
    /// Applied, pending, in-progress or failed migrations, and problems.
    #[command(after_help = "Examples:\n  airlock status\n  airlock --env staging status --format json")]
    Status,
    /// Exit 0 when the database is ready for a release: every migration up to V applied, none in progress, failed or edited; exit 4 otherwise.
    #[command(
        after_help = "Examples:\n  airlock gate --require latest\n  airlock gate --require 42 --wait 10m   # in a deploy, before the new app starts"
    )]
    Gate(GateArgs),
    /// Apply down migrations until VERSION is the newest applied (refused in protected environments).
    Down(DownArgs),
    /// Accept an edited applied migration's new text, recording who and why.
    Repair(RepairArgs),
    /// Close a failed or interrupted migration that ran outside a transaction.
    Resolve(ResolveArgs),
    /// Free the run lock left by a process that is gone (with --force, one airlock cannot see is gone).
    Unlock(UnlockArgs),
    /// Answer /healthz, /status, /gate?require=V and /metrics over HTTP, for every environment; never migrates.
    #[command(
        after_help = "Examples:\n  airlock serve                          # the page on http://127.0.0.1:8080/\n  airlock serve --listen 0.0.0.0:8080 --auth-token-file /run/secrets/airlock-token\n  curl -fsS localhost:8080/gate?require=latest&env=production"
    )]
    Serve(ServeArgs),
    /// Check migration files for locks, rewrites, lost attributes and unsafe changes; exit 3 on errors.
    ///
    /// `--format` takes `human`, `json`, `sarif` (SARIF 2.1.0 for code scanning) or `github` (workflow annotations).
    #[command(
        after_help = "Examples:\n  airlock lint\n  airlock lint --offline\n  airlock lint path/to/change.sql\n  git diff --name-only main -- migrations | xargs airlock lint --format github"
    )]
    Lint(LintArgs),
    /// Read-only preflight: per pending statement the locks, rewrites, rows, estimate, data checks and verdict; exit 3 when blocked.
    #[command(after_help = "Examples:\n  airlock plan\n  airlock --env production plan --format json > plan.json")]
    Plan(PlanArgs),
    /// Time a scan, an index build and a rewrite of a scratch table on this database and store the rates plan's estimates use.
    Calibrate(CalibrateArgs),
    /// Take over a database another tool migrated: record its applied migrations in airlock's history without running SQL.
    #[command(after_help = "Examples:\n  airlock adopt --dry-run\n  airlock adopt --from flyway")]
    Adopt(AdoptArgs),
    /// Compare this database's schema with what its applied migrations produce (replayed into a scratch database), or with another database's; exit 3 when they differ.
    #[command(
        after_help = "Examples:\n  airlock drift\n  airlock --env production drift --against-url postgres://replica.internal/app\n  airlock --env production drift --record   # from cron: the page shows the newest"
    )]
    Drift(DriftArgs),
    /// Run each pending migration up, down and up again on a scratch copy of the schema, comparing the schema after each step; exit 3 on residue or a failure.
    #[command(after_help = "Examples:\n  airlock rehearse\n  airlock rehearse --data sample:10000")]
    Rehearse(RehearseArgs),
    /// The audit trail, newest first: runs, repairs, resolves, allows used, adoptions, with who, where, when and why.
    #[command(after_help = "Examples:\n  airlock history\n  airlock --env production history --limit 50 --format json")]
    History(HistoryArgs),
    /// Backups taken before migrating: list them, or verify one by restoring it into a scratch database.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Backfills (`-- airlock:backfill`): data migrations run in primary-key batches, resumable where they stop.
    #[command(subcommand)]
    Backfill(BackfillCommand),
    /// Write airlock.toml and the migrations directory, taking over another tool's folder and pointing at its history.
    #[command(
        after_help = "Examples:\n  airlock init\n  DATABASE_URL=postgres://localhost/app airlock init   # also looks for another tool's history table"
    )]
    Init(InitArgs),
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    #[command(
        after_help = "Examples:\n  airlock completions bash > ~/.local/share/bash-completion/completions/airlock\n  airlock completions zsh > \"${fpath[1]}/_airlock\"\n  airlock completions fish > ~/.config/fish/completions/airlock.fish"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), made from the same definition as --help.
    #[command(after_help = "Examples:\n  airlock man > /usr/local/share/man/man1/airlock.1 && man airlock")]
    Man,
}

/// `airlock init`.
#[derive(Debug, Args, Default)]
pub struct InitArgs {
    /// The project name stamped on every database [default: this directory's name].
    #[arg(long, value_name = "NAME")]
    pub project: Option<String>,
}

/// `airlock backfill`.
#[derive(Debug, Subcommand)]
pub enum BackfillCommand {
    /// Run the first pending backfill (and any migration before it) to its end, resuming from its checkpoint; `--to VERSION` runs up to that one.
    Run {
        /// Run pending migrations up to this version, backfills included [default: the first pending backfill].
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
    },
    /// Each backfill that is pending, running or stopped part-way: rows done and total, batches, and its state.
    Status,
    /// Hold a backfill: a run going on waits between batches; new runs refuse it until `backfill resume`.
    Pause {
        /// The backfill's version.
        #[arg(value_name = "VERSION")]
        backfill: String,
        /// Why; kept in history.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Let a paused or cancelled backfill go on where it stopped (or, with --from-start, from its first row).
    Resume {
        /// The backfill's version.
        #[arg(value_name = "VERSION")]
        backfill: String,
        /// Forget where it stopped: the next run begins at the first row (a changed file starts over this way).
        #[arg(long)]
        from_start: bool,
    },
    /// Stop a backfill: a run going on stops between batches; runs refuse it until `backfill resume`.
    Cancel {
        /// The backfill's version.
        #[arg(value_name = "VERSION")]
        backfill: String,
        /// Why; kept in history.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

/// `airlock backup`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// The backups this database's history records, newest first, and whether each one's data is still in the store.
    List,
    /// Check a backup's size and checksum, restore it into a scratch database and compare every table's rows and content; exit 3 when it fails.
    Verify {
        /// The backup's id (`airlock backup list`).
        id: String,
        /// Read the data from this file (a backup stored by `backup_command`, fetched back) [default: where its manifest says].
        #[arg(long, value_name = "PATH")]
        file: Option<String>,
    },
    /// Bring a backup's tables back beside the live ones (`<table>_restored_<id>`), checked against what was saved, or the whole backup into another, empty database; live data is never overwritten.
    Restore {
        /// The backup's id (`airlock backup list`).
        id: String,
        /// Restore this table (repeat for more) [default: every table the backup saved].
        #[arg(long = "table", value_name = "TABLE")]
        tables: Vec<String>,
        /// Name the restored table (with one --table) [default: <table>_restored_<id>].
        #[arg(long = "as", value_name = "NAME", requires = "tables")]
        as_name: Option<String>,
        /// Restore the whole backup into this database instead: of the same engine, and empty.
        #[arg(long, value_name = "URL", conflicts_with_all = ["tables", "as_name"])]
        into: Option<String>,
        /// Then make the live table's rows the saved ones, matched by primary key; its rows before are kept as <table>_replaced_<id>. In a protected environment only with --reason.
        #[arg(long, requires = "tables")]
        replace: bool,
        /// Why the live rows are replaced (with --replace); kept in history.
        #[arg(long, value_name = "TEXT", requires = "replace")]
        reason: Option<String>,
        /// Read the data from this file (a backup stored by `backup_command`, fetched back) [default: where its manifest says].
        #[arg(long, value_name = "PATH")]
        file: Option<String>,
    },
}

/// `airlock history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// How many entries, newest first.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
}

/// `airlock adopt`.
#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// The tool whose history to read: flyway, golang-migrate, dbmate, sqlx, diesel, refinery, rails [default: the one whose table the database holds].
    #[arg(long, value_name = "TOOL", value_parser = parse_tool)]
    pub from: Option<airlock_exec::Tool>,
    /// Say what would be recorded; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_tool(text: &str) -> Result<airlock_exec::Tool, String> {
    airlock_exec::Tool::parse(text).ok_or_else(|| {
        format!(
            "no tool `{text}`; known: {}",
            airlock_exec::Tool::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
        )
    })
}

/// `airlock calibrate`.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Rows in the scratch table (at least 10000); more rows, steadier figures.
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    pub rows: u64,
}

/// `airlock plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Write the plan as JSON to FILE (for `migrate --plan FILE`).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Time budget per data check, e.g. 30s; a check that runs out is `unknown` [default: `check_timeout` in airlock.toml, else 30s].
    #[arg(long, value_name = "DURATION")]
    pub check_timeout: Option<String>,
}

/// `airlock lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// SQL files or directories, anywhere, or `-` for standard input [default: every migration in --dir].
    /// Files of the migrations directory are linted with the migrations before them; others on their own.
    pub paths: Vec<PathBuf>,
    /// A statement the MySQL/SQLite parser cannot read is an error, not a warning.
    #[arg(long)]
    pub strict: bool,
    /// The SQL dialect, by engine [default: from the database URL].
    #[arg(long, value_name = "ENGINE", value_parser = engine_name())]
    pub dialect: Option<Engine>,
    /// Do not connect even when a database URL is set: lint every migration against only what they create.
    #[arg(long)]
    pub offline: bool,
    /// Hold back findings this baseline recorded for files unchanged since [default: `baseline` in [lint]].
    #[arg(long, value_name = "FILE", conflicts_with = "write_baseline")]
    pub baseline: Option<PathBuf>,
    /// Record today's findings in FILE (by file checksum and rule) and exit 0.
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,
}

/// An engine by its name, one of those airlock knows.
fn engine_name() -> impl clap::builder::TypedValueParser<Value = Engine> {
    clap::builder::PossibleValuesParser::new(Engine::ALL.map(Engine::name))
        .try_map(|name| Engine::from_name(&name).ok_or("not an engine airlock knows"))
}

/// `airlock serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free one (the address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// How old a database read may be when it answers a request, e.g. 250ms; 0 reads for every request.
    #[arg(long, value_name = "DURATION", default_value = "250ms")]
    pub max_age: String,
    /// How long one read of a database may take before the answer is 503.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub read_timeout: String,
    /// Ask every request but /healthz for the token in FILE: `Authorization: Bearer TOKEN`,
    /// or TOKEN as the password of basic authentication (what a browser asks for).
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
}

/// `airlock unlock`.
#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Free it even though its holder may be alive (only when you know it is not).
    #[arg(long, requires = "reason")]
    pub force: bool,
    /// Why; kept in the audit log.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// `airlock new`.
#[derive(Debug, Args, Default)]
pub struct NewArgs {
    /// Name of the migration, e.g. `add_orders_index`.
    pub name: String,
    /// Mark it as a data migration (`-- airlock:data`).
    #[arg(long)]
    pub data: bool,
    /// Do not create a down file.
    #[arg(long)]
    pub no_down: bool,
    /// Version as the next integer [default when the directory already uses integers].
    #[arg(long, conflicts_with = "timestamp")]
    pub sequential: bool,
    /// Version as a UTC timestamp YYYYMMDDHHMMSS [default for a new directory].
    #[arg(long)]
    pub timestamp: bool,
    /// Write this column rename or type change as expand/contract migrations (expand, backfill, constraints, contract), read against the live table: both app versions keep working until the contract.
    #[arg(long, value_name = "SQL", conflicts_with_all = ["data", "no_down"])]
    pub expand: Option<String>,
}

/// `airlock expand`.
#[derive(Debug, Args)]
pub struct ExpandArgs {
    /// The pending migration whose column rename or type change becomes expand/contract migrations; it must be the newest. Its version goes to the first of them.
    pub file: PathBuf,
}

/// `airlock migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Apply only up to this version.
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,
    /// Check everything and show what would run; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Lint with this baseline: recorded findings of unchanged files do not refuse the run [default: `baseline` in [lint]].
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Apply only if the pending migrations and their checksums are exactly those of this plan (`airlock plan --out FILE`).
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Take a backup first even where `backup = "off"` (of the tables the migrations change), or past `backup_budget`.
    #[arg(long, conflicts_with = "no_backup")]
    pub backup: bool,
    /// Take no backup; in a protected environment only with --reason.
    #[arg(long)]
    pub no_backup: bool,
    /// Why no backup is taken (with --no-backup); kept in history.
    #[arg(long, value_name = "TEXT", requires = "no_backup")]
    pub reason: Option<String>,
    /// Stop before the first pending backfill (`-- airlock:backfill`): it, and the migrations after it, wait for `airlock backfill run`.
    #[arg(long)]
    pub skip_backfills: bool,
    /// Also run contract migrations (`-- airlock:contract`, written by `airlock expand`), which drop what the old app version used: only once no old app version runs. Without it, the run stops before the first one.
    #[arg(long)]
    pub contract: bool,
    /// With --fleet: members migrated first, on their own [default: `canary` of the fleet, else 1].
    #[arg(long, value_name = "N")]
    pub canary: Option<usize>,
    /// With --fleet: members per stage after the canary, a number or a share (`25%`) [default: `stage_size`, else all].
    #[arg(long, value_name = "N|P%")]
    pub stage_size: Option<String>,
    /// With --fleet: members migrated at the same time [default: `parallel`, else 4].
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
}

/// `airlock gate`.
#[derive(Debug, Args)]
pub struct GateArgs {
    /// The version the release needs, or `latest` (the newest migration in --dir).
    #[arg(long, value_name = "VERSION|latest")]
    pub require: String,
    /// Wait up to this long (e.g. 10m) for the requirement, returning as soon as it is met.
    #[arg(long, value_name = "DURATION")]
    pub wait: Option<String>,
}

/// `airlock rehearse`.
#[derive(Debug, Args)]
pub struct RehearseArgs {
    /// Every migration from an empty scratch database, not only the pending ones on a copy of the target's schema.
    #[arg(long)]
    pub all: bool,
    /// What of the target's rows to copy first: schema (none), sample (1,000 rows a table), sample:N, or full; loaded with foreign keys unchecked and triggers silent.
    #[arg(long, value_name = "schema|sample[:N]|full", default_value = "schema")]
    pub data: airlock_exec::RehearsalData,
    /// An empty database to rehearse in (else `rehearsal_url` of airlock.toml, else a temporary one beside the target); emptied again after.
    #[arg(long, value_name = "URL")]
    pub scratch_url: Option<String>,
}

/// `airlock drift`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("against").args(["against_env", "against_url"])))]
pub struct DriftArgs {
    /// The environment of airlock.toml whose database is the reference.
    #[arg(long, value_name = "NAME")]
    pub against_env: Option<String>,
    /// The reference database's URL.
    #[arg(long, value_name = "URL")]
    pub against_url: Option<String>,
    /// An empty database to replay the applied migrations in (else `rehearsal_url` of airlock.toml, else a temporary one beside the target); emptied again after.
    #[arg(long, value_name = "URL")]
    pub scratch_url: Option<String>,
    /// Record the outcome in this database's audit trail (one event in airlock_events, the only write), where `history` and `serve`'s page show it: for a scheduled check.
    #[arg(long)]
    pub record: bool,
}

/// `airlock down`.
#[derive(Debug, Args)]
pub struct DownArgs {
    /// The version to go back to (it stays applied); 0 undoes everything.
    #[arg(long, value_name = "VERSION")]
    pub to: String,
}

/// `airlock repair`.
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The applied version whose file changed on purpose.
    #[arg(long, value_name = "VERSION")]
    pub accept: String,
    /// Why the change is acceptable; kept in the audit log.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

/// `airlock resolve`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["retry_from_failed", "mark_applied", "mark_rolled_back"])))]
pub struct ResolveArgs {
    /// The failed or interrupted version.
    #[arg(id = "migration", value_name = "VERSION")]
    pub version: String,
    /// Run the statements from the failed one onward.
    #[arg(long)]
    pub retry_from_failed: bool,
    /// You completed the migration by hand.
    #[arg(long)]
    pub mark_applied: bool,
    /// You undid what it applied; it becomes pending again.
    #[arg(long)]
    pub mark_rolled_back: bool,
    /// Why; kept in the audit log.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    /// Every example in `--help` parses: the words after `airlock` up to a
    /// comment, pipe or redirection, with double-quoted words kept whole.
    #[test]
    fn every_example_in_help_parses() {
        let mut seen = 0;
        let command = Cli::command();
        for sub in command.get_subcommands() {
            let Some(help) = sub.get_after_help().map(ToString::to_string) else { continue };
            for whole in help.lines() {
                // Leading variable assignments (`DATABASE_URL=... airlock init`) are the shell's.
                let words: Vec<&str> = whole.split_whitespace().skip_while(|w| w.contains('=')).collect();
                let Some(rest) = words.join(" ").strip_prefix("airlock ").map(str::to_owned) else { continue };
                let cut = [" #", " >", " |", " &&"].iter().filter_map(|m| rest.find(m)).min().unwrap_or(rest.len());
                let mut words = vec!["airlock".to_owned()];
                let mut quoted = false;
                let mut word = String::new();
                for c in rest[..cut].chars() {
                    match c {
                        '"' => quoted = !quoted,
                        ' ' if !quoted => {
                            if !word.is_empty() {
                                words.push(std::mem::take(&mut word));
                            }
                        }
                        c => word.push(c),
                    }
                }
                if !word.is_empty() {
                    words.push(word);
                }
                if let Err(e) = Cli::try_parse_from(&words) {
                    panic!("the example `{whole}` of `airlock {}` does not parse: {e}", sub.get_name());
                }
                seen += 1;
            }
        }
        assert!(seen >= 25, "only {seen} examples");
    }

    #[test]
    fn global_options_work_before_and_after_the_command() {
        let before = Cli::try_parse_from(["airlock", "--format", "json", "status"]).unwrap();
        let after = Cli::try_parse_from(["airlock", "status", "--format", "json"]).unwrap();
        assert_eq!(before.global.format, Format::Json);
        assert_eq!(after.global.format, Format::Json);
    }
}
