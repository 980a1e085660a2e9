//! The counters, the Prometheus text and the histograms, observed from outside.

use std::sync::Arc;
use std::time::Duration;

use super::histogram::HIGHEST_US;
use super::*;
use crate::enrollment::RejectReason;
use crate::proto::coap::Code;
use crate::records::Step;

#[test]
fn counters_and_gauge() {
    let m = Arc::new(Metrics::new());
    m.record_handshake(Duration::from_millis(3));
    m.record_handshake(Duration::from_millis(4));
    m.record_rejection(RejectReason::NoPath);
    m.record_rejection(RejectReason::Denied);
    m.record_rejection(RejectReason::Denied);
    m.record_handshake_failure();
    m.record_request(Some(Step::Time), Code::CONTENT, Duration::from_micros(250));
    m.record_request(
        Some(Step::Credentials),
        Code::BAD_REQUEST,
        Duration::from_millis(2),
    );
    m.record_request(None, Code::NOT_FOUND, Duration::from_micros(10));
    m.connection_opened();
    m.connection_opened();
    m.connection_closed();
    {
        let _g = m.connection_guard();
        assert_eq!(m.open_connections(), 2);
    }
    assert_eq!(m.open_connections(), 1);
    assert_eq!(m.handshakes_accepted(), 2);
    assert_eq!(m.rejections(RejectReason::NoPath), 1);
    assert_eq!(m.rejections(RejectReason::Denied), 2);
    assert_eq!(m.rejections(RejectReason::Expired), 0);
    assert_eq!(m.handshake_failures(), 1);
    assert_eq!(m.requests(Some(Step::Time), Code::CONTENT), 1);
    assert_eq!(m.requests(Some(Step::Credentials), Code::BAD_REQUEST), 1);
    assert_eq!(m.requests(None, Code::NOT_FOUND), 1);
    assert_eq!(m.requests(Some(Step::Acls), Code::CONTENT), 0);
    m.connection_closed();
    m.connection_closed();
    assert_eq!(m.open_connections(), 0, "the gauge never shows negative");

    let text = m.prometheus();
    assert!(
        text.contains("dps_handshakes_total{outcome=\"accepted\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("dps_handshakes_total{outcome=\"rejected\"} 3\n"));
    assert!(text.contains("dps_handshake_failures_total 1\n"));
    assert!(text.contains("dps_rejections_total{reason=\"denied\"} 2\n"));
    assert!(text.contains("dps_requests_total{resource=\"time\",code=\"2.05\"} 1\n"));
    assert!(text.contains("dps_requests_total{resource=\"credentials\",code=\"4.00\"} 1\n"));
    assert!(text.contains("dps_requests_total{resource=\"other\",code=\"4.04\"} 1\n"));
    assert!(text.contains("dps_resource_duration_seconds_count{resource=\"time\"} 1\n"));
    assert!(text.contains("dps_handshake_duration_seconds_count 2\n"));
}

#[test]
fn resident_memory_is_read_on_linux() {
    if cfg!(target_os = "linux") {
        let m = resident_memory().expect("/proc/self/status");
        assert!(m.current > 0 && m.peak >= m.current, "{m:?}");
        assert!(Metrics::new()
            .prometheus()
            .contains("\nprocess_resident_memory_bytes "));
    }
}

#[test]
fn prometheus_lists_every_reason_and_parses() {
    let m = Metrics::new();
    let text = m.prometheus();
    for r in RejectReason::ALL {
        let line = format!("dps_rejections_total{{reason=\"{}\"}} 0\n", r.as_str());
        assert!(text.contains(&line), "missing {line}");
    }
    for name in [
        "dps_handshakes_total",
        "dps_rejections_total",
        "dps_handshake_failures_total",
        "dps_open_connections",
        "dps_requests_total",
        "dps_handshake_duration_seconds",
        "dps_matching_duration_seconds",
        "dps_resource_duration_seconds",
    ] {
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
    }
    m.record_matching(Duration::from_micros(40));
    m.record_matching(Duration::from_micros(60));
    m.record_request(Some(Step::Acls), Code::CONTENT, Duration::from_millis(1));
    let text = m.prometheus();
    let mut quantiles = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        // Every sample line is `name{labels} value` or `name value`, and the value parses.
        let (series, value) = line.rsplit_once(' ').unwrap_or(("", ""));
        assert!(!series.is_empty(), "{line}");
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        if series.contains("quantile=") {
            quantiles += 1;
            if series.starts_with("dps_matching_duration_seconds") {
                assert!((0.00003..0.0001).contains(&v), "{line}");
            }
        }
    }
    // 4 quantiles × (handshake + matching + 5 resources)
    assert_eq!(quantiles, 4 * 7);
    assert!(
        text.contains("dps_matching_duration_seconds_sum 0.0001\n"),
        "{text}"
    );
    assert!(
        text.contains("dps_resource_duration_seconds{resource=\"acls\",quantile=\"0.5\"} 0.001")
    );
}

#[test]
fn huge_values_clamp() {
    let m = Metrics::new();
    m.record_handshake(Duration::from_secs(100_000));
    m.record_handshake(Duration::MAX);
    let s = m.histograms();
    let h = &s.histograms["handshake"];
    assert_eq!(h.count, 2);
    assert!(h.max_us >= HIGHEST_US && h.max_us < HIGHEST_US + HIGHEST_US / 100);
}

#[test]
fn serialized_histograms_decode_with_the_same_count_and_max() {
    let m = Metrics::new();
    for us in [5u64, 50, 500, 5_000, 50_000, 123_456] {
        m.record_request(
            Some(Step::Credentials),
            Code::CHANGED,
            Duration::from_micros(us),
        );
    }
    let snap = m.histograms();
    let json = serde_json::to_string(&snap).expect("serialize");
    let back: HistogramSnapshot = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, snap);
    assert_eq!(back.histograms.len(), 7);
    let entry = &back.histograms["resource.credentials"];
    assert_eq!(entry.count, 6);
    let h = decode_histogram(&entry.hdr).expect("decode");
    assert_eq!(h.len(), 6);
    assert_eq!(h.max(), entry.max_us);
    assert!(h.equivalent(h.max(), 123_456));
    let empty = decode_histogram(&back.histograms["handshake"].hdr).expect("decode empty");
    assert_eq!(empty.len(), 0);
    // Merging, as the load generator does.
    let mut merged = h.clone();
    merged.add(&h).expect("merge");
    assert_eq!(merged.len(), 12);
    assert!(decode_histogram("not base64!").is_err());
    assert!(decode_histogram("AAAA").is_err());
}

#[test]
fn concurrent_recording_loses_nothing() {
    let m = Arc::new(Metrics::new());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..10_000u64 {
                    m.record_matching(Duration::from_micros(i % 1000));
                    if i % 1000 == 0 {
                        let _ = m.histograms();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("join");
    }
    assert_eq!(m.histograms().histograms["matching"].count, 40_000);
}

/// A fixed set of observations, touching every family the server renders.
fn pinned_metrics() -> Metrics {
    let m = Metrics::new();
    m.record_handshake(Duration::from_millis(3));
    m.record_handshake(Duration::from_millis(4));
    m.record_matching(Duration::from_micros(40));
    m.record_rejection(RejectReason::NoPath);
    m.record_rejection(RejectReason::Denied);
    m.record_handshake_failure();
    m.record_shed();
    m.record_admin_refused();
    m.record_close(CloseReason::Idle);
    m.record_close(CloseReason::Shed);
    m.record_request(Some(Step::Time), Code::CONTENT, Duration::from_micros(250));
    m.record_request(Some(Step::Acls), Code::CONTENT, Duration::from_millis(1));
    m.record_request(None, Code::NOT_FOUND, Duration::from_micros(10));
    m.overload().shed(crate::overload::ShedReason::QueueTimeout);
    m.overload().waited(Duration::from_millis(2));
    m.overload().signed();
    m.connection_opened();
    m
}

/// The rendered text with the resident-memory values replaced by `N` (they vary by run).
fn memory_masked(text: &str) -> String {
    text.lines()
        .map(|l| match l.rsplit_once(' ') {
            Some((series, _)) if !l.starts_with('#') && series.contains("resident_memory") => {
                format!("{series} N\n")
            }
            _ => format!("{l}\n"),
        })
        .collect()
}

/// `/metrics` is an interface: its families, their order, help texts and label sets.
#[test]
#[cfg(target_os = "linux")]
fn prometheus_text_is_pinned() {
    let text = memory_masked(&pinned_metrics().prometheus());
    assert_eq!(text, include_str!("prometheus_pinned.txt"));
}
