//! The latency histograms: sharded HdrHistograms that recorders never queue on, and their
//! mergeable serialization (`GET /api/v1/histograms`).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Smallest value a histogram distinguishes, µs.
const LOWEST_US: u64 = 1;
/// Largest value a histogram holds, µs (10 minutes); longer durations are recorded as this.
pub(super) const HIGHEST_US: u64 = 600_000_000;
/// Significant decimal digits kept (0.1 % relative error).
const SIGFIG: u8 = 3;
// The bounds `Histogram::new_with_bounds` requires, checked at compile time.
const _: () = assert!(LOWEST_US >= 1 && HIGHEST_US >= 2 * LOWEST_US && SIGFIG <= 5);

/// Shards per histogram.
const SHARDS: usize = 4;

/// An empty histogram with the bounds above.
fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG) {
        Ok(h) => h,
        // Only invalid bounds make this fail, and the constant assertion above rules them out.
        Err(e) => unreachable!("histogram bounds are checked at compile time: {e:?}"),
    }
}

/// `d` in whole microseconds, saturating.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One shard: the histogram and the exact sum of what it recorded (µs).
pub(super) struct Timing {
    pub(super) hist: Histogram<u64>,
    pub(super) sum_us: u64,
}

impl Timing {
    /// An empty shard.
    pub(super) fn new() -> Self {
        Self {
            hist: new_histogram(),
            sum_us: 0,
        }
    }

    /// Record `us`, clamped to the histogram's range.
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
pub(super) struct Recorder {
    shards: [Mutex<Timing>; SHARDS],
}

/// The shard, locked (waiting for it).
fn lock(m: &Mutex<Timing>) -> MutexGuard<'_, Timing> {
    // A panic while holding the lock leaves at worst one sample half-recorded: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Recorder {
    /// Every shard empty.
    pub(super) fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(Timing::new())),
        }
    }

    /// Record `d` in the first shard free now (or wait for this thread's own).
    pub(super) fn record(&self, d: Duration) {
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
    pub(super) fn merged(&self) -> Timing {
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

/// The histograms of [`super::Metrics::histograms`], as served by `GET /api/v1/histograms`.
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
