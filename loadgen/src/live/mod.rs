//! Live metrics while a run goes (`dps-loadgen run --metrics-listen ADDR`): the summary's counters,
//! a few gauges and the per-phase latency histograms in the Prometheus text exposition format
//! 0.0.4 on `GET /metrics`, so that a long run can be watched (Grafana, `docs/grafana/`).
//!
//! The device tasks never see this module: the run's collecting loop, which owns the
//! [`Collector`](crate::collect::Collector) anyway, renders a snapshot a few times a second
//! ([`LiveMetrics::publish`]) and once more when the last device is in; a scrape only clones the
//! last rendered text. Names are prefixed `dpsloadgen_` (listed in [`render::NAMES`]).

pub mod render;
pub mod serve;

use std::sync::{Arc, Mutex};

pub use render::{LiveView, BUCKETS_S};
pub use serve::{serve, LiveServer};

/// The last published exposition, shared between the run's collecting loop (writer, a few times
/// a second) and the HTTP endpoint (readers): scrapes cost the run one lock and an `Arc` clone.
#[derive(Debug, Default)]
pub struct LiveMetrics {
    text: Mutex<Arc<str>>,
}

impl LiveMetrics {
    /// An empty exposition until the first publish (a scrape before the run starts gets the
    /// generator's metric families with nothing counted yet).
    pub fn new() -> Arc<Self> {
        let empty = render::render(&LiveView::default());
        Arc::new(Self {
            text: Mutex::new(Arc::from(empty)),
        })
    }

    /// Render `view` and make it what the next scrape sees.
    pub fn publish(&self, view: &LiveView<'_>) {
        let text: Arc<str> = Arc::from(render::render(view));
        if let Ok(mut slot) = self.text.lock() {
            *slot = text;
        }
    }

    /// The exposition now.
    pub fn text(&self) -> Arc<str> {
        self.text
            .lock()
            .map(|t| t.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }
}

/// The snapshot of a run in progress: `c` as collected so far, the executor's counters, the
/// scheduled rate `elapsed` into the device phase, this process's CPU time.
pub fn view<'a>(
    c: &'a crate::collect::Collector,
    exec: &crate::executor::Started,
    spec: &crate::scenario::ExecutorSpec,
    elapsed: std::time::Duration,
) -> LiveView<'a> {
    LiveView {
        collector: Some(c),
        scheduled: exec.total,
        started: exec.starts.begun(),
        dropped: exec.dropped.load(std::sync::atomic::Ordering::Relaxed),
        held: exec.hold.as_ref().map_or(0, |h| h.held()),
        offered_rate: render::offered_rate(spec, elapsed.as_secs_f64()),
        cpu_seconds: crate::saturation::cpu::this_process()
            .ok()
            .map(|t| t.total().as_secs_f64()),
    }
}
