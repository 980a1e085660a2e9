//! `dps-loadgen capacity SCENARIO --slo ...`: the highest constant arrival rate at which every
//! SLO holds, as a number with its uncertainty. The scenario gives the fleet, the target and the
//! devices' behaviour; its executor and thresholds are replaced by constant-rate steps judged on
//! the SLOs ([`step`]), chosen by doubling then bisection ([`mod@search`]). The result directory holds
//! `summary.json` (`capacity_per_s`), `summary.md`, `steps.svg` and every step's own reports under
//! `steps/`; gates (`capacity >= 600/s`, at most X % below a baseline) make it a CI check.

pub mod gate;
pub mod report;
pub mod search;
pub mod step;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use gate::{CapacityGate, GateError};
pub use search::{Bound, Capacity, Search, SearchSpec, StepVerdict};
pub use step::{StepRecord, StepSpec};

use crate::run::{self, RunError};
use crate::scenario::Loaded;
use crate::summary::ThresholdResult;
use crate::threshold::Threshold;

/// What a capacity search is asked.
#[derive(Debug, Clone)]
pub struct CapacitySpec {
    /// The SLOs every step is judged on (`mismatches == 0` is always added).
    pub slos: Vec<Threshold>,
    /// How rates are chosen.
    pub search: SearchSpec,
    /// How long each step is.
    pub step: StepSpec,
    /// CI gates on the result.
    pub gates: Vec<CapacityGate>,
}

/// Why a capacity search could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    /// A step could not be run.
    #[error("step at {rate}/s: {source}")]
    Step {
        /// Its rate.
        rate: f64,
        /// Why.
        source: RunError,
    },
    /// A report could not be written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// `summary.json` of a capacity search (schema: `loadgen/capacity.schema.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CapacitySummary {
    /// Schema version of this document.
    pub schema_version: u32,
    /// Always `capacity`, to tell this document from a run's summary.
    pub kind: String,
    /// The base scenario's name.
    pub scenario: String,
    /// Start time, RFC 3339.
    pub started_at: String,
    /// The SLOs, as written.
    pub slos: Vec<String>,
    /// The highest rate that held every SLO on every run of it, per second.
    pub capacity_per_s: f64,
    /// The lowest rate above it that did not (`null`: none did).
    pub upper_per_s: Option<f64>,
    /// Half the bracket, per second (`null` when unbracketed).
    pub uncertainty_per_s: Option<f64>,
    /// Why the search ended there: `slo`, `max_rate`, `generator`, `steps`.
    pub bound: Bound,
    /// The search's parameters.
    pub search: SearchParams,
    /// Every step in the order run.
    pub steps: Vec<StepRecord>,
    /// Wall time of the whole search, seconds.
    pub search_s: f64,
    /// The gates and their verdicts.
    pub thresholds: Vec<ThresholdResult>,
    /// Every gate held (and a capacity was found).
    pub passed: bool,
}

/// The parameters of a search, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchParams {
    /// First rate, per second.
    pub start_rate: f64,
    /// Highest rate tried at most, per second.
    pub max_rate: f64,
    /// Bracket width at which it stops, as a fraction of the upper end.
    pub resolution: f64,
    /// Warm-up of each step, seconds (not counted).
    pub warmup_s: f64,
    /// Measured part of each step, seconds.
    pub measure_s: f64,
}

/// What [`search()`] returns.
#[derive(Debug)]
pub struct Searched {
    /// The result.
    pub summary: CapacitySummary,
    /// Where it was written.
    pub dir: PathBuf,
}

/// The SLOs with `mismatches == 0` added when absent: a capacity with wrong verdicts means nothing.
fn with_verdict_slo(slos: &[Threshold]) -> Vec<Threshold> {
    let mut all = slos.to_vec();
    if !all
        .iter()
        .any(|t| t.metric == crate::threshold::Metric::Mismatches)
    {
        all.push("mismatches == 0".parse().expect("a valid threshold"));
    }
    all
}

/// Run the search for `base` and write its result directory under `results`; `progress` gets a
/// line per step.
pub async fn search(
    base: &Loaded,
    spec: &CapacitySpec,
    results: &Path,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Searched, CapacityError> {
    search_observed(base, spec, results, progress, None).await
}

/// [`search`], each step publishing its live metrics into `live` (if given; `--metrics-listen`):
/// a step is a run of its own, so the counters start again at every step (a counter reset to
/// Prometheus) and the offered rate is the step's.
pub async fn search_observed(
    base: &Loaded,
    spec: &CapacitySpec,
    results: &Path,
    progress: &(dyn Fn(&str) + Sync),
    live: Option<&crate::live::LiveMetrics>,
) -> Result<Searched, CapacityError> {
    let cache = crate::fleet::cache::cache_root();
    let started = Instant::now();
    let started_at = time::OffsetDateTime::now_utc();
    let stamp = started_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let dir = results.join(format!(
        "{}-capacity-{}",
        base.scenario.name,
        stamp.replace([':', '-'], "").replace('.', "_")
    ));
    let steps_dir = dir.join("steps");
    std::fs::create_dir_all(&steps_dir)?;
    let slos = with_verdict_slo(&spec.slos);
    let mut search = Search::new(spec.search);
    let mut steps = Vec::new();
    while let Some(rate) = search.next() {
        let loaded = step::step_scenario(base, &slos, rate, &spec.step);
        let outcome = run::run_observed(&loaded, &cache, &|_| {}, live)
            .await
            .map_err(|source| CapacityError::Step { rate, source })?;
        crate::report::write(&steps_dir, &outcome)?;
        let verdict = step::judge(&outcome.summary, &slos, spec.step.close_margin);
        let record = step::record(rate, &outcome.summary, verdict);
        progress(&report::step_line(steps.len() + 1, &record));
        search.record(rate, verdict);
        steps.push(record);
    }
    let capacity = search.capacity();
    let thresholds = spec
        .gates
        .iter()
        .map(|g| g.judge(capacity.capacity_per_s))
        .collect::<Vec<_>>();
    let passed = capacity.capacity_per_s > 0.0 && thresholds.iter().all(|t| t.passed);
    let summary = CapacitySummary {
        schema_version: 1,
        kind: "capacity".into(),
        scenario: base.scenario.name.clone(),
        started_at: stamp,
        slos: slos.iter().map(|t| t.text.clone()).collect(),
        capacity_per_s: capacity.capacity_per_s,
        upper_per_s: capacity.upper_per_s,
        uncertainty_per_s: capacity.uncertainty_per_s(),
        bound: capacity.bound,
        search: SearchParams {
            start_rate: spec.search.start_rate,
            max_rate: spec.search.max_rate,
            resolution: spec.search.resolution,
            warmup_s: spec.step.warmup.as_secs_f64(),
            measure_s: spec.step.measure.as_secs_f64(),
        },
        steps,
        search_s: started.elapsed().as_secs_f64(),
        thresholds,
        passed,
    };
    report::write(&dir, &summary, &slos)?;
    Ok(Searched { summary, dir })
}
