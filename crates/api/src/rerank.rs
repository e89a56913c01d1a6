//! `POST /v1/rerank` (`/rerank`, `/v2/rerank`): the Cohere, Jina, vLLM and TEI request shapes as one superset
//! (`../shared/reference/apis.md`), and the answers in the shape each client expects.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    #[serde(default, deserialize_with = "crate::int::opt_count")]
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
    #[serde(default, deserialize_with = "crate::int::opt_count")]
    #[schema(minimum = 1)]
    pub max_tokens_per_doc: Option<usize>,
    /// Tokens per (query, document) pair, template included.
    #[serde(default, deserialize_with = "crate::int::opt_count")]
    #[schema(minimum = 1)]
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
