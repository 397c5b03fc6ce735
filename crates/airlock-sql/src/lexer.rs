//! Lexer: cuts SQL text into tokens by the lexical rules of one dialect
//! (quotes, comments, dollar quotes, statement delimiters), without parsing.
//!
//! Every token boundary is a char boundary: tokens end after an ASCII byte,
//! at the end of the input, or where the next token starts with an ASCII byte
//! (bytes of multi-byte characters always belong to words, strings, quoted
//! identifiers or comments).

use crate::Dialect;

/// What a token is, as far as splitting and classifying care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// Spaces, tabs, line breaks.
    Whitespace,
    /// `-- ...`, `# ...` (MySQL) or `/* ... */`.
    Comment,
    /// MySQL executable comment `/*! ... */` (or MariaDB `/*M! ... */`): the
    /// server runs its content, so it is statement text, not a comment.
    ExecComment,
    /// A run of identifier characters: keyword, unquoted name or number.
    Word,
    /// A string literal: `'...'`, `E'...'`, MySQL `"..."`, `$tag$...$tag$`.
    String,
    /// A quoted identifier: `"..."`, `` `...` ``, `[...]`.
    QuotedIdent,
    /// The active statement delimiter (`;` unless a MySQL `DELIMITER` line changed it).
    Delimiter,
    /// Any other single ASCII character (operators, punctuation, `$` of `$1`).
    Punct,
}

impl TokenKind {
    /// Whitespace and comments: text that separates tokens and means nothing.
    pub(crate) fn is_trivia(self) -> bool {
        matches!(self, Self::Whitespace | Self::Comment)
    }
}

/// One token: its kind and byte range in the lexed text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// A construct that does not end (or a bad `DELIMITER` line), at byte offset `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LexError {
    pub(crate) at: usize,
    pub(crate) message: String,
}

/// Whitespace as SQL lexers see it (ASCII only).
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Bytes of unquoted identifiers, keywords and numbers. Bytes of non-ASCII
/// characters count as identifier bytes in every dialect.
pub(crate) fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Bytes of a Postgres dollar-quote tag (identifier bytes without `$`).
fn is_tag_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

const DELIMITER_KEYWORD: &[u8] = b"delimiter";

/// A cursor over SQL text producing one token at a time.
pub(crate) struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    dialect: Dialect,
    /// The statement delimiter; never empty.
    delimiter: String,
    /// Whether the delimiter starts with an identifier byte (MySQL `DELIMITER $$`),
    /// so that words must stop where it starts (`END$$`).
    delimiter_in_words: bool,
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `src`, with `;` as delimiter.
    pub(crate) fn new(src: &'a str, dialect: Dialect) -> Self {
        Lexer { src, bytes: src.as_bytes(), pos: 0, dialect, delimiter: ";".to_owned(), delimiter_in_words: false }
    }

    /// Whether the active delimiter is the plain `;`.
    pub(crate) fn delimiter_is_semicolon(&self) -> bool {
        self.delimiter == ";"
    }

    /// The next token, `Ok(None)` at the end of the text.
    pub(crate) fn next_token(&mut self) -> Result<Option<Token>, LexError> {
        let start = self.pos;
        let Some(&b) = self.bytes.get(start) else {
            return Ok(None);
        };
        let dialect = self.dialect;
        let kind = if self.delimiter_at(start) {
            self.pos += self.delimiter.len();
            TokenKind::Delimiter
        } else {
            match b {
                _ if is_space(b) => self.whitespace(),
                b'-' if self.line_comment_starts() => self.line_comment(),
                b'#' if dialect == Dialect::MySql => self.line_comment(),
                b'/' if self.byte(start + 1) == Some(b'*') => self.block_comment()?,
                b'\'' => self.quoted(dialect == Dialect::MySql, TokenKind::String, "string literal")?,
                b'"' if dialect == Dialect::MySql => self.quoted(true, TokenKind::String, "double-quoted string")?,
                b'"' => self.quoted(false, TokenKind::QuotedIdent, "quoted identifier")?,
                b'`' if dialect != Dialect::Postgres => {
                    self.quoted(false, TokenKind::QuotedIdent, "backtick-quoted identifier")?
                }
                b'[' if dialect == Dialect::Sqlite => self.bracketed()?,
                b'$' if dialect == Dialect::Postgres => self.dollar()?,
                _ if is_word_byte(b) => self.word()?,
                _ => {
                    self.pos += 1;
                    TokenKind::Punct
                }
            }
        };
        Ok(Some(Token { kind, start, end: self.pos }))
    }

    /// MySQL client command `DELIMITER xx`: when the current position starts
    /// such a line (only spaces or tabs before it on its line), consumes the
    /// whole line, makes `xx` the delimiter and returns `Ok(true)`.
    pub(crate) fn delimiter_command(&mut self) -> Result<bool, LexError> {
        let start = self.pos;
        if self.dialect != Dialect::MySql {
            return Ok(false);
        }
        let Some(word) = self.bytes.get(start..start + DELIMITER_KEYWORD.len()) else {
            return Ok(false);
        };
        let after = start + DELIMITER_KEYWORD.len();
        if !word.eq_ignore_ascii_case(DELIMITER_KEYWORD)
            || !matches!(self.byte(after), None | Some(b' ' | b'\t' | b'\r' | b'\n'))
            || !self.at_line_start(start)
        {
            return Ok(false);
        }
        let line_end = self.find_byte(after, b'\n').unwrap_or(self.bytes.len());
        let value = self.src[after..line_end].trim_matches(|c: char| c.is_ascii() && is_space(c as u8));
        let bad = |message: &str| LexError { at: start, message: message.to_owned() };
        if value.is_empty() {
            return Err(bad("bad DELIMITER line: no delimiter after DELIMITER"));
        }
        if value.bytes().any(is_space) {
            return Err(bad("bad DELIMITER line: the delimiter must be one word without spaces"));
        }
        if value.contains('\\') {
            return Err(bad("bad DELIMITER line: the delimiter cannot contain a backslash"));
        }
        self.delimiter_in_words = value.bytes().next().is_some_and(is_word_byte);
        self.delimiter = value.to_owned();
        self.pos = (line_end + 1).min(self.bytes.len());
        Ok(true)
    }

    fn byte(&self, i: usize) -> Option<u8> {
        self.bytes.get(i).copied()
    }

    fn find_byte(&self, from: usize, needle: u8) -> Option<usize> {
        let rest = self.bytes.get(from..)?;
        rest.iter().position(|&b| b == needle).map(|k| from + k)
    }

    fn delimiter_at(&self, i: usize) -> bool {
        self.bytes.get(i..).is_some_and(|rest| rest.starts_with(self.delimiter.as_bytes()))
    }

    /// Only spaces or tabs between the previous line break (or the start) and `i`.
    fn at_line_start(&self, i: usize) -> bool {
        let before = &self.bytes[..i.min(self.bytes.len())];
        match before.iter().rposition(|&b| b != b' ' && b != b'\t') {
            None => true,
            Some(k) => before[k] == b'\n',
        }
    }

    fn unterminated(at: usize, what: &str) -> LexError {
        LexError { at, message: format!("unterminated {what} starting here") }
    }

    fn whitespace(&mut self) -> TokenKind {
        while self.byte(self.pos).is_some_and(is_space) {
            self.pos += 1;
        }
        TokenKind::Whitespace
    }

    /// `--` starts a comment; in MySQL only when followed by whitespace, a
    /// control character or the end of the text.
    fn line_comment_starts(&self) -> bool {
        if self.byte(self.pos + 1) != Some(b'-') {
            return false;
        }
        self.dialect != Dialect::MySql
            || match self.byte(self.pos + 2) {
                None => true,
                Some(c) => c <= b' ' || c == 0x7f,
            }
    }

    /// To the end of the line, line break excluded.
    fn line_comment(&mut self) -> TokenKind {
        self.pos = self.find_byte(self.pos, b'\n').unwrap_or(self.bytes.len());
        TokenKind::Comment
    }

    /// `/* ... */`, nested in Postgres.
    fn block_comment(&mut self) -> Result<TokenKind, LexError> {
        let open = self.pos;
        let rest = &self.bytes[open..];
        let executable = self.dialect == Dialect::MySql && (rest.starts_with(b"/*!") || rest.starts_with(b"/*M!"));
        let nested = self.dialect == Dialect::Postgres;
        let mut depth = 1usize;
        let mut i = open + 2;
        while let Some(b) = self.byte(i) {
            let next = self.byte(i + 1);
            if b == b'*' && next == Some(b'/') {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    self.pos = i;
                    return Ok(if executable { TokenKind::ExecComment } else { TokenKind::Comment });
                }
            } else if nested && b == b'/' && next == Some(b'*') {
                depth += 1;
                i += 2;
            } else {
                i += 1;
            }
        }
        Err(Self::unterminated(open, "block comment"))
    }

    /// A quoted token starting at the current position, ended by the same
    /// quote character; a doubled quote stands for itself, and with
    /// `backslash` a backslash escapes the next character.
    fn quoted(&mut self, backslash: bool, kind: TokenKind, what: &str) -> Result<TokenKind, LexError> {
        let open = self.pos;
        let quote = self.bytes[open];
        let mut i = open + 1;
        while let Some(b) = self.byte(i) {
            if backslash && b == b'\\' {
                i += 2;
            } else if b == quote {
                if self.byte(i + 1) == Some(quote) {
                    i += 2;
                } else {
                    self.pos = i + 1;
                    return Ok(kind);
                }
            } else {
                i += 1;
            }
        }
        Err(Self::unterminated(open, what))
    }

    /// SQLite `[identifier]`: no escapes, ends at the first `]`.
    fn bracketed(&mut self) -> Result<TokenKind, LexError> {
        let open = self.pos;
        match self.find_byte(open + 1, b']') {
            Some(close) => {
                self.pos = close + 1;
                Ok(TokenKind::QuotedIdent)
            }
            None => Err(Self::unterminated(open, "bracket-quoted identifier")),
        }
    }

    /// Postgres `$tag$ ... $tag$` (tag possibly empty); a `$` not opening a
    /// dollar quote (as in the parameter `$1`) is punctuation.
    fn dollar(&mut self) -> Result<TokenKind, LexError> {
        let open = self.pos;
        let punct = |lexer: &mut Self| {
            lexer.pos = open + 1;
            Ok(TokenKind::Punct)
        };
        let mut i = open + 1;
        if self.byte(i).is_some_and(|b| b.is_ascii_digit()) {
            return punct(self);
        }
        while self.byte(i).is_some_and(is_tag_byte) {
            i += 1;
        }
        if self.byte(i) != Some(b'$') {
            return punct(self);
        }
        let tag = &self.src[open..=i];
        match self.src[i + 1..].find(tag) {
            Some(k) => {
                self.pos = i + 1 + k + tag.len();
                Ok(TokenKind::String)
            }
            None => {
                Err(LexError { at: open, message: format!("unterminated dollar-quoted string {tag} starting here") })
            }
        }
    }

    /// A run of identifier bytes; in Postgres a lone `E`/`e` directly before
    /// `'` starts an escape string instead.
    fn word(&mut self) -> Result<TokenKind, LexError> {
        let start = self.pos;
        let mut i = start + 1;
        while let Some(b) = self.byte(i) {
            if !is_word_byte(b) || (self.delimiter_in_words && self.delimiter_at(i)) {
                break;
            }
            i += 1;
        }
        self.pos = i;
        if self.dialect == Dialect::Postgres
            && i == start + 1
            && matches!(self.bytes[start], b'E' | b'e')
            && self.byte(i) == Some(b'\'')
        {
            return self.quoted(true, TokenKind::String, "escape string literal");
        }
        Ok(TokenKind::Word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str, dialect: Dialect) -> Vec<(TokenKind, &str)> {
        let mut lexer = Lexer::new(src, dialect);
        let mut out = Vec::new();
        while let Ok(Some(tok)) = lexer.next_token() {
            out.push((tok.kind, &src[tok.start..tok.end]));
        }
        out
    }

    #[test]
    fn postgres_tokens() {
        use TokenKind::*;
        assert_eq!(
            kinds("E'a\\'b' $1 a$b $x$;$x$ \"q\"\"\"", Dialect::Postgres),
            vec![
                (String, "E'a\\'b'"),
                (Whitespace, " "),
                (Punct, "$"),
                (Word, "1"),
                (Whitespace, " "),
                (Word, "a$b"),
                (Whitespace, " "),
                (String, "$x$;$x$"),
                (Whitespace, " "),
                (QuotedIdent, "\"q\"\"\""),
            ]
        );
    }

    #[test]
    fn mysql_dash_dash_needs_space() {
        use TokenKind::*;
        assert_eq!(
            kinds("1--2 -- c", Dialect::MySql),
            vec![(Word, "1"), (Punct, "-"), (Punct, "-"), (Word, "2"), (Whitespace, " "), (Comment, "-- c"),]
        );
        assert_eq!(kinds("--", Dialect::MySql), vec![(Comment, "--")]);
    }

    #[test]
    fn nested_comments_only_in_postgres() {
        let src = "/* a /* b */ c */";
        assert_eq!(kinds(src, Dialect::Postgres).len(), 1);
        assert_eq!(kinds(src, Dialect::Sqlite).len(), 6); // comment, " ", c, " ", *, /
    }

    #[test]
    fn delimiter_command_switches_delimiter() {
        let src = "  delimiter $$\r\nEND$$";
        let mut lexer = Lexer::new(src, Dialect::MySql);
        lexer.next_token().ok();
        assert_eq!(lexer.delimiter_command(), Ok(true));
        assert_eq!(lexer.delimiter, "$$");
        let end = lexer.next_token();
        assert!(matches!(end, Ok(Some(Token { kind: TokenKind::Word, start: 16, end: 19 }))));
        let delim = lexer.next_token();
        assert!(matches!(delim, Ok(Some(Token { kind: TokenKind::Delimiter, .. }))));
    }
}
