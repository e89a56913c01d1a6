//! What one write costs the dense index as it grows: a server's write task inserts a few vectors into a
//! graph of N and makes them searchable (`VectorIndex::stage` + `publish` + `update_live`, what
//! `Engine::sync_vectors` does in memory), and perhaps saves it. Measured against the copy rebuilt from the
//! whole graph after each insert (what Sieve did before `publish`), and, by `benches/hnsw_updates.sh`, against
//! hnswlib and faiss adding the same vectors to an index built from the same base in the same run.
//!
//! ```text
//! cargo bench --bench hnsw_updates -- --base BASE.npy --queries QUERIES.npy --out DIR [--writes 50] [--batch 1]
//! ```
//! The index is built from all rows of BASE but the last `writes × batch`; those are then written `batch` at a
//! time. Prints one JSON line per measurement and writes them to `DIR/sieve.jsonl`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sieve_core::DocId;
use sieve_vector::{HnswParams, VectorIndex, VectorSearch};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

/// Reads a 2-d little-endian f32 `.npy` (C order), as numpy writes it.
fn read_npy(path: &Path) -> Vec<Vec<f32>> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&raw[..6], b"\x93NUMPY", "{}: not a .npy file", path.display());
    let (header_len, start) = match raw[6] {
        1 => (u16::from_le_bytes([raw[8], raw[9]]) as usize, 10),
        _ => (u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]) as usize, 12),
    };
    let header = std::str::from_utf8(&raw[start..start + header_len]).unwrap();
    assert!(header.contains("'<f4'") && header.contains("'fortran_order': False"), "{header}");
    let shape = &header[header.find("'shape': (").unwrap() + 10..];
    let dims: Vec<usize> = shape[..shape.find(')').unwrap()].split(',').filter_map(|d| d.trim().parse().ok()).collect();
    let (n, dim) = (dims[0], dims[1]);
    let data = &raw[start + header_len..];
    assert_eq!(data.len(), n * dim * 4, "{}: {n}×{dim} promised", path.display());
    data.chunks_exact(dim * 4)
        .map(|row| row.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn id(slot: u64) -> DocId {
    DocId::parse(&slot.to_string(), 64).unwrap()
}

fn recall(index: &VectorIndex, queries: &[Vec<f32>], truth: &[Vec<u64>], ef: usize) -> f64 {
    let mut found = 0;
    for (q, t) in queries.iter().zip(truth) {
        let hits = index.search(q, &VectorSearch { ef: Some(ef), ..VectorSearch::new(10) }).unwrap().hits;
        found += hits.iter().filter(|h| t.contains(&h.slot)).count();
    }
    found as f64 / (10 * queries.len()) as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && arg(&args, "--base").is_none() {
        eprintln!("hnsw_updates bench: error: needs --base BASE.npy --queries Q.npy --out DIR (see benches/hnsw_updates.sh); not run");
        std::process::exit(2);
    }
    let base = read_npy(&PathBuf::from(arg(&args, "--base").expect("--base BASE.npy")));
    let queries = read_npy(&PathBuf::from(arg(&args, "--queries").expect("--queries QUERIES.npy")));
    let out = PathBuf::from(arg(&args, "--out").unwrap_or_else(|| "benches/out/hnsw_updates".into()));
    let writes: usize = arg(&args, "--writes").map_or(50, |s| s.parse().unwrap());
    let batch: usize = arg(&args, "--batch").map_or(1, |s| s.parse().unwrap());
    std::fs::create_dir_all(&out).unwrap();
    let (n, dim) = (base.len(), base[0].len());
    let initial = n - writes * batch;
    let mut lines = Vec::new();
    let mut emit = |line: serde_json::Value| {
        println!("{line}");
        lines.push(line);
    };

    let params = HnswParams { m: 16, ef_construction: 200, exact_below: 0, ..HnswParams::default() };
    let mut index = VectorIndex::new(dim, params).unwrap();
    let t = Instant::now();
    index.insert(base[..initial].iter().enumerate().map(|(i, v)| (i as u64, v.clone())).collect()).unwrap();
    index.set_live((0..initial as u64).map(|s| (s, id(s))));
    let build_s = t.elapsed().as_secs_f64();
    eprintln!("built {initial} × {dim} in {build_s:.1} s");

    // every write: link the batch into the graph, make it searchable, declare the live set
    let mut write_ms = Vec::new();
    // stage (link into the graph), publish (update the search copy), update_live (declare the live set)
    let mut parts: [Vec<f64>; 3] = Default::default();
    let mut live: Vec<u64> = (0..initial as u64).collect();
    for w in 0..writes {
        let from = initial + w * batch;
        let items: Vec<(u64, Vec<f32>)> = (from..from + batch).map(|i| (i as u64, base[i].clone())).collect();
        live.extend(from as u64..(from + batch) as u64);
        let new_ids: Vec<(u64, DocId)> = (from as u64..(from + batch) as u64).map(|s| (s, id(s))).collect();
        let t = Instant::now();
        let staged = index.stage(items).unwrap();
        let t1 = Instant::now();
        index.publish(staged);
        let t2 = Instant::now();
        index.update_live(&live, new_ids);
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        let done = Instant::now();
        write_ms.push(ms(t, done));
        parts[0].push(ms(t, t1));
        parts[1].push(ms(t1, t2));
        parts[2].push(ms(t2, done));
    }

    // what searches see afterwards: the copy updated in place against one rebuilt from the same graph
    let truth: Vec<Vec<u64>> = queries
        .iter()
        .map(|q| {
            let mut qn = q.clone();
            sieve_vector::normalize(&mut qn);
            let mut s: Vec<(f32, u64)> = (0..n)
                .map(|i| {
                    let v = index.vector(i as u64).expect("every row was written");
                    (sieve_vector::dot(&qn, v), i as u64)
                })
                .collect();
            s.select_nth_unstable_by(9, |a, b| b.0.total_cmp(&a.0));
            s.truncate(10);
            s.into_iter().map(|(_, i)| i).collect()
        })
        .collect();
    let incremental = recall(&index, &queries, &truth, 64);
    // the search copy rebuilt from the whole graph: what every write paid before `publish`
    let mut rebuild_ms = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        index.rebuild_search_copy();
        rebuild_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let rebuilt = recall(&index, &queries, &truth, 64);
    let (write, rebuild) = (median(write_ms), median(rebuild_ms));
    emit(serde_json::json!({
        "lib": "sieve", "n": initial, "dim": dim, "batch": batch, "writes": writes, "build_s": build_s,
        "write_ms_p50": write, "before_write_ms_p50": write + rebuild, "rebuild_copy_ms_p50": rebuild,
        "stage_ms_p50": median(parts[0].clone()), "publish_ms_p50": median(parts[1].clone()),
        "update_live_ms_p50": median(parts[2].clone()),
        "recall_at_10_ef64": incremental, "recall_at_10_ef64_rebuilt_copy": rebuilt,
    }));

    // a save of the whole graph (the dump `vector_save_interval_secs` spaces out)
    let mut save_ms = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir_in(&out).unwrap();
        let t = Instant::now();
        index.save(dir.path(), 1).unwrap();
        save_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    emit(serde_json::json!({"lib": "sieve", "n": n, "save_ms_p50": median(save_ms)}));
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(out.join("sieve.jsonl"), text).unwrap();
}
