//! `sieve-pipeline`: the two-stage search. BM25 ([`sieve_text`]) and dense recall ([`sieve_vector`]) run
//! concurrently, their lists are fused ([`fusion`]), the top window is rescored by the cross-encoder through
//! a model [`worker`] thread with a score [`cache`], and every hit carries the evidence of every stage.
//! The path is four named [`stages`] (recall, fuse, rerank, present) that [`Engine::search`] composes and
//! that other rankings (the news feed) reuse; a request is one [`SearchRequest`], checked in one place.
//!
//! Key design decisions: the fused order is always a valid answer, so a reranker that is slow, failing or
//! absent *degrades* a response (`degraded: true` with the reason) instead of failing it; models run on
//! their own threads and batch whatever requests are waiting; the final score of a reranked hit is the
//! cross-encoder's probability, which a client can threshold; the fusion formulas are pure functions.

pub mod cache;
mod engine;
mod feed;
mod graph;
pub mod models;
mod request;
mod response;
mod sink;
pub mod snippet;
pub mod stages;
pub mod stats;
mod tuning;
pub mod worker;

pub use stages::fusion;

pub use cache::{CacheError, CacheKey, CacheReport, CachedScore, LruScoreCache, RedisScoreCache, ScoreCache};
pub use engine::{doc_text, DenseSide, Engine, EngineOptions, OpenOptions};
pub use feed::{
    FeedCluster, FeedExplain, FeedHit, FeedRequest, FeedResponse, DEFAULT_DECAY, FEED_POOL, MAX_FEED_LIMIT,
};
pub use graph::{SavePolicy, SyncReport, VectorSettings};
pub use models::{
    CachedRerank, EmbedJob, EmbedderHandle, ModelHandle, RerankJob, RerankerHandle, EMBED_BATCH_TOKENS,
    RERANK_BATCH_TOKENS,
};
pub use request::{
    check_window, Fusion, FusionMethod, Legs, Mode, RerankRequest, SearchRequest, DEFAULT_RECALL_K, MAX_DEPTH, MAX_EF,
};
pub use response::{Bm25Report, DenseReport, SearchResponse};
pub use sieve_core::{FacetCount, FacetField, SortBy, SortField, SortOrder};
pub use sieve_text::{Bm25Params, IndexSettings, WriterOptions};
pub use sieve_vector::{HnswParams, Metric, SearchStrategy};
pub use sink::EngineSink;
pub use snippet::{BestSentence, SnippetLimits};
pub use stages::{Candidate, Ranking};
pub use stats::{Histogram, HistogramSnapshot};
pub use tuning::{SearchSettings, TuneRecord, DEFAULT_DENSE_THRESHOLD};
pub use worker::{CallTiming, CancelToken, Worker, WorkerError, WorkerOptions, WorkerStats};

/// Errors of the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Text(#[from] sieve_text::TextError),
    #[error(transparent)]
    Vector(#[from] sieve_vector::VectorError),
    #[error(transparent)]
    Model(#[from] sieve_models::ModelError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("invalid request: `{field}` expected {expected}, found {found}")]
    BadRequest { field: &'static str, expected: &'static str, found: String },
    #[error("dense search unavailable: {reason}")]
    DenseUnavailable { reason: String },
    #[error("{what} differ: the index has {index}, given {given}")]
    Mismatch { what: String, index: String, given: String },
    #[error("{path}: invalid settings: {message}")]
    Config { path: String, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

#[cfg(test)]
mod tests;
