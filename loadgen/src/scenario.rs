//! Scenario files (TOML): which server, which fleet, which executor, which thresholds. A bad
//! scenario is refused with the line and what is wrong, before anything runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fleet::DeviceClass;
use crate::threshold::Threshold;

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Unreadable file.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// TOML syntax, unknown or mistyped keys (the message has the line).
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value that parses but makes no sense.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The offending key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The key type of generated devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// ECDSA P-256.
    #[default]
    P256,
    /// ECDSA P-384.
    P384,
    /// Ed25519.
    Ed25519,
}

/// `[fleet]`: the simulated devices.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// Seed of the fleet: same seed, same devices (CNs, classes, order).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Number of devices.
    pub devices: usize,
    /// Device key type.
    #[serde(default)]
    pub key: KeyType,
    /// Class weights (`valid = 70`, `truncated = 5`, ...); absent classes get weight 0.
    pub mix: BTreeMap<DeviceClass, u32>,
    /// Keep the generated fleet on disk and reuse it on the next run with the same `[fleet]`
    /// (generation dominates the start-up of large fleets).
    #[serde(default = "yes")]
    pub cache: bool,
}

fn default_seed() -> u64 {
    1
}

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

/// `[target]`: where the server is. Absent (or without `address`): an embedded server on
/// loopback, set up for the fleet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Run the fleet's server in a child process instead of in-process: the same server, with its
    /// own file-descriptor limit (tens of thousands of connections need one per end) and its own
    /// memory, measured apart from the generator's. Read over its admin API like a remote one.
    #[serde(default)]
    pub spawn: bool,
    /// Device port of a running server (`host:port`); absent = embedded server.
    #[serde(default)]
    pub address: Option<String>,
    /// Its admin API (`http://host:port`): the fleet's hub and groups are created there before
    /// the run and deleted after it, and the server's histograms and rejection counters are read
    /// from it. Required with `address`.
    #[serde(default)]
    pub admin: Option<String>,
    /// File holding the admin bearer token (as `dps-server init` writes it).
    #[serde(default)]
    pub admin_token_file: Option<String>,
    /// PEM of the CA the server certificate chains to (devices verify the server with it);
    /// required unless `device.skip_server_verification`.
    #[serde(default)]
    pub server_ca: Option<String>,
    /// `address` is a TLS server that is not driven by the load generator (a peer such as nginx
    /// configured with the fleet's trust anchors, or a DPS already configured with the fleet's
    /// groups): it has no admin API and nothing is created on it, so only `valid` devices run,
    /// handshake only, and a device reads the verdict from how the server ends the connection
    /// (see [`crate::device`]). This is what lets one executor measure our server and a peer the
    /// same way.
    #[serde(default)]
    pub tls_only: bool,
}

fn yes() -> bool {
    true
}

/// A TLS protocol version a device can be pinned to (`[device] tls_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2 only.
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

/// The key-exchange group(s) a device offers (`[device] key_exchange`). The default is X25519
/// alone: what the TLS stacks of constrained devices (mbedTLS, wolfSSL) offer, and one group
/// whichever server is measured, so comparisons do not depend on which group each prefers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyExchange {
    /// X25519.
    #[default]
    X25519,
    /// ECDHE over P-256 (secp256r1).
    P256,
    /// ECDHE over P-384 (secp384r1).
    P384,
    /// The post-quantum hybrid X25519MLKEM768 alone.
    X25519Mlkem768,
    /// rustls's defaults (X25519MLKEM768, X25519, P-256, P-384): the server picks.
    Any,
}

/// `[device]`: what each simulated device does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// Only the TLS handshake (attestation), no CoAP flow.
    #[serde(default)]
    pub handshake_only: bool,
    /// Do not verify the server certificate (devices can be configured so).
    #[serde(default)]
    pub skip_server_verification: bool,
    /// Give up on a device after this long, e.g. "10s" (the hold executor's idle time is not
    /// counted).
    #[serde(default = "default_device_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Spread connections over this many source addresses `127.0.0.1, 127.0.0.2, ...` when the
    /// target is on loopback, so tens of thousands of connections do not run out of ephemeral
    /// ports (about 28,000 per source address). 0 = one per 20,000 devices, at least 1.
    #[serde(default)]
    pub source_addresses: u8,
    /// Offer only this TLS version; absent: TLS 1.3 and 1.2 (1.3 preferred).
    #[serde(default)]
    pub tls_version: Option<TlsVersion>,
    /// The key-exchange group(s) offered; default X25519 alone ([`KeyExchange`]).
    #[serde(default)]
    pub key_exchange: KeyExchange,
}

fn default_device_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for DeviceSpec {
    fn default() -> Self {
        Self {
            handshake_only: false,
            skip_server_verification: false,
            timeout: default_device_timeout(),
            source_addresses: 0,
            tls_version: None,
            key_exchange: KeyExchange::X25519,
        }
    }
}

/// `[server_limits]`: what a scenario may change of the server's `[limits]`; unset keys keep the
/// server's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsOverride {
    /// Connections served at once.
    pub max_connections: Option<u32>,
    /// TLS handshake deadline, ms.
    pub handshake_timeout_ms: Option<u64>,
    /// Idle connections close after this, ms.
    pub inactivity_timeout_ms: Option<u64>,
    /// Largest CoAP message, bytes.
    pub max_message_size: Option<u32>,
    /// Provisioning requests per second (0 = unlimited).
    pub max_requests_per_second: Option<u32>,
    /// Failed handshakes per second per source address before shedding (0 = off).
    pub failed_handshakes_per_ip_per_s: Option<u32>,
    /// Burst of the failed-handshake budget.
    pub failed_handshakes_burst: Option<u32>,
    /// Handshakes in progress at once per source address (0 = no cap).
    pub pending_handshakes_per_ip: Option<u32>,
}

impl LimitsOverride {
    /// Apply to a server's limits.
    pub fn apply(&self, l: &mut dps_server::config::LimitsSection) {
        if let Some(v) = self.max_connections {
            l.max_connections = v;
        }
        if let Some(v) = self.handshake_timeout_ms {
            l.handshake_timeout_ms = v;
        }
        if let Some(v) = self.inactivity_timeout_ms {
            l.inactivity_timeout_ms = v;
        }
        if let Some(v) = self.max_message_size {
            l.max_message_size = v;
        }
        if let Some(v) = self.max_requests_per_second {
            l.max_requests_per_second = v;
        }
        if let Some(v) = self.failed_handshakes_per_ip_per_s {
            l.failed_handshakes_per_ip_per_s = v;
        }
        if let Some(v) = self.failed_handshakes_burst {
            l.failed_handshakes_burst = v;
        }
        if let Some(v) = self.pending_handshakes_per_ip {
            l.pending_handshakes_per_ip = v;
        }
    }

    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

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
    pub attack: Vec<crate::attack::AttackSpec>,
}

/// A scenario checked and ready to run.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The scenario as written.
    pub scenario: Scenario,
    /// Its thresholds, parsed.
    pub thresholds: Vec<Threshold>,
}

impl Scenario {
    /// Read, parse and validate a scenario file.
    pub fn load(path: &Path) -> Result<Loaded, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".into());
        Self::parse(&text, &path.display().to_string(), &stem)
    }

    /// Parse and validate scenario text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str, default_name: &str) -> Result<Loaded, ScenarioError> {
        let mut scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Syntax {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        if scenario.name.is_empty() {
            scenario.name = default_name.to_owned();
        }
        let invalid = |key: &str, message: String| ScenarioError::Invalid {
            path: origin.to_owned(),
            key: key.to_owned(),
            message,
        };
        let target = &scenario.target;
        if target.spawn && target.address.is_some() {
            return Err(invalid(
                "target.spawn",
                "a spawned server is the fleet's own; it cannot also have an address".into(),
            ));
        }
        if target.tls_only {
            tls_only_checks(&scenario).map_err(|(key, message)| invalid(&key, message.into()))?;
        }
        if target.address.is_some() {
            if target.admin.is_none() && !target.tls_only {
                return Err(invalid(
                    "target.admin",
                    "a remote target needs its admin API URL (the fleet's groups are created \
                     there), or tls_only = true for a server that has none"
                        .into(),
                ));
            }
            if target.server_ca.is_none() && !scenario.device.skip_server_verification {
                return Err(invalid(
                    "target.server_ca",
                    "needed to verify the server (or set device.skip_server_verification)".into(),
                ));
            }
        }
        if target.address.is_some() && !scenario.server_limits.is_empty() {
            return Err(invalid(
                "server_limits",
                "only the fleet's own server (embedded or spawned) takes limits from a scenario"
                    .into(),
            ));
        }
        if target.address.is_none() && (target.admin.is_some() || target.server_ca.is_some()) {
            return Err(invalid(
                "target.address",
                "admin and server_ca only apply to a remote target; give its address".into(),
            ));
        }
        if scenario.fleet.devices == 0 {
            return Err(invalid("fleet.devices", "must be at least 1".into()));
        }
        if scenario.fleet.mix.values().all(|w| *w == 0) {
            return Err(invalid("fleet.mix", "all weights are 0".into()));
        }
        let in_mix = |c: DeviceClass| scenario.fleet.mix.get(&c).is_some_and(|w| *w > 0);
        if in_mix(DeviceClass::TpmSwtpm) && !cfg!(feature = "tpm-sim") {
            return Err(invalid(
                "fleet.mix.tpm_swtpm",
                "swtpm devices need dps-loadgen built with --features tpm-sim (swtpm and libtss2)"
                    .into(),
            ));
        }
        match &scenario.executor {
            ExecutorSpec::ClosedLoop { concurrency } if *concurrency == 0 => {
                return Err(invalid("executor.concurrency", "must be at least 1".into()))
            }
            ExecutorSpec::ConstantArrivalRate { rate, .. }
                if !(*rate > 0.0 && rate.is_finite()) =>
            {
                return Err(invalid("executor.rate", "must be a positive number".into()))
            }
            ExecutorSpec::Hold { rate, .. } if !(*rate >= 0.0 && rate.is_finite()) => {
                return Err(invalid(
                    "executor.rate",
                    "must be 0 or a positive number".into(),
                ))
            }
            ExecutorSpec::Hold {
                connect_concurrency: 0,
                ..
            } => {
                return Err(invalid(
                    "executor.connect_concurrency",
                    "must be at least 1".into(),
                ))
            }
            ExecutorSpec::Hold { ping_interval, .. } if ping_interval.is_zero() => {
                return Err(invalid("executor.ping_interval", "must be above 0".into()))
            }
            ExecutorSpec::RampingArrivalRate { stages, .. }
                if stages.is_empty() || stages.iter().any(|s| s.duration.is_zero()) =>
            {
                return Err(invalid(
                    "executor.stages",
                    "needs at least one stage, each with a duration above 0".into(),
                ))
            }
            _ => {}
        }
        for (i, a) in scenario.attack.iter().enumerate() {
            if a.connections == 0 {
                return Err(invalid(
                    &format!("attack[{i}].connections"),
                    "must be at least 1".into(),
                ));
            }
            if a.duration.is_zero() {
                return Err(invalid(
                    &format!("attack[{i}].duration"),
                    "must be above 0".into(),
                ));
            }
            if !(a.rate >= 0.0 && a.rate.is_finite()) {
                return Err(invalid(
                    &format!("attack[{i}].rate"),
                    "must be 0 or a positive number".into(),
                ));
            }
        }
        let thresholds = scenario
            .thresholds
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.parse::<Threshold>()
                    .map_err(|e| invalid(&format!("thresholds[{i}]"), format!("{t:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Loaded {
            scenario,
            thresholds,
        })
    }
}

/// What a `tls_only` target can serve: the key and the reason of the first thing it cannot.
fn tls_only_checks(scenario: &Scenario) -> Result<(), (String, &'static str)> {
    let target = &scenario.target;
    let refuse = |key: &str, why| Err((key.to_owned(), why));
    if target.address.is_none() {
        return refuse(
            "target.address",
            "a TLS-only target is a running server: give its address",
        );
    }
    if target.admin.is_some() || target.admin_token_file.is_some() {
        return refuse(
            "target.admin",
            "a TLS-only target has no admin API (drop admin and admin_token_file, or tls_only)",
        );
    }
    if !scenario.device.handshake_only {
        return refuse(
            "device.handshake_only",
            "a TLS-only target cannot provision devices: set handshake_only = true",
        );
    }
    // Other classes expect a refusal for a DPS-specific reason (group lists, expiry policy) or a
    // TPM attestation over CoAP; any verifier of the fleet's trust anchors accepts valid chains.
    if let Some((class, _)) = scenario
        .fleet
        .mix
        .iter()
        .find(|(c, w)| **c != DeviceClass::Valid && **w > 0)
    {
        return refuse(
            &format!("fleet.mix.{}", class.as_str()),
            "a TLS-only target runs valid devices only (it has no groups, and tells refusals \
             apart only by TLS alert)",
        );
    }
    if matches!(scenario.executor, ExecutorSpec::Hold { .. }) {
        return refuse(
            "executor.kind",
            "the hold executor pings over CoAP, which a TLS-only target does not speak",
        );
    }
    if !scenario.attack.is_empty() {
        return refuse(
            "attack",
            "attacks are judged with the server's own counters, which a TLS-only target lacks",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[fleet]
devices = 10
mix = { valid = 8, truncated = 2 }
[executor]
kind = "closed-loop"
concurrency = 4
"#;

    #[test]
    fn minimal_scenario_loads_with_defaults() {
        let l = Scenario::parse(GOOD, "x.toml", "x").expect("valid");
        assert_eq!(l.scenario.name, "x");
        assert!(l.scenario.target.address.is_none());
        assert!(l.scenario.fleet.cache);
        assert!(!l.scenario.device.handshake_only);
    }

    #[test]
    fn bad_scenarios_name_the_line_or_key() {
        let e = Scenario::parse(&format!("{GOOD}\nbogus = 1\n"), "x.toml", "x").expect_err("bad");
        assert!(
            e.to_string().contains("bogus") && e.to_string().contains("line"),
            "{e}"
        );
        let e = Scenario::parse(&GOOD.replace("valid = 8", "vaild = 8"), "x.toml", "x")
            .expect_err("bad class");
        assert!(e.to_string().contains("vaild"), "{e}");
        let e = Scenario::parse(
            &GOOD.replace("concurrency = 4", "concurrency = 0"),
            "x.toml",
            "x",
        )
        .expect_err("zero");
        assert!(e.to_string().contains("executor.concurrency"), "{e}");
        let e = Scenario::parse(
            &format!("thresholds = [\"p99(handshake) < fast\"]\n{GOOD}"),
            "x.toml",
            "x",
        )
        .expect_err("threshold");
        assert!(e.to_string().contains("thresholds[0]"), "{e}");
    }

    const PEER: &str = r#"
[target]
address = "127.0.0.1:8443"
server_ca = "ca.pem"
tls_only = true
[fleet]
devices = 10
mix = { valid = 1 }
[executor]
kind = "closed-loop"
concurrency = 4
[device]
handshake_only = true
tls_version = "1.3"
key_exchange = "x25519"
"#;

    #[test]
    fn tls_only_targets_take_an_address_without_admin_api() {
        let l = Scenario::parse(PEER, "x.toml", "x").expect("a TLS-only peer");
        assert!(l.scenario.target.tls_only);
        assert!(l.scenario.target.admin.is_none());
        assert_eq!(l.scenario.device.tls_version, Some(TlsVersion::Tls13));
        assert_eq!(l.scenario.device.key_exchange, KeyExchange::X25519);
        let p256 = PEER.replace("\"x25519\"", "\"p256\"");
        let l = Scenario::parse(&p256, "x.toml", "x").expect("P-256");
        assert_eq!(l.scenario.device.key_exchange, KeyExchange::P256);
        let any = PEER.replace("\"x25519\"", "\"any\"");
        let l = Scenario::parse(&any, "x.toml", "x").expect("any");
        assert_eq!(l.scenario.device.key_exchange, KeyExchange::Any);
        let pq = PEER.replace("\"x25519\"", "\"x25519mlkem768\"");
        let l = Scenario::parse(&pq, "x.toml", "x").expect("hybrid");
        assert_eq!(l.scenario.device.key_exchange, KeyExchange::X25519Mlkem768);
        // By default the version is not pinned, and devices offer X25519 alone.
        let l = Scenario::parse(GOOD, "x.toml", "x").expect("valid");
        assert_eq!(l.scenario.device.tls_version, None);
        assert_eq!(l.scenario.device.key_exchange, KeyExchange::X25519);
    }

    #[test]
    fn tls_only_targets_refuse_what_they_cannot_serve() {
        let refused = |text: String, key: &str| {
            let e = Scenario::parse(&text, "x.toml", "x").expect_err(key);
            assert!(e.to_string().contains(key), "{key}: {e}");
            e.to_string()
        };
        // An address without an admin API is still a mistake unless it says tls_only.
        let e = refused(PEER.replace("tls_only = true\n", ""), "target.admin");
        assert!(e.contains("tls_only"), "{e}");
        refused(
            PEER.replace(
                "tls_only = true",
                "tls_only = true\nadmin = \"http://127.0.0.1:2\"",
            ),
            "target.admin",
        );
        refused(
            PEER.replace("address = \"127.0.0.1:8443\"\n", ""),
            "target.address",
        );
        refused(
            PEER.replace("handshake_only = true", "handshake_only = false"),
            "device.handshake_only",
        );
        refused(
            PEER.replace("valid = 1", "valid = 1, expired = 1"),
            "fleet.mix.expired",
        );
        refused(
            PEER.replace("valid = 1", "valid = 1, tpm_wrong_ek = 1"),
            "fleet.mix.tpm_wrong_ek",
        );
        refused(
            PEER.replace(
                "kind = \"closed-loop\"\nconcurrency = 4",
                "kind = \"hold\"\nhold = \"1s\"",
            ),
            "executor.kind",
        );
        refused(
            PEER.replace("server_ca = \"ca.pem\"\n", ""),
            "target.server_ca",
        );
        // A class with weight 0 is no device at all.
        Scenario::parse(
            &PEER.replace("valid = 1", "valid = 1, forged = 0"),
            "x.toml",
            "x",
        )
        .expect("zero weight");
        let e = refused(PEER.replace("\"x25519\"", "\"x448\""), "x448");
        assert!(e.contains("line"), "{e}");
        refused(PEER.replace("\"1.3\"", "\"1.1\""), "1.1");
    }

    #[test]
    fn swtpm_devices_need_the_feature_and_remote_targets_take_every_tpm_class() {
        let soft = GOOD.replace("truncated = 2", "tpm = 2, tpm_unenrolled = 1");
        Scenario::parse(&soft, "x.toml", "x").expect("soft TPMs run in the default build");
        let swtpm = GOOD.replace("truncated = 2", "tpm_swtpm = 1");
        let parsed = Scenario::parse(&swtpm, "x.toml", "x");
        if cfg!(feature = "tpm-sim") {
            parsed.expect("swtpm devices with the feature");
        } else {
            let e = parsed.expect_err("swtpm devices without the feature");
            assert!(
                e.to_string().contains("fleet.mix.tpm_swtpm") && e.to_string().contains("tpm-sim"),
                "{e}"
            );
        }
        let remote = format!(
            "[target]\naddress = \"127.0.0.1:1\"\nadmin = \"http://127.0.0.1:2\"\n[device]\nskip_server_verification = true\n{soft}"
        );
        // The TPM group goes over the admin API like the X.509 groups.
        Scenario::parse(&remote, "x.toml", "x").expect("TPM group classes on a remote target");
        let remote_individual = remote.replace("tpm = 2, ", "tpm_wrong_ek = 2, ");
        Scenario::parse(&remote_individual, "x.toml", "x")
            .expect("individually enrolled TPM classes run against a remote target");
    }
}
