//! The engine: one index directory (BM25 + stored vectors + graph) with the models on their worker threads
//! and the score cache; [`Engine::open`] is the one way to get one, and [`Engine::search`] runs the
//! [stages](crate::stages) in order.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sieve_core::Document;
use sieve_models::EmbedOptions;
use sieve_text::{IndexSettings, TextError, TextIndex};
use sieve_vector::HnswParams;

use crate::cache::{LruScoreCache, ScoreCache};
use crate::graph::{SavePolicy, VectorSettings, VectorState};
use crate::models::{EmbedJob, EmbedderHandle, RerankerHandle};
use crate::stages::fuse::fuse_adapted;
use crate::stages::Ranking;
use crate::tuning::SearchSettings;
use crate::worker::{CallTiming, CancelToken, WorkerError};
use crate::{PipelineError, SearchRequest, SearchResponse};

/// The text a document is embedded and reranked by: its title and body, space-separated.
pub fn doc_text(doc: &Document) -> String {
    match (doc.title.as_deref().map(str::trim), doc.body.as_deref().map(str::trim)) {
        (Some(t), Some(b)) if !t.is_empty() && !b.is_empty() => format!("{t} {b}"),
        (Some(t), _) if !t.is_empty() => t.to_owned(),
        (_, Some(b)) => b.to_owned(),
        _ => String::new(),
    }
}

/// How to open an [`Engine`].
pub struct EngineOptions {
    /// The embedding model on its worker (needed to ingest into, and to query, the dense side).
    pub embedder: Option<EmbedderHandle>,
    /// The reranker on its worker; its name keys the cached scores.
    pub reranker: Option<RerankerHandle>,
    pub cache: Arc<dyn ScoreCache>,
    /// Longest wait for the reranker per request; past it the response is the fused order, `degraded`.
    pub rerank_timeout: Duration,
    /// Longest wait for the query embedding; past it the dense leg is skipped, `degraded`.
    pub embed_timeout: Duration,
    /// Search-time HNSW settings (`ef_search`, `exact_below`) overriding the index's.
    pub ef_search: Option<usize>,
    pub exact_below: Option<usize>,
    /// When the vector graph is written to disk.
    pub vector_save: SavePolicy,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            embedder: None,
            reranker: None,
            cache: Arc::new(LruScoreCache::new(100_000)),
            rerank_timeout: Duration::from_secs(10),
            embed_timeout: Duration::from_secs(5),
            ef_search: None,
            exact_below: None,
            vector_save: SavePolicy::EveryChange,
        }
    }
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions").field("cache", &self.cache.describe()).finish_non_exhaustive()
    }
}

/// How [`Engine::open`] treats the index folder and its dense side.
#[derive(Debug, Default)]
pub struct OpenOptions {
    /// Models, cache and time budgets.
    pub engine: EngineOptions,
    /// Create the index with these settings when the folder holds none; without, a missing index is an error.
    pub create: Option<IndexSettings>,
    /// When the index gets a dense side embedded by the loaded embedder.
    pub dense_side: DenseSide,
}

impl From<EngineOptions> for OpenOptions {
    /// Open an existing index with these models; no dense side is added.
    fn from(engine: EngineOptions) -> OpenOptions {
        OpenOptions { engine, ..OpenOptions::default() }
    }
}

/// When [`Engine::open`] gives an index a dense side (embedded by the loaded embedder, recorded under its name).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum DenseSide {
    /// Never: the index keeps what it has (searching).
    #[default]
    Keep,
    /// When this open created the index (a server given an embedder and a new index name).
    IfCreated(HnswParams),
    /// Always, or check that the one it has matches (ingesting with an embedder). An index that holds
    /// documents without embeddings is refused one.
    Ensure(HnswParams),
}

/// An open index with its models.
pub struct Engine {
    pub(crate) dir: Option<PathBuf>,
    pub(crate) text: TextIndex,
    pub(crate) settings: Option<VectorSettings>,
    pub(crate) vectors: RwLock<Option<VectorState>>,
    pub(crate) embedder: Option<EmbedderHandle>,
    pub(crate) embedder_dim: Option<usize>,
    reranker: Option<RerankerHandle>,
    cache: Arc<dyn ScoreCache>,
    rerank_timeout: Duration,
    embed_timeout: Duration,
    pub(crate) search_params: (Option<usize>, Option<usize>),
    pub(crate) vector_save: SavePolicy,
    pub(crate) sync_lock: Mutex<()>,
    /// The BM25 commit the engine was last brought up to date with (`u64::MAX` before the first sync).
    pub(crate) synced_commit: AtomicU64,
    search_settings: SearchSettings,
    /// The key feed cursors are signed with (`cursor.key` beside the index, made on first use).
    pub(crate) cursor_key: std::sync::OnceLock<Vec<u8>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("dir", &self.dir).field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the index in `dir` (creating it when `options.create` says so), attaches the models, gives it a
    /// dense side as `options.dense_side` says, and brings its vector graph up to date with the BM25 commit.
    ///
    /// An embedder of another model than the one the index's vectors come from is not attached: mixing two
    /// vector spaces would make dense search return noise. The index then searches BM25 only, with a warning.
    pub fn open(dir: &Path, options: impl Into<OpenOptions>) -> Result<Engine, PipelineError> {
        let OpenOptions { mut engine, create, dense_side } = options.into();
        let (text, created) = match (TextIndex::open(dir), create) {
            (Ok(text), _) => (text, false),
            (Err(TextError::NotAnIndex { .. }), Some(settings)) => (TextIndex::open_or_create(dir, settings)?, true),
            (Err(e), _) => return Err(e.into()),
        };
        let settings = VectorSettings::load(dir)?;
        if let (Some(s), Some(e)) = (&settings, &engine.embedder) {
            if s.model != e.name() {
                tracing::warn!(
                    "index {} holds {} embeddings but the embedder loaded is {}; its searches run BM25 only",
                    dir.display(),
                    s.model,
                    e.name()
                );
                engine.embedder = None;
            }
        }
        let mut out = Engine::from_parts(Some(dir.to_path_buf()), text, settings, engine)?;
        let model = out.embedder.as_ref().map(|e| e.name().to_owned());
        match (dense_side, model) {
            (DenseSide::Ensure(hnsw), Some(model)) => {
                out.ensure_vector_settings(&model, hnsw)?;
            }
            (DenseSide::IfCreated(hnsw), Some(model)) if created => {
                out.ensure_vector_settings(&model, hnsw)?;
            }
            _ => {}
        }
        out.sync_vectors()?;
        Ok(out)
    }

    /// An engine over an already open text index (in memory or on disk), with `settings` for its dense side;
    /// the graph is loaded by the first [`Engine::sync_vectors`].
    pub fn from_parts(
        dir: Option<PathBuf>,
        text: TextIndex,
        settings: Option<VectorSettings>,
        options: EngineOptions,
    ) -> Result<Engine, PipelineError> {
        let embedder_dim = options.embedder.as_ref().map(|e| e.info().hidden_size);
        let (embedder, reranker) = (options.embedder, options.reranker);
        let search_settings = match &dir {
            Some(dir) => SearchSettings::load(dir)?,
            None => SearchSettings::default(),
        };
        Ok(Engine {
            dir,
            text,
            settings,
            vectors: RwLock::new(None),
            embedder,
            embedder_dim,
            reranker,
            cache: options.cache,
            rerank_timeout: options.rerank_timeout,
            embed_timeout: options.embed_timeout,
            search_params: (options.ef_search, options.exact_below),
            vector_save: options.vector_save,
            sync_lock: Mutex::new(()),
            synced_commit: AtomicU64::new(u64::MAX),
            search_settings,
            cursor_key: std::sync::OnceLock::new(),
        })
    }

    pub fn text(&self) -> &TextIndex {
        &self.text
    }

    pub fn settings(&self) -> Option<&VectorSettings> {
        self.settings.as_ref()
    }

    pub fn has_reranker(&self) -> bool {
        self.reranker.is_some()
    }

    pub fn embedder(&self) -> Option<&EmbedderHandle> {
        self.embedder.as_ref()
    }

    pub fn reranker(&self) -> Option<&RerankerHandle> {
        self.reranker.as_ref()
    }

    /// The index directory, for an engine opened from disk.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Whether the dense leg can run: the index has vectors and an embedder is loaded.
    pub fn dense_ready(&self) -> bool {
        self.settings.is_some() && self.embedder.is_some()
    }

    pub fn cache(&self) -> &Arc<dyn ScoreCache> {
        &self.cache
    }

    /// The embedder's time budget per call that a request waits for.
    pub fn embed_timeout(&self) -> Duration {
        self.embed_timeout
    }

    /// The reranker's time budget per request (a request's own `timeout` overrides it).
    pub fn rerank_timeout(&self) -> Duration {
        self.rerank_timeout
    }

    /// Embeds documents' texts through the embedder worker (no time limit: ingest waits for the model).
    pub fn embed_documents(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, PipelineError> {
        let Some(handle) = &self.embedder else {
            return Err(PipelineError::DenseUnavailable { reason: "no embedding model is loaded".into() });
        };
        let options = self.embed_options();
        let job = EmbedJob { texts, query: false, instruction: None, options };
        Ok(handle.embed(job, None, None)?.0.vectors)
    }

    /// How this index embeds: at its vectors' dimensions (Matryoshka models may be cut), the model's length.
    pub(crate) fn embed_options(&self) -> EmbedOptions {
        EmbedOptions { dimensions: self.settings.as_ref().and_then(|s| s.dimensions), max_length: None }
    }

    pub(crate) fn embed_query(
        &self,
        text: &str,
        cancel: Option<&CancelToken>,
    ) -> Result<(Vec<f32>, CallTiming), WorkerError> {
        let handle = self.embedder.as_ref().expect("checked by the caller");
        let options = self.embed_options();
        let job = EmbedJob { texts: vec![text.to_owned()], query: true, instruction: None, options };
        let (mut out, timing) = handle.embed(job, Some(self.embed_timeout), cancel)?;
        Ok((out.vectors.pop().unwrap_or_default(), timing))
    }

    /// Runs a search: [recall](crate::stages::recall), [fuse](crate::stages::fuse),
    /// [rerank](crate::stages::rerank), [present](crate::stages::present).
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResponse, PipelineError> {
        let _span = tracing::debug_span!("search", query_chars = req.query.chars().count(), k = req.k).entered();
        req.validate()?;
        let req = &self.with_index_settings(req);
        if req.browses_all() {
            return self.present(req, Ranking::empty(std::time::Instant::now()));
        }
        let mut ranking = fuse_adapted(self.recall(req)?, req.fusion_or_default(), req.adapt.unwrap_or(0.0));
        match (&req.rerank, req.sort) {
            (Some(_), Some(sort)) => {
                ranking.notes.push(format!("not reranked: the results are sorted by {sort}, not by relevance"))
            }
            _ => self.rerank(req, &mut ranking)?,
        }
        self.present(req, ranking)
    }

    /// The index's search settings ([`SearchSettings`], `search.json`; the defaults for an index without).
    pub fn search_settings(&self) -> &SearchSettings {
        &self.search_settings
    }

    /// `req` with what it leaves unset (fusion, candidates per leg) taken from the index's settings.
    pub fn with_index_settings(&self, req: &SearchRequest) -> SearchRequest {
        let mut req = req.clone();
        req.fusion = req.fusion.or(Some(self.search_settings.fusion));
        req.recall_k = req.recall_k.or(Some(self.search_settings.recall_k));
        req.adapt = req.adapt.or(Some(self.search_settings.adapt));
        req
    }
}
