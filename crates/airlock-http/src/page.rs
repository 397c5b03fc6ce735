//! The pages people look at: `/` (every environment at a glance),
//! `/env/NAME` (one environment: problems with their commands, pending
//! migrations with their plan, backfills, the audit trail, what was applied)
//! and `/env/NAME/migrations/VERSION` (one migration: its SQL, its plan, its
//! history), plus `/events`, a server-sent event stream that tells an open
//! page when what it shows has changed.
//!
//! Rendered on the server with askama (every value HTML-escaped), one
//! stylesheet and one small script inlined: no external asset, so the page
//! works offline and behind a firewall. Read-only like the rest of `serve`.

use std::collections::HashSet;
use std::convert::Infallible;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_core::Version;
use airlock_exec::{
    Assessment, HistoryEntry, MigrationPlan, PlanReport, Requirement, StatusReport, human_duration, human_estimate,
};
use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use futures_util::Stream;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use crate::{AppState, Env, PlanAnswer, Read, Shared};

/// How long a page waits for a plan before it says "planning" and lets the
/// live update bring it.
const PLAN_WAIT: Duration = Duration::from_millis(1500);
/// Applied migrations an environment's page lists unless asked for all.
const APPLIED_SHOWN: usize = 50;
/// Audit entries an environment's page lists.
pub(crate) const AUDIT_SHOWN: usize = 30;
/// How often an event stream looks for a change.
const EVENT_EVERY: Duration = Duration::from_secs(1);
/// How old a read may be when it answers a page (at least `--max-age`): a
/// person reads the time it was read at, and an open page updates itself
/// at this pace anyway. Ten people on the overview cost each database one
/// read a second, not ten.
const PAGE_MAX_AGE: Duration = EVENT_EVERY;

/// What a path segment of a link keeps as it is: versions (`1.2`) and usual names read plainly.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'-').remove(b'_').remove(b'~');

/// A path segment, percent-encoded for a link.
fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

fn env_href(name: &str) -> String {
    format!("/env/{}", segment(name))
}

fn migration_href(env: &str, version: &str) -> String {
    format!("/env/{}/migrations/{}", segment(env), segment(version))
}

/// The commands a message names in backticks (`airlock resolve 3 --mark-applied`),
/// to show on their own where they can be copied.
fn commands_in(message: &str) -> Vec<String> {
    message.split('`').skip(1).step_by(2).filter(|c| c.starts_with("airlock ")).map(str::to_owned).collect()
}

/// Milliseconds as a person reads them.
fn millis(ms: u64) -> String {
    human_duration(Duration::from_millis(ms))
}

/// A time as RFC 3339 shortened to the second, in UTC: `2026-12-02 10:04:05 UTC`.
fn when(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// A problem as the page shows it.
pub(crate) struct ProblemView {
    code: &'static str,
    version: Option<String>,
    href: Option<String>,
    message: String,
    detail: Option<String>,
    commands: Vec<String>,
    blocking: bool,
}

impl ProblemView {
    /// A problem of `status`, linking to its migration's page in `env` when given.
    fn of(p: &airlock_exec::ProblemEntry, env: Option<&str>) -> ProblemView {
        ProblemView {
            code: p.code,
            version: p.version.clone(),
            href: env.zip(p.version.as_ref()).map(|(env, v)| migration_href(env, v)),
            message: p.message.clone(),
            detail: p.detail.clone(),
            commands: commands_in(&p.message),
            blocking: p.blocking,
        }
    }
}

/// A pending migration with what its plan says.
pub(crate) struct PendingView {
    version: String,
    name: String,
    kind: &'static str,
    contract: bool,
    href: String,
    verdict: Option<&'static str>,
    estimate: Option<String>,
}

pub(crate) struct BackfillView {
    version: String,
    name: String,
    href: String,
    table: String,
    state: &'static str,
    percent: u64,
    progress: String,
}

pub(crate) struct AppliedView {
    version: String,
    name: String,
    kind: &'static str,
    href: String,
    applied_at: String,
    duration: String,
}

/// A backup taken before migrating.
pub(crate) struct BackupView {
    id: String,
    at: String,
    what: String,
    stored: String,
    took: String,
    file: String,
    /// `kept`, `missing` (its file is not where history says), `deleted` (by retention) or `sent` (to a command).
    state: &'static str,
    why: String,
}

/// The newest drift comparison recorded.
pub(crate) struct DriftView {
    /// `matches`, `differs` or `unchecked`.
    outcome: String,
    /// What it found, in a few words.
    said: String,
    /// Who compared, when.
    by: String,
    differences: Vec<airlock_exec::DriftEntry>,
    /// Differences counted but not recorded.
    more: usize,
}

impl DriftView {
    fn of(seen: &airlock_exec::DriftSeen) -> DriftView {
        let said = match seen.outcome.as_str() {
            "matches" => format!("no difference from {}", seen.against),
            "differs" => {
                format!("{} difference{} from {}", seen.count, if seen.count == 1 { "" } else { "s" }, seen.against)
            }
            _ => format!("could not compare: {}", seen.error.as_deref().unwrap_or("no reason recorded")),
        };
        let how = if seen.command == "migrate" { "migrate's check" } else { "airlock drift" };
        DriftView {
            outcome: seen.outcome.clone(),
            said,
            by: format!("{how} at {} by {}@{}", when(&seen.at), seen.os_user, seen.host),
            differences: seen.differences.clone(),
            more: seen.count.saturating_sub(seen.differences.len()),
        }
    }
}

pub(crate) struct AuditView {
    at: String,
    action: String,
    versions: Vec<(String, String)>,
    who: String,
    reason: String,
    outcome: String,
}

/// Versions an audit entry links to; a run of more says how many more.
const VERSIONS_SHOWN: usize = 12;

impl AuditView {
    fn of(env: &str, e: &HistoryEntry) -> AuditView {
        let mut versions: Vec<(String, String)> =
            e.versions.iter().take(VERSIONS_SHOWN).map(|v| (v.clone(), migration_href(env, v))).collect();
        if e.versions.len() > VERSIONS_SHOWN {
            // The page's applied list has them all.
            versions.push((
                format!("and {} more", e.versions.len() - VERSIONS_SHOWN),
                format!("{}?applied=all#applied", env_href(env)),
            ));
        }
        AuditView {
            at: when(&e.at),
            action: e.action.clone(),
            versions,
            who: format!("{}@{}", e.os_user, e.host),
            reason: e.reason.clone().unwrap_or_default(),
            outcome: e.outcome.clone().unwrap_or_default(),
        }
    }
}

/// The plan of an environment's pending migrations, as far as it is known.
pub(crate) enum PlanView {
    /// Nothing is pending.
    Nothing,
    /// Being made; the page updates when it is done.
    Planning,
    /// It could not be made.
    Failed(String),
    /// Its verdict.
    Done(&'static str),
}

/// One environment, everything a page says of it.
pub(crate) struct EnvView {
    name: String,
    href: String,
    /// The database could not be read: why.
    error: Option<String>,
    database: String,
    state: &'static str,
    current_version: String,
    gate_ok: bool,
    gate_reasons: Vec<String>,
    lock: Option<String>,
    last_run: Option<String>,
    expanded: Option<String>,
    problems: Vec<ProblemView>,
    pending: Vec<PendingView>,
    plan: PlanView,
    backfills: Vec<BackfillView>,
    warnings: Vec<String>,
    applied: Vec<AppliedView>,
    applied_total: usize,
    audit: Vec<AuditView>,
    backups: Vec<BackupView>,
    drift: Option<DriftView>,
}

fn estimate(plan: &MigrationPlan) -> Option<String> {
    let total: f64 = plan.statements.iter().filter_map(|s| s.estimated_seconds).sum();
    plan.statements.iter().any(|s| s.estimated_seconds.is_some()).then(|| human_estimate(total))
}

impl EnvView {
    fn of(name: &str, read: &Read, plan: Option<&Result<PlanReport, String>>, all_applied: bool) -> EnvView {
        let mut view = EnvView {
            name: name.to_owned(),
            href: env_href(name),
            error: None,
            database: String::new(),
            state: "unknown",
            current_version: "none".to_owned(),
            gate_ok: false,
            gate_reasons: Vec::new(),
            lock: None,
            last_run: None,
            expanded: None,
            problems: Vec::new(),
            pending: Vec::new(),
            plan: PlanView::Nothing,
            backfills: Vec::new(),
            warnings: Vec::new(),
            applied: Vec::new(),
            applied_total: 0,
            audit: Vec::new(),
            backups: Vec::new(),
            drift: None,
        };
        let assessment = match read.answer.as_ref() {
            Ok(a) => a,
            Err(why) => {
                view.error = Some(format!("cannot read the database: {why}"));
                view.gate_reasons = vec!["the database cannot be read".to_owned()];
                return view;
            }
        };
        let status = &assessment.status;
        let gate = assessment.gate(&Requirement::Latest);
        view.database = status.database.clone();
        view.state = status.state;
        view.current_version = status.current_version.clone().unwrap_or_else(|| "none".to_owned());
        view.gate_ok = gate.satisfied;
        view.gate_reasons = gate.reasons;
        view.lock = status.lock.as_ref().map(|l| {
            let what = l.version.as_ref().map(|v| format!("applying {v}")).unwrap_or_else(|| "running".to_owned());
            format!("{what}: pid {} on {} ({}) since {}", l.pid, l.host, l.os_user, when(&l.since))
        });
        view.last_run = status.last_run.as_ref().map(|r| {
            format!(
                "{} at {}: {} migration{} in {} by {}@{}",
                r.outcome,
                when(&r.finished_at),
                r.migrations,
                if r.migrations == 1 { "" } else { "s" },
                millis(r.duration_ms as u64),
                r.os_user,
                r.host
            )
        });
        view.expanded = status.expanded.clone();
        view.warnings = status.warnings.clone();
        view.problems = status.problems.iter().map(|p| ProblemView::of(p, Some(name))).collect();
        let plans: Option<&PlanReport> = plan.and_then(|p| p.as_ref().ok());
        view.plan = match plan {
            _ if status.pending.is_empty() => PlanView::Nothing,
            None => PlanView::Planning,
            Some(Err(why)) => PlanView::Failed(why.clone()),
            Some(Ok(report)) => PlanView::Done(report.verdict.as_str()),
        };
        view.pending = status
            .pending
            .iter()
            .map(|p| {
                let planned = plans.and_then(|r| r.migrations.iter().find(|m| m.version == p.version));
                PendingView {
                    version: p.version.clone(),
                    name: p.name.clone(),
                    kind: p.kind,
                    contract: p.contract,
                    href: migration_href(name, &p.version),
                    verdict: planned.map(|m| m.verdict.as_str()),
                    estimate: planned.and_then(estimate),
                }
            })
            .collect();
        view.backfills = status
            .backfills
            .iter()
            .map(|b| {
                let percent = (b.rows_done * 100).checked_div(b.rows_total).unwrap_or(0).min(100);
                let eta = b
                    .eta_seconds
                    .map(|s| format!(", about {} left", human_duration(Duration::from_secs(s))))
                    .unwrap_or_default();
                BackfillView {
                    version: b.version.clone(),
                    name: b.name.clone(),
                    href: migration_href(name, &b.version),
                    table: b.table.clone().unwrap_or_default(),
                    state: b.state,
                    percent,
                    progress: format!(
                        "statement {} of {}: {} of {} rows ({percent} %), {} changed in {} batches{eta}",
                        b.statement, b.statements, b.rows_done, b.rows_total, b.rows_changed, b.batches
                    ),
                }
            })
            .collect();
        view.applied_total = status.applied.len();
        let shown = if all_applied { usize::MAX } else { APPLIED_SHOWN };
        view.applied = status
            .applied
            .iter()
            .rev()
            .take(shown)
            .map(|a| AppliedView {
                version: a.version.clone(),
                name: a.name.clone(),
                kind: a.kind,
                href: migration_href(name, &a.version),
                applied_at: a.applied_at.as_deref().map(when).unwrap_or_default(),
                duration: a.duration_ms.map(|ms| millis(ms as u64)).unwrap_or_default(),
            })
            .collect();
        view.audit = assessment.audit.iter().map(|e| AuditView::of(name, e)).collect();
        view.drift = assessment.drift.as_ref().map(DriftView::of);
        view.backups = assessment
            .backups
            .iter()
            .map(|b| {
                let m = &b.manifest;
                let (state, why) = match (&b.deleted, b.present) {
                    (Some(why), _) => ("deleted", why.clone()),
                    (None, Some(false)) => ("missing", "its file is not where history says".to_owned()),
                    (None, Some(true)) => ("kept", String::new()),
                    (None, None) => ("sent", "to the backup command".to_owned()),
                };
                BackupView {
                    id: m.id.clone(),
                    at: when(&m.taken_at),
                    what: match m.mode {
                        airlock_exec::BackupMode::Database => "the database".to_owned(),
                        _ => m.tables.iter().map(|t| t.table.clone()).collect::<Vec<_>>().join(", "),
                    },
                    stored: airlock_exec::human_bytes(m.stored_bytes),
                    took: millis(m.duration_ms),
                    file: m.file.clone(),
                    state,
                    why,
                }
            })
            .collect();
        view
    }

    /// `applied` is cut to the newest few.
    fn applied_cut(&self) -> bool {
        self.applied.len() < self.applied_total
    }

    /// The environment's name as one shell word, for a command to copy.
    fn env_arg(&self) -> String {
        let plain = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
        match self.name.chars().all(plain) && !self.name.is_empty() {
            true => self.name.clone(),
            false => format!("'{}'", self.name.replace('\'', r"'\''")),
        }
    }
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    envs: Vec<EnvView>,
    fleets: Vec<FleetLink>,
    events: String,
    fingerprint: String,
    generated: String,
}

/// A fleet on the overview: its page, and its status as last read.
pub(crate) struct FleetLink {
    name: String,
    href: String,
    summary: String,
}

/// One member on a fleet's page.
pub(crate) struct MemberView {
    name: String,
    state: &'static str,
    version: String,
    pending: usize,
    problem: String,
}

/// A fleet's page.
pub(crate) struct FleetView {
    name: String,
    href_name: String,
    error: Option<String>,
    summary: String,
    members: Vec<MemberView>,
}

/// `N of M member(s) at the latest version (V)`, and how many need a look.
fn fleet_summary(report: &airlock_exec::FleetStatusReport) -> String {
    let total = report.members.len();
    let latest = report.latest.as_deref().unwrap_or("none");
    match report.behind.len() {
        0 => format!("all {total} member(s) at the latest version ({latest})"),
        n => format!(
            "{} of {total} member(s) at the latest version ({latest}); {n} behind, failed or unreadable",
            total - n
        ),
    }
}

#[derive(Template)]
#[template(path = "fleet.html")]
struct FleetPage {
    fleet: FleetView,
    events: String,
    fingerprint: String,
    generated: String,
}

/// `GET /fleet/NAME`: every member of a fleet, behind ones first.
pub(crate) async fn fleet(State(shared): AppState, Path(name): Path<String>) -> Response {
    let Some(state) = shared.fleets.get(&name) else {
        let known: Vec<&str> = shared.fleets.keys().map(String::as_str).collect();
        let known = if known.is_empty() { "none in airlock.toml".to_owned() } else { known.join(", ") };
        return missing("No such fleet", format!("no fleet `{name}` (known: {known})"));
    };
    let mut view = FleetView {
        name: name.clone(),
        href_name: segment(&name),
        error: None,
        summary: String::new(),
        members: Vec::new(),
    };
    match state.status().await {
        Err(why) => view.error = Some(format!("its members could not be listed: {why}")),
        Ok(report) => {
            view.summary = fleet_summary(&report);
            let mut members: Vec<&airlock_exec::MemberStatus> = report.members.iter().collect();
            // Those that need a look first, each group in the fleet's order.
            members.sort_by_key(|m| !report.behind.contains(&m.name));
            view.members = members
                .into_iter()
                .map(|m| MemberView {
                    name: m.name.clone(),
                    state: m.state,
                    version: m.current_version.clone().unwrap_or_else(|| "none".to_owned()),
                    pending: m.pending,
                    problem: m.error.clone().or_else(|| m.problems.first().cloned()).unwrap_or_default(),
                })
                .collect();
        }
    }
    let html = FleetPage { fleet: view, events: String::new(), fingerprint: String::new(), generated: now() };
    page(StatusCode::OK, html.render())
}

#[derive(Template)]
#[template(path = "environment.html")]
struct EnvironmentPage {
    env: EnvView,
    events: String,
    fingerprint: String,
    generated: String,
}

/// A statement of a migration's plan, as the page shows it.
struct StatementView {
    index: usize,
    line: usize,
    sql: String,
    verdict: &'static str,
    estimate: Option<String>,
    locks: Vec<String>,
    risks: Vec<(String, String, String)>,
    checks: Vec<String>,
}

#[derive(Template)]
#[template(path = "migration.html")]
struct MigrationPage {
    env: String,
    env_href: String,
    version: String,
    name: String,
    kind: &'static str,
    /// `applied`, `pending`, `failed` or `unknown`, with a sentence.
    state: &'static str,
    said: String,
    file: Option<String>,
    up: Option<String>,
    down: Option<String>,
    checksum_note: Option<String>,
    problems: Vec<ProblemView>,
    planning: bool,
    plan_error: Option<String>,
    verdict: Option<&'static str>,
    statements: Vec<StatementView>,
    events_error: Option<String>,
    history: Vec<AuditView>,
    events: String,
    fingerprint: String,
    generated: String,
}

#[derive(Template)]
#[template(path = "missing.html")]
struct MissingPage {
    title: String,
    message: String,
}

fn page(code: StatusCode, html: Result<String, askama::Error>) -> Response {
    let mut response = match html {
        Ok(html) => (code, Html(html)).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("rendering the page failed: {e}")).into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Nothing but what the page itself carries: its one script (by its hash,
    // so nothing injected could run), no frames, no forms, no outside assets.
    if let Ok(policy) = HeaderValue::from_str(&content_policy()) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// The page's one script, as the templates include it (askama drops the file's last line break).
fn live_js() -> &'static str {
    let file = include_str!("../templates/live.js");
    file.strip_suffix('\n').unwrap_or(file)
}

/// The Content-Security-Policy of every page: only the live-update script runs.
fn content_policy() -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POLICY
        .get_or_init(|| {
            let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(live_js().as_bytes()));
            format!(
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{hash}'; connect-src 'self'; \
                 img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
            )
        })
        .clone()
}

fn missing(title: &str, message: String) -> Response {
    page(StatusCode::NOT_FOUND, MissingPage { title: title.to_owned(), message }.render())
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// What a page shows of its environments (each read, and which plan), in a
/// short hash: an event stream compares it to tell an open page that it changed.
fn fingerprint_of(reads: &[(&Env, &Read, Option<&PlanAnswer>)]) -> String {
    let mut hasher = DefaultHasher::new();
    for (env, read, plan) in reads {
        env.name.hash(&mut hasher);
        read.digest().hash(&mut hasher);
        plan.map(|(generation, _)| *generation).hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// The event stream of a page (`live.js` adds `since=` the fingerprint it shows).
fn events_url(env: Option<&str>) -> String {
    match env {
        Some(name) => format!("/events?env={}", segment(name)),
        None => "/events".to_owned(),
    }
}

/// The plan for a read, waited for up to `wait`; None while it is still being
/// made. A page (`refresh`) has an old plan made again; a stream does not.
async fn plan_of(env: &Env, read: &Read, wait: Duration, refresh: bool) -> Option<PlanAnswer> {
    match read.answer.as_ref() {
        Ok(a) if !a.status.pending.is_empty() => env.plan(a, wait, refresh).await,
        _ => None,
    }
}

fn shown(plan: &Option<PlanAnswer>) -> Option<&Result<PlanReport, String>> {
    plan.as_ref().map(|(_, answer)| answer.as_ref())
}

/// `GET /`: every environment.
pub(crate) async fn overview(State(shared): AppState) -> Response {
    let arrived = Instant::now();
    let shared = shared.as_ref();
    let envs: Vec<&Env> = shared.order.iter().map(|name| &shared.envs[name]).collect();
    let reads = futures_util::future::join_all(envs.iter().map(|env| async move {
        let read = shared.read_within(env, arrived, PAGE_MAX_AGE).await;
        let plan = plan_of(env, &read, PLAN_WAIT, true).await;
        (*env, read, plan)
    }))
    .await;
    let views = reads.iter().map(|(env, read, plan)| EnvView::of(&env.name, read, shown(plan), false)).collect();
    let seen: Vec<_> = reads.iter().map(|(env, read, plan)| (*env, read, plan.as_ref())).collect();
    let fingerprint = fingerprint_of(&seen);
    let mut fleets = Vec::new();
    for (name, state) in &shared.fleets {
        let summary = match state.last() {
            Some(report) => fleet_summary(&report),
            None => "not read yet: open it".to_owned(),
        };
        fleets.push(FleetLink { name: name.clone(), href: format!("/fleet/{}", segment(name)), summary });
    }
    let html = OverviewPage { envs: views, fleets, events: events_url(None), fingerprint, generated: now() };
    page(StatusCode::OK, html.render())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnvPageQuery {
    applied: Option<String>,
}

/// `GET /env/NAME`: one environment.
pub(crate) async fn environment(
    State(shared): AppState,
    Path(name): Path<String>,
    parsed: Result<Query<EnvPageQuery>, QueryRejection>,
) -> Response {
    let arrived = Instant::now();
    let all = matches!(parsed, Ok(Query(EnvPageQuery { applied: Some(ref a) })) if a == "all");
    let Some(env) = shared.envs.get(&name) else {
        return missing("No such environment", shared.unknown(&name));
    };
    let read = shared.read_within(env, arrived, PAGE_MAX_AGE).await;
    let plan = plan_of(env, &read, PLAN_WAIT, true).await;
    let view = EnvView::of(&env.name, &read, shown(&plan), all);
    let fingerprint = fingerprint_of(&[(env, &read, plan.as_ref())]);
    let html = EnvironmentPage { env: view, events: events_url(Some(&name)), fingerprint, generated: now() };
    page(StatusCode::OK, html.render())
}

fn statement_views(plan: &MigrationPlan) -> Vec<StatementView> {
    plan.statements
        .iter()
        .map(|s| StatementView {
            index: s.index,
            line: s.line,
            sql: s.sql.clone(),
            verdict: s.verdict.as_str(),
            estimate: s.estimated_seconds.map(human_estimate),
            locks: s
                .locks
                .iter()
                .map(|l| {
                    let blocks = match (l.blocks_reads, l.blocks_writes) {
                        (true, _) => " (blocks reads and writes)",
                        (false, true) => " (blocks writes)",
                        _ => "",
                    };
                    format!("{} on {}{blocks}", l.mode, l.table)
                })
                .collect(),
            risks: s
                .reasons
                .iter()
                .map(|r| {
                    let accepted = r.allowed.as_ref().map(|a| format!("accepted: {a}")).unwrap_or_default();
                    (r.message.clone(), r.fix.clone(), accepted)
                })
                .collect(),
            checks: s.checks.iter().map(|c| c.message.clone()).collect(),
        })
        .collect()
}

/// `GET /env/NAME/migrations/VERSION`: one migration.
pub(crate) async fn migration(State(shared): AppState, Path((name, version)): Path<(String, String)>) -> Response {
    let arrived = Instant::now();
    let Some(env) = shared.envs.get(&name) else {
        return missing("No such environment", shared.unknown(&name));
    };
    let Ok(parsed) = Version::parse(&version) else {
        return missing("No such migration", format!("`{version}` is not a version"));
    };
    // As history and status spell it: `03` is migration 3.
    let version = parsed.to_string();
    let read = shared.read_within(env, arrived, PAGE_MAX_AGE).await;
    let assessment: Option<&Assessment> = read.answer.as_ref().as_ref().ok();
    let status: Option<&StatusReport> = assessment.map(|a| &a.status);
    let file = assessment.and_then(|a| a.discovered.migrations.iter().find(|m| m.version == parsed));
    let applied = status.and_then(|s| s.applied.iter().find(|a| a.version == version));
    let pending = status.and_then(|s| s.pending.iter().find(|p| p.version == version));
    let problems: Vec<ProblemView> = status
        .map(|s| {
            s.problems
                .iter()
                .filter(|p| p.version.as_deref() == Some(version.as_str()))
                .map(|p| ProblemView::of(p, None))
                .collect()
        })
        .unwrap_or_default();
    if assessment.is_some() && file.is_none() && applied.is_none() && problems.is_empty() {
        return missing(
            "No such migration",
            format!("environment `{name}` has no migration {version}, applied or in its directory"),
        );
    }
    let (events, events_error) = match read.answer.as_ref() {
        // Said once, above: no second wait for a database that is down.
        Err(_) => (Vec::new(), None),
        Ok(_) => match env.migration_events(&parsed, shared.read_timeout).await {
            Ok(events) => (events, None),
            Err(why) => (Vec::new(), Some(why)),
        },
    };
    let (state, said) = match (applied, pending, problems.iter().any(|p| p.blocking), read.answer.as_ref()) {
        (_, _, _, Err(why)) => ("unknown", format!("cannot read the database: {why}")),
        (_, _, true, _) => ("failed", "it needs attention before the next run: see below".to_owned()),
        (Some(a), _, _, _) => (
            "applied",
            format!(
                "applied {}{}",
                a.applied_at.as_deref().map(when).unwrap_or_default(),
                a.duration_ms.map(|ms| format!(" in {}", millis(ms as u64))).unwrap_or_default()
            ),
        ),
        (None, Some(p), _, _) if p.contract => {
            ("pending", "pending: a contract, run by `airlock migrate --contract` once no old app runs".to_owned())
        }
        (None, Some(_), _, _) => ("pending", "pending: `airlock migrate` runs it".to_owned()),
        (None, None, _, _) => ("unknown", "not applied, and not pending".to_owned()),
    };
    let checksum_note = match (applied, file) {
        (Some(a), Some(f)) if a.checksum != f.checksum => Some(format!(
            "its file changed since it was applied (recorded checksum {}, the file's {})",
            a.checksum, f.checksum
        )),
        (Some(_), None) => Some("applied, but its file is not in the migrations directory".to_owned()),
        _ => None,
    };
    let (mut planning, mut plan_error, mut verdict, mut statements) = (false, None, None, Vec::new());
    let plan = match pending {
        Some(_) => plan_of(env, &read, PLAN_WAIT, true).await,
        None => None,
    };
    if pending.is_some() {
        match shown(&plan) {
            None => planning = true,
            Some(Err(why)) => plan_error = Some(why.clone()),
            Some(Ok(report)) => {
                if let Some(plan) = report.migrations.iter().find(|m| m.version == version) {
                    verdict = Some(plan.verdict.as_str());
                    statements = statement_views(plan);
                }
            }
        }
    }
    let fingerprint = fingerprint_of(&[(env, &read, plan.as_ref())]);
    let html = MigrationPage {
        env: name.clone(),
        env_href: env_href(&name),
        version: version.clone(),
        name: file.map(|f| f.name.clone()).or_else(|| applied.map(|a| a.name.clone())).unwrap_or_default(),
        kind: file.map(|f| f.kind.as_str()).or(applied.map(|a| a.kind)).unwrap_or("schema"),
        state,
        said,
        file: file.and_then(|f| f.up.path.file_name()).map(|n| n.to_string_lossy().into_owned()),
        up: file.map(|f| f.up.sql.clone()),
        down: file.and_then(|f| f.down.as_ref()).map(|d| d.sql.clone()),
        checksum_note,
        problems,
        planning,
        plan_error,
        verdict,
        statements,
        events_error,
        history: events.iter().map(|e| AuditView::of(&name, e)).collect(),
        events: events_url(Some(&name)),
        fingerprint,
        generated: now(),
    };
    page(StatusCode::OK, html.render())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    env: Option<String>,
    since: Option<String>,
}

/// `GET /events[?env=NAME][&since=FINGERPRINT]`: a `change` event whenever
/// what the page of that environment (or the overview) shows changes. Ends
/// when the server stops.
pub(crate) async fn events(State(shared): AppState, parsed: Result<Query<EventsQuery>, QueryRejection>) -> Response {
    let query = match crate::query(parsed) {
        Ok(q) => q,
        Err(response) => return *response,
    };
    let names: Vec<String> = match query.env {
        Some(name) if !shared.envs.contains_key(&name) => {
            return crate::problem(StatusCode::NOT_FOUND, shared.unknown(&name));
        }
        Some(name) => vec![name],
        None => shared.order.clone(),
    };
    let stream = changes(shared, names, query.since.unwrap_or_default());
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

fn changes(shared: Arc<Shared>, names: Vec<String>, since: String) -> impl Stream<Item = Result<Event, Infallible>> {
    let stopping = shared.stopping.clone();
    futures_util::stream::unfold(
        (shared, names, since, stopping),
        |(shared, names, mut last, mut stopping)| async move {
            loop {
                let stopped = async {
                    if stopping.changed().await.is_err() {
                        // No one can tell it to stop (a bare `router()`): it never will.
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(EVENT_EVERY) => {}
                    _ = stopped => return None,
                }
                let now = {
                    let (arrived, shared) = (Instant::now(), shared.as_ref());
                    // Streams share reads: however many pages are open, an
                    // environment is read about once a second for them.
                    let reads = futures_util::future::join_all(names.iter().map(|name| async move {
                        let env = &shared.envs[name];
                        let read = shared.read_within(env, arrived, EVENT_EVERY).await;
                        // The plan on hand, or one started for pages that wait for it.
                        let plan = plan_of(env, &read, Duration::ZERO, false).await;
                        (env, read, plan)
                    }))
                    .await;
                    let seen: Vec<_> = reads.iter().map(|(env, read, plan)| (*env, read, plan.as_ref())).collect();
                    fingerprint_of(&seen)
                };
                if now != last {
                    last.clone_from(&now);
                    let event = Event::default().event("change").data(now);
                    return Some((Ok(event), (shared, names, last, stopping)));
                }
            }
        },
    )
}

/// Versions of the pending migrations and their files' checksums: a plan
/// made for the same key still holds (for a while: the data it checked moves).
pub(crate) fn plan_key(assessment: &Assessment) -> String {
    let pending: HashSet<&str> = assessment.status.pending.iter().map(|p| p.version.as_str()).collect();
    let files = assessment
        .discovered
        .migrations
        .iter()
        .filter(|m| pending.contains(m.version.to_string().as_str()))
        .map(|m| format!("{}:{}", m.version, m.checksum))
        .collect::<Vec<_>>()
        .join(",");
    format!("{}|{}|{}", assessment.status.state, assessment.status.current_version.as_deref().unwrap_or(""), files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_found_in_backticks() {
        let message = "fix the cause, then run one of: `airlock resolve 3 --retry-from-failed` (runs statements 2 onward), \
                       `airlock resolve 3 --mark-applied` (you completed it by hand), and not `SELECT 1`";
        assert_eq!(commands_in(message), ["airlock resolve 3 --retry-from-failed", "airlock resolve 3 --mark-applied"]);
        assert!(commands_in("nothing to run").is_empty());
    }

    /// The policy's hash is of the script exactly as the page carries it.
    #[test]
    fn the_page_carries_the_script_the_policy_allows() {
        let page = OverviewPage {
            envs: Vec::new(),
            fleets: Vec::new(),
            events: "/events".to_owned(),
            fingerprint: "0".to_owned(),
            generated: now(),
        };
        let html = page.render().unwrap();
        assert!(html.contains(&format!("<script>{}</script>", live_js())), "{html}");
        assert!(content_policy().contains("script-src 'sha256-"), "{}", content_policy());
    }

    #[test]
    fn links_encode_what_a_path_cannot_hold() {
        assert_eq!(migration_href("eu west/1", "1.2"), "/env/eu%20west%2F1/migrations/1.2");
        assert_eq!(when("2026-12-02T10:04:05.123+00:00"), "2026-12-02 10:04:05 UTC");
    }
}
