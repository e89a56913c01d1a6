//! `sieve serve`: the HTTP API over one or more indexes. Settings are layered: built-in defaults, then the
//! TOML file given by `--config`, then `SIEVE_…` environment variables, then flags.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use sieve_pipeline::{EmbedderHandle, RerankerHandle, VectorSettings};
use sieve_server::{AppState, IndexConfig, Models, ServerConfig};

use crate::engine::{load_embedder, load_reranker, score_cache};

/// Every knob of the server. Each flag can also be set by the environment variable named in its help, or
/// in the `--config` TOML file under the same name with underscores (`max_queue = 64`).
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flags and environment variables override it).
    #[arg(long, env = "SIEVE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7700].
    #[arg(long, env = "SIEVE_LISTEN")]
    pub listen: Option<String>,
    /// An index to serve, as NAME=DIR (repeat for several; the first is the default). A DIR that does not
    /// exist is created empty (with embeddings when an embedder is loaded).
    #[arg(id = "serve_index", long = "index", value_name = "NAME=DIR", env = "SIEVE_INDEXES", value_delimiter = ',')]
    pub indexes: Vec<String>,
    /// A labelled query set (the `shared/data` layout) for the web UI's compare view to overlay on an index,
    /// as NAME=DIR: its queries in a picker, grades on judged documents, nDCG@10 per column (repeatable).
    #[arg(long = "judgments", value_name = "NAME=DIR", env = "SIEVE_JUDGMENTS", value_delimiter = ',')]
    pub judgments: Vec<String>,
    /// Embedding model (cache name such as `minilm`, or a directory) [default: the first index's own].
    #[arg(long, env = "SIEVE_EMBEDDER")]
    pub embedder: Option<String>,
    /// Reranker model directory (Qwen3-Reranker layout) or cache name.
    #[arg(long, env = "SIEVE_RERANKER")]
    pub reranker: Option<String>,
    /// Where models run: auto, cpu, cuda, cuda:N [default: auto].
    #[arg(long, env = "SIEVE_DEVICE")]
    pub device: Option<String>,
    /// Require `Authorization: Bearer KEY` on write and admin routes (documents, tasks, metrics).
    #[arg(long, env = "SIEVE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// CORS origin to allow (repeat, or `*` for any) [default: no CORS headers].
    #[arg(long = "cors-origin", env = "SIEVE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Largest request body in bytes [default: 67108864].
    #[arg(long, env = "SIEVE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Most documents per rerank request [default: 1000].
    #[arg(long, env = "SIEVE_MAX_RERANK_DOCUMENTS")]
    pub max_rerank_documents: Option<usize>,
    /// Most inputs per embeddings request [default: 2048].
    #[arg(long, env = "SIEVE_MAX_EMBED_INPUTS")]
    pub max_embed_inputs: Option<usize>,
    /// Longest document, input or query in characters; longer ones get 413 unless the request sets
    /// `truncate: true` [default: 100000].
    #[arg(long, env = "SIEVE_MAX_DOCUMENT_CHARS")]
    pub max_document_chars: Option<usize>,
    /// Jobs that may wait for each model before requests get 429 with Retry-After [default: 256].
    #[arg(long, env = "SIEVE_MAX_QUEUE")]
    pub max_queue: Option<usize>,
    /// How long a model waits for more requests to batch with, in ms [default: 2].
    #[arg(long, env = "SIEVE_BATCH_WAIT_MS")]
    pub batch_wait_ms: Option<u64>,
    /// Approximate tokens per reranker call [default: 16384].
    #[arg(long, env = "SIEVE_RERANK_BATCH_TOKENS")]
    pub rerank_batch_tokens: Option<usize>,
    /// Approximate tokens per embedder call [default: 8192].
    #[arg(long, env = "SIEVE_EMBED_BATCH_TOKENS")]
    pub embed_batch_tokens: Option<usize>,
    /// Reranker budget inside a search, in ms; past it the fused order is returned, degraded [default: 10000].
    #[arg(long, env = "SIEVE_RERANK_TIMEOUT_MS")]
    pub rerank_timeout_ms: Option<u64>,
    /// Query-embedding budget inside a search, in ms; past it the dense leg is skipped [default: 5000].
    #[arg(long, env = "SIEVE_EMBED_TIMEOUT_MS")]
    pub embed_timeout_ms: Option<u64>,
    /// Model budget of /v1/rerank and /v1/embeddings, in ms; past it 504 [default: 60000].
    #[arg(long, env = "SIEVE_MODEL_TIMEOUT_MS")]
    pub model_timeout_ms: Option<u64>,
    /// Rerank score cache: `lru` or `redis://HOST:PORT` [default: lru].
    #[arg(long, env = "SIEVE_RERANK_CACHE")]
    pub rerank_cache: Option<String>,
    /// Entries of the in-process rerank cache [default: 100000].
    #[arg(long, env = "SIEVE_LRU_CAPACITY")]
    pub lru_capacity: Option<usize>,
    /// Documents per ingest commit [default: 1000].
    #[arg(long, env = "SIEVE_INGEST_BATCH_SIZE")]
    pub ingest_batch_size: Option<usize>,
    /// Longest time between two saves of an index's vector graph while writes keep coming, in seconds; 0
    /// saves after every write task (a crash in between costs only catch-up at the next start) [default: 60].
    #[arg(long, env = "SIEVE_VECTOR_SAVE_INTERVAL_SECS")]
    pub vector_save_interval_secs: Option<u64>,
    /// How long `?wait=true` blocks, in seconds [default: 120].
    #[arg(long, env = "SIEVE_WAIT_TIMEOUT_SECS")]
    pub wait_timeout_secs: Option<u64>,
    /// How long shutdown waits for in-flight requests and the running task, in seconds [default: 30].
    #[arg(long, env = "SIEVE_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Finished tasks whose records are kept (the oldest go first) [default: 10000].
    #[arg(long, env = "SIEVE_MAX_FINISHED_TASKS")]
    pub max_finished_tasks: Option<usize>,
    /// Seconds a client may take to send a request's headers; also how long an idle kept-alive connection
    /// stays open [default: 10].
    #[arg(long, env = "SIEVE_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Seconds a client may take to send a request's body; past it 408 [default: 60].
    #[arg(long, env = "SIEVE_BODY_TIMEOUT_SECS")]
    pub body_timeout_secs: Option<u64>,
    /// Connections served at once; past it `/health` still answers and other routes get 503 [default: 4096].
    #[arg(long, env = "SIEVE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
}

macro_rules! layer {
    ($config:ident, $args:ident, $($field:ident),*) => {
        $(if let Some(v) = $args.$field.clone() { $config.$field = v; })*
    };
}

impl ServeArgs {
    /// Defaults, then the file, then environment and flags (clap has already merged those two).
    pub fn resolve(&self) -> Result<ServerConfig> {
        let mut c = match &self.config {
            Some(path) => ServerConfig::from_toml_file(path)?,
            None => ServerConfig::default(),
        };
        layer!(
            c,
            self,
            listen,
            device,
            max_body_bytes,
            max_rerank_documents,
            max_embed_inputs,
            max_document_chars,
            max_queue,
            batch_wait_ms,
            rerank_batch_tokens,
            embed_batch_tokens,
            rerank_timeout_ms,
            embed_timeout_ms,
            model_timeout_ms,
            rerank_cache,
            lru_capacity,
            ingest_batch_size,
            vector_save_interval_secs,
            wait_timeout_secs,
            shutdown_grace_secs,
            max_finished_tasks,
            header_timeout_secs,
            body_timeout_secs,
            max_connections
        );
        if self.embedder.is_some() {
            c.embedder = self.embedder.clone();
        }
        if self.reranker.is_some() {
            c.reranker = self.reranker.clone();
        }
        if self.api_key.is_some() {
            c.api_key = self.api_key.clone().filter(|k| !k.is_empty());
        }
        if !self.cors_origins.is_empty() {
            c.cors_origins = self.cors_origins.clone();
        }
        if !self.indexes.is_empty() {
            c.indexes = self
                .indexes
                .iter()
                .map(|spec| match spec.split_once('=') {
                    Some((name, path)) => Ok(IndexConfig { name: name.trim().into(), path: path.trim().into() }),
                    None => bail!("--index: expected NAME=DIR, found {spec:?}"),
                })
                .collect::<Result<_>>()?;
        }
        c.validate()?;
        Ok(c)
    }
}

/// Loads the models and opens (or creates) every index.
pub fn build_state(config: ServerConfig) -> Result<AppState> {
    let mut settings = Vec::new();
    for i in &config.indexes {
        settings.push(if i.path.exists() { VectorSettings::load(&i.path)? } else { None });
    }
    let embedder_name = config.embedder.clone().or_else(|| settings.iter().flatten().next().map(|s| s.model.clone()));
    let embedder = match &embedder_name {
        Some(name) => Some(EmbedderHandle::spawn(
            name,
            load_embedder(name, &config.device)?,
            config.worker_options(config.embed_batch_tokens),
        )),
        None => None,
    };
    let reranker = match &config.reranker {
        Some(name) => Some(RerankerHandle::spawn(
            name,
            load_reranker(name, &config.device)?,
            config.worker_options(config.rerank_batch_tokens),
        )),
        None => None,
    };
    let cache = score_cache(&config.rerank_cache, config.lru_capacity)?;
    let models = Models { embedder, reranker };
    let mut engines = Vec::new();
    for i in &config.indexes {
        let engine = sieve_server::open_index(i, &models, cache.clone(), &config)
            .with_context(|| format!("index {}: opening {}", i.name, i.path.display()))?;
        engines.push(engine);
    }
    Ok(AppState::new(config.clone(), engines, models, cache)?)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

impl ServeArgs {
    /// The web UI's options: `--judgments NAME=DIR`, each naming a served index.
    pub fn ui_options(&self, config: &ServerConfig) -> Result<sieve_web::UiOptions> {
        let mut judgments = Vec::new();
        for j in &self.judgments {
            let Some((name, dir)) = j.split_once('=') else {
                anyhow::bail!(
                    "--judgments: expected NAME=DIR (an index name and a labelled set's folder), found {j:?}"
                );
            };
            if !config.indexes.iter().any(|i| i.name == name) {
                let served: Vec<&str> = config.indexes.iter().map(|i| i.name.as_str()).collect();
                anyhow::bail!("--judgments {j}: expected a served index ({}), found {name:?}", served.join(", "));
            }
            judgments.push((name.to_owned(), PathBuf::from(dir)));
        }
        Ok(sieve_web::UiOptions { judgments })
    }
}

/// Serves `config` (with the web UI's `ui` options) until SIGINT or SIGTERM.
pub fn serve(config: ServerConfig, ui: sieve_web::UiOptions) -> Result<()> {
    let listen = config.listen.clone();
    let ui = sieve_web::routes(&ui).context("loading the web UI's judgments")?;
    let state = Arc::new(build_state(config)?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr()?;
        let names: Vec<&str> = state.indexes.keys().map(String::as_str).collect();
        eprintln!(
            "sieve: serving {} on http://{addr} (API: /v1/search, /v1/feed, /v1/rerank, /v1/embeddings; /openapi.json)",
            names.join(", ")
        );
        eprintln!("sieve: web UI at http://{addr}/ (search; also /feed, /compare, /playground, /ingest, /dashboard)");
        sieve_server::serve_with(listener, state, Some(ui), shutdown_signal()).await.context("serving")
    })?;
    eprintln!("sieve: stopped");
    Ok(())
}

pub fn run(args: ServeArgs) -> Result<()> {
    let config = args.resolve()?;
    let ui = args.ui_options(&config)?;
    serve(config, ui)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sieve.toml");
        std::fs::write(&file, "max_queue = 8\nbatch_wait_ms = 5\n[[indexes]]\nname = \"a\"\npath = \"/a\"\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            max_queue: Some(16),
            indexes: vec!["b=/b".into(), "c=/c".into()],
            ..ServeArgs::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!((c.max_queue, c.batch_wait_ms, c.max_rerank_documents), (16, 5, 1000));
        assert_eq!(c.indexes.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        let bad = ServeArgs { indexes: vec!["nopath".into()], ..ServeArgs::default() };
        assert!(bad.resolve().unwrap_err().to_string().contains("NAME=DIR"));
    }
}
