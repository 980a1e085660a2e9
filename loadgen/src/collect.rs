//! Collecting finished device runs: each checked against its class's expectation, counted per
//! class and outcome, recorded in the histograms and the per-second timeline.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::device::{self, DeviceRun, FailureKind, Observed, StrictCheck};
use crate::fleet::{Device, DeviceClass, Expected, Fleet};
use crate::metrics::{Phase, Recorder};
use crate::scenario::DeviceMode;

/// Per-class outcome counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClassCounts {
    /// Devices of the class.
    pub devices: u64,
    /// Got exactly what the class expects.
    pub as_expected: u64,
    /// Got something else.
    pub mismatches: u64,
    /// Observed outcomes (`provisioned:<group>`, `rejected:<alert>`, `strict:<check>`, `failed`,
    /// ...) and counts.
    pub observed: BTreeMap<String, u64>,
}

/// One second of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the start of the device phase.
    pub t_s: u64,
    /// Runs finished in this second.
    pub completed: u64,
    /// Of which provisioned as expected.
    pub provisioned: u64,
    /// p99 of the total latency (from the scheduled start) of those runs, µs.
    pub p99_total_us: u64,
}

/// Per-second buckets while the run is collected.
#[derive(Default)]
pub struct Timeline {
    buckets: Vec<(u64, u64, hdrhistogram::Histogram<u64>)>,
}

impl Timeline {
    /// Count a run that finished `at` into the run.
    pub fn record(&mut self, at: Duration, provisioned: bool, total: Option<Duration>) {
        let i = at.as_secs() as usize;
        while self.buckets.len() <= i {
            self.buckets.push((0, 0, crate::metrics::new_histogram()));
        }
        if let Some(b) = self.buckets.get_mut(i) {
            b.0 += 1;
            b.1 += u64::from(provisioned);
            if let Some(t) = total {
                crate::metrics::record(&mut b.2, t);
            }
        }
    }

    /// The seconds, for the summary.
    pub fn seconds(&self) -> Vec<Second> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(t, (completed, provisioned, h))| Second {
                t_s: t as u64,
                completed: *completed,
                provisioned: *provisioned,
                p99_total_us: if h.is_empty() {
                    0
                } else {
                    h.value_at_quantile(0.99)
                },
            })
            .collect()
    }

    /// The best `window`-second average of provisioned/s. The last second is left out: it holds
    /// the drain of queued runs, not sustained throughput.
    pub fn peak(&self, window: usize) -> f64 {
        let full = self
            .buckets
            .len()
            .saturating_sub(1)
            .max(1)
            .min(self.buckets.len());
        let p: Vec<u64> = self.buckets[..full].iter().map(|b| b.1).collect();
        if p.len() < window {
            return p.iter().sum::<u64>() as f64 / window.max(1) as f64;
        }
        p.windows(window)
            .map(|w| w.iter().sum::<u64>() as f64 / window as f64)
            .fold(0.0, f64::max)
    }
}

/// Did a device observe what its class expects?
pub fn matches(expected: &Expected, observed: &Observed, fleet: &Fleet, mode: DeviceMode) -> bool {
    let owner_of = |group: &str| fleet.groups.get(group).map(|g| g.owner_uuid.as_str());
    match (expected, observed) {
        (Expected::Accepted { group }, Observed::Provisioned { owner })
        | (Expected::Reconnected { group }, Observed::Reconnected { owner }) => {
            owner_of(group) == Some(owner.as_str())
        }
        (Expected::Accepted { .. } | Expected::Reconnected { .. }, Observed::Attested) => {
            mode.handshake_only()
        }
        (Expected::Rejected { reason }, Observed::Rejected { alert }) => {
            device::expected_alert(*reason) == alert
        }
        (
            Expected::TpmRefused { step, code },
            Observed::TpmRefused {
                step: seen_step,
                code: seen_code,
            },
        ) => step == seen_step && code == seen_code,
        _ => false,
    }
}

fn observed_label(o: &Observed, fleet: &Fleet) -> String {
    let group = |owner: &str| {
        fleet
            .groups
            .values()
            .find(|g| g.owner_uuid == owner)
            .map_or_else(|| format!("owner {owner}"), |g| g.name.clone())
    };
    match o {
        Observed::Provisioned { owner } => format!("provisioned:{}", group(owner)),
        Observed::Reconnected { owner } => format!("reconnected:{}", group(owner)),
        Observed::Attested => "attested".into(),
        Observed::Rejected { alert } => format!("rejected:{alert}"),
        Observed::TpmRefused { step, code } => format!("tpm_refused:{}:{code}", step.as_str()),
        Observed::Strict { check, .. } => format!("strict:{check}"),
        Observed::Failed { .. } => "failed".into(),
    }
}

/// Everything counted while a run is collected.
#[derive(Default)]
pub struct Collector {
    /// Client-side histograms.
    pub recorder: Recorder,
    /// Per class.
    pub classes: BTreeMap<DeviceClass, ClassCounts>,
    /// Runs finished.
    pub done: u64,
    /// Provisioned as expected.
    pub provisioned: u64,
    /// Finished as expected (handshake accepted or refused as expected).
    pub handshakes: u64,
    /// Outcome other than expected.
    pub mismatches: u64,
    /// Of the mismatches, runs that failed (timeouts, I/O, bad answers, strict checks).
    pub errors: u64,
    /// Of the errors, runs that failed one of iotivity-lite's checks, by check.
    pub strict_failures: BTreeMap<StrictCheck, u64>,
    /// Of the errors, the other runs by kind of failure.
    pub failures: BTreeMap<FailureKind, u64>,
    /// A few mismatching devices, for diagnosis.
    pub examples: Vec<String>,
    /// Rejections the fleet expects, by reason.
    pub expected_rejections: BTreeMap<String, u64>,
    /// TPM refusals with 4.01 the fleet expects (one answer each).
    pub expected_tpm_refusals: u64,
    /// Per second.
    pub timeline: Timeline,
    /// When attackers are active (from the start of the devices), if any.
    pub attack_window: Option<(Duration, Duration)>,
    /// Total latency of devices scheduled before the attack window.
    pub before_attack: Option<hdrhistogram::Histogram<u64>>,
    /// Total latency of devices scheduled inside the attack window.
    pub during_attack: Option<hdrhistogram::Histogram<u64>>,
}

impl Collector {
    /// A collector that also splits device latency around the attack window `window`.
    pub fn with_attack_window(window: Option<(Duration, Duration)>) -> Self {
        Self {
            attack_window: window,
            before_attack: window.map(|_| crate::metrics::new_histogram()),
            during_attack: window.map(|_| crate::metrics::new_histogram()),
            ..Self::default()
        }
    }

    /// Count `run` of `dev`, finished `at` into the run.
    pub fn record(
        &mut self,
        dev: &Device,
        run: &DeviceRun,
        fleet: &Fleet,
        mode: DeviceMode,
        at: Duration,
    ) {
        self.done += 1;
        for (phase, d) in &run.phases {
            self.recorder.record(dev.class, *phase, *d);
        }
        let ok = matches(&dev.expected, &run.observed, fleet, mode);
        let total = run
            .phases
            .iter()
            .find(|(p, _)| *p == Phase::Total)
            .map(|(_, d)| *d);
        self.timeline
            .record(at, ok && run.observed.provisioned(), total);
        if let (Some((from, to)), Some(total)) = (self.attack_window, total) {
            // Scheduled start = when it got through minus its total latency.
            let scheduled = at.saturating_sub(total);
            let slot = if scheduled < from {
                self.before_attack.as_mut()
            } else if scheduled < to {
                self.during_attack.as_mut()
            } else {
                None
            };
            if let Some(h) = slot {
                crate::metrics::record(h, total);
            }
        }
        let c = self.classes.entry(dev.class).or_default();
        c.devices += 1;
        *c.observed
            .entry(observed_label(&run.observed, fleet))
            .or_default() += 1;
        if ok {
            c.as_expected += 1;
            self.handshakes += 1;
            self.provisioned += u64::from(run.observed.provisioned());
        } else {
            c.mismatches += 1;
            self.mismatches += 1;
            match &run.observed {
                Observed::Failed { kind, .. } => {
                    self.errors += 1;
                    *self.failures.entry(*kind).or_default() += 1;
                }
                Observed::Strict { check, .. } => {
                    self.errors += 1;
                    *self.strict_failures.entry(*check).or_default() += 1;
                }
                _ => {}
            }
            if self.examples.len() < 10 {
                self.examples.push(format!(
                    "{} ({}): expected {:?}, observed {:?}",
                    dev.common_name,
                    dev.class.as_str(),
                    dev.expected,
                    run.observed
                ));
            }
        }
        match &dev.expected {
            Expected::Rejected { reason } => {
                *self
                    .expected_rejections
                    .entry(reason.as_str().into())
                    .or_default() += 1;
            }
            Expected::TpmRefused { code, .. } if code == "4.01" => {
                self.expected_tpm_refusals += 1;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_devices_are_counted_by_kind_and_strict_ones_by_check() {
        let fleet = Fleet {
            devices: Vec::new(),
            groups: BTreeMap::new(),
            server_ca: rustls_pki_types::CertificateDer::from(Vec::new()),
            server_groups: Vec::new(),
            hub: dps_server::config::HubConfig {
                id: crate::fleet::HUB.into(),
                gateways: Vec::new(),
                name: None,
                authorization: None,
            },
            server_tpm_enrollments: Vec::new(),
            server_tpm_groups: Vec::new(),
        };
        let dev = Device {
            index: 0,
            class: DeviceClass::Valid,
            common_name: "VALID-000000".into(),
            credentials: crate::fleet::Credentials::X509 {
                chain: Vec::new(),
                key: rustls_pki_types::PrivateKeyDer::Pkcs8(Vec::new().into()),
            },
            expected: Expected::Accepted {
                group: "factory-a".into(),
            },
        };
        let mut c = Collector::default();
        let seen = [
            Observed::failed(FailureKind::Timeout, "timed out after 10s"),
            Observed::failed(FailureKind::Busy, "credentials: 5.03 (Max-Age 2 s)"),
            Observed::failed(FailureKind::Timeout, "no Pong within 10s"),
            Observed::Strict {
                check: StrictCheck::ShortFrame,
                detail: "handshake: 5 bytes".into(),
            },
            Observed::Rejected {
                alert: "UnknownCA".into(),
            },
        ];
        for observed in seen {
            let run = DeviceRun {
                observed,
                phases: Vec::new(),
                through: std::time::Instant::now(),
            };
            c.record(&dev, &run, &fleet, DeviceMode::Provision, Duration::ZERO);
        }
        assert_eq!((c.mismatches, c.errors), (5, 4));
        let kinds: Vec<(FailureKind, u64)> = c.failures.into_iter().collect();
        assert_eq!(kinds, [(FailureKind::Timeout, 2), (FailureKind::Busy, 1)]);
        assert_eq!(c.strict_failures.get(&StrictCheck::ShortFrame), Some(&1));
    }

    #[test]
    fn timeline_buckets_by_second_and_finds_the_peak() {
        let mut t = Timeline::default();
        for (sec, n) in [(0u64, 2u64), (1, 10), (2, 12), (3, 11), (4, 1)] {
            for _ in 0..n {
                t.record(
                    Duration::from_millis(sec * 1000 + 500),
                    true,
                    Some(Duration::from_millis(5)),
                );
            }
        }
        t.record(Duration::from_millis(4500), false, None);
        let secs = t.seconds();
        assert_eq!(secs.len(), 5);
        assert_eq!((secs[4].completed, secs[4].provisioned), (2, 1));
        assert!((4_990..=5_010).contains(&secs[1].p99_total_us));
        assert!((t.peak(3) - 11.0).abs() < 1e-9, "{}", t.peak(3));
    }
}
