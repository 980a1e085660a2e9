//! One step of a capacity search: the base scenario at one constant arrival rate (its executor
//! replaced, its thresholds replaced by the SLOs), run with a warm-up that is left out of the
//! figures, and judged into a [`StepVerdict`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::search::StepVerdict;
use crate::metrics::Phase;
use crate::saturation::LimitedBy;
use crate::scenario::Loaded;
use crate::spec::{ExecutorSpec, Stage};
use crate::summary::{Summary, ThresholdResult};
use crate::threshold::Threshold;

/// How long each step runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSpec {
    /// Devices started in this first part of a step are run but not counted.
    pub warmup: Duration,
    /// The part of a step whose devices the SLOs are judged on.
    pub measure: Duration,
    /// A step whose every SLO held but one within this fraction of its limit is run again.
    pub close_margin: f64,
}

impl Default for StepSpec {
    fn default() -> Self {
        Self {
            warmup: Duration::from_secs(2),
            measure: Duration::from_secs(8),
            close_margin: 0.15,
        }
    }
}

/// Devices in flight at once at most in a step whose base scenario sets no cap of its own.
const DEFAULT_MAX_IN_FLIGHT: usize = 20_000;

/// Fleets of steps are grown in multiples of this, so that nearby rates share a cached fleet.
const FLEET_QUANTUM: usize = 500;

/// Devices a step at `rate` needs so that no device starts twice: every start is a device coming
/// online (a second provisioning of the same device costs the server less than a first, and
/// made a step's p99 look better than a run of new devices at the same rate), rounded up to
/// [`FLEET_QUANTUM`]; never fewer than the base scenario's.
pub fn step_devices(base: usize, rate: f64, spec: &StepSpec) -> usize {
    let starts = (rate * (spec.warmup + spec.measure).as_secs_f64()).ceil() as usize + 1;
    base.max(starts.div_ceil(FLEET_QUANTUM) * FLEET_QUANTUM)
}

/// The base scenario at a constant `rate`: a ramp that stays at `rate` for the warm-up and the
/// measured part, its fleet grown so that every start is a new device ([`step_devices`]), the
/// SLOs as its thresholds.
pub fn step_scenario(base: &Loaded, slos: &[Threshold], rate: f64, spec: &StepSpec) -> Loaded {
    let (max_in_flight, max_lateness) = match &base.scenario.executor {
        ExecutorSpec::ConstantArrivalRate {
            max_in_flight,
            max_lateness,
            ..
        }
        | ExecutorSpec::RampingArrivalRate {
            max_in_flight,
            max_lateness,
            ..
        } => (*max_in_flight, *max_lateness),
        _ => (DEFAULT_MAX_IN_FLIGHT, Duration::from_millis(500)),
    };
    let mut loaded = base.clone();
    loaded.scenario.fleet.devices = step_devices(base.scenario.fleet.devices, rate, spec);
    loaded.scenario.executor = ExecutorSpec::RampingArrivalRate {
        start_rate: rate,
        stages: vec![Stage {
            target: rate,
            duration: spec.warmup + spec.measure,
        }],
        max_in_flight,
        max_lateness,
    };
    loaded.scenario.name = format!("{}-{}", base.scenario.name, rate.round() as u64);
    loaded.thresholds = slos.to_vec();
    loaded.measure_from = spec.warmup;
    loaded
}

/// What one step showed, as the capacity report lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    /// Offered rate, starts per second.
    pub rate_per_s: f64,
    /// The verdict.
    pub verdict: StepVerdict,
    /// Provisioned as expected per second over the measured part.
    pub provisioned_per_s: f64,
    /// Devices counted (the warm-up left out).
    pub devices: u64,
    /// Devices that ended in an error.
    pub errors: u64,
    /// Errors as a percentage of the devices counted.
    pub errors_pct: f64,
    /// Wrong verdicts.
    pub mismatches: u64,
    /// Scheduled starts dropped.
    pub dropped: u64,
    /// Median total latency, ms (`None`: no device finished the flow).
    pub p50_total_ms: Option<f64>,
    /// p99 total latency, ms.
    pub p99_total_ms: Option<f64>,
    /// Who limited the step (`generator`, `target`, `none`).
    pub limited_by: Option<LimitedBy>,
    /// Each SLO's verdict on this step.
    pub slos: Vec<ThresholdResult>,
    /// Wall time of the step's device phase, seconds (warm-up included).
    pub duration_s: f64,
}

/// How far `actual` is from `limit`, as a fraction of the limit (infinite for a zero limit,
/// where no value is "close" but the limit itself).
fn margin(actual: f64, limit: f64) -> f64 {
    if limit == 0.0 {
        f64::INFINITY
    } else {
        ((actual - limit) / limit).abs()
    }
}

/// Judge a step's summary: failed if an SLO or a verdict failed, generator-limited if the
/// generator said it limited the run, close if an SLO held within `close_margin` of its limit.
pub fn judge(summary: &Summary, slos: &[Threshold], close_margin: f64) -> StepVerdict {
    if summary
        .generator
        .as_ref()
        .is_some_and(|g| g.limited_by == LimitedBy::Generator)
    {
        return StepVerdict::GeneratorLimited;
    }
    if !summary.passed || summary.mismatches > 0 {
        return StepVerdict::Failed;
    }
    let close =
        summary.thresholds.iter().zip(slos).any(|(r, t)| {
            r.passed && r.actual.is_finite() && margin(r.actual, t.limit) < close_margin
        });
    if close {
        StepVerdict::HeldClose
    } else {
        StepVerdict::Held
    }
}

/// The record of a step at `rate` from its summary and verdict.
pub fn record(rate: f64, summary: &Summary, verdict: StepVerdict) -> StepRecord {
    let total = summary.latency.get(&Phase::Total);
    let ms = |us: u64| us as f64 / 1000.0;
    StepRecord {
        rate_per_s: rate,
        verdict,
        provisioned_per_s: summary.provisioned_per_s,
        devices: summary.devices,
        errors: summary.errors,
        errors_pct: 100.0 * summary.errors as f64 / summary.devices.max(1) as f64,
        mismatches: summary.mismatches,
        dropped: summary.dropped,
        p50_total_ms: total.map(|q| ms(q.p50_us)),
        p99_total_ms: total.map(|q| ms(q.p99_us)),
        limited_by: summary.generator.as_ref().map(|g| g.limited_by),
        slos: summary.thresholds.clone(),
        duration_s: summary.duration_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    const BASE: &str = r#"
name = "cap"
thresholds = ["mismatches == 0"]
[fleet]
seed = 1
devices = 50
mix = { valid = 1 }
[executor]
kind = "closed-loop"
concurrency = 4
"#;

    #[test]
    fn a_step_runs_the_base_fleet_at_one_rate_with_the_slos_and_a_warmup() {
        let base = Scenario::parse(BASE, "test", "cap").expect("base");
        let slos: Vec<Threshold> = vec!["p99(total) < 50ms".parse().expect("slo")];
        let spec = StepSpec::default();
        let step = step_scenario(&base, &slos, 300.0, &spec);
        assert_eq!(step.thresholds, slos);
        assert_eq!(step.measure_from, Duration::from_secs(2));
        assert_eq!(step.scenario.name, "cap-300");
        // 300/s for 10 s: 3,001 starts, each a device of its own (rounded up to 3,500).
        assert_eq!(step.scenario.fleet.devices, 3_500);
        match step.scenario.executor {
            ExecutorSpec::RampingArrivalRate {
                start_rate,
                ref stages,
                max_in_flight,
                ..
            } => {
                assert_eq!(start_rate, 300.0);
                assert_eq!(stages.len(), 1);
                assert_eq!(stages[0].target, 300.0);
                assert_eq!(stages[0].duration, Duration::from_secs(10));
                assert_eq!(max_in_flight, DEFAULT_MAX_IN_FLIGHT);
            }
            ref other => panic!("executor {other:?}"),
        }
    }

    #[test]
    fn a_step_fleet_is_never_smaller_than_the_base_and_grows_with_the_rate() {
        let spec = StepSpec::default();
        assert_eq!(step_devices(50, 1.0, &spec), 500);
        assert_eq!(step_devices(10_000, 100.0, &spec), 10_000);
        assert_eq!(step_devices(50, 49.9, &spec), 500);
        assert_eq!(step_devices(50, 50.0, &spec), 1_000);
    }

    #[test]
    fn margins_are_relative_and_a_zero_limit_is_never_close() {
        assert!((margin(45_000.0, 50_000.0) - 0.1).abs() < 1e-9);
        assert!(margin(0.0, 0.0).is_infinite());
    }
}
