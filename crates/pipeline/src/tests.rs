//! Engine tests with small deterministic stand-in models: a bag-of-words embedder that knows a few synonyms
//! (so dense recall finds what BM25 cannot) and rerankers that are good, slow, failing or panicking.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sieve_core::{Document, Limits};
use sieve_ingest::BatchSink;
use sieve_models::standin::{Behaviour, WordsEmbedder, WordsReranker};
use sieve_text::{IndexSettings, TextIndex, WriterOptions};
use sieve_vector::{HnswParams, SearchStrategy};

use crate::*;

const DIM: usize = 32;
const SLOW: Duration = Duration::from_millis(1500);

struct Models {
    embed_calls: Arc<AtomicUsize>,
    rerank_calls: Arc<AtomicUsize>,
}

fn options(behaviour: Option<Behaviour>, cache: Arc<dyn ScoreCache>) -> (EngineOptions, Models) {
    let embedder = WordsEmbedder::new(DIM);
    let embed_calls = embedder.calls.clone();
    let mut rerank_calls = Arc::new(AtomicUsize::new(0));
    // generous: only the slow reranker may time out, however loaded the machine running the tests is
    let rerank_timeout = match behaviour {
        Some(Behaviour::Slow(_)) => Duration::from_millis(150),
        _ => Duration::from_secs(30),
    };
    let reranker = behaviour.map(|b| {
        let r = WordsReranker::new(b);
        rerank_calls = r.calls.clone();
        RerankerHandle::spawn("fake-reranker", Box::new(r), WorkerOptions::new(RERANK_BATCH_TOKENS))
    });
    let opts = EngineOptions {
        embedder: Some(EmbedderHandle::spawn("words", Box::new(embedder), WorkerOptions::new(EMBED_BATCH_TOKENS))),
        reranker,
        cache,
        rerank_timeout,
        ..EngineOptions::default()
    };
    (opts, Models { embed_calls, rerank_calls })
}

fn doc(v: serde_json::Value) -> Document {
    Document::from_json(v, &Limits::default()).unwrap()
}

fn corpus() -> Vec<Document> {
    [
        json!({"id": "p1", "title": "Lenovo ThinkPad laptop 14 inch", "body": "business laptop", "brand": "Lenovo", "price": 900.0}),
        json!({"id": "p2", "title": "Dell XPS 13 notebook", "body": "ultrabook with reviews from owners", "brand": "Dell", "price": 1200.0}),
        json!({"id": "p3", "title": "Sony WH-1000XM4 headphones", "body": "noise cancelling", "brand": "Sony", "price": 300.0}),
        json!({"id": "p4", "title": "Bose QuietComfort earphones", "body": "wireless", "brand": "Bose", "price": 250.0}),
        json!({"id": "p5", "title": "Laptop sleeve 13 inch", "body": "neoprene bag for a laptop", "brand": "Generic", "price": 20.0}),
        json!({"id": "p6", "title": "USB-C charger", "body": "65W power adapter for laptop and phone", "brand": "Anker", "price": 40.0}),
    ]
    .into_iter()
    .map(doc)
    .collect()
}

fn wopts() -> WriterOptions {
    WriterOptions { threads: 1, memory_bytes: 20 << 20 }
}

/// Creates an index in `dir` with the corpus ingested through the engine (embeddings included).
fn build(dir: &Path, behaviour: Option<Behaviour>) -> (Engine, Models) {
    build_with(dir, behaviour, Arc::new(LruScoreCache::new(100)))
}

fn build_with(dir: &Path, behaviour: Option<Behaviour>, cache: Arc<dyn ScoreCache>) -> (Engine, Models) {
    let text = TextIndex::create(dir, IndexSettings::default()).unwrap();
    let (opts, models) = options(behaviour, cache);
    let mut engine = Engine::from_parts(Some(dir.to_path_buf()), text, None, opts).unwrap();
    engine.ensure_vector_settings("words", HnswParams::default()).unwrap();
    let mut sink = engine.sink(wopts()).unwrap();
    sink.upsert(&corpus()).unwrap();
    sink.commit(Default::default()).unwrap();
    sink.finish().unwrap();
    let report = engine.sync_vectors().unwrap();
    assert_eq!((report.inserted, report.live, report.saved), (6, 6, true));
    (engine, models)
}

fn ids(res: &SearchResponse) -> Vec<&str> {
    res.hits.iter().map(|h| h.id.as_str()).collect()
}

#[test]
fn facets_count_the_final_ranked_set_and_sort_and_offset_page_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = build(dir.path(), Some(Behaviour::Good));
    let mut req = SearchRequest::new("laptop");
    req.k = 2;
    req.facets = vec![FacetField::Brand, FacetField::Price];
    req.rerank = Some(RerankRequest::default());
    let res = engine.search(&req).unwrap();
    assert_eq!(res.hits.len(), 2);
    assert!(res.reranked && !res.degraded, "{:?}", res.reasons);
    // counted over every ranked candidate, not only the page
    let ranked = res.total;
    assert!(ranked > 2, "{ranked}");
    let facets = res.facets.as_ref().unwrap();
    assert_eq!(facets["brand"].iter().map(|c| c.count).sum::<usize>(), ranked);
    assert!(res.timings.iter().any(|t| t.stage == "facets"));

    // the second page continues the first, with ranks that continue too
    let mut all = req.clone();
    all.k = ranked;
    all.facets.clear();
    let everything = ids(&engine.search(&all).unwrap()).into_iter().map(String::from).collect::<Vec<_>>();
    let mut page2 = req.clone();
    page2.offset = 2;
    let res2 = engine.search(&page2).unwrap();
    assert_eq!(ids(&res2), everything[2..4].iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(res2.hits[0].rank, 3);

    // sorting by price orders every match (not the candidate window), cheapest first; it does not rerank
    let mut by_price = all.clone();
    by_price.sort = Some(SortBy { field: SortField::Price, order: SortOrder::Asc });
    let res = engine.search(&by_price).unwrap();
    let prices: Vec<f64> = res.hits.iter().map(|h| h.document.as_ref().unwrap().price.unwrap()).collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");
    assert_eq!(res.hits.len(), res.total);
    assert!(!res.reranked && res.notes.iter().any(|n| n.contains("not reranked: the results are sorted by price:asc")));
    for id in ["p1", "p5", "p6"] {
        assert!(ids(&res).contains(&id), "every BM25 match of `laptop` is in the sorted set: {:?}", ids(&res));
    }

    // a page that reaches past rank 1000 is cut there and says so (the request is not refused)
    let mut too_deep = req.clone();
    too_deep.offset = 999;
    let res = engine.search(&too_deep).unwrap();
    assert!(res.hits.is_empty(), "this small index has no rank 1000");
    assert!(res.notes.iter().any(|n| n.contains("results end at rank 1000")), "{:?}", res.notes);
    let mut deep_ok = req.clone();
    deep_ok.offset = 1000 - deep_ok.k;
    assert!(!engine.search(&deep_ok).unwrap().notes.iter().any(|n| n.contains("results end")));
}

#[test]
fn a_blank_query_browses_the_catalog_without_running_a_leg() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, models) = build(dir.path(), Some(Behaviour::Good));
    let before = models.embed_calls.load(Ordering::SeqCst);
    let mut req = SearchRequest::in_mode("  ", Mode::HybridRerank);
    req.k = 4;
    req.facets = vec![FacetField::Brand];
    let res = engine.search(&req).unwrap();
    assert_eq!(models.embed_calls.load(Ordering::SeqCst), before, "no query embedding for a blank query");
    assert_eq!(models.rerank_calls.load(Ordering::SeqCst), 0, "nothing to rerank");
    assert_eq!((res.total, ids(&res)), (6, vec!["p1", "p2", "p3", "p4"]), "every document, in id order");
    assert_eq!(res.facets.as_ref().unwrap()["brand"].iter().map(|c| c.count).sum::<usize>(), 6);
    assert!(res.hits.iter().all(|h| h.score == 0.0 && h.document.is_some()));

    // a filter and a sort, page by page: the pages join up with no gap and no repeat
    req.filters = vec!["price<1000".parse().unwrap()];
    req.sort = Some("price:desc".parse().unwrap());
    req.k = 2;
    let mut seen = Vec::new();
    for offset in [0, 2, 4] {
        req.offset = offset;
        let res = engine.search(&req).unwrap();
        assert_eq!(res.total, 5);
        seen.extend(ids(&res).into_iter().map(String::from));
    }
    assert_eq!(seen, ["p1", "p3", "p4", "p6", "p5"]);
}

#[test]
fn a_sorted_search_takes_in_the_dense_matches_above_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = build(dir.path(), None);
    // `notebook` is p2's word; the stand-in embedder maps `laptop` near it (cosine 0.35 in its bag of eight
    // words), BM25 does not match it
    let mut req = SearchRequest::new("laptop");
    req.k = 10;
    req.sort = Some("price:asc".parse().unwrap());
    let res = engine.search(&req).unwrap();
    assert!(!ids(&res).contains(&"p2"), "below the default threshold, 0.5: {:?}", ids(&res));
    drop(engine);
    let settings = SearchSettings { dense_threshold: 0.3, ..SearchSettings::default() };
    settings.save(dir.path()).unwrap();
    let engine = Engine::open(dir.path(), options(None, Arc::new(LruScoreCache::new(10))).0).unwrap();
    assert_eq!(engine.search_settings(), &settings);
    let res = engine.search(&req).unwrap();
    assert!(ids(&res).contains(&"p2"), "the synonym match joins the sorted set: {:?}", ids(&res));
    let mut bm25 = req.clone();
    bm25.legs = Legs { bm25: true, dense: false };
    let res = engine.search(&bm25).unwrap();
    assert!(!ids(&res).contains(&"p2"), "{:?}", ids(&res));
    assert_eq!(res.total, 3, "p1, p5, p6 say laptop");
}

#[test]
fn hybrid_recall_fuses_both_legs_and_explains_every_hit() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = build(dir.path(), None);
    // BM25 alone cannot find "notebook" documents for "laptop"? It can't find p2 (which says notebook).
    let mut bm25_only = SearchRequest::new("laptop");
    bm25_only.legs = Legs { bm25: true, dense: false };
    let bm25 = engine.search(&bm25_only).unwrap();
    assert!(!ids(&bm25).contains(&"p2"), "{:?}", ids(&bm25));
    assert!(bm25.hits.iter().all(|h| h.scores.dense.is_none() && h.scores.fused.is_none()));

    let hybrid = engine.search(&SearchRequest::new("laptop")).unwrap();
    assert!(!hybrid.degraded, "{:?}", hybrid.reasons);
    assert!(ids(&hybrid).contains(&"p2"), "dense recall adds the synonym match: {:?}", ids(&hybrid));
    let p1 = hybrid.hits.iter().find(|h| h.id.as_str() == "p1").unwrap();
    let (b, d, f) =
        (p1.scores.bm25.as_ref().unwrap(), p1.scores.dense.as_ref().unwrap(), p1.scores.fused.as_ref().unwrap());
    // the fused score is exactly the RRF formula over the two ranks
    let expected = 1.0 / (60.0 + b.rank as f32) + 1.0 / (60.0 + d.rank as f32);
    assert!((f.score - expected).abs() < 1e-6 && f.method == "rrf");
    assert_eq!(p1.score, f.score);
    assert!(hybrid.hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(hybrid.hits.iter().all(|h| h.document.is_some()));
    let stages: Vec<&str> = hybrid.timings.iter().map(|t| t.stage.as_str()).collect();
    for s in ["bm25", "embed", "ann", "fuse", "total"] {
        assert!(stages.contains(&s), "{stages:?}");
    }
    assert!(matches!(hybrid.dense.as_ref().unwrap().strategy, SearchStrategy::Exact { scanned: 6 }));

    // dense only, with a filter applied to the dense leg too
    let mut dense = SearchRequest::new("laptop");
    dense.legs = Legs { bm25: false, dense: true };
    dense.filters = vec!["price>=500".parse().unwrap()];
    let res = engine.search(&dense).unwrap();
    assert_eq!(ids(&res).iter().copied().collect::<std::collections::BTreeSet<_>>(), ["p1", "p2"].into());
    assert!(res.hits[0].scores.dense.as_ref().unwrap().similarity > 0.0);

    // explain attaches the timings to each hit; linear fusion is available per request
    let mut linear = SearchRequest::new("laptop");
    linear.fusion = Some(Fusion::Linear { bm25_weight: 0.5, dense_weight: 0.5 });
    linear.explain = true;
    let res = engine.search(&linear).unwrap();
    assert_eq!(res.hits[0].scores.fused.as_ref().unwrap().method, "linear");
    assert!(res.hits[0].scores.timings.as_ref().is_some_and(|t| !t.is_empty()));
    assert!(res.hits[0].score <= 1.0 + 1e-6);
}

#[test]
fn reranking_orders_the_window_by_probability_and_caches_scores() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, models) = build(dir.path(), Some(Behaviour::Good));
    let mut req = SearchRequest::new("laptop");
    req.rerank = Some(RerankRequest::default());
    let res = engine.search(&req).unwrap();
    assert!(!res.degraded, "{:?}", res.reasons);
    // p2 mentions reviews: the (fake) cross-encoder puts it first although fusion did not
    assert_eq!(res.hits[0].id.as_str(), "p2");
    let top = &res.hits[0].scores.rerank.as_ref().unwrap();
    assert_eq!((top.rank, top.cached), (1, false));
    assert_eq!(res.hits[0].score, top.score, "the final score is the reranker's probability");
    assert!(res.hits.iter().all(|h| (0.0..=1.0).contains(&h.score)));
    assert!(res.hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert_eq!(res.cache.as_ref().unwrap().misses, res.hits.len());
    assert_eq!(models.rerank_calls.load(Ordering::SeqCst), 1);

    // the same request again: every score from the cache, the model untouched, same answer
    let again = engine.search(&req).unwrap();
    assert_eq!(ids(&again), ids(&res));
    assert_eq!(again.cache.as_ref().unwrap().hits, res.hits.len());
    assert!(again.hits.iter().all(|h| h.scores.rerank.as_ref().unwrap().cached));
    assert_eq!(models.rerank_calls.load(Ordering::SeqCst), 1);
    assert_eq!(again.hits[0].score, res.hits[0].score);
}

fn assert_degraded_to_fused(engine: &Engine, expect_reason: &str) {
    let mut plain = SearchRequest::new("laptop");
    let fused = engine.search(&plain).unwrap();
    plain.rerank = Some(RerankRequest::default());
    let res = engine.search(&plain).unwrap();
    assert!(res.degraded && !res.reranked);
    assert!(res.reasons.iter().any(|r| r.contains(expect_reason)), "{:?}", res.reasons);
    assert_eq!(ids(&res), ids(&fused), "a degraded response is the fused order");
    assert!(res.hits.iter().all(|h| h.scores.rerank.is_none()));
    assert_eq!(res.hits[0].score, fused.hits[0].score);
}

#[test]
fn a_slow_failing_panicking_or_missing_reranker_degrades_never_errors() {
    for (behaviour, reason) in [
        (Some(Behaviour::Slow(SLOW)), "did not answer within 150 ms"),
        (Some(Behaviour::Fail), "ran out of memory"),
        (Some(Behaviour::Panic), "panicked: CUDA error"),
        (None, "no reranker is loaded"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = build(dir.path(), behaviour);
        assert_degraded_to_fused(&engine, reason);
        // and the engine keeps answering afterwards
        assert!(!engine.search(&SearchRequest::new("headphones")).unwrap().degraded);
    }
}

#[test]
fn a_dead_cache_costs_nothing_but_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // nothing listens there
    let cache: Arc<dyn ScoreCache> = Arc::new(RedisScoreCache::new(&addr.to_string(), Duration::from_millis(100), 60));
    let (engine, models) = build_with(dir.path(), Some(Behaviour::Good), cache);
    let mut req = SearchRequest::new("laptop");
    req.rerank = Some(RerankRequest::default());
    let res = engine.search(&req).unwrap();
    assert!(!res.degraded, "{:?}", res.reasons);
    assert_eq!(res.hits[0].id.as_str(), "p2");
    assert!(res.cache.as_ref().unwrap().error.as_ref().unwrap().contains("unavailable"));
    assert_eq!(models.rerank_calls.load(Ordering::SeqCst), 1);
}

#[test]
fn the_graph_follows_the_bm25_commit_across_reopen_deletes_and_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, models) = build(dir.path(), None);
    assert_eq!(models.embed_calls.load(Ordering::SeqCst), 1);
    drop(engine);

    // Reopen: the saved graph is current; nothing is inserted, nothing re-embedded.
    let (opts, models) = options(None, Arc::new(LruScoreCache::new(10)));
    let engine = Engine::open(dir.path(), opts).unwrap();
    assert_eq!(engine.vector_count(), 6);
    let report = engine.sync_vectors().unwrap();
    assert_eq!((report.inserted, report.saved, report.rebuilt), (0, false, false));
    assert_eq!(models.embed_calls.load(Ordering::SeqCst), 0);

    // Delete p2 and replace p1, committed but the graph not synced: a "crash" before the graph was saved.
    {
        let mut sink = engine.sink(wopts()).unwrap();
        sink.upsert(&[doc(json!({"id": "p1", "title": "Lenovo ThinkPad laptop 14 inch, refurbished"}))]).unwrap();
        sink.delete(&sieve_core::DocId::parse("p2", 64).unwrap());
        sink.commit(Default::default()).unwrap();
        sink.finish().unwrap();
    }
    drop(engine);
    let (opts, models) = options(None, Arc::new(LruScoreCache::new(10)));
    let engine = Engine::open(dir.path(), opts).unwrap();
    assert_eq!(engine.vector_count(), 5, "p2 tombstoned, p1's new version live");
    let mut dense = SearchRequest::new("notebook");
    dense.legs = Legs { bm25: false, dense: true };
    let res = engine.search(&dense).unwrap();
    assert!(!ids(&res).contains(&"p2"));
    assert_eq!(res.hits.iter().filter(|h| h.id.as_str() == "p1").count(), 1);
    assert_eq!(models.embed_calls.load(Ordering::SeqCst), 1, "only the query was embedded");
    drop(engine);

    // A damaged graph is rebuilt from the stored vectors, with the same answers.
    let vdir = dir.path().join("vectors");
    for entry in std::fs::read_dir(&vdir).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("g-") {
            std::fs::write(entry.path().join("graph.hnsw.data"), b"garbage").unwrap();
        }
    }
    let (opts, models) = options(None, Arc::new(LruScoreCache::new(10)));
    let engine = Engine::open(dir.path(), opts).unwrap();
    assert_eq!(engine.vector_count(), 5);
    assert_eq!(ids(&engine.search(&dense).unwrap()), ids(&res));
    assert_eq!(models.embed_calls.load(Ordering::SeqCst), 1);
}

/// The generation `vectors/state.json` says the graph on disk reflects.
fn saved_generation(dir: &Path) -> u64 {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("vectors/state.json")).unwrap()).unwrap();
    state["generation"].as_u64().unwrap()
}

#[test]
fn an_interval_save_policy_holds_saves_back_until_a_flush_and_a_crash_in_between_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = build(dir.path(), None);
    drop(engine);
    let upsert = |engine: &Engine, id: &str, title: &str| {
        let mut sink = engine.sink(wopts()).unwrap();
        sink.upsert(&[doc(json!({"id": id, "title": title}))]).unwrap();
        sink.commit(Default::default()).unwrap();
        sink.finish().unwrap();
    };
    let (mut opts, _) = options(None, Arc::new(LruScoreCache::new(10)));
    opts.vector_save = SavePolicy::Interval(Duration::from_secs(3600));
    let engine = Engine::open(dir.path(), opts).unwrap();
    let first = saved_generation(dir.path());

    // the first change after opening is saved at once; the next ones wait for the interval
    upsert(&engine, "p7", "laptop stand aluminium");
    let report = engine.sync_vectors().unwrap();
    assert_eq!((report.inserted, report.live, report.saved), (1, 7, true));
    let saved = saved_generation(dir.path());
    assert!(saved > first);
    upsert(&engine, "p8", "laptop cooling pad");
    let report = engine.sync_vectors().unwrap();
    assert_eq!((report.inserted, report.live, report.saved), (1, 8, false));
    assert_eq!(saved_generation(dir.path()), saved, "held back");
    // ... but searchable at once
    let mut dense = SearchRequest::new("cooling pad");
    dense.legs = Legs { bm25: false, dense: true };
    assert_eq!(engine.search(&dense).unwrap().hits[0].id.as_str(), "p8");

    // a crash now: the next start catches the graph up from the stored vectors, without the model
    drop(engine);
    let (mut opts, models) = options(None, Arc::new(LruScoreCache::new(10)));
    opts.vector_save = SavePolicy::Interval(Duration::from_secs(3600));
    let engine = Engine::open(dir.path(), opts).unwrap();
    assert_eq!(engine.vector_count(), 8);
    assert_eq!(models.embed_calls.load(Ordering::SeqCst), 0);
    let caught_up = saved_generation(dir.path());
    assert!(caught_up > saved, "opening saved the caught-up graph");

    // a delete changes no point but the live set: held back too, then flushed
    {
        let mut sink = engine.sink(wopts()).unwrap();
        sink.delete(&sieve_core::DocId::parse("p7", 64).unwrap());
        sink.commit(Default::default()).unwrap();
        sink.finish().unwrap();
    }
    let report = engine.sync_vectors().unwrap();
    assert_eq!((report.inserted, report.live, report.saved), (0, 7, false));
    assert_eq!(saved_generation(dir.path()), caught_up);
    assert!(engine.flush_vectors().unwrap());
    assert_eq!(saved_generation(dir.path()), report.generation);
    assert!(!engine.flush_vectors().unwrap(), "nothing left to save");
}

#[test]
fn bad_requests_name_the_field_and_dense_requests_without_vectors_are_refused() {
    let index = TextIndex::in_memory(IndexSettings::default()).unwrap();
    let engine = Engine::from_parts(None, index, None, EngineOptions::default()).unwrap();
    let mut req = SearchRequest::new("x");
    req.k = 0;
    let err = engine.search(&req).unwrap_err().to_string();
    assert!(err.contains("`k` expected 1..=1000, found 0"), "{err}");
    let mut req = SearchRequest::new("x");
    req.fusion = Some(Fusion::Rrf { k: -1.0, bm25_weight: 1.0, dense_weight: 1.0 });
    assert!(engine.search(&req).unwrap_err().to_string().contains("fusion.k"));
    let mut req = SearchRequest::new("x");
    req.legs = Legs { bm25: false, dense: true };
    let err = engine.search(&req).unwrap_err().to_string();
    assert!(err.contains("no embeddings"), "{err}");
    // hybrid on an index without vectors runs BM25 and says why the dense leg did not run; nothing failed
    let res = engine.search(&SearchRequest::new("x")).unwrap();
    assert!(!res.degraded && res.notes[0].contains("dense leg not run"), "{:?}", res.notes);
}

/// A real `redis-server` on a free loopback port, killed on drop.
struct RedisServer {
    child: std::process::Child,
    port: u16,
}

impl RedisServer {
    fn start(port: Option<u16>) -> Option<RedisServer> {
        let port = port.unwrap_or_else(|| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        });
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if std::env::var_os("SIEVE_SKIP_REDIS").is_some() => {
                eprintln!("redis-server not runnable ({e}); skipped because SIEVE_SKIP_REDIS is set");
                return None;
            }
            Err(e) => panic!(
                "redis-server not runnable ({e}): install it (apt-get install redis-server) or set SIEVE_SKIP_REDIS=1"
            ),
        };
        let server = RedisServer { child, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn redis_shares_scores_between_engines_and_a_redis_dying_mid_run_degrades_nothing() {
    let Some(server) = RedisServer::start(None) else { return };
    let port = server.port;
    let redis = || -> Arc<dyn ScoreCache> {
        Arc::new(
            RedisScoreCache::new(&format!("redis://127.0.0.1:{port}"), Duration::from_millis(300), 60)
                .with_retry_after(Duration::from_millis(50)),
        )
    };
    // the wire format round-trips
    let c = redis();
    let v = CachedScore { score: 0.25, raw: -1.0986123, tokens: 130, truncated: true };
    c.put_many(&[(CacheKey(7), v)]).unwrap();
    assert_eq!(c.get_many(&[CacheKey(7), CacheKey(8)]).unwrap(), vec![Some(v), None]);

    let dir = tempfile::tempdir().unwrap();
    let (engine, first_models) = build_with(dir.path(), Some(Behaviour::Good), redis());
    let mut req = SearchRequest::new("laptop");
    req.rerank = Some(RerankRequest::default());
    let first = engine.search(&req).unwrap();
    assert_eq!(first.cache.as_ref().unwrap().hits, 0);
    assert_eq!(first_models.rerank_calls.load(Ordering::SeqCst), 1);
    drop(engine);

    // A second engine (another process, in production) finds every score in Redis.
    let (opts, models) = options(Some(Behaviour::Good), redis());
    let engine = Engine::open(dir.path(), opts).unwrap();
    let second = engine.search(&req).unwrap();
    assert_eq!(second.cache.as_ref().unwrap().hits, second.hits.len());
    assert_eq!(models.rerank_calls.load(Ordering::SeqCst), 0);
    assert_eq!(ids(&second), ids(&first));

    // Redis dies mid-run: the next request is still reranked, by the model, and says the cache failed.
    drop(server);
    let mut other = req.clone();
    other.query = "laptop bag".into();
    let res = engine.search(&other).unwrap();
    assert!(!res.degraded, "{:?}", res.reasons);
    assert!(res.hits[0].scores.rerank.is_some());
    assert!(res.cache.as_ref().unwrap().error.is_some());
    assert_eq!(models.rerank_calls.load(Ordering::SeqCst), 1);

    // Redis comes back on the same port: the engine reconnects by itself.
    // (`start` returns once the port accepts connections; the cache retries its connection 50 ms after a
    // failure, so searches until one reaches Redis, with a generous deadline for a loaded machine)
    let _server = RedisServer::start(Some(port)).unwrap();
    let mut back = req.clone();
    back.query = "usb charger".into();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while engine.search(&back).unwrap().cache.as_ref().unwrap().error.is_some() {
        assert!(std::time::Instant::now() < deadline, "the engine did not reconnect to Redis");
        std::thread::sleep(Duration::from_millis(20));
    }
    let res = engine.search(&back).unwrap();
    assert!(res.cache.as_ref().unwrap().error.is_none(), "{:?}", res.cache);
    assert_eq!(res.cache.as_ref().unwrap().misses, 0);
}

/// A dense side may be added to an empty index, never to one whose documents were indexed without embeddings:
/// they would stay out of the graph for good, and dense search would miss them without a word.
#[test]
fn a_dense_side_is_refused_to_an_index_that_holds_documents_without_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let text = TextIndex::create(dir.path(), IndexSettings::default()).unwrap();
    let plain = Engine::from_parts(Some(dir.path().to_path_buf()), text, None, EngineOptions::default()).unwrap();
    let mut sink = plain.sink(wopts()).unwrap();
    sink.upsert(&corpus()).unwrap();
    sink.commit(Default::default()).unwrap();
    sink.finish().unwrap();
    drop(plain);

    let text = TextIndex::open(dir.path()).unwrap();
    let (opts, _) = options(None, Arc::new(LruScoreCache::new(10)));
    let mut engine = Engine::from_parts(Some(dir.path().to_path_buf()), text, None, opts).unwrap();
    let err = engine.ensure_vector_settings("words", HnswParams::default()).unwrap_err().to_string();
    assert!(err.contains("holds 6 documents without embeddings") && err.contains("words"), "{err}");
    assert!(engine.settings().is_none(), "nothing changed");
    assert!(VectorSettings::load(dir.path()).unwrap().is_none(), "nothing written");

    // an empty index takes one
    let empty = tempfile::tempdir().unwrap();
    let text = TextIndex::create(empty.path(), IndexSettings::default()).unwrap();
    let (opts, _) = options(None, Arc::new(LruScoreCache::new(10)));
    let mut engine = Engine::from_parts(Some(empty.path().to_path_buf()), text, None, opts).unwrap();
    assert_eq!(engine.ensure_vector_settings("words", HnswParams::default()).unwrap().dim, DIM);
}

/// Exact codes first: a query with the code of p3 (`WH-1000XM4`, typed as `wh1000xm4`) puts p3 first in
/// every mode, though the rest of the query is about laptops and the reranker favours reviews.
#[test]
fn a_product_code_puts_its_document_first_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = build(dir.path(), Some(Behaviour::Good));
    for (legs, rerank) in [((true, false), false), ((false, true), false), ((true, true), false), ((true, true), true)]
    {
        let mut req = SearchRequest::new("laptop notebook reviews wh1000xm4");
        req.legs = Legs { bm25: legs.0, dense: legs.1 };
        if rerank {
            req.rerank = Some(RerankRequest::default());
        }
        let res = engine.search(&req).unwrap();
        assert_eq!(res.hits[0].id.as_str(), "p3", "{legs:?} rerank {rerank}: {:?}", ids(&res));
        assert_eq!(res.hits[0].scores.exact_codes.as_deref(), Some(&["wh1000xm4".to_owned()][..]));
        assert!(res.hits[1..].iter().all(|h| h.scores.exact_codes.is_none()));
    }
    // a code under a filter that excludes its document pins nothing
    let mut req = SearchRequest::new("wh1000xm4 laptop");
    req.filters = vec!["price<100".parse().unwrap()];
    assert!(engine.search(&req).unwrap().hits.iter().all(|h| h.id.as_str() != "p3"));
}

/// The pinning rule itself: carriers first, more codes before fewer, every other order kept.
#[test]
fn pin_codes_moves_carriers_first_and_keeps_the_rest_in_order() {
    use crate::stages::fuse::pin_codes;
    use crate::stages::Candidate;
    let id = |s: &str| sieve_core::DocId::parse(s, 64).unwrap();
    let mut c: Vec<Candidate> = ["a", "b", "c", "d"].iter().map(|s| Candidate::new(id(s))).collect();
    let carrier = |d: &str, codes: &[&str], weight: f32| sieve_text::CodeCarrier {
        id: id(d),
        codes: codes.iter().map(|c| (*c).to_owned()).collect(),
        weight,
    };
    // x1 is carried by three documents (1/3 each), y2 by c alone (1)
    let carriers = vec![
        carrier("c", &["x1", "y2"], 1.0 + 1.0 / 3.0),
        carrier("e", &["x1"], 1.0 / 3.0),
        carrier("b", &["x1"], 1.0 / 3.0),
    ];
    pin_codes(&mut c, carriers);
    let order: Vec<&str> = c.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(order, ["c", "b", "e", "a", "d"], "heaviest first, then the order before (b before the added e)");
    assert_eq!(c[0].scores.exact_codes.as_deref(), Some(&["x1".to_owned(), "y2".to_owned()][..]));
}

/// An English-only embedder does not take part in a hybrid search in Chinese: the dense leg is not run and a
/// note says why (a decision, so the answer is not `degraded`); an English query still runs both legs.
#[test]
fn a_query_the_embedder_does_not_cover_skips_the_dense_leg_in_hybrid() {
    let dir = tempfile::tempdir().unwrap();
    let text = TextIndex::create(dir.path(), IndexSettings::default()).unwrap();
    let embedder = WordsEmbedder::new(DIM).with_languages(&["en"]);
    let opts = EngineOptions {
        embedder: Some(EmbedderHandle::spawn("words-en", Box::new(embedder), WorkerOptions::new(EMBED_BATCH_TOKENS))),
        ..EngineOptions::default()
    };
    let mut engine = Engine::from_parts(Some(dir.path().to_path_buf()), text, None, opts).unwrap();
    engine.ensure_vector_settings("words-en", HnswParams::default()).unwrap();
    let mut sink = engine.sink(wopts()).unwrap();
    let mut docs = corpus();
    docs.push(doc(json!({"id": "z1", "title": "联想笔记本电脑", "body": "轻薄 商务"})));
    sink.upsert(&docs).unwrap();
    sink.commit(Default::default()).unwrap();
    sink.finish().unwrap();
    engine.sync_vectors().unwrap();
    let zh = engine.search(&SearchRequest::new("笔记本电脑")).unwrap();
    assert_eq!(ids(&zh), ["z1"]);
    assert!(zh.dense.is_none(), "the dense leg did not run");
    assert!(!zh.degraded, "{:?}", zh.reasons);
    assert!(
        zh.notes.iter().any(|r| r == "dense leg not run: the embedding model covers en, and the query is zh"),
        "{:?}",
        zh.notes
    );
    let en = engine.search(&SearchRequest::new("laptop")).unwrap();
    assert!(en.dense.is_some() && en.reasons.is_empty(), "{:?}", en.reasons);
    // asked for explicitly, dense-only still runs
    let mut dense = SearchRequest::new("笔记本电脑");
    dense.legs = Legs { bm25: false, dense: true };
    assert!(engine.search(&dense).unwrap().dense.is_some());
}

/// A dense-only hit's snippet: the sentence the embedder puts closest to the query, within the page's budget.
#[test]
fn the_best_sentence_is_the_embedders_closest_and_the_budget_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, models) = build(dir.path(), None);
    let texts = [
        "Ships in a blue box. A light notebook for travel and work. Two year warranty.",
        "Noise cancelling earphones. Charges over USB-C.",
        "",
    ];
    let before = models.embed_calls.load(Ordering::SeqCst);
    let best = engine.best_sentences("laptop for travel", &texts, SnippetLimits::default()).unwrap();
    let picked: Vec<Option<&str>> =
        best.iter().zip(&texts).map(|(b, t)| b.as_ref().map(|b| &t[b.range.clone()])).collect();
    assert_eq!(picked, [Some("A light notebook for travel and work."), Some("Noise cancelling earphones."), None]);
    assert!(best[0].as_ref().unwrap().similarity > best[1].as_ref().unwrap().similarity);
    // one call for the query, one batch for every sentence
    assert_eq!(models.embed_calls.load(Ordering::SeqCst) - before, 2);
    // past the page's budget a text gets no sentence rather than more model time
    let tight = SnippetLimits { sentences_per_doc: 2, chars_per_sentence: 300, total_sentences: 3 };
    let best = engine.best_sentences("laptop for travel", &texts[..2], tight).unwrap();
    assert_eq!(best[0].as_ref().map(|b| &texts[0][b.range.clone()]), Some("A light notebook for travel and work."));
    assert_eq!(best[1].as_ref().map(|b| &texts[1][b.range.clone()]), Some("Noise cancelling earphones."));
    let none_left = SnippetLimits { total_sentences: 2, ..tight };
    assert!(engine.best_sentences("laptop for travel", &texts[..2], none_left).unwrap()[1].is_none());
}
