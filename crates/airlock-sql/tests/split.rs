//! Table tests for `split`: minimal SQL in, expected statements (text, line) or error out.

use airlock_sql::{Dialect, SplitError, split};

use Dialect::{MySql, Postgres, Sqlite};

/// One case: dialect, source, expected `(sql, line)` of every statement.
type Case = (Dialect, &'static str, &'static [(&'static str, usize)]);

fn run(cases: &[Case]) {
    for (i, (dialect, source, expected)) in cases.iter().enumerate() {
        let statements = match split(source, *dialect) {
            Ok(statements) => statements,
            Err(e) => panic!("case {i} ({dialect:?}) {source:?}: unexpected error {e}"),
        };
        let got: Vec<(&str, usize)> = statements.iter().map(|s| (s.sql.as_str(), s.line)).collect();
        assert_eq!(&got, expected, "case {i} ({dialect:?}) {source:?}");
        for s in &statements {
            assert_eq!(&source[s.span.clone()], s.sql, "case {i}: span");
        }
    }
}

/// One error case: dialect, source, expected line, a piece of the message.
type ErrCase = (Dialect, &'static str, usize, &'static str);

fn run_errors(cases: &[ErrCase]) {
    for (i, (dialect, source, line, message)) in cases.iter().enumerate() {
        match split(source, *dialect) {
            Ok(statements) => {
                panic!("case {i} ({dialect:?}) {source:?}: expected an error, got {statements:?}")
            }
            Err(SplitError { line: got_line, message: got }) => {
                assert_eq!(got_line, *line, "case {i} ({dialect:?}) {source:?}: line of {got:?}");
                assert!(got.contains(message), "case {i} ({dialect:?}) {source:?}: message {got:?}");
            }
        }
    }
}

const ALL: [Dialect; 3] = [Postgres, MySql, Sqlite];

#[test]
fn common_rules_in_every_dialect() {
    let sources: &[(&str, &[(&str, usize)])] = &[
        ("SELECT 1; SELECT 2;", &[("SELECT 1", 1), ("SELECT 2", 1)]),
        (
            "CREATE TABLE t (\n  id int\n);\n\nINSERT INTO t\nVALUES (1);\nSELECT 3",
            &[("CREATE TABLE t (\n  id int\n)", 1), ("INSERT INTO t\nVALUES (1)", 5), ("SELECT 3", 7)],
        ),
        ("-- head; comment\nSELECT 1;\n/* mid; */\nSELECT 2; -- tail;\n", &[("SELECT 1", 2), ("SELECT 2", 4)]),
        ("SELECT 1 /* kept; */ + 2 -- dropped;\n;", &[("SELECT 1 /* kept; */ + 2", 1)]),
        (
            "SELECT 1;\r\n\r\nSELECT 2;\r\n-- c\r\nSELECT\r\n3;\r\n",
            &[("SELECT 1", 1), ("SELECT 2", 3), ("SELECT\r\n3", 5)],
        ),
        (";;\n ; SELECT 1;;; \n;", &[("SELECT 1", 2)]),
        ("SELECT 1;\n-- only a comment after the last statement\n", &[("SELECT 1", 1)]),
        ("  \n\tSELECT 1\n  ", &[("SELECT 1", 2)]),
        ("SELECT 'a;b', 'it''s;';SELECT 2", &[("SELECT 'a;b', 'it''s;'", 1), ("SELECT 2", 1)]),
        ("SELECT \"a;\"\"b\" FROM t;SELECT 2", &[("SELECT \"a;\"\"b\" FROM t", 1), ("SELECT 2", 1)]),
        ("SELECT 'multi\nline;\nstring';\nSELECT 2", &[("SELECT 'multi\nline;\nstring'", 1), ("SELECT 2", 4)]),
        (
            "SELECT 'héllo; wörld', \"naïve;\" -- ünïcode;\n;SELECT '€'",
            &[("SELECT 'héllo; wörld', \"naïve;\"", 1), ("SELECT '€'", 2)],
        ),
        ("BEGIN;\nINSERT INTO t VALUES (1);\nCOMMIT;", &[("BEGIN", 1), ("INSERT INTO t VALUES (1)", 2), ("COMMIT", 3)]),
        ("", &[]),
        ("-- nothing\n/* at all */", &[]),
    ];
    for dialect in ALL {
        let cases: Vec<Case> = sources.iter().map(|(s, e)| (dialect, *s, *e)).collect();
        run(&cases);
    }
}

#[test]
fn postgres_rules() {
    run(&[
        // Standard strings: backslash is an ordinary character.
        (Postgres, "SELECT 'C:\\'; SELECT 2", &[("SELECT 'C:\\'", 1), ("SELECT 2", 1)]),
        // Escape strings: backslash escapes.
        (Postgres, "SELECT E'it\\'s; ok'; SELECT 2", &[("SELECT E'it\\'s; ok'", 1), ("SELECT 2", 1)]),
        (Postgres, "SELECT e'\\\\'; SELECT 2", &[("SELECT e'\\\\'", 1), ("SELECT 2", 1)]),
        // A word ending in e before a quote is not an escape-string prefix.
        (Postgres, "SELECT 1 AS some'x\\'; SELECT 2", &[("SELECT 1 AS some'x\\'", 1), ("SELECT 2", 1)]),
        // Nested block comments.
        (Postgres, "/* a /* b; */ c; */ SELECT 1; SELECT 2", &[("SELECT 1", 1), ("SELECT 2", 1)]),
        // plpgsql body in $$ with semicolons.
        (
            Postgres,
            "CREATE FUNCTION f() RETURNS trigger AS $$\nBEGIN\n  NEW.x := 1;\n  RETURN NEW;\nEND;\n$$ LANGUAGE plpgsql;\nSELECT 2;",
            &[
                (
                    "CREATE FUNCTION f() RETURNS trigger AS $$\nBEGIN\n  NEW.x := 1;\n  RETURN NEW;\nEND;\n$$ LANGUAGE plpgsql",
                    1,
                ),
                ("SELECT 2", 7),
            ],
        ),
        // $tag$ nested inside $$, and $fn$ containing $$.
        (
            Postgres,
            "DO $$ BEGIN EXECUTE $q$ SELECT ';' $q$; END $$;\nCREATE FUNCTION g() RETURNS text AS $fn$ SELECT '$$;' $fn$ LANGUAGE sql;",
            &[
                ("DO $$ BEGIN EXECUTE $q$ SELECT ';' $q$; END $$", 1),
                ("CREATE FUNCTION g() RETURNS text AS $fn$ SELECT '$$;' $fn$ LANGUAGE sql", 2),
            ],
        ),
        // Dollar-quote tags with non-ASCII characters.
        (Postgres, "SELECT $é$;$é$; SELECT 2", &[("SELECT $é$;$é$", 1), ("SELECT 2", 1)]),
        // $1 is a parameter; a$b and c$$ are identifiers.
        (
            Postgres,
            "SELECT $1; SELECT a$b, c$$ FROM t; SELECT 3",
            &[("SELECT $1", 1), ("SELECT a$b, c$$ FROM t", 1), ("SELECT 3", 1)],
        ),
        // BEGIN ATOMIC body with CASE ... END inside is one statement.
        (
            Postgres,
            "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN a > 0 THEN 1 ELSE 2 END;\n  SELECT 2;\nEND;\nSELECT 3;",
            &[
                (
                    "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN a > 0 THEN 1 ELSE 2 END;\n  SELECT 2;\nEND",
                    1,
                ),
                ("SELECT 3", 6),
            ],
        ),
        (
            Postgres,
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;",
            &[("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END", 1)],
        ),
        (
            Postgres,
            "create or replace procedure p() begin atomic insert into t values (1); end; call p()",
            &[("create or replace procedure p() begin atomic insert into t values (1); end", 1), ("call p()", 1)],
        ),
        // A CASE outside any BEGIN ATOMIC does not open a block.
        (
            Postgres,
            "CREATE VIEW v AS SELECT CASE WHEN x THEN 1 END AS c FROM t; SELECT 2",
            &[("CREATE VIEW v AS SELECT CASE WHEN x THEN 1 END AS c FROM t", 1), ("SELECT 2", 1)],
        ),
        // Top-level BEGIN is an ordinary statement; so is BEGIN TRANSACTION.
        (
            Postgres,
            "BEGIN; SELECT 1; END; BEGIN TRANSACTION; COMMIT",
            &[("BEGIN", 1), ("SELECT 1", 1), ("END", 1), ("BEGIN TRANSACTION", 1), ("COMMIT", 1)],
        ),
        // Backticks and brackets mean nothing in Postgres.
        (Postgres, "SELECT arr[1]; SELECT 2", &[("SELECT arr[1]", 1), ("SELECT 2", 1)]),
        // # is an operator, not a comment.
        (Postgres, "SELECT 1 # 2; SELECT 3", &[("SELECT 1 # 2", 1), ("SELECT 3", 1)]),
    ]);
}

#[test]
fn mysql_rules() {
    run(&[
        // Backslash escapes in both quote styles.
        (
            MySql,
            "SELECT 'it\\'s; ok'; SELECT \"a\\\"b;\"; SELECT 3",
            &[("SELECT 'it\\'s; ok'", 1), ("SELECT \"a\\\"b;\"", 1), ("SELECT 3", 1)],
        ),
        (MySql, "SELECT 'a\\\\'; SELECT 2", &[("SELECT 'a\\\\'", 1), ("SELECT 2", 1)]),
        // Backtick identifiers with doubling.
        (MySql, "SELECT `a``;b` FROM t; SELECT 2", &[("SELECT `a``;b` FROM t", 1), ("SELECT 2", 1)]),
        // # comments; -- needs whitespace after it.
        (
            MySql,
            "# note; here\nSELECT 1; -- c;\nSELECT 5--2; SELECT 3",
            &[("SELECT 1", 2), ("SELECT 5--2", 3), ("SELECT 3", 3)],
        ),
        (MySql, "SELECT 1 --\tc;\n; SELECT 2 --", &[("SELECT 1", 1), ("SELECT 2", 2)]),
        // Block comments do not nest.
        (MySql, "/* a /* b */ SELECT 1; SELECT 2 */", &[("SELECT 1", 1), ("SELECT 2 */", 1)]),
        // Executable comments are statement text.
        (MySql, "/*!40101 SET NAMES utf8 */;\nSELECT 1", &[("/*!40101 SET NAMES utf8 */", 1), ("SELECT 1", 2)]),
        // DELIMITER // with a procedure, then DELIMITER ; back.
        (
            MySql,
            "DROP PROCEDURE IF EXISTS p;\nDELIMITER //\nCREATE PROCEDURE p()\nBEGIN\n  SELECT 1;\n  SELECT 2;\nEND //\nDELIMITER ;\nCALL p();\nSELECT 3;",
            &[
                ("DROP PROCEDURE IF EXISTS p", 1),
                ("CREATE PROCEDURE p()\nBEGIN\n  SELECT 1;\n  SELECT 2;\nEND", 3),
                ("CALL p()", 9),
                ("SELECT 3", 10),
            ],
        ),
        // DELIMITER $$ (case-insensitive keyword, CRLF), delimiter right after a word.
        (
            MySql,
            "delimiter $$\r\nCREATE FUNCTION f() RETURNS INT\r\nBEGIN\r\n  RETURN 1;\r\nEND$$\r\n  Delimiter ;\r\nSELECT f();",
            &[("CREATE FUNCTION f() RETURNS INT\r\nBEGIN\r\n  RETURN 1;\r\nEND", 2), ("SELECT f()", 7)],
        ),
        // mysqldump style ;; delimiter: a single ; does not split.
        (
            MySql,
            "DELIMITER ;;\nSELECT 1; SELECT 2;;\nDELIMITER ;\nSELECT 3;",
            &[("SELECT 1; SELECT 2", 2), ("SELECT 3", 4)],
        ),
        // Delimiters inside strings and comments do not count.
        (MySql, "DELIMITER //\nSELECT '//' -- //\n, 2 //", &[("SELECT '//' -- //\n, 2", 2)]),
        // Trigger with BEGIN / IF / END IF / END and no DELIMITER.
        (
            MySql,
            "CREATE TRIGGER trg BEFORE INSERT ON t FOR EACH ROW\nBEGIN\n  IF NEW.a < 0 THEN\n    SET NEW.a = 0;\n  END IF;\nEND;\nINSERT INTO t VALUES (1);",
            &[
                (
                    "CREATE TRIGGER trg BEFORE INSERT ON t FOR EACH ROW\nBEGIN\n  IF NEW.a < 0 THEN\n    SET NEW.a = 0;\n  END IF;\nEND",
                    1,
                ),
                ("INSERT INTO t VALUES (1)", 7),
            ],
        ),
        // DEFINER, nested blocks, CASE statement, loops, labels.
        (
            MySql,
            "CREATE DEFINER=`root`@`localhost` PROCEDURE p(x INT)\nBEGIN\n  DECLARE i INT DEFAULT 0;\n  CASE x WHEN 1 THEN SELECT 1; ELSE BEGIN SELECT 2; END; END CASE;\n  lbl: LOOP SET i = i + 1; IF i > 3 THEN LEAVE lbl; END IF; END LOOP lbl;\n  WHILE i > 0 DO SET i = i - 1; END WHILE;\n  REPEAT SET i = i + 1; UNTIL i > 2 END REPEAT;\n  SET i = CASE WHEN i > 1 THEN 1 ELSE 0 END;\nEND;\nSELECT 2",
            &[
                (
                    "CREATE DEFINER=`root`@`localhost` PROCEDURE p(x INT)\nBEGIN\n  DECLARE i INT DEFAULT 0;\n  CASE x WHEN 1 THEN SELECT 1; ELSE BEGIN SELECT 2; END; END CASE;\n  lbl: LOOP SET i = i + 1; IF i > 3 THEN LEAVE lbl; END IF; END LOOP lbl;\n  WHILE i > 0 DO SET i = i - 1; END WHILE;\n  REPEAT SET i = i + 1; UNTIL i > 2 END REPEAT;\n  SET i = CASE WHEN i > 1 THEN 1 ELSE 0 END;\nEND",
                    1,
                ),
                ("SELECT 2", 10),
            ],
        ),
        (
            MySql,
            "create or replace definer = 'app'@'%' event e on schedule every 1 day do begin delete from t; delete from u; end; select 1",
            &[
                (
                    "create or replace definer = 'app'@'%' event e on schedule every 1 day do begin delete from t; delete from u; end",
                    1,
                ),
                ("select 1", 1),
            ],
        ),
        (
            MySql,
            "CREATE DEFINER = CURRENT_USER() FUNCTION f() RETURNS INT BEGIN RETURN 1; END; SELECT 1",
            &[("CREATE DEFINER = CURRENT_USER() FUNCTION f() RETURNS INT BEGIN RETURN 1; END", 1), ("SELECT 1", 1)],
        ),
        // A routine body without BEGIN ends at the first ;.
        (MySql, "CREATE PROCEDURE p() SELECT 1; SELECT 2", &[("CREATE PROCEDURE p() SELECT 1", 1), ("SELECT 2", 1)]),
        // Outside routines BEGIN/END/CASE mean nothing; `begin` column names are fine.
        (
            MySql,
            "CREATE TABLE t (`begin` INT, begin_at INT, case_no INT);\nBEGIN;\nSELECT CASE WHEN 1 THEN 2 END;\nCOMMIT;",
            &[
                ("CREATE TABLE t (`begin` INT, begin_at INT, case_no INT)", 1),
                ("BEGIN", 2),
                ("SELECT CASE WHEN 1 THEN 2 END", 3),
                ("COMMIT", 4),
            ],
        ),
        // A line starting with `delimiter` inside a statement is not a command.
        (MySql, "CREATE TABLE t (\ndelimiter VARCHAR(5)\n);", &[("CREATE TABLE t (\ndelimiter VARCHAR(5)\n)", 1)]),
        // `delimiter` not alone as a word is not a command either.
        (MySql, "delimiters;", &[("delimiters", 1)]),
    ]);
}

#[test]
fn sqlite_rules() {
    run(&[
        // Strings: no backslash escapes.
        (Sqlite, "SELECT 'a\\'; SELECT 2", &[("SELECT 'a\\'", 1), ("SELECT 2", 1)]),
        // Identifier quoting: "..", `..`, [..].
        (
            Sqlite,
            "SELECT [a;b], `c;``d`, \"e;\"\"f\" FROM t; SELECT 2",
            &[("SELECT [a;b], `c;``d`, \"e;\"\"f\" FROM t", 1), ("SELECT 2", 1)],
        ),
        // Block comments do not nest.
        (Sqlite, "/* a /* b */ SELECT 1; SELECT 2", &[("SELECT 1", 1), ("SELECT 2", 1)]),
        // Trigger with CASE inside.
        (
            Sqlite,
            "CREATE TRIGGER trg AFTER INSERT ON a\nBEGIN\n  UPDATE b SET x = CASE WHEN new.y THEN 1 ELSE 0 END;\n  INSERT INTO c VALUES (1);\nEND;\nSELECT 2;",
            &[
                (
                    "CREATE TRIGGER trg AFTER INSERT ON a\nBEGIN\n  UPDATE b SET x = CASE WHEN new.y THEN 1 ELSE 0 END;\n  INSERT INTO c VALUES (1);\nEND",
                    1,
                ),
                ("SELECT 2", 6),
            ],
        ),
        (
            Sqlite,
            "create temp trigger if not exists t2 before delete on a when old.k = 1 begin delete from b; end; select 1",
            &[
                ("create temp trigger if not exists t2 before delete on a when old.k = 1 begin delete from b; end", 1),
                ("select 1", 1),
            ],
        ),
        // Top-level transaction statements.
        (
            Sqlite,
            "BEGIN IMMEDIATE; SELECT 1; END TRANSACTION;",
            &[("BEGIN IMMEDIATE", 1), ("SELECT 1", 1), ("END TRANSACTION", 1)],
        ),
        // $name, :name, ?1 parameters.
        (Sqlite, "SELECT $a, :b, ?1; SELECT 2", &[("SELECT $a, :b, ?1", 1), ("SELECT 2", 1)]),
    ]);
}

#[test]
fn spans_and_lines_are_exact() {
    let source = "-- c\n  SELECT 1 ;\n\n\tINSERT INTO é VALUES ('ü');";
    let statements = split(source, Postgres).unwrap_or_default();
    assert_eq!(statements.len(), 2);
    assert_eq!(statements[0].span, 7..15);
    assert_eq!(statements[0].line, 2);
    assert_eq!(&source[statements[1].span.clone()], "INSERT INTO é VALUES ('ü')");
    assert_eq!(statements[1].line, 4);
}

#[test]
fn unterminated_constructs() {
    run_errors(&[
        (Postgres, "SELECT 1;\nSELECT 'abc;\n\n", 2, "unterminated string literal"),
        (Postgres, "SELECT 1;\nSELECT E'abc\\';", 2, "unterminated escape string literal"),
        (Postgres, "SELECT \"abc;", 1, "unterminated quoted identifier"),
        (Postgres, "SELECT 1;\n/* a /* b */\nSELECT 2;", 2, "unterminated block comment"),
        (
            Postgres,
            "SELECT 1;\n\nCREATE FUNCTION f() RETURNS int AS $fn$\nSELECT 1;\n$$ LANGUAGE sql;",
            3,
            "unterminated dollar-quoted string $fn$ starting here",
        ),
        (Postgres, "DO $$ BEGIN END;", 1, "unterminated dollar-quoted string $$"),
        (
            Postgres,
            "SELECT 1;\nCREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;",
            3,
            "unterminated BEGIN ATOMIC ... END block",
        ),
        (MySql, "SELECT 1;\nSELECT 'it\\';", 2, "unterminated string literal"),
        (MySql, "SELECT \"abc", 1, "unterminated double-quoted string"),
        (MySql, "SELECT `abc;\nSELECT 2;", 1, "unterminated backtick-quoted identifier"),
        (MySql, "\n/* a */ /* b", 2, "unterminated block comment"),
        (MySql, "SELECT 1;\nCREATE PROCEDURE p()\nBEGIN\n  SELECT 1;\n", 3, "unterminated BEGIN ... END block"),
        (MySql, "SELECT 1;\nDELIMITER\nSELECT 2;", 2, "bad DELIMITER line"),
        (MySql, "DELIMITER // -- switch\n", 1, "bad DELIMITER line"),
        (MySql, "DELIMITER \\\\\n", 1, "bad DELIMITER line"),
        (Sqlite, "SELECT [abc;", 1, "unterminated bracket-quoted identifier"),
        (Sqlite, "SELECT 'a''", 1, "unterminated string literal"),
        (Sqlite, "SELECT `a", 1, "unterminated backtick-quoted identifier"),
        (Sqlite, "SELECT 1;\n\n/* open", 3, "unterminated block comment"),
        (
            Sqlite,
            "CREATE TRIGGER t AFTER INSERT ON a\nBEGIN\n  SELECT CASE WHEN 1 THEN 2 END;",
            2,
            "unterminated BEGIN ... END block",
        ),
    ]);
}

#[test]
fn error_display() {
    let Err(e) = split("SELECT 1;\n/* open", Postgres) else {
        panic!("expected an error");
    };
    assert_eq!(e.to_string(), "line 2: unterminated block comment starting here");
    let boxed: Box<dyn std::error::Error> = Box::new(e);
    assert!(boxed.to_string().starts_with("line 2"));
}
