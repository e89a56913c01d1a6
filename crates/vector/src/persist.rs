//! Saving and loading the graph.
//!
//! Layout of the vector directory:
//! - `state.json`: dimensions, parameters, the BM25 commit generation the graph reflects, the largest slot
//!   in it, and the name of the graph folder. Written last, by rename: it only ever names a complete graph.
//! - `g-<generation>-<nanos>/graph.hnsw.{graph,data}`: hnsw_rs's dump, written into a temporary folder,
//!   synced and renamed into place before `state.json` points at it. Older folders are removed afterwards.
//!
//! A process killed at any moment leaves either the old state or the new one, never a mix.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use hnsw_rs::api::AnnT;
use hnsw_rs::hnswio::HnswIo;
use serde::{Deserialize, Serialize};

use crate::distance::UnitDot;
use crate::index::{HnswParams, VectorIndex};
use crate::{Result, VectorError};

const STATE: &str = "state.json";
const FORMAT: &str = "sieve-vectors-1";
const BASENAME: &str = "graph";

/// What `state.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphState {
    pub format: String,
    pub dim: usize,
    pub params: HnswParams,
    /// The BM25 commit (tantivy opstamp) whose live documents the graph was brought up to date with.
    pub generation: u64,
    pub max_slot: Option<u64>,
    /// Points in the saved graph (live and tombstoned).
    pub points: usize,
    /// The folder holding the dump; `None` for an empty graph.
    pub graph: Option<String>,
}

impl GraphState {
    /// What `state.json` in `dir` says, without loading the graph: `None` when no graph was ever saved there.
    pub fn read(dir: &Path) -> Result<Option<GraphState>> {
        let path = dir.join(STATE);
        let raw = match fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| VectorError::Corrupt { path: path.display().to_string(), message: e.to_string() })
    }
}

/// The result of [`VectorIndex::load`].
#[derive(Debug)]
pub enum LoadOutcome {
    Loaded(Box<VectorIndex>, GraphState),
    /// No graph was ever saved here.
    Missing,
    /// A graph is there but cannot be used as is (other dimensions or parameters, unreadable files); the
    /// caller rebuilds from the stored vectors.
    Unusable {
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> VectorError + '_ {
    move |source| VectorError::Io { path: path.display().to_string(), source }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

impl VectorIndex {
    /// Saves the graph as reflecting BM25 commit `generation`; returns what `state.json` now says.
    pub fn save(&self, dir: &Path, generation: u64) -> Result<GraphState> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let graph = if self.flat.len() == 0 {
            None
        } else {
            let tmp = dir.join(format!("tmp-{}", nanos()));
            fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
            self.graph
                .file_dump(&tmp, BASENAME)
                .map_err(|e| VectorError::Corrupt { path: tmp.display().to_string(), message: e.to_string() })?;
            for entry in fs::read_dir(&tmp).map_err(io_err(&tmp))? {
                let path = entry.map_err(io_err(&tmp))?.path();
                fs::File::open(&path).and_then(|f| f.sync_all()).map_err(io_err(&path))?;
            }
            let name = format!("g-{generation}-{}", nanos());
            let target = dir.join(&name);
            fs::rename(&tmp, &target).map_err(io_err(&target))?;
            Some(name)
        };
        sync_dir(dir);
        let state = GraphState {
            format: FORMAT.into(),
            dim: self.dim,
            params: self.params,
            generation,
            max_slot: self.max_slot,
            points: self.flat.len(),
            graph: graph.clone(),
        };
        let state_path = dir.join(STATE);
        let tmp_state = dir.join("state.json.tmp");
        fs::write(&tmp_state, serde_json::to_vec_pretty(&state).expect("state serializes"))
            .map_err(io_err(&tmp_state))?;
        fs::File::open(&tmp_state).and_then(|f| f.sync_all()).map_err(io_err(&tmp_state))?;
        fs::rename(&tmp_state, &state_path).map_err(io_err(&state_path))?;
        sync_dir(dir);
        // Older graphs and abandoned temporary folders are garbage now.
        for entry in fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = (name.starts_with("g-") && Some(&name) != graph.as_ref()) || name.starts_with("tmp-");
            if stale {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(state)
    }

    /// Loads the graph saved in `dir`, if it fits `dim` and the construction parameters of `params` (its
    /// search settings are taken from `params`).
    pub fn load(dir: &Path, dim: usize, params: HnswParams) -> Result<LoadOutcome> {
        let state = match GraphState::read(dir) {
            Ok(Some(state)) => state,
            Ok(None) => return Ok(LoadOutcome::Missing),
            Err(VectorError::Corrupt { path, message }) => {
                return Ok(LoadOutcome::Unusable { reason: format!("{path}: {message}") })
            }
            Err(e) => return Err(e),
        };
        if state.format != FORMAT {
            return Ok(LoadOutcome::Unusable { reason: format!("format {:?}, expected {FORMAT:?}", state.format) });
        }
        if state.dim != dim {
            return Ok(LoadOutcome::Unusable { reason: format!("graph has {} dimensions, expected {dim}", state.dim) });
        }
        let (saved, wanted) = (state.params, params);
        if (saved.metric, saved.m, saved.ef_construction) != (wanted.metric, wanted.m, wanted.ef_construction) {
            return Ok(LoadOutcome::Unusable {
                reason: format!(
                    "graph built with metric {:?}, M {}, ef_construction {}; settings ask for {:?}, {}, {}",
                    saved.metric, saved.m, saved.ef_construction, wanted.metric, wanted.m, wanted.ef_construction
                ),
            });
        }
        let mut index = VectorIndex::new(dim, params)?;
        if let Some(name) = &state.graph {
            let folder: PathBuf = dir.join(name);
            match load_graph(&folder) {
                Ok(graph) => index.graph = graph,
                Err(reason) => return Ok(LoadOutcome::Unusable { reason }),
            }
            index.graph.set_searching_mode(true);
            let points = index.graph.get_nb_point();
            if points != state.points {
                return Ok(LoadOutcome::Unusable {
                    reason: format!("{}: {points} points, state.json promised {}", folder.display(), state.points),
                });
            }
            let found = index.graph.get_point_indexation().get_data_dimension();
            if found != dim {
                return Ok(LoadOutcome::Unusable {
                    reason: format!("the saved vectors have {found} dimensions, expected {dim}"),
                });
            }
            index.reindex_points();
            if index.flat.vectors.len() != points * dim {
                return Ok(LoadOutcome::Unusable {
                    reason: format!("the saved vectors do not all have {dim} dimensions"),
                });
            }
        } else if state.points != 0 {
            return Ok(LoadOutcome::Unusable { reason: "state.json names no graph but promises points".into() });
        }
        index.max_slot = state.max_slot;
        Ok(LoadOutcome::Loaded(Box::new(index), state))
    }
}

/// Reads an hnsw_rs dump. The loaded graph borrows its loader for its whole life, so the (small, data-less)
/// loader is leaked: one per load, which happens when an index is opened.
fn load_graph(folder: &Path) -> std::result::Result<hnsw_rs::hnsw::Hnsw<'static, f32, UnitDot>, String> {
    for ext in ["graph", "data"] {
        let f = folder.join(format!("{BASENAME}.hnsw.{ext}"));
        if !f.is_file() {
            return Err(format!("{} is missing", f.display()));
        }
    }
    let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(folder, BASENAME)));
    // hnsw_rs panics on some malformed files instead of returning an error; contain that here.
    let mut io = Some(io);
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let io: &'static mut HnswIo = io.take().expect("called once");
        io.load_hnsw::<f32, UnitDot>()
    }));
    match loaded {
        Ok(Ok(graph)) => Ok(graph),
        Ok(Err(e)) => Err(format!("{}: {e}", folder.display())),
        Err(_) => Err(format!("{}: the graph files are corrupt", folder.display())),
    }
}
