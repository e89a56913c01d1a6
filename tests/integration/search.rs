//! `sieve search` and `sieve stats` output.

use crate::{ok, run, s, stderr, write};

#[test]
fn search_explains_scores_and_rejects_bad_filters() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.jsonl",
        "{\"id\":\"p1\",\"title\":\"Sony Turntable - PSLX350H\",\"body\":\"belt drive\",\"brand\":\"Sony\",\"price\":149}\n{\"id\":\"n1\",\"title\":\"雅虎宣布剥离阿里巴巴股份\",\"source\":\"Sina\"}\n",
    );
    let index = dir.path().join("idx");
    ok(&["ingest", "--index", s(&index), s(&file), "--progress", "none"]);

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
    let file = write(dir.path(), "d.jsonl", rows);
    let index = dir.path().join("idx");
    ok(&["ingest", "--index", s(&index), s(&file), "--progress", "none"]);

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
