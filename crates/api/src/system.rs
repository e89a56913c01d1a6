//! `/health`, `/ready` and `/v1/info`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IndexReady {
    pub name: String,
    pub documents: u64,
    pub vectors: usize,
    pub dense: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    pub ready: bool,
    pub indexes: Vec<IndexReady>,
    pub embedder: bool,
    pub reranker: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_rerank_documents: usize,
    pub max_embed_inputs: usize,
    pub max_document_chars: usize,
    pub max_queue: usize,
    pub max_depth: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IndexInfo {
    pub name: String,
    pub path: String,
    pub documents: u64,
    pub vectors: usize,
    /// The embedding model the index's vectors come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Info {
    pub version: String,
    pub embedder: Option<ModelInfo>,
    pub reranker: Option<ModelInfo>,
    pub indexes: Vec<IndexInfo>,
    pub default_index: String,
    pub limits: Limits,
    pub rerank_cache: String,
    pub auth: bool,
}

/// A loaded model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelInfo {
    pub path: String,
    pub architecture: String,
    /// `embedder` or `reranker`.
    pub role: String,
    pub device: String,
    pub dtype: String,
    pub hidden_size: usize,
    pub max_length: usize,
    /// The smallest `max_length` a request may ask for (the reranker's prompt template plus one).
    pub min_length: usize,
    /// The languages the model covers (empty: multilingual or not known to be limited); a hybrid search in
    /// another language skips the dense leg.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    pub non_embedding_params: usize,
    /// Why the model runs elsewhere than requested (e.g. CUDA asked for, CPU used), if it does.
    pub fallback: Option<String>,
}
