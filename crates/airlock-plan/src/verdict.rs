//! The plan's vocabulary: what can make a statement unsafe ([`RiskCode`], the
//! names an `-- airlock:allow` may use), what to do about each, and the one
//! rule that turns risks into a [`Verdict`] for `plan` and `migrate` alike.

use serde::{Serialize, Serializer};

/// The verdict on a statement, a migration or the whole plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing found that blocks writes for long or will fail.
    Safe,
    /// Blocks writes on a large table, or a check could not tell.
    Risky,
    /// A check shows it will fail, or lose data or attributes.
    Blocked,
}

impl Verdict {
    /// Its name, as JSON writes it: `safe`, `risky`, `blocked`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Safe => "safe",
            Verdict::Risky => "risky",
            Verdict::Blocked => "blocked",
        }
    }
}

/// What a risk is, as an allow names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RiskCode {
    /// Rows whose foreign key has no match.
    ForeignKeyOrphans,
    /// Keys a new unique constraint or index finds twice.
    UniqueDuplicates,
    /// NULLs in a column about to be NOT NULL.
    NotNullViolations,
    /// Rows of a table that gets a NOT NULL column without a default.
    NewColumnNulls,
    /// Rows that fail a new CHECK.
    CheckViolations,
    /// Values that do not fit the new type.
    CastFailures,
    /// Column attributes a MySQL MODIFY/CHANGE drops.
    AttributeLoss,
    /// A generated key near the maximum of its type.
    IdExhaustion,
    /// Sessions the statement will queue behind.
    LockBlockers,
    /// It blocks writes on a large table.
    BlocksWrites,
    /// Estimated to take longer than `estimate_budget`.
    OverBudget,
    /// airlock could not read or check it.
    Unchecked,
    /// An error finding of this lint rule.
    Lint(&'static str),
}

impl RiskCode {
    /// The plan's own codes (lint rules aside), in the order the docs list them.
    pub const ALL: [RiskCode; 12] = [
        RiskCode::ForeignKeyOrphans,
        RiskCode::UniqueDuplicates,
        RiskCode::NotNullViolations,
        RiskCode::NewColumnNulls,
        RiskCode::CheckViolations,
        RiskCode::CastFailures,
        RiskCode::AttributeLoss,
        RiskCode::IdExhaustion,
        RiskCode::LockBlockers,
        RiskCode::BlocksWrites,
        RiskCode::OverBudget,
        RiskCode::Unchecked,
    ];

    /// The code as written in an allow, the JSON and messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            RiskCode::ForeignKeyOrphans => "foreign-key-orphans",
            RiskCode::UniqueDuplicates => "unique-duplicates",
            RiskCode::NotNullViolations => "not-null-violations",
            RiskCode::NewColumnNulls => "new-column-nulls",
            RiskCode::CheckViolations => "check-violations",
            RiskCode::CastFailures => "cast-failures",
            RiskCode::AttributeLoss => "attribute-loss",
            RiskCode::IdExhaustion => "id-exhaustion",
            RiskCode::LockBlockers => "lock-blockers",
            RiskCode::BlocksWrites => "blocks-writes",
            RiskCode::OverBudget => "over-budget",
            RiskCode::Unchecked => "unchecked",
            RiskCode::Lint(rule) => rule,
        }
    }

    /// The plan's code of this name (not a lint rule's).
    pub fn from_name(name: &str) -> Option<RiskCode> {
        RiskCode::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Whether an `-- airlock:allow` may name it: the risks that may hurt
    /// but need not (a person can judge them and say why), and losing
    /// attributes on purpose. What will fail (orphans, duplicates, NULLs,
    /// failing rows or casts, a NOT NULL column over rows) fails with or
    /// without an allow; a lint rule's allow is lint's business.
    pub fn allowable(self) -> bool {
        match self {
            RiskCode::ForeignKeyOrphans
            | RiskCode::UniqueDuplicates
            | RiskCode::NotNullViolations
            | RiskCode::NewColumnNulls
            | RiskCode::CheckViolations
            | RiskCode::CastFailures
            | RiskCode::Lint(_) => false,
            RiskCode::AttributeLoss
            | RiskCode::IdExhaustion
            | RiskCode::LockBlockers
            | RiskCode::BlocksWrites
            | RiskCode::OverBudget
            | RiskCode::Unchecked => true,
        }
    }

    /// What to do about it, in a sentence. `online_form` is the engine's way
    /// to change a busy table without blocking writers (its driver profile's).
    pub fn fix(self, online_form: &str) -> String {
        let allow = |code: RiskCode| {
            format!(
                "or, if it is acceptable, say why with `-- airlock:allow {} <reason>` on the line before the statement",
                code.as_str()
            )
        };
        match self {
            RiskCode::ForeignKeyOrphans => "delete or fix the orphaned rows in a data migration before this one (or point them at a real row); on PostgreSQL, add the key NOT VALID and VALIDATE it once the rows are clean".to_owned(),
            RiskCode::UniqueDuplicates => "remove or merge the duplicate rows in a data migration before this one".to_owned(),
            RiskCode::NotNullViolations => "fill the NULLs in a data migration before this one, or give the column a default first".to_owned(),
            RiskCode::CheckViolations => "fix the failing rows in a data migration before this one; on PostgreSQL, add the constraint NOT VALID and VALIDATE it once they pass".to_owned(),
            RiskCode::NewColumnNulls => "add the column with a DEFAULT (a constant one is stored without rewriting the table), or add it nullable, fill it in a data migration, then SET NOT NULL".to_owned(),
            RiskCode::CastFailures => "convert or clear the values that do not fit in a data migration before this one, or choose a type that holds them".to_owned(),
            RiskCode::AttributeLoss => format!("repeat every attribute to keep, as in the corrected statement, {}", allow(self)),
            RiskCode::IdExhaustion => format!("widen the key (and the columns that reference it) to bigint before it runs out, {}", allow(self)),
            RiskCode::LockBlockers => format!(
                "wait for those sessions to end, or end them; airlock's lock timeout stops the statement from queueing behind them, {}",
                allow(self)
            ),
            RiskCode::BlocksWrites => format!("{online_form}, run it in a quiet window, {}", allow(self)),
            RiskCode::OverBudget => format!("split the work (batches, an online form), raise `estimate_budget` in airlock.toml, {}", allow(self)),
            RiskCode::Unchecked => format!(
                "if a check ran out of time, give it more (`plan --check-timeout`, or `check_timeout` in airlock.toml); if airlock cannot check the statement, review it by hand; {}",
                allow(self)
            ),
            RiskCode::Lint(rule) => format!("see the `{rule}` finding: its help says what to write instead"),
        }
    }
}

impl std::fmt::Display for RiskCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RiskCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for RiskCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Why a statement is not `safe`: what was found, what to do, and whether a
/// person accepted it with `-- airlock:allow <code> <reason>`.
#[derive(Clone, Debug, Serialize)]
pub struct Risk {
    /// What kind of risk: what an allow names.
    pub code: RiskCode,
    /// What was found.
    pub message: String,
    /// What to do about it.
    pub fix: String,
    /// The statement will fail or lose data or attributes.
    pub blocks: bool,
    /// The reason of the `-- airlock:allow` that accepts it, if one does.
    pub allowed: Option<String>,
    /// A failed check whose rows a pending data migration before this one
    /// may change (its version): the plan cannot know what that leaves, so
    /// the risk does not block; `migrate` checks again just before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rechecked_after: Option<String>,
}

impl Risk {
    /// A risk with its code's fix, accepted by no allow yet.
    pub fn new(code: RiskCode, message: String, blocks: bool, online_form: &str) -> Risk {
        Risk { code, message, fix: code.fix(online_form), blocks, allowed: None, rechecked_after: None }
    }

    /// Whether an allow may accept it: a code an allow may name (so lint and
    /// plan agree on which allows mean something), not blocking, or blocking
    /// only for what a person may mean (losing attributes); the rest fails anyway.
    pub fn acceptable(&self) -> bool {
        self.code.allowable() && (!self.blocks || self.code == RiskCode::AttributeLoss)
    }
}

/// The one rule by which `plan` and `migrate` judge a statement, so that the
/// plan says `blocked` exactly when `migrate` would refuse it: a risk that
/// will fail and no allow can accept blocks; so does, in a `protected`
/// environment, any risk no allow accepts (unless a pending data migration
/// before it may change what it found: `migrate` looks again then). Any
/// other risk makes the statement risky.
pub fn verdict_of(reasons: &[Risk], protected: bool) -> Verdict {
    reasons
        .iter()
        .map(|r| match () {
            _ if r.allowed.is_some() => Verdict::Risky,
            _ if r.blocks => Verdict::Blocked,
            _ if protected && r.rechecked_after.is_none() => Verdict::Blocked,
            _ => Verdict::Risky,
        })
        .max()
        .unwrap_or(Verdict::Safe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_name_and_a_fix() {
        for code in RiskCode::ALL {
            assert_eq!(RiskCode::from_name(code.as_str()), Some(code));
            assert!(!code.fix("use the online form").is_empty());
            if code.allowable() {
                assert!(code.fix("").contains(&format!("-- airlock:allow {code} <reason>")), "{code}");
            }
        }
        assert!(RiskCode::BlocksWrites.fix("use gh-ost").starts_with("use gh-ost, run it in a quiet window"));
        assert_eq!(RiskCode::from_name("adding-foreign-key"), None);
    }

    #[test]
    fn the_verdict_is_the_worst_risk() {
        let risk = |code, blocks| Risk::new(code, String::new(), blocks, "");
        assert_eq!(verdict_of(&[], true), Verdict::Safe);
        assert_eq!(verdict_of(&[risk(RiskCode::BlocksWrites, false)], false), Verdict::Risky);
        assert_eq!(verdict_of(&[risk(RiskCode::BlocksWrites, false)], true), Verdict::Blocked);
        let mut accepted = risk(RiskCode::AttributeLoss, true);
        accepted.allowed = Some("on purpose".into());
        assert_eq!(verdict_of(&[accepted], true), Verdict::Risky);
        let mut later = risk(RiskCode::ForeignKeyOrphans, false);
        later.rechecked_after = Some("3".into());
        assert_eq!(verdict_of(&[later, risk(RiskCode::Unchecked, false)], false), Verdict::Risky);
        assert_eq!(verdict_of(&[risk(RiskCode::CastFailures, true)], false), Verdict::Blocked);
    }
}
