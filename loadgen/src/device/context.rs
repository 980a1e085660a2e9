//! What all devices of a run share: the target's address, what they do there, their TLS client,
//! their deadline and source addresses.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::hold;
#[cfg(feature = "tpm-sim")]
use super::swtpm;
use super::tls;
use crate::link::LinkPlan;
use crate::retry::RetryPlan;
use crate::scenario::DeviceMode;

/// What all devices of a run share.
#[derive(Debug, Clone)]
pub struct DeviceContext {
    /// The server's device port.
    pub addr: SocketAddr,
    /// What the device does after TCP connect.
    pub mode: DeviceMode,
    /// The devices' TLS client: how they verify the server (the CA its certificate chains to, or
    /// none) and the TLS version and key exchange they offer.
    pub tls: Arc<tls::ClientBase>,
    /// `[device] timeout`: an attempt's deadline (connect, handshake, flow; not the hold) under
    /// the policies without timeouts of their own (the run takes each attempt's deadline from
    /// `retry`).
    pub timeout: Duration,
    /// What a device does after an attempt that ended in an error, by class.
    pub retry: Arc<RetryPlan>,
    /// Source addresses to spread connections over (device i uses `i % len`); empty: the OS picks.
    pub sources: Vec<IpAddr>,
    /// The link profile of each class (classes absent: no emulation).
    pub links: LinkPlan,
    /// Set under the hold executor.
    pub hold: Option<Arc<hold::HoldControl>>,
    /// The swtpm processes `tpm_swtpm` devices run on (started for runs that have such devices).
    #[cfg(feature = "tpm-sim")]
    pub swtpm: Option<Arc<swtpm::SwtpmPool>>,
}

/// Source addresses for `devices` connections to `target`: on IPv4 loopback, `count` addresses
/// `127.0.0.1, 127.0.0.2, ...` (0 = one per 20,000 devices), since each has only about 28,000
/// ephemeral ports; elsewhere none (the OS picks).
pub fn source_addresses(target: &SocketAddr, count: u8, devices: usize) -> Vec<IpAddr> {
    let IpAddr::V4(ip) = target.ip() else {
        return Vec::new();
    };
    if !ip.is_loopback() {
        return Vec::new();
    }
    let n = if count == 0 {
        u8::try_from(devices.div_ceil(20_000).clamp(1, 250)).unwrap_or(250)
    } else {
        count.min(250)
    };
    (1..=n)
        .map(|k| IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, k)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_get_spread_sources_and_others_none() {
        let lo: SocketAddr = "127.0.0.1:15684".parse().expect("addr");
        assert_eq!(source_addresses(&lo, 0, 10).len(), 1);
        assert_eq!(source_addresses(&lo, 0, 50_000).len(), 3);
        let four = source_addresses(&lo, 4, 10);
        assert_eq!(four.len(), 4);
        assert_eq!(four[3], IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 4)));
        let remote: SocketAddr = "192.0.2.1:15684".parse().expect("addr");
        assert!(source_addresses(&remote, 8, 50_000).is_empty());
        let v6: SocketAddr = "[::1]:15684".parse().expect("addr");
        assert!(source_addresses(&v6, 8, 50_000).is_empty());
    }
}
