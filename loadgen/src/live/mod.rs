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
pub mod snapshot;

pub use render::{LiveView, BUCKETS_S};
pub use serve::{serve, LiveServer};
pub use snapshot::LiveMetrics;

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
