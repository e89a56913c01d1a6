use sieve_core::DocId;

use crate::*;

/// Deterministic clustered vectors: 20 centres, each point a centre plus noise.
fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..20).map(|_| (0..dim).map(|_| next()).collect()).collect();
    (0..n).map(|i| centres[i % 20].iter().map(|c| c + 0.35 * next()).collect()).collect()
}

fn id(slot: u64) -> DocId {
    DocId::parse(&format!("d{slot}"), 64).unwrap()
}

fn build(n: usize, params: HnswParams) -> (VectorIndex, Vec<Vec<f32>>) {
    let data = clustered(n, 32, 7);
    let mut index = VectorIndex::new(32, params).unwrap();
    index.insert(data.iter().enumerate().map(|(i, v)| (i as u64, v.clone())).collect()).unwrap();
    assert!(index.set_live((0..n as u64).map(|s| (s, id(s)))).is_empty());
    (index, data)
}

fn brute(data: &[Vec<f32>], q: &[f32], k: usize, keep: impl Fn(u64) -> bool) -> Vec<u64> {
    let mut qn = q.to_vec();
    normalize(&mut qn);
    let mut scored: Vec<(f32, u64)> = data
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i as u64))
        .map(|(i, v)| {
            let mut vn = v.clone();
            normalize(&mut vn);
            (dot(&qn, &vn), i as u64)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, s)| s).collect()
}

fn recall(got: &[VectorHit], truth: &[u64]) -> f64 {
    got.iter().filter(|h| truth.contains(&h.slot)).count() as f64 / truth.len() as f64
}

fn graph_only() -> HnswParams {
    HnswParams { exact_below: 0, ..HnswParams::default() }
}

#[test]
fn graph_search_finds_the_true_neighbours() {
    let (index, data) = build(3000, graph_only());
    let queries = clustered(50, 32, 99);
    let mut total = 0.0;
    for q in &queries {
        let res = index.search(q, &VectorSearch::new(10)).unwrap();
        assert!(matches!(res.strategy, SearchStrategy::Hnsw { .. }));
        assert_eq!(res.hits.len(), 10);
        assert!(res.hits.windows(2).all(|w| w[0].similarity >= w[1].similarity - 1e-6));
        assert_eq!(res.hits.iter().map(|h| h.rank).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
        total += recall(&res.hits, &brute(&data, q, 10, |_| true));
    }
    assert!(total / 50.0 >= 0.95, "recall@10 {}", total / 50.0);
}

#[test]
fn small_candidate_sets_are_scanned_exactly() {
    let (index, data) = build(600, HnswParams::default());
    let q = &clustered(1, 32, 5)[0];
    let res = index.search(q, &VectorSearch::new(10)).unwrap();
    assert_eq!(res.strategy, SearchStrategy::Exact { scanned: 600 });
    let got: Vec<u64> = res.hits.iter().map(|h| h.slot).collect();
    assert_eq!(got, brute(&data, q, 10, |_| true));
    assert_eq!(res.hits[0].id, id(got[0]));
}

#[test]
fn selective_filters_scan_exactly_and_loose_ones_keep_recall() {
    let (index, data) = build(3000, HnswParams { exact_below: 200, ..HnswParams::default() });
    let q = &clustered(3, 32, 11)[2];
    // 1 in 50 documents pass: 60 candidates, scanned exactly
    let rare: Vec<u64> = (0..3000).filter(|s| s % 50 == 0).collect();
    let res = index.search(q, &VectorSearch { only: Some(&rare), ..VectorSearch::new(10) }).unwrap();
    assert_eq!(res.strategy, SearchStrategy::Exact { scanned: 60 });
    assert_eq!(res.hits.iter().map(|h| h.slot).collect::<Vec<_>>(), brute(&data, q, 10, |s| s % 50 == 0));
    // 30 % pass: the graph, widened, and every hit passes the filter
    let loose: Vec<u64> = (0..3000).filter(|s| s % 10 < 3).collect();
    let mut total = 0.0;
    for q in clustered(20, 32, 12) {
        let res = index.search(&q, &VectorSearch { only: Some(&loose), ..VectorSearch::new(10) }).unwrap();
        assert_eq!(res.strategy, SearchStrategy::Hnsw { ef: 64 });
        assert!(res.hits.iter().all(|h| h.slot % 10 < 3));
        total += recall(&res.hits, &brute(&data, &q, 10, |s| s % 10 < 3));
    }
    assert!(total / 20.0 >= 0.95, "filtered recall@10 {}", total / 20.0);
    // fewer matches than k: all of them
    let three = [5u64, 17, 2999];
    let res = index.search(q, &VectorSearch { only: Some(&three), ..VectorSearch::new(10) }).unwrap();
    assert_eq!(res.hits.len(), 3);
}

#[test]
fn tombstones_are_never_returned_and_compaction_drops_them() {
    let (mut index, data) = build(2000, graph_only());
    // documents with odd slots were deleted or replaced
    index.set_live((0..2000u64).filter(|s| s % 2 == 0).map(|s| (s, id(s))));
    assert_eq!(index.tombstones(), 1000);
    assert!(index.needs_compaction());
    let q = &clustered(1, 32, 3)[0];
    let res = index.search(q, &VectorSearch::new(10)).unwrap();
    assert!(res.hits.iter().all(|h| h.slot % 2 == 0));
    assert!(recall(&res.hits, &brute(&data, q, 10, |s| s % 2 == 0)) >= 0.8);
    index.compact();
    assert_eq!((index.points(), index.len(), index.tombstones()), (1000, 1000, 0));
    let res = index.search(q, &VectorSearch::new(10)).unwrap();
    assert!(res.hits.iter().all(|h| h.slot % 2 == 0));
}

#[test]
fn saved_graphs_load_with_the_same_answers_and_bad_ones_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = build(1500, graph_only());
    assert!(matches!(VectorIndex::load(dir.path(), 32, graph_only()).unwrap(), LoadOutcome::Missing));
    let state = index.save(dir.path(), 42).unwrap();
    assert_eq!((state.generation, state.points, state.max_slot), (42, 1500, Some(1499)));
    let LoadOutcome::Loaded(mut loaded, got) = VectorIndex::load(dir.path(), 32, graph_only()).unwrap() else {
        panic!("expected a loaded graph")
    };
    assert_eq!(got, state);
    assert_eq!(loaded.points(), 1500);
    assert!(loaded.set_live((0..1500u64).map(|s| (s, id(s)))).is_empty());
    for q in clustered(5, 32, 8) {
        let a = index.search(&q, &VectorSearch::new(10)).unwrap();
        let b = loaded.search(&q, &VectorSearch::new(10)).unwrap();
        assert_eq!(a.hits, b.hits);
    }
    // a second save replaces the first folder
    loaded.save(dir.path(), 43).unwrap();
    let folders: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("g-"))
        .collect();
    assert_eq!(folders.len(), 1);
    // other dimensions or parameters: unusable, with the reason
    match VectorIndex::load(dir.path(), 64, graph_only()).unwrap() {
        LoadOutcome::Unusable { reason } => assert!(reason.contains("32 dimensions"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let other = HnswParams { m: 8, ..graph_only() };
    assert!(matches!(VectorIndex::load(dir.path(), 32, other).unwrap(), LoadOutcome::Unusable { .. }));
    // a damaged graph file: unusable, never a panic
    let graph_dir = folders[0].path();
    std::fs::write(graph_dir.join("graph.hnsw.graph"), b"not a graph").unwrap();
    assert!(matches!(VectorIndex::load(dir.path(), 32, graph_only()).unwrap(), LoadOutcome::Unusable { .. }));
}

#[test]
fn bad_vectors_and_queries_are_refused_with_what_was_wrong() {
    let mut index = VectorIndex::new(4, HnswParams::default()).unwrap();
    let err = index.insert(vec![(1, vec![1.0, 0.0])]).unwrap_err().to_string();
    assert!(err.contains("expected 4 dimensions, found 2"), "{err}");
    let err = index.insert(vec![(1, vec![f32::NAN, 0.0, 0.0, 1.0])]).unwrap_err().to_string();
    assert!(err.contains("NaN"), "{err}");
    let err = index.insert(vec![(1, vec![0.0; 4])]).unwrap_err().to_string();
    assert!(err.contains("all zeros"), "{err}");
    let mut dot_index = VectorIndex::new(4, HnswParams { metric: Metric::Dot, ..HnswParams::default() }).unwrap();
    let err = dot_index.insert(vec![(1, vec![2.0, 0.0, 0.0, 0.0])]).unwrap_err().to_string();
    assert!(err.contains("norm 2.0000") && err.contains("cosine"), "{err}");
    dot_index.insert(vec![(1, vec![1.0, 0.0, 0.0, 0.0])]).unwrap();
    let err = index.search(&[1.0, 2.0], &VectorSearch::new(3)).unwrap_err().to_string();
    assert!(err.contains("expected 4 dimensions, found 2"), "{err}");
    assert!(VectorIndex::new(4, HnswParams { m: 300, ..HnswParams::default() }).is_err());
    // an empty index answers with nothing
    assert!(index.search(&[1.0, 0.0, 0.0, 0.0], &VectorSearch::new(3)).unwrap().hits.is_empty());
}

#[test]
fn small_inserts_update_the_search_copy_without_rebuilding_it() {
    let data = clustered(5000, 32, 11);
    let mut index = VectorIndex::new(32, graph_only()).unwrap();
    index.insert(data[..3000].iter().enumerate().map(|(i, v)| (i as u64, v.clone())).collect()).unwrap();
    // then writes of 1 to 64 documents at a time, the way a server's write tasks come
    let mut next = 3000;
    let mut size = 1;
    while next < data.len() {
        let end = (next + size).min(data.len());
        index.insert((next..end).map(|i| (i as u64, data[i].clone())).collect()).unwrap();
        next = end;
        size = size % 64 + 7;
    }
    assert!(index.set_live((0..5000u64).map(|s| (s, id(s)))).is_empty());
    let fresh = crate::flat::FlatGraph::from_graph(&index.graph, 32, 2 * index.params.m);
    let (differing, same_vectors) = index.flat.differences(&fresh);
    assert!(same_vectors);
    assert_eq!(index.flat.top_level(), fresh.top_level());
    // only the rare missed reverse link of `FlatGraph::append` may differ
    assert!(differing.len() <= 25, "{} of 5000 rows have other links than a fresh copy", differing.len());
    // searches over the updated copy find what searches over a fresh copy of the same graph find
    let queries = clustered(100, 32, 98);
    let recall_of = |index: &VectorIndex| {
        let found: f64 = queries
            .iter()
            .map(|q| recall(&index.search(q, &VectorSearch::new(10)).unwrap().hits, &brute(&data, q, 10, |_| true)))
            .sum();
        found / queries.len() as f64
    };
    let updated = recall_of(&index);
    index.rebuild_search_copy();
    let fresh = recall_of(&index);
    assert!(fresh >= 0.9 && updated >= fresh - 0.01, "recall@10 {updated} updated, {fresh} fresh");
}

#[test]
fn updating_the_live_set_equals_declaring_it_whole() {
    let (mut index, data) = build(2000, graph_only());
    // a write: odd slots replaced by new versions in slots 2000.., and slot 4 deleted
    let new: Vec<(u64, Vec<f32>)> = (2000..2010u64).map(|s| (s, data[(s - 2000) as usize].clone())).collect();
    index.insert(new).unwrap();
    let slots: Vec<u64> = (0..2010u64).filter(|s| (*s >= 2000 || s % 2 == 0) && *s != 4).collect();
    let not_live: Vec<(u64, DocId)> = slots.iter().filter(|s| !index.is_live(**s)).map(|s| (*s, id(*s))).collect();
    assert_eq!(not_live.iter().map(|(s, _)| *s).collect::<Vec<_>>(), (2000..2010).collect::<Vec<_>>());
    assert!(index.update_live(&slots, not_live).is_empty());
    let (mut whole, _) = build(2000, graph_only());
    whole.insert((2000..2010u64).map(|s| (s, data[(s - 2000) as usize].clone())).collect()).unwrap();
    assert!(whole.set_live(slots.iter().map(|s| (*s, id(*s)))).is_empty());
    assert_eq!((index.len(), index.tombstones()), (whole.len(), whole.tombstones()));
    assert!((0..2010u64).all(|s| index.is_live(s) == whole.is_live(s)));
    let q = &clustered(1, 32, 5)[0];
    // (exact: the two graphs were built apart, in parallel, so their walks may differ)
    let exact = VectorSearch { exact: true, ..VectorSearch::new(20) };
    let (a, b) = (index.search(q, &exact).unwrap(), whole.search(q, &exact).unwrap());
    let ids = |r: &VectorResults| r.hits.iter().map(|h| h.id.as_str().to_owned()).collect::<Vec<_>>();
    assert!(a.hits.iter().all(|h| slots.contains(&h.slot)));
    assert_eq!(ids(&a).len(), 20);
    assert_eq!(ids(&a), ids(&b));
    // a slot that is live but not in the graph is reported missing
    assert_eq!(index.update_live(&[0, 2, 5000], [(5000, id(5000))]), vec![5000]);
}
