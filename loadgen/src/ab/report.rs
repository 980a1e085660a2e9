//! The reports of an A/B: `summary.json`, `summary.md` (a table of each metric's B/A ratio
//! with its 95 % interval and verdict, then every block's value) and `report.html` (the same
//! tables, then the last block of each side side by side).

use std::fmt::Write as _;
use std::path::Path;

use super::AbSummary;
use crate::report::html::{self, pair, Cell};
use crate::summary::Summary;

/// The last block of each side and its result directory, shown side by side in `report.html`.
pub struct Last<'a> {
    /// A's last block.
    pub a: (&'a Summary, &'a Path),
    /// B's last block.
    pub b: (&'a Summary, &'a Path),
}

/// Write `summary.json`, `summary.md` and `report.html` into `dir`.
pub fn write(dir: &Path, s: &AbSummary, last: Option<&Last<'_>>) -> std::io::Result<()> {
    let json = serde_json::to_string_pretty(s).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("summary.json"), json + "\n")?;
    std::fs::write(dir.join("summary.md"), markdown(s))?;
    if let Some(last) = last {
        std::fs::write(dir.join("report.html"), page(s, last))?;
    }
    Ok(())
}

/// The ratio table and the blocks' values, as HTML.
fn tables(s: &AbSummary) -> String {
    let mut out = html::para(&format!(
        "{} pairs of blocks in {:.0} s, order {}; ratios are B/A, geometric mean of the pairs with a \
         95 % interval. same: the interval holds 1, or the ratio is within 1 % of it (criterion's noise threshold).",
        s.pairs,
        s.duration_s,
        s.order.join(" ")
    ));
    if s.mismatches > 0 {
        out.push_str(&html::verdict(
            false,
            &format!(
                "{} wrong verdicts in the blocks: these figures are not valid.",
                s.mismatches
            ),
        ));
    }
    let ratios: Vec<Vec<Cell>> = s
        .metrics
        .iter()
        .map(|m| match &m.ratio {
            Some(r) => vec![
                html::text(&m.metric),
                html::num(format!("{:.3}", r.ratio)),
                html::num(format!("{:.3} – {:.3}", r.low, r.high)),
                html::text(&m.verdict),
            ],
            None => vec![
                html::text(&m.metric),
                html::num("-"),
                html::num("-"),
                html::text(&m.verdict),
            ],
        })
        .collect();
    out.push_str(&html::table(
        &["metric", "B/A", "95 % interval", "verdict for B"],
        &ratios,
    ));
    let join = |v: &[Option<f64>]| v.iter().map(|x| value(*x)).collect::<Vec<_>>().join(", ");
    let blocks: Vec<Vec<Cell>> = s
        .metrics
        .iter()
        .map(|m| {
            vec![
                html::text(&m.metric),
                html::text(join(&m.a)),
                html::text(join(&m.b)),
            ]
        })
        .collect();
    out.push_str(&html::table(
        &["metric", "A per block", "B per block"],
        &blocks,
    ));
    out
}

/// One column: a side's last block and its pictures.
fn side<'a>(
    label: &str,
    (run, dir): (&'a Summary, &Path),
    p: &'a (Option<String>, Option<String>),
) -> pair::Side<'a> {
    pair::Side {
        label: format!("{label}: {}, last block ({})", run.scenario, dir.display()),
        summary: run,
        pictures: html::run::Pictures {
            timeline: p.0.as_deref(),
            latency: p.1.as_deref(),
        },
    }
}

/// `report.html`: the tables, then each side's last block in a column.
pub fn page(s: &AbSummary, last: &Last<'_>) -> String {
    let pictures = |(run, dir): (&Summary, &Path)| {
        (
            pair::timeline_svg(run),
            pair::stored_svg(dir, "latency.svg"),
        )
    };
    let (pa, pb) = (pictures(last.a), pictures(last.b));
    pair::page(
        &format!("dps-loadgen ab: {} (A) against {} (B)", s.a, s.b),
        &tables(s),
        &side("A", last.a, &pa),
        &side("B", last.b, &pb),
    )
}

fn value(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}

/// `summary.md`.
pub fn markdown(s: &AbSummary) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# A/B: {} (A) against {} (B)\n", s.a, s.b);
    let _ = writeln!(
        md,
        "{} pairs of blocks in {:.0} s, order {}; ratios are B/A, geometric mean of the pairs \
         with a 95 % interval (Student t on the logarithms). `same`: the interval holds 1, or the ratio is within 1 % of it (criterion's noise threshold).\n",
        s.pairs,
        s.duration_s,
        s.order.join(" ")
    );
    if s.mismatches > 0 {
        let _ = writeln!(
            md,
            "**{} wrong verdicts in the blocks: these figures are not valid.**\n",
            s.mismatches
        );
    }
    let _ = writeln!(md, "| metric | B/A | 95 % interval | verdict for B |");
    let _ = writeln!(md, "|---|---:|---|---|");
    for m in &s.metrics {
        match &m.ratio {
            Some(r) => {
                let _ = writeln!(
                    md,
                    "| {} | {:.3} | {:.3} – {:.3} | {} |",
                    m.metric, r.ratio, r.low, r.high, m.verdict
                );
            }
            None => {
                let _ = writeln!(md, "| {} | - | - | {} |", m.metric, m.verdict);
            }
        }
    }
    let _ = writeln!(md, "\n| metric | A per block | B per block |");
    let _ = writeln!(md, "|---|---|---|");
    for m in &s.metrics {
        let join = |v: &[Option<f64>]| v.iter().map(|x| value(*x)).collect::<Vec<_>>().join(", ");
        let _ = writeln!(md, "| {} | {} | {} |", m.metric, join(&m.a), join(&m.b));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ab::{MetricRatio, Ratio};

    #[test]
    fn the_table_names_each_ratio_its_interval_and_verdict() {
        let s = AbSummary {
            schema_version: 1,
            kind: "ab".into(),
            a: "base".into(),
            b: "halved".into(),
            started_at: "2026-12-03T10:00:00Z".into(),
            pairs: 2,
            order: ["A", "B", "B", "A"].map(String::from).to_vec(),
            metrics: vec![MetricRatio {
                metric: "provisioned_per_s".into(),
                higher_is_better: true,
                a: vec![Some(100.0), Some(102.0)],
                b: vec![Some(50.0), None],
                ratio: Some(Ratio {
                    pairs: 2,
                    ratio: 0.5,
                    low: 0.45,
                    high: 0.55,
                }),
                verdict: "worse".into(),
            }],
            mismatches: 0,
            duration_s: 12.0,
        };
        let md = markdown(&s);
        assert!(
            md.contains("| provisioned_per_s | 0.500 | 0.450 – 0.550 | worse |"),
            "{md}"
        );
        assert!(
            md.contains("| provisioned_per_s | 100.000, 102.000 | 50.000, - |"),
            "{md}"
        );
        assert!(md.contains("order A B B A"));
    }
}
