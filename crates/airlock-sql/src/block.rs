//! Block tracking: keeps `BEGIN ... END` bodies of routines and triggers in
//! one statement, so that `;` inside them does not end the statement.
//!
//! Which statements are tracked, by their leading words:
//! - Postgres: statements starting with `CREATE`; a block opens at
//!   `BEGIN ATOMIC`, and inside a block `CASE` opens and `END` closes.
//! - MySQL: `CREATE [OR REPLACE] [DEFINER = user] [AGGREGATE]
//!   {PROCEDURE|FUNCTION|TRIGGER|EVENT}`.
//! - SQLite: `CREATE [TEMP|TEMPORARY] TRIGGER`.
//!
//! In MySQL and SQLite `BEGIN` and `CASE` open a block, a bare `END` (or
//! `END CASE`) closes one, and `END IF`/`END LOOP`/`END WHILE`/`END REPEAT`
//! change nothing (`IF`, `LOOP`, `WHILE` and `REPEAT` do not open blocks).

use crate::Dialect;
use crate::lexer::{Token, TokenKind};

/// How far the recognition of a tracked statement has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Detect {
    /// Nothing seen yet: waiting for `CREATE`.
    Start,
    /// After `CREATE` (and modifiers) in MySQL or SQLite.
    AfterCreate,
    /// After MySQL `DEFINER`: waiting for `=`.
    DefinerEq,
    /// Inside the MySQL definer user (`'a'@'b'`, `CURRENT_USER()`): tokens
    /// belong to it as long as no whitespace or comment separates them.
    DefinerUser { started: bool },
    /// Not a tracked statement.
    Off,
    /// A tracked statement: count blocks.
    On,
}

/// A keyword whose meaning depends on the next token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    None,
    /// `END`: closes a block unless followed by `IF`, `LOOP`, `WHILE` or `REPEAT`.
    End,
    /// Postgres `BEGIN` at this offset: opens a block if followed by `ATOMIC`.
    Begin(usize),
}

/// A block still open at the end of the statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unclosed {
    /// Byte offset of the keyword that opened the outermost open block.
    pub(crate) at: usize,
    pub(crate) message: String,
}

/// Block depth of one statement, fed its non-trivia tokens in order.
#[derive(Clone, Debug)]
pub(crate) struct BlockTracker {
    dialect: Dialect,
    detect: Detect,
    depth: usize,
    opened_at: usize,
    opener: &'static str,
    pending: Pending,
    prev_end: Option<usize>,
}

fn is_kw(word: Option<&str>, keyword: &str) -> bool {
    word.is_some_and(|w| w.eq_ignore_ascii_case(keyword))
}

fn is_any_kw(word: Option<&str>, keywords: &[&str]) -> bool {
    keywords.iter().any(|k| is_kw(word, k))
}

impl BlockTracker {
    /// A tracker for a new statement; a disabled one never holds a delimiter
    /// back (used while a MySQL `DELIMITER` other than `;` is active).
    pub(crate) fn new(dialect: Dialect, enabled: bool) -> Self {
        BlockTracker {
            dialect,
            detect: if enabled { Detect::Start } else { Detect::Off },
            depth: 0,
            opened_at: 0,
            opener: "BEGIN",
            pending: Pending::None,
            prev_end: None,
        }
    }

    /// Takes the next non-trivia, non-delimiter token of the statement.
    pub(crate) fn feed(&mut self, tok: Token, text: &str) {
        let adjacent = self.prev_end == Some(tok.start);
        self.prev_end = Some(tok.end);
        let word = (tok.kind == TokenKind::Word).then_some(text);
        if self.detect(tok.kind, text, word, adjacent) {
            self.track(tok.start, word);
        }
    }

    /// A delimiter was reached: whether it ends the statement (no block open).
    pub(crate) fn at_delimiter(&mut self) -> bool {
        if self.pending == Pending::End {
            self.close();
        }
        self.pending = Pending::None;
        self.depth == 0
    }

    /// The text ended: an error if a block is still open.
    pub(crate) fn finish(&mut self) -> Result<(), Unclosed> {
        if self.at_delimiter() {
            Ok(())
        } else {
            Err(Unclosed {
                at: self.opened_at,
                message: format!("unterminated {} ... END block starting here", self.opener),
            })
        }
    }

    /// Advances recognition; true when the token is to be block-tracked.
    fn detect(&mut self, kind: TokenKind, text: &str, word: Option<&str>, adjacent: bool) -> bool {
        loop {
            self.detect = match self.detect {
                Detect::On => return true,
                Detect::Off => return false,
                Detect::Start if is_kw(word, "CREATE") => match self.dialect {
                    Dialect::Postgres => Detect::On,
                    Dialect::MySql | Dialect::Sqlite => Detect::AfterCreate,
                },
                Detect::Start => Detect::Off,
                Detect::AfterCreate => self.after_create(word),
                Detect::DefinerEq if kind == TokenKind::Punct && text == "=" => Detect::DefinerUser { started: false },
                Detect::DefinerEq => Detect::Off,
                Detect::DefinerUser { started: false } => Detect::DefinerUser { started: true },
                Detect::DefinerUser { started: true } if adjacent => return false,
                Detect::DefinerUser { started: true } => {
                    // The user ended before this token: read it after CREATE.
                    self.detect = Detect::AfterCreate;
                    continue;
                }
            };
            return false;
        }
    }

    fn after_create(&self, word: Option<&str>) -> Detect {
        match self.dialect {
            Dialect::Postgres => Detect::On,
            Dialect::MySql if is_any_kw(word, &["OR", "REPLACE", "AGGREGATE"]) => Detect::AfterCreate,
            Dialect::MySql if is_kw(word, "DEFINER") => Detect::DefinerEq,
            Dialect::MySql if is_any_kw(word, &["PROCEDURE", "FUNCTION", "TRIGGER", "EVENT"]) => Detect::On,
            Dialect::Sqlite if is_any_kw(word, &["TEMP", "TEMPORARY"]) => Detect::AfterCreate,
            Dialect::Sqlite if is_kw(word, "TRIGGER") => Detect::On,
            Dialect::MySql | Dialect::Sqlite => Detect::Off,
        }
    }

    fn track(&mut self, start: usize, word: Option<&str>) {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::None => {}
            Pending::End => {
                if is_kw(word, "CASE") {
                    // `END CASE` closes the CASE block; this CASE opens nothing.
                    self.close();
                    return;
                }
                if is_any_kw(word, &["IF", "LOOP", "WHILE", "REPEAT"]) {
                    return;
                }
                self.close();
            }
            Pending::Begin(at) => {
                if is_kw(word, "ATOMIC") {
                    self.open(at, "BEGIN ATOMIC");
                    return;
                }
            }
        }
        let postgres = self.dialect == Dialect::Postgres;
        if is_kw(word, "BEGIN") {
            if postgres {
                self.pending = Pending::Begin(start);
            } else {
                self.open(start, "BEGIN");
            }
        } else if is_kw(word, "CASE") {
            if !postgres || self.depth > 0 {
                self.open(start, "CASE");
            }
        } else if is_kw(word, "END") && (!postgres || self.depth > 0) {
            self.pending = Pending::End;
        }
    }

    fn open(&mut self, at: usize, opener: &'static str) {
        if self.depth == 0 {
            self.opened_at = at;
            self.opener = opener;
        }
        self.depth += 1;
    }

    fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }
}
