//! `sieve tune` fits an index's fusion on labelled queries by cross-validation, reports the estimate beside
//! the in-sample figure, and stores the settings in the index, where later searches find them.

use crate::{ok, run, s, stderr, write};

#[test]
fn tune_stores_cross_validated_fusion_settings_that_searches_then_use() {
    let dir = tempfile::tempdir().unwrap();
    let items = [
        ("laptop", "notebook computer"),
        ("headphones", "noise cancelling earphones"),
        ("camera", "digital photo camera"),
        ("monitor", "computer display screen"),
        ("keyboard", "mechanical typing keyboard"),
        ("speaker", "bluetooth loudspeaker"),
        ("charger", "usb power adapter"),
        ("printer", "inkjet photo printer"),
        ("router", "wireless network router"),
        ("tablet", "touchscreen tablet device"),
        ("mouse", "optical computer mouse"),
        ("watch", "smart fitness watch"),
    ];
    let mut corpus = String::new();
    let mut queries = String::new();
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for (i, (name, about)) in items.iter().enumerate() {
        for brand in ["Acme", "Zenith", "Orbit"] {
            corpus.push_str(&format!(
                "{{\"id\": \"{brand}-{i}\", \"title\": \"{brand} {name}\", \"body\": \"{about} by {brand}\"}}\n"
            ));
        }
        queries.push_str(&format!("{{\"id\": \"q{i}\", \"text\": \"{about}\"}}\n"));
        qrels.push_str(&format!("q{i}\tAcme-{i}\t1\nq{i}\tZenith-{i}\t1\n"));
    }
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = write(&data, "corpus.jsonl", corpus);
    write(&data, "queries.jsonl", queries);
    write(&data, "qrels.tsv", qrels);
    let index = dir.path().join("idx");

    // an index without embeddings has nothing to fuse
    ok(&["ingest", "--index", s(&dir.path().join("plain")), s(&file), "--progress", "none"]);
    let o = run(&["tune", "--index", s(&dir.path().join("plain")), "-d", s(&data)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("has no embeddings"), "{}", stderr(&o));

    let embed = ["--embedder", "minilm", "--device", "cpu", "--progress", "none"];
    ok(&[&["ingest", "--index", s(&index), s(&file)][..], &embed[..]].concat());
    let o = run(&["tune", "--index", s(&index), "-d", s(&data), "--folds", "1"]);
    assert!(stderr(&o).contains("--folds 1: expected at least 2"), "{}", stderr(&o));

    let dry = ok(&["tune", "--index", s(&index), "-d", s(&data), "--folds", "3", "--dry-run"]);
    assert!(dry.contains("cross-validated estimate") && dry.contains("in sample"), "{dry}");
    assert!(!index.join("search.json").exists(), "--dry-run stores nothing");

    let out = ok(&["tune", "--index", s(&index), "-d", s(&data), "--folds", "3"]);
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(index.join("search.json")).unwrap()).unwrap();
    assert_eq!(stored["tuned"]["queries"], 12, "{stored}");
    assert_eq!(stored["tuned"]["folds"], 3);
    let cv = stored["tuned"]["cross_validated"].as_f64().unwrap();
    assert!(out.contains(&format!("{cv:.4}")), "the stored estimate is the one reported: {out}");
    assert!(stored["tuned"]["in_sample"].as_f64().unwrap() >= cv);

    // later searches (and `sieve stats`) use what was stored
    let stats = ok(&["stats", "--index", s(&index)]);
    assert!(stats.contains("search settings: ") && stats.contains("tuned on"), "{stats}");
    let res: serde_json::Value =
        serde_json::from_str(&ok(&["search", "--index", s(&index), "wireless router", "--json"])).unwrap();
    assert_eq!(res["response"]["hits"][0]["id"].as_str().map(|id| id.ends_with("-8")), Some(true), "{res}");
}
