//! The API over real HTTP on a random port, with stand-in models (`sieve_models::standin`): every route,
//! every error code, auth, limits, the 429 path, a task's life (including a restart), and the rerank shapes
//! that Cohere, Jina, vLLM and TEI clients send.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sieve_models::standin::{Behaviour, Gate, WordsEmbedder, WordsReranker};
use sieve_pipeline::{EmbedderHandle, RerankerHandle};
use sieve_server::{AppState, IndexConfig, Models, ServerConfig};

// ---------------------------------------------------------------- a minimal HTTP/1.1 client

#[derive(Debug, Clone)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap().trim(), 16).unwrap();
        raw = &raw[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))).collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Resp { status, headers, body }
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn post(addr: SocketAddr, path: &str, body: &Value) -> Resp {
    send(addr, "POST", path, &[JSON], body.to_string().as_bytes())
}

fn get(addr: SocketAddr, path: &str) -> Resp {
    send(addr, "GET", path, &[], b"")
}

// ---------------------------------------------------------------- a server on a random port

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    state: Arc<AppState>,
    /// The stand-in reranker's model calls.
    reranker_calls: Option<Arc<std::sync::atomic::AtomicUsize>>,
}

impl Server {
    fn stop(mut self) -> Arc<AppState> {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
        self.state.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Setup {
    reranker: Option<Behaviour>,
    embedder: bool,
    config: ServerConfig,
}

impl Setup {
    fn new(dir: &Path) -> Setup {
        let config = ServerConfig {
            indexes: vec![IndexConfig { name: "products".into(), path: dir.join("products") }],
            ..ServerConfig::default()
        };
        Setup { reranker: Some(Behaviour::Good), embedder: true, config }
    }

    fn start(self) -> Server {
        let c = &self.config;
        let embedder = self.embedder.then(|| {
            EmbedderHandle::spawn("words", Box::new(WordsEmbedder::new(32)), c.worker_options(c.embed_batch_tokens))
        });
        let mut reranker_calls = None;
        let reranker = self.reranker.map(|b| {
            let model = Box::new(WordsReranker::new(b));
            reranker_calls = Some(model.calls.clone());
            RerankerHandle::spawn("words-reranker", model, c.worker_options(c.rerank_batch_tokens))
        });
        let models = Models { embedder, reranker };
        let cache: Arc<dyn sieve_pipeline::ScoreCache> = Arc::new(sieve_pipeline::LruScoreCache::new(1000));
        let engines =
            c.indexes.iter().map(|i| sieve_server::open_index(i, &models, cache.clone(), c).unwrap()).collect();
        let state = Arc::new(AppState::new(self.config, engines, models, cache).unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                sieve_server::serve(listener, st, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Server { addr, stop: Some(stop), thread: Some(thread), state, reranker_calls }
    }
}

fn products() -> Value {
    json!([
        {"id": "p1", "title": "Lenovo ThinkPad laptop 14 inch", "body": "business laptop", "brand": "Lenovo", "price": 900.0, "category": "computers/laptops"},
        {"id": "p2", "title": "Dell XPS 13 notebook", "body": "ultrabook with reviews from owners", "brand": "Dell", "price": 1200.0, "category": "computers/laptops"},
        {"id": "p3", "title": "Sony WH-1000XM4 headphones", "body": "noise cancelling", "brand": "Sony", "price": 300.0, "category": "audio/headphones"},
        {"id": "p4", "title": "Bose QuietComfort earphones", "body": "wireless", "brand": "Bose", "price": 250.0, "category": "audio/headphones"},
        {"id": "p5", "title": "Laptop sleeve 13 inch", "body": "neoprene bag for a laptop", "brand": "Generic", "price": 20.0, "category": "computers/accessories"},
        {"id": "p6", "title": "USB-C charger", "body": "65W power adapter for laptop and phone", "brand": "Anker", "price": 40.0, "category": "computers/accessories"},
        {"title": "a row without an id"}
    ])
}

/// The BM25 commit the products index's vector graph on disk reflects (`vectors/state.json`).
fn saved_generation(dir: &Path) -> u64 {
    let state = std::fs::read(dir.join("products/vectors/state.json")).unwrap();
    serde_json::from_slice::<Value>(&state).unwrap()["generation"].as_u64().unwrap()
}

/// The products index's last BM25 commit.
fn generation(state: &AppState) -> u64 {
    state.indexes["products"].engine.text().generation().unwrap()
}

fn wait_task(addr: SocketAddr, id: u64, headers: &[(&str, &str)]) -> Value {
    let started = Instant::now();
    loop {
        let r = send(addr, "GET", &format!("/v1/tasks/{id}"), headers, b"");
        assert_eq!(r.status, 200, "{}", r.text());
        let t = r.json();
        if t["status"] == "succeeded" || t["status"] == "failed" {
            return t;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "task {id} did not finish: {t}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The paths in `value` that `schema` (resolved through `spec`'s components) does not declare: object keys
/// missing from `properties`, and values of an undeclared type.
fn undeclared_fields(spec: &Value, schema: &Value, value: &Value, path: &str) -> Vec<String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        return undeclared_fields(spec, &spec["components"]["schemas"][name], value, path);
    }
    if let Some(options) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        // the closest option's complaints (none when one fits)
        return options
            .iter()
            .map(|o| undeclared_fields(spec, o, value, path))
            .min_by_key(Vec::len)
            .unwrap_or_default();
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return Vec::new(), // (no type: anything goes)
    };
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let declared = types.contains(&kind) || (kind == "integer" && types.contains(&"number"));
    if !declared {
        return vec![format!("{path}: {kind}, declared {types:?}")];
    }
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| {
                let at = format!("{path}.{k}");
                match (&schema["properties"][k], &schema["additionalProperties"]) {
                    (Value::Null, Value::Object(_)) => undeclared_fields(spec, &schema["additionalProperties"], v, &at),
                    (Value::Null, _) if schema["properties"].is_object() => vec![at],
                    (Value::Null, _) => Vec::new(), // a free-form object
                    (field, _) => undeclared_fields(spec, field, v, &at),
                }
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .flat_map(|(i, v)| match schema["prefixItems"].get(i) {
                Some(item) => undeclared_fields(spec, item, v, &format!("{path}[{i}]")),
                None => undeclared_fields(spec, &schema["items"], v, &format!("{path}[{i}]")),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Polls `cond` (server state seen over HTTP) until it holds; the deadline is generous, so a loaded machine
/// is slow, not wrong.
#[track_caller]
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn metric(addr: SocketAddr, headers: &[(&str, &str)], line_prefix: &str) -> f64 {
    let text = send(addr, "GET", "/metrics", headers, b"").text();
    text.lines()
        .filter(|l| l.starts_with(line_prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

// ---------------------------------------------------------------- the tests

#[test]
fn a_documents_life_search_facets_and_the_system_routes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Setup::new(dir.path()).start();
    let a = server.addr;

    // upsert, waiting: one bad row is reported with its position, the rest is indexed
    let r = post(a, "/v1/documents?wait=true", &products());
    assert_eq!(r.status, 200, "{}", r.text());
    let task = r.json();
    assert_eq!(
        (task["status"].as_str(), task["indexed"].as_u64(), task["rejected"].as_u64()),
        (Some("succeeded"), Some(6), Some(1))
    );
    assert_eq!(task["errors"][0]["line"], 7);
    assert_eq!(task["errors"][0]["code"], "missing_field");
    assert!(r.header("location").unwrap().starts_with("/v1/tasks/"));

    // NDJSON, not waiting: 202 and a task to follow
    let ndjson = "{\"id\":\"p7\",\"title\":\"Laptop stand aluminium\",\"price\":35.5,\"brand\":\"Generic\"}\n{broken\n";
    let r = send(a, "POST", "/v1/documents", &[("Content-Type", "application/x-ndjson")], ndjson.as_bytes());
    assert_eq!(r.status, 202, "{}", r.text());
    let t = wait_task(a, r.json()["id"].as_u64().unwrap(), &[]);
    assert_eq!((t["indexed"].as_u64(), t["rejected"].as_u64(), t["received"].as_u64()), (Some(1), Some(1), Some(2)));
    assert_eq!(t["errors"][0]["code"], "malformed_json");
    assert_eq!(get(a, "/v1/tasks?limit=5").json().as_array().unwrap().len(), 2);

    // search: hybrid + rerank, facets over the final ranked set, explanations, timing headers
    let r = post(
        a,
        "/v1/search",
        &json!({"query": "laptop", "limit": 2, "facets": ["brand", "category", "price"], "explain": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let res = r.json();
    assert_eq!(res["hits"].as_array().unwrap().len(), 2);
    assert!(res["reranked"].as_bool().unwrap(), "{res}");
    let top = &res["hits"][0];
    assert_eq!(top["id"], "p2", "the stand-in reranker favours the document with reviews: {res}");
    // p2 says "notebook": only the dense leg found it, and the reranker lifted it
    for stage in ["dense", "fused", "rerank", "timings"] {
        assert!(!top["scores"][stage].is_null(), "{stage} missing: {top}");
    }
    assert!(top["scores"]["bm25"].is_null());
    assert!(!res["hits"][1]["scores"]["bm25"].is_null(), "{res}");
    let total = res["total"].as_u64().unwrap();
    let brand_sum: u64 = res["facets"]["brand"].as_array().unwrap().iter().map(|c| c["count"].as_u64().unwrap()).sum();
    assert_eq!(brand_sum, total, "facets count the whole ranked set, not the page");
    for h in ["x-total-time", "x-queue-time", "x-inference-time"] {
        assert!(r.header(h).unwrap().parse::<f64>().unwrap() >= 0.0, "{h}");
    }
    assert!(r.header("x-inference-time").unwrap().parse::<f64>().unwrap() > 0.0);

    // filters, sort and pagination
    let r = post(
        a,
        "/v1/search",
        &json!({"query": "laptop", "rerank": false, "filters": ["price<1000"], "sort": "price:asc", "limit": 2, "offset": 1, "mode": "hybrid"}),
    );
    let res = r.json();
    let prices: Vec<f64> =
        res["hits"].as_array().unwrap().iter().map(|h| h["document"]["price"].as_f64().unwrap()).collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]) && prices.iter().all(|p| *p < 1000.0), "{res}");
    assert_eq!(res["hits"][0]["rank"], 2);
    assert!(!res["reranked"].as_bool().unwrap());
    let bm25 = post(a, "/v1/search", &json!({"query": "laptop", "mode": "bm25", "rerank": false})).json();
    assert!(bm25["hits"].as_array().unwrap().iter().all(|h| h["scores"]["dense"].is_null()));

    // browsing: an empty query lists every product that passes the filters, in the sort, with exact totals
    let r = post(
        a,
        "/v1/search",
        &json!({"query": "", "filters": ["category=computers"], "sort": "price:desc", "limit": 3, "facets": ["brand"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let browse = r.json();
    let ids: Vec<&str> = browse["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap()).collect();
    assert_eq!((browse["total"].as_u64(), ids), (Some(4), vec!["p2", "p1", "p6"]), "{browse}");
    assert!(!browse["reranked"].as_bool().unwrap(), "nothing to rerank without a query");

    // suggest: the word being typed completed from titles, a brand, the products
    let r = post(a, "/v1/suggest", &json!({"query": "lap", "limit": 3}));
    assert_eq!(r.status, 200, "{}", r.text());
    let sug = r.json();
    assert_eq!(sug["completions"][0], json!({"text": "laptop", "kind": "word", "count": 3}), "{sug}");
    assert_eq!(sug["products"].as_array().unwrap().len(), 3);
    let r = post(a, "/v1/suggest", &json!({"query": "so"}));
    assert!(r.json()["completions"].as_array().unwrap().iter().any(|c| c["kind"] == "brand" && c["text"] == "sony"));
    assert_eq!(post(a, "/v1/suggest", &json!({"query": "lap", "limit": 21})).code(), "invalid_request");

    // documents: get, delete, gone
    let r = get(a, "/v1/documents/p3");
    assert_eq!((r.status, r.json()["brand"].as_str()), (200, Some("Sony")));
    let r = send(a, "DELETE", "/v1/documents/p3?wait=true", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!((r.json()["status"].as_str(), r.json()["deleted"].as_u64()), (Some("succeeded"), Some(1)));
    assert_eq!(get(a, "/v1/documents/p3").status, 404);
    assert_eq!(send(a, "DELETE", "/v1/documents/p3", &[], b"").code(), "not_found");
    let hits = post(a, "/v1/search", &json!({"query": "headphones", "rerank": false})).json();
    assert!(hits["hits"].as_array().unwrap().iter().all(|h| h["id"] != "p3"), "{hits}");

    // system routes
    assert_eq!(get(a, "/health").json()["status"], "ok");
    let ready = get(a, "/ready");
    assert_eq!((ready.status, ready.json()["ready"].as_bool()), (200, Some(true)));
    assert_eq!(ready.json()["indexes"][0]["documents"], 6);
    let info = get(a, "/v1/info").json();
    assert_eq!(info["limits"]["max_rerank_documents"], 1000);
    assert_eq!(info["reranker"]["role"], "reranker");
    let spec = get(a, "/openapi.json").json();
    for path in [
        "/v1/search",
        "/v1/suggest",
        "/v1/rerank",
        "/rerank",
        "/v2/rerank",
        "/v1/embeddings",
        "/v1/documents",
        "/v1/documents/{id}",
        "/v1/tasks/{id}",
        "/health",
        "/ready",
        "/v1/info",
        "/metrics",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    // the answers are the shape the document declares, down to every hit's score breakdown
    for (value, schema) in [(&res, "SearchResult"), (&info, "Info"), (&sug, "SuggestResult"), (&browse, "SearchResult")]
    {
        let undeclared =
            undeclared_fields(&spec, &json!({"$ref": format!("#/components/schemas/{schema}")}), value, "");
        assert!(undeclared.is_empty(), "{schema}: fields missing from /openapi.json: {undeclared:?}");
    }
    assert_eq!(
        spec["components"]["schemas"]["SearchResult"]["properties"]["hits"]["items"]["$ref"],
        "#/components/schemas/Hit"
    );
    let mut odd = res["hits"][0].clone();
    odd["scores"]["rerank"]["surprise"] = json!(1);
    odd["rank"] = json!("first");
    let hit = json!({"$ref": "#/components/schemas/Hit"});
    assert_eq!(undeclared_fields(&spec, &hit, &odd, "").len(), 2, "the check itself must see undeclared fields");
    assert_eq!(spec["components"]["schemas"]["SearchBody"]["properties"]["limit"]["maximum"], 1000);
    let m = get(a, "/metrics");
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let text = m.text();
    for series in [
        "sieve_http_request_duration_seconds_bucket{route=\"/v1/search\"",
        "sieve_search_stage_duration_seconds_count{stage=\"rerank\"}",
        "sieve_worker_batch_size_count{worker=\"reranker\"}",
        "sieve_worker_queue_depth{worker=\"embedder\"}",
        "sieve_rerank_score_count{route=\"search\"}",
        "sieve_rerank_cache_hit_ratio",
        "sieve_errors_total{code=\"not_found\"}",
        "sieve_index_documents{index=\"products\"} 6",
        "sieve_tasks{status=\"succeeded\"} 3",
    ] {
        assert!(text.contains(series), "{series} missing from /metrics:\n{text}");
    }
}

#[test]
fn cohere_jina_vllm_and_tei_rerank_requests_get_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let server = Setup::new(dir.path()).start();
    let a = server.addr;
    let docs = ["a laptop bag", "laptop with reviews", "a phone charger"];

    // Cohere v2: strings, top_n, max_tokens_per_doc
    let r = post(
        a,
        "/v2/rerank",
        &json!({"model": "rerank-v3.5", "query": "laptop", "documents": docs, "top_n": 2, "max_tokens_per_doc": 512}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    assert_eq!(v["results"][0]["index"], 1);
    assert!(
        v["results"][0]["relevance_score"].as_f64().unwrap() >= v["results"][1]["relevance_score"].as_f64().unwrap()
    );
    assert!(v["id"].is_string() && v["meta"]["billed_units"]["search_units"] == 1);
    assert!(v["results"][0]["document"].is_null(), "documents only when asked");

    // Jina: {text} objects and return_documents
    let objects: Vec<Value> = docs.iter().map(|d| json!({"text": d})).collect();
    let v = post(
        a,
        "/v1/rerank",
        &json!({"model": "jina-reranker-v2", "query": "laptop", "documents": objects, "return_documents": true}),
    )
    .json();
    assert_eq!(v["results"].as_array().unwrap().len(), 3);
    assert_eq!(v["results"][0]["document"]["text"], "laptop with reviews");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0 && v["model"] == "jina-reranker-v2");

    // vLLM: /rerank, top_n 0 means all; an instruction is honoured (not dropped)
    let v =
        post(a, "/rerank", &json!({"query": "laptop", "documents": docs, "top_n": 0, "instruction": "Find laptops"}))
            .json();
    assert_eq!(v["results"].as_array().unwrap().len(), 3);
    let scores: Vec<f64> =
        v["results"].as_array().unwrap().iter().map(|r| r["relevance_score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "sorted by score: {scores:?}");
    assert_eq!(v["model"], "words-reranker");

    // TEI: texts, raw_scores, return_text → a bare array
    let r = post(
        a,
        "/rerank",
        &json!({"query": "laptop", "texts": docs, "raw_scores": true, "return_text": true, "truncate": true, "truncation_direction": "Right"}),
    );
    let v = r.json();
    let arr = v.as_array().unwrap_or_else(|| panic!("TEI gets a bare array: {v}"));
    assert_eq!(arr.len(), 3);
    assert_eq!((arr[0]["index"].as_u64(), arr[0]["text"].as_str()), (Some(1), Some("laptop with reviews")));
    assert!(arr[0]["score"].as_f64().unwrap() > 1.0, "raw logit, not a probability: {v}");

    // embeddings: OpenAI shape, query instruction, Matryoshka, base64
    let v = post(a, "/v1/embeddings", &json!({"input": "a laptop", "model": "text-embedding-3-small"})).json();
    assert_eq!((v["object"].as_str(), v["data"][0]["object"].as_str()), (Some("list"), Some("embedding")));
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 32);
    let v = post(
        a,
        "/v1/embeddings",
        &json!({"input": ["a laptop", "a phone"], "dimensions": 8, "input_type": "query", "encoding_format": "base64"}),
    )
    .json();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let b64 = v["data"][1]["embedding"].as_str().unwrap();
    use base64::Engine as _;
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(b64).unwrap().len(), 8 * 4);
    assert_eq!(v["data"][1]["index"], 1);
}

#[test]
fn rerank_requests_reuse_cached_scores_and_only_new_pairs_reach_the_model() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    let server = Setup::new(dir.path()).start();
    let a = server.addr;
    let calls = server.reranker_calls.clone().unwrap();
    let result = |v: &Value, i: u64| -> Value {
        v["results"].as_array().unwrap().iter().find(|r| r["index"] == i).unwrap_or_else(|| panic!("{v}")).clone()
    };
    let tokens = |v: &Value| v["usage"]["total_tokens"].as_u64().unwrap();

    let first =
        post(a, "/v1/rerank", &json!({"query": "laptop", "documents": ["a laptop bag", "laptop with reviews"]}));
    assert_eq!(first.status, 200, "{}", first.text());
    let first = first.json();
    assert_eq!(calls.load(SeqCst), 1);
    assert!(first["results"].as_array().unwrap().iter().all(|r| r["cached"] == false), "{first}");

    // the same two pairs and a new one: only the new one is scored, the others come back as the model gave them
    let docs = ["a laptop bag", "a phone charger", "laptop with reviews"];
    let second = post(a, "/v1/rerank", &json!({"query": "laptop", "documents": docs})).json();
    assert_eq!(calls.load(SeqCst), 2);
    assert_eq!([0, 1, 2].map(|i| result(&second, i)["cached"].clone()), [json!(true), json!(false), json!(true)]);
    for (now, before) in [(0, 0), (2, 1)] {
        for field in ["relevance_score", "raw_score", "truncated"] {
            assert_eq!(result(&second, now)[field], result(&first, before)[field], "{field}");
        }
    }
    assert_eq!(result(&second, 2)["index"], 2);
    assert_eq!(second["results"][0]["index"], 2, "still sorted by score: {second}");
    // usage counts every pair's tokens, cached or not ("a phone charger": 1 + 3 words + 20 template tokens)
    assert_eq!(tokens(&second), tokens(&first) + 24);
    let spec = get(a, "/openapi.json").json();
    let schema = json!({"$ref": "#/components/schemas/RerankResult"});
    assert_eq!(undeclared_fields(&spec, &schema, &second, ""), Vec::<String>::new());

    // TEI's shape shares the entries: no model call
    let tei = post(a, "/rerank", &json!({"query": "laptop", "texts": docs})).json();
    assert_eq!((calls.load(SeqCst), tei.as_array().unwrap().len()), (2, 3));

    // an instruction or a token limit changes the score, so they are other entries
    post(a, "/v1/rerank", &json!({"query": "laptop", "documents": docs, "instruction": "Find laptops"}));
    assert_eq!(calls.load(SeqCst), 3);
    let limited = post(a, "/v1/rerank", &json!({"query": "laptop", "documents": docs, "max_length": 64})).json();
    assert_eq!(calls.load(SeqCst), 4);
    assert!(limited["results"].as_array().unwrap().iter().all(|r| r["cached"] == false));

    // `cache: false` scores everything again
    let fresh = post(a, "/v1/rerank", &json!({"query": "laptop", "documents": docs, "cache": false})).json();
    assert_eq!(calls.load(SeqCst), 5);
    assert!(fresh["results"].as_array().unwrap().iter().all(|r| r["cached"] == false), "{fresh}");
    assert_eq!(result(&fresh, 1)["relevance_score"], result(&second, 1)["relevance_score"]);

    // the metrics count the /v1/rerank lookups: 2 + 3 hits, 2 + 1 + 3 + 3 misses (`cache: false` looks nothing up)
    assert_eq!(metric(a, &[], "sieve_rerank_cache_hits_total"), 5.0);
    assert_eq!(metric(a, &[], "sieve_rerank_cache_misses_total"), 9.0);
}

#[test]
fn every_error_code_has_its_status_and_says_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.config.max_body_bytes = 4096;
    setup.config.max_rerank_documents = 5;
    setup.config.max_document_chars = 100;
    setup.config.api_key = Some("s3cret".into());
    setup.reranker = Some(Behaviour::Fail);
    let server = setup.start();
    let a = server.addr;
    let auth = [("Authorization", "Bearer s3cret")];

    let check = |r: Resp, status: u16, code: &str, words: &str| {
        assert_eq!((r.status, r.code().as_str()), (status, code), "{}", r.text());
        assert!(r.json()["message"].as_str().unwrap().contains(words), "{}", r.text());
        assert!(r.header("x-total-time").is_some());
    };
    check(send(a, "POST", "/v1/search", &[JSON], b"{\"query\": "), 400, "invalid_json", "not valid JSON");
    check(post(a, "/v1/search", &json!({"query": 3})), 422, "invalid_request", "expected a string");
    check(post(a, "/v1/search", &json!({"query": "x", "limti": 3})), 422, "invalid_request", "limti");
    check(
        post(a, "/v1/search", &json!({"query": "x", "limit": 0})),
        422,
        "invalid_request",
        "`limit`: expected 1..=1000, found 0",
    );
    check(post(a, "/v1/search", &json!({"query": "x", "filters": ["price<<3"]})), 422, "invalid_request", "filters");
    check(post(a, "/v1/search", &json!({"query": "x", "sort": "colour:up"})), 422, "invalid_request", "price:asc");
    check(post(a, "/v1/search", &json!({"query": "x", "index": "nope"})), 404, "not_found", "products");
    check(
        send(a, "POST", "/v1/search", &[("Content-Type", "text/plain")], b"{}"),
        415,
        "unsupported_media_type",
        "application/json",
    );
    check(get(a, "/v2/search"), 404, "not_found", "/v2/search");
    check(send(a, "PUT", "/v1/search", &[], b""), 405, "method_not_allowed", "PUT");
    let big = format!("{{\"query\": \"{}\"}}", "x".repeat(5000));
    check(send(a, "POST", "/v1/search", &[JSON], big.as_bytes()), 413, "payload_too_large", "4096 bytes");
    check(
        post(a, "/v1/rerank", &json!({"query": "q", "documents": vec!["a"; 6]})),
        413,
        "payload_too_large",
        "limit of 5",
    );
    check(
        post(a, "/v1/rerank", &json!({"query": "q", "documents": ["y".repeat(101)]})),
        413,
        "payload_too_large",
        "max_document_chars); send `truncate: true` to cut it instead",
    );
    // a query is never cut: its 413 does not suggest `truncate`, which search does not take
    for (path, body) in [
        ("/v1/search", json!({"query": "q".repeat(101)})),
        ("/v1/rerank", json!({"query": "q".repeat(101), "documents": ["a"], "truncate": true})),
    ] {
        let r = post(a, path, &body);
        check(r.clone(), 413, "payload_too_large", "the query is 101 characters");
        assert!(!r.text().contains("truncate"), "{path}: {}", r.text());
    }
    check(post(a, "/v1/rerank", &json!({"query": "q"})), 422, "invalid_request", "neither");
    check(
        post(a, "/v1/rerank", &json!({"query": "q", "texts": ["a"], "truncation_direction": "left"})),
        422,
        "invalid_request",
        "right",
    );
    check(post(a, "/v1/embeddings", &json!({"input": []})), 422, "invalid_request", "non-empty");
    check(post(a, "/v1/embeddings", &json!({"input": "a", "dimensions": 33})), 422, "invalid_request", "1..=32");
    let r = send(a, "POST", "/v1/documents?wait=true", &[JSON, auth[0]], products().to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    // the model itself fails: 424 for the rerank API, a degraded (never failed) search
    check(
        post(a, "/v1/rerank", &json!({"query": "q", "documents": ["a"], "truncate": true})),
        424,
        "model_error",
        "out of memory",
    );
    let r = post(a, "/v1/search", &json!({"query": "laptop"}));
    assert_eq!(r.status, 200);
    assert!(
        r.json()["degraded"].as_bool().unwrap() && r.json()["reasons"][0].as_str().unwrap().contains("not reranked")
    );

    // auth on write and admin routes only
    check(post(a, "/v1/documents", &products()), 401, "unauthorized", "Bearer");
    check(
        send(a, "POST", "/v1/documents", &[JSON, ("Authorization", "Bearer wrong")], b"[]"),
        401,
        "unauthorized",
        "not valid",
    );
    check(get(a, "/v1/tasks/1"), 401, "unauthorized", "Bearer");
    check(get(a, "/metrics"), 401, "unauthorized", "Bearer");
    assert_eq!(send(a, "GET", "/metrics", &auth, b"").status, 200);
    // the scheme name is case-insensitive (RFC 7235); the key is not
    for header in ["bearer s3cret", "BEARER s3cret", "Bearer  s3cret"] {
        assert_eq!(send(a, "GET", "/metrics", &[("Authorization", header)], b"").status, 200, "{header}");
    }
    check(send(a, "GET", "/metrics", &[("Authorization", "bearer S3CRET")], b""), 401, "unauthorized", "not valid");
    check(send(a, "GET", "/metrics", &[("Authorization", "Basic s3cret")], b""), 401, "unauthorized", "not valid");
    assert_eq!(get(a, "/v1/info").status, 200);
    let doc_body = json!([{"id": "d1", "title": "t"}]).to_string();
    check(send(a, "POST", "/v1/documents", &[JSON, auth[0]], b"[]"), 422, "invalid_request", "at least one document");
    check(send(a, "POST", "/v1/documents", &[JSON, auth[0]], b"42"), 422, "invalid_request", "a number");
    check(
        send(a, "POST", "/v1/documents", &[("Content-Type", "text/csv"), auth[0]], doc_body.as_bytes()),
        415,
        "unsupported_media_type",
        "ndjson",
    );
    check(
        send(a, "POST", "/v1/documents?wait=maybe", &[JSON, auth[0]], doc_body.as_bytes()),
        422,
        "invalid_request",
        "query string",
    );
    check(send(a, "GET", "/v1/tasks/x", &auth, b""), 422, "invalid_request", "task id");
    check(send(a, "GET", "/v1/tasks/999", &auth, b""), 404, "not_found", "999");
    check(send(a, "GET", "/v1/tasks?limit=0", &auth, b""), 422, "invalid_request", "limit");
    check(get(a, &format!("/v1/documents/{}", "i".repeat(600))), 422, "invalid_request", "document id");
    // a path that does not decode gets the JSON error shape too (it was axum's plain-text 400)
    let r = get(a, "/v1/documents/%ff%fe");
    check(r.clone(), 422, "invalid_request", "invalid path");
    assert_eq!(r.header("content-type"), Some("application/json"), "{}", r.text());
    check(send(a, "GET", "/v1/tasks/%ff", &auth, b""), 422, "invalid_request", "invalid path");
    let errors = metric(a, &auth, "sieve_errors_total{code=\"unauthorized\"}");
    assert!(errors >= 4.0, "{errors}");

    // a server without models: 501 for the model routes, dense-only search is 422
    drop(server);
    let dir2 = tempfile::tempdir().unwrap();
    let mut bare = Setup::new(dir2.path());
    bare.reranker = None;
    bare.embedder = false;
    let server = bare.start();
    let a = server.addr;
    check(post(a, "/v1/rerank", &json!({"query": "q", "documents": ["a"]})), 501, "model_not_loaded", "--reranker");
    check(post(a, "/v1/embeddings", &json!({"input": "a"})), 501, "model_not_loaded", "--embedder");
    check(post(a, "/v1/search", &json!({"query": "q", "mode": "dense"})), 422, "dense_unavailable", "no embeddings");
    let r = post(a, "/v1/search", &json!({"query": "q"}));
    assert_eq!(r.status, 200, "hybrid runs BM25 alone on a BM25-only index: {}", r.text());
}

#[test]
fn a_full_queue_answers_429_with_retry_after_and_abandoned_requests_never_reach_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let mut setup = Setup::new(dir.path());
    setup.reranker = Some(Behaviour::Gated(gate.clone()));
    setup.config.max_queue = 1;
    setup.config.batch_wait_ms = 0;
    let server = setup.start();
    let a = server.addr;
    // (`cache: false`: every request must reach the model's queue, not the score cache)
    let body = json!({"query": "laptop", "documents": ["a laptop"], "cache": false}).to_string();
    let rerank = |a: SocketAddr, body: &str| {
        let body = body.to_owned();
        std::thread::spawn(move || send(a, "POST", "/v1/rerank", &[JSON], body.as_bytes()))
    };
    let jobs = |a: SocketAddr| metric(a, &[], "sieve_worker_jobs_total{worker=\"reranker\"}");
    let queued = |a: SocketAddr| metric(a, &[], "sieve_worker_queue_depth{worker=\"reranker\"}");

    // request 1 holds the model (its gate is shut), request 2 fills the queue of 1, and four more are refused
    // at once, while the model is still busy
    let busy = rerank(a, &body);
    wait_for("request 1 in the model", || jobs(a) == 1.0);
    let waiting = rerank(a, &body);
    wait_for("request 2 in the queue", || queued(a) == 1.0);
    for _ in 0..4 {
        let r = post(a, "/v1/rerank", &serde_json::from_str(&body).unwrap());
        assert_eq!(
            (r.status, r.code().as_str(), r.header("retry-after")),
            (429, "overloaded", Some("1")),
            "{}",
            r.text()
        );
        assert!(r.json()["message"].as_str().unwrap().contains("limit 1"));
    }
    assert_eq!(metric(a, &[], "sieve_worker_rejected_total{worker=\"reranker\"}"), 4.0);
    gate.open();
    assert_eq!(busy.join().unwrap().status, 200);
    assert_eq!(waiting.join().unwrap().status, 200);
    drop(server);

    // a client that goes away while its request waits behind a busy model: the job is dropped before compute
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let mut setup = Setup::new(dir.path());
    setup.reranker = Some(Behaviour::Gated(gate.clone()));
    setup.config.batch_wait_ms = 0;
    let server = setup.start();
    let a = server.addr;
    let calls = server.reranker_calls.clone().unwrap();
    let busy = rerank(a, &body);
    wait_for("the first request in the model", || jobs(a) == 1.0);
    {
        let mut s = TcpStream::connect(a).unwrap();
        let req = format!(
            "POST /v1/rerank HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        wait_for("the second request in the queue", || queued(a) == 1.0);
        s.shutdown(std::net::Shutdown::Both).unwrap();
    }
    wait_for("the server to see the client go", || metric(a, &[], "sieve_http_requests_abandoned_total") == 1.0);
    gate.open();
    assert_eq!(busy.join().unwrap().status, 200);
    wait_for("the abandoned job to be dropped", || {
        metric(a, &[], "sieve_worker_dropped_total{worker=\"reranker\",reason=\"disconnected\"}") == 1.0
    });
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "the abandoned job never reached the model");
    drop(server);

    // past the model budget of the rerank API: 504; while stopping: 503 for writes and readiness
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.reranker = Some(Behaviour::Slow(Duration::from_millis(400)));
    setup.config.model_timeout_ms = 50;
    let server = setup.start();
    let a = server.addr;
    let r = post(a, "/v1/rerank", &json!({"query": "q", "documents": ["a"]}));
    assert_eq!((r.status, r.code().as_str()), (504, "timeout"), "{}", r.text());
    assert!(r.json()["message"].as_str().unwrap().contains("50 ms"));
    server.state.begin_stopping();
    let r = post(a, "/v1/documents", &json!([{"id": "x", "title": "y"}]));
    assert_eq!((r.status, r.code().as_str(), r.header("retry-after")), (503, "unavailable", Some("5")), "{}", r.text());
    let r = get(a, "/ready");
    assert_eq!((r.status, r.json()["problems"][0].as_str()), (503, Some("shutting down")));
}

#[test]
fn an_interrupted_task_resumes_after_a_restart_and_shutdown_drains_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = Setup::new(dir.path()).start();
    let a = server.addr;
    assert_eq!(post(a, "/v1/documents?wait=true", &products()).status, 200);
    let state = server.stop();
    assert!(state.shutting_down());

    // as a crash would leave it: a task recorded as processing, its body on disk
    let tasks = dir.path().join("products").join("tasks");
    let body: String = (0..50).map(|i| format!("{{\"id\":\"n{i}\",\"title\":\"notebook {i}\"}}\n")).collect();
    std::fs::write(tasks.join("7.ndjson"), &body).unwrap();
    let record = json!({"id": 7, "index": "products", "kind": "upsert", "status": "processing", "received": 50,
        "read": 0, "indexed": 0, "rejected": 0, "deleted": 0, "errors": [], "resumed": 0, "enqueued_at": 1});
    std::fs::write(tasks.join("7.json"), record.to_string()).unwrap();

    let gate = Gate::new();
    gate.open(); // shut below, to hold a request in the model while the server shuts down
    let mut again = Setup::new(dir.path());
    again.reranker = Some(Behaviour::Gated(gate.clone()));
    let server = again.start();
    let a = server.addr;
    let t = wait_task(a, 7, &[]);
    assert_eq!(
        (t["status"].as_str(), t["indexed"].as_u64(), t["resumed"].as_u64()),
        (Some("succeeded"), Some(50), Some(1)),
        "{t}"
    );
    assert_eq!(get(a, "/ready").json()["indexes"][0]["documents"], 56);
    // new tasks get ids after the recovered ones
    let r = post(a, "/v1/documents", &json!([{"id": "z", "title": "zebra"}]));
    assert_eq!(r.json()["id"], 8);
    assert_eq!(wait_task(a, 8, &[])["status"], "succeeded");
    // task 7 was the first change since the start, so its graph was saved at once; task 8's is held back by
    // `vector_save_interval_secs` (60 s) ... and written at shutdown, below
    let (saved, now) = (saved_generation(dir.path()), generation(&server.state));
    assert!(saved < now, "saved {saved} at commit {now}");
    let dense = post(a, "/v1/search", &json!({"query": "zebra", "mode": "dense", "rerank": false})).json();
    assert_eq!(dense["hits"][0]["id"], "z", "searchable before it is saved: {dense}");
    let last = generation(&server.state);

    // a request in flight when shutdown starts still gets its answer; new writes are refused meanwhile
    gate.close();
    let jobs = || metric(a, &[], "sieve_worker_jobs_total{worker=\"reranker\"}");
    let before = jobs();
    let slow =
        std::thread::spawn(move || post(a, "/v1/rerank", &json!({"query": "notebook", "documents": ["a notebook"]})));
    wait_for("the request in the model", || jobs() == before + 1.0);
    // the model answers only once the shutdown has begun
    let opener = {
        let (state, gate) = (server.state.clone(), gate.clone());
        std::thread::spawn(move || {
            while !state.shutting_down() {
                std::thread::yield_now();
            }
            gate.open();
        })
    };
    let state = server.stop();
    opener.join().unwrap();
    let answer = slow.join().unwrap();
    assert_eq!(answer.status, 200, "shutdown waited for the request in flight: {}", answer.text());
    assert!(state.tasks.get(8).is_some_and(|t| t.status == sieve_server::tasks::TaskStatus::Succeeded));
    assert_eq!(saved_generation(dir.path()), last, "the held-back graph was saved at shutdown");
}

#[test]
fn finished_tasks_past_the_limit_are_removed_with_their_files_and_checkpoint_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.config.max_finished_tasks = 2;
    let server = setup.start();
    let a = server.addr;
    let tasks_dir = dir.path().join("products").join("tasks");
    let task_entries = |state: &AppState| {
        let engine = &state.indexes["products"].engine;
        let checkpoint = engine.text().checkpoint().unwrap();
        let dir = std::fs::canonicalize(&tasks_dir).unwrap();
        checkpoint.sources.iter().filter(|s| Path::new(&s.source).starts_with(&dir)).count()
    };
    // five writes, one with a rejected row (a reject report on disk), then a delete
    let mut ids = Vec::new();
    for i in 0..5 {
        let body = json!([{"id": format!("d{i}"), "title": format!("document {i}")}, {"title": "no id"}]);
        let r = post(a, "/v1/documents?wait=true", &if i == 0 { body } else { json!([body[0]]) });
        assert_eq!(r.status, 200, "{}", r.text());
        ids.push(r.json()["id"].as_u64().unwrap());
        // at most the latest upsert's entry is in the commit: earlier ones are dropped by the next commit
        assert!(task_entries(&server.state) <= 1, "after task {i}: {} task entries", task_entries(&server.state));
    }
    let r = send(a, "DELETE", "/v1/documents/d0?wait=true", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    ids.push(r.json()["id"].as_u64().unwrap());
    assert_eq!(task_entries(&server.state), 0, "the delete's commit dropped the last upsert's entry");

    // only the two newest finished tasks are kept, in memory and on disk
    let listed: Vec<u64> =
        get(a, "/v1/tasks").json().as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert_eq!(listed, vec![ids[5], ids[4]]);
    assert_eq!(get(a, &format!("/v1/tasks/{}", ids[0])).status, 404);
    let mut files: Vec<String> =
        std::fs::read_dir(&tasks_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, vec![format!("{}.json", ids[4]), format!("{}.json", ids[5])]);
    assert_eq!(get(a, "/ready").json()["indexes"][0]["documents"], 4);

    // after a restart, ids go on from the newest kept task
    server.stop();
    let server = Setup::new(dir.path()).start();
    let r = post(server.addr, "/v1/documents", &json!([{"id": "z", "title": "zebra"}]));
    assert_eq!(r.json()["id"], ids[5] + 1);
}

#[test]
fn a_vector_graph_held_back_by_the_save_interval_is_saved_once_writes_pause() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    // long enough that two small writes fall well within it even on a loaded machine (asserted below, so a
    // machine too slow for the premise fails loudly instead of testing nothing)
    const INTERVAL: Duration = Duration::from_secs(8);
    setup.config.vector_save_interval_secs = INTERVAL.as_secs();
    let server = setup.start();
    let a = server.addr;
    // the first write since the start is saved at once, the second (within the interval) is held back
    let first = Instant::now();
    for i in 0..2 {
        let r = post(a, "/v1/documents?wait=true", &json!([{"id": format!("d{i}"), "title": "a laptop"}]));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert!(first.elapsed() < INTERVAL, "two writes took {:?}, longer than the save interval", first.elapsed());
    let written = generation(&server.state);
    assert!(saved_generation(dir.path()) < written, "held back");
    // no write for an interval: the ingest thread saves it, without a shutdown
    let started = Instant::now();
    while saved_generation(dir.path()) < written {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not saved {:?} after the writes paused",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(saved_generation(dir.path()), written);
}

/// Log lines the request-id test captures (the process-wide subscriber writes here).
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every response carries an `x-request-id`: the client's own when it sends a sane one, a fresh one otherwise;
/// and the id follows the request into the model worker, whose log line for the job is under the request's span.
#[test]
fn every_response_has_a_request_id_that_follows_the_request_into_the_model_workers() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("sieve_server=debug,sieve_pipeline=debug"))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    )
    .expect("the only subscriber of this test binary");
    let dir = tempfile::tempdir().unwrap();
    let server = Setup::new(dir.path()).start();
    let a = server.addr;
    assert_eq!(post(a, "/v1/documents?wait=true", &products()).status, 200);

    let ids: Vec<String> = (0..2).map(|_| get(a, "/health").header("x-request-id").unwrap().to_owned()).collect();
    assert!(!ids[0].is_empty() && ids[0] != ids[1], "fresh ids differ: {ids:?}");
    let body = json!({"query": "laptop", "mode": "hybrid", "rerank": true});
    let mine = send(
        a,
        "POST",
        "/v1/search",
        &[("content-type", "application/json"), ("x-request-id", "trace-abc-1")],
        body.to_string().as_bytes(),
    );
    assert_eq!(mine.status, 200, "{}", mine.text());
    assert_eq!(mine.header("x-request-id"), Some("trace-abc-1"), "the client's id is honoured");
    let junk = send(a, "GET", "/health", &[("x-request-id", &"x".repeat(200))], b"");
    let given = junk.header("x-request-id").unwrap();
    assert!(given.len() < 200, "an id over 128 characters is replaced: {given}");
    // errors carry it too
    assert!(get(a, "/v1/nothing").header("x-request-id").is_some());

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let ours: Vec<&str> = text.lines().filter(|l| l.contains("trace-abc-1")).collect();
    for (worker, what) in [("embedder", "the embedder's job"), ("reranker", "the reranker's job")] {
        assert!(
            ours.iter().any(|l| l.contains("model call done") && l.contains(&format!("worker={worker}"))),
            "{what} is logged under the request's id:\n{}",
            ours.join("\n")
        );
    }
    assert!(ours.iter().any(|l| l.contains("answered") && l.contains("status=200")), "{}", ours.join("\n"));
}

/// Writes `raw` on a new connection and reads until the server closes it: the status line (or "closed"
/// when the server closed without answering).
fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).lines().next().map_or_else(|| "closed".to_owned(), str::to_owned)
}

/// How many connections this process may open (its soft open-file limit, from /proc).
fn open_file_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default();
    line.split_whitespace().nth(3).and_then(|v| v.parse().ok()).unwrap_or(1024)
}

/// `n` connections that send half a request line and stop.
fn stalled_connections(a: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(a).unwrap();
            s.write_all(b"GET /health HT").unwrap();
            s
        })
        .collect()
}

/// Each stalled connection is closed by the server, without an answer (the old server kept them forever).
fn assert_closed_without_answer(conns: &mut [TcpStream]) {
    for s in conns {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Ok(n) => panic!("a stalled connection got an answer: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) => panic!("a stalled connection was left open: {e}"),
        }
    }
}

/// 5,000 connections that send partial headers neither stall `/health` nor searches, and are closed by the
/// header timeout; a declared body over the limit gets 413 at once, a body that stops arriving 408, and an idle
/// kept-alive connection is closed.
#[test]
fn slow_and_stalled_clients_are_cut_off_and_health_and_search_answer_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.config.header_timeout_secs = 2;
    setup.config.body_timeout_secs = 2;
    setup.config.max_connections = 20_000;
    let server = setup.start();
    let a = server.addr;
    assert_eq!(post(a, "/v1/documents?wait=true", &products()).status, 200);

    // this process holds both ends of each connection: fewer where the open-file limit is low
    let n = 5_000.min(open_file_limit().saturating_sub(500) / 2);
    let mut hogs = stalled_connections(a, n);
    let t = Instant::now();
    let health = get(a, "/health");
    assert_eq!((health.status, health.json()["status"].as_str()), (200, Some("ok")), "{}", health.text());
    let search = post(a, "/v1/search", &json!({"query": "laptop", "rerank": false}));
    assert_eq!(search.status, 200, "{}", search.text());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "health and a search took {:?} beside {n} stalled connections",
        t.elapsed()
    );
    assert_closed_without_answer(&mut hogs);
    drop(hogs);
    wait_for("the stalled connections to be gone", || metric(a, &[], "sieve_http_connections_open") <= 1.0);

    // a declared body over the limit is refused before it is read
    let huge = b"POST /v1/documents HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-ndjson\r\nContent-Length: 999999999999\r\n\r\n{";
    assert!(raw_exchange(a, huge).contains(" 413 "), "413 at once");
    // a body that stops arriving gets 408
    let trickle = b"POST /v1/search HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"query\"";
    assert!(raw_exchange(a, trickle).contains(" 408 "), "408 after body_timeout_secs");
    // a kept-alive connection that sends nothing more is closed after the header timeout
    let mut idle = TcpStream::connect(a).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match idle.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("the idle connection was not closed: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "the request is answered, then the idle connection closed: {text}");
}

/// Past `max_connections`, `/health` still says ok and every other route 503 with `Retry-After`; once the
/// stalled connections time out, the server serves again.
#[test]
fn past_the_connection_limit_health_answers_and_the_rest_is_told_to_retry() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.config.header_timeout_secs = 2;
    setup.config.max_connections = 100;
    let server = setup.start();
    let a = server.addr;
    let mut hogs = stalled_connections(a, 300);
    wait_for("the limit to be reached", || get(a, "/v1/info").status == 503);
    let health = get(a, "/health");
    assert_eq!((health.status, health.json()["status"].as_str()), (200, Some("ok")), "{}", health.text());
    let busy = post(a, "/v1/search", &json!({"query": "laptop"}));
    assert_eq!((busy.status, busy.code()), (503, "unavailable".to_owned()), "{}", busy.text());
    assert_eq!(busy.header("retry-after"), Some("1"));
    assert_closed_without_answer(&mut hogs);
    drop(hogs);
    wait_for("the server to serve again", || get(a, "/v1/info").status == 200);
    assert!(metric(a, &[], "sieve_http_connections_refused_total") > 0.0);
}

/// What the OpenAPI document says is what the server takes: integral floats are integers, `window` keeps its
/// range without a rerank, and a JSON array body holds document objects (NDJSON lines stay rows).
#[test]
fn requests_are_taken_as_the_openapi_document_describes_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Setup::new(dir.path()).start();
    let a = server.addr;
    assert_eq!(post(a, "/v1/documents?wait=true", &products()).status, 200);
    let r = post(a, "/v1/search", &json!({"query": "laptop", "ef": 278.0, "limit": 3.0, "rerank": false}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["limit"], 3);
    let r = post(a, "/v1/search", &json!({"query": "laptop", "limit": 2.5}));
    assert_eq!((r.status, r.code()), (422, "invalid_request".to_owned()), "{}", r.text());
    let r = post(a, "/v1/search", &json!({"query": "laptop", "rerank": false, "window": 0}));
    assert_eq!((r.status, r.json()["message"].as_str()), (422, Some("`window`: expected 1..=1000, found 0")));
    let r = post(a, "/v1/rerank", &json!({"query": "laptop", "documents": ["a laptop"], "top_n": 1.0}));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(a, "/v1/documents", &json!([0.0]));
    assert_eq!(
        (r.status, r.json()["message"].as_str()),
        (422, Some("`body[0]`: expected a document object, found a number"))
    );
    // what `schemathesis --checks all` found, each as the document now says it
    let doc = get(a, "/openapi.json").json();
    let code = |r: &Resp| (r.status, r.code());
    let invalid = (422, "invalid_request".to_owned());
    assert!(doc["paths"]["/v1/documents"]["post"].get("security").is_none(), "no API key: no security declared");
    assert!(doc["components"].get("securitySchemes").is_none());
    // a documents body: a non-empty array or one object
    let body = &doc["paths"]["/v1/documents"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["oneOf"][0]["minItems"], 1, "{body}");
    assert_eq!(code(&post(a, "/v1/documents", &json!([]))), invalid);
    assert_eq!(post(a, "/v1/documents", &json!({"id": "one", "title": "one object"})).status, 202);
    // ids: the pattern refuses what the server refuses
    let id = &doc["paths"]["/v1/documents/{id}"]["get"]["parameters"][0]["schema"];
    assert_eq!(id["pattern"].as_str(), Some(sieve_core::id_pattern().as_str()), "{id}");
    // rerank: documents or texts, one of them
    let both = json!({"query": "q", "documents": ["a"], "texts": ["b"]});
    assert_eq!(code(&post(a, "/v1/rerank", &both)), invalid);
    assert_eq!(doc["components"]["schemas"]["RerankBody"]["oneOf"].as_array().map(Vec::len), Some(2));
    assert_eq!(post(a, "/v1/rerank", &json!({"query": "q", "documents": ["a"], "texts": null})).status, 200);
    let r = post(a, "/v1/rerank", &json!({"query": "q", "documents": ["a"], "max_length": 4, "max_tokens_per_doc": 0}));
    assert_eq!(code(&r), invalid, "{}", r.text());
    // counts stop at 2^53 - 1 in either spelling; fusion numbers are checked as sent
    let r = post(a, "/v1/rerank", &json!({"query": "q", "documents": ["a"], "top_n": 9_007_199_254_740_992u64}));
    assert_eq!(code(&r), invalid, "{}", r.text());
    let search = |extra: Value| {
        let mut body = json!({"query": "laptop", "rerank": false});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        post(a, "/v1/search", &body)
    };
    assert_eq!(code(&search(json!({"fusion": {"method": "rrf", "bm25_weight": -5e-324}}))), invalid);
    assert_eq!(search(json!({"fusion": {"method": "linear", "bm25_weight": 1e300, "dense_weight": 1}})).status, 200);
    assert_eq!(code(&search(json!({"rerank_timeout_ms": 600_001}))), invalid);
    assert_eq!(code(&search(json!({"max_length": 0}))), invalid, "checked without a rerank too");
    assert_eq!(code(&search(json!({"sort": "colour"}))), invalid);
    let sort = doc["components"]["schemas"]["SearchBody"]["properties"]["sort"]["pattern"].as_str();
    assert_eq!(sort, Some(sieve_core::SORT_PATTERN));
    // a page that reaches past rank 1000 is cut there, with a note; an offset past it is refused
    let r = search(json!({"offset": 995, "limit": 10}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["notes"].to_string().contains("results end at rank 1000"), "{}", r.text());
    assert_eq!(code(&search(json!({"offset": 1000}))), invalid);
}

/// With an API key, the served document declares the bearer scheme on the routes that need it.
#[test]
fn the_served_document_declares_the_api_key_when_there_is_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.config.api_key = Some("s3cret".into());
    let server = setup.start();
    let doc = get(server.addr, "/openapi.json").json();
    let write = &doc["paths"]["/v1/documents"]["post"];
    assert_eq!(write["security"], json!([{"bearer": []}]), "{write}");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert_eq!(doc["components"]["schemas"]["RerankBody"]["properties"]["documents"]["maxItems"], json!(setup_limit()));
}

fn setup_limit() -> usize {
    ServerConfig::default().max_rerank_documents
}
