//! `[device]`: what each simulated device does and what its TLS client offers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::fleet::DeviceClass;
use super::link::LinkSpec;
use super::retry::RetrySpec;

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
    /// Spread connections over this many source addresses when the target is on IPv4 loopback,
    /// fresh ones of 127.0.0.0/8 for each run (no socket toward the target, so no earlier run's
    /// TIME_WAIT), so tens of thousands of connections do not run out of ephemeral ports (about
    /// 28,000 per source address). 0 = as many as the run's port budget needs, at least 1.
    #[serde(default)]
    pub source_addresses: u8,
    /// Offer only this TLS version; absent: TLS 1.3 and 1.2 (1.3 preferred).
    #[serde(default)]
    pub tls_version: Option<TlsVersion>,
    /// The key-exchange group(s) offered; default X25519 alone ([`KeyExchange`]).
    #[serde(default)]
    pub key_exchange: KeyExchange,
    /// What a device does after an attempt that ended in an error (a verdict is final); default
    /// `none` ([`RetrySpec`]).
    #[serde(default)]
    pub retry: RetrySpec,
    /// Per-class overrides of `retry`, e.g. `retry_by_class = { tpm = "none" }`.
    #[serde(default)]
    pub retry_by_class: BTreeMap<DeviceClass, RetrySpec>,
    /// No attempt starts (and none runs on) later than this after the device's first scheduled
    /// start, whatever its policy would still allow, e.g. "60s"; absent: only the policy's
    /// `max_attempts` bounds the retries.
    #[serde(default, with = "humantime_serde")]
    pub retry_deadline: Option<Duration>,
    /// The network every device sits behind, emulated in its own socket I/O (`"lte-m"`, or a
    /// table); absent: none, the device talks to the target directly.
    #[serde(default)]
    pub link: Option<LinkSpec>,
    /// Per class (`[device.class.tpm]`): what devices of that class do differently.
    #[serde(default)]
    pub class: BTreeMap<DeviceClass, ClassDeviceSpec>,
}

/// `[device.class.<class>]`: settings of one device class that differ from `[device]`'s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassDeviceSpec {
    /// This class's link (`"none"`: no emulation even when `[device] link` is set).
    #[serde(default)]
    pub link: Option<LinkSpec>,
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
            retry: RetrySpec::default(),
            retry_by_class: BTreeMap::new(),
            retry_deadline: None,
            link: None,
            class: BTreeMap::new(),
        }
    }
}
