//! Migration versions: dotted numbers compared numerically, segment by segment.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A migration version such as `3`, `20240101120000` or `1.2.10`.
///
/// Segments are compared as unbounded non-negative integers (`2` < `10`,
/// `1.2` < `1.10`), and a shorter version that is a prefix of a longer one sorts
/// first (`1` < `1.0.1`). Leading zeros are not significant: `001` and `1` are the
/// same version, and the canonical text (what is stored and printed) drops them.
#[derive(Clone, Debug, Eq)]
pub struct Version {
    /// The canonical text: segments of ASCII digits without leading zeros
    /// (`0` for zero) joined by `.`. Kept inline up to 24 bytes (a 14-digit
    /// timestamp is), so that copying a version, done for every migration on
    /// every run, allocates nothing.
    text: compact_str::CompactString,
    /// More than one segment. Most projects number their migrations with one
    /// (`42`, a timestamp), compared as a whole: by length, then digit by digit.
    dotted: bool,
}

/// Why a text is not a version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a version: {why}")]
pub struct VersionError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl Version {
    /// Parses dotted digits (`1.2.10`). Use [`Version::from_segments`] for other separators.
    pub fn parse(text: &str) -> Result<Version, VersionError> {
        Version::from_segments(text, text.split('.'))
    }

    /// Builds a version from already separated digit runs; `text` is only for the error.
    pub fn from_segments<'a>(text: &str, parts: impl IntoIterator<Item = &'a str>) -> Result<Version, VersionError> {
        let err = |why| VersionError { text: text.to_owned(), why };
        let mut canonical = compact_str::CompactString::default();
        for part in parts {
            if part.is_empty() {
                return Err(err("it has an empty segment"));
            }
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("segments must be digits"));
            }
            let trimmed = part.trim_start_matches('0');
            if !canonical.is_empty() {
                canonical.push('.');
            }
            canonical.push_str(if trimmed.is_empty() { "0" } else { trimmed });
        }
        if canonical.is_empty() {
            return Err(err("it is empty"));
        }
        let dotted = canonical.contains('.');
        Ok(Version { text: canonical, dotted })
    }
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s.trim())
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn cmp_digits(a: &[u8], b: &[u8]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        if !self.dotted && !other.dotted {
            return cmp_digits(self.text.as_bytes(), other.text.as_bytes());
        }
        let dot = |b: &u8| *b == b'.';
        let (mut mine, mut theirs) = (self.text.as_bytes().split(dot), other.text.as_bytes().split(dot));
        loop {
            match (mine.next(), theirs.next()) {
                (Some(a), Some(b)) => match cmp_digits(a, b) {
                    Ordering::Equal => continue,
                    unequal => return unequal,
                },
                (None, None) => return Ordering::Equal,
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
            }
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        // Canonical texts: equal versions have equal texts.
        self.text == other.text
    }
}

impl std::hash::Hash for Version {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn compares_numerically_segment_by_segment() {
        assert!(v("2") < v("10"));
        assert!(v("1.2") < v("1.10"));
        assert!(v("1") < v("1.0.1"));
        assert!(v("9.9.9") < v("10"));
        assert!(v("20240101120000") < v("20240101120001"));
        assert!(v("99999999999999999999999999") < v("100000000000000000000000000"));
    }

    #[test]
    fn leading_zeros_are_not_significant() {
        assert_eq!(v("001"), v("1"));
        assert_eq!(v("001").to_string(), "1");
        assert_eq!(v("1.02.000").to_string(), "1.2.0");
        assert_eq!(v("0").to_string(), "0");
    }

    #[test]
    fn rejects_what_is_not_a_version() {
        for bad in ["", "a", "1..2", "1.", ".1", "1a", "-1", "1 2"] {
            assert!(Version::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
