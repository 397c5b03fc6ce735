//! Plan: for every pending statement, what it will do to the live database
//! (locks, rewrites, scans, rows), which data checks it needs, and the verdict.
//! `effects` is pure: the statement and the schema model in, effects out; the
//! checks themselves run read-only against the database (issue 4, in progress).

pub mod checks;
pub mod effects;

pub use checks::CheckResult;
pub use effects::{effects, CheckSpec, Effects, Lock};

use airlock_core::schema::{Catalog, Origin};
use airlock_core::Migration;
use airlock_sql::Dialect;

/// The data checks each migration needs against the live data, walking the
/// migrations in order over `catalog` (the live schema). Tables created by a
/// pending migration are empty when it runs, so they need none; lock
/// blockers are the runner's lock timeout's business, not a data check.
pub fn data_checks(
    migrations: &[Migration],
    scripts: &[airlock_lint::ParsedScript],
    mut catalog: Catalog,
    dialect: Dialect,
) -> Vec<(String, Vec<CheckSpec>)> {
    let mut out = Vec::new();
    for (migration, script) in migrations.iter().zip(scripts) {
        let version = migration.version.to_string();
        let mut specs = Vec::new();
        for parsed in &script.statements {
            for op in parsed.ops.iter().flatten() {
                let e = effects(op, &catalog, dialect);
                let live = e.table.as_ref().and_then(|t| catalog.table(t).table()).is_some_and(|t| t.origin == Origin::Live);
                if live {
                    specs.extend(e.checks.into_iter().filter(|c| !matches!(c, CheckSpec::LockBlockers { .. })));
                }
                catalog.apply(op, &version);
            }
        }
        out.push((version, specs));
    }
    out
}
