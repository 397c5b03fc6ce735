//! Plan: for every pending statement, what it will do to the live database
//! (locks, rewrites, scans, rows), which data checks it needs, and the verdict.
//! `effects` is pure: the statement and the schema model in, effects out; the
//! checks themselves run read-only against the database.

pub mod checks;
pub mod effects;
pub mod expand;
pub mod locks;
pub mod semantics;
pub mod stake;
pub mod verdict;

pub use checks::CheckResult;
pub use effects::{CheckSpec, Effects, Lock, effects};
pub use locks::PgLock;
pub use stake::{Stake, at_stake};
pub use verdict::{Risk, RiskCode, Verdict, verdict_of};
