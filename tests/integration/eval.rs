//! `sieve eval` on the shared evaluation sets holds Sieve's own recorded BM25 quality: nDCG@10 and MRR@10 at
//! least the figures in EVALUATION.md ("BM25", current defaults) minus 0.005, on all five sets. The floors
//! are tight on purpose: losing the product-code joiner (abt-buy, −0.08), BM25F (apt, −0.08) or the title
//! weight (apt, −0.007) fails here. When a change moves a figure for a good reason, the floor moves in the
//! same commit as EVALUATION.md, with the reason.

use std::path::PathBuf;

use crate::{ok, run, s, stderr};

/// `SIEVE_SHARED_DATA`, or `../shared/data` beside the repository (where CI has it).
pub(crate) fn shared_data() -> PathBuf {
    let dir = std::env::var_os("SIEVE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    assert!(
        dir.join("abt-buy-products/qrels.tsv").is_file(),
        "evaluation data not found at {}; put the shared folder beside the repository or set SIEVE_SHARED_DATA",
        dir.display()
    );
    dir
}

/// Sieve's recorded BM25 figures (EVALUATION.md, "BM25 (current defaults …)"): set, folder relative to the
/// shared data folder, nDCG@10, MRR@10.
const RECORDED: [(&str, &str, f64, f64); 5] = [
    // abt-buy and qbqtc-zh: with typo tolerance, prefixes and exact codes first (2026-12-05; 0.9203 / 0.8983
    // and 0.7850 / 0.7729 before)
    ("abt-buy-products", "abt-buy-products", 0.9430, 0.9281),
    ("qbqtc-zh", "qbqtc-zh", 0.7956, 0.7832),
    ("lcsts-p3-zh-news", "lcsts-p3-zh-news", 0.9023, 0.8869),
    ("cmrc2018-zh", "cmrc2018-zh", 0.9826, 0.9784),
    ("apt", "../peers/data/apt", 0.8221, 0.7914),
];

/// How far under its recorded figure a set may fall: noise-free (BM25 is deterministic), so this only
/// absorbs float summation order.
const SLACK: f64 = 0.005;

#[test]
fn bm25_holds_its_recorded_quality_on_all_five_sets() {
    let data = shared_data();
    let out = tempfile::tempdir().unwrap();
    let mut args = vec!["eval".to_owned(), "--repeat".into(), "1".into(), "--out".into(), s(out.path()).into()];
    for (_, folder, _, _) in RECORDED {
        args.push("--dataset".into());
        args.push(data.join(folder).display().to_string());
    }
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut failures = Vec::new();
    for (name, _, ndcg_recorded, mrr_recorded) in RECORDED {
        let reports: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join(format!("{name}.json"))).unwrap()).unwrap();
        let report = &reports[0];
        assert_eq!(report["system"], "sieve bm25");
        assert!(report["queries"].as_u64().unwrap() >= 500, "{name}: too few judged queries ran");
        for (metric, recorded) in [("ndcg_at_10", ndcg_recorded), ("mrr_at_10", mrr_recorded)] {
            let got = report[metric].as_f64().unwrap();
            if got < recorded - SLACK {
                failures.push(format!("{name}: {metric} {got:.4} is under its recorded {recorded} - {SLACK}"));
            }
        }
    }
    assert!(failures.is_empty(), "quality fell:\n{}", failures.join("\n"));
    let table = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert_eq!(table.lines().count(), 2 + RECORDED.len(), "{table}");
}

/// All four modes side by side on a small dataset: a table row per mode, a chart, the reranker's note, and
/// the stage timings of each mode.
#[test]
fn eval_runs_the_four_modes_side_by_side_with_a_chart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mini");
    std::fs::create_dir_all(data.join("qrels")).unwrap();
    let topics = [
        ("turntable", "belt drive record player for vinyl"),
        ("headphones", "wireless noise cancelling over ear audio"),
        ("router", "wifi network router with four ethernet ports"),
        ("printer", "colour inkjet printer and scanner"),
        ("camera", "digital camera with zoom lens"),
    ];
    let mut corpus = String::new();
    let mut queries = String::new();
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for (i, (name, text)) in topics.iter().enumerate() {
        for j in 0..4 {
            corpus.push_str(&format!("{{\"_id\":\"d{i}-{j}\",\"title\":\"{name} model {j}\",\"text\":\"{text}\"}}\n"));
        }
        queries.push_str(&format!("{{\"_id\":\"q{i}\",\"text\":\"{text}\"}}\n"));
        qrels.push_str(&format!("q{i}\td{i}-0\t1\n"));
    }
    std::fs::write(data.join("corpus.jsonl"), corpus).unwrap();
    std::fs::write(data.join("queries.jsonl"), queries).unwrap();
    std::fs::write(data.join("qrels/test.tsv"), qrels).unwrap();
    let reranker = dir.path().join("reranker");
    ok(&["models", "synth", "--out", s(&reranker), "--shape", "tiny"]);
    let out = dir.path().join("out");
    ok(&[
        "eval",
        "-d",
        s(&data),
        "--modes",
        "bm25,dense,hybrid,hybrid+rerank",
        "--reranker",
        s(&reranker),
        "--reranker-note",
        "random weights",
        "--device",
        "cpu",
        "--repeat",
        "1",
        "--out",
        s(&out),
    ]);
    let reports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("mini.json")).unwrap()).unwrap();
    let systems: Vec<&str> = reports.as_array().unwrap().iter().map(|r| r["system"].as_str().unwrap()).collect();
    assert_eq!(systems, ["sieve bm25", "sieve dense", "sieve hybrid", "sieve hybrid+rerank (random weights)"]);
    for r in reports.as_array().unwrap() {
        assert_eq!(r["queries"], 5);
        let stages: Vec<&str> = r["stage_ms_mean"].as_array().unwrap().iter().map(|s| s[0].as_str().unwrap()).collect();
        let expect: &[&str] = match r["settings"]["mode"].as_str().unwrap() {
            "bm25" => &["bm25"],
            "dense" => &["embed", "ann"],
            "hybrid" => &["bm25", "embed", "ann", "fuse"],
            _ => &["bm25", "embed", "ann", "fuse", "rerank"],
        };
        for e in expect {
            assert!(stages.contains(e), "{}: {stages:?}", r["system"]);
        }
    }
    let table = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert_eq!(table.lines().count(), 2 + 4, "{table}");
    let png = std::fs::read(out.join("report.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");

    // A reranker named without the mode that uses it is refused, not loaded and ignored.
    let o = run(&["eval", "-d", s(&data), "--modes", "bm25,dense", "--reranker", s(&reranker), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("found --modes bm25,dense; add it (e.g. --modes bm25,dense,hybrid+rerank)"), "{e}");
}

/// Typo tolerance and as-you-type search on the product set, with the query variants `sieve eval --queries`
/// generates from the dev queries (`sieve_eval::variants`: an edit in each word of 5+ letters, never in codes;
/// the last word cut to 3-4 characters). Typo'd queries keep at least 0.95× the clean nDCG@10, and far more
/// than the same engine without tolerance gets; prefix queries keep at least 0.9×.
#[test]
fn typo_and_prefix_queries_keep_their_quality_on_the_product_set() {
    let data = shared_data().join("abt-buy-products");
    let out = tempfile::tempdir().unwrap();
    let ndcg = |name: &str, extra: &[&str]| -> f64 {
        let dir = out.path().join(name);
        let mut args = vec!["eval", "--repeat", "1", "-d", s(&data), "--out", s(&dir)];
        args.extend_from_slice(extra);
        ok(&args);
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "json"));
        let reports: serde_json::Value = serde_json::from_slice(&std::fs::read(file.unwrap()).unwrap()).unwrap();
        reports[0]["ndcg_at_10"].as_f64().unwrap()
    };
    let clean = ndcg("clean", &[]);
    let typo = ndcg("typo", &["--queries", "typo"]);
    let typo_off = ndcg("typo-off", &["--queries", "typo", "--typo-one", "0", "--prefix", "false"]);
    let prefix = ndcg("prefix", &["--queries", "prefix"]);
    let prefix_off = ndcg("prefix-off", &["--queries", "prefix", "--typo-one", "0", "--prefix", "false"]);
    eprintln!("nDCG@10 clean {clean:.4}, typo {typo:.4} (without tolerance {typo_off:.4}), prefix {prefix:.4} (without {prefix_off:.4})");
    assert!(clean >= RECORDED[0].2 - SLACK, "clean {clean}");
    assert!(typo >= 0.95 * clean, "typo'd queries: {typo} < 0.95 × {clean}");
    assert!(typo > typo_off + 0.03, "tolerance must matter: {typo} against {typo_off} without");
    assert!(
        prefix >= 0.9 * clean && prefix > prefix_off + 0.02,
        "prefix {prefix}, without {prefix_off}, clean {clean}"
    );
}
