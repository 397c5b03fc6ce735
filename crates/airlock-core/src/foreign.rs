//! Other tools' histories, for `airlock adopt`: which tool migrated a
//! database (from the tables its catalog holds), what a row of its history
//! table means, the checksums those tools keep (computed here as they compute
//! them), and the pure decision of what to record, what refuses the
//! adoption and what stays pending.
//!
//! | tool | table | one row | checksum |
//! |---|---|---|---|
//! | Flyway | `flyway_schema_history` | one run (SQL, BASELINE, DELETE, UNDO...) | CRC-32 of the text without BOM, CR and LF, as a signed 32-bit integer |
//! | golang-migrate | `schema_migrations` (`version`, `dirty`) | the one current version | none |
//! | dbmate | `schema_migrations` (`version`) | one applied version | none |
//! | sqlx | `_sqlx_migrations` | one applied version (`success`) | SHA-384 of the file's bytes |
//! | diesel | `__diesel_schema_migrations` | one applied version | none |
//! | refinery | `refinery_schema_history` | one applied version | SipHash-1-3 of name, version, text |
//! | Rails | `schema_migrations` + `ar_internal_metadata` | one applied version | none |

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use sha2::Digest;

use crate::migration::Migration;
use crate::schema::Catalog;
use crate::version::Version;

/// A tool whose history `adopt` can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tool {
    /// Flyway.
    Flyway,
    /// golang-migrate (and mattermost's morph).
    GolangMigrate,
    /// dbmate.
    Dbmate,
    /// sqlx.
    Sqlx,
    /// diesel.
    Diesel,
    /// refinery.
    Refinery,
    /// Rails (ActiveRecord).
    Rails,
}

impl Tool {
    /// Every tool, in the order `--from` lists them.
    pub const ALL: [Tool; 7] =
        [Tool::Flyway, Tool::GolangMigrate, Tool::Dbmate, Tool::Sqlx, Tool::Diesel, Tool::Refinery, Tool::Rails];

    /// The name `--from` takes.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Flyway => "flyway",
            Tool::GolangMigrate => "golang-migrate",
            Tool::Dbmate => "dbmate",
            Tool::Sqlx => "sqlx",
            Tool::Diesel => "diesel",
            Tool::Refinery => "refinery",
            Tool::Rails => "rails",
        }
    }

    /// The tool `--from` names (`migrate` and `morph` are golang-migrate).
    pub fn parse(name: &str) -> Option<Tool> {
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "migrate" | "morph" | "golang_migrate" => Some(Tool::GolangMigrate),
            "activerecord" => Some(Tool::Rails),
            _ => Tool::ALL.into_iter().find(|t| t.name() == name),
        }
    }

    /// Its history table's default name.
    pub fn table(self) -> &'static str {
        match self {
            Tool::Flyway => "flyway_schema_history",
            Tool::GolangMigrate | Tool::Dbmate | Tool::Rails => "schema_migrations",
            Tool::Sqlx => "_sqlx_migrations",
            Tool::Diesel => "__diesel_schema_migrations",
            Tool::Refinery => "refinery_schema_history",
        }
    }
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The tools whose history tables the live database holds. `schema_migrations`
/// is told apart by its columns (golang-migrate's has `dirty`) and by Rails'
/// `ar_internal_metadata` beside it.
pub fn detect(catalog: &Catalog) -> Vec<Tool> {
    let table = |name: &str| catalog.table(&crate::schema::TableName::bare(name)).table();
    let mut found = Vec::new();
    for tool in [Tool::Flyway, Tool::Sqlx, Tool::Diesel, Tool::Refinery] {
        if table(tool.table()).is_some() {
            found.push(tool);
        }
    }
    if let Some(t) = table("schema_migrations") {
        found.push(if t.column("dirty").is_some() {
            Tool::GolangMigrate
        } else if table("ar_internal_metadata").is_some() {
            Tool::Rails
        } else {
            Tool::Dbmate
        });
    }
    found
}

/// One row of another tool's history table, as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForeignRow {
    /// The version as the tool stored it.
    pub version: Option<String>,
    /// Its description or name, when the tool keeps one.
    pub name: Option<String>,
    /// Flyway's row type (`SQL`, `BASELINE`, `DELETE`, `UNDO_SQL`...).
    pub kind: Option<String>,
    /// Its checksum as stored (Flyway: a signed integer; sqlx: hex; refinery: a decimal u64).
    pub checksum: Option<String>,
    /// The run succeeded (false: Flyway/sqlx `success = false`, golang-migrate `dirty`).
    pub ok: bool,
}

/// What adopting another tool's history would do.
#[derive(Debug, Default)]
pub struct Adoption<'a> {
    /// The migrations to record as applied, with how the tool knew each
    /// (`recorded`, `below the baseline`, `up to the current version`).
    pub adopt: Vec<(&'a Migration, &'static str)>,
    /// How many of them had their checksum compared (and matched).
    pub checksums_compared: usize,
    /// Why the adoption is refused: versions the checkout lacks, checksums
    /// that differ, a run the tool marks failed or dirty.
    pub refusals: Vec<String>,
    /// Notes that do not refuse (repeatable Flyway migrations left out).
    pub notes: Vec<String>,
    /// Files the tool never applied: pending after the adoption.
    pub pending: Vec<&'a Migration>,
}

/// Flyway's checksum of a SQL migration: CRC-32 (IEEE) over the file's text,
/// read line by line (a leading BOM dropped, every CR and LF left out), as a
/// signed 32-bit integer.
pub fn flyway_checksum(text: &str) -> i32 {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut crc = crc32fast::Hasher::new();
    for piece in text.split(['\r', '\n']) {
        crc.update(piece.as_bytes());
    }
    crc.finalize() as i32
}

/// sqlx's checksum: SHA-384 of the file's bytes exactly as read, lower-case hex.
pub fn sqlx_checksum(bytes: &[u8]) -> String {
    sha2::Sha384::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// refinery's checksum: SipHash-1-3 (keys 0, 0) fed the name, the version
/// and the file's text the way Rust's `Hash` feeds them, as a decimal u64.
/// The version is hashed as an `i32` (or an `i64`, with refinery's 64-bit
/// versions).
pub fn refinery_checksum(name: &str, version: i64, text: &str, wide: bool) -> String {
    let mut hasher = siphasher::sip::SipHasher13::new();
    name.hash(&mut hasher);
    if wide {
        version.hash(&mut hasher);
    } else {
        (version as i32).hash(&mut hasher);
    }
    text.hash(&mut hasher);
    hasher.finish().to_string()
}

/// A version for comparing with another tool's: Flyway ignores trailing zero
/// parts (`1.0` is `1`), leading zeros never count.
fn key(version: &str, tool: Tool) -> Option<Version> {
    let digits: String = match tool {
        Tool::Diesel => version.chars().filter(|c| *c != '-').collect(),
        Tool::Flyway => version.replace('_', "."),
        _ => version.trim().to_owned(),
    };
    let mut parsed = Version::parse(&digits).ok()?;
    if tool == Tool::Flyway {
        let text = parsed.to_string();
        let mut parts: Vec<&str> = text.split('.').collect();
        while parts.len() > 1 && parts.last().is_some_and(|p| p.trim_start_matches('0').is_empty()) {
            parts.pop();
        }
        parsed = Version::parse(&parts.join(".")).ok()?;
    }
    Some(parsed)
}

/// Decides an adoption: `rows` of `tool`'s history over this checkout's
/// `migrations`; `raw` gives a migration file's bytes as on disk (for the
/// checksums taken over raw bytes). Pure: no database, no file system.
pub fn plan_adoption<'a>(
    tool: Tool,
    rows: &[ForeignRow],
    migrations: &'a [Migration],
    raw: &dyn Fn(&Migration) -> Option<Vec<u8>>,
) -> Adoption<'a> {
    let mut out = Adoption::default();
    let files: BTreeMap<Version, &Migration> =
        migrations.iter().filter_map(|m| Some((key(&m.version.to_string(), tool)?, m))).collect();
    // The versions the tool has applied, with how it knew, and the row.
    let mut applied: BTreeMap<Version, (&'static str, Option<&ForeignRow>)> = BTreeMap::new();
    match tool {
        Tool::GolangMigrate => {
            if let Some(row) = rows.iter().find(|r| r.version.is_some()) {
                let current = row.version.as_deref().unwrap_or_default();
                if !row.ok {
                    out.refusals.push(format!(
                        "golang-migrate marks version {current} dirty: it failed or was cut off; make the schema right, then `migrate force` with that tool, and adopt again"
                    ));
                }
                match key(current, tool) {
                    // `-1`: a failed down of the first migration; nothing is applied.
                    None if current.starts_with('-') => {}
                    None => out.refusals.push(format!("golang-migrate's version `{current}` is not a version")),
                    Some(current) => {
                        if !files.contains_key(&current) {
                            out.refusals.push(format!(
                                "golang-migrate is at version {current}, which no migration file here has"
                            ));
                        }
                        for version in files.keys().filter(|v| **v <= current) {
                            applied.insert(version.clone(), ("up to golang-migrate's current version", Some(row)));
                        }
                    }
                }
            }
        }
        Tool::Flyway => {
            let mut baseline: Option<Version> = None;
            for row in rows {
                let kind = row.kind.as_deref().unwrap_or("SQL").to_ascii_uppercase();
                let Some(version_text) = row.version.as_deref() else {
                    if kind != "SCHEMA" {
                        out.notes.push(format!(
                            "Flyway ran the repeatable migration `{}`; airlock has no repeatable migrations, so it is not adopted",
                            row.name.as_deref().unwrap_or("?")
                        ));
                    }
                    continue;
                };
                let Some(version) = key(version_text, tool) else {
                    out.refusals.push(format!("Flyway's version `{version_text}` is not a version"));
                    continue;
                };
                match kind.as_str() {
                    "SCHEMA" => {}
                    "BASELINE" => baseline = Some(version),
                    "DELETE" => {
                        applied.remove(&version);
                    }
                    k if k.starts_with("UNDO") => {
                        if row.ok {
                            applied.remove(&version);
                        }
                    }
                    _ if !row.ok => {
                        out.refusals.push(format!(
                            "Flyway recorded migration {version_text} as failed (success = false): repair it with Flyway (`flyway repair`) or by hand first"
                        ));
                    }
                    _ => {
                        applied.insert(version, ("recorded", Some(row)));
                    }
                }
            }
            if let Some(baseline) = baseline {
                for version in files.keys().filter(|v| **v <= baseline) {
                    applied.entry(version.clone()).or_insert(("at or below Flyway's baseline", None));
                }
            }
        }
        _ => {
            for row in rows {
                let Some(text) = row.version.as_deref() else { continue };
                let Some(version) = key(text, tool) else {
                    out.refusals.push(format!("{tool} lists `{text}`, which is not a version"));
                    continue;
                };
                if !row.ok {
                    out.refusals.push(format!(
                        "{tool} recorded migration {text} as not successful (a run that failed part-way): make the schema right and fix its history with {tool} first"
                    ));
                    continue;
                }
                applied.insert(version, ("recorded", Some(row)));
            }
        }
    }
    let unknown: Vec<String> = applied
        .iter()
        .filter(|(v, (how, _))| !files.contains_key(v) && *how == "recorded")
        .map(|(v, _)| v.to_string())
        .collect();
    if !unknown.is_empty() {
        out.refusals.push(format!(
            "{tool}'s history lists {} version(s) this checkout has no migration for: {} (is this the right project and branch?)",
            unknown.len(),
            unknown.join(", ")
        ));
    }
    let mut adopted = BTreeSet::new();
    for (version, (how, row)) in &applied {
        let Some(migration) = files.get(version).copied() else { continue };
        if let Some(row) = row {
            match checksum_differs(tool, row, migration, raw) {
                Some(Ok(())) => out.checksums_compared += 1,
                Some(Err(why)) => {
                    out.refusals.push(format!(
                        "migration {} ({}): {why}",
                        migration.version,
                        migration.up.path.display()
                    ));
                    continue;
                }
                None => {}
            }
        }
        adopted.insert(version.clone());
        out.adopt.push((migration, how));
    }
    out.pending =
        files.iter().filter(|(v, _)| !adopted.contains(*v) && !applied.contains_key(*v)).map(|(_, m)| *m).collect();
    out
}

/// Compares the tool's stored checksum with the file's, computed the tool's
/// way. None: the tool keeps none (or this row has none) to compare.
fn checksum_differs(
    tool: Tool,
    row: &ForeignRow,
    migration: &Migration,
    raw: &dyn Fn(&Migration) -> Option<Vec<u8>>,
) -> Option<Result<(), String>> {
    let stored = row.checksum.as_deref().map(str::trim).filter(|c| !c.is_empty())?;
    let differs = |computed: String| {
        Err(format!(
            "the file's {tool} checksum is {computed}, but {tool} recorded {stored} when it ran it: the file was edited since; restore it, or adopt from a checkout that has it as it ran"
        ))
    };
    match tool {
        Tool::Flyway => {
            let text = String::from_utf8_lossy(&raw(migration)?).into_owned();
            let computed = flyway_checksum(&text);
            if stored.parse::<i64>().ok() == Some(i64::from(computed)) {
                Some(Ok(()))
            } else {
                Some(differs(computed.to_string()))
            }
        }
        Tool::Sqlx => {
            let computed = sqlx_checksum(&raw(migration)?);
            if stored.eq_ignore_ascii_case(&computed) { Some(Ok(())) } else { Some(differs(computed)) }
        }
        Tool::Refinery => {
            let text = String::from_utf8_lossy(&raw(migration)?).into_owned();
            let version: i64 = migration.version.to_string().parse().ok()?;
            let name = row.name.as_deref().unwrap_or(&migration.name);
            let narrow = refinery_checksum(name, version, &text, false);
            if stored == narrow || stored == refinery_checksum(name, version, &text, true) {
                Some(Ok(()))
            } else {
                Some(differs(narrow))
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{Embedded, EmbeddedFile, discover_embedded};

    fn migrations(files: &'static [EmbeddedFile]) -> Vec<Migration> {
        discover_embedded(&Embedded { dir: "migrations", files }).unwrap().migrations
    }

    fn row(version: &str) -> ForeignRow {
        ForeignRow { version: Some(version.to_owned()), ok: true, ..ForeignRow::default() }
    }

    fn raw_of(files: &'static [EmbeddedFile]) -> impl Fn(&Migration) -> Option<Vec<u8>> {
        move |m: &Migration| files.iter().find(|f| m.up.path.ends_with(f.path)).map(|f| f.bytes.to_vec())
    }

    #[test]
    fn flyway_checksums_are_crc32_of_the_lines() {
        // Line endings and a BOM never change it; other characters do.
        let plain = flyway_checksum("CREATE TABLE t (a int);\nINSERT INTO t VALUES (1);\n");
        assert_eq!(plain, flyway_checksum("\u{feff}CREATE TABLE t (a int);\r\nINSERT INTO t VALUES (1);"));
        assert_ne!(plain, flyway_checksum("CREATE TABLE t (a int); INSERT INTO t VALUES (1);"));
        // The IEEE CRC-32 of "123456789" is 0xCBF43926, stored signed.
        assert_eq!(flyway_checksum("123456789"), 0xCBF4_3926_u32 as i32);
    }

    #[test]
    fn sqlx_checksums_are_sha384_of_the_bytes() {
        assert_eq!(
            sqlx_checksum(b"abc"),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"
        );
    }

    #[test]
    fn schema_migrations_is_told_apart_by_its_columns() {
        use crate::schema::{Column, Table, TableName};
        let table = |name: &str, columns: &[&str]| {
            let mut t = Table::created(TableName::bare(name), "0");
            t.columns = columns.iter().map(|c| Column { name: (*c).to_owned(), ..Column::default() }).collect();
            t
        };
        let detect_in = |tables: Vec<Table>| detect(&Catalog::live(tables));
        assert_eq!(detect_in(vec![table("schema_migrations", &["version", "dirty"])]), [Tool::GolangMigrate]);
        assert_eq!(detect_in(vec![table("schema_migrations", &["version"])]), [Tool::Dbmate]);
        assert_eq!(
            detect_in(vec![table("schema_migrations", &["version"]), table("ar_internal_metadata", &["key"])]),
            [Tool::Rails]
        );
        assert_eq!(
            detect_in(vec![table("flyway_schema_history", &["version"]), table("users", &["id"])]),
            [Tool::Flyway]
        );
        assert!(detect_in(vec![table("users", &["id"])]).is_empty());
    }

    static FLYWAY: &[EmbeddedFile] = &[
        EmbeddedFile { path: "V1__users.sql", bytes: b"CREATE TABLE users (id int);\n" },
        EmbeddedFile { path: "V1_1__email.sql", bytes: b"ALTER TABLE users ADD email text;\r\n" },
        EmbeddedFile { path: "V2__orders.sql", bytes: b"CREATE TABLE orders (id int);\n" },
        EmbeddedFile { path: "V3__later.sql", bytes: b"SELECT 3;\n" },
    ];

    #[test]
    fn flyway_history_is_replayed_with_baselines_deletes_and_checksums() {
        let ms = migrations(FLYWAY);
        let crc = |i: usize| Some(flyway_checksum(std::str::from_utf8(FLYWAY[i].bytes).unwrap()).to_string());
        let rows = vec![
            ForeignRow { kind: Some("BASELINE".into()), ..row("1") },
            ForeignRow { kind: Some("SQL".into()), checksum: crc(1), ..row("1.1") },
            ForeignRow { kind: Some("SQL".into()), checksum: crc(2), ..row("2") },
            ForeignRow { kind: Some("SQL".into()), name: Some("views".into()), version: None, ..row("") },
        ];
        let a = plan_adoption(Tool::Flyway, &rows, &ms, &raw_of(FLYWAY));
        assert!(a.refusals.is_empty(), "{:?}", a.refusals);
        let adopted: Vec<String> = a.adopt.iter().map(|(m, _)| m.version.to_string()).collect();
        assert_eq!(adopted, ["1", "1.1", "2"]);
        assert_eq!(a.adopt[0].1, "at or below Flyway's baseline");
        assert_eq!(a.checksums_compared, 2);
        assert_eq!(a.pending.iter().map(|m| m.version.to_string()).collect::<Vec<_>>(), ["3"]);
        assert_eq!(a.notes.len(), 1, "the repeatable migration is named: {:?}", a.notes);

        // An edited file, a version the checkout lacks, a failed run: each refuses, named.
        let rows = vec![
            ForeignRow { kind: Some("SQL".into()), checksum: Some("12345".into()), ..row("1") },
            ForeignRow { kind: Some("SQL".into()), ..row("7") },
            ForeignRow { kind: Some("SQL".into()), ok: false, ..row("2") },
        ];
        let a = plan_adoption(Tool::Flyway, &rows, &ms, &raw_of(FLYWAY));
        let all = a.refusals.join("\n");
        assert!(all.contains("migration 1 (") && all.contains("recorded 12345"), "{all}");
        assert!(all.contains("no migration for: 7"), "{all}");
        assert!(all.contains("migration 2 as failed"), "{all}");
        // A version removed by a DELETE row is pending again.
        let rows = vec![
            ForeignRow { kind: Some("SQL".into()), ..row("2") },
            ForeignRow { kind: Some("DELETE".into()), ..row("2") },
        ];
        assert!(plan_adoption(Tool::Flyway, &rows, &ms, &raw_of(FLYWAY)).adopt.is_empty());
    }

    static NUMBERED: &[EmbeddedFile] = &[
        EmbeddedFile { path: "1_users.up.sql", bytes: b"CREATE TABLE users (id int);\n" },
        EmbeddedFile { path: "2_orders.up.sql", bytes: b"CREATE TABLE orders (id int);\n" },
        EmbeddedFile { path: "3_later.up.sql", bytes: b"SELECT 3;\n" },
    ];

    #[test]
    fn golang_migrate_adopts_everything_up_to_its_version_and_refuses_dirty() {
        let ms = migrations(NUMBERED);
        let a = plan_adoption(Tool::GolangMigrate, &[row("2")], &ms, &raw_of(NUMBERED));
        assert_eq!(a.adopt.len(), 2);
        assert!(a.refusals.is_empty());
        let dirty = plan_adoption(Tool::GolangMigrate, &[ForeignRow { ok: false, ..row("2") }], &ms, &raw_of(NUMBERED));
        assert!(dirty.refusals[0].contains("dirty"), "{:?}", dirty.refusals);
        let beyond = plan_adoption(Tool::GolangMigrate, &[row("9")], &ms, &raw_of(NUMBERED));
        assert!(beyond.refusals[0].contains("version 9"), "{:?}", beyond.refusals);
    }

    #[test]
    fn sqlx_and_refinery_checksums_are_compared() {
        let ms = migrations(NUMBERED);
        let sum = sqlx_checksum(NUMBERED[0].bytes);
        let ok = plan_adoption(
            Tool::Sqlx,
            &[ForeignRow { checksum: Some(sum.to_uppercase()), ..row("1") }],
            &ms,
            &raw_of(NUMBERED),
        );
        assert_eq!((ok.adopt.len(), ok.checksums_compared, ok.refusals.len()), (1, 1, 0));
        let edited = plan_adoption(
            Tool::Sqlx,
            &[ForeignRow { checksum: Some("00".into()), ..row("1") }],
            &ms,
            &raw_of(NUMBERED),
        );
        assert!(edited.adopt.is_empty() && edited.refusals[0].contains("edited"), "{:?}", edited.refusals);
        let failed = plan_adoption(Tool::Sqlx, &[ForeignRow { ok: false, ..row("1") }], &ms, &raw_of(NUMBERED));
        assert!(failed.refusals[0].contains("not successful"));

        let text = std::str::from_utf8(NUMBERED[1].bytes).unwrap();
        let sum = refinery_checksum("orders", 2, text, false);
        let ok = plan_adoption(
            Tool::Refinery,
            &[ForeignRow { name: Some("orders".into()), checksum: Some(sum), ..row("2") }],
            &ms,
            &raw_of(NUMBERED),
        );
        assert_eq!((ok.adopt.len(), ok.checksums_compared), (1, 1), "{:?}", ok.refusals);
    }

    #[test]
    fn diesel_versions_lose_their_dashes() {
        static DIESEL: &[EmbeddedFile] =
            &[EmbeddedFile { path: "2019-02-26-002946_users/up.sql", bytes: b"SELECT 1;" }];
        let ms = migrations(DIESEL);
        let a = plan_adoption(Tool::Diesel, &[row("20190226002946")], &ms, &raw_of(DIESEL));
        assert_eq!(a.adopt.len(), 1, "{:?}", a.refusals);
    }
}
