//! What a rehearsal with the target's rows measured: each heavy statement's
//! time and the rows of the table it worked on, kept in a file of the
//! project (never in the target, which rehearsal only reads). `plan` and
//! `migrate`'s budget check scale such a time by the live table's rows:
//! see how long it takes on a copy, compare the row counts, multiply by the
//! ratio. A time is used only for the same statement of the same file
//! (version, checksum and line), and only when the rehearsal worked on
//! enough rows to time more than fixed costs ([`MIN_ROWS`]).

use std::path::Path;

use airlock_core::Migration;
use airlock_core::schema::{Catalog, Origin, TableName};
use airlock_lint::ParsedScript;
use serde::{Deserialize, Serialize};

use crate::error::ExecError;
use crate::rates::{MIN_ROWS, Work};

/// What the file says it is, so that another JSON file given by mistake is refused.
const FORMAT: &str = "airlock rehearsal timings 1";

/// One heavy statement as a rehearsal timed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RehearsedStatement {
    /// Its migration's version.
    pub version: String,
    /// The checksum of its migration's up script when rehearsed: a changed file's times are not used.
    pub checksum: String,
    /// Its 1-based line in the file.
    pub line: usize,
    /// The heavy part of its work.
    pub work: Work,
    /// The table it worked on.
    pub table: String,
    /// The table's rows just before its migration ran in the rehearsal (counted).
    pub rows: u64,
    /// How long the statement took, in milliseconds.
    pub ms: f64,
    /// When, UTC, RFC 3339.
    pub at: String,
    /// The database whose rows were copied (password hidden).
    pub database: String,
    /// What was copied: `sample:N` or `full`.
    pub data: String,
}

impl RehearsedStatement {
    /// Whether it worked on enough rows for its time to be scaled.
    pub fn scalable(&self) -> bool {
        self.rows as f64 >= MIN_ROWS
    }
}

/// The timings file: the newest rehearsal of each migration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RehearsalTimings {
    format: String,
    /// Every timed statement.
    pub statements: Vec<RehearsedStatement>,
}

impl RehearsalTimings {
    /// Reads the file; a file that does not exist yet holds no timings.
    pub fn read(path: &Path) -> Result<RehearsalTimings, ExecError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RehearsalTimings::default()),
            Err(e) => {
                return Err(ExecError::Usage(format!("rehearsal timings {}: cannot read it: {e}", path.display())));
            }
        };
        let unreadable = |why: String| {
            ExecError::Usage(format!(
                "rehearsal timings {}: {why}; it is written by `airlock rehearse --data`: delete it, or rehearse again",
                path.display()
            ))
        };
        let timings: RehearsalTimings =
            serde_json::from_str(&text).map_err(|e| unreadable(format!("not a timings file ({e})")))?;
        if timings.format != FORMAT {
            return Err(unreadable(format!("its format is `{}`, not `{FORMAT}`", timings.format)));
        }
        Ok(timings)
    }

    /// Keeps the newest timings: those of `rehearsed` migrations are replaced by `timed`.
    pub fn merge(&mut self, rehearsed: &[&Migration], timed: Vec<RehearsedStatement>) {
        self.format = FORMAT.to_owned();
        let versions: std::collections::BTreeSet<String> = rehearsed.iter().map(|m| m.version.to_string()).collect();
        self.statements.retain(|s| !versions.contains(&s.version));
        self.statements.extend(timed);
        self.statements.sort_by(|a, b| {
            let version = |s: &RehearsedStatement| airlock_core::Version::parse(&s.version).ok();
            version(a).cmp(&version(b)).then(a.line.cmp(&b.line))
        });
    }

    /// Writes the file whole (a new file renamed over the old one, so a
    /// reader never sees half of it), making its folder if needed.
    pub fn write(&self, path: &Path) -> Result<(), ExecError> {
        let failed = |e: std::io::Error| {
            ExecError::Usage(format!(
                "rehearsal timings {}: cannot write it: {e}; set `rehearsal_timings` in airlock.toml to a path that can be written",
                path.display()
            ))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| failed(std::io::Error::other(e)))?;
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, text + "\n").map_err(failed)?;
        std::fs::rename(&partial, path).map_err(failed)
    }

    /// The timing of `migration`'s statement at `line` doing `work`, when
    /// the file is unchanged since and the rehearsal's rows were enough.
    pub fn find(&self, migration: &Migration, line: usize, work: Work) -> Option<&RehearsedStatement> {
        let version = migration.version.to_string();
        self.statements.iter().find(|s| {
            s.version == version && s.checksum == migration.checksum && s.line == line && s.work == work && s.scalable()
        })
    }
}

/// A statement's estimate made from a rehearsal: its time scaled by the live rows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScaledRehearsal {
    /// The rows the rehearsal worked on.
    pub rows: u64,
    /// How long it took there, in milliseconds.
    pub ms: f64,
    /// Live rows over rehearsed rows.
    pub scale: f64,
    /// When it was rehearsed.
    pub at: String,
    /// Whose rows were copied.
    pub database: String,
    /// `sample:N` or `full`.
    pub data: String,
}

impl ScaledRehearsal {
    /// `timing` scaled to a table of `live_rows` rows.
    pub fn new(timing: &RehearsedStatement, live_rows: f64) -> ScaledRehearsal {
        ScaledRehearsal {
            rows: timing.rows,
            ms: timing.ms,
            scale: live_rows.max(0.0) / timing.rows as f64,
            at: timing.at.clone(),
            database: timing.database.clone(),
            data: timing.data.clone(),
        }
    }

    /// The estimate, in seconds.
    pub fn seconds(&self) -> f64 {
        self.ms / 1000.0 * self.scale
    }

    /// Where the estimate comes from, as `estimate_source` says it.
    pub fn source(&self) -> String {
        format!(
            "rehearsal of {} ({} rows in {:.0} ms, ×{:.1} for the live rows)",
            self.at, self.rows, self.ms, self.scale
        )
    }
}

/// A statement of an up script that does heavy work on a table that exists
/// before its migration runs, whose rows a rehearsal counts and whose time it keeps.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Heavy {
    /// Its 1-based line in the file.
    pub line: usize,
    /// The heaviest work it does.
    pub work: Work,
    /// The table worked on, as the catalog names it.
    pub table: TableName,
}

/// The heavy statements of `migration` (parsed as `script`), judged as
/// `plan` judges them against `catalog`, which is advanced past the migration.
pub(crate) fn heavy_statements(
    migration: &Migration,
    script: &ParsedScript,
    catalog: &mut Catalog,
    dialect: airlock_sql::Dialect,
) -> Vec<Heavy> {
    let version = migration.version.to_string();
    let mut heavy: Vec<Heavy> = Vec::new();
    for parsed in &script.statements {
        let mut found: Option<Heavy> = None;
        for op in parsed.ops.iter().flatten() {
            let e = airlock_plan::effects(op, catalog, dialect);
            let work = Work::of(&e);
            let table = e.table.as_ref().and_then(|t| catalog.table(t).table());
            // A table this migration creates does not exist before it: nothing to count.
            let before = table.filter(|t| !matches!(&t.origin, Origin::Created { version: v } if *v == version));
            if let (Some(work), Some(table), false) = (work, before, op.is_dml()) {
                if found.as_ref().is_none_or(|f| work > f.work) {
                    found = Some(Heavy { line: parsed.line, work, table: table.name.clone() });
                }
            }
            catalog.apply(op, &version);
        }
        heavy.extend(found);
    }
    heavy
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::migration::{Directives, Kind, Script};

    fn migration(version: &str) -> Migration {
        Migration {
            version: airlock_core::Version::parse(version).unwrap(),
            name: format!("m{version}"),
            kind: Kind::Schema,
            up: Script {
                path: format!("{version}_m.up.sql").into(),
                sql: "CREATE INDEX i ON t (x);".to_owned(),
                line_offset: 0,
            },
            down: None,
            directives: Directives::default(),
            down_directives: Directives::default(),
            checksum: "c".to_owned(),
        }
    }

    fn timing(version: &str, line: usize, rows: u64) -> RehearsedStatement {
        RehearsedStatement {
            version: version.to_owned(),
            checksum: "c".to_owned(),
            line,
            work: Work::Index,
            table: "t".to_owned(),
            rows,
            ms: 200.0,
            at: "2026-12-01T10:00:00Z".to_owned(),
            database: "postgres://h/db".to_owned(),
            data: "full".to_owned(),
        }
    }

    #[test]
    fn scaled_by_the_live_rows() {
        let scaled = ScaledRehearsal::new(&timing("1", 1, 20_000), 1_000_000.0);
        assert_eq!(scaled.scale, 50.0);
        assert_eq!(scaled.seconds(), 10.0);
        assert_eq!(
            scaled.source(),
            "rehearsal of 2026-12-01T10:00:00Z (20000 rows in 200 ms, ×50.0 for the live rows)"
        );
    }

    #[test]
    fn a_new_rehearsal_replaces_its_migrations_timings_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/timings.json");
        assert_eq!(RehearsalTimings::read(&path).unwrap(), RehearsalTimings::default());
        let mut timings = RehearsalTimings::default();
        let (one, two) = (migration("1"), migration("2"));
        timings.merge(&[&one, &two], vec![timing("2", 1, 20_000), timing("1", 3, 20_000)]);
        timings.merge(&[&two], vec![timing("2", 5, 30_000)]);
        timings.write(&path).unwrap();
        let read = RehearsalTimings::read(&path).unwrap();
        let kept: Vec<(&str, usize)> = read.statements.iter().map(|s| (s.version.as_str(), s.line)).collect();
        assert_eq!(kept, [("1", 3), ("2", 5)]);

        std::fs::write(&path, "{\"format\": \"other\", \"statements\": []}").unwrap();
        let e = RehearsalTimings::read(&path).unwrap_err().to_string();
        assert!(e.contains("its format is `other`") && e.contains("rehearse again"), "{e}");
        std::fs::write(&path, "[1, 2]").unwrap();
        let e = RehearsalTimings::read(&path).unwrap_err().to_string();
        assert!(e.contains("timings.json: not a timings file"), "{e}");
    }

    #[test]
    fn a_file_that_cannot_be_read_or_written_is_named_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the file should be: it cannot be read as one.
        let folder = dir.path().join("timings.json");
        std::fs::create_dir(&folder).unwrap();
        let e = RehearsalTimings::read(&folder).unwrap_err().to_string();
        assert!(e.starts_with(&format!("rehearsal timings {}: cannot read it: ", folder.display())), "{e}");
        // A file where its folder should be: it cannot be written.
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, "").unwrap();
        let path = blocker.join("timings.json");
        let e = RehearsalTimings::default().write(&path).unwrap_err().to_string();
        assert!(e.starts_with(&format!("rehearsal timings {}: cannot write it: ", path.display())), "{e}");
        assert!(e.ends_with("set `rehearsal_timings` in airlock.toml to a path that can be written"), "{e}");
    }

    #[test]
    fn found_only_for_the_same_file_line_and_work_over_enough_rows() {
        let mut timings = RehearsalTimings::default();
        let mut m = migration("1");
        timings.merge(&[&m], vec![timing("1", 1, 20_000), timing("1", 2, 500)]);
        assert!(timings.find(&m, 1, Work::Index).is_some());
        assert!(timings.find(&m, 1, Work::Rewrite).is_none());
        assert!(timings.find(&m, 2, Work::Index).is_none(), "500 rows time mostly fixed costs");
        m.checksum = "changed".to_owned();
        assert!(timings.find(&m, 1, Work::Index).is_none());
    }
}
