//! `airlock new`: the next migration file(s), numbered the way the directory already is.

use std::fs;
use std::path::{Path, PathBuf};

use airlock_core::{discover, Version};

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

/// Creates the files; returns their paths.
pub fn create(dir: &Path, args: &NewArgs) -> Result<Vec<PathBuf>, String> {
    let name = slug(&args.name);
    if name.is_empty() {
        return Err(format!("`{}` has no letters or digits to name a migration with", args.name));
    }
    fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create the directory: {e}", dir.display()))?;
    let discovered = discover(dir).map_err(|e| e.to_string())?;
    let existing: Vec<(Version, String)> = discovered
        .migrations
        .iter()
        .map(|m| {
            let file = m.up.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            let text = file.trim_start_matches(['V', 'U']).to_owned();
            (m.version.clone(), text)
        })
        .collect();
    let now = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let version = next_version(&existing, &now, args);
    let up = dir.join(format!("{version}_{name}.up.sql"));
    let header = if args.data {
        "-- airlock:data\n-- A data migration: INSERT/UPDATE/DELETE only; batch large updates.\n\n"
    } else {
        "-- Schema changes only; put data changes in a migration made with `airlock new --data`.\n\n"
    };
    let mut paths = vec![up.clone()];
    write_new(&up, header)?;
    if !args.no_down {
        let down = dir.join(format!("{version}_{name}.down.sql"));
        write_new(&down, "-- Undo the up migration. Leave it out (`--no-down`) if it cannot be undone.\n\n")?;
        paths.push(down);
    }
    Ok(paths)
}

fn write_new(path: &Path, content: &str) -> Result<(), String> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(content.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(sequential: bool, timestamp: bool) -> NewArgs {
        NewArgs { name: "x".into(), data: false, no_down: false, sequential, timestamp }
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

    #[test]
    fn slugs_names() {
        assert_eq!(slug("Add orders index!"), "add_orders_index");
        assert_eq!(slug("  --- "), "");
    }
}
