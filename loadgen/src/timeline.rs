//! The per-second timeline of a run (`timeline` in `summary.json`): what was offered, what came
//! through, errors by kind, dropped starts, devices in flight, latency quantiles, and the server's
//! CPU and memory as the sampler saw them. Rate, errors and latency over time are where a knee or
//! a collapse shows, which a latency-by-percentile picture cannot.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::saturation::sampler::SampledSecond;

/// One second of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the start of the device phase.
    pub t_s: u64,
    /// Runs finished in this second.
    pub completed: u64,
    /// Of which provisioned as expected.
    pub provisioned: u64,
    /// p99 of the total latency (from the scheduled start) of those runs, µs.
    pub p99_total_us: u64,
    /// Runs scheduled to start in this second (started and dropped): the offered load.
    #[serde(default)]
    pub offered: u64,
    /// Of the offered starts, those dropped (too late, or at `max_in_flight`).
    #[serde(default)]
    pub dropped: u64,
    /// Runs finished in this second that ended in an error, by kind (a failure kind or `strict`).
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    /// Runs finished in this second with a wrong verdict.
    #[serde(default)]
    pub mismatches: u64,
    /// Runs started but not finished at the end of this second.
    #[serde(default)]
    pub in_flight: u64,
    /// p50 of the total latency of the runs finished in this second, µs.
    #[serde(default)]
    pub p50_total_us: u64,
    /// p50 of the handshake of the runs finished in this second, µs.
    #[serde(default)]
    pub p50_handshake_us: u64,
    /// p99 of the handshake of the runs finished in this second, µs.
    #[serde(default)]
    pub p99_handshake_us: u64,
    /// CPU the server used over this second, % of one core (spawned: its process; embedded: this
    /// process, server and generator together; `None`: remote, or not sampled).
    #[serde(default)]
    pub server_cpu_percent: Option<f64>,
    /// The server's resident memory at the end of this second, bytes (as for the CPU).
    #[serde(default)]
    pub server_rss_bytes: Option<u64>,
}

/// A run that finished, as the timeline counts it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Finished {
    /// When it finished, from the start of the device phase.
    pub at: Duration,
    /// When it was first scheduled to start, likewise.
    pub scheduled: Duration,
    /// Provisioned as expected.
    pub provisioned: bool,
    /// Its last attempt's total latency.
    pub total: Option<Duration>,
    /// Its last handshake.
    pub handshake: Option<Duration>,
    /// Ended in an error of this kind.
    pub error: Option<&'static str>,
    /// Got a wrong verdict.
    pub mismatch: bool,
}

/// One second's counts while the run is collected.
struct Bucket {
    second: Second,
    total: Histogram<u64>,
    handshake: Histogram<u64>,
    /// Runs that started in this second minus those that finished in it.
    in_flight_delta: i64,
}

impl Default for Bucket {
    fn default() -> Self {
        Self {
            second: Second::default(),
            total: crate::metrics::new_histogram(),
            handshake: crate::metrics::new_histogram(),
            in_flight_delta: 0,
        }
    }
}

/// Per-second buckets while the run is collected.
#[derive(Default)]
pub struct Timeline {
    buckets: Vec<Bucket>,
}

/// The `q` quantile of `h`, 0 when empty.
fn quantile(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

impl Timeline {
    /// The bucket of second `at`, created (with those before it) if needed.
    fn bucket(&mut self, at: Duration) -> &mut Bucket {
        let i = usize::try_from(at.as_secs())
            .unwrap_or(usize::MAX)
            .min(1 << 24);
        if self.buckets.len() <= i {
            self.buckets.resize_with(i + 1, Bucket::default);
        }
        &mut self.buckets[i]
    }

    /// Count a run that finished `at` into the run (scheduled then too, no detail).
    pub fn record(&mut self, at: Duration, provisioned: bool, total: Option<Duration>) {
        self.finished(Finished {
            at,
            scheduled: at,
            provisioned,
            total,
            ..Finished::default()
        });
    }

    /// Count a finished run: its second's rates, errors and latency, and its start.
    pub fn finished(&mut self, f: Finished) {
        let start = self.bucket(f.scheduled);
        start.second.offered += 1;
        start.in_flight_delta += 1;
        let b = self.bucket(f.at.max(f.scheduled));
        b.in_flight_delta -= 1;
        b.second.completed += 1;
        b.second.provisioned += u64::from(f.provisioned);
        b.second.mismatches += u64::from(f.mismatch);
        if let Some(kind) = f.error {
            *b.second.errors.entry(kind.to_owned()).or_default() += 1;
        }
        if let Some(t) = f.total {
            crate::metrics::record(&mut b.total, t);
        }
        if let Some(t) = f.handshake {
            crate::metrics::record(&mut b.handshake, t);
        }
    }

    /// The seconds, for the summary: `dropped` starts by second (the executor's) count as offered
    /// too, and `sampled` seconds give the server's CPU and memory (`embedded`: this process's).
    pub fn seconds_with(
        &self,
        dropped: &[u64],
        sampled: &[SampledSecond],
        embedded: bool,
    ) -> Vec<Second> {
        let len = self.buckets.len().max(dropped.len());
        let mut in_flight = 0i64;
        (0..len)
            .map(|t| {
                let mut s = self.buckets.get(t).map_or_else(Second::default, |b| {
                    in_flight += b.in_flight_delta;
                    Second {
                        p99_total_us: quantile(&b.total, 0.99),
                        p50_total_us: quantile(&b.total, 0.5),
                        p50_handshake_us: quantile(&b.handshake, 0.5),
                        p99_handshake_us: quantile(&b.handshake, 0.99),
                        ..b.second.clone()
                    }
                });
                s.t_s = t as u64;
                s.in_flight = u64::try_from(in_flight).unwrap_or(0);
                s.dropped = dropped.get(t).copied().unwrap_or(0);
                s.offered += s.dropped;
                if let Some(r) = sampled.iter().find(|r| r.t_s == t as u64) {
                    let (cores, rss) = if embedded {
                        (r.process_cores, r.process_rss_bytes)
                    } else {
                        (r.server_cores, r.server_rss_bytes)
                    };
                    s.server_cpu_percent = cores.map(|c| (c * 1000.0).round() / 10.0);
                    s.server_rss_bytes = rss;
                }
                s
            })
            .collect()
    }

    /// The seconds without the executor's and the sampler's figures.
    pub fn seconds(&self) -> Vec<Second> {
        self.seconds_with(&[], &[], false)
    }

    /// The best `window`-second average of provisioned/s. The last second is left out: it holds
    /// the drain of queued runs, not sustained throughput.
    pub fn peak(&self, window: usize) -> f64 {
        self.peak_at(window).1
    }

    /// [`Timeline::peak`], and the second its window starts at.
    pub fn peak_at(&self, window: usize) -> (usize, f64) {
        let full = self
            .buckets
            .len()
            .saturating_sub(1)
            .max(1)
            .min(self.buckets.len());
        let p: Vec<u64> = self.buckets[..full]
            .iter()
            .map(|b| b.second.provisioned)
            .collect();
        best_window(&p, window)
    }
}

/// The best `window`-long average of `per_second` and where it starts (a shorter series: its
/// sum over `window`, at 0).
pub fn best_window(per_second: &[u64], window: usize) -> (usize, f64) {
    let window = window.max(1);
    if per_second.len() < window {
        return (0, per_second.iter().sum::<u64>() as f64 / window as f64);
    }
    per_second
        .windows(window)
        .map(|w| w.iter().sum::<u64>() as f64 / window as f64)
        .enumerate()
        .fold(
            (0, 0.0),
            |best, (i, v)| if v > best.1 { (i, v) } else { best },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn timeline_buckets_by_second_and_finds_the_peak() {
        let mut t = Timeline::default();
        for (sec, n) in [(0u64, 2u64), (1, 10), (2, 12), (3, 11), (4, 1)] {
            for _ in 0..n {
                t.record(ms(sec * 1000 + 500), true, Some(ms(5)));
            }
        }
        t.record(ms(4500), false, None);
        let secs = t.seconds();
        assert_eq!(secs.len(), 5);
        assert_eq!((secs[4].completed, secs[4].provisioned), (2, 1));
        assert!((4_990..=5_010).contains(&secs[1].p99_total_us));
        assert!((t.peak(3) - 11.0).abs() < 1e-9, "{}", t.peak(3));
    }

    #[test]
    fn offered_in_flight_errors_and_the_server_are_counted_per_second() {
        let mut t = Timeline::default();
        // Scheduled in second 0, finished in second 2: in flight at the end of 0 and 1.
        t.finished(Finished {
            at: ms(2_200),
            scheduled: ms(100),
            total: Some(ms(2_100)),
            handshake: Some(ms(40)),
            error: Some("timeout"),
            ..Finished::default()
        });
        t.finished(Finished {
            at: ms(1_300),
            scheduled: ms(1_250),
            provisioned: true,
            total: Some(ms(50)),
            handshake: Some(ms(10)),
            ..Finished::default()
        });
        let sampled = [SampledSecond {
            t_s: 1,
            process_cores: Some(1.5),
            process_rss_bytes: Some(10),
            server_cores: Some(0.25),
            server_rss_bytes: Some(20),
        }];
        let secs = t.seconds_with(&[3, 0, 0, 1], &sampled, false);
        assert_eq!(secs.len(), 4);
        let offered: Vec<u64> = secs.iter().map(|s| s.offered).collect();
        assert_eq!(offered, [4, 1, 0, 1]);
        let in_flight: Vec<u64> = secs.iter().map(|s| s.in_flight).collect();
        assert_eq!(in_flight, [1, 1, 0, 0]);
        assert_eq!(secs[2].errors.get("timeout"), Some(&1));
        assert_eq!((secs[1].provisioned, secs[3].dropped), (1, 1));
        assert!((9_990..=10_010).contains(&secs[1].p99_handshake_us));
        assert!((39_900..=40_100).contains(&secs[2].p50_handshake_us));
        assert_eq!(secs[1].server_cpu_percent, Some(25.0));
        assert_eq!(secs[1].server_rss_bytes, Some(20));
        assert_eq!(secs[0].server_cpu_percent, None);
        let embedded = t.seconds_with(&[], &sampled, true);
        assert_eq!(embedded[1].server_cpu_percent, Some(150.0));
        assert_eq!(embedded[1].server_rss_bytes, Some(10));
    }
}
