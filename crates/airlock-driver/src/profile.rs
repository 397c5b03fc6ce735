//! What airlock knows about an engine before it connects: one `const`
//! [`Profile`] in each driver crate, handed out by the engine registry
//! (`airlock-engines`) and by [`crate::Driver::profile`].
//!
//! The runner reads engine differences from here and nowhere else, so a
//! new engine is a driver crate with its profile, not branches in the runner.

use airlock_sql::Dialect;

use crate::{Capabilities, Engine};

/// An engine's fixed facts and the SQL airlock writes that is not a migration's.
#[derive(Debug)]
pub struct Profile {
    /// Which engine.
    pub engine: Engine,
    /// How its migration files are split and parsed.
    pub dialect: Dialect,
    /// What the runner may rely on.
    pub capabilities: Capabilities,
    /// Throughput assumed until a calibration or history says otherwise:
    /// deliberately on the slow side, so an estimate errs long.
    pub default_rates: BaseRates,
    /// How to change a busy table without blocking writers, in a clause
    /// (the fix of a statement that would): "use ..., run it in a quiet window".
    pub online_form: &'static str,
    /// The statements `airlock calibrate` runs on its scratch table.
    pub calibration: fn(table: &str, rows: u64) -> Workload,
    /// An SQL expression giving the lower- or upper-case hex text of a binary
    /// column (another tool's stored checksum).
    pub hex: fn(column: &str) -> String,
}

/// Rows per second of each kind of work a statement can do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BaseRates {
    /// A full scan (a check, a validation).
    pub scan: f64,
    /// An index build.
    pub index: f64,
    /// A table rewrite (a type change, a copying ALTER).
    pub rewrite: f64,
}

/// The calibration's statements on a scratch table: fill it, then the three
/// timed ones. The runner drops the table (and `<table>_copy`) afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Create and fill the table with the rows asked for.
    pub fill: Vec<String>,
    /// A full scan.
    pub scan: String,
    /// A rewrite of the whole table.
    pub rewrite: String,
    /// An index build over the whole table.
    pub index: String,
}
