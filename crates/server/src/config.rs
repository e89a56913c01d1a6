//! The server's settings. Layered by the `sieve serve` command: built-in defaults, then a TOML file, then
//! `SIEVE_…` environment variables, then flags; this module owns the defaults and the file format.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One index the server serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexConfig {
    /// The name clients use (`"index": "products"`, `?index=products`).
    pub name: String,
    pub path: PathBuf,
}

/// Everything `sieve serve` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Indexes to serve; the first is the default for requests that name none.
    pub indexes: Vec<IndexConfig>,
    /// Embedding model (cache name such as `minilm`, or a directory); default: each index's own.
    pub embedder: Option<String>,
    /// Reranker model directory (Qwen3-Reranker layout).
    pub reranker: Option<String>,
    /// `auto`, `cpu` or `cuda:N`.
    pub device: String,
    /// When set, write and admin routes need `Authorization: Bearer <api_key>`.
    pub api_key: Option<String>,
    /// Origins allowed by CORS (`*` for any); empty disables CORS headers.
    pub cors_origins: Vec<String>,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Most documents in one rerank request.
    pub max_rerank_documents: usize,
    /// Most inputs in one embeddings request.
    pub max_embed_inputs: usize,
    /// Longest document (or embedding input, or query), in characters; longer ones get 413 unless the request
    /// allows truncation.
    pub max_document_chars: usize,
    /// Jobs that may wait for each model; past it requests get 429 with `Retry-After`.
    pub max_queue: usize,
    /// How long a model waits for more requests to batch with the first one, in milliseconds.
    pub batch_wait_ms: u64,
    /// Approximate tokens per reranker call.
    pub rerank_batch_tokens: usize,
    /// Approximate tokens per embedder call.
    pub embed_batch_tokens: usize,
    /// Longest wait for the reranker inside a search before answering with the fused order (degraded).
    pub rerank_timeout_ms: u64,
    /// Longest wait for a query embedding inside a search before skipping the dense leg (degraded).
    pub embed_timeout_ms: u64,
    /// Longest wait for the model in `/v1/rerank` and `/v1/embeddings` (then 504).
    pub model_timeout_ms: u64,
    /// Rerank score cache: `lru` (in process) or `redis://HOST:PORT` (shared by replicas).
    pub rerank_cache: String,
    /// Entries of the in-process cache.
    pub lru_capacity: usize,
    /// Documents per ingest commit.
    pub ingest_batch_size: usize,
    /// While writes keep coming, an index's vector graph is written to disk at most this often, in seconds;
    /// the rest is written when its writes pause for as long, and at shutdown. 0 writes it after every write
    /// task. A crash in between loses nothing: the next start re-inserts the stored vectors the saved graph
    /// lacks (no model runs), so this trades catch-up time at a restart for write throughput (a save dumps
    /// the whole graph: seconds at 10^6 vectors).
    pub vector_save_interval_secs: u64,
    /// How long `?wait=true` blocks before answering with the task still running, in seconds.
    pub wait_timeout_secs: u64,
    /// How long shutdown waits for in-flight requests and the running ingest task, in seconds.
    pub shutdown_grace_secs: u64,
    /// Finished tasks (succeeded or failed) whose records are kept, over all indexes; past it the oldest are
    /// removed with their files. The newest task is always kept, so ids keep increasing across restarts.
    pub max_finished_tasks: usize,
    /// How long a client may take to send a request's headers, in seconds; the same bound closes a kept-alive
    /// connection that sends no next request. Past it the connection is closed.
    pub header_timeout_secs: u64,
    /// How long a client may take to send a request's body, in seconds; past it 408.
    pub body_timeout_secs: u64,
    /// Connections served at once. Past it a connection gets one answer and is closed: `/health` still says
    /// ok, every other route 503 with `Retry-After`; keep it under the process's open-file limit.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:7700".into(),
            indexes: Vec::new(),
            embedder: None,
            reranker: None,
            device: "auto".into(),
            api_key: None,
            cors_origins: Vec::new(),
            max_body_bytes: 64 << 20,
            max_rerank_documents: 1000,
            max_embed_inputs: 2048,
            max_document_chars: 100_000,
            max_queue: 256,
            batch_wait_ms: 2,
            rerank_batch_tokens: sieve_pipeline::RERANK_BATCH_TOKENS,
            embed_batch_tokens: sieve_pipeline::EMBED_BATCH_TOKENS,
            rerank_timeout_ms: 10_000,
            embed_timeout_ms: 5_000,
            model_timeout_ms: 60_000,
            rerank_cache: "lru".into(),
            lru_capacity: 100_000,
            ingest_batch_size: 1000,
            vector_save_interval_secs: 60,
            wait_timeout_secs: 120,
            shutdown_grace_secs: 30,
            max_finished_tasks: 10_000,
            header_timeout_secs: 10,
            body_timeout_secs: 60,
            max_connections: 4096,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("setting `{field}`: expected {expected}, found {found}")]
    Invalid { field: &'static str, expected: &'static str, found: String },
}

impl ServerConfig {
    /// When the engines save their vector graphs under these settings.
    pub fn vector_save(&self) -> sieve_pipeline::SavePolicy {
        match self.vector_save_interval_secs {
            0 => sieve_pipeline::SavePolicy::EveryChange,
            secs => sieve_pipeline::SavePolicy::Interval(std::time::Duration::from_secs(secs)),
        }
    }

    /// How a model worker batches and queues under these settings, with a batch budget of `budget` tokens.
    pub fn worker_options(&self, budget: usize) -> sieve_pipeline::WorkerOptions {
        sieve_pipeline::WorkerOptions {
            budget,
            max_wait: std::time::Duration::from_millis(self.batch_wait_ms),
            max_queue: self.max_queue,
        }
    }

    /// Reads a TOML file; keys it leaves out keep their defaults, unknown keys are an error.
    pub fn from_toml_file(path: &Path) -> Result<ServerConfig, ConfigError> {
        let file = |message: String| ConfigError::File { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| file(e.to_string()))?;
        toml::from_str(&text).map_err(|e| file(e.to_string()))
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, expected, found: String| Err(ConfigError::Invalid { field, expected, found });
        if self.indexes.is_empty() {
            return bad("indexes", "at least one index", "none".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for i in &self.indexes {
            let ok = !i.name.is_empty()
                && i.name.len() <= 64
                && i.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return bad("indexes.name", "1-64 characters of [A-Za-z0-9_-]", format!("{:?}", i.name));
            }
            if !names.insert(i.name.as_str()) {
                return bad("indexes.name", "unique names", format!("{:?} twice", i.name));
            }
        }
        for (field, v) in [
            ("max_body_bytes", self.max_body_bytes),
            ("max_rerank_documents", self.max_rerank_documents),
            ("max_embed_inputs", self.max_embed_inputs),
            ("max_document_chars", self.max_document_chars),
            ("max_queue", self.max_queue),
            ("ingest_batch_size", self.ingest_batch_size),
            ("max_finished_tasks", self.max_finished_tasks),
            ("max_connections", self.max_connections),
            ("header_timeout_secs", self.header_timeout_secs as usize),
            ("body_timeout_secs", self.body_timeout_secs as usize),
        ] {
            if v == 0 {
                return bad(field, "a number > 0", "0".into());
            }
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad("listen", "HOST:PORT with an IP address (e.g. 127.0.0.1:7700)", format!("{:?}", self.listen));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_file_overrides_only_what_it_names_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sieve.toml");
        std::fs::write(&p, "listen = \"0.0.0.0:9000\"\nmax_queue = 8\n[[indexes]]\nname = \"news\"\npath = \"/x\"\n")
            .unwrap();
        let c = ServerConfig::from_toml_file(&p).unwrap();
        assert_eq!((c.listen.as_str(), c.max_queue, c.max_rerank_documents), ("0.0.0.0:9000", 8, 1000));
        assert_eq!(c.indexes, vec![IndexConfig { name: "news".into(), path: "/x".into() }]);
        c.validate().unwrap();

        std::fs::write(&p, "max_qeue = 8\n").unwrap();
        let e = ServerConfig::from_toml_file(&p).unwrap_err().to_string();
        assert!(e.contains("max_qeue"), "{e}");
    }

    #[test]
    fn validation_names_the_setting() {
        let mut c = ServerConfig::default();
        assert!(c.validate().unwrap_err().to_string().contains("`indexes`"));
        c.indexes = vec![IndexConfig { name: "a b".into(), path: "/x".into() }];
        assert!(c.validate().unwrap_err().to_string().contains("indexes.name"));
        c.indexes[0].name = "ok".into();
        c.max_queue = 0;
        assert!(c.validate().unwrap_err().to_string().contains("max_queue"));
        c.max_queue = 8;
        c.max_finished_tasks = 0;
        assert!(c.validate().unwrap_err().to_string().contains("max_finished_tasks"));
    }
}
