//! Splitting: cuts a migration file into statements with line numbers and
//! exact byte spans, handling MySQL `DELIMITER` lines and routine bodies.

use crate::block::BlockTracker;
use crate::lexer::{LexError, Lexer, Token, TokenKind};
use crate::{Dialect, SplitError, Statement};

/// Splits `source` into statements by the lexical rules of `dialect`.
///
/// Statements end at the delimiter (`;`, or what a MySQL `DELIMITER` line
/// set) outside strings, quoted identifiers, comments, dollar quotes and
/// routine/trigger bodies. Each statement's text runs from its first to its
/// last token: whitespace and comments before and after it are left out,
/// comments inside it are kept. Empty statements yield nothing; a last
/// statement without delimiter is still a statement.
///
/// # Errors
///
/// A [`SplitError`] at the line where an unterminated string, quoted
/// identifier, block comment, dollar quote or `BEGIN ... END` block starts,
/// or at a bad MySQL `DELIMITER` line.
pub fn split(source: &str, dialect: Dialect) -> Result<Vec<Statement>, SplitError> {
    let mut splitter = Splitter::new(source, dialect);
    let mut statements = Vec::new();
    while let Some(statement) = splitter.next_statement()? {
        statements.push(statement);
    }
    Ok(statements)
}

/// True when the text holds no statement: only whitespace, comments (in the
/// dialect's comment syntax), empty statements (`;`) and, for MySQL,
/// `DELIMITER` lines. False when the text cannot be split (for example an
/// unterminated block comment), so that [`split`] gets to report the error.
pub fn is_blank(source: &str, dialect: Dialect) -> bool {
    matches!(Splitter::new(source, dialect).next_statement(), Ok(None))
}

/// Yields the statements of a text one by one.
struct Splitter<'a> {
    src: &'a str,
    dialect: Dialect,
    lexer: Lexer<'a>,
    lines: LineCounter<'a>,
}

impl<'a> Splitter<'a> {
    fn new(src: &'a str, dialect: Dialect) -> Self {
        Splitter { src, dialect, lexer: Lexer::new(src, dialect), lines: LineCounter::new(src) }
    }

    fn tracker(&self) -> BlockTracker {
        BlockTracker::new(self.dialect, self.lexer.delimiter_is_semicolon())
    }

    fn next_statement(&mut self) -> Result<Option<Statement>, SplitError> {
        // Byte range of the statement's tokens so far, once it has one.
        let mut range: Option<(usize, usize)> = None;
        let mut tracker = self.tracker();
        loop {
            if range.is_none() && self.dialect == Dialect::MySql {
                let switched = self.lexer.delimiter_command().map_err(|e| self.lex_error(e))?;
                if switched {
                    tracker = self.tracker();
                    continue;
                }
            }
            let Some(tok) = self.lexer.next_token().map_err(|e| self.lex_error(e))? else {
                let Some((start, end)) = range else {
                    return Ok(None);
                };
                if let Err(unclosed) = tracker.finish() {
                    return Err(self.error(unclosed.at, unclosed.message));
                }
                return Ok(Some(self.statement(start, end)));
            };
            if tok.kind.is_trivia() {
                continue;
            }
            if tok.kind == TokenKind::Delimiter && tracker.at_delimiter() {
                match range {
                    Some((start, end)) => return Ok(Some(self.statement(start, end))),
                    None => continue,
                }
            }
            if tok.kind != TokenKind::Delimiter {
                tracker.feed(tok, self.text(tok));
            }
            let start = range.map_or(tok.start, |(start, _)| start);
            range = Some((start, tok.end));
        }
    }

    fn text(&self, tok: Token) -> &'a str {
        self.src.get(tok.start..tok.end).unwrap_or_default()
    }

    fn statement(&mut self, start: usize, end: usize) -> Statement {
        Statement {
            sql: self.src.get(start..end).unwrap_or_default().to_owned(),
            line: self.lines.line_of(start),
            span: start..end,
        }
    }

    fn lex_error(&mut self, e: LexError) -> SplitError {
        self.error(e.at, e.message)
    }

    fn error(&mut self, at: usize, message: String) -> SplitError {
        SplitError { line: self.lines.line_of(at), message }
    }
}

/// 1-based line numbers of byte offsets, counted incrementally (offsets
/// mostly come in increasing order).
struct LineCounter<'a> {
    bytes: &'a [u8],
    at: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(src: &'a str) -> Self {
        LineCounter { bytes: src.as_bytes(), at: 0, line: 1 }
    }

    fn line_of(&mut self, offset: usize) -> usize {
        let offset = offset.min(self.bytes.len());
        if offset < self.at {
            self.at = 0;
            self.line = 1;
        }
        self.line += self.bytes[self.at..offset].iter().filter(|&&b| b == b'\n').count();
        self.at = offset;
        self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_counter_goes_back_and_forth() {
        let mut lines = LineCounter::new("a\nb\nc");
        assert_eq!(lines.line_of(4), 3);
        assert_eq!(lines.line_of(2), 2);
        assert_eq!(lines.line_of(0), 1);
        assert_eq!(lines.line_of(99), 3);
    }

    #[test]
    fn blank_texts() {
        for dialect in [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite] {
            assert!(is_blank("", dialect));
            assert!(is_blank(" \n-- x\n/* y */ ;;\n", dialect));
            assert!(!is_blank("/* open", dialect));
            assert!(!is_blank("-- x\nSELECT 1", dialect));
        }
        assert!(is_blank("# note\nDELIMITER //\n//\nDELIMITER ;\n", Dialect::MySql));
        assert!(!is_blank("# note", Dialect::Postgres));
        assert!(!is_blank("/*!40101 SET NAMES utf8 */", Dialect::MySql));
    }
}
