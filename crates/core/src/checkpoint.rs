//! Ingest progress, committed atomically with the documents it describes.
//!
//! The BM25 index stores a [`Checkpoint`] as its commit payload, so "these documents are durable" and "the
//! input was consumed up to here" become true at the same instant. A killed ingest resumes from the last
//! checkpoint and can never skip an uncommitted row or count one twice.

use serde::{Deserialize, Serialize};

/// Progress of every input source ever ingested into an index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub sources: Vec<SourceProgress>,
}

/// How far one input file has been consumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceProgress {
    /// Canonical path of the file.
    pub source: String,
    /// Identity of the file's content (size and content hash); a changed file starts over.
    pub fingerprint: String,
    /// Last input line whose outcome (indexed or rejected) is committed.
    pub line: u64,
    /// Byte offset just past that line, in the decompressed stream.
    pub byte_offset: u64,
    /// Documents committed from this source.
    pub docs: u64,
    /// Rows rejected from this source.
    pub rejected: u64,
    /// Whether the whole file was consumed.
    pub complete: bool,
}

impl Checkpoint {
    pub fn get(&self, source: &str) -> Option<&SourceProgress> {
        self.sources.iter().find(|s| s.source == source)
    }

    /// Inserts or replaces the progress of `progress.source`.
    pub fn upsert(&mut self, progress: SourceProgress) {
        match self.sources.iter_mut().find(|s| s.source == progress.source) {
            Some(slot) => *slot = progress,
            None => self.sources.push(progress),
        }
    }
}
