//! Thresholds: `p99(handshake) < 50ms`, `rate(provisioned) >= 500/s`, `mismatches == 0`. Parsed
//! when the scenario loads, evaluated against the run's summary.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::metrics::Phase;

/// What a threshold looks at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Metric {
    /// Devices whose outcome differed from their class's expectation.
    Mismatches,
    /// Devices that failed for reasons other than an expected rejection (timeouts, I/O).
    Errors,
    /// Scheduled starts dropped because the generator was too late.
    Dropped,
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
    /// Right side in base units: µs for latencies, per second for rates, plain counts.
    pub limit: f64,
}

/// A threshold that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ThresholdError(String);

fn parse_metric(s: &str) -> Result<Metric, ThresholdError> {
    let s = s.trim();
    match s {
        "mismatches" => return Ok(Metric::Mismatches),
        "errors" => return Ok(Metric::Errors),
        "dropped" => return Ok(Metric::Dropped),
        "attack_p99_ratio" => return Ok(Metric::AttackP99Ratio),
        "leftover_connections" => return Ok(Metric::LeftoverConnections),
        _ => {}
    }
    let (func, arg) = s
        .strip_suffix(')')
        .and_then(|s| s.split_once('('))
        .ok_or_else(|| ThresholdError(format!("unknown metric {s:?} (mismatches, errors, dropped, attack_p99_ratio, leftover_connections, pNN(phase), max(phase), rate(provisioned|handshakes|devices))")))?;
    let arg = arg.trim();
    if func == "rate" {
        let what = match arg {
            "provisioned" => RateOf::Provisioned,
            "handshakes" => RateOf::Handshakes,
            "devices" => RateOf::Devices,
            other => {
                return Err(ThresholdError(format!(
                    "rate of {other:?}: use provisioned, handshakes or devices"
                )))
            }
        };
        return Ok(Metric::Rate { what });
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
    let phase = arg.parse::<Phase>().map_err(|_| {
        ThresholdError(format!("unknown phase {arg:?} (one of {})", Phase::names()))
    })?;
    Ok(Metric::Quantile { quantile, phase })
}

fn parse_value(metric: &Metric, s: &str) -> Result<f64, ThresholdError> {
    let s = s.trim();
    let bad = || ThresholdError(format!("bad value {s:?}"));
    let number = |t: &str| t.trim().parse::<f64>().map_err(|_| bad());
    match metric {
        Metric::Quantile { .. } => {
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
            Ok(number(num)? * scale)
        }
        Metric::Rate { .. } => number(s.strip_suffix("/s").unwrap_or(s)),
        _ => number(s),
    }
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
        let limit = parse_value(&metric, &text[at + token.len()..])?;
        Ok(Threshold {
            text: text.trim().to_owned(),
            metric,
            op,
            limit,
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
    fn refuses_nonsense() {
        for bad in [
            "p99(handshake) < 50",
            "p98(total) < 1ms",
            "rate(x) > 1",
            "foo == 1",
            "mismatches 0",
            "p99(nope) < 1ms",
        ] {
            assert!(bad.parse::<Threshold>().is_err(), "{bad}");
        }
    }
}
