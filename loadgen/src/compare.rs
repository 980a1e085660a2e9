//! `dps-loadgen compare A B`: the deltas between two runs (throughput, latency per phase, outcome
//! counts), B relative to A. Each argument is a `summary.json` or a result directory holding one.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::summary::Summary;

/// Why a summary could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct CompareError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// Read a `summary.json`, or the one inside a result directory.
pub fn load(path: &Path) -> Result<Summary, CompareError> {
    let file = if path.is_dir() {
        path.join("summary.json")
    } else {
        path.to_owned()
    };
    let text = std::fs::read_to_string(&file).map_err(|e| CompareError {
        path: file.clone(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| CompareError {
        path: file,
        reason: format!("not a dps-loadgen summary: {e}"),
    })
}

fn delta(a: f64, b: f64) -> String {
    if a == 0.0 {
        return if b == 0.0 { "±0".into() } else { "new".into() };
    }
    format!("{:+.1} %", (b - a) / a * 100.0)
}

/// The comparison as a markdown table.
pub fn compare(a: &Summary, b: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {} → {}\n", a.scenario, b.scenario);
    let _ = writeln!(out, "| metric | A | B | B vs A |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let per_device = |s: &Summary| {
        let devices: u64 = s.attempts.per_device.values().sum();
        if devices == 0 {
            1.0
        } else {
            s.attempts.total as f64 / devices as f64
        }
    };
    let rows: [(&str, f64, f64); 10] = [
        ("provisioned/s", a.provisioned_per_s, b.provisioned_per_s),
        ("handshakes/s", a.handshakes_per_s, b.handshakes_per_s),
        (
            "peak provisioned/s (3 s)",
            a.peak_provisioned_per_s,
            b.peak_provisioned_per_s,
        ),
        ("mismatches", a.mismatches as f64, b.mismatches as f64),
        (
            "false accepts",
            a.false_accepts as f64,
            b.false_accepts as f64,
        ),
        (
            "false rejects",
            a.false_rejects as f64,
            b.false_rejects as f64,
        ),
        ("errors", a.errors as f64, b.errors as f64),
        ("dropped", a.dropped as f64, b.dropped as f64),
        ("attempts per device", per_device(a), per_device(b)),
        (
            "goodput while arriving /s",
            a.storm
                .as_ref()
                .map_or(0.0, |s| s.goodput_while_arriving_per_s),
            b.storm
                .as_ref()
                .map_or(0.0, |s| s.goodput_while_arriving_per_s),
        ),
    ];
    for (name, x, y) in rows {
        let _ = writeln!(out, "| {name} | {x:.1} | {y:.1} | {} |", delta(x, y));
    }
    // CPU per provisioned device of each side, when both runs measured it.
    let cpu = |s: &Summary, server: bool| {
        let g = s.generator.as_ref()?;
        let side = if server { g.cpu.server } else { g.cpu.process };
        side?.ms_per_provisioned
    };
    for (name, server) in [
        ("CPU ms per provisioned, generator process", false),
        ("CPU ms per provisioned, server process", true),
    ] {
        if let (Some(x), Some(y)) = (cpu(a, server), cpu(b, server)) {
            let _ = writeln!(out, "| {name} | {x:.3} | {y:.3} | {} |", delta(x, y));
        }
    }
    let secs = |s: &Summary, f: fn(&crate::storm::Storm) -> Option<u64>| {
        s.storm.as_ref().and_then(f).map(|us| us as f64 / 1e6)
    };
    for (label, f) in [
        (
            "time to 99 % s",
            (|st| st.time_to_99_us) as fn(&crate::storm::Storm) -> Option<u64>,
        ),
        ("time to 100 % s", |st| st.time_to_100_us),
    ] {
        if let (Some(x), Some(y)) = (secs(a, f), secs(b, f)) {
            let _ = writeln!(out, "| {label} | {x:.2} | {y:.2} | {} |", delta(x, y));
        }
    }
    for (phase, qa) in &a.latency {
        let Some(qb) = b.latency.get(phase) else {
            continue;
        };
        for (label, x, y) in [("p50", qa.p50_us, qb.p50_us), ("p99", qa.p99_us, qb.p99_us)] {
            let _ = writeln!(
                out,
                "| {label}({phase}) ms | {:.2} | {:.2} | {} |",
                x as f64 / 1000.0,
                y as f64 / 1000.0,
                delta(x as f64, y as f64)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_are_relative_to_a() {
        assert_eq!(delta(100.0, 150.0), "+50.0 %");
        assert_eq!(delta(200.0, 100.0), "-50.0 %");
        assert_eq!(delta(0.0, 0.0), "±0");
        assert_eq!(delta(0.0, 3.0), "new");
    }

    #[test]
    fn garbage_is_not_a_summary() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("summary.json");
        std::fs::write(&f, "{\"hello\": 1}").expect("write");
        let e = load(dir.path()).expect_err("refused");
        assert!(e.to_string().contains("not a dps-loadgen summary"), "{e}");
        assert!(load(&dir.path().join("missing.json")).is_err());
    }
}
