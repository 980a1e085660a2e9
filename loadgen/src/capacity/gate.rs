//! CI gates on a capacity: `capacity >= 600/s` (any of `<`, `<=`, `>`, `>=`), or at most X %
//! below the capacity recorded in a baseline result directory.

use std::path::Path;

use crate::summary::ThresholdResult;
use crate::threshold::Op;

/// One gate on the capacity.
#[derive(Debug, Clone, PartialEq)]
pub enum CapacityGate {
    /// `capacity OP N/s`.
    Absolute {
        /// As written.
        text: String,
        /// The comparison.
        op: Op,
        /// Per second.
        limit: f64,
    },
    /// At most `max_drop` (a fraction) below `baseline_per_s`.
    Baseline {
        /// How it reads in the report.
        text: String,
        /// The baseline's capacity, per second.
        baseline_per_s: f64,
        /// 0.1 = at most 10 % below.
        max_drop: f64,
    },
}

/// A gate that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// Not `capacity OP N/s`.
    #[error("capacity gate {0:?}: expected `capacity >= N/s` (or <, <=, >)")]
    Syntax(String),
    /// The drop is not a percentage in 0..100.
    #[error("max drop {0:?}: expected a percentage such as 10%")]
    Drop(String),
    /// The baseline directory has no capacity summary.
    #[error("baseline {path}: {why}")]
    Baseline {
        /// The file read.
        path: String,
        /// What was wrong.
        why: String,
    },
}

impl std::str::FromStr for CapacityGate {
    type Err = GateError;
    fn from_str(text: &str) -> Result<Self, GateError> {
        let bad = || GateError::Syntax(text.to_owned());
        let rest = text.trim().strip_prefix("capacity").ok_or_else(bad)?.trim();
        let (op, rest) = [("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)]
            .iter()
            .find_map(|(t, op)| rest.strip_prefix(t).map(|r| (*op, r)))
            .ok_or_else(bad)?;
        let number = rest.trim();
        let number = number.strip_suffix("/s").unwrap_or(number).trim();
        let limit: f64 = number.parse().map_err(|_| bad())?;
        if !limit.is_finite() || limit < 0.0 {
            return Err(bad());
        }
        Ok(CapacityGate::Absolute {
            text: text.trim().to_owned(),
            op,
            limit,
        })
    }
}

impl CapacityGate {
    /// At most `max_drop` (e.g. "10%") below the capacity in `dir/summary.json`.
    pub fn baseline(dir: &Path, max_drop: &str) -> Result<Self, GateError> {
        let drop = max_drop
            .trim()
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<f64>().ok())
            .filter(|p| (0.0..100.0).contains(p))
            .ok_or_else(|| GateError::Drop(max_drop.to_owned()))?;
        let path = dir.join("summary.json");
        let fail = |why: String| GateError::Baseline {
            path: path.display().to_string(),
            why,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
        if doc.get("kind").and_then(|k| k.as_str()) != Some("capacity") {
            return Err(fail("not the summary of a capacity search".into()));
        }
        let baseline_per_s = doc
            .get("capacity_per_s")
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| fail("no capacity_per_s".into()))?;
        Ok(CapacityGate::Baseline {
            text: format!(
                "capacity at most {drop}% below the baseline's {baseline_per_s}/s ({})",
                dir.display()
            ),
            baseline_per_s,
            max_drop: drop / 100.0,
        })
    }

    /// The verdict on `capacity_per_s`.
    pub fn judge(&self, capacity_per_s: f64) -> ThresholdResult {
        match self {
            CapacityGate::Absolute { text, op, limit } => ThresholdResult {
                threshold: text.clone(),
                actual: capacity_per_s,
                passed: op.holds(capacity_per_s, *limit),
            },
            CapacityGate::Baseline {
                text,
                baseline_per_s,
                max_drop,
            } => ThresholdResult {
                threshold: text.clone(),
                actual: capacity_per_s,
                passed: capacity_per_s >= baseline_per_s * (1.0 - max_drop),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_gates_parse_and_judge() {
        let g: CapacityGate = "capacity >= 600/s".parse().expect("gate");
        assert!(g.judge(600.0).passed);
        assert!(!g.judge(599.0).passed);
        let g: CapacityGate = "capacity < 10".parse().expect("gate");
        assert!(g.judge(9.0).passed);
        for bad in [
            "capacity",
            "rate >= 5/s",
            "capacity >= fast",
            "capacity >= -1/s",
        ] {
            assert!(bad.parse::<CapacityGate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_baseline_gate_allows_the_drop_and_no_more() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            dir.path().join("summary.json"),
            r#"{"kind": "capacity", "capacity_per_s": 1000.0}"#,
        )
        .expect("write");
        let g = CapacityGate::baseline(dir.path(), "10%").expect("gate");
        assert!(g.judge(900.0).passed);
        assert!(!g.judge(899.0).passed);
        assert!(CapacityGate::baseline(dir.path(), "ten").is_err());
        std::fs::write(dir.path().join("summary.json"), r#"{"scenario": "x"}"#).expect("write");
        assert!(
            CapacityGate::baseline(dir.path(), "10%").is_err(),
            "a run's summary"
        );
    }
}
