//! Engine knowledge stays behind the driver seam: the crates above it reach
//! an engine through this registry and a driver's `Profile`, never by naming
//! one. A `match` on the engine in the runner would compile silently for a
//! new engine (through a `_` arm) and do the wrong thing there.

use std::path::{Path, PathBuf};

/// Crates that must not know which engines exist.
const ABOVE_THE_SEAM: [&str; 4] = ["airlock-exec", "airlock-cli", "airlock-http", "airlock"];

/// What naming an engine looks like in code.
const ENGINE_NAMES: [&str; 10] = [
    "Engine::Postgres",
    "Engine::MySql",
    "Engine::Sqlite",
    "Dialect::Postgres",
    "Dialect::MySql",
    "Dialect::Sqlite",
    "airlock_driver_postgres",
    "airlock_driver_mysql",
    "airlock_driver_sqlite",
    "airlock-driver-",
];

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("crates/").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_crate_above_the_seam_names_an_engine() {
    let mut found = Vec::new();
    for krate in ABOVE_THE_SEAM {
        let root = crates_dir().join(krate);
        let mut files = vec![root.join("Cargo.toml")];
        rust_files(&root.join("src"), &mut files);
        assert!(files.len() > 1, "no source found under {}", root.display());
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable source");
            // Unit tests may build values of any engine; the code they test may not.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (n, line) in code.lines().enumerate() {
                let line_code = line.split("//").next().unwrap_or_default();
                for name in ENGINE_NAMES.iter().filter(|name| line_code.contains(*name)) {
                    found.push(format!("{}:{}: names `{name}`", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "engine knowledge leaked above the driver seam; reach it through the driver's Profile or \
         airlock_engines instead:\n{}",
        found.join("\n")
    );
}
