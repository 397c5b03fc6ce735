//! A long-lived, read-only view of one database: what `serve` and an app's
//! startup gate ask again and again. It keeps its connection between questions,
//! drops it on any error and connects again at the next question, so a database
//! that went away and came back is simply answered again.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use airlock_core::Version;
use airlock_driver::{Driver, DriverError, ErrorKind};

use crate::audit::HistoryEntry;
use crate::error::ExecError;
use crate::gate::{GateReport, Requirement, judge};
use crate::report::StatusReport;
use crate::status::judge_status;
use crate::{Context, Options, snapshot};

/// One database's status at one moment, with what the gate needs to judge it.
#[derive(Debug, Clone)]
pub struct Assessment {
    /// What `airlock status` would say.
    pub status: StatusReport,
    /// The newest migration version this program knows (what `latest` means).
    pub latest: Option<Version>,
    /// The newest entries of the audit trail, newest first (as many as
    /// [`Watcher::with_audit`] asked for; none by default).
    pub audit: Vec<HistoryEntry>,
    /// The program's migrations, in order: their files, for a page that shows one
    /// (shared between reads while the files stay the same).
    pub discovered: Arc<airlock_core::Discovered>,
    /// The newest backups history records (read with the audit entries; none by default).
    pub backups: Vec<crate::backup::ListedBackup>,
    /// The newest drift comparison recorded (read with the audit entries; none by default).
    pub drift: Option<crate::drift::DriftSeen>,
}

impl Assessment {
    /// The gate's answer for `requirement`. Pure.
    pub fn gate(&self, requirement: &Requirement) -> GateReport {
        judge(&self.status, requirement, self.latest.as_ref())
    }
}

/// What an assessment with audit entries reads beside the status.
#[derive(Default)]
struct Recorded {
    audit: Vec<HistoryEntry>,
    backups: Vec<crate::backup::ListedBackup>,
    drift: Option<crate::drift::DriftSeen>,
}

/// Backups an assessment with audit entries reads.
const BACKUPS_SHOWN: usize = 10;

/// Reads one database's status over a kept, read-only connection.
pub struct Watcher {
    ctx: Context,
    driver: Option<Box<dyn Driver>>,
    timeout: Duration,
    audit: usize,
    files: Option<Files>,
}

/// A directory's migrations as last read, and what each file was then:
/// while every one is the same, they are not read again.
#[derive(Clone)]
struct Files {
    /// None when the directory could not be looked at: never the same as anything.
    seen: Option<Vec<Seen>>,
    found: Arc<airlock_core::Discovered>,
}

/// One file as looked at: its path, inode, size, and modification and change
/// times. A write changes the change time, which no copy tool can set back.
type Seen = (OsString, u64, u64, Option<SystemTime>, i64, i64);

/// A file changed this recently may change again within the same clock
/// tick without its times moving: the files are read again until it is older.
const SETTLED: Duration = Duration::from_secs(2);

/// The files discovery reads under `dir` (its entries, and the files of
/// its folders one level down), each as [`Seen`], in path order. None when
/// one cannot be looked at, or one changed within [`SETTLED`].
fn seen(dir: &std::path::Path) -> Option<Vec<Seen>> {
    use std::os::unix::fs::MetadataExt;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
    let mut found = Vec::new();
    let look = |dir: &std::path::Path, depth: usize, found: &mut Vec<Seen>| -> Option<Vec<std::path::PathBuf>> {
        let mut folders = Vec::new();
        for entry in std::fs::read_dir(dir).ok()? {
            let entry = entry.ok()?;
            let path = entry.path();
            if entry.file_type().ok()?.is_dir() {
                if depth == 0 {
                    folders.push(path);
                }
                continue;
            }
            let meta = match std::fs::metadata(&path) {
                Ok(meta) => meta,
                // A dangling link (an editor's lock file) or a file gone since the listing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(_) => return None,
            };
            if now - meta.ctime() < SETTLED.as_secs() as i64 || now - meta.mtime() < SETTLED.as_secs() as i64 {
                return None;
            }
            found.push((
                path.into_os_string(),
                meta.ino(),
                meta.len(),
                meta.modified().ok(),
                meta.ctime(),
                meta.ctime_nsec(),
            ));
        }
        Some(folders)
    };
    for folder in look(dir, 0, &mut found)? {
        look(&folder, 1, &mut found)?;
    }
    found.sort_unstable();
    Some(found)
}

/// The migrations of `options`, read again only when a file changed (see
/// [`Seen`]); a program's embedded ones once.
async fn discover_kept(options: &Options, kept: Option<Files>) -> Result<Files, ExecError> {
    let (source, layout) = (options.source.clone(), options.discover_options());
    let read = tokio::task::spawn_blocking(move || {
        let now = match &source {
            crate::Source::Dir(dir) => seen(dir),
            crate::Source::Embedded(_) => Some(Vec::new()),
        };
        if let (Some(now), Some(Some(before))) = (&now, kept.as_ref().map(|k| &k.seen))
            && now == before
            && let Some(kept) = kept
        {
            return Ok(kept);
        }
        let found = Arc::new(source.discover(&layout)?);
        Ok(Files { seen: now, found })
    });
    match read.await {
        Ok(found) => found,
        Err(e) => Err(ExecError::Usage(format!("reading the migrations directory failed: {e}"))),
    }
}

/// The kept connection (a new read-only one when none is kept), in a
/// read-only transaction the caller rolls back.
async fn begin_read<'a>(
    kept: &'a mut Option<Box<dyn Driver>>,
    options: &Options,
) -> Result<&'a mut Box<dyn Driver>, ExecError> {
    let driver = match kept.take() {
        Some(driver) => kept.insert(driver),
        None => kept.insert(crate::connect_read_only(&options.url).await.map_err(ExecError::Connect)?),
    };
    driver.begin_read_only().await.map_err(ExecError::Connect)?;
    Ok(driver)
}

/// After a read: a server connection is kept unless the read `failed`; a
/// SQLite file is opened afresh for every read, so a file replaced by a
/// restore is seen (a connection kept open would also hold WAL's shared
/// lock between reads).
fn after_read(kept: &mut Option<Box<dyn Driver>>, options: &Options, failed: bool) {
    if failed || options.profile().capabilities.local_file {
        *kept = None;
    }
}

impl Watcher {
    /// A watcher that connects at its first question. Each question gives up
    /// after 10 seconds (see [`Watcher::with_timeout`]).
    pub fn new(options: &Options) -> Watcher {
        Watcher { ctx: Context::new(options), driver: None, timeout: Duration::from_secs(10), audit: 0, files: None }
    }

    /// Sets how long one question (connecting included) may take before it
    /// fails with [`ExecError::Connect`]. Defaults to 10 seconds.
    pub fn with_timeout(mut self, timeout: Duration) -> Watcher {
        self.timeout = timeout;
        self
    }

    /// Reads the newest `entries` of the audit trail with every assessment
    /// ([`Assessment::audit`]). None by default.
    pub fn with_audit(mut self, entries: usize) -> Watcher {
        self.audit = entries;
        self
    }

    /// Everything recorded of one migration, newest first (at most `limit`
    /// entries): runs, failures, rollbacks, resolves. Empty where airlock's
    /// tables do not exist. Changes nothing.
    pub async fn migration_events(&mut self, version: &Version, limit: usize) -> Result<Vec<HistoryEntry>, ExecError> {
        let timeout = self.timeout;
        let read = async {
            let Watcher { ctx, driver: kept, .. } = self;
            if crate::database_file_missing(&ctx.options) {
                return Ok(Vec::new());
            }
            let driver = begin_read(kept, &ctx.options).await?;
            let snap = snapshot(driver.as_mut(), ctx).await;
            let events = match &snap {
                Ok(s) if !s.history.is_empty() => crate::audit::of_migration(driver.as_mut(), version, limit).await,
                _ => Ok(Vec::new()),
            };
            let _ = driver.rollback().await;
            after_read(kept, &ctx.options, snap.is_err() || events.is_err());
            snap?;
            events.map_err(ExecError::db("reading airlock_events"))
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(answer) => answer,
            Err(_) => {
                self.driver = None;
                Err(self.late())
            }
        }
    }

    fn late(&self) -> ExecError {
        ExecError::Connect(DriverError::new(
            ErrorKind::Connection,
            format!("{} did not answer within {} s", self.ctx.options.url, self.timeout.as_secs_f64()),
        ))
    }

    /// The options this watcher reads with.
    pub fn options(&self) -> &Options {
        &self.ctx.options
    }

    /// Whether a connection is open now.
    pub fn is_connected(&self) -> bool {
        self.driver.is_some()
    }

    /// Reads the migrations and the database's state now. Changes nothing.
    /// When a kept connection fails (it may have died while idle), the read is
    /// tried once more on a fresh one before the error is returned.
    pub async fn assess(&mut self) -> Result<Assessment, ExecError> {
        let reused = self.driver.is_some();
        let answer = self.assess_within_timeout().await;
        if answer.is_err() && reused && self.driver.is_none() {
            return self.assess_within_timeout().await;
        }
        answer
    }

    async fn assess_within_timeout(&mut self) -> Result<Assessment, ExecError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.assess_once()).await {
            Ok(answer) => answer,
            Err(_) => {
                // Cut off mid-read: the connection's state is unknown.
                self.driver = None;
                Err(self.late())
            }
        }
    }

    async fn assess_once(&mut self) -> Result<Assessment, ExecError> {
        let Watcher { ctx, driver: kept, audit, files, .. } = self;
        let audit = *audit;
        let options = &ctx.options;
        let discovered = discover_kept(options, files.clone());
        let read = async {
            let driver = begin_read(kept, options).await?;
            let snap = snapshot(driver.as_mut(), ctx).await;
            // The newest run, from its event (only where airlock's tables exist:
            // on PostgreSQL a failed read would end the transaction).
            let (last, recorded) = match &snap {
                Ok(s) if !s.history.is_empty() => {
                    let last = crate::audit::last_run(driver.as_mut()).await;
                    let recorded = match audit {
                        0 => Recorded::default(),
                        n => Recorded {
                            audit: crate::audit::recent(driver.as_mut(), n).await.unwrap_or_default(),
                            backups: crate::backup::recent(driver.as_mut(), options, BACKUPS_SHOWN)
                                .await
                                .unwrap_or_default(),
                            drift: crate::audit::last_drift(driver.as_mut()).await,
                        },
                    };
                    (last, recorded)
                }
                _ => (None, Recorded::default()),
            };
            let _ = driver.rollback().await;
            snap.map(|s| (s, last, recorded))
        };
        let (discovered, snap) = tokio::join!(discovered, read);
        let discovered = discovered?;
        *files = Some(discovered.clone());
        let discovered = discovered.found;
        // Pending backfills: how far each has come, read from the same connection.
        let running = snap.as_ref().ok().and_then(|(s, _, _)| s.lease.as_ref()).and_then(|l| l.version.clone());
        let pending_backfills: Vec<&airlock_core::Migration> = match &snap {
            Ok((s, _, _)) => {
                let applied: std::collections::HashSet<String> =
                    s.history.iter().filter(|r| r.state.is_applied()).map(|r| r.version.to_string()).collect();
                discovered
                    .migrations
                    .iter()
                    .filter(|m| m.directives.backfill && !applied.contains(&m.version.to_string()))
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        let backfills = match kept.as_mut() {
            Some(driver) if !pending_backfills.is_empty() => {
                let dialect = options.engine_traits().dialect;
                let _ = driver.begin_read_only().await;
                let read =
                    crate::backfill::entries(driver.as_mut(), &pending_backfills, running.as_deref(), dialect).await;
                let _ = driver.rollback().await;
                read.unwrap_or_default()
            }
            _ => Vec::new(),
        };
        after_read(kept, options, snap.is_err());
        let (snap, last, Recorded { audit, backups, drift }) = snap?;
        let (mut status, latest) = judge_status(options, &discovered, snap);
        if last.is_some() && status.lock.is_none() {
            status.last_run = last;
        }
        status.backfills = backfills;
        Ok(Assessment { status, latest, audit, discovered, backups, drift })
    }
}
