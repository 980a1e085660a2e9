//! The search of `dps-loadgen capacity`, apart from running anything: which rate to try next given
//! the verdicts so far. Rates double from the start rate until a step fails (or the maximum is
//! reached), then the bracket between the highest rate that held and the lowest that failed is
//! halved until it is narrow enough.
//!
//! One step is noisy in both directions on a shared machine (one scheduler stall of 150 ms fails
//! the p99 of an 8-second step), so a rate is decided by runs that agree: a clear pass decides at
//! once; a pass close to an SLO's line, or a failure, is run again; two runs that disagree get a
//! third, and the majority decides. A rate that could not be decided within the step budget does
//! not hold. So neither one lucky step nor one unlucky stall moves the capacity.

use serde::{Deserialize, Serialize};

/// How the search proceeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchSpec {
    /// The first rate tried, per second.
    pub start_rate: f64,
    /// No rate above this is tried, per second.
    pub max_rate: f64,
    /// The search ends when the bracket is at most this fraction of its upper end.
    pub resolution: f64,
    /// At most this many steps in all (repetitions included).
    pub max_steps: usize,
    /// Runs of one rate at most (an undecided rate is repeated up to this; 3 lets a majority
    /// decide two runs that disagree).
    pub max_runs_per_rate: usize,
}

impl Default for SearchSpec {
    fn default() -> Self {
        Self {
            start_rate: 100.0,
            max_rate: 5000.0,
            resolution: 0.05,
            max_steps: 14,
            max_runs_per_rate: 3,
        }
    }
}

/// What one step said about its rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepVerdict {
    /// Every SLO held with room to spare.
    Held,
    /// Every SLO held, one of them close to its line: the rate is run again.
    HeldClose,
    /// An SLO did not hold: the rate is run again to confirm it.
    Failed,
    /// The generator, not the target, limited the step: nothing can be said about the target at
    /// this rate, so it bounds the search from above (bisected below it, as a failure is).
    GeneratorLimited,
}

/// Why the search ended where it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// Bracketed: a rate held and the next one up failed its SLOs.
    Slo,
    /// Every rate up to the maximum held: the capacity is at least that.
    MaxRate,
    /// The generator limited a step above the last rate that held: the capacity is at least that
    /// on this generator.
    Generator,
    /// The step budget ran out before the bracket was narrow.
    Steps,
}

/// Where the search stands: the verdicts so far and the bracket they give.
#[derive(Debug, Clone)]
pub struct Search {
    spec: SearchSpec,
    /// (rate, verdict) in the order run.
    runs: Vec<(f64, StepVerdict)>,
}

/// The search's answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Capacity {
    /// The highest rate its runs decided held, per second (0 when none did).
    pub capacity_per_s: f64,
    /// The lowest rate above it that failed (or was generator-limited); `None` when none did.
    pub upper_per_s: Option<f64>,
    /// Why the search ended there.
    pub bound: Bound,
}

impl Capacity {
    /// Half the bracket, per second: the capacity is `capacity_per_s` + this ± this.
    pub fn uncertainty_per_s(&self) -> Option<f64> {
        self.upper_per_s.map(|u| (u - self.capacity_per_s) / 2.0)
    }
}

/// A rate as tried: whole devices per second, at least one.
fn round(rate: f64) -> f64 {
    rate.round().max(1.0)
}

impl Search {
    /// A search that has run nothing yet.
    pub fn new(spec: SearchSpec) -> Self {
        Self {
            spec,
            runs: Vec::new(),
        }
    }

    /// Count the verdict of a step at `rate`.
    pub fn record(&mut self, rate: f64, verdict: StepVerdict) {
        self.runs.push((rate, verdict));
    }

    /// Steps run so far.
    pub fn steps(&self) -> usize {
        self.runs.len()
    }

    fn runs_of(&self, rate: f64) -> impl Iterator<Item = StepVerdict> + '_ {
        self.runs
            .iter()
            .filter(move |(r, _)| (*r - rate).abs() < 0.5)
            .map(|(_, v)| *v)
    }

    /// What the runs of `rate` so far decide: `Some(true)` held, `Some(false)` did not,
    /// `None` not yet (it is to be run again).
    fn decided(&self, rate: f64) -> Option<bool> {
        let (mut held, mut failed, mut runs) = (0, 0, 0);
        for v in self.runs_of(rate) {
            runs += 1;
            match v {
                StepVerdict::GeneratorLimited => return Some(false),
                StepVerdict::Held | StepVerdict::HeldClose => held += 1,
                StepVerdict::Failed => failed += 1,
            }
        }
        let clear_pass = runs == 1 && self.runs_of(rate).next() == Some(StepVerdict::Held);
        if clear_pass || held >= 2 {
            Some(true)
        } else if failed >= 2 {
            Some(false)
        } else if runs == 0 {
            None
        } else if runs >= self.spec.max_runs_per_rate || self.runs.len() >= self.spec.max_steps {
            // Out of runs: what could not be shown to hold does not.
            Some(false)
        } else {
            None
        }
    }

    /// Did `rate` hold (decided by its runs; an undecided rate does not hold yet)?
    fn held(&self, rate: f64) -> bool {
        self.decided(rate) == Some(true)
    }

    /// The rates run so far, ascending, each once.
    fn rates(&self) -> Vec<f64> {
        let mut rates: Vec<f64> = self.runs.iter().map(|(r, _)| *r).collect();
        rates.sort_by(f64::total_cmp);
        rates.dedup_by(|a, b| (*a - *b).abs() < 0.5);
        rates
    }

    /// The highest rate that held and the lowest rate above it that did not (failed or
    /// generator-limited), with whether that one was generator-limited.
    fn bracket(&self) -> (Option<f64>, Option<(f64, bool)>) {
        let rates = self.rates();
        // The lowest rate that did not hold bounds everything above it: a pass higher up is noise.
        let first_bad = rates.iter().copied().find(|r| !self.held(*r));
        let lower = rates
            .iter()
            .copied()
            .rfind(|r| first_bad.is_none_or(|b| *r < b) && self.held(*r));
        let upper = first_bad.map(|b| {
            let generator = self.runs_of(b).any(|v| v == StepVerdict::GeneratorLimited);
            (b, generator)
        });
        (lower, upper)
    }

    /// The next rate to run, or `None` when the search is over.
    pub fn next(&self) -> Option<f64> {
        if self.runs.len() >= self.spec.max_steps {
            return None;
        }
        // A rate not yet decided is run again before anything else (the lowest first: it bounds
        // the rest).
        if let Some(rate) = self
            .rates()
            .into_iter()
            .find(|r| self.decided(*r).is_none())
        {
            return Some(rate);
        }
        let max = round(self.spec.max_rate);
        match self.bracket() {
            (None, None) => Some(round(self.spec.start_rate).min(max)),
            (Some(lower), None) => {
                if lower >= max {
                    None
                } else {
                    Some(round(lower * 2.0).min(max))
                }
            }
            // A failed or generator-limited rate: bisect below it (a rate the generator keeps up
            // with may lie between).
            (lower, Some((upper, _))) => {
                let lower = lower.unwrap_or(0.0);
                let mid = round((lower + upper) / 2.0);
                let narrow = upper - lower <= self.spec.resolution * upper;
                if narrow || mid <= lower || mid >= upper {
                    None
                } else {
                    Some(mid)
                }
            }
        }
    }

    /// The answer from the verdicts so far.
    pub fn capacity(&self) -> Capacity {
        let (lower, upper) = self.bracket();
        let capacity_per_s = lower.unwrap_or(0.0);
        let bound = match upper {
            Some((_, true)) => Bound::Generator,
            Some((u, false)) => {
                let narrow = u - capacity_per_s <= self.spec.resolution * u
                    || round((capacity_per_s + u) / 2.0) >= u
                    || round((capacity_per_s + u) / 2.0) <= capacity_per_s;
                if narrow {
                    Bound::Slo
                } else {
                    Bound::Steps
                }
            }
            None if capacity_per_s >= round(self.spec.max_rate) => Bound::MaxRate,
            None => Bound::Steps,
        };
        Capacity {
            capacity_per_s,
            upper_per_s: upper.map(|(u, _)| u),
            bound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run a search to its end, each step judged by `verdict`; returns it with the rates tried.
    fn drive(spec: SearchSpec, verdict: impl Fn(f64) -> StepVerdict) -> (Search, Vec<f64>) {
        let mut s = Search::new(spec);
        let mut tried = Vec::new();
        while let Some(rate) = s.next() {
            tried.push(rate);
            s.record(rate, verdict(rate));
            assert!(tried.len() <= spec.max_steps, "runaway: {tried:?}");
        }
        (s, tried)
    }

    /// A target whose true capacity is `cap`: rates above fail, rates within 10 % below it are
    /// close to the line.
    fn threshold(cap: f64) -> impl Fn(f64) -> StepVerdict {
        move |r| {
            if r > cap {
                StepVerdict::Failed
            } else if r > 0.9 * cap {
                StepVerdict::HeldClose
            } else {
                StepVerdict::Held
            }
        }
    }

    #[test]
    fn doubles_then_bisects_to_the_resolution() {
        let spec = SearchSpec {
            start_rate: 100.0,
            max_rate: 10_000.0,
            resolution: 0.05,
            max_steps: 30,
            max_runs_per_rate: 2,
        };
        let (s, tried) = drive(spec, threshold(1130.0));
        assert_eq!(&tried[..5], &[100.0, 200.0, 400.0, 800.0, 1600.0]);
        let c = s.capacity();
        assert_eq!(c.bound, Bound::Slo, "{c:?} {tried:?}");
        assert!(c.capacity_per_s <= 1130.0, "{c:?}");
        let upper = c.upper_per_s.expect("bracketed");
        assert!(
            upper > 1130.0 && upper - c.capacity_per_s <= 0.05 * upper,
            "{c:?}"
        );
        // Every rate close to the line that held was run twice.
        for r in tried.iter().filter(|r| **r > 0.9 * 1130.0 && **r <= 1130.0) {
            assert_eq!(tried.iter().filter(|t| *t == r).count(), 2, "{r} {tried:?}");
        }
    }

    #[test]
    fn a_close_rate_that_fails_its_second_run_does_not_hold() {
        let spec = SearchSpec {
            start_rate: 1000.0,
            max_rate: 1000.0,
            ..SearchSpec::default()
        };
        let mut s = Search::new(spec);
        assert_eq!(s.next(), Some(1000.0));
        s.record(1000.0, StepVerdict::HeldClose);
        assert_eq!(s.next(), Some(1000.0), "repeated");
        s.record(1000.0, StepVerdict::Failed);
        assert_eq!(
            s.next(),
            Some(1000.0),
            "the two runs disagree: a third decides"
        );
        s.record(1000.0, StepVerdict::Failed);
        // Now bisect below it.
        assert_eq!(s.next(), Some(500.0));
        assert_eq!(s.capacity().capacity_per_s, 0.0);
    }

    #[test]
    fn one_unlucky_step_does_not_lower_the_capacity() {
        let spec = SearchSpec {
            start_rate: 100.0,
            max_rate: 400.0,
            ..SearchSpec::default()
        };
        let mut s = Search::new(spec);
        assert_eq!(s.next(), Some(100.0));
        s.record(100.0, StepVerdict::Failed);
        assert_eq!(s.next(), Some(100.0), "a failure is confirmed");
        s.record(100.0, StepVerdict::Held);
        assert_eq!(s.next(), Some(100.0), "one each: a third decides");
        s.record(100.0, StepVerdict::Held);
        assert_eq!(s.next(), Some(200.0), "held by majority: go on doubling");
        s.record(200.0, StepVerdict::Failed);
        s.record(200.0, StepVerdict::Failed);
        assert_eq!(
            s.next(),
            Some(150.0),
            "a confirmed failure bounds the bracket"
        );
        let c = s.capacity();
        assert_eq!((c.capacity_per_s, c.upper_per_s), (100.0, Some(200.0)));
    }

    #[test]
    fn an_undecided_rate_at_the_end_of_the_budget_does_not_hold() {
        let spec = SearchSpec {
            max_steps: 2,
            ..SearchSpec::default()
        };
        let mut s = Search::new(spec);
        s.record(100.0, StepVerdict::Held);
        s.record(200.0, StepVerdict::HeldClose);
        assert_eq!(s.next(), None);
        let c = s.capacity();
        assert_eq!((c.capacity_per_s, c.upper_per_s), (100.0, Some(200.0)));
    }

    #[test]
    fn every_rate_holding_reports_the_maximum() {
        let spec = SearchSpec {
            start_rate: 100.0,
            max_rate: 700.0,
            ..SearchSpec::default()
        };
        let (s, tried) = drive(spec, |_| StepVerdict::Held);
        assert_eq!(tried, vec![100.0, 200.0, 400.0, 700.0]);
        let c = s.capacity();
        assert_eq!((c.capacity_per_s, c.upper_per_s), (700.0, None));
        assert_eq!(c.bound, Bound::MaxRate);
    }

    #[test]
    fn a_generator_limited_step_bounds_the_search_from_above() {
        let (s, tried) = drive(SearchSpec::default(), |r| {
            if r >= 800.0 {
                StepVerdict::GeneratorLimited
            } else {
                StepVerdict::Held
            }
        });
        assert_eq!(
            tried,
            vec![100.0, 200.0, 400.0, 800.0, 600.0, 700.0, 750.0, 775.0]
        );
        let c = s.capacity();
        assert_eq!((c.capacity_per_s, c.bound), (775.0, Bound::Generator));
        assert_eq!(c.upper_per_s, Some(800.0));
    }

    #[test]
    fn a_pass_above_a_failure_is_noise() {
        let mut s = Search::new(SearchSpec::default());
        s.record(400.0, StepVerdict::Held);
        s.record(800.0, StepVerdict::Failed);
        s.record(800.0, StepVerdict::Failed);
        s.record(600.0, StepVerdict::Failed);
        s.record(600.0, StepVerdict::Failed);
        s.record(1000.0, StepVerdict::Held);
        let c = s.capacity();
        assert_eq!((c.capacity_per_s, c.upper_per_s), (400.0, Some(600.0)));
        assert_eq!(s.next(), Some(500.0));
    }

    #[test]
    fn the_step_budget_ends_the_search() {
        let spec = SearchSpec {
            max_steps: 3,
            ..SearchSpec::default()
        };
        let (s, tried) = drive(spec, threshold(10_000.0));
        assert_eq!(tried.len(), 3);
        assert_eq!(s.capacity().bound, Bound::Steps);
    }
}
