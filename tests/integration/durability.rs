//! SIGKILL during ingest: the index opens, holds every acknowledged document (each one looked up, and with
//! embeddings each one's vector found by dense search) and only whole batches, nothing past the last commit,
//! and the next run resumes to exactly the full set. Kills are placed by the ingest's own commit events, not
//! by the clock, so that a fast or a loaded machine interrupts the same way.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{num_docs, s, sieve};

const DOCS: usize = 30_000;
const BATCH: usize = 500;

fn corpus(dir: &Path) -> std::path::PathBuf {
    let words = [
        "sony",
        "turntable",
        "speaker",
        "switch",
        "ethernet",
        "cable",
        "苹果",
        "手机",
        "新闻",
        "发布",
        "market",
        "price",
    ];
    let mut text = String::with_capacity(DOCS * 160);
    for i in 0..DOCS {
        let body: Vec<&str> = (0..16).map(|j| words[(i * 7 + j * 3) % words.len()]).collect();
        text.push_str(&format!(
            "{{\"id\":\"d{i}\",\"title\":\"item {i} {}\",\"body\":\"{}\"}}\n",
            words[i % words.len()],
            body.join(" ")
        ));
    }
    crate::write(dir, "big.jsonl", text)
}

enum Kill {
    /// After this many acknowledged batches.
    AfterAcks(usize),
    /// After this long, whatever is happening.
    After(Duration),
}

/// Starts an ingest, kills it with SIGKILL at `when`, returns the highest acknowledged document count.
fn ingest_and_kill(index: &Path, file: &Path, when: Kill) -> u64 {
    ingest_and_kill_with(index, file, when, BATCH, &[])
}

fn ingest_and_kill_with(index: &Path, file: &Path, when: Kill, batch: usize, extra: &[&str]) -> u64 {
    let mut child = sieve()
        .args([
            "ingest",
            "--index",
            s(index),
            s(file),
            "--batch-size",
            &batch.to_string(),
            "--progress",
            "json",
            "--threads",
            "1",
        ])
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<serde_json::Value>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let started = Instant::now();
    let mut acked = 0u64;
    let mut acks = 0usize;
    loop {
        let deadline = match when {
            Kill::After(d) => d.saturating_sub(started.elapsed()),
            Kill::AfterAcks(_) => Duration::from_secs(60),
        };
        match rx.recv_timeout(deadline) {
            Ok(v) if v["event"] == "committed" => {
                acked = acked.max(v["docs"].as_u64().unwrap());
                acks += 1;
                if matches!(when, Kill::AfterAcks(n) if acks >= n) {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    reader.join().unwrap();
    // Acknowledgements printed before the kill landed count too.
    while let Ok(v) = rx.try_recv() {
        if v["event"] == "committed" {
            acked = acked.max(v["docs"].as_u64().unwrap());
        }
    }
    acked
}

/// Which of `ids` the index holds, in order.
fn present(index: &sieve_text::TextIndex, ids: impl Iterator<Item = String>) -> Vec<bool> {
    let ids: Vec<sieve_core::DocId> = ids.map(|i| sieve_core::DocId::parse(&i, 512).unwrap()).collect();
    ids.chunks(1000).flat_map(|c| index.get_many(c).unwrap()).map(|d| d.is_some()).collect()
}

/// Asserts the index is a whole number of batches holding exactly `d0 .. d{n-1}`, `n` at least the
/// acknowledged count, and the checkpoint at `n`; returns `n`.
fn check_consistent(index: &Path, acked_total: u64) -> u64 {
    let opened = sieve_text::TextIndex::open(index).expect("the index opens after SIGKILL");
    let n = opened.num_docs();
    assert!(n >= acked_total, "index holds {n} docs but {acked_total} were acknowledged");
    assert!(
        (n as usize).is_multiple_of(BATCH) || n as usize == DOCS,
        "{n} docs is not a whole number of {BATCH}-doc batches"
    );
    // every document up to the last commit is there, and none past it
    let held = present(&opened, (0..DOCS).map(|i| format!("d{i}")));
    if let Some(missing) = (0..n as usize).find(|&i| !held[i]) {
        panic!("d{missing} is missing: {n} documents committed, {acked_total} acknowledged");
    }
    if let Some(extra) = (n as usize..DOCS).find(|&i| held[i]) {
        panic!("d{extra} is present past the last committed batch ({n} documents)");
    }
    let checkpoint = opened.checkpoint().unwrap();
    if n > 0 {
        let progress = &checkpoint.sources[0];
        assert_eq!(progress.docs, n, "the checkpoint and the documents were committed together");
        assert_eq!(progress.line, n, "the checkpoint points at the last committed line");
    }
    n
}

#[test]
fn sigkill_during_ingest_loses_no_acknowledged_document_and_leaves_no_half_batch() {
    let dir = tempfile::tempdir().unwrap();
    let file = corpus(dir.path());
    let index = dir.path().join("idx");
    let mut acked = 0;
    // Kills placed by commit events interrupt however fast the machine is (each leaves most of the 60
    // batches to do); the timed ones land wherever they land (while the index is created or opened, in a
    // batch, during a commit) and count as interruptions only if they fell after a commit and before the end.
    let kills = [
        Kill::After(Duration::from_millis(30)),
        Kill::AfterAcks(3),
        Kill::AfterAcks(5),
        Kill::AfterAcks(2),
        Kill::After(Duration::from_millis(700)),
        Kill::After(Duration::from_millis(1300)),
    ];
    let mut last = 0;
    let mut interrupted = 0;
    for when in kills {
        let this_run = ingest_and_kill(&index, &file, when);
        // A resumed run reports its own count on top of what earlier runs committed.
        acked = acked.max(last + this_run);
        if !index.join("sieve.json").exists() {
            continue; // killed before the index was even created
        }
        let before = last;
        last = check_consistent(&index, acked);
        if before < last && (last as usize) < DOCS {
            interrupted += 1;
        }
        eprintln!("killed: {acked} acknowledged, {last} in the index");
    }
    // The kills must really have interrupted ingests, or this test proves nothing.
    assert!(interrupted >= 3, "only {interrupted} kills landed after a commit and before the end");
    // The next run resumes after the checkpoint and completes: every document exactly once.
    let out = sieve().args(["ingest", "--index", s(&index), s(&file), "--progress", "log"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(num_docs(&index), DOCS as u64);
    check_consistent(&index, DOCS as u64);
    let opened = sieve_text::TextIndex::open(&index).unwrap();
    let cp = opened.checkpoint().unwrap();
    assert!(cp.sources[0].complete);
    assert_eq!(cp.sources[0].docs, DOCS as u64);
}

/// With embeddings: the BM25 documents, their stored vectors and the graph agree after every kill, and the
/// graph never needs the model to be rebuilt or caught up.
#[test]
fn sigkill_during_an_embedding_ingest_keeps_bm25_and_the_graph_consistent() {
    const N: usize = 600;
    const EMBED_BATCH: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let words = ["turntable", "speaker", "switch", "ethernet", "cable", "laptop", "camera", "printer", "router"];
    let title = |i: usize| format!("{} model {i}", words[i % 9]);
    let text: String = (0..N)
        .map(|i| {
            format!(
                "{{\"id\":\"e{i}\",\"title\":\"{}\",\"body\":\"{} with {}\"}}\n",
                title(i),
                words[(i / 9) % 9],
                words[(i * 5) % 9]
            )
        })
        .collect();
    let file = crate::write(dir.path(), "embed.jsonl", text);
    let index = dir.path().join("idx");
    let embed = ["--embedder", "minilm", "--device", "cpu"];
    // The model the ingest fetched into the cache, loaded once here to search with.
    let embedder = || {
        let model = sieve_models::hub::resolve("minilm", &sieve_models::hub::cache_dir());
        let model = sieve_models::load_embedder(&model, sieve_models::DeviceSpec::Cpu).unwrap();
        sieve_pipeline::EmbedderHandle::spawn(
            "minilm",
            model,
            sieve_pipeline::WorkerOptions::new(sieve_pipeline::EMBED_BATCH_TOKENS),
        )
    };
    let check = |acked: u64| -> u64 {
        // Opening catches the graph up from the stored vectors; the model only embeds the queries below.
        let options = sieve_pipeline::EngineOptions { embedder: Some(embedder()), ..Default::default() };
        let engine = sieve_pipeline::Engine::open(&index, options).expect("the index opens after SIGKILL");
        let docs = engine.text().num_docs();
        assert!(docs >= acked, "index holds {docs} docs but {acked} were acknowledged");
        assert!((docs as usize).is_multiple_of(EMBED_BATCH) || docs as usize == N, "{docs} is not whole batches");
        assert_eq!(engine.vector_count() as u64, docs, "every committed document has its vector in the graph");
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(index.join("vectors/state.json")).unwrap()).unwrap();
        assert_eq!(state["generation"].as_u64(), Some(engine.text().generation().unwrap()));
        // exactly e0 .. e{docs-1}, each with its stored vector
        let entries = engine.text().vector_entries(&|_| true).unwrap();
        let mut with_vector: Vec<bool> = vec![false; N];
        for e in &entries {
            let i: usize = e.id.as_str()[1..].parse().unwrap();
            assert!(i < docs as usize, "{} is present past the last committed batch ({docs} documents)", e.id);
            with_vector[i] = e.vector.is_some();
        }
        if let Some(i) = (0..docs as usize).find(|&i| !with_vector[i]) {
            panic!("acknowledged document e{i} has no stored vector ({docs} committed, {acked} acknowledged)");
        }
        // and dense search finds each one (by its own text, restricted to its id)
        for i in 0..docs as usize {
            let mut req = sieve_pipeline::SearchRequest::new(title(i));
            req.legs = sieve_pipeline::Legs { bm25: false, dense: true };
            req.filters = vec![format!("id=e{i}").parse().unwrap()];
            req.k = 1;
            let res = engine.search(&req).unwrap();
            assert!(!res.degraded, "{:?}", res.reasons);
            let found = res.hits.first().map(|h| h.id.as_str().to_owned());
            assert_eq!(found.as_deref(), Some(format!("e{i}").as_str()), "dense search does not find e{i}");
        }
        docs
    };
    let mut interrupted = 0;
    let mut last = 0;
    // By commit events: each kill leaves batches to do however fast the machine is.
    for when in [Kill::AfterAcks(2), Kill::AfterAcks(1), Kill::AfterAcks(3)] {
        let this_run = ingest_and_kill_with(&index, &file, when, EMBED_BATCH, &embed);
        if !index.join("vectors/config.json").exists() {
            continue; // killed before the first batch was embedded
        }
        let docs = check(last + this_run);
        if last < docs && (docs as usize) < N {
            interrupted += 1;
        }
        last = docs;
    }
    assert!(interrupted >= 3, "only {interrupted} kills landed after a commit and before the end");
    // Resuming needs no --embedder: the index remembers its model.
    let out = sieve().args(["ingest", "--index", s(&index), s(&file), "--progress", "log"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(check(0), N as u64);
    // Dense search through the CLI works on the result.
    let out = crate::ok(&["search", "--index", s(&index), "network router", "--mode", "dense", "--json", "-k", "3"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let hits = v["response"]["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3);
    assert!(hits[0]["scores"]["dense"]["similarity"].as_f64().unwrap() > 0.3);
}

/// The duplicate-id rule across a SIGKILL: the first copy of an id wins whether or not the ingest was
/// interrupted between the two copies (the later copy used to replace it after a resume).
#[test]
fn a_duplicate_id_after_a_kill_is_rejected_as_without_one() {
    const N: usize = 6_000;
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("{\"id\":\"dup\",\"title\":\"first copy\"}\n");
    for i in 1..N {
        text.push_str(&format!("{{\"id\":\"r{i}\",\"title\":\"row {i}\"}}\n"));
    }
    text.push_str("{\"id\":\"dup\",\"title\":\"second copy\"}\n");
    let file = crate::write(dir.path(), "dups.jsonl", text);
    let index = dir.path().join("idx");
    // killed after two 100-row commits: far from the second copy at the end
    let acked = ingest_and_kill_with(&index, &file, Kill::AfterAcks(2), 100, &[]);
    let committed = sieve_text::TextIndex::open(&index).unwrap().num_docs();
    assert!(committed >= acked && (committed as usize) < N, "the kill interrupted the ingest: {committed}");
    let report = dir.path().join("resumed.rejected.jsonl");
    let out = sieve().args(["ingest", "--index", s(&index), s(&file), "--report", s(&report)]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let opened = sieve_text::TextIndex::open(&index).unwrap();
    assert_eq!(opened.num_docs(), N as u64);
    assert_eq!(opened.get("dup").unwrap().unwrap().title.as_deref(), Some("first copy"));
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(&report).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0]["code"].as_str(), rows[0]["line"].as_u64()), (Some("duplicate_id"), Some(N as u64 + 1)));
}
