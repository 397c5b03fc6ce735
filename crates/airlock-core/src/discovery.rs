//! Finding migrations in a directory, in airlock's layout and in the layouts people come from.
//!
//! | layout | up | down |
//! |---|---|---|
//! | airlock, golang-migrate, sqlx (reversible) | `<v>_<name>.up.sql` | `<v>_<name>.down.sql` |
//! | Flyway | `V<v>__<name>.sql` (`_` or `.` between version parts) | `U<v>__<name>.sql` |
//! | diesel | `<v>_<name>/up.sql` (`-` inside `<v>` is dropped) | `<v>_<name>/down.sql` |
//! | dbmate | `<v>_<name>.sql` with `-- migrate:up` | its `-- migrate:down` section |
//! | sqlx (simple) | `<v>_<name>.sql` | none |
//! | ory/popx | `<v>_<name>[.<dialect>][.autocommit].up.sql` | `... .down.sql` |
//!
//! Outside a transaction, as their own tools run them: a diesel migration
//! whose `metadata.toml` says `run_in_transaction = false`, a popx
//! `.autocommit` file, a file that starts with golang-migrate/morph's
//! `-- morph:nontransactional` or sqlx's `-- no-transaction`. A popx file for
//! the engine in use wins over the generic one of the same version; files
//! for other engines are left out.
//!
//! Files not ending in `.sql`, hidden files, directories that are not diesel
//! migrations and whatever `exclude` names are ignored. A `.sql` file whose
//! name fits no layout is an error (a migration that is silently skipped is
//! worse than a refusal), except in a directory of diesel migration folders,
//! where diesel itself ignores such files: there it is a warning naming it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::migration::{Directives, Kind, Migration, Script, parse_directives};
use crate::read_cache::ReadCache;
use crate::version::Version;

/// A problem with one file: it makes the whole directory unusable (exit 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    /// The file (or directory) concerned.
    pub path: PathBuf,
    /// 1-based line, when the problem is inside the file.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
    /// The migration version the file belongs to, when its name says.
    pub version: Option<Version>,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.path.display(), line, self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// Something worth saying that does not stop a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The file concerned.
    pub path: PathBuf,
    /// What to know.
    pub message: String,
}

/// The migrations of a directory, sorted by version.
#[derive(Clone, Debug, Default)]
pub struct Discovered {
    /// Sorted by version, no duplicates.
    pub migrations: Vec<Migration>,
    /// Non-fatal remarks (empty scripts).
    pub warnings: Vec<Warning>,
}

/// Errors of a whole directory: all the bad files at once.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct DiscoveryError(pub Vec<FileError>);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Direction {
    Up,
    Down,
    /// dbmate's file with both sections, or sqlx's simple up-only file.
    Single,
}

#[derive(Clone)]
struct Found {
    version: Version,
    name: String,
    direction: Direction,
    path: PathBuf,
    /// The popx dialect part of the name, lower-case (None: every engine).
    dialect: Option<String>,
    /// The layout itself says: outside a transaction (diesel's
    /// `run_in_transaction = false`, popx's `.autocommit`).
    no_transaction: bool,
}

/// The engine whose files to read, where a layout keeps one per engine
/// (popx's `<v>_<name>.<dialect>.up.sql`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// PostgreSQL (`postgres`, `postgresql`, `pg`, `pgx`).
    Postgres,
    /// MySQL and MariaDB (`mysql`, `mariadb`).
    MySql,
    /// SQLite (`sqlite3`, `sqlite`).
    Sqlite,
}

impl From<airlock_sql::Dialect> for Flavor {
    fn from(dialect: airlock_sql::Dialect) -> Flavor {
        match dialect {
            airlock_sql::Dialect::Postgres => Flavor::Postgres,
            airlock_sql::Dialect::MySql => Flavor::MySql,
            airlock_sql::Dialect::Sqlite => Flavor::Sqlite,
        }
    }
}

/// The dialect names popx accepts, per engine, and `cockroach`, which no
/// engine of airlock's runs.
const DIALECTS: [(&str, Option<Flavor>); 9] = [
    ("postgres", Some(Flavor::Postgres)),
    ("postgresql", Some(Flavor::Postgres)),
    ("pg", Some(Flavor::Postgres)),
    ("pgx", Some(Flavor::Postgres)),
    ("mysql", Some(Flavor::MySql)),
    ("mariadb", Some(Flavor::MySql)),
    ("sqlite3", Some(Flavor::Sqlite)),
    ("sqlite", Some(Flavor::Sqlite)),
    ("cockroach", None),
];

/// How to read a migrations directory.
#[derive(Clone, Debug, Default)]
pub struct DiscoverOptions {
    /// The engine, for layouts with files per engine. None: only the files for every engine.
    pub flavor: Option<Flavor>,
    /// Globs of files and folders to leave out, relative to the directory
    /// (`exclude` in airlock.toml): `*.sql` matches at the top only, `**/x` anywhere.
    pub exclude: Vec<String>,
    /// Where to keep what the directory held, so that the next discovery
    /// reads only the files that changed ([`crate::read_cache`]). None: read every file.
    pub cache_dir: Option<PathBuf>,
}

/// A migration file compiled into a program (the `airlock` crate's `embed_migrations!`).
#[derive(Clone, Copy, Debug)]
pub struct EmbeddedFile {
    /// Its path inside the migrations directory, `/`-separated: `1_init.up.sql`,
    /// `2024-01-31-120000_users/up.sql`.
    pub path: &'static str,
    /// Its bytes, as they were when the program was built.
    pub bytes: &'static [u8],
}

/// A migrations directory compiled into a program.
#[derive(Clone, Copy, Debug)]
pub struct Embedded {
    /// The directory the files came from, for messages (`migrations`).
    pub dir: &'static str,
    /// Every file under it, in any order.
    pub files: &'static [EmbeddedFile],
}

/// Reads the migrations in `dir`.
pub fn discover(dir: &Path) -> Result<Discovered, DiscoveryError> {
    discover_with(dir, &DiscoverOptions::default())
}

/// Reads the migrations in `dir` for an engine, leaving out what `options` excludes.
pub fn discover_with(dir: &Path, options: &DiscoverOptions) -> Result<Discovered, DiscoveryError> {
    all_or_errors(discover_lenient(dir, options))
}

/// Reads migrations compiled into the program, exactly as [`discover`] reads a
/// directory: the same layouts, checks and checksums.
pub fn discover_embedded(embedded: &Embedded) -> Result<Discovered, DiscoveryError> {
    discover_embedded_with(embedded, &DiscoverOptions::default())
}

/// [`discover_embedded`] for an engine, leaving out what `options` excludes.
pub fn discover_embedded_with(embedded: &Embedded, options: &DiscoverOptions) -> Result<Discovered, DiscoveryError> {
    discover_in(&InMemory { root: Path::new(embedded.dir), files: embedded.files }, options)
}

/// One SQL file read as a migration, whatever its name or place (`airlock
/// lint` of a file outside the migrations directory, or of standard input):
/// version and name from a migration-style file name when it has one (else
/// version 0 and the file's stem), dbmate sections and header directives as
/// in a directory. `bytes` are the file's contents.
pub fn read_loose_file(path: &Path, bytes: Vec<u8>) -> Result<Migration, FileError> {
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("-");
    let found = match classify_file(path, file_name) {
        Ok(items) if !items.is_empty() => items.into_iter().next().filter(|f| f.direction != Direction::Down),
        _ => None,
    };
    let found = found.unwrap_or_else(|| Found {
        version: Version::parse("0").expect("0 is a version"),
        name: file_name.strip_suffix(".sql").unwrap_or(file_name).to_owned(),
        direction: Direction::Single,
        path: path.to_owned(),
        dialect: None,
        no_transaction: false,
    });
    let tree = One { path, bytes };
    load(&tree, &found, None, &mut Vec::new())
}

/// A single file in memory, as a tree.
struct One<'a> {
    path: &'a Path,
    bytes: Vec<u8>,
}

impl Tree for One<'_> {
    fn entries(&self) -> Result<Vec<Result<Entry, FileError>>, FileError> {
        Ok(Vec::new())
    }

    fn is_file(&self, path: &Path) -> bool {
        path == self.path
    }

    fn read(&self, _path: &Path) -> std::io::Result<Vec<u8>> {
        Ok(self.bytes.clone())
    }
}

/// A top-level entry of a migrations directory.
struct Entry {
    path: PathBuf,
    /// None when the name is not UTF-8.
    name: Option<String>,
    is_dir: bool,
}

/// Where migration files are read from: a directory on disk, or files compiled in.
trait Tree: Sync {
    /// The top-level entries; an entry that cannot be read is a [`FileError`].
    fn entries(&self) -> Result<Vec<Result<Entry, FileError>>, FileError>;
    fn is_file(&self, path: &Path) -> bool;
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
}

struct Disk<'a> {
    dir: &'a Path,
    cache: Option<&'a ReadCache>,
}

impl Tree for Disk<'_> {
    fn entries(&self) -> Result<Vec<Result<Entry, FileError>>, FileError> {
        let dir = self.dir;
        let entries = fs::read_dir(dir).map_err(|e| {
            file_error(
                dir,
                format!("cannot read the migrations directory: {e} (set it with --dir or `dir` in airlock.toml)"),
            )
        })?;
        Ok(entries
            .map(|entry| {
                let entry = entry.map_err(|e| file_error(dir, format!("cannot list the directory: {e}")))?;
                Ok(Entry {
                    path: entry.path(),
                    name: entry.file_name().to_str().map(str::to_owned),
                    is_dir: entry.file_type().map(|t| t.is_dir()).unwrap_or(false),
                })
            })
            .collect())
    }

    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        match self.cache {
            Some(cache) => cache.read(path, read_small_file),
            None => read_small_file(path),
        }
    }
}

/// Reads a file that is usually a few hundred bytes into a vector of its
/// exact size: open, read until the end, close. `fs::read` asks for the
/// file's size first, one system call more per migration on every run.
fn read_small_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    thread_local! {
        // One zeroed buffer a thread, not one a file.
        static CHUNK: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 16 * 1024]);
    }
    let mut file = fs::File::open(path)?;
    CHUNK.with_borrow_mut(|chunk| {
        let mut bytes = Vec::new();
        loop {
            match file.read(chunk) {
                Ok(0) => return Ok(bytes),
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    })
}

struct InMemory<'a> {
    root: &'a Path,
    files: &'a [EmbeddedFile],
}

impl Tree for InMemory<'_> {
    fn entries(&self) -> Result<Vec<Result<Entry, FileError>>, FileError> {
        let mut seen = BTreeMap::new();
        for file in self.files {
            let mut parts = file.path.splitn(2, '/');
            let first = parts.next().unwrap_or_default();
            let is_dir = parts.next().is_some();
            *seen.entry(first).or_insert(false) |= is_dir;
        }
        Ok(seen
            .into_iter()
            .map(|(name, is_dir)| Ok(Entry { path: self.root.join(name), name: Some(name.to_owned()), is_dir }))
            .collect())
    }

    fn is_file(&self, path: &Path) -> bool {
        self.files.iter().any(|f| self.root.join(f.path) == path)
    }

    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.files
            .iter()
            .find(|f| self.root.join(f.path) == path)
            .map(|f| f.bytes.to_vec())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }
}

/// The `exclude` globs as one matcher; a bad glob is an error naming it.
fn excluded(options: &DiscoverOptions) -> Result<globset::GlobSet, FileError> {
    let mut set = globset::GlobSetBuilder::new();
    for glob in &options.exclude {
        let compiled = globset::GlobBuilder::new(glob).literal_separator(true).build().map_err(|e| FileError {
            version: None,
            path: PathBuf::from("airlock.toml"),
            line: None,
            message: format!("exclude: `{glob}` is not a glob: {e}"),
        })?;
        set.add(compiled);
    }
    set.build().map_err(|e| FileError {
        version: None,
        path: PathBuf::from("airlock.toml"),
        line: None,
        message: format!("exclude: {e}"),
    })
}

/// Reads what can be read in `dir` and says what cannot: the migrations
/// whose files are fine, and every bad file. For `status` and `gate`, which
/// show the database whatever the checkout holds.
pub fn discover_lenient(dir: &Path, options: &DiscoverOptions) -> (Discovered, Vec<FileError>) {
    let cache = options.cache_dir.as_deref().and_then(|cache_dir| ReadCache::open(cache_dir, dir));
    let found = discover_parts(&Disk { dir, cache: cache.as_ref() }, options);
    if let Some(cache) = cache {
        cache.save();
    }
    found
}

fn discover_in(tree: &dyn Tree, options: &DiscoverOptions) -> Result<Discovered, DiscoveryError> {
    all_or_errors(discover_parts(tree, options))
}

/// The migrations when no file is bad, else every bad file.
fn all_or_errors((discovered, errors): (Discovered, Vec<FileError>)) -> Result<Discovered, DiscoveryError> {
    if errors.is_empty() { Ok(discovered) } else { Err(DiscoveryError(errors)) }
}

fn discover_parts(tree: &dyn Tree, options: &DiscoverOptions) -> (Discovered, Vec<FileError>) {
    let exclude = match excluded(options) {
        Ok(exclude) => exclude,
        Err(e) => return (Discovered::default(), vec![e]),
    };
    let entries = match tree.entries() {
        Ok(entries) => entries,
        Err(e) => return (Discovered::default(), vec![e]),
    };
    let mut errors = Vec::new();
    let mut misnamed = Vec::new();
    let mut found = Vec::with_capacity(entries.len());
    // Migrations kept one folder each (diesel): then diesel's rule for stray files.
    let mut folders = false;
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let Some(file_name) = entry.name else {
            if entry.path.extension().is_some_and(|e| e == "sql") {
                errors.push(file_error(&entry.path, "the file name is not valid UTF-8".to_owned()));
            }
            continue;
        };
        if file_name.starts_with('.') || exclude.is_match(&file_name) {
            continue;
        }
        let parsed = if entry.is_dir {
            let up = format!("{file_name}/up.sql");
            if exclude.is_match(&up) {
                continue;
            }
            classify_dir(tree, &entry.path, &file_name).map_err(Unusable::Bad)
        } else {
            classify_file(&entry.path, &file_name)
        };
        match parsed {
            Ok(mut items) => {
                folders |= entry.is_dir && !items.is_empty();
                found.append(&mut items);
            }
            Err(Unusable::Misnamed(e)) => misnamed.push(e),
            Err(Unusable::Bad(e)) => errors.push(e),
        }
    }
    let mut warnings = Vec::new();
    if folders {
        // diesel ignores files beside its migration folders; so does airlock, saying so.
        for e in misnamed {
            let message = "not a migration: this directory keeps one folder per migration (diesel), so this file is ignored, as diesel ignores it".to_owned();
            warnings.push(Warning { path: e.path, message });
        }
    } else {
        errors.extend(misnamed);
    }
    let found = for_flavor(found, options.flavor, &mut warnings);
    let mut discovered = assemble(tree, found, &mut errors);
    discovered.warnings.splice(0..0, warnings);
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    (discovered, errors)
}

/// Why a directory entry is not a migration.
enum Unusable {
    /// Its name fits no layout.
    Misnamed(FileError),
    /// It looks like a migration but is broken.
    Bad(FileError),
}

/// Keeps, per version and direction, the popx file for `flavor` if there is
/// one, else the one for every engine; files for other engines are left out.
fn for_flavor(found: Vec<Found>, flavor: Option<Flavor>, warnings: &mut Vec<Warning>) -> Vec<Found> {
    if found.iter().all(|f| f.dialect.is_none()) {
        return found;
    }
    let fits = |f: &Found| match (&f.dialect, flavor) {
        (None, _) => true,
        (Some(d), Some(flavor)) => DIALECTS.iter().any(|(name, of)| name == d && *of == Some(flavor)),
        (Some(_), None) => false,
    };
    let key = |f: &Found| (f.version.clone(), f.direction == Direction::Down);
    let specific: std::collections::BTreeSet<(Version, bool)> =
        found.iter().filter(|f| f.dialect.is_some() && fits(f)).map(key).collect();
    let generic: std::collections::BTreeSet<(Version, bool)> =
        found.iter().filter(|f| f.dialect.is_none()).map(key).collect();
    let mut kept = Vec::new();
    for f in found {
        let k = key(&f);
        match &f.dialect {
            None if specific.contains(&k) => {}
            None => kept.push(f),
            Some(_) if fits(&f) => kept.push(f),
            Some(d) if flavor.is_none() && !generic.contains(&k) && !k.1 => warnings.push(Warning {
                path: f.path.clone(),
                message: format!("a file only for `{d}`: left out, since the engine is not known here (give a database URL or --dialect)"),
            }),
            Some(_) => {}
        }
    }
    kept
}

fn versioned(version: &Version, error: FileError) -> FileError {
    FileError { version: Some(version.clone()), ..error }
}

fn file_error(path: &Path, message: String) -> FileError {
    FileError { path: path.to_owned(), line: None, message, version: None }
}

/// Splits `<version>_<name>` where the version is digits and dots.
fn split_version_name(stem: &str) -> Option<(&str, &str)> {
    let end = stem.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (version, rest) = stem.split_at(end);
    let name = rest.strip_prefix('_')?;
    (!version.is_empty() && !name.is_empty()).then_some((version, name))
}

const LAYOUT_HELP: &str = "expected `<version>_<name>.up.sql` / `.down.sql`, Flyway `V<version>__<name>.sql`, dbmate/sqlx `<version>_<name>.sql`, or a diesel directory `<version>_<name>/up.sql`";

fn classify_file(path: &Path, file_name: &str) -> Result<Vec<Found>, Unusable> {
    let Some(stem) = file_name.strip_suffix(".sql") else {
        return Ok(Vec::new());
    };
    let bad = |why: String| Unusable::Bad(file_error(path, format!("{why}; {LAYOUT_HELP}")));
    let version = |text: &str, parts: Vec<&str>| Version::from_segments(text, parts).map_err(|e| bad(e.to_string()));
    let found = |version, name: &str, direction| Found {
        version,
        name: name.to_owned(),
        direction,
        path: path.to_owned(),
        dialect: None,
        no_transaction: false,
    };
    let flyway = |stem: &str, direction| -> Result<Vec<Found>, Unusable> {
        let (v, name) = stem
            .split_once("__")
            .filter(|(v, n)| !v.is_empty() && !n.is_empty())
            .ok_or_else(|| bad(format!("`{file_name}` looks like a Flyway migration but has no `__<name>`")))?;
        Ok(vec![found(version(v, v.split(['.', '_']).collect())?, name, direction)])
    };
    if let Some(rest) = stem.strip_prefix('V').filter(|r| r.starts_with(|c: char| c.is_ascii_digit())) {
        return flyway(rest, Direction::Up);
    }
    if let Some(rest) = stem.strip_prefix('U').filter(|r| r.starts_with(|c: char| c.is_ascii_digit())) {
        return flyway(rest, Direction::Down);
    }
    if stem.starts_with("R__") {
        return Err(Unusable::Bad(file_error(
            path,
            "Flyway repeatable migrations (`R__`) are not supported: make it a versioned migration, move it out of the migrations directory, or leave it out with `exclude` in airlock.toml".to_owned(),
        )));
    }
    let (stem, direction) = if let Some(s) = stem.strip_suffix(".up") {
        (s, Direction::Up)
    } else if let Some(s) = stem.strip_suffix(".down") {
        (s, Direction::Down)
    } else {
        (stem, Direction::Single)
    };
    // popx: `<name>[.<dialect>][.autocommit]` before the direction.
    let (stem, autocommit) = match stem.strip_suffix(".autocommit") {
        Some(s) if direction != Direction::Single => (s, true),
        _ => (stem, false),
    };
    let (stem, dialect) = match stem.rsplit_once('.') {
        Some((s, d))
            if direction != Direction::Single && DIALECTS.iter().any(|(name, _)| d.eq_ignore_ascii_case(name)) =>
        {
            (s, Some(d.to_ascii_lowercase()))
        }
        _ => (stem, None),
    };
    let (v, name) = split_version_name(stem).ok_or_else(|| {
        Unusable::Misnamed(file_error(path, format!("`{file_name}` is not a migration file name; {LAYOUT_HELP} (or leave it out with `exclude` in airlock.toml)")))
    })?;
    let mut item = found(version(v, v.split('.').collect())?, name, direction);
    item.dialect = dialect;
    item.no_transaction = autocommit;
    Ok(vec![item])
}

fn classify_dir(tree: &dyn Tree, path: &Path, dir_name: &str) -> Result<Vec<Found>, FileError> {
    // diesel: 2024-01-31-120000_create_users/{up,down}.sql
    let end = dir_name.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(dir_name.len());
    let (v, rest) = dir_name.split_at(end);
    let Some(name) = rest.strip_prefix('_').filter(|n| !n.is_empty()) else {
        return Ok(Vec::new());
    };
    if v.is_empty() || !v.starts_with(|c: char| c.is_ascii_digit()) {
        return Ok(Vec::new());
    }
    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
    let version = Version::from_segments(v, [digits.as_str()]).map_err(|e| file_error(path, e.to_string()))?;
    let up = path.join("up.sql");
    if !tree.is_file(&up) {
        return Err(file_error(
            path,
            "a migration directory needs an `up.sql` (diesel layout: `<version>_<name>/up.sql` and `down.sql`)"
                .to_owned(),
        ));
    }
    let no_transaction = diesel_outside_transaction(tree, &path.join("metadata.toml"))?;
    let item = |direction, path| Found {
        version: version.clone(),
        name: name.to_owned(),
        direction,
        path,
        dialect: None,
        no_transaction,
    };
    let mut items = vec![item(Direction::Up, up)];
    let down = path.join("down.sql");
    if tree.is_file(&down) {
        items.push(item(Direction::Down, down));
    }
    Ok(items)
}

/// diesel's `metadata.toml` beside `up.sql`: `run_in_transaction = false`
/// runs the migration outside a transaction. Absent, or without the key: in one.
fn diesel_outside_transaction(tree: &dyn Tree, path: &Path) -> Result<bool, FileError> {
    if !tree.is_file(path) {
        return Ok(false);
    }
    let text = read_text(tree, path)?;
    let table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| file_error(path, format!("not valid TOML: {}", e.message())))?;
    match table.get("run_in_transaction") {
        None => Ok(false),
        Some(toml::Value::Boolean(in_transaction)) => Ok(!in_transaction),
        Some(other) => Err(file_error(path, format!("`run_in_transaction` must be true or false, not {other}"))),
    }
}

fn read_text(tree: &dyn Tree, path: &Path) -> Result<String, FileError> {
    let bytes = tree.read(path).map_err(|e| file_error(path, format!("cannot read the file: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        FileError {
            version: None,
            path: path.to_owned(),
            line: Some(line),
            message: "the file is not valid UTF-8; save it as UTF-8".to_owned(),
        }
    })?;
    Ok(text.strip_prefix('\u{feff}').map(str::to_owned).unwrap_or(text))
}

fn script(path: &Path, sql: String, line_offset: usize) -> Script {
    Script { path: path.to_owned(), sql, line_offset }
}

/// dbmate's single file: `-- migrate:up [transaction:false]` then `-- migrate:down`.
/// Returns (up, down, no_transaction), or None when the file has no `-- migrate:up`.
fn split_dbmate(path: &Path, text: &str) -> Result<Option<(Script, Option<Script>, bool)>, FileError> {
    let mut up_start = None;
    let mut down_start = None;
    let mut no_transaction = false;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim();
        if let Some(options) = trimmed.strip_prefix("-- migrate:up") {
            if up_start.is_some() {
                return Err(FileError {
                    version: None,
                    path: path.to_owned(),
                    line: Some(index + 1),
                    message: "a second `-- migrate:up`".to_owned(),
                });
            }
            no_transaction |= options.contains("transaction:false");
            up_start = Some((offset + line.len(), index + 1));
        } else if trimmed.starts_with("-- migrate:down") {
            if up_start.is_none() {
                return Err(FileError {
                    version: None,
                    path: path.to_owned(),
                    line: Some(index + 1),
                    message: "`-- migrate:down` comes before `-- migrate:up`".to_owned(),
                });
            }
            if down_start.is_some() {
                return Err(FileError {
                    version: None,
                    path: path.to_owned(),
                    line: Some(index + 1),
                    message: "a second `-- migrate:down`".to_owned(),
                });
            }
            down_start = Some((offset, offset + line.len(), index + 1));
        }
        offset += line.len();
    }
    let Some((up_from, up_line)) = up_start else { return Ok(None) };
    let up_to = down_start.map_or(text.len(), |(marker, _, _)| marker);
    let up = script(path, text[up_from..up_to].to_owned(), up_line);
    let down = down_start.map(|(_, from, line)| script(path, text[from..].to_owned(), line));
    Ok(Some((up, down, no_transaction)))
}

/// Another tool's mark, as that tool reads it (the file's very first bytes),
/// that a file runs outside a transaction: golang-migrate/morph's
/// `-- morph:nontransactional`, sqlx's `-- no-transaction`.
fn foreign_no_transaction(sql: &str) -> bool {
    sql.starts_with("-- morph:nontransactional") || sql.starts_with("-- no-transaction")
}

fn is_blank(sql: &str) -> bool {
    // Fast path: the first line that is not empty or a `--` comment decides,
    // unless it opens a block comment or is a bare `;` (then the splitter does).
    let first = sql.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("--"));
    match first {
        None => true,
        Some(line) if !line.starts_with("/*") && !line.starts_with(';') => false,
        Some(_) => airlock_sql::is_blank(sql, airlock_sql::Dialect::Postgres),
    }
}

fn assemble(tree: &dyn Tree, mut found: Vec<Found>, errors: &mut Vec<FileError>) -> Discovered {
    // By version, then path; no copies: this runs over every migration on every run.
    found.sort_unstable_by(|a, b| a.version.cmp(&b.version).then_with(|| a.path.cmp(&b.path)));
    // The files to load, by version; what refuses a version goes to `errors`
    // (sorted by path later).
    let mut jobs: Vec<(&Found, Option<&Found>)> = Vec::with_capacity(found.len());
    for items in found.chunk_by(|a, b| a.version == b.version) {
        let version = &items[0].version;
        let is_up = |f: &&Found| f.direction != Direction::Down;
        let (up_count, down_count) = (items.iter().filter(is_up).count(), items.iter().filter(|f| !is_up(f)).count());
        if up_count > 1 || down_count > 1 || up_count == 0 {
            let ups: Vec<&Found> = items.iter().filter(is_up).collect();
            let downs: Vec<&Found> = items.iter().filter(|f| !is_up(f)).collect();
            refuse_version(version, &ups, &downs, errors);
            continue;
        }
        let up_file = items.iter().find(is_up).expect("one up script");
        let down = items.iter().find(|f| !is_up(f));
        if let Some(down) = down {
            if down.name != up_file.name {
                errors.push(versioned(
                    version,
                    file_error(
                        &down.path,
                        format!(
                            "the down script is named `{}` but its up script `{}` is named `{}`; use one name for both",
                            down.name,
                            up_file.path.display(),
                            up_file.name
                        ),
                    ),
                ));
                continue;
            }
            if up_file.direction == Direction::Single {
                errors.push(versioned(version, file_error(&down.path, format!("version {version} has a down script beside `{}`, which is not an `.up.sql` file; rename it `<version>_<name>.up.sql`", up_file.path.display()))));
                continue;
            }
        }
        jobs.push((up_file, down));
    }
    // Reading and checking the files is most of the work for a long
    // history: on a few threads when there are many.
    // Each result goes straight to its place, as soon as it is ready.
    let mut discovered = Discovered { migrations: Vec::with_capacity(jobs.len()), ..Discovered::default() };
    let work = |(up, down): &(&Found, Option<&Found>)| {
        let mut warnings = Vec::new();
        (load(tree, up, *down, &mut warnings), warnings)
    };
    crate::parallel::in_order(&jobs, 256, work, |i, (result, warnings)| {
        discovered.warnings.extend(warnings);
        match result {
            Ok(migration) => discovered.migrations.push(migration),
            Err(e) => errors.push(FileError { version: Some(jobs[i].0.version.clone()), ..e }),
        }
    });
    discovered
}

/// Why a version's files cannot make a migration: two up or two down
/// scripts, or a down script alone.
fn refuse_version(version: &Version, ups: &[&Found], downs: &[&Found], errors: &mut Vec<FileError>) {
    let list = |v: &[&Found]| v.iter().map(|f| format!("`{}`", f.path.display())).collect::<Vec<_>>().join(", ");
    if ups.len() > 1 {
        errors.push(versioned(
            version,
            file_error(
                &ups[1].path,
                format!(
                    "version {version} is used by more than one migration: {}; give each migration its own version",
                    list(ups)
                ),
            ),
        ));
    } else if downs.len() > 1 {
        errors.push(versioned(
            version,
            file_error(&downs[1].path, format!("version {version} has more than one down script: {}", list(downs))),
        ));
    } else if let Some(down) = downs.first() {
        errors.push(versioned(
            version,
            file_error(
                &down.path,
                format!(
                    "a down script for version {version} without its up script; add the up script or remove this file"
                ),
            ),
        ));
    }
}

fn load(
    tree: &dyn Tree,
    up_file: &Found,
    down_file: Option<&Found>,
    warnings: &mut Vec<Warning>,
) -> Result<Migration, FileError> {
    let text = read_text(tree, &up_file.path)?;
    let (up, mut down, dbmate_no_tx) = match up_file.direction {
        Direction::Single => match split_dbmate(&up_file.path, &text)? {
            Some(parts) => parts,
            None => (script(&up_file.path, text, 0), None, false),
        },
        _ => (script(&up_file.path, text, 0), None, false),
    };
    if let Some(down_file) = down_file {
        down = Some(script(&down_file.path, read_text(tree, &down_file.path)?, 0));
    }
    let mut directives: Directives = parse_directives(&up.sql).map_err(|e| FileError {
        version: None,
        path: up.path.clone(),
        line: Some(e.line + up.line_offset),
        message: e.message,
    })?;
    directives.no_transaction |= dbmate_no_tx || up_file.no_transaction || foreign_no_transaction(&up.sql);
    let mut down_directives = match &down {
        Some(down) => parse_directives(&down.sql).map_err(|e| FileError {
            version: None,
            path: down.path.clone(),
            line: Some(e.line + down.line_offset),
            message: e.message,
        })?,
        None => Directives::default(),
    };
    if let (Some(file), Some(down)) = (down_file, &down) {
        down_directives.no_transaction |= file.no_transaction || foreign_no_transaction(&down.sql);
    }
    if is_blank(&up.sql) {
        warnings.push(Warning {
            path: up.path.clone(),
            message: format!(
                "version {} has no statements; it will be recorded as applied and do nothing",
                up_file.version
            ),
        });
    }
    if let Some(down) = down.as_ref().filter(|d| is_blank(&d.sql)) {
        warnings.push(Warning {
            path: down.path.clone(),
            message: format!("the down script of version {} is empty: rolling back will do nothing", up_file.version),
        });
    }
    let checksum = up.checksum();
    Ok(Migration {
        version: up_file.version.clone(),
        name: up_file.name.clone(),
        kind: if directives.data || directives.backfill { Kind::Data } else { Kind::Schema },
        up,
        down,
        directives,
        down_directives,
        checksum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        dir
    }

    fn versions(d: &Discovered) -> Vec<String> {
        d.migrations.iter().map(|m| format!("{} {}", m.version, m.name)).collect()
    }

    fn with(flavor: Option<Flavor>, exclude: &[&str]) -> DiscoverOptions {
        DiscoverOptions { flavor, exclude: exclude.iter().map(|g| (*g).to_owned()).collect(), cache_dir: None }
    }

    #[test]
    fn diesel_metadata_decides_the_transaction_and_stray_files_are_warned_about() {
        let dir = dir_with(&[
            ("00000000000000_diesel_initial_setup/up.sql", b"SELECT 0;"),
            ("2019-02-26-002946_create_users/up.sql", b"CREATE TABLE users (id int);"),
            ("2019-02-26-002946_create_users/down.sql", b"DROP TABLE users;"),
            ("2019-03-01-000000_index/up.sql", b"CREATE INDEX CONCURRENTLY i ON users (id);"),
            ("2019-03-01-000000_index/metadata.toml", b"run_in_transaction = false\n"),
            ("2019-03-02-000000_kept/up.sql", b"SELECT 1;"),
            ("2019-03-02-000000_kept/metadata.toml", b"# nothing said\n"),
            ("schema.sql", b"CREATE TABLE users (id int);"),
            (".keep", b""),
        ]);
        let d = discover(dir.path()).unwrap();
        assert_eq!(
            versions(&d),
            ["0 diesel_initial_setup", "20190226002946 create_users", "20190301000000 index", "20190302000000 kept"]
        );
        let no_tx: Vec<bool> = d.migrations.iter().map(|m| m.directives.no_transaction).collect();
        assert_eq!(no_tx, [false, false, true, false]);
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
        assert!(
            d.warnings[0].path.ends_with("schema.sql") && d.warnings[0].message.contains("ignored"),
            "{:?}",
            d.warnings
        );

        // Outside a diesel layout the same stray file is an error, naming it.
        let flat = dir_with(&[("1_a.up.sql", b"SELECT 1;"), ("schema.sql", b"SELECT 2;")]);
        let err = discover(flat.path()).unwrap_err();
        assert!(err.to_string().contains("schema.sql") && err.to_string().contains("exclude"), "{err}");
        // ... unless airlock.toml leaves it out.
        assert_eq!(discover_with(flat.path(), &with(None, &["schema.sql"])).unwrap().migrations.len(), 1);

        let bad = dir_with(&[
            ("2019-03-01-000000_index/up.sql", b"SELECT 1;"),
            ("2019-03-01-000000_index/metadata.toml", b"run_in_transaction = \"no\"\n"),
        ]);
        let err = discover(bad.path()).unwrap_err();
        assert!(err.to_string().contains("metadata.toml") && err.to_string().contains("true or false"), "{err}");
    }

    #[test]
    fn other_tools_marks_for_no_transaction_are_read_from_the_first_bytes() {
        let dir = dir_with(&[
            ("1_morph.up.sql", b"-- morph:nontransactional\nCREATE INDEX CONCURRENTLY i ON t (a);"),
            ("2_sqlx.up.sql", b"-- no-transaction\nCREATE INDEX CONCURRENTLY j ON t (a);"),
            ("3_later.up.sql", b"SELECT 1;\n-- morph:nontransactional\n"),
        ]);
        let d = discover(dir.path()).unwrap();
        let no_tx: Vec<bool> = d.migrations.iter().map(|m| m.directives.no_transaction).collect();
        assert_eq!(no_tx, [true, true, false], "only at the very start, as those tools read it");
    }

    #[test]
    fn popx_files_for_the_engine_win_over_the_generic_ones() {
        let dir = dir_with(&[
            ("20200101000000_identities.up.sql", b"CREATE TABLE generic (id int);"),
            ("20200101000000_identities.down.sql", b"DROP TABLE generic;"),
            ("20200101000000_identities.postgres.up.sql", b"CREATE TABLE pg (id int);"),
            ("20200101000000_identities.cockroach.up.sql", b"CREATE TABLE crdb (id int);"),
            ("20200101000000_identities.sqlite3.up.sql", b"CREATE TABLE lite (id int);"),
            ("20200101000000_identities.sqlite3.down.sql", b"DROP TABLE lite;"),
            ("20200102000000_index.postgres.autocommit.up.sql", b"CREATE INDEX CONCURRENTLY i ON pg (id);"),
            ("20200102000000_index.postgres.down.sql", b"DROP INDEX i;"),
            ("20200102000000_index.up.sql", b"SELECT 1;"),
        ]);
        let text = |d: &Discovered, i: usize| d.migrations[i].up.sql.clone();
        let pg = discover_with(dir.path(), &with(Some(Flavor::Postgres), &[])).unwrap();
        assert_eq!(
            (text(&pg, 0), text(&pg, 1)),
            ("CREATE TABLE pg (id int);".to_owned(), "CREATE INDEX CONCURRENTLY i ON pg (id);".to_owned())
        );
        assert_eq!(
            pg.migrations[0].down.as_ref().unwrap().sql,
            "DROP TABLE generic;",
            "the generic down, there being no postgres one"
        );
        assert!(pg.migrations[1].directives.no_transaction, ".autocommit runs outside a transaction");
        assert!(!pg.migrations[0].directives.no_transaction);
        let lite = discover_with(dir.path(), &with(Some(Flavor::Sqlite), &[])).unwrap();
        assert_eq!(
            (text(&lite, 0), text(&lite, 1)),
            ("CREATE TABLE lite (id int);".to_owned(), "SELECT 1;".to_owned())
        );
        assert_eq!(lite.migrations[0].down.as_ref().unwrap().sql, "DROP TABLE lite;");
        let mysql = discover_with(dir.path(), &with(Some(Flavor::MySql), &[])).unwrap();
        assert_eq!(text(&mysql, 0), "CREATE TABLE generic (id int);");
        // The engine not known: the generic files.
        assert_eq!(text(&discover(dir.path()).unwrap(), 0), "CREATE TABLE generic (id int);");
    }

    #[test]
    fn exclude_globs_leave_files_and_folders_out() {
        let dir = dir_with(&[
            ("1_a.up.sql", b"SELECT 1;"),
            ("R__views.sql", b"CREATE VIEW v AS SELECT 1;"),
            ("2024-01-01-000000_old/up.sql", b"SELECT 2;"),
        ]);
        assert!(discover(dir.path()).is_err(), "a repeatable Flyway file is refused");
        let d = discover_with(dir.path(), &with(None, &["R__*.sql", "2024-*"])).unwrap();
        assert_eq!(versions(&d), ["1 a"]);
        let err = discover_with(dir.path(), &with(None, &["[oops"])).unwrap_err();
        assert!(err.to_string().contains("exclude: `[oops`"), "{err}");
    }

    #[test]
    fn reads_every_layout_and_sorts_numerically() {
        let dir = dir_with(&[
            ("10_ten.up.sql", b"SELECT 10;"),
            ("10_ten.down.sql", b"SELECT -10;"),
            ("2_two.up.sql", b"SELECT 2;"),
            ("V3__flyway.sql", b"SELECT 3;"),
            ("U3__flyway.sql", b"SELECT -3;"),
            ("V1_1__flyway_dotted.sql", b"SELECT 1.1;"),
            ("20240131120000_dbmate.sql", b"-- migrate:up\nSELECT 4;\n-- migrate:down\nSELECT -4;\n"),
            ("2024-02-01-000000_diesel/up.sql", b"SELECT 5;"),
            ("2024-02-01-000000_diesel/down.sql", b"SELECT -5;"),
            ("5_sqlx_simple.sql", b"SELECT 6;"),
            ("README.md", b"not a migration"),
            ("migrations.list", b"x"),
            ("fixtures/data.csv", b"1,2"),
            (".#10_ten.up.sql", b"editor lock"),
        ]);
        let d = discover(dir.path()).unwrap();
        assert_eq!(
            versions(&d),
            [
                "1.1 flyway_dotted",
                "2 two",
                "3 flyway",
                "5 sqlx_simple",
                "10 ten",
                "20240131120000 dbmate",
                "20240201000000 diesel"
            ]
        );
        let dbmate = &d.migrations[5];
        assert_eq!(dbmate.up.sql, "SELECT 4;\n");
        assert_eq!(dbmate.up.line_offset, 1);
        assert_eq!(dbmate.down.as_ref().unwrap().sql, "SELECT -4;\n");
        assert!(d.migrations[2].down.is_some(), "Flyway undo file");
        assert!(d.migrations[3].down.is_none());
    }

    #[test]
    fn reports_every_bad_file_at_once() {
        let dir = dir_with(&[
            ("1_a.up.sql", b"SELECT 1;"),
            ("001_b.up.sql", b"SELECT 1;"),
            ("schema.sql", b"SELECT 1;"),
            ("3_c.down.sql", b"SELECT 1;"),
            ("4_d.up.sql", b"SELECT \xff;"),
            ("5_e.up.sql", b"-- airlock:bogus\nSELECT 1;"),
            ("R__views.sql", b"SELECT 1;"),
        ]);
        let err = discover(dir.path()).unwrap_err().to_string();
        assert!(err.contains("version 1 is used by more than one migration"), "{err}");
        assert!(err.contains("schema.sql: `schema.sql` is not a migration file name"), "{err}");
        assert!(err.contains("3_c.down.sql: a down script for version 3 without its up script"), "{err}");
        assert!(err.contains("4_d.up.sql:1: the file is not valid UTF-8"), "{err}");
        assert!(err.contains("5_e.up.sql:1: unknown directive"), "{err}");
        assert!(err.contains("R__views.sql: Flyway repeatable migrations"), "{err}");
    }

    #[test]
    fn a_long_history_read_on_several_threads_keeps_its_order_errors_and_warnings() {
        let mut files: Vec<(String, Vec<u8>)> = (1..=600)
            .map(|i| (format!("{i}_m{i}.up.sql"), format!("CREATE TABLE t{i} (id int);\n").into_bytes()))
            .collect();
        files[99].1 = b"-- nothing\n".to_vec();
        files[449].1 = b"-- airlock:nonsense\nSELECT 1;\n".to_vec();
        let named: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (n.as_str(), c.as_slice())).collect();
        let dir = dir_with(&named);
        let (d, errors) = discover_lenient(dir.path(), &DiscoverOptions::default());
        let expected: Vec<String> = (1..=600).filter(|i| *i != 450).map(|i| format!("{i} m{i}")).collect();
        assert_eq!(versions(&d), expected);
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
        assert!(d.warnings[0].path.ends_with("100_m100.up.sql"));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].path.ends_with("450_m450.up.sql"), "{errors:?}");
    }

    #[test]
    fn warns_about_empty_scripts() {
        let dir = dir_with(&[("1_a.up.sql", b"-- nothing yet\n"), ("1_a.down.sql", b"")]);
        let d = discover(dir.path()).unwrap();
        assert_eq!(d.migrations.len(), 1);
        assert_eq!(d.warnings.len(), 2);
    }

    #[test]
    fn dbmate_transaction_false_means_no_transaction() {
        let dir =
            dir_with(&[("1_idx.sql", b"-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (x);\n")]);
        let d = discover(dir.path()).unwrap();
        assert!(d.migrations[0].directives.no_transaction);
    }

    #[test]
    fn embedded_files_read_like_a_directory() {
        static FILES: &[EmbeddedFile] = &[
            EmbeddedFile { path: "2_two.up.sql", bytes: b"SELECT 2;" },
            EmbeddedFile { path: "2_two.down.sql", bytes: b"SELECT -2;" },
            EmbeddedFile { path: "2024-02-01-000000_diesel/up.sql", bytes: b"SELECT 5;" },
            EmbeddedFile { path: "README.md", bytes: b"not a migration" },
            EmbeddedFile { path: "1_one.up.sql", bytes: b"-- airlock:data\nUPDATE t SET x = 1;" },
        ];
        let embedded = Embedded { dir: "migrations", files: FILES };
        let d = discover_embedded(&embedded).unwrap();
        assert_eq!(versions(&d), ["1 one", "2 two", "20240201000000 diesel"]);
        assert_eq!(d.migrations[1].down.as_ref().unwrap().sql, "SELECT -2;");
        assert_eq!(d.migrations[0].kind, Kind::Data);
        assert_eq!(d.migrations[2].up.path, Path::new("migrations/2024-02-01-000000_diesel/up.sql"));

        // The same bytes on disk give the same checksums.
        let dir = dir_with(&FILES.iter().map(|f| (f.path, f.bytes)).collect::<Vec<_>>());
        let on_disk = discover(dir.path()).unwrap();
        let sums = |d: &Discovered| d.migrations.iter().map(|m| m.checksum.clone()).collect::<Vec<_>>();
        assert_eq!(sums(&d), sums(&on_disk));

        static BAD: &[EmbeddedFile] = &[
            EmbeddedFile { path: "1_a.up.sql", bytes: b"SELECT 1;" },
            EmbeddedFile { path: "01_b.up.sql", bytes: b"SELECT 1;" },
        ];
        let err = discover_embedded(&Embedded { dir: "migrations", files: BAD }).unwrap_err().to_string();
        assert!(err.contains("migrations/1_a.up.sql: version 1 is used by more than one migration"), "{err}");
    }

    #[test]
    fn missing_directory_is_named() {
        let err = discover(Path::new("/nonexistent/migrations")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/migrations: cannot read the migrations directory"), "{err}");
    }
}
