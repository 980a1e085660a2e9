//! What all devices of a run share: the target's address, what they do there, their TLS client,
//! their deadline, source addresses and connect meter.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::hold;
#[cfg(feature = "tpm-sim")]
use super::swtpm;
use super::{tls, trace};
use crate::link::LinkPlan;
use crate::retry::RetryPlan;
use crate::saturation::ConnectMeter;
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
    /// Chosen for each run by [`crate::saturation::budget::plan`].
    pub sources: Vec<IpAddr>,
    /// Time this process spends in the calls that open device connections.
    pub connects: Arc<ConnectMeter>,
    /// Where each device connection is recorded (source port, SYN, first server bytes, close),
    /// for the results' `connections.csv`; `None`: nowhere.
    pub connections: Option<Arc<trace::ConnectionLog>>,
    /// The link profile of each class (classes absent: no emulation).
    pub links: LinkPlan,
    /// Set under the hold executor.
    pub hold: Option<Arc<hold::HoldControl>>,
    /// The swtpm processes `tpm_swtpm` devices run on (started for runs that have such devices).
    #[cfg(feature = "tpm-sim")]
    pub swtpm: Option<Arc<swtpm::SwtpmPool>>,
}
