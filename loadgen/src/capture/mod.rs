//! `dps-loadgen verify-capture RESULTS_DIR CAPTURE`: checks a run's figures against a packet
//! capture of it, so that the generator's latency can be trusted as the server's. The run's
//! `connections.csv` ([`crate::device::trace`]) is joined 1:1 with the capture's connections
//! by the device's address and port ([`wire`]); per connection SYN to the device's FIN and SYN
//! to the server's first TLS record are compared ([`compare`]). Works for any target: capture
//! where the devices run (`tcpdump -i lo -w run.pcap port N` for a local server).

pub mod compare;
mod error;
pub mod wire;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use crate::device::trace::{ConnectionRecord, CSV_HEADER};

pub use compare::{Comparison, Figure};
pub use error::CaptureError;

/// The run in `results_dir` compared with `capture`.
pub fn verify(results_dir: &Path, capture: &Path) -> Result<Comparison, CaptureError> {
    let records = connections(&results_dir.join("connections.csv"))?;
    let targets: BTreeSet<_> = records.iter().map(|r| r.target).collect();
    let bytes = std::fs::read(capture).map_err(|source| CaptureError::Read {
        path: capture.into(),
        source,
    })?;
    let wire = wire::read(&bytes, &targets)?;
    Ok(compare::compare(&records, &wire))
}

/// A results directory's `connections.csv`.
pub fn connections(path: &Path) -> Result<Vec<ConnectionRecord>, CaptureError> {
    let text = std::fs::read_to_string(path).map_err(|source| CaptureError::Read {
        path: path.into(),
        source,
    })?;
    let bad = |line| CaptureError::Connections {
        path: path.into(),
        line,
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        // The file of the version before the read column has the first six.
        Some((_, header))
            if CSV_HEADER.starts_with(header.trim()) && header.contains("closed_us") => {}
        _ => return Err(bad(1)),
    }
    lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| ConnectionRecord::parse_csv(l).ok_or_else(|| bad(i + 1)))
        .collect()
}

/// The run's own summary beside the wire: its `total` and `lateness` (p50 / p99) from
/// `summary.json`, against the capture's SYN to FIN; `None` without a readable summary.
pub fn summary_beside_wire(results_dir: &Path, c: &Comparison) -> Option<String> {
    let text = std::fs::read_to_string(results_dir.join("summary.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let q = |phase: &str, at: &str| json["latency"][phase][at].as_f64();
    let ms = |us: f64| format!("{:.3} ms", us / 1000.0);
    let wire = c.figures.iter().find(|f| f.name == "connection")?;
    Some(format!(
        "The run's summary: total p50 {} / p99 {}, of which lateness p50 {} / p99 {} and read \
         delay p50 {} / p99 {} (the generator's own); the wire's SYN to FIN p50 {} / p99 {}.\n",
        ms(q("total", "p50_us")?),
        ms(q("total", "p99_us")?),
        ms(q("lateness", "p50_us").unwrap_or(0.0)),
        ms(q("lateness", "p99_us").unwrap_or(0.0)),
        ms(q("read_delay", "p50_us").unwrap_or(0.0)),
        ms(q("read_delay", "p99_us").unwrap_or(0.0)),
        ms(wire.wire_p50_us),
        ms(wire.wire_p99_us),
    ))
}

/// The comparison as a short Markdown report.
pub fn markdown(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} of {} recorded connections found in the capture.\n",
        c.matched, c.recorded
    );
    if !c.unmatched_examples.is_empty() {
        let missing: Vec<String> = c
            .unmatched_examples
            .iter()
            .map(|(device, source)| format!("device {device} from {source}"))
            .collect();
        let _ = writeln!(out, "Not in the capture: {}.\n", missing.join(", "));
    }
    let _ = writeln!(
        out,
        "| figure | connections | p50 generator | p50 wire | p99 generator | p99 wire | p99 |diff| | agrees |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|");
    let ms = |us: f64| format!("{:.3} ms", us / 1000.0);
    for f in &c.figures {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            f.name,
            f.count,
            ms(f.generator_p50_us),
            ms(f.wire_p50_us),
            ms(f.generator_p99_us),
            ms(f.wire_p99_us),
            ms(f.p99_abs_diff_us),
            if f.agrees { "yes" } else { "NO" }
        );
    }
    if let Some(d) = &c.first_read_delay {
        let _ = writeln!(
            out,
            "\nThe generator read the server's first data p50 {} / p99 {} after it reached the \
             device's socket ({} connections): its own delay, left out of its phases (read_delay).",
            ms(d.p50_us),
            ms(d.p99_us),
            d.count
        );
    }
    let _ = writeln!(
        out,
        "\nconnection: SYN to the device's FIN (or reset); first_server_data: SYN to the server's \
         first TLS record (the generator's: its arrival at the device's socket, the kernel's \
         receive time). Agreement: p50 and p99 within {:.0} % or {:.1} ms of the wire's, \
         whichever is larger.",
        compare::REL_TOLERANCE * 100.0,
        compare::ABS_TOLERANCE_US / 1000.0
    );
    let _ = writeln!(
        out,
        "verdict: {}",
        if c.agrees() {
            "the generator's figures agree with the wire"
        } else {
            "the generator's figures do NOT agree with the wire"
        }
    );
    out
}
