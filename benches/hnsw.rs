//! HNSW benchmark: Sieve's dense index (hnsw_rs inside `sieve-vector`) on the MiniLM vectors of a real
//! index, against the exact answer, with the vectors written out as `.npy` so the peers (hnswlib, faiss;
//! `../shared/peers/peer_hnsw.py`) run on exactly the same inputs in the same run (`benches/hnsw.sh`).
//!
//! ```text
//! cargo bench --bench hnsw -- --index IDX --queries QUERIES.jsonl --out DIR [--ef 16,32,64,128,256] [--repeat 3]
//! ```
//! IDX is an index ingested with `--embedder minilm`; the queries are embedded here with the same model.
//! Prints one JSON line per (strategy, ef) and writes `DIR/base.npy`, `DIR/queries.npy`, `DIR/sieve.jsonl`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sieve_models::{hub, DeviceSpec, EmbedInput, EmbedOptions};
use sieve_pipeline::VectorSettings;
use sieve_text::TextIndex;
use sieve_vector::{HnswParams, VectorIndex, VectorSearch};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn write_npy(path: &Path, rows: &[Vec<f32>]) {
    let dim = rows.first().map_or(0, Vec::len);
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {dim}), }}", rows.len());
    // magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64, ending in \n
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + rows.len() * dim * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for r in rows {
        for x in r {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(path, out).unwrap();
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && arg(&args, "--index").is_none() {
        eprintln!("hnsw bench: error: needs --index IDX --queries FILE --out DIR (see benches/hnsw.sh); not run");
        std::process::exit(2);
    }
    let index_dir = PathBuf::from(arg(&args, "--index").expect("--index IDX"));
    let queries_file = PathBuf::from(arg(&args, "--queries").expect("--queries FILE"));
    let out = PathBuf::from(arg(&args, "--out").unwrap_or_else(|| "benches/out/hnsw".into()));
    let efs: Vec<usize> = arg(&args, "--ef")
        .unwrap_or_else(|| "16,32,64,128,256".into())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let repeat: usize = arg(&args, "--repeat").map_or(3, |s| s.parse().unwrap());
    std::fs::create_dir_all(&out).unwrap();

    let settings = VectorSettings::load(&index_dir).unwrap().expect("an index ingested with --embedder");
    let text = TextIndex::open(&index_dir).unwrap();
    let entries = text.vector_entries(&|_| true).unwrap();
    let base: Vec<Vec<f32>> = entries.into_iter().map(|e| e.vector.unwrap()).collect();
    let dim = base[0].len();

    let model_dir = hub::resolve(&settings.model, &hub::cache_dir());
    let embedder = sieve_models::load_embedder(&model_dir, DeviceSpec::Cpu).unwrap();
    let queries: Vec<String> = std::fs::read_to_string(&queries_file)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_owned())
        .collect();
    let inputs: Vec<EmbedInput<'_>> = queries.iter().map(|q| EmbedInput::query(q)).collect();
    let qv = embedder.embed(&inputs, &EmbedOptions::default()).unwrap().vectors;
    write_npy(&out.join("base.npy"), &base);
    write_npy(&out.join("queries.npy"), &qv);
    eprintln!("{} base vectors, {} queries, {dim} dimensions; wrote {}", base.len(), qv.len(), out.display());

    // exact ground truth (the vectors are unit length: cosine = dot)
    let truth: Vec<Vec<u64>> = qv
        .iter()
        .map(|q| {
            let mut s: Vec<(f32, u64)> =
                base.iter().enumerate().map(|(i, b)| (sieve_vector::dot(q, b), i as u64)).collect();
            s.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            s.into_iter().take(10).map(|(_, i)| i).collect()
        })
        .collect();

    let params = HnswParams { m: 16, ef_construction: 200, exact_below: 0, ..HnswParams::default() };
    let mut index = VectorIndex::new(dim, params).unwrap();
    let t = Instant::now();
    index.insert(base.iter().enumerate().map(|(i, v)| (i as u64, v.clone())).collect()).unwrap();
    let build_s = t.elapsed().as_secs_f64();
    index.set_live((0..base.len() as u64).map(|i| (i, sieve_core::DocId::parse(&format!("{i}"), 64).unwrap())));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    let mut lines = Vec::new();
    let mut run = |label: &str, ef: Option<usize>, exact: bool| {
        let mut best_qps = 0.0f64;
        let mut lat = Vec::new();
        let mut recall = 0.0;
        for _ in 0..repeat {
            let mut this = Vec::with_capacity(qv.len());
            let mut hits_total = 0usize;
            let t = Instant::now();
            for (q, tr) in qv.iter().zip(&truth) {
                let s = Instant::now();
                let res = index.search(q, &VectorSearch { k: 10, ef, only: None, exact }).unwrap();
                this.push(s.elapsed().as_secs_f64() * 1e6);
                hits_total += res.hits.iter().filter(|h| tr.contains(&h.slot)).count();
            }
            let qps = qv.len() as f64 / t.elapsed().as_secs_f64();
            if qps > best_qps {
                best_qps = qps;
                lat = this;
            }
            recall = hits_total as f64 / (10 * qv.len()) as f64;
        }
        lat.sort_by(f64::total_cmp);
        let line = serde_json::json!({
            "lib": label, "ef": ef, "n": base.len(), "dim": dim, "M": 16, "ef_construction": 200,
            "build_s": build_s, "build_threads": threads, "recall_at_10": recall,
            "qps_1t_per_query": best_qps, "lat_p50_us": percentile(&lat, 0.5), "lat_p99_us": percentile(&lat, 0.99),
        });
        println!("{line}");
        lines.push(line);
    };
    for &ef in &efs {
        run("sieve (hnsw_rs graph, flat search)", Some(ef), false);
    }
    run("sieve exact scan", None, true);
    let mut f = std::fs::File::create(out.join("sieve.jsonl")).unwrap();
    for l in &lines {
        writeln!(f, "{l}").unwrap();
    }
}
