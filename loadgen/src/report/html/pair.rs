//! Two runs side by side in one `report.html` (`compare` and `ab`): a table of how B differs from
//! A on top, then each run's sections in its own column.

use std::path::Path;

use super::run::{sections, Pictures};
use super::{check, escape, section};
use crate::summary::Summary;

/// One side of the page.
pub struct Side<'a> {
    /// Its heading (`A: <scenario>`).
    pub label: String,
    /// Its run.
    pub summary: &'a Summary,
    /// Its pictures.
    pub pictures: Pictures<'a>,
}

/// The page titled `title`: `top` (HTML, the differences) and the two sides in columns.
pub fn page(title: &str, top: &str, a: &Side<'_>, b: &Side<'_>) -> String {
    let column = |s: &Side<'_>| {
        format!(
            "<section>\n<h2>{}</h2>\n{}</section>\n",
            escape(&s.label),
            sections(s.summary, &s.pictures)
        )
    };
    let body = format!(
        "<h1>{}</h1>\n{}<div class=\"pair\">\n{}{}</div>\n",
        escape(title),
        section("B against A", top),
        column(a),
        column(b)
    );
    super::page(title, &body)
}

/// A picture a run wrote into its result directory (`dir/name`), if it is one this tool could
/// have drawn: an SVG with no script and no external address, fit to inline.
pub fn stored_svg(dir: &Path, name: &str) -> Option<String> {
    let svg = std::fs::read_to_string(dir.join(name)).ok()?;
    let safe = svg.trim_start().starts_with("<svg")
        && !svg.to_ascii_lowercase().contains("<script")
        && check::no_external(&svg).is_ok()
        && check::balanced(&svg).is_ok();
    safe.then_some(svg)
}

/// A run's timeline picture drawn again from its summary.
pub fn timeline_svg(s: &Summary) -> Option<String> {
    let embedded = s.server.kind == crate::scenario::ServerKind::Embedded;
    crate::report::timeline_svg::svg(
        &crate::report::timeline_svg::title(s),
        &s.timeline,
        embedded,
    )
    .ok()
}
