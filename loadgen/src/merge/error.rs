//! Why segments could not be merged.

use std::path::PathBuf;

/// Why segments could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A file of a segment's result directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The merged result could not be written.
    #[error("cannot write the merged result into {path}: {source}")]
    Write {
        /// The result directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A summary.json that is not one.
    #[error("{path}: not a run summary: {source}")]
    Summary {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A histograms.txt line that does not decode.
    #[error("{path}: histogram {name:?} does not decode: {why}")]
    Histogram {
        /// The file.
        path: PathBuf,
        /// The histogram's name.
        name: String,
        /// Why.
        why: String,
    },
    /// A result of an unsegmented run.
    #[error("{0}: not a segment (its summary.json has no `segment`: run with --segment I/N)")]
    NotSegment(PathBuf),
    /// Segments of different scenarios (or of different splits).
    #[error("{dir}: segment of another scenario or split ({theirs}, {their_count} segments) than {first} ({ours}, {our_count} segments)")]
    Mismatch {
        /// The odd one.
        dir: PathBuf,
        /// Its scenario hash.
        theirs: String,
        /// Its segment count.
        their_count: usize,
        /// The first directory.
        first: PathBuf,
        /// The first's scenario hash.
        ours: String,
        /// The first's segment count.
        our_count: usize,
    },
    /// A segment given twice.
    #[error("segment {index} given twice: {a} and {b}")]
    Duplicate {
        /// The segment.
        index: usize,
        /// One directory.
        a: PathBuf,
        /// The other.
        b: PathBuf,
    },
    /// Segments missing.
    #[error("segments {missing:?} of {count} are missing")]
    Missing {
        /// Their indexes.
        missing: Vec<usize>,
        /// Of how many.
        count: usize,
    },
    /// A threshold of the segments' summaries that no longer parses.
    #[error("threshold {0}")]
    Threshold(String),
}
