//! `sieve search` and `sieve stats` output.

use crate::{ingested, ok, run, s, stderr};

#[test]
fn search_explains_scores_and_rejects_bad_filters() {
    let dir = tempfile::tempdir().unwrap();
    let index = ingested(
        dir.path(),
        "p.jsonl",
        "{\"id\":\"p1\",\"title\":\"Sony Turntable - PSLX350H\",\"body\":\"belt drive\",\"brand\":\"Sony\",\"price\":149}\n{\"id\":\"n1\",\"title\":\"雅虎宣布剥离阿里巴巴股份\",\"source\":\"Sina\"}\n",
    );

    let out = ok(&["search", "--index", s(&index), "sony turntable", "--explain"]);
    assert!(out.contains("p1"), "{out}");
    assert!(out.contains("bm25 rank 1 = title="), "{out}");
    assert!(out.contains("query terms: soni turntabl"), "{out}");

    let json: serde_json::Value =
        serde_json::from_str(&ok(&["search", "--index", s(&index), "阿里巴巴", "--json"])).unwrap();
    assert_eq!(json["hits"][0]["id"], "n1");
    assert_eq!(json["hits"][0]["rank"], 1);
    assert!(json["hits"][0]["scores"]["bm25"]["score"].as_f64().unwrap() > 0.0);
    let stages: Vec<&str> = json["timings"].as_array().unwrap().iter().map(|t| t["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["analyze", "stats", "bm25", "fetch"]);

    let bad = run(&["search", "--index", s(&index), "sony", "--filter", "colour=red"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("unknown field `colour`; filterable fields are"), "{}", stderr(&bad));

    let o = run(&["search", "--index", s(&index), "sony", "--instruction", "Find the product"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("only used by --mode hybrid+rerank (with --reranker); found --mode bm25"),
        "{}",
        stderr(&o)
    );

    let missing = run(&["search", "--index", s(&dir.path().join("nothing")), "sony"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("not a Sieve index"), "{}", stderr(&missing));

    let stats = ok(&["stats", "--index", s(&index)]);
    assert!(stats.contains("documents: 2"), "{stats}");
    assert!(stats.contains("(complete)"), "{stats}");
    assert!(stats.contains("vectors: none (BM25 only)"), "{stats}");
}

/// `sieve search … | head`: the reader going away ends the command quietly (status 141, as for `cat`), not
/// with a panic and a backtrace.
#[test]
fn a_closed_stdout_ends_search_quietly() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    // enough output (well over a pipe's 64 KiB buffer) that some write must find the pipe closed
    let body = "turntable ".repeat(200);
    let rows: String =
        (0..300).map(|i| format!("{{\"id\":\"d{i}\",\"title\":\"turntable {i}\",\"body\":\"{body}\"}}\n")).collect();
    let index = ingested(dir.path(), "d.jsonl", rows);

    let mut child = crate::sieve()
        .args(["search", "--index", s(&index), "turntable", "--json", "-k", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(141), "{err}");
}

/// `--k1`, `--b` and `--exhaustive` shape the BM25 leg in every mode that runs it (they once applied to
/// `--mode bm25` only and were dropped without a word in the engine's modes).
#[test]
fn bm25_overrides_apply_to_the_bm25_leg_of_hybrid_search() {
    let dir = tempfile::tempdir().unwrap();
    let index = ingested(
        dir.path(),
        "p.jsonl",
        "{\"id\":\"a\",\"title\":\"turntable turntable turntable\",\"body\":\"a turntable with a long description of the turntable\"}\n\
         {\"id\":\"b\",\"title\":\"turntable\",\"body\":\"short\"}\n",
    );
    let bm25_score = |extra: &[&str]| -> Vec<f64> {
        let mut args = vec!["search", "--index", s(&index), "turntable", "--json"];
        args.extend_from_slice(extra);
        let out: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
        let hits = out.get("response").map_or(&out["hits"], |r| &r["hits"]);
        let mut by_id: Vec<(String, f64)> = hits
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["id"].as_str().unwrap().to_owned(), h["scores"]["bm25"]["score"].as_f64().unwrap()))
            .collect();
        by_id.sort_by(|x, y| x.0.cmp(&y.0));
        by_id.into_iter().map(|(_, s)| s).collect()
    };
    let plain = bm25_score(&["--mode", "hybrid"]);
    let tuned = bm25_score(&["--mode", "hybrid", "--k1", "0.1", "--b", "0"]);
    assert_ne!(plain, tuned, "the override changed the BM25 leg's scores");
    assert_eq!(tuned, bm25_score(&["--mode", "bm25", "--k1", "0.1", "--b", "0"]), "as in bm25 mode");
    let exact = ok(&["search", "--index", s(&index), "turntable", "--mode", "hybrid", "--exhaustive", "--json"]);
    assert!(exact.contains("\"bm25_matched\": 2"), "{exact}");

    let o = run(&["search", "--index", s(&index), "turntable", "--mode", "dense", "--k1", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("which --mode dense does not run"), "{}", stderr(&o));
}
