//! Rewriting names inside an expression's text, token by token, so that
//! strings, comments and other names that merely contain the name are left
//! as they are.

use crate::Dialect;
use crate::lexer::{Lexer, TokenKind};

/// `expr` with every reference to the column `column` (an unquoted word,
/// any case, or the quoted name exactly; on MySQL in any case) replaced by `with`. A word right
/// after `.` (another table's column) or `::` (a type) is left alone.
/// None when the text does not lex (an unclosed quote).
pub fn replace_column(expr: &str, dialect: Dialect, column: &str, with: &str) -> Option<String> {
    let mut lexer = Lexer::new(expr, dialect);
    let mut out = String::with_capacity(expr.len());
    let mut previous: [Option<&str>; 2] = [None, None];
    while let Some(token) = lexer.next_token().ok()? {
        let text = &expr[token.start..token.end];
        let qualified = previous[1] == Some(".") || previous == [Some(":"), Some(":")];
        let names_it = match token.kind {
            TokenKind::Word => text.eq_ignore_ascii_case(column),
            // MySQL's column names ignore case, quoted or not.
            TokenKind::QuotedIdent if dialect == Dialect::MySql => unquote(text).eq_ignore_ascii_case(column),
            TokenKind::QuotedIdent => unquote(text) == column,
            _ => false,
        };
        if names_it && !qualified {
            out.push_str(with);
        } else {
            out.push_str(text);
        }
        if !token.kind.is_trivia() {
            previous = [previous[1], Some(text)];
        }
    }
    Some(out)
}

/// Whether `word` is an SQL keyword in any dialect (sqlparser's list, which
/// is generous): such a name is quoted when airlock writes it.
pub fn is_keyword(word: &str) -> bool {
    let upper = word.to_ascii_uppercase();
    sqlparser::keywords::ALL_KEYWORDS.binary_search(&upper.as_str()).is_ok()
}

fn unquote(quoted: &str) -> String {
    let (open, close) = match quoted.chars().next() {
        Some('`') => ('`', '`'),
        Some('[') => ('[', ']'),
        _ => ('"', '"'),
    };
    let inner = quoted.strip_prefix(open).and_then(|q| q.strip_suffix(close)).unwrap_or(quoted);
    inner.replace(&format!("{close}{close}"), &close.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_column_is_replaced() {
        let r = |e: &str| replace_column(e, Dialect::Postgres, "price", "NEW.price").unwrap();
        assert_eq!(r("price::numeric(10,2)"), "NEW.price::numeric(10,2)");
        assert_eq!(r("round(PRICE * 100) -- price"), "round(NEW.price * 100) -- price");
        assert_eq!(r("'price' || \"price\" || t.price || price_old"), "'price' || NEW.price || t.price || price_old");
        assert_eq!(r("x::price"), "x::price");
        let m = replace_column("CAST(`price` AS DECIMAL(10,2))", Dialect::MySql, "price", "NEW.`price`").unwrap();
        assert_eq!(m, "CAST(NEW.`price` AS DECIMAL(10,2))");
        assert_eq!(replace_column("'unclosed", Dialect::Postgres, "x", "y"), None);
        assert!(is_keyword("order") && is_keyword("rank") && is_keyword("Range") && !is_keyword("email_address"));
    }
}
