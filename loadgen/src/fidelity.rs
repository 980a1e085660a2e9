//! How much of the devices' latency is the generator's own: its lateness (from a device's
//! scheduled start until it began to connect) against the total, and whether every device's
//! phases added up to its total. The summary's `fidelity` section; `dps-loadgen verify-capture`
//! ([`crate::capture`]) checks the same run against a packet capture.

use serde::{Deserialize, Serialize};

use crate::metrics::{Phase, Recorder};

/// A lateness p99 above this share of the total p99 is reported: the devices' figures then hold
/// a noticeable part of the generator's own delay (coordinated omission counts it in, rightly,
/// but then the generator is not on time and the figures are not the server's alone).
pub const LATENESS_SHARE_LIMIT: f64 = 0.10;

/// The summary's `fidelity` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fidelity {
    /// p99 of the generator's lateness (`latency.lateness`), µs.
    pub lateness_p99_us: u64,
    /// p99 of `latency.total`, µs.
    pub total_p99_us: u64,
    /// `lateness_p99_us / total_p99_us` (0 without devices).
    pub lateness_share: f64,
    /// The share above which the lateness is reported ([`LATENESS_SHARE_LIMIT`]).
    pub share_limit: f64,
    /// `lateness_share > share_limit`: the generator was late enough to show in the figures.
    pub lateness_exceeded: bool,
    /// Devices whose phases did not add up to their `total` exactly (0 unless the generator
    /// mismeasures).
    pub unbalanced_devices: u64,
    /// Device connections in the results' `connections.csv`, for `dps-loadgen verify-capture`.
    pub connections_recorded: u64,
    /// Connections left out of it (beyond its cap).
    pub connections_left_out: u64,
    /// p99 of the generator's read delay (`latency.read_delay`: answers that had reached the
    /// device's socket but were not read yet), µs; left out of the server-facing phases.
    #[serde(default)]
    pub read_delay_p99_us: u64,
}

impl Fidelity {
    /// The section from the run's histograms, its unbalanced devices and its connection log's
    /// (recorded, left out) counts.
    pub fn of(recorder: &Recorder, unbalanced_devices: u64, connections: (u64, u64)) -> Self {
        let lateness_p99_us = recorder.quantile(Phase::Lateness, 0.99);
        let total_p99_us = recorder.quantile(Phase::Total, 0.99);
        let lateness_share = if total_p99_us == 0 {
            0.0
        } else {
            lateness_p99_us as f64 / total_p99_us as f64
        };
        Fidelity {
            lateness_p99_us,
            total_p99_us,
            lateness_share,
            share_limit: LATENESS_SHARE_LIMIT,
            lateness_exceeded: lateness_share > LATENESS_SHARE_LIMIT,
            unbalanced_devices,
            connections_recorded: connections.0,
            connections_left_out: connections.1,
            read_delay_p99_us: recorder.quantile(Phase::ReadDelay, 0.99),
        }
    }

    /// The note for the generator's report when the lateness shows in the figures.
    pub fn note(&self) -> Option<String> {
        self.lateness_exceeded.then(|| {
            format!(
                "the generator's lateness p99 ({:.2} ms) is {:.0} % of the total p99 ({:.2} ms), \
                 over {:.0} %: the devices' figures hold the generator's own delay",
                self.lateness_p99_us as f64 / 1000.0,
                self.lateness_share * 100.0,
                self.total_p99_us as f64 / 1000.0,
                self.share_limit * 100.0
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::DeviceClass;
    use std::time::Duration;

    #[test]
    fn lateness_over_its_share_of_the_total_is_reported() {
        let mut r = Recorder::default();
        for _ in 0..100 {
            r.record(DeviceClass::Valid, Phase::Total, Duration::from_millis(2));
            r.record(
                DeviceClass::Valid,
                Phase::Lateness,
                Duration::from_micros(50),
            );
        }
        let f = Fidelity::of(&r, 0, (100, 0));
        assert!(!f.lateness_exceeded, "{f:?}");
        assert_eq!(f.note(), None);
        for _ in 0..10 {
            r.record(
                DeviceClass::Valid,
                Phase::Lateness,
                Duration::from_millis(1),
            );
        }
        let f = Fidelity::of(&r, 0, (100, 0));
        assert!(f.lateness_exceeded, "{f:?}");
        assert!(
            f.note().is_some_and(|n| n.contains("50 % of the total")),
            "{:?}",
            f.note()
        );
        assert_eq!(
            Fidelity::of(&Recorder::default(), 0, (0, 0)).lateness_share,
            0.0
        );
    }
}
