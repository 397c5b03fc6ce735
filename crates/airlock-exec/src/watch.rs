//! A long-lived, read-only view of one database: what `serve` and an app's
//! startup gate ask again and again. It keeps its connection between questions,
//! drops it on any error and connects again at the next question, so a database
//! that went away and came back is simply answered again.

use std::time::Duration;

use airlock_core::Version;
use airlock_driver::Driver;

use crate::admin::judge_status;
use crate::error::ExecError;
use crate::gate::{judge, GateReport, Requirement};
use crate::report::StatusReport;
use crate::{snapshot, Context, Options};

/// One database's status at one moment, with what the gate needs to judge it.
#[derive(Debug, Clone)]
pub struct Assessment {
    /// What `airlock status` would say.
    pub status: StatusReport,
    /// The newest migration version this program knows (what `latest` means).
    pub latest: Option<Version>,
}

impl Assessment {
    /// The gate's answer for `requirement`. Pure.
    pub fn gate(&self, requirement: &Requirement) -> GateReport {
        judge(&self.status, requirement, self.latest.as_ref())
    }
}

/// Reads one database's status over a kept, read-only connection.
pub struct Watcher {
    ctx: Context,
    driver: Option<Box<dyn Driver>>,
    timeout: Duration,
}

impl Watcher {
    /// A watcher that connects at its first question. Each question gives up
    /// after 10 seconds (see [`Watcher::with_timeout`]).
    pub fn new(options: &Options) -> Watcher {
        Watcher { ctx: Context::new(options), driver: None, timeout: Duration::from_secs(10) }
    }

    /// Sets how long one question (connecting included) may take before it
    /// fails with [`ExecError::Connect`]. Defaults to 10 seconds.
    pub fn with_timeout(mut self, timeout: Duration) -> Watcher {
        self.timeout = timeout;
        self
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
    pub async fn assess(&mut self) -> Result<Assessment, ExecError> {
        let timeout = self.timeout;
        let answer = match tokio::time::timeout(timeout, self.assess_once()).await {
            Ok(answer) => answer,
            Err(_) => Err(ExecError::Connect(airlock_driver::DriverError::new(
                airlock_driver::ErrorKind::Connection,
                format!("{} did not answer within {} s", self.ctx.options.url, timeout.as_secs_f64()),
            ))),
        };
        if matches!(answer, Err(ExecError::Connect(_) | ExecError::Database { .. })) {
            // Whatever broke, the next question starts from a fresh connection.
            self.driver = None;
        }
        answer
    }

    async fn assess_once(&mut self) -> Result<Assessment, ExecError> {
        let Watcher { ctx, driver: kept, .. } = self;
        let options = &ctx.options;
        let discovered = options.source.discover_in_background();
        let read = async {
            let driver = match kept {
                Some(driver) => driver,
                None => {
                    let mut driver = crate::connect(&options.url, false).await.map_err(ExecError::Connect)?;
                    driver.make_read_only().await.map_err(ExecError::Connect)?;
                    kept.insert(driver)
                }
            };
            snapshot(driver.as_mut(), ctx).await
        };
        let (discovered, snap) = tokio::join!(discovered, read);
        let (status, latest) = judge_status(options, &discovered?, snap?);
        Ok(Assessment { status, latest })
    }
}
