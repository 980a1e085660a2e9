//! A whole run: build the fleet, start the embedded server, drive the devices with the scenario's
//! executor, check every device against its expectation, summarise, judge the thresholds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dps_server::config::Config;
use dps_server::server::Server;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

use crate::device::{self, DeviceContext, DeviceRun, Observed};
use crate::fleet::{self, DeviceClass, Expected, Fleet};
use crate::metrics::{Phase, Quantiles, Recorder};
use crate::scenario::{ExecutorSpec, Loaded};
use crate::threshold::{Metric, RateOf};

/// Why a run could not be carried out (as opposed to a run whose thresholds failed).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The fleet could not be generated.
    #[error("fleet: {0}")]
    Fleet(#[from] fleet::FleetError),
    /// The embedded server could not start.
    #[error("embedded server: {0}")]
    Server(String),
    /// Local I/O (temp dir, sockets).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Per-class outcome counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClassCounts {
    /// Devices of the class.
    pub devices: u64,
    /// Got exactly what the class expects.
    pub as_expected: u64,
    /// Got something else.
    pub mismatches: u64,
    /// Observed outcomes (`provisioned:<group>`, `rejected:<alert>`, `failed`, ...) and counts.
    pub observed: BTreeMap<String, u64>,
}

/// One threshold's verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// As written.
    pub threshold: String,
    /// The measured value (µs for latencies, per second for rates).
    pub actual: f64,
    /// Held.
    pub passed: bool,
}

/// What a run produced; serialized as `summary.json` (schema: `loadgen/summary.schema.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Schema version of this document.
    pub schema_version: u32,
    /// Scenario name.
    pub scenario: String,
    /// Start time, RFC 3339.
    pub started_at: String,
    /// Wall time of the device phase, seconds.
    pub duration_s: f64,
    /// Device runs scheduled (the fleet size, or the ramp's starts, which cycle through the fleet).
    pub devices: u64,
    /// Devices that ran to completion as expected with the full flow.
    pub provisioned: u64,
    /// Devices whose handshake completed (accepted or refused as expected).
    pub handshakes: u64,
    /// Devices with an outcome other than expected.
    pub mismatches: u64,
    /// Devices that failed for another reason (timeouts, I/O, bad answers).
    pub errors: u64,
    /// Scheduled starts dropped (open model only).
    pub dropped: u64,
    /// Provisioned per second.
    pub provisioned_per_s: f64,
    /// Handshakes per second.
    pub handshakes_per_s: f64,
    /// Client-side latency per phase.
    pub latency: BTreeMap<Phase, Quantiles>,
    /// Per class.
    pub classes: BTreeMap<DeviceClass, ClassCounts>,
    /// Server-side rejection counters by reason (embedded server), for cross-checking.
    pub server_rejections: BTreeMap<String, u64>,
    /// Rejections the fleet expects by reason.
    pub expected_rejections: BTreeMap<String, u64>,
    /// A few mismatching devices, for diagnosis.
    pub mismatch_examples: Vec<String>,
    /// Per second of the run (by completion time): to read a ramp's knee.
    pub timeline: Vec<Second>,
    /// Highest provisioned/s over any 3 consecutive seconds (the final, draining second left out):
    /// the throughput at saturation when the executor ramps past it.
    pub peak_provisioned_per_s: f64,
    /// Thresholds and their verdicts.
    pub thresholds: Vec<ThresholdResult>,
    /// All thresholds held.
    pub passed: bool,
}

/// One second of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the start of the device phase.
    pub t_s: u64,
    /// Runs finished in this second.
    pub completed: u64,
    /// Of which provisioned as expected.
    pub provisioned: u64,
    /// p99 of the total latency (from the scheduled start) of those runs, µs.
    pub p99_total_us: u64,
}

/// Per-second buckets while the run is collected.
#[derive(Default)]
struct Timeline {
    buckets: Vec<(u64, u64, hdrhistogram::Histogram<u64>)>,
}

impl Timeline {
    fn record(&mut self, at: Duration, provisioned: bool, total: Option<Duration>) {
        let i = at.as_secs() as usize;
        while self.buckets.len() <= i {
            self.buckets.push((0, 0, crate::metrics::new_histogram()));
        }
        if let Some(b) = self.buckets.get_mut(i) {
            b.0 += 1;
            b.1 += u64::from(provisioned);
            if let Some(t) = total {
                crate::metrics::record(&mut b.2, t);
            }
        }
    }

    fn seconds(&self) -> Vec<Second> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(t, (completed, provisioned, h))| Second {
                t_s: t as u64,
                completed: *completed,
                provisioned: *provisioned,
                p99_total_us: if h.is_empty() {
                    0
                } else {
                    h.value_at_quantile(0.99)
                },
            })
            .collect()
    }

    /// The best `window`-second average of provisioned/s. The last second is left out: it holds
    /// the drain of queued runs, not sustained throughput.
    fn peak(&self, window: usize) -> f64 {
        let full = self
            .buckets
            .len()
            .saturating_sub(1)
            .max(1)
            .min(self.buckets.len());
        let p: Vec<u64> = self.buckets[..full].iter().map(|b| b.1).collect();
        if p.len() < window {
            return p.iter().sum::<u64>() as f64 / window.max(1) as f64;
        }
        p.windows(window)
            .map(|w| w.iter().sum::<u64>() as f64 / window as f64)
            .fold(0.0, f64::max)
    }
}

/// A finished run: the summary and the raw histograms.
#[derive(Debug)]
pub struct Outcome {
    /// The summary.
    pub summary: Summary,
    /// Client-side histograms.
    pub recorder: Recorder,
}

fn matches(expected: &Expected, observed: &Observed, fleet: &Fleet, handshake_only: bool) -> bool {
    match (expected, observed) {
        (Expected::Accepted { group }, Observed::Provisioned { owner }) => fleet
            .groups
            .get(group)
            .is_some_and(|g| &g.owner_uuid == owner),
        (Expected::Accepted { .. }, Observed::Attested) => handshake_only,
        (Expected::Rejected { reason }, Observed::Rejected { alert }) => {
            device::expected_alert(*reason) == alert
        }
        _ => false,
    }
}

fn observed_label(o: &Observed, fleet: &Fleet) -> String {
    match o {
        Observed::Provisioned { owner } => fleet
            .groups
            .values()
            .find(|g| &g.owner_uuid == owner)
            .map_or_else(
                || format!("provisioned:owner {owner}"),
                |g| format!("provisioned:{}", g.name),
            ),
        Observed::Attested => "attested".into(),
        Observed::Rejected { alert } => format!("rejected:{alert}"),
        Observed::Failed { .. } => "failed".into(),
    }
}

/// Start devices per the executor; results arrive on the returned channel, which closes when the
/// last run has reported.
fn execute(
    fleet: Arc<Fleet>,
    ctx: Arc<DeviceContext>,
    executor: &ExecutorSpec,
) -> (
    mpsc::UnboundedReceiver<(usize, DeviceRun)>,
    Arc<std::sync::atomic::AtomicU64>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    match executor.clone() {
        ExecutorSpec::ClosedLoop { concurrency } => {
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            for _ in 0..concurrency.min(fleet.devices.len()).max(1) {
                let (fleet, ctx, tx, next) = (fleet.clone(), ctx.clone(), tx.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(dev) = fleet.devices.get(i) else {
                            break;
                        };
                        let run = device::run(dev, &ctx, Instant::now()).await;
                        if tx.send((i, run)).is_err() {
                            break;
                        }
                    }
                });
            }
        }
        ExecutorSpec::ConstantArrivalRate {
            rate,
            max_in_flight,
            max_lateness,
        } => {
            let period = 1.0 / rate;
            let schedule = (0..fleet.devices.len())
                .map(|i| i as f64 * period)
                .collect();
            let limits = (max_in_flight, max_lateness);
            open_model(fleet, ctx, tx, dropped.clone(), schedule, limits);
        }
        ExecutorSpec::RampingArrivalRate {
            start_rate,
            stages,
            max_in_flight,
            max_lateness,
        } => {
            let schedule = ramp_schedule(start_rate, &stages);
            let limits = (max_in_flight, max_lateness);
            open_model(fleet, ctx, tx, dropped.clone(), schedule, limits);
        }
    }
    (rx, dropped)
}

/// Start offsets (seconds) of a ramp: the rate moves linearly from one stage's target to the
/// next, and start k happens when the integral of the rate reaches k (so low starting rates do not
/// skip ahead).
pub fn ramp_schedule(start_rate: f64, stages: &[crate::scenario::Stage]) -> Vec<f64> {
    let mut out = Vec::new();
    let mut from = start_rate.max(0.0);
    let mut stage_start = 0.0;
    let mut done = 0.0_f64; // starts scheduled before this stage (fractional area carried over)
    let mut next = 0.0_f64; // index of the next start
    for stage in stages {
        let len = stage.duration.as_secs_f64();
        let to = stage.target.max(0.0);
        let slope = (to - from) / len.max(1e-9);
        let area = (from + to) / 2.0 * len;
        while next < done + area {
            let x = next - done; // area needed inside this stage
            let tau = if slope.abs() < 1e-12 {
                x / from.max(1e-12)
            } else {
                // from*τ + slope*τ²/2 = x
                let disc = (from * from + 2.0 * slope * x).max(0.0);
                (-from + disc.sqrt()) / slope
            };
            out.push(stage_start + tau.clamp(0.0, len));
            next += 1.0;
        }
        done += area;
        from = to;
        stage_start += len;
    }
    out
}

/// The open model: start device runs at the given offsets (cycling through the fleet), latency
/// counted from the scheduled time; a start later than `max_lateness`, or beyond `max_in_flight`
/// (0 = unlimited), is dropped and counted.
fn open_model(
    fleet: Arc<Fleet>,
    ctx: Arc<DeviceContext>,
    tx: mpsc::UnboundedSender<(usize, DeviceRun)>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
    schedule: Vec<f64>,
    (max_in_flight, max_lateness): (usize, Duration),
) {
    tokio::spawn(async move {
        let in_flight = if max_in_flight == 0 {
            Semaphore::MAX_PERMITS
        } else {
            max_in_flight
        };
        let limit = Arc::new(Semaphore::new(in_flight));
        let start = tokio::time::Instant::now();
        let n = fleet.devices.len().max(1);
        for (k, offset) in schedule.into_iter().enumerate() {
            let i = k % n;
            let scheduled = start + Duration::from_secs_f64(offset);
            tokio::time::sleep_until(scheduled).await;
            let late = tokio::time::Instant::now().saturating_duration_since(scheduled);
            let permit = match limit.clone().try_acquire_owned() {
                Ok(p) if late <= max_lateness => p,
                _ => {
                    dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
            };
            let (fleet, ctx, tx) = (fleet.clone(), ctx.clone(), tx.clone());
            tokio::spawn(async move {
                if let Some(dev) = fleet.devices.get(i) {
                    // Latency counts from the scheduled start, not from when we got to it.
                    let run = device::run(dev, &ctx, scheduled.into_std()).await;
                    let _ = tx.send((i, run));
                }
                drop(permit);
            });
        }
    });
}

/// Run a loaded scenario against an embedded server; `progress` is called with (done, total).
pub async fn run(
    loaded: &Loaded,
    progress: &(dyn Fn(u64, u64, u64) + Sync),
) -> Result<Outcome, RunError> {
    let scenario = &loaded.scenario;
    let workdir = tempfile::tempdir()?;
    let fleet = Arc::new(fleet::build(&scenario.fleet, workdir.path())?);
    let config = Config::load(&workdir.path().join("config.toml"))
        .map_err(|e| RunError::Server(e.to_string()))?;
    let server =
        Arc::new(Server::from_config(&config).map_err(|e| RunError::Server(e.to_string()))?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server.clone().run(listener, async {
        let _ = stop_rx.await;
    }));

    let ctx = Arc::new(DeviceContext {
        addr,
        server_ca: fleet.server_ca.clone(),
        skip_server_verification: scenario.device.skip_server_verification,
        handshake_only: scenario.device.handshake_only,
        timeout: scenario.device.timeout,
    });
    let started_at = time::OffsetDateTime::now_utc();
    let started = Instant::now();
    let (mut rx, dropped) = execute(fleet.clone(), ctx, &scenario.executor);
    let total = match &scenario.executor {
        ExecutorSpec::RampingArrivalRate {
            start_rate, stages, ..
        } => ramp_schedule(*start_rate, stages).len() as u64,
        _ => fleet.devices.len() as u64,
    };
    let mut recorder = Recorder::default();
    let mut classes: BTreeMap<DeviceClass, ClassCounts> = BTreeMap::new();
    let (mut done, mut provisioned, mut handshakes, mut mismatches, mut errors) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut examples = Vec::new();
    let mut last_progress = Instant::now();
    let mut expected_rejections: BTreeMap<String, u64> = BTreeMap::new();
    let mut timeline = Timeline::default();
    while let Some((i, run)) = rx.recv().await {
        let Some(dev) = fleet.devices.get(i) else {
            continue;
        };
        done += 1;
        for (phase, d) in &run.phases {
            recorder.record(dev.class, *phase, *d);
        }
        let ok = matches(
            &dev.expected,
            &run.observed,
            &fleet,
            scenario.device.handshake_only,
        );
        let total_latency = run
            .phases
            .iter()
            .find(|(p, _)| *p == Phase::Total)
            .map(|(_, d)| *d);
        timeline.record(
            started.elapsed(),
            ok && matches!(run.observed, Observed::Provisioned { .. }),
            total_latency,
        );
        let c = classes.entry(dev.class).or_default();
        c.devices += 1;
        *c.observed
            .entry(observed_label(&run.observed, &fleet))
            .or_default() += 1;
        if ok {
            c.as_expected += 1;
            handshakes += 1;
            if matches!(run.observed, Observed::Provisioned { .. }) {
                provisioned += 1;
            }
        } else {
            c.mismatches += 1;
            mismatches += 1;
            if matches!(run.observed, Observed::Failed { .. }) {
                errors += 1;
            }
            if examples.len() < 10 {
                examples.push(format!(
                    "{} ({}): expected {:?}, observed {:?}",
                    dev.common_name,
                    dev.class.as_str(),
                    dev.expected,
                    run.observed
                ));
            }
        }
        if let Expected::Rejected { reason } = dev.expected {
            *expected_rejections
                .entry(reason.as_str().into())
                .or_default() += 1;
        }
        if last_progress.elapsed() > Duration::from_millis(250) {
            progress(done, total, mismatches);
            last_progress = Instant::now();
        }
    }
    progress(done, total, mismatches);
    let duration = started.elapsed();
    let _ = stop_tx.send(());
    let _ = server_task.await;

    let stats = &server.verifier().stats;
    let server_rejections = dps_server::enrollment::RejectReason::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), stats.rejected(*r)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let secs = duration.as_secs_f64().max(1e-9);
    let mut summary = Summary {
        schema_version: 1,
        scenario: scenario.name.clone(),
        started_at: started_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        duration_s: secs,
        devices: total,
        provisioned,
        handshakes,
        mismatches,
        errors,
        dropped: dropped.load(std::sync::atomic::Ordering::Relaxed),
        provisioned_per_s: provisioned as f64 / secs,
        handshakes_per_s: handshakes as f64 / secs,
        latency: recorder
            .phases
            .iter()
            .map(|(p, h)| (*p, Quantiles::of(h)))
            .collect(),
        classes,
        server_rejections,
        expected_rejections,
        mismatch_examples: examples,
        timeline: timeline.seconds(),
        peak_provisioned_per_s: timeline.peak(3),
        thresholds: Vec::new(),
        passed: true,
    };
    // The server's own count of rejections by reason must equal what the runs expect: per-device
    // checks see only the TLS alert, this sees the exact reason. (A run that timed out client-side
    // may still have been judged by the server, so the check holds only without errors.)
    if summary.errors == 0 && summary.server_rejections != summary.expected_rejections {
        summary.mismatches += 1;
        summary.mismatch_examples.push(format!(
            "server rejections {:?} differ from the fleet's expected {:?}",
            summary.server_rejections, summary.expected_rejections
        ));
    }
    summary.thresholds = loaded
        .thresholds
        .iter()
        .map(|t| {
            let actual = match t.metric {
                Metric::Mismatches => summary.mismatches as f64,
                Metric::Errors => summary.errors as f64,
                Metric::Dropped => summary.dropped as f64,
                Metric::Quantile { quantile, phase } => recorder.quantile(phase, quantile) as f64,
                Metric::Rate {
                    what: RateOf::Provisioned,
                } => summary.provisioned_per_s,
                Metric::Rate {
                    what: RateOf::Handshakes,
                } => summary.handshakes_per_s,
                Metric::Rate {
                    what: RateOf::Devices,
                } => done as f64 / secs,
            };
            ThresholdResult {
                threshold: t.text.clone(),
                actual,
                passed: t.op.holds(actual, t.limit),
            }
        })
        .collect();
    summary.passed = summary.thresholds.iter().all(|t| t.passed);
    Ok(Outcome { summary, recorder })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Stage;

    #[test]
    fn timeline_buckets_by_second_and_finds_the_peak() {
        let mut t = Timeline::default();
        for (sec, n) in [(0u64, 2u64), (1, 10), (2, 12), (3, 11), (4, 1)] {
            for _ in 0..n {
                t.record(
                    Duration::from_millis(sec * 1000 + 500),
                    true,
                    Some(Duration::from_millis(5)),
                );
            }
        }
        t.record(Duration::from_millis(4500), false, None);
        let secs = t.seconds();
        assert_eq!(secs.len(), 5);
        assert_eq!((secs[4].completed, secs[4].provisioned), (2, 1));
        assert!((4_990..=5_010).contains(&secs[1].p99_total_us));
        assert!((t.peak(3) - 11.0).abs() < 1e-9, "{}", t.peak(3));
    }

    #[test]
    fn ramp_schedule_follows_the_stages() {
        let stages = [
            Stage {
                target: 100.0,
                duration: Duration::from_secs(2),
            },
            Stage {
                target: 100.0,
                duration: Duration::from_secs(1),
            },
        ];
        let s = ramp_schedule(0.0, &stages);
        // 0→100/s over 2 s is ~100 starts, then 100 more at 100/s.
        assert!((180..=220).contains(&s.len()), "{}", s.len());
        assert!(s.windows(2).all(|w| w[1] > w[0]));
        assert!(*s.last().unwrap_or(&0.0) < 3.0);
        // Denser at the end of the ramp than at its start.
        let early = s.iter().filter(|t| **t < 1.0).count();
        let late = s.iter().filter(|t| (1.0..2.0).contains(*t)).count();
        assert!(late > 2 * early, "early {early}, late {late}");
    }
}
