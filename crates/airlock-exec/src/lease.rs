//! One runner at a time: the lease row, taken over only from a holder that is gone.
//!
//! The lease is a row in `airlock_lock`, claimed with a compare-and-set, not a
//! session lock, so that it works behind a transaction-pooling PgBouncer and can
//! say who holds it. A holder is gone when:
//! - it ran on this machine and in this pid namespace (same host name, kernel
//!   boot id and pid namespace) and its process no longer exists;
//! - it ran on a machine of the same host name that has rebooted since (the
//!   boot id changed): a reboot ends every process;
//! - on client/server engines, its heartbeat (renewed from a second connection
//!   every quarter of the time to live, also during long statements) is older
//!   than the time to live, measured with the server's clock.
//!
//! A takeover succeeds only if the row is still exactly as it was seen stale
//! (same owner, same `beat`), so a holder whose heartbeat comes back in time
//! keeps its lease. A transactional migration confirms the lease inside its own
//! transaction just before committing, and a run whose heartbeat has failed for
//! half the time to live stops before its next statement: a run that lost its
//! lease never records a migration as applied.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_core::{Event, Lease};
use airlock_driver::{Driver, DriverError};
use rand::Rng;
use serde_json::json;

use crate::Context;
use crate::actor::{HostIdentity, process_alive};
use crate::error::ExecError;
use crate::report::Reporter;

/// Why a lease may be taken over, or None while its holder may be alive.
pub(crate) fn stale_reason(lease: &Lease, my_host: &str, heartbeat: bool, ttl: Duration) -> Option<String> {
    let (theirs, mine) = (HostIdentity::parse(&lease.host), HostIdentity::parse(my_host));
    if theirs == mine && !process_alive(lease.pid) {
        return Some(format!("its process (pid {} on {}) is gone", lease.pid, theirs.name));
    }
    if theirs.name == mine.name && theirs.boot.is_some() && mine.boot.is_some() && theirs.boot != mine.boot {
        return Some(format!("{} has restarted since it was taken", theirs.name));
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
    /// The owner id written in the lease row.
    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    /// Whether the heartbeat found the lease taken, or could not renew it for
    /// half its time to live.
    pub(crate) fn lost(&self) -> bool {
        self.heartbeat.as_ref().is_some_and(|h| h.lost.load(Ordering::SeqCst))
    }

    /// Tells the heartbeat which version is being applied.
    pub(crate) fn note_version(&self, version: Option<&str>) {
        if let Some(h) = &self.heartbeat {
            if let Ok(mut v) = h.version.lock() {
                *v = version.map(str::to_owned);
            }
        }
    }

    /// Records the version being applied (for `status` and the heartbeat) and
    /// checks the lease is still ours.
    pub(crate) async fn working_on(&self, driver: &mut dyn Driver, version: Option<&str>) -> Result<(), ExecError> {
        self.note_version(version);
        let ours = retry_conflicts!(driver.renew_lease(&self.owner, version).await)
            .map_err(ExecError::db("renewing the run lock"))?;
        if !ours || self.lost() {
            return Err(ExecError::LeaseLost);
        }
        Ok(())
    }

    /// Stops the heartbeat and frees the lease. Best effort: a lease that cannot
    /// be freed is taken over once this process has exited.
    pub(crate) async fn release(self, driver: &mut dyn Driver) {
        if let Some(h) = self.heartbeat {
            h.stop.notify_one();
            // A heartbeat stuck on a half-open connection must not hold up the exit.
            let abort = h.task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), h.task).await.is_err() {
                abort.abort();
            }
        }
        let _ = retry_conflicts!(driver.release_lease(&self.owner).await);
    }
}

/// Frees the lease whoever holds it: at once when its holder is gone, and
/// with `force` also from a holder that looks alive. Recorded as an event.
/// Returns the lease that was freed.
pub(crate) async fn unlock(
    driver: &mut dyn Driver,
    ctx: &Context,
    force: bool,
    reason: Option<&str>,
) -> Result<Option<Lease>, ExecError> {
    let Some(lease) = driver.read_lease().await.map_err(ExecError::db("reading the run lock"))? else {
        return Ok(None);
    };
    let heartbeat = driver.capabilities().lease_heartbeat;
    let why = stale_reason(&lease, &ctx.claim.host, heartbeat, ctx.options.lease_ttl);
    if why.is_none() && !force {
        return Err(ExecError::Blocked {
            problems: vec![airlock_core::Problem {
                code: airlock_core::ProblemCode::InProgress,
                version: None,
                message: format!(
                    "the lock is held by {}, which may still be running; if you are sure it is gone (another machine, a container that was removed), run `airlock unlock --force --reason ...`",
                    lease.describe()
                ),
                detail: None,
                blocking: true,
            }],
        });
    }
    // Take it (compare-and-set on the row as seen), then free it.
    if !driver.claim_lease(&ctx.claim, Some(&lease)).await.map_err(ExecError::db("taking the run lock"))? {
        return Err(ExecError::Usage(
            "the lock changed hands while unlocking; run `airlock status` and try again".to_owned(),
        ));
    }
    let detail = json!({ "previous_holder": lease.describe(), "forced": why.is_none(), "why": why, "reason": reason })
        .to_string();
    driver
        .append_event(&Event { kind: "unlocked".into(), version: None, detail }, &ctx.actor)
        .await
        .map_err(ExecError::db("recording the unlock"))?;
    driver.release_lease(&ctx.claim.owner).await.map_err(ExecError::db("freeing the run lock"))?;
    Ok(Some(lease))
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
        let current = retry_conflicts!(driver.read_lease().await).map_err(ExecError::db("reading the run lock"))?;
        match &current {
            None => {
                // A conflict is a race another runner won: look again after the pause.
                match driver.claim_lease(&ctx.claim, None).await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) if e.kind == airlock_driver::ErrorKind::Conflict => {}
                    Err(e) => return Err(ExecError::db("taking the run lock")(e)),
                }
            }
            Some(lease) => {
                if let Some(why) = stale_reason(lease, &ctx.claim.host, heartbeat, options.lease_ttl) {
                    let won = match driver.claim_lease(&ctx.claim, Some(lease)).await {
                        Ok(won) => won,
                        Err(e) if e.kind == airlock_driver::ErrorKind::Conflict => false,
                        Err(e) => return Err(ExecError::db("taking over the run lock")(e)),
                    };
                    if won {
                        reporter.lock_taken_over(lease, &why);
                        let detail = json!({ "previous_holder": lease.describe(), "why": why }).to_string();
                        let event = Event { kind: "lock_taken_over".into(), version: None, detail };
                        if let Err(e) = driver.append_event(&event, &ctx.actor).await {
                            let _ = driver.release_lease(&ctx.claim.owner).await;
                            return Err(ExecError::db("recording the lock takeover")(e));
                        }
                        break;
                    }
                } else if announced.as_deref() != Some(lease.owner.as_str()) {
                    reporter.waiting_for_lock(lease, options.lock_wait);
                    announced = Some(lease.owner.clone());
                }
            }
        }
        if started.elapsed() >= options.lock_wait {
            if let Some(holder) = current {
                return Err(ExecError::LockBusy {
                    holder: Box::new(holder),
                    waited_secs: started.elapsed().as_secs(),
                    ttl_secs: heartbeat.then_some(options.lease_ttl.as_secs()),
                });
            }
        }
        let jitter = rand::rng().random_range(0.5..1.0);
        options.interrupt.sleep(delay.mul_f64(jitter)).await;
        if let Some(signal) = options.interrupt.raised() {
            return Err(ExecError::Interrupted {
                signal,
                state: "it stopped waiting for the lock; nothing was changed".into(),
                applied: Vec::new(),
            });
        }
        delay = (delay * 2).min(Duration::from_secs(1));
    }
    let heartbeat = if heartbeat {
        match start_heartbeat(ctx).await {
            Ok(h) => Some(h),
            Err(e) => {
                let _ = driver.release_lease(&ctx.claim.owner).await;
                return Err(e);
            }
        }
    } else {
        None
    };
    Ok(HeldLease { owner: ctx.claim.owner.clone(), heartbeat })
}

async fn start_heartbeat(ctx: &Context) -> Result<Heartbeat, ExecError> {
    let url = ctx.options.url.clone();
    let mut driver = Some(crate::connect(&url, false).await.map_err(ExecError::Connect)?);
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
                if driver.is_none() {
                    // The connection broke: open a new one, within the time left.
                    driver = tokio::time::timeout(every, crate::connect(&url, false)).await.ok().and_then(Result::ok);
                }
                let current = version.lock().ok().and_then(|v| v.clone());
                let renewed = match driver.as_mut() {
                    Some(d) => tokio::time::timeout(every, d.renew_lease(&owner, current.as_deref())).await,
                    None => Ok(Err(DriverError::new(airlock_driver::ErrorKind::Connection, "no connection"))),
                };
                match renewed {
                    Ok(Ok(true)) => last_ok = Instant::now(),
                    Ok(Ok(false)) => {
                        lost.store(true, Ordering::SeqCst);
                        break;
                    }
                    failed => {
                        if !matches!(failed, Ok(Err(ref e)) if e.kind != airlock_driver::ErrorKind::Connection) {
                            driver = None;
                        }
                        // Give up well before others may take the lease over.
                        if last_ok.elapsed() >= ttl / 2 {
                            lost.store(true, Ordering::SeqCst);
                            break;
                        }
                    }
                }
            }
        })
    };
    Ok(Heartbeat { stop, lost, version, task })
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
            beat: 1,
        }
    }

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn a_live_local_holder_is_never_stale() {
        let me = std::process::id();
        assert_eq!(stale_reason(&lease("h#b1#n1", me, 1.0), "h#b1#n1", true, TTL), None);
        assert_eq!(stale_reason(&lease("h#b1#n1", me, 1.0e9), "h#b1#n1", false, TTL), None);
    }

    #[test]
    fn a_dead_local_holder_or_a_silent_remote_one_is_stale() {
        let dead = dead_pid();
        let why = stale_reason(&lease("h#b1#n1", dead, 0.0), "h#b1#n1", false, TTL).unwrap();
        assert!(why.contains("is gone"), "{why}");
        // On another host, or in another pid namespace, a dead-looking pid means nothing.
        assert_eq!(stale_reason(&lease("other#b2#n2", dead, 5.0), "h#b1#n1", true, TTL), None);
        assert_eq!(stale_reason(&lease("h#b1#n2", dead, 5.0), "h#b1#n1", false, TTL), None);
        let why = stale_reason(&lease("other#b2#n2", dead, 61.0), "h#b1#n1", true, TTL).unwrap();
        assert!(why.contains("no heartbeat for 61 s"), "{why}");
    }

    #[test]
    fn a_holder_on_this_host_before_a_reboot_is_stale() {
        let why = stale_reason(&lease("h#old#n1", std::process::id(), 0.0), "h#new#n1", false, TTL).unwrap();
        assert!(why.contains("has restarted"), "{why}");
    }
}
