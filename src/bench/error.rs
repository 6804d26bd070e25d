//! The error type of the `bench` layer.

use std::path::PathBuf;

/// What can go wrong in the measurement harness itself (not in the transports it measures).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A size list was empty.
    #[error("no sizes given: write a comma-separated list such as 4K,64K,4M")]
    NoSizes,
    /// One item of a size list could not be used.
    #[error("invalid size '{item}': {reason}")]
    InvalidSize {
        /// The item as written.
        item: String,
        /// Why it was refused and what to write instead.
        reason: String,
    },
    /// An output format name that is not `table`, `csv` or `json`.
    #[error("unknown output format '{0}': use table, csv or json")]
    UnknownFormat(String),
    /// There was nothing to plot.
    #[error("nothing to plot: no records with a size of at least one byte")]
    NothingToPlot,
    /// plotters failed while drawing.
    #[error("could not draw the plot: {0}")]
    Plot(String),
    /// The plot could not be written to its file.
    #[error("could not write {}: {source}", path.display())]
    Write {
        /// The file that was being written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A benchmark option has a value that cannot be used.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A buffer could not be allocated.
    #[error("cannot allocate a {bytes}-byte buffer: {source}; try smaller --sizes")]
    Alloc {
        /// The size asked for.
        bytes: usize,
        /// The kernel's error.
        source: std::io::Error,
    },
    /// A job's rank could not be started, failed its own checks, or a transfer failed.
    #[error("{0}")]
    Peer(String),
}
