//! `airlock init`: writes airlock.toml and the migrations directory for a
//! project, taking what is there: another tool's migrations folder (read in
//! place, in its own layout) and, with a database URL, another tool's
//! history table (then `airlock adopt` is the next step, not `migrate`).

use std::path::{Path, PathBuf};

use airlock_driver::DatabaseUrl;
use airlock_exec::ExecError;

use crate::args::{Global, InitArgs};

/// Where migration tools keep their files, most common first.
const USUAL_DIRS: [&str; 8] = [
    "migrations",
    "db/migrations",
    "db/migrate",
    "src/main/resources/db/migration",
    "src/main/resources/db/migrations",
    "resources/db/migration",
    "sql/migrations",
    "database/migrations",
];

/// What `init` found and wrote.
#[derive(Debug, serde::Serialize)]
pub struct Initialized {
    /// The configuration file written.
    pub config: PathBuf,
    /// The migrations directory (created when missing).
    pub dir: PathBuf,
    /// It was created now.
    pub created_dir: bool,
    /// Migrations found in it.
    pub migrations: usize,
    /// The layout the files are in, as a person names it.
    pub layout: Option<&'static str>,
    /// Files in it airlock cannot read as they are.
    pub unreadable: Vec<String>,
    /// Other tools whose history the database holds: `airlock adopt --from TOOL` takes over.
    pub foreign: Vec<&'static str>,
    /// What could not be looked at.
    pub notes: Vec<String>,
    /// What to run next.
    pub next: Vec<String>,
}

/// Names the layout of a directory's files, as its tool calls it.
fn layout_of(dir: &Path) -> Option<&'static str> {
    let mut names = Vec::new();
    let mut dbmate = false;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() && (path.join("up.sql").exists() || path.join("up.postgres.sql").exists()) {
            return Some("diesel (a folder per migration with up.sql and down.sql)");
        }
        if name.ends_with(".sql") && !dbmate {
            dbmate = std::fs::read_to_string(&path).is_ok_and(|text| text.contains("-- migrate:up"));
        }
        names.push(name);
    }
    let flyway =
        |n: &String| n.strip_prefix(['V', 'R', 'U']).is_some_and(|rest| rest.contains("__") && rest.ends_with(".sql"));
    if names.iter().any(flyway) {
        Some("Flyway (V1__name.sql)")
    } else if dbmate {
        Some("dbmate (-- migrate:up and -- migrate:down in one file)")
    } else if names.iter().any(|n| n.ends_with(".up.sql")) {
        Some("up and down files (airlock, golang-migrate, sqlx)")
    } else if names.iter().any(|n| n.ends_with(".sql")) {
        Some("one SQL file per migration (sqlx, refinery)")
    } else {
        None
    }
}

/// The first usual directory that holds SQL migrations.
fn existing_dir(root: &Path) -> Option<PathBuf> {
    USUAL_DIRS.iter().map(|d| root.join(d)).find(|d| layout_of(d).is_some())
}

/// TOML's basic string: quotes and backslashes escaped.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// The database URL as the file should hold it: a server URL stays in
/// DATABASE_URL (a file is no place for a password); a SQLite path is written.
fn url_line(url: Option<&DatabaseUrl>) -> String {
    match url.map(|u| u.sqlite_path()) {
        // As given: a URL's path is read from where airlock runs, like DATABASE_URL's.
        Some(Some(path)) => format!("url = {}\n", toml_string(&format!("sqlite:{path}"))),
        Some(None) => {
            "# The database: read from DATABASE_URL (keep passwords out of this file).\nurl = \"${DATABASE_URL}\"\n"
                .to_owned()
        }
        None => "# The database: a SQLite file here; set DATABASE_URL or an environment below for a server.\n\
                 url = \"sqlite:app.db\"\n"
            .to_owned(),
    }
}

fn config_text(project: &str, dir: &str, url: Option<&DatabaseUrl>) -> String {
    format!(
        "# airlock's configuration (README.md and docs/ say what each key does).\n\
         # The project stamped on every database airlock migrates: a run against\n\
         # another project's database is refused.\n\
         project = {}\n\
         # The migrations, in the layout they are in.\n\
         dir = {}\n\
         {}\n\
         # Environments: `airlock --env production migrate`. A protected one asks\n\
         # for --reason on anything risky and never runs `down`.\n\
         # [environments.staging]\n\
         # url = \"${{STAGING_DATABASE_URL}}\"\n\
         # [environments.production]\n\
         # url = \"${{PRODUCTION_DATABASE_URL}}\"\n\
         # protected = true\n",
        toml_string(project),
        toml_string(dir),
        url_line(url)
    )
}

/// `path` (relative to the current directory) as seen from `root`: relative
/// when it lies under it, else absolute.
fn relative_to(root: &Path, path: &Path) -> PathBuf {
    match (std::path::absolute(root), std::path::absolute(path)) {
        (Ok(root), Ok(absolute)) => match absolute.strip_prefix(&root) {
            Ok(inside) if !inside.as_os_str().is_empty() => inside.to_path_buf(),
            _ => absolute,
        },
        _ => path.to_path_buf(),
    }
}

/// Runs `airlock init` in the current directory (or the one `--config` names).
pub fn run(global: &Global, args: &InitArgs) -> Result<Initialized, ExecError> {
    let usage = |why: String| ExecError::Usage(why);
    let config = global.config.clone().unwrap_or_else(|| PathBuf::from("airlock.toml"));
    if config.exists() {
        return Err(usage(format!(
            "{} already exists: nothing was written (airlock reads it as it is; edit it, or remove it to start again)",
            config.display()
        )));
    }
    let root = match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = match global.dir.clone() {
        Some(dir) => dir,
        None => existing_dir(&root).unwrap_or_else(|| root.join("migrations")),
    };
    let created_dir = !dir.exists();
    let layout = if created_dir { None } else { layout_of(&dir) };
    let (migrations, unreadable) = if created_dir {
        (0, Vec::new())
    } else {
        match airlock_core::discover(&dir) {
            Ok(found) => (found.migrations.len(), Vec::new()),
            Err(e) => (0, e.0.iter().map(ToString::to_string).collect()),
        }
    };
    let url_text = global.database_url.clone().or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()));
    let url = url_text.as_deref().map(DatabaseUrl::parse).transpose().map_err(|e| usage(e.to_string()))?;
    let mut notes = Vec::new();
    let foreign = match &url {
        Some(url) => foreign_tools(url, &dir).unwrap_or_else(|e| {
            notes.push(format!("could not look in {url} for another tool's history: {e}"));
            Vec::new()
        }),
        None => Vec::new(),
    };
    let project = args.project.clone().unwrap_or_else(|| {
        std::fs::canonicalize(&root)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "app".to_owned())
    });
    // airlock.toml's `dir` is read relative to the file: written so, or absolute.
    let relative = relative_to(&root, &dir).to_string_lossy().into_owned();
    if created_dir {
        std::fs::create_dir_all(&dir).map_err(|e| usage(format!("cannot create {}: {e}", dir.display())))?;
    }
    let text = config_text(&project, &relative, url.as_ref());
    // create_new: a file that appeared meanwhile is not overwritten.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&config)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .map_err(|e| usage(format!("cannot write {}: {e}", config.display())))?;
    let mut next = Vec::new();
    if !unreadable.is_empty() {
        next.push(
            "fix or leave out the files above (`exclude = [\"...\"]` in airlock.toml), then `airlock lint`".to_owned(),
        );
    }
    if url.as_ref().is_some_and(|u| u.sqlite_path().is_none()) && std::env::var_os("DATABASE_URL").is_none() {
        // The file reads the URL from DATABASE_URL, which this shell does not have yet.
        next.push(
            "export DATABASE_URL=...  (the URL given with --database-url; airlock.toml reads it from there)".to_owned(),
        );
    }
    match foreign.first() {
        Some(tool) => next.push(format!(
            "airlock adopt --from {tool} --dry-run  (then without --dry-run: the database's history becomes airlock's)"
        )),
        None if migrations == 0 && unreadable.is_empty() => next.push("airlock new create_users".to_owned()),
        None => {}
    }
    next.push("airlock plan".to_owned());
    next.push("airlock migrate".to_owned());
    Ok(Initialized {
        config,
        dir,
        created_dir,
        migrations,
        layout,
        unreadable,
        foreign: foreign.iter().map(|t| t.name()).collect(),
        notes,
        next,
    })
}

/// Other tools whose history the database holds (read-only; a SQLite file
/// that does not exist is not created).
fn foreign_tools(url: &DatabaseUrl, dir: &Path) -> Result<Vec<airlock_exec::Tool>, ExecError> {
    let options = airlock_exec::Options::new(url.clone(), dir.to_path_buf());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ExecError::Usage(format!("cannot start the async runtime: {e}")))?;
    let catalog = runtime.block_on(airlock_exec::live_catalog(&options))?;
    Ok(airlock_core::foreign::detect(&catalog))
}
