//! Checksums of migration text, and exactly what they cover.
//!
//! The checksum of a migration is the SHA-256, in lower-case hex, of its up
//! script after [`normalize`]:
//! - a leading UTF-8 byte-order mark is removed;
//! - line endings are unified: CRLF and lone CR become LF;
//! - trailing spaces and tabs at the end of every line are removed;
//! - blank lines at the end of the text are removed, and so is the final newline.
//!
//! Everything else counts: leading whitespace, comments, the header directives,
//! letter case, blank lines between statements. The file name, the version and
//! the down script are **not** covered (a down script may be fixed after its up
//! ran; renaming a file is reported separately).
//! For dbmate-style single files only the `-- migrate:up` section is covered.

use sha2::{Digest, Sha256};

/// The text the checksum is taken over; see the module docs for the rules.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    normalized_lines(text, |line| {
        out.push_str(line);
        out.push('\n');
    });
    let kept = out.trim_end_matches('\n').len();
    out.truncate(kept);
    out
}

/// Calls `emit` with each normalized line, in order, without the blank lines at
/// the end. The one place that knows the rules, for `normalize` and `checksum`.
fn normalized_lines(text: &str, mut emit: impl FnMut(&str)) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut blank_run = 0usize;
    for line in text.split('\n') {
        // The CR of a CRLF belongs to the line end; any other CR is a line end of its own.
        let line = line.strip_suffix('\r').unwrap_or(line);
        for piece in line.split('\r') {
            let piece = piece.trim_end_matches([' ', '\t']);
            if piece.is_empty() {
                blank_run += 1;
                continue;
            }
            for _ in 0..blank_run {
                emit("");
            }
            blank_run = 0;
            emit(piece);
        }
    }
}

/// SHA-256 of the normalized text, as 64 lower-case hex digits.
pub fn checksum(text: &str) -> String {
    let mut hasher = Sha256::new();
    let mut first = true;
    normalized_lines(text, |line| {
        if !first {
            hasher.update(b"\n");
        }
        first = false;
        hasher.update(line.as_bytes());
    });
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for byte in hasher.finalize() {
        hex.push(HEX[usize::from(byte >> 4)] as char);
        hex.push(HEX[usize::from(byte & 0xf)] as char);
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_bom_line_endings_and_trailing_whitespace() {
        let base = checksum("CREATE TABLE t (id int);\nSELECT 1;");
        for same in [
            "\u{feff}CREATE TABLE t (id int);\nSELECT 1;",
            "CREATE TABLE t (id int);\r\nSELECT 1;\r\n",
            "CREATE TABLE t (id int);  \t\nSELECT 1;   \n\n\n",
            "CREATE TABLE t (id int);\rSELECT 1;",
        ] {
            assert_eq!(checksum(same), base, "{same:?}");
        }
    }

    #[test]
    fn covers_everything_else() {
        let base = checksum("CREATE TABLE t (id int);\nSELECT 1;");
        for different in [
            "create table t (id int);\nSELECT 1;",
            "  CREATE TABLE t (id int);\nSELECT 1;",
            "CREATE TABLE t (id int);\n\nSELECT 1;",
            "-- airlock:data\nCREATE TABLE t (id int);\nSELECT 1;",
            "CREATE TABLE t (id int);\nSELECT 1; -- done",
        ] {
            assert_ne!(checksum(different), base, "{different:?}");
        }
    }

    #[test]
    fn checksum_is_the_hash_of_normalize() {
        for text in ["", "a", "a\r\n\r\nb  \n\n", "\u{feff}x\ry\r", "\n\nleading blank lines\n", "a\r\r\nb"] {
            let expected = Sha256::digest(normalize(text).as_bytes());
            let hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(checksum(text), hex, "{text:?}");
        }
        assert_eq!(normalize("a\r\r\nb"), "a\n\nb");
        assert_eq!(normalize("\n\nx"), "\n\nx");
    }

    #[test]
    fn is_hex_sha256() {
        assert_eq!(checksum(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
