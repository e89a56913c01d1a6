//! `sieve models synth`, `sieve rerank`, `sieve embed`: the CLI around the models, and its errors.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use crate::{ingested, ok, run, s, stderr, write};

/// A tiny random-weight reranker, built once per test run through the CLI.
fn synth(layout: &str) -> PathBuf {
    static DIRS: OnceLock<std::sync::Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let dirs = DIRS.get_or_init(Default::default);
    let mut dirs = dirs.lock().unwrap();
    if let Some((_, d)) = dirs.iter().find(|(l, _)| l == layout) {
        return d.clone();
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-synth-{layout}"));
    ok(&["models", "synth", "--out", s(&dir), "--layout", layout, "--shape", "tiny", "--seed", "5"]);
    dirs.push((layout.to_string(), dir.clone()));
    dir
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn rerank_prints_sorted_scores_with_usage() {
    let m = synth("reranker");
    let docs = ["Paris is the capital of France.", "Bananas are yellow.", "Berlin is in Germany."];
    let mut args = vec!["rerank", "-m", s(&m), "-q", "capital of France", "--return-documents"];
    for d in &docs {
        args.extend(["-d", d]);
    }
    let out = json(&ok(&args));
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let scores: Vec<f64> = results.iter().map(|r| r["relevance_score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "sorted best first: {scores:?}");
    for r in results {
        let i = r["index"].as_u64().unwrap() as usize;
        assert_eq!(r["document"], docs[i]);
        let (p, raw) = (r["relevance_score"].as_f64().unwrap(), r["raw_score"].as_f64().unwrap());
        assert!((p - 1.0 / (1.0 + (-raw).exp())).abs() < 1e-5, "probability = sigmoid(raw)");
    }
    let tokens: u64 = results.iter().map(|r| r["tokens"].as_u64().unwrap()).sum();
    assert_eq!(out["usage"]["tokens"].as_u64().unwrap(), tokens);
    assert_eq!(out["model"]["role"], "reranker");

    // Same scores without prefix sharing, and top_n keeps the best.
    args.extend(["--no-prefix-sharing", "--top-n", "1"]);
    let unshared = json(&ok(&args));
    assert_eq!(unshared["results"].as_array().unwrap().len(), 1);
    assert_eq!(unshared["results"][0]["index"], results[0]["index"]);
    let (a, b) = (unshared["results"][0]["raw_score"].as_f64().unwrap(), results[0]["raw_score"].as_f64().unwrap());
    assert!((a - b).abs() < 1e-4);

    // --top-n 0 would score every pair and print none
    let o = run(&["rerank", "-m", s(&m), "-q", "q", "-d", "x", "--top-n", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--top-n: expected at least 1"), "{}", stderr(&o));
}

#[test]
fn rerank_reads_documents_files_and_names_bad_lines() {
    let m = synth("reranker-untied");
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "docs.jsonl",
        "{\"text\": \"one\"}\n\"two\"\n{\"title\": \"three\", \"body\": \"3\"}\nplain four\n",
    );
    let out = json(&ok(&["rerank", "-m", s(&m), "-q", "q", "--docs-file", s(&f)]));
    assert_eq!(out["results"].as_array().unwrap().len(), 4);
    let bad = write(dir.path(), "bad.jsonl", "{\"text\": \"one\"}\n{\"id\": 7}\n");
    let o = run(&["rerank", "-m", s(&m), "-q", "q", "--docs-file", s(&bad)]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("bad.jsonl: line 2") && e.contains("expected a string or an object"), "{e}");
    let o = run(&["rerank", "-m", s(&m), "-q", "q"]);
    assert!(stderr(&o).contains("expected at least one document"), "{}", stderr(&o));
}

#[test]
fn truncation_is_reported_and_tiny_limits_are_refused() {
    let m = synth("reranker");
    let long = "word ".repeat(500);
    let out = json(&ok(&["rerank", "-m", s(&m), "-q", "q", "-d", &long, "-d", "short", "--max-length", "100"]));
    let by_index = |i: u64| out["results"].as_array().unwrap().iter().find(|r| r["index"] == i).unwrap().clone();
    assert_eq!(by_index(0)["truncated"], true);
    assert_eq!(by_index(0)["tokens"], 100);
    assert_eq!(by_index(1)["truncated"], false);
    let o = run(&["rerank", "-m", s(&m), "-q", "q", "-d", "x", "--max-length", "10"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("max_length") && stderr(&o).contains("found 10"), "{}", stderr(&o));
}

#[test]
fn embed_queries_and_documents_with_matryoshka() {
    let m = synth("embedding");
    let out = json(&ok(&["embed", "-m", s(&m), "-t", "what is rust", "-t", "北京", "--kind", "query"]));
    assert_eq!(out["dimensions"], 64);
    assert_eq!(out["kind"], "query");
    let v: Vec<f64> = out["data"][0]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert!((v.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-4, "L2-normalised");
    let doc = json(&ok(&["embed", "-m", s(&m), "-t", "what is rust"]));
    assert_ne!(doc["data"][0]["embedding"], out["data"][0]["embedding"], "a query gets the instruction");
    let small = json(&ok(&["embed", "-m", s(&m), "-t", "what is rust", "--dimensions", "32"]));
    assert_eq!(small["dimensions"], 32);
    let o = run(&["embed", "-m", s(&m), "-t", "x", "--dimensions", "8"]);
    assert!(stderr(&o).contains("dimensions") && stderr(&o).contains("found 8"), "{}", stderr(&o));
}

#[test]
fn missing_and_corrupt_model_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let m = synth("reranker");
    // No such model.
    let o = run(&["rerank", "-m", "/nonexistent/model", "-q", "q", "-d", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/model"), "{}", stderr(&o));
    // A directory without config.json.
    let no_cfg = dir.path().join("no-config");
    std::fs::create_dir(&no_cfg).unwrap();
    std::fs::copy(m.join("tokenizer.json"), no_cfg.join("tokenizer.json")).unwrap();
    let e = stderr(&run(&["rerank", "-m", s(&no_cfg), "-q", "q", "-d", "x"]));
    assert!(e.contains("missing config.json"), "{e}");
    // Truncated weights.
    let trunc = dir.path().join("truncated");
    std::fs::create_dir(&trunc).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(m.join(f), trunc.join(f)).unwrap();
    }
    let bytes = std::fs::read(m.join("model.safetensors")).unwrap();
    std::fs::write(trunc.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = stderr(&run(&["rerank", "-m", s(&trunc), "-q", "q", "-d", "x"]));
    assert!(e.contains("model.safetensors") && e.contains("truncated"), "{e}");
    // A config that is not a Qwen3 model.
    let bert = dir.path().join("bert-as-reranker");
    std::fs::create_dir(&bert).unwrap();
    for f in ["tokenizer.json", "model.safetensors"] {
        std::fs::copy(m.join(f), bert.join(f)).unwrap();
    }
    write(&bert, "config.json", r#"{"model_type": "bert", "hidden_size": 8}"#);
    let e = stderr(&run(&["rerank", "-m", s(&bert), "-q", "q", "-d", "x"]));
    assert!(e.contains("unsupported architecture bert") && e.contains("qwen3"), "{e}");
    // A config with a missing field.
    let cfg = dir.path().join("bad-config");
    std::fs::create_dir(&cfg).unwrap();
    for f in ["tokenizer.json", "model.safetensors"] {
        std::fs::copy(m.join(f), cfg.join(f)).unwrap();
    }
    write(&cfg, "config.json", r#"{"model_type": "qwen3", "vocab_size": 151669}"#);
    let e = stderr(&run(&["rerank", "-m", s(&cfg), "-q", "q", "-d", "x"]));
    assert!(e.contains("config.json") && e.contains("hidden_size"), "{e}");
}

/// A binary built without `cuda` runs a CUDA request on the CPU and says so (gated like its unit
/// counterpart in `sieve-models`' device.rs: a `--features cuda` build on a GPU machine really uses the GPU).
#[cfg(not(feature = "cuda"))]
#[test]
fn a_cuda_request_without_cuda_falls_back_to_the_cpu() {
    let m = synth("reranker");
    let out = json(&ok(&["rerank", "-m", s(&m), "-q", "q", "-d", "x", "--device", "cuda:0"]));
    assert_eq!(out["model"]["device"], "cpu");
    assert!(out["model"]["fallback"].as_str().unwrap().contains("cuda"), "{}", out["model"]);
}

#[test]
fn an_unknown_device_is_refused_with_the_choices() {
    let m = synth("reranker");
    let o = run(&["rerank", "-m", s(&m), "-q", "q", "-d", "x", "--device", "tpu"]);
    assert!(!o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("expected auto, cpu"), "{}", stderr(&o));
}

/// `--reranker` on an index without embeddings reranks the BM25 candidates (it was once dropped without a word,
/// the search running BM25 alone), and beside a mode that does not rerank it is refused, not ignored.
#[test]
fn search_with_a_reranker_reranks_a_bm25_only_index_and_refuses_modes_that_do_not_rerank() {
    let dir = tempfile::tempdir().unwrap();
    let m = synth("reranker");
    let index = ingested(
        dir.path(),
        "p.jsonl",
        "{\"id\":\"p1\",\"title\":\"Sony turntable PS-LX350H\",\"body\":\"belt drive turntable\"}\n\
         {\"id\":\"p2\",\"title\":\"Audio-Technica turntable AT-LP60\",\"body\":\"fully automatic\"}\n\
         {\"id\":\"p3\",\"title\":\"Bose headphones\",\"body\":\"noise cancelling\"}\n",
    );

    let out = json(&ok(&["search", "--index", s(&index), "turntable", "--reranker", s(&m), "--json"]));
    assert_eq!(out["mode"], "hybrid+rerank");
    let res = &out["response"];
    assert_eq!(res["reranked"], true, "{res}");
    assert_eq!(res["degraded"], false, "{res}");
    assert!(res["notes"][0].as_str().unwrap().contains("dense leg not run"), "{res}");
    let hits = res["hits"].as_array().unwrap();
    let mut ids: Vec<&str> = hits.iter().map(|h| h["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["p1", "p2"], "the BM25 matches, reranked: {res}");
    for h in hits {
        assert!(h["scores"]["rerank"].is_object(), "every hit carries its rerank score: {h}");
        assert!(h["scores"]["bm25"].is_object(), "and its BM25 score: {h}");
    }
    let stages: Vec<&str> = res["timings"].as_array().unwrap().iter().map(|t| t["stage"].as_str().unwrap()).collect();
    assert!(stages.contains(&"bm25") && stages.contains(&"rerank") && !stages.contains(&"ann"), "{stages:?}");

    for mode in ["bm25", "dense", "hybrid"] {
        let o = run(&["search", "--index", s(&index), "turntable", "--reranker", s(&m), "--mode", mode]);
        assert_eq!(o.status.code(), Some(1), "--mode {mode}");
        let e = stderr(&o);
        assert!(e.contains("only used by --mode hybrid+rerank") && e.contains(&format!("found --mode {mode}")), "{e}");
    }
}
