//! The in-memory index: graph, points by slot, live slots with their document ids, search strategies.

use hnsw_rs::hnsw::Hnsw;
use serde::{Deserialize, Serialize};
use sieve_core::DocId;

use crate::distance::{dot, norm, normalize, UnitDot};
use crate::flat::{FlatGraph, LayerMarks};
use crate::slots::SlotMap;
use crate::{Result, VectorError};

/// How similarity is measured. Both are served by one graph over unit vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Vectors (and queries) are L2-normalised on the way in; the similarity is their cosine.
    #[default]
    Cosine,
    /// Inner product of vectors that are already unit length (as Qwen3-Embedding and MiniLM emit); a vector
    /// whose norm is off by more than 1e-3 is refused rather than silently ranked wrong.
    Dot,
}

impl Metric {
    /// The name `vectors/config.json` and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Dot => "dot",
        }
    }
}

/// Graph construction and search settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HnswParams {
    pub metric: Metric,
    /// Links per node on the upper layers (layer 0 keeps 2·M, as in hnswlib and faiss). 2..=255.
    pub m: usize,
    /// Candidate list size while inserting.
    pub ef_construction: usize,
    /// Default candidate list size while searching (a request may override it).
    pub ef_search: usize,
    /// At or below this many candidate vectors a search scans them exactly instead of walking the graph: the
    /// result is exact and, at this size, no slower (BENCHMARKS.md, "HNSW").
    pub exact_below: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams { metric: Metric::Cosine, m: 16, ef_construction: 200, ef_search: 64, exact_below: 2_000 }
    }
}

impl HnswParams {
    pub fn validate(self) -> Result<HnswParams> {
        let bad = |name, expected, found: usize| VectorError::Param { name, expected, found: found.to_string() };
        if !(2..=255).contains(&self.m) {
            return Err(bad("m", "2..=255", self.m));
        }
        if self.ef_construction < self.m {
            return Err(bad("ef_construction", "at least m", self.ef_construction));
        }
        if self.ef_search == 0 {
            return Err(bad("ef_search", "at least 1", 0));
        }
        Ok(self)
    }
}

/// One search over the index.
#[derive(Debug, Clone, Copy)]
pub struct VectorSearch<'a> {
    pub k: usize,
    /// Overrides [`HnswParams::ef_search`].
    pub ef: Option<usize>,
    /// Only these slots may be returned (sorted ascending; the filter's matches). `None`: every live slot.
    pub only: Option<&'a [u64]>,
    /// Scan every candidate exactly, whatever the size.
    pub exact: bool,
}

impl VectorSearch<'_> {
    pub fn new(k: usize) -> Self {
        VectorSearch { k, ef: None, only: None, exact: false }
    }
}

/// Points linked into the graph by [`VectorIndex::stage`], waiting for [`VectorIndex::publish`].
#[derive(Debug)]
#[must_use = "staged points are not searchable until published"]
pub struct Staged {
    marks: LayerMarks,
    points: usize,
    max_slot: Option<u64>,
    /// A batch too large to append (over a quarter of the graph): the search copy built afresh, still
    /// through `&self`, so that publishing only swaps it in.
    fresh: Option<FlatGraph>,
}

impl Staged {
    /// How many new points were linked.
    pub fn points(&self) -> usize {
        self.points
    }
}

/// How a search was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SearchStrategy {
    /// The graph, walked with this candidate list size.
    Hnsw { ef: usize },
    /// Every candidate compared with the query.
    Exact { scanned: usize },
}

/// One nearest neighbour. `similarity` is the cosine (or dot product), higher is closer; `rank` is 1-based.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorHit {
    pub slot: u64,
    pub id: DocId,
    pub similarity: f32,
    pub rank: u32,
}

#[derive(Debug, Clone)]
pub struct VectorResults {
    pub hits: Vec<VectorHit>,
    pub strategy: SearchStrategy,
    /// Live vectors the search could return (after the filter).
    pub candidates: usize,
}

/// The dense index. Every slot in the graph is either live (mapped to a document) or a tombstone.
pub struct VectorIndex {
    pub(crate) dim: usize,
    pub(crate) params: HnswParams,
    pub(crate) graph: Hnsw<'static, f32, UnitDot>,
    /// Every point in the graph, live or not, in the flat form searches walk.
    pub(crate) flat: FlatGraph,
    /// Live slots and their documents.
    pub(crate) live: SlotMap<DocId>,
    pub(crate) max_slot: Option<u64>,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("dim", &self.dim)
            .field("params", &self.params)
            .field("points", &self.flat.len())
            .field("live", &self.live.len())
            .finish()
    }
}

/// The graph's layer count cap (hnsw_rs's maximum).
const MAX_LAYER: usize = 16;

pub(crate) fn new_graph(params: &HnswParams, capacity: usize) -> Hnsw<'static, f32, UnitDot> {
    Hnsw::new(params.m, capacity.max(1024), MAX_LAYER, params.ef_construction, UnitDot)
}

impl VectorIndex {
    /// An empty index of `dim`-dimensional vectors.
    pub fn new(dim: usize, params: HnswParams) -> Result<VectorIndex> {
        let params = params.validate()?;
        if dim == 0 {
            return Err(VectorError::Param { name: "dim", expected: "at least 1", found: "0".into() });
        }
        Ok(VectorIndex {
            dim,
            params,
            graph: new_graph(&params, 0),
            flat: FlatGraph::default(),
            live: SlotMap::default(),
            max_slot: None,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Changes the search-time settings (`ef_search`, `exact_below`); the construction settings stay.
    pub fn set_search_params(&mut self, ef_search: usize, exact_below: usize) {
        self.params.ef_search = ef_search.max(1);
        self.params.exact_below = exact_below;
    }

    /// Points in the graph, live or tombstoned.
    pub fn points(&self) -> usize {
        self.flat.len()
    }

    /// Live vectors.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Tombstoned points (replaced or deleted documents still in the graph).
    pub fn tombstones(&self) -> usize {
        self.flat.len() - self.flat.slots.iter().filter(|s| self.live.contains(**s)).count()
    }

    /// The largest slot ever inserted.
    pub fn max_slot(&self) -> Option<u64> {
        self.max_slot
    }

    pub fn contains(&self, slot: u64) -> bool {
        self.flat.rows.contains(slot)
    }

    /// The stored (normalised) vector of a slot.
    pub fn vector(&self, slot: u64) -> Option<&[f32]> {
        self.flat.rows.get(slot).map(|&row| self.flat.row_vector(row))
    }

    /// Checks and prepares a vector for the graph: dimensions, finiteness, and unit length.
    pub fn prepare(&self, slot: u64, mut v: Vec<f32>) -> Result<Vec<f32>> {
        if v.len() != self.dim {
            return Err(VectorError::Dimension { slot, expected: self.dim, found: v.len() });
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(VectorError::BadVector { slot, problem: "contains NaN or infinity".into() });
        }
        match self.params.metric {
            Metric::Cosine => {
                if !normalize(&mut v) {
                    return Err(VectorError::BadVector { slot, problem: "is all zeros (no direction)".into() });
                }
            }
            Metric::Dot => {
                let n = norm(&v);
                if (n - 1.0).abs() > 1e-3 {
                    return Err(VectorError::BadVector {
                        slot,
                        problem: format!("has norm {n:.4}; the dot metric expects unit vectors (use cosine)"),
                    });
                }
            }
        }
        Ok(v)
    }

    /// Inserts vectors (in parallel). Each slot must be new: a document's new version gets a new slot and the
    /// old one becomes a tombstone through [`VectorIndex::set_live`]. Inserted slots are not live until then.
    pub fn insert(&mut self, items: Vec<(u64, Vec<f32>)>) -> Result<()> {
        let staged = self.stage(items)?;
        self.publish(staged);
        Ok(())
    }

    /// The slow half of [`VectorIndex::insert`], which needs only `&self`: checks the vectors and links them
    /// into the graph. Searches keep answering from the flat copy meanwhile and do not see the new points
    /// until [`VectorIndex::publish`]. One staging at a time, published before the next.
    pub fn stage(&self, items: Vec<(u64, Vec<f32>)>) -> Result<Staged> {
        let mut prepared = Vec::with_capacity(items.len());
        for (slot, v) in items {
            if self.contains(slot) {
                continue; // already in the graph (a catch-up that overlaps what the graph holds)
            }
            prepared.push((slot, self.prepare(slot, v)?));
        }
        let marks = LayerMarks::of(&self.graph);
        if prepared.is_empty() {
            return Ok(Staged { marks, points: 0, max_slot: None, fresh: None });
        }
        let max_slot = prepared.iter().map(|(s, _)| *s).max();
        let refs: Vec<(&[f32], usize)> = prepared.iter().map(|(s, v)| (v.as_slice(), *s as usize)).collect();
        // hnsw_rs inserts through `&self` (its nodes are locked one by one); its searching-mode flag only
        // matters to its own searches, which Sieve does not use
        if refs.len() >= 64 {
            self.graph.parallel_insert_slice(&refs);
        } else {
            for r in refs {
                self.graph.insert_slice(r);
            }
        }
        let fresh = (prepared.len() * 4 > self.flat.len())
            .then(|| FlatGraph::from_graph(&self.graph, self.dim, 2 * self.params.m));
        Ok(Staged { marks, points: prepared.len(), max_slot, fresh })
    }

    /// Makes staged points searchable: appends them to the flat copy and re-reads the links they changed, in
    /// time proportional to the points staged (a batch of over a quarter of the graph swaps in the copy
    /// [`VectorIndex::stage`] built afresh).
    pub fn publish(&mut self, staged: Staged) {
        if staged.points == 0 {
            return;
        }
        self.max_slot = self.max_slot.max(staged.max_slot);
        if let Some(fresh) = staged.fresh {
            self.flat = fresh;
        } else if !self.flat.extend(&self.graph, &staged.marks) {
            self.reindex_points();
        }
    }

    /// Rebuilds the search copy from the whole graph, in O(points): what a load and a compaction do, and what
    /// every insert did before [`VectorIndex::publish`] updated the copy in place (`benches/hnsw_updates.rs`
    /// measures one against the other).
    pub fn rebuild_search_copy(&mut self) {
        self.reindex_points();
    }

    /// Rebuilds the flat search form from the graph.
    pub(crate) fn reindex_points(&mut self) {
        self.flat = FlatGraph::from_graph(&self.graph, self.dim, 2 * self.params.m);
    }

    /// Declares which slots are live and which document each belongs to; every other point becomes a
    /// tombstone. Returns the live slots that are missing from the graph (they need [`VectorIndex::insert`]).
    pub fn set_live(&mut self, live: impl IntoIterator<Item = (u64, DocId)>) -> Vec<u64> {
        self.live = live.into_iter().collect();
        let mut missing: Vec<u64> = self.live.iter().map(|(s, _)| s).filter(|s| !self.contains(*s)).collect();
        missing.sort_unstable();
        missing
    }

    /// Brings the live set to exactly `slots` (sorted), given the documents of the slots that were not live
    /// (`new`; [`VectorIndex::is_live`] says which those are): the same result as [`VectorIndex::set_live`]
    /// over every pair, without handling the ids of the slots that stay live. Returns the live slots missing
    /// from the graph.
    pub fn update_live(&mut self, slots: &[u64], new: impl IntoIterator<Item = (u64, DocId)>) -> Vec<u64> {
        debug_assert!(slots.windows(2).all(|w| w[0] < w[1]), "`slots` must be sorted and distinct");
        // both in slot order: one merge walk
        let mut rest = slots.iter().peekable();
        let gone: Vec<u64> = self
            .live
            .iter()
            .map(|(s, _)| s)
            .filter(|s| {
                while rest.next_if(|next| **next < *s).is_some() {}
                rest.peek() != Some(&s)
            })
            .collect();
        for slot in gone {
            self.live.remove(slot);
        }
        for (slot, id) in new {
            self.live.insert(slot, id);
        }
        debug_assert_eq!(self.live.len(), slots.len(), "every slot that was not live came with its document");
        // `slots` is sorted, so this is too
        slots.iter().copied().filter(|s| !self.contains(*s)).collect()
    }

    /// Whether `slot` is live (declared by [`VectorIndex::set_live`] or [`VectorIndex::update_live`]).
    pub fn is_live(&self, slot: u64) -> bool {
        self.live.contains(slot)
    }

    /// Whether enough of the graph is tombstones that rebuilding it from the live vectors pays off (over a
    /// fifth: searches then walk dead nodes and need a larger candidate list).
    pub fn needs_compaction(&self) -> bool {
        let dead = self.tombstones();
        dead > 0 && dead * 5 > self.flat.len()
    }

    /// Rebuilds the graph from the live vectors only, dropping every tombstone.
    pub fn compact(&mut self) {
        *self = self.compacted();
    }

    /// A copy of the index holding the live vectors only (the slow half of [`VectorIndex::compact`], through
    /// `&self`, so searches go on against this index while the copy is built).
    pub fn compacted(&self) -> VectorIndex {
        let mut items: Vec<(u64, &[f32])> =
            self.live.iter().filter_map(|(s, _)| self.vector(s).map(|v| (s, v))).collect();
        items.sort_unstable_by_key(|(s, _)| *s);
        let graph = new_graph(&self.params, items.len());
        let refs: Vec<(&[f32], usize)> = items.iter().map(|(s, v)| (*v, *s as usize)).collect();
        if !refs.is_empty() {
            graph.parallel_insert_slice(&refs);
        }
        let mut index = VectorIndex {
            dim: self.dim,
            params: self.params,
            graph,
            flat: FlatGraph::default(),
            live: self.live.clone(),
            max_slot: self.max_slot,
        };
        index.reindex_points();
        index
    }

    /// The `k` nearest live vectors to `query` (among `only`, when given).
    ///
    /// Exact scan when the candidates number at most [`HnswParams::exact_below`] (or `exact`, or when `ef`
    /// reaches the candidate count); otherwise the graph, walked through rows the filter or a tombstone
    /// excludes until `ef` returnable rows are held (a filter that keeps 1 % of the documents makes the walk
    /// ~100× longer by itself). If the walk still finds fewer than k while at least k exist, the search falls
    /// back to the exact scan: a filter never silently loses recall.
    pub fn search(&self, query: &[f32], search: &VectorSearch<'_>) -> Result<VectorResults> {
        if query.len() != self.dim {
            return Err(VectorError::QueryDimension { expected: self.dim, found: query.len() });
        }
        let mut q = query.to_vec();
        if !normalize(&mut q) {
            return Err(VectorError::BadQuery { problem: "is all zeros, NaN or infinite".into() });
        }
        let only = search.only;
        debug_assert!(only.is_none_or(|s| s.windows(2).all(|w| w[0] < w[1])), "`only` must be sorted and distinct");
        let candidates = match only {
            Some(slots) => slots.iter().filter(|s| self.live.contains(**s)).count(),
            None => self.live.len(),
        };
        let k = search.k.min(candidates);
        if k == 0 {
            return Ok(VectorResults { hits: Vec::new(), strategy: SearchStrategy::Exact { scanned: 0 }, candidates });
        }
        if search.exact || candidates <= self.params.exact_below {
            return Ok(self.exact(&q, k, only, candidates));
        }
        let ef = search.ef.unwrap_or(self.params.ef_search).max(k);
        if ef >= candidates {
            // the walk would compare about as many vectors as a scan
            return Ok(self.exact(&q, k, only, candidates));
        }
        // Rows the filter or a tombstone excludes are walked through but never returned; the walk goes on
        // until it holds `ef` rows that may be returned, so a filter widens it by itself.
        let tombstones = self.live.len() != self.flat.len();
        let neighbours = match only {
            None if !tombstones => self.flat.search(&q, k, ef, None),
            None => self.flat.search(&q, k, ef, Some(&|slot| self.live.contains(slot))),
            Some(slots) => {
                let keep = |slot: u64| slots.binary_search(&slot).is_ok() && self.live.contains(slot);
                self.flat.search(&q, k, ef, Some(&keep))
            }
        };
        if neighbours.len() < k {
            return Ok(self.exact(&q, k, only, candidates));
        }
        Ok(VectorResults { hits: self.hits(neighbours), strategy: SearchStrategy::Hnsw { ef }, candidates })
    }

    /// Compares the query with every candidate; ties go to the smaller slot (the older document).
    fn exact(&self, q: &[f32], k: usize, only: Option<&[u64]>, candidates: usize) -> VectorResults {
        let mut scored: Vec<(f32, u64)> = Vec::with_capacity(candidates);
        match only {
            Some(slots) => {
                for &slot in slots {
                    if let (Some(&row), true) = (self.flat.rows.get(slot), self.live.contains(slot)) {
                        scored.push((dot(q, self.flat.row_vector(row)), slot));
                    }
                }
            }
            // rows are in slot order: one pass over the contiguous vectors
            None => {
                for (row, &slot) in self.flat.slots.iter().enumerate() {
                    if self.live.contains(slot) {
                        scored.push((dot(q, self.flat.row_vector(row as u32)), slot));
                    }
                }
            }
        }
        let scanned = scored.len();
        let order = |a: &(f32, u64), b: &(f32, u64)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if scored.len() > k {
            scored.select_nth_unstable_by(k - 1, order);
            scored.truncate(k);
        }
        scored.sort_unstable_by(order);
        let hits = self.hits(scored.into_iter().map(|(sim, slot)| (slot, sim)).collect());
        VectorResults { hits, strategy: SearchStrategy::Exact { scanned }, candidates }
    }

    /// Hits from `(slot, similarity)` pairs of live slots, best first.
    fn hits(&self, ranked: Vec<(u64, f32)>) -> Vec<VectorHit> {
        ranked
            .into_iter()
            .enumerate()
            .map(|(i, (slot, similarity))| VectorHit {
                slot,
                id: self.live.get(slot).expect("searches return live slots only").clone(),
                similarity,
                rank: i as u32 + 1,
            })
            .collect()
    }
}
