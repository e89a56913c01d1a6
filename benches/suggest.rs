//! Search-box latency on the product set: `TextIndex::suggest` (completions + products, what `POST
//! /v1/suggest` runs) for every keystroke of the abt-buy-products queries, against an exact BM25 search of
//! the same strings (no typos, no prefixes, k = 10) in the same run, one thread. Each keystroke string is run
//! ROUNDS times and its median kept; p50/p99 are over the strings (BENCHMARKS.md, "Suggest").
//!
//! ```text
//! cargo bench --bench suggest -- [--data ../shared/data/abt-buy-products] [--rounds 5] [--queries 300]
//! ```

use std::time::{Duration, Instant};

use sieve_core::{Document, Limits};
use sieve_text::{Bm25Query, IndexSettings, SuggestQuery, TextIndex, Tolerance, WriterOptions};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    // nearest rank
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = arg(&args, "--data").unwrap_or_else(|| "../shared/data/abt-buy-products".into());
    let rounds: usize = arg(&args, "--rounds").map_or(5, |r| r.parse().unwrap());
    let max_queries: usize = arg(&args, "--queries").map_or(300, |r| r.parse().unwrap());

    let index = TextIndex::in_memory(IndexSettings::default()).unwrap();
    let mut w = index.writer(WriterOptions { threads: 1, memory_bytes: 200 << 20 }).unwrap();
    let corpus = std::fs::read_to_string(format!("{data}/corpus.jsonl")).unwrap();
    let mut docs = 0;
    for line in corpus.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        w.upsert(&Document::from_json(v, &Limits::default()).unwrap()).unwrap();
        docs += 1;
    }
    w.commit(None).unwrap();
    index.reload().unwrap();

    // every keystroke from the second character on, of the first three words of each query
    let queries = std::fs::read_to_string(format!("{data}/queries.jsonl")).unwrap();
    let mut strings: Vec<String> = Vec::new();
    for line in queries.lines().take(max_queries) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let text: String = v["text"].as_str().unwrap().split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        let chars: Vec<char> = text.chars().collect();
        for n in 2..=chars.len() {
            strings.push(chars[..n].iter().collect());
        }
    }

    let mut suggest = Vec::with_capacity(strings.len());
    let mut exact = Vec::with_capacity(strings.len());
    for s in &strings {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            // interleaved, so that drift hits both sides alike
            let t = Instant::now();
            let q = SuggestQuery { text: s.clone(), limit: 5, ..Default::default() };
            std::hint::black_box(index.suggest(&q).unwrap());
            a.push(t.elapsed());
            let t = Instant::now();
            let mut q = Bm25Query::new(s.clone(), 10);
            q.tolerance = Some(Tolerance::EXACT);
            std::hint::black_box(index.search(&q).unwrap());
            b.push(t.elapsed());
        }
        suggest.push(median(a));
        exact.push(median(b));
    }
    suggest.sort();
    exact.sort();
    println!("{docs} documents, {} keystroke strings, {rounds} rounds each (median kept)", strings.len());
    println!("| search | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|");
    for (name, v) in [("suggest (completions + 5 products)", &suggest), ("exact BM25 search, k = 10", &exact)] {
        println!("| {name} | {:.3} | {:.3} | {:.3} |", percentile(v, 0.5), percentile(v, 0.99), percentile(v, 1.0));
    }
    println!(
        "suggest / exact: p50 {:.2}x, p99 {:.2}x",
        percentile(&suggest, 0.5) / percentile(&exact, 0.5),
        percentile(&suggest, 0.99) / percentile(&exact, 0.99)
    );
}
