//! Collecting finished device runs: each checked against its class's expectation, counted per
//! class and outcome, recorded in the histograms and the per-second timeline.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::device::{DeviceRun, FailureKind, Observed, StrictCheck};
use crate::fleet::{Device, DeviceClass, Expected, Fleet};
use crate::judge::{judge, Judgement};
use crate::metrics::{Phase, Recorder};
use crate::scenario::DeviceMode;
use crate::timeline::Finished;
pub use crate::timeline::{best_window, Second, Timeline};

/// Per-class outcome counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClassCounts {
    /// Devices of the class.
    pub devices: u64,
    /// Got exactly what the class expects.
    pub as_expected: u64,
    /// Got a wrong verdict (false accepts, false rejects and other wrong verdicts).
    pub mismatches: u64,
    /// Of the mismatches: got in, though the class must be refused.
    #[serde(default)]
    pub false_accepts: u64,
    /// Of the mismatches: refused with a verdict, though the class must get in.
    #[serde(default)]
    pub false_rejects: u64,
    /// Ended in an error, no verdict (timeout, reset, busy, ..., a strict check).
    #[serde(default)]
    pub errors: u64,
    /// Attempts made by its devices.
    #[serde(default)]
    pub attempts: u64,
    /// Most attempts one of its devices made.
    #[serde(default)]
    pub max_attempts: u64,
    /// Observed outcomes (`provisioned:<group>`, `rejected:<alert>`, `refused:<step>:<code>`,
    /// `strict:<check>`, `failed`, ...) and counts.
    pub observed: BTreeMap<String, u64>,
}

/// The devices' attempts: how many each needed, and how the failed ones ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Attempts {
    /// Attempts in all.
    pub total: u64,
    /// Most attempts one device made.
    pub max: u64,
    /// Devices that made more than one.
    pub retried_devices: u64,
    /// Devices by the number of attempts they made (`"1"`, `"2"`, ...).
    pub per_device: BTreeMap<u32, u64>,
    /// Attempts that ended in an error, by kind (a failure kind or `strict`), whether they were
    /// retried or were the device's last: from the devices' side, how often the server was busy
    /// (`busy`: 5.03) or cut them off (`reset`).
    pub errors: BTreeMap<String, u64>,
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
        Observed::Provisioned { owner, .. } => format!("provisioned:{}", group(owner)),
        Observed::Reconnected { owner, .. } => format!("reconnected:{}", group(owner)),
        Observed::Attested => "attested".into(),
        Observed::Rejected { alert } => format!("rejected:{alert}"),
        Observed::TpmRefused { step, code } => format!("tpm_refused:{}:{code}", step.as_str()),
        Observed::Refused { phase, code } => format!("refused:{phase}:{code}"),
        Observed::Strict { check, .. } => format!("strict:{check}"),
        Observed::Failed { .. } => "failed".into(),
    }
}

/// The last attempt's time in `phase` (each attempt's phases count from its own start).
fn last_phase(run: &DeviceRun, phase: Phase) -> Option<Duration> {
    run.phases
        .iter()
        .rev()
        .find(|(p, _)| *p == phase)
        .map(|(_, d)| *d)
}

/// The timeline's label of an error: the failure kind, or `strict` for iotivity-lite's checks.
fn error_kind(o: &Observed) -> &'static str {
    match o {
        Observed::Failed { kind, .. } => kind.as_str(),
        Observed::Strict { .. } => "strict",
        _ => "other",
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
    /// A wrong verdict: false accepts, false rejects, other wrong verdicts.
    pub mismatches: u64,
    /// Of the mismatches, devices that got in though their class must be refused.
    pub false_accepts: u64,
    /// Of the mismatches, devices refused with a verdict though their class must get in.
    pub false_rejects: u64,
    /// Runs that ended in an error rather than a verdict (timeouts, I/O, bad answers, strict
    /// checks); not mismatches.
    pub errors: u64,
    /// Of the errors, runs that failed one of iotivity-lite's checks, by check.
    pub strict_failures: BTreeMap<StrictCheck, u64>,
    /// Of the errors, the other runs by kind of failure.
    pub failures: BTreeMap<FailureKind, u64>,
    /// A few mismatching or failed devices, for diagnosis.
    pub examples: Vec<String>,
    /// The devices' attempts.
    pub attempts: Attempts,
    /// Runs whose class must get in.
    pub must_get_in: u64,
    /// When each run that had to get in did (as expected), from the start of the device phase.
    pub got_in_at: Vec<Duration>,
    /// The device id each provisioned device was issued (fleet index, id), for the results'
    /// `identities.csv`: what a server's store must hold after the run.
    pub identities: Vec<(usize, String)>,
    /// The latest first scheduled start of a run, from the start of the device phase.
    pub last_arrival: Duration,
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
    /// Devices scheduled before this point of the device phase are a warm-up: run, but left out
    /// of every count and histogram (see [`crate::scenario::Loaded::measure_from`]).
    pub measure_from: Duration,
    /// Runs left out as the warm-up.
    pub warmup: u64,
    /// Runs whose phases did not add up to their `Total` ([`crate::device::ledger::balanced`]).
    pub unbalanced: u64,
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
        // Scheduled start = when it got through minus the time since its first scheduled start.
        let scheduled = at.saturating_sub(run.since_scheduled);
        if scheduled < self.measure_from {
            // A warm-up device: the server still counts its rejections, so the cross-check
            // expects them.
            self.warmup += 1;
            self.expect(dev);
            return;
        }
        for (phase, d) in &run.phases {
            self.recorder.record(dev.class, *phase, *d);
        }
        self.unbalanced += u64::from(!crate::device::ledger::balanced(&run.phases));
        let judged = judge(&dev.expected, &run.observed, fleet, mode);
        let ok = judged == Judgement::AsExpected;
        // The last attempt's latency (each attempt's Total counts from its own start).
        let total = last_phase(run, Phase::Total);
        self.timeline.finished(Finished {
            at,
            scheduled,
            provisioned: ok && run.observed.provisioned(),
            total,
            handshake: last_phase(run, Phase::Handshake),
            error: (judged == Judgement::Error).then(|| error_kind(&run.observed)),
            mismatch: !ok && judged != Judgement::Error,
        });
        self.last_arrival = self.last_arrival.max(scheduled);
        self.count_got_in(dev, ok, at);
        self.keep_identity(dev, &run.observed);
        self.count_attack_window(scheduled, total);
        self.count_attempts(run);
        self.expect(dev);
        self.count_class(dev, run, fleet, judged);
        if judged != Judgement::AsExpected {
            self.keep_example(dev, run);
        }
    }

    /// The device id a provisioned device was issued, if it says.
    fn keep_identity(&mut self, dev: &Device, observed: &Observed) {
        if let Observed::Provisioned { device_id, .. } | Observed::Reconnected { device_id, .. } =
            observed
        {
            if !device_id.is_empty() {
                self.identities.push((dev.index, device_id.clone()));
            }
        }
    }

    /// A device that should have got in: counted, and when it did, the time it did.
    fn count_got_in(&mut self, dev: &Device, ok: bool, at: Duration) {
        if matches!(
            dev.expected,
            Expected::Accepted { .. } | Expected::Reconnected { .. }
        ) {
            self.must_get_in += 1;
            if ok {
                self.got_in_at.push(at);
            }
        }
    }

    /// A device's latency into the before- or during-attack histogram, by when it was scheduled.
    fn count_attack_window(&mut self, scheduled: Duration, total: Option<Duration>) {
        if let (Some((from, to)), Some(total)) = (self.attack_window, total) {
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
    }

    /// A device's judgement into its class's counts and the run's totals.
    fn count_class(&mut self, dev: &Device, run: &DeviceRun, fleet: &Fleet, judged: Judgement) {
        let c = self.classes.entry(dev.class).or_default();
        c.devices += 1;
        c.attempts += u64::from(run.attempts);
        c.max_attempts = c.max_attempts.max(u64::from(run.attempts));
        *c.observed
            .entry(observed_label(&run.observed, fleet))
            .or_default() += 1;
        match judged {
            Judgement::AsExpected => {
                c.as_expected += 1;
                self.handshakes += 1;
                self.provisioned += u64::from(run.observed.provisioned());
            }
            Judgement::Error => {
                c.errors += 1;
                self.errors += 1;
                match &run.observed {
                    Observed::Failed { kind, .. } => {
                        *self.failures.entry(*kind).or_default() += 1;
                    }
                    Observed::Strict { check, .. } => {
                        *self.strict_failures.entry(*check).or_default() += 1;
                    }
                    _ => {}
                }
            }
            Judgement::FalseAccept | Judgement::FalseReject | Judgement::WrongVerdict => {
                c.mismatches += 1;
                self.mismatches += 1;
                if judged == Judgement::FalseAccept {
                    c.false_accepts += 1;
                    self.false_accepts += 1;
                }
                if judged == Judgement::FalseReject {
                    c.false_rejects += 1;
                    self.false_rejects += 1;
                }
            }
        }
    }

    /// A device that was not as expected, kept as one of the first ten examples.
    fn keep_example(&mut self, dev: &Device, run: &DeviceRun) {
        if self.examples.len() < 10 {
            self.examples.push(format!(
                "{} ({}): expected {:?}, observed {:?} after {} attempt(s)",
                dev.common_name,
                dev.class.as_str(),
                dev.expected,
                run.observed,
                run.attempts,
            ));
        }
    }

    /// A finished device's attempts into [`Collector::attempts`].
    fn count_attempts(&mut self, run: &DeviceRun) {
        let a = &mut self.attempts;
        a.total += u64::from(run.attempts);
        a.max = a.max.max(u64::from(run.attempts));
        a.retried_devices += u64::from(run.attempts > 1);
        *a.per_device.entry(run.attempts).or_default() += 1;
        for label in &run.attempt_errors {
            *a.errors.entry((*label).to_owned()).or_default() += 1;
        }
    }

    /// Count what `dev`'s class expects the server to refuse, for the cross-check against the
    /// server's own counts.
    fn expect(&mut self, dev: &Device) {
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
            let run = DeviceRun::single(observed, Vec::new());
            c.record(&dev, &run, &fleet, DeviceMode::Provision, Duration::ZERO);
        }
        // The timeouts, the 5.03 and the strict check are errors; only the refusal of a device
        // that must get in is a mismatch (a false reject).
        assert_eq!((c.mismatches, c.errors), (1, 4));
        assert_eq!((c.false_rejects, c.false_accepts), (1, 0));
        let valid = &c.classes[&DeviceClass::Valid];
        assert_eq!(
            (valid.mismatches, valid.false_rejects, valid.errors),
            (1, 1, 4)
        );
        assert_eq!(c.attempts.errors.get("timeout"), Some(&2));
        assert_eq!(c.attempts.errors.get("strict"), Some(&1));
        assert_eq!((c.attempts.total, c.attempts.retried_devices), (5, 0));
        assert_eq!(c.must_get_in, 5);
        let kinds: Vec<(FailureKind, u64)> = c.failures.into_iter().collect();
        assert_eq!(kinds, [(FailureKind::Timeout, 2), (FailureKind::Busy, 1)]);
        assert_eq!(c.strict_failures.get(&StrictCheck::ShortFrame), Some(&1));
    }
}
