//! The request and response bodies of the JSON API. Their schemas (via `utoipa`) make up `/openapi.json`.
//! Rerank and embeddings accept the shapes existing clients send (Cohere, Jina, vLLM, TEI, OpenAI; see
//! `../shared/reference/apis.md`) as one superset.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sieve_core::{Hit, StageTiming};
use sieve_pipeline::{FacetCount, FacetField};
use utoipa::{IntoParams, ToSchema};

// ---------------------------------------------------------------- search

/// Which first-stage legs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    Bm25,
    Dense,
    /// BM25 and dense, fused (BM25 alone on an index without embeddings).
    #[default]
    Hybrid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FusionMethod {
    Rrf,
    Linear,
}

/// How the two legs' lists are merged.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FusionBody {
    pub method: FusionMethod,
    /// RRF's k (default 60).
    pub k: Option<f32>,
    pub bm25_weight: Option<f32>,
    pub dense_weight: Option<f32>,
}

/// `POST /v1/search`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    pub query: String,
    /// Index to search (default: the server's first).
    pub index: Option<String>,
    #[serde(default)]
    pub mode: SearchMode,
    /// Rerank the top `window` fused candidates with the cross-encoder (default: on when a reranker is loaded).
    pub rerank: Option<bool>,
    /// Candidates the cross-encoder rescores (default 50).
    #[schema(minimum = 1, maximum = 1000)]
    pub window: Option<usize>,
    /// The reranker's task instruction (Qwen3-Reranker's instruct slot).
    pub instruction: Option<String>,
    /// Tokens per (query, document) pair given to the reranker, template included.
    pub max_length: Option<usize>,
    /// Hits per page (default 10).
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Hits of the final ranked set to skip.
    #[schema(minimum = 0, maximum = 999)]
    pub offset: Option<usize>,
    /// Filters such as `brand=sony`, `price<300`, `category=audio/headphones`, `published_at>=2024-01-01`.
    #[serde(default)]
    pub filters: Vec<String>,
    /// Fields to count over the final ranked set.
    #[serde(default)]
    #[schema(value_type = Vec<String>, example = json!(["brand", "price"]))]
    pub facets: Vec<FacetField>,
    /// Values per facet (default 10).
    #[schema(minimum = 1, maximum = 1000)]
    pub facet_size: Option<usize>,
    /// `price:asc`, `price:desc`, `published_at:asc` or `published_at:desc` (default: relevance).
    pub sort: Option<String>,
    pub fusion: Option<FusionBody>,
    /// Candidates each leg recalls (default 100).
    #[schema(minimum = 1, maximum = 1000)]
    pub recall_k: Option<usize>,
    /// HNSW candidate list size.
    #[schema(minimum = 1, maximum = 10000)]
    pub ef: Option<usize>,
    /// Query language for BM25 analysis (e.g. `zh`, `en`).
    pub lang: Option<String>,
    /// Attach every stage's timing to each hit.
    #[serde(default)]
    pub explain: bool,
    /// Include each hit's stored document (default true).
    pub with_documents: Option<bool>,
    /// Reranker time budget for this request; past it the fused order is returned, `degraded`.
    pub rerank_timeout_ms: Option<u64>,
}

/// `POST /v1/search` answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchResult {
    pub index: String,
    /// Hits with every stage's score and rank (`scores.bm25`, `.dense`, `.fused`, `.rerank`).
    pub hits: Vec<Hit>,
    /// Size of the final ranked set that `offset` pages through and facets count.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facets: Option<BTreeMap<String, Vec<FacetCount>>>,
    /// A stage could not run as asked; `reasons` say which. The hits are still the best order available.
    pub degraded: bool,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub timings: Vec<StageTiming>,
    pub reranked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<sieve_pipeline::CacheReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dense: Option<sieve_pipeline::DenseReport>,
}

// ---------------------------------------------------------------- rerank

/// A document to rerank: a string or `{text}`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum RerankDocument {
    Text(String),
    Object { text: String },
}

impl RerankDocument {
    pub fn text(&self) -> &str {
        match self {
            RerankDocument::Text(t) | RerankDocument::Object { text: t } => t,
        }
    }
}

/// `POST /v1/rerank`, `/rerank`, `/v2/rerank`: the Cohere, Jina, vLLM and TEI request shapes in one.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct RerankBody {
    pub model: Option<String>,
    pub query: String,
    /// Cohere/Jina/vLLM: strings or `{text}` objects.
    pub documents: Option<Vec<RerankDocument>>,
    /// TEI: strings (the answer is then TEI's bare array).
    pub texts: Option<Vec<String>>,
    /// Results to return, best first (absent or 0: all).
    pub top_n: Option<usize>,
    /// Include each document's text in the results.
    pub return_documents: Option<bool>,
    /// TEI's name for `return_documents`.
    pub return_text: Option<bool>,
    /// Qwen3-Reranker's task instruction (vLLM drops it; Sieve honours it).
    pub instruction: Option<String>,
    /// Cut documents over the server's character limit instead of refusing them with 413.
    pub truncate: Option<bool>,
    /// TEI: only `right` (the document's tail is cut; the prompt's suffix is always kept).
    pub truncation_direction: Option<String>,
    /// TEI: `score` is the yes/no logit difference instead of the probability.
    pub raw_scores: Option<bool>,
    /// Cohere: tokens per document.
    pub max_tokens_per_doc: Option<usize>,
    /// Tokens per (query, document) pair, template included.
    pub max_length: Option<usize>,
    /// Serve pairs scored before from the server's rerank score cache (default true); false scores every
    /// document with the model (and still stores the scores).
    pub cache: Option<bool>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentText {
    pub text: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RerankResultItem {
    pub index: usize,
    /// Probability of relevance, `sigmoid(raw_score)`.
    pub relevance_score: f32,
    /// The yes/no logit difference.
    pub raw_score: f32,
    pub truncated: bool,
    /// The score came from the rerank score cache, not from this request's model call.
    pub cached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentText>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BilledUnits {
    pub search_units: usize,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RerankMeta {
    pub billed_units: BilledUnits,
}

/// The rerank answer (all but TEI-shaped requests).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RerankResult {
    pub id: String,
    pub model: String,
    pub results: Vec<RerankResultItem>,
    pub usage: Usage,
    pub meta: RerankMeta,
}

/// One item of TEI's bare-array answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TeiRank {
    pub index: usize,
    pub score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

// ---------------------------------------------------------------- embeddings

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    /// Gets the model's query instruction (Qwen3-Embedding).
    Query,
    Document,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EncodingFormat {
    Float,
    /// Little-endian f32 bytes, base64.
    Base64,
}

/// `POST /v1/embeddings`: OpenAI's shape plus `input_type` and `instruction`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct EmbeddingsBody {
    pub input: EmbeddingInput,
    pub model: Option<String>,
    /// Matryoshka: keep this many leading components, then L2-normalise.
    #[schema(minimum = 1)]
    pub dimensions: Option<usize>,
    pub encoding_format: Option<EncodingFormat>,
    pub user: Option<String>,
    /// `query` or `document` (default `document`).
    pub input_type: Option<InputType>,
    /// Query instruction (Qwen3-Embedding; default the model's).
    pub instruction: Option<String>,
    /// Cut inputs over the server's character limit instead of refusing them with 413.
    pub truncate: Option<bool>,
}

/// A vector (floats) or its base64 encoding.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmbeddingItem {
    pub object: &'static str,
    pub embedding: EmbeddingVector,
    pub index: usize,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmbeddingsResult {
    pub object: &'static str,
    pub data: Vec<EmbeddingItem>,
    pub model: String,
    pub usage: Usage,
}

// ---------------------------------------------------------------- documents, tasks, system

/// Query parameters of the document routes.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DocumentParams {
    /// Index (default: the server's first).
    pub index: Option<String>,
    /// Block until the write is committed (or `wait_timeout_secs` passes).
    pub wait: Option<bool>,
}

/// Query parameters of `GET /v1/tasks`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskListParams {
    /// Most recent tasks to list (default 20, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IndexReady {
    pub name: String,
    pub documents: u64,
    pub vectors: usize,
    pub dense: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ready {
    pub ready: bool,
    pub indexes: Vec<IndexReady>,
    pub embedder: bool,
    pub reranker: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_rerank_documents: usize,
    pub max_embed_inputs: usize,
    pub max_document_chars: usize,
    pub max_queue: usize,
    pub max_depth: usize,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IndexInfo {
    pub name: String,
    pub path: String,
    pub documents: u64,
    pub vectors: usize,
    /// The embedding model the index's vectors come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Info {
    pub version: &'static str,
    pub embedder: Option<sieve_models::ModelInfo>,
    pub reranker: Option<sieve_models::ModelInfo>,
    pub indexes: Vec<IndexInfo>,
    pub default_index: String,
    pub limits: Limits,
    pub rerank_cache: String,
    pub auth: bool,
}
