//! The server's shared state: the served indexes (each an engine with its ingest thread), the models, the
//! rerank score cache, the metrics and the task store, and the one way a served index is opened.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use sieve_pipeline::{
    DenseSide, EmbedderHandle, Engine, EngineOptions, HnswParams, IndexSettings, OpenOptions, PipelineError,
    RerankerHandle, ScoreCache,
};

use crate::config::{IndexConfig, ServerConfig};
use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;
use crate::tasks::{spawn_ingest_thread, TaskStore};

/// One served index: its engine and the queue of its ingest thread.
pub struct IndexHandle {
    pub name: String,
    pub path: PathBuf,
    pub engine: Arc<Engine>,
    queue: Mutex<Option<mpsc::Sender<u64>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for IndexHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexHandle").field("name", &self.name).field("path", &self.path).finish()
    }
}

impl IndexHandle {
    /// Hands task `id` to the index's ingest thread.
    pub fn enqueue(&self, id: u64) -> Result<(), ApiError> {
        let q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        match q.as_ref().map(|tx| tx.send(id)) {
            Some(Ok(())) => Ok(()),
            _ => Err(ApiError::new(
                ErrorCode::Unavailable,
                "the server is shutting down; the task runs at the next start",
            )),
        }
    }
}

/// The models a server runs, loaded by the caller.
#[derive(Debug, Default, Clone)]
pub struct Models {
    pub embedder: Option<EmbedderHandle>,
    pub reranker: Option<RerankerHandle>,
}

/// Opens (or creates) one served index as an engine over the shared models and brings its vector graph up
/// to date. A new index gets a dense side when an embedder is loaded. An index keeps its embedding model: with
/// another one loaded, its dense leg is off (searches say so in `notes`) and a log line says why.
pub fn open_index(
    index: &IndexConfig,
    models: &Models,
    cache: Arc<dyn ScoreCache>,
    config: &ServerConfig,
) -> Result<Engine, PipelineError> {
    let engine = EngineOptions {
        embedder: models.embedder.clone(),
        reranker: models.reranker.clone(),
        cache,
        rerank_timeout: Duration::from_millis(config.rerank_timeout_ms),
        embed_timeout: Duration::from_millis(config.embed_timeout_ms),
        vector_save: config.vector_save(),
        ..EngineOptions::default()
    };
    let options = OpenOptions {
        engine,
        create: Some(IndexSettings::default()),
        dense_side: DenseSide::IfCreated(HnswParams::default()),
    };
    Engine::open(&index.path, options)
}

/// Everything the handlers share.
pub struct AppState {
    pub config: ServerConfig,
    pub indexes: BTreeMap<String, Arc<IndexHandle>>,
    pub default_index: String,
    pub models: Models,
    /// The rerank score cache the engines share; `/v1/rerank` reads and fills it too.
    pub cache: Arc<dyn ScoreCache>,
    pub metrics: Metrics,
    pub tasks: Arc<TaskStore>,
    shutting_down: AtomicBool,
    request_ids: AtomicU64,
    /// Tells this process's request ids from another's (the start time, in hex seconds).
    instance: String,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("indexes", &self.indexes).finish_non_exhaustive()
    }
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// Builds the state over engines already opened (in `config.indexes` order), resumes the tasks that an
    /// earlier run left unfinished, and starts one ingest thread per index.
    pub fn new(
        config: ServerConfig,
        engines: Vec<Engine>,
        models: Models,
        cache: Arc<dyn ScoreCache>,
    ) -> Result<AppState, crate::tasks::TaskError> {
        let named: Vec<(String, PathBuf)> = config.indexes.iter().map(|i| (i.name.clone(), i.path.clone())).collect();
        let (tasks, pending) = TaskStore::open(&named, config.max_finished_tasks)?;
        let tasks = Arc::new(tasks);
        let metrics = Metrics::new();
        if let Some(e) = &models.embedder {
            metrics.watch_worker("embedder", e.stats().clone());
        }
        if let Some(r) = &models.reranker {
            metrics.watch_worker("reranker", r.stats().clone());
        }
        let mut indexes = BTreeMap::new();
        for ((name, path), engine) in named.into_iter().zip(engines) {
            let engine = Arc::new(engine);
            let (tx, thread) = spawn_ingest_thread(&name, tasks.clone(), engine.clone(), &config);
            for id in pending.get(&name).into_iter().flatten() {
                let _ = tx.send(*id);
            }
            let handle = IndexHandle {
                name: name.clone(),
                path,
                engine,
                queue: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
            };
            indexes.insert(name, Arc::new(handle));
        }
        let default_index = config.indexes.first().map(|i| i.name.clone()).unwrap_or_default();
        Ok(AppState {
            config,
            indexes,
            default_index,
            models,
            cache,
            metrics,
            tasks,
            shutting_down: AtomicBool::new(false),
            request_ids: AtomicU64::new(1),
            instance: format!(
                "{:x}",
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
            ),
        })
    }

    /// The index a request names, or the default one.
    pub fn index(&self, name: Option<&str>) -> Result<&Arc<IndexHandle>, ApiError> {
        let name = name.unwrap_or(&self.default_index);
        self.indexes.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.indexes.keys().map(String::as_str).collect();
            ApiError::not_found(format!("no index named {name:?}; this server has {}", known.join(", ")))
        })
    }

    /// This process's part of every request id it makes.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn next_request_id(&self) -> u64 {
        self.request_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// From now on writes are refused and `/ready` says no.
    pub fn begin_stopping(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.tasks.begin_shutdown();
    }

    /// Stops accepting writes, lets each ingest thread finish its current task (at most `grace`), and leaves
    /// the rest recorded on disk for the next start.
    pub fn shutdown(&self, grace: Duration) {
        self.begin_stopping();
        let deadline = Instant::now() + grace;
        for h in self.indexes.values() {
            h.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        for h in self.indexes.values() {
            let Some(thread) = h.thread.lock().unwrap_or_else(|p| p.into_inner()).take() else { continue };
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                tracing::warn!(
                    "index {}: the running task did not finish in time; it resumes at the next start",
                    h.name
                );
            }
        }
    }
}
