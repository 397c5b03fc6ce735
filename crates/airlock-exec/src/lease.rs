//! One runner at a time: the lease row, taken over only from a holder that is gone.
//!
//! The lease is a row in `airlock_lock`, claimed with a compare-and-set on its
//! owner, not a session lock, so that it works behind a transaction-pooling
//! PgBouncer and can say who holds it. A holder is gone when:
//! - it ran on this host (same host name and boot id) and its process no longer
//!   exists — a killed process is noticed at once; or
//! - on client/server engines, its heartbeat (renewed from a second connection
//!   every quarter of the time to live, also during long statements) is older
//!   than the time to live, measured with the server's clock.
//! A run that finds its own lease taken stops before its next statement.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_core::{Event, Lease};
use airlock_driver::Driver;
use rand::Rng;

use crate::actor::{host_name, process_alive};
use crate::error::ExecError;
use crate::report::Reporter;
use crate::Context;

/// Why a lease may be taken over, or None while its holder may be alive.
pub(crate) fn stale_reason(lease: &Lease, my_host: &str, heartbeat: bool, ttl: Duration) -> Option<String> {
    if lease.host == my_host && !process_alive(lease.pid) {
        return Some(format!("its process (pid {} on {}) is gone", lease.pid, host_name(&lease.host)));
    }
    if heartbeat && lease.heartbeat_age_secs > ttl.as_secs_f64() {
        return Some(format!("it sent no heartbeat for {:.0} s", lease.heartbeat_age_secs));
    }
    None
}

/// The lease if a live process holds it.
pub(crate) fn live(lease: Option<Lease>, heartbeat: bool, ctx: &Context) -> Option<Lease> {
    lease.filter(|l| stale_reason(l, &ctx.claim.host, heartbeat, ctx.options.lease_ttl).is_none())
}

/// Why a migration's transaction could not be opened.
pub(crate) enum BeginError {
    /// The lease is no longer this run's.
    LeaseLost,
    /// The database refused (on SQLite, possibly a busy write lock).
    Driver(airlock_driver::DriverError),
}

/// A lease this process holds; release it with [`HeldLease::release`].
pub(crate) struct HeldLease {
    owner: String,
    heartbeat: Option<Heartbeat>,
}

struct Heartbeat {
    stop: Arc<tokio::sync::Notify>,
    lost: Arc<AtomicBool>,
    version: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HeldLease {
    /// Whether the heartbeat found the lease taken by someone else.
    pub(crate) fn lost(&self) -> bool {
        self.heartbeat.as_ref().is_some_and(|h| h.lost.load(Ordering::SeqCst))
    }

    /// Records the version being applied (for `status` and the heartbeat) and
    /// checks the lease is still ours.
    pub(crate) async fn working_on(&self, driver: &mut dyn Driver, version: Option<&str>) -> Result<(), ExecError> {
        self.note_version(version);
        let ours = driver.renew_lease(&self.owner, version).await.map_err(ExecError::db("renewing the run lock"))?;
        if !ours || self.lost() {
            return Err(ExecError::LeaseLost);
        }
        Ok(())
    }

    /// Like [`HeldLease::working_on`], and opens a transaction in the same breath.
    pub(crate) async fn begin_working_on(&self, driver: &mut dyn Driver, version: &str) -> Result<(), BeginError> {
        self.note_version(Some(version));
        let ours = driver.renew_and_begin(&self.owner, Some(version)).await.map_err(BeginError::Driver)?;
        if !ours || self.lost() {
            let _ = driver.rollback().await;
            return Err(BeginError::LeaseLost);
        }
        Ok(())
    }

    fn note_version(&self, version: Option<&str>) {
        if let Some(h) = &self.heartbeat {
            if let Ok(mut v) = h.version.lock() {
                *v = version.map(str::to_owned);
            }
        }
    }

    /// Stops the heartbeat and frees the lease. Best effort: a lease that cannot
    /// be freed is taken over once this process has exited.
    pub(crate) async fn release(self, driver: &mut dyn Driver) {
        if let Some(h) = self.heartbeat {
            h.stop.notify_one();
            let _ = h.task.await;
        }
        let _ = driver.release_lease(&self.owner).await;
    }
}

/// Takes the lease, waiting up to `--lock-wait` for a live holder.
pub(crate) async fn acquire(
    driver: &mut dyn Driver,
    ctx: &Context,
    reporter: &mut dyn Reporter,
) -> Result<HeldLease, ExecError> {
    let options = &ctx.options;
    let heartbeat = driver.capabilities().lease_heartbeat;
    let started = Instant::now();
    let mut announced: Option<String> = None;
    let mut delay = Duration::from_millis(25);
    loop {
        let current = driver.read_lease().await.map_err(ExecError::db("reading the run lock"))?;
        match current {
            None => {
                if driver.claim_lease(&ctx.claim, None).await.map_err(ExecError::db("taking the run lock"))? {
                    break;
                }
                continue;
            }
            Some(lease) => {
                if let Some(why) = stale_reason(&lease, &ctx.claim.host, heartbeat, options.lease_ttl) {
                    let won = driver
                        .claim_lease(&ctx.claim, Some(&lease.owner))
                        .await
                        .map_err(ExecError::db("taking over the run lock"))?;
                    if won {
                        reporter.lock_taken_over(&lease, &why);
                        let detail = format!(
                            "{{\"previous_holder\":{},\"why\":{}}}",
                            json_string(&lease.describe()),
                            json_string(&why)
                        );
                        let event = Event { kind: "lock_taken_over".into(), version: None, detail };
                        driver.append_event(&event, &ctx.actor).await.map_err(ExecError::db("recording the lock takeover"))?;
                        break;
                    }
                    continue;
                }
                if announced.as_deref() != Some(lease.owner.as_str()) {
                    reporter.waiting_for_lock(&lease, options.lock_wait);
                    announced = Some(lease.owner.clone());
                }
                if started.elapsed() >= options.lock_wait {
                    return Err(ExecError::LockBusy {
                        holder: lease,
                        waited_secs: started.elapsed().as_secs(),
                        ttl_secs: options.lease_ttl.as_secs(),
                    });
                }
            }
        }
        let jitter = rand::rng().random_range(0.5..1.0);
        tokio::time::sleep(delay.mul_f64(jitter)).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
    let heartbeat = if heartbeat { Some(start_heartbeat(ctx).await?) } else { None };
    Ok(HeldLease { owner: ctx.claim.owner.clone(), heartbeat })
}

async fn start_heartbeat(ctx: &Context) -> Result<Heartbeat, ExecError> {
    let mut driver = crate::connect(&ctx.options.url, false).await.map_err(ExecError::Connect)?;
    let stop = Arc::new(tokio::sync::Notify::new());
    let lost = Arc::new(AtomicBool::new(false));
    let version = Arc::new(Mutex::new(None));
    let owner = ctx.claim.owner.clone();
    let ttl = ctx.options.lease_ttl;
    let every = (ttl / 4).max(Duration::from_millis(200));
    let task = {
        let (stop, lost, version) = (stop.clone(), lost.clone(), version.clone());
        tokio::spawn(async move {
            let mut last_ok = Instant::now();
            loop {
                tokio::select! {
                    () = stop.notified() => break,
                    () = tokio::time::sleep(every) => {}
                }
                let current = version.lock().ok().and_then(|v| v.clone());
                match driver.renew_lease(&owner, current.as_deref()).await {
                    Ok(true) => last_ok = Instant::now(),
                    Ok(false) => {
                        lost.store(true, Ordering::SeqCst);
                        break;
                    }
                    // A passing network error: keep trying until the lease would have expired.
                    Err(_) if last_ok.elapsed() < ttl => {}
                    Err(_) => {
                        lost.store(true, Ordering::SeqCst);
                        break;
                    }
                }
            }
        })
    };
    Ok(Heartbeat { stop, lost, version, task })
}

/// A JSON string literal.
pub(crate) fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn lease(host: &str, pid: u32, age: f64) -> Lease {
        Lease {
            owner: "o".into(),
            host: host.into(),
            pid,
            os_user: "u".into(),
            version: None,
            acquired_at: Utc::now(),
            heartbeat_age_secs: age,
        }
    }

    #[test]
    fn a_live_local_holder_is_never_stale() {
        let me = std::process::id();
        assert_eq!(stale_reason(&lease("h#1", me, 1.0), "h#1", true, Duration::from_secs(60)), None);
        assert_eq!(stale_reason(&lease("h#1", me, 1.0e9), "h#1", false, Duration::from_secs(60)), None);
    }

    #[test]
    fn a_dead_local_holder_or_a_silent_remote_one_is_stale() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let why = stale_reason(&lease("h#1", dead, 0.0), "h#1", false, Duration::from_secs(60)).unwrap();
        assert!(why.contains("is gone"), "{why}");
        // On another host a dead-looking pid means nothing; only the heartbeat counts.
        assert_eq!(stale_reason(&lease("other#2", dead, 5.0), "h#1", true, Duration::from_secs(60)), None);
        let why = stale_reason(&lease("other#2", dead, 61.0), "h#1", true, Duration::from_secs(60)).unwrap();
        assert!(why.contains("no heartbeat for 61 s"), "{why}");
    }
}
