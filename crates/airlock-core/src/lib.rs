//! airlock's core: versions, migrations, discovery, checksums, history types and
//! the pure decision of what to run. Nothing here talks to a database.

pub mod checksum;
pub mod discovery;
pub mod foreign;
pub mod history;
pub mod migration;
pub mod reconcile;
pub mod schema;
pub mod version;

pub use discovery::{discover, discover_embedded, discover_lenient, discover_embedded_with, discover_with, read_loose_file, DiscoverOptions, Discovered, Flavor, Embedded, EmbeddedFile, DiscoveryError, FileError, Warning};
pub use history::{Actor, Event, HistoryRecord, Lease, RunMode, RunState};
pub use migration::{Allow, Directives, Kind, Migration, Script};
pub use reconcile::{reconcile, statements_kept, Problem, ProblemCode, Reconciliation, Settings};
pub use version::{Version, VersionError};
