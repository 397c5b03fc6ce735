//! Reporters: what people and scripts see. Human output is concise and coloured
//! on a terminal (anstream strips colour elsewhere); JSON is one object on stdout.

use std::time::Duration;

use airlock_core::{Lease, Migration, RunMode};
use airlock_exec::{
    ExecError, GateReport, ProblemEntry, Reporter, RiskCode, RunReport, Started, StatusReport, human_duration,
    human_estimate, signal_name,
};
use anstream::{eprintln, println};
use anstyle::{AnsiColor, Style};
use serde_json::json;

use crate::args::Format;

const GREEN: Style = AnsiColor::Green.on_default();
const RED: Style = AnsiColor::Red.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();

/// Prints progress while a command works: to stdout for people, to stderr
/// (keeping stdout one JSON object) with `--format json`.
pub struct Progress {
    format: Format,
    /// The running backfill statement's bar.
    backfill: Option<BackfillBar>,
    /// The running migration's spinner.
    spinner: Option<indicatif::ProgressBar>,
}

/// How long a migration runs before its spinner shows: quick ones never flicker.
const SPINNER_AFTER: Duration = Duration::from_secs(1);

/// Shows `bar` on stderr once it has run [`SPINNER_AFTER`], unless it finished before.
fn show_later(bar: &indicatif::ProgressBar) {
    let shown = bar.clone();
    std::thread::spawn(move || {
        std::thread::sleep(SPINNER_AFTER);
        if !shown.is_finished() {
            shown.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
    });
}

/// A backup's bar: bytes read from the database of about how many (the
/// catalog's size of what it saves), with the rate and ETA; a spinner with
/// the bytes when there is no estimate. Its position follows `read`.
fn backup_bar(plan: &airlock_exec::BackupPlan, read: &airlock_exec::Tally) -> indicatif::ProgressBar {
    let what = match plan.mode {
        airlock_exec::BackupMode::Database => "the database".to_owned(),
        _ => plan.tables.iter().map(|t| t.name.to_string()).collect::<Vec<_>>().join(", "),
    };
    let (bar, template) = match plan.estimated_bytes.filter(|b| *b > 0) {
        Some(total) => (
            indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::hidden()),
            "  {spinner} backup of {prefix} [{bar:30}] {bytes}/~{total_bytes} ({bytes_per_sec}, ETA {left}) · {took}",
        ),
        None => (
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::hidden()),
            "  {spinner} backup of {prefix}: {bytes} read ({bytes_per_sec}) · {took}",
        ),
    };
    let style = progress_style(template).progress_chars("=> ");
    let bar = bar.with_style(style);
    bar.set_prefix(what);
    bar.enable_steady_tick(Duration::from_millis(120));
    let (follow, read) = (bar.clone(), read.clone());
    std::thread::spawn(move || {
        while !follow.is_finished() {
            let done = read.get();
            // The catalog's size is an estimate: a dump may run past it.
            if follow.length().is_some_and(|total| done > total) {
                follow.set_length(done);
            }
            follow.set_position(done);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    show_later(&bar);
    bar
}

/// A progress style from `template`, where `{took}` is the time so far and
/// `{left}` the time left, written as every other duration is.
fn progress_style(template: &str) -> indicatif::ProgressStyle {
    let write = |w: &mut dyn std::fmt::Write, d: Duration| {
        let _ = w.write_str(&human_duration(d));
    };
    indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner())
        .with_key("took", move |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| write(w, s.elapsed()))
        .with_key("left", move |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| write(w, s.eta()))
}

/// A spinner for a migration that runs a while, on a terminal only: which
/// migration of how many, the time so far and the plan's estimate. Drawn on
/// stderr once it has run [`SPINNER_AFTER`].
fn spinner(migration: &Migration, started: &Started) -> indicatif::ProgressBar {
    let style = progress_style("  {spinner} {prefix} · {took}{msg}");
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::hidden()).with_style(style);
    bar.set_prefix(format!("{}/{} {} {}", started.position, started.of, migration.version, migration.name));
    if let Some(estimate) = started.estimate {
        bar.set_message(format!(" (plan: {})", human_estimate(estimate.as_secs_f64())));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    show_later(&bar);
    bar
}

/// A backfill statement's progress: a bar on a terminal (indicatif draws
/// it on stderr, at most a few times a second), else a line every ten
/// seconds, for logs.
struct BackfillBar {
    /// Version and statement.
    of: (String, usize),
    bar: indicatif::ProgressBar,
    last_line: Option<std::time::Instant>,
}

const LOG_EVERY: Duration = Duration::from_secs(10);

impl Progress {
    pub fn new(format: Format) -> Progress {
        Progress { format, backfill: None, spinner: None }
    }

    fn end_bar(&mut self) {
        if let Some(b) = self.backfill.take() {
            b.bar.finish_and_clear();
        }
        if let Some(spinner) = self.spinner.take() {
            spinner.finish_and_clear();
        }
    }

    /// Prints a line; a spinner on the screen steps aside for it.
    fn say(&self, line: String) {
        let print = || match self.format {
            Format::Human => println!("{line}"),
            _ => eprintln!("{line}"),
        };
        match &self.spinner {
            Some(spinner) => spinner.suspend(print),
            None => print(),
        }
    }
}

impl Drop for Progress {
    /// A run that ends in an error leaves no spinner behind its message.
    fn drop(&mut self) {
        self.end_bar();
    }
}

impl Reporter for Progress {
    fn warning(&mut self, message: &str) {
        let print = || eprintln!("{YELLOW}warning{YELLOW:#}: {message}");
        match &self.spinner {
            Some(spinner) => spinner.suspend(print),
            None => print(),
        }
    }

    fn waiting_for_lock(&mut self, holder: &Lease, wait: Duration) {
        self.say(format!(
            "{YELLOW}waiting{YELLOW:#} for the lock held by {} (up to {} s)",
            holder.describe(),
            wait.as_secs()
        ));
    }

    fn backup_started(&mut self, plan: &airlock_exec::BackupPlan, read: &airlock_exec::Tally) {
        use std::io::IsTerminal;
        self.end_bar();
        if self.format == Format::Human && std::io::stderr().is_terminal() {
            self.spinner = Some(backup_bar(plan, read));
        }
    }

    fn backed_up(&mut self, m: &airlock_exec::Manifest) {
        self.end_bar();
        let tables: Vec<&str> = m.tables.iter().map(|t| t.table.as_str()).collect();
        self.say(format!(
            "  {GREEN}✓{GREEN:#} backup {} of {}: {} stored, restored and compared in {} → {}",
            m.id,
            if m.mode == airlock_exec::BackupMode::Database { "the database".to_owned() } else { tables.join(", ") },
            airlock_exec::human_bytes(m.stored_bytes),
            human_duration(Duration::from_millis(m.duration_ms)),
            m.file
        ));
    }

    fn backups_pruned(&mut self, pruned: &[airlock_exec::Pruned]) {
        for p in pruned {
            match &p.error {
                None => self.say(format!("  {DIM}deleted backup {} ({}){DIM:#}", p.id, p.why)),
                Some(e) => {
                    self.say(format!("  {YELLOW}warning{YELLOW:#}: backup {} not deleted ({}): {e}", p.id, p.why));
                }
            }
        }
    }

    fn lock_taken_over(&mut self, previous: &Lease, why: &str) {
        self.say(format!("{YELLOW}took over{YELLOW:#} the lock of {}: {why}", previous.describe()));
    }

    fn working(&mut self, what: &str) {
        use std::io::IsTerminal;
        self.end_bar();
        if self.format == Format::Human && std::io::stderr().is_terminal() {
            let style = progress_style("  {spinner} {msg} · {took}");
            let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::hidden())
                .with_style(style);
            bar.set_message(what.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            show_later(&bar);
            self.spinner = Some(bar);
        }
    }

    fn worked(&mut self) {
        self.end_bar();
    }

    fn migration_started(&mut self, migration: &Migration, started: &Started) {
        use std::io::IsTerminal;
        self.end_bar();
        // A backfill draws its own bar; JSON and logs get no animation.
        if self.format == Format::Human && started.mode != RunMode::Batches && std::io::stderr().is_terminal() {
            self.spinner = Some(spinner(migration, started));
        }
    }

    fn migration_finished(&mut self, migration: &Migration, elapsed: Duration) {
        self.end_bar();
        self.say(format!(
            "  {GREEN}✓{GREEN:#} {:<16} {:<40} {DIM}{}{DIM:#}",
            migration.version,
            migration.name,
            human_duration(elapsed)
        ));
    }

    fn gate_waiting(&mut self, reasons: &[String]) {
        for reason in reasons {
            self.say(format!("{YELLOW}waiting{YELLOW:#}: {reason}"));
        }
    }

    fn backfill_progress(&mut self, p: &airlock_exec::BackfillProgress) {
        use std::io::IsTerminal;
        let of = (p.version.clone(), p.statement.0);
        if self.backfill.as_ref().is_none_or(|b| b.of != of) {
            self.end_bar();
            let bar = if std::io::stderr().is_terminal() {
                let style = indicatif::ProgressStyle::with_template(
                    "  {prefix} [{bar:30}] {human_pos}/{human_len} rows ({percent}%) {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ");
                indicatif::ProgressBar::new(p.keys.1).with_style(style)
            } else {
                indicatif::ProgressBar::hidden()
            };
            bar.set_prefix(format!("{} {}", p.version, p.table));
            self.backfill = Some(BackfillBar { of, bar, last_line: None });
        }
        let Some(b) = self.backfill.as_mut() else { return };
        let left = p.keys.1.saturating_sub(p.keys.0);
        let eta = (p.rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / p.rate));
        let eta = eta.map(|e| format!(", ETA {}", human_duration(e))).unwrap_or_default();
        let message = format!("{} changed, {:.0} rows/s, batch {}{eta}", p.rows_done, p.rate, p.batch_size);
        b.bar.set_length(p.keys.1);
        b.bar.set_position(p.keys.0);
        if !b.bar.is_hidden() {
            b.bar.set_message(message);
        } else if b.last_line.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            b.last_line = Some(std::time::Instant::now());
            let line = format!(
                "  {DIM}…{DIM:#} {} backfill of {}, statement {}/{}: {}/{} rows, {message}",
                p.version, p.table, p.statement.0, p.statement.1, p.keys.0, p.keys.1
            );
            self.say(line);
        }
    }

    fn backfill_paused(&mut self, version: &str, why: &str) {
        let line = format!("  {YELLOW}‖{YELLOW:#} {version} backfill paused: {why}");
        match self.backfill.as_ref().filter(|b| !b.bar.is_hidden()) {
            Some(b) => b.bar.println(line),
            None => self.say(line),
        }
    }

    fn backfill_resumed(&mut self, version: &str, waited: Duration) {
        let line = format!("  {GREEN}▸{GREEN:#} {version} backfill resumed after {}", human_duration(waited));
        match self.backfill.as_ref().filter(|b| !b.bar.is_hidden()) {
            Some(b) => b.bar.println(line),
            None => self.say(line),
        }
    }

    fn retrying(&mut self, migration: &Migration, statement: usize, attempt: u32, wait: Duration, blockers: &[String]) {
        self.say(format!(
            "  {YELLOW}…{YELLOW:#} {} statement {statement} hit the lock timeout; retry {attempt} in {}",
            migration.version,
            human_duration(wait)
        ));
        for b in blockers {
            self.say(format!("      blocked by {b}"));
        }
    }
}

/// A command's one sentence (`backfill pause|resume|cancel`); `{"message"}` in JSON.
pub fn said(message: &str, format: Format) {
    if format == Format::Json {
        print_json(&json!({ "message": message }));
    } else {
        println!("{message}");
    }
}

/// `airlock expand` / `airlock new --expand`: the files written, and what to do with them.
pub fn expanded(
    expansion: &airlock_plan::expand::Expansion,
    paths: &[std::path::PathBuf],
    replaced: Option<&std::path::Path>,
    format: Format,
) {
    use airlock_plan::expand::Change;
    let what = match &expansion.change {
        Change::Rename { from, to } => format!("rename of `{}.{from}` to `{to}`", expansion.table),
        Change::Retype { column, to_type, .. } => format!("type change of `{}.{column}` to {to_type}", expansion.table),
        Change::RenameTable { to } => format!("rename of the table `{}` to `{to}`", expansion.table),
    };
    if format == Format::Json {
        print_json(&json!({
            "expanded": what,
            "replaced": replaced,
            "phases": expansion.phases.iter().map(|p| p.name).collect::<Vec<_>>(),
            "created": paths,
        }));
        return;
    }
    if let Some(file) = replaced {
        println!("replaced {} with the expand/contract of the {what}:", file.display());
    } else {
        println!("expand/contract of the {what}:");
    }
    for p in paths {
        println!("  created {}", p.display());
    }
    println!(
        "{DIM}`airlock migrate` applies all but the contract; deploy the app that uses the new column; once no old app version runs, `airlock migrate --contract`.{DIM:#}"
    );
}

/// `airlock backfill status`.
pub fn backfills(entries: &[airlock_exec::BackfillEntry], format: Format) {
    if format == Format::Json {
        print_json(&json!({ "backfills": entries }));
    } else if entries.is_empty() {
        println!("No pending backfill.");
    } else {
        backfill_lines(entries);
    }
}

/// One line per backfill: where it is and how far.
fn backfill_lines(entries: &[airlock_exec::BackfillEntry]) {
    for b in entries {
        let table = b.table.as_deref().unwrap_or("?");
        let state = match b.state {
            "running" => format!("{GREEN}running{GREEN:#}"),
            "stopped" | "paused" | "cancelled" => format!("{YELLOW}{}{YELLOW:#}", b.state),
            other => other.to_owned(),
        };
        let how_far = if b.state == "pending" {
            String::new()
        } else {
            let percent = (b.rows_done * 100).checked_div(b.rows_total).unwrap_or(100);
            let eta =
                b.eta_seconds.map(|e| format!(", ETA {}", human_duration(Duration::from_secs(e)))).unwrap_or_default();
            format!(
                ": statement {}/{}, {}/{} rows ({percent}%), {} changed in {} batches{eta}",
                b.statement, b.statements, b.rows_done, b.rows_total, b.rows_changed, b.batches
            )
        };
        println!("  {:<16} {:<40} {table} {state}{how_far}", b.version, b.name);
    }
}

fn print_json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

/// `migrate`, `down` and `resolve` results.
pub fn run_report(report: &RunReport, format: Format, verb: &str) {
    if format == Format::Json {
        print_json(&serde_json::to_value(report).unwrap_or_default());
        return;
    }
    let at =
        report.current_version.as_deref().map(|v| format!("version {v}")).unwrap_or_else(|| "no version".to_owned());
    if report.dry_run {
        if report.migrations.is_empty() {
            println!("Nothing to do: the database is at {at}.");
        } else {
            println!("{BOLD}Would apply{BOLD:#} (dry run, nothing changed):");
            for m in &report.migrations {
                println!("  {:<16} {:<40} {DIM}{} statement(s), {}{DIM:#}", m.version, m.name, m.statements, m.mode);
            }
        }
    } else if report.migrations.is_empty() {
        println!("Nothing to do: the database is at {at}.");
    } else {
        let n = report.migrations.len();
        let total: u64 = report.migrations.iter().map(|m| m.duration_ms).sum();
        println!(
            "{GREEN}{verb}{GREEN:#} {n} migration{} in {total} ms; the database is at {at}.",
            if n == 1 { "" } else { "s" }
        );
    }
    if !report.left_pending.is_empty() {
        let versions: Vec<&str> = report.left_pending.iter().map(|p| p.version.as_str()).collect();
        println!("{DIM}Left pending: {}{DIM:#}", versions.join(", "));
    }
}

fn problem_line(p: &ProblemEntry) -> String {
    let mark = if p.blocking { format!("{RED}✗{RED:#}") } else { format!("{YELLOW}!{YELLOW:#}") };
    format!("  {mark} {BOLD}{}{BOLD:#} {}", p.code, p.message)
}

/// `status`.
pub fn status(report: &StatusReport, format: Format) {
    if format == Format::Json {
        print_json(&serde_json::to_value(report).unwrap_or_default());
        return;
    }
    let state = match report.state {
        "clean" => format!("{GREEN}clean{GREEN:#}"),
        "dirty" => format!("{YELLOW}dirty{YELLOW:#}"),
        other => format!("{RED}{other}{RED:#}"),
    };
    println!(
        "{BOLD}Database{BOLD:#}  {}{}",
        report.database,
        report.project.as_deref().map(|p| format!("  (project {p})")).unwrap_or_default()
    );
    println!(
        "{BOLD}State{BOLD:#}     {state}, version {}: {} applied, {} pending",
        report.current_version.as_deref().unwrap_or("none"),
        report.applied.len(),
        report.pending.len()
    );
    if let Some(lock) = &report.lock {
        println!(
            "{BOLD}Running{BOLD:#}   pid {} ({}@{}) since {}{}",
            lock.pid,
            lock.os_user,
            lock.host,
            lock.since,
            lock.version.as_deref().map(|v| format!(", applying {v}")).unwrap_or_default()
        );
    }
    if let Some(run) = &report.last_run {
        println!(
            "{BOLD}Last run{BOLD:#}  {} migration{} by {}@{}, {}, finished {} ({})",
            run.migrations,
            if run.migrations == 1 { "" } else { "s" },
            run.os_user,
            run.host,
            human_duration(Duration::from_millis(run.duration_ms.max(0) as u64)),
            run.finished_at.get(..19).unwrap_or(&run.finished_at).replace('T', " "),
            run.outcome
        );
    }
    if !report.applied.is_empty() {
        println!("{BOLD}Applied{BOLD:#}");
        for a in &report.applied {
            println!(
                "  {:<16} {:<40} {DIM}{}  {}{DIM:#}",
                a.version,
                a.name,
                a.applied_at.as_deref().map(|t| t.get(..19).unwrap_or(t).replace('T', " ")).unwrap_or_default(),
                a.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default()
            );
        }
    }
    if !report.pending.is_empty() {
        println!("{BOLD}Pending{BOLD:#}");
        for p in &report.pending {
            let kind = if p.contract { "contract" } else { p.kind };
            println!("  {:<16} {:<40} {DIM}{kind}{DIM:#}", p.version, p.name);
        }
    }
    if let Some(expanded) = &report.expanded {
        println!("{YELLOW}Expanded{YELLOW:#}  {expanded}");
    }
    if !report.backfills.is_empty() {
        println!("{BOLD}Backfills{BOLD:#}");
        backfill_lines(&report.backfills);
    }
    if !report.problems.is_empty() {
        println!("{BOLD}Problems{BOLD:#}");
        for p in &report.problems {
            println!("{}", problem_line(p));
            if let Some(detail) = &p.detail {
                for line in detail.lines() {
                    println!("      {line}");
                }
            }
        }
    }
    for w in &report.warnings {
        eprintln!("{YELLOW}warning{YELLOW:#}: {w}");
    }
}

/// `gate`: the verdict, and why.
pub fn gate(report: &GateReport, format: Format) {
    if format == Format::Json {
        print_json(&serde_json::to_value(report).unwrap_or_default());
        return;
    }
    let required = report.required.as_deref().unwrap_or("nothing");
    let current = report.current_version.as_deref().unwrap_or("none");
    if report.satisfied {
        println!("{GREEN}ready{GREEN:#}: the database is at version {current}, {} (requires {required})", report.state);
    } else {
        println!("{RED}not ready{RED:#}: the database is at version {current}, {} (requires {required})", report.state);
        for reason in &report.reasons {
            println!("  - {reason}");
        }
    }
}

/// `airlock rehearse`: a line per migration, what was left behind under it.
pub fn rehearsal(report: &airlock_exec::RehearsalReport, format: Format) {
    if format == Format::Json {
        print_json(&serde_json::to_value(report).unwrap_or_default());
        return;
    }
    if report.migrations.is_empty() {
        println!("Nothing to rehearse: no pending migration.");
        return;
    }
    if let Some(c) = &report.copied {
        println!(
            "Copied {} row(s) of {} table(s) from the target ({}) in {}",
            c.rows,
            c.tables,
            c.data,
            human_duration(Duration::from_millis(c.ms))
        );
    }
    let took = |t: Option<u64>| t.map_or_else(|| "-".to_owned(), |t| human_duration(Duration::from_millis(t)));
    for m in &report.migrations {
        let outcome = match m.outcome {
            "clean" => format!("{GREEN}clean{GREEN:#}"),
            "no-down" => "no down script".to_owned(),
            other => format!("{RED}{other}{RED:#}"),
        };
        println!(
            "{} {}: {outcome} (up {}, down {}, up again {})",
            m.version,
            m.name,
            took(m.up_ms),
            took(m.down_ms),
            took(m.reup_ms)
        );
        if let Some(error) = &m.error {
            println!("  - {error}");
        }
        for t in report.timed.iter().filter(|t| t.version == m.version) {
            println!(
                "  {DIM}line {}: {} `{}` ({} rows) in {:.0} ms{DIM:#}",
                t.line,
                match t.work {
                    airlock_exec::Work::Rewrite => "rewrote",
                    airlock_exec::Work::Index => "built an index over",
                    airlock_exec::Work::Scan => "scanned",
                },
                t.table,
                t.rows,
                t.ms
            );
        }
        for d in &m.differences {
            let again = d.object.ends_with("(after the up run again)");
            match d.change {
                "missing" if again => println!("  - {}: not made again", d.object),
                "unexpected" if again => println!("  - {}: made only the second time", d.object),
                "missing" => println!("  - {}: gone after the down", d.object),
                "unexpected" => println!("  - {}: left behind by the down", d.object),
                _ => println!(
                    "  - {}: {} was {}, is {} after the down",
                    d.object,
                    d.attribute.as_deref().unwrap_or("?"),
                    d.expected_shown(),
                    d.actual_shown()
                ),
            }
        }
    }
    if let Some(error) = &report.timings_error {
        println!("{YELLOW}timings not kept{YELLOW:#}: {error}; `plan` keeps its rates meanwhile");
    }
    if report.copied.is_some() {
        let scalable = report.timed.iter().filter(|t| t.scalable()).count();
        match &report.timings_file {
            Some(file) if scalable > 0 => println!(
                "Kept the time of {scalable} heavy statement(s) in {file}: `plan` scales them by the live rows"
            ),
            _ if report.timed.is_empty() => {}
            _ if scalable == 0 => println!(
                "No heavy statement worked on {} rows or more: too few for `plan` to scale its time (copy more: --data full or sample:N)",
                airlock_exec::MIN_ROWS
            ),
            _ => {}
        }
    }
    if report.verdict == "clean" {
        println!("{GREEN}rehearsal clean{GREEN:#}: every down script restores the schema its up script found");
    } else {
        println!("{RED}rehearsal found problems{RED:#}");
    }
}

/// `airlock drift`: each difference on its own line, with both sides.
pub fn drift(report: &airlock_exec::DriftReport, format: Format) {
    if format == Format::Json {
        print_json(&serde_json::to_value(report).unwrap_or_default());
        return;
    }
    if report.differences.is_empty() {
        println!("{GREEN}no drift{GREEN:#}: {} has the schema of {}", report.database, report.against);
        return;
    }
    let n = report.differences.len();
    println!(
        "{RED}drift{RED:#}: {} differs from {} in {n} place{}:",
        report.database,
        report.against,
        if n == 1 { "" } else { "s" }
    );
    // Definitions span lines as the engine prints them: one line each here (JSON keeps them whole).
    let one_line = |text: &Option<String>| text.as_deref().map(airlock_core::snapshot::squash_whitespace);
    let with = |text: Option<String>| text.filter(|t| !t.is_empty()).map_or(String::new(), |t| format!(": {t}"));
    for d in &report.differences {
        match (d.change, &d.attribute) {
            ("missing", _) => println!("  - {}: missing here{}", d.object, with(one_line(&d.expected))),
            ("unexpected", _) => println!("  - {}: only here{}", d.object, with(one_line(&d.actual))),
            (_, attribute) => println!(
                "  - {}: {} is {} here, {} there",
                d.object,
                attribute.as_deref().unwrap_or("?"),
                d.actual_shown(),
                d.expected_shown()
            ),
        }
    }
}

fn error_kind(e: &ExecError) -> &'static str {
    match e {
        ExecError::Discovery(_) => "malformed-migrations",
        ExecError::Invalid(_) => "invalid-migration",
        ExecError::Usage(_) => "usage",
        ExecError::Scratch(_) => "scratch-database",
        ExecError::Connect(_) => "connection",
        ExecError::Database { .. } => "database",
        ExecError::Blocked { .. } => "blocked",
        ExecError::Protected(_) => "protected-environment",
        ExecError::BackupFailed(_) => "backup-failed",
        ExecError::BackupInvalid(_) => "backup-invalid",
        ExecError::MigrationFailed(..) => "migration-failed",
        ExecError::LockBusy { .. } => "lock-busy",
        ExecError::LeaseLost => "lock-lost",
        ExecError::Interrupted { .. } => "interrupted",
        ExecError::AdoptRefused { .. } => "adopt-refused",
        ExecError::GateNotSatisfied => "gate-not-satisfied",
        ExecError::FleetIncomplete(_) => "fleet-incomplete",
        ExecError::LintErrors(_) => "lint-errors",
        ExecError::LintRefused(_) => "lint",
        ExecError::PlanBlocked => "plan-blocked",
        ExecError::DriftFound => "drift",
        ExecError::RehearsalProblems => "rehearsal",
        ExecError::ChecksFailed(_) => "data-check-failed",
        ExecError::RiskRefused(_) => "risky-in-protected-environment",
        ExecError::PlanMismatch(_) => "plan-mismatch",
    }
}

/// Any error of a command: stderr for people, one JSON object on stdout for scripts.
pub fn error(e: &ExecError, format: Format) {
    if format == Format::Json {
        let mut value =
            json!({ "error": { "kind": error_kind(e), "exit_code": e.exit_code(), "message": e.to_string() } });
        match e {
            ExecError::Blocked { problems } => {
                let entries: Vec<ProblemEntry> = problems.iter().map(ProblemEntry::from).collect();
                value["error"]["problems"] = serde_json::to_value(entries).unwrap_or_default();
            }
            ExecError::MigrationFailed(f, applied) => {
                value["error"]["migration"] = json!({
                    "version": f.version, "name": f.name, "file": f.path, "line": f.line,
                    "statement": f.index, "sql": f.sql, "server_error": f.error.message,
                    "code": f.error.code, "aftermath": f.aftermath,
                });
                value["error"]["applied_before_failure"] = json!(applied);
            }
            ExecError::ChecksFailed(r) | ExecError::RiskRefused(r) => {
                value["error"]["migration"] = json!({ "version": r.version, "name": r.name, "file": r.file });
                value["error"]["statements"] = serde_json::to_value(&r.statements).unwrap_or_default();
                value["error"]["applied_before_failure"] = json!(r.applied);
            }
            ExecError::AdoptRefused { tool, reasons } => {
                value["error"]["tool"] = json!(tool);
                value["error"]["reasons"] = json!(reasons);
            }
            ExecError::Interrupted { signal, state, applied } => {
                value["error"]["signal"] = json!(signal_name(*signal));
                value["error"]["state"] = json!(state);
                value["error"]["applied_before_failure"] = json!(applied);
            }
            ExecError::LintRefused(findings) => {
                value["error"]["findings"] = findings
                    .iter()
                    .map(|f| json!({ "rule": f.rule, "severity": f.severity, "file": f.file, "line": f.line, "message": f.message, "help": f.help, "fix": f.fix }))
                    .collect();
            }
            _ => {}
        }
        print_json(&value);
        return;
    }
    match e {
        ExecError::Blocked { problems } => {
            eprintln!("{RED}error{RED:#}: refused; nothing was changed:");
            for p in problems {
                eprintln!("{}", problem_line(&ProblemEntry::from(p)));
                if let Some(detail) = &p.detail {
                    for line in detail.lines() {
                        eprintln!("      {line}");
                    }
                }
            }
        }
        ExecError::MigrationFailed(f, applied) => {
            eprintln!(
                "{RED}error{RED:#}: migration {} ({}) failed at statement {} ({}:{})",
                f.version,
                f.name,
                f.index,
                f.path.display(),
                f.line
            );
            let excerpt: Vec<&str> = f.sql.lines().take(6).collect();
            for line in &excerpt {
                eprintln!("  {DIM}|{DIM:#} {line}");
            }
            if f.sql.lines().count() > excerpt.len() {
                eprintln!("  {DIM}| …{DIM:#}");
            }
            eprintln!("  = the server said: {}", f.error.message);
            eprintln!("  = {}", f.aftermath);
            if !applied.is_empty() {
                eprintln!("  = applied before the failure: {}", versions_summary(applied));
            }
        }
        ExecError::ChecksFailed(r) | ExecError::RiskRefused(r) => {
            let why = match e {
                ExecError::RiskRefused(_) => format!("environment `{}` is protected and it is risky", r.environment),
                _ => "it would fail or lose data or attributes".to_owned(),
            };
            let before = if r.applied.is_empty() {
                "nothing was applied"
            } else {
                "nothing of it ran, migrations before it in this run stay applied"
            };
            eprintln!("{RED}error{RED:#}: migration {} ({}) was not run: {why}; {before}", r.version, r.name);
            for statement in &r.statements {
                for risk in &statement.risks {
                    eprintln!(
                        "  {}:{} statement {} [{}]: {}",
                        r.file.display(),
                        statement.line,
                        statement.index,
                        risk.code,
                        risk.message
                    );
                    eprintln!("      {DIM}fix: {}{DIM:#}", risk.fix);
                }
            }
            if !r.applied.is_empty() {
                eprintln!("  = applied before the refusal: {}", versions_summary(&r.applied));
            }
        }
        ExecError::Interrupted { signal, state, applied } => {
            eprintln!("{RED}interrupted{RED:#} by {}: {state}", signal_name(*signal));
            eprintln!("  = the lock on the database was released; `airlock status` shows where it stands");
            if !applied.is_empty() {
                eprintln!("  = done by this run before it stopped: {}", versions_summary(applied));
            }
        }
        other => eprintln!("{RED}error{RED:#}: {other}"),
    }
}

/// A list of versions for a message: all of them when few, else how many and their range.
pub fn versions_summary(versions: &[String]) -> String {
    match versions {
        [] => "none".to_owned(),
        [one] => one.clone(),
        few if few.len() <= 5 => few.join(", "),
        [first, .., last] => format!("{} migrations, {first} to {last}", versions.len()),
    }
}

/// `backup list`: one line a backup, newest first.
pub fn backup_list(list: &airlock_exec::BackupList, format: Format) {
    if format != Format::Human {
        print_json(&serde_json::to_value(list).unwrap_or_default());
        return;
    }
    if list.backups.is_empty() {
        println!("No backups recorded for {}.", list.database);
    }
    for b in &list.backups {
        let m = &b.manifest;
        let what = if m.mode == airlock_exec::BackupMode::Database {
            "the database".to_owned()
        } else {
            m.tables.iter().map(|t| format!("{} ({} rows)", t.table, t.rows)).collect::<Vec<_>>().join(", ")
        };
        let state = match (&b.deleted, b.present) {
            (Some(why), _) => format!("{DIM}deleted by retention ({why}){DIM:#}"),
            (None, Some(true)) => format!("{GREEN}verified{GREEN:#}"),
            (None, Some(false)) => format!("{RED}missing from the store{RED:#}"),
            (None, None) => "verified (stored by a command)".to_owned(),
        };
        println!("{BOLD}{}{BOLD:#}  {}  {state}  {what}", m.id, m.taken_at);
        println!(
            "  {DIM}{} stored ({} raw), {}, by {}{DIM:#} → {}",
            airlock_exec::human_bytes(m.stored_bytes),
            airlock_exec::human_bytes(m.raw_bytes),
            m.tool,
            m.taken_by,
            m.file
        );
    }
    if let Some(first) = list.leftovers.first() {
        println!(
            "{YELLOW}{} part(s) of backups that were interrupted{YELLOW:#} (e.g. {first}): no backup owns them; safe to delete",
            list.leftovers.len()
        );
    }
}

/// `backup verify`.
pub fn backup_verified(verified: &airlock_exec::Verified, format: Format) {
    if format != Format::Human {
        print_json(&serde_json::to_value(verified).unwrap_or_default());
        return;
    }
    let tables: Vec<String> = verified.tables.iter().map(|(t, rows)| format!("{t} ({rows} rows)")).collect();
    println!(
        "{GREEN}✓{GREEN:#} backup {} restores: {} match what was saved ({}; {})",
        verified.id,
        tables.join(", "),
        verified.file,
        human_duration(Duration::from_millis(verified.duration_ms))
    );
}

/// `backup restore`: where each table's rows are now.
pub fn backup_restored(restored: &airlock_exec::Restored, format: Format) {
    if format != Format::Human {
        print_json(&serde_json::to_value(restored).unwrap_or_default());
        return;
    }
    let took = human_duration(Duration::from_millis(restored.duration_ms));
    if restored.whole {
        println!("{GREEN}✓{GREEN:#} backup {} restored into {} ({took}):", restored.id, restored.database);
    } else {
        println!(
            "{GREEN}✓{GREEN:#} backup {} restored beside the live tables of {} ({took}):",
            restored.id, restored.database
        );
    }
    for t in &restored.tables {
        println!("  {} → {BOLD}{}{BOLD:#}  {} rows, the same as saved", t.table, t.restored_as, t.rows);
        if let Some(r) = &t.replaced {
            println!(
                "  {} holds the saved rows again: {} written, {} deleted; its {} rows before are in {BOLD}{}{BOLD:#}",
                t.table, r.written, r.deleted, r.kept, r.kept_as
            );
        }
    }
    if restored.tables.iter().any(|t| t.replaced.is_some()) {
        println!(
            "{DIM}The restored and the replaced rows stay beside the live tables: drop them when done (drift shows them until then).{DIM:#}"
        );
    } else if !restored.whole {
        println!(
            "{DIM}Compare them with the live tables and copy back what you need; drop them when done (drift shows them until then).{DIM:#}"
        );
    }
}

/// `history`: the audit trail, newest first.
pub fn history(report: &airlock_exec::HistoryReport, format: Format) {
    if format != Format::Human {
        print_json(&serde_json::to_value(report).unwrap_or_default());
        return;
    }
    if report.entries.is_empty() {
        println!("No history yet in {}.", report.database);
        return;
    }
    println!("{BOLD}History{BOLD:#} of {}, newest first:", report.database);
    for e in &report.entries {
        let at = e.at.get(..19).unwrap_or(&e.at).replace('T', " ");
        let outcome = match e.outcome.as_deref() {
            Some("succeeded") | None => String::new(),
            Some(other) => format!(" {RED}{other}{RED:#}"),
        };
        let versions =
            if e.versions.is_empty() { String::new() } else { format!(" {}", versions_summary(&e.versions)) };
        println!("  {at}  {:<14}{versions}{outcome}  {DIM}{}@{}{DIM:#}", e.action, e.os_user, e.host);
        if let Some(reason) = &e.reason {
            println!("      {DIM}{reason}{DIM:#}");
        }
    }
}

/// `adopt`: what was taken over (or would be, with `--dry-run`).
pub fn adopt(report: &airlock_exec::AdoptReport, format: Format) {
    if format != Format::Human {
        print_json(&serde_json::to_value(report).unwrap_or_default());
        return;
    }
    let verb = if report.dry_run { "Would adopt" } else { "Adopted" };
    println!(
        "{verb} {} migration(s) from {}'s history (`{}`), without running any SQL; {} checksum(s) compared with {}'s, all equal:",
        report.adopted.len(),
        report.tool,
        report.table,
        report.checksums_compared,
        report.tool
    );
    for entry in &report.adopted {
        println!("  {GREEN}✓{GREEN:#} {:<16} {:<40} {DIM}{}{DIM:#}", entry.version, entry.name, entry.how);
    }
    for note in &report.notes {
        eprintln!("{YELLOW}note{YELLOW:#}: {note}");
    }
    if !report.pending.is_empty() {
        println!(
            "Pending, for `airlock migrate`: {}",
            report.pending.iter().map(|p| p.version.clone()).collect::<Vec<_>>().join(", ")
        );
    }
    if report.dry_run {
        println!("Nothing was written (--dry-run).");
    } else {
        println!("{}'s table was left as it was.", report.tool);
    }
}

/// `calibrate`: the measured rates.
pub fn calibration(c: &airlock_exec::Calibration, format: Format) {
    if format != Format::Human {
        print_json(&json!({ "calibration": c }));
        return;
    }
    println!(
        "Calibrated on {} rows at {}; `plan` and `migrate` estimate with these until history of real runs replaces them:",
        c.rows, c.measured_at
    );
    for (work, rate) in [("scan", c.scan), ("index build", c.index), ("rewrite", c.rewrite)] {
        println!("  {work:<12} {} rows/s", rows(Some(rate)));
    }
}

fn verdict_style(verdict: airlock_exec::Verdict) -> String {
    match verdict {
        airlock_exec::Verdict::Safe => format!("{GREEN}safe{GREEN:#}"),
        airlock_exec::Verdict::Risky => format!("{YELLOW}risky{YELLOW:#}"),
        airlock_exec::Verdict::Blocked => format!("{RED}blocked{RED:#}"),
    }
}

fn rows(n: Option<f64>) -> String {
    match n {
        Some(r) if r >= 1e6 => format!("{:.1}M", r / 1e6),
        Some(r) if r >= 1e3 => format!("{:.0}k", r / 1e3),
        Some(r) => format!("{r:.0}"),
        None => "?".to_owned(),
    }
}

/// Under a risk: the allow that accepted it, or the fix.
fn reason_outcome(r: &airlock_exec::Risk) {
    match &r.allowed {
        Some(reason) => println!("        {DIM}accepted by `-- airlock:allow {}`: {reason}{DIM:#}", r.code),
        None => println!("        {DIM}fix: {}{DIM:#}", r.fix),
    }
}

/// `plan`: per migration, per statement, the locks, rows, estimate, checks and verdict, with the fix for each problem.
pub fn plan(report: &airlock_exec::PlanReport, format: Format) {
    if format != Format::Human {
        print_json(&serde_json::to_value(report).unwrap_or_default());
        return;
    }
    println!("{BOLD}Plan{BOLD:#} for {}: {}", report.database, verdict_style(report.verdict));
    if report.migrations.is_empty() {
        println!("Nothing pending.");
    }
    for m in &report.migrations {
        println!("\n{BOLD}{} {}{BOLD:#}  {}", m.version, m.name, verdict_style(m.verdict));
        for s in &m.statements {
            let first_line = s.sql.lines().next().unwrap_or_default();
            let text = if first_line.len() > 70 {
                format!("{}…", &first_line[..first_line.char_indices().nth(69).map_or(first_line.len(), |(i, _)| i)])
            } else {
                first_line.to_owned()
            };
            println!("  {:>2}. {text}", s.index);
            let locks: Vec<String> = s.locks.iter().map(|l| format!("{} {}", l.mode, l.table)).collect();
            let work = match s.work {
                Some(airlock_exec::Work::Rewrite) => "rewrites the table",
                Some(airlock_exec::Work::Index) => "builds an index",
                Some(airlock_exec::Work::Scan) => "scans the table",
                None => "no table scan",
            };
            println!(
                "      {DIM}locks:{DIM:#} {}  {DIM}rows:{DIM:#} {}  {DIM}{work}{DIM:#}  {DIM}estimate:{DIM:#} {}  → {}",
                if locks.is_empty() { "none".to_owned() } else { locks.join(", ") },
                rows(s.estimated_rows),
                s.estimated_seconds.map_or("?".to_owned(), |t| {
                    let t = if t < 1.0 { "< 1 s".to_owned() } else { format!("{t:.0} s") };
                    match &s.rehearsal {
                        Some(r) => format!("{t} (rehearsed: {:.0} ms × {:.1})", r.ms, r.scale),
                        None => t,
                    }
                }),
                verdict_style(s.verdict)
            );
            if let Some(b) = &s.backfill {
                let time = b.seconds.map_or("time unknown".to_owned(), human_estimate);
                let pace = b.max_rows_per_second.map(|c| format!(", at most {c} rows/s")).unwrap_or_default();
                let matched = b.matched.map(|m| format!(" ({m} match its WHERE now)")).unwrap_or_default();
                println!(
                    "      {DIM}in batches:{DIM:#} {} of `{}`{matched} in ~{} batch(es) of ~{} rows ({} ms each{pace}), {time}, each its own transaction",
                    rows(b.rows),
                    b.table,
                    b.batches.map_or("?".to_owned(), |n| n.to_string()),
                    b.batch_rows,
                    b.batch_target_ms
                );
            }
            // A failed check's risk is told under the check, a lint error's
            // with the finding; the others after.
            let mut told: Vec<bool> = s
                .reasons
                .iter()
                .map(|r| {
                    r.blocks
                        && s.findings
                            .iter()
                            .any(|f| RiskCode::Lint(f.rule) == r.code && f.severity == airlock_lint::Severity::Error)
                })
                .collect();
            let blocks = |r: &airlock_exec::Risk| {
                r.allowed.is_none()
                    && (r.blocks || (s.verdict == airlock_exec::Verdict::Blocked && r.rechecked_after.is_none()))
            };
            for c in &s.checks {
                let code = if c.ok.is_none() { RiskCode::Unchecked } else { c.check };
                let reason = match c.ok {
                    Some(true) => None,
                    _ => s.reasons.iter().enumerate().position(|(i, r)| !told[i] && r.code == code),
                };
                let mark = match (c.ok, reason.map(|i| &s.reasons[i])) {
                    (Some(true), _) => format!("{GREEN}✓{GREEN:#}"),
                    (Some(false), Some(r)) if blocks(r) => format!("{RED}✗{RED:#}"),
                    (Some(false), _) => format!("{YELLOW}!{YELLOW:#}"),
                    (None, _) => format!("{YELLOW}?{YELLOW:#}"),
                };
                println!("      {mark} {}: {}", c.check, c.message);
                if !c.examples.is_empty() && c.check != RiskCode::AttributeLoss {
                    println!("        {DIM}{} {}{DIM:#}", c.examples_label(), c.examples.join("; "));
                }
                if let Some(i) = reason {
                    told[i] = true;
                    let r = &s.reasons[i];
                    if let Some(version) = &r.rechecked_after {
                        println!(
                            "        {DIM}pending migration {version} runs before it and changes these rows: `migrate` checks again just before{DIM:#}"
                        );
                    }
                    reason_outcome(r);
                }
            }
            for r in s.reasons.iter().zip(&told).filter(|(_, told)| !**told).map(|(r, _)| r) {
                let level = match () {
                    _ if r.blocks && r.allowed.is_none() => format!("{RED}blocked{RED:#}"),
                    _ if blocks(r) => format!("{RED}blocked{RED:#} (protected environment, no allow)"),
                    _ => format!("{YELLOW}risky{YELLOW:#}"),
                };
                println!("      {level} [{}] {}", r.code, r.message);
                reason_outcome(r);
            }
            for f in &s.findings {
                println!("      {} [{}] {}", f.severity.as_str(), f.rule, f.message);
                println!("        {DIM}help: {}{DIM:#}", f.help);
                if let Some(fix) = &f.fix {
                    println!("        {DIM}fix: {fix}{DIM:#}");
                }
            }
        }
    }
    let statements: Vec<&airlock_exec::StatementPlan> = report.migrations.iter().flat_map(|m| &m.statements).collect();
    if !statements.is_empty() {
        let count = |v: airlock_exec::Verdict| statements.iter().filter(|s| s.verdict == v).count();
        let accepted = statements
            .iter()
            .filter(|s| s.verdict == airlock_exec::Verdict::Risky && s.unaccepted().next().is_none())
            .count();
        let seconds: f64 = statements.iter().filter_map(|s| s.estimated_seconds).sum();
        println!(
            "\n{} statement(s) in {} migration(s): {} blocked, {} risky ({accepted} accepted by an allow), {} safe; table work estimated at {}",
            statements.len(),
            report.migrations.len(),
            count(airlock_exec::Verdict::Blocked),
            count(airlock_exec::Verdict::Risky),
            count(airlock_exec::Verdict::Safe),
            human_estimate(seconds)
        );
    }
    if let Some(backup) = &report.backup {
        plan_backup(backup);
    }
    if let Some(cluster) = &report.cluster {
        println!("\n{BOLD}Cluster{BOLD:#}: {cluster}");
    }
    for replica in &report.replicas {
        let lag = match (replica.lag_seconds, &replica.error) {
            (_, Some(e)) => format!("{RED}cannot be asked{RED:#}: {e}"),
            (Some(lag), None) => format!("{} behind", human_duration(Duration::from_secs_f64(lag))),
            (None, None) => "lag unknown".to_owned(),
        };
        println!("\n{BOLD}Replica{BOLD:#} {}: {lag}", replica.database);
        for w in &replica.warnings {
            println!("  {YELLOW}!{YELLOW:#} {w}");
        }
    }
    if report.migrations.iter().any(|m| m.statements.iter().any(|s| s.work.is_some())) {
        let rates: Vec<String> = report
            .rates
            .iter()
            .map(|(work, r)| format!("{} {} rows/s ({})", work.as_str(), rows(Some(r.rows_per_second)), r.source))
            .collect();
        println!("\n{DIM}estimates from: {}{DIM:#}", rates.join(", "));
        let rehearsed: Vec<&airlock_exec::ScaledRehearsal> =
            statements.iter().filter_map(|s| s.rehearsal.as_ref()).collect();
        if let Some(first) = rehearsed.first() {
            println!(
                "{DIM}{} estimate(s) from a rehearsal with {}'s rows ({}, {}): the time there × live rows / rehearsed rows{DIM:#}",
                rehearsed.len(),
                first.database,
                first.data,
                first.at
            );
        }
    }
}

/// The plan's backup section: what `migrate` would save, how much, where.
fn plan_backup(backup: &airlock_exec::BackupPlan) {
    let size =
        backup.estimated_bytes.map_or("size unknown".to_owned(), |b| format!("about {}", airlock_exec::human_bytes(b)));
    let time = backup.estimated_seconds.map_or(String::new(), |s| format!(", {}", human_estimate(s)));
    println!(
        "\n{BOLD}Backup{BOLD:#} before migrating: {} ({size}{time}, saved and verified) → {}",
        match backup.mode {
            airlock_exec::BackupMode::Database => "the whole database",
            _ if backup.whole_file => "the database file, whole (the tables below are those to restore)",
            _ if backup.tables.is_empty() => "nothing: no table that exists now changes",
            _ => "the tables the migrations change",
        },
        backup.store
    );
    if backup.estimated_seconds.is_some() {
        let stored = backup
            .estimated_stored_bytes
            .map_or(String::new(), |b| format!("; about {} stored", airlock_exec::human_bytes(b)));
        println!("  {DIM}time reckoned {}{stored}{DIM:#}", backup.pace);
    }
    if let Some(everything) = &backup.everything {
        println!(
            "  {YELLOW}whole database{YELLOW:#}: {} line {}: {}",
            everything.migration, everything.line, everything.why
        );
    }
    for t in &backup.tables {
        let bytes = t.bytes.map_or("?".to_owned(), |b| airlock_exec::human_bytes(b.max(0) as u64));
        println!(
            "  {}  {DIM}rows:{DIM:#} {}  {DIM}size:{DIM:#} {bytes}  {DIM}changed by{DIM:#} {}",
            t.table,
            rows(t.rows),
            t.changed_by
        );
    }
    if let Some(unsupported) = &backup.unsupported {
        println!("  {YELLOW}{unsupported}{YELLOW:#}");
    }
    if let Some(over) = &backup.over_budget {
        println!(
            "  {YELLOW}{over}{YELLOW:#}: `migrate` takes it only with --backup, or runs without it with --no-backup"
        );
    }
}

/// `airlock init`: what was written and found, and what to run next.
pub fn initialized(done: &crate::init::Initialized, format: Format) {
    if format == Format::Json {
        print_json(&serde_json::to_value(done).unwrap_or_default());
        return;
    }
    println!("{GREEN}wrote{GREEN:#} {}", done.config.display());
    if done.created_dir {
        println!("{GREEN}created{GREEN:#} {}/", done.dir.display());
    } else {
        let layout = done.layout.map(|l| format!(", {l}")).unwrap_or_default();
        println!(
            "  migrations: {} ({} found{layout}; airlock reads them where they are)",
            done.dir.display(),
            done.migrations
        );
    }
    for file in &done.unreadable {
        println!("  {YELLOW}cannot read{YELLOW:#} {file}");
    }
    for tool in &done.foreign {
        println!("  the database holds {tool}'s history: adopt it before migrating, or every migration looks new");
    }
    for note in &done.notes {
        println!("  {YELLOW}note{YELLOW:#}: {note}");
    }
    println!("next:");
    for step in &done.next {
        println!("  {step}");
    }
}

#[cfg(test)]
mod tests {
    use super::versions_summary;

    #[test]
    fn long_lists_of_versions_say_how_many_and_the_range() {
        let v = |n: usize| (1..=n).map(|i| i.to_string()).collect::<Vec<_>>();
        assert_eq!(versions_summary(&v(1)), "1");
        assert_eq!(versions_summary(&v(3)), "1, 2, 3");
        assert_eq!(versions_summary(&v(92)), "92 migrations, 1 to 92");
    }
}
