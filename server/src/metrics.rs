//! Server-side measurement: counters, a gauge of open connections and latency histograms, exported
//! by the admin API as Prometheus text (`GET /metrics`) and as mergeable HdrHistograms
//! (`GET /api/v1/histograms`, fetched by the load generator).
//!
//! Recording is cheap and never waits for an export: counters are relaxed atomics, and every
//! histogram is a small set of shards, each behind its own mutex. A recorder takes the first shard
//! it can lock without waiting (starting at one chosen per thread), so an exporter reading one shard
//! never stalls it; it waits only if every shard is busy at once, and then only for one `record`.
//! Durations are stored in microseconds; values beyond the histogram's range are clamped to it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Cursor;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

mod closes;
pub use closes::{CloseCounters, CloseReason};

use crate::enrollment::RejectReason;
use crate::proto::coap::Code;
use crate::records::Step;

/// Smallest value a histogram distinguishes, µs.
const LOWEST_US: u64 = 1;
/// Largest value a histogram holds, µs (10 minutes); longer durations are recorded as this.
const HIGHEST_US: u64 = 600_000_000;
/// Significant decimal digits kept (0.1 % relative error).
const SIGFIG: u8 = 3;
// The bounds `Histogram::new_with_bounds` requires, checked at compile time.
const _: () = assert!(LOWEST_US >= 1 && HIGHEST_US >= 2 * LOWEST_US && SIGFIG <= 5);

/// Shards per histogram.
const SHARDS: usize = 4;

/// Quantiles exported in the Prometheus summaries.
const QUANTILES: [(f64, &str); 4] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (0.999, "0.999")];

/// The resource steps in a fixed order, with their label; requests with no step count as "other".
const STEPS: [(Step, &str); 5] = [
    (Step::Time, "time"),
    (Step::Ownership, "ownership"),
    (Step::CloudConfiguration, "cloud_configuration"),
    (Step::Credentials, "credentials"),
    (Step::Acls, "acls"),
];
/// Label of requests for no known resource step.
const OTHER: &str = "other";
/// Rows of the request counter table: the steps plus "other".
const REQUEST_ROWS: usize = STEPS.len() + 1;

fn step_index(step: Option<Step>) -> usize {
    step.and_then(|s| STEPS.iter().position(|(x, _)| *x == s))
        .unwrap_or(STEPS.len())
}

fn row_label(row: usize) -> &'static str {
    STEPS.get(row).map_or(OTHER, |(_, label)| label)
}

fn reason_index(reason: RejectReason) -> usize {
    RejectReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(RejectReason::ALL.len() - 1)
}

fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG) {
        Ok(h) => h,
        // Only invalid bounds make this fail, and the constant assertion above rules them out.
        Err(e) => unreachable!("histogram bounds are checked at compile time: {e:?}"),
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One shard: the histogram and the exact sum of what it recorded (µs).
struct Timing {
    hist: Histogram<u64>,
    sum_us: u64,
}

impl Timing {
    fn new() -> Self {
        Self {
            hist: new_histogram(),
            sum_us: 0,
        }
    }

    fn record(&mut self, us: u64) {
        let us = us.min(HIGHEST_US);
        self.hist.saturating_record(us);
        self.sum_us = self.sum_us.saturating_add(us);
    }
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD_HINT: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// A histogram split in shards so recorders never queue behind each other or an exporter.
struct Recorder {
    shards: [Mutex<Timing>; SHARDS],
}

fn lock(m: &Mutex<Timing>) -> MutexGuard<'_, Timing> {
    // A panic while holding the lock leaves at worst one sample half-recorded: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Recorder {
    fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(Timing::new())),
        }
    }

    fn record(&self, d: Duration) {
        let us = micros(d);
        let start = SHARD_HINT.try_with(|h| *h).unwrap_or(0);
        for i in 0..SHARDS {
            match self.shards[(start + i) % SHARDS].try_lock() {
                Ok(mut t) => return t.record(us),
                Err(TryLockError::Poisoned(p)) => return p.into_inner().record(us),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        lock(&self.shards[start]).record(us);
    }

    /// All shards merged.
    fn merged(&self) -> Timing {
        let mut acc = Timing::new();
        for shard in &self.shards {
            let t = lock(shard);
            // Same bounds on both sides, so adding cannot fail; a failure would only lose samples.
            if acc.hist.add(&t.hist).is_ok() {
                acc.sum_us = acc.sum_us.saturating_add(t.sum_us);
            }
        }
        acc
    }
}

/// Every counter, gauge and histogram the server keeps. Share it as `Arc<Metrics>`.
pub struct Metrics {
    accepted: AtomicU64,
    rejected: [AtomicU64; RejectReason::ALL.len()],
    handshake_failures: AtomicU64,
    shed: AtomicU64,
    admin_refused: AtomicU64,
    closes: CloseCounters,
    open_connections: AtomicI64,
    /// `REQUEST_ROWS` rows of 256 codes.
    requests: Box<[AtomicU64]>,
    handshake: Recorder,
    matching: Recorder,
    resources: [Recorder; STEPS.len()],
    tokens: Arc<crate::token::TokenMetrics>,
    overload: Arc<crate::overload::OverloadCounters>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("accepted", &self.handshakes_accepted())
            .field("handshake_failures", &self.handshake_failures())
            .field("open_connections", &self.open_connections())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All counters at zero, all histograms empty.
    pub fn new() -> Self {
        Self {
            accepted: AtomicU64::new(0),
            rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            handshake_failures: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            admin_refused: AtomicU64::new(0),
            closes: CloseCounters::default(),
            open_connections: AtomicI64::new(0),
            requests: (0..REQUEST_ROWS * 256).map(|_| AtomicU64::new(0)).collect(),
            handshake: Recorder::new(),
            matching: Recorder::new(),
            resources: std::array::from_fn(|_| Recorder::new()),
            tokens: Arc::default(),
            overload: Arc::default(),
        }
    }

    /// What overload control did (shed connections by reason, queue waits, signatures).
    pub fn overload(&self) -> &Arc<crate::overload::OverloadCounters> {
        &self.overload
    }

    /// Export these access-token counters (the provisioner's) too.
    pub fn with_token_metrics(mut self, tokens: Arc<crate::token::TokenMetrics>) -> Self {
        self.tokens = tokens;
        self
    }

    /// A TLS handshake completed and the connection was admitted: counts it as accepted and records
    /// how long the handshake took.
    pub fn record_handshake(&self, took: Duration) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.handshake.record(took);
    }

    /// Records how long authentication plus group selection took for one presented chain.
    pub fn record_matching(&self, took: Duration) {
        self.matching.record(took);
    }

    /// A device was refused by attestation for `reason`.
    pub fn record_rejection(&self, reason: RejectReason) {
        self.rejected[reason_index(reason)].fetch_add(1, Ordering::Relaxed);
    }

    /// A TLS handshake failed for another reason than an attestation rejection (timeout, protocol
    /// error, connection reset).
    pub fn record_handshake_failure(&self) {
        self.handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was closed at accept because its address spent its failed-handshake budget.
    pub fn record_shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    /// A device connection ended for `reason` (every one is counted once).
    pub fn record_close(&self, reason: CloseReason) {
        self.closes.add(reason, 1);
    }

    /// Device connections closed so far, by reason.
    pub fn closes(&self) -> &CloseCounters {
        &self.closes
    }

    /// Connections closed at accept by shedding.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// An admin API connection was closed at accept: all its places were taken.
    pub fn record_admin_refused(&self) {
        self.admin_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Admin API connections closed at accept because all places were taken.
    pub fn admin_refused(&self) -> u64 {
        self.admin_refused.load(Ordering::Relaxed)
    }

    /// A request was answered with `code` after `took`. `step` is the resource's provisioning step
    /// (`None` for any other path: counted as resource "other", not timed).
    pub fn record_request(&self, step: Option<Step>, code: Code, took: Duration) {
        let row = step_index(step);
        if let Some(c) = self.requests.get(row * 256 + usize::from(code.0)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(r) = self.resources.get(row) {
            r.record(took);
        }
    }

    /// A device connection was opened (pair with [`Metrics::connection_closed`], or use
    /// [`Metrics::connection_guard`]).
    pub fn connection_opened(&self) {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// A device connection was closed.
    pub fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn connection_guard(self: &Arc<Self>) -> OpenConnection {
        self.connection_opened();
        OpenConnection(self.clone())
    }

    /// Handshakes accepted so far.
    pub fn handshakes_accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Rejections so far for `reason`.
    pub fn rejections(&self, reason: RejectReason) -> u64 {
        self.rejected[reason_index(reason)].load(Ordering::Relaxed)
    }

    /// Handshake failures (not attestation rejections) so far.
    pub fn handshake_failures(&self) -> u64 {
        self.handshake_failures.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u64 {
        u64::try_from(self.open_connections.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Requests answered so far for `step` with `code`.
    pub fn requests(&self, step: Option<Step>, code: Code) -> u64 {
        self.requests
            .get(step_index(step) * 256 + usize::from(code.0))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Every histogram under its stable name, merged over its shards.
    fn named_timings(&self) -> Vec<(String, Timing)> {
        let mut out = vec![
            ("handshake".to_owned(), self.handshake.merged()),
            ("matching".to_owned(), self.matching.merged()),
        ];
        for ((_, label), r) in STEPS.iter().zip(&self.resources) {
            out.push((format!("resource.{label}"), r.merged()));
        }
        out
    }

    /// Everything in the Prometheus text exposition format 0.0.4. Durations are summaries in
    /// seconds; a summary with no observation has NaN quantiles.
    pub fn prometheus(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        header(
            &mut out,
            "dps_handshakes_total",
            "TLS handshakes by outcome (rejected: by attestation; failed: timeouts and protocol errors).",
            "counter",
        );
        let rejected_total: u64 = RejectReason::ALL.iter().map(|r| self.rejections(*r)).sum();
        for (outcome, n) in [
            ("accepted", self.handshakes_accepted()),
            ("rejected", rejected_total),
            ("failed", self.handshake_failures()),
        ] {
            let _ = writeln!(out, "dps_handshakes_total{{outcome=\"{outcome}\"}} {n}");
        }
        header(
            &mut out,
            "dps_rejections_total",
            "Devices refused by attestation, by reason.",
            "counter",
        );
        for r in RejectReason::ALL {
            let _ = writeln!(
                out,
                "dps_rejections_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.rejections(r)
            );
        }
        header(
            &mut out,
            "dps_handshake_failures_total",
            "TLS handshakes that failed for another reason than attestation (timeouts, protocol errors).",
            "counter",
        );
        let _ = writeln!(
            out,
            "dps_handshake_failures_total {}",
            self.handshake_failures()
        );
        header(
            &mut out,
            "dps_connections_shed_total",
            "Connections shed before any public-key work (all reasons; by reason: dps_shed_total).",
            "counter",
        );
        let _ = writeln!(out, "dps_connections_shed_total {}", self.shed());
        header(
            &mut out,
            "dps_admin_connections_refused_total",
            "Admin API connections closed at accept: all its connection places were taken.",
            "counter",
        );
        let _ = writeln!(
            out,
            "dps_admin_connections_refused_total {}",
            self.admin_refused()
        );
        self.closes.render(&mut out);
        header(
            &mut out,
            "dps_open_connections",
            "Device connections open now.",
            "gauge",
        );
        let _ = writeln!(out, "dps_open_connections {}", self.open_connections());
        if let Some(mem) = resident_memory() {
            header(
                &mut out,
                "process_resident_memory_bytes",
                "Resident memory of the server process.",
                "gauge",
            );
            let _ = writeln!(out, "process_resident_memory_bytes {}", mem.current);
            header(
                &mut out,
                "dps_process_peak_resident_memory_bytes",
                "Highest resident memory of the server process since it started.",
                "gauge",
            );
            let _ = writeln!(out, "dps_process_peak_resident_memory_bytes {}", mem.peak);
        }
        header(
            &mut out,
            "dps_requests_total",
            "Device requests answered, by resource and CoAP response code.",
            "counter",
        );
        for row in 0..REQUEST_ROWS {
            for code in 0..=u8::MAX {
                let n = self
                    .requests
                    .get(row * 256 + usize::from(code))
                    .map_or(0, |c| c.load(Ordering::Relaxed));
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "dps_requests_total{{resource=\"{}\",code=\"{}\"}} {n}",
                        row_label(row),
                        Code(code)
                    );
                }
            }
        }
        summary(
            &mut out,
            "dps_handshake_duration_seconds",
            "TLS handshake duration of accepted connections.",
            &[("", &self.handshake.merged())],
        );
        summary(
            &mut out,
            "dps_matching_duration_seconds",
            "Authentication and group selection duration per presented chain.",
            &[("", &self.matching.merged())],
        );
        let resources: Vec<(String, Timing)> = STEPS
            .iter()
            .zip(&self.resources)
            .map(|((_, label), r)| (format!("resource=\"{label}\""), r.merged()))
            .collect();
        let refs: Vec<(&str, &Timing)> = resources.iter().map(|(l, t)| (l.as_str(), t)).collect();
        summary(
            &mut out,
            "dps_resource_duration_seconds",
            "Time to answer a device request, by resource.",
            &refs,
        );
        self.tokens.write_prometheus(&mut out);
        self.overload.render(&mut out);
        out
    }

    /// Every histogram, serialized so that other processes can merge them, with a few numbers for
    /// humans.
    pub fn histograms(&self) -> HistogramSnapshot {
        let histograms = self
            .named_timings()
            .into_iter()
            .map(|(name, t)| (name, HistogramSummary::of(&t.hist)))
            .collect();
        HistogramSnapshot {
            unit: "us".to_owned(),
            histograms,
        }
    }
}

/// Keeps one connection counted as open; see [`Metrics::connection_guard`].
#[derive(Debug)]
pub struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

/// Resident memory of this process, from `/proc/self/status` (Linux): what one connection costs is
/// read off it under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidentMemory {
    /// Bytes resident now (`VmRSS`).
    pub current: u64,
    /// Highest resident bytes so far (`VmHWM`).
    pub peak: u64,
}

/// This process's [`ResidentMemory`]; `None` where `/proc` does not tell.
pub fn resident_memory() -> Option<ResidentMemory> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
    };
    Some(ResidentMemory {
        current: kib("VmRSS:")?.saturating_mul(1024),
        peak: kib("VmHWM:")?.saturating_mul(1024),
    })
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// One summary family; `series` pairs a label set (`resource="time"`, or empty) with its data.
fn summary(out: &mut String, name: &str, help: &str, series: &[(&str, &Timing)]) {
    header(out, name, help, "summary");
    for (labels, t) in series {
        let sep = if labels.is_empty() { "" } else { "," };
        for (q, qs) in QUANTILES {
            let v = if t.hist.is_empty() {
                f64::NAN
            } else {
                seconds(t.hist.value_at_quantile(q))
            };
            let _ = writeln!(out, "{name}{{{labels}{sep}quantile=\"{qs}\"}} {v}");
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", seconds(t.sum_us));
        let _ = writeln!(out, "{name}_count{braces} {}", t.hist.len());
    }
}

/// The histograms of [`Metrics::histograms`], as served by `GET /api/v1/histograms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramSnapshot {
    /// Unit of every recorded value: `"us"` (microseconds).
    pub unit: String,
    /// By name: `handshake`, `matching`, and `resource.<step>` for `time`, `ownership`,
    /// `cloud_configuration`, `credentials` and `acls`.
    pub histograms: BTreeMap<String, HistogramSummary>,
}

/// One histogram: the mergeable data and a summary for humans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramSummary {
    /// The HdrHistogram in the V2 deflate serialization, base64 (standard alphabet, padded); decode
    /// with [`decode_histogram`]. Empty only if serialization failed.
    pub hdr: String,
    /// Values recorded.
    pub count: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 90th percentile, µs.
    pub p90_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Largest value, µs.
    pub max_us: u64,
}

impl HistogramSummary {
    /// Summarize and serialize `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        Self {
            hdr: encode_histogram(h).unwrap_or_default(),
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Why a serialized histogram could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum HistogramDecodeError {
    /// Not base64.
    #[error("histogram is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// Not an HdrHistogram serialization.
    #[error("histogram does not deserialize: {0}")]
    Hdr(#[from] hdrhistogram::serialization::DeserializeError),
}

/// Serialize a histogram as [`HistogramSummary::hdr`] does: V2 deflate, then base64.
pub fn encode_histogram(
    h: &Histogram<u64>,
) -> Result<String, hdrhistogram::serialization::V2DeflateSerializeError> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut bytes)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Read back a histogram serialized by [`encode_histogram`] (the `hdr` field of a snapshot), e.g.
/// to merge the server's histograms in the load generator.
pub fn decode_histogram(b64: &str) -> Result<Histogram<u64>, HistogramDecodeError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim())?;
    Ok(Deserializer::new().deserialize(&mut Cursor::new(bytes))?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(text
            .contains("dps_resource_duration_seconds{resource=\"acls\",quantile=\"0.5\"} 0.001"));
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
}
