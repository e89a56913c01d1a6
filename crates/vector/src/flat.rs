//! The search-time form of the graph: hnsw_rs builds, inserts into and persists the graph, but walks it
//! through reference-counted nodes with a lock per node visit; searching copies it into flat arrays instead
//! (row-major vectors, fixed-stride layer-0 links, a generation-stamped visited list), the layout hnswlib
//! searches.
//!
//! Built in O(points) from the graph after a load or a compaction. An insert does not rebuild it: the new
//! points are appended as rows and only the rows whose links the insert can have changed are re-read (the new
//! points and every point they link to, which is where hnsw_rs adds the reverse links), so a write costs what
//! it inserts, not the size of the index (BENCHMARKS.md, "HNSW updates").

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;

use hnsw_rs::hnsw::{Hnsw, Point};

use crate::distance::{dot, UnitDot};
use crate::slots::SlotMap;

type Node = Arc<Point<'static, f32>>;

/// A node's distance to the query, ordered by distance then row (total order).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scored {
    dist: f32,
    row: u32,
}

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.dist.total_cmp(&other.dist).then(self.row.cmp(&other.row))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Where the graph's layers ended before an insert: the new points are the ones past these lengths (hnsw_rs
/// appends each point to the list of its top layer).
#[derive(Debug, Clone)]
pub(crate) struct LayerMarks(Vec<usize>);

impl LayerMarks {
    pub(crate) fn of(graph: &Hnsw<'static, f32, UnitDot>) -> LayerMarks {
        let points = graph.get_point_indexation();
        LayerMarks((0..graph.get_max_level()).map(|l| points.get_layer_nb_point(l)).collect())
    }
}

#[derive(Default)]
pub(crate) struct FlatGraph {
    pub(crate) dim: usize,
    /// Row-major vectors: rows in slot order after a full build, new rows appended after it.
    pub(crate) vectors: Vec<f32>,
    /// The slot of each row.
    pub(crate) slots: Vec<u64>,
    /// The row of each slot.
    pub(crate) rows: SlotMap<u32>,
    /// The graph's node behind each row, to re-read its links after an insert.
    nodes: Vec<Node>,
    /// Layer-0 links: `stride` entries per row, the first `degree[row]` valid.
    links: Vec<u32>,
    degree: Vec<u16>,
    stride: usize,
    /// Links on layers 1.. of the rows that reach them (`upper[row][layer - 1]`).
    upper: Vec<Option<Box<[Vec<u32>]>>>,
    entry: Option<u32>,
    top_level: usize,
    /// Rows added by `extend` since every row's links were last read.
    since_full: usize,
}

impl std::fmt::Debug for FlatGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatGraph").field("rows", &self.slots.len()).field("stride", &self.stride).finish()
    }
}

thread_local! {
    /// (generation, stamp per row): a row is visited when its stamp equals the generation.
    static VISITED: RefCell<(u32, Vec<u32>)> = const { RefCell::new((0, Vec::new())) };
}

impl FlatGraph {
    /// Copies the graph's points, vectors and links. `stride` is the most layer-0 links a node may hold
    /// (2·M in hnsw_rs).
    pub(crate) fn from_graph(graph: &Hnsw<'static, f32, UnitDot>, dim: usize, stride: usize) -> FlatGraph {
        let mut nodes: Vec<Node> = Vec::new();
        if graph.get_nb_point() > 0 {
            nodes = graph.get_point_indexation().into_iter().collect();
            nodes.sort_unstable_by_key(|p| p.get_origin_id());
        }
        let mut stride = stride.max(1);
        loop {
            let mut flat = FlatGraph { dim, stride, ..FlatGraph::default() };
            if flat.append(nodes.clone()) {
                return flat;
            }
            // a node with more links than hnsw_rs keeps (not seen; kept correct rather than assumed away)
            stride *= 2;
        }
    }

    /// Brings the copy up to date after `graph` received new points (the ones past `before`). Returns false
    /// when it cannot (a node holds more links than the stride): the caller builds a fresh copy.
    pub(crate) fn extend(&mut self, graph: &Hnsw<'static, f32, UnitDot>, before: &LayerMarks) -> bool {
        let points = graph.get_point_indexation();
        let mut nodes: Vec<Node> = Vec::new();
        for (layer, &from) in before.0.iter().enumerate() {
            if points.get_layer_nb_point(layer) > from {
                nodes.extend(points.get_layer_iterator(layer).skip(from));
            }
        }
        nodes.sort_unstable_by_key(|p| p.get_origin_id());
        self.since_full += nodes.len();
        if !self.append(nodes) {
            return false;
        }
        if self.since_full * 4 > self.len() {
            // bound the drift of the missed reverse links (see `append`): re-read every row's links
            self.since_full = 0;
            return (0..self.len() as u32).all(|row| self.read_links(row));
        }
        true
    }

    /// Adds `nodes` (new to this copy) as rows, then (re)reads the links of the new rows and of every row they
    /// link to: an insert into hnsw_rs changes only the new point's lists and those of the points it was
    /// linked to (the reverse links). One case escapes: a later point of the same batch can push an old point
    /// out of a new point's list after the old point took the reverse link, and that old row keeps its
    /// previous links. The copy stays a valid graph (the old links still exist in it; the new point is reached
    /// through its other links); tests measure it at 0–1 rows in 5,000, and `extend` re-reads every row once
    /// a quarter of the copy was added incrementally, so it does not accumulate.
    fn append(&mut self, nodes: Vec<Node>) -> bool {
        let first = self.slots.len();
        self.vectors.reserve(nodes.len() * self.dim);
        for node in &nodes {
            let row = self.slots.len() as u32;
            let slot = node.get_origin_id() as u64;
            self.slots.push(slot);
            self.rows.insert(slot, row);
            self.vectors.extend_from_slice(node.get_v());
            self.degree.push(0);
            self.links.extend(std::iter::repeat_n(0, self.stride));
            self.upper.push(None);
        }
        self.nodes.extend(nodes);
        let mut touched: Vec<u32> = (first as u32..self.slots.len() as u32).collect();
        for row in first..self.slots.len() {
            let level = self.nodes[row].get_point_id().0 as usize;
            if self.entry.is_none() || level > self.top_level {
                // any node of the top layer can start the descent
                self.entry = Some(row as u32);
                self.top_level = level;
            }
            for layer in self.nodes[row].get_neighborhood_id() {
                touched.extend(
                    layer.iter().filter_map(|n| self.rows.get(n.d_id as u64)).filter(|&&r| (r as usize) < first),
                );
            }
        }
        touched.sort_unstable();
        touched.dedup();
        touched.into_iter().all(|row| self.read_links(row))
    }

    /// Re-reads one row's links from its node. False when layer 0 holds more links than the stride.
    fn read_links(&mut self, row: u32) -> bool {
        let layers = self.nodes[row as usize].get_neighborhood_id();
        let rows_of = |ids: &[hnsw_rs::hnsw::Neighbour]| -> Vec<u32> {
            ids.iter().filter_map(|n| self.rows.get(n.d_id as u64).copied()).collect()
        };
        let l0 = layers.first().map(|l| rows_of(l)).unwrap_or_default();
        if l0.len() > self.stride {
            return false;
        }
        let at = row as usize * self.stride;
        self.links[at..at + l0.len()].copy_from_slice(&l0);
        self.degree[row as usize] = l0.len() as u16;
        let upper: Vec<Vec<u32>> = layers.iter().skip(1).map(|l| rows_of(l)).collect();
        // hnsw_rs sizes every node's list of layers to the graph's maximum; keep only the ones it reaches
        let reached = upper.iter().rposition(|l| !l.is_empty()).map_or(0, |i| i + 1);
        self.upper[row as usize] = (reached > 0).then(|| upper[..reached].to_vec().into_boxed_slice());
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn row_vector(&self, row: u32) -> &[f32] {
        let i = row as usize * self.dim;
        &self.vectors[i..i + self.dim]
    }

    fn dist(&self, q: &[f32], row: u32) -> f32 {
        (1.0 - dot(q, self.row_vector(row))).max(0.0)
    }

    fn layer0(&self, row: u32) -> &[u32] {
        let i = row as usize * self.stride;
        &self.links[i..i + self.degree[row as usize] as usize]
    }

    fn upper_links(&self, row: u32, layer: usize) -> &[u32] {
        match &self.upper[row as usize] {
            Some(layers) if layer >= 1 && layer <= layers.len() => &layers[layer - 1],
            _ => &[],
        }
    }

    /// The `k` nearest rows accepted by `keep` (by slot; every row when `None`), walking layer 0 with a
    /// candidate list of `ef` (Malkov & Yashunin, algorithms 2 and 5). Rows `keep` rejects are still walked
    /// through, never returned.
    pub(crate) fn search(&self, q: &[f32], k: usize, ef: usize, keep: Option<&dyn Fn(u64) -> bool>) -> Vec<(u64, f32)> {
        let accept = |row: u32| keep.is_none_or(|keep| keep(self.slots[row as usize]));
        let Some(mut entry) = self.entry else { return Vec::new() };
        let mut entry_dist = self.dist(q, entry);
        // greedy descent through the upper layers
        for layer in (1..=self.top_level).rev() {
            let mut changed = true;
            while changed {
                changed = false;
                for &nb in self.upper_links(entry, layer) {
                    let d = self.dist(q, nb);
                    if d < entry_dist {
                        (entry, entry_dist, changed) = (nb, d, true);
                    }
                }
            }
        }
        let ef = ef.max(k);
        VISITED.with(|v| {
            let mut v = v.borrow_mut();
            let (generation, stamps) = &mut *v;
            if stamps.len() < self.len() {
                stamps.resize(self.len(), 0);
            }
            *generation = generation.wrapping_add(1);
            if *generation == 0 {
                stamps.iter_mut().for_each(|s| *s = 0);
                *generation = 1;
            }
            let generation = *generation;
            // candidates: nearest first; results: the ef best accepted rows, farthest on top
            let mut candidates: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef * 4);
            let mut results: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef + 1);
            let start = Scored { dist: entry_dist, row: entry };
            stamps[entry as usize] = generation;
            candidates.push(Reverse(start));
            if accept(entry) {
                results.push(start);
            }
            while let Some(Reverse(c)) = candidates.pop() {
                if results.len() >= ef && c.dist > results.peek().map_or(f32::INFINITY, |r| r.dist) {
                    break;
                }
                for &nb in self.layer0(c.row) {
                    let stamp = &mut stamps[nb as usize];
                    if *stamp == generation {
                        continue;
                    }
                    *stamp = generation;
                    let d = self.dist(q, nb);
                    let worst = results.peek().map_or(f32::INFINITY, |r| r.dist);
                    if results.len() < ef || d < worst {
                        candidates.push(Reverse(Scored { dist: d, row: nb }));
                        if accept(nb) {
                            results.push(Scored { dist: d, row: nb });
                            if results.len() > ef {
                                results.pop();
                            }
                        }
                    }
                }
            }
            let mut out: Vec<Scored> = results.into_vec();
            out.sort_unstable();
            out.truncate(k);
            out.into_iter().map(|s| (self.slots[s.row as usize], 1.0 - s.dist)).collect()
        })
    }
}

#[cfg(test)]
impl FlatGraph {
    /// Rows (by slot) whose links differ from `other`'s, compared as sets of slots per layer; and whether
    /// the vectors of every slot agree.
    pub(crate) fn differences(&self, other: &FlatGraph) -> (Vec<u64>, bool) {
        let links_of = |g: &FlatGraph, row: u32| -> Vec<Vec<u64>> {
            let mut layers = vec![g.layer0(row).iter().map(|&r| g.slots[r as usize]).collect::<Vec<_>>()];
            for layer in 1..=g.top_level {
                layers.push(g.upper_links(row, layer).iter().map(|&r| g.slots[r as usize]).collect());
            }
            while layers.len() > 1 && layers.last().is_some_and(Vec::is_empty) {
                layers.pop();
            }
            layers.iter_mut().for_each(|l| l.sort_unstable());
            layers
        };
        let mut differing = Vec::new();
        let mut same_vectors = self.len() == other.len();
        for (row, &slot) in self.slots.iter().enumerate() {
            let Some(&theirs) = other.rows.get(slot) else {
                differing.push(slot);
                continue;
            };
            if links_of(self, row as u32) != links_of(other, theirs) {
                differing.push(slot);
            }
            same_vectors &= self.row_vector(row as u32) == other.row_vector(theirs);
        }
        (differing, same_vectors)
    }

    /// The level of the entry row.
    pub(crate) fn top_level(&self) -> usize {
        self.top_level
    }
}
