//! The delay model of one direction of a link, as pure arithmetic on instants (the socket
//! wrapper in `device::link` applies it): bytes handed to the link at `now` wait for the link to
//! be free, take `bytes × 8 / bandwidth` to serialise, travel `rtt / 2 ± jitter` (one draw per
//! burst), and arrive one retransmission timeout later for each time one of their segments is
//! lost. Nothing overtakes what was sent before it (TCP delivers in order, so a late segment
//! holds back the later ones).

use std::time::Duration;

use tokio::time::Instant;

use super::profile::LinkProfile;

/// TCP payload per segment (1500-byte MTU less 40 bytes of IPv4 and TCP headers).
pub const MSS: usize = 1460;
/// IPv4 + TCP header bytes each segment adds on the wire.
pub const HEADER: usize = 40;
/// The retransmission timeout of a lost SYN or SYN-ACK: RFC 6298's initial RTO (1 s), before
/// any round trip has been measured.
pub const SYN_RTO: Duration = Duration::from_secs(1);
/// Retransmissions of one segment at most (each doubles the timeout), so that a loss
/// probability near 1 still ends.
const MAX_RETRANSMISSIONS: u32 = 6;

pub use crate::rng::Rng;

/// Which way bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Device to server.
    Up,
    /// Server to device.
    Down,
}

/// One direction of a link: when each chunk handed to it arrives at the other end.
#[derive(Debug, Clone)]
pub struct Direction {
    one_way: Duration,
    jitter: Duration,
    bits_per_s: Option<u64>,
    loss: f64,
    rto: Duration,
    /// When the link has finished serialising what it was given (bandwidth-limited links).
    free_at: Option<Instant>,
    /// When the last chunk arrives: no later chunk arrives before it.
    last_due: Option<Instant>,
    /// The one-way delay of the burst in flight.
    current: Option<Duration>,
}

impl Direction {
    /// The `way` direction of `profile`.
    pub fn new(profile: &LinkProfile, way: Way) -> Self {
        Direction {
            one_way: profile.one_way(),
            jitter: profile.jitter,
            bits_per_s: match way {
                Way::Up => profile.uplink_bps,
                Way::Down => profile.downlink_bps,
            },
            loss: profile.loss,
            rto: profile.rto(),
            free_at: None,
            last_due: None,
            current: None,
        }
    }

    /// When `len` bytes handed to the link at `now` are all at the other end (`len` 0: a FIN or
    /// reset, one bare segment).
    pub fn schedule(&mut self, now: Instant, len: usize, rng: &mut Rng) -> Instant {
        let segments = len.div_ceil(MSS).max(1);
        let sent = match self.bits_per_s {
            Some(bps) => {
                let start = self.free_at.map_or(now, |free| free.max(now));
                let bits = ((len + segments * HEADER) * 8) as f64;
                let done = start + Duration::from_secs_f64(bits / bps as f64);
                self.free_at = Some(done);
                done
            }
            None => now,
        };
        // The path's delay is drawn afresh only when the direction is idle: bytes sent while
        // earlier ones are still on their way travel with the same delay (a burst shares the
        // path's state), so a flight of several TLS records is not held back by the worst of as
        // many draws.
        let idle = self.last_due.is_none_or(|last| last <= now);
        if idle || self.current.is_none() {
            self.current = Some(self.delay(rng));
        }
        let trip = self.current.unwrap_or(self.one_way);
        let due = sent + trip + self.retransmissions(segments, rng);
        let due = self.last_due.map_or(due, |last| last.max(due));
        self.last_due = Some(due);
        due
    }

    fn delay(&self, rng: &mut Rng) -> Duration {
        trip(self.one_way, self.jitter, rng)
    }

    /// The extra time `segments` segments take when some are lost: each loss of a segment costs
    /// its current RTO, which doubles per retransmission; lost segments of one chunk are
    /// retransmitted side by side (SACK), so the chunk waits for its unluckiest segment.
    fn retransmissions(&self, segments: usize, rng: &mut Rng) -> Duration {
        lost_time(self.loss, self.rto, segments, rng)
    }
}

/// The worst retransmission delay over `segments` segments with loss probability `loss` and
/// first timeout `rto`.
fn lost_time(loss: f64, rto: Duration, segments: usize, rng: &mut Rng) -> Duration {
    if loss <= 0.0 {
        return Duration::ZERO;
    }
    let mut worst = Duration::ZERO;
    for _ in 0..segments {
        let mut waited = Duration::ZERO;
        let mut timeout = rto;
        let mut tries = 0;
        while tries < MAX_RETRANSMISSIONS && rng.unit() < loss {
            waited += timeout;
            timeout *= 2;
            tries += 1;
        }
        worst = worst.max(waited);
    }
    worst
}

/// One trip: `one_way` moved uniformly by up to `jitter` either way (never below zero: profiles
/// keep jitter ≤ rtt / 2).
fn trip(one_way: Duration, jitter: Duration, rng: &mut Rng) -> Duration {
    if jitter.is_zero() {
        return one_way;
    }
    let offset = (rng.unit() * 2.0 - 1.0) * jitter.as_secs_f64();
    Duration::from_secs_f64((one_way.as_secs_f64() + offset).max(0.0))
}

/// How long a TCP connect takes over `profile`: the SYN out and the SYN-ACK back (one round
/// trip, each way jittered, each a bare header to serialise), plus RFC 6298's 1 s initial RTO
/// (doubling) for each loss of either.
pub fn connect_delay(profile: &LinkProfile, rng: &mut Rng) -> Duration {
    let header = |bps: Option<u64>| {
        bps.map_or(Duration::ZERO, |bps| {
            Duration::from_secs_f64((HEADER * 8) as f64 / bps as f64)
        })
    };
    let (one_way, jitter) = (profile.one_way(), profile.jitter);
    trip(one_way, jitter, rng)
        + trip(one_way, jitter, rng)
        + header(profile.uplink_bps)
        + header(profile.downlink_bps)
        + lost_time(profile.loss, SYN_RTO, 1, rng)
        + lost_time(profile.loss, SYN_RTO, 1, rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(rtt_ms: u64, jitter_ms: u64, bps: Option<u64>, loss: f64) -> LinkProfile {
        LinkProfile {
            name: "test".into(),
            rtt: Duration::from_millis(rtt_ms),
            jitter: Duration::from_millis(jitter_ms),
            uplink_bps: bps,
            downlink_bps: bps,
            loss,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_draws() {
        let (mut a, mut b) = (Rng::seeded(7), Rng::seeded(7));
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(Rng::seeded(8).next_u64(), xs[0]);
        let mut r = Rng::seeded(1);
        assert!((0..1000).map(|_| r.unit()).all(|u| (0.0..1.0).contains(&u)));
    }

    #[test]
    fn without_jitter_bandwidth_or_loss_each_way_is_half_the_rtt() {
        let p = profile(40, 0, None, 0.0);
        let mut rng = Rng::seeded(1);
        let t0 = Instant::now();
        let mut up = Direction::new(&p, Way::Up);
        assert_eq!(
            up.schedule(t0, 100, &mut rng),
            t0 + Duration::from_millis(20)
        );
        // Chunks pipeline: one sent 5 ms later arrives 5 ms later, not after the first's trip.
        let t1 = t0 + Duration::from_millis(5);
        assert_eq!(
            up.schedule(t1, 100, &mut rng),
            t1 + Duration::from_millis(20)
        );
        assert_eq!(
            connect_delay(&p, &mut rng),
            Duration::from_millis(40),
            "a connect is one round trip"
        );
    }

    #[test]
    fn bandwidth_serialises_chunks_one_after_the_other() {
        // 1 Mbit/s, no delay: 1460 bytes + 40 header = 12,000 bits = 12 ms.
        let p = profile(0, 0, Some(1_000_000), 0.0);
        let mut rng = Rng::seeded(1);
        let t0 = Instant::now();
        let mut d = Direction::new(&p, Way::Down);
        assert_eq!(
            d.schedule(t0, 1460, &mut rng),
            t0 + Duration::from_millis(12)
        );
        // Handed over at once, the second waits for the first to leave.
        assert_eq!(
            d.schedule(t0, 1460, &mut rng),
            t0 + Duration::from_millis(24)
        );
        // Two segments' worth in one chunk: two headers.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            d.schedule(later, 2920, &mut rng),
            later + Duration::from_millis(24)
        );
        // Up and down are separate links.
        let mut u = Direction::new(&p, Way::Up);
        assert_eq!(
            u.schedule(t0, 1460, &mut rng),
            t0 + Duration::from_millis(12)
        );
    }

    #[test]
    fn jitter_stays_within_its_bound_averages_out_and_a_burst_travels_together() {
        let p = profile(100, 20, None, 0.0);
        let mut rng = Rng::seeded(42);
        let t0 = Instant::now();
        let mut d = Direction::new(&p, Way::Up);
        // Chunks far apart (the link idle in between): independent draws within 50 ± 20 ms.
        let mut sum = Duration::ZERO;
        let mut trips = std::collections::BTreeSet::new();
        let n = 2000u32;
        for i in 0..n {
            let at = t0 + Duration::from_millis(200 * u64::from(i));
            let trip = d.schedule(at, 10, &mut rng) - at;
            assert!(
                trip >= Duration::from_millis(30) && trip <= Duration::from_millis(70),
                "{trip:?}"
            );
            sum += trip;
            trips.insert(trip);
        }
        let mean = sum / n;
        assert!(
            mean >= Duration::from_millis(49) && mean <= Duration::from_millis(51),
            "{mean:?}"
        );
        assert!(trips.len() > 1000, "the delays vary");
        // A burst (each chunk sent while the one before is in flight) shares one delay, so it
        // arrives in order and spaced as it was sent.
        let start = t0 + Duration::from_secs(10_000);
        let first = d.schedule(start, 10, &mut rng) - start;
        for i in 1..20 {
            let at = start + Duration::from_millis(i);
            assert_eq!(d.schedule(at, 10, &mut rng) - at, first);
        }
        // Seeded: the same draws, the same schedule.
        let (mut a, mut b) = (Direction::new(&p, Way::Up), Direction::new(&p, Way::Up));
        let (mut ra, mut rb) = (Rng::seeded(9), Rng::seeded(9));
        for i in 0..50 {
            let at = t0 + Duration::from_millis(300 * i);
            assert_eq!(a.schedule(at, 500, &mut ra), b.schedule(at, 500, &mut rb));
        }
    }

    #[test]
    fn a_lost_segment_costs_one_rto_and_its_retransmission_loss_twice_more() {
        // RTO = max(200 ms, 40 + 0) = 200 ms.
        let p = profile(40, 0, None, 0.25);
        let t0 = Instant::now();
        let mut rng = Rng::seeded(3);
        let mut d = Direction::new(&p, Way::Up);
        let mut seen = std::collections::BTreeMap::new();
        let n = 20_000;
        for i in 0..n {
            let at = t0 + Duration::from_secs(i * 100);
            let extra = d.schedule(at, 100, &mut rng) - at - Duration::from_millis(20);
            *seen.entry(extra.as_millis()).or_insert(0u64) += 1;
        }
        // Only 0, 200, 200+400, 200+400+800, ... ms.
        assert!(
            seen.keys()
                .all(|k| [0, 200, 600, 1400, 3000, 6200, 12600].contains(k)),
            "{seen:?}"
        );
        // P(no loss) = 0.75, P(exactly one) = 0.25 × 0.75 = 0.1875: within a few percent.
        let share = |ms: u128| seen.get(&ms).copied().unwrap_or(0) as f64 / n as f64;
        assert!((share(0) - 0.75).abs() < 0.02, "{seen:?}");
        assert!((share(200) - 0.1875).abs() < 0.02, "{seen:?}");
        // A chunk of three segments is late when any of them is: 1 − 0.75³ ≈ 0.58.
        let mut late = 0;
        for i in 0..n {
            let at = t0 + Duration::from_secs(10_000_000 + i * 100);
            if d.schedule(at, 3 * MSS, &mut rng) - at > Duration::from_millis(20) {
                late += 1;
            }
        }
        let share = f64::from(late) / n as f64;
        assert!((share - 0.578).abs() < 0.02, "{share}");
        // A lost SYN waits the initial RTO, 1 s.
        let mut connects = std::collections::BTreeSet::new();
        for _ in 0..200 {
            connects.insert(connect_delay(&p, &mut rng).as_millis());
        }
        assert!(
            connects.contains(&40) && connects.contains(&1040),
            "{connects:?}"
        );
    }
}
