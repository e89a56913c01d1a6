//! The Rust side of the GPU benchmark (`benches/models_gpu.sh` drives it, `benches/models_gpu.py` compares it
//! with HF transformers). Linked against `sieve-models` alone so that the CUDA build carried to the GPU machine
//! stays small. Works on any device; `--device cpu` runs it here.
//!
//! ```text
//! models_gpu synth DIR --layout reranker|embedding --tokenizer TOKENIZER_JSON [--shape qwen3-0.6b|bench|tiny]
//! models_gpu score MODEL CASES_JSON [--device D]
//!     CASES_JSON: [{"query", "instruction"?, "documents": [..], "max_length"?}] -> {"scores": [[..]], "info"}
//! models_gpu rerank-time MODEL RUNS_JSON [--device D] [--repeat N]
//!     RUNS_JSON: [{"label", "query", "documents": [..]}] -> one JSON line per run and prefix mode (ms medians)
//! models_gpu gemm-time [--device D] [--tokens M] [--repeat N]
//!     candle's bf16 matmul on the model's projection shapes (TFLOP/s)
//! models_gpu embed-time MODEL DOCS_JSON [--device D] [--repeat N]
//!     DOCS_JSON: {"query", "documents": [..]} -> single-query latency and whole-list docs/s
//! models_gpu attn-check [--device cuda] [--repeat N]      (a `--features cuda` build only)
//!     each fused attention kernel and the batched-GEMM path against the f32 GEMM path: one JSON line each
//! models_gpu embed-vectors MODEL CASES_JSON [--device D]
//!     CASES_JSON: [{"max_length", "dimensions"?, "inputs": [{"kind": "query"|"document", "text",
//!     "instruction"?}]}] -> per case the vectors of the whole batch and of each input embedded alone
//! ```
//! With `SIEVE_PROFILE=1` each timing line also carries the forward's per-stage times (every stage then waits
//! for the device, so profiled totals are slower; use them for the breakdown only).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};
use sieve_models::profile::take as take_profile;
use sieve_models::synthetic::{shapes, write_qwen3, Layout};
use sieve_models::{load_embedder, load_reranker, DeviceSpec, EmbedInput, EmbedOptions, RerankInput, Reranker};

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn read_json(p: &str) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {p}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{p} is not JSON: {e}"))
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array().expect("a list of strings").iter().map(|d| d.as_str().expect("a string")).collect()
}

/// Median, 10th and 90th percentile of the timings, in milliseconds.
fn stats(mut v: Vec<f64>) -> Value {
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize] * 1e3;
    json!({"median_ms": q(0.5), "p10_ms": q(0.1), "p90_ms": q(0.9), "n": v.len()})
}

fn time(repeat: usize, mut f: impl FnMut()) -> Value {
    for _ in 0..3 {
        f(); // warm-up: module loads, allocator pools, cuBLAS heuristics
    }
    let _ = take_profile();
    let ts: Vec<f64> = (0..repeat)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    stats(ts)
}

fn profile(repeat: usize) -> Value {
    let p = take_profile();
    if p.is_empty() {
        return Value::Null;
    }
    Value::Object(p.into_iter().map(|(k, s)| (k.to_string(), json!(s * 1e3 / repeat as f64))).collect())
}

fn main() {
    sieve_models::init_cpu_threads();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let device: DeviceSpec = arg(&args, "--device").unwrap_or("auto").parse().expect("--device");
    let repeat: usize = arg(&args, "--repeat").map_or(20, |r| r.parse().expect("--repeat N"));
    match args.first().map(String::as_str) {
        Some("synth") => {
            let dir = PathBuf::from(&args[1]);
            let shape = match arg(&args, "--shape").unwrap_or("qwen3-0.6b") {
                "qwen3-0.6b" => shapes::qwen3_0_6b(),
                "bench" => shapes::bench(),
                "tiny" => shapes::tiny(),
                other => panic!("--shape: expected qwen3-0.6b, bench or tiny, found {other}"),
            };
            let layout = match arg(&args, "--layout").unwrap_or("reranker") {
                "reranker" => Layout::RerankerTied,
                "embedding" => Layout::Embedding,
                other => panic!("--layout: expected reranker or embedding, found {other}"),
            };
            let tok = Path::new(arg(&args, "--tokenizer").expect("--tokenizer TOKENIZER_JSON"));
            let t = Instant::now();
            write_qwen3(&dir, &shape, layout, 7, tok).expect("synth");
            eprintln!("synth: {} in {:.1}s", dir.display(), t.elapsed().as_secs_f64());
        }
        Some("score") => {
            let rr = load_reranker(Path::new(&args[1]), device, Default::default()).expect("load reranker");
            let cases = read_json(&args[2]);
            let mut all = Vec::new();
            for c in cases.as_array().expect("a list of cases") {
                let docs = strs(&c["documents"]);
                for share in [false, true] {
                    let input = RerankInput {
                        query: c["query"].as_str().expect("query"),
                        documents: &docs,
                        instruction: c["instruction"].as_str(),
                        max_length: c["max_length"].as_u64().map(|m| m as usize),
                        share_prefix: share,
                    };
                    let out = rr.rerank(&[input]).expect("rerank").remove(0);
                    all.push(json!({"share_prefix": share,
                        "scores": out.iter().map(|s| s.score).collect::<Vec<_>>(),
                        "raw": out.iter().map(|s| s.raw).collect::<Vec<_>>(),
                        "tokens": out.iter().map(|s| s.tokens).collect::<Vec<_>>()}));
                }
            }
            println!("{}", json!({"info": rr.info(), "results": all}));
        }
        Some("rerank-time") => {
            let rr = load_reranker(Path::new(&args[1]), device, Default::default()).expect("load reranker");
            eprintln!("reranker: {}", serde_json::to_string(rr.info()).unwrap_or_default());
            for run in read_json(&args[2]).as_array().expect("a list of runs") {
                let docs = strs(&run["documents"]);
                for share in [true, false] {
                    let input = RerankInput {
                        query: run["query"].as_str().expect("query"),
                        documents: &docs,
                        instruction: run["instruction"].as_str(),
                        max_length: None,
                        share_prefix: share,
                    };
                    let out = rr.rerank(&[input]).expect("rerank").remove(0);
                    let tokens: usize = out.iter().map(|s| s.tokens).sum();
                    let t = time(repeat, || {
                        rr.rerank(&[input]).expect("rerank");
                    });
                    println!(
                        "{}",
                        json!({"engine": "sieve", "label": run["label"], "share_prefix": share,
                               "pairs": docs.len(), "tokens": tokens, "time": t, "profile": profile(repeat),
                               "device": rr.info().device, "dtype": rr.info().dtype,
                               "non_embedding_params": rr.info().non_embedding_params})
                    );
                }
            }
        }
        Some("embed-time") => {
            let em = load_embedder(Path::new(&args[1]), device).expect("load embedder");
            let d = read_json(&args[2]);
            let docs = strs(&d["documents"]);
            let q = [EmbedInput::query(d["query"].as_str().expect("query"))];
            let opts = EmbedOptions::default();
            let out = em.embed(&q, &opts).expect("embed");
            let single = time(repeat, || {
                em.embed(&q, &opts).expect("embed");
            });
            let inputs: Vec<EmbedInput> = docs.iter().map(|&t| EmbedInput::Document(t)).collect();
            let all = em.embed(&inputs, &opts).expect("embed");
            let tokens: usize = all.tokens.iter().sum();
            let bulk = time(repeat.div_ceil(4).max(3), || {
                em.embed(&inputs, &opts).expect("embed");
            });
            let docs_per_s = docs.len() as f64 / (bulk["median_ms"].as_f64().unwrap_or(f64::NAN) / 1e3);
            println!(
                "{}",
                json!({"engine": "sieve", "query_tokens": out.tokens[0], "query": single, "docs": docs.len(),
                       "doc_tokens": tokens, "bulk": bulk, "docs_per_s": docs_per_s, "info": em.info()})
            );
        }
        Some("embed-vectors") => {
            let em = load_embedder(Path::new(&args[1]), device).expect("load embedder");
            let mut out = Vec::new();
            for c in read_json(&args[2]).as_array().expect("a list of cases") {
                let inputs: Vec<EmbedInput> = c["inputs"]
                    .as_array()
                    .expect("inputs: a list")
                    .iter()
                    .map(|i| {
                        let text = i["text"].as_str().expect("text");
                        match i["kind"].as_str() {
                            Some("query") => EmbedInput::Query { text, instruction: i["instruction"].as_str() },
                            Some("document") => EmbedInput::Document(text),
                            other => panic!("kind: expected query or document, found {other:?}"),
                        }
                    })
                    .collect();
                let opts = EmbedOptions {
                    dimensions: c["dimensions"].as_u64().map(|d| d as usize),
                    max_length: c["max_length"].as_u64().map(|m| m as usize),
                };
                let batch = em.embed(&inputs, &opts).expect("embed");
                let alone: Vec<Vec<f32>> = inputs
                    .iter()
                    .map(|i| em.embed(std::slice::from_ref(i), &opts).expect("embed").vectors.remove(0))
                    .collect();
                out.push(json!({"vectors": batch.vectors, "alone": alone, "tokens": batch.tokens,
                                "truncated": batch.truncated}));
            }
            println!("{}", json!({"info": em.info(), "cases": out}));
        }
        Some("attn-check") => {
            #[cfg(feature = "cuda")]
            {
                let dev = device.resolve();
                for row in sieve_models::attention_check(&dev.device, repeat).expect("attention check") {
                    println!("{row}");
                }
            }
            #[cfg(not(feature = "cuda"))]
            {
                eprintln!("attn-check: the fused attention kernels exist only in a build with --features cuda");
                std::process::exit(2);
            }
        }
        Some("gemm-time") => {
            // candle's matmul on the projection shapes of Qwen3-0.6B, weight stored as Sieve's `Linear` does (Wᵀ
            // contiguous) and as the checkpoint does (W, used transposed): TFLOP/s, median of --repeat.
            let dev = device.resolve();
            let dt = dev.dtype;
            // (`resolve` tuned the device; the tensors below are created after it.)
            let tokens: usize = arg(&args, "--tokens").map_or(8192, |t| t.parse().expect("--tokens N"));
            for (k, n) in [(1024, 4096), (1024, 6144), (3072, 1024), (2048, 1024)] {
                let x = candle_core::Tensor::randn(0f32, 1.0, (tokens, k), &dev.device).unwrap().to_dtype(dt).unwrap();
                let w = candle_core::Tensor::randn(0f32, 0.02, (n, k), &dev.device).unwrap().to_dtype(dt).unwrap();
                let wt = w.t().unwrap().contiguous().unwrap();
                // What Sieve's layers use: cuBLASLt for bf16/f16 on CUDA, candle's matmul otherwise.
                let linear = sieve_models::ops::Linear::new(w.clone(), None).unwrap();
                for layout in ["wt", "w.t()", "sieve Linear"] {
                    let t = time(repeat, || {
                        match layout {
                            "wt" => x.matmul(&wt).unwrap(),
                            "w.t()" => x.matmul(&w.t().unwrap()).unwrap(),
                            _ => linear.forward(&x).unwrap(),
                        };
                        dev.device.synchronize().unwrap();
                    });
                    let ms = t["median_ms"].as_f64().unwrap_or(f64::NAN);
                    println!(
                        "{}",
                        json!({"engine": "sieve-candle", "m": tokens, "k": k, "n": n, "layout": layout, "time": t,
                               "tflops": 2.0 * (tokens * k * n) as f64 / (ms / 1e3) / 1e12})
                    );
                }
            }
        }
        _ => {
            eprintln!("usage: models_gpu synth|score|rerank-time|embed-time|embed-vectors|attn-check|gemm-time ...");
            std::process::exit(2);
        }
    }
}
