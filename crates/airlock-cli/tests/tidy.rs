//! Keeps the house tidy: every source module says what it is for in a `//!`
//! line at its top, and no placeholder (`todo!`, `unimplemented!`) or debug
//! print (`dbg!`) ships in library or binary code.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn crate_sources() -> Vec<PathBuf> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for krate in std::fs::read_dir(crates).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            sources(&src, &mut files);
        }
    }
    assert!(files.len() > 20, "found the sources: {}", files.len());
    files
}

#[test]
fn every_module_says_what_it_is_for() {
    let missing: Vec<_> = crate_sources()
        .into_iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().trim_start().starts_with("//!"))
        .collect();
    assert!(missing.is_empty(), "modules without a `//!` line at the top: {missing:?}");
}

#[test]
fn no_placeholders_or_debug_prints_ship() {
    let banned = ["todo!(", "unimplemented!(", "dbg!("];
    let mut found = Vec::new();
    for file in crate_sources() {
        let text = std::fs::read_to_string(&file).unwrap();
        // Only the code before the unit tests counts.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            if banned.iter().any(|b| line.contains(b)) && !line.trim_start().starts_with("//") {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

/// Under `scripts/test` the servers and tools are there, so no test that
/// needs them may be ignored: a build that missed them (see build.rs) fails here.
#[test]
fn the_harness_runs_every_server_test() {
    let built_with_servers = cfg!(airlock_test_servers);
    if std::env::var_os("AIRLOCK_TEST_REQUIRE_SERVERS").is_some() {
        assert!(
            built_with_servers,
            "scripts/test started the servers, but the tests were built without them (AIRLOCK_TEST_POSTGRES_URL, AIRLOCK_TEST_MYSQL_URL, AIRLOCK_TEST_DBMATE): every test that needs them would be ignored"
        );
    }
}
