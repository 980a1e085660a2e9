//! How a fleet came through a storm (a power-on burst, a held overload): how long until 50, 90,
//! 99 and 100 % of the devices that must get in had got in, the goodput while devices were
//! arriving and its lowest second, whether goodput recovered once the arrivals had stopped, and
//! how often the devices were told to come back (5.03) or cut off, beside what the server says it
//! shed. Computed from the collected runs; the summary carries it as `storm`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::collect::{best_window, Collector};

/// A storm's numbers (every run has them; they matter for arrival bursts and overload).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Storm {
    /// Runs whose class must get in, dropped starts counted among them (they never got in).
    pub must_get_in: u64,
    /// Of them, got in as expected.
    pub got_in: u64,
    /// From the first scheduled start until half of `must_get_in` had got in, µs (`None`: never).
    pub time_to_50_us: Option<u64>,
    /// ... 90 %.
    pub time_to_90_us: Option<u64>,
    /// ... 99 %.
    pub time_to_99_us: Option<u64>,
    /// ... every one.
    pub time_to_100_us: Option<u64>,
    /// The latest first scheduled start, seconds from the first.
    pub last_arrival_s: f64,
    /// Provisioned (as expected) per second from the first to the last scheduled start: the
    /// goodput while devices were arriving (the whole run when they all start at once).
    pub goodput_while_arriving_per_s: f64,
    /// The lowest provisioned count of a whole second from the start of the peak 3-s window to
    /// the second of the last arrival, over that peak (`None`: no such second).
    pub trough_ratio: Option<f64>,
    /// Devices that had to get in and had not yet at the last arrival.
    pub backlog_at_last_arrival: u64,
    /// The best 3-s average of provisioned/s in the whole seconds after the last arrival.
    pub best_after_last_arrival_per_s: f64,
    /// Goodput recovered after the burst: every device that had to get in did, and the best 3 s
    /// after the last arrival reached half the run's 3-s peak, unless the backlog then was less
    /// than 3 s of work at that peak.
    pub recovered: bool,
    /// Attempts the server answered 5.03 (devices' side, retried ones included).
    pub busy_answers: u64,
    /// Attempts the server reset or closed early.
    pub resets: u64,
    /// Attempts that ran out of time.
    pub timeouts: u64,
    /// The server's own count of device connections closed during the run, by reason (`shed`,
    /// `busy`, `overflow`, `handshake_timeout`, ...); `None` when it cannot tell.
    pub server_closes: Option<BTreeMap<String, u64>>,
}

/// When `fraction` of `must` runs had got in, given when each did (sorted); `None` if they never
/// did.
pub fn time_to(got_in_at: &[Duration], must: u64, fraction: f64) -> Option<Duration> {
    if must == 0 || !(0.0..=1.0).contains(&fraction) {
        return None;
    }
    let needed = ((fraction * must as f64).ceil() as u64).max(1);
    let index = usize::try_from(needed - 1).ok()?;
    got_in_at.get(index).copied()
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The storm numbers of a collected run with `dropped` starts, beside the server's
/// `server_closes`. Sorts the collector's arrival times.
pub fn storm(
    c: &mut Collector,
    dropped: u64,
    server_closes: Option<BTreeMap<String, u64>>,
) -> Storm {
    c.got_in_at.sort_unstable();
    let seconds: Vec<u64> = c.timeline.seconds().iter().map(|s| s.provisioned).collect();
    let input = StormInput {
        got_in_at: &c.got_in_at,
        must: c.must_get_in + dropped,
        last_arrival: c.last_arrival,
        provisioned_per_second: &seconds,
        attempt_errors: &c.attempts.errors,
    };
    storm_of(&input, server_closes)
}

/// What the storm numbers are computed from: one run's collector, or a merge's segments on one
/// clock.
#[derive(Debug)]
pub struct StormInput<'a> {
    /// When each device that had to get in did, from the first scheduled start; sorted.
    pub got_in_at: &'a [Duration],
    /// Devices that had to get in, dropped starts included.
    pub must: u64,
    /// The latest first scheduled start.
    pub last_arrival: Duration,
    /// Provisioned devices per whole second of the run (its timeline).
    pub provisioned_per_second: &'a [u64],
    /// Failed attempts by kind of error.
    pub attempt_errors: &'a BTreeMap<String, u64>,
}

/// The storm numbers of `input`, beside the server's `server_closes`.
pub fn storm_of(input: &StormInput<'_>, server_closes: Option<BTreeMap<String, u64>>) -> Storm {
    let (got_in_at, must, last) = (input.got_in_at, input.must, input.last_arrival);
    let at = |f: f64| time_to(got_in_at, must, f).map(micros);
    let by_last = got_in_at.partition_point(|t| *t <= last) as u64;
    let seconds = input.provisioned_per_second;
    // The peak leaves the final (draining, partial) second out.
    let full = seconds.len().saturating_sub(1).max(1).min(seconds.len());
    let (peak_start, peak) = best_window(&seconds[..full], 3);
    // Whole seconds after the last arrival.
    let after_from = usize::try_from(last.as_secs() + u64::from(last.subsec_nanos() > 0))
        .unwrap_or(usize::MAX)
        .min(seconds.len());
    let (_, best_after) = best_window(&seconds[after_from..], 3);
    // Whole seconds from the peak window to the second of the last arrival (not included).
    let last_whole = usize::try_from(last.as_secs())
        .unwrap_or(usize::MAX)
        .min(seconds.len());
    let trough = seconds
        .get(peak_start..last_whole)
        .and_then(|s| s.iter().min().copied());
    let backlog = must.saturating_sub(by_last);
    let got_in = got_in_at.len() as u64;
    let recovered = got_in == must && (backlog as f64 <= 3.0 * peak || best_after >= 0.5 * peak);
    let errors = |k: &str| input.attempt_errors.get(k).copied().unwrap_or(0);
    Storm {
        must_get_in: must,
        got_in,
        time_to_50_us: at(0.5),
        time_to_90_us: at(0.9),
        time_to_99_us: at(0.99),
        time_to_100_us: at(1.0),
        last_arrival_s: last.as_secs_f64(),
        goodput_while_arriving_per_s: if last.is_zero() {
            0.0
        } else {
            by_last as f64 / last.as_secs_f64()
        },
        trough_ratio: trough.filter(|_| peak > 0.0).map(|t| t as f64 / peak),
        backlog_at_last_arrival: backlog,
        best_after_last_arrival_per_s: best_after,
        recovered,
        busy_answers: errors("busy"),
        resets: errors("reset"),
        timeouts: errors("timeout"),
        server_closes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn time_to_a_fraction_of_the_fleet() {
        let got: Vec<Duration> = (1..=10).map(|i| ms(i * 100)).collect();
        assert_eq!(time_to(&got, 10, 0.5), Some(ms(500)));
        assert_eq!(time_to(&got, 10, 0.99), Some(ms(1000)));
        assert_eq!(time_to(&got, 10, 1.0), Some(ms(1000)));
        // Twenty had to get in: 100 % was never reached, 50 % just.
        assert_eq!(time_to(&got, 20, 0.5), Some(ms(1000)));
        assert_eq!(time_to(&got, 20, 0.9), None);
        assert_eq!(time_to(&got, 0, 0.5), None);
    }

    /// A collector whose devices got in at `seconds[i]` provisionings in second i, all scheduled
    /// by `last_arrival`, `missing` more never getting in.
    fn collector(seconds: &[u64], last_arrival: Duration, missing: u64) -> Collector {
        let mut c = Collector::default();
        for (s, n) in seconds.iter().enumerate() {
            for k in 0..*n {
                let at = Duration::from_secs(s as u64) + ms(1 + k % 900);
                c.timeline.record(at, true, Some(ms(5)));
                c.got_in_at.push(at);
            }
        }
        c.must_get_in = c.got_in_at.len() as u64 + missing;
        c.last_arrival = last_arrival;
        c
    }

    #[test]
    fn goodput_that_comes_back_after_the_burst_is_a_recovery() {
        // Arrivals for 5 s at capacity 100/s with a dip, then the backlog served at capacity.
        let mut c = collector(
            &[100, 100, 100, 60, 100, 100, 100, 100, 40, 5],
            Duration::from_secs(5),
            0,
        );
        let s = storm(&mut c, 0, None);
        assert!(s.recovered, "{s:?}");
        assert_eq!(s.must_get_in, 805);
        assert!(
            (s.trough_ratio.expect("trough") - 0.6).abs() < 1e-9,
            "{s:?}"
        );
        assert!(s.best_after_last_arrival_per_s >= 80.0, "{s:?}");
        assert_eq!(s.backlog_at_last_arrival, 805 - 460);
        assert!(
            (s.goodput_while_arriving_per_s - 92.0).abs() < 1e-9,
            "{s:?}"
        );
        assert!(s.time_to_100_us.is_some() && s.time_to_50_us < s.time_to_99_us);
    }

    #[test]
    fn goodput_that_stays_down_is_no_recovery_and_neither_is_a_fleet_left_behind() {
        // The same burst, then a collapse: 10/s for the backlog, and devices that gave up.
        let mut c = collector(
            &[100, 100, 100, 100, 100, 10, 10, 10, 10, 10, 10],
            Duration::from_secs(5),
            300,
        );
        let s = storm(&mut c, 0, None);
        assert!(!s.recovered, "{s:?}");
        assert_eq!(s.time_to_100_us, None);
        // Everyone got in eventually, but goodput stayed at a tenth of its peak.
        let slow: Vec<u64> = [100; 5].into_iter().chain([10; 40]).collect();
        let mut c = collector(&slow, Duration::from_secs(5), 0);
        assert!(!storm(&mut c, 0, None).recovered);
        // A small backlog needs no comeback of goodput; dropped starts never got in.
        let mut c = collector(&[100, 100, 100, 100, 100, 20], Duration::from_secs(5), 0);
        assert!(storm(&mut c, 0, None).recovered);
        let mut c = collector(&[100, 100, 100, 100, 100, 20], Duration::from_secs(5), 0);
        let s = storm(&mut c, 3, None);
        assert!(!s.recovered && s.must_get_in == 523, "{s:?}");
    }
}
