//! Safe patterns that must produce no error and no warning: the linter's
//! precision is what makes people keep it on. Also allows and unparsable SQL.

use airlock_core::schema::{Catalog, Column, Origin, Table};
use airlock_core::{Embedded, EmbeddedFile, discover_embedded};
use airlock_lint::{LintOptions, Report, Severity, lint};
use airlock_sql::Dialect;
use airlock_sql::parse::TableName;

fn report(dialect: Dialect, files: &'static [EmbeddedFile], catalog: Catalog) -> Report {
    let found = discover_embedded(&Embedded { dir: "migrations", files }).unwrap();
    lint(&found.migrations, catalog, &LintOptions::new(dialect))
}

fn serious(report: &Report) -> Vec<String> {
    report
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .map(|f| format!("{}:{} {} {}", f.file.display(), f.line, f.rule, f.message))
        .collect()
}

macro_rules! files {
    ($($name:literal => $sql:literal),* $(,)?) => {
        &[$(EmbeddedFile { path: $name, bytes: $sql.as_bytes() }),*]
    };
}

#[test]
fn safe_postgres_patterns_are_clean() {
    static FILES: &[EmbeddedFile] = files![
        // An index on a table created in the same migration.
        "1_orders.up.sql" => "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint, note varchar(20));\nCREATE INDEX orders_user ON orders (user_id);\n",
        "1_orders.down.sql" => "DROP TABLE orders;\n",
        // CREATE INDEX CONCURRENTLY alone in a no-transaction file.
        "2_index.up.sql" => "-- airlock:no-transaction\nCREATE INDEX CONCURRENTLY orders_note ON orders (note);\n",
        "2_index.down.sql" => "-- airlock:no-transaction\nDROP INDEX CONCURRENTLY orders_note;\n",
        // FK NOT VALID, then VALIDATE in a later migration.
        "3_fk.up.sql" => "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n",
        "3_fk.down.sql" => "ALTER TABLE orders DROP CONSTRAINT orders_user_fk;\n",
        "4_validate.up.sql" => "ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk;\n",
        "4_validate.down.sql" => "SELECT 1;\n",
        // A nullable column, and one with a constant default.
        "5_columns.up.sql" => "ALTER TABLE users ADD COLUMN nickname text;\nALTER TABLE users ADD COLUMN score int NOT NULL DEFAULT 0;\n",
        "5_columns.down.sql" => "SELECT 1;\n",
        // A data migration with a bounded statement.
        "6_backfill.up.sql" => "-- airlock:data\nUPDATE users SET score = 1 WHERE id BETWEEN 1 AND 1000;\n",
        "6_backfill.down.sql" => "SELECT 1;\n",
    ];
    assert_eq!(serious(&report(Dialect::Postgres, FILES, Catalog::offline())), Vec::<String>::new());
}

#[test]
fn varchar_to_text_is_clean_against_the_live_type() {
    static FILES: &[EmbeddedFile] = files![
        "1_text.up.sql" => "ALTER TABLE users ALTER COLUMN name TYPE text;\n",
        "1_text.down.sql" => "SELECT 1;\n",
    ];
    let users = Table {
        name: TableName::bare("users"),
        columns: vec![Column {
            name: "name".into(),
            data_type: "character varying(50)".into(),
            nullable: true,
            ..Column::default()
        }],
        indexes: Vec::new(),
        constraints: Vec::new(),
        triggers: Vec::new(),
        rows: Some(5e6),
        bytes: None,
        origin: Origin::Live,
        charset: None,
    };
    let report = report(Dialect::Postgres, FILES, Catalog::live(vec![users]));
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

#[test]
fn allows_suppress_with_a_reason_and_unused_ones_are_reported() {
    static FILES: &[EmbeddedFile] = files![
        "1_drop.up.sql" => "DROP TABLE other;\n-- airlock:allow drop-table the legacy table is unused since v42\nDROP TABLE legacy;\n-- airlock:allow drop-column nothing to drop here\nCREATE TABLE t (a int);\n",
        "1_drop.down.sql" => "SELECT 1;\n",
    ];
    let report = report(Dialect::Postgres, FILES, Catalog::offline());
    let suppressed: Vec<(&str, usize)> = report.suppressed.iter().map(|s| (s.finding.rule, s.finding.line)).collect();
    assert_eq!(suppressed, [("drop-table", 3)], "only the statement after the allow");
    assert!(report.suppressed[0].reason.contains("unused since v42"));
    let found: Vec<(&str, usize)> = report.findings.iter().map(|f| (f.rule, f.line)).collect();
    assert!(found.contains(&("drop-table", 1)), "{found:?}");
    assert!(found.contains(&("unused-allow", 4)), "{found:?}");
}

#[test]
fn a_statement_postgres_refuses_is_an_error_at_its_position_and_the_rest_is_checked() {
    static FILES: &[EmbeddedFile] = files![
        "1_bad.up.sql" => "CREATE TABEL t (a int);\nCREATE INDEX i ON users (a);\n",
        "1_bad.down.sql" => "SELECT 1;\n",
    ];
    let report = report(Dialect::Postgres, FILES, Catalog::offline());
    let found: Vec<(&str, usize)> = report.findings.iter().map(|f| (f.rule, f.line)).collect();
    assert_eq!(found, [("syntax-error", 1), ("require-concurrent-index", 2)]);
    let syntax = &report.findings[0];
    assert_eq!(syntax.severity, airlock_lint::Severity::Error);
    assert!(syntax.message.contains("line 1, column 8") && syntax.message.contains("TABEL"), "{}", syntax.message);
    assert_eq!(syntax.span.clone().map(|s| s.start), Some(7), "the span starts where the parser stopped");
    assert!(!syntax.message.contains("Invalid statement"), "the parser's own words only: {}", syntax.message);

    // Cut off: the parser stops at the end of the text, which is where the finding points.
    static CUT: &[EmbeddedFile] =
        files!["1_cut.up.sql" => "SELECT 1;\nCREATE TABLE t (\n  a int\n", "1_cut.down.sql" => "SELECT 1;\n"];
    let cut_report = self::report(Dialect::Postgres, CUT, Catalog::offline());
    let cut = cut_report.findings.iter().find(|f| f.rule == "syntax-error").expect("a syntax error");
    assert!(cut.message.contains("at end of input") && cut.message.contains("line 3, column 8"), "{}", cut.message);
    assert_eq!(cut.line, 3);
}

#[test]
fn a_statement_the_general_parser_cannot_read_is_a_warning_or_with_strict_an_error() {
    static FILES: &[EmbeddedFile] = files![
        "1_bad.up.sql" => "CREATE TABLE t (a int) FROBNICATE;\nALTER TABLE t ADD COLUMN b int;\n",
        "1_bad.down.sql" => "SELECT 1;\n",
    ];
    let lax = report(Dialect::MySql, FILES, Catalog::offline());
    let found: Vec<(&str, airlock_lint::Severity)> = lax.findings.iter().map(|f| (f.rule, f.severity)).collect();
    assert!(found.contains(&("unparsed-statement", airlock_lint::Severity::Warning)), "{found:?}");
    let discovered = airlock_core::discover_embedded(&Embedded { dir: "migrations", files: FILES }).unwrap();
    let mut strict = LintOptions::new(Dialect::MySql);
    strict.strict = true;
    let strict = airlock_lint::lint(&discovered.migrations, Catalog::offline(), &strict);
    assert!(
        strict.findings.iter().any(|f| f.rule == "unparsed-statement" && f.severity == airlock_lint::Severity::Error),
        "{:?}",
        strict.findings
    );
}

#[test]
fn every_rule_has_a_doc_page() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/rules");
    let index = std::fs::read_to_string(docs.join("README.md")).unwrap();
    for id in airlock_lint::rules::ids() {
        let page = std::fs::read_to_string(docs.join(format!("{id}.md")))
            .unwrap_or_else(|_| panic!("docs/rules/{id}.md is missing"));
        for heading in ["## Problem", "## Why it matters", "## Safe alternative", "## Example"] {
            assert!(page.contains(heading), "docs/rules/{id}.md has no `{heading}`");
        }
        assert!(index.contains(&format!("[`{id}`]({id}.md)")), "docs/rules/README.md does not list {id}");
    }
}

#[test]
fn set_not_null_after_a_validated_check_is_clean_offline() {
    static FILES: &[EmbeddedFile] = files![
        "1_check.up.sql" => "ALTER TABLE users ADD CONSTRAINT email_nn CHECK (email IS NOT NULL) NOT VALID;\n",
        "1_check.down.sql" => "ALTER TABLE users DROP CONSTRAINT email_nn;\n",
        "2_validate.up.sql" => "ALTER TABLE users VALIDATE CONSTRAINT email_nn;\n",
        "2_validate.down.sql" => "SELECT 1;\n",
        "3_not_null.up.sql" => "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\nALTER TABLE users DROP CONSTRAINT email_nn;\n",
        "3_not_null.down.sql" => "SELECT 1;\n",
    ];
    assert_eq!(serious(&report(Dialect::Postgres, FILES, Catalog::offline())), Vec::<String>::new());
}

#[test]
fn an_allow_before_the_statement_covers_a_file_level_finding() {
    static FILES: &[EmbeddedFile] = files![
        "1_mixed.up.sql" => "ALTER TABLE t ADD COLUMN b int;\n-- airlock:allow concurrent-in-transaction the runner refuses it anyway; kept to test allows\nCREATE INDEX CONCURRENTLY i ON t (b);\n",
        "1_mixed.down.sql" => "SELECT 1;\n",
    ];
    let report = report(Dialect::Postgres, FILES, Catalog::offline());
    assert!(report.suppressed.iter().any(|s| s.finding.rule == "concurrent-in-transaction"), "{:?}", report.findings);
    assert!(!report.findings.iter().any(|f| f.rule == "unused-allow"), "{:?}", report.findings);
}

#[test]
fn a_configured_severity_keeps_a_rule_s_step_down() {
    static FILES: &[EmbeddedFile] = files![
        "1_type.up.sql" => "ALTER TABLE t ALTER COLUMN id TYPE bigint;\n",
        "1_type.down.sql" => "SELECT 1;\n",
    ];
    let found = discover_embedded(&Embedded { dir: "migrations", files: FILES }).unwrap();
    let mut options = LintOptions::new(Dialect::Postgres);
    // Offline the rule can only warn (one step below its default, error).
    options.severities.insert("changing-column-type".into(), Some(Severity::Error));
    let report = lint(&found.migrations, Catalog::offline(), &options);
    assert_eq!(report.findings[0].severity, Severity::Warning);
    options.severities.insert("changing-column-type".into(), Some(Severity::Warning));
    let report = lint(&found.migrations, Catalog::offline(), &options);
    assert_eq!(report.findings[0].severity, Severity::Info);
}

#[test]
fn findings_below_the_least_severity_are_not_kept() {
    static FILES: &[EmbeddedFile] = files![
        // No down script: a note. A lock-taking index on an existing table: an error.
        "1_index.up.sql" => "CREATE INDEX t_v ON t (v);\n",
    ];
    let found = discover_embedded(&Embedded { dir: "migrations", files: FILES }).unwrap();
    let all = lint(&found.migrations, Catalog::offline(), &LintOptions::new(Dialect::Postgres));
    let rules = |r: &Report| r.findings.iter().map(|f| (f.rule, f.severity)).collect::<Vec<_>>();
    assert!(rules(&all).contains(&("missing-down", Severity::Info)), "{:?}", rules(&all));
    let options = LintOptions { least: Severity::Warning, ..LintOptions::new(Dialect::Postgres) };
    let kept = lint(&found.migrations, Catalog::offline(), &options);
    assert!(
        !kept.findings.is_empty() && kept.findings.iter().all(|f| f.severity >= Severity::Warning),
        "{:?}",
        rules(&kept)
    );
    assert_eq!(kept.findings.len(), all.findings.iter().filter(|f| f.severity >= Severity::Warning).count());
}
