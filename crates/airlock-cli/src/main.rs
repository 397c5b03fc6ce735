//! The `airlock` binary: raw flags → validated settings → library call → reporter.

mod args;
mod fleet;
mod init;
mod lint;
mod new;
mod render;
mod serve;
mod settings;
mod signals;

use std::process::ExitCode;

use airlock_core::Version;
use airlock_core::migration::parse_duration;
use airlock_exec::{ExecError, Requirement, Resolution, exit};
use anstream::{eprintln, println};
use clap::Parser;

use crate::args::{Cli, Command, Format, NewArgs};
use crate::render::Progress;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE as u8 } else { 0 });
        }
    };
    let format = cli.global.format;
    let code = match run(cli) {
        Ok(()) => exit::OK,
        Err(e) => {
            // A gate that is not satisfied has already printed its report.
            if !matches!(
                e,
                ExecError::GateNotSatisfied
                    | ExecError::FleetIncomplete(_)
                    | ExecError::LintErrors(_)
                    | ExecError::PlanBlocked
                    | ExecError::DriftFound
                    | ExecError::RehearsalProblems
            ) {
                render::error(&e, format);
            }
            e.exit_code()
        }
    };
    ExitCode::from(code as u8)
}

/// The (version, checksum) list of a plan file written by `airlock plan --out`.
fn read_plan(path: &std::path::Path) -> Result<Vec<(String, String)>, ExecError> {
    let bad = |why: String| ExecError::Usage(format!("--plan {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let migrations = value["migrations"]
        .as_array()
        .ok_or_else(|| bad("not a plan written by `airlock plan --out` (no `migrations`)".to_owned()))?;
    migrations
        .iter()
        .map(|m| match (m["version"].as_str(), m["checksum"].as_str()) {
            (Some(v), Some(c)) => Ok((v.to_owned(), c.to_owned())),
            _ => Err(bad("a migration without version or checksum".to_owned())),
        })
        .collect()
}

/// `options` as `migrate`'s flags set them: lint baseline, pinned plan,
/// backup choice, backfills, contracts.
fn migrate_options(
    options: &airlock_exec::Options,
    global: &args::Global,
    args: &args::MigrateArgs,
) -> Result<airlock_exec::Options, ExecError> {
    let mut options = options.clone();
    options.lint = settings::lint_settings(global, args.baseline.as_deref()).map_err(|e| ExecError::Usage(e.0))?;
    if let Some(path) = &args.plan {
        options.planned = Some(read_plan(path)?);
    }
    options.backup.choice = match (args.backup, args.no_backup) {
        (true, _) => Some(airlock_exec::BackupChoice::Take),
        (_, true) => Some(airlock_exec::BackupChoice::Skip { reason: args.reason.clone() }),
        _ => None,
    };
    options.skip_backfills = args.skip_backfills;
    options.contract = args.contract;
    Ok(options)
}

fn version_arg(text: &str, flag: &str) -> Result<Version, ExecError> {
    Version::parse(text.trim()).map_err(|e| ExecError::Usage(format!("{flag}: {e}")))
}

/// Writes `bytes` to stdout; a reader that stopped early (`| head`) is not an error.
fn print_bytes(bytes: &[u8], what: &str) -> Result<(), ExecError> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(ExecError::Usage(format!("cannot write {what}: {e}")))
        }
        _ => Ok(()),
    }
}

fn run(cli: Cli) -> Result<(), ExecError> {
    let format = cli.global.format;
    if let Some(name) = &cli.global.fleet {
        return fleet::run(&cli, name);
    }
    if let Command::Migrate(args) = &cli.command
        && let Some(flag) = [
            args.canary.map(|_| "--canary"),
            args.stage_size.as_ref().map(|_| "--stage-size"),
            args.parallel.map(|_| "--parallel"),
        ]
        .into_iter()
        .flatten()
        .next()
    {
        return Err(ExecError::Usage(format!("{flag} is for a fleet's rollout: with --fleet NAME")));
    }
    if let Command::New(args @ NewArgs { expand: None, .. }) = &cli.command {
        let dir = settings::migrations_dir(&cli.global).map_err(|e| ExecError::Usage(e.0))?;
        let exclude = settings::exclude(&cli.global).map_err(|e| ExecError::Usage(e.0))?;
        let paths = new::create(&dir, args, &exclude).map_err(ExecError::Usage)?;
        if format == Format::Json {
            println!("{}", serde_json::json!({ "created": paths }));
        } else {
            for p in paths {
                println!("created {}", p.display());
            }
        }
        return Ok(());
    }
    if let Command::Serve(args) = &cli.command {
        return serve::run(&cli.global, args);
    }
    if let Command::Init(args) = &cli.command {
        let done = init::run(&cli.global, args)?;
        render::initialized(&done, format);
        return Ok(());
    }
    if let Command::Completions { shell } = &cli.command {
        use clap::CommandFactory;
        let mut script = Vec::new();
        clap_complete::generate(*shell, &mut args::Cli::command(), "airlock", &mut script);
        return print_bytes(&script, "the completion script");
    }
    if let Command::Man = &cli.command {
        use clap::CommandFactory;
        let mut page = Vec::new();
        clap_mangen::Man::new(args::Cli::command())
            .render(&mut page)
            .map_err(|e| ExecError::Usage(format!("cannot make the man page: {e}")))?;
        return print_bytes(&page, "the man page");
    }
    if let Command::Lint(args) = &cli.command {
        return lint::run(&cli.global, args);
    }
    if matches!(format, Format::Sarif | Format::Github) {
        return Err(ExecError::Usage(
            "--format sarif and --format github are for `airlock lint`; use human or json".to_owned(),
        ));
    }
    let options = settings::options(&cli.global).map_err(|e| ExecError::Usage(e.0))?;
    // Commands that change the database stop cleanly on Ctrl-C and SIGTERM.
    if matches!(
        cli.command,
        Command::Migrate(_)
            | Command::Resolve(_)
            | Command::Down(_)
            | Command::Backfill(args::BackfillCommand::Run { .. })
    ) {
        signals::watch(options.interrupt.clone())?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ExecError::Usage(format!("cannot start the async runtime: {e}")))?;
    let mut progress = Progress::new(format);
    runtime.block_on(async {
        match cli.command {
            Command::New(args) => {
                let sql = args.expand.as_deref().unwrap_or_default();
                let expansion = airlock_exec::expansion(&options, sql, None).await?;
                let dir = settings::migrations_dir(&cli.global).map_err(|e| ExecError::Usage(e.0))?;
                let exclude = settings::exclude(&cli.global).map_err(|e| ExecError::Usage(e.0))?;
                let paths = new::create_phases(&dir, &args, &exclude, &expansion.phases).map_err(ExecError::Usage)?;
                render::expanded(&expansion, &paths, None, format);
                Ok(())
            }
            Command::Expand(args) => {
                let dir = settings::migrations_dir(&cli.global).map_err(|e| ExecError::Usage(e.0))?;
                let exclude = settings::exclude(&cli.global).map_err(|e| ExecError::Usage(e.0))?;
                let replacing = new::Replacing::open(&dir, &exclude, &args.file).map_err(ExecError::Usage)?;
                let migration = replacing.migration();
                let (version, sql) = (migration.version.clone(), migration.up.sql.clone());
                // Which file could not be expanded, and why.
                let in_file = |e: ExecError| match e {
                    ExecError::Usage(why) => ExecError::Usage(format!("{}: {why}", args.file.display())),
                    other => other,
                };
                let expansion = airlock_exec::expansion(&options, &sql, Some(&version)).await.map_err(in_file)?;
                let new_args = NewArgs { name: migration.name.clone(), ..NewArgs::default() };
                let paths = replacing.write(&new_args, &expansion.phases).map_err(ExecError::Usage)?;
                render::expanded(&expansion, &paths, Some(&args.file), format);
                Ok(())
            }
            Command::Serve(_) | Command::Lint(_) | Command::Init(_) | Command::Completions { .. } | Command::Man => {
                Ok(())
            }
            Command::Plan(args) => {
                let mut options = options.clone();
                options.lint = settings::lint_settings(&cli.global, None).map_err(|e| ExecError::Usage(e.0))?;
                if let Some(text) = &args.check_timeout {
                    options.check_budget = settings::check_budget(text).map_err(|e| ExecError::Usage(format!("--check-timeout {text}: {e}")))?;
                }
                let plan = airlock_exec::plan(&options).await?;
                if let Some(out) = &args.out {
                    let text = serde_json::to_string_pretty(&plan).unwrap_or_default();
                    std::fs::write(out, text + "\n").map_err(|e| ExecError::Usage(format!("--out {}: {e}", out.display())))?;
                }
                render::plan(&plan, format);
                if plan.verdict == airlock_exec::Verdict::Blocked { Err(ExecError::PlanBlocked) } else { Ok(()) }
            }
            Command::Migrate(args) => {
                let target = args.to.as_deref().map(|t| version_arg(t, "--to")).transpose()?;
                let options = migrate_options(&options, &cli.global, &args)?;
                let report = airlock_exec::migrate(&options, target, args.dry_run, &mut progress).await?;
                render::run_report(&report, format, "Applied");
                Ok(())
            }
            Command::Rehearse(args) => {
                let options = with_scratch(&options, args.scratch_url.as_deref())?;
                let report = airlock_exec::rehearse(&options, args.all, args.data, &mut progress).await?;
                render::rehearsal(&report, format);
                if report.verdict == "clean" { Ok(()) } else { Err(ExecError::RehearsalProblems) }
            }
            Command::Drift(args) => {
                let options = with_scratch(&options, args.scratch_url.as_deref())?;
                let outcome = match (&args.against_url, &args.against_env) {
                    (None, None) => airlock_exec::drift_from_history(&options).await,
                    (Some(url), _) => {
                        let against = airlock_driver::DatabaseUrl::parse(url)
                            .map_err(|e| ExecError::Usage(format!("--against-url: {e}")))?;
                        airlock_exec::drift(&options, &against).await
                    }
                    (None, Some(name)) => {
                        let against = settings::environment_url(&cli.global, name)
                            .map_err(|e| ExecError::Usage(format!("--against-env {name}: {}", e.0)))?;
                        airlock_exec::drift(&options, &against).await
                    }
                };
                if let Ok(report) = &outcome {
                    render::drift(report, format);
                }
                // A comparison that could not be made is recorded too: a
                // scheduled check that stopped working shows on the page.
                let recorded = match args.record {
                    true => airlock_exec::record_drift(&options, outcome.as_ref()).await,
                    false => Ok(()),
                };
                match (outcome, recorded) {
                    (Err(e), Err(not)) => {
                        airlock_exec::Reporter::warning(&mut progress, &format!("the failed comparison was not recorded: {not}"));
                        Err(e)
                    }
                    (Err(e), Ok(())) => Err(e),
                    (Ok(_), Err(not)) => Err(not),
                    (Ok(report), Ok(())) if report.differences.is_empty() => Ok(()),
                    (Ok(_), Ok(())) => Err(ExecError::DriftFound),
                }
            }
            Command::History(args) => {
                let report = airlock_exec::history(&options, args.limit).await?;
                render::history(&report, format);
                Ok(())
            }
            Command::Backfill(args::BackfillCommand::Status) => {
                let status = airlock_exec::status(&options).await?;
                render::backfills(&status.backfills, format);
                Ok(())
            }
            Command::Backfill(args::BackfillCommand::Pause { backfill, reason }) => {
                let v = version_arg(&backfill, "VERSION")?;
                let said = airlock_exec::backfill_control(&options, &v, airlock_exec::ControlAction::Pause, reason).await?;
                render::said(&said, format);
                Ok(())
            }
            Command::Backfill(args::BackfillCommand::Resume { backfill, from_start }) => {
                let v = version_arg(&backfill, "VERSION")?;
                let action = airlock_exec::ControlAction::Resume { from_start };
                let said = airlock_exec::backfill_control(&options, &v, action, None).await?;
                render::said(&said, format);
                Ok(())
            }
            Command::Backfill(args::BackfillCommand::Cancel { backfill, reason }) => {
                let v = version_arg(&backfill, "VERSION")?;
                let said = airlock_exec::backfill_control(&options, &v, airlock_exec::ControlAction::Cancel, reason).await?;
                render::said(&said, format);
                Ok(())
            }
            Command::Backfill(args::BackfillCommand::Run { to }) => {
                let target = match to.as_deref() {
                    Some(t) => Some(version_arg(t, "--to")?),
                    None => {
                        let status = airlock_exec::status(&options).await?;
                        match status.backfills.first() {
                            Some(b) => Some(version_arg(&b.version, "the first pending backfill")?),
                            None => {
                                render::backfills(&[], format);
                                return Ok(());
                            }
                        }
                    }
                };
                let report = airlock_exec::migrate(&options, target, false, &mut progress).await?;
                render::run_report(&report, format, "Applied");
                Ok(())
            }
            Command::Backup(args::BackupCommand::List) => {
                let list = airlock_exec::backup_list(&options).await?;
                render::backup_list(&list, format);
                Ok(())
            }
            Command::Backup(args::BackupCommand::Verify { id, file }) => {
                let verified = airlock_exec::backup_verify(&options, &id, file.as_deref()).await?;
                render::backup_verified(&verified, format);
                Ok(())
            }
            Command::Backup(args::BackupCommand::Restore { id, tables, as_name, into, file, replace, reason }) => {
                let into = into
                    .map(|url| airlock_driver::DatabaseUrl::parse(&url))
                    .transpose()
                    .map_err(|e| ExecError::Usage(format!("--into: {e}")))?;
                let request = airlock_exec::RestoreRequest { id, file, tables, as_name, into, replace, reason };
                let restored = airlock_exec::backup_restore(&options, &request).await?;
                render::backup_restored(&restored, format);
                Ok(())
            }
            Command::Adopt(args) => {
                let report = airlock_exec::adopt(&options, args.from, args.dry_run, &mut progress).await?;
                render::adopt(&report, format);
                Ok(())
            }
            Command::Calibrate(args) => {
                let calibration = airlock_exec::calibrate(&options, args.rows, &mut progress).await?;
                render::calibration(&calibration, format);
                Ok(())
            }
            Command::Status => {
                let report = airlock_exec::status(&options).await?;
                render::status(&report, format);
                Ok(())
            }
            Command::Gate(args) => {
                let requirement = match args.require.trim() {
                    "latest" => Requirement::Latest,
                    other => Requirement::Version(version_arg(other, "--require")?),
                };
                let report = match &args.wait {
                    None => airlock_exec::gate(&options, &requirement).await?,
                    Some(wait) => {
                        let wait = parse_duration(wait).map_err(|e| ExecError::Usage(format!("--wait {wait}: {e}")))?;
                        airlock_exec::gate_wait(&options, &requirement, wait, &mut progress).await?
                    }
                };
                render::gate(&report, format);
                if report.satisfied { Ok(()) } else { Err(ExecError::GateNotSatisfied) }
            }
            Command::Down(args) => {
                let to = version_arg(&args.to, "--to")?;
                let report = airlock_exec::down(&options, to, &mut progress).await?;
                render::run_report(&report, format, "Rolled back");
                Ok(())
            }
            Command::Repair(args) => {
                let version = version_arg(&args.accept, "--accept")?;
                let old = airlock_exec::repair(&options, version.clone(), &args.reason, &mut progress).await?;
                match (format, old) {
                    (Format::Human, Some(old)) => println!(
                        "Accepted the current text of migration {version} (checksum was {}…); recorded with your reason.",
                        &old[..12.min(old.len())]
                    ),
                    (Format::Human, None) => eprintln!("Nothing to repair: migration {version} already matches its file."),
                    (_, old) => println!(
                        "{}",
                        serde_json::json!({ "repaired": old.is_some(), "version": version.to_string(), "old_checksum": old })
                    ),
                }
                Ok(())
            }
            Command::Unlock(args) => {
                let freed = airlock_exec::unlock(&options, args.force, args.reason.as_deref()).await?;
                match (format, freed) {
                    (Format::Human, Some(l)) => println!("Freed the lock held by pid {} ({}@{}) since {}.", l.pid, l.os_user, l.host, l.since),
                    (Format::Human, None) => println!("The run lock is free."),
                    (_, freed) => println!("{}", serde_json::json!({ "unlocked": freed })),
                }
                Ok(())
            }
            Command::Resolve(args) => {
                let version = version_arg(&args.version, "VERSION")?;
                let how = if args.retry_from_failed {
                    Resolution::RetryFromFailed
                } else if args.mark_applied {
                    Resolution::MarkApplied
                } else {
                    Resolution::MarkRolledBack
                };
                let report = airlock_exec::resolve(&options, version, how, args.reason.as_deref(), &mut progress).await?;
                render::run_report(&report, format, "Resolved:");
                Ok(())
            }
        }
    })
}

/// The options with `--scratch-url`, when given, as the scratch database.
fn with_scratch(options: &airlock_exec::Options, url: Option<&str>) -> Result<airlock_exec::Options, ExecError> {
    let mut options = options.clone();
    if let Some(url) = url {
        let url =
            airlock_driver::DatabaseUrl::parse(url).map_err(|e| ExecError::Usage(format!("--scratch-url: {e}")))?;
        options.scratch_url = Some(url);
    }
    Ok(options)
}
