//! Sieve's models: the Qwen3-Reranker cross-encoder, Qwen3-Embedding and BERT-family embedders, on candle.
//!
//! Models sit behind two synchronous, batch-level traits, [`Reranker`] and [`Embedder`], meant to be driven
//! from a dedicated worker thread (the server's batching layer sits above them). A model is a Hugging
//! Face-layout directory ([`files::ModelDir`]); the architecture comes from its `config.json`.
//!
//! The scoring contracts (prompt template, yes/no ids, pooling) are in `../shared/reference/models.md`; the
//! forward passes are packed (no padding, no cross-row attention), so a row's score never depends on what it
//! was batched with. [`synthetic`] builds deterministic random-weight checkpoints for parity tests.

pub mod attention;
pub mod bert;
pub mod cpu_attention;
#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "cuda")]
mod cuda_check;
pub mod device;
pub mod embedder;
pub mod error;
pub mod files;
pub mod hub;
pub mod ops;
pub mod profile;
pub mod qwen3;
pub mod reranker;
#[cfg(any(test, feature = "testing"))]
pub mod standin;
pub mod synthetic;

use std::path::Path;

use serde::Serialize;

#[cfg(feature = "cuda")]
pub use cuda_check::attention_check;
pub use device::{DeviceSpec, Placement};
pub use embedder::{BertEmbedder, Qwen3Embedder};
pub use error::{ModelError, Result};
pub use files::ModelDir;
pub use reranker::{Qwen3Reranker, RerankerConfig, DEFAULT_INSTRUCTION};

/// What an embedder is given: a query (which gets the model's instruction, if it uses one) or a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedInput<'a> {
    Query { text: &'a str, instruction: Option<&'a str> },
    Document(&'a str),
}

impl<'a> EmbedInput<'a> {
    pub fn query(text: &'a str) -> Self {
        EmbedInput::Query { text, instruction: None }
    }
}

/// Per-request embedding options.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmbedOptions {
    /// Matryoshka: keep the first `dimensions` components, then L2-normalise.
    pub dimensions: Option<usize>,
    /// Tokens per input (capped by the model's own limit); longer inputs lose their tail.
    pub max_length: Option<usize>,
}

/// L2-normalised vectors, one per input, with token counts and truncation flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: Vec<usize>,
    pub truncated: Vec<bool>,
}

/// One query and the documents to score against it.
#[derive(Debug, Clone, Copy)]
pub struct RerankInput<'a> {
    pub query: &'a str,
    pub documents: &'a [&'a str],
    /// Task instruction; the model's default when `None` or blank.
    pub instruction: Option<&'a str>,
    /// Tokens per (query, document) input, template included (default 8192, capped per engine).
    pub max_length: Option<usize>,
    /// Run the shared system + instruction + query part once and reuse it for every document.
    pub share_prefix: bool,
}

impl<'a> RerankInput<'a> {
    pub fn new(query: &'a str, documents: &'a [&'a str]) -> Self {
        RerankInput { query, documents, instruction: None, max_length: None, share_prefix: true }
    }
}

/// A document's relevance: `score` is a probability (`sigmoid(raw)`), `raw` the yes/no logit difference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RerankScore {
    pub score: f32,
    pub raw: f32,
    /// Tokens the model saw for this pair (template included).
    pub tokens: usize,
    /// Whether the document's tail was cut to fit `max_length`.
    pub truncated: bool,
}

/// A loaded model, as reported by `/v1/info` and `sieve models`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    pub path: String,
    pub architecture: String,
    pub role: String,
    pub device: String,
    pub dtype: String,
    pub hidden_size: usize,
    pub max_length: usize,
    /// The smallest `max_length` a request may ask for: the tokens of the prompt template that every input
    /// carries, plus one (1 where there is no template).
    pub min_length: usize,
    /// The languages (primary subtags) the model was trained for; empty: multilingual, or not known to be
    /// limited. A search whose query is in another language skips the dense leg in hybrid mode.
    pub languages: Vec<String>,
    pub non_embedding_params: usize,
    /// Why the model runs elsewhere than requested (e.g. CUDA asked for, CPU used), if it does.
    pub fallback: Option<String>,
}

impl ModelInfo {
    fn new(dir: &ModelDir, role: &str, p: &Placement, hidden: usize, max_length: usize, params: usize) -> Self {
        ModelInfo {
            path: dir.dir.display().to_string(),
            architecture: dir.architecture(),
            role: role.into(),
            device: p.device_name(),
            dtype: format!("{:?}", p.dtype).to_lowercase(),
            hidden_size: hidden,
            max_length,
            min_length: 1,
            languages: Vec::new(),
            non_embedding_params: params,
            fallback: p.fallback.clone(),
        }
    }
}

/// Scores (query, document) pairs. Synchronous and batch-level: one call may carry several queries.
pub trait Reranker: Send + Sync {
    fn info(&self) -> &ModelInfo;
    /// One score list per input, in document order.
    fn rerank(&self, batch: &[RerankInput<'_>]) -> Result<Vec<Vec<RerankScore>>>;
}

/// Turns texts into L2-normalised vectors. Synchronous and batch-level.
pub trait Embedder: Send + Sync {
    fn info(&self) -> &ModelInfo;
    fn embed(&self, inputs: &[EmbedInput<'_>], opts: &EmbedOptions) -> Result<Embeddings>;
}

/// Sets up candle's CPU threading for model inference; call once at program start, before any thread is spawned.
///
/// candle runs element-wise ops on its own spinning thread pool, beside the rayon pool its GEMMs use. On a small
/// machine the two contend: threads spin waiting for a core the other pool holds. Sieve's heavy element-wise
/// ops are its own rayon kernels (`ops`), so candle's pool is sized to one thread (no spinning) unless the
/// user set `CANDLE_NUM_THREADS` (measured in BENCHMARKS.md: MiniLM at batch 1, 34.6 → 39.4 texts/s).
pub fn init_cpu_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // Edition 2021: `set_var` is safe; this runs before any other thread exists.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Loads the reranker in `dir` (Qwen3 architecture) on `device`.
pub fn load_reranker(dir: &Path, device: DeviceSpec, config: RerankerConfig) -> Result<Qwen3Reranker> {
    let md = ModelDir::open(dir)?;
    match md.architecture().as_str() {
        "qwen3" | "Qwen3ForCausalLM" | "Qwen3ForSequenceClassification" => {
            Qwen3Reranker::load(md, &device.resolve(), config)
        }
        other => Err(ModelError::UnsupportedArchitecture {
            file: md.config_file(),
            found: other.to_string(),
            supported: "qwen3 (Qwen3-Reranker 0.6B/4B/8B)".into(),
        }),
    }
}

/// Loads the embedder in `dir` on `device`: Qwen3-Embedding or a BERT-family sentence encoder.
pub fn load_embedder(dir: &Path, device: DeviceSpec) -> Result<Box<dyn Embedder>> {
    let md = ModelDir::open(dir)?;
    let placement = device.resolve();
    match md.architecture().as_str() {
        "qwen3" | "Qwen3Model" | "Qwen3ForCausalLM" => {
            Ok(Box::new(Qwen3Embedder::load(md, &placement, embedder::QWEN3_MAX_LENGTH)?))
        }
        "bert" | "BertModel" => {
            Ok(Box::new(BertEmbedder::load(md, &Placement { dtype: candle_core::DType::F32, ..placement })?))
        }
        other => Err(ModelError::UnsupportedArchitecture {
            file: md.config_file(),
            found: other.to_string(),
            supported: "qwen3 (Qwen3-Embedding), bert (e.g. all-MiniLM-L6-v2)".into(),
        }),
    }
}
