//! Search results and the per-stage evidence behind each of them.

use serde::{Deserialize, Serialize};

use crate::document::{DocId, Document};

/// One ranked result. `rank` is 1-based; `score` is the score of the stage that produced the final order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hit {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: DocId,
    pub rank: u32,
    pub score: f32,
    pub scores: ScoreBreakdown,
    /// The stored document (`id`, `title`, `body` and the other fields), when the request asked for it.
    /// Boxed: a hit moves through every stage, and most hits carry no document.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub document: Option<Box<Document>>,
}

/// Every stage's score for one hit. A stage that did not run (or did not retrieve this document) is `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScoreBreakdown {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bm25: Option<Bm25Score>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dense: Option<DenseScore>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fused: Option<FusedScore>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank: Option<RerankScore>,
    /// The product codes of the query this document carries exactly, which put it first (the fusion stage's
    /// "exact codes first" rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_codes: Option<Vec<String>>,
    /// How long each stage of the request took (present when the request asked for an explanation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<Vec<StageTiming>>,
}

/// The dense leg's evidence: cosine similarity (or dot product) to the query and rank in the dense list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DenseScore {
    pub similarity: f32,
    pub rank: u32,
}

/// The fused first-stage score, its rank in the fused list, and the method (`rrf` or `linear`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FusedScore {
    pub score: f32,
    pub rank: u32,
    pub method: String,
}

/// The cross-encoder's verdict: `score` is the probability of relevance (thresholdable), `raw` the logit
/// difference it came from; `cached` says it came from the score cache instead of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RerankScore {
    pub score: f32,
    pub raw: f32,
    pub rank: u32,
    pub cached: bool,
}

/// The BM25 leg's evidence: the total, its rank in the BM25 list, and the part each field contributed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bm25Score {
    pub score: f32,
    pub rank: u32,
    /// `(field, boosted score)` for every field that matched.
    pub fields: Vec<(String, f32)>,
}

/// How long one stage of a request took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageTiming {
    pub stage: String,
    pub micros: u64,
}

/// How one rerank call used the rerank score cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CacheReport {
    /// `lru` or `redis://host:port`.
    pub backend: String,
    pub hits: usize,
    pub misses: usize,
    /// The cache failed (counted as misses); the reranker ran anyway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the misses waited in the reranker's queue.
    pub queued_micros: u64,
}
