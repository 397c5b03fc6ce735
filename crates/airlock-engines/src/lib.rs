//! The engine registry: the one place that names every driver crate.
//!
//! Everything above it (the runner, the CLI, the server, the app library)
//! reaches an engine through a URL: [`connect`] for a connection, [`profile`]
//! for what is known before connecting. Adding an engine is a driver crate
//! (its `Driver`, its `PROFILE`, its tests), a variant of `Engine` with its
//! URL schemes, and one arm in each `match` here; the compiler points at them.

use airlock_driver::{DatabaseUrl, Driver, DriverError, Engine, Profile};
use airlock_driver_mysql::MySqlDriver;
use airlock_driver_postgres::PostgresDriver;
use airlock_driver_sqlite::SqliteDriver;

/// The fixed facts of `engine`.
pub fn profile(engine: Engine) -> &'static Profile {
    match engine {
        Engine::Postgres => &airlock_driver_postgres::PROFILE,
        Engine::MySql => &airlock_driver_mysql::PROFILE,
        Engine::Sqlite => &airlock_driver_sqlite::PROFILE,
    }
}

/// Connects to the database named by `url`. `create` lets a file-based
/// engine create a missing file.
pub async fn connect(url: &DatabaseUrl, create: bool) -> Result<Box<dyn Driver>, DriverError> {
    Ok(match url.engine() {
        Engine::Postgres => Box::new(PostgresDriver::connect(url).await?),
        Engine::MySql => Box::new(MySqlDriver::connect(url).await?),
        Engine::Sqlite => Box::new(SqliteDriver::connect(url, create)?),
    })
}

/// Connects for reading only: a file is opened read-only (and must exist);
/// a server connection is an ordinary one (the runner opens read-only
/// transactions on it).
pub async fn connect_read_only(url: &DatabaseUrl) -> Result<Box<dyn Driver>, DriverError> {
    match url.engine() {
        Engine::Sqlite => Ok(Box::new(SqliteDriver::open_read_only(url)?)),
        Engine::Postgres | Engine::MySql => connect(url, false).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_has_its_own_profile() {
        for engine in Engine::ALL {
            let p = profile(engine);
            assert_eq!(p.engine, engine, "{engine:?}'s profile names another engine");
            assert_eq!(Engine::from_name(engine.name()), Some(engine));
            let work = (p.calibration)("scratch", 1000);
            assert!(!work.fill.is_empty() && work.fill[0].contains("scratch"));
            for timed in [&work.scan, &work.rewrite, &work.index] {
                assert!(timed.contains("scratch"), "{engine:?}: {timed}");
            }
            assert!((p.hex)("checksum").contains("checksum"));
            let r = p.default_rates;
            assert!(r.scan > 0.0 && r.index > 0.0 && r.rewrite > 0.0);
        }
    }
}
