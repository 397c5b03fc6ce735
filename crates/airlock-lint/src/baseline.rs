//! Baselines: adopting airlock on a project with hundreds of old migrations
//! without editing history. `lint --write-baseline FILE` records today's
//! findings by migration checksum and rule; with `--baseline FILE`, a finding
//! is held back when its file is unchanged (same checksum) and the baseline
//! recorded that rule for it, as many times as it recorded it. New and edited
//! files are held to every rule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Report;

/// One migration file's recorded findings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The file, for people reading the baseline.
    pub file: String,
    /// The migration's checksum when the baseline was written.
    pub checksum: String,
    /// How many findings of each rule it had.
    pub rules: BTreeMap<String, usize>,
}

/// A baseline file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// The format's version: 1.
    pub airlock_baseline: u32,
    /// One entry per file with findings.
    pub entries: Vec<Entry>,
}

impl Baseline {
    /// Records a report's standing findings.
    pub fn of(report: &Report) -> Baseline {
        let mut by_file: BTreeMap<(String, String), BTreeMap<String, usize>> = BTreeMap::new();
        for f in &report.findings {
            let key = (f.checksum.clone(), f.file.display().to_string());
            *by_file.entry(key).or_default().entry(f.rule.to_owned()).or_default() += 1;
        }
        Baseline {
            airlock_baseline: 1,
            entries: by_file.into_iter().map(|((checksum, file), rules)| Entry { file, checksum, rules }).collect(),
        }
    }

    /// Holds back the findings this baseline recorded; counts them in `baselined`.
    pub fn apply(&self, report: &mut Report) {
        let mut budget: BTreeMap<(String, String), usize> = BTreeMap::new();
        for entry in &self.entries {
            for (rule, count) in &entry.rules {
                *budget.entry((entry.checksum.clone(), rule.clone())).or_default() += count;
            }
        }
        let before = report.findings.len();
        report.findings.retain(|f| match budget.get_mut(&(f.checksum.clone(), f.rule.to_owned())) {
            Some(left) if *left > 0 => {
                *left -= 1;
                false
            }
            _ => true,
        });
        report.baselined += before - report.findings.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::test::report;
    use airlock_core::schema::Catalog;
    use airlock_sql::Dialect::Postgres;

    #[test]
    fn holds_back_unchanged_files_only() {
        let old = [("1_a.up.sql", "DROP TABLE legacy;\n"), ("1_a.down.sql", "SELECT 1;\n")];
        let baseline = Baseline::of(&report(Postgres, &old, Catalog::offline()));
        let text = serde_json::to_string(&baseline).unwrap();
        assert_eq!(serde_json::from_str::<Baseline>(&text).unwrap(), baseline);

        let mut same = report(Postgres, &old, Catalog::offline());
        baseline.apply(&mut same);
        assert!(same.findings.is_empty(), "{:?}", same.findings);
        assert!(same.baselined > 0);

        // A new file, and an edit of the old one, are held to every rule.
        let newer = [
            ("1_a.up.sql", "DROP TABLE legacy;\nDROP TABLE other;\n"),
            ("1_a.down.sql", "SELECT 1;\n"),
            ("2_b.up.sql", "DROP TABLE more;\n"),
            ("2_b.down.sql", "SELECT 1;\n"),
        ];
        let mut changed = report(Postgres, &newer, Catalog::offline());
        baseline.apply(&mut changed);
        assert_eq!(changed.baselined, 0);
        assert!(changed.findings.iter().any(|f| f.rule == "drop-table" && f.version == "1"));
    }
}
