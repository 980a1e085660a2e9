//! A device's phases as a ledger: every instant of an attempt belongs to exactly one phase, so
//! that the phases of an attempt add up to its `Total` exactly. A phase is recorded from when it
//! started to now; the time before an attempt's first phase is the generator's `Lateness`, every
//! other gap between phases the device's own work (`Device`). The generator's delay in reading
//! what the server had already sent (its connection's [`ReadDelayMeter`]) is taken out of the
//! phase it fell in and counted as `ReadDelay`.

use std::time::{Duration, Instant};

use super::rx_stamp::ReadDelayMeter;
use crate::metrics::Phase;

/// The phases of a device's attempts, as they are recorded.
#[derive(Debug)]
pub struct Ledger {
    list: Vec<(Phase, Duration)>,
    /// Where the next gap starts: the end of the last phase, or the attempt's start.
    mark: Instant,
    /// The attempt's start (the first attempt's: the scheduled start).
    attempt_start: Instant,
    /// `Lateness` is still open: nothing of this attempt has been recorded yet.
    late: bool,
    /// The device's own work of this attempt so far.
    device: Duration,
    /// The generator's read delay of this attempt so far.
    read_delay: Duration,
    /// The current connection's read delay, and how much of it is accounted for.
    meter: Option<(ReadDelayMeter, Duration)>,
}

impl Ledger {
    /// A ledger whose first attempt starts at `scheduled`.
    pub fn new(scheduled: Instant) -> Self {
        Ledger {
            list: Vec::with_capacity(16),
            mark: scheduled,
            attempt_start: scheduled,
            late: true,
            device: Duration::ZERO,
            read_delay: Duration::ZERO,
            meter: None,
        }
    }

    /// From now on the device reads through a connection whose read delay `meter` counts.
    pub fn watch(&mut self, meter: ReadDelayMeter) {
        let seen = meter.total();
        self.meter = Some((meter, seen));
    }

    /// The read delay metered since it was last taken (all of it is taken: what the spans it is
    /// shared out over cannot hold was not the generator's delay, such as a clock's step).
    fn take_read_delay(&mut self) -> Duration {
        let Some((meter, seen)) = self.meter.as_mut() else {
            return Duration::ZERO;
        };
        let total = meter.total();
        let new = total.saturating_sub(*seen);
        *seen = total;
        new
    }

    /// A new attempt starts at `start` (after the previous one ended).
    pub fn begin_attempt(&mut self, start: Instant) {
        self.mark = start;
        self.attempt_start = start;
        self.late = true;
        self.device = Duration::ZERO;
        self.read_delay = Duration::ZERO;
        self.meter = None;
    }

    /// The gap since the last mark up to `until` closed: the lateness if it is the attempt's
    /// first, else device work, less `delay` (of the generator's read delay, what it can hold).
    /// Returns what is left of `delay`.
    fn close_gap(&mut self, until: Instant, delay: Duration) -> Duration {
        let gap = until.saturating_duration_since(self.mark);
        self.mark = until;
        if self.late {
            self.list.push((Phase::Lateness, gap));
            self.late = false;
            return delay;
        }
        let in_gap = delay.min(gap);
        self.device += gap - in_gap;
        self.read_delay += in_gap;
        delay - in_gap
    }

    /// The generator's part ends now: what follows is the device's (a TPM device's attestation
    /// work before it connects).
    pub fn end_lateness(&mut self) {
        self.close_gap(Instant::now(), Duration::ZERO);
    }

    /// `phase` ran from `started` until now, less the generator's read delay since the last
    /// mark (a device waits for the server within a phase: the delay goes out of the phase
    /// first, what the phase cannot hold out of the gap before it).
    pub fn record(&mut self, phase: Phase, started: Instant) {
        let now = Instant::now();
        let ran = now.saturating_duration_since(started);
        let delay = self.take_read_delay();
        let in_phase = delay.min(ran);
        self.close_gap(started, delay - in_phase);
        self.read_delay += in_phase;
        self.list.push((phase, ran - in_phase));
        self.mark = now;
    }

    /// A sample outside any attempt's sum (a held device's Ping, `ProvisionedAfterRetries`).
    pub fn push(&mut self, phase: Phase, d: Duration) {
        self.list.push((phase, d));
    }

    /// The attempt ends now: its lateness (if nothing was recorded, all of it), its device work
    /// (the gaps between its phases, the last one up to now included) and its `Total` recorded.
    pub fn end_attempt(&mut self) {
        let now = Instant::now();
        let delay = self.take_read_delay();
        self.close_gap(now, delay);
        self.list.push((Phase::Device, self.device));
        self.list.push((Phase::ReadDelay, self.read_delay));
        self.list.push((
            Phase::Total,
            now.saturating_duration_since(self.attempt_start),
        ));
    }

    /// Phases recorded so far.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Nothing recorded yet.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The phases recorded from index `from` on.
    pub fn since(&self, from: usize) -> &[(Phase, Duration)] {
        self.list.get(from..).unwrap_or_default()
    }

    /// The recorded phases.
    pub fn into_phases(self) -> Vec<(Phase, Duration)> {
        self.list
    }
}

/// Whether every attempt in `phases` adds up: its `Lateness`, `Device` and server-facing phases
/// sum to its `Total` exactly (samples outside attempts, `Ping` and `ProvisionedAfterRetries`,
/// aside).
pub fn balanced(phases: &[(Phase, Duration)]) -> bool {
    let mut sum = Duration::ZERO;
    let mut attempts = 0;
    for (phase, d) in phases {
        match phase {
            Phase::Ping | Phase::ProvisionedAfterRetries => {}
            Phase::Total => {
                if sum != *d {
                    return false;
                }
                attempts += 1;
                sum = Duration::ZERO;
            }
            _ => sum += *d,
        }
    }
    attempts > 0 && sum.is_zero()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_adds_up_with_its_lateness_and_gaps() {
        let start = Instant::now();
        let mut l = Ledger::new(start);
        std::thread::sleep(Duration::from_millis(2));
        let tcp = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        l.record(Phase::Tcp, tcp);
        std::thread::sleep(Duration::from_millis(1));
        let hs = Instant::now();
        l.record(Phase::Handshake, hs);
        l.end_attempt();
        l.push(Phase::Ping, Duration::from_millis(9));
        let phases = l.into_phases();
        let names: Vec<Phase> = phases.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            names,
            [
                Phase::Lateness,
                Phase::Tcp,
                Phase::Handshake,
                Phase::Device,
                Phase::ReadDelay,
                Phase::Total,
                Phase::Ping
            ]
        );
        assert!(phases[0].1 >= Duration::from_millis(2), "{phases:?}");
        assert!(phases[3].1 >= Duration::from_millis(1), "{phases:?}");
        assert!(balanced(&phases), "{phases:?}");
    }

    #[test]
    fn the_generators_read_delay_is_taken_out_of_its_phase() {
        let start = Instant::now();
        let mut l = Ledger::new(start);
        l.record(Phase::Tcp, start);
        let meter = ReadDelayMeter::default();
        l.watch(meter.clone());
        let hs = Instant::now();
        std::thread::sleep(Duration::from_millis(3));
        meter.add(Duration::from_millis(2));
        l.record(Phase::Handshake, hs);
        // A delay larger than the gap it fell in is cut to the gap.
        meter.add(Duration::from_secs(5));
        l.end_attempt();
        let phases = l.into_phases();
        let of = |p: Phase| phases.iter().find(|(q, _)| *q == p).map(|(_, d)| *d);
        let handshake = of(Phase::Handshake).expect("handshake");
        let read_delay = of(Phase::ReadDelay).expect("read delay");
        assert!(handshake >= Duration::from_millis(1), "{phases:?}");
        assert!(read_delay >= Duration::from_millis(2), "{phases:?}");
        assert!(read_delay < Duration::from_secs(1), "{phases:?}");
        let device = of(Phase::Device).expect("device");
        assert!(
            device < Duration::from_millis(1),
            "the gap went to the read delay: {phases:?}"
        );
        assert!(balanced(&phases), "{phases:?}");
    }

    #[test]
    fn overlapping_or_missing_phases_do_not_balance() {
        let start = Instant::now();
        let mut l = Ledger::new(start);
        l.record(Phase::Tcp, start);
        std::thread::sleep(Duration::from_millis(1));
        // Started before the last phase ended: counted twice.
        l.record(Phase::Handshake, start);
        l.end_attempt();
        assert!(!balanced(&l.into_phases()));
        let lost = [
            (Phase::Tcp, Duration::from_millis(1)),
            (Phase::Total, Duration::from_millis(2)),
        ];
        assert!(!balanced(&lost));
        assert!(!balanced(&[]), "no attempt is not a balanced run");
    }

    #[test]
    fn an_attempt_with_nothing_recorded_is_all_lateness() {
        let mut l = Ledger::new(Instant::now());
        l.end_attempt();
        l.begin_attempt(Instant::now());
        l.end_lateness();
        l.end_attempt();
        let phases = l.into_phases();
        assert_eq!(phases.len(), 8, "{phases:?}");
        assert!(balanced(&phases));
    }
}
