//! Checking a scenario: a file of [`crate::spec`] data is parsed, refused with the line or key and
//! what is wrong when it makes no sense, and worked out into what the run needs: its thresholds
//! parsed, the kind of target it names ([`TargetKind`]) and what its devices do ([`DeviceMode`]),
//! so that no later layer reads the flags of `[target]` and `[device]` again.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::link::{LinkPlan, LinkProfile};
use crate::retry::RetryPlan;
pub use crate::spec::{
    AttackKind, AttackSpec, ClassDeviceSpec, DeviceClass, DeviceSpec, ExecutorSpec, FleetSpec,
    KeyExchange, KeyType, LimitsOverride, LinkSpec, LinkTable, RetryPolicy, RetrySpec, Scenario,
    Stage, TargetSpec, TlsVersion,
};
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

/// The server a scenario runs against, as its `[target]` flags work out (checked once, here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// The fleet's own server, in this process on loopback.
    Embedded,
    /// The fleet's own server in a child process (`[target] spawn`), read over its admin API.
    Spawned,
    /// A running DPS: the fleet's hub and groups are created over its admin API.
    Remote {
        /// Device port, `host:port`.
        address: String,
        /// Admin API URL, `http://host:port`.
        admin: String,
        /// The admin APIs of its other replicas (`[target] replica_admins`).
        replica_admins: Vec<String>,
        /// File holding the admin bearer token.
        admin_token_file: Option<String>,
        /// PEM of the CA the server certificate chains to (`None`: devices skip verification).
        server_ca: Option<String>,
    },
    /// A TLS server that is not driven by the load generator (`[target] tls_only`).
    TlsOnly {
        /// Device port, `host:port`.
        address: String,
        /// PEM of the CA the server certificate chains to (`None`: devices skip verification).
        server_ca: Option<String>,
    },
}

impl TargetKind {
    /// Its name in the summary.
    pub fn server_kind(&self) -> ServerKind {
        match self {
            TargetKind::Embedded => ServerKind::Embedded,
            TargetKind::Spawned => ServerKind::Spawned,
            TargetKind::Remote { .. } => ServerKind::Remote,
            TargetKind::TlsOnly { .. } => ServerKind::TlsOnly,
        }
    }

    /// The fleet's own server (embedded or spawned), set up from the fleet's config.
    pub fn is_own(&self) -> bool {
        matches!(self, TargetKind::Embedded | TargetKind::Spawned)
    }
}

/// The kind of server a run went against, by name (`summary.json`'s `server.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    /// In-process.
    Embedded,
    /// A child process of the run.
    Spawned,
    /// A running DPS with an admin API.
    Remote,
    /// A TLS server without one.
    TlsOnly,
}

impl ServerKind {
    /// The name in the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerKind::Embedded => "embedded",
            ServerKind::Spawned => "spawned",
            ServerKind::Remote => "remote",
            ServerKind::TlsOnly => "tls-only",
        }
    }
}

/// Compares by name, as the summary's string used to be compared (`kind == "embedded"`).
impl PartialEq<&str> for ServerKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for ServerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What each device of a run does after TCP connect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceMode {
    /// TLS with attestation, then the whole CoAP provisioning flow.
    #[default]
    Provision,
    /// TLS with attestation and the server's verdict (its CSM or an alert), then stop
    /// (`[device] handshake_only`).
    HandshakeOnly,
    /// Against a TLS-only target: TLS, then the device's close; the verdict is how the server ends
    /// the connection (see `device::handshake_then_close`).
    TlsOnly,
}

impl DeviceMode {
    /// The flow stops after the handshake.
    pub fn handshake_only(self) -> bool {
        !matches!(self, DeviceMode::Provision)
    }
}

/// A scenario checked and ready to run.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The scenario as written.
    pub scenario: Scenario,
    /// Its thresholds, parsed.
    pub thresholds: Vec<Threshold>,
    /// The server it runs against.
    pub target: TargetKind,
    /// What its devices do.
    pub mode: DeviceMode,
    /// What its devices do after an attempt that ended in an error.
    pub retry: RetryPlan,
    /// The link profile of each class (`[device] link`, `[device.class.<class>] link`).
    pub links: LinkPlan,
    /// Devices scheduled before this point of the device phase are a warm-up, run but not
    /// counted (zero from a scenario file; `capacity` sets it for each of its steps).
    pub measure_from: std::time::Duration,
    /// The part of the scenario this run is (`--segment I/N`); `None`: all of it, unsegmented.
    pub segment: Option<crate::segment::Segment>,
}

/// The key a scenario is refused at, and why.
type Refusal = (String, String);

fn refuse<T>(key: &str, why: &str) -> Result<T, Refusal> {
    Err((key.to_owned(), why.to_owned()))
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
        let invalid = |(key, message): Refusal| ScenarioError::Invalid {
            path: origin.to_owned(),
            key,
            message,
        };
        let target = target_kind(&scenario).map_err(invalid)?;
        let mode = match (&target, scenario.device.handshake_only) {
            (TargetKind::TlsOnly { .. }, _) => DeviceMode::TlsOnly,
            (_, true) => DeviceMode::HandshakeOnly,
            (_, false) => DeviceMode::Provision,
        };
        fleet_checks(&scenario.fleet).map_err(invalid)?;
        executor_checks(&scenario.executor).map_err(invalid)?;
        attack_checks(&scenario.attack).map_err(invalid)?;
        let retry = RetryPlan::resolve(&scenario.device).map_err(invalid)?;
        let links = link_plan(&scenario, mode).map_err(invalid)?;
        let thresholds = scenario
            .thresholds
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.parse::<Threshold>()
                    .map_err(|e| invalid((format!("thresholds[{i}]"), format!("{t:?}: {e}"))))
            })
            .collect::<Result<_, _>>()?;
        Ok(Loaded {
            scenario,
            thresholds,
            target,
            mode,
            retry,
            links,
            measure_from: std::time::Duration::ZERO,
            segment: None,
        })
    }
}

/// The kind of target `[target]` names, or the first key that contradicts it.
fn target_kind(scenario: &Scenario) -> Result<TargetKind, Refusal> {
    let t = &scenario.target;
    let verify = !scenario.device.skip_server_verification;
    let Some(address) = t.address.clone() else {
        if t.tls_only {
            return refuse(
                "target.address",
                "a TLS-only target is a running server: give its address",
            );
        }
        if t.admin.is_some() || t.server_ca.is_some() || !t.replica_admins.is_empty() {
            return refuse(
                "target.address",
                "admin, replica_admins and server_ca only apply to a remote target; give its \
                 address",
            );
        }
        if t.server_exe.is_some() && !t.spawn {
            return refuse(
                "target.server_exe",
                "only a spawned server runs in another executable: set spawn = true",
            );
        }
        return Ok(if t.spawn {
            TargetKind::Spawned
        } else {
            TargetKind::Embedded
        });
    };
    if t.spawn {
        return refuse(
            "target.spawn",
            "a spawned server is the fleet's own; it cannot also have an address",
        );
    }
    let kind = if t.tls_only {
        tls_only_checks(scenario)?;
        TargetKind::TlsOnly {
            address,
            server_ca: t.server_ca.clone().filter(|_| verify),
        }
    } else {
        let Some(admin) = t.admin.clone() else {
            return refuse(
                "target.admin",
                "a remote target needs its admin API URL (the fleet's groups are created there), \
                 or tls_only = true for a server that has none",
            );
        };
        TargetKind::Remote {
            address,
            admin,
            replica_admins: t.replica_admins.clone(),
            admin_token_file: t.admin_token_file.clone(),
            server_ca: t.server_ca.clone().filter(|_| verify),
        }
    };
    if t.server_ca.is_none() && verify {
        return refuse(
            "target.server_ca",
            "needed to verify the server (or set device.skip_server_verification)",
        );
    }
    if !scenario.server_limits.is_empty() {
        return refuse(
            "server_limits",
            "only the fleet's own server (embedded or spawned) takes limits from a scenario",
        );
    }
    Ok(kind)
}

/// What a `tls_only` target (with an address) can serve: the key and the reason of the first thing
/// it cannot.
fn tls_only_checks(scenario: &Scenario) -> Result<(), Refusal> {
    let target = &scenario.target;
    if target.admin.is_some()
        || target.admin_token_file.is_some()
        || !target.replica_admins.is_empty()
    {
        return refuse(
            "target.admin",
            "a TLS-only target has no admin API (drop admin, replica_admins and \
             admin_token_file, or tls_only)",
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

fn fleet_checks(fleet: &FleetSpec) -> Result<(), Refusal> {
    if fleet.devices == 0 {
        return refuse("fleet.devices", "must be at least 1");
    }
    if fleet.mix.values().all(|w| *w == 0) {
        return refuse("fleet.mix", "all weights are 0");
    }
    let in_mix = |c: DeviceClass| fleet.mix.get(&c).is_some_and(|w| *w > 0);
    if in_mix(DeviceClass::TpmSwtpm) && !cfg!(feature = "tpm-sim") {
        return refuse(
            "fleet.mix.tpm_swtpm",
            "swtpm devices need dps-loadgen built with --features tpm-sim (swtpm and libtss2)",
        );
    }
    Ok(())
}

/// The link of every class, checked: a class's own `[device.class.<class>] link`, else
/// `[device] link`. A bad value is refused at its key; so is a device deadline too short for the
/// round trips of one device's flow over its link.
fn link_plan(scenario: &Scenario, mode: DeviceMode) -> Result<LinkPlan, Refusal> {
    let device = &scenario.device;
    let resolve = |spec: &LinkSpec, key: &str| {
        LinkProfile::resolve(spec).map_err(|e| {
            let key = match e.key {
                Some(inner) => format!("{key}.{inner}"),
                None => key.to_owned(),
            };
            (key, e.message)
        })
    };
    let everyone = match &device.link {
        Some(spec) => resolve(spec, "device.link")?,
        None => None,
    };
    let mut own = std::collections::BTreeMap::new();
    for (class, spec) in &device.class {
        if let Some(link) = &spec.link {
            let key = format!("device.class.{}.link", class.as_str());
            own.insert(*class, (resolve(link, &key)?, key));
        }
    }
    // TCP connect, the TLS handshake (two round trips with the server's verdict), then one per
    // CoAP request of the provisioning flow.
    let round_trips = match mode {
        DeviceMode::Provision => 8,
        DeviceMode::HandshakeOnly | DeviceMode::TlsOnly => 3,
    };
    let mut plan = LinkPlan::new(scenario.fleet.seed);
    for class in DeviceClass::ALL {
        let (profile, key) = match own.remove(&class) {
            Some((profile, key)) => (profile, key),
            None => (everyone.clone(), "device.link".to_owned()),
        };
        let in_fleet = scenario.fleet.mix.get(&class).is_some_and(|w| *w > 0);
        let (Some(profile), true) = (profile, in_fleet) else {
            continue;
        };
        let least = profile.least_time(round_trips);
        if device.timeout <= least {
            return refuse(
                "device.timeout",
                &format!(
                    "{:?} cannot fit the {round_trips} round trips of a {} device over {key} \
                     {:?} ({round_trips} × {:?} = {least:?}, before any bandwidth or loss); \
                     raise it",
                    device.timeout,
                    class.as_str(),
                    profile.name,
                    profile.rtt
                ),
            );
        }
        plan.set(class, profile);
    }
    Ok(plan)
}

fn executor_checks(executor: &ExecutorSpec) -> Result<(), Refusal> {
    match executor {
        ExecutorSpec::ClosedLoop { concurrency } if *concurrency == 0 => {
            refuse("executor.concurrency", "must be at least 1")
        }
        ExecutorSpec::ConstantArrivalRate { rate, .. } if !(*rate > 0.0 && rate.is_finite()) => {
            refuse("executor.rate", "must be a positive number")
        }
        ExecutorSpec::Hold { rate, .. } if !(*rate >= 0.0 && rate.is_finite()) => {
            refuse("executor.rate", "must be 0 or a positive number")
        }
        ExecutorSpec::Hold {
            connect_concurrency: 0,
            ..
        } => refuse("executor.connect_concurrency", "must be at least 1"),
        ExecutorSpec::Hold { ping_interval, .. } if ping_interval.is_zero() => {
            refuse("executor.ping_interval", "must be above 0")
        }
        ExecutorSpec::RampingArrivalRate { stages, .. }
            if stages.is_empty() || stages.iter().any(|s| s.duration.is_zero()) =>
        {
            refuse(
                "executor.stages",
                "needs at least one stage, each with a duration above 0",
            )
        }
        _ => Ok(()),
    }
}

fn attack_checks(attacks: &[AttackSpec]) -> Result<(), Refusal> {
    for (i, a) in attacks.iter().enumerate() {
        if a.connections == 0 {
            return refuse(&format!("attack[{i}].connections"), "must be at least 1");
        }
        if a.duration.is_zero() {
            return refuse(&format!("attack[{i}].duration"), "must be above 0");
        }
        if !(a.rate >= 0.0 && a.rate.is_finite()) {
            return refuse(
                &format!("attack[{i}].rate"),
                "must be 0 or a positive number",
            );
        }
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
    #[test]
    fn links_resolve_per_class_and_bad_values_name_their_key() {
        let l = Scenario::parse(GOOD, "x.toml", "x").expect("no link");
        assert!(l.links.is_empty(), "no emulation by default");
        let text = format!(
            "{GOOD}\n[device]\nlink = \"lte-m\"\n[device.class.truncated]\nlink = {{ preset = \"nb-iot\", loss = 0 }}\n[device.class.tpm]\nlink = \"none\"\n"
        )
        .replace("truncated = 2", "truncated = 2, tpm = 1")
        .replace("[device]\nlink", "[device]\ntimeout = \"30s\"\nlink");
        let l = Scenario::parse(&text, "x.toml", "x").expect("links");
        let name = |c: DeviceClass| l.links.for_class(c).map(|p| p.name.clone());
        assert_eq!(name(DeviceClass::Valid).as_deref(), Some("lte-m"));
        assert_eq!(
            name(DeviceClass::Truncated).as_deref(),
            Some("nb-iot+custom")
        );
        assert_eq!(name(DeviceClass::Tpm), None, "none turns the link off");
        // Classes outside the fleet get none.
        assert_eq!(name(DeviceClass::Forged), None);

        let refused = |device: &str, key: &str| {
            let text = format!("{GOOD}\n[device]\n{device}\n");
            let e = Scenario::parse(&text, "x.toml", "x").expect_err(key);
            assert!(e.to_string().contains(key), "{key}: {e}");
            e.to_string()
        };
        refused("link = { bandwidth = \"0kbit\" }", "device.link.bandwidth");
        refused("link = \"5g\"", "device.link: unknown link preset");
        refused(
            "[device.class.valid]\nlink = { rtt = \"40ms\", jitter = \"21ms\" }",
            "device.class.valid.link.jitter",
        );
        refused("link = { loss = 1.5 }", "device.link.loss");
        let e = refused("timeout = \"5s\"\nlink = \"nb-iot\"", "device.timeout");
        assert!(e.contains("8 round trips") && e.contains("nb-iot"), "{e}");
        // Syntax: an unknown key of a link table, a duration that is none.
        refused("link = { rtx = \"1ms\" }", "unknown field `rtx`");
        refused("link = { rtt = \"soon\" }", "line");
        refused("link = 5", "a link preset");
    }

    #[test]
    fn target_flags_work_out_into_one_kind_and_the_device_mode() {
        let l = Scenario::parse(GOOD, "x.toml", "x").expect("embedded");
        assert_eq!(
            (l.target.clone(), l.mode),
            (TargetKind::Embedded, DeviceMode::Provision)
        );
        assert_eq!(l.target.server_kind().as_str(), "embedded");
        let spawned = format!("[target]\nspawn = true\n[device]\nhandshake_only = true\n{GOOD}");
        let l = Scenario::parse(&spawned, "x.toml", "x").expect("spawned");
        assert_eq!(
            (l.target.clone(), l.mode),
            (TargetKind::Spawned, DeviceMode::HandshakeOnly)
        );
        let remote = format!(
            "[target]\naddress = \"h:1\"\nadmin = \"http://h:2\"\nserver_ca = \"ca.pem\"\n{GOOD}"
        );
        let l = Scenario::parse(&remote, "x.toml", "x").expect("remote");
        assert_eq!(
            l.target,
            TargetKind::Remote {
                address: "h:1".into(),
                admin: "http://h:2".into(),
                replica_admins: Vec::new(),
                admin_token_file: None,
                server_ca: Some("ca.pem".into()),
            }
        );
        assert_eq!(l.mode, DeviceMode::Provision);
        let l = Scenario::parse(PEER, "x.toml", "x").expect("tls-only");
        assert_eq!(
            l.target,
            TargetKind::TlsOnly {
                address: "127.0.0.1:8443".into(),
                server_ca: Some("ca.pem".into()),
            }
        );
        assert_eq!(l.mode, DeviceMode::TlsOnly);
        assert_eq!(
            serde_json::to_value(l.target.server_kind()).expect("json"),
            "tls-only"
        );
        // A skipped verification drops the CA, and a spawned server takes no address.
        let skip = PEER.replace(
            "handshake_only = true",
            "handshake_only = true\nskip_server_verification = true",
        );
        let l = Scenario::parse(&skip, "x.toml", "x").expect("skip");
        assert!(matches!(
            l.target,
            TargetKind::TlsOnly {
                server_ca: None,
                ..
            }
        ));
        let e = Scenario::parse(
            &remote.replace("[target]\n", "[target]\nspawn = true\n"),
            "x.toml",
            "x",
        )
        .expect_err("spawn with an address");
        assert!(e.to_string().contains("target.spawn"), "{e}");
        let limits = format!("{remote}\n[server_limits]\nmax_connections = 5\n");
        let e = Scenario::parse(&limits, "x.toml", "x").expect_err("limits on a remote target");
        assert!(e.to_string().contains("server_limits"), "{e}");
    }
}
