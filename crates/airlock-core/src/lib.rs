//! airlock's core: versions, migrations, discovery, checksums, history types and
//! the pure decision of what to run. Nothing here talks to a database.

pub mod checksum;
pub mod discovery;
pub mod foreign;
pub mod history;
pub mod migration;
pub mod parallel;
pub mod read_cache;
pub mod reconcile;
pub mod schema;
pub mod snapshot;
pub mod version;

pub use discovery::{
    DiscoverOptions, Discovered, DiscoveryError, Embedded, EmbeddedFile, FileError, Flavor, Warning, discover,
    discover_embedded, discover_embedded_with, discover_lenient, discover_with, read_loose_file,
};
pub use history::{Actor, Event, HistoryRecord, Lease, RunMode, RunState};
pub use migration::{Allow, Directives, Kind, Migration, Script};
pub use reconcile::{Problem, ProblemCode, Reconciliation, Settings, reconcile, statements_kept};
pub use version::{Version, VersionError};
