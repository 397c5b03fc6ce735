//! What lint and plan read from the database: the live schema and which
//! migrations are still pending. One read-only transaction; changes nothing.

use airlock_core::schema::Catalog;
use airlock_core::{Discovered, Migration, Settings, reconcile};

use crate::error::ExecError;
use crate::{Context, Options, snapshot};

/// The live schema and the migrations not applied yet, in order.
pub struct LiveState {
    /// The schema as the database has it now.
    pub catalog: Catalog,
    /// Pending migrations, in the order `migrate` would apply them.
    pub pending: Vec<Migration>,
    /// Every migration of the directory.
    pub discovered: Discovered,
    /// The throughput model: history and calibration stored in the database.
    pub rates: crate::rates::Rates,
    /// Other tools whose history the database holds, when airlock has none there.
    pub foreign: Vec<airlock_core::foreign::Tool>,
    /// The synchronous cluster the server is a node of, when it is one.
    pub cluster: Option<airlock_driver::Cluster>,
}

/// Reads only the live schema (`lint` of files outside the migrations
/// directory). A SQLite file that does not exist yet is an empty database.
pub async fn live_catalog(options: &Options) -> Result<Catalog, ExecError> {
    if crate::database_file_missing(options) {
        return Ok(Catalog::live(Vec::new()));
    }
    let mut driver = crate::connect_read_only(&options.url).await.map_err(ExecError::Connect)?;
    driver.begin_read_only().await.map_err(ExecError::db("opening a read-only transaction"))?;
    let catalog = driver.load_catalog().await.map_err(ExecError::db("reading the live schema"));
    let _ = driver.rollback().await;
    catalog
}

/// Reads the live schema and history. A SQLite file that does not exist yet
/// is an empty database with everything pending.
pub async fn live_state(options: &Options) -> Result<LiveState, ExecError> {
    let discovered = options.discover()?;
    if crate::database_file_missing(options) {
        let pending = discovered.migrations.clone();
        let rates = crate::rates::Rates::defaults(options.profile().default_rates);
        return Ok(LiveState {
            catalog: Catalog::live(Vec::new()),
            pending,
            discovered,
            rates,
            foreign: Vec::new(),
            cluster: None,
        });
    }
    let ctx = Context::new(options);
    let mut driver = crate::connect_read_only(&options.url).await.map_err(ExecError::Connect)?;
    driver.begin_read_only().await.map_err(ExecError::db("opening a read-only transaction"))?;
    // The catalog first: on PostgreSQL, reading airlock's tables where they do
    // not exist yet aborts the transaction (the snapshot then reads as empty).
    let catalog = driver.load_catalog().await.map_err(ExecError::db("reading the live schema"));
    let snap = snapshot(driver.as_mut(), &ctx).await;
    let _ = driver.rollback().await;
    let (snap, catalog) = (snap?, catalog?);
    let foreign = if snap.history.is_empty() {
        crate::adopt::not_adopted(driver.as_mut(), airlock_core::foreign::detect(&catalog)).await
    } else {
        Vec::new()
    };
    let rates = crate::rates::Rates::read(driver.as_mut()).await;
    let cluster = driver.cluster().await.ok().flatten();
    let settings = Settings { target: None, out_of_order: options.out_of_order, run_in_progress: false };
    let plan = reconcile(&discovered.migrations, &snap.history, &settings);
    let pending = plan.pending.iter().map(|m| (*m).clone()).collect();
    Ok(LiveState { catalog, pending, discovered, rates, foreign, cluster })
}
