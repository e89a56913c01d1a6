//! The news feed over HTTP on the LCSTS news set (`shared/data/lcsts-p3-zh-news`). The set has no times or
//! outlets: `sieve_eval::news::plant` **assigns** them (eight outlets, ten days) and **plants** 60 stories
//! re-published four times each by other outlets hours later, lightly edited (punctuation, a sentence
//! dropped, Traditional characters, an outlet's suffix). These tests check what a news reader sees: each story
//! once, no page over the source cap, the newer of two equals first, and pages that neither repeat nor skip
//! while articles keep arriving.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use serde_json::{json, Value};
use sieve_eval::news::{plant, PlantedNews};

use crate::eval::shared_data;
use crate::serve::{http, serve, Served};
use crate::{ok, s};

const ORIGIN: i64 = 1_764_892_800; // 2025-12-05T00:00:00Z

struct News {
    _dir: tempfile::TempDir,
    served: Served,
    set: PlantedNews,
    /// Each article's body, by id.
    bodies: HashMap<String, String>,
}

fn news(extra: &[Value]) -> News {
    let corpus = std::fs::read_to_string(shared_data().join("lcsts-p3-zh-news/corpus.jsonl")).unwrap();
    let set = plant(&corpus, 60, ORIGIN);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("news.jsonl");
    let lines: Vec<String> = set.docs.iter().chain(extra).map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let index: PathBuf = dir.path().join("news");
    ok(&["ingest", "--index", s(&index), s(&file), "--progress", "none"]);
    let served = serve(&index);
    let bodies = set
        .docs
        .iter()
        .chain(extra)
        .map(|d| (d["id"].as_str().unwrap().to_owned(), d["body"].as_str().unwrap_or("").to_owned()))
        .collect();
    News { _dir: dir, served, set, bodies }
}

fn feed(addr: &str, body: &Value) -> Value {
    let (status, _, res) = http(addr, "POST", "/v1/feed", &body.to_string()).unwrap();
    assert_eq!(status, 200, "{body} → {res}");
    res
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()).collect()
}

/// Two articles are the same story: copies of one post (planted), or of two posts whose texts the corpus
/// itself holds twice (its own duplicates: a story is known by its original's body).
fn same_story(n: &News, a: &str, b: &str) -> bool {
    n.bodies[&n.set.story[a]] == n.bodies[&n.set.story[b]]
}

#[test]
fn planted_duplicates_collapse_and_distinct_stories_on_a_topic_do_not() {
    let n = news(&[]);
    // every cluster the feed shows, by id, for each planted story's own words and for broad topics
    let mut clusters: HashMap<String, Vec<String>> = HashMap::new();
    let mut record = |res: &Value| {
        for item in res["items"].as_array().unwrap() {
            let c = &item["cluster"];
            let members = ids(&c["members"]);
            assert_eq!(members.len(), c["size"].as_u64().unwrap() as usize);
            assert_eq!(members[0], item["id"].as_str().unwrap(), "the item leads its cluster");
            // a query's candidates may hold part of a story (a copy with a sentence dropped can miss the
            // query's words): a cluster is the union of what the queries showed of it
            let all = clusters.entry(c["id"].as_str().unwrap().to_owned()).or_default();
            for m in members {
                if !all.contains(&m) {
                    all.push(m);
                }
            }
        }
    };
    for o in &n.set.planted {
        let words: String = n.bodies[o].chars().filter(|c| !c.is_ascii_punctuation()).take(16).collect();
        let body = json!({"query": words, "mode": "bm25", "limit": 10, "decay": {"shape": "none"}});
        record(&feed(&n.served.addr, &body));
    }
    for topic in ["手机", "银行", "互联网", "公司", "市场", "美国"] {
        let body = json!({"query": topic, "mode": "bm25", "limit": 50, "decay": {"shape": "none"}});
        record(&feed(&n.served.addr, &body));
    }

    // pairwise precision and recall over the planted pairs
    let planted: HashSet<(String, String)> = n.set.planted_pairs().into_iter().collect();
    let mut predicted: HashSet<(String, String)> = HashSet::new();
    for members in clusters.values() {
        for i in 0..members.len() {
            for j in i + 1..members.len() {
                let (a, b) = (members[i].clone(), members[j].clone());
                predicted.insert(if a < b { (a, b) } else { (b, a) });
            }
        }
    }
    let true_pairs = predicted.iter().filter(|(a, b)| same_story(&n, a, b)).count();
    let found = planted.iter().filter(|p| predicted.contains(*p)).count();
    let precision = true_pairs as f64 / predicted.len().max(1) as f64;
    let recall = found as f64 / planted.len() as f64;
    eprintln!(
        "clusters {} · predicted pairs {} · precision {precision:.4} · recall {recall:.4}",
        clusters.len(),
        predicted.len()
    );
    assert!(precision >= 0.95, "pairwise precision {precision:.4}");
    assert!(recall >= 0.95, "pairwise recall {recall:.4} ({found} of {} planted pairs)", planted.len());

    // distinct stories on a topic stay apart: every shown cluster is one story
    for members in clusters.values() {
        for m in members {
            assert!(same_story(&n, &members[0], m), "{} and {m} are different stories in one cluster", members[0]);
        }
    }
}

#[test]
fn no_page_exceeds_the_source_cap_and_the_newer_of_two_equals_ranks_first() {
    let at = |hours: i64| sieve_core::Timestamp::from_unix_seconds(ORIGIN - hours * 3600).unwrap().to_rfc3339();
    // two articles BM25 scores alike for the query (same words, same length), 2 and 20 hours old
    let twins = [
        json!({"id": "older", "body": "量子计算原型机研制成功甲方", "source": "新华网", "published_at": at(20)}),
        json!({"id": "newer", "body": "量子计算原型机研制成功乙方", "source": "澎湃", "published_at": at(2)}),
    ];
    let n = news(&twins);
    let body = json!({"query": "量子计算原型机研制成功", "mode": "bm25", "collapse": false, "explain": true,
        "decay": {"origin": at(0), "scale": "1d"}});
    let res = feed(&n.served.addr, &body);
    let items = res["items"].as_array().unwrap();
    let at_rank = |id: &str| items.iter().position(|i| i["id"] == id).unwrap_or_else(|| panic!("{id} missing: {res}"));
    assert!(at_rank("newer") < at_rank("older"), "{res}");
    let (a, b) = (&items[at_rank("newer")]["explain"], &items[at_rank("older")]["explain"]);
    assert!((a["relevance"].as_f64().unwrap() - b["relevance"].as_f64().unwrap()).abs() < 1e-9, "equal relevance");
    assert!(a["freshness"].as_f64().unwrap() > b["freshness"].as_f64().unwrap());
    assert_eq!(a["age_secs"], 2 * 3600);

    // the cap, page after page
    let mut cursor: Option<String> = None;
    let (mut promoted, mut held_back) = (0, 0);
    for _ in 0..4 {
        let mut body = json!({"query": "公司", "mode": "bm25", "limit": 10, "max_per_source": 2, "explain": true,
            "decay": {"origin": at(0)}});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let res = feed(&n.served.addr, &body);
        let mut per_source: HashMap<String, usize> = HashMap::new();
        for item in res["items"].as_array().unwrap() {
            *per_source.entry(item["document"]["source"].as_str().unwrap().to_owned()).or_default() += 1;
            promoted += item["explain"]["promoted_by_cap"].as_bool().unwrap() as usize;
        }
        held_back += res["held_back"].as_array().unwrap().len();
        assert!(per_source.values().all(|&c| c <= 2), "{per_source:?}");
        cursor = res["next_cursor"].as_str().map(str::to_owned);
    }
    assert!(promoted > 0 && held_back > 0, "the cap changed something over four pages");
}

/// A topic word that matches between `lo` and `hi` articles (BM25, the feed's own first stage).
fn topic_between(n: &News, lo: usize, hi: usize) -> (String, HashSet<String>) {
    for topic in ["公司", "市场", "发展", "企业", "用户", "中国", "经济", "记者", "北京", "政府"] {
        let body = json!({"query": topic, "mode": "bm25", "limit": 1000, "recall_k": 1000, "with_documents": false});
        let (status, _, res) = http(&n.served.addr, "POST", "/v1/search", &body.to_string()).unwrap();
        assert_eq!(status, 200, "{res}");
        let found: HashSet<String> =
            res["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap().to_owned()).collect();
        if (lo..=hi).contains(&found.len()) {
            return (topic.to_owned(), found);
        }
    }
    panic!("no topic word matches {lo}..={hi} articles");
}

#[test]
fn thirty_pages_with_articles_arriving_between_them_repeat_nothing_and_skip_nothing() {
    let n = news(&[]);
    let (topic, expected) = topic_between(&n, 160, 420);
    let at = |hours: i64| sieve_core::Timestamp::from_unix_seconds(ORIGIN - hours * 3600).unwrap().to_rfc3339();
    let request = json!({"query": topic, "mode": "bm25", "limit": 5, "max_per_source": 2, "diversity": 0.5,
        "decay": {"origin": at(0), "scale": "2d"}});

    let mut seen: HashSet<String> = HashSet::new();
    let mut stories: HashSet<String> = HashSet::new();
    let mut arrived: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut body = request.clone();
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let res = feed(&n.served.addr, &body);
        pages += 1;
        for item in res["items"].as_array().unwrap() {
            assert!(stories.insert(item["cluster"]["id"].as_str().unwrap().to_owned()), "a story twice: {item}");
            for m in ids(&item["cluster"]["members"]) {
                assert!(seen.insert(m.clone()), "{m} shown twice (page {pages})");
            }
        }
        // articles arrive between pages: one new on the topic, and a re-post of this page's first item
        let first = res["items"][0]["document"]["body"].as_str().unwrap_or("").to_owned();
        let new = json!([
            {"id": format!("new-{pages}"), "body": format!("{topic}最新消息：第{pages}条快讯。"), "source": "新浪", "published_at": at(0)},
            {"id": format!("repost-{pages}"), "body": format!("{first}（转载）"), "source": "网易", "published_at": at(0)},
        ]);
        let (status, _, r) = http(&n.served.addr, "POST", "/v1/documents?wait=true", &new.to_string()).unwrap();
        assert!(status == 200 || status == 201, "{status} {r}");
        arrived.extend([format!("new-{pages}"), format!("repost-{pages}")]);
        cursor = res["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() || pages == 200 {
            break;
        }
    }
    assert!(pages >= 30, "the feed ran {pages} pages; the test wants at least 30");
    assert!(cursor.is_none(), "the feed ends");
    for a in &arrived {
        assert!(!seen.contains(a), "{a} arrived after the first page and joined this feed");
    }
    let missing: Vec<&String> = expected.difference(&seen).collect();
    let extra: Vec<&String> = seen.difference(&expected).collect();
    assert!(missing.is_empty() && extra.is_empty(), "skipped {missing:?}; not in the snapshot's matches {extra:?}");
}

#[test]
fn a_tampered_or_foreign_cursor_is_refused_with_a_4xx() {
    let n = news(&[]);
    let body = json!({"query": "公司", "mode": "bm25", "limit": 5});
    let res = feed(&n.served.addr, &body);
    let cursor = res["next_cursor"].as_str().unwrap().to_owned();
    // one character of the payload changed
    let mut chars: Vec<char> = cursor.chars().collect();
    let i = chars.len() / 3;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    for (bad, why) in [(tampered.as_str(), "altered"), ("garbage", "not a cursor")] {
        let mut b = body.clone();
        b["cursor"] = json!(bad);
        let (status, _, err) = http(&n.served.addr, "POST", "/v1/feed", &b.to_string()).unwrap();
        assert!((400..500).contains(&status), "{why}: {status} {err}");
        assert!(err["message"].as_str().unwrap().contains("cursor"), "{err}");
    }
    // a genuine cursor sent with another query
    let other = json!({"query": "银行", "mode": "bm25", "limit": 5, "cursor": cursor});
    let (status, _, err) = http(&n.served.addr, "POST", "/v1/feed", &other.to_string()).unwrap();
    assert!((400..500).contains(&status), "{status} {err}");
    // and the CLI refuses it too, naming the cursor
    let out = crate::run(&[
        "feed",
        "--index",
        s(&n._dir.path().join("news")),
        "公司",
        "--mode",
        "bm25",
        "--cursor",
        &tampered,
    ]);
    assert!(!out.status.success());
    assert!(crate::stderr(&out).contains("cursor"), "{}", crate::stderr(&out));
}

#[test]
fn a_profile_of_liked_articles_and_keywords_feeds_related_stories_but_not_the_liked_ones() {
    let n = news(&[]);
    let liked = n.set.planted[0].clone();
    let body = json!({"profile": {"liked": [liked], "keywords": []}, "mode": "bm25", "limit": 10,
        "decay": {"shape": "none"}});
    let res = feed(&n.served.addr, &body);
    let items = res["items"].as_array().unwrap();
    assert!(!items.is_empty(), "{res}");
    for item in items {
        for m in ids(&item["cluster"]["members"]) {
            assert_ne!(n.set.story[&m], liked, "{m} is the liked story (or a re-post of it)");
        }
    }
    // keywords alone are a topic
    let body = json!({"profile": {"keywords": ["银行"]}, "mode": "bm25", "limit": 5});
    let res = feed(&n.served.addr, &body);
    assert!(
        res["items"].as_array().unwrap().iter().all(|i| i["document"]["body"].as_str().unwrap().contains("银行")
            || i["document"]["title"].as_str().unwrap_or("").contains("银行")),
        "{res}"
    );
    // neither a topic nor a profile
    let (status, _, err) = http(&n.served.addr, "POST", "/v1/feed", &json!({"limit": 5}).to_string()).unwrap();
    assert_eq!(status, 422, "{err}");
    let (status, _, err) =
        http(&n.served.addr, "POST", "/v1/feed", &json!({"query": "x", "decay": {"scale": "1 fortnight"}}).to_string())
            .unwrap();
    assert_eq!(status, 422, "{err}");
    assert!(err["message"].as_str().unwrap().contains("decay.scale"), "{err}");
}
