//! Segments of a scenario (`dps-loadgen run --segment I/N`): N generators on N machines each run
//! one of N disjoint parts of the same scenario, so that together they run all of it, and
//! `dps-loadgen merge` joins their results.
//!
//! The split is by start: the executor's k-th start (k from 0, in schedule order) belongs to
//! segment `k mod N + 1`. An arrival-rate schedule keeps its start times, so each segment offers
//! rate/N with starts that interleave with the others' (together: the scenario's schedule); a
//! closed loop and a hold take every N-th device, and their concurrency is split (what is left
//! over goes to the first segments). The fleet is the same in every segment (its devices' classes,
//! names and expected outcomes come from `[fleet] seed`), so a device's index is the same as in
//! the unsegmented run.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The most segments a scenario can be split into.
pub const MAX_SEGMENTS: usize = 10_000;

/// One of `count` parts, `index` from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Segment {
    /// Which part, 1-based.
    pub index: usize,
    /// Of how many.
    pub count: usize,
}

impl Segment {
    /// The whole scenario (an unsegmented run).
    pub const WHOLE: Segment = Segment { index: 1, count: 1 };

    /// Whether the executor's `k`-th start (from 0) is this segment's.
    pub fn contains(self, k: usize) -> bool {
        k % self.count.max(1) + 1 == self.index
    }

    /// This segment's share of `n` (devices at once, connections at once): `n / count`, the
    /// remainder to the first segments, at least 1.
    pub fn share(self, n: usize) -> usize {
        let count = self.count.max(1);
        (n / count + usize::from(self.index <= n % count)).max(1)
    }
}

impl Default for Segment {
    fn default() -> Self {
        Segment::WHOLE
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Why a `--segment` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("segment {0:?}: expected I/N with 1 <= I <= N <= {MAX_SEGMENTS}")]
pub struct SegmentError(String);

impl FromStr for Segment {
    type Err = SegmentError;
    fn from_str(s: &str) -> Result<Self, SegmentError> {
        let bad = || SegmentError(s.to_owned());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || index > count || count > MAX_SEGMENTS {
            return Err(bad());
        }
        Ok(Segment { index, count })
    }
}

/// What a segmented run's `summary.json` says of its segment (`segment`), for `merge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentInfo {
    /// Which part, 1-based.
    pub index: usize,
    /// Of how many.
    pub count: usize,
    /// [`scenario_hash`] of the scenario the segment ran: merge refuses segments of different
    /// scenarios.
    pub scenario_hash: String,
}

/// A hash of a scenario as parsed (FNV-1a over its canonical JSON, 16 hex digits): the same file
/// on every machine, whatever its comments and layout, gives the same hash.
pub fn scenario_hash(scenario: &crate::spec::Scenario) -> String {
    let json = serde_json::to_string(scenario).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in json.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!("2/3".parse(), Ok(Segment { index: 2, count: 3 }));
        for bad in ["0/3", "4/3", "3", "a/b", "1/0", "1/10001", ""] {
            assert!(bad.parse::<Segment>().is_err(), "{bad}");
        }
        assert_eq!(Segment { index: 2, count: 3 }.to_string(), "2/3");
    }

    #[test]
    fn shares_add_up_and_starts_split() {
        for n in [1, 2, 7, 64, 100] {
            for count in 1..=5 {
                let total: usize = (1..=count)
                    .map(|index| Segment { index, count }.share(n))
                    .sum();
                assert_eq!(total, n.max(count), "{n} over {count}");
            }
        }
        let seg = Segment { index: 2, count: 3 };
        let mine: Vec<usize> = (0..10).filter(|k| seg.contains(*k)).collect();
        assert_eq!(mine, [1, 4, 7]);
    }
}
