//! Scenario files as written (TOML, serde data only): which server, which fleet, which executor,
//! which thresholds. The lowest layer of the load generator: it imports nothing of this crate.
//! Checking a scenario and working out what kind of target and device it means is
//! [`crate::scenario`]'s job.

mod attack;
mod device;
mod executor;
mod fleet;
mod link;
mod retry;
mod target;

use serde::{Deserialize, Serialize};

pub use attack::{AttackKind, AttackSpec};
pub use device::{ClassDeviceSpec, DeviceSpec, KeyExchange, TlsVersion};
pub use executor::{ExecutorSpec, Stage};
pub use fleet::{DeviceClass, FleetSpec, KeyType};
pub use link::{LinkSpec, LinkTable};
pub use retry::{RetryPolicy, RetrySpec, RetryTable};
pub use target::{LimitsOverride, TargetSpec};

/// A whole scenario file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name (results directory, reports); defaults to the file stem.
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Where the server is.
    #[serde(default)]
    pub target: TargetSpec,
    /// The devices.
    pub fleet: FleetSpec,
    /// How they start.
    pub executor: ExecutorSpec,
    /// What each does.
    #[serde(default)]
    pub device: DeviceSpec,
    /// Pass/fail criteria, e.g. `thresholds = ["mismatches == 0", "p99(handshake) < 50ms"]`.
    #[serde(default)]
    pub thresholds: Vec<String>,
    /// `[server_limits]`: overrides of the fleet server's `[limits]` (embedded or spawned server
    /// only), e.g. short timeouts for a flood scenario.
    #[serde(default)]
    pub server_limits: LimitsOverride,
    /// Hostile traffic beside the devices (`[[attack]]` tables).
    #[serde(default)]
    pub attack: Vec<AttackSpec>,
}
