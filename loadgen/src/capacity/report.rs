//! The reports of a capacity search: `summary.json`, `summary.md` (the capacity, its bracket and
//! the table of steps), `steps.svg` (offered rate against p99 and errors, with the SLO lines) and
//! `report.html` (all of it on one self-contained page).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::search::{Bound, StepVerdict};
use super::step::StepRecord;
use super::CapacitySummary;
use crate::metrics::Phase;
use crate::threshold::{Metric, Threshold};

/// Write `summary.json`, `summary.md`, `steps.svg` and `report.html` into `dir`.
pub fn write(dir: &Path, s: &CapacitySummary, slos: &[Threshold]) -> std::io::Result<()> {
    let json = serde_json::to_string_pretty(s).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("summary.json"), json + "\n")?;
    std::fs::write(dir.join("summary.md"), markdown(s))?;
    let svg = steps_svg(s, slos).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("steps.svg"), &svg)?;
    std::fs::write(dir.join("report.html"), page(s, &svg))?;
    Ok(())
}

/// `report.html`: the capacity and its verdict, the gates, the step chart and the steps' table.
pub fn page(s: &CapacitySummary, steps_svg: &str) -> String {
    use crate::report::html::{self, num, text, Cell};
    let title = format!("dps-loadgen capacity: {}", s.scenario);
    let mut body = format!("<h1>{}</h1>\n", html::escape(&title));
    let mut verdict = html::verdict(s.passed, &headline(s));
    verdict.push_str(&html::para(&format!(
        "Started {}; {} steps in {:.0} s; each step {:.0} s warm-up (not counted) + {:.0} s measured \
         at a constant arrival rate. Every step's own report is in its directory under steps/.",
        s.started_at,
        s.steps.len(),
        s.search_s,
        s.search.warmup_s,
        s.search.measure_s
    )));
    body.push_str(&html::section("Verdict", &verdict));
    let gates: Vec<Vec<Cell>> = s
        .thresholds
        .iter()
        .map(|t| {
            vec![
                text(&t.threshold),
                num(format!("{:.0}", t.actual)),
                text(if t.passed { "held" } else { "FAILED" }),
            ]
        })
        .collect();
    body.push_str(&html::section(
        "SLOs and gates",
        &format!(
            "{}{}",
            html::para(&format!("SLOs: {}.", s.slos.join(", "))),
            html::table(&["gate", "measured /s", "verdict"], &gates)
        ),
    ));
    body.push_str(&html::section(
        "Steps",
        &format!(
            "{}{}",
            html::figure(
                steps_svg,
                "offered rate against p99 and errors, with the SLO lines"
            ),
            steps_table(s)
        ),
    ));
    html::page(&title, &body)
}

fn steps_table(s: &CapacitySummary) -> String {
    use crate::report::html::{num, table, text, Cell};
    let opt = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1}"));
    let rows: Vec<Vec<Cell>> = s
        .steps
        .iter()
        .enumerate()
        .map(|(i, r)| {
            vec![
                num(i + 1),
                num(format!("{:.0}", r.rate_per_s)),
                text(verdict_name(r.verdict)),
                num(format!("{:.0}", r.provisioned_per_s)),
                num(opt(r.p50_total_ms)),
                num(opt(r.p99_total_ms)),
                num(format!("{} ({:.2}%)", r.errors, r.errors_pct)),
                num(r.dropped),
                text(r.limited_by.map_or("-", |l| l.as_str())),
            ]
        })
        .collect();
    table(
        &[
            "#",
            "rate/s",
            "verdict",
            "provisioned/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "dropped",
            "limited by",
        ],
        &rows,
    )
}

fn verdict_name(v: StepVerdict) -> &'static str {
    match v {
        StepVerdict::Held => "held",
        StepVerdict::HeldClose => "held (close)",
        StepVerdict::Failed => "failed",
        StepVerdict::GeneratorLimited => "generator-limited",
    }
}

/// One line per finished step, for the console.
pub fn step_line(n: usize, r: &StepRecord) -> String {
    let failed: Vec<&str> = r
        .slos
        .iter()
        .filter(|t| !t.passed)
        .map(|t| t.threshold.as_str())
        .collect();
    format!(
        "step {n}: {:.0}/s {}: {:.0} provisioned/s, p99 {:.1} ms, errors {:.2}%{}",
        r.rate_per_s,
        verdict_name(r.verdict),
        r.provisioned_per_s,
        r.p99_total_ms.unwrap_or(f64::NAN),
        r.errors_pct,
        if failed.is_empty() {
            String::new()
        } else {
            format!(" (failed: {})", failed.join(", "))
        }
    )
}

/// The capacity in one sentence.
pub fn headline(s: &CapacitySummary) -> String {
    let bracket = match (s.upper_per_s, s.uncertainty_per_s) {
        (Some(u), Some(h)) => format!(" (bracket {:.0}-{:.0}/s, ±{h:.0}/s)", s.capacity_per_s, u),
        _ => String::new(),
    };
    let why = match s.bound {
        Bound::Slo => "the next rate up broke an SLO",
        Bound::MaxRate => "every rate up to the maximum held: the capacity is at least this",
        Bound::Generator => "the generator limited the next step: at least this, on this generator",
        Bound::Steps => "the step budget ran out before the bracket was narrow",
    };
    format!(
        "capacity {:.0}/s{bracket} within {}; {why}",
        s.capacity_per_s,
        s.slos.join(", ")
    )
}

/// `summary.md`.
pub fn markdown(s: &CapacitySummary) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Capacity: {}\n", s.scenario);
    let _ = writeln!(md, "**{}**\n", headline(s));
    let _ = writeln!(
        md,
        "- Started {}; {} steps in {:.0} s; each step {:.0} s warm-up (not counted) + {:.0} s \
         measured at a constant arrival rate.",
        s.started_at,
        s.steps.len(),
        s.search_s,
        s.search.warmup_s,
        s.search.measure_s
    );
    for t in &s.thresholds {
        let _ = writeln!(
            md,
            "- Gate `{}`: {} ({:.0}/s)",
            t.threshold,
            if t.passed { "held" } else { "FAILED" },
            t.actual
        );
    }
    let _ = writeln!(md, "\n![steps](steps.svg)\n");
    let _ = writeln!(
        md,
        "| # | rate/s | verdict | provisioned/s | p50 ms | p99 ms | errors | dropped | limited by |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for (i, r) in s.steps.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {} | {:.0} | {:.1} | {:.1} | {} ({:.2}%) | {} | {} |",
            i + 1,
            r.rate_per_s,
            verdict_name(r.verdict),
            r.provisioned_per_s,
            r.p50_total_ms.unwrap_or(f64::NAN),
            r.p99_total_ms.unwrap_or(f64::NAN),
            r.errors,
            r.errors_pct,
            r.dropped,
            r.limited_by.map_or("-", |l| l.as_str()),
        );
    }
    md
}

/// A limit of a latency SLO on the total, in ms.
fn total_latency_limit(slos: &[Threshold]) -> Option<(String, f64)> {
    slos.iter().find_map(|t| match t.metric {
        Metric::Quantile {
            phase: Phase::Total,
            ..
        } => Some((t.text.clone(), t.limit / 1000.0)),
        _ => None,
    })
}

/// A limit of an errors SLO given as a percentage.
fn errors_limit(slos: &[Threshold]) -> Option<(String, f64)> {
    slos.iter().find_map(|t| match t.metric {
        Metric::Errors if t.percent => Some((t.text.clone(), t.limit)),
        _ => None,
    })
}

/// The colour of a step's dot, by verdict.
fn verdict_color(v: StepVerdict) -> RGBColor {
    match v {
        StepVerdict::Held => RGBColor(0x2e, 0x7d, 0x32),
        StepVerdict::HeldClose => RGBColor(0xef, 0x6c, 0x00),
        StepVerdict::Failed => RGBColor(0xc6, 0x28, 0x28),
        StepVerdict::GeneratorLimited => RGBColor(0x75, 0x75, 0x75),
    }
}

/// The step chart: p99 (and p50) of the total against the offered rate above, errors below, each
/// step a dot coloured by its verdict, the SLO limits and the capacity as lines.
pub fn steps_svg(s: &CapacitySummary, slos: &[Threshold]) -> Result<String, String> {
    let axes = Axes::of(s, slos);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (960, 720)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let root = root
            .titled(&format!("capacity: {}", s.scenario), ("sans-serif", 22))
            .map_err(|e| err(&e))?;
        let (top, bottom) = root.split_vertically(440);
        latency_panel(&top, s, &axes)?;
        errors_panel(&bottom, s, &axes)?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(out)
}

/// A plotting error, in words.
fn err(e: &dyn std::fmt::Display) -> String {
    e.to_string()
}

/// A value to plot: a missing or infinite one at 0.
fn finite(v: Option<f64>) -> f64 {
    v.filter(|v| v.is_finite()).unwrap_or(0.0)
}

/// The charts' ranges (room above the highest step or SLO limit) and the SLO limits drawn.
struct Axes {
    max_rate: f64,
    max_ms: f64,
    max_err: f64,
    latency_limit: Option<(String, f64)>,
    error_limit: Option<(String, f64)>,
}

impl Axes {
    /// The ranges that fit every step of `s` and the limits of `slos`.
    fn of(s: &CapacitySummary, slos: &[Threshold]) -> Self {
        let latency_limit = total_latency_limit(slos);
        let error_limit = errors_limit(slos);
        let max_ms = s
            .steps
            .iter()
            .map(|r| finite(r.p99_total_ms))
            .chain(latency_limit.iter().map(|(_, l)| *l))
            .fold(1.0, f64::max)
            * 1.3;
        let max_err = s
            .steps
            .iter()
            .map(|r| r.errors_pct)
            .chain(error_limit.iter().map(|(_, l)| *l))
            .fold(0.1, f64::max)
            * 1.3;
        Axes {
            max_rate: s.steps.iter().map(|r| r.rate_per_s).fold(1.0, f64::max) * 1.1,
            max_ms,
            max_err,
            latency_limit,
            error_limit,
        }
    }
}

/// The upper chart: p99 and p50 of the total by rate, the latency SLO, the capacity.
fn latency_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    s: &CapacitySummary,
    axes: &Axes,
) -> Result<(), String> {
    let (max_rate, max_ms) = (axes.max_rate, axes.max_ms);
    let mut chart = ChartBuilder::on(area)
        .margin(16)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_rate, 0.0..max_ms)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .y_desc("total latency, ms")
        .draw()
        .map_err(|e| err(&e))?;
    let mut by_rate: Vec<&StepRecord> = s.steps.iter().collect();
    by_rate.sort_by(|a, b| a.rate_per_s.total_cmp(&b.rate_per_s));
    for (name, pick, color) in [
        (
            "p99",
            (|r: &StepRecord| r.p99_total_ms) as fn(&StepRecord) -> Option<f64>,
            BLUE,
        ),
        ("p50", |r: &StepRecord| r.p50_total_ms, CYAN),
    ] {
        chart
            .draw_series(LineSeries::new(
                by_rate.iter().map(|r| (r.rate_per_s, finite(pick(r)))),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .draw_series(s.steps.iter().map(|r| {
            Circle::new(
                (r.rate_per_s, finite(r.p99_total_ms)),
                5,
                verdict_color(r.verdict).filled(),
            )
        }))
        .map_err(|e| err(&e))?;
    if let Some((text, limit)) = &axes.latency_limit {
        chart
            .draw_series(LineSeries::new(
                [(0.0, *limit), (max_rate, *limit)],
                RED.stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label(format!("SLO {text}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    }
    chart
        .draw_series(LineSeries::new(
            [(s.capacity_per_s, 0.0), (s.capacity_per_s, max_ms)],
            BLACK.stroke_width(1),
        ))
        .map_err(|e| err(&e))?
        .label(format!("capacity {:.0}/s", s.capacity_per_s))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))
}

/// The lower chart: errors by rate and the errors SLO.
fn errors_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    s: &CapacitySummary,
    axes: &Axes,
) -> Result<(), String> {
    let mut chart = ChartBuilder::on(area)
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..axes.max_rate, 0.0..axes.max_err)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("offered rate, devices/s")
        .y_desc("errors, % of devices")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(s.steps.iter().map(|r| {
            Circle::new(
                (r.rate_per_s, r.errors_pct),
                5,
                verdict_color(r.verdict).filled(),
            )
        }))
        .map_err(|e| err(&e))?;
    if let Some((text, limit)) = &axes.error_limit {
        chart
            .draw_series(LineSeries::new(
                [(0.0, *limit), (axes.max_rate, *limit)],
                RED.stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label(format!("SLO {text}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::SearchParams;
    use crate::summary::ThresholdResult;

    fn step(rate: f64, verdict: StepVerdict, p99: f64, errors_pct: f64) -> StepRecord {
        StepRecord {
            rate_per_s: rate,
            verdict,
            provisioned_per_s: rate,
            devices: (rate * 8.0) as u64,
            errors: (rate * 8.0 * errors_pct / 100.0) as u64,
            errors_pct,
            mismatches: 0,
            dropped: 0,
            p50_total_ms: Some(p99 / 2.0),
            p99_total_ms: Some(p99),
            limited_by: None,
            slos: vec![ThresholdResult {
                threshold: "p99(total) < 50ms".into(),
                actual: p99 * 1000.0,
                passed: p99 < 50.0,
            }],
            duration_s: 10.0,
        }
    }

    #[test]
    fn the_report_shows_the_capacity_the_steps_and_the_slo_lines() {
        let slos: Vec<Threshold> = ["p99(total) < 50ms", "errors < 1%"]
            .iter()
            .map(|t| t.parse().expect("slo"))
            .collect();
        let s = CapacitySummary {
            schema_version: 1,
            kind: "capacity".into(),
            scenario: "cap".into(),
            started_at: "2026-12-03T10:00:00Z".into(),
            slos: slos.iter().map(|t| t.text.clone()).collect(),
            capacity_per_s: 400.0,
            upper_per_s: Some(800.0),
            uncertainty_per_s: Some(200.0),
            bound: Bound::Steps,
            search: SearchParams {
                start_rate: 100.0,
                max_rate: 5000.0,
                resolution: 0.05,
                warmup_s: 2.0,
                measure_s: 8.0,
            },
            steps: vec![
                step(100.0, StepVerdict::Held, 3.0, 0.0),
                step(400.0, StepVerdict::HeldClose, 45.0, 0.5),
                step(800.0, StepVerdict::Failed, 900.0, 12.0),
            ],
            search_s: 31.0,
            thresholds: Vec::new(),
            passed: true,
        };
        let md = markdown(&s);
        assert!(
            md.contains("capacity 400/s (bracket 400-800/s, ±200/s)"),
            "{md}"
        );
        assert!(md.contains("| 3 | 800 | failed |"), "{md}");
        let svg = steps_svg(&s, &slos).expect("svg");
        assert!(svg.starts_with("<svg"));
        let html = page(&s, &svg);
        crate::report::html::check::balanced(&html).expect("balanced");
        crate::report::html::check::no_external(&html).expect("offline");
        assert!(html.contains("capacity 400/s") && html.contains("<h2>Steps</h2>"));
        assert!(
            html.contains("<td class=\"n\">400</td>"),
            "the steps' table"
        );
        assert!(svg.contains("SLO p99(total) &lt; 50ms") || svg.contains("SLO p99(total) < 50ms"));
        assert!(svg.contains("SLO errors &lt; 1%") || svg.contains("SLO errors < 1%"));
        assert!(svg.contains("capacity 400/s"));
        assert_eq!(
            svg.matches("<circle").count(),
            6,
            "a dot per step per panel"
        );
        let line = step_line(3, &s.steps[2]);
        assert!(line.contains("800/s failed") && line.contains("(failed: p99(total) < 50ms)"));
    }
}
