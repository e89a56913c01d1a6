//! The news feed on the LCSTS news set with planted near-duplicates (`sieve_eval::news`: times and outlets
//! assigned, 60 stories re-published four times each with light edits). One run prints three tables
//! (BENCHMARKS.md "Feed", EVALUATION.md "Feed"):
//!
//! 1. **thresholds**: the MinHash similarity of each planted copy to its original, per kind of edit, against
//!    distinct stories on the same topic (each original's five best BM25 neighbours outside its story);
//! 2. **quality**: α-nDCG@10 (α = 0.5, subtopic = story) and nDCG@10 over topic queries, with and without
//!    collapse and MMR (relevant: the article contains the topic word; no freshness, so that only collapse and
//!    MMR differ);
//! 3. **latency**: a page of 20 through `Engine::feed` (recall, fusion, the feed's ranking, documents), and the
//!    feed's own stage alone (`sieve_feed::rank`: freshness, clusters, MMR, cap) over 500 candidates; p50/p95/p99
//!    over `--rounds` runs of each query, one thread.
//!
//! ```text
//! cargo bench --bench feed -- [--data ../shared/data/lcsts-p3-zh-news] [--rounds 20]
//! ```

use std::collections::HashMap;
use std::time::Instant;

use sieve_core::{DocId, Document, Limits};
use sieve_eval::metrics::{alpha_ndcg_at_k, ndcg_at_k, percentile};
use sieve_eval::news::{plant, PlantedNews};
use sieve_feed::{FeedCandidate, FeedParams, Thresholds};
use sieve_pipeline::{Engine, FeedRequest, Mode, OpenOptions, SearchRequest};
use sieve_text::{Bm25Query, IndexSettings, WriterOptions};

const ORIGIN: i64 = 1_764_892_800;
/// Topic words tried; a topic is kept when 10..=300 articles contain it.
const TOPICS: [&str; 24] = [
    "手机",
    "苹果",
    "银行",
    "房价",
    "互联网",
    "腾讯",
    "阿里巴巴",
    "股市",
    "汽车",
    "微博",
    "教育",
    "医院",
    "电影",
    "小米",
    "京东",
    "央行",
    "楼市",
    "创业",
    "支付",
    "政府",
    "美国",
    "日本",
    "市场",
    "公司",
];

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn ms(d: &[f64], q: f64) -> f64 {
    percentile(d, q).unwrap_or(0.0) * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = arg(&args, "--data").unwrap_or_else(|| "../shared/data/lcsts-p3-zh-news".into());
    let rounds: usize = arg(&args, "--rounds").map_or(20, |r| r.parse().unwrap());
    let corpus = std::fs::read_to_string(format!("{data}/corpus.jsonl")).unwrap();
    let set = plant(&corpus, 60, ORIGIN);
    let docs: Vec<Document> =
        set.docs.iter().map(|d| Document::from_json(d.clone(), &Limits::default()).unwrap()).collect();
    println!(
        "{} articles, {} planted stories ({} near-duplicate pairs)",
        docs.len(),
        set.planted.len(),
        set.planted_pairs().len()
    );

    let dir = tempfile::tempdir().unwrap();
    let engine =
        Engine::open(dir.path(), OpenOptions { create: Some(IndexSettings::default()), ..OpenOptions::default() })
            .unwrap();
    {
        let mut w = engine.text().writer(WriterOptions { threads: 1, memory_bytes: 100 << 20 }).unwrap();
        w.upsert_batch(&docs).unwrap();
        w.commit(None).unwrap();
        w.finish().unwrap();
        engine.text().reload().unwrap();
    }

    signing(&docs);
    thresholds(&engine, &set, &docs);
    quality(&engine, &set);
    latency(&engine, rounds);
}

/// What signing adds to ingest: each article's signature against its analysis (the terms the index stores),
/// per article, interleaved, over the whole set three times.
fn signing(docs: &[Document]) {
    let analyzer = sieve_text::Analyzer::shared();
    let (mut sign, mut analyze) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        for d in docs {
            let t = Instant::now();
            std::hint::black_box(sieve_text::signature(d));
            sign.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for text in [d.title.as_deref(), d.body.as_deref()].into_iter().flatten() {
                std::hint::black_box(analyzer.terms(text, sieve_text::Analysis::Auto));
            }
            analyze.push(t.elapsed().as_secs_f64());
        }
    }
    let (s50, a50) = (percentile(&sign, 0.5).unwrap(), percentile(&analyze, 0.5).unwrap());
    println!(
        "\n## Signing at ingest, per article\n\n| step | p50 µs | p99 µs |\n|---|---|---|\n| MinHash signature | {:.1} | {:.1} |\n| analysis (jieba) | {:.1} | {:.1} |\n\nsignature / analysis at p50: {:.2}×",
        s50 * 1e6,
        percentile(&sign, 0.99).unwrap() * 1e6,
        a50 * 1e6,
        percentile(&analyze, 0.99).unwrap() * 1e6,
        s50 / a50
    );
}

fn thresholds(engine: &Engine, set: &PlantedNews, docs: &[Document]) {
    let by_id: HashMap<&str, &Document> = docs.iter().map(|d| (d.id.as_str(), d)).collect();
    let sig = |id: &str| sieve_text::signature(by_id[id]).unwrap();
    let edits = ["punctuation", "sentence dropped", "Traditional", "source suffix"];
    let t = Thresholds::default();
    println!(
        "\n## Similarity to the original (J: MinHash Jaccard; C: containment)\n\n| pair | n | J min | J p5 | J median | C min | duplicate by the rules |\n|---|---|---|---|---|---|---|"
    );
    for (k, edit) in edits.iter().enumerate() {
        let pairs: Vec<(sieve_feed::signature::Signature, sieve_feed::signature::Signature)> =
            set.planted.iter().map(|o| (sig(o), sig(&format!("{o}-copy{k}")))).collect();
        let j: Vec<f64> = pairs.iter().map(|(a, b)| sieve_feed::signature::similarity(&a.minima, &b.minima)).collect();
        let c: Vec<f64> = pairs.iter().map(|(a, b)| sieve_feed::signature::containment(a, b)).collect();
        let dup = pairs.iter().filter(|(a, b)| sieve_feed::cluster::is_duplicate(a, b, None, None, &t)).count();
        println!(
            "| copy: {edit} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {dup} / {} |",
            j.len(),
            percentile(&j, 0.0).unwrap(),
            percentile(&j, 0.05).unwrap(),
            percentile(&j, 0.5).unwrap(),
            percentile(&c, 0.0).unwrap(),
            pairs.len()
        );
    }
    // distinct stories on the same topic: each original's best BM25 neighbours outside its story
    let (mut j, mut c, mut dup, mut identical) = (Vec::new(), Vec::new(), 0, 0);
    for o in &set.planted {
        let body: String = by_id[o.as_str()].body.as_deref().unwrap_or("").chars().take(40).collect();
        let found = engine.text().search(&Bm25Query::new(body, 20)).unwrap();
        for h in found.hits.iter().filter(|h| set.story[h.id.as_str()] != *o).take(5) {
            let (a, b) = (sig(o), sig(h.id.as_str()));
            if by_id[o.as_str()].body == by_id[h.id.as_str()].body {
                identical += 1; // the corpus's own copies of a post
                continue;
            }
            j.push(sieve_feed::signature::similarity(&a.minima, &b.minima));
            c.push(sieve_feed::signature::containment(&a, &b));
            dup += sieve_feed::cluster::is_duplicate(&a, &b, None, None, &t) as usize;
        }
    }
    println!(
        "| distinct stories, same topic ({identical} identical bodies left out) | {} | J p95 {:.3} | J p99 {:.3} | J max {:.3} | C p99 {:.3} | {dup} / {} |",
        j.len(),
        percentile(&j, 0.95).unwrap(),
        percentile(&j, 0.99).unwrap(),
        percentile(&j, 1.0).unwrap(),
        percentile(&c, 0.99).unwrap(),
        j.len()
    );
}

fn feed_ids(engine: &Engine, topic: &str, collapse: bool, diversity: f64) -> Vec<String> {
    let mut req = FeedRequest::new(topic, Mode::Bm25);
    req.limit = 10;
    req.decay = None;
    req.origin = Some(ORIGIN);
    req.collapse = collapse;
    req.diversity = diversity;
    engine.feed(&req).unwrap().items.into_iter().map(|i| i.id.as_str().to_owned()).collect()
}

fn quality(engine: &Engine, set: &PlantedNews) {
    let text: HashMap<String, String> = set
        .docs
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_owned(),
                format!("{} {}", d["title"].as_str().unwrap_or(""), d["body"].as_str().unwrap_or("")),
            )
        })
        .collect();
    let configs = [
        ("plain (no collapse, diversity 0)", false, 0.0),
        ("collapse", true, 0.0),
        ("MMR 0.3", false, 0.3),
        ("collapse + MMR 0.3", true, 0.3),
    ];
    let mut rows = vec![(0.0, 0.0); configs.len()];
    let mut topics = 0;
    for topic in TOPICS {
        let relevant: Vec<&String> = text.iter().filter(|(_, t)| t.contains(topic)).map(|(id, _)| id).collect();
        if !(10..=300).contains(&relevant.len()) || !relevant.iter().any(|id| set.story[*id] != **id) {
            continue;
        }
        topics += 1;
        let subtopic: HashMap<String, String> =
            relevant.iter().map(|id| ((*id).clone(), set.story[*id].clone())).collect();
        let judged: HashMap<String, u32> = relevant.iter().map(|id| ((*id).clone(), 1)).collect();
        for (row, (_, collapse, diversity)) in rows.iter_mut().zip(configs) {
            let ids = feed_ids(engine, topic, collapse, diversity);
            let ranked: Vec<&str> = ids.iter().map(String::as_str).collect();
            row.0 += alpha_ndcg_at_k(&ranked, &subtopic, 0.5, 10);
            row.1 += ndcg_at_k(&ranked, &judged, 10);
        }
    }
    println!("\n## Feed quality over {topics} topics\n\n| feed | α-nDCG@10 | nDCG@10 |\n|---|---|---|");
    for ((name, ..), (a, n)) in configs.iter().zip(rows) {
        println!("| {name} | {:.4} | {:.4} |", a / topics as f64, n / topics as f64);
    }
}

fn latency(engine: &Engine, rounds: usize) {
    // topic words (tens of candidates) and broad queries (a full pool of 500)
    let narrow = ["手机", "银行", "互联网", "市场", "公司", "美国"];
    let broad = ["中国 公司 市场 发展 今天 表示", "记者 企业 用户 政府 经济 北京"];
    // each feed page beside a plain search of the same query for 20 hits (`Engine::search`), interleaved
    let time_pages = |queries: &[&str]| {
        let (mut took, mut pool, mut search) = (Vec::new(), Vec::new(), Vec::new());
        for q in queries {
            for _ in 0..rounds {
                let mut req = FeedRequest::new(*q, Mode::Bm25);
                req.origin = Some(ORIGIN);
                req.max_per_source = Some(3);
                let t = Instant::now();
                let res = engine.feed(&req).unwrap();
                took.push(t.elapsed().as_secs_f64());
                pool.push(res.candidates as f64);
                let mut plain = SearchRequest::in_mode(*q, Mode::Bm25);
                plain.k = 20;
                let t = Instant::now();
                std::hint::black_box(engine.search(&plain).unwrap());
                search.push(t.elapsed().as_secs_f64());
            }
        }
        (took, pool, search)
    };
    let (page, candidates, search) = time_pages(&narrow);
    let (broad_page, broad_candidates, broad_search) = time_pages(&broad);
    let mut stage = Vec::new();
    // the feed's own stage over 500 candidates: the facts of a broad query's 500 best
    let found = engine.text().search(&Bm25Query::new("中国 公司 市场 发展 今天 表示", 500)).unwrap();
    let ids: Vec<DocId> = found.hits.iter().map(|h| h.id.clone()).collect();
    let facts = engine.text().story_facts(&ids).unwrap();
    let fused: Vec<f64> = found.hits.iter().map(|h| h.score as f64).collect();
    let relevance = sieve_feed::rank::relevance(&fused, &[]);
    let cands: Vec<FeedCandidate> = facts
        .iter()
        .zip(&relevance)
        .map(|(f, &r)| {
            let f = f.as_ref().unwrap();
            FeedCandidate {
                relevance: r,
                published_at: f.published_at,
                seq: f.seq,
                source: f.source.as_deref(),
                signature: f.signature.as_ref(),
                vector: None,
                shown: false,
            }
        })
        .collect();
    let params = FeedParams {
        origin: ORIGIN,
        decay: Some(sieve_pipeline::DEFAULT_DECAY),
        collapse: true,
        diversity: 0.3,
        max_per_source: Some(3),
        limit: 20,
        thresholds: Thresholds::default(),
    };
    for _ in 0..rounds * narrow.len() {
        let t = Instant::now();
        let out = sieve_feed::rank(&cands, &params);
        stage.push(t.elapsed().as_secs_f64());
        std::hint::black_box(out);
    }
    println!(
        "\n## Feed latency ({} runs each, one thread)\n\n| what | candidates | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|",
        page.len()
    );
    for (what, took, pool, plain) in
        [("topic words", &page, &candidates, &search), ("broad queries", &broad_page, &broad_candidates, &broad_search)]
    {
        println!(
            "| a page of 20, {what} (`Engine::feed`, bm25) | {:.0} (median) | {:.2} | {:.2} | {:.2} |",
            percentile(pool, 0.5).unwrap(),
            ms(took, 0.5),
            ms(took, 0.95),
            ms(took, 0.99)
        );
        println!(
            "| the same queries, `Engine::search` for 20 hits | | {:.2} | {:.2} | {:.2} |",
            ms(plain, 0.5),
            ms(plain, 0.95),
            ms(plain, 0.99)
        );
    }
    println!(
        "| the feed's stage alone (decay, clusters, MMR, cap) | {} | {:.2} | {:.2} | {:.2} |",
        cands.len(),
        ms(&stage, 0.5),
        ms(&stage, 0.95),
        ms(&stage, 0.99)
    );
}
