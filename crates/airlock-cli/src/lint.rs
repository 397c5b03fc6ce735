//! `airlock lint`: flags and airlock.toml → lint options → findings rendered
//! as rustc-style diagnostics (annotate-snippets), JSON, SARIF 2.1.0 or GitHub
//! workflow annotations. Error findings exit 3.

use std::path::{Path, PathBuf};

use airlock_core::Migration;
use airlock_core::schema::Catalog;
use airlock_exec::ExecError;
use airlock_lint::{Baseline, Finding, LintOptions, Report, Severity};
use airlock_sql::Dialect;
use annotate_snippets::{Level, Renderer, Snippet};
use anstream::{eprintln, println};
use serde_json::json;

use crate::args::{Format, Global, LintArgs};
use crate::settings;

fn usage(message: String) -> ExecError {
    ExecError::Usage(message)
}

/// The dialect: `--dialect`'s engine's, else the database URL's engine's.
fn dialect(global: &Global, args: &LintArgs) -> Result<Dialect, ExecError> {
    let engine = args.dialect.or_else(|| settings::options(global).ok().map(|o| o.url.engine()));
    match engine {
        Some(engine) => Ok(airlock_engines::profile(engine).dialect),
        None => Err(usage(
            "which SQL dialect? pass --dialect postgres|mysql|sqlite, or a database URL (--database-url, DATABASE_URL, `url` in airlock.toml)".to_owned(),
        )),
    }
}

/// Keeps findings about the files or directories named on the command line.
fn keep_paths(report: &mut Report, wanted: &[PathBuf]) {
    let matches = |file: &Path| file.canonicalize().is_ok_and(|f| wanted.iter().any(|w| f.starts_with(w)));
    report.findings.retain(|f| matches(&f.file));
    report.suppressed.retain(|s| matches(&s.finding.file));
}

/// What `lint` reads: groups of migrations, each linted in order from the
/// schema it starts from, and every migration a finding's snippet may show.
struct Inputs {
    /// Migrations, their starting schema, and whether they are loose files
    /// (not migrations of a directory: no down script to expect).
    groups: Vec<(Vec<Migration>, Catalog, bool)>,
    shown: Vec<Migration>,
}

/// The paths named on the command line, sorted by how they are read.
#[derive(Default)]
struct Named {
    /// Inside the migrations directory: reported from a lint of the directory.
    in_dir: Vec<PathBuf>,
    /// Directories elsewhere.
    dirs: Vec<PathBuf>,
    /// SQL files elsewhere, and `-` (standard input).
    files: Vec<PathBuf>,
}

fn named(paths: &[PathBuf], dir: &Path) -> Result<Named, ExecError> {
    let dir = dir.canonicalize().ok();
    let mut named = Named::default();
    for path in paths {
        if path.as_os_str() == "-" {
            named.files.push(path.clone());
            continue;
        }
        let abs = path.canonicalize().map_err(|e| usage(format!("{}: {e}", path.display())))?;
        if dir.as_ref().is_some_and(|d| abs.starts_with(d)) {
            named.in_dir.push(abs);
        } else if abs.is_dir() {
            named.dirs.push(path.clone());
        } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("sql")) {
            named.files.push(path.clone());
        } else {
            return Err(usage(format!(
                "{}: not an SQL file; lint reads `.sql` files, directories of them, or `-` for standard input",
                path.display()
            )));
        }
    }
    Ok(named)
}

/// Every `.sql` file under `dir`, sorted, hidden entries left out.
fn sql_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ExecError> {
    let entries = std::fs::read_dir(dir).map_err(|e| usage(format!("{}: {e}", dir.display())))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
            continue;
        }
        if path.is_dir() {
            sql_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("sql")) {
            out.push(path);
        }
    }
    Ok(())
}

/// One loose SQL file (or standard input) as a migration of its own.
fn loose(path: &Path) -> Result<Migration, ExecError> {
    let (shown, bytes) = if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .map_err(|e| usage(format!("reading standard input: {e}")))?;
        (PathBuf::from("<stdin>"), bytes)
    } else {
        (path.to_path_buf(), std::fs::read(path).map_err(|e| usage(format!("{}: {e}", path.display())))?)
    };
    airlock_core::read_loose_file(&shown, bytes)
        .map_err(|e| ExecError::Discovery(airlock_core::DiscoveryError(vec![e])))
}

/// The migrations to lint and the schema they start from. The migrations
/// directory (no paths, or paths inside it): with a database, the pending
/// ones over the live catalog; without, all of them over nothing. Files and
/// directories elsewhere: each file on its own, a directory of migrations in
/// order, over the live catalog when there is a database.
fn inputs(global: &Global, args: &LintArgs, dialect: Dialect) -> Result<(Inputs, Vec<PathBuf>), ExecError> {
    let database = if args.offline { None } else { settings::options(global).ok() };
    let dir = settings::migrations_dir(global).map_err(|e| usage(e.0))?;
    let layout = airlock_core::DiscoverOptions {
        flavor: Some(dialect.into()),
        exclude: settings::exclude(global).map_err(|e| usage(e.0))?,
        cache_dir: airlock_core::read_cache::default_dir(),
    };
    let named = named(&args.paths, &dir)?;
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| usage(format!("cannot start the async runtime: {e}")))
    };
    let offline_hint = |e: ExecError| match e {
        ExecError::Connect(e) => ExecError::Connect(airlock_driver::DriverError::new(
            e.kind,
            format!("{} (lint reads the live schema; pass --offline to lint without the database)", e.message),
        )),
        other => other,
    };
    let mut inputs = Inputs { groups: Vec::new(), shown: Vec::new() };
    let mut live_catalog = None;
    if args.paths.is_empty() || !named.in_dir.is_empty() {
        match &database {
            Some(options) => {
                let live = runtime()?.block_on(airlock_exec::live_state(options)).map_err(offline_hint)?;
                live_catalog = Some(live.catalog.clone());
                inputs.groups.push((live.pending, live.catalog, false));
                inputs.shown.extend(live.discovered.migrations);
            }
            None => {
                let discovered = airlock_core::discover_with(&dir, &layout)?;
                inputs.groups.push((discovered.migrations.clone(), Catalog::offline(), false));
                inputs.shown.extend(discovered.migrations);
            }
        }
    }
    let mut others: Vec<(Vec<Migration>, bool)> = Vec::new();
    for d in &named.dirs {
        // A directory of migrations is read as one (its bad files named);
        // one where nothing reads as a migration, file by file.
        let options = airlock_core::DiscoverOptions { flavor: layout.flavor, exclude: Vec::new(), cache_dir: None };
        match airlock_core::discover_lenient(d, &options) {
            (found, errors) if !found.migrations.is_empty() && !errors.is_empty() => {
                return Err(airlock_core::DiscoveryError(errors).into());
            }
            (found, _) if !found.migrations.is_empty() => others.push((found.migrations, false)),
            _ => {
                let mut files = Vec::new();
                sql_files(d, &mut files)?;
                if files.is_empty() {
                    return Err(usage(format!("{}: no `.sql` file in this directory", d.display())));
                }
                for f in files {
                    others.push((vec![loose(&f)?], true));
                }
            }
        }
    }
    for f in &named.files {
        others.push((vec![loose(f)?], true));
    }
    if !others.is_empty() {
        let catalog = match (&database, live_catalog) {
            (_, Some(catalog)) => catalog,
            (Some(options), None) => runtime()?.block_on(airlock_exec::live_catalog(options)).map_err(offline_hint)?,
            (None, None) => Catalog::offline(),
        };
        for (group, loose) in others {
            inputs.shown.extend(group.iter().cloned());
            inputs.groups.push((group, catalog.clone(), loose));
        }
    }
    Ok((inputs, named.in_dir))
}

/// Runs `airlock lint`.
pub fn run(global: &Global, args: &LintArgs) -> Result<(), ExecError> {
    let dialect = dialect(global, args)?;
    let config = settings::lint_config(global).map_err(|e| usage(e.0))?;
    let baseline_path = args.baseline.clone().or_else(|| config.baseline.clone());
    let mut options =
        LintOptions::with_severities(dialect, settings::lint_severities(&config).map_err(|e| usage(e.0))?);
    options.strict = args.strict;
    let (inputs, in_dir) = inputs(global, args, dialect)?;
    let mut report = Report::default();
    for (index, (migrations, catalog, loose)) in inputs.groups.into_iter().enumerate() {
        let mut part = airlock_lint::lint(&migrations, catalog, &options);
        if loose {
            // A file of SQL, not a migration: it has no down script to miss.
            part.findings.retain(|f| f.rule != "missing-down");
        }
        // The migrations directory comes first; named paths inside it narrow what is reported.
        if index == 0 && !in_dir.is_empty() {
            keep_paths(&mut part, &in_dir);
        }
        report.findings.extend(part.findings);
        report.suppressed.extend(part.suppressed);
    }
    if let Some(path) = &args.write_baseline {
        let baseline = Baseline::of(&report);
        let text = serde_json::to_string_pretty(&baseline).unwrap_or_default();
        std::fs::write(path, text + "\n").map_err(|e| usage(format!("--write-baseline {}: {e}", path.display())))?;
        eprintln!(
            "lint: recorded {} finding(s) of {} file(s) in {}",
            report.findings.len(),
            baseline.entries.len(),
            path.display()
        );
        return Ok(());
    }
    if let Some(path) = &baseline_path {
        settings::read_baseline(path).map_err(|e| usage(e.0))?.apply(&mut report);
    }
    match global.format {
        Format::Human => human(&report, &Sources::of(&inputs.shown)),
        Format::Json => json_report(&report),
        Format::Sarif => sarif(&report, &Sources::of(&inputs.shown)),
        Format::Github => github(&report, &Sources::of(&inputs.shown)),
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

/// The up scripts of the linted migrations, by file and version: the
/// source lines a finding is shown with (found once each, not by a search
/// of every migration per finding).
struct Sources<'a>(std::collections::HashMap<(&'a std::path::Path, String), &'a airlock_core::Script>);

impl<'a> Sources<'a> {
    fn of(migrations: &'a [Migration]) -> Sources<'a> {
        Sources(migrations.iter().map(|m| ((m.up.path.as_path(), m.version.to_string()), &m.up)).collect())
    }

    /// The script a finding is about.
    fn script(&self, finding: &Finding) -> Option<&'a airlock_core::Script> {
        self.0.get(&(finding.file.as_path(), finding.version.clone())).copied()
    }
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

fn human(report: &Report, sources: &Sources) {
    let renderer = if anstream::stdout().is_terminal() { Renderer::styled() } else { Renderer::plain() };
    for finding in &report.findings {
        let origin = finding.file.display().to_string();
        let mut message = level(finding.severity).title(&finding.message).id(finding.rule);
        if let Some(script) = sources.script(finding) {
            let span = finding
                .span
                .clone()
                .unwrap_or_else(|| line_span(&script.sql, finding.line.saturating_sub(script.line_offset).max(1)));
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

/// The JSON report, serialized straight from the findings (keys in
/// alphabetical order) to a buffered standard output: a long history has
/// thousands of findings, and no terminal styling to strip.
fn json_report(report: &Report) {
    #[derive(serde::Serialize)]
    struct JsonFinding<'a> {
        file: &'a Path,
        fix: &'a Option<String>,
        help: &'a str,
        line: usize,
        message: &'a str,
        rule: &'a str,
        severity: Severity,
        statement: Option<usize>,
        version: &'a str,
    }
    #[derive(serde::Serialize)]
    struct JsonSuppressed<'a> {
        file: &'a Path,
        line: usize,
        reason: &'a str,
        rule: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Summary {
        baselined: usize,
        errors: usize,
        warnings: usize,
    }
    #[derive(serde::Serialize)]
    struct JsonReport<'a> {
        findings: Vec<JsonFinding<'a>>,
        summary: Summary,
        suppressed: Vec<JsonSuppressed<'a>>,
    }
    let out = JsonReport {
        findings: report
            .findings
            .iter()
            .map(|f| JsonFinding {
                file: &f.file,
                fix: &f.fix,
                help: &f.help,
                line: f.line,
                message: &f.message,
                rule: f.rule,
                severity: f.severity,
                statement: f.statement,
                version: &f.version,
            })
            .collect(),
        summary: Summary {
            baselined: report.baselined,
            errors: report.count(Severity::Error),
            warnings: report.count(Severity::Warning),
        },
        suppressed: report
            .suppressed
            .iter()
            .map(|s| JsonSuppressed {
                file: &s.finding.file,
                line: s.finding.line,
                reason: &s.reason,
                rule: s.finding.rule,
            })
            .collect(),
    };
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let written = serde_json::to_writer_pretty(&mut stdout, &out)
        .map_err(std::io::Error::from)
        .and_then(|()| std::io::Write::write_all(&mut stdout, b"\n"))
        .and_then(|()| std::io::Write::flush(&mut stdout));
    if let Err(e) = written {
        eprintln!("lint: writing the report: {e}");
    }
}

/// SARIF 2.1.0: one run, the rules that fired, one result per finding.
fn sarif(report: &Report, sources: &Sources) {
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
                        "region": match region(f, sources) {
                            Some(((line, column), (end_line, end_column))) => json!({
                                "startLine": line, "startColumn": column, "endLine": end_line, "endColumn": end_column,
                            }),
                            None => json!({ "startLine": f.line }),
                        },
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

/// Where a finding starts and ends in its file, as (line, column), 1-based,
/// columns counted in characters; None when its span is not known.
fn region(finding: &Finding, sources: &Sources) -> Option<((usize, usize), (usize, usize))> {
    let script = sources.script(finding)?;
    let span = finding.span.clone()?;
    let at = |offset: usize| {
        let before = script.sql.get(..offset)?;
        let line = script.line_offset + 1 + before.matches('\n').count();
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Some((line, column))
    };
    // The end is exclusive: the column just past the last character, as SARIF has it.
    Some((at(span.start)?, at(span.end.max(span.start))?))
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
fn github(report: &Report, sources: &Sources) {
    // Workflow commands escape %, CR and LF in the message, and also : and , in properties.
    let data = |s: &str| s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
    let property = |s: &str| data(s).replace(':', "%3A").replace(',', "%2C");
    for f in &report.findings {
        let command = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "notice",
        };
        let column = region(f, sources).map_or(String::new(), |((_, column), _)| format!(",col={column}"));
        println!(
            "::{command} file={},line={}{column},title={}::{}",
            property(&f.file.to_string_lossy()),
            f.line,
            property(&format!("airlock {}", f.rule)),
            data(&format!("{}\nhelp: {}", f.message, f.help))
        );
    }
}
