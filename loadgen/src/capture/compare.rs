//! The generator's connections (`connections.csv`) joined 1:1 with the capture's, and their
//! figures compared: SYN to the device's FIN (the connection), SYN to the server's first data
//! (the handshake's start). They agree when p50 and p99 are within [`REL_TOLERANCE`] or
//! [`ABS_TOLERANCE_US`] of the wire's, whichever is larger.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::wire::{WireConnection, WireConnections};
use crate::device::trace::ConnectionRecord;

/// The relative tolerance of a quantile.
pub const REL_TOLERANCE: f64 = 0.05;
/// The absolute tolerance of a quantile, µs.
pub const ABS_TOLERANCE_US: f64 = 200.0;

/// One figure as the generator and the wire saw it, over the joined connections.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// `connection` (SYN to the device's FIN) or `first_server_data` (SYN to the server's first
    /// TLS record).
    pub name: &'static str,
    /// Connections with the figure on both sides.
    pub count: usize,
    /// The generator's p50, µs.
    pub generator_p50_us: f64,
    /// The wire's p50, µs.
    pub wire_p50_us: f64,
    /// The generator's p99, µs.
    pub generator_p99_us: f64,
    /// The wire's p99, µs.
    pub wire_p99_us: f64,
    /// p99 over the connections of |generator − wire|, µs.
    pub p99_abs_diff_us: f64,
    /// Both quantiles within tolerance.
    pub agrees: bool,
}

/// The comparison of a run with its capture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Connections the generator recorded.
    pub recorded: usize,
    /// Of those, found in the capture.
    pub matched: usize,
    /// A few of those not found (the device and its source address), for diagnosis.
    pub unmatched_examples: Vec<(usize, SocketAddr)>,
    /// The figures compared.
    pub figures: Vec<Figure>,
    /// How long after its arrival the generator read the server's first data (its own delay,
    /// which its phases leave out as `read_delay`), over the recorded connections.
    pub first_read_delay: Option<Delay>,
}

/// A delay's quantiles over connections.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delay {
    /// Connections it was known for.
    pub count: usize,
    /// p50, µs.
    pub p50_us: f64,
    /// p99, µs.
    pub p99_us: f64,
}

/// The generator's delay in reading the server's first data, per recorded connection.
fn first_read_delay(records: &[ConnectionRecord]) -> Option<Delay> {
    let mut v: Vec<f64> = records
        .iter()
        .filter_map(|r| {
            Some(
                r.first_server_data_read_us?
                    .saturating_sub(r.first_server_data_us?),
            )
        })
        .map(|us| us as f64)
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(Delay {
        count: v.len(),
        p50_us: quantile(&v, 0.5),
        p99_us: quantile(&v, 0.99),
    })
}

impl Comparison {
    /// Connections matched and every figure agrees.
    pub fn agrees(&self) -> bool {
        self.matched > 0 && self.figures.iter().all(|f| f.agrees)
    }
}

/// Pairs of (generator, wire) of one figure, µs.
type Pairs = Vec<(f64, f64)>;

/// Join `records` with `wire` and compare.
pub fn compare(records: &[ConnectionRecord], wire: &WireConnections) -> Comparison {
    let mut by_key: BTreeMap<(SocketAddr, SocketAddr), Vec<&ConnectionRecord>> = BTreeMap::new();
    for r in records {
        by_key.entry((r.source, r.target)).or_default().push(r);
    }
    let (mut connection, mut first) = (Pairs::new(), Pairs::new());
    let mut matched = 0;
    let mut unmatched_examples = Vec::new();
    for (key, mut mine) in by_key {
        let Some(theirs) = wire.get(&key) else {
            let left = 10usize.saturating_sub(unmatched_examples.len());
            unmatched_examples.extend(mine.iter().take(left).map(|r| (r.device, r.source)));
            continue;
        };
        mine.sort_by_key(|r| r.syn_unix_us);
        for (r, w) in join(&mine, theirs) {
            matched += 1;
            if let Some(end) = w.device_end {
                connection.push((r.closed_us as f64, micros(end.saturating_sub(w.syn))));
            }
            if let (Some(g), Some(d)) = (r.first_server_data_us, w.first_server_data) {
                first.push((g as f64, micros(d.saturating_sub(w.syn))));
            }
        }
    }
    Comparison {
        recorded: records.len(),
        matched,
        unmatched_examples,
        figures: vec![
            figure("connection", connection),
            figure("first_server_data", first),
        ],
        first_read_delay: first_read_delay(records),
    }
}

/// The generator's connections of one address pair with the wire's: in order when both saw as
/// many, else each to the wire connection whose SYN is nearest its own.
fn join<'a>(
    mine: &[&'a ConnectionRecord],
    theirs: &'a [WireConnection],
) -> Vec<(&'a ConnectionRecord, &'a WireConnection)> {
    if mine.len() == theirs.len() {
        return mine.iter().copied().zip(theirs).collect();
    }
    mine.iter()
        .filter_map(|r| {
            let at = r.syn_unix_us as f64;
            theirs
                .iter()
                .min_by(|a, b| {
                    let da = (micros(a.syn) - at).abs();
                    let db = (micros(b.syn) - at).abs();
                    da.total_cmp(&db)
                })
                .map(|w| (*r, w))
        })
        .collect()
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The nearest-rank quantile `q` of sorted `v` (0 when empty).
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Within tolerance of the wire's value.
fn close(generator: f64, wire: f64) -> bool {
    (generator - wire).abs() <= (wire.abs() * REL_TOLERANCE).max(ABS_TOLERANCE_US)
}

fn figure(name: &'static str, pairs: Pairs) -> Figure {
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let generator = sorted(pairs.iter().map(|p| p.0).collect());
    let wire = sorted(pairs.iter().map(|p| p.1).collect());
    let diffs = sorted(pairs.iter().map(|p| (p.0 - p.1).abs()).collect());
    let (g50, w50) = (quantile(&generator, 0.5), quantile(&wire, 0.5));
    let (g99, w99) = (quantile(&generator, 0.99), quantile(&wire, 0.99));
    Figure {
        name,
        count: pairs.len(),
        generator_p50_us: g50,
        wire_p50_us: w50,
        generator_p99_us: g99,
        wire_p99_us: w99,
        p99_abs_diff_us: quantile(&diffs, 0.99),
        agrees: !pairs.is_empty() && close(g50, w50) && close(g99, w99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(port: u16, syn_us: i64, first: u64, closed: u64) -> ConnectionRecord {
        ConnectionRecord {
            device: usize::from(port),
            source: SocketAddr::from(([127, 0, 0, 2], port)),
            target: SocketAddr::from(([127, 0, 0, 1], 15684)),
            syn_unix_us: syn_us,
            first_server_data_us: Some(first),
            closed_us: closed,
            first_server_data_read_us: Some(first + 100),
        }
    }

    fn wire(syn_us: u64, first: u64, end: u64) -> WireConnection {
        let us = Duration::from_micros;
        WireConnection {
            syn: us(syn_us),
            first_server_data: Some(us(syn_us + first)),
            device_end: Some(us(syn_us + end)),
        }
    }

    #[test]
    fn agreeing_and_disagreeing_runs_are_told_apart() {
        let records: Vec<_> = (0..100u16)
            .map(|p| record(40000 + p, 1_000_000, 400, 2000 + u64::from(p)))
            .collect();
        let mut captured = WireConnections::new();
        for r in &records {
            captured.entry((r.source, r.target)).or_default().push(wire(
                1_000_050,
                380,
                r.closed_us - 30,
            ));
        }
        let c = compare(&records, &captured);
        assert_eq!((c.recorded, c.matched), (100, 100));
        assert!(c.agrees(), "{c:#?}");
        assert_eq!(c.figures[0].count, 100);
        assert!((c.figures[0].p99_abs_diff_us - 30.0).abs() < 1e-6);
        // The generator's own millisecond before each connection, counted as the server's.
        let late: Vec<_> = records
            .iter()
            .map(|r| ConnectionRecord {
                closed_us: r.closed_us + 1100,
                ..r.clone()
            })
            .collect();
        let c = compare(&late, &captured);
        assert!(!c.agrees(), "{c:#?}");
        assert!(!c.figures[0].agrees && c.figures[1].agrees, "{c:#?}");
        // Nothing of the run in the capture: no agreement.
        let c = compare(&records, &WireConnections::new());
        assert_eq!(c.matched, 0);
        assert!(!c.agrees());
    }

    #[test]
    fn a_reused_port_is_joined_by_its_syn_time() {
        let a = record(40000, 1_000_000, 400, 2000);
        let b = record(40000, 5_000_000, 400, 3000);
        let mut captured = WireConnections::new();
        // The capture missed nothing but saw one extra connection on the port.
        captured.insert(
            (a.source, a.target),
            vec![
                wire(990, 1, 1),
                wire(1_000_010, 400, 2000),
                wire(5_000_020, 400, 3000),
            ],
        );
        let c = compare(&[b, a], &captured);
        assert_eq!(c.matched, 2);
        assert!(c.figures[0].p99_abs_diff_us < 1e-6, "{c:#?}");
    }

    #[test]
    fn quantiles_and_tolerance() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert!(close(1100.0, 1000.0 - 99.0));
        assert!(!close(1300.0, 1000.0));
        assert!(close(10_400.0, 10_000.0) && !close(10_600.0, 10_000.0));
    }
}
