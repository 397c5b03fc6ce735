//! The replicas of `replicas` in airlock.toml, for `plan` and `migrate`:
//! how far behind each replays now, which pending statements take a lock
//! that replay there would wait on or cancel queries for (a hot standby
//! replays PostgreSQL's ACCESS EXCLUSIVE locks), and `migrate`'s wait for
//! them to catch up after each migration (`wait_for_replicas`).

use std::time::{Duration, Instant};

use airlock_driver::DatabaseUrl;
use serde::Serialize;

use crate::Options;
use crate::human::human_duration;
use crate::plan::MigrationPlan;
use crate::report::Reporter;

/// How long a replica may take to answer.
const ANSWER: Duration = Duration::from_secs(5);

/// One replica, as `plan` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaPlan {
    /// The replica (password hidden).
    pub database: String,
    /// How far behind its primary it replays now; None when it cannot say.
    pub lag_seconds: Option<f64>,
    /// Why it could not be asked.
    pub error: Option<String>,
    /// What the pending migrations would do to it.
    pub warnings: Vec<String>,
}

/// The pending statements whose lock blocks reads (what a hot standby
/// replays and must wait for its own readers to take): `migration 3
/// statement 1 (ACCESS EXCLUSIVE on `orders`)`.
fn replayed_locks(migrations: &[MigrationPlan]) -> Vec<String> {
    migrations
        .iter()
        .flat_map(|m| {
            m.statements.iter().filter_map(move |s| {
                let locks: Vec<String> =
                    s.locks.iter().filter(|l| l.blocks_reads).map(|l| format!("{} on `{}`", l.mode, l.table)).collect();
                (!locks.is_empty())
                    .then(|| format!("migration {} statement {} ({})", m.version, s.index, locks.join(", ")))
            })
        })
        .collect()
}

/// Whether replicas may fall behind replaying `migration`: it takes a lock
/// that blocks reads or rewrites a table.
pub(crate) fn heavy(migration: &MigrationPlan) -> bool {
    migration.statements.iter().any(|s| s.rewrites_table || s.locks.iter().any(|l| l.blocks_reads))
}

/// Asks every replica, read-only and at once.
pub(crate) async fn look(options: &Options, migrations: &[MigrationPlan]) -> Vec<ReplicaPlan> {
    let replayed = replayed_locks(migrations);
    let max_lag = options.backfill.max_replica_lag;
    let ask = |url: &DatabaseUrl| {
        let (url, replayed) = (url.clone(), &replayed);
        async move {
            let mut plan =
                ReplicaPlan { database: url.to_string(), lag_seconds: None, error: None, warnings: Vec::new() };
            let asked = tokio::time::timeout(ANSWER, async {
                let mut driver = crate::connect_read_only(&url).await?;
                let lag = driver.replica_lag().await?;
                let standby = driver.standby().await?;
                Ok::<_, airlock_driver::DriverError>((lag, standby))
            })
            .await;
            let (lag, standby) = match asked {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    plan.error = Some(e.message);
                    return plan;
                }
                Err(_) => {
                    plan.error = Some(format!("no answer within {} s", ANSWER.as_secs()));
                    return plan;
                }
            };
            plan.lag_seconds = lag.map(|l| l.as_secs_f64());
            match lag {
                Some(lag) if lag > max_lag => plan.warnings.push(format!(
                    "it replays {} behind now (max_replica_lag {}): backfills would wait for it",
                    human_duration(lag),
                    human_duration(max_lag)
                )),
                None => plan.warnings.push("it cannot say how far behind it is (is replication stopped?)".to_owned()),
                Some(_) => {}
            }
            if let (Some(standby), false) = (standby, replayed.is_empty()) {
                let what = replayed.join(", ");
                let readers = standby
                    .longest_query
                    .map(|q| format!("; its longest query has run {} so far", human_duration(q)))
                    .unwrap_or_default();
                plan.warnings.push(match standby.max_delay {
                    None => format!(
                        "replaying {what} waits for every query reading those tables there, however long they run (max_standby_streaming_delay = -1): it falls behind meanwhile{readers}"
                    ),
                    Some(delay) => format!(
                        "replaying {what} waits up to {} (max_standby_streaming_delay) for the queries reading those tables there, then cancels them{readers}",
                        human_duration(delay)
                    ),
                });
            }
            plan
        }
    };
    futures_util::future::join_all(options.backfill.replicas.iter().map(ask)).await
}

/// After a migration: waits until every replica replays at most
/// `max_replica_lag` behind, for up to `wait_for_replicas`; past that,
/// says so and goes on (lag slows the readers of replicas, it breaks
/// nothing the next migration relies on). A signal ends the wait.
pub(crate) async fn catch_up(options: &Options, version: &str, reporter: &mut dyn Reporter) {
    let Some(limit) = options.backfill.wait_for_replicas else { return };
    if options.backfill.replicas.is_empty() {
        return;
    }
    let started = Instant::now();
    let mut said = false;
    loop {
        let mut behind = None;
        for url in &options.backfill.replicas {
            let asked = tokio::time::timeout(ANSWER, async {
                let mut driver = crate::connect_read_only(url).await?;
                driver.replica_lag().await
            })
            .await;
            let why = match asked {
                Ok(Ok(Some(lag))) if lag <= options.backfill.max_replica_lag => continue,
                Ok(Ok(Some(lag))) => format!("replica {url} replays {} behind", human_duration(lag)),
                Ok(Ok(None)) => format!("replica {url} cannot say how far behind it is"),
                Ok(Err(e)) => format!("replica {url} cannot be asked ({})", e.message),
                Err(_) => format!("replica {url} did not answer within {} s", ANSWER.as_secs()),
            };
            behind = Some(why);
            break;
        }
        let Some(why) = behind else {
            if said {
                reporter.warning(&format!(
                    "after migration {version}, the replicas caught up in {}",
                    human_duration(started.elapsed())
                ));
            }
            return;
        };
        if started.elapsed() >= limit {
            reporter.warning(&format!(
                "after migration {version}, {why} after waiting {} (wait_for_replicas): going on",
                human_duration(started.elapsed())
            ));
            return;
        }
        if !said {
            reporter.warning(&format!("after migration {version}, waiting for the replicas: {why}"));
            said = true;
        }
        options.interrupt.sleep(Duration::from_millis(500)).await;
        if options.interrupt.raised().is_some() {
            return;
        }
    }
}
