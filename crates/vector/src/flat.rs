//! The search-time form of the graph: hnsw_rs builds, inserts into and persists the graph, but walks it
//! through reference-counted nodes with a lock per node visit; searching copies it into flat arrays instead
//! (row-major vectors, fixed-stride layer-0 links, a generation-stamped visited list), the layout hnswlib
//! searches. Rebuilt after every change to the graph (insert, compaction, load), in O(points).

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use hnsw_rs::hnsw::Hnsw;

use crate::distance::{dot, UnitDot};
use crate::index::SlotMap;

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

#[derive(Debug, Default)]
pub(crate) struct FlatGraph {
    pub(crate) dim: usize,
    /// Row-major vectors, rows in slot order.
    pub(crate) vectors: Vec<f32>,
    /// The slot of each row.
    pub(crate) slots: Vec<u64>,
    /// The row of each slot.
    pub(crate) rows: SlotMap<u32>,
    /// Layer-0 links: `stride` entries per row, the first `degree[row]` valid.
    links: Vec<u32>,
    degree: Vec<u16>,
    stride: usize,
    /// Links on layers 1.. of the rows that reach them (`upper[row][layer - 1]`).
    upper: Vec<Option<Box<[Vec<u32>]>>>,
    entry: Option<u32>,
    top_level: usize,
}

thread_local! {
    /// (generation, stamp per row): a row is visited when its stamp equals the generation.
    static VISITED: RefCell<(u32, Vec<u32>)> = const { RefCell::new((0, Vec::new())) };
}

impl FlatGraph {
    /// Copies the graph's points, vectors and links.
    pub(crate) fn from_graph(graph: &Hnsw<'static, f32, UnitDot>, dim: usize) -> FlatGraph {
        let mut flat = FlatGraph { dim, ..FlatGraph::default() };
        if graph.get_nb_point() == 0 {
            return flat;
        }
        let mut points: Vec<_> = graph.get_point_indexation().into_iter().collect();
        points.sort_unstable_by_key(|p| p.get_origin_id());
        let n = points.len();
        flat.vectors.reserve(n * dim);
        flat.slots.reserve(n);
        for (row, p) in points.iter().enumerate() {
            let slot = p.get_origin_id() as u64;
            flat.slots.push(slot);
            flat.rows.insert(slot, row as u32);
            flat.vectors.extend_from_slice(p.get_v());
        }
        let neighbourhoods: Vec<Vec<Vec<u64>>> = points
            .iter()
            .map(|p| {
                p.get_neighborhood_id().into_iter().map(|layer| layer.iter().map(|n| n.d_id as u64).collect()).collect()
            })
            .collect();
        flat.stride = neighbourhoods.iter().map(|l| l.first().map_or(0, Vec::len)).max().unwrap_or(0).max(1);
        flat.links = vec![0; n * flat.stride];
        flat.degree = vec![0; n];
        flat.upper = (0..n).map(|_| None).collect();
        for (row, layers) in neighbourhoods.iter().enumerate() {
            // any node of the top layer can start the descent; take the first
            let level = points[row].get_point_id().0 as usize;
            if flat.entry.is_none() || level > flat.top_level {
                flat.entry = Some(row as u32);
                flat.top_level = level;
            }
            let rows_of =
                |ids: &Vec<u64>| -> Vec<u32> { ids.iter().filter_map(|s| flat.rows.get(*s).copied()).collect() };
            if let Some(l0) = layers.first() {
                let l0 = rows_of(l0);
                flat.degree[row] = l0.len() as u16;
                flat.links[row * flat.stride..row * flat.stride + l0.len()].copy_from_slice(&l0);
            }
            if layers.len() > 1 {
                let upper: Vec<Vec<u32>> = layers[1..].iter().map(rows_of).collect();
                flat.upper[row] = Some(upper.into_boxed_slice());
            }
        }
        flat
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
