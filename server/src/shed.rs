//! Shedding sources that keep failing handshakes. A refused handshake still costs the server a
//! key exchange, a signature and a certificate parse; an address that fails them faster than its
//! budget has its next connections closed at accept, before any TLS work, until the budget
//! refills. Devices that pass attestation never spend from it, so a storm from some addresses
//! cannot starve devices elsewhere of CPU.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

const SHARDS: usize = 16;

/// Addresses tracked per shard; a full shard forgets everything (budgets then start full again,
/// which only errs on the side of serving).
const SHARD_CAPACITY: usize = 16_384;

/// A token bucket of failed handshakes per source address.
#[derive(Debug)]
pub struct FailureBudget {
    per_second: f64,
    burst: f64,
    shards: Vec<Mutex<HashMap<IpAddr, (f64, Instant)>>>,
}

impl FailureBudget {
    /// `per_second` failures refill per second, up to `burst`; 0 turns shedding off.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn enabled(&self) -> bool {
        self.per_second > 0.0
    }

    fn shard(&self, ip: &IpAddr) -> Option<&Mutex<HashMap<IpAddr, (f64, Instant)>>> {
        let byte = match ip {
            IpAddr::V4(v4) => v4.octets()[3],
            IpAddr::V6(v6) => v6.octets()[15],
        };
        self.shards.get(usize::from(byte) % SHARDS)
    }

    fn refilled(&self, (tokens, at): (f64, Instant), now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        (tokens + elapsed * self.per_second).min(self.burst)
    }

    /// May a new connection from `ip` be served? False while its budget is spent.
    pub fn admits(&self, ip: IpAddr) -> bool {
        if !self.enabled() {
            return true;
        }
        let Some(shard) = self.shard(&ip) else {
            return true;
        };
        let map = shard.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&ip)
            .is_none_or(|entry| self.refilled(*entry, Instant::now()) >= 1.0)
    }

    /// A handshake from `ip` failed: spend one token.
    pub fn failed(&self, ip: IpAddr) {
        if !self.enabled() {
            return;
        }
        let Some(shard) = self.shard(&ip) else {
            return;
        };
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SHARD_CAPACITY && !map.contains_key(&ip) {
            map.clear();
        }
        let now = Instant::now();
        let tokens = map
            .get(&ip)
            .map_or(self.burst, |entry| self.refilled(*entry, now));
        map.insert(ip, ((tokens - 1.0).max(0.0), now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_shed_after_its_burst_and_others_are_not() {
        let budget = FailureBudget::new(1, 3);
        let bad: IpAddr = "192.0.2.7".parse().expect("ip");
        let good: IpAddr = "192.0.2.8".parse().expect("ip");
        for _ in 0..3 {
            assert!(budget.admits(bad));
            budget.failed(bad);
        }
        assert!(!budget.admits(bad), "burst spent");
        assert!(budget.admits(good));
        let off = FailureBudget::new(0, 3);
        for _ in 0..10 {
            off.failed(bad);
        }
        assert!(off.admits(bad), "0 turns shedding off");
    }
}

/// Handshakes in progress per source address, capped: connections that open and then say nothing
/// (or trickle a ClientHello) cost a task, buffers and a timer each until the handshake timeout;
/// one address may hold only so many of them at once. Devices that finish their handshake leave
/// the count at once, so only stalled or slow handshakes hold a place.
#[derive(Debug)]
pub struct PendingHandshakes {
    limit: u32,
    shards: Vec<Mutex<HashMap<IpAddr, u32>>>,
}

/// One place taken in [`PendingHandshakes`]; given back when dropped.
#[derive(Debug)]
pub struct PendingPlace<'a> {
    owner: &'a PendingHandshakes,
    ip: IpAddr,
}

impl Drop for PendingPlace<'_> {
    fn drop(&mut self) {
        if let Some(shard) = self.owner.shard(&self.ip) {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&self.ip);
                }
            }
        }
    }
}

impl PendingHandshakes {
    /// At most `limit` handshakes in progress per address; 0 = no cap.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, ip: &IpAddr) -> Option<&Mutex<HashMap<IpAddr, u32>>> {
        let byte = match ip {
            IpAddr::V4(v4) => v4.octets()[3],
            IpAddr::V6(v6) => v6.octets()[15],
        };
        self.shards.get(usize::from(byte) % SHARDS)
    }

    /// A place for a new handshake from `ip`; `None` when it already has `limit` in progress
    /// (`Some(None)` is "no cap": nothing to give back).
    pub fn enter(&self, ip: IpAddr) -> Option<Option<PendingPlace<'_>>> {
        if self.limit == 0 {
            return Some(None);
        }
        let shard = self.shard(&ip)?;
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Some(PendingPlace { owner: self, ip }))
    }
}

#[cfg(test)]
mod pending_tests {
    use super::*;

    #[test]
    fn places_are_capped_per_address_and_come_back() {
        let p = PendingHandshakes::new(2);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let first = p.enter(a).expect("first");
        let _second = p.enter(a).expect("second");
        assert!(p.enter(a).is_none(), "third refused");
        assert!(p.enter(b).is_some(), "other addresses unaffected");
        drop(first);
        assert!(p.enter(a).is_some(), "a place came back");
        assert!(matches!(PendingHandshakes::new(0).enter(a), Some(None)));
    }
}
