//! `[executor]`: how device runs are started (closed loop, open model, ramp, hold).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[executor]`: how devices are started.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ExecutorSpec {
    /// `concurrency` devices back to back until the fleet is done (closed model).
    ClosedLoop {
        /// Devices in flight at once.
        concurrency: usize,
    },
    /// Devices start at a fixed rate whatever the latency (open model); latency counts from the
    /// scheduled start; a start more than `max_lateness` late is dropped and counted.
    ConstantArrivalRate {
        /// Device starts per second.
        rate: f64,
        /// Cap on devices in flight (protects the generator); 0 = unlimited.
        #[serde(default)]
        max_in_flight: usize,
        /// Starts later than this are dropped, e.g. "1s".
        #[serde(default = "default_lateness", with = "humantime_serde")]
        max_lateness: Duration,
    },
    /// Like constant-arrival-rate, with the rate moving linearly through stages (to find the knee).
    /// Starts cycle through the fleet.
    RampingArrivalRate {
        /// Rate at the start, per second.
        #[serde(default)]
        start_rate: f64,
        /// The stages.
        stages: Vec<Stage>,
        /// Cap on devices in flight; 0 = unlimited.
        #[serde(default)]
        max_in_flight: usize,
        /// Starts later than this are dropped.
        #[serde(default = "default_lateness", with = "humantime_serde")]
        max_lateness: Duration,
    },
    /// Every device of the fleet connects (and provisions, unless `handshake_only`), then stays
    /// connected and idle, pinging, until all have connected and `hold` has passed: concurrency
    /// and memory per connection, not throughput.
    Hold {
        /// Connects per second; 0 = as fast as `connect_concurrency` allows.
        #[serde(default)]
        rate: f64,
        /// Devices connecting at once.
        #[serde(default = "default_connect_concurrency")]
        connect_concurrency: usize,
        /// How long all devices stay connected together, e.g. "10s".
        #[serde(with = "humantime_serde")]
        hold: Duration,
        /// Each held device sends a CoAP Ping this often (keeps it under the server's inactivity
        /// timeout and measures its responsiveness), e.g. "5s".
        #[serde(default = "default_ping_interval", with = "humantime_serde")]
        ping_interval: Duration,
    },
}

fn default_connect_concurrency() -> usize {
    256
}

fn default_ping_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_lateness() -> Duration {
    Duration::from_secs(1)
}

/// One stage of a ramp: move to `target` starts per second over `duration`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Rate at the end of the stage, starts per second.
    pub target: f64,
    /// Length of the stage, e.g. "10s".
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}
