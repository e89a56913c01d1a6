//! The dense side's lifecycle: its settings on disk (`vectors/config.json`), and the HNSW graph kept in step
//! with the BM25 commit (loaded, caught up from the stored vectors, compacted, saved as the [`SavePolicy`]
//! says). Searches read the graph through [`Engine::with_graph`] while a sync runs beside them.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sieve_vector::{GraphState, HnswParams, LoadOutcome, VectorIndex};

use crate::engine::Engine;
use crate::PipelineError;

pub(crate) const VECTOR_DIR: &str = "vectors";
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

pub(crate) struct VectorState {
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
    pub(crate) fn new(index: VectorIndex, saved_generation: Option<u64>) -> VectorState {
        VectorState { index, saved_generation, synced_generation: None, dirty: false, last_save: None }
    }

    /// Whether the graph on disk is behind the one in memory.
    fn unsaved(&self) -> bool {
        self.dirty || self.saved_generation != self.synced_generation
    }
}

impl Engine {
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
        let Some(settings) = &self.settings else {
            self.synced_commit.store(generation, Ordering::Release);
            return Ok(report);
        };
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
        self.synced_commit.store(generation, Ordering::Release);
        Ok(report)
    }

    /// Brings the engine up to date with a commit made by another process (`sieve ingest`, `sieve delete`
    /// into a served index): when the index's last commit on disk is not the one the engine last synced
    /// with, reloads and syncs the graph. Cheap when nothing changed (one small file read). Returns what the
    /// sync did, if it ran.
    pub fn follow_commits(&self) -> Result<Option<SyncReport>, PipelineError> {
        let on_disk = self.text.generation()?;
        if self.synced_commit.load(Ordering::Acquire) == on_disk {
            return Ok(None);
        }
        self.sync_vectors().map(Some)
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

    fn read_vectors(&self) -> RwLockReadGuard<'_, Option<VectorState>> {
        self.vectors.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_vectors(&self) -> RwLockWriteGuard<'_, Option<VectorState>> {
        self.vectors.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the graph under the read lock; `None` when no graph is loaded (the index has no dense side).
    pub fn with_graph<T>(&self, f: impl FnOnce(&VectorIndex) -> T) -> Option<T> {
        self.read_vectors().as_ref().map(|state| f(&state.index))
    }

    /// Live vectors in the graph.
    pub fn vector_count(&self) -> usize {
        self.with_graph(VectorIndex::len).unwrap_or(0)
    }
}
