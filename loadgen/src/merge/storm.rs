//! A merged run's storm numbers: each segment's arrival times (`storm.got_in` in its
//! histograms.txt) moved onto the earliest segment's clock and put together, its devices that
//! had to get in and its failed attempts summed, the merged timeline for goodput and recovery.
//! Arrival times come back from an HdrHistogram (3 significant digits), so a merged `time_to`
//! is within 0.1 % of the exact one.

use std::collections::BTreeMap;
use std::time::Duration;

use super::part::Part;
use super::sum::epoch_s;
use crate::storm::{storm_of, Storm, StormInput};
use crate::summary::Summary;

/// The segments' arrival times on one clock (`t0`: the earliest start, Unix seconds), sorted;
/// `None` when a segment wrote none (a summary from before they were written) although it had
/// devices get in.
pub fn got_in(parts: &[Part], t0: f64) -> Option<Vec<Duration>> {
    let mut all = Vec::new();
    for p in parts {
        let storm = p.summary.storm.as_ref()?;
        let Some(h) = &p.got_in else {
            if storm.got_in == 0 {
                continue;
            }
            return None;
        };
        let shift_us = ((epoch_s(&p.summary.started_at) - t0).max(0.0) * 1e6) as u64;
        for v in h.iter_recorded() {
            let at = Duration::from_micros(h.highest_equivalent(v.value_iterated_to()) + shift_us);
            all.extend(std::iter::repeat_n(at, v.count_at_value() as usize));
        }
    }
    all.sort_unstable();
    Some(all)
}

/// The merged storm numbers of `parts` in the merged summary `m` (its timeline already merged),
/// from their arrival times `got_in_at` on the clock starting at `t0`; the server's closes by
/// reason `server_closes`.
pub fn merged(
    parts: &[Part],
    m: &Summary,
    (got_in_at, t0): (&[Duration], f64),
    server_closes: Option<BTreeMap<String, u64>>,
) -> Option<Storm> {
    let mut must = 0;
    let mut last = Duration::ZERO;
    for p in parts {
        let s = p.summary.storm.as_ref()?;
        must += s.must_get_in;
        let shift = (epoch_s(&p.summary.started_at) - t0).max(0.0);
        last = last.max(Duration::from_secs_f64(shift + s.last_arrival_s));
    }
    let seconds: Vec<u64> = m.timeline.iter().map(|s| s.provisioned).collect();
    let input = StormInput {
        got_in_at,
        must,
        last_arrival: last,
        provisioned_per_second: &seconds,
        attempt_errors: &m.attempts.errors,
    };
    Some(storm_of(&input, server_closes))
}
