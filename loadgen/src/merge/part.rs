//! One segment's result directory read back: its summary and its raw histograms.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use super::error::MergeError;
use crate::metrics::{new_histogram, Phase};
use crate::summary::Summary;

/// One segment's result directory, read.
#[derive(Debug)]
pub struct Part {
    /// Where it was.
    pub dir: PathBuf,
    /// Its summary.json.
    pub summary: Summary,
    /// Its client histograms by phase.
    pub phases: BTreeMap<Phase, Histogram<u64>>,
    /// The server's histograms by name.
    pub server: BTreeMap<String, Histogram<u64>>,
    /// When its devices that had to get in did (µs from its first scheduled start), if written.
    pub got_in: Option<Histogram<u64>>,
}

/// One result directory: summary.json and histograms.txt.
pub fn read(dir: &Path) -> Result<Part, MergeError> {
    let file = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map(|text| (path.clone(), text))
            .map_err(|source| MergeError::Io { path, source })
    };
    let (path, text) = file("summary.json")?;
    let summary: Summary =
        serde_json::from_str(&text).map_err(|source| MergeError::Summary { path, source })?;
    let (path, text) = file("histograms.txt")?;
    let mut phases = BTreeMap::new();
    let mut server = BTreeMap::new();
    let mut got_in = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (name, b64) = line.split_once(' ').unwrap_or((line, ""));
        let bad = |why: String| MergeError::Histogram {
            path: path.clone(),
            name: name.to_owned(),
            why,
        };
        let h = dps_server::metrics::decode_histogram(b64).map_err(|e| bad(e.to_string()))?;
        if name == crate::report::GOT_IN {
            got_in = Some(h);
        } else if let Some(server_name) = name.strip_prefix("server.") {
            server.insert(server_name.to_owned(), h);
        } else {
            let phase = name
                .parse::<Phase>()
                .map_err(|()| bad(format!("no such phase (phases: {})", Phase::names())))?;
            phases.insert(phase, h);
        }
    }
    Ok(Part {
        dir: dir.to_owned(),
        summary,
        phases,
        server,
        got_in,
    })
}

/// A histogram into which others are added (the run's bounds).
pub(super) fn empty() -> Histogram<u64> {
    new_histogram()
}
