//! `sieve-core`: the vocabulary every other Sieve crate speaks, and nothing else.
//!
//! It owns the [`Document`] model and its validation (the one place where a row from a file or a request
//! becomes a document or a [`DocumentError`] naming the field, the expected and the found value), search
//! [`Filter`]s parsed from `brand=Sony` / `price<200` style expressions, [`Hit`]s with their per-stage
//! [`ScoreBreakdown`], and the ingest [`Checkpoint`] that is committed atomically with each batch.
//!
//! Key design decision: this crate depends on serde, `time` and thiserror only. It knows no engine
//! (tantivy, hnsw_rs, candle) and no runtime (tokio, axum), so the wire types, the CLI, the server and the
//! web UI can all share it without dragging an index or a model along.

mod checkpoint;
mod document;
mod facet;
mod filter;
mod hit;
mod patterns;

pub use checkpoint::{Checkpoint, SourceProgress};
pub use document::{Category, DocId, Document, DocumentError, Lang, Limits, Timestamp, KNOWN_FIELDS};
pub use facet::{
    price_bucket, FacetCount, FacetField, FacetTally, SortBy, SortError, SortField, SortOrder, PRICE_RANGES,
    SORT_EXPECTED,
};
pub use filter::{Filter, FilterError, RangeField, RangeValue, TermField};
pub use hit::{Bm25Score, CacheReport, DenseScore, FusedScore, Hit, RerankScore, ScoreBreakdown, StageTiming};
pub use patterns::{
    filter_pattern, id_pattern, time_pattern, LANG_PATTERN, POSITIVE_SPAN_PATTERN, SORT_PATTERN, SPAN_PATTERN,
};
