//! The engine: one index directory (BM25 + stored vectors + graph), the models on their worker threads, the
//! score cache, and the request path that ties them together.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sieve_core::{
    Checkpoint, DenseScore, DocId, Document, Filter, FusedScore, Hit, Lang, RerankScore, ScoreBreakdown, StageTiming,
};
use sieve_ingest::BatchSink;
use sieve_models::EmbedOptions;
use sieve_text::{Bm25Params, Bm25Query, TextIndex, TextWriter, WriterOptions};
use sieve_vector::{GraphState, HnswParams, LoadOutcome, SearchStrategy, VectorIndex, VectorSearch};

use crate::cache::{CacheReport, LruScoreCache, ScoreCache};
use crate::facets::{facet_counts, sort_order, FacetCount, FacetField, SortBy};
use crate::fusion;
use crate::models::{CachedRerank, EmbedJob, EmbedderHandle, RerankJob, RerankerHandle};
use crate::worker::{CallTiming, CancelToken, WorkerError};
use crate::PipelineError;

const VECTOR_DIR: &str = "vectors";
const VECTOR_CONFIG: &str = "config.json";

/// The dense side of an index, fixed when its first embedded document is ingested (`vectors/config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorSettings {
    /// The embedding model, as the user named it (a cache name such as `minilm`, or a directory).
    pub model: String,
    pub dim: usize,
    /// Matryoshka cut applied to every vector, if any.
    pub dimensions: Option<usize>,
    pub hnsw: HnswParams,
}

impl VectorSettings {
    /// The settings recorded in index `dir`, if it has a dense side.
    pub fn load(dir: &Path) -> Result<Option<VectorSettings>, PipelineError> {
        let path = dir.join(VECTOR_DIR).join(VECTOR_CONFIG);
        match std::fs::read(&path) {
            Ok(raw) => serde_json::from_slice(&raw)
                .map(Some)
                .map_err(|e| PipelineError::Config { path: path.display().to_string(), message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PipelineError::Io { path: path.display().to_string(), message: e.to_string() }),
        }
    }

    /// What the graph last saved in index `dir` reflects (`vectors/state.json`), without loading it: `None`
    /// when none was saved yet.
    pub fn saved_graph(dir: &Path) -> Result<Option<GraphState>, PipelineError> {
        Ok(GraphState::read(&dir.join(VECTOR_DIR))?)
    }

    fn save(&self, dir: &Path) -> Result<(), PipelineError> {
        let vdir = dir.join(VECTOR_DIR);
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |e: std::io::Error| PipelineError::Io { path: p, message: e.to_string() }
        };
        std::fs::create_dir_all(&vdir).map_err(io(&vdir))?;
        let path = vdir.join(VECTOR_CONFIG);
        let tmp = vdir.join("config.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("settings serialize")).map_err(io(&tmp))?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }
}

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

/// When [`Engine::sync_vectors`] writes the vector graph to disk. The graph is derived data (an index opened
/// on a later commit catches it up from the stored vectors, without the model), so saving less often risks
/// nothing but catch-up work at the next start; what it saves is a dump of the whole graph per write, which
/// at 10^6 vectors takes seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavePolicy {
    /// After every sync that changed it: a command that ends leaves the graph on disk.
    EveryChange,
    /// At most once per interval while writes keep coming (the first change after opening saves at once);
    /// [`Engine::flush_vectors`] saves what is left, when writes pause and at shutdown.
    Interval(Duration),
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

/// Which first-stage legs a request runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Legs {
    pub bm25: bool,
    pub dense: bool,
}

/// How the two legs' lists are merged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Fusion {
    /// Weighted reciprocal rank fusion ([`fusion::rrf`]).
    Rrf { k: f32, bm25_weight: f32, dense_weight: f32 },
    /// Min-max normalised linear combination ([`fusion::linear`]).
    Linear { bm25_weight: f32, dense_weight: f32 },
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion::Rrf { k: 60.0, bm25_weight: 1.0, dense_weight: 1.0 }
    }
}

impl Fusion {
    fn name(&self) -> &'static str {
        match self {
            Fusion::Rrf { .. } => "rrf",
            Fusion::Linear { .. } => "linear",
        }
    }
}

/// Reranking settings of one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankRequest {
    /// How many of the fused candidates the cross-encoder scores (at least `k`).
    pub window: usize,
    pub instruction: Option<String>,
    /// Tokens per (query, document) pair, template included.
    pub max_length: Option<usize>,
    /// Overrides the engine's rerank latency budget.
    pub timeout: Option<Duration>,
}

impl Default for RerankRequest {
    fn default() -> Self {
        RerankRequest { window: 50, instruction: None, max_length: None, timeout: None }
    }
}

/// One search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    /// Hits to return.
    pub k: usize,
    pub filters: Vec<Filter>,
    pub lang: Option<Lang>,
    pub legs: Legs,
    /// Candidates each leg recalls before fusion.
    pub recall_k: usize,
    pub fusion: Fusion,
    pub rerank: Option<RerankRequest>,
    /// HNSW candidate list size for this request.
    pub ef: Option<usize>,
    pub with_documents: bool,
    /// Attach every stage's timing to each hit.
    pub explain: bool,
    /// Hits of the final ranked set to skip (pagination); `k` are returned after them.
    pub offset: usize,
    /// Fields whose value counts over the final ranked set are returned.
    pub facets: Vec<FacetField>,
    /// Values per facet (the most frequent).
    pub facet_size: usize,
    /// Order the final ranked set by a field instead of relevance.
    pub sort: Option<SortBy>,
    /// Set when the caller is gone; queued model work for this request is skipped.
    pub cancel: Option<CancelToken>,
    /// Overrides the index's BM25 k1 and b for the BM25 leg.
    pub bm25_params: Option<Bm25Params>,
    /// The BM25 leg scores every posting instead of pruning (same candidates; `bm25_matched` becomes exact).
    pub exhaustive: bool,
}

impl SearchRequest {
    /// Hybrid recall, no rerank, 10 hits.
    pub fn new(query: impl Into<String>) -> SearchRequest {
        SearchRequest {
            query: query.into(),
            k: 10,
            filters: Vec::new(),
            lang: None,
            legs: Legs { bm25: true, dense: true },
            recall_k: 100,
            fusion: Fusion::default(),
            rerank: None,
            ef: None,
            with_documents: true,
            explain: false,
            offset: 0,
            facets: Vec::new(),
            facet_size: 10,
            sort: None,
            cancel: None,
            bm25_params: None,
            exhaustive: false,
        }
    }
}

/// The answer to a [`SearchRequest`].
#[derive(Debug, Clone, Serialize)]
pub struct SearchResponse {
    pub hits: Vec<Hit>,
    /// Some stage could not run as asked (reranker slow, failing or absent; query embedding failed); `reasons`
    /// says which and why. The hits are still the best order the stages that did run produce.
    pub degraded: bool,
    pub reasons: Vec<String>,
    /// What the request asked for that this index does not do, without anything having failed (e.g. a hybrid
    /// request on an index without embeddings runs BM25 alone).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub timings: Vec<StageTiming>,
    /// The cross-encoder scored the window and the hits are in its order.
    pub reranked: bool,
    /// Documents the BM25 leg matched (a lower bound when it pruned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bm25_matched: Option<u64>,
    /// How the dense leg searched (graph or exact scan) and over how many candidates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dense: Option<DenseReport>,
    /// Rerank cache use, when the reranker ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheReport>,
    /// Size of the final ranked set (all fused candidates) that `offset` pages through and facets count.
    pub total: usize,
    /// Value counts over the final ranked set, per requested field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facets: Option<BTreeMap<String, Vec<FacetCount>>>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DenseReport {
    /// How the dense leg searched: `{"kind": "hnsw", "ef": N}` or `{"kind": "exact", "scanned": N}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub strategy: SearchStrategy,
    pub candidates: usize,
}

/// What [`Engine::sync_vectors`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub generation: u64,
    pub live: usize,
    /// Vectors read back from the store into the graph.
    pub inserted: usize,
    /// The graph on disk could not be used and was rebuilt from the stored vectors.
    pub rebuilt: bool,
    pub compacted: bool,
    pub saved: bool,
}

struct VectorState {
    index: VectorIndex,
    /// Generation of the graph on disk.
    saved_generation: Option<u64>,
    /// Generation the graph in memory was last brought up to date with.
    synced_generation: Option<u64>,
    /// The graph changed (points inserted, compacted) since it was saved.
    dirty: bool,
    last_save: Option<Instant>,
}

impl VectorState {
    fn new(index: VectorIndex, saved_generation: Option<u64>) -> VectorState {
        VectorState { index, saved_generation, synced_generation: None, dirty: false, last_save: None }
    }

    /// Whether the graph on disk is behind the one in memory.
    fn unsaved(&self) -> bool {
        self.dirty || self.saved_generation != self.synced_generation
    }
}

/// An open index with its models.
pub struct Engine {
    dir: Option<PathBuf>,
    text: TextIndex,
    settings: Option<VectorSettings>,
    vectors: RwLock<Option<VectorState>>,
    embedder: Option<EmbedderHandle>,
    embedder_dim: Option<usize>,
    reranker: Option<RerankerHandle>,
    cache: Arc<dyn ScoreCache>,
    rerank_timeout: Duration,
    embed_timeout: Duration,
    search_params: (Option<usize>, Option<usize>),
    vector_save: SavePolicy,
    sync_lock: Mutex<()>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("dir", &self.dir).field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

fn timing(stage: &str, d: Duration) -> StageTiming {
    StageTiming { stage: stage.into(), micros: us(d) }
}

impl Engine {
    /// Opens the index in `dir` (which must exist) and brings its vector graph up to date with the BM25 commit.
    pub fn open(dir: &Path, options: EngineOptions) -> Result<Engine, PipelineError> {
        let text = TextIndex::open(dir)?;
        let settings = VectorSettings::load(dir)?;
        let engine = Engine::from_parts(Some(dir.to_path_buf()), text, settings, options)?;
        engine.sync_vectors()?;
        Ok(engine)
    }

    /// An engine over an already open text index (in memory or on disk), with `settings` for its dense side.
    pub fn from_parts(
        dir: Option<PathBuf>,
        text: TextIndex,
        settings: Option<VectorSettings>,
        options: EngineOptions,
    ) -> Result<Engine, PipelineError> {
        let embedder_dim = options.embedder.as_ref().map(|e| e.info().hidden_size);
        let (embedder, reranker) = (options.embedder, options.reranker);
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

    /// Live vectors in the graph.
    pub fn vector_count(&self) -> usize {
        self.read_vectors().as_ref().map_or(0, |v| v.index.len())
    }

    /// Gives the index a dense side embedded by `model` (with the loaded embedder's dimensions), or checks
    /// that the one it has matches. Call before ingesting with embeddings.
    ///
    /// An index that already holds documents without embeddings is refused a dense side: its documents would
    /// stay out of the graph (a finished ingest is not read again), and dense search would quietly miss them.
    pub fn ensure_vector_settings(&mut self, model: &str, hnsw: HnswParams) -> Result<&VectorSettings, PipelineError> {
        let Some(dim) = self.embedder_dim else {
            return Err(PipelineError::DenseUnavailable { reason: "no embedding model is loaded".into() });
        };
        let docs = self.text.num_docs();
        if self.settings.is_none() && docs > 0 {
            let path = self.dir.as_ref().map_or_else(|| "the index".to_owned(), |d| d.display().to_string());
            return Err(PipelineError::Config {
                path,
                message: format!(
                    "it holds {docs} documents without embeddings, so embedding with {model} now would leave them \
                     out of dense search; ingest into a new index with the embedding model to search them densely"
                ),
            });
        }
        if let Some(s) = &self.settings {
            if s.dim != dim {
                return Err(PipelineError::Mismatch {
                    what: "embedding dimensions".into(),
                    index: format!("{} ({})", s.dim, s.model),
                    given: format!("{dim} ({model})"),
                });
            }
            return Ok(self.settings.as_ref().expect("checked"));
        }
        let hnsw = hnsw.validate()?;
        let settings = VectorSettings { model: model.to_owned(), dim, dimensions: None, hnsw };
        if let Some(dir) = &self.dir {
            settings.save(dir)?;
        }
        self.settings = Some(settings);
        Ok(self.settings.as_ref().expect("just set"))
    }

    /// Reloads the BM25 index and brings the graph up to date with its last commit: loads the saved graph
    /// (or rebuilds it, with a log line, when it is missing or unusable), inserts the stored vectors it lacks,
    /// tombstones replaced and deleted documents, compacts when tombstones dominate, and saves it stamped with
    /// the commit's generation as the [`SavePolicy`] says.
    ///
    /// Searches go on throughout: the inserts, a compaction and the save run beside them, and the new state
    /// is swapped in under the write lock only for the time it takes to append the new points to the search
    /// copy and declare the live set.
    pub fn sync_vectors(&self) -> Result<SyncReport, PipelineError> {
        let _one_at_a_time = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.text.reload()?;
        let generation = self.text.generation()?;
        let mut report = SyncReport { generation, ..SyncReport::default() };
        let Some(settings) = &self.settings else { return Ok(report) };
        let vdir = self.dir.as_ref().map(|d| d.join(VECTOR_DIR));
        if self.read_vectors().is_none() {
            let state = self.load_vectors(settings, vdir.as_deref(), generation, &mut report)?;
            *self.write_vectors() = Some(state);
        }
        // Link the stored vectors the graph lacks into it, beside the searches.
        let (staged, live) = {
            let guard = self.read_vectors();
            let state = guard.as_ref().expect("loaded above");
            // ids are read for the slots that are not live yet, vectors for those not in the graph yet
            let found =
                self.text.live_vectors(&|slot| state.index.is_live(slot), &|slot| state.index.contains(slot))?;
            let mut new_ids = Vec::with_capacity(found.new.len());
            let mut missing = Vec::new();
            for e in found.new {
                if let Some(v) = e.vector {
                    missing.push((e.slot, v));
                }
                new_ids.push((e.slot, e.id));
            }
            if missing.len() > 10_000 {
                tracing::info!("inserting {} vectors into the graph", missing.len());
            }
            (state.index.stage(missing)?, (found.slots, new_ids))
        };
        report.inserted = staged.points();
        let compact = {
            let mut guard = self.write_vectors();
            let state = guard.as_mut().expect("loaded above");
            state.index.publish(staged);
            let unindexed = state.index.update_live(&live.0, live.1);
            debug_assert!(unindexed.is_empty(), "every live slot was inserted");
            state.dirty |= report.inserted > 0;
            state.synced_generation = Some(generation);
            report.live = state.index.len();
            state.index.needs_compaction()
        };
        if compact {
            let compacted = self.read_vectors().as_ref().expect("loaded above").index.compacted();
            let mut guard = self.write_vectors();
            let state = guard.as_mut().expect("loaded above");
            state.index = compacted;
            state.dirty = true;
            report.compacted = true;
        }
        let due = {
            let guard = self.read_vectors();
            let state = guard.as_ref().expect("loaded above");
            state.unsaved()
                && match self.vector_save {
                    SavePolicy::EveryChange => true,
                    SavePolicy::Interval(every) => state.last_save.is_none_or(|t| t.elapsed() >= every),
                }
        };
        if let (true, Some(vdir)) = (due, &vdir) {
            self.save_vectors(vdir, generation)?;
            report.saved = true;
        }
        Ok(report)
    }

    /// Saves the vector graph if it changed since it was last saved (under [`SavePolicy::Interval`], the
    /// changes the interval held back). Returns whether it wrote.
    pub fn flush_vectors(&self) -> Result<bool, PipelineError> {
        let _one_at_a_time = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(vdir) = self.dir.as_ref().map(|d| d.join(VECTOR_DIR)) else { return Ok(false) };
        let synced = self.read_vectors().as_ref().filter(|state| state.unsaved()).and_then(|s| s.synced_generation);
        match synced {
            Some(generation) => self.save_vectors(&vdir, generation).map(|()| true),
            None => Ok(false),
        }
    }

    /// Writes the graph as reflecting `generation`; searches go on meanwhile. Called under the sync lock.
    fn save_vectors(&self, vdir: &Path, generation: u64) -> Result<(), PipelineError> {
        let started = Instant::now();
        if let Some(state) = self.read_vectors().as_ref() {
            state.index.save(vdir, generation)?;
        }
        if let Some(state) = self.write_vectors().as_mut() {
            state.saved_generation = Some(generation);
            state.dirty = false;
            state.last_save = Some(Instant::now());
            tracing::debug!("saved {} vectors in {:?}", state.index.points(), started.elapsed());
        }
        Ok(())
    }

    /// The saved graph if it can be used as is, else an empty one (to be filled from the stored vectors).
    fn load_vectors(
        &self,
        settings: &VectorSettings,
        vdir: Option<&Path>,
        generation: u64,
        report: &mut SyncReport,
    ) -> Result<VectorState, PipelineError> {
        let mut params = settings.hnsw;
        if let Some(ef) = self.search_params.0 {
            params.ef_search = ef.max(1);
        }
        if let Some(n) = self.search_params.1 {
            params.exact_below = n;
        }
        let loaded = match vdir {
            Some(vdir) => VectorIndex::load(vdir, settings.dim, params)?,
            None => LoadOutcome::Missing,
        };
        Ok(match loaded {
            LoadOutcome::Loaded(index, state) => {
                if state.generation != generation {
                    tracing::info!(
                        "vector graph reflects BM25 commit {} but the index is at commit {generation}; \
                         catching it up from the stored vectors",
                        state.generation
                    );
                }
                VectorState::new(*index, Some(state.generation))
            }
            LoadOutcome::Missing => VectorState::new(VectorIndex::new(settings.dim, params)?, None),
            LoadOutcome::Unusable { reason } => {
                tracing::warn!("vector graph unusable ({reason}); rebuilding it from the stored vectors");
                report.rebuilt = true;
                VectorState::new(VectorIndex::new(settings.dim, params)?, None)
            }
        })
    }

    fn read_vectors(&self) -> std::sync::RwLockReadGuard<'_, Option<VectorState>> {
        self.vectors.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_vectors(&self) -> std::sync::RwLockWriteGuard<'_, Option<VectorState>> {
        self.vectors.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Embeds documents' texts through the embedder worker (no time limit: ingest waits for the model).
    pub fn embed_documents(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, PipelineError> {
        let Some(handle) = &self.embedder else {
            return Err(PipelineError::DenseUnavailable { reason: "no embedding model is loaded".into() });
        };
        let options = EmbedOptions { dimensions: self.settings.as_ref().and_then(|s| s.dimensions), max_length: None };
        let job = EmbedJob { texts, query: false, instruction: None, options };
        Ok(handle.embed(job, None, None)?.0.vectors)
    }

    fn embed_query(&self, text: &str, cancel: Option<&CancelToken>) -> Result<(Vec<f32>, CallTiming), WorkerError> {
        let handle = self.embedder.as_ref().expect("checked by the caller");
        let options = EmbedOptions { dimensions: self.settings.as_ref().and_then(|s| s.dimensions), max_length: None };
        let job = EmbedJob { texts: vec![text.to_owned()], query: true, instruction: None, options };
        let (mut out, timing) = handle.embed(job, Some(self.embed_timeout), cancel)?;
        Ok((out.vectors.pop().unwrap_or_default(), timing))
    }

    /// A sink that ingests into this engine's index, embedding every document when the index has a dense side.
    pub fn sink(&self, options: WriterOptions) -> Result<EngineSink<'_>, PipelineError> {
        if self.settings.is_some() && self.embedder.is_none() {
            let model = self.settings.as_ref().map_or("", |s| s.model.as_str());
            return Err(PipelineError::DenseUnavailable {
                reason: format!("the index stores {model} embeddings; load that model to ingest into it"),
            });
        }
        Ok(EngineSink { engine: self, writer: self.text.writer(options)?, embed: self.settings.is_some() })
    }

    /// Runs a search: BM25 and dense recall concurrently, fusion, reranking of the top window, explanation.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResponse, PipelineError> {
        let started = Instant::now();
        validate(req)?;
        let mut reasons = Vec::new();
        let mut notes = Vec::new();
        let mut timings = Vec::new();
        let mut use_dense = req.legs.dense;
        if use_dense && !self.dense_ready() {
            let no_vectors = self.settings.is_none();
            let reason = if no_vectors {
                "the index has no embeddings (ingest it with an embedding model)".to_owned()
            } else {
                "no embedding model is loaded".to_owned()
            };
            if !req.legs.bm25 {
                return Err(PipelineError::DenseUnavailable { reason });
            }
            if no_vectors {
                // the dense leg is off for this index: nothing failed
                notes.push(format!("dense leg not run: {reason}"));
            } else {
                reasons.push(format!("dense leg skipped: {reason}"));
            }
            use_dense = false;
        }

        // --- recall: BM25 on a second thread, the dense leg on this one
        let recall_k = req.recall_k.max(req.offset + req.k);
        let (bm25, dense) = std::thread::scope(|scope| {
            let bm25 = req.legs.bm25.then(|| {
                scope.spawn(|| {
                    let t = Instant::now();
                    let mut q = Bm25Query::new(req.query.clone(), recall_k);
                    q.filters = req.filters.clone();
                    q.lang = req.lang.clone();
                    q.with_documents = false;
                    q.params = req.bm25_params;
                    q.exhaustive = req.exhaustive;
                    self.text.search(&q).map(|r| (r, t.elapsed()))
                })
            });
            let dense = use_dense.then(|| self.dense_leg(req, recall_k));
            (bm25.map(|h| h.join().expect("BM25 thread panicked")), dense)
        });
        let bm25 = bm25.transpose()?;
        let dense = match dense {
            Some(Ok(d)) => Some(d),
            Some(Err(DenseFailure::Degraded(reason))) if req.legs.bm25 => {
                reasons.push(format!("dense leg skipped: {reason}"));
                None
            }
            Some(Err(DenseFailure::Degraded(reason))) => return Err(PipelineError::DenseUnavailable { reason }),
            Some(Err(DenseFailure::Error(e))) => return Err(e),
            None => None,
        };
        if let Some((_, took)) = &bm25 {
            timings.push(timing("bm25", *took));
        }
        if let Some(d) = &dense {
            timings.push(timing("embed", d.embed));
            timings.push(timing("embed_queue", d.embed_queue));
            timings.push(timing("ann", d.ann));
        }

        // --- fusion
        let t = Instant::now();
        let mut candidates: Vec<Candidate> = Vec::new();
        let bm25_hits = bm25.as_ref().map(|(r, _)| r.hits.as_slice()).unwrap_or_default();
        let dense_hits = dense.as_ref().map(|d| d.hits.as_slice()).unwrap_or_default();
        let both = bm25.is_some() && dense.is_some();
        let mut by_id: std::collections::HashMap<DocId, usize> = std::collections::HashMap::new();
        let mut slot_of = |id: &DocId, candidates: &mut Vec<Candidate>| -> usize {
            *by_id.entry(id.clone()).or_insert_with(|| {
                candidates.push(Candidate::new(id.clone()));
                candidates.len() - 1
            })
        };
        let order: Vec<(DocId, f32)> = if both {
            match req.fusion {
                Fusion::Rrf { k, bm25_weight, dense_weight } => {
                    let a: Vec<DocId> = bm25_hits.iter().map(|h| h.id.clone()).collect();
                    let b: Vec<DocId> = dense_hits.iter().map(|h| h.id.clone()).collect();
                    fusion::rrf(&[(bm25_weight, &a), (dense_weight, &b)], k)
                }
                Fusion::Linear { bm25_weight, dense_weight } => {
                    let a: Vec<(DocId, f32)> = bm25_hits.iter().map(|h| (h.id.clone(), h.score)).collect();
                    let b: Vec<(DocId, f32)> = dense_hits.iter().map(|h| (h.id.clone(), h.similarity)).collect();
                    fusion::linear(&[(bm25_weight, &a), (dense_weight, &b)])
                }
            }
        } else if bm25.is_some() {
            bm25_hits.iter().map(|h| (h.id.clone(), h.score)).collect()
        } else {
            dense_hits.iter().map(|h| (h.id.clone(), h.similarity)).collect()
        };
        for (rank, (id, score)) in order.into_iter().enumerate() {
            let i = slot_of(&id, &mut candidates);
            candidates[i].first_score = score;
            if both {
                candidates[i].scores.fused =
                    Some(FusedScore { score, rank: rank as u32 + 1, method: req.fusion.name().into() });
            }
        }
        for h in bm25_hits {
            let i = slot_of(&h.id, &mut candidates);
            candidates[i].scores.bm25 = h.scores.bm25.clone();
        }
        for h in dense_hits {
            let i = slot_of(&h.id, &mut candidates);
            candidates[i].scores.dense = Some(DenseScore { similarity: h.similarity, rank: h.rank });
        }
        if both {
            timings.push(timing("fuse", t.elapsed()));
        }

        // --- rerank
        let mut documents: std::collections::HashMap<DocId, Document> = std::collections::HashMap::new();
        let mut cache_report = None;
        let mut reranked = false;
        if let Some(rr) = &req.rerank {
            let window = rr.window.min(candidates.len());
            match &self.reranker {
                None => reasons.push("not reranked: no reranker is loaded".into()),
                Some(_) if window == 0 => {}
                Some(handle) => {
                    let t = Instant::now();
                    let ids: Vec<DocId> = candidates[..window].iter().map(|c| c.id.clone()).collect();
                    for (id, doc) in ids.iter().zip(self.text.get_many(&ids)?) {
                        if let Some(doc) = doc {
                            documents.insert(id.clone(), doc);
                        }
                    }
                    timings.push(timing("fetch", t.elapsed()));
                    let t = Instant::now();
                    let texts: Vec<String> =
                        ids.iter().map(|id| documents.get(id).map(doc_text).unwrap_or_default()).collect();
                    let outcome = self.rerank_window(handle, req, rr, texts);
                    timings.push(timing("rerank", t.elapsed()));
                    match outcome {
                        Ok(CachedRerank { scores, cached, report, .. }) => {
                            timings.push(StageTiming { stage: "rerank_queue".into(), micros: report.queued_micros });
                            cache_report = Some(report);
                            for ((c, s), cached) in candidates[..window].iter_mut().zip(scores).zip(cached) {
                                c.scores.rerank = Some(RerankScore { score: s.score, raw: s.raw, rank: 0, cached });
                            }
                            // best probability first; ties keep the fused order (stable sort)
                            candidates[..window].sort_by(|a, b| {
                                let (x, y) = (a.scores.rerank.as_ref(), b.scores.rerank.as_ref());
                                y.map(|s| s.score).unwrap_or(0.0).total_cmp(&x.map(|s| s.score).unwrap_or(0.0))
                            });
                            for (i, c) in candidates[..window].iter_mut().enumerate() {
                                if let Some(r) = c.scores.rerank.as_mut() {
                                    r.rank = i as u32 + 1;
                                }
                            }
                            reranked = true;
                        }
                        Err((WorkerError::Cancelled { worker }, _)) => {
                            return Err(WorkerError::Cancelled { worker }.into())
                        }
                        Err((reason, report)) => {
                            cache_report = Some(report);
                            reasons.push(format!("not reranked: {reason}"));
                        }
                    }
                }
            }
        }

        // --- the final ranked set: sort, facets, then the requested page
        let total = candidates.len();
        let mut facets = None;
        if !req.facets.is_empty() || req.sort.is_some() {
            let t = Instant::now();
            self.fetch_missing(&candidates, &mut documents)?;
            if let Some(sort) = req.sort {
                let docs: Vec<Option<&Document>> = candidates.iter().map(|c| documents.get(&c.id)).collect();
                let order = sort_order(&docs, sort);
                let mut slots: Vec<Option<Candidate>> = candidates.into_iter().map(Some).collect();
                candidates = order.into_iter().filter_map(|i| slots[i].take()).collect();
            }
            if !req.facets.is_empty() {
                let docs: Vec<&Document> = candidates.iter().filter_map(|c| documents.get(&c.id)).collect();
                facets = Some(facet_counts(&docs, &req.facets, req.facet_size));
            }
            timings.push(timing("facets", t.elapsed()));
        }

        // --- hits
        candidates.drain(..req.offset.min(candidates.len()));
        candidates.truncate(req.k);
        if req.with_documents {
            let t = Instant::now();
            self.fetch_missing(&candidates, &mut documents)?;
            timings.push(timing("documents", t.elapsed()));
        }
        timings.push(timing("total", started.elapsed()));
        let hits = candidates
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let score = match (&c.scores.rerank, reranked) {
                    (Some(r), true) => r.score,
                    _ => c.first_score,
                };
                let mut scores = c.scores;
                if req.explain {
                    scores.timings = Some(timings.clone());
                }
                let document = if req.with_documents { documents.remove(&c.id) } else { None };
                Hit { id: c.id, rank: (req.offset + i) as u32 + 1, score, scores, document }
            })
            .collect();
        Ok(SearchResponse {
            hits,
            degraded: !reasons.is_empty(),
            reasons,
            notes,
            timings,
            reranked,
            bm25_matched: bm25.as_ref().map(|(r, _)| r.matched),
            dense: dense.map(|d| DenseReport { strategy: d.strategy, candidates: d.candidates }),
            cache: cache_report,
            total,
            facets,
        })
    }

    /// Adds the stored documents of the candidates not in `documents` yet.
    fn fetch_missing(
        &self,
        candidates: &[Candidate],
        documents: &mut std::collections::HashMap<DocId, Document>,
    ) -> Result<(), PipelineError> {
        let missing: Vec<DocId> =
            candidates.iter().filter(|c| !documents.contains_key(&c.id)).map(|c| c.id.clone()).collect();
        for (id, doc) in missing.iter().zip(self.text.get_many(&missing)?) {
            if let Some(doc) = doc {
                documents.insert(id.clone(), doc);
            }
        }
        Ok(())
    }

    fn dense_leg(&self, req: &SearchRequest, recall_k: usize) -> Result<DenseOutcome, DenseFailure> {
        let t = Instant::now();
        let (query, call) = self.embed_query(&req.query, req.cancel.as_ref()).map_err(|e| match e {
            WorkerError::Cancelled { .. } => DenseFailure::Error(e.into()),
            e => DenseFailure::Degraded(e.to_string()),
        })?;
        let embed = t.elapsed();
        let t = Instant::now();
        let only = if req.filters.is_empty() {
            None
        } else {
            Some(self.text.filter_slots(&req.filters).map_err(|e| DenseFailure::Error(e.into()))?)
        };
        let guard = self.vectors.read().unwrap_or_else(|p| p.into_inner());
        let Some(state) = guard.as_ref() else {
            return Err(DenseFailure::Degraded("the vector graph is not loaded".into()));
        };
        let search = VectorSearch { k: recall_k, ef: req.ef, only: only.as_deref(), exact: false };
        let res = state.index.search(&query, &search).map_err(|e| DenseFailure::Error(e.into()))?;
        Ok(DenseOutcome {
            hits: res.hits,
            strategy: res.strategy,
            candidates: res.candidates,
            embed,
            embed_queue: call.queued,
            ann: t.elapsed(),
        })
    }

    /// Scores the window's texts: cached scores first, the model for the rest (within the time budget).
    fn rerank_window(
        &self,
        handle: &RerankerHandle,
        req: &SearchRequest,
        rr: &RerankRequest,
        texts: Vec<String>,
    ) -> Result<CachedRerank, (WorkerError, CacheReport)> {
        let job = RerankJob {
            query: req.query.clone(),
            instruction: rr.instruction.clone(),
            docs: texts,
            max_length: rr.max_length,
        };
        let timeout = rr.timeout.unwrap_or(self.rerank_timeout);
        handle.rerank_cached(self.cache.as_ref(), true, job, Some(timeout), req.cancel.as_ref())
    }
}

struct DenseOutcome {
    hits: Vec<sieve_vector::VectorHit>,
    strategy: SearchStrategy,
    candidates: usize,
    embed: Duration,
    /// Part of `embed` spent waiting for the model.
    embed_queue: Duration,
    ann: Duration,
}

enum DenseFailure {
    /// The leg could not run (model slow or failing); the request goes on without it.
    Degraded(String),
    /// A real error (bad index state).
    Error(PipelineError),
}

struct Candidate {
    id: DocId,
    first_score: f32,
    scores: ScoreBreakdown,
}

impl Candidate {
    fn new(id: DocId) -> Candidate {
        Candidate { id, first_score: 0.0, scores: ScoreBreakdown::default() }
    }
}

/// Largest `k`, `recall_k` or rerank window a request may ask for.
pub const MAX_DEPTH: usize = 1_000;

fn validate(req: &SearchRequest) -> Result<(), PipelineError> {
    let bad = |field: &'static str, expected: &'static str, found: String| PipelineError::BadRequest {
        field,
        expected,
        found,
    };
    if req.k == 0 || req.k > MAX_DEPTH {
        return Err(bad("k", "1..=1000", req.k.to_string()));
    }
    if req.offset + req.k > MAX_DEPTH {
        return Err(bad("offset + k", "at most 1000", (req.offset + req.k).to_string()));
    }
    if req.facet_size == 0 || req.facet_size > MAX_DEPTH {
        return Err(bad("facet_size", "1..=1000", req.facet_size.to_string()));
    }
    if req.recall_k == 0 || req.recall_k > MAX_DEPTH {
        return Err(bad("recall_k", "1..=1000", req.recall_k.to_string()));
    }
    if !req.legs.bm25 && !req.legs.dense {
        return Err(bad("legs", "at least one of bm25 and dense", "neither".into()));
    }
    if let Some(rr) = &req.rerank {
        if rr.window == 0 || rr.window > MAX_DEPTH {
            return Err(bad("rerank.window", "1..=1000", rr.window.to_string()));
        }
    }
    let weights_ok = |w: f32| w.is_finite() && w >= 0.0;
    match req.fusion {
        Fusion::Rrf { k, bm25_weight, dense_weight } => {
            if !(k.is_finite() && k >= 0.0) {
                return Err(bad("fusion.k", "a finite number >= 0", k.to_string()));
            }
            if !weights_ok(bm25_weight) || !weights_ok(dense_weight) {
                return Err(bad("fusion weights", "finite numbers >= 0", format!("{bm25_weight}, {dense_weight}")));
            }
        }
        Fusion::Linear { bm25_weight, dense_weight } => {
            if !weights_ok(bm25_weight) || !weights_ok(dense_weight) {
                return Err(bad("fusion weights", "finite numbers >= 0", format!("{bm25_weight}, {dense_weight}")));
            }
        }
    }
    Ok(())
}

/// Ingests into an [`Engine`]'s index: embeds each batch (when the index has a dense side) and stores the
/// vectors with the documents, in the same commit.
pub struct EngineSink<'e> {
    engine: &'e Engine,
    writer: TextWriter,
    embed: bool,
}

impl std::fmt::Debug for EngineSink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSink").field("embed", &self.embed).finish()
    }
}

impl EngineSink<'_> {
    /// Deletes a document (and retires its vector) at the next commit.
    pub fn delete(&mut self, id: &DocId) {
        self.writer.delete(id);
    }

    /// Waits for merges and releases the writer; then [`Engine::sync_vectors`] brings the graph up to date.
    pub fn finish(self) -> Result<(), PipelineError> {
        self.writer.finish()?;
        Ok(())
    }
}

impl BatchSink for EngineSink<'_> {
    type Error = PipelineError;

    fn committed(&self) -> Checkpoint {
        self.writer.checkpoint().clone()
    }

    fn upsert(&mut self, docs: &[Document]) -> Result<(), PipelineError> {
        if !self.embed {
            self.writer.upsert_batch(docs)?;
            return Ok(());
        }
        let texts: Vec<String> = docs.iter().map(doc_text).collect();
        let wanted: Vec<usize> = (0..docs.len()).filter(|&i| !texts[i].is_empty()).collect();
        let batch: Vec<String> = wanted.iter().map(|&i| texts[i].clone()).collect();
        let vectors = if batch.is_empty() { Vec::new() } else { self.engine.embed_documents(batch)? };
        if vectors.len() != wanted.len() {
            return Err(PipelineError::DenseUnavailable {
                reason: format!("the embedder returned {} vectors for {} documents", vectors.len(), wanted.len()),
            });
        }
        let mut per_doc: Vec<Option<Vec<f32>>> = vec![None; docs.len()];
        for (i, v) in wanted.into_iter().zip(vectors) {
            per_doc[i] = Some(v);
        }
        self.writer.upsert_batch_with_vectors(docs, Some(&per_doc))?;
        Ok(())
    }

    fn commit(&mut self, checkpoint: Checkpoint) -> Result<(), PipelineError> {
        self.writer.commit(Some(checkpoint))?;
        Ok(())
    }
}
