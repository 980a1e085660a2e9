//! Why a run and its capture could not be compared (its own file so that the readers below
//! `capture` import it without importing `capture`).

use std::path::PathBuf;

/// Why a run and its capture could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `connections.csv` is not what `dps-loadgen run` writes.
    #[error("{path}: line {line}: not a connection record")]
    Connections {
        /// The file.
        path: PathBuf,
        /// 1-based.
        line: usize,
    },
    /// The capture is not a pcap or pcapng file it can read.
    #[error("capture: {0}")]
    Format(String),
}
