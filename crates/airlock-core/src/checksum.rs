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
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let unified = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(unified.len());
    for line in unified.split('\n') {
        out.push_str(line.trim_end_matches([' ', '\t']));
        out.push('\n');
    }
    let kept = out.trim_end_matches('\n').len();
    out.truncate(kept);
    out
}

/// SHA-256 of the normalized text, as 64 lower-case hex digits.
pub fn checksum(text: &str) -> String {
    let digest = Sha256::digest(normalize(text).as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
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
    fn is_hex_sha256() {
        assert_eq!(
            checksum(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
