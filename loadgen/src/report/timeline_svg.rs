//! `timeline.svg`: the run second by second, in stacked panels sharing the time axis — rates
//! (offered, completed, provisioned), errors by kind with dropped starts and mismatches, devices in
//! flight, latency p50/p99 of the total and the handshake (log axis), and the server's CPU and
//! memory when the run knows them. A knee or a collapse is seen here, not in the percentiles.

use std::collections::BTreeSet;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::timeline::Second;

/// Height of one panel, px.
const PANEL_H: u32 = 190;
/// Width of the picture, px.
const WIDTH: u32 = 960;

/// One line of a panel: its legend and (second, value) points.
struct Line {
    name: String,
    points: Vec<(f64, f64)>,
}

impl Line {
    fn of(name: &str, seconds: &[Second], value: impl Fn(&Second) -> Option<f64>) -> Line {
        Line {
            name: name.to_owned(),
            points: seconds
                .iter()
                .filter_map(|s| Some((s.t_s as f64 + 0.5, value(s)?)))
                .collect(),
        }
    }
}

/// One panel: a title, a unit and its lines.
struct Panel {
    title: &'static str,
    unit: &'static str,
    log: bool,
    lines: Vec<Line>,
}

fn rates(t: &[Second]) -> Panel {
    Panel {
        title: "rates",
        unit: "per second",
        log: false,
        lines: vec![
            Line::of("offered", t, |s| Some(s.offered as f64)),
            Line::of("completed", t, |s| Some(s.completed as f64)),
            Line::of("provisioned (goodput)", t, |s| Some(s.provisioned as f64)),
        ],
    }
}

fn errors(t: &[Second]) -> Panel {
    let kinds: BTreeSet<&str> = t
        .iter()
        .flat_map(|s| s.errors.keys().map(String::as_str))
        .collect();
    let mut lines: Vec<Line> = kinds
        .iter()
        .map(|k| {
            Line::of(&format!("error: {k}"), t, |s| {
                Some(s.errors.get(*k).copied().unwrap_or(0) as f64)
            })
        })
        .collect();
    lines.push(Line::of("dropped", t, |s| Some(s.dropped as f64)));
    lines.push(Line::of("mismatches", t, |s| Some(s.mismatches as f64)));
    Panel {
        title: "errors, dropped starts, mismatches",
        unit: "per second",
        log: false,
        lines,
    }
}

fn in_flight(t: &[Second]) -> Panel {
    Panel {
        title: "in flight at the end of each second",
        unit: "devices",
        log: false,
        lines: vec![Line::of("in flight", t, |s| Some(s.in_flight as f64))],
    }
}

fn latency(t: &[Second]) -> Panel {
    let ms = |us: u64| (us > 0).then(|| us as f64 / 1000.0);
    Panel {
        title: "latency of the runs finished each second",
        unit: "ms (log)",
        log: true,
        lines: vec![
            Line::of("p50 total", t, |s| ms(s.p50_total_us)),
            Line::of("p99 total", t, |s| ms(s.p99_total_us)),
            Line::of("p50 handshake", t, |s| ms(s.p50_handshake_us)),
            Line::of("p99 handshake", t, |s| ms(s.p99_handshake_us)),
        ],
    }
}

fn server(t: &[Second], embedded: bool) -> Vec<Panel> {
    let cpu = Line::of("server CPU", t, |s| s.server_cpu_percent);
    let rss = Line::of("server RSS", t, |s| {
        s.server_rss_bytes.map(|b| b as f64 / (1024.0 * 1024.0))
    });
    let (cpu_title, rss_title) = if embedded {
        (
            "CPU of this process (embedded server and generator)",
            "resident memory of this process (embedded server and generator)",
        )
    } else {
        ("server CPU", "server resident memory")
    };
    [(cpu_title, "% of a core", cpu), (rss_title, "MiB", rss)]
        .into_iter()
        .filter(|(_, _, l)| !l.points.is_empty())
        .map(|(title, unit, line)| Panel {
            title,
            unit,
            log: false,
            lines: vec![line],
        })
        .collect()
}

/// The picture's title for the run `s`.
pub fn title(s: &crate::summary::Summary) -> String {
    format!("{}: per second ({} devices)", s.scenario, s.devices)
}

/// Render the timeline `seconds` of `title`'s run as an SVG document (`embedded`: the server's
/// figures are this process's).
pub fn svg(title: &str, seconds: &[Second], embedded: bool) -> Result<String, String> {
    let mut panels = vec![
        rates(seconds),
        errors(seconds),
        in_flight(seconds),
        latency(seconds),
    ];
    panels.extend(server(seconds, embedded));
    let end = (seconds.len() as f64).max(1.0);
    let height = PANEL_H * panels.len() as u32 + 40;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| e.to_string())?;
        let areas = root.split_evenly((panels.len(), 1));
        for (panel, area) in panels.iter().zip(&areas) {
            draw_panel(area, panel, end)?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    p: &Panel,
    end: f64,
) -> Result<(), String> {
    let values = || {
        p.lines
            .iter()
            .flat_map(|l| l.points.iter().map(|(_, v)| *v))
    };
    let max = values().fold(0.0_f64, f64::max);
    let mut chart = ChartBuilder::on(area);
    chart
        .caption(p.title, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(64);
    if p.log {
        let min = values().filter(|v| *v > 0.0).fold(max.max(1.0), f64::min);
        let mut c = chart
            .build_cartesian_2d(
                0.0..end,
                ((min / 2.0).max(0.001)..max.max(1.0) * 2.0).log_scale(),
            )
            .map_err(|e| e.to_string())?;
        c.configure_mesh()
            .x_desc("s")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_desc(p.unit)
            .y_labels(6)
            .y_label_formatter(&|v| format!("{v:.1}"))
            .draw()
            .map_err(|e| e.to_string())?;
        draw_lines(&mut c, &p.lines)
    } else {
        let mut c = chart
            .build_cartesian_2d(0.0..end, 0.0..(max * 1.1).max(1.0))
            .map_err(|e| e.to_string())?;
        c.configure_mesh()
            .x_desc("s")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_desc(p.unit)
            .draw()
            .map_err(|e| e.to_string())?;
        draw_lines(&mut c, &p.lines)
    }
}

fn draw_lines<'a, C>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, C>,
    lines: &[Line],
) -> Result<(), String>
where
    C: CoordTranslate<From = (f64, f64)>,
{
    for (i, line) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(line.points.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(line.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(t: u64) -> Second {
        Second {
            t_s: t,
            offered: 100,
            completed: 90 + t,
            provisioned: 90,
            in_flight: 5 * t,
            p50_total_us: 4_000,
            p99_total_us: 9_000 + 1_000 * t,
            p50_handshake_us: 2_000,
            p99_handshake_us: 3_000,
            ..Second::default()
        }
    }

    #[test]
    fn draws_every_panel_and_the_server_only_when_known() {
        let mut seconds: Vec<Second> = (0..5).map(second).collect();
        seconds[3].errors.insert("timeout".into(), 4);
        let without = svg("run a", &seconds, false).expect("svg");
        assert!(without.starts_with("<svg"));
        for text in [
            "rates",
            "error: timeout",
            "in flight",
            "p99 handshake",
            "run a",
        ] {
            assert!(without.contains(text), "{text}");
        }
        assert!(!without.contains("server CPU"));
        for s in &mut seconds {
            s.server_cpu_percent = Some(80.0);
            s.server_rss_bytes = Some(64 << 20);
        }
        let with = svg("run a", &seconds, false).expect("svg");
        assert!(with.contains("server CPU") && with.contains("server resident memory"));
        assert!(with.matches("<polyline").count() > without.matches("<polyline").count());
        let embedded = svg("run a", &seconds, true).expect("svg");
        assert!(embedded.contains("embedded server and generator"));
    }

    #[test]
    fn an_empty_timeline_still_draws() {
        let out = svg("empty", &[], false).expect("svg");
        assert!(out.starts_with("<svg") && out.contains("empty"));
    }
}
