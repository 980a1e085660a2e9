//! Thresholds: `p99(handshake) < 50ms`, `rate(provisioned) >= 500/s`, `mismatches == 0`,
//! `false_accepts == 0`, `errors < 1%` (of the devices), `errors(timeout) == 0`,
//! `time_to(99%) <= 15s`, `max(attempts) <= 5`, `trough_ratio >= 0.5`, `recovered == 1`. Parsed
//! when the scenario loads, evaluated against the run's summary.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::metrics::Phase;

/// What a threshold looks at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Metric {
    /// Devices that got a wrong verdict (false accepts, false rejects, other wrong verdicts).
    Mismatches,
    /// Devices that got in though their class must be refused.
    FalseAccepts,
    /// Devices refused with a verdict though their class must get in.
    FalseRejects,
    /// Devices that ended in an error rather than a verdict (timeouts, resets, busy, ...).
    Errors,
    /// Devices that ended in an error of this kind (a failure kind, or `strict`).
    ErrorsOf {
        /// The kind's name.
        error: &'static str,
    },
    /// Devices provisioned as expected.
    Provisioned,
    /// Scheduled starts dropped because the generator was too late.
    Dropped,
    /// Time from the first scheduled start until this fraction of the devices that must get in
    /// had got in, µs (`time_to(99%)`).
    TimeTo {
        /// 0.0..=1.0
        fraction: f64,
    },
    /// A quantile of the attempts per device (`p99(attempts)`, `max(attempts)`).
    Attempts {
        /// 0.0..=1.0
        quantile: f64,
    },
    /// The lowest second of goodput between the peak and the last arrival, over the peak.
    TroughRatio,
    /// 1 when goodput recovered after the arrivals, else 0 (see [`crate::storm::Storm`]).
    Recovered,
    /// A latency quantile of a phase, in microseconds (`max` is quantile 1.0).
    Quantile {
        /// 0.0..=1.0
        quantile: f64,
        /// The phase.
        phase: Phase,
    },
    /// p99 of the total latency of devices started during the attacks over that of devices
    /// started before them.
    AttackP99Ratio,
    /// Device connections the server still had open after the devices and attackers were gone.
    LeftoverConnections,
    /// Completions per second over the run.
    Rate {
        /// What is counted.
        what: RateOf,
    },
}

/// Things whose rate can be bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateOf {
    /// Devices that finished the whole flow as expected.
    Provisioned,
    /// Completed TLS handshakes (accepted or rejected as expected).
    Handshakes,
    /// Devices finished, whatever the outcome.
    Devices,
    /// Devices provisioned as expected while devices were arriving (first to last scheduled
    /// start).
    Goodput,
}

/// Comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
    /// `==`
    #[serde(rename = "==")]
    Eq,
}

impl Op {
    /// Does `actual op limit` hold?
    pub fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Op::Lt => actual < limit,
            Op::Le => actual <= limit,
            Op::Gt => actual > limit,
            Op::Ge => actual >= limit,
            Op::Eq => (actual - limit).abs() < f64::EPSILON,
        }
    }
}

/// One parsed threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    /// As written.
    pub text: String,
    /// Left side.
    pub metric: Metric,
    /// Operator.
    pub op: Op,
    /// Right side in base units: µs for latencies, per second for rates, plain counts, or a
    /// percentage of the devices when `percent`.
    pub limit: f64,
    /// The limit is a percentage of the devices scheduled (`errors < 1%`; counts only).
    pub percent: bool,
}

impl Metric {
    /// A count of devices (a percentage of the devices makes sense as its limit).
    pub fn is_count(self) -> bool {
        matches!(
            self,
            Metric::Mismatches
                | Metric::FalseAccepts
                | Metric::FalseRejects
                | Metric::Errors
                | Metric::ErrorsOf { .. }
                | Metric::Provisioned
                | Metric::Dropped
        )
    }
}

/// The kinds `errors(kind)` takes: the failure kinds and `strict`.
pub const ERROR_KINDS: [&str; 9] = [
    "timeout", "connect", "tls", "reset", "busy", "protocol", "io", "device", "strict",
];

/// `99%` or `0.99` as a fraction.
fn fraction(arg: &str) -> Option<f64> {
    let arg = arg.trim();
    let f = match arg.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok()? / 100.0,
        None => arg.parse::<f64>().ok()?,
    };
    (f > 0.0 && f <= 1.0).then_some(f)
}

/// A threshold that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ThresholdError(String);

fn parse_metric(s: &str) -> Result<Metric, ThresholdError> {
    let s = s.trim();
    match s {
        "mismatches" => return Ok(Metric::Mismatches),
        "false_accepts" => return Ok(Metric::FalseAccepts),
        "false_rejects" => return Ok(Metric::FalseRejects),
        "errors" => return Ok(Metric::Errors),
        "provisioned" => return Ok(Metric::Provisioned),
        "dropped" => return Ok(Metric::Dropped),
        "attack_p99_ratio" => return Ok(Metric::AttackP99Ratio),
        "leftover_connections" => return Ok(Metric::LeftoverConnections),
        "trough_ratio" => return Ok(Metric::TroughRatio),
        "recovered" => return Ok(Metric::Recovered),
        _ => {}
    }
    let (func, arg) = s
        .strip_suffix(')')
        .and_then(|s| s.split_once('('))
        .ok_or_else(|| ThresholdError(format!("unknown metric {s:?} (mismatches, false_accepts, false_rejects, errors, errors(kind), provisioned, dropped, attack_p99_ratio, leftover_connections, trough_ratio, recovered, pNN(phase), max(phase), pNN(attempts), max(attempts), time_to(NN%), rate(provisioned|handshakes|devices|goodput))")))?;
    let arg = arg.trim();
    if func == "rate" {
        let what = match arg {
            "provisioned" => RateOf::Provisioned,
            "handshakes" => RateOf::Handshakes,
            "devices" => RateOf::Devices,
            "goodput" => RateOf::Goodput,
            other => {
                return Err(ThresholdError(format!(
                    "rate of {other:?}: use provisioned, handshakes, devices or goodput"
                )))
            }
        };
        return Ok(Metric::Rate { what });
    }
    if func == "errors" {
        let kind = ERROR_KINDS.into_iter().find(|k| *k == arg).ok_or_else(|| {
            ThresholdError(format!(
                "errors of {arg:?}: one of {}",
                ERROR_KINDS.join(", ")
            ))
        })?;
        return Ok(Metric::ErrorsOf { error: kind });
    }
    if func == "time_to" {
        let fraction = fraction(arg).ok_or_else(|| {
            ThresholdError(format!(
                "time_to({arg}): a share of the fleet above 0 and at most 100%, e.g. 99%"
            ))
        })?;
        return Ok(Metric::TimeTo { fraction });
    }
    let quantile = match func {
        "max" => 1.0,
        "p50" => 0.5,
        "p90" => 0.9,
        "p95" => 0.95,
        "p99" => 0.99,
        "p999" => 0.999,
        other => return Err(ThresholdError(format!("unknown function {other:?}"))),
    };
    if arg == "attempts" {
        return Ok(Metric::Attempts { quantile });
    }
    let phase = arg.parse::<Phase>().map_err(|_| {
        ThresholdError(format!("unknown phase {arg:?} (one of {})", Phase::names()))
    })?;
    Ok(Metric::Quantile { quantile, phase })
}

/// The limit in base units, and whether it is a percentage of the devices.
fn parse_value(metric: &Metric, s: &str) -> Result<(f64, bool), ThresholdError> {
    let s = s.trim();
    let bad = || ThresholdError(format!("bad value {s:?}"));
    let number = |t: &str| t.trim().parse::<f64>().map_err(|_| bad());
    if let Some(p) = s.strip_suffix('%') {
        if !metric.is_count() {
            return Err(ThresholdError(format!(
                "{s:?}: a percentage of the devices only bounds a count of devices"
            )));
        }
        return Ok((number(p)?, true));
    }
    let value = match metric {
        Metric::Quantile { .. } | Metric::TimeTo { .. } => {
            let (num, scale) = if let Some(n) = s.strip_suffix("us") {
                (n, 1.0)
            } else if let Some(n) = s.strip_suffix("ms") {
                (n, 1_000.0)
            } else if let Some(n) = s.strip_suffix('s') {
                (n, 1_000_000.0)
            } else {
                return Err(ThresholdError(format!(
                    "{s:?}: a latency needs a unit (us, ms, s)"
                )));
            };
            number(num)? * scale
        }
        Metric::Rate { .. } => number(s.strip_suffix("/s").unwrap_or(s))?,
        _ => number(s)?,
    };
    Ok((value, false))
}

impl FromStr for Threshold {
    type Err = ThresholdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let ops = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        let (at, token, op) = ops
            .iter()
            .filter_map(|(t, op)| text.find(t).map(|i| (i, *t, *op)))
            .min_by_key(|(i, t, _)| (*i, std::cmp::Reverse(t.len())))
            .ok_or_else(|| ThresholdError("no comparison operator (<, <=, >, >=, ==)".into()))?;
        let metric = parse_metric(&text[..at])?;
        let (limit, percent) = parse_value(&metric, &text[at + token.len()..])?;
        Ok(Threshold {
            text: text.trim().to_owned(),
            metric,
            op,
            limit,
            percent,
        })
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let t: Threshold = "p99(handshake) < 50ms".parse().expect("p99");
        assert_eq!(
            t.metric,
            Metric::Quantile {
                quantile: 0.99,
                phase: Phase::Handshake
            }
        );
        assert_eq!((t.op, t.limit), (Op::Lt, 50_000.0));
        let t: Threshold = "rate(provisioned) >= 500/s".parse().expect("rate");
        assert_eq!((t.op, t.limit), (Op::Ge, 500.0));
        let t: Threshold = "mismatches == 0".parse().expect("mismatches");
        assert_eq!(t.metric, Metric::Mismatches);
        let t: Threshold = "max(total)<=2s".parse().expect("max");
        assert_eq!((t.op, t.limit), (Op::Le, 2_000_000.0));
    }

    #[test]
    fn parses_outcome_storm_and_retry_thresholds() {
        let t: Threshold = "errors < 1%".parse().expect("percent");
        assert_eq!(
            (t.metric, t.op, t.limit, t.percent),
            (Metric::Errors, Op::Lt, 1.0, true)
        );
        let t: Threshold = "errors(timeout) == 0".parse().expect("per kind");
        assert_eq!(t.metric, Metric::ErrorsOf { error: "timeout" });
        assert!(!t.percent);
        let t: Threshold = "errors(strict) <= 0.5%".parse().expect("strict");
        assert_eq!(
            (t.metric, t.limit),
            (Metric::ErrorsOf { error: "strict" }, 0.5)
        );
        for (text, metric) in [
            ("false_accepts == 0", Metric::FalseAccepts),
            ("false_rejects == 0", Metric::FalseRejects),
            ("provisioned >= 100%", Metric::Provisioned),
            ("trough_ratio >= 0.5", Metric::TroughRatio),
            ("recovered == 1", Metric::Recovered),
            ("max(attempts) <= 5", Metric::Attempts { quantile: 1.0 }),
            ("p99(attempts) <= 3", Metric::Attempts { quantile: 0.99 }),
            (
                "rate(goodput) >= 800/s",
                Metric::Rate {
                    what: RateOf::Goodput,
                },
            ),
        ] {
            let t: Threshold = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(t.metric, metric, "{text}");
        }
        let t: Threshold = "time_to(99%) <= 13s".parse().expect("time_to");
        assert_eq!(t.metric, Metric::TimeTo { fraction: 0.99 });
        assert_eq!(t.limit, 13_000_000.0);
        let t: Threshold = "time_to(0.5) < 500ms".parse().expect("time_to fraction");
        assert_eq!(t.metric, Metric::TimeTo { fraction: 0.5 });
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "p99(handshake) < 50",
            "p98(total) < 1ms",
            "rate(x) > 1",
            "foo == 1",
            "mismatches 0",
            "p99(nope) < 1ms",
            "errors(slow) == 0",
            "time_to(0%) < 1s",
            "time_to(150%) < 1s",
            "time_to(99%) < 10",
            "p99(handshake) < 1%",
            "rate(provisioned) > 5%",
        ] {
            assert!(bad.parse::<Threshold>().is_err(), "{bad}");
        }
    }
}
