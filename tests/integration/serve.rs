//! `sieve serve` beside other processes writing to the index it serves: `sieve ingest` and `sieve delete`
//! into a served index show up in its searches and info, and a server write that finds the writer lock held
//! waits for it (409 to a waiting client) instead of failing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::{ok, s, sieve, write};

/// A `sieve serve` child, killed on drop.
pub(crate) struct Served {
    child: Child,
    pub(crate) addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn serve(index: &std::path::Path) -> Served {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let child = sieve()
        .args(["serve", "--index", &format!("products={}", s(index)), "--listen", &addr, "--device", "cpu"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let served = Served { child, addr };
    wait_until("the server answers /health", || http(&served.addr, "GET", "/health", "").map(|r| r.0) == Some(200));
    served
}

/// One request on its own connection: (status, headers, body), or `None` when nothing answers yet.
pub(crate) fn http(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, String, serde_json::Value)> {
    let mut c = TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, head.to_owned(), serde_json::from_str(body).unwrap_or(serde_json::Value::Null)))
}

/// Polls `cond` (what the server shows over HTTP) until it holds, with a generous deadline.
#[track_caller]
pub(crate) fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn search_ids(addr: &str, query: &str) -> Vec<String> {
    let body = serde_json::json!({"query": query, "mode": "bm25"}).to_string();
    let (status, _, res) = http(addr, "POST", "/v1/search", &body).expect("the server answers");
    assert_eq!(status, 200, "{res}");
    res["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap().to_owned()).collect()
}

fn documents(addr: &str) -> u64 {
    let (_, _, info) = http(addr, "GET", "/v1/info", "").expect("the server answers");
    info["indexes"][0]["documents"].as_u64().unwrap()
}

#[test]
fn a_served_index_follows_other_processes_and_waits_for_their_writer_lock() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("idx");
    let first = write(dir.path(), "a.jsonl", "{\"id\":\"p1\",\"title\":\"Sony turntable\"}\n");
    ok(&["ingest", "--index", s(&index), s(&first), "--progress", "none"]);
    let server = serve(&index);
    let a = server.addr.as_str();
    assert_eq!(search_ids(a, "turntable"), ["p1"]);

    // sieve ingest into the served index: search and info see it without a write by the server
    let more = write(dir.path(), "b.jsonl", "{\"id\":\"p2\",\"title\":\"Technics turntable\"}\n");
    ok(&["ingest", "--index", s(&index), s(&more), "--progress", "none"]);
    wait_until("the server to follow the ingest", || search_ids(a, "technics") == ["p2"]);
    assert_eq!(documents(a), 2);
    // and sieve delete
    ok(&["delete", "--index", s(&index), "p1"]);
    wait_until("the server to follow the delete", || search_ids(a, "turntable") == ["p2"]);
    assert_eq!(documents(a), 1);

    // another process holds the writer: a waiting write gets 409 at once, stays stored, and runs later
    let text = sieve_text::TextIndex::open(&index).unwrap();
    let writer = text.writer(sieve_text::WriterOptions { threads: 1, memory_bytes: 20 << 20 }).unwrap();
    let body = "{\"id\":\"p3\",\"title\":\"Denon turntable\"}";
    let (status, head, res) = http(a, "POST", "/v1/documents?wait=true", body).unwrap();
    assert_eq!(status, 409, "{res}");
    assert_eq!(res["code"], "conflict");
    assert!(res["message"].as_str().unwrap().contains("runs once the lock is released"), "{res}");
    let location = head.lines().find_map(|l| l.strip_prefix("location: ")).expect("a Location header").to_owned();
    let (_, _, task) = http(a, "GET", &location, "").unwrap();
    assert_eq!(task["status"], "enqueued", "{task}");
    assert!(task["blocked"].as_str().is_some_and(|b| !b.is_empty()), "the task says why it waits: {task}");
    drop(writer);
    wait_until("the blocked write to run", || {
        http(a, "GET", &location, "").is_some_and(|(_, _, t)| t["status"] == "succeeded" && t["blocked"].is_null())
    });
    assert_eq!(search_ids(a, "denon"), ["p3"]);
}
