//! The pages over HTTP, against a real `sieve serve` router (API and UI together) on two small indexes: a
//! product catalog with a document titled `<script>…`, and Chinese news with a re-posted story. Browser flows
//! (clicks, the phone layout, accessibility) are the Playwright suite's; these check what the server sends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use sieve_core::{DocId, Document, Timestamp};
use sieve_models::standin::{Behaviour, WordsReranker};
use sieve_pipeline::{RerankerHandle, WriterOptions};
use sieve_server::{AppState, IndexConfig, Models, ServerConfig};

struct Page {
    status: u16,
    head: String,
    body: String,
}

fn get(addr: SocketAddr, path: &str) -> Page {
    let mut c = TcpStream::connect(addr).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        indexes: vec![
            IndexConfig { name: "products".into(), path: dir.path().join("products") },
            IndexConfig { name: "news".into(), path: dir.path().join("news") },
        ],
        ..ServerConfig::default()
    };
    let reranker = reranker.map(|b| {
        let options = config.worker_options(config.rerank_batch_tokens);
        RerankerHandle::spawn("words-reranker", Box::new(WordsReranker::new(b)), options)
    });
    let models = Models { embedder: None, reranker };
    let cache: Arc<dyn sieve_pipeline::ScoreCache> = Arc::new(sieve_pipeline::LruScoreCache::new(100));
    let engines: Vec<_> =
        config.indexes.iter().map(|i| sieve_server::open_index(i, &models, cache.clone(), &config).unwrap()).collect();
    let state = Arc::new(AppState::new(config, engines, models, cache).unwrap());
    for (name, docs) in [("products", products()), ("news", news())] {
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
            sieve_server::serve_with(listener, state, Some(sieve_web::routes()), async move {
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
    assert!(page.body.contains(&css));
    let asset = get(s.addr, &css);
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
