//! airlock's core: versions, migrations, discovery, checksums, history types and
//! the pure decision of what to run. Nothing here talks to a database.

pub mod checksum;
pub mod discovery;
pub mod history;
pub mod migration;
pub mod reconcile;
pub mod schema;
pub mod version;

pub use discovery::{discover, discover_embedded, read_loose_file, Discovered, Embedded, EmbeddedFile, DiscoveryError, FileError, Warning};
pub use history::{Actor, Event, HistoryRecord, Lease, RunMode, RunState};
pub use migration::{Allow, Directives, Kind, Migration, Script};
pub use reconcile::{reconcile, Problem, ProblemCode, Reconciliation, Settings};
pub use version::{Version, VersionError};
