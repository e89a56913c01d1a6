//! `sieve-vector`: the dense-recall index. An HNSW graph (hnsw_rs) over unit vectors, keyed by **slots**
//! (a `u64` the BM25 index assigns to every stored vector and never reuses), with an id map from slot to
//! document, tombstones for replaced and deleted documents, exact scans where a graph would lose recall or
//! gain nothing, and crash-safe persistence stamped with the BM25 commit it reflects.
//!
//! Key design decision: the graph is *derived* data. The vectors themselves are stored with the documents in
//! the BM25 index and commit atomically with them; the graph on disk records the BM25 commit generation and
//! the largest slot it holds. An index opened on a different generation catches the graph up from the stored
//! vectors (or rebuilds it when the files are missing or unreadable), so a crash can never pair a BM25 commit
//! with a stale graph, and nothing ever re-runs the model. hnsw_rs types stay inside this crate.

mod distance;
mod flat;
mod index;
mod persist;
mod slots;

pub use distance::{dot, norm, normalize};
pub use index::{HnswParams, Metric, SearchStrategy, Staged, VectorHit, VectorIndex, VectorResults, VectorSearch};
pub use persist::{GraphState, LoadOutcome};

/// Errors of the vector index.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("vector for slot {slot}: expected {expected} dimensions, found {found}")]
    Dimension { slot: u64, expected: usize, found: usize },
    #[error("vector for slot {slot}: {problem}")]
    BadVector { slot: u64, problem: String },
    #[error("query vector: expected {expected} dimensions, found {found}")]
    QueryDimension { expected: usize, found: usize },
    #[error("query vector: {problem}")]
    BadQuery { problem: String },
    #[error("invalid HNSW parameter `{name}`: expected {expected}, found {found}")]
    Param { name: &'static str, expected: &'static str, found: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: unreadable vector graph: {message}")]
    Corrupt { path: String, message: String },
}

pub type Result<T, E = VectorError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
