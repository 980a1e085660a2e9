//! Executors, as in k6: how device runs are started. Closed-loop (N at a time, back to back),
//! constant- and ramping-arrival-rate (open model: latency from the scheduled start, late starts
//! dropped and counted) and hold (every device connects, then all stay connected together).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::device::hold::HoldControl;
use crate::device::{self, DeviceContext, DeviceRun};
use crate::fleet::Fleet;
use crate::saturation::StartMeter;
use crate::scenario::{ExecutorSpec, Stage};
use crate::segment::Segment;

/// A started executor.
pub struct Started {
    /// Finished runs (fleet index, run); closes after the last one.
    pub results: mpsc::UnboundedReceiver<(usize, DeviceRun)>,
    /// Scheduled starts dropped (open model).
    pub dropped: Arc<AtomicU64>,
    /// Starts against the schedule: lateness, and drops by why (nothing for a plain closed loop).
    pub starts: Arc<StartMeter>,
    /// Runs scheduled in all.
    pub total: u64,
    /// Hold executor: fires once every device is holding or has failed, while they still hold.
    pub all_held: Option<oneshot::Receiver<()>>,
    /// Hold executor: the devices' shared state.
    pub hold: Option<Arc<HoldControl>>,
}

/// Start the runs of `executor` over `fleet`: all of them, or `segment`'s part
/// ([`crate::segment`]).
pub fn start(
    fleet: Arc<Fleet>,
    mut ctx: DeviceContext,
    executor: &ExecutorSpec,
    segment: Segment,
) -> Started {
    let (tx, results) = mpsc::unbounded_channel();
    let dropped = Arc::new(AtomicU64::new(0));
    let starts = Arc::new(StartMeter::default());
    let order = plan(fleet.devices.len(), executor, segment);
    let total = order.len() as u64;
    let mut all_held = None;
    let mut hold = None;
    match executor.clone() {
        ExecutorSpec::ClosedLoop { concurrency } => {
            let slots = segment.share(concurrency);
            closed_loop(
                fleet,
                Arc::new(ctx),
                tx,
                (slots, order, false),
                starts.clone(),
            );
        }
        ExecutorSpec::ConstantArrivalRate {
            max_in_flight,
            max_lateness,
            ..
        }
        | ExecutorSpec::RampingArrivalRate {
            max_in_flight,
            max_lateness,
            ..
        } => {
            let limits = (max_in_flight, max_lateness);
            let counters = (dropped.clone(), starts.clone());
            open_model(fleet, Arc::new(ctx), tx, counters, order, limits);
        }
        ExecutorSpec::Hold {
            rate,
            connect_concurrency,
            hold: hold_for,
            ping_interval,
        } => {
            let (control, release) = HoldControl::new(order.len(), ping_interval);
            ctx.hold = Some(control.clone());
            let (held_tx, held_rx) = oneshot::channel();
            all_held = Some(held_rx);
            hold = Some(control.clone());
            let slots = segment.share(connect_concurrency);
            let loop_plan = (slots, order, rate > 0.0);
            closed_loop(fleet, Arc::new(ctx), tx, loop_plan, starts.clone());
            tokio::spawn(async move {
                control.all_settled().await;
                let _ = held_tx.send(());
                tokio::time::sleep(hold_for).await;
                release.release();
            });
        }
    }
    Started {
        results,
        dropped,
        starts,
        total,
        all_held,
        hold,
    }
}

/// The starts of `executor` over a fleet of `devices`, in order, as (fleet index, offset from the
/// start of the device phase in seconds), `segment`'s only: closed loops and holds take the fleet
/// in order (offsets: 0, or a paced hold's `i / rate`), arrival-rate executors their schedule
/// (a ramp's starts cycle through the fleet). Pure: the segment split is tested on it.
pub fn plan(devices: usize, executor: &ExecutorSpec, segment: Segment) -> Vec<(usize, f64)> {
    let schedule: Vec<f64> = match executor {
        ExecutorSpec::ClosedLoop { .. } => vec![0.0; devices],
        ExecutorSpec::Hold { rate, .. } | ExecutorSpec::ConstantArrivalRate { rate, .. } => {
            let period = if *rate > 0.0 { 1.0 / rate } else { 0.0 };
            (0..devices).map(|i| i as f64 * period).collect()
        }
        ExecutorSpec::RampingArrivalRate {
            start_rate, stages, ..
        } => ramp_schedule(*start_rate, stages),
    };
    let n = devices.max(1);
    schedule
        .into_iter()
        .enumerate()
        .filter(|(k, _)| segment.contains(*k))
        .map(|(k, at)| (k % n, at))
        .collect()
}

/// `slots` workers take the devices of `order` in turn until it is done; `paced`: each start
/// also waits for its offset (how late the pacing timer fires goes to `starts`). Under the hold
/// executor a worker's slot frees as soon as its device is holding (the run itself reports at
/// release).
fn closed_loop(
    fleet: Arc<Fleet>,
    ctx: Arc<DeviceContext>,
    tx: mpsc::UnboundedSender<(usize, DeviceRun)>,
    (slots, order, paced): (usize, Vec<(usize, f64)>, bool),
    starts: Arc<StartMeter>,
) {
    let slots = Arc::new(Semaphore::new(slots.max(1)));
    let started = Instant::now();
    tokio::spawn(async move {
        for (i, offset) in order {
            if paced {
                let at = started + Duration::from_secs_f64(offset);
                tokio::time::sleep_until(at.into()).await;
                starts.started(at.elapsed());
            }
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            starts.begin();
            let (fleet, ctx, tx) = (fleet.clone(), ctx.clone(), tx.clone());
            tokio::spawn(async move {
                let Some(dev) = fleet.devices.get(i) else {
                    return;
                };
                // Ready before it starts, as a real device is before it connects.
                let prepared = device::prepare(dev, &ctx);
                // The slot frees once the device is through its flow (holding or not).
                let free = move || drop(permit);
                let run = device::run_then(dev, &ctx, &prepared, Instant::now(), free).await;
                let _ = tx.send((i, run));
            });
        }
    });
}

/// Start offsets (seconds) of a ramp: the rate moves linearly from one stage's target to the
/// next, and start k happens when the integral of the rate reaches k (so low starting rates do not
/// skip ahead).
pub fn ramp_schedule(start_rate: f64, stages: &[Stage]) -> Vec<f64> {
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

/// How many devices the open model prepares ahead of the schedule: enough to absorb a burst of
/// preparation (a CSR key, a TLS client: well under a millisecond each) at any rate the generator
/// can keep, few enough to hold little memory.
pub const PREPARED_AHEAD: usize = 128;

/// The open model: start device runs at the given (fleet index, offset) pairs, latency
/// counted from the scheduled time; a start later than `max_lateness`, or beyond `max_in_flight`
/// (0 = unlimited), is dropped and counted (in `dropped`, and by why in `starts`, which also gets
/// each started device's lateness: from its scheduled time until it began to connect). Devices
/// are prepared up to [`PREPARED_AHEAD`] starts ahead ([`device::prepare`]), so that a device is
/// ready at its time.
///
/// The schedule is kept by a thread of its own with the OS's sleep (tens of µs late): tokio's
/// timer ticks in whole milliseconds, which made every start up to a millisecond late and put
/// that in every device's total. At its time a device is handed to the runtime.
fn open_model(
    fleet: Arc<Fleet>,
    ctx: Arc<DeviceContext>,
    tx: mpsc::UnboundedSender<(usize, DeviceRun)>,
    (dropped, starts): (Arc<AtomicU64>, Arc<StartMeter>),
    schedule: Vec<(usize, f64)>,
    (max_in_flight, max_lateness): (usize, Duration),
) {
    let order: Vec<usize> = schedule.iter().map(|(i, _)| *i).collect();
    let ready = prepare_ahead(fleet.clone(), ctx.clone(), order);
    let runtime = tokio::runtime::Handle::current();
    let keep = Schedule {
        fleet,
        ctx,
        tx,
        dropped,
        starts,
        runtime,
        max_lateness,
        limit: Arc::new(Semaphore::new(if max_in_flight == 0 {
            Semaphore::MAX_PERMITS
        } else {
            max_in_flight
        })),
    };
    let spawned = std::thread::Builder::new()
        .name("dps-schedule".into())
        .spawn(move || keep.run(schedule, ready));
    if let Err(e) = spawned {
        // Without its thread the schedule cannot be kept: every start is dropped, and said so.
        eprintln!("the schedule's thread did not start: {e}");
    }
}

/// The open model's schedule, kept on its own thread.
struct Schedule {
    fleet: Arc<Fleet>,
    ctx: Arc<DeviceContext>,
    tx: mpsc::UnboundedSender<(usize, DeviceRun)>,
    dropped: Arc<AtomicU64>,
    starts: Arc<StartMeter>,
    runtime: tokio::runtime::Handle,
    max_lateness: Duration,
    limit: Arc<Semaphore>,
}

impl Schedule {
    /// Start each (device, offset in seconds) of `schedule` at its time, taking them prepared
    /// from `ready`.
    fn run(self, schedule: Vec<(usize, f64)>, mut ready: mpsc::Receiver<device::Prepared>) {
        let start = Instant::now();
        for (i, offset) in schedule {
            let Some(prepared) = ready.blocking_recv() else {
                break;
            };
            let at = Duration::from_secs_f64(offset);
            let scheduled = start + at;
            std::thread::sleep(scheduled.saturating_duration_since(Instant::now()));
            self.start(i, prepared, (scheduled, at));
        }
    }

    /// Start device `i` scheduled at `scheduled` (`at` into the run), unless it is too late or
    /// too many run.
    fn start(&self, i: usize, prepared: device::Prepared, (scheduled, at): (Instant, Duration)) {
        if scheduled.elapsed() > self.max_lateness {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.starts.drop_late(at);
            return;
        }
        let Ok(permit) = self.limit.clone().try_acquire_owned() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.starts.drop_in_flight(at);
            return;
        };
        self.starts.begin();
        let (fleet, ctx, tx) = (self.fleet.clone(), self.ctx.clone(), self.tx.clone());
        let starts = self.starts.clone();
        self.runtime.spawn(async move {
            if let Some(dev) = fleet.devices.get(i) {
                // Latency counts from the scheduled start, not from when we got to it.
                let run = device::run(dev, &ctx, &prepared, scheduled).await;
                // Thread hand-over, run-queue delay and anything else before the SYN: one
                // definition of lateness, the device's own `lateness` phase.
                if let Some(late) = run.lateness() {
                    starts.started(late);
                }
                let _ = tx.send((i, run));
            }
            drop(permit);
        });
    }
}

/// The devices of the schedule's starts (fleet indices, in start order), prepared in order, at
/// most [`PREPARED_AHEAD`] ahead of the one the schedule is at.
fn prepare_ahead(
    fleet: Arc<Fleet>,
    ctx: Arc<DeviceContext>,
    order: Vec<usize>,
) -> mpsc::Receiver<device::Prepared> {
    let (tx, rx) = mpsc::channel(PREPARED_AHEAD);
    tokio::spawn(async move {
        for i in order {
            let Some(dev) = fleet.devices.get(i) else {
                break;
            };
            if tx.send(device::prepare(dev, &ctx)).await.is_err() {
                break;
            }
            // The preparation is CPU work: let the devices that are due run between two.
            tokio::task::yield_now().await;
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

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
