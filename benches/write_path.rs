//! What one small write costs an index as it grows, end to end through the engine, the way a server's write
//! task runs it: upsert one document (embedded by a stand-in bag-of-words embedder, so the model costs
//! nothing), commit, release the writer, `Engine::sync_vectors`. Run on this commit and on an older one to
//! compare (BENCHMARKS.md, "HNSW updates").
//!
//! ```text
//! cargo bench --bench write_path -- --docs 100000 --writes 30 [--dir DIR] [--interval-secs 60]
//! ```
//! `--interval-secs` sets the engine's `SavePolicy::Interval` (the server's default is 60 s); without it the
//! graph is saved after every write (`SavePolicy::EveryChange`, the CLI's). An index already built in DIR
//! (by an earlier run with the same `--docs`) is reused.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sieve_core::{Document, Limits};
use sieve_ingest::BatchSink;
use sieve_models::standin::WordsEmbedder;
use sieve_pipeline::{
    DenseSide, EmbedderHandle, Engine, EngineOptions, IndexSettings, OpenOptions, WorkerOptions, WriterOptions,
    EMBED_BATCH_TOKENS,
};
use sieve_vector::HnswParams;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

const BRANDS: [&str; 12] =
    ["Sony", "Lenovo", "Dell", "Bose", "Anker", "Samsung", "Apple", "Logitech", "Canon", "Nikon", "Philips", "Asus"];
const NOUNS: [&str; 16] = [
    "laptop",
    "headphones",
    "charger",
    "camera",
    "monitor",
    "keyboard",
    "mouse",
    "speaker",
    "tablet",
    "router",
    "printer",
    "lens",
    "earphones",
    "dock",
    "cable",
    "microphone",
];
const ADJECTIVES: [&str; 10] =
    ["wireless", "portable", "compact", "gaming", "professional", "refurbished", "black", "silver", "noise", "usb-c"];

/// A product-like document, the same for the same `i`.
fn product(i: u64) -> Document {
    let mut s = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut pick = |n: usize| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % n as u64) as usize
    };
    let (b, a1, a2, n) = (BRANDS[pick(12)], ADJECTIVES[pick(10)], ADJECTIVES[pick(10)], NOUNS[pick(16)]);
    let title = format!("{b} {a1} {a2} {n} {}-{}", &b[..2].to_uppercase(), 100 + pick(9000));
    let json =
        serde_json::json!({"id": format!("p{i}"), "title": title, "brand": b, "price": (10 + pick(2000)) as f64});
    Document::from_json(json, &Limits::default()).unwrap()
}

fn options(interval: Option<u64>) -> EngineOptions {
    let embedder =
        EmbedderHandle::spawn("words", Box::new(WordsEmbedder::new(384)), WorkerOptions::new(EMBED_BATCH_TOKENS));
    let mut options = EngineOptions { embedder: Some(embedder), ..EngineOptions::default() };
    if let Some(secs) = interval {
        options.vector_save = sieve_pipeline::SavePolicy::Interval(Duration::from_secs(secs));
    }
    options
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && arg(&args, "--docs").is_none() {
        eprintln!("write_path bench: error: needs --docs N [--writes W] [--dir DIR] [--interval-secs S]; not run");
        std::process::exit(2);
    }
    let docs: u64 = arg(&args, "--docs").expect("--docs N").parse().unwrap();
    let writes: u64 = arg(&args, "--writes").map_or(30, |s| s.parse().unwrap());
    let interval: Option<u64> = arg(&args, "--interval-secs").map(|s| s.parse().unwrap());
    let dir = PathBuf::from(arg(&args, "--dir").unwrap_or_else(|| format!("benches/out/write_path-{docs}")));
    let wopts = WriterOptions { threads: 1, memory_bytes: 64 << 20 };

    if !dir.join("vectors").join("config.json").is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        let t = Instant::now();
        let open = OpenOptions {
            engine: options(None),
            create: Some(IndexSettings::default()),
            dense_side: DenseSide::Ensure(HnswParams::default()),
        };
        let engine = Engine::open(&dir, open).unwrap();
        let mut sink = engine.sink(wopts).unwrap();
        for start in (0..docs).step_by(10_000) {
            let batch: Vec<Document> = (start..(start + 10_000).min(docs)).map(product).collect();
            sink.upsert(&batch).unwrap();
            sink.commit(Default::default()).unwrap();
        }
        sink.finish().unwrap();
        engine.sync_vectors().unwrap();
        eprintln!("indexed {docs} documents in {:.1} s", t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    let engine = Arc::new(Engine::open(&dir, options(interval)).unwrap());
    eprintln!("opened in {:.1} s ({} vectors)", t.elapsed().as_secs_f64(), engine.vector_count());

    let mut total = Vec::new();
    let mut sync = Vec::new();
    let mut saved = 0;
    for w in 0..writes {
        // a new version of an existing document: one insert, one tombstone
        let doc = product((w * 7919) % docs);
        let t = Instant::now();
        let mut sink = engine.sink(wopts).unwrap();
        sink.upsert(&[doc]).unwrap();
        sink.commit(Default::default()).unwrap();
        sink.finish().unwrap();
        let s = Instant::now();
        let report = engine.sync_vectors().unwrap();
        sync.push(s.elapsed().as_secs_f64() * 1e3);
        total.push(t.elapsed().as_secs_f64() * 1e3);
        saved += report.saved as u32;
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let line = serde_json::json!({
        "docs": docs, "writes": writes, "interval_secs": interval, "saves": saved,
        "write_ms_p50": median(total), "sync_ms_p50": median(sync),
    });
    println!("{line}");
}
