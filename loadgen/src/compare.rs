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

/// The result directory of a `compare` argument (the directory itself, or the one holding the
/// `summary.json` named).
fn dir_of(path: &Path) -> &Path {
    if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(Path::new("."))
    }
}

/// Write `compare.md` and `report.html` (the two runs side by side, B against A on top) into a new
/// directory under `results`; returns it. `a_path` and `b_path` are where the runs were read from:
/// their `latency.svg` is inlined when it is there.
pub fn write(
    results: &Path,
    (a_path, a): (&Path, &Summary),
    (b_path, b): (&Path, &Summary),
) -> std::io::Result<PathBuf> {
    use crate::report::html::{self, pair};
    let stamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
        .replace([':', '-'], "")
        .replace('.', "_");
    let dir = results.join(format!("{}-vs-{}-compare-{stamp}", a.scenario, b.scenario));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("compare.md"), compare(a, b))?;
    let rows: Vec<Vec<html::Cell>> = rows(a, b)
        .into_iter()
        .map(|[name, x, y, d]| vec![html::text(name), html::num(x), html::num(y), html::num(d)])
        .collect();
    let top = html::table(&["metric", "A", "B", "B vs A"], &rows);
    let (ta, tb) = (pair::timeline_svg(a), pair::timeline_svg(b));
    let (la, lb) = (
        pair::stored_svg(dir_of(a_path), "latency.svg"),
        pair::stored_svg(dir_of(b_path), "latency.svg"),
    );
    let page = pair::page(
        &format!("dps-loadgen compare: {} → {}", a.scenario, b.scenario),
        &top,
        &side("A", a, (&ta, &la), a_path),
        &side("B", b, (&tb, &lb), b_path),
    );
    std::fs::write(dir.join("report.html"), page)?;
    Ok(dir)
}

/// One column of the comparison page.
fn side<'a>(
    label: &str,
    s: &'a Summary,
    (timeline, latency): (&'a Option<String>, &'a Option<String>),
    from: &Path,
) -> crate::report::html::pair::Side<'a> {
    crate::report::html::pair::Side {
        label: format!("{label}: {} ({})", s.scenario, from.display()),
        summary: s,
        pictures: crate::report::html::run::Pictures {
            timeline: timeline.as_deref(),
            latency: latency.as_deref(),
        },
    }
}

fn delta(a: f64, b: f64) -> String {
    if a == 0.0 {
        return if b == 0.0 { "±0".into() } else { "new".into() };
    }
    format!("{:+.1} %", (b - a) / a * 100.0)
}

/// One line of the comparison: the metric, A's value, B's, and B against A.
pub type Row = [String; 4];

/// The comparison as a markdown table.
pub fn compare(a: &Summary, b: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {} → {}\n", a.scenario, b.scenario);
    let _ = writeln!(out, "| metric | A | B | B vs A |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for [name, x, y, d] in rows(a, b) {
        let _ = writeln!(out, "| {name} | {x} | {y} | {d} |");
    }
    out
}

/// The comparison's lines: throughput, outcomes, CPU per device, storm times, latency per phase.
pub fn rows(a: &Summary, b: &Summary) -> Vec<Row> {
    let mut out = Vec::new();
    count_rows(&mut out, a, b);
    cpu_rows(&mut out, a, b);
    storm_time_rows(&mut out, a, b);
    latency_rows(&mut out, a, b);
    out
}

/// The rates and counts both runs always have, one decimal.
fn count_rows(out: &mut Vec<Row>, a: &Summary, b: &Summary) {
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
        out.push([
            name.into(),
            format!("{x:.1}"),
            format!("{y:.1}"),
            delta(x, y),
        ]);
    }
}

/// Attempts per device of a run (1 when no device was counted).
fn per_device(s: &Summary) -> f64 {
    let devices: u64 = s.attempts.per_device.values().sum();
    if devices == 0 {
        1.0
    } else {
        s.attempts.total as f64 / devices as f64
    }
}

/// CPU per provisioned device of each side, when both runs measured it.
fn cpu_rows(out: &mut Vec<Row>, a: &Summary, b: &Summary) {
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
            out.push([
                name.into(),
                format!("{x:.3}"),
                format!("{y:.3}"),
                delta(x, y),
            ]);
        }
    }
}

/// The storm's times to 99 % and 100 %, when both runs have them.
fn storm_time_rows(out: &mut Vec<Row>, a: &Summary, b: &Summary) {
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
            out.push([
                label.into(),
                format!("{x:.2}"),
                format!("{y:.2}"),
                delta(x, y),
            ]);
        }
    }
}

/// p50 and p99 of every phase both runs measured, in milliseconds.
fn latency_rows(out: &mut Vec<Row>, a: &Summary, b: &Summary) {
    for (phase, qa) in &a.latency {
        let Some(qb) = b.latency.get(phase) else {
            continue;
        };
        for (label, x, y) in [("p50", qa.p50_us, qb.p50_us), ("p99", qa.p99_us, qb.p99_us)] {
            out.push([
                format!("{label}({phase}) ms"),
                format!("{:.2}", x as f64 / 1000.0),
                format!("{:.2}", y as f64 / 1000.0),
                delta(x as f64, y as f64),
            ]);
        }
    }
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
