//! Many load hosts, one test: which share of the test a run is (`bench
//! --shard I/N`), which test it belongs to (`--run-id`, or its
//! `--start-at`), and whether a set of runs is one whole test (`merge`).
//! No coordinator of our own: whatever starts the hosts (a Kubernetes
//! Indexed Job, ssh, a CI matrix) gives each its index.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Shard `index` of `count`, numbered from 0 as Kubernetes'
/// `JOB_COMPLETION_INDEX` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Shard {
    /// This host's number, `0..count`.
    pub index: u32,
    /// How many hosts share the test.
    pub count: u32,
}

impl Shard {
    /// Shard `index` of `count`.
    ///
    /// # Errors
    /// What is wrong with the pair, in words.
    pub fn new(index: u32, count: u32) -> Result<Self, String> {
        if count == 0 {
            return Err("a test has at least one shard (I/N with N >= 1)".into());
        }
        if index >= count {
            return Err(format!(
                "there is no shard {index} of {count}: shards are numbered 0 to {} \
                 (as Kubernetes' JOB_COMPLETION_INDEX)",
                count - 1
            ));
        }
        Ok(Self { index, count })
    }

    /// This shard's part of `total` (connections): an even split, the
    /// first `total % count` shards taking one more.
    #[must_use]
    pub fn part(self, total: usize) -> usize {
        let (n, i) = (self.count as usize, self.index as usize);
        total / n + usize::from(i < total % n)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not I/N (this host's shard I of N, as 0/3)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (i, n) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        Self::new(i, n)
    }
}

impl TryFrom<String> for Shard {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Shard> for String {
    fn from(shard: Shard) -> Self {
        shard.to_string()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Which test a run belongs to, and its share of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The test's name, the same on every host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// This host's share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// How late this host began after `--start-at` (negative: early), in
    /// microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_skew_us: Option<f64>,
}

impl Identity {
    /// Whether it says anything.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.run_id.is_none() && self.shard.is_none() && self.start_skew_us.is_none()
    }
}

/// Why a set of runs is not one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetError {
    /// Runs of different tests (their ids, in order).
    MixedRuns(Vec<String>),
    /// Two runs claim the same shard.
    Duplicate(Shard),
    /// The runs disagree on how many shards there are.
    Counts(Vec<u32>),
}

impl fmt::Display for SetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MixedRuns(ids) => write!(
                f,
                "these are runs of different tests ({}); merge the runs of one --run-id, or say --allow-mixed",
                ids.join(", ")
            ),
            Self::Duplicate(shard) => write!(f, "two runs are both shard {shard}"),
            Self::Counts(counts) => {
                let counts: Vec<String> = counts.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "the runs disagree on the shard count ({})",
                    counts.join(", ")
                )
            }
        }
    }
}

impl std::error::Error for SetError {}

/// Checks that `runs` are one test: one run id (unless `allow_mixed`), no
/// shard twice, one shard count. Returns the shards missing from it
/// (none when the runs carry no shards, or are of several tests).
///
/// # Errors
/// [`SetError`] when they are not one test.
pub fn missing_shards(runs: &[&Identity], allow_mixed: bool) -> Result<Vec<u32>, SetError> {
    let mut ids: Vec<String> = runs.iter().filter_map(|r| r.run_id.clone()).collect();
    ids.sort();
    ids.dedup();
    if ids.len() > 1 {
        if !allow_mixed {
            return Err(SetError::MixedRuns(ids));
        }
        // Shards of different tests say nothing of each other's whole.
        return Ok(Vec::new());
    }
    let mut shards: Vec<Shard> = runs.iter().filter_map(|r| r.shard).collect();
    let mut counts: Vec<u32> = shards.iter().map(|s| s.count).collect();
    counts.sort_unstable();
    counts.dedup();
    if counts.len() > 1 {
        return Err(SetError::Counts(counts));
    }
    shards.sort();
    if let Some(pair) = shards.windows(2).find(|w| w[0] == w[1]) {
        return Err(SetError::Duplicate(pair[0]));
    }
    let Some(&count) = counts.first() else {
        return Ok(Vec::new());
    };
    Ok((0..count)
        .filter(|i| !shards.iter().any(|s| s.index == *i))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(run: &str, shard: &str) -> Identity {
        Identity {
            run_id: Some(run.into()),
            shard: Some(shard.parse().unwrap()),
            start_skew_us: None,
        }
    }

    #[test]
    fn a_shard_is_i_of_n_numbered_from_0() {
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, count: 3 }));
        for bad in ["3/2", "0/0", "1", "a/3", "-1/3", "1/3/4", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert!(
            "3/3"
                .parse::<Shard>()
                .unwrap_err()
                .contains("numbered 0 to 2")
        );
    }

    #[test]
    fn connections_split_evenly_with_the_first_shards_taking_the_rest() {
        let parts: Vec<usize> = (0..3).map(|i| Shard::new(i, 3).unwrap().part(10)).collect();
        assert_eq!(parts, [4, 3, 3]);
        assert_eq!(parts.iter().sum::<usize>(), 10);
        assert_eq!(Shard::new(4, 5).unwrap().part(3), 0);
    }

    #[test]
    fn a_set_of_runs_is_one_test_or_says_why_not() {
        let (a, b, c) = (id("t", "0/3"), id("t", "1/3"), id("t", "2/3"));
        assert_eq!(missing_shards(&[&a, &b, &c], false), Ok(vec![]));
        assert_eq!(missing_shards(&[&a, &c], false), Ok(vec![1]));
        let other = id("u", "1/3");
        assert_eq!(
            missing_shards(&[&a, &other], false),
            Err(SetError::MixedRuns(vec!["t".into(), "u".into()]))
        );
        assert_eq!(missing_shards(&[&a, &other], true), Ok(vec![]));
        assert_eq!(
            missing_shards(&[&a, &a.clone()], false),
            Err(SetError::Duplicate("0/3".parse().unwrap()))
        );
        assert_eq!(
            missing_shards(&[&a, &id("t", "1/2")], false),
            Err(SetError::Counts(vec![2, 3]))
        );
        assert_eq!(missing_shards(&[&Identity::default()], false), Ok(vec![]));
    }
}
