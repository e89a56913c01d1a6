//! `sieve demo`, the main job, on small stand-in datasets (the real ones are what the README's command uses).

use std::path::Path;

use crate::{ok, run, s, stderr, write};

fn datasets(root: &Path) {
    let products = root.join("abt-buy-products");
    let news = root.join("lcsts-p3-zh-news");
    std::fs::create_dir_all(&products).unwrap();
    std::fs::create_dir_all(&news).unwrap();
    write(
        &products,
        "corpus.jsonl",
        "{\"id\":\"abt-1\",\"title\":\"Sony Turntable - PSLX350H\",\"body\":\"belt drive record player\",\"brand\":\"Sony\",\"price\":149}\n\
         {\"id\":\"abt-2\",\"title\":\"Bose QuietComfort 35 headphones\",\"body\":\"noise cancelling\",\"brand\":\"Bose\",\"price\":299}\n\
         {\"id\":\"abt-3\",\"title\":\"Linksys 8-port ethernet switch\",\"body\":\"gigabit\",\"brand\":\"Linksys\",\"price\":60}\n",
    );
    write(&news, "corpus.jsonl", "{\"id\":\"n1\",\"title\":\"雅虎宣布剥离阿里巴巴股份\",\"body\":\"雅虎\"}\n");
}

/// A run without the embedding model leaves the product index BM25-only; the next run with the model rebuilds
/// it with embeddings (an embedder cannot be added to documents already indexed) instead of failing or
/// serving a dense leg with no vectors.
#[test]
fn demo_rebuilds_a_product_index_left_without_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    datasets(&data);
    let indexes = dir.path().join("indexes");
    let base = ["demo", "--data", s(&data), "--indexes", s(&indexes), "--serve", "false", "--progress", "none"];

    let mut plain = base.to_vec();
    plain.extend(["--embed", "false"]);
    let out = ok(&plain);
    assert!(out.contains("index products") && out.contains("3 docs (3 ingested now"), "{out}");
    assert!(!indexes.join("products/vectors").exists());

    let second = run(&base);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("indexed without embeddings by an earlier run; rebuilding"),
        "{}",
        stderr(&second)
    );
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(out.contains("3 docs (3 ingested now"), "{out}");
    assert!(out.contains("[products, hybrid]"), "{out}");
    let dense = ok(&["search", "--index", s(&indexes.join("products")), "record player", "--mode", "dense", "--json"]);
    let dense: serde_json::Value = serde_json::from_str(&dense).unwrap();
    assert_eq!(dense["response"]["hits"].as_array().unwrap().len(), 3, "every product has a vector: {dense}");

    let stats = ok(&["stats", "--index", s(&indexes.join("products"))]);
    assert!(stats.contains("vectors: minilm (384 dimensions), cosine similarity; HNSW M=16"), "{stats}");
    assert!(stats.contains("graph: 3 points saved at commit") && stats.contains("(up to date)"), "{stats}");

    // and a third run finds everything in place
    let third = run(&base);
    assert!(third.status.success(), "{}", stderr(&third));
    assert!(!stderr(&third).contains("rebuilding"), "{}", stderr(&third));
    assert!(String::from_utf8_lossy(&third.stdout).contains("3 docs (0 ingested now"));
}
