//! `dps-loadgen merge DIR... --results OUT`: the result directories of the N segments of one
//! scenario ([`crate::segment`]) merged into one result, written as a single run's (summary.json,
//! summary.md, histograms.txt, latency.svg): counters summed, HdrHistograms merged (so merged
//! percentiles are exactly those of one histogram of all samples), timelines aligned on their
//! start times, thresholds judged again on the merged run.

mod error;
mod part;
mod server;
mod storm;
mod sum;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::metrics::Recorder;
use crate::summary::Outcome;
use crate::threshold::Threshold;

pub use error::MergeError;
pub use part::{read, Part};
pub use sum::{merge_histograms, merge_summaries};

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
    let counts = server::counts(parts);
    summary.server_rejections = counts.rejections;
    summary.server_tpm_refusals = counts.tpm_refusals;
    if counts.shared {
        // Segments sharing a remote server left its cross-check to the merge (each saw all of
        // the server); the fleet's own servers were checked by their segments already.
        crate::summary::cross_check(&mut summary);
    }
    let t0 = parts
        .iter()
        .map(|p| sum::epoch_s(&p.summary.started_at))
        .fold(f64::INFINITY, f64::min);
    let got_in = storm::got_in(parts, t0);
    summary.storm = got_in
        .as_deref()
        .and_then(|g| storm::merged(parts, &summary, (g, t0), counts.closes.clone()));
    let devices: u64 = summary.classes.values().map(|c| c.devices).sum();
    let per_s = devices as f64 / summary.duration_s.max(1e-9);
    let arrivals = got_in.as_deref().unwrap_or_default();
    summary.thresholds = crate::summary::judge(&summary, &recorder, (arrivals, per_s), &thresholds);
    summary.passed = summary.thresholds.iter().all(|t| t.passed);
    summary.fidelity = merged_fidelity(parts, &recorder);
    let view = sum::server_view(&summary, &server, counts.closes);
    Ok(Outcome {
        summary,
        recorder,
        server: view,
        // Each segment's connections stay in its own connections.csv (a capture is taken where
        // that segment ran, and verified there).
        connections: Vec::new(),
        got_in: got_in.unwrap_or_default(),
        // Likewise each segment's identities.csv.
        identities: Vec::new(),
    })
}

/// The merged run's `fidelity`: lateness and total from the merged histograms, the segments'
/// unbalanced devices summed; its connections are all in the segments' own `connections.csv`.
fn merged_fidelity(parts: &[Part], recorder: &Recorder) -> Option<crate::fidelity::Fidelity> {
    let sections: Vec<_> = parts
        .iter()
        .filter_map(|p| p.summary.fidelity.as_ref())
        .collect();
    if sections.is_empty() {
        return None;
    }
    let unbalanced = sections.iter().map(|f| f.unbalanced_devices).sum();
    let connections: u64 = sections
        .iter()
        .map(|f| f.connections_recorded + f.connections_left_out)
        .sum();
    Some(crate::fidelity::Fidelity::of(
        recorder,
        unbalanced,
        (0, connections),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{new_histogram, record, Phase};
    use hdrhistogram::Histogram;
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
