//! Catalog browsing on the real product set (abt-buy-products): an empty query with a sort and a brand filter
//! lists exactly that brand's products, cheapest first, page after page with no gap and no repeat, over HTTP
//! and on the CLI; a sorted query orders every match, not a candidate window.

use serde_json::{json, Value};

use crate::eval::shared_data;
use crate::serve::{http, serve};
use crate::{ok, s};

/// The brand's products in the order the engine must give: price ascending, products without a price last,
/// equal prices by id (bytewise). Computed from the corpus file itself.
fn expected(corpus: &str, brand: &str) -> Vec<String> {
    let mut rows: Vec<(Option<f64>, String)> = corpus
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|d| d["brand"].as_str().is_some_and(|b| b.to_lowercase() == brand))
        .map(|d| (d["price"].as_f64(), d["id"].as_str().unwrap().to_owned()))
        .collect();
    rows.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => x.total_cmp(&y).then_with(|| a.1.cmp(&b.1)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    rows.into_iter().map(|r| r.1).collect()
}

#[test]
fn an_empty_query_pages_through_a_brand_cheapest_first_with_no_gaps() {
    let corpus_path = shared_data().join("abt-buy-products/corpus.jsonl");
    let corpus = std::fs::read_to_string(&corpus_path).unwrap();
    let want = expected(&corpus, "adobe");
    assert!(want.len() > 50, "the set has {} adobe products", want.len());

    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("products");
    ok(&["ingest", "--index", s(&index), s(&corpus_path), "--progress", "none"]);
    let served = serve(&index);

    // over HTTP, 7 at a time (pages that do not divide the set evenly)
    let mut got: Vec<String> = Vec::new();
    let mut offset = 0;
    loop {
        let body = json!({"query": "", "mode": "bm25", "filters": ["brand=adobe"], "sort": "price:asc",
            "limit": 7, "offset": offset, "facets": ["brand", "price"]});
        let (status, _, res) = http(&served.addr, "POST", "/v1/search", &body.to_string()).unwrap();
        assert_eq!(status, 200, "{res}");
        assert_eq!(res["total"].as_u64().unwrap() as usize, want.len(), "total is the whole set, exactly");
        assert_eq!(res["facets"]["brand"], json!([{"value": "adobe", "count": want.len()}]));
        let hits = res["hits"].as_array().unwrap();
        for h in hits {
            assert_eq!(h["document"]["brand"].as_str().map(str::to_lowercase).as_deref(), Some("adobe"));
        }
        got.extend(hits.iter().map(|h| h["id"].as_str().unwrap().to_owned()));
        offset += 7;
        if hits.len() < 7 {
            break;
        }
    }
    assert_eq!(got, want, "the pages join up into the brand's products, cheapest first");

    // the CLI pages the same way
    let page = |offset: usize| -> Vec<String> {
        let out = ok(&[
            "search",
            "--index",
            s(&index),
            "",
            "--json",
            "--mode",
            "bm25",
            "-f",
            "brand=adobe",
            "--sort",
            "price:asc",
            "-k",
            "10",
            "--offset",
            &offset.to_string(),
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["response"]["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!([page(0), page(10)].concat(), want[..20]);

    // a sorted query orders every match: more than a relevance window holds, cheapest first
    let body = json!({"query": "software", "mode": "bm25", "sort": "price:asc", "limit": 1000});
    let (_, _, sorted) = http(&served.addr, "POST", "/v1/search", &body.to_string()).unwrap();
    let relevance = json!({"query": "software", "mode": "bm25", "limit": 10});
    let (_, _, ranked) = http(&served.addr, "POST", "/v1/search", &relevance.to_string()).unwrap();
    let total = sorted["total"].as_u64().unwrap();
    assert!(total > 100, "{total} matches of `software`, more than the default 100 candidates");
    let prices: Vec<f64> =
        sorted["hits"].as_array().unwrap().iter().filter_map(|h| h["document"]["price"].as_f64()).collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]));
    let sorted_ids: Vec<&str> = sorted["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap()).collect();
    for h in ranked["hits"].as_array().unwrap() {
        assert!(sorted_ids.contains(&h["id"].as_str().unwrap()), "the top relevance hits are in the sorted set");
    }
}
