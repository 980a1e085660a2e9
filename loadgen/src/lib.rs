//! dps-loadgen: thousands of simulated devices against a DPS, every outcome checked against what
//! its class expects, latency recorded in HdrHistograms from the scheduled start. `main.rs` is a
//! thin CLI over [`run_scenario`]; tests call the same function in-process.

pub mod ab;
pub mod attack;
pub mod capacity;
pub mod capture;
pub mod collect;
pub mod compare;
pub mod device;
pub mod executor;
pub mod fidelity;
pub mod fleet;
pub mod judge;
pub mod link;
pub mod live;
pub mod merge;
pub mod metrics;
pub mod report;
pub mod retry;
pub mod rng;
pub mod run;
pub mod saturation;
pub mod scenario;
pub mod segment;
pub mod spec;
pub mod storm;
pub mod summary;
pub mod system;
pub mod target;
pub mod threshold;
pub mod timeline;

use std::path::Path;

/// Process exit codes, a stable interface for CI scripts.
pub mod exit {
    /// No device got a wrong verdict and every threshold held.
    pub const PASS: u8 = 0;
    /// The run completed but a threshold failed (or a device got a wrong verdict).
    pub const THRESHOLD_FAILED: u8 = 99;
    /// The scenario file is invalid.
    pub const BAD_SCENARIO: u8 = 2;
    /// The run could not be carried out (fleet, server, I/O).
    pub const ABORTED: u8 = 3;
}

/// What [`run_scenario`] returns.
#[derive(Debug)]
pub struct Finished {
    /// The run.
    pub outcome: summary::Outcome,
    /// Where the reports went.
    pub results_dir: Option<std::path::PathBuf>,
    /// The exit code for this outcome.
    pub exit_code: u8,
}

/// Why [`run_scenario`] failed before producing a summary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad scenario.
    #[error(transparent)]
    Scenario(#[from] scenario::ScenarioError),
    /// The run could not be carried out.
    #[error(transparent)]
    Run(#[from] run::RunError),
    /// The live metrics endpoint (`--metrics-listen`) could not be bound.
    #[error("cannot serve live metrics on {addr}: {source}")]
    MetricsListen {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Reports could not be written.
    #[error("cannot write reports: {0}")]
    Report(#[from] std::io::Error),
}

impl Error {
    /// The exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Scenario(_) => exit::BAD_SCENARIO,
            _ => exit::ABORTED,
        }
    }
}

/// The exit code of a finished run: it fails on a wrong verdict (`mismatches`) and on a failed
/// threshold; errors (timeouts, busy answers, ...) fail it only through a threshold.
pub fn exit_code(summary: &summary::Summary) -> u8 {
    if summary.passed && summary.mismatches == 0 {
        exit::PASS
    } else {
        exit::THRESHOLD_FAILED
    }
}

/// Load a scenario, run it, write reports under `results_dir` (if given).
pub async fn run_scenario(
    scenario: &Path,
    results_dir: Option<&Path>,
    progress: &(dyn Fn(&run::Progress) + Sync),
) -> Result<Finished, Error> {
    let loaded = scenario::Scenario::load(scenario)?;
    run_loaded(&loaded, results_dir, progress, None).await
}

/// Run a loaded scenario (publishing live metrics into `live`, if given), write reports under
/// `results_dir` (if given).
pub async fn run_loaded(
    loaded: &scenario::Loaded,
    results_dir: Option<&Path>,
    progress: &(dyn Fn(&run::Progress) + Sync),
    live: Option<&live::LiveMetrics>,
) -> Result<Finished, Error> {
    let cache = fleet::cache::cache_root();
    let outcome = run::run_observed(loaded, &cache, progress, live).await?;
    let results_dir = match results_dir {
        Some(dir) => Some(report::write(dir, &outcome)?),
        None => None,
    };
    let exit_code = exit_code(&outcome.summary);
    Ok(Finished {
        outcome,
        results_dir,
        exit_code,
    })
}
