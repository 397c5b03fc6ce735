//! `--fleet NAME`: `plan`, `migrate`, `status` and `gate` over every member
//! of `[fleets.NAME]`. The members come from airlock.toml, a command's
//! output or a catalog query; each is migrated as `--database-url URL`
//! under the fleet's environment would be. What is told: a line a member
//! as its run ends, then the fleet's summary; or one JSON object.

use airlock_core::migration::parse_duration;
use airlock_exec::{ExecError, FleetReporter, MemberRun, Requirement, Verdict, exit};
use anstream::{eprintln, println};
use anstyle::{AnsiColor, Style};

use crate::args::{Cli, Command, Format};
use crate::settings::{self, FleetSource};

const GREEN: Style = AnsiColor::Green.on_default();
const RED: Style = AnsiColor::Red.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const DIM: Style = Style::new().dimmed();

/// Runs the command over the fleet `name`.
pub fn run(cli: &Cli, name: &str) -> Result<(), ExecError> {
    let usage = |e: settings::SettingsError| ExecError::Usage(e.0);
    if !matches!(cli.command, Command::Plan(_) | Command::Migrate(_) | Command::Status | Command::Gate(_)) {
        return Err(ExecError::Usage(
            "--fleet works with `plan`, `migrate`, `status` and `gate`; for one member, pass its --database-url"
                .to_owned(),
        ));
    }
    let format = cli.global.format;
    if matches!(format, Format::Sarif | Format::Github) {
        return Err(ExecError::Usage(
            "--format sarif and --format github are for `airlock lint`; use human or json".to_owned(),
        ));
    }
    let fleet = settings::fleet(&cli.global, name).map_err(usage)?;
    let interrupt = airlock_exec::Interrupt::default();
    if matches!(cli.command, Command::Migrate(_)) {
        crate::signals::watch(interrupt.clone())?;
    }
    // Members run as tasks of their own, on every core.
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.clamp(2, 8))
        .enable_all()
        .build()
        .map_err(|e| ExecError::Usage(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let found = listed(&fleet).await?;
        let mut members = fleet.members(&cli.global, found).map_err(usage)?;
        let mut rollout = fleet.rollout;
        match &cli.command {
            Command::Plan(args) => {
                for m in &mut members {
                    m.options.lint = settings::lint_settings(&cli.global, None).map_err(usage)?;
                    if let Some(text) = &args.check_timeout {
                        m.options.check_budget = settings::check_budget(text)
                            .map_err(|e| ExecError::Usage(format!("--check-timeout {text}: {e}")))?;
                    }
                }
                if args.out.is_some() {
                    return Err(ExecError::Usage("--out writes one database's plan: not with --fleet".to_owned()));
                }
                let report = airlock_exec::fleet_plan(name, &members, rollout.parallel).await;
                plan(&report, format);
                done(report.exit_code())
            }
            Command::Migrate(args) => {
                if args.plan.is_some() {
                    return Err(ExecError::Usage("--plan pins one database's plan: not with --fleet".to_owned()));
                }
                let target = args.to.as_deref().map(|t| crate::version_arg(t, "--to")).transpose()?;
                for m in &mut members {
                    m.options = crate::migrate_options(&m.options, &cli.global, args)?;
                }
                if let Some(n) = args.canary {
                    rollout.canary = n;
                }
                if let Some(text) = &args.stage_size {
                    rollout.stage_size = airlock_exec::StageSize::parse(text)
                        .map_err(|e| ExecError::Usage(format!("--stage-size {e}")))?;
                }
                match args.parallel {
                    Some(0) => return Err(ExecError::Usage("--parallel 0: at least 1".to_owned())),
                    Some(n) => rollout.parallel = n,
                    None => {}
                }
                let mut told = Told { format };
                let report =
                    airlock_exec::fleet_migrate(name, &members, target, rollout, args.dry_run, &interrupt, &mut told)
                        .await;
                migrate(&report, format);
                done(report.exit_code())
            }
            Command::Status => {
                let report = airlock_exec::fleet_status(name, &members, rollout.parallel).await;
                status(&report, format);
                done(report.exit_code())
            }
            Command::Gate(args) => {
                let requirement = match args.require.trim() {
                    "latest" => Requirement::Latest,
                    other => Requirement::Version(crate::version_arg(other, "--require")?),
                };
                let wait = args
                    .wait
                    .as_deref()
                    .map(|w| parse_duration(w).map_err(|e| ExecError::Usage(format!("--wait {w}: {e}"))))
                    .transpose()?;
                let report = airlock_exec::fleet_gate(name, &members, &requirement, wait, rollout.parallel).await;
                gate(&report, format);
                if report.satisfied { Ok(()) } else { Err(ExecError::FleetIncomplete(exit::GATE)) }
            }
            _ => Ok(()),
        }
    })
}

fn done(code: i32) -> Result<(), ExecError> {
    if code == exit::OK { Ok(()) } else { Err(ExecError::FleetIncomplete(code)) }
}

/// The members as the fleet's source lists them: (name, URL) pairs.
pub(crate) async fn listed(fleet: &settings::Fleet) -> Result<Vec<(Option<String>, String)>, ExecError> {
    let bad = |why: String| ExecError::Usage(format!("fleet `{}`: {why}", fleet.name));
    match &fleet.source {
        FleetSource::Listed(members) => Ok(members.clone()),
        FleetSource::Command { command, dir } => {
            let output = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(if dir.as_os_str().is_empty() { std::path::Path::new(".") } else { dir })
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .map_err(|e| bad(format!("urls_command `{command}` cannot run: {e}")))?;
            if !output.status.success() {
                return Err(bad(format!(
                    "urls_command `{command}` failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
            let text = String::from_utf8(output.stdout)
                .map_err(|_| bad(format!("urls_command `{command}` printed something that is not UTF-8")))?;
            let mut found = Vec::new();
            for (n, line) in text.lines().enumerate() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if let Some(member) = settings::member_line(&fields)
                    .map_err(|e| bad(format!("urls_command `{command}`, line {}: {e}", n + 1)))?
                {
                    found.push(member);
                }
            }
            Ok(found)
        }
        FleetSource::Query { catalog, sql } => {
            let rows = airlock_exec::catalog_rows(catalog, sql).await.map_err(|e| bad(format!("urls_query: {e}")))?;
            let mut found = Vec::new();
            for (n, row) in rows.iter().enumerate() {
                let fields: Vec<&str> = row.iter().map(|c| c.as_deref().unwrap_or("")).collect();
                if let Some(member) =
                    settings::member_line(&fields).map_err(|e| bad(format!("urls_query, row {}: {e}", n + 1)))?
                {
                    found.push(member);
                }
            }
            Ok(found)
        }
    }
}

/// Tells, on stderr, what the rollout does as it does it (human format only).
struct Told {
    format: Format,
}

impl FleetReporter for Told {
    fn looked(&mut self, members: usize, refused: usize) {
        if self.format == Format::Human {
            match refused {
                0 => eprintln!("{DIM}looked at {members} member(s): none refused{DIM:#}"),
                n => eprintln!("{RED}{n} of {members} member(s) refused{RED:#}: nothing will be changed"),
            }
        }
    }

    fn stage_started(&mut self, stage: usize, members: &[String]) {
        if self.format == Format::Human {
            let what = if stage == 0 { "canary".to_owned() } else { format!("stage {stage}") };
            eprintln!("{what}: {} member(s)", members.len());
        }
    }

    fn member_finished(&mut self, run: &MemberRun) {
        if self.format == Format::Human {
            eprintln!("  {}", member_line(run));
        }
    }
}

/// One member's outcome on one line.
fn member_line(m: &MemberRun) -> String {
    let count = m.migrations.len();
    let version = m.current_version.as_deref().unwrap_or("none");
    match m.outcome {
        "applied" => format!("{GREEN}✓{GREEN:#} {}: {count} migration(s), now at {version}", m.name),
        "current" => format!("{DIM}= {}: up to date at {version}{DIM:#}", m.name),
        "would_apply" => format!("· {}: would apply {count} migration(s)", m.name),
        "not_started" => format!("{DIM}- {}: not started{DIM:#}", m.name),
        other => format!("{RED}✗{RED:#} {}: {other}: {}", m.name, m.error.as_deref().unwrap_or("no reason recorded")),
    }
}

fn print_json(value: impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
}

/// `migrate --fleet`: every member's outcome, then what stopped the rollout.
fn migrate(report: &airlock_exec::FleetRunReport, format: Format) {
    if format == Format::Json {
        return print_json(report);
    }
    let count = |outcome: &str| report.members.iter().filter(|m| m.outcome == outcome).count();
    for m in report.members.iter().filter(|m| !matches!(m.outcome, "applied" | "current")) {
        println!("{}", member_line(m));
    }
    for m in &report.members {
        for w in &m.warnings {
            println!("  {YELLOW}warning{YELLOW:#} ({}): {w}", m.name);
        }
    }
    let verb = if report.dry_run { "would apply" } else { "applied" };
    println!(
        "fleet {}: {} member(s): {} {verb}, {} up to date, {} not started, {} refused or failed",
        report.fleet,
        report.members.len(),
        count(if report.dry_run { "would_apply" } else { "applied" }),
        count("current"),
        count("not_started"),
        report.members.iter().filter(|m| matches!(m.outcome, "refused" | "failed" | "interrupted")).count(),
    );
    if let Some(why) = &report.stopped {
        println!("{RED}stopped{RED:#}: {why}");
    }
}

/// `plan --fleet`: a line a member; the reasons of those not safe.
fn plan(report: &airlock_exec::FleetPlanReport, format: Format) {
    if format == Format::Json {
        return print_json(report);
    }
    for m in &report.members {
        match (&m.plan, &m.error) {
            (_, Some(error)) => println!("{RED}✗{RED:#} {}: {error}", m.name),
            (Some(plan), None) => {
                let pending = plan.migrations.len();
                let verdict = plan.verdict.as_str();
                let shown = match plan.verdict {
                    Verdict::Safe => format!("{GREEN}{verdict}{GREEN:#}"),
                    Verdict::Risky => format!("{YELLOW}{verdict}{YELLOW:#}"),
                    Verdict::Blocked => format!("{RED}{verdict}{RED:#}"),
                };
                println!("{shown} {}: {pending} pending", m.name);
                // What makes it so: the blocking reasons of a blocked plan, else the risks no allow accepts.
                let shown =
                    |r: &&airlock_exec::Risk| r.allowed.is_none() && (plan.verdict != Verdict::Blocked || r.blocks);
                for migration in plan.migrations.iter().filter(|p| p.verdict != Verdict::Safe) {
                    for s in migration.statements.iter().filter(|s| s.verdict != Verdict::Safe) {
                        for r in s.reasons.iter().filter(shown) {
                            println!(
                                "    {} {} statement {}: {}",
                                migration.version, migration.name, s.index, r.message
                            );
                        }
                    }
                }
            }
            (None, None) => {}
        }
    }
    let blocked: Vec<&str> =
        report.members.iter().filter(|m| m.verdict == Some(Verdict::Blocked)).map(|m| m.name.as_str()).collect();
    let failed = report.members.iter().filter(|m| m.error.is_some()).count();
    println!(
        "fleet {}: {} member(s), plan {}{}{}",
        report.fleet,
        report.members.len(),
        report.verdict.as_str(),
        if blocked.is_empty() { String::new() } else { format!("; blocked on {}", blocked.join(", ")) },
        if failed == 0 { String::new() } else { format!("; {failed} could not be planned") }
    );
}

/// `status --fleet`: members grouped by where they stand.
fn status(report: &airlock_exec::FleetStatusReport, format: Format) {
    if format == Format::Json {
        return print_json(report);
    }
    let latest = report.latest.as_deref().unwrap_or("none");
    let current = report.members.len() - report.behind.len();
    println!(
        "fleet {}: {current} of {} member(s) at the latest version ({latest})",
        report.fleet,
        report.members.len()
    );
    for m in report.members.iter().filter(|m| report.behind.contains(&m.name)) {
        match &m.error {
            Some(e) => println!("  {RED}✗{RED:#} {}: cannot be read: {e}", m.name),
            None => println!(
                "  - {}: {} at {}, {} pending{}",
                m.name,
                m.state,
                m.current_version.as_deref().unwrap_or("none"),
                m.pending,
                m.problems.first().map(|p| format!(": {p}")).unwrap_or_default()
            ),
        }
    }
}

/// `gate --fleet`: ready when every member is; those that are not, with why.
fn gate(report: &airlock_exec::FleetGateReport, format: Format) {
    if format == Format::Json {
        return print_json(report);
    }
    let ready = report.members.iter().filter(|m| m.satisfied).count();
    if report.satisfied {
        println!("{GREEN}ready{GREEN:#}: all {} member(s) of fleet {}", report.members.len(), report.fleet);
        return;
    }
    println!("{RED}not ready{RED:#}: {ready} of {} member(s) of fleet {}", report.members.len(), report.fleet);
    for m in report.members.iter().filter(|m| !m.satisfied) {
        println!("  - {}: {}", m.name, m.reasons.join("; "));
    }
}
