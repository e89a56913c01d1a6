//! The web UI in a real browser. This builds two real indexes from `../shared/data` and serves them with
//! `sieve serve`:
//! - `products`: 1,500 abt-buy products, plus every product judged for the first 40 labelled queries, plus one
//!   titled `<script>alert(1)</script>`. It has MiniLM vectors and a random-weight reranker
//!   (`sieve models synth`), with those 40 queries as the compare view's judgments.
//! - `news`: the LCSTS articles with sources, dates and planted re-posts (`sieve_eval::news::plant`).
//!
//! The server runs on a random port. `tests/browser/run.mjs` then drives Debian's Chromium through
//! playwright-core over every flow of the UI's acceptance list, runs axe-core on every page in both colour
//! schemes, and writes screenshots. Set `SIEVE_SCREENSHOTS=docs/screenshots` to refresh the committed ones.
//!
//! Needs `node`, `/usr/bin/chromium` and `fonts-noto-cjk`; `scripts/test` installs them (and the npm packages
//! from `tests/browser/package-lock.json`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::eval::shared_data;
use crate::serve::{http, wait_until};
use crate::{ok, s, sieve};

/// Labelled queries the compare view offers.
const JUDGED_QUERIES: usize = 40;

/// The product subset and its judgments folder (`queries.jsonl`, `qrels.tsv`, an empty `corpus.jsonl`).
fn products(dir: &Path) -> (PathBuf, PathBuf) {
    let set = shared_data().join("abt-buy-products");
    let corpus = std::fs::read_to_string(set.join("corpus.jsonl")).unwrap();
    let qrels = std::fs::read_to_string(set.join("qrels.tsv")).unwrap();
    let queries = std::fs::read_to_string(set.join("queries.jsonl")).unwrap();
    let judged: Vec<&str> = queries.lines().take(JUDGED_QUERIES).collect();
    let ids: HashSet<String> =
        judged.iter().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_owned()).collect();
    let qrels: Vec<&str> = qrels.lines().filter(|l| ids.contains(l.split('\t').next().unwrap_or(""))).collect();
    let wanted: HashSet<&str> = qrels.iter().filter_map(|l| l.split('\t').nth(1)).collect();
    let mut rows: Vec<String> = corpus
        .lines()
        .enumerate()
        .filter(|(i, l)| {
            *i < 1500 || {
                let id = serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap_or("").to_owned();
                wanted.contains(id.as_str())
            }
        })
        .map(|(_, l)| l.to_owned())
        .collect();
    rows.push(
        json!({"id": "xss-1", "title": "<script>alert(1)</script> turntable", "body": "A title with markup, shown as text.", "brand": "Acme", "price": 1.0})
            .to_string(),
    );
    let file = dir.join("products.jsonl");
    std::fs::write(&file, rows.join("\n") + "\n").unwrap();
    let labelled = dir.join("judgments");
    std::fs::create_dir_all(&labelled).unwrap();
    std::fs::write(labelled.join("corpus.jsonl"), "").unwrap();
    std::fs::write(labelled.join("queries.jsonl"), judged.join("\n") + "\n").unwrap();
    std::fs::write(labelled.join("qrels.tsv"), qrels.join("\n") + "\n").unwrap();
    (file, labelled)
}

/// The news file, and words of a planted story (one that has re-posts) for the feed flow.
fn news(dir: &Path) -> (PathBuf, String) {
    let corpus = std::fs::read_to_string(shared_data().join("lcsts-p3-zh-news/corpus.jsonl")).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let set = sieve_eval::news::plant(&corpus, 40, now);
    let file = dir.join("news.jsonl");
    let lines: Vec<String> = set.docs.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let planted = &set.planted[0];
    let doc = set.docs.iter().find(|d| d["id"].as_str() == Some(planted.as_str())).unwrap();
    let words = doc["title"].as_str().filter(|t| !t.is_empty()).or(doc["body"].as_str()).unwrap_or_default();
    (file, words.chars().take(20).collect())
}

/// The npm packages of `tests/browser`, installed from the lockfile when missing.
fn browser_kit() -> PathBuf {
    let kit = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !kit.join("node_modules/playwright-core").is_dir() || !kit.join("node_modules/axe-core").is_dir() {
        let out = Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--prefix"]).arg(&kit).output();
        let out = out.expect("npm runs (scripts/test installs node and npm)");
        assert!(out.status.success(), "npm ci in tests/browser failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    kit
}

#[test]
fn the_web_ui_works_in_chromium_accessible_in_both_themes_with_and_without_javascript() {
    let chromium = std::env::var("SIEVE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "{chromium} not found: the browser tests need Debian's chromium and fonts-noto-cjk (scripts/test installs them)"
    );
    let kit = browser_kit();
    let dir = tempfile::tempdir().unwrap();
    let (products, judgments) = products(dir.path());
    let (p_idx, n_idx, reranker) = (dir.path().join("products"), dir.path().join("news"), dir.path().join("reranker"));
    let embed = ["--embedder", "minilm", "--device", "cpu", "--progress", "none"];
    // markup in this catalog stays as the text it is (no HTML cleaning), so the page's escaping is what keeps
    // the `<script>` title inert
    let raw = ["--html-clean", "false"];
    ok(&[&["ingest", "--index", s(&p_idx), s(&products)][..], &embed[..], &raw[..]].concat());
    let (news_file, story) = news(dir.path());
    ok(&["ingest", "--index", s(&n_idx), s(&news_file), "--progress", "none"]);
    ok(&["models", "synth", "--out", s(&reranker), "--layout", "reranker", "--shape", "tiny", "--seed", "5"]);

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let child = sieve()
        .args(["serve", "--listen", &addr, "--device", "cpu", "--embedder", "minilm"])
        .args(["--index", &format!("products={}", s(&p_idx)), "--index", &format!("news={}", s(&n_idx))])
        .args(["--reranker", s(&reranker), "--judgments", &format!("products={}", s(&judgments))])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _served = Killed(child);
    wait_until("the server answers /health", || http(&addr, "GET", "/health", "").map(|r| r.0) == Some(200));

    let shots = std::env::var_os("SIEVE_SCREENSHOTS")
        .map(|d| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(d))
        .unwrap_or_else(|| dir.path().join("screenshots"));
    let out = Command::new("node")
        .arg(kit.join("run.mjs"))
        .arg(format!("http://{addr}"))
        .arg(&shots)
        .env("SIEVE_CHROMIUM", &chromium)
        .env("SIEVE_FEED_QUERY", &story)
        .output()
        .expect("node runs (scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    let server_log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "the browser flows failed:\n{stdout}\n{}\n--- server log (tail) ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        server_log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    for page in ["search", "browse", "news", "feed", "compare", "playground", "ingest", "dashboard"] {
        for width in ["desktop", "phone"] {
            let shot = shots.join(format!("{page}-{width}.png"));
            assert!(shot.is_file(), "a screenshot {}", shot.display());
        }
    }
}

/// Kills the server when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
