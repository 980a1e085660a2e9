//! `dps-loadgen ab A.toml B.toml`: two targets (two server builds or two configurations) with
//! the same fleet, run in short interleaved blocks (A B, B A, A B, ... so that drift falls on
//! both sides alike), each metric reported as the ratio B/A with a 95 % interval ([`stats`]). A
//! 5 % change is told from noise when the interval leaves out 1 (and the change is over
//! criterion's 1 % noise threshold, [`stats::NOISE_THRESHOLD`]); an A/A run's interval holds 1.

pub mod report;
pub mod stats;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use stats::{ratio, Ratio};

use crate::metrics::Phase;
use crate::run::{self, RunError};
use crate::scenario::Loaded;
use crate::summary::Summary;

/// Why an A/B could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum AbError {
    /// The two scenarios have different fleets: their figures would not compare.
    #[error("A and B must have the same [fleet] (A: {a}, B: {b})")]
    Fleets {
        /// A's fleet, as JSON.
        a: String,
        /// B's fleet, as JSON.
        b: String,
    },
    /// A block could not be run.
    #[error("block {block} ({side}): {source}")]
    Run {
        /// 1-based.
        block: usize,
        /// `A` or `B`.
        side: &'static str,
        /// Why.
        source: RunError,
    },
    /// A report could not be written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One metric of a block, as the A/B compares it.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// Its name in the report.
    pub name: &'static str,
    /// Higher is better (throughput) or lower is (latency, CPU).
    pub higher_is_better: bool,
    /// Its value in a run's summary (`None`: the run did not measure it).
    pub read: fn(&Summary) -> Option<f64>,
}

fn quantile(s: &Summary, phase: Phase, p99: bool) -> Option<f64> {
    let q = s.latency.get(&phase)?;
    Some((if p99 { q.p99_us } else { q.p50_us }) as f64 / 1000.0)
}

fn cpu(s: &Summary, server: bool) -> Option<f64> {
    let g = s.generator.as_ref()?;
    let side = if server { g.cpu.server } else { g.cpu.process };
    side?.ms_per_provisioned.filter(|v| v.is_finite())
}

/// The metrics an A/B reports.
pub const METRICS: [MetricDef; 8] = [
    MetricDef {
        name: "provisioned_per_s",
        higher_is_better: true,
        read: |s| Some(s.provisioned_per_s),
    },
    MetricDef {
        name: "peak_provisioned_per_s",
        higher_is_better: true,
        read: |s| Some(s.peak_provisioned_per_s),
    },
    MetricDef {
        name: "p50_total_ms",
        higher_is_better: false,
        read: |s| quantile(s, Phase::Total, false),
    },
    MetricDef {
        name: "p99_total_ms",
        higher_is_better: false,
        read: |s| quantile(s, Phase::Total, true),
    },
    MetricDef {
        name: "p50_handshake_ms",
        higher_is_better: false,
        read: |s| quantile(s, Phase::Handshake, false),
    },
    MetricDef {
        name: "p99_handshake_ms",
        higher_is_better: false,
        read: |s| quantile(s, Phase::Handshake, true),
    },
    MetricDef {
        name: "server_cpu_ms_per_provisioned",
        higher_is_better: false,
        read: |s| cpu(s, true),
    },
    MetricDef {
        name: "process_cpu_ms_per_provisioned",
        higher_is_better: false,
        read: |s| cpu(s, false),
    },
];

/// One metric's comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricRatio {
    /// The metric.
    pub metric: String,
    /// Higher is better.
    pub higher_is_better: bool,
    /// A's value per block.
    pub a: Vec<Option<f64>>,
    /// B's value per block.
    pub b: Vec<Option<f64>>,
    /// B/A with its interval (`None`: fewer than two pairs measured it).
    pub ratio: Option<Ratio>,
    /// `better`, `worse` (the interval leaves out 1, the ratio more than 1 % from it) or `same`,
    /// for B against A.
    pub verdict: String,
}

/// `summary.json` of an A/B (schema: `loadgen/ab.schema.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AbSummary {
    /// Schema version.
    pub schema_version: u32,
    /// Always `ab`.
    pub kind: String,
    /// A's scenario name.
    pub a: String,
    /// B's scenario name.
    pub b: String,
    /// Start time, RFC 3339.
    pub started_at: String,
    /// Pairs of blocks run.
    pub pairs: usize,
    /// The order the blocks ran in (`A`, `B`, ...).
    pub order: Vec<String>,
    /// Every metric's ratio.
    pub metrics: Vec<MetricRatio>,
    /// Wrong verdicts in any block (a block with one is not a valid figure).
    pub mismatches: u64,
    /// Wall time, seconds.
    pub duration_s: f64,
}

/// What [`run()`] returns.
#[derive(Debug)]
pub struct AbDone {
    /// The result.
    pub summary: AbSummary,
    /// Where it was written.
    pub dir: PathBuf,
}

/// The order of `pairs` pairs: A B, B A, A B, ...
pub fn order(pairs: usize) -> Vec<bool> {
    (0..pairs)
        .flat_map(|i| {
            if i % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            }
        })
        .collect()
}

/// The verdict of B against A for a metric.
fn verdict(r: Option<&Ratio>, higher_is_better: bool) -> &'static str {
    match r {
        None => "unmeasured",
        Some(r) if !r.differs() => "same",
        Some(r) if (r.ratio > 1.0) == higher_is_better => "better",
        Some(_) => "worse",
    }
}

/// Compare the blocks' summaries (A's and B's, in pair order).
pub fn compare(a: &[Summary], b: &[Summary]) -> Vec<MetricRatio> {
    METRICS
        .iter()
        .map(|m| {
            let av: Vec<Option<f64>> = a.iter().map(m.read).collect();
            let bv: Vec<Option<f64>> = b.iter().map(m.read).collect();
            let pairs: Vec<(f64, f64)> = av
                .iter()
                .zip(&bv)
                .filter_map(|(x, y)| Some(((*x)?, (*y)?)))
                .collect();
            let r = ratio(&pairs);
            MetricRatio {
                metric: m.name.into(),
                higher_is_better: m.higher_is_better,
                verdict: verdict(r.as_ref(), m.higher_is_better).into(),
                a: av,
                b: bv,
                ratio: r,
            }
        })
        .collect()
}

/// Run `pairs` pairs of blocks of `a` and `b` and write the result directory under `results`;
/// `progress` gets a line per block.
pub async fn run(
    a: &Loaded,
    b: &Loaded,
    pairs: usize,
    results: &Path,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<AbDone, AbError> {
    let fleet = |l: &Loaded| serde_json::to_string(&l.scenario.fleet).unwrap_or_default();
    if fleet(a) != fleet(b) {
        return Err(AbError::Fleets {
            a: fleet(a),
            b: fleet(b),
        });
    }
    let started = Instant::now();
    let stamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let dir = results.join(format!(
        "{}-vs-{}-ab-{}",
        a.scenario.name,
        b.scenario.name,
        stamp.replace([':', '-'], "").replace('.', "_")
    ));
    let runs_dir = dir.join("runs");
    std::fs::create_dir_all(&runs_dir)?;
    let (mut sa, mut sb, mut names) = (Vec::new(), Vec::new(), Vec::new());
    let (mut dir_a, mut dir_b) = (PathBuf::new(), PathBuf::new());
    for (block, is_b) in order(pairs).into_iter().enumerate() {
        let (loaded, side) = if is_b { (b, "B") } else { (a, "A") };
        let outcome = run::run(loaded, &|_| {})
            .await
            .map_err(|source| AbError::Run {
                block: block + 1,
                side,
                source,
            })?;
        let run_dir = crate::report::write(&runs_dir, &outcome)?;
        progress(&format!(
            "block {} ({side}, {}): {:.0} provisioned/s, p99 total {:.1} ms, {} errors, {} mismatches",
            block + 1,
            loaded.scenario.name,
            outcome.summary.provisioned_per_s,
            quantile(&outcome.summary, Phase::Total, true).unwrap_or(f64::NAN),
            outcome.summary.errors,
            outcome.summary.mismatches,
        ));
        names.push(side.to_owned());
        if is_b {
            sb.push(outcome.summary);
            dir_b = run_dir;
        } else {
            sa.push(outcome.summary);
            dir_a = run_dir;
        }
    }
    let summary = AbSummary {
        schema_version: 1,
        kind: "ab".into(),
        a: a.scenario.name.clone(),
        b: b.scenario.name.clone(),
        started_at: stamp,
        pairs,
        order: names,
        metrics: compare(&sa, &sb),
        mismatches: sa.iter().chain(&sb).map(|s| s.mismatches).sum(),
        duration_s: started.elapsed().as_secs_f64(),
    };
    let last = sa.last().zip(sb.last()).map(|(la, lb)| report::Last {
        a: (la, dir_a.as_path()),
        b: (lb, dir_b.as_path()),
    });
    report::write(&dir, &summary, last.as_ref())?;
    Ok(AbDone { summary, dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_alternate_so_each_side_goes_first_as_often() {
        assert_eq!(
            order(3),
            vec![false, true, true, false, false, true],
            "A B, B A, A B"
        );
    }

    #[test]
    fn verdicts_follow_the_direction_of_better() {
        let up = Ratio {
            pairs: 4,
            ratio: 1.2,
            low: 1.1,
            high: 1.3,
        };
        assert_eq!(verdict(Some(&up), true), "better");
        assert_eq!(verdict(Some(&up), false), "worse");
        let flat = Ratio { low: 0.95, ..up };
        assert_eq!(verdict(Some(&flat), true), "same");
        assert_eq!(verdict(None, true), "unmeasured");
    }
}
