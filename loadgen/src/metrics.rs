//! Latency histograms (HdrHistogram, microseconds) per phase and per device class, and the outcome
//! counters every run reports.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::spec::DeviceClass;

/// A measured phase of one device's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The generator's own delay: from the scheduled start of an attempt (the first one's from
    /// the device's scheduled start) until the device begins to connect (a TPM device: until it
    /// begins its attestation). Near zero while the generator keeps its schedule; not the
    /// server's latency.
    Lateness,
    /// The device's own work between its server-facing phases within an attempt (building a
    /// CSR and signing it, a TPM's ActivateCredential and Quote, reading and checking answers,
    /// and in an attempt that failed the step that failed): with `lateness` and the other phases
    /// of an attempt it adds up to the attempt's `total` exactly.
    Device,
    /// The generator's own delay in reading what the server had already sent: within an attempt,
    /// from when the device's socket received data the device was waiting for (the kernel's
    /// receive time) to when the device's task read it, taken out of the phase it fell in. Near
    /// zero while the generator has CPU to spare; not the server's latency.
    ReadDelay,
    /// TCP connect.
    Tcp,
    /// TLS handshake (attestation happens here), until the first server byte is readable.
    Handshake,
    /// TPM devices: round trip of `POST /api/v1/provisioning/tpm/challenge` (the server's EK
    /// check and MakeCredential).
    TpmChallenge,
    /// TPM devices: round trip of `POST /api/v1/provisioning/tpm/attest` (secret and quote
    /// checks); the device's own ActivateCredential and Quote are not in it.
    TpmAttest,
    /// GET time.
    Time,
    /// GET ownership.
    Ownership,
    /// POST cloud-configuration.
    CloudConfiguration,
    /// POST credentials (CSR signing).
    Credentials,
    /// GET ACLs.
    Acls,
    /// `identity` devices: the handshake of the second session, authenticated by the identity
    /// certificate the first one was issued (TCP connect and the CoAP steps count in their phases).
    IdentityHandshake,
    /// Hold executor: round trip of a held device's CoAP Ping.
    Ping,
    /// From the scheduled start to the end of the device's run (for held devices: until they
    /// were holding); with retries, per attempt: the first from the scheduled start, each later
    /// one from its own start. The sum of the attempt's `lateness`, `device` and its other
    /// phases (ping and `provisioned_after_retries` aside).
    Total,
    /// Devices that got in (provisioned, or attested in handshake-only mode): from the first
    /// scheduled start to the end of the attempt that got in, every failed attempt and wait
    /// before it included.
    ProvisionedAfterRetries,
}

impl Phase {
    /// Every phase, in flow order.
    pub const ALL: [Phase; 16] = [
        Phase::Lateness,
        Phase::Device,
        Phase::ReadDelay,
        Phase::Tcp,
        Phase::Handshake,
        Phase::TpmChallenge,
        Phase::TpmAttest,
        Phase::Time,
        Phase::Ownership,
        Phase::CloudConfiguration,
        Phase::Credentials,
        Phase::Acls,
        Phase::IdentityHandshake,
        Phase::Ping,
        Phase::Total,
        Phase::ProvisionedAfterRetries,
    ];

    /// The name used in thresholds and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Lateness => "lateness",
            Phase::Device => "device",
            Phase::ReadDelay => "read_delay",
            Phase::Tcp => "tcp",
            Phase::Handshake => "handshake",
            Phase::TpmChallenge => "tpm_challenge",
            Phase::TpmAttest => "tpm_attest",
            Phase::Time => "time",
            Phase::Ownership => "ownership",
            Phase::CloudConfiguration => "cloud_configuration",
            Phase::Credentials => "credentials",
            Phase::Acls => "acls",
            Phase::IdentityHandshake => "identity_handshake",
            Phase::Ping => "ping",
            Phase::Total => "total",
            Phase::ProvisionedAfterRetries => "provisioned_after_retries",
        }
    }

    /// All names, for error messages.
    pub fn names() -> String {
        Phase::ALL.map(Phase::as_str).join(", ")
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s).ok_or(())
    }
}

/// A latency histogram in microseconds, 1 µs to 5 minutes at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5); the unit
    // tests exercise this call.
    Histogram::new_with_bounds(1, 300_000_000, 3).expect("constant histogram bounds are valid")
}

/// Record a duration, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, h.high());
    let _ = h.record(us);
}

/// Quantiles of one histogram, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// Samples.
    pub count: u64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Median, µs.
    pub p50_us: u64,
    /// µs.
    pub p90_us: u64,
    /// µs.
    pub p99_us: u64,
    /// µs.
    pub p999_us: u64,
    /// µs.
    pub max_us: u64,
}

impl Quantiles {
    /// Summarise a histogram.
    pub fn of(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Histograms of a run: per phase over all devices, and per (class, phase).
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// Per phase.
    pub phases: BTreeMap<Phase, Histogram<u64>>,
    /// Per class and phase.
    pub classes: BTreeMap<(DeviceClass, Phase), Histogram<u64>>,
}

impl Recorder {
    /// Record one phase duration of a device of `class`.
    pub fn record(&mut self, class: DeviceClass, phase: Phase, d: Duration) {
        record(self.phases.entry(phase).or_insert_with(new_histogram), d);
        record(
            self.classes
                .entry((class, phase))
                .or_insert_with(new_histogram),
            d,
        );
    }

    /// Add another recorder's samples (per-worker recorders merge into one).
    pub fn merge(&mut self, other: &Recorder) {
        for (phase, h) in &other.phases {
            let _ = self
                .phases
                .entry(*phase)
                .or_insert_with(new_histogram)
                .add(h);
        }
        for (key, h) in &other.classes {
            let _ = self
                .classes
                .entry(*key)
                .or_insert_with(new_histogram)
                .add(h);
        }
    }

    /// The value at `quantile` of `phase`, µs (0 when nothing was recorded).
    pub fn quantile(&self, phase: Phase, quantile: f64) -> u64 {
        self.phases
            .get(&phase)
            .map_or(0, |h| h.value_at_quantile(quantile))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_merges_and_clamps() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        a.record(
            DeviceClass::Valid,
            Phase::Handshake,
            Duration::from_millis(2),
        );
        b.record(
            DeviceClass::Valid,
            Phase::Handshake,
            Duration::from_millis(4),
        );
        b.record(
            DeviceClass::Valid,
            Phase::Total,
            Duration::from_secs(10_000),
        );
        a.merge(&b);
        let h = &a.phases[&Phase::Handshake];
        assert_eq!(h.len(), 2);
        assert!((3_990..=4_010).contains(&h.max()));
        assert_eq!(
            a.phases[&Phase::Total].len(),
            1,
            "an out-of-range value is clamped, not lost"
        );
        assert_eq!(
            "cloud_configuration".parse::<Phase>(),
            Ok(Phase::CloudConfiguration)
        );
    }
}
