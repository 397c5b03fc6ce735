//! `airlock new`: the next migration file(s), numbered the way the directory already is.

use std::fs;
use std::path::{Path, PathBuf};

use airlock_core::{Version, discover_with};

use crate::args::NewArgs;

/// Picks the next version: a UTC timestamp (YYYYMMDDHHMMSS) for a new directory
/// or one that uses timestamps, the next integer (keeping zero padding) for one
/// that counts. Never at or below the newest existing version.
pub fn next_version(existing: &[(Version, String)], now: &str, args: &NewArgs) -> String {
    let newest = existing.iter().max_by(|a, b| a.0.cmp(&b.0));
    let counts = newest.is_some_and(|(v, _)| v.to_string().len() < 14 && !v.to_string().contains('.'));
    let sequential = args.sequential || (!args.timestamp && counts);
    if sequential {
        let (next, width) = match newest {
            Some((v, text)) => {
                let first: u128 = v.to_string().split('.').next().and_then(|s| s.parse().ok()).unwrap_or(0);
                (first + 1, text.split(['_', '.']).next().map_or(0, str::len))
            }
            None => (1, 0),
        };
        return format!("{next:0width$}");
    }
    match newest {
        Some((v, _)) if Version::parse(now).is_ok_and(|n| &n <= v) => {
            let first: u128 = v.to_string().split('.').next().and_then(|s| s.parse().ok()).unwrap_or(0);
            (first + 1).to_string()
        }
        _ => now.to_owned(),
    }
}

/// A file-name-safe name: lower case, `_` between words.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_owned()
}

/// The layout a directory already uses, which new migrations follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `<v>_<name>.up.sql` and `.down.sql` (airlock, golang-migrate, sqlx reversible): also for a new directory.
    UpDown,
    /// Flyway `V<v>__<name>.sql`, with `U<v>__<name>.sql` undo files when the directory has some.
    Flyway { undo: bool },
    /// diesel `<v>_<name>/up.sql` and `down.sql`; `dashed`: versions written `2024-01-31-120000`.
    Diesel { dashed: bool },
    /// dbmate `<v>_<name>.sql` with `-- migrate:up` and `-- migrate:down` sections.
    Dbmate,
    /// sqlx's simple `<v>_<name>.sql`, up only.
    Single,
}

/// The layout of the newest migration (a directory that switched layouts
/// goes on with the one it uses now).
pub fn layout_of(migrations: &[airlock_core::Migration]) -> Layout {
    let Some(newest) = migrations.iter().max_by(|a, b| a.version.cmp(&b.version)) else { return Layout::UpDown };
    let file = newest.up.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    if file == "up.sql" {
        let folder = newest
            .up
            .path
            .parent()
            .and_then(|p| p.file_name())
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Layout::Diesel { dashed: folder.split('_').next().is_some_and(|v| v.contains('-')) };
    }
    if file.starts_with('V') && file[1..].starts_with(|c: char| c.is_ascii_digit()) {
        return Layout::Flyway { undo: migrations.iter().any(|m| m.down.is_some()) };
    }
    if file.ends_with(".up.sql") {
        return Layout::UpDown;
    }
    // A dbmate file's up section starts after its `-- migrate:up` line.
    if newest.up.line_offset > 0 { Layout::Dbmate } else { Layout::Single }
}

/// The directory's migrations, the layout they use, and each one's version
/// with the text its file name starts with.
struct Survey {
    migrations: Vec<airlock_core::Migration>,
    layout: Layout,
    existing: Vec<(Version, String)>,
}

fn survey(dir: &Path, exclude: &[String]) -> Result<Survey, String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create the directory: {e}", dir.display()))?;
    let options = airlock_core::DiscoverOptions { flavor: None, exclude: exclude.to_vec(), cache_dir: None };
    let discovered = discover_with(dir, &options).map_err(|e| e.to_string())?;
    let layout = layout_of(&discovered.migrations);
    let existing: Vec<(Version, String)> = discovered
        .migrations
        .iter()
        .map(|m| {
            let file = m.up.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            let text = match layout {
                Layout::Diesel { .. } => {
                    m.up.path
                        .parent()
                        .and_then(|p| p.file_name())
                        .map(|f| f.to_string_lossy().replace('-', ""))
                        .unwrap_or_default()
                }
                _ => file.trim_start_matches(['V', 'U']).to_owned(),
            };
            (m.version.clone(), text)
        })
        .collect();
    Ok(Survey { migrations: discovered.migrations, layout, existing })
}

impl Survey {
    /// The next version, remembered as taken.
    fn take_next(&mut self, args: &NewArgs) -> String {
        let now = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
        let mut version = next_version(&self.existing, &now, args);
        if let Ok(v) = Version::parse(&version) {
            self.existing.push((v, version.clone()));
        }
        if self.layout == (Layout::Diesel { dashed: true }) && version.len() == 14 {
            version = format!("{}-{}-{}-{}", &version[..4], &version[4..6], &version[6..8], &version[8..]);
        }
        version
    }

    /// The files of one migration in this layout: the up script, and the
    /// down script where the layout has a place for it.
    fn files(&self, dir: &Path, version: &str, name: &str, up: &str, down: Option<&str>) -> Vec<(PathBuf, String)> {
        let mut files = Vec::new();
        match self.layout {
            Layout::UpDown => {
                files.push((dir.join(format!("{version}_{name}.up.sql")), up.to_owned()));
                if let Some(down) = down {
                    files.push((dir.join(format!("{version}_{name}.down.sql")), down.to_owned()));
                }
            }
            Layout::Flyway { undo } => {
                files.push((dir.join(format!("V{version}__{name}.sql")), up.to_owned()));
                if let (true, Some(down)) = (undo, down) {
                    files.push((dir.join(format!("U{version}__{name}.sql")), down.to_owned()));
                }
            }
            Layout::Diesel { .. } => {
                let folder = dir.join(format!("{version}_{name}"));
                files.push((folder.join("up.sql"), up.to_owned()));
                if let Some(down) = down {
                    files.push((folder.join("down.sql"), down.to_owned()));
                }
            }
            Layout::Dbmate => files.push((
                dir.join(format!("{version}_{name}.sql")),
                format!("-- migrate:up\n{up}\n-- migrate:down\n{}", down.unwrap_or_default()),
            )),
            Layout::Single => files.push((dir.join(format!("{version}_{name}.sql")), up.to_owned())),
        }
        files
    }
}

/// Creates the files; returns their paths.
pub fn create(dir: &Path, args: &NewArgs, exclude: &[String]) -> Result<Vec<PathBuf>, String> {
    let name = slug(&args.name);
    if name.is_empty() {
        return Err(format!("`{}` has no letters or digits to name a migration with", args.name));
    }
    let mut survey = survey(dir, exclude)?;
    let version = survey.take_next(args);
    let header = if args.data {
        "-- airlock:data\n-- A data migration: INSERT/UPDATE/DELETE only; batch large updates.\n"
    } else {
        "-- Schema changes only; put data changes in a migration made with `airlock new --data`.\n"
    };
    // Without a down script on purpose: say so, so lint does not ask for one.
    let roll_forward =
        if args.no_down { "-- airlock:roll-forward no down script: a later migration undoes this one\n" } else { "" };
    let up_text = format!("{roll_forward}{header}\n");
    let down_text = "-- Undo the up migration. Leave it out (`--no-down`) if it cannot be undone.\n\n";
    let files = survey.files(dir, &version, &name, &up_text, (!args.no_down).then_some(down_text));
    write_all(files)
}

/// Writes the migrations of an expand/contract, named `<name>_<phase>`, at
/// the next versions; returns their paths.
pub fn create_phases(
    dir: &Path,
    args: &NewArgs,
    exclude: &[String],
    phases: &[airlock_plan::expand::Phase],
) -> Result<Vec<PathBuf>, String> {
    let name = slug(&args.name);
    if name.is_empty() {
        return Err(format!("`{}` has no letters or digits to name a migration with", args.name));
    }
    let mut survey = survey(dir, exclude)?;
    let mut files = Vec::new();
    for phase in phases {
        let version = survey.take_next(args);
        files.extend(survey.files(dir, &version, &format!("{name}_{}", phase.name), &phase.up, phase.down.as_deref()));
    }
    write_all(files)
}

/// The pending migration `file` is replaced by the phases of its expand/contract:
/// the first keeps its version, the others follow. Returns the migration's
/// version and SQL (to expand) and, once expanded, writes them with `write`.
pub struct Replacing {
    dir: PathBuf,
    survey: Survey,
    index: usize,
}

impl Replacing {
    /// Finds `file` among the migrations of `dir`: it must be the newest, so the
    /// phases can follow it.
    pub fn open(dir: &Path, exclude: &[String], file: &Path) -> Result<Replacing, String> {
        let survey = survey(dir, exclude)?;
        let wanted = fs::canonicalize(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let index =
            survey.migrations.iter().position(|m| fs::canonicalize(&m.up.path).is_ok_and(|p| p == wanted)).ok_or_else(
                || format!("{} is not the up script of a migration in {}", file.display(), dir.display()),
            )?;
        let newer: Vec<String> = survey
            .migrations
            .iter()
            .filter(|m| m.version > survey.migrations[index].version)
            .map(|m| m.version.to_string())
            .collect();
        if !newer.is_empty() {
            return Err(format!(
                "{} is not the newest migration ({} come after it): the phases of an expand follow the file it replaces; expand it before writing the ones after it, or use `airlock new NAME --expand \"<SQL>\"`",
                file.display(),
                newer.join(", ")
            ));
        }
        Ok(Replacing { dir: dir.to_owned(), survey, index })
    }

    /// The migration being replaced.
    pub fn migration(&self) -> &airlock_core::Migration {
        &self.survey.migrations[self.index]
    }

    /// Removes the migration's files and writes the phases in their place
    /// (the originals written back if that fails).
    pub fn write(mut self, args: &NewArgs, phases: &[airlock_plan::expand::Phase]) -> Result<Vec<PathBuf>, String> {
        let migration = self.survey.migrations[self.index].clone();
        let name = slug(&migration.name);
        let first = version_text(&migration, self.survey.layout);
        let mut originals = vec![migration.up.path.clone()];
        originals.extend(migration.down.as_ref().map(|d| d.path.clone()));
        originals.dedup();
        let kept: Vec<(PathBuf, Vec<u8>)> =
            originals.iter().filter_map(|p| fs::read(p).ok().map(|bytes| (p.clone(), bytes))).collect();
        let mut files = Vec::new();
        for (i, phase) in phases.iter().enumerate() {
            let version = if i == 0 { first.clone() } else { self.survey.take_next(args) };
            files.extend(self.survey.files(
                &self.dir,
                &version,
                &format!("{name}_{}", phase.name),
                &phase.up,
                phase.down.as_deref(),
            ));
        }
        let put_back = || {
            for (path, bytes) in &kept {
                let _ = fs::create_dir_all(path.parent().unwrap_or(Path::new(".")));
                let _ = fs::write(path, bytes);
            }
        };
        for path in &originals {
            if let Err(e) = fs::remove_file(path) {
                put_back();
                return Err(format!("{}: {e}", path.display()));
            }
        }
        if let Some(folder) =
            migration.up.path.parent().filter(|p| *p != self.dir.as_path() && p.starts_with(&self.dir))
        {
            let _ = fs::remove_dir(folder);
        }
        write_all(files).inspect_err(|_| put_back())
    }
}

/// The version as the migration's file (diesel: folder) name writes it
/// (zero padding, dashes, Flyway's dots).
fn version_text(migration: &airlock_core::Migration, layout: Layout) -> String {
    let path = &migration.up.path;
    let named = match layout {
        Layout::Diesel { .. } => path.parent().and_then(|p| p.file_name()),
        _ => path.file_name(),
    };
    let named = named.map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let named = if matches!(layout, Layout::Flyway { .. }) { named.trim_start_matches('V').to_owned() } else { named };
    named.split('_').next().filter(|v| !v.is_empty()).map_or_else(|| migration.version.to_string(), str::to_owned)
}

/// Writes every file or none: on a failure the files it created (the one
/// it failed on too, if it got that far) and the folders it made are removed.
fn write_all(files: Vec<(PathBuf, String)>) -> Result<Vec<PathBuf>, String> {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut folders: Vec<PathBuf> = Vec::new();
    let undo = |paths: &[PathBuf], folders: &[PathBuf]| {
        for path in paths {
            let _ = fs::remove_file(path);
        }
        for folder in folders.iter().rev() {
            let _ = fs::remove_dir(folder);
        }
    };
    for (path, text) in files {
        if let Some(parent) = path.parent().filter(|p| !p.exists()) {
            if let Err(e) = fs::create_dir_all(parent) {
                undo(&paths, &folders);
                return Err(format!("{}: {e}", parent.display()));
            }
            folders.push(parent.to_owned());
        }
        match write_new(&path, &text) {
            Ok(()) => paths.push(path),
            Err(WriteError::Create(e)) => {
                undo(&paths, &folders);
                return Err(e);
            }
            Err(WriteError::Write(e)) => {
                paths.push(path);
                undo(&paths, &folders);
                return Err(e);
            }
        }
    }
    Ok(paths)
}

/// Why a file was not written: it could not be created (nothing to undo),
/// or it was created and then not written in full.
enum WriteError {
    Create(String),
    Write(String),
}

fn write_new(path: &Path, content: &str) -> Result<(), WriteError> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| WriteError::Create(format!("{}: {e}", path.display())))?;
    file.write_all(content.as_bytes()).map_err(|e| WriteError::Write(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(sequential: bool, timestamp: bool) -> NewArgs {
        NewArgs { name: "x".into(), data: false, no_down: false, sequential, timestamp, expand: None }
    }

    fn v(text: &str) -> (Version, String) {
        (Version::parse(text).unwrap(), text.to_owned())
    }

    #[test]
    fn follows_the_directory_numbering() {
        let now = "20261121120000";
        assert_eq!(next_version(&[], now, &args(false, false)), now);
        assert_eq!(next_version(&[v("0001"), v("0002")], now, &args(false, false)), "0003");
        assert_eq!(next_version(&[v("9")], now, &args(false, false)), "10");
        assert_eq!(next_version(&[v("20250101000000")], now, &args(false, false)), now);
        assert_eq!(next_version(&[v("3")], now, &args(false, true)), now);
        assert_eq!(next_version(&[v("20991231000000")], now, &args(false, false)), "20991231000001");
    }

    fn names_after(files: &[(&str, &str)], args: &NewArgs) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        let created = create(dir.path(), args, &[]).unwrap();
        let names: Vec<String> =
            created.iter().map(|p| p.strip_prefix(dir.path()).unwrap().to_string_lossy().into_owned()).collect();
        // What it wrote is read back as a migration of the same layout.
        let found = airlock_core::discover(dir.path()).unwrap();
        assert_eq!(
            found.migrations.len(),
            files
                .iter()
                .filter(|(n, _)| !n.contains(".down") && !n.starts_with('U') && !n.ends_with("down.sql"))
                .count()
                + 1,
            "{names:?}"
        );
        names
    }

    #[test]
    fn follows_the_layout_the_directory_uses() {
        let a = args(true, false);
        assert_eq!(names_after(&[], &a), ["1_x.up.sql", "1_x.down.sql"]);
        assert_eq!(names_after(&[("0001_a.up.sql", "SELECT 1;")], &a), ["0002_x.up.sql", "0002_x.down.sql"]);
        assert_eq!(names_after(&[("V1__a.sql", "SELECT 1;")], &a), ["V2__x.sql"]);
        assert_eq!(
            names_after(&[("V1__a.sql", "SELECT 1;"), ("U1__a.sql", "SELECT 1;")], &a),
            ["V2__x.sql", "U2__x.sql"]
        );
        assert_eq!(names_after(&[("3_a.sql", "-- migrate:up\nSELECT 1;\n-- migrate:down\n")], &a), ["4_x.sql"]);
        assert_eq!(names_after(&[("3_a.sql", "SELECT 1;")], &a), ["4_x.sql"]);
        let diesel = names_after(&[("2019-02-26-002946_a/up.sql", "SELECT 1;")], &args(false, false));
        assert_eq!(diesel.len(), 2);
        assert!(
            diesel[0].ends_with("_x/up.sql") && diesel[0].as_bytes()[4] == b'-',
            "dashed like the others: {diesel:?}"
        );
    }

    fn phase(name: &'static str) -> airlock_plan::expand::Phase {
        airlock_plan::expand::Phase { name, up: format!("SELECT '{name}';\n"), down: None }
    }

    #[test]
    fn expanding_replaces_the_newest_file_or_leaves_everything_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("1_a.up.sql"), "SELECT 1;").unwrap();
        fs::write(dir.path().join("2_rename.up.sql"), "ALTER TABLE t RENAME COLUMN a TO b;").unwrap();
        let older = Replacing::open(dir.path(), &[], &dir.path().join("1_a.up.sql")).err().unwrap();
        assert!(older.contains("is not the newest migration (2 come after it)"), "{older}");
        // Something in the way of a phase's file: nothing written stays, the file is back.
        let replacing = Replacing::open(dir.path(), &[], &dir.path().join("2_rename.up.sql")).unwrap();
        fs::create_dir(dir.path().join("3_rename_backfill.up.sql")).unwrap();
        let args = args(true, false);
        let failed = replacing.write(&args, &[phase("expand"), phase("backfill")]).unwrap_err();
        assert!(failed.contains("3_rename_backfill.up.sql"), "{failed}");
        let mut names: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["1_a.up.sql", "2_rename.up.sql", "3_rename_backfill.up.sql"]);
        fs::remove_dir(dir.path().join("3_rename_backfill.up.sql")).unwrap();
        let replacing = Replacing::open(dir.path(), &[], &dir.path().join("2_rename.up.sql")).unwrap();
        let written = replacing.write(&args, &[phase("expand"), phase("backfill"), phase("contract")]).unwrap();
        let names: Vec<String> =
            written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["2_rename_expand.up.sql", "3_rename_backfill.up.sql", "4_rename_contract.up.sql"]);
        assert!(!dir.path().join("2_rename.up.sql").exists());
    }

    #[test]
    fn no_down_marks_the_migration_roll_forward() {
        let dir = tempfile::tempdir().unwrap();
        let a = NewArgs { no_down: true, ..args(true, false) };
        let created = create(dir.path(), &a, &[]).unwrap();
        assert_eq!(created.len(), 1);
        let found = airlock_core::discover(dir.path()).unwrap();
        assert!(found.migrations[0].directives.roll_forward.is_some());
    }

    #[test]
    fn slugs_names() {
        assert_eq!(slug("Add orders index!"), "add_orders_index");
        assert_eq!(slug("  --- "), "");
    }
}
