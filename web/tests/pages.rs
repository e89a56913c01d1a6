//! The pages over HTTP, against a real `sieve serve` router (API and UI together) on two small indexes: a
//! product catalog with a document titled `<script>…`, and Chinese news with a re-posted story. Browser flows
//! (clicks, the phone layout, accessibility) are the Playwright suite's; these check what the server sends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use sieve_core::{DocId, Document, Timestamp};
use sieve_ingest::BatchSink;
use sieve_models::standin::{Behaviour, WordsEmbedder, WordsReranker};
use sieve_pipeline::{EmbedderHandle, RerankerHandle, WriterOptions};
use sieve_server::{AppState, IndexConfig, Models, ServerConfig};

struct Page {
    status: u16,
    head: String,
    body: String,
}

fn get(addr: SocketAddr, path: &str) -> Page {
    request(addr, "GET", path, &[], b"")
}

/// One request; `headers` as `Name: value` lines.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &[String], body: &[u8]) -> Page {
    let mut c = TcpStream::connect(addr).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    c.write_all(body).unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    // chunked bodies: keep the chunks' text, drop the sizes
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    Page { status, head: head.to_ascii_lowercase(), body }
}

fn doc(id: &str, title: &str, body: &str) -> Document {
    Document::new(DocId::parse(id, 64).unwrap(), title, body)
}

fn products() -> Vec<Document> {
    let mut out = Vec::new();
    for (i, (title, brand, price)) in [
        ("Sony Turntable PS-LX350H", "Sony", 149.0),
        ("<script>alert(1)</script> Turntable", "Acme", 19.0),
        ("Audio-Technica Turntable AT-LP60", "Audio-Technica", 99.0),
        ("Sony Headphones WH-1000XM4", "Sony", 278.0),
    ]
    .into_iter()
    .enumerate()
    {
        let mut d = doc(&format!("p{i}"), title, "A record player for vinyl, belt drive.");
        d.brand = Some(brand.into());
        d.price = Some(price);
        out.push(d);
    }
    out
}

fn news() -> Vec<Document> {
    let story =
        "中国人民银行今天宣布下调金融机构存款准备金率零点五个百分点，释放长期资金约一万亿元，支持实体经济发展。";
    let at = |h: i64| Timestamp::from_unix_seconds(1_764_892_800 - h * 3600);
    let mut out = Vec::new();
    for (i, (body, source, hours)) in [
        (story.to_owned(), "新浪", 5),
        (format!("{story}（来源：腾讯新闻）"), "腾讯", 3),
        ("央行有关负责人表示，将继续实施稳健的货币政策，保持流动性合理充裕。".to_owned(), "网易", 8),
        ("国家统计局发布数据，十月份居民消费价格同比上涨，央行表示物价总体平稳。".to_owned(), "网易", 30),
    ]
    .into_iter()
    .enumerate()
    {
        let mut d = doc(&format!("n{i}"), "", &body);
        d.source = Some(source.into());
        d.published_at = at(hours);
        out.push(d);
    }
    out
}

struct Served {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.thread.take().unwrap().join();
    }
}

fn serve(reranker: Option<Behaviour>) -> Served {
    serve_with(reranker, None, sieve_web::UiOptions::default())
}

fn serve_with(reranker: Option<Behaviour>, api_key: Option<&str>, ui: sieve_web::UiOptions) -> Served {
    serve_models(reranker, api_key, ui, false)
}

/// `dense`: a stand-in embedder (bag of words, `notebook` near `laptop`), and the products embedded, with a
/// notebook whose text never says `laptop`.
fn serve_models(reranker: Option<Behaviour>, api_key: Option<&str>, ui: sieve_web::UiOptions, dense: bool) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        indexes: vec![
            IndexConfig { name: "products".into(), path: dir.path().join("products") },
            IndexConfig { name: "news".into(), path: dir.path().join("news") },
        ],
        api_key: api_key.map(str::to_owned),
        ..ServerConfig::default()
    };
    let ui = sieve_web::routes(&ui).unwrap();
    let reranker = reranker.map(|b| {
        let options = config.worker_options(config.rerank_batch_tokens);
        RerankerHandle::spawn("words-reranker", Box::new(WordsReranker::new(b)), options)
    });
    let embedder = dense.then(|| {
        let options = config.worker_options(config.embed_batch_tokens);
        EmbedderHandle::spawn("words", Box::new(WordsEmbedder::new(256)), options)
    });
    let models = Models { embedder, reranker };
    let cache: Arc<dyn sieve_pipeline::ScoreCache> = Arc::new(sieve_pipeline::LruScoreCache::new(100));
    let engines: Vec<_> =
        config.indexes.iter().map(|i| sieve_server::open_index(i, &models, cache.clone(), &config).unwrap()).collect();
    let state = Arc::new(AppState::new(config, engines, models, cache).unwrap());
    let mut catalog = products();
    if dense {
        let body = "Ships in a blue box. A light notebook for travel and work. Two year warranty.";
        catalog.push(doc("p9", "Dell XPS 13", body));
    }
    for (name, docs) in [("products", catalog), ("news", news())] {
        if dense && name == "products" {
            let engine = &state.indexes[name].engine;
            let mut sink = engine.sink(WriterOptions { threads: 1, memory_bytes: 30 << 20 }).unwrap();
            sink.upsert(&docs).unwrap();
            sink.commit(Default::default()).unwrap();
            sink.finish().unwrap();
            engine.sync_vectors().unwrap();
            continue;
        }
        let text = state.indexes[name].engine.text();
        let mut w = text.writer(WriterOptions { threads: 1, memory_bytes: 30 << 20 }).unwrap();
        w.upsert_batch(&docs).unwrap();
        w.commit(None).unwrap();
        w.finish().unwrap();
        text.reload().unwrap();
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            sieve_server::serve_with(listener, state, Some(ui), async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    Served { addr, stop: Some(stop), thread: Some(thread), _dir: dir }
}

#[test]
fn a_search_page_renders_hits_facets_and_why_here_with_document_text_escaped() {
    let s = serve(None);
    let page = get(s.addr, "/?index=products&q=turntable");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.head.contains("content-type: text/html; charset=utf-8"));
    assert!(page.head.contains("content-security-policy: default-src 'none'; style-src 'self'"), "{}", page.head);
    assert!(page.body.starts_with("<!DOCTYPE html>"));
    assert!(page.head.contains("server-timing: search;dur=") && page.head.contains(", render;dur="), "{}", page.head);
    assert!(page.body.contains("3 results"), "{}", page.body);
    // the title that holds markup is text, never markup
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt; <mark>Turntable</mark>"), "{}", page.body);
    assert!(!page.body.contains("<script>alert"));
    // per-hit explanations and the request's timings
    assert!(page.body.contains("Why here?") && page.body.contains("BM25 alone: #1"));
    assert!(page.body.contains("<meter"));
    assert!(page.body.contains("Took "));
    // a brand facet with its count, as a link that adds the filter
    let link = "/?index=products&amp;q=turntable&amp;brand=sony";
    assert!(page.body.contains(link), "{}", page.body);
    let sony = get(s.addr, &link.replace("&amp;", "&"));
    assert!(sony.body.contains("1 result") && sony.body.contains("PS-LX350H") && !sony.body.contains("AT-LP60"));
    assert!(sony.body.contains("☑"), "the chosen facet shows as chosen");
    // the stylesheet is the server's own, cached for good
    let css = sieve_web::css_path();
    assert!(page.body.contains(css));
    let asset = get(s.addr, css);
    assert_eq!(asset.status, 200);
    assert!(asset.head.contains("text/css") && asset.head.contains("immutable"));
    assert_eq!(get(s.addr, "/assets/other.css").status, 404);
}

#[test]
fn an_empty_query_browses_in_price_order_and_bad_input_is_said_on_the_page() {
    let s = serve(None);
    let page = get(s.addr, "/?index=products&sort=price:asc");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("4 results"), "{}", page.body);
    let order: Vec<usize> =
        ["$19.00", "$99.00", "$149.00", "$278.00"].iter().map(|p| page.body.find(p).unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "cheapest first");
    let bad = get(s.addr, "/?index=products&q=x&price_min=ten");
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("price_min") && bad.body.contains("role=\"alert\""), "{}", bad.body);
    // a date range by calendar day (UTC): the article from 3 December is left out
    let dated = get(s.addr, "/?index=news&date_from=2025-12-04&date_to=2025-12-04");
    assert!(dated.body.contains("3 results") && !dated.body.contains("国家统计局"), "{}", dated.body);
    assert!(dated.body.contains("value=\"2025-12-04\""), "the inputs keep the range");
    assert_eq!(get(s.addr, "/?index=news&date_to=yesterday").status, 422);
    let missing = get(s.addr, "/?index=nope");
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("nope"));
}

#[test]
fn a_failing_reranker_shows_the_degraded_banner() {
    let s = serve(Some(Behaviour::Fail));
    let page = get(s.addr, "/?index=products&q=turntable&mode=hybrid%2Brerank");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Degraded answer"), "{}", page.body);
    assert!(page.body.contains("3 results"));
}

#[test]
fn the_feed_page_shows_each_story_once_with_its_sources_and_a_next_page() {
    let s = serve(None);
    let page = get(s.addr, "/feed?index=news&q=%E9%93%B6%E8%A1%8C+%E5%A4%AE%E8%A1%8C");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("+1 similar from"), "{}", page.body);
    assert!(page.body.contains("Why here?") && page.body.contains("Freshness"));
    assert!(page.body.contains("央行"), "Chinese text comes through as UTF-8");
    let empty = get(s.addr, "/feed");
    assert_eq!(empty.status, 200);
    assert!(empty.body.contains("name=\"q\""));
    // one story per source and page: the next page follows the cursor in the link
    let first = get(s.addr, "/feed?index=news&q=%E9%93%B6%E8%A1%8C+%E5%A4%AE%E8%A1%8C&max_per_source=1");
    let href = first.body.split("rel=\"next\" href=\"").nth(1).map(|r| r[..r.find('"').unwrap()].replace("&amp;", "&"));
    let href = href.unwrap_or_else(|| panic!("a next link: {}", first.body));
    assert!(first.body.contains("held back by the source cap"), "{}", first.body);
    let second = get(s.addr, &href);
    assert_eq!(second.status, 200, "{}", second.body);
    assert!(second.body.contains("国家统计局"), "the held-back story comes next: {}", second.body);
    assert!(!second.body.contains("将继续实施"), "not the first page's again");
    let bad = get(s.addr, "/feed?index=news&q=%E5%A4%AE%E8%A1%8C&cursor=forged.cursor");
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("cursor"));
}

/// The form token a page's form carries, and the cookie that goes with it.
fn token(page: &Page) -> (String, String) {
    let value = page.body.split("name=\"csrf\" value=\"").nth(1).map(|r| r[..r.find('"').unwrap()].to_owned());
    let value = value.unwrap_or_else(|| panic!("a form token: {}", page.body));
    assert!(
        page.head.contains(&format!("set-cookie: sieve_csrf={value}; path=/; httponly; samesite=strict")),
        "{}",
        page.head
    );
    (value.clone(), format!("Cookie: sieve_csrf={value}"))
}

fn header<'a>(page: &'a Page, name: &str) -> &'a str {
    let at = page.head.find(&format!("\r\n{name}: ")).unwrap_or_else(|| panic!("{name} in {}", page.head));
    let rest = &page.head[at + name.len() + 4..];
    &rest[..rest.find("\r\n").unwrap_or(rest.len())]
}

fn multipart(fields: &[(&str, Option<&str>, &str)]) -> (String, Vec<u8>) {
    let boundary = "----sievetestboundary";
    let mut body = Vec::new();
    for (name, file, value) in fields {
        let file = file.map(|f| format!("; filename=\"{f}\"")).unwrap_or_default();
        write!(body, "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n{value}\r\n")
            .unwrap();
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    (format!("Content-Type: multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn an_upload_becomes_a_task_whose_page_lists_the_rejected_row_and_cross_site_posts_are_refused() {
    let s = serve(None);
    let form = get(s.addr, "/ingest");
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("enctype=\"multipart/form-data\""));
    let (csrf, cookie) = token(&form);
    let rows = "{\"id\": \"u1\", \"title\": \"Uploaded turntable\"}\n{\"id\": \"u2\", \"price\": \"cheap\"\n{\"id\": \"u3\", \"title\": \"Another upload\"}\n";
    let (ct, body) = multipart(&[
        ("csrf", None, &csrf),
        ("index", None, "products"),
        ("format", None, "auto"),
        ("file", Some("rows.jsonl"), rows),
    ]);
    let sent = request(s.addr, "POST", "/ingest", &[ct.clone(), cookie.clone(), "Origin: http://t".into()], &body);
    assert_eq!(sent.status, 303, "{}", sent.body);
    let task = header(&sent, "location").to_owned();
    assert!(task.starts_with("/tasks/"), "{task}");
    let mut page = get(s.addr, &task);
    for _ in 0..200 {
        if page.body.contains("data-done=\"true\"") {
            break;
        }
        assert!(page.body.contains("http-equiv=\"refresh\""), "a running task refreshes itself without JS");
        std::thread::sleep(std::time::Duration::from_millis(50));
        page = get(s.addr, &task);
    }
    assert!(page.body.contains("succeeded"), "{}", page.body);
    assert!(page.body.contains("Rejected rows") && page.body.contains("<td>2</td>"), "line 2 is listed: {}", page.body);
    assert!(page.body.contains("Recent tasks"));
    let found = get(s.addr, "/?index=products&q=uploaded");
    assert!(found.body.contains("<mark>Uploaded</mark> turntable"), "{}", found.body);
    // pasted CSV rows, the format told by the first character
    let (ct2, body2) = multipart(&[
        ("csrf", None, &csrf),
        ("index", None, "products"),
        ("rows", None, "id,title\nc1,CSV pasted lamp\n"),
    ]);
    let sent = request(s.addr, "POST", "/ingest", &[ct2, cookie.clone()], &body2);
    assert_eq!(sent.status, 303, "{}", sent.body);
    // another site's form, or one without the token, is refused and adds nothing
    let evil =
        request(s.addr, "POST", "/ingest", &[ct.clone(), cookie.clone(), "Origin: https://evil.example".into()], &body);
    assert_eq!(evil.status, 403, "{}", evil.body);
    assert!(evil.body.contains("evil.example"));
    let (ct3, no_token) = multipart(&[("index", None, "products"), ("rows", None, rows)]);
    assert_eq!(request(s.addr, "POST", "/ingest", &[ct3, cookie], &no_token).status, 403);
    assert_eq!(get(s.addr, "/tasks/999").status, 404);
}

#[test]
fn with_an_api_key_the_write_pages_ask_for_it_once_and_keep_it_in_an_httponly_cookie() {
    let s = serve_with(None, Some("s3cret"), sieve_web::UiOptions::default());
    let login = get(s.addr, "/ingest");
    assert!(login.body.contains("type=\"password\"") && !login.body.contains("multipart"), "{}", login.body);
    let (csrf, cookie) = token(&login);
    let form = |key: &str| format!("csrf={csrf}&next=%2Fingest&key={key}");
    let ct = "Content-Type: application/x-www-form-urlencoded".to_owned();
    let wrong = request(s.addr, "POST", "/login", &[ct.clone(), cookie.clone()], form("nope").as_bytes());
    assert_eq!(wrong.status, 401);
    let right = request(s.addr, "POST", "/login", &[ct, cookie.clone()], form("s3cret").as_bytes());
    assert_eq!(right.status, 303, "{}", right.body);
    assert!(right.head.contains("set-cookie: sieve_key=s3cret; path=/; httponly; samesite=strict"), "{}", right.head);
    let keyed = format!("{cookie}; sieve_key=s3cret");
    let page = request(s.addr, "GET", "/ingest", std::slice::from_ref(&keyed), b"");
    assert!(page.body.contains("multipart/form-data"), "{}", page.body);
    // a post without the key cookie asks for it instead of writing
    let (ct, body) = multipart(&[("csrf", None, &csrf), ("rows", None, "{\"id\": \"k1\", \"title\": \"x\"}")]);
    let refused = request(s.addr, "POST", "/ingest", &[ct.clone(), cookie], &body);
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(request(s.addr, "POST", "/ingest", &[ct, keyed], &body).status, 303);
}

#[test]
fn the_playground_reranks_pasted_documents_and_shows_the_request_as_curl() {
    let s = serve(Some(Behaviour::Good));
    let form = get(s.addr, "/playground");
    assert_eq!(form.status, 200);
    let (csrf, cookie) = token(&form);
    let body = format!("csrf={csrf}&query=vinyl+turntable&documents=a+kettle%0Aa+vinyl+turntable%0A%7B%22text%22%3A+%22%3Cb%3Eturntable%3C%2Fb%3E%22%7D&top_n=2&max_length=");
    let ct = "Content-Type: application/x-www-form-urlencoded".to_owned();
    let page = request(s.addr, "POST", "/playground", &[ct.clone(), cookie.clone()], body.as_bytes());
    assert_eq!(page.status, 200, "{}", page.body);
    let table = &page.body[page.body.find("<tbody>").unwrap()..page.body.find("</tbody>").unwrap()];
    let vinyl = table.find("a vinyl turntable").expect("the best document listed");
    assert!(!table.contains("a kettle"), "top_n 2 leaves the third out");
    assert!(table.contains("&lt;b&gt;turntable&lt;/b&gt;") && vinyl < table.find("&lt;b&gt;").unwrap());
    assert!(page.body.contains("curl -s http://t/v1/rerank"), "{}", page.body);
    assert!(page.body.contains("Logit") && page.body.contains("Cached"));
    let again = request(s.addr, "POST", "/playground", &[ct.clone(), cookie], body.as_bytes());
    assert!(again.body.contains("<td>yes</td>"), "the second round comes from the score cache");
    assert_eq!(request(s.addr, "POST", "/playground", &[ct], body.as_bytes()).status, 403, "no token cookie");
    let none = serve(None);
    assert!(get(none.addr, "/playground").body.contains("No reranker is loaded"));
}

#[test]
fn compare_marks_rank_moves_and_overlays_judgments_and_the_dashboard_draws_its_charts() {
    let set = tempfile::tempdir().unwrap();
    std::fs::write(set.path().join("corpus.jsonl"), "").unwrap();
    std::fs::write(set.path().join("queries.jsonl"), "{\"id\": \"q1\", \"text\": \"sony turntable reviews\"}\n")
        .unwrap();
    std::fs::write(set.path().join("qrels.tsv"), "q1\tp0\t2\nq1\tp2\t0\n").unwrap();
    let ui = sieve_web::UiOptions { judgments: vec![("products".into(), set.path().to_path_buf())] };
    let s = serve_with(Some(Behaviour::Good), None, ui);
    let page = get(s.addr, "/compare?index=products&qid=q1&a=bm25&b=hybrid%2Brerank");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("nDCG@10"), "{}", page.body);
    assert!(page.body.contains("grade 2") && page.body.contains("grade 0") && page.body.contains("unjudged"));
    assert!(page.body.contains("overlap@10 1.00 · RBO"), "{}", page.body);
    assert!(page.body.contains("class=\"move "), "{}", page.body);
    assert!(page.body.contains("q1: sony turntable reviews"), "the picker lists the set's queries");
    assert!(page.body.contains("BM25 #"), "each hit's rank in the other column");
    let bad = get(s.addr, "/compare?index=products&q=tv&a=magic");
    assert!(bad.body.contains("expected one of"), "{}", bad.body);
    let dash = get(s.addr, "/dashboard");
    assert_eq!(dash.status, 200);
    assert!(dash.body.contains("<svg") && dash.body.contains("Latency per stage"), "{}", dash.body);
    assert!(dash.body.contains("Rerank probabilities, "), "the reranked column filled the score chart");
    assert!(dash.body.contains("k1 0.9, b 0.4"), "{}", dash.body);
    let missing =
        sieve_web::routes(&sieve_web::UiOptions { judgments: vec![("products".into(), "/nonexistent".into())] });
    assert!(missing.unwrap_err().to_string().contains("/nonexistent"));
}

/// A hit only the dense leg found shares no word with the query: its snippet is its sentence closest to the
/// query by the embedder, labelled, and the page times the work apart from the search and the render.
#[test]
fn a_dense_only_hit_shows_its_closest_sentence_by_meaning() {
    let s = serve_models(None, None, sieve_web::UiOptions::default(), true);
    let page = get(s.addr, "/?index=products&q=laptop&mode=hybrid");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Dell XPS 13"), "{}", page.body);
    let card = page.body.split("<article").find(|c| c.contains("Dell XPS 13")).unwrap();
    assert!(card.contains("Closest sentence by meaning (cosine "), "{card}");
    assert!(card.contains("A light notebook for travel and work."), "{card}");
    assert!(!card.contains("Ships in a blue box"), "only the closest sentence: {card}");
    assert!(page.head.contains("snippets;dur="), "{}", page.head);
    // a hit BM25 found keeps the marked window of its body
    let page = get(s.addr, "/?index=products&q=turntable&mode=hybrid");
    assert!(page.body.contains("<mark>Turntable</mark>") && !page.body.contains("Closest sentence"), "{}", page.body);
}
