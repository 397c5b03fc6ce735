//! `embed_migrations!`: compiles a migrations directory into a program. The
//! directory is read and checked at build time with the same discovery the CLI
//! uses, so a bad file name, a duplicate version or an unknown directive fails
//! the build, naming the file. Use it through the `airlock` crate.

use std::path::{Path, PathBuf};

use proc_macro::TokenStream;
use quote::quote;
use syn::{LitStr, parse_macro_input};

/// Embeds the migrations of a directory, relative to the calling crate's
/// `Cargo.toml`; see `airlock::embed_migrations!`.
#[proc_macro]
pub fn embed_migrations(input: TokenStream) -> TokenStream {
    let dir = parse_macro_input!(input as LitStr);
    match expand(&dir) {
        Ok(tokens) => tokens.into(),
        Err(message) => syn::Error::new(dir.span(), message).to_compile_error().into(),
    }
}

fn expand(dir: &LitStr) -> Result<proc_macro2::TokenStream, String> {
    let relative = dir.value();
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .ok_or("CARGO_MANIFEST_DIR is not set: build with cargo")?
        .join(&relative);
    // Exactly the files discovery read, so the program and the CLI agree by
    // construction (a symlinked directory or a stray `.sql` file elsewhere is
    // left out by both): for every engine, since a layout may keep files per
    // engine and the program picks its engine's at run time, and a diesel
    // folder's `metadata.toml`, which says how it runs.
    let mut files: Vec<(String, String)> = Vec::new();
    let flavors = [
        None,
        Some(airlock_core::Flavor::Postgres),
        Some(airlock_core::Flavor::MySql),
        Some(airlock_core::Flavor::Sqlite),
    ];
    for flavor in flavors {
        let options = airlock_core::DiscoverOptions { flavor, exclude: Vec::new(), cache_dir: None };
        let found = airlock_core::discover_with(&root, &options)
            .map_err(|e| format!("airlock: the migrations in `{relative}` are not usable:\n{e}"))?;
        for migration in &found.migrations {
            let metadata = migration
                .up
                .path
                .parent()
                .map(|p| p.join("metadata.toml"))
                .filter(|m| migration.up.path.ends_with("up.sql") && m.is_file());
            let paths = std::iter::once(migration.up.path.clone())
                .chain(migration.down.as_ref().map(|d| d.path.clone()))
                .chain(metadata);
            for path in paths {
                let entry = embedded_path(&root, &path)?;
                if !files.contains(&entry) {
                    files.push(entry);
                }
            }
        }
    }
    files.sort();
    let entries = files.iter().map(|(path, absolute)| {
        quote! { ::airlock::__private::EmbeddedFile { path: #path, bytes: include_bytes!(#absolute) } }
    });
    Ok(quote! {
        ::airlock::Migrations::__from_embedded(&::airlock::__private::Embedded {
            dir: #relative,
            files: &[#(#entries),*],
        })
    })
}

/// A discovered file as (path inside the root with `/`, absolute path).
fn embedded_path(root: &Path, path: &Path) -> Result<(String, String), String> {
    let inside = path.strip_prefix(root).map_err(|e| format!("airlock: `{}`: {e}", path.display()))?;
    let inside = inside
        .to_str()
        .ok_or_else(|| format!("airlock: `{}`: the file name is not valid UTF-8", path.display()))?
        .replace(std::path::MAIN_SEPARATOR, "/");
    let absolute =
        path.to_str().ok_or_else(|| format!("airlock: `{}`: the path is not valid UTF-8", path.display()))?.to_owned();
    Ok((inside, absolute))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_dir(dir: &Path) -> Result<String, String> {
        expand(&LitStr::new(dir.to_str().unwrap(), proc_macro2::Span::call_site())).map(|t| t.to_string())
    }

    #[test]
    fn embeds_sql_files_and_checks_them_at_build_time() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1_a.up.sql"), "SELECT 1;").unwrap();
        std::fs::create_dir(dir.path().join("2024-01-01-000000_b")).unwrap();
        std::fs::write(dir.path().join("2024-01-01-000000_b/up.sql"), "SELECT 2;").unwrap();
        std::fs::write(dir.path().join("README.md"), "notes").unwrap();
        std::fs::create_dir(dir.path().join("seeds")).unwrap();
        std::fs::write(dir.path().join("seeds/data.sql"), "INSERT INTO t VALUES (1);").unwrap();
        let tokens = expand_dir(dir.path()).unwrap();
        assert!(!tokens.contains("seeds"), "only what discovery reads is embedded: {tokens}");
        assert!(tokens.contains("\"1_a.up.sql\""), "{tokens}");
        assert!(tokens.contains("\"2024-01-01-000000_b/up.sql\""), "{tokens}");
        assert!(!tokens.contains("README"), "{tokens}");

        std::fs::write(dir.path().join("01_dup.up.sql"), "SELECT 1;").unwrap();
        let err = expand_dir(dir.path()).unwrap_err();
        assert!(err.contains("version 1 is used by more than one migration"), "{err}");
    }
}
