//! The sums of a merge: histograms added, counters and per-class counts summed, the timeline
//! aligned on each segment's start time, the server's view summed.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::part::{empty, Part};
use crate::collect::{best_window, Attempts, ClassCounts, Second};
use crate::metrics::{Quantiles, Recorder};
use crate::saturation::{GeneratorSummary, LimitedBy};
use crate::summary::{HoldSummary, ServerSummary, Summary};
use crate::target::ServerView;

/// Every key's histograms added into one.
pub fn merge_histograms<'a, K: Ord + Clone + 'a>(
    maps: impl Iterator<Item = &'a BTreeMap<K, Histogram<u64>>>,
) -> BTreeMap<K, Histogram<u64>> {
    let mut out: BTreeMap<K, Histogram<u64>> = BTreeMap::new();
    for map in maps {
        for (k, h) in map {
            // Both sides have the run's bounds; a sample out of them is clamped by add's caller
            // already (metrics::record), so this cannot fail on our own histograms.
            let _ = out.entry(k.clone()).or_insert_with(empty).add(h);
        }
    }
    out
}

/// Add `b` into `a`, key by key.
fn add_counts<K: Ord + Clone>(a: &mut BTreeMap<K, u64>, b: &BTreeMap<K, u64>) {
    for (k, n) in b {
        *a.entry(k.clone()).or_default() += n;
    }
}

fn add_class(a: &mut ClassCounts, b: &ClassCounts) {
    a.devices += b.devices;
    a.as_expected += b.as_expected;
    a.mismatches += b.mismatches;
    a.false_accepts += b.false_accepts;
    a.false_rejects += b.false_rejects;
    a.errors += b.errors;
    a.attempts += b.attempts;
    a.max_attempts = a.max_attempts.max(b.max_attempts);
    add_counts(&mut a.observed, &b.observed);
}

fn add_attempts(a: &mut Attempts, b: &Attempts) {
    a.total += b.total;
    a.max = a.max.max(b.max);
    a.retried_devices += b.retried_devices;
    add_counts(&mut a.per_device, &b.per_device);
    add_counts(&mut a.errors, &b.errors);
}

/// Seconds since the Unix epoch of an RFC 3339 time (0 when it does not parse).
pub(super) fn epoch_s(rfc3339: &str) -> f64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map_or(0.0, |t| t.unix_timestamp_nanos() as f64 / 1e9)
}

/// The segments' timelines on one clock (second 0: the earliest start): counts summed per second;
/// a second's percentiles are the highest of the segments' then (for the p99 an upper bound: the
/// per-second histograms are not kept), and so are the server's CPU and memory (the segments
/// share one server, which each sampled).
fn timeline(parts: &[Part], t0: f64) -> Vec<Second> {
    let mut out: Vec<Second> = Vec::new();
    for p in parts {
        let shift = (epoch_s(&p.summary.started_at) - t0).round().max(0.0) as u64;
        for s in &p.summary.timeline {
            let t = s.t_s + shift;
            while out.len() as u64 <= t {
                let t_s = out.len() as u64;
                out.push(Second {
                    t_s,
                    ..Second::default()
                });
            }
            if let Some(o) = out.get_mut(t as usize) {
                add_second(o, s);
            }
        }
    }
    out
}

/// Add one segment's second `s` to the merged second `o`.
fn add_second(o: &mut Second, s: &Second) {
    o.completed += s.completed;
    o.provisioned += s.provisioned;
    o.offered += s.offered;
    o.dropped += s.dropped;
    o.mismatches += s.mismatches;
    o.in_flight += s.in_flight;
    add_counts(&mut o.errors, &s.errors);
    o.p99_total_us = o.p99_total_us.max(s.p99_total_us);
    o.p50_total_us = o.p50_total_us.max(s.p50_total_us);
    o.p50_handshake_us = o.p50_handshake_us.max(s.p50_handshake_us);
    o.p99_handshake_us = o.p99_handshake_us.max(s.p99_handshake_us);
    o.server_cpu_percent = max_opt(o.server_cpu_percent, s.server_cpu_percent);
    o.server_rss_bytes = max_opt(o.server_rss_bytes, s.server_rss_bytes);
}

/// The larger of two optional figures (either alone when the other is unknown).
fn max_opt<T: PartialOrd>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b > a { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// The generator section of the most limited segment (each machine's own figures cannot be
/// added), with a note saying so.
fn generator(parts: &[Part]) -> Option<GeneratorSummary> {
    let rank = |g: &GeneratorSummary| match g.limited_by {
        LimitedBy::Generator => 2,
        LimitedBy::Target => 1,
        LimitedBy::None => 0,
    };
    let (index, g) = parts
        .iter()
        .filter_map(|p| {
            Some((
                p.summary.segment.as_ref()?.index,
                p.summary.generator.as_ref()?,
            ))
        })
        .max_by_key(|(i, g)| (rank(g), std::cmp::Reverse(*i)))?;
    let mut g = g.clone();
    g.notes.insert(
        0,
        format!(
            "merged run of {} segments: this is segment {index}'s generator (the most limited); \
             each segment's own is in its summary.json",
            parts.len()
        ),
    );
    Some(g)
}

/// The hold figures summed (most held, connections open) or the slowest (connect time).
fn hold(parts: &[Part]) -> Option<HoldSummary> {
    let holds: Vec<&HoldSummary> = parts
        .iter()
        .filter_map(|p| p.summary.hold.as_ref())
        .collect();
    if holds.is_empty() {
        return None;
    }
    Some(HoldSummary {
        held_peak: holds.iter().map(|h| h.held_peak).sum(),
        server_open_connections: super::server::open_at_peak(parts),
        connect_s: holds.iter().map(|h| h.connect_s).fold(0.0, f64::max),
        rss_before_bytes: None,
        rss_held_bytes: None,
        bytes_per_connection: None,
    })
}

/// The merged summary of `parts` (segment order), latency from the merged `recorder` and server
/// histograms; thresholds are left to the caller. `None` without parts.
pub fn merge_summaries(
    parts: &[Part],
    recorder: &Recorder,
    server: &BTreeMap<String, Histogram<u64>>,
) -> Option<Summary> {
    let starts: Vec<f64> = parts
        .iter()
        .map(|p| epoch_s(&p.summary.started_at))
        .collect();
    let t0 = starts.iter().copied().fold(f64::INFINITY, f64::min);
    let end = parts
        .iter()
        .zip(&starts)
        .map(|(p, s)| s + p.summary.duration_s)
        .fold(f64::NEG_INFINITY, f64::max);
    let mut m = parts.first()?.summary.clone();
    m.started_at = parts
        .iter()
        .zip(&starts)
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(p, _)| p.summary.started_at.clone())
        .unwrap_or_default();
    m.duration_s = (end - t0).max(1e-9);
    let rest = parts.iter().skip(1).map(|p| &p.summary);
    for s in rest {
        add(&mut m, s);
    }
    m.mismatch_examples.truncate(10);
    m.provisioned_per_s = m.provisioned as f64 / m.duration_s;
    m.handshakes_per_s = m.handshakes as f64 / m.duration_s;
    m.latency = recorder
        .phases
        .iter()
        .map(|(p, h)| (*p, Quantiles::of(h)))
        .collect();
    m.server = ServerSummary {
        kind: m.server.kind,
        latency: server
            .iter()
            .map(|(n, h)| (n.clone(), Quantiles::of(h)))
            .collect(),
        peak_rss_bytes: parts
            .iter()
            .filter_map(|p| p.summary.server.peak_rss_bytes)
            .max(),
    };
    m.timeline = timeline(parts, t0);
    let per_second: Vec<u64> = m.timeline.iter().map(|s| s.provisioned).collect();
    let full = per_second
        .len()
        .saturating_sub(1)
        .max(1)
        .min(per_second.len());
    m.peak_provisioned_per_s = best_window(&per_second[..full], 3).1;
    // The merge puts the storm back together from the segments' arrival times (`storm.rs`);
    // attacks are each segment's own.
    m.storm = None;
    m.attack = None;
    m.hold = hold(parts);
    m.generator = generator(parts);
    m.segment = None;
    m.server_counters = None;
    m.server_replicas = super::server::replicas(parts);
    Some(m)
}

/// The counters of `s` added into `m`.
fn add(m: &mut Summary, s: &Summary) {
    m.fleet_reused &= s.fleet_reused;
    m.devices += s.devices;
    m.warmup_devices += s.warmup_devices;
    m.provisioned += s.provisioned;
    m.handshakes += s.handshakes;
    m.mismatches += s.mismatches;
    m.false_accepts += s.false_accepts;
    m.false_rejects += s.false_rejects;
    m.errors += s.errors;
    m.dropped += s.dropped;
    add_counts(&mut m.strict_failures, &s.strict_failures);
    add_counts(&mut m.failures, &s.failures);
    for (class, c) in &s.classes {
        add_class(m.classes.entry(*class).or_default(), c);
    }
    // The server's counts are the merge's own (`server::counts`): a shared server counts once.
    add_counts(&mut m.expected_rejections, &s.expected_rejections);
    m.expected_tpm_refusals += s.expected_tpm_refusals;
    m.mismatch_examples
        .extend(s.mismatch_examples.iter().cloned());
    add_attempts(&mut m.attempts, &s.attempts);
    m.leftover_connections = match (m.leftover_connections, s.leftover_connections) {
        (Some(a), Some(b)) => Some(a + b),
        _ => None,
    };
    m.open_files_limit = m.open_files_limit.min(s.open_files_limit);
    m.peak_rss_bytes = m.peak_rss_bytes.max(s.peak_rss_bytes);
}

/// The server's view of the merged run `m`, its histograms the merged ones, its closes by reason
/// `closes`.
pub fn server_view(
    m: &Summary,
    server: &BTreeMap<String, Histogram<u64>>,
    closes: Option<BTreeMap<String, u64>>,
) -> ServerView {
    ServerView {
        kind: m.server.kind,
        histograms: server
            .iter()
            .map(|(n, h)| (n.clone(), dps_server::metrics::HistogramSummary::of(h)))
            .collect(),
        rejections: m.server_rejections.clone(),
        tpm_refusals: m.server_tpm_refusals,
        open_connections_at_peak: None,
        peak_rss_bytes: m.server.peak_rss_bytes,
        closes,
        counters: None,
        replicas: m.server_replicas.clone(),
    }
}
