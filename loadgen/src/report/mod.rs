//! Reports of a run: `summary.json` (see `loadgen/summary.schema.json`), `summary.md`,
//! `latency.svg` (latency by percentile, client phases beside the server's histograms),
//! `timeline.svg` (the run second by second), `report.html` (all of it on one self-contained page),
//! the raw histograms (HdrHistogram V2 + deflate, base64, one line per phase; the server's
//! prefixed `server.`) and `connections.csv` (each device connection, for `dps-loadgen
//! verify-capture`) under `results/<scenario>-<timestamp>/`.

mod generator_md;
pub mod html;
pub mod plot;
mod summary_md;
pub mod timeline_svg;
mod units;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};

use crate::summary::Outcome;

pub use summary_md::{markdown, verdict_line};

/// Write the reports into a new directory under `results_dir`; returns it.
pub fn write(results_dir: &Path, outcome: &Outcome) -> std::io::Result<PathBuf> {
    let stamp = outcome
        .summary
        .started_at
        .replace([':', '-'], "")
        .replace('.', "_");
    // A segment's directory says which it is (`<scenario>-segment-2-of-3-<time>`).
    let segment = outcome
        .summary
        .segment
        .as_ref()
        .map(|s| format!("segment-{}-of-{}-", s.index, s.count))
        .unwrap_or_default();
    let name = format!("{}-{segment}{stamp}", outcome.summary.scenario);
    let dir = results_dir.join(name);
    write_into(&dir, outcome)?;
    Ok(dir)
}

/// The end of `summary.md` in a result directory: where its pictures and the full page are.
const FILES_BESIDE: &str = "\nBeside this file: [report.html](report.html) (the whole run on one \
    page, opens offline), [timeline.svg](timeline.svg) (per second: rate, errors, latency, the \
    server's CPU and memory), [latency.svg](latency.svg) (latency by percentile), \
    `connections.csv` (for `dps-loadgen verify-capture`), `identities.csv` (the device id each \
    provisioned device was issued), `histograms.txt` (HdrHistogram V2).\n";

/// The `histograms.txt` name of when the devices that had to get in did (µs from the first
/// scheduled start): what `merge` computes a merged run's storm numbers from.
pub const GOT_IN: &str = "storm.got_in";

/// `got_in` as a serialized HdrHistogram of µs; `None` when empty.
fn got_in_histogram(got_in: &[std::time::Duration]) -> Option<String> {
    if got_in.is_empty() {
        return None;
    }
    let mut h = crate::metrics::new_histogram();
    for d in got_in {
        crate::metrics::record(&mut h, *d);
    }
    dps_server::metrics::encode_histogram(&h).ok()
}

/// `identities.csv`: the device id each provisioned device was issued, one `device,device_id`
/// line per device (fleet index order), to check a server's store against after a run.
pub fn identities_csv(identities: &[(usize, String)]) -> String {
    let mut out = String::with_capacity(48 * (identities.len() + 1));
    out.push_str("device,device_id\n");
    for (device, id) in identities {
        let _ = writeln!(out, "{device},{id}");
    }
    out
}

/// Write the reports into `dir` (created if needed): summary.json, summary.md, histograms.txt,
/// latency.svg, timeline.svg and report.html.
pub fn write_into(dir: &Path, outcome: &Outcome) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(&outcome.summary)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    std::fs::write(dir.join("summary.json"), json + "\n")?;
    let md = markdown(&outcome.summary) + FILES_BESIDE;
    std::fs::write(dir.join("summary.md"), md)?;
    let connections = crate::device::trace::to_csv(&outcome.connections);
    std::fs::write(dir.join("connections.csv"), connections)?;
    std::fs::write(
        dir.join("identities.csv"),
        identities_csv(&outcome.identities),
    )?;
    let mut raw = String::new();
    for (phase, h) in &outcome.recorder.phases {
        let mut buf = Vec::new();
        if V2DeflateSerializer::new().serialize(h, &mut buf).is_ok() {
            let _ = writeln!(
                raw,
                "{phase} {}",
                base64::engine::general_purpose::STANDARD.encode(&buf)
            );
        }
    }
    for (name, h) in &outcome.server.histograms {
        if !h.hdr.is_empty() {
            let _ = writeln!(raw, "server.{name} {}", h.hdr);
        }
    }
    if let Some(b64) = got_in_histogram(&outcome.got_in) {
        let _ = writeln!(raw, "{GOT_IN} {b64}");
    }
    std::fs::write(dir.join("histograms.txt"), raw)?;
    let latency = latency_svg(outcome).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("latency.svg"), &latency)?;
    let s = &outcome.summary;
    let embedded = s.server.kind == crate::scenario::ServerKind::Embedded;
    let timeline = timeline_svg::svg(&timeline_svg::title(s), &s.timeline, embedded)
        .map_err(std::io::Error::other)?;
    std::fs::write(dir.join("timeline.svg"), &timeline)?;
    let pictures = html::run::Pictures {
        timeline: Some(&timeline),
        latency: Some(&latency),
    };
    std::fs::write(dir.join("report.html"), html::run::page(s, &pictures))?;
    Ok(())
}

/// The client's network-facing phases and the server's handshake and matching, by percentile.
fn latency_svg(outcome: &Outcome) -> Result<String, String> {
    use crate::metrics::Phase;
    let server: Vec<(String, hdrhistogram::Histogram<u64>)> = ["handshake", "matching"]
        .iter()
        .filter_map(|name| {
            let h = outcome.server.histograms.get(*name)?;
            Some((
                format!("server {name}"),
                dps_server::metrics::decode_histogram(&h.hdr).ok()?,
            ))
        })
        .collect();
    let mut series: Vec<plot::Series<'_>> = [
        Phase::Tcp,
        Phase::Handshake,
        Phase::Credentials,
        Phase::Ping,
        Phase::Total,
    ]
    .iter()
    .filter_map(|p| {
        Some(plot::Series {
            name: format!("client {p}"),
            histogram: outcome.recorder.phases.get(p)?,
            server: false,
        })
    })
    .collect();
    series.extend(server.iter().map(|(name, h)| plot::Series {
        name: name.clone(),
        histogram: h,
        server: true,
    }));
    plot::svg(
        &format!(
            "{}: latency by percentile ({} devices)",
            outcome.summary.scenario, outcome.summary.devices
        ),
        &series,
    )
}
