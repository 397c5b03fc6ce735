//! Property tests: no input makes `split`, `classify` or `is_blank` panic, and
//! successful splits are exact and stable under re-splitting.

use airlock_sql::{Dialect, classify, is_blank, split};
use proptest::prelude::*;

const DIALECTS: [Dialect; 3] = [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite];

/// Fragments that exercise every lexical rule; random strings rarely do.
const FRAGMENTS: &[&str] = &[
    " ",
    "\n",
    "\r\n",
    "\t",
    ";",
    ";;",
    "'",
    "''",
    "\"",
    "`",
    "[",
    "]",
    "\\",
    "--",
    "-- c\n",
    "#",
    "/*",
    "*/",
    "/*!",
    "$",
    "$$",
    "$a$",
    "$1",
    "E'",
    "e",
    "x",
    "1",
    "é",
    "€",
    "(",
    ")",
    ".",
    "=",
    "@",
    "//",
    "BEGIN",
    "begin",
    "ATOMIC",
    "END",
    "CASE",
    "IF",
    "LOOP",
    "CREATE",
    "create",
    "TRIGGER",
    "PROCEDURE",
    "FUNCTION",
    "EVENT",
    "DEFINER",
    "TEMP",
    "OR",
    "REPLACE",
    "WORK",
    "DELIMITER ",
    "\nDELIMITER //\n",
    "\nDELIMITER ;\n",
    "SELECT",
    "INDEX",
    "CONCURRENTLY",
    "ROLLBACK",
    "TO",
    "VACUUM",
    "COMMIT",
    "START",
    "TRANSACTION",
];

fn sql_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40).prop_map(|parts| parts.concat())
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), sql_soup()]
}

fn check_split(source: &str, dialect: Dialect) -> Result<(), TestCaseError> {
    let Ok(statements) = split(source, dialect) else {
        prop_assert!(!is_blank(source, dialect));
        return Ok(());
    };
    prop_assert_eq!(is_blank(source, dialect), statements.is_empty());
    let mut previous_end = 0;
    for s in &statements {
        prop_assert!(s.span.start >= previous_end, "spans overlap or are out of order");
        prop_assert!(s.span.start < s.span.end, "empty statement");
        prop_assert!(source.is_char_boundary(s.span.start) && source.is_char_boundary(s.span.end));
        prop_assert_eq!(source.get(s.span.clone()), Some(s.sql.as_str()));
        let line = 1 + source[..s.span.start].matches('\n').count();
        prop_assert_eq!(s.line, line);
        previous_end = s.span.end;
    }
    if dialect != Dialect::MySql {
        let texts: Vec<&str> = statements.iter().map(|s| s.sql.as_str()).collect();
        let joined = texts.join(";");
        let again = split(&joined, dialect);
        prop_assert!(again.is_ok(), "re-split of {:?} failed: {:?}", joined, again);
        let again = again.unwrap_or_default();
        let again: Vec<&str> = again.iter().map(|s| s.sql.as_str()).collect();
        prop_assert_eq!(again, texts);
    }
    Ok(())
}

proptest! {
    #[test]
    fn never_panics_and_spans_are_exact(source in any_text()) {
        for dialect in DIALECTS {
            check_split(&source, dialect)?;
            let _ = classify(&source, dialect);
        }
    }

    #[test]
    fn classify_never_panics_on_statements(source in sql_soup()) {
        for dialect in DIALECTS {
            for statement in split(&source, dialect).unwrap_or_default() {
                let info = classify(&statement.sql, dialect);
                prop_assert!(info.head.split(' ').count() <= 3);
            }
        }
    }
}
