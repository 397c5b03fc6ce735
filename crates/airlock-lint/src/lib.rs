//! Lint: every pending statement, parsed into `airlock-sql`'s model, checked by
//! the rules in `rules/` against the schema model as it stands just before that
//! statement (the live catalog advanced through statements 1..n-1). Findings are
//! values; only the caller decides what an error costs.
//!
//! A statement no parser accepts is an `unparsed-statement` warning, never a
//! failure. `-- airlock:allow <rule> <reason>` in a file's header suppresses the
//! rule for the file; on the line before a statement, for that statement; an
//! allow that suppresses nothing is itself an `unused-allow` finding.

mod baseline;
mod context;
pub mod rules;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use airlock_core::schema::Catalog;
use airlock_core::{Allow, Migration};
use airlock_sql::parse::parse;
use airlock_sql::{Dialect, TxNeed, classify, split};
use serde::Serialize;

pub use baseline::Baseline;
pub use context::{Context, MigrationContext, Parsed};

/// How much a finding matters. Errors stop `migrate` (exit 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Likely a problem; does not stop a run.
    Warning,
    /// Stops `migrate` unless allowed.
    Error,
}

impl Severity {
    /// `error`, `warning`, `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    /// Parses a severity as airlock.toml writes it; `off` is None.
    pub fn parse(text: &str) -> Result<Option<Severity>, String> {
        match text {
            "error" => Ok(Some(Severity::Error)),
            "warning" => Ok(Some(Severity::Warning)),
            "info" => Ok(Some(Severity::Info)),
            "off" => Ok(None),
            other => Err(format!("`{other}` is not a severity; use error, warning, info or off")),
        }
    }
}

/// One finding: the contract's `{rule, severity, file, line, message, help}` and more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule's id, e.g. `require-concurrent-index`.
    pub rule: &'static str,
    /// How much it matters (after airlock.toml's overrides).
    pub severity: Severity,
    /// The migration file.
    pub file: PathBuf,
    /// 1-based line of the statement (or of the directive).
    pub line: usize,
    /// The migration's version.
    pub version: String,
    /// 1-based index of the statement in the file, when about one statement.
    pub statement: Option<usize>,
    /// Byte range in the file to underline.
    #[serde(skip)]
    pub span: Option<Range<usize>>,
    /// What is wrong: names the lock, what it blocks, the table.
    pub message: String,
    /// What to do instead, one imperative line.
    pub help: String,
    /// The full corrected statement, when the rule can write it.
    pub fix: Option<String>,
    /// The migration's checksum: a baseline holds findings of unchanged files only.
    #[serde(skip)]
    pub checksum: String,
}

/// Findings accepted by an `-- airlock:allow`, with the reason given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Suppressed {
    /// The finding.
    pub finding: Finding,
    /// The reason written in the allow.
    pub reason: String,
}

/// What lint found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Findings that stand, in file and line order.
    pub findings: Vec<Finding>,
    /// Findings an allow accepted.
    pub suppressed: Vec<Suppressed>,
    /// Findings held back by a baseline (files unchanged since it was written).
    pub baselined: usize,
}

impl Report {
    /// How many findings of this severity stand.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == severity).count()
    }
}

/// How to lint.
#[derive(Clone, Debug)]
pub struct LintOptions {
    /// The SQL dialect.
    pub dialect: Dialect,
    /// Severity overrides by rule id; None turns a rule off.
    pub severities: BTreeMap<String, Option<Severity>>,
    /// A statement the general parser (MySQL, SQLite) cannot read is an
    /// error, not a warning (`lint --strict`). Defaults to `false`.
    pub strict: bool,
    /// Findings below this severity are not kept (after severity overrides
    /// and allows): `migrate` acts on warnings and errors only, and over a
    /// long history the notes add up. Defaults to `Info` (all kept).
    pub least: Severity,
}

impl LintOptions {
    /// Default severities for `dialect`.
    pub fn new(dialect: Dialect) -> LintOptions {
        LintOptions { dialect, severities: BTreeMap::new(), strict: false, least: Severity::Info }
    }

    /// Default severities for `dialect`, with these overrides.
    pub fn with_severities(dialect: Dialect, severities: BTreeMap<String, Option<Severity>>) -> LintOptions {
        LintOptions { severities, ..LintOptions::new(dialect) }
    }
}

/// A migration's up script, split and parsed once for lint and plan.
#[derive(Clone, Debug, Default)]
pub struct ParsedScript {
    /// Its statements.
    pub statements: Vec<Parsed>,
    /// Where and why the splitter refused the text (then `statements` is empty).
    pub split_error: Option<(usize, String)>,
}

/// Splits and parses one migration's up script.
pub fn parse_migration(migration: &Migration, dialect: Dialect) -> ParsedScript {
    let script = &migration.up;
    match split(&script.sql, dialect) {
        Ok(statements) => ParsedScript {
            statements: statements
                .into_iter()
                .map(|s| Parsed {
                    line: s.line + script.line_offset,
                    tx: classify(&s.sql, dialect).tx,
                    ops: parse(&s.sql, dialect),
                    span: s.span,
                    sql: s.sql,
                })
                .collect(),
            split_error: None,
        },
        Err(e) => ParsedScript { statements: Vec::new(), split_error: Some((e.line + script.line_offset, e.message)) },
    }
}

/// Parses every migration, on a few threads for a long history:
/// PostgreSQL's parser is the costly part of linting one.
pub fn parse_all(migrations: &[Migration], dialect: Dialect) -> Vec<ParsedScript> {
    airlock_core::parallel::map(migrations, PARALLEL_FROM, |m| parse_migration(m, dialect))
}

/// From this many migrations on, they are parsed on several threads.
const PARALLEL_FROM: usize = 64;

/// Lints `migrations` (in order) against `catalog`: the live schema, or
/// [`Catalog::offline`] without a database. For a long history the parser
/// runs on worker threads while this thread lints each migration, in
/// order, as soon as it is parsed.
/// The migrations may be owned or borrowed (`&[Migration]`, `&[&Migration]`).
pub fn lint<M: std::borrow::Borrow<Migration> + Sync>(
    migrations: &[M],
    catalog: Catalog,
    options: &LintOptions,
) -> Report {
    let mut linter = Linter { catalog, options, report: Report::default() };
    airlock_core::parallel::in_order(
        migrations,
        PARALLEL_FROM,
        |m| parse_migration(m.borrow(), options.dialect),
        |i, script| linter.migration(migrations[i].borrow(), &script),
    );
    linter.report
}

/// [`lint`] over scripts already parsed by [`parse_all`] (one per migration, in order).
pub fn lint_parsed(
    migrations: &[Migration],
    scripts: &[ParsedScript],
    catalog: Catalog,
    options: &LintOptions,
) -> Report {
    let mut linter = Linter { catalog, options, report: Report::default() };
    for (migration, script) in migrations.iter().zip(scripts) {
        linter.migration(migration, script);
    }
    linter.report
}

/// Lints migrations one after another, advancing the schema model past each.
struct Linter<'a> {
    catalog: Catalog,
    options: &'a LintOptions,
    report: Report,
}

impl Linter<'_> {
    /// Runs every rule on `migration` (parsed as `script`), then settles its findings.
    fn migration(&mut self, migration: &Migration, script: &ParsedScript) {
        let (options, catalog) = (self.options, &mut self.catalog);
        let mut found = unparsed_findings(migration, script, options, catalog.server_version.as_deref());
        let parsed = &script.statements;
        let mcx = MigrationContext { migration, statements: parsed, dialect: options.dialect, catalog };
        for rule in rules::ALL {
            if rule.applies_to(options.dialect) {
                rule.check_migration(&mcx, &mut found);
            }
        }
        let in_transaction = runs_in_transaction(migration, parsed, options.dialect);
        let version = migration.version.to_string();
        for (index, statement) in parsed.iter().enumerate() {
            let Ok(ops) = &statement.ops else { continue };
            for op in ops {
                let cx = Context {
                    migration,
                    statements: parsed,
                    index,
                    op,
                    catalog,
                    dialect: options.dialect,
                    in_transaction,
                    at: 0,
                };
                for rule in rules::ALL {
                    if rule.applies_to(options.dialect) {
                        rule.check(&cx, &mut found);
                    }
                }
                catalog.apply(op, &version);
            }
        }
        settle(migration, parsed, found, options, &mut self.report);
    }
}

/// A text the splitter refuses is one `unparsed-statement` finding; a
/// statement PostgreSQL's own parser refuses is a `syntax-error` (the server
/// will refuse it too, unless it is newer than the parser); one the general
/// parser (MySQL, SQLite) cannot read is `unparsed-statement`, a warning
/// unless `strict`.
fn unparsed_findings(
    migration: &Migration,
    script: &ParsedScript,
    options: &LintOptions,
    server: Option<&str>,
) -> Vec<Finding> {
    let unparsed = if options.strict { Severity::Error } else { Severity::Warning };
    let base = |line: usize, statement: Option<usize>, span, message: String, help: &str| Finding {
        rule: rules::UNPARSED,
        severity: unparsed,
        file: migration.up.path.clone(),
        line,
        version: migration.version.to_string(),
        statement,
        span,
        message,
        help: help.to_owned(),
        fix: None,
        checksum: migration.checksum.clone(),
    };
    if let Some((line, why)) = &script.split_error {
        return vec![base(
            *line,
            None,
            None,
            format!("the file cannot be split into statements: {why}"),
            "fix the SQL; the rest of this file was not checked",
        )];
    }
    // A live PostgreSQL newer than the parser may accept what it refuses.
    let newer_server = server
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u32>().ok())
        .filter(|major| *major > airlock_sql::parse::PARSER_POSTGRES_MAJOR);
    script
        .statements
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let why = p.ops.as_ref().err()?;
            if !why.certain {
                return Some(base(
                    p.line,
                    Some(i + 1),
                    Some(p.span.clone()),
                    format!("this statement could not be parsed ({why}), so no rule checked it"),
                    "check the SQL; if the server accepts it, lint cannot judge it yet (`lint --strict` makes this an error)",
                ));
            }
            // At the very end ("syntax error at end of input"), the position is the text's length.
            let at = why.position.map(|at| at.min(p.sql.trim_end().len())).filter(|at| p.sql.is_char_boundary(*at)).unwrap_or(0);
            let line = p.line + p.sql[..at].matches('\n').count();
            let column = p.sql[..at].rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            let mut finding = base(line, Some(i + 1), Some(p.span.start + at..p.span.end), String::new(), "");
            finding.rule = rules::SYNTAX;
            match newer_server {
                Some(major) => {
                    finding.severity = Severity::Warning;
                    finding.message = format!(
                        "PostgreSQL {}'s parser refuses this statement at line {line}, column {column}: {why}; the server is PostgreSQL {major}, which may accept it, so no rule checked it",
                        airlock_sql::parse::PARSER_POSTGRES_MAJOR
                    );
                    finding.help = "check it on the server; lint cannot judge it".to_owned();
                }
                None => {
                    finding.severity = Severity::Error;
                    finding.message = format!("PostgreSQL's parser refuses this statement at line {line}, column {column}: {why}");
                    finding.help = "fix the SQL: the server will refuse it too".to_owned();
                }
            }
            Some(finding)
        })
        .collect()
}

/// Whether the runner will run this migration in one transaction.
fn runs_in_transaction(migration: &Migration, parsed: &[Parsed], dialect: Dialect) -> bool {
    dialect != Dialect::MySql
        && !migration.directives.no_transaction
        && !parsed.iter().any(|p| matches!(p.tx, TxNeed::OutsideTransaction(_)))
}

/// Applies severities and allows to one migration's findings.
fn settle(migration: &Migration, parsed: &[Parsed], found: Vec<Finding>, options: &LintOptions, report: &mut Report) {
    let allows = &migration.directives.allows;
    let mut used = vec![false; allows.len()];
    let mut kept = Vec::new();
    for mut finding in found {
        match options.severities.get(finding.rule) {
            Some(None) => continue,
            Some(Some(configured)) => {
                // A rule that stepped its finding down (a small table, no
                // database to tell) keeps the step below the configured level.
                let default = rules::ALL
                    .iter()
                    .find(|r| r.id() == finding.rule)
                    .map_or(finding.severity, |r| r.default_severity());
                let step = rank(default).saturating_sub(rank(finding.severity));
                finding.severity = from_rank(rank(*configured).saturating_sub(step));
            }
            None => {}
        }
        let offset = migration.up.line_offset;
        let allow = allows
            .iter()
            .enumerate()
            .find(|(_, a)| accepts(&a.rule, finding.rule) && covers(a, offset, &finding, parsed));
        match allow {
            Some((i, a)) => {
                used[i] = true;
                report.suppressed.push(Suppressed { finding, reason: a.reason.clone() });
            }
            None => kept.push(finding),
        }
    }
    for (allow, used) in allows.iter().zip(used) {
        let turned_off = matches!(options.severities.get(allow.rule.as_str()), Some(None));
        // The plan's risks are the plan's to judge: lint cannot tell whether they are used.
        let plan_risk = airlock_plan::RiskCode::from_name(&allow.rule).is_some_and(airlock_plan::RiskCode::allowable);
        if !used && !turned_off && !plan_risk {
            let known = rules::ALL.iter().any(|r| r.id() == allow.rule);
            kept.push(Finding {
                rule: rules::UNUSED_ALLOW,
                severity: Severity::Warning,
                file: migration.up.path.clone(),
                line: allow.line + migration.up.line_offset,
                version: migration.version.to_string(),
                statement: None,
                span: None,
                message: if known {
                    format!("`-- airlock:allow {}` suppresses nothing here", allow.rule)
                } else {
                    format!("`-- airlock:allow {}`: there is no rule `{}`", allow.rule, allow.rule)
                },
                help: "remove the allow, or move it to the line before the statement it is for".to_owned(),
                fix: None,
                checksum: migration.checksum.clone(),
            });
        }
    }
    kept.retain(|f| rank(f.severity) >= rank(options.least));
    kept.sort_by(|a, b| (a.line, a.rule).cmp(&(b.line, b.rule)));
    report.findings.extend(kept);
}

fn rank(severity: Severity) -> u8 {
    match severity {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Error => 2,
    }
}

fn from_rank(rank: u8) -> Severity {
    match rank {
        0 => Severity::Info,
        1 => Severity::Warning,
        _ => Severity::Error,
    }
}

/// Whether an allow covers a finding: a header allow covers the whole file; an
/// inline one, the first statement after it.
fn covers(allow: &Allow, line_offset: usize, finding: &Finding, parsed: &[Parsed]) -> bool {
    allow.header || finding.statement.is_some_and(|index| covers_statement(allow, line_offset, index, parsed))
}

/// Whether `allow` applies to statement `index` (1-based): a header allow to
/// every statement, any other to the statement right after it.
fn covers_statement(allow: &Allow, line_offset: usize, index: usize, parsed: &[Parsed]) -> bool {
    if allow.header {
        return true;
    }
    let next = parsed.iter().position(|p| p.line > allow.line + line_offset);
    next == Some(index - 1)
}

/// Ids that name the same problem: the plan's `attribute-loss` and lint's
/// `modify-drops-attributes` are one lost MySQL column attribute.
const SAME_PROBLEM: [(&str, &str); 1] = [(airlock_plan::RiskCode::AttributeLoss.as_str(), "modify-drops-attributes")];

/// Whether an allow naming `allowed` accepts a finding or risk named `id`.
fn accepts(allowed: &str, id: &str) -> bool {
    allowed == id || SAME_PROBLEM.iter().any(|(a, b)| (allowed == *a && id == *b) || (allowed == *b && id == *a))
}

/// The allow of `migration` that accepts the plan risk `id` for its
/// statement `index` (1-based), if any. Stricter than lint's: a header allow
/// on the line right before the first statement is that statement's only, as
/// it reads; one higher up in the header covers the whole file.
pub fn allow_for<'a>(migration: &'a Migration, parsed: &[Parsed], index: usize, id: &str) -> Option<&'a Allow> {
    let offset = migration.up.line_offset;
    let first_line = parsed.first().map_or(0, |p| p.line);
    migration.directives.allows.iter().find(|a| {
        let just_above_first = a.header && a.line + offset + 1 == first_line;
        accepts(&a.rule, id) && if just_above_first { index == 1 } else { covers_statement(a, offset, index, parsed) }
    })
}
