//! The statistics of an A/B: the ratio B/A of a metric over paired blocks, as the geometric mean
//! of the pairs' ratios with a Student-t confidence interval on their logarithms. Pairing each B
//! block with the A block beside it cancels the drift of a shared machine (the other processes,
//! the thermal state) that a comparison of two separate runs takes for a difference.

use serde::{Deserialize, Serialize};

/// Two-sided 95 % quantiles of Student's t for 1..=30 degrees of freedom.
const T_975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// Changes of the ratio within this share of 1 are noise whatever their interval, as criterion's
/// default `noise_threshold` (0.01) has it: on a shared machine a systematic drift of a few tenths
/// of a percent between two otherwise identical sides (which block ran after which) is common and
/// not what an A/B is for, and eight metrics at 95 % each would otherwise call one of them changed
/// in about a third of A/A runs.
pub const NOISE_THRESHOLD: f64 = 0.01;

/// t quantile for `df` degrees of freedom (the normal's 1.96 beyond the table).
fn t_975(df: usize) -> f64 {
    T_975.get(df.wrapping_sub(1)).copied().unwrap_or(1.96)
}

/// The ratio B/A of one metric with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// Pairs that had the metric on both sides (and positive).
    pub pairs: usize,
    /// Geometric mean of the pairs' B/A.
    pub ratio: f64,
    /// Lower end of the 95 % interval.
    pub low: f64,
    /// Upper end of the 95 % interval.
    pub high: f64,
}

impl Ratio {
    /// The interval leaves out 1 and the ratio is more than [`NOISE_THRESHOLD`] from it: B
    /// differs from A beyond the noise of these pairs.
    pub fn differs(&self) -> bool {
        (self.low > 1.0 || self.high < 1.0) && (self.ratio - 1.0).abs() > NOISE_THRESHOLD
    }
}

/// The ratio of `pairs` (a, b) with its interval; `None` with fewer than two usable pairs (a
/// single pair says nothing about the noise). Pairs with a value that is not positive and finite
/// are left out.
pub fn ratio(pairs: &[(f64, f64)]) -> Option<Ratio> {
    let logs: Vec<f64> = pairs
        .iter()
        .filter(|(a, b)| a.is_finite() && b.is_finite() && *a > 0.0 && *b > 0.0)
        .map(|(a, b)| (b / a).ln())
        .collect();
    let n = logs.len();
    if n < 2 {
        return None;
    }
    let mean = logs.iter().sum::<f64>() / n as f64;
    let var = logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t_975(n - 1) * (var / n as f64).sqrt();
    Some(Ratio {
        pairs: n,
        ratio: mean.exp(),
        low: (mean - half).exp(),
        high: (mean + half).exp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_sides_give_one_and_a_shift_is_found() {
        let same = [(100.0, 101.0), (98.0, 97.0), (103.0, 103.5), (99.0, 98.0)];
        let r = ratio(&same).expect("ratio");
        assert!((r.ratio - 1.0).abs() < 0.02 && !r.differs(), "{r:?}");
        let halved = [(100.0, 51.0), (98.0, 48.0), (103.0, 50.0), (99.0, 50.5)];
        let r = ratio(&halved).expect("ratio");
        assert!(
            (r.ratio - 0.5).abs() < 0.02 && r.differs() && r.high < 0.55,
            "{r:?}"
        );
    }

    #[test]
    fn a_significant_change_within_the_noise_threshold_is_the_same() {
        // A steady 0.5 % difference: the interval leaves out 1, but it is noise.
        let tiny = [
            (100.0, 100.5),
            (98.0, 98.49),
            (103.0, 103.52),
            (99.0, 99.49),
        ];
        let r = ratio(&tiny).expect("ratio");
        assert!(r.low > 1.0, "{r:?}");
        assert!(!r.differs(), "{r:?}");
        // A steady 3 %: found.
        let small = [(100.0, 103.0), (98.0, 100.9), (103.0, 106.1), (99.0, 102.0)];
        assert!(ratio(&small).expect("ratio").differs());
    }

    #[test]
    fn the_interval_matches_a_hand_computation() {
        // logs: ln 1.1, ln 0.9, ln 1.0 → mean ≈ -0.00178, sd ≈ 0.1003, t(2) = 4.303.
        let r = ratio(&[(1.0, 1.1), (1.0, 0.9), (1.0, 1.0)]).expect("ratio");
        let mean = ((1.1f64).ln() + (0.9f64).ln()) / 3.0;
        let sd = (((1.1f64).ln() - mean).powi(2) + ((0.9f64).ln() - mean).powi(2) + mean.powi(2))
            .sqrt()
            / 2f64.sqrt();
        let half = 4.303 * sd / 3f64.sqrt();
        assert!((r.low - (mean - half).exp()).abs() < 1e-12);
        assert!((r.high - (mean + half).exp()).abs() < 1e-12);
        assert_eq!(r.pairs, 3);
    }

    #[test]
    fn too_few_or_unusable_pairs_give_nothing() {
        assert_eq!(ratio(&[(1.0, 2.0)]), None);
        assert_eq!(ratio(&[(0.0, 2.0), (f64::NAN, 1.0), (1.0, 1.0)]), None);
    }
}
