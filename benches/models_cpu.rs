//! CPU model throughput, on the inputs `benches/models_peer.py setup` wrote (see `benches/models_vs_hf.sh`):
//! the Qwen3 reranker on 50 (query, document) pairs of ~128 tokens, with and without prefix sharing, and
//! all-MiniLM-L6-v2 at batch 1 and 32. Prints one JSON line per measurement (medians).
//!
//! `cargo bench --bench models_cpu -- DIR [--repeat N] [--only rerank|embed]`
//!
//! With `SIEVE_PROFILE=1` the embedder part first prints (to stderr) the per-stage times of one pass over the
//! texts in batches of 32, and the attention work in it (Σ length² over the rows).

// The same allocator as the `sieve` binary: it keeps freed pages, so big activations do not page-fault anew.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{json, Value};
use sieve_models::hub::{self, Source};
use sieve_models::{load_embedder, load_reranker, DeviceSpec, EmbedInput, EmbedOptions, RerankInput, Reranker};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time<T>(repeat: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut last = f(); // warm-up
    let mut ts = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let t = Instant::now();
        last = f();
        ts.push(t.elapsed().as_secs_f64());
    }
    (median(ts), last)
}

fn main() {
    sieve_models::init_cpu_threads();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let dir = PathBuf::from(args.first().map(String::as_str).unwrap_or("benches/out/models"));
    let repeat =
        args.iter().position(|a| a == "--repeat").and_then(|i| args.get(i + 1)).map_or(5, |r| r.parse().unwrap());
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();

    if only.as_deref() != Some("embed") {
        let pairs: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("pairs.json")).unwrap()).unwrap();
        let docs: Vec<&str> = pairs["documents"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
        let rr = load_reranker(&dir.join("qwen3-bench"), DeviceSpec::Cpu, Default::default()).unwrap();
        for share in [false, true] {
            let input = RerankInput {
                query: pairs["query"].as_str().unwrap(),
                documents: &docs,
                instruction: pairs["instruction"].as_str(),
                max_length: pairs["max_length"].as_u64().map(|m| m as usize),
                share_prefix: share,
            };
            let (med, out) = time(repeat, || rr.rerank(&[input]).unwrap().remove(0));
            let tokens: usize = out.iter().map(|s| s.tokens).sum();
            let scores: Vec<f32> = out.iter().map(|s| s.score).collect();
            println!(
                "{}",
                json!({"phase": "rerank", "engine": "sieve", "share_prefix": share, "median_s": med,
                       "pairs": docs.len(), "tokens": tokens, "scores": scores,
                       "threads": rayon_threads()})
            );
        }
    }
    if only.as_deref() != Some("rerank") {
        let texts: Vec<String> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("texts.json")).unwrap()).unwrap();
        let minilm = hub::ensure(&Source::MiniLm, &hub::cache_dir()).unwrap();
        let e = load_embedder(&minilm, DeviceSpec::Cpu).unwrap();
        let inputs: Vec<EmbedInput> = texts.iter().map(|t| EmbedInput::Document(t)).collect();
        let opts = EmbedOptions::default();
        if std::env::var_os("SIEVE_PROFILE").is_some() {
            sieve_models::profile::take();
            let mut sq = 0usize;
            for chunk in inputs.chunks(32) {
                sq += e.embed(chunk, &opts).unwrap().tokens.iter().map(|t| t * t).sum::<usize>();
            }
            eprintln!("attention work: sum of squared row lengths {sq}");
            let stages = sieve_models::profile::take();
            let total: f64 = stages.iter().map(|s| s.1).sum();
            for (s, t) in stages {
                eprintln!("{s:28} {:8.1} ms {:5.1}%", t * 1e3, 100.0 * t / total);
            }
        }
        let (b1, _) = time(repeat.div_ceil(2), || {
            for i in &inputs {
                e.embed(std::slice::from_ref(i), &opts).unwrap();
            }
        });
        let (b32, out) = time(repeat.div_ceil(2), || {
            let mut tokens = 0;
            for chunk in inputs.chunks(32) {
                tokens += e.embed(chunk, &opts).unwrap().tokens.iter().sum::<usize>();
            }
            tokens
        });
        println!(
            "{}",
            json!({"phase": "embed", "engine": "sieve", "texts": texts.len(), "tokens": out,
                   "texts_per_s": {"1": texts.len() as f64 / b1, "32": texts.len() as f64 / b32}})
        );
    }
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}
