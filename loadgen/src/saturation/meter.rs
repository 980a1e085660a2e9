//! Meters the devices and the executor feed while a run goes: the time this process spends in its
//! own socket calls to open device connections ([`ConnectMeter`]), and how late device starts are
//! against the schedule and why starts were dropped ([`StartMeter`]).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::cpu::thread_clock;
use crate::metrics::{self, Quantiles};

/// CPU time spent inside the calls that open device connections (socket, bind, connect and its
/// completion), on this process's threads (their CPU clocks, so a thread preempted by another
/// process does not count): what a connect() that searches long for a free port costs the
/// generator, which a connect phase measured in wall time cannot tell from a slow peer. On
/// loopback a connect() also runs the kernel's side of the TCP handshake for both ends.
#[derive(Debug, Default)]
pub struct ConnectMeter {
    nanos: AtomicU64,
    calls: AtomicU64,
}

impl ConnectMeter {
    /// Count `d` spent in one connection's calls.
    pub fn add(&self, d: Duration) {
        let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(n, Ordering::Relaxed);
    }

    /// Run `f` (a connect) counting only the CPU time its polls take, not the time it waits.
    pub async fn time<F: Future>(&self, f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        self.calls.fetch_add(1, Ordering::Relaxed);
        std::future::poll_fn(|cx| {
            let t = thread_clock();
            let out = f.as_mut().poll(cx);
            self.add(thread_clock().saturating_sub(t));
            out
        })
        .await
    }

    /// CPU time of the calling thread now, to count synchronous calls with [`ConnectMeter::add`].
    pub fn now() -> Duration {
        thread_clock()
    }

    /// Time counted so far.
    pub fn busy(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    /// Connects timed so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// A start later than this is late: well above the timer and run-queue jitter of a healthy
/// runtime (about a millisecond), and enough to distort a provisioning's latency of a few
/// milliseconds.
pub const LATE: Duration = Duration::from_millis(25);

/// Device starts against the schedule: how late each started device began to run (from its
/// scheduled time to the first poll of its task: timer and run-queue delay together), and the
/// starts dropped, by why.
#[derive(Debug)]
pub struct StartMeter {
    lateness: Mutex<Histogram<u64>>,
    begun: AtomicU64,
    dropped_late: AtomicU64,
    dropped_in_flight: AtomicU64,
    /// Dropped starts by the second of the run they were scheduled in, for the timeline.
    dropped_per_second: Mutex<Vec<u64>>,
}

impl Default for StartMeter {
    fn default() -> Self {
        Self {
            lateness: Mutex::new(metrics::new_histogram()),
            begun: AtomicU64::new(0),
            dropped_late: AtomicU64::new(0),
            dropped_in_flight: AtomicU64::new(0),
            dropped_per_second: Mutex::new(Vec::new()),
        }
    }
}

/// What a [`StartMeter`] saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Starts {
    /// Lateness of the started devices (`None`: nothing was scheduled, as in a closed loop).
    pub lateness: Option<Quantiles>,
    /// Started devices that began more than [`LATE`] late.
    pub late: u64,
    /// Starts dropped for being later than `max_lateness`.
    pub dropped_late: u64,
    /// Starts dropped because `max_in_flight` devices were running.
    pub dropped_in_flight: u64,
    /// Dropped starts (either way) by the second they were scheduled in, from the start of the
    /// schedule: index = second.
    pub dropped_per_second: Vec<u64>,
}

impl StartMeter {
    /// A scheduled device began `late` after its time.
    pub fn started(&self, late: Duration) {
        let mut h = self
            .lateness
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        metrics::record(&mut h, late);
    }

    /// A device run was begun (every executor counts its starts here, for the live metrics).
    pub fn begin(&self) {
        self.begun.fetch_add(1, Ordering::Relaxed);
    }

    /// Device runs begun so far.
    pub fn begun(&self) -> u64 {
        self.begun.load(Ordering::Relaxed)
    }

    /// A start scheduled `at` into the run was dropped for being too late.
    pub fn drop_late(&self, at: Duration) {
        self.dropped_late.fetch_add(1, Ordering::Relaxed);
        self.count_drop(at);
    }

    /// A start scheduled `at` into the run was dropped at the in-flight cap.
    pub fn drop_in_flight(&self, at: Duration) {
        self.dropped_in_flight.fetch_add(1, Ordering::Relaxed);
        self.count_drop(at);
    }

    fn count_drop(&self, at: Duration) {
        let mut v = self
            .dropped_per_second
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let i = usize::try_from(at.as_secs())
            .unwrap_or(usize::MAX)
            .min(1 << 24);
        if v.len() <= i {
            v.resize(i + 1, 0);
        }
        if let Some(n) = v.get_mut(i) {
            *n += 1;
        }
    }

    /// The figures so far.
    pub fn starts(&self) -> Starts {
        let h = self
            .lateness
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let on_time = u64::try_from(LATE.as_micros()).unwrap_or(u64::MAX);
        Starts {
            lateness: (!h.is_empty()).then(|| Quantiles::of(&h)),
            late: h.len().saturating_sub(h.count_between(0, on_time)),
            dropped_late: self.dropped_late.load(Ordering::Relaxed),
            dropped_in_flight: self.dropped_in_flight.load(Ordering::Relaxed),
            dropped_per_second: self
                .dropped_per_second
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_time_counts_polls_not_waits() {
        let m = ConnectMeter::default();
        let out = m
            .time(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                7
            })
            .await;
        assert_eq!(out, 7);
        assert_eq!(m.calls(), 1);
        assert!(m.busy() < Duration::from_millis(20), "{:?}", m.busy());
        // A poll that burns CPU counts; one that blocks the thread without it does not.
        m.time(async { std::thread::sleep(Duration::from_millis(30)) })
            .await;
        assert!(m.busy() < Duration::from_millis(20), "{:?}", m.busy());
        m.time(async {
            // 15 ms of this thread's CPU, however long the machine takes to give it.
            let start = thread_clock();
            let mut x = 0u64;
            while thread_clock().saturating_sub(start) < Duration::from_millis(15) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            std::hint::black_box(x);
        })
        .await;
        assert!(m.busy() >= Duration::from_millis(15), "{:?}", m.busy());
    }

    #[test]
    fn starts_are_counted_by_lateness_and_drop() {
        let s = StartMeter::default();
        assert_eq!(s.starts().lateness, None);
        for ms in [1, 2, 3, 40] {
            s.started(Duration::from_millis(ms));
        }
        s.drop_late(Duration::from_millis(100));
        s.drop_in_flight(Duration::from_millis(2_500));
        s.drop_in_flight(Duration::from_millis(2_900));
        let seen = s.starts();
        let q = seen.lateness.expect("lateness");
        assert_eq!(q.count, 4);
        assert!((39_000..=40_100).contains(&q.max_us), "{q:?}");
        assert_eq!((seen.dropped_late, seen.dropped_in_flight), (1, 2));
        assert_eq!(seen.late, 1);
        assert_eq!(seen.dropped_per_second, [1, 0, 2]);
    }
}
