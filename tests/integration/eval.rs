//! `sieve eval` on the shared evaluation sets stays at or above the BM25 baselines (bm25s, from
//! `shared/data/README.md`) minus 0.01 nDCG@10: an analysis regression shows up here first.

use std::path::PathBuf;

use crate::{ok, s};

/// `SIEVE_SHARED_DATA`, or `../shared/data` beside the repository (where CI has it).
fn shared_data() -> PathBuf {
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

#[test]
fn bm25_meets_the_bm25s_baselines_on_all_four_sets() {
    let data = shared_data();
    let out = tempfile::tempdir().unwrap();
    let baselines =
        [("abt-buy-products", 0.838), ("qbqtc-zh", 0.784), ("lcsts-p3-zh-news", 0.902), ("cmrc2018-zh", 0.981)];
    let mut args = vec!["eval".to_owned(), "--repeat".into(), "1".into(), "--out".into(), s(out.path()).into()];
    for (name, _) in baselines {
        args.push("--dataset".into());
        args.push(data.join(name).display().to_string());
    }
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    for (name, baseline) in baselines {
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join(format!("{name}.json"))).unwrap()).unwrap();
        let ndcg = report["ndcg_at_10"].as_f64().unwrap();
        assert!(ndcg >= baseline - 0.01, "{name}: nDCG@10 {ndcg:.4} is under the bm25s baseline {baseline} - 0.01");
        assert!(report["queries"].as_u64().unwrap() > 500, "{name}: too few judged queries ran");
    }
    let table = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert_eq!(table.lines().count(), 2 + baselines.len(), "{table}");
}
