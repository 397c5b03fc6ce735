//! `gate`: is the database ready for a release that needs version V (or the
//! newest migration in the directory)? The check that an app deployed before its migration ran would have needed: at version ≥ V and not
//! mid-migration — and more than a number: nothing failed, half-applied or edited.

use std::time::{Duration, Instant};

use airlock_core::Version;
use serde::Serialize;

use crate::Options;
use crate::error::ExecError;
use crate::report::{LockEntry, PendingEntry, Reporter, StatusReport};

/// What a release needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Every migration up to this version applied.
    Version(Version),
    /// Every migration in the directory applied.
    Latest,
}

/// The gate's answer: the JSON contract's keys and why it is not satisfied.
#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    /// Whether the database satisfies the requirement.
    pub satisfied: bool,
    /// The required version (`latest` resolved to the newest migration; null when there is none).
    pub required: Option<String>,
    /// The newest applied version.
    pub current_version: Option<String>,
    /// `clean`, `dirty` or `failed`, as in `status`.
    pub state: &'static str,
    /// Why it is not satisfied, one sentence each.
    pub reasons: Vec<String>,
    /// Pending migrations up to the required version.
    pub behind: Vec<PendingEntry>,
    /// Who is migrating right now.
    pub lock: Option<LockEntry>,
}

impl GateReport {
    /// True when waiting cannot help: something failed or was cut off and needs a person.
    pub fn needs_a_person(&self) -> bool {
        self.state == "failed"
            || self.reasons.iter().any(|r| {
                ["interrupted", "wrong project", "edited", "unreadable"].iter().any(|start| r.starts_with(start))
            })
    }
}

/// Judges a status against a requirement. Pure; `latest` is the newest
/// migration version in the directory.
pub fn judge(status: &StatusReport, requirement: &Requirement, latest: Option<&Version>) -> GateReport {
    let required = match requirement {
        Requirement::Version(v) => Some(v.clone()),
        Requirement::Latest => latest.cloned(),
    };
    let mut behind: Vec<PendingEntry> = status
        .pending
        .iter()
        .filter(|p| match (&required, Version::parse(&p.version)) {
            (Some(req), Ok(v)) => &v <= req,
            _ => false,
        })
        .cloned()
        .collect();
    // No app needs a contract (it drops what the old app used): `latest` is
    // ready without the contracts at the end, which wait for `migrate --contract`.
    if matches!(requirement, Requirement::Latest) {
        while behind.last().is_some_and(|p| p.contract) {
            behind.pop();
        }
    }
    let mut reasons = Vec::new();
    let current = status.current_version.as_deref().and_then(|v| Version::parse(v).ok());
    if let (Requirement::Version(req), true) = (requirement, behind.is_empty()) {
        // No pending file up to V, yet the database is below V: this release
        // needs migrations its directory does not have.
        if current.as_ref().is_none_or(|c| c < req) {
            // Nothing pending up to V and V not applied: no migration has version V.
            let newest = latest.map_or_else(|| "there are none".to_owned(), |l| format!("the newest is {l}"));
            reasons.push(format!(
                "behind: the database is at version {}, below the required {req}, and no migration has version {req} ({newest}): is `--require {req}` right?",
                current.map_or_else(|| "none".to_owned(), |c| c.to_string()),
            ));
        }
    }
    for problem in &status.problems {
        let version = problem.version.as_deref().unwrap_or("?");
        let reason = match problem.code {
            "in-progress" => format!("in progress: {}", problem.message),
            "interrupted" => format!("interrupted: migration {version} was cut off part-way; see `airlock status`"),
            "failed" => format!("failed: migration {version} failed part-way; see `airlock status`"),
            "checksum-mismatch" => format!("edited: the applied migration {version} differs from its file"),
            "wrong-project" => format!("wrong project: {}", problem.message),
            // A file that cannot be read hides what it holds: `latest` is not
            // known, and `migrate` refuses until it is fixed. A release that
            // needs an older version than the file's is not concerned.
            "unreadable-file" => {
                let beyond_release = match (requirement, problem.version.as_deref().map(Version::parse)) {
                    (Requirement::Version(req), Some(Ok(v))) => &v > req,
                    _ => false,
                };
                if beyond_release {
                    continue;
                }
                format!("unreadable: {}", problem.message)
            }
            // The database ahead of this release (unknown-applied), a note about a
            // name, or a rolled-back attempt (pending, so counted in `behind`) do
            // not make it unready.
            _ => continue,
        };
        reasons.push(reason);
    }
    // Behind comes last: while a run is in progress or failed, that is the news.
    if !behind.is_empty() {
        let list: Vec<String> = behind.iter().map(|p| format!("{} ({})", p.version, p.name)).collect();
        reasons.push(format!(
            "behind by {} migration{}: {}",
            behind.len(),
            if behind.len() == 1 { "" } else { "s" },
            list.join(", ")
        ));
    }
    for c in behind.iter().filter(|p| p.contract) {
        reasons.push(format!(
            "contract {} ({}): {}; `airlock migrate --contract` runs it once none is",
            c.version,
            c.name,
            airlock_core::migration::CONTRACT_PENDING
        ));
    }
    // A backfill among them: how far it has come.
    for b in status.backfills.iter().filter(|b| behind.iter().any(|p| p.version == b.version)) {
        let how_far = match b.state {
            "pending" => "no batch has run yet".to_owned(),
            state => {
                let percent = (b.rows_done * 100).checked_div(b.rows_total).unwrap_or(100);
                let eta = b.eta_seconds.map(|s| format!(", about {s} s to go at its pace")).unwrap_or_default();
                format!(
                    "{state}, statement {}/{}: {} of {} rows of `{}` ({percent}%){eta}",
                    b.statement,
                    b.statements,
                    b.rows_done,
                    b.rows_total,
                    b.table.as_deref().unwrap_or("?")
                )
            }
        };
        reasons.push(format!("backfill {} ({}): {how_far}", b.version, b.name));
    }
    GateReport {
        satisfied: reasons.is_empty(),
        required: required.map(|v| v.to_string()),
        current_version: status.current_version.clone(),
        state: status.state,
        reasons,
        behind,
        lock: status.lock.clone(),
    }
}

/// Answers once.
pub async fn gate(options: &Options, requirement: &Requirement) -> Result<GateReport, ExecError> {
    let (status, latest) = crate::status::assess(options).await?;
    Ok(judge(&status, requirement, latest.as_ref()))
}

/// Polls with backoff until satisfied, until something needs a person, or until
/// `wait` has passed; says what it waits for whenever that changes.
pub async fn gate_wait(
    options: &Options,
    requirement: &Requirement,
    wait: Duration,
    reporter: &mut dyn Reporter,
) -> Result<GateReport, ExecError> {
    let deadline = Instant::now() + wait;
    let mut delay = Duration::from_millis(200);
    let mut said: Vec<String> = Vec::new();
    loop {
        let answer = gate(options, requirement).await;
        let now = Instant::now();
        match answer {
            Ok(report) if report.satisfied || report.needs_a_person() || now >= deadline => return Ok(report),
            Ok(report) => {
                if report.reasons != said {
                    reporter.gate_waiting(&report.reasons);
                    said = report.reasons.clone();
                }
            }
            // The database may be restarting: keep asking until the time is up.
            Err(ExecError::Connect(e)) if now < deadline => {
                let reason = vec![format!("cannot connect: {}", e.message)];
                if reason != said {
                    reporter.gate_waiting(&reason);
                    said = reason;
                }
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(delay.min(deadline.saturating_duration_since(now))).await;
        delay = (delay.mul_f64(1.5)).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ProblemEntry;

    fn status(pending: &[&str], problems: &[(&'static str, &str)], state: &'static str) -> StatusReport {
        StatusReport {
            state,
            current_version: Some("3".into()),
            applied: Vec::new(),
            pending: pending
                .iter()
                .map(|v| PendingEntry {
                    version: v.to_string(),
                    name: format!("m{v}"),
                    kind: "schema",
                    contract: false,
                })
                .collect(),
            problems: problems
                .iter()
                .map(|(code, v)| ProblemEntry {
                    code,
                    version: Some(v.to_string()),
                    message: format!("{code} {v}"),
                    detail: None,
                    blocking: true,
                })
                .collect(),
            lock: None,
            project: None,
            database: "sqlite:x".into(),
            warnings: Vec::new(),
            last_run: None,
            backfills: Vec::new(),
            expanded: None,
        }
    }

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn satisfied_when_everything_up_to_v_is_applied() {
        let s = status(&["10"], &[], "clean");
        let r = judge(&s, &Requirement::Version(v("3")), Some(&v("10")));
        assert!(r.satisfied, "{:?}", r.reasons);
        assert_eq!(r.required.as_deref(), Some("3"));
    }

    #[test]
    fn behind_names_the_missing_versions() {
        let s = status(&["4", "10"], &[], "clean");
        let r = judge(&s, &Requirement::Latest, Some(&v("10")));
        assert!(!r.satisfied);
        assert_eq!(r.required.as_deref(), Some("10"));
        assert_eq!(r.reasons, ["behind by 2 migrations: 4 (m4), 10 (m10)"]);
        let r = judge(&s, &Requirement::Version(v("4")), Some(&v("10")));
        assert_eq!(r.behind.len(), 1);
    }

    #[test]
    fn in_progress_failed_and_edited_are_not_ready_but_a_newer_database_is() {
        let r = judge(&status(&[], &[("in-progress", "4")], "dirty"), &Requirement::Latest, Some(&v("3")));
        assert!(!r.satisfied && !r.needs_a_person());
        let r = judge(&status(&[], &[("failed", "4")], "failed"), &Requirement::Latest, Some(&v("3")));
        assert!(!r.satisfied && r.needs_a_person());
        let r = judge(&status(&[], &[("checksum-mismatch", "2")], "clean"), &Requirement::Latest, Some(&v("3")));
        assert!(!r.satisfied && r.needs_a_person());
        let r = judge(&status(&[], &[("unknown-applied", "9")], "clean"), &Requirement::Latest, Some(&v("3")));
        assert!(r.satisfied, "an app older than its database is the normal case during a rollback: {:?}", r.reasons);
    }

    #[test]
    fn an_unreadable_file_hides_the_newest_version_but_not_an_older_requirement() {
        let mut s = status(&[], &[("unreadable-file", "4")], "clean");
        let r = judge(&s, &Requirement::Latest, Some(&v("3")));
        assert!(!r.satisfied && r.needs_a_person(), "{:?}", r.reasons);
        assert_eq!(r.reasons, ["unreadable: unreadable-file 4"]);
        assert!(!judge(&s, &Requirement::Version(v("4")), Some(&v("3"))).satisfied);
        assert!(judge(&s, &Requirement::Version(v("3")), Some(&v("3"))).satisfied);
        // A file whose name gives no version may hold any version.
        s.problems[0].version = None;
        assert!(!judge(&s, &Requirement::Version(v("3")), Some(&v("3"))).satisfied);
    }

    #[test]
    fn a_requirement_beyond_every_migration_is_not_met() {
        // The database is at 3 and the release needs 12, which no file here provides.
        let r = judge(&status(&[], &[], "clean"), &Requirement::Version(v("12")), Some(&v("3")));
        assert!(!r.satisfied);
        assert!(r.reasons[0].contains("below the required 12"), "{:?}", r.reasons);
    }

    #[test]
    fn an_empty_directory_requires_nothing() {
        let r = judge(&status(&[], &[], "clean"), &Requirement::Latest, None);
        assert!(r.satisfied);
        assert_eq!(r.required, None);
    }
}
