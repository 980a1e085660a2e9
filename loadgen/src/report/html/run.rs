//! The sections of one run in `report.html`: headline and verdict, thresholds, classes and
//! outcomes, the timeline, the percentiles, the generator (who limited the run) and the server's
//! view. A comparison's page lays two of these side by side.

use super::{escape, figure, ms, num, para, section, table, text, verdict, Cell};
use crate::report::units::mib;
use crate::report::verdict_line;
use crate::saturation::figures::SideCpu;
use crate::summary::Summary;

/// The pictures of a run, as SVG documents.
pub struct Pictures<'a> {
    /// `timeline.svg`.
    pub timeline: Option<&'a str>,
    /// `latency.svg`.
    pub latency: Option<&'a str>,
}

/// How `v` is named in `summary.json`.
fn name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "-".into(),
    }
}

/// Pass or fail, and the run in one line.
pub fn headline(s: &Summary) -> String {
    let ok = s.passed && s.mismatches == 0;
    let p99 = s
        .latency
        .get(&crate::metrics::Phase::Total)
        .map_or_else(|| "-".into(), |q| ms(q.p99_us));
    let line = format!(
        "{}: {} devices in {:.1} s, {} provisioned ({:.1}/s, peak {:.1}/s over 3 s), p99 total {p99} ms, \
         {} errors, {} mismatches, {} dropped",
        if ok { "PASS" } else { "FAIL" },
        s.devices,
        s.duration_s,
        s.provisioned,
        s.provisioned_per_s,
        s.peak_provisioned_per_s,
        s.errors,
        s.mismatches,
        s.dropped,
    );
    let mut out = verdict(ok, &line);
    out.push_str(&para(&format!(
        "Started {}; server {}; device mode {}; retry policy {}; fleet {}.",
        s.started_at,
        s.server.kind.as_str(),
        name(&s.device_mode),
        name(&s.retry_policy),
        if s.fleet_reused {
            "from the cache"
        } else {
            "generated"
        },
    )));
    out
}

/// Each threshold, its measured value and whether it held.
pub fn thresholds(s: &Summary) -> String {
    if s.thresholds.is_empty() {
        return para("No thresholds.");
    }
    let rows: Vec<Vec<Cell>> = s
        .thresholds
        .iter()
        .map(|t| {
            vec![
                text(&t.threshold),
                num(format!("{:.3}", t.actual)),
                text(if t.passed { "held" } else { "FAILED" }),
            ]
        })
        .collect();
    table(&["threshold", "measured", "verdict"], &rows)
}

/// Per class: devices, outcomes and what was observed; then errors by kind.
pub fn classes(s: &Summary) -> String {
    let rows: Vec<Vec<Cell>> = s
        .classes
        .iter()
        .map(|(class, c)| {
            let observed: Vec<String> = c
                .observed
                .iter()
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect();
            vec![
                text(class.as_str()),
                num(c.devices),
                num(c.as_expected),
                num(c.mismatches),
                num(c.false_accepts),
                num(c.false_rejects),
                num(c.errors),
                text(observed.join(", ")),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "class",
            "devices",
            "as expected",
            "mismatches",
            "false accepts",
            "false rejects",
            "errors",
            "observed",
        ],
        &rows,
    );
    let mut kinds: Vec<Vec<Cell>> = s
        .failures
        .iter()
        .map(|(k, n)| vec![text(k.as_str()), num(n)])
        .collect();
    kinds.extend(
        s.strict_failures
            .iter()
            .map(|(k, n)| vec![text(format!("strict: {k}")), num(n)]),
    );
    if !kinds.is_empty() {
        out.push_str(&table(&["error", "devices"], &kinds));
    }
    for e in &s.mismatch_examples {
        out.push_str(&para(e));
    }
    out
}

/// Client latency by phase, and the percentile picture.
pub fn percentiles(s: &Summary, latency_svg: Option<&str>) -> String {
    let mut out = quantile_table(s.latency.iter().map(|(p, q)| (p.as_str().to_owned(), q)));
    if let Some(svg) = latency_svg {
        out.push_str(&figure(
            svg,
            "latency by percentile, client phases and the server's histograms",
        ));
    }
    out
}

fn quantile_table<'a>(
    rows: impl Iterator<Item = (String, &'a crate::metrics::Quantiles)>,
) -> String {
    let rows: Vec<Vec<Cell>> = rows
        .map(|(name, q)| {
            vec![
                text(name),
                num(q.count),
                num(ms(q.p50_us)),
                num(ms(q.p90_us)),
                num(ms(q.p99_us)),
                num(ms(q.p999_us)),
                num(ms(q.max_us)),
            ]
        })
        .collect();
    table(
        &[
            "phase", "count", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms",
        ],
        &rows,
    )
}

fn cpu_row(side: &str, c: &SideCpu) -> Vec<Cell> {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.3}"));
    vec![
        text(side),
        num(format!("{:.2}", c.cores_used)),
        num(format!("{:.2}", c.peak_cores_used)),
        num(opt(c.ms_per_provisioned)),
        num(opt(c.ms_per_handshake)),
    ]
}

/// Who limited the run, each side's CPU, and the notes.
pub fn generator(s: &Summary) -> String {
    let Some(g) = &s.generator else {
        return para("The generator was not measured in this run.");
    };
    let mut out = para(&format!(
        "Limited by: {}. {}",
        g.limited_by.as_str(),
        verdict_line(s).unwrap_or_default()
    ));
    let mut rows = Vec::new();
    if let Some(p) = &g.cpu.process {
        let side = if g.cpu.process_includes_server {
            "this process (generator + embedded server)"
        } else {
            "generator process"
        };
        rows.push(cpu_row(side, p));
    }
    if let Some(p) = &g.cpu.server {
        rows.push(cpu_row("server process", p));
    }
    if !rows.is_empty() {
        out.push_str(&table(
            &[
                "side",
                "cores",
                "peak cores",
                "CPU ms / provisioned",
                "CPU ms / handshake",
            ],
            &rows,
        ));
    }
    out.push_str(&para(&format!(
        "{} late starts (> 25 ms), {} dropped late, {} dropped at max_in_flight; {} CPUs, {} worker threads.",
        g.late_starts, g.dropped_late, g.dropped_in_flight, g.cpu.cores, g.cpu.worker_threads
    )));
    if !g.notes.is_empty() {
        out.push_str("<ul class=\"note\">\n");
        for n in &g.notes {
            out.push_str(&format!("<li>{}</li>\n", escape(n)));
        }
        out.push_str("</ul>\n");
    }
    out
}

/// The server's own latency, its rejections against the fleet's, its memory.
pub fn server(s: &Summary) -> String {
    let mut out = para(&format!(
        "Server: {}. Peak resident memory: {}.",
        s.server.kind.as_str(),
        s.server
            .peak_rss_bytes
            .or(s.peak_rss_bytes)
            .map_or_else(|| "unknown".into(), mib)
    ));
    if s.server.latency.is_empty() {
        out.push_str(&para("The server's histograms could not be read."));
    } else {
        out.push_str(&quantile_table(
            s.server.latency.iter().map(|(n, q)| (n.clone(), q)),
        ));
    }
    let reasons: std::collections::BTreeSet<&String> = s
        .server_rejections
        .keys()
        .chain(s.expected_rejections.keys())
        .collect();
    let rows: Vec<Vec<Cell>> = reasons
        .into_iter()
        .map(|r| {
            let n = |m: &std::collections::BTreeMap<String, u64>| m.get(r).copied().unwrap_or(0);
            vec![
                text(r),
                num(n(&s.server_rejections)),
                num(n(&s.expected_rejections)),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&table(
            &["rejection reason", "server counted", "fleet expects"],
            &rows,
        ));
    }
    if let Some(n) = s.leftover_connections {
        out.push_str(&para(&format!(
            "Connections still open after the run: {n}."
        )));
    }
    out
}

/// Every section of a run, in order.
pub fn sections(s: &Summary, pictures: &Pictures<'_>) -> String {
    let mut out = section("Verdict", &headline(s));
    out.push_str(&section("Thresholds", &thresholds(s)));
    out.push_str(&section("Classes and outcomes", &classes(s)));
    let timeline = pictures.timeline.map_or_else(
        || para("No timeline."),
        |svg| {
            figure(
                svg,
                "per second: rates, errors, in flight, latency, server CPU and memory",
            )
        },
    );
    out.push_str(&section("Timeline", &timeline));
    out.push_str(&section("Percentiles", &percentiles(s, pictures.latency)));
    out.push_str(&section("Generator and bottleneck", &generator(s)));
    out.push_str(&section("The server's view", &server(s)));
    out
}

/// `report.html` of one run.
pub fn page(s: &Summary, pictures: &Pictures<'_>) -> String {
    let title = format!("dps-loadgen run: {}", s.scenario);
    let body = format!("<h1>{}</h1>\n{}", escape(&title), sections(s, pictures));
    super::page(&title, &body)
}
