//! `dps-loadgen merge DIR... --results OUT`: the result directories of the N segments of one
//! scenario ([`crate::segment`]) merged into one result, written as a single run's (summary.json,
//! summary.md, histograms.txt, latency.svg): counters summed, HdrHistograms merged (so merged
//! percentiles are exactly those of one histogram of all samples), timelines aligned on their
//! start times, thresholds judged again on the merged run.

mod sum;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use crate::metrics::{new_histogram, Phase, Recorder};
use crate::summary::{Outcome, Summary};
use crate::threshold::Threshold;

pub use sum::{merge_histograms, merge_summaries};

/// Why segments could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A file of a segment's result directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The merged result could not be written.
    #[error("cannot write the merged result into {path}: {source}")]
    Write {
        /// The result directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A summary.json that is not one.
    #[error("{path}: not a run summary: {source}")]
    Summary {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A histograms.txt line that does not decode.
    #[error("{path}: histogram {name:?} does not decode: {why}")]
    Histogram {
        /// The file.
        path: PathBuf,
        /// The histogram's name.
        name: String,
        /// Why.
        why: String,
    },
    /// A result of an unsegmented run.
    #[error("{0}: not a segment (its summary.json has no `segment`: run with --segment I/N)")]
    NotSegment(PathBuf),
    /// Segments of different scenarios (or of different splits).
    #[error("{dir}: segment of another scenario or split ({theirs}, {their_count} segments) than {first} ({ours}, {our_count} segments)")]
    Mismatch {
        /// The odd one.
        dir: PathBuf,
        /// Its scenario hash.
        theirs: String,
        /// Its segment count.
        their_count: usize,
        /// The first directory.
        first: PathBuf,
        /// The first's scenario hash.
        ours: String,
        /// The first's segment count.
        our_count: usize,
    },
    /// A segment given twice.
    #[error("segment {index} given twice: {a} and {b}")]
    Duplicate {
        /// The segment.
        index: usize,
        /// One directory.
        a: PathBuf,
        /// The other.
        b: PathBuf,
    },
    /// Segments missing.
    #[error("segments {missing:?} of {count} are missing")]
    Missing {
        /// Their indexes.
        missing: Vec<usize>,
        /// Of how many.
        count: usize,
    },
    /// A threshold of the segments' summaries that no longer parses.
    #[error("threshold {0}")]
    Threshold(String),
}

/// One segment's result directory, read.
#[derive(Debug)]
pub struct Part {
    /// Where it was.
    pub dir: PathBuf,
    /// Its summary.json.
    pub summary: Summary,
    /// Its client histograms by phase.
    pub phases: BTreeMap<Phase, Histogram<u64>>,
    /// The server's histograms by name.
    pub server: BTreeMap<String, Histogram<u64>>,
}

/// The merged run and where it was written.
#[derive(Debug)]
pub struct Merged {
    /// The merged run.
    pub outcome: Outcome,
    /// The result directory.
    pub dir: PathBuf,
}

/// Read the result directories `dirs`, check that they are the segments 1..N of one scenario,
/// merge them and write the merged result into `out` (created if needed).
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Merged, MergeError> {
    let parts = dirs
        .iter()
        .map(|d| read(d))
        .collect::<Result<Vec<_>, _>>()?;
    let parts = check(parts)?;
    let outcome = merge_parts(&parts)?;
    crate::report::write_into(out, &outcome).map_err(|source| MergeError::Write {
        path: out.to_owned(),
        source,
    })?;
    Ok(Merged {
        outcome,
        dir: out.to_owned(),
    })
}

/// The merged outcome of checked `parts` (in segment order), its thresholds judged.
pub fn merge_parts(parts: &[Part]) -> Result<Outcome, MergeError> {
    let phases = merge_histograms(parts.iter().map(|p| &p.phases));
    let server = merge_histograms(parts.iter().map(|p| &p.server));
    let recorder = Recorder {
        phases,
        classes: BTreeMap::new(),
    };
    let mut summary = merge_summaries(parts, &recorder, &server).ok_or(MergeError::Missing {
        missing: Vec::new(),
        count: 0,
    })?;
    let thresholds = parts
        .first()
        .map(|p| &p.summary.thresholds[..])
        .unwrap_or_default()
        .iter()
        .map(|t| {
            t.threshold
                .parse::<Threshold>()
                .map_err(|e| MergeError::Threshold(format!("{:?}: {e}", t.threshold)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let devices: u64 = summary.classes.values().map(|c| c.devices).sum();
    let per_s = devices as f64 / summary.duration_s.max(1e-9);
    summary.thresholds = crate::summary::judge(&summary, &recorder, (&[], per_s), &thresholds);
    summary.passed = summary.thresholds.iter().all(|t| t.passed);
    let view = sum::server_view(&summary, &server);
    Ok(Outcome {
        summary,
        recorder,
        server: view,
    })
}

/// One result directory: summary.json and histograms.txt.
pub fn read(dir: &Path) -> Result<Part, MergeError> {
    let file = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map(|text| (path.clone(), text))
            .map_err(|source| MergeError::Io { path, source })
    };
    let (path, text) = file("summary.json")?;
    let summary: Summary =
        serde_json::from_str(&text).map_err(|source| MergeError::Summary { path, source })?;
    let (path, text) = file("histograms.txt")?;
    let mut phases = BTreeMap::new();
    let mut server = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (name, b64) = line.split_once(' ').unwrap_or((line, ""));
        let bad = |why: String| MergeError::Histogram {
            path: path.clone(),
            name: name.to_owned(),
            why,
        };
        let h = dps_server::metrics::decode_histogram(b64).map_err(|e| bad(e.to_string()))?;
        if let Some(server_name) = name.strip_prefix("server.") {
            server.insert(server_name.to_owned(), h);
        } else {
            let phase = name
                .parse::<Phase>()
                .map_err(|()| bad(format!("no such phase (phases: {})", Phase::names())))?;
            phases.insert(phase, h);
        }
    }
    Ok(Part {
        dir: dir.to_owned(),
        summary,
        phases,
        server,
    })
}

/// The parts ordered by segment, if they are segments 1..N of one scenario each given once.
pub fn check(mut parts: Vec<Part>) -> Result<Vec<Part>, MergeError> {
    let mut first: Option<(PathBuf, String, usize)> = None;
    for p in &parts {
        let seg = p
            .summary
            .segment
            .as_ref()
            .ok_or_else(|| MergeError::NotSegment(p.dir.clone()))?;
        let (dir, hash, count) = first
            .get_or_insert_with(|| (p.dir.clone(), seg.scenario_hash.clone(), seg.count))
            .clone();
        if seg.scenario_hash != hash || seg.count != count {
            return Err(MergeError::Mismatch {
                dir: p.dir.clone(),
                theirs: seg.scenario_hash.clone(),
                their_count: seg.count,
                first: dir,
                ours: hash,
                our_count: count,
            });
        }
    }
    let count = first.map_or(0, |f| f.2);
    parts.sort_by_key(|p| p.summary.segment.as_ref().map_or(0, |s| s.index));
    for w in parts.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let index = a.summary.segment.as_ref().map_or(0, |s| s.index);
        if Some(index) == b.summary.segment.as_ref().map(|s| s.index) {
            return Err(MergeError::Duplicate {
                index,
                a: a.dir.clone(),
                b: b.dir.clone(),
            });
        }
    }
    let present: Vec<usize> = parts
        .iter()
        .filter_map(|p| p.summary.segment.as_ref().map(|s| s.index))
        .collect();
    let missing: Vec<usize> = (1..=count).filter(|i| !present.contains(i)).collect();
    if !missing.is_empty() || count == 0 {
        return Err(MergeError::Missing { missing, count });
    }
    Ok(parts)
}

/// A histogram into which others are added (the run's bounds).
fn empty() -> Histogram<u64> {
    new_histogram()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::record;
    use std::time::Duration;

    /// Known samples split round-robin into 3 histograms, each serialized and read back as a
    /// segment's histograms.txt is, then merged: exactly the histogram of all the samples.
    #[test]
    fn merged_histograms_equal_one_histogram_of_all_samples() {
        let mut all = new_histogram();
        let mut parts = [new_histogram(), new_histogram(), new_histogram()];
        let mut x: u64 = 0x9e37_79b9;
        for k in 0..30_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let us = 50 + (x >> 40) % 2_000_000; // 50 µs .. 2 s
            let d = Duration::from_micros(us);
            record(&mut all, d);
            record(&mut parts[k % 3], d);
        }
        let maps: Vec<BTreeMap<Phase, Histogram<u64>>> = parts
            .iter()
            .map(|h| {
                let b64 = dps_server::metrics::encode_histogram(h).expect("encode");
                let back = dps_server::metrics::decode_histogram(&b64).expect("decode");
                BTreeMap::from([(Phase::Total, back)])
            })
            .collect();
        let merged = merge_histograms(maps.iter());
        let m = &merged[&Phase::Total];
        assert_eq!(m.len(), all.len());
        assert_eq!(m.len(), parts.iter().map(Histogram::len).sum::<u64>());
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(m.value_at_quantile(q), all.value_at_quantile(q), "q {q}");
        }
        assert_eq!((m.min(), m.max()), (all.min(), all.max()));
        assert_eq!(m, &all);
    }
}
