//! `sieve-ingest`: getting documents from files into an index without losing any.
//!
//! It owns the readers ([`RowReader`]: JSON lines or CSV, plain or gzip, file or stdin), per-row validation
//! into [`sieve_core::Document`]s, the [`RejectReport`] that keeps every rejected row with its file, line and
//! reason, and the loop ([`ingest_source`]) that batches documents into a [`BatchSink`] and commits each batch
//! together with its [`sieve_core::Checkpoint`].
//!
//! Key design decision: progress is only ever acknowledged after the sink's commit, and the checkpoint that
//! says how far the input was consumed is part of that same commit. Killing the process at any moment loses
//! at most the unacknowledged batch, which the next run re-reads from the checkpoint. The crate knows no
//! index: the sink is a trait, so the BM25-only path and the embedding pipeline share the loop.

mod driver;
mod report;
mod source;

pub use driver::{
    ingest_source, BatchSink, Event, IngestError, IngestOptions, NoProgress, OnError, Progress, SourceSummary,
};
pub use report::{RejectReport, Rejected};
pub use source::{fingerprint, ByteCounter, Format, Input, Row, RowError, RowReader, SourceError};

#[cfg(test)]
mod tests;
