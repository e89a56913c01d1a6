//! `POST /v1/embeddings`: OpenAI's shape plus `input_type`, `instruction` and Matryoshka `dimensions`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::rerank::Usage;

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
    #[serde(default, deserialize_with = "crate::int::opt_count")]
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
    pub object: String,
    pub embedding: EmbeddingVector,
    pub index: usize,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmbeddingsResult {
    pub object: String,
    pub data: Vec<EmbeddingItem>,
    pub model: String,
    pub usage: Usage,
}
