//! `latency.svg`: latency by percentile for the client's phases and the server's own histograms,
//! on a "nines" axis (50 %, 90 %, 99 %, 99.9 %, ...) so the tail is as readable as the median.

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// Highest percentile drawn, in nines (4 = 99.99 %).
const MAX_NINES: f64 = 4.0;

/// The median in nines: −log10(1 − 0.5).
const MEDIAN: f64 = std::f64::consts::LOG10_2;

/// One line of the plot.
pub struct Series<'a> {
    /// Legend.
    pub name: String,
    /// Samples, µs.
    pub histogram: &'a Histogram<u64>,
    /// Drawn dashed-looking (thinner) when it is the server's view.
    pub server: bool,
}

fn nines_label(x: &f64) -> String {
    let pct = 100.0 * (1.0 - 10f64.powf(-x));
    format!("{pct:.*}%", (x.ceil() as usize).saturating_sub(2))
}

/// Points (nines, ms) of a histogram, from the median to [`MAX_NINES`].
fn points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    (0..=((MAX_NINES - MEDIAN) * 20.0) as usize)
        .map(|k| MEDIAN + k as f64 / 20.0)
        .map(|x| {
            let q = 1.0 - 10f64.powf(-x);
            (x, (h.value_at_quantile(q).max(1) as f64) / 1000.0)
        })
        .collect()
}

/// Render `series` as an SVG document titled `title`.
pub fn svg(title: &str, series: &[Series<'_>]) -> Result<String, String> {
    let series: Vec<&Series<'_>> = series.iter().filter(|s| !s.histogram.is_empty()).collect();
    let max_ms = series
        .iter()
        .map(|s| s.histogram.max() as f64 / 1000.0)
        .fold(1.0, f64::max);
    let min_ms = series
        .iter()
        .map(|s| s.histogram.value_at_quantile(0.5).max(1) as f64 / 1000.0)
        .fold(max_ms, f64::min);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (960, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                MEDIAN..MAX_NINES,
                ((min_ms / 2.0).max(0.001)..max_ms * 2.0).log_scale(),
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency, ms (log)")
            .x_labels(8)
            .x_label_formatter(&nines_label)
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let width = if s.server { 1 } else { 2 };
            chart
                .draw_series(LineSeries::new(
                    points(s.histogram),
                    color.stroke_width(width),
                ))
                .map_err(|e| e.to_string())?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_series_with_its_legend() {
        let mut a = crate::metrics::new_histogram();
        let mut b = crate::metrics::new_histogram();
        for v in 1..=1000u64 {
            let _ = a.record(v * 10);
            let _ = b.record(v * 50);
        }
        let svg = svg(
            "test run",
            &[
                Series {
                    name: "handshake".into(),
                    histogram: &a,
                    server: false,
                },
                Series {
                    name: "server handshake".into(),
                    histogram: &b,
                    server: true,
                },
            ],
        )
        .expect("svg");
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("server handshake") && svg.contains("test run"));
        assert!(svg.contains("%\n</text>"), "percentile axis labels");
        assert_eq!(nines_label(&1.0), "90%");
        assert_eq!(nines_label(&2.0), "99%");
        assert_eq!(nines_label(&3.0), "99.9%");
    }
}
