//! A migration as discovered on disk: version, name, kind, scripts and header directives.

use std::path::PathBuf;
use std::time::Duration;

use crate::checksum::checksum;
use crate::version::Version;

/// Whether a migration changes the schema or the data (`-- airlock:data`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// DDL; data changes are flagged by lint.
    Schema,
    /// DML, marked with `-- airlock:data`; DDL is flagged by lint.
    Data,
}

impl Kind {
    /// The name stored in history and printed: `schema` or `data`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Schema => "schema",
            Kind::Data => "data",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "schema" => Some(Kind::Schema),
            "data" => Some(Kind::Data),
            _ => None,
        }
    }
}

/// One finding accepted: `-- airlock:allow <rule-id> <reason>`, in the header
/// (the whole file) or on the line before a statement (that statement).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allow {
    /// The rule id, e.g. `drop-column`.
    pub rule: String,
    /// Why it is acceptable; kept in the audit record.
    pub reason: String,
    /// 1-based line of the directive.
    pub line: usize,
    /// In the header: applies to every statement of the file.
    pub header: bool,
}

/// How a pending contract migration is described wherever it shows
/// (`migrate`, `status`, the gate, `serve`).
pub const CONTRACT_PENDING: &str = "expanded; contract pending (old app versions may still be running)";

/// The `-- airlock:...` directives of a script's header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    /// `-- airlock:data`.
    pub data: bool,
    /// `-- airlock:backfill`: a data migration whose statements run in
    /// keyset batches, each its own short transaction, resumable where it stopped.
    pub backfill: bool,
    /// `-- airlock:no-transaction` (or dbmate's `transaction:false`).
    pub no_transaction: bool,
    /// `-- airlock:expand <statement>`: the first migration of an
    /// expand/contract of that statement (`airlock expand` writes it); the
    /// plan checks the live rows as it would for the statement itself.
    pub expand: Option<String>,
    /// `-- airlock:contract`: the last migration of an expand/contract,
    /// run only by `migrate --contract`, once no old app version runs.
    pub contract: bool,
    /// `-- airlock:roll-forward [reason]`: has no down script on purpose
    /// (`airlock new --no-down`); it is undone by a later migration.
    pub roll_forward: Option<String>,
    /// `-- airlock:allow <rule-id> <reason>` lines.
    pub allows: Vec<Allow>,
    /// `-- airlock:lock-timeout <duration>`: overrides the configured lock timeout.
    pub lock_timeout: Option<Duration>,
    /// `-- airlock:statement-timeout <duration>`: overrides the configured statement timeout.
    pub statement_timeout: Option<Duration>,
}

/// An up or down script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// The file it came from.
    pub path: PathBuf,
    /// The script text (a leading BOM removed; for dbmate files, only this section).
    pub sql: String,
    /// Line of `path` on which `sql` starts, minus one (0 for whole files).
    pub line_offset: usize,
}

impl Script {
    /// The checksum of this script; see [`crate::checksum`] for what it covers.
    pub fn checksum(&self) -> String {
        checksum(&self.sql)
    }
}

/// A migration found in the migrations directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    /// Its version.
    pub version: Version,
    /// The name part of the file name, e.g. `create_users`.
    pub name: String,
    /// Schema or data.
    pub kind: Kind,
    /// The up script.
    pub up: Script,
    /// The down script, when there is one.
    pub down: Option<Script>,
    /// The up script's header directives.
    pub directives: Directives,
    /// The down script's header directives (empty without a down script).
    pub down_directives: Directives,
    /// Checksum of the up script.
    pub checksum: String,
}

/// A directive that could not be read: the line and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectiveError {
    /// 1-based line within the script.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

const PREFIX: &str = "airlock:";

/// Reads the `-- airlock:` directives of a script.
///
/// The header is the run of blank and `--` comment lines at the top. A directive
/// outside the header is an error (it would silently do nothing), except
/// `allow`, which may also stand on the line before the statement it concerns.
pub fn parse_directives(sql: &str) -> Result<Directives, DirectiveError> {
    let mut directives = Directives::default();
    let mut in_header = true;
    for (index, raw) in sql.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        let comment = trimmed.strip_prefix("--").map(str::trim);
        if trimmed.is_empty() {
            continue;
        }
        let Some(comment) = comment else {
            in_header = false;
            continue;
        };
        let Some(body) = comment.strip_prefix(PREFIX) else { continue };
        let (name, args) = match body.split_once(char::is_whitespace) {
            Some((name, args)) => (name, args.trim()),
            None => (body, ""),
        };
        let err = |message: String| DirectiveError { line, message };
        if !in_header && name != "allow" {
            return Err(err(format!(
                "`-- airlock:{name}` must be in the header (the comment lines before the first statement), where it applies to the whole file"
            )));
        }
        match name {
            "data" | "no-transaction" | "backfill" | "contract" if !args.is_empty() => {
                return Err(err(format!("`-- airlock:{name}` takes no arguments, found `{args}`")));
            }
            "data" => directives.data = true,
            "backfill" => directives.backfill = true,
            "contract" => directives.contract = true,
            "expand" if args.is_empty() => {
                return Err(err(
                    "`-- airlock:expand` names the statement it expands, e.g. `-- airlock:expand ALTER TABLE users RENAME COLUMN email TO email_address`".to_owned(),
                ));
            }
            "expand" => directives.expand = Some(args.trim_end_matches(';').to_owned()),
            "no-transaction" => directives.no_transaction = true,
            "roll-forward" => directives.roll_forward = Some(args.to_owned()),
            "allow" => {
                let Some((rule, reason)) = args.split_once(char::is_whitespace) else {
                    return Err(err(format!(
                        "`-- airlock:allow` needs a rule id and a reason, e.g. `-- airlock:allow drop-column the column is unused since v42`; found `{args}`"
                    )));
                };
                directives.allows.push(Allow {
                    rule: rule.to_owned(),
                    reason: reason.trim().to_owned(),
                    line,
                    header: in_header,
                });
            }
            "lock-timeout" | "statement-timeout" => {
                let duration = parse_duration(args).map_err(|why| err(format!("`-- airlock:{name} {args}`: {why}")))?;
                if name == "lock-timeout" {
                    directives.lock_timeout = Some(duration);
                } else {
                    directives.statement_timeout = Some(duration);
                }
            }
            other => {
                return Err(err(format!(
                    "unknown directive `-- airlock:{other}`; known: data, backfill, expand, contract, no-transaction, roll-forward, allow, lock-timeout, statement-timeout"
                )));
            }
        }
    }
    Ok(directives)
}

/// Parses `500ms`, `5s`, `2m`, `1h`, `1h30m` or `0` (no limit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("expected a duration such as 500ms, 5s, 2m or 1h".to_owned());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("`{text}` is not a duration; expected e.g. 500ms, 5s, 2m or 1h"));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| format!("`{text}` is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" | "min" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "" => return Err(format!("`{text}` needs a unit (ms, s, m or h)")),
            other => return Err(format!("`{other}` is not a unit; use ms, s, m or h")),
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_header_directives() {
        let d = parse_directives(
            "-- a comment\n-- airlock:data\n--airlock:no-transaction\n-- airlock:allow drop-column unused since 2023\n-- airlock:lock-timeout 2s\n\nUPDATE t SET x = 1;",
        )
        .unwrap();
        assert!(d.data);
        assert!(d.no_transaction);
        assert_eq!(d.allows.len(), 1);
        assert_eq!(d.allows[0].rule, "drop-column");
        assert_eq!(d.allows[0].reason, "unused since 2023");
        assert_eq!(d.allows[0].line, 4);
        assert_eq!(d.lock_timeout, Some(Duration::from_secs(2)));
    }

    #[test]
    fn expand_names_its_statement_and_contract_takes_nothing() {
        let d =
            parse_directives("-- airlock:expand ALTER TABLE t RENAME COLUMN a TO b;\nALTER TABLE t ADD COLUMN b int;")
                .unwrap();
        assert_eq!(d.expand.as_deref(), Some("ALTER TABLE t RENAME COLUMN a TO b"));
        assert!(parse_directives("-- airlock:expand\n").unwrap_err().message.contains("names the statement"));
        assert!(parse_directives("-- airlock:contract\nALTER TABLE t DROP COLUMN a;").unwrap().contract);
        assert!(parse_directives("-- airlock:contract now\n").is_err());
    }

    #[test]
    fn backfill_takes_no_arguments() {
        assert!(parse_directives("-- airlock:backfill\nUPDATE t SET x = 1;").unwrap().backfill);
        let e = parse_directives("-- airlock:backfill 500\n").unwrap_err();
        assert!(e.message.contains("takes no arguments"), "{}", e.message);
    }

    #[test]
    fn rejects_unknown_and_misplaced_directives() {
        let e = parse_directives("-- airlock:dta\nSELECT 1;").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("unknown directive `-- airlock:dta`"), "{}", e.message);

        let e = parse_directives("SELECT 1;\n-- airlock:data\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("must be in the header"));

        let e = parse_directives("-- airlock:allow drop-column\n").unwrap_err();
        assert!(e.message.contains("needs a rule id and a reason"));

        let e = parse_directives("-- airlock:lock-timeout soon\n").unwrap_err();
        assert!(e.message.contains("not a duration"));
    }

    #[test]
    fn allow_before_a_statement_is_kept_for_that_statement() {
        let d = parse_directives("SELECT 1;\n-- airlock:allow drop-table old\nDROP TABLE x;").unwrap();
        assert_eq!(d.allows.len(), 1);
        assert_eq!((d.allows[0].line, d.allows[0].header), (2, false));
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 days").is_err());
    }
}
