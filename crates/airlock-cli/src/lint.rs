//! `airlock lint`: flags and airlock.toml → lint options → findings rendered
//! as rustc-style diagnostics (annotate-snippets), JSON, SARIF 2.1.0 or GitHub
//! workflow annotations. Error findings exit 3.

use std::path::{Path, PathBuf};

use airlock_core::schema::Catalog;
use airlock_core::Migration;
use airlock_driver::{DatabaseUrl, Engine};
use airlock_exec::ExecError;
use airlock_lint::{Baseline, Finding, LintOptions, Report, Severity};
use airlock_sql::Dialect;
use annotate_snippets::{Level, Renderer, Snippet};
use anstream::{eprintln, println};
use serde_json::json;

use crate::args::{DialectArg, Format, Global, LintArgs};
use crate::settings;

fn usage(message: String) -> ExecError {
    ExecError::Usage(message)
}

/// The dialect: `--dialect`, else the database URL's engine.
fn dialect(global: &Global, args: &LintArgs) -> Result<Dialect, ExecError> {
    if let Some(d) = args.dialect {
        return Ok(match d {
            DialectArg::Postgres => Dialect::Postgres,
            DialectArg::Mysql => Dialect::MySql,
            DialectArg::Sqlite => Dialect::Sqlite,
        });
    }
    let url: Option<DatabaseUrl> = settings::options(global).ok().map(|o| o.url);
    match url.map(|u| u.engine()) {
        Some(Engine::Postgres) => Ok(Dialect::Postgres),
        Some(Engine::MySql) => Ok(Dialect::MySql),
        Some(Engine::Sqlite) => Ok(Dialect::Sqlite),
        None => Err(usage(
            "which SQL dialect? pass --dialect postgres|mysql|sqlite, or a database URL (--database-url, DATABASE_URL, `url` in airlock.toml)".to_owned(),
        )),
    }
}

/// Keeps findings about the files or directories named on the command line.
fn keep_paths(report: &mut Report, paths: &[PathBuf]) -> Result<(), ExecError> {
    if paths.is_empty() {
        return Ok(());
    }
    let wanted: Vec<PathBuf> = paths
        .iter()
        .map(|p| p.canonicalize().map_err(|e| usage(format!("{}: {e}", p.display()))))
        .collect::<Result<_, _>>()?;
    let matches = |file: &Path| file.canonicalize().is_ok_and(|f| wanted.iter().any(|w| f.starts_with(w)));
    report.findings.retain(|f| matches(&f.file));
    report.suppressed.retain(|s| matches(&s.finding.file));
    Ok(())
}

/// The migrations to lint and the schema they start from: with a database,
/// the pending ones over the live catalog; without, all of them over nothing.
fn inputs(global: &Global, args: &LintArgs) -> Result<(Vec<Migration>, Catalog, Vec<Migration>), ExecError> {
    let database = if args.offline { None } else { settings::options(global).ok() };
    match database {
        Some(options) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| usage(format!("cannot start the async runtime: {e}")))?;
            let live = runtime.block_on(airlock_exec::live_state(&options)).map_err(|e| match e {
                ExecError::Connect(e) => ExecError::Connect(airlock_driver::DriverError::new(
                    e.kind,
                    format!("{} (lint reads the live schema; pass --offline to lint without the database)", e.message),
                )),
                other => other,
            })?;
            Ok((live.pending, live.catalog, live.discovered.migrations))
        }
        None => {
            let dir = settings::migrations_dir(global).map_err(|e| usage(e.0))?;
            let discovered = airlock_core::discover(&dir)?;
            Ok((discovered.migrations.clone(), Catalog::offline(), discovered.migrations))
        }
    }
}

/// Runs `airlock lint`.
pub fn run(global: &Global, args: &LintArgs) -> Result<(), ExecError> {
    let dialect = dialect(global, args)?;
    let config = settings::lint_config(global).map_err(|e| usage(e.0))?;
    let baseline_path = args.baseline.clone().or_else(|| config.baseline.clone());
    let options = LintOptions { dialect, severities: settings::lint_severities(&config).map_err(|e| usage(e.0))? };
    let (to_lint, catalog, all) = inputs(global, args)?;
    let discovered = airlock_core::Discovered { migrations: all, warnings: Vec::new() };
    let mut report = airlock_lint::lint(&to_lint, catalog, &options);
    keep_paths(&mut report, &args.paths)?;
    if let Some(path) = &args.write_baseline {
        let baseline = Baseline::of(&report);
        let text = serde_json::to_string_pretty(&baseline).unwrap_or_default();
        std::fs::write(path, text + "\n").map_err(|e| usage(format!("--write-baseline {}: {e}", path.display())))?;
        eprintln!("lint: recorded {} finding(s) of {} file(s) in {}", report.findings.len(), baseline.entries.len(), path.display());
        return Ok(());
    }
    if let Some(path) = &baseline_path {
        settings::read_baseline(path).map_err(|e| usage(e.0))?.apply(&mut report);
    }
    match global.format {
        Format::Human => human(&report, &discovered.migrations),
        Format::Json => json_report(&report),
        Format::Sarif => sarif(&report),
        Format::Github => github(&report),
    }
    match report.count(Severity::Error) {
        0 => Ok(()),
        errors => Err(ExecError::LintErrors(errors)),
    }
}

fn level(severity: Severity) -> Level {
    match severity {
        Severity::Error => Level::Error,
        Severity::Warning => Level::Warning,
        Severity::Info => Level::Note,
    }
}

/// The script a finding is about, for its source lines.
fn script_of<'a>(migrations: &'a [Migration], finding: &Finding) -> Option<&'a airlock_core::Script> {
    migrations.iter().find(|m| m.version.to_string() == finding.version).map(|m| &m.up).filter(|s| s.path == finding.file)
}

/// The byte range of a 1-based line of `text`.
fn line_span(text: &str, line: usize) -> std::ops::Range<usize> {
    let mut start = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return start..start + l.trim_end().len();
        }
        start += l.len();
    }
    0..0
}

fn human(report: &Report, migrations: &[Migration]) {
    let renderer = if anstream::stdout().is_terminal() { Renderer::styled() } else { Renderer::plain() };
    for finding in &report.findings {
        let origin = finding.file.display().to_string();
        let mut message = level(finding.severity).title(&finding.message).id(finding.rule);
        if let Some(script) = script_of(migrations, finding) {
            let span = finding.span.clone().unwrap_or_else(|| line_span(&script.sql, finding.line.saturating_sub(script.line_offset).max(1)));
            message = message.snippet(
                Snippet::source(&script.sql)
                    .line_start(script.line_offset + 1)
                    .origin(&origin)
                    .fold(true)
                    .annotation(level(finding.severity).span(span)),
            );
        }
        message = message.footer(Level::Help.title(&finding.help));
        if let Some(fix) = &finding.fix {
            message = message.footer(Level::Help.title(fix));
        }
        println!("{}\n", renderer.render(message));
    }
    let (errors, warnings) = (report.count(Severity::Error), report.count(Severity::Warning));
    let suppressed = report.suppressed.len();
    eprintln!(
        "lint: {errors} error{}, {warnings} warning{}{}",
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" },
        if suppressed > 0 { format!(", {suppressed} allowed by `-- airlock:allow`") } else { String::new() },
    );
    if report.baselined > 0 {
        eprintln!("lint: {} more held back by the baseline (files unchanged since it was written)", report.baselined);
    }
}

fn json_report(report: &Report) {
    let findings: Vec<serde_json::Value> = report
        .findings
        .iter()
        .map(|f| {
            json!({
                "rule": f.rule, "severity": f.severity, "file": f.file, "line": f.line, "message": f.message,
                "help": f.help, "fix": f.fix, "version": f.version, "statement": f.statement,
            })
        })
        .collect();
    let suppressed: Vec<serde_json::Value> = report
        .suppressed
        .iter()
        .map(|s| json!({ "rule": s.finding.rule, "file": s.finding.file, "line": s.finding.line, "reason": s.reason }))
        .collect();
    let value = json!({
        "findings": findings,
        "suppressed": suppressed,
        "summary": { "errors": report.count(Severity::Error), "warnings": report.count(Severity::Warning), "baselined": report.baselined },
    });
    println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
}

/// SARIF 2.1.0: one run, the rules that fired, one result per finding.
fn sarif(report: &Report) {
    let mut fired: Vec<&str> = report.findings.iter().map(|f| f.rule).collect();
    fired.sort_unstable();
    fired.dedup();
    let rules: Vec<serde_json::Value> = fired
        .iter()
        .map(|id| {
            json!({
                "id": id,
                "helpUri": format!("https://github.com/airlock-migrations/airlock/blob/main/docs/rules/{id}.md"),
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = report
        .findings
        .iter()
        .map(|f| {
            json!({
                "ruleId": f.rule,
                "level": match f.severity { Severity::Error => "error", Severity::Warning => "warning", Severity::Info => "note" },
                "message": { "text": format!("{} (help: {})", f.message, f.help) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": relative(&f.file) },
                        "region": { "startLine": f.line },
                    }
                }],
            })
        })
        .collect();
    let value = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": { "name": "airlock", "version": airlock_exec::AIRLOCK_VERSION, "rules": rules } },
            "results": results,
        }],
    });
    println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
}

/// A path relative to the working directory (the repository root in CI), `/`-separated.
fn relative(path: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let shown = match (cwd, path.canonicalize()) {
        (Some(cwd), Ok(abs)) => abs.strip_prefix(&cwd).map(Path::to_path_buf).unwrap_or(abs),
        _ => path.to_path_buf(),
    };
    shown.to_string_lossy().replace('\\', "/")
}

/// GitHub Actions annotations: `::error file=...,line=...,title=...::message`.
fn github(report: &Report) {
    // Workflow commands escape %, CR and LF in the message, and also : and , in properties.
    let data = |s: &str| s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
    let property = |s: &str| data(s).replace(':', "%3A").replace(',', "%2C");
    for f in &report.findings {
        let command = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "notice",
        };
        println!(
            "::{command} file={},line={},title={}::{}",
            property(&f.file.to_string_lossy()),
            f.line,
            property(&format!("airlock {}", f.rule)),
            data(&format!("{}\nhelp: {}", f.message, f.help))
        );
    }
}
