//! The live exposition: Prometheus text format 0.0.4 from the run's collector and the executor's
//! counters. Latency phases become Prometheus histograms (`_bucket{le}`, `_sum`, `_count`) read
//! off the run's HdrHistograms: a bucket counts the samples whose HdrHistogram value (the highest
//! value equivalent to it, 3 significant digits) is at most `le`; `_count` is the histogram's
//! exact sample count (the summary's `latency.<phase>.count`); `_sum` is mean × count.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::collect::Collector;
use crate::device::FailureKind;
use crate::metrics::Phase;
use crate::scenario::{ExecutorSpec, Stage};

/// Upper bounds of the latency buckets, seconds: 100 µs to 60 s in 1-2.5-5 steps (`+Inf` added).
pub const BUCKETS_S: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 25.0, 60.0,
];

/// Every metric family of the exposition (histogram series add `_bucket`, `_sum`, `_count`):
/// the README's table and the dashboard test read this list.
pub const NAMES: [&str; 20] = [
    "dpsloadgen_devices_scheduled",
    "dpsloadgen_devices_started_total",
    "dpsloadgen_devices_completed_total",
    "dpsloadgen_devices_warmup_total",
    "dpsloadgen_devices_provisioned_total",
    "dpsloadgen_devices_as_expected_total",
    "dpsloadgen_devices_refused_as_expected_total",
    "dpsloadgen_mismatches_total",
    "dpsloadgen_false_accepts_total",
    "dpsloadgen_false_rejects_total",
    "dpsloadgen_errors_total",
    "dpsloadgen_dropped_total",
    "dpsloadgen_attempts_total",
    "dpsloadgen_retries_total",
    "dpsloadgen_attempt_errors_total",
    "dpsloadgen_in_flight",
    "dpsloadgen_held",
    "dpsloadgen_offered_rate_per_second",
    "dpsloadgen_process_cpu_seconds_total",
    "dpsloadgen_phase_duration_seconds",
];

/// What one snapshot shows: the collector (none before the first device is in) and what the
/// executor knows.
#[derive(Default)]
pub struct LiveView<'a> {
    /// The run's collector.
    pub collector: Option<&'a Collector>,
    /// Runs scheduled in all.
    pub scheduled: u64,
    /// Runs begun so far.
    pub started: u64,
    /// Scheduled starts dropped so far.
    pub dropped: u64,
    /// Devices holding now (hold executor).
    pub held: u64,
    /// The executor's configured start rate now (arrival-rate and paced hold executors).
    pub offered_rate: Option<f64>,
    /// This process's CPU time so far, seconds (with an embedded server: the server's too).
    pub cpu_seconds: Option<f64>,
}

/// The exposition of `view`.
pub fn render(view: &LiveView<'_>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let empty = Collector::default();
    let c = view.collector.unwrap_or(&empty);
    let measured = c.done.saturating_sub(c.warmup);
    let got_in = c.got_in_at.len() as u64;
    let counters: [(&str, &str, u64); 13] = [
        (
            "dpsloadgen_devices_started_total",
            "Device runs begun.",
            view.started,
        ),
        (
            "dpsloadgen_devices_completed_total",
            "Device runs finished (warm-up left out).",
            measured,
        ),
        (
            "dpsloadgen_devices_warmup_total",
            "Device runs of the warm-up, finished and not counted.",
            c.warmup,
        ),
        (
            "dpsloadgen_devices_provisioned_total",
            "Devices provisioned as expected.",
            c.provisioned,
        ),
        (
            "dpsloadgen_devices_as_expected_total",
            "Devices with the verdict their class expects (accepted or refused).",
            c.handshakes,
        ),
        (
            "dpsloadgen_devices_refused_as_expected_total",
            "Devices refused as their class expects.",
            c.handshakes.saturating_sub(got_in),
        ),
        (
            "dpsloadgen_mismatches_total",
            "Devices with a wrong verdict.",
            c.mismatches,
        ),
        (
            "dpsloadgen_false_accepts_total",
            "Devices let in that must be refused.",
            c.false_accepts,
        ),
        (
            "dpsloadgen_false_rejects_total",
            "Devices refused that must get in.",
            c.false_rejects,
        ),
        (
            "dpsloadgen_dropped_total",
            "Scheduled starts dropped (late or at the in-flight cap).",
            view.dropped,
        ),
        (
            "dpsloadgen_attempts_total",
            "Attempts of the finished devices, retries included.",
            c.attempts.total,
        ),
        (
            "dpsloadgen_retries_total",
            "Attempts after a device's first.",
            c.attempts.total.saturating_sub(measured),
        ),
        (
            "dpsloadgen_devices_scheduled",
            "Device runs scheduled in all.",
            view.scheduled,
        ),
    ];
    for (name, help, value) in counters {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        header(&mut out, name, help, kind);
        let _ = writeln!(out, "{name} {value}");
    }
    errors(&mut out, c);
    gauges(&mut out, view, measured);
    phases(&mut out, c);
    out
}

/// `dpsloadgen_errors_total{kind}` (every kind, zeros included) and the failed attempts by kind.
fn errors(out: &mut String, c: &Collector) {
    header(
        out,
        "dpsloadgen_errors_total",
        "Devices that ended in an error, by kind.",
        "counter",
    );
    for kind in FailureKind::ALL {
        let n = c.failures.get(&kind).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "dpsloadgen_errors_total{{kind=\"{}\"}} {n}",
            kind.as_str()
        );
    }
    let strict: u64 = c.strict_failures.values().sum();
    let _ = writeln!(out, "dpsloadgen_errors_total{{kind=\"strict\"}} {strict}");
    header(
        out,
        "dpsloadgen_attempt_errors_total",
        "Attempts that ended in an error, retried or last, by kind.",
        "counter",
    );
    for (kind, n) in &c.attempts.errors {
        let _ = writeln!(
            out,
            "dpsloadgen_attempt_errors_total{{kind=\"{}\"}} {n}",
            escape(kind)
        );
    }
}

/// In flight, held, the offered rate and the generator's CPU.
fn gauges(out: &mut String, view: &LiveView<'_>, measured: u64) {
    let finished = measured + view.collector.map_or(0, |c| c.warmup);
    header(
        out,
        "dpsloadgen_in_flight",
        "Device runs begun and not finished (held ones included).",
        "gauge",
    );
    let _ = writeln!(
        out,
        "dpsloadgen_in_flight {}",
        view.started.saturating_sub(finished)
    );
    header(
        out,
        "dpsloadgen_held",
        "Devices holding their connection now (hold executor).",
        "gauge",
    );
    let _ = writeln!(out, "dpsloadgen_held {}", view.held);
    header(
        out,
        "dpsloadgen_offered_rate_per_second",
        "The executor's configured start rate now.",
        "gauge",
    );
    if let Some(rate) = view.offered_rate {
        let _ = writeln!(out, "dpsloadgen_offered_rate_per_second {rate}");
    }
    header(
        out,
        "dpsloadgen_process_cpu_seconds_total",
        "CPU time of the generator process, user and system (an embedded server's included).",
        "counter",
    );
    if let Some(cpu) = view.cpu_seconds {
        let _ = writeln!(out, "dpsloadgen_process_cpu_seconds_total {cpu}");
    }
}

/// `dpsloadgen_phase_duration_seconds{phase}` for every phase recorded so far.
fn phases(out: &mut String, c: &Collector) {
    let name = "dpsloadgen_phase_duration_seconds";
    header(
        out,
        name,
        "Client-side latency by phase (from the scheduled start for total).",
        "histogram",
    );
    for (phase, h) in &c.recorder.phases {
        histogram(out, name, *phase, h);
    }
}

/// One phase's buckets, sum and count.
fn histogram(out: &mut String, name: &str, phase: Phase, h: &Histogram<u64>) {
    let bounds_us = BUCKETS_S.map(|s| (s * 1e6).round() as u64);
    let mut counts = [0u64; BUCKETS_S.len()];
    for v in h.iter_recorded() {
        if let Some(i) = bounds_us.iter().position(|b| v.value_iterated_to() <= *b) {
            counts[i] += v.count_at_value();
        }
    }
    let mut cumulative = 0;
    for (le, n) in BUCKETS_S.iter().zip(counts) {
        cumulative += n;
        let _ = writeln!(
            out,
            "{name}_bucket{{phase=\"{phase}\",le=\"{le}\"}} {cumulative}"
        );
    }
    let count = h.len();
    let _ = writeln!(
        out,
        "{name}_bucket{{phase=\"{phase}\",le=\"+Inf\"}} {count}"
    );
    let sum = if count == 0 {
        0.0
    } else {
        h.mean() * count as f64 / 1e6
    };
    let _ = writeln!(out, "{name}_sum{{phase=\"{phase}\"}} {sum}");
    let _ = writeln!(out, "{name}_count{{phase=\"{phase}\"}} {count}");
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the exposition format wants it (backslash, quote and newline escaped).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The start rate `spec` schedules `elapsed_s` seconds into the device phase (`None` for a
/// closed loop and an unpaced hold).
pub fn offered_rate(spec: &ExecutorSpec, elapsed_s: f64) -> Option<f64> {
    match spec {
        ExecutorSpec::ConstantArrivalRate { rate, .. } => Some(*rate),
        ExecutorSpec::RampingArrivalRate {
            start_rate, stages, ..
        } => Some(ramp_rate(*start_rate, stages, elapsed_s)),
        ExecutorSpec::Hold { rate, .. } if *rate > 0.0 => Some(*rate),
        _ => None,
    }
}

/// A ramp's rate at `t` seconds: linear inside each stage, the last target after the last one.
fn ramp_rate(start_rate: f64, stages: &[Stage], t: f64) -> f64 {
    let (mut from, mut at) = (start_rate, 0.0);
    for stage in stages {
        let len = stage.duration.as_secs_f64();
        if t < at + len {
            return from + (stage.target - from) * (t - at) / len.max(1e-9);
        }
        from = stage.target;
        at += len;
    }
    from
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::DeviceClass;
    use std::time::Duration;

    #[test]
    fn buckets_are_cumulative_and_end_at_the_count() {
        let mut c = Collector::default();
        for ms in [0.05, 0.3, 2.0, 40.0, 900.0, 70_000.0] {
            let d = Duration::from_secs_f64(ms / 1000.0);
            c.recorder.record(DeviceClass::Valid, Phase::Handshake, d);
        }
        let text = render(&LiveView {
            collector: Some(&c),
            ..LiveView::default()
        });
        let bucket = |le: &str| {
            let key = format!(
                "dpsloadgen_phase_duration_seconds_bucket{{phase=\"handshake\",le=\"{le}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(key.as_str()))
                .and_then(|v| v.parse::<u64>().ok())
        };
        assert_eq!(bucket("0.0001"), Some(1));
        assert_eq!(bucket("0.0005"), Some(2));
        assert_eq!(bucket("0.0025"), Some(3));
        assert_eq!(bucket("1"), Some(5));
        assert_eq!(bucket("60"), Some(5), "70 s is above the last bound");
        assert_eq!(bucket("+Inf"), Some(6));
        assert!(text.contains("dpsloadgen_phase_duration_seconds_count{phase=\"handshake\"} 6\n"));
    }

    #[test]
    fn a_ramp_moves_linearly_and_stays_at_its_last_target() {
        let stages = [
            Stage {
                target: 100.0,
                duration: Duration::from_secs(10),
            },
            Stage {
                target: 100.0,
                duration: Duration::from_secs(5),
            },
        ];
        assert!((ramp_rate(0.0, &stages, 5.0) - 50.0).abs() < 1e-9);
        assert!((ramp_rate(0.0, &stages, 12.0) - 100.0).abs() < 1e-9);
        assert!((ramp_rate(0.0, &stages, 99.0) - 100.0).abs() < 1e-9);
        let closed = ExecutorSpec::ClosedLoop { concurrency: 4 };
        assert_eq!(offered_rate(&closed, 1.0), None);
    }
}
