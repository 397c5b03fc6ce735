//! `/metrics`: each environment's state as Prometheus gauges, labelled
//! `environment`, encoded by `prometheus-client` as OpenMetrics text.

use std::sync::atomic::AtomicU64;

use airlock_exec::Assessment;
use chrono::DateTime;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode as encode_text;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Env {
    environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvVersion {
    environment: String,
    version: String,
}

/// One backfill of one environment.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvBackfill {
    environment: String,
    version: String,
}

type Gauges = Family<Env, Gauge<f64, AtomicU64>>;
type BackfillGauges = Family<EnvBackfill, Gauge<f64, AtomicU64>>;

/// Renders the metrics for every environment; None marks one that could not be read.
pub(crate) fn encode(observed: &[(&str, Option<&Assessment>)]) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    let gauge = |registry: &mut Registry, name: &str, help: &str| {
        let family = Gauges::default();
        registry.register(name, help, family.clone());
        family
    };
    let up = gauge(&mut registry, "airlock_up", "Whether airlock could read the database (1) or not (0)");
    let version = gauge(
        &mut registry,
        "airlock_schema_version",
        "The newest applied migration version, when it is a plain number (dotted versions: see airlock_schema_version_info)",
    );
    let version_info = Family::<EnvVersion, Gauge<f64, AtomicU64>>::default();
    registry.register(
        "airlock_schema_version_info",
        "The newest applied migration version, as a label",
        version_info.clone(),
    );
    let in_progress = gauge(&mut registry, "airlock_migration_in_progress", "1 while a migration run holds the lock");
    let pending = gauge(&mut registry, "airlock_pending_migrations", "Migrations in the directory not applied yet");
    let failed = gauge(
        &mut registry,
        "airlock_failed_migrations",
        "Migrations that failed or were cut off part-way and need a person",
    );
    let problems = gauge(
        &mut registry,
        "airlock_problems",
        "Problems `airlock status` reports (edited files, unknown versions, wrong project...)",
    );
    let last_duration =
        gauge(&mut registry, "airlock_last_run_duration_seconds", "How long the last finished run took");
    let last_time =
        gauge(&mut registry, "airlock_last_run_timestamp_seconds", "When the last finished run ended, in Unix seconds");
    let last_ok = gauge(
        &mut registry,
        "airlock_last_run_succeeded",
        "Whether the last finished run ended without a failed migration",
    );

    let backfill = |registry: &mut Registry, name: &str, help: &str| {
        let family = BackfillGauges::default();
        registry.register(name, help, family.clone());
        family
    };
    let backfill_done = backfill(
        &mut registry,
        "airlock_backfill_rows_done",
        "Rows a pending backfill's statement has passed over (of its table)",
    );
    let backfill_total = backfill(
        &mut registry,
        "airlock_backfill_rows_total",
        "Rows of the table a pending backfill's statement works through",
    );
    let backfill_paused = backfill(
        &mut registry,
        "airlock_backfill_paused",
        "1 while a pending backfill is paused or cancelled (`airlock backfill pause|cancel`)",
    );

    for (name, assessment) in observed {
        let env = Env { environment: (*name).to_owned() };
        let Some(assessment) = assessment else {
            up.get_or_create(&env).set(0.0);
            continue;
        };
        let status = &assessment.status;
        up.get_or_create(&env).set(1.0);
        if let Some(current) = &status.current_version {
            if let Ok(number) = current.parse::<u64>() {
                // Exact up to 2^53: timestamps like 20240131120000 fit.
                version.get_or_create(&env).set(number as f64);
            }
            version_info
                .get_or_create(&EnvVersion { environment: env.environment.clone(), version: current.clone() })
                .set(1.0);
        }
        let has = |code: &str| status.problems.iter().any(|p| p.code == code);
        let cut_off = status.problems.iter().filter(|p| p.code == "failed" || p.code == "interrupted").count();
        // A run cut off part-way is not in progress: it counts as failed, below.
        in_progress.get_or_create(&env).set(f64::from(u8::from(status.lock.is_some() || has("in-progress"))));
        pending.get_or_create(&env).set(status.pending.len() as f64);
        failed.get_or_create(&env).set(cut_off as f64);
        problems.get_or_create(&env).set(status.problems.len() as f64);
        for b in &status.backfills {
            let labels = EnvBackfill { environment: env.environment.clone(), version: b.version.clone() };
            backfill_done.get_or_create(&labels).set(b.rows_done as f64);
            backfill_total.get_or_create(&labels).set(b.rows_total as f64);
            backfill_paused.get_or_create(&labels).set(f64::from(u8::from(matches!(b.state, "paused" | "cancelled"))));
        }
        if let Some(run) = &status.last_run {
            last_duration.get_or_create(&env).set(run.duration_ms as f64 / 1000.0);
            if let Ok(finished) = DateTime::parse_from_rfc3339(&run.finished_at) {
                last_time.get_or_create(&env).set(finished.timestamp_millis() as f64 / 1000.0);
            }
            // A `down` that ran to the end left `rolled_back`: that run succeeded too.
            last_ok.get_or_create(&env).set(f64::from(u8::from(run.outcome != "failed")));
        }
    }
    let mut text = String::new();
    encode_text(&mut text, &registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_exec::{LastRun, PendingEntry, ProblemEntry, StatusReport};

    fn assessment() -> Assessment {
        Assessment {
            status: StatusReport {
                state: "failed",
                current_version: Some("20240131120000".into()),
                applied: Vec::new(),
                pending: vec![PendingEntry {
                    version: "20240201000000".into(),
                    name: "x".into(),
                    kind: "schema",
                    contract: false,
                }],
                problems: vec![ProblemEntry {
                    code: "failed",
                    version: Some("20240131120000".into()),
                    message: "failed".into(),
                    detail: None,
                    blocking: true,
                }],
                lock: None,
                project: None,
                database: "sqlite:x".into(),
                warnings: Vec::new(),
                last_run: Some(LastRun {
                    started_at: "2026-11-21T10:00:00+00:00".into(),
                    finished_at: "2026-11-21T10:00:01.500+00:00".into(),
                    duration_ms: 1500,
                    migrations: 2,
                    outcome: "failed",
                    os_user: "deploy".into(),
                    host: "ci".into(),
                }),
                backfills: Vec::new(),
                expanded: None,
            },
            latest: None,
            audit: Vec::new(),
            discovered: Default::default(),
            backups: Vec::new(),
            drift: None,
        }
    }

    #[test]
    fn every_environment_gets_its_gauges() {
        let a = assessment();
        let text = encode(&[("prod", Some(&a)), ("staging", None)]).unwrap();
        for line in [
            "airlock_up{environment=\"prod\"} 1.0",
            "airlock_up{environment=\"staging\"} 0.0",
            "airlock_schema_version{environment=\"prod\"} 20240131120000.0",
            "airlock_schema_version_info{environment=\"prod\",version=\"20240131120000\"} 1.0",
            "airlock_pending_migrations{environment=\"prod\"} 1.0",
            "airlock_failed_migrations{environment=\"prod\"} 1.0",
            "airlock_migration_in_progress{environment=\"prod\"} 0.0",
            "airlock_last_run_duration_seconds{environment=\"prod\"} 1.5",
            "airlock_last_run_timestamp_seconds{environment=\"prod\"} 1795255201.5",
            "airlock_last_run_succeeded{environment=\"prod\"} 0.0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
        }
        assert!(!text.contains("airlock_pending_migrations{environment=\"staging\"}"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
