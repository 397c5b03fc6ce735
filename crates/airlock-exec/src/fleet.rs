//! Fleets: the same migrations over many databases (one per tenant or
//! shard). `migrate` first looks at every member as its own `migrate
//! --dry-run` would (lint, the plan's checks on its data, drift, the backup
//! budget) and changes nothing anywhere when one member is refused; then
//! runs a canary, then stages, at most `parallel` members at once, and starts
//! no member after the first failure (those running finish: a statement is
//! never cut off half-way). What ran is in each member's own history, so
//! running again resumes where it stopped: members already current have
//! nothing pending. `plan`, `status` and `gate` ask every member the same
//! question and answer for the fleet.

use std::future::Future;
use std::time::{Duration, Instant};

use airlock_core::Version;
use chrono::Utc;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

use crate::error::{ExecError, exit};
use crate::gate::{Requirement, judge};
use crate::interrupt::Interrupt;
use crate::plan::{PlanReport, Verdict};
use crate::report::{Reporter, RunEntry};
use crate::{Options, interrupt};

/// One database of a fleet.
pub struct Member {
    /// How output names it: a name the member list gave, else its URL (password hidden).
    pub name: String,
    /// How to reach and migrate it.
    pub options: Options,
}

/// How many members a stage holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageSize {
    /// This many.
    Members(usize),
    /// This share of the members with something to run, rounded up.
    Percent(u32),
}

impl StageSize {
    /// `10` or `25%`.
    pub fn parse(text: &str) -> Result<StageSize, String> {
        let text = text.trim();
        let bad = || format!("`{text}`: a number of members (`10`) or a share of them (`25%`)");
        match text.strip_suffix('%') {
            Some(share) => match share.trim().parse::<u32>() {
                Ok(p @ 1..=100) => Ok(StageSize::Percent(p)),
                _ => Err(bad()),
            },
            None => match text.parse::<usize>() {
                Ok(n @ 1..) => Ok(StageSize::Members(n)),
                _ => Err(bad()),
            },
        }
    }

    /// Members per stage when `of` have something to run (at least one).
    fn members(self, of: usize) -> usize {
        match self {
            StageSize::Members(n) => n,
            StageSize::Percent(p) => (of * p as usize).div_ceil(100),
        }
        .max(1)
    }
}

/// How a fleet migration proceeds.
#[derive(Clone, Copy, Debug)]
pub struct Rollout {
    /// Members migrated first, on their own, before any stage.
    pub canary: usize,
    /// Members per stage after the canary.
    pub stage_size: StageSize,
    /// Members migrated (or looked at) at the same time.
    pub parallel: usize,
}

impl Default for Rollout {
    /// One canary, then the rest in one stage, four at a time.
    fn default() -> Rollout {
        Rollout { canary: 1, stage_size: StageSize::Percent(100), parallel: 4 }
    }
}

/// What `migrate` did on one member.
#[derive(Debug, Clone, Serialize)]
pub struct MemberRun {
    /// The member's name.
    pub name: String,
    /// Its database (password hidden).
    pub database: String,
    /// 0 for the canary, then 1, 2...; None when it was given no stage
    /// (nothing to run, or the rollout stopped before the stages).
    pub stage: Option<usize>,
    /// `applied`, `current` (nothing pending), `would_apply` (a dry run),
    /// `refused` (its look or its run was refused: a check, lint, the
    /// plan), `failed`, `interrupted`, or `not_started`.
    pub outcome: &'static str,
    /// The exit code a single `migrate` of this member would have had.
    pub exit_code: i32,
    /// Why it was refused or failed.
    pub error: Option<String>,
    /// What ran (or would run), in order.
    pub migrations: Vec<RunEntry>,
    /// Its newest applied version afterwards.
    pub current_version: Option<String>,
    /// Its run's warnings.
    pub warnings: Vec<String>,
    /// When its run started and ended (RFC 3339); None when it did not run.
    pub started_at: Option<String>,
    /// See `started_at`.
    pub finished_at: Option<String>,
}

/// One stage of a rollout.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    /// Its number: 0 for the canary, then 1, 2...
    pub stage: usize,
    /// Its members' names.
    pub members: Vec<String>,
}

/// `migrate --fleet`.
#[derive(Debug, Clone, Serialize)]
pub struct FleetRunReport {
    /// The fleet's name.
    pub fleet: String,
    /// Nothing was changed: only looked at.
    pub dry_run: bool,
    /// Every member, in the fleet's order.
    pub members: Vec<MemberRun>,
    /// The stages in order, the canary's first when there is one.
    pub stages: Vec<Stage>,
    /// Why members were left as they are, when some were.
    pub stopped: Option<String>,
}

impl FleetRunReport {
    /// The exit code of the whole: the gravest of the members'.
    pub fn exit_code(&self) -> i32 {
        gravest(self.members.iter().map(|m| m.exit_code))
    }
}

/// The gravest of exit codes: a signal, then bad usage, a failure, a
/// refusal, an unsatisfied gate, success.
pub fn gravest(codes: impl IntoIterator<Item = i32>) -> i32 {
    let rank = |code: i32| match code {
        exit::OK => 0,
        exit::GATE => 1,
        exit::BLOCKED => 2,
        exit::FAILED => 3,
        exit::USAGE => 4,
        _ => 5,
    };
    codes.into_iter().max_by_key(|c| rank(*c)).unwrap_or(exit::OK)
}

/// Tells what a fleet migration does while it does it.
pub trait FleetReporter {
    /// Every member was looked at; `refused` of them cannot be migrated as they are.
    fn looked(&mut self, _members: usize, _refused: usize) {}
    /// A stage starts (0 is the canary).
    fn stage_started(&mut self, _stage: usize, _members: &[String]) {}
    /// A member's run ended.
    fn member_finished(&mut self, _run: &MemberRun) {}
}

/// A member's reporter: its warnings, kept for its entry in the report.
#[derive(Default)]
struct Kept {
    warnings: Vec<String>,
}

impl Reporter for Kept {
    fn warning(&mut self, message: &str) {
        self.warnings.push(message.to_owned());
    }
}

/// Runs `work(i)` for each index of `order`, at most `parallel` at once,
/// each a task of its own (so members use every core the runtime has),
/// handing each answer to `done` as it comes. Once `done` returns false, or
/// `stop` says so before a start, no more start (those running finish).
/// Returns the indices never started.
async fn each<T, W, F>(
    order: &[usize],
    parallel: usize,
    work: W,
    mut done: impl FnMut(usize, T) -> bool,
    stop: impl Fn() -> bool,
) -> Vec<usize>
where
    W: Fn(usize) -> F,
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    use futures_util::FutureExt;
    let mut queue = order.iter().copied();
    let mut running = FuturesUnordered::new();
    let mut go_on = true;
    loop {
        while go_on && running.len() < parallel.max(1) {
            if stop() {
                go_on = false;
                break;
            }
            match queue.next() {
                Some(i) => running.push(tokio::spawn(work(i)).map(move |answer| (i, answer))),
                None => break,
            }
        }
        match running.next().await {
            // A member's task that panicked takes the whole command with it, as it would alone.
            Some((i, answer)) => {
                go_on &= done(i, answer.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
            }
            None => break,
        }
    }
    queue.collect()
}

/// How long one member may take to say its status.
const MEMBER_ANSWER: Duration = Duration::from_secs(10);

/// A member's status, or why it gave none within [`MEMBER_ANSWER`].
async fn assess_within(options: &Options) -> Result<(crate::report::StatusReport, Option<Version>), ExecError> {
    match tokio::time::timeout(MEMBER_ANSWER, crate::status::assess(options)).await {
        Ok(answer) => answer,
        Err(_) => Err(ExecError::Connect(airlock_driver::DriverError::new(
            airlock_driver::ErrorKind::Connection,
            format!("{} did not answer within {} s", options.url, MEMBER_ANSWER.as_secs()),
        ))),
    }
}

/// `work` on member `i`'s own copy of its options.
fn owned<T, F: Future<Output = T>>(members: &[Member], i: usize, work: impl FnOnce(Options) -> F) -> F {
    work(members[i].options.clone())
}

/// How a run's error reads in a member's entry.
fn outcome_of(error: &ExecError) -> &'static str {
    match error {
        ExecError::Interrupted { .. } => "interrupted",
        e if e.exit_code() == exit::BLOCKED => "refused",
        _ => "failed",
    }
}

fn member_entry(member: &Member, outcome: &'static str) -> MemberRun {
    MemberRun {
        name: member.name.clone(),
        database: member.options.url.to_string(),
        stage: None,
        outcome,
        exit_code: exit::OK,
        error: None,
        migrations: Vec::new(),
        current_version: None,
        warnings: Vec::new(),
        started_at: None,
        finished_at: None,
    }
}

/// Fills `entry` from one `migrate` of its member (after its look, whose
/// entries name what a failed run still applied).
fn record(entry: &mut MemberRun, answer: Result<crate::RunReport, ExecError>, kept: Kept, dry_run: bool) {
    entry.warnings = kept.warnings;
    let planned = std::mem::take(&mut entry.migrations);
    match answer {
        Ok(report) => {
            entry.outcome = match (report.migrations.is_empty(), dry_run) {
                (true, _) => "current",
                (false, true) => "would_apply",
                (false, false) => "applied",
            };
            entry.migrations = report.migrations;
            entry.current_version = report.current_version;
            entry.warnings.extend(report.warnings);
        }
        Err(e) => {
            entry.outcome = outcome_of(&e);
            entry.exit_code = e.exit_code();
            let applied = e.applied_versions();
            entry.migrations = planned.into_iter().filter(|m| applied.contains(&m.version)).collect();
            if let Some(newest) = applied.last() {
                entry.current_version = Some(newest.clone());
            }
            entry.error = Some(e.to_string());
        }
    }
}

/// `migrate --fleet`: looks at every member, then migrates the canary and
/// the stages (see the module's text). `interrupt` is the fleet's: a signal
/// stops the members running (each its own statement) and starts no other.
pub async fn fleet_migrate(
    fleet: &str,
    members: &[Member],
    target: Option<Version>,
    rollout: Rollout,
    dry_run: bool,
    interrupt: &Interrupt,
    reporter: &mut dyn FleetReporter,
) -> FleetRunReport {
    let mut entries: Vec<MemberRun> = members.iter().map(|m| member_entry(m, "not_started")).collect();
    let all: Vec<usize> = (0..members.len()).collect();
    let run = |i: usize, dry: bool| {
        let mut options = members[i].options.clone();
        options.interrupt = interrupt.child();
        let target = target.clone();
        async move {
            let mut kept = Kept::default();
            let answer = crate::run::migrate(&options, target, dry, &mut kept).await;
            (answer, kept)
        }
    };
    // The look: each member as its own dry run sees it, nothing changed.
    let mut looked = vec![None; members.len()];
    each(
        &all,
        rollout.parallel,
        |i| run(i, true),
        |i, (answer, kept)| {
            record(&mut entries[i], answer, kept, true);
            looked[i] = Some(());
            true
        },
        || interrupt.raised().is_some(),
    )
    .await;
    // Nothing pending is not yet up to date: a run cut off outside a
    // transaction leaves nothing pending and a problem only a person can close.
    let quiet: Vec<usize> = (0..members.len()).filter(|&i| entries[i].outcome == "current").collect();
    each(
        &quiet,
        rollout.parallel,
        |i| owned(members, i, |o| async move { assess_within(&o).await }),
        |i, answer| {
            let blocking: Vec<String> = match answer {
                Ok((status, _)) => status.problems.iter().filter(|p| p.blocking).map(|p| p.message.clone()).collect(),
                Err(e) => vec![e.to_string()],
            };
            if !blocking.is_empty() {
                entries[i].outcome = "refused";
                entries[i].exit_code = exit::BLOCKED;
                entries[i].error = Some(blocking.join("; "));
            }
            true
        },
        || interrupt.raised().is_some(),
    )
    .await;
    let refused: Vec<usize> =
        (0..members.len()).filter(|&i| looked[i].is_some() && entries[i].exit_code != exit::OK).collect();
    reporter.looked(members.len(), refused.len());
    let mut report =
        FleetRunReport { fleet: fleet.to_owned(), dry_run, members: Vec::new(), stages: Vec::new(), stopped: None };
    if let Some(signal) = interrupt.raised() {
        report.stopped =
            Some(format!("{} while looking at the members: nothing was changed", interrupt::signal_name(signal)));
        for (i, entry) in entries.iter_mut().enumerate() {
            if looked[i].is_none() || entry.outcome == "would_apply" {
                entry.outcome = "not_started";
                entry.exit_code = 128 + signal;
            }
        }
        report.members = entries;
        return report;
    }
    if !refused.is_empty() {
        let names: Vec<&str> = refused.iter().map(|&i| members[i].name.as_str()).collect();
        report.stopped = Some(format!(
            "{} of {} members cannot be migrated as they are ({}): nothing was changed on any member",
            refused.len(),
            members.len(),
            names.join(", ")
        ));
        for entry in entries.iter_mut().filter(|e| e.exit_code == exit::OK && e.outcome == "would_apply") {
            entry.outcome = "not_started";
        }
        report.members = entries;
        return report;
    }
    let pending: Vec<usize> = (0..members.len()).filter(|&i| entries[i].outcome == "would_apply").collect();
    let canary = rollout.canary.min(pending.len());
    let mut stages: Vec<Vec<usize>> = Vec::new();
    if canary > 0 {
        stages.push(pending[..canary].to_vec());
    }
    let rest = &pending[canary..];
    stages.extend(rest.chunks(rollout.stage_size.members(pending.len())).map(<[usize]>::to_vec));
    let number = |w: usize| if canary > 0 { w } else { w + 1 };
    report.stages = stages
        .iter()
        .enumerate()
        .map(|(w, stage)| Stage { stage: number(w), members: stage.iter().map(|&i| members[i].name.clone()).collect() })
        .collect();
    for (w, stage) in stages.iter().enumerate() {
        for &i in stage {
            entries[i].stage = Some(number(w));
        }
    }
    if dry_run {
        report.members = entries;
        return report;
    }
    for entry in entries.iter_mut().filter(|e| e.outcome == "would_apply") {
        // Not run yet: what it would run stays listed until it does.
        entry.outcome = "not_started";
    }
    let mut failed: Option<String> = None;
    for (w, stage) in stages.iter().enumerate() {
        if failed.is_some() || interrupt.raised().is_some() {
            break;
        }
        reporter.stage_started(number(w), &report.stages[w].members);
        each(
            stage,
            rollout.parallel,
            |i| {
                let at = Utc::now().to_rfc3339();
                let work = run(i, false);
                async move { (at, work.await) }
            },
            |i, (at, (answer, kept))| {
                let entry = &mut entries[i];
                record(entry, answer, kept, false);
                entry.started_at = Some(at);
                entry.finished_at = Some(Utc::now().to_rfc3339());
                reporter.member_finished(entry);
                if entry.exit_code != exit::OK && failed.is_none() {
                    failed = Some(entry.name.clone());
                }
                entry.exit_code == exit::OK
            },
            || interrupt.raised().is_some(),
        )
        .await;
    }
    let untouched = entries.iter().filter(|e| e.outcome == "not_started").count();
    report.stopped = match (failed, interrupt.raised()) {
        (_, Some(signal)) => {
            for entry in entries.iter_mut().filter(|e| e.outcome == "not_started") {
                entry.exit_code = 128 + signal;
            }
            Some(format!(
                "{}: {untouched} member(s) were not started; run again to go on",
                interrupt::signal_name(signal)
            ))
        }
        (Some(name), _) => Some(format!(
            "{name} did not migrate: {untouched} member(s) after it were not started; fix it and run again to go on"
        )),
        _ => None,
    };
    report.members = entries;
    report
}

/// The rows of `sql` on `catalog` (where a fleet's members are listed),
/// read in a read-only transaction: each row as its cells' text.
pub async fn catalog_rows(
    catalog: &airlock_driver::DatabaseUrl,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, ExecError> {
    let mut driver = crate::connect_read_only(catalog).await.map_err(ExecError::Connect)?;
    driver.begin_read_only().await.map_err(ExecError::Connect)?;
    let rows = driver.query_text(sql).await.map_err(ExecError::db(format!("reading the members from {catalog}")));
    let _ = driver.rollback().await;
    rows
}

/// One member's plan in a fleet's.
#[derive(Debug, Clone, Serialize)]
pub struct MemberPlan {
    /// The member's name.
    pub name: String,
    /// Its database (password hidden).
    pub database: String,
    /// Its plan's verdict; None when it could not be planned.
    pub verdict: Option<Verdict>,
    /// The exit code a single `plan` of this member would have had.
    pub exit_code: i32,
    /// Why it could not be planned.
    pub error: Option<String>,
    /// Its plan.
    pub plan: Option<PlanReport>,
}

/// `plan --fleet`.
#[derive(Debug, Clone, Serialize)]
pub struct FleetPlanReport {
    /// The fleet's name.
    pub fleet: String,
    /// The gravest verdict of the members planned.
    pub verdict: Verdict,
    /// Every member, in the fleet's order.
    pub members: Vec<MemberPlan>,
}

impl FleetPlanReport {
    /// 0, 3 when a member's plan is blocked, or the gravest error's.
    pub fn exit_code(&self) -> i32 {
        gravest(self.members.iter().map(|m| m.exit_code))
    }
}

/// `plan --fleet`: every member's plan, read-only, `parallel` at a time.
pub async fn fleet_plan(fleet: &str, members: &[Member], parallel: usize) -> FleetPlanReport {
    let mut plans: Vec<MemberPlan> = members
        .iter()
        .map(|m| MemberPlan {
            name: m.name.clone(),
            database: m.options.url.to_string(),
            verdict: None,
            exit_code: exit::OK,
            error: None,
            plan: None,
        })
        .collect();
    let all: Vec<usize> = (0..members.len()).collect();
    each(
        &all,
        parallel,
        |i| owned(members, i, |o| async move { crate::plan::plan(&o).await }),
        |i, answer| {
            let entry = &mut plans[i];
            match answer {
                Ok(plan) => {
                    entry.verdict = Some(plan.verdict);
                    entry.exit_code = if plan.verdict == Verdict::Blocked { exit::BLOCKED } else { exit::OK };
                    entry.plan = Some(plan);
                }
                Err(e) => {
                    entry.exit_code = e.exit_code();
                    entry.error = Some(e.to_string());
                }
            }
            true
        },
        || false,
    )
    .await;
    let verdict = plans.iter().filter_map(|p| p.verdict).max().unwrap_or(Verdict::Safe);
    FleetPlanReport { fleet: fleet.to_owned(), verdict, members: plans }
}

/// One member's status in a fleet's.
#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    /// The member's name.
    pub name: String,
    /// Its database (password hidden).
    pub database: String,
    /// `clean`, `pending`, `failed`... as `status` says; `unreachable` when it could not be read.
    pub state: &'static str,
    /// Its newest applied version.
    pub current_version: Option<String>,
    /// How many migrations are pending there.
    pub pending: usize,
    /// Its problems, in a few words each.
    pub problems: Vec<String>,
    /// Why it could not be read.
    pub error: Option<String>,
}

/// `status --fleet`.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStatusReport {
    /// The fleet's name.
    pub fleet: String,
    /// The newest migration in the files.
    pub latest: Option<String>,
    /// The members that need a look: behind `latest`, with a problem, or
    /// unreadable.
    pub behind: Vec<String>,
    /// Every member, in the fleet's order.
    pub members: Vec<MemberStatus>,
}

impl FleetStatusReport {
    /// 0, or 1 when a member could not be read.
    pub fn exit_code(&self) -> i32 {
        if self.members.iter().any(|m| m.error.is_some()) { exit::FAILED } else { exit::OK }
    }
}

/// `status --fleet`: every member's status, read-only, `parallel` at a time.
pub async fn fleet_status(fleet: &str, members: &[Member], parallel: usize) -> FleetStatusReport {
    let mut out: Vec<MemberStatus> = members
        .iter()
        .map(|m| MemberStatus {
            name: m.name.clone(),
            database: m.options.url.to_string(),
            state: "unreachable",
            current_version: None,
            pending: 0,
            problems: Vec::new(),
            error: None,
        })
        .collect();
    let mut latest: Option<Version> = None;
    let all: Vec<usize> = (0..members.len()).collect();
    each(
        &all,
        parallel,
        |i| owned(members, i, |o| async move { assess_within(&o).await }),
        |i, answer| {
            let entry = &mut out[i];
            match answer {
                Ok((status, newest)) => {
                    entry.state = status.state;
                    entry.current_version = status.current_version;
                    entry.pending = status.pending.len();
                    entry.problems = status.problems.iter().map(|p| p.message.clone()).collect();
                    latest = latest.take().max(newest);
                }
                Err(e) => entry.error = Some(e.to_string()),
            }
            true
        },
        || false,
    )
    .await;
    let behind = out.iter().filter(|m| m.state != "clean" || m.pending > 0).map(|m| m.name.clone()).collect();
    FleetStatusReport { fleet: fleet.to_owned(), latest: latest.map(|v| v.to_string()), behind, members: out }
}

/// One member's gate answer in a fleet's.
#[derive(Debug, Clone, Serialize)]
pub struct MemberGate {
    /// The member's name.
    pub name: String,
    /// Its database (password hidden).
    pub database: String,
    /// Whether it meets the requirement.
    pub satisfied: bool,
    /// Why not.
    pub reasons: Vec<String>,
}

/// `gate --fleet`.
#[derive(Debug, Clone, Serialize)]
pub struct FleetGateReport {
    /// The fleet's name.
    pub fleet: String,
    /// Every member meets the requirement.
    pub satisfied: bool,
    /// Every member, in the fleet's order.
    pub members: Vec<MemberGate>,
}

/// `gate --fleet`: satisfied when every member is. With a `wait`, asks the
/// members not yet satisfied again every second until they all are or the
/// time is up. An unreachable member is not satisfied (its reason says why).
pub async fn fleet_gate(
    fleet: &str,
    members: &[Member],
    requirement: &Requirement,
    wait: Option<Duration>,
    parallel: usize,
) -> FleetGateReport {
    let mut out: Vec<MemberGate> = members
        .iter()
        .map(|m| MemberGate {
            name: m.name.clone(),
            database: m.options.url.to_string(),
            satisfied: false,
            reasons: Vec::new(),
        })
        .collect();
    let deadline = wait.map(|w| Instant::now() + w);
    loop {
        let asking: Vec<usize> = (0..members.len()).filter(|&i| !out[i].satisfied).collect();
        each(
            &asking,
            parallel,
            |i| owned(members, i, |o| async move { assess_within(&o).await }),
            |i, answer| {
                let entry = &mut out[i];
                match answer {
                    Ok((status, latest)) => {
                        let gate = judge(&status, requirement, latest.as_ref());
                        entry.satisfied = gate.satisfied;
                        entry.reasons = gate.reasons;
                    }
                    Err(e) => entry.reasons = vec![format!("cannot be read: {e}")],
                }
                true
            },
            || false,
        )
        .await;
        let satisfied = out.iter().all(|m| m.satisfied);
        match deadline {
            Some(deadline) if !satisfied && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_secs(1).min(deadline - Instant::now())).await;
            }
            _ => return FleetGateReport { fleet: fleet.to_owned(), satisfied, members: out },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_sizes_are_a_count_or_a_share_rounded_up() {
        assert_eq!(StageSize::parse("10"), Ok(StageSize::Members(10)));
        assert_eq!(StageSize::parse("25%"), Ok(StageSize::Percent(25)));
        assert_eq!(StageSize::Percent(25).members(10), 3);
        assert_eq!(StageSize::Percent(1).members(3), 1);
        for bad in ["0", "0%", "101%", "x", "-1"] {
            assert!(StageSize::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_gravest_exit_code_wins() {
        assert_eq!(gravest([0, 4, 3]), 3);
        assert_eq!(gravest([3, 1, 0]), 1);
        assert_eq!(gravest([1, 2]), 2);
        assert_eq!(gravest([2, 130]), 130);
        assert_eq!(gravest([]), 0);
    }

    /// At most `parallel` at once; after a failure nothing more starts, and
    /// those running finish.
    #[tokio::test]
    async fn each_stops_starting_after_a_failure() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (running, most) = (std::sync::Arc::new(AtomicUsize::new(0)), std::sync::Arc::new(AtomicUsize::new(0)));
        let order: Vec<usize> = (0..10).collect();
        let mut finished = Vec::new();
        let left = each(
            &order,
            3,
            |i| {
                let (running, most) = (running.clone(), most.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5 + i as u64)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    i
                }
            },
            |_, i| {
                finished.push(i);
                i != 4
            },
            || false,
        )
        .await;
        assert_eq!(most.load(Ordering::SeqCst), 3);
        assert!(finished.contains(&4));
        // 0..=4 started (4 was started when 1 finished), then at most two more ran out.
        assert!(finished.len() <= 7, "{finished:?}");
        assert_eq!(finished.len() + left.len(), 10, "{finished:?} {left:?}");
        assert!(left.contains(&9));
    }
}
