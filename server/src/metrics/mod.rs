//! Server-side measurement: counters, a gauge of open connections and latency histograms, exported
//! by the admin API as Prometheus text (`GET /metrics`) and as mergeable HdrHistograms
//! (`GET /api/v1/histograms`, fetched by the load generator).
//!
//! Recording is cheap and never waits for an export: counters are relaxed atomics, and every
//! histogram is a small set of shards, each behind its own mutex. A recorder takes the first shard
//! it can lock without waiting (starting at one chosen per thread), so an exporter reading one shard
//! never stalls it; it waits only if every shard is busy at once, and then only for one `record`.
//! Durations are stored in microseconds; values beyond the histogram's range are clamped to it.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod closes;
mod histogram;
mod memory;
mod prometheus;
#[cfg(test)]
mod tests;

pub use closes::{CloseCounters, CloseReason};
pub use histogram::{
    decode_histogram, encode_histogram, HistogramDecodeError, HistogramSnapshot, HistogramSummary,
};
use histogram::{Recorder, Timing};
pub use memory::{resident_memory, ResidentMemory};

use crate::enrollment::RejectReason;
use crate::proto::coap::Code;
use crate::records::Step;

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

/// The request-table row of `step` (the last row: no known step).
fn step_index(step: Option<Step>) -> usize {
    step.and_then(|s| STEPS.iter().position(|(x, _)| *x == s))
        .unwrap_or(STEPS.len())
}

/// The `resource` label of a request-table row.
fn row_label(row: usize) -> &'static str {
    STEPS.get(row).map_or(OTHER, |(_, label)| label)
}

/// The counter slot of `reason` (its place in `RejectReason::ALL`).
fn reason_index(reason: RejectReason) -> usize {
    RejectReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(RejectReason::ALL.len() - 1)
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
