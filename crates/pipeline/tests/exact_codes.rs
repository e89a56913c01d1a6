//! Exact codes first, on the real product set: every abt-buy dev query with a product code
//! ([`sieve_text::is_product_code`]) that exactly one
//! of its judged-relevant documents carries gets that document at rank 1 in every mode (BM25, dense, hybrid,
//! hybrid + rerank). The dense leg and the reranker are the stand-ins (a hashed bag of words and a scripted
//! cross-encoder): the rule must hold whatever the models say, so the models need not be real.

use std::collections::HashMap;
use std::path::PathBuf;

use sieve_core::{Document, Limits};
use sieve_ingest::BatchSink;
use sieve_models::standin::{Behaviour, WordsEmbedder, WordsReranker};
use sieve_pipeline::*;
use sieve_text::{Analysis, Analyzer, TextIndex};

fn shared_data() -> PathBuf {
    let dir = std::env::var_os("SIEVE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    assert!(dir.join("abt-buy-products/qrels.tsv").is_file(), "evaluation data not found at {}", dir.display());
    dir.join("abt-buy-products")
}

#[test]
fn an_exact_code_puts_its_document_first_in_every_mode_on_abt_buy() {
    let data = shared_data();
    let docs: Vec<Document> = std::fs::read_to_string(data.join("corpus.jsonl"))
        .unwrap()
        .lines()
        .map(|l| Document::from_json(serde_json::from_str(l).unwrap(), &Limits::default()).unwrap())
        .collect();
    let mut relevant: HashMap<String, Vec<String>> = HashMap::new();
    for line in std::fs::read_to_string(data.join("qrels.tsv")).unwrap().lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() == 3 && cols[2].trim() != "0" {
            relevant.entry(cols[0].to_owned()).or_default().push(cols[1].to_owned());
        }
    }
    // the analyzed terms of each title, to tell which documents carry which code (a code in a body lists
    // what an accessory fits; the product's own code is in its title)
    let analyzer = Analyzer::shared();
    let terms_of = |d: &Document| -> Vec<String> { analyzer.terms(d.title.as_deref().unwrap_or(""), Analysis::Auto) };
    let doc_terms: HashMap<String, Vec<String>> = docs.iter().map(|d| (d.id.to_string(), terms_of(d))).collect();

    let dir = tempfile::tempdir().unwrap();
    let text = TextIndex::create(dir.path(), IndexSettings::default()).unwrap();
    let opts = EngineOptions {
        embedder: Some(EmbedderHandle::spawn(
            "words",
            Box::new(WordsEmbedder::new(64)),
            WorkerOptions::new(EMBED_BATCH_TOKENS),
        )),
        reranker: Some(RerankerHandle::spawn(
            "words-reranker",
            Box::new(WordsReranker::new(Behaviour::Good)),
            WorkerOptions::new(RERANK_BATCH_TOKENS),
        )),
        rerank_timeout: std::time::Duration::from_secs(60),
        ..EngineOptions::default()
    };
    let mut engine = Engine::from_parts(Some(dir.path().to_path_buf()), text, None, opts).unwrap();
    engine.ensure_vector_settings("words", HnswParams::default()).unwrap();
    let mut sink = engine.sink(WriterOptions { threads: 1, memory_bytes: 50 << 20 }).unwrap();
    sink.upsert(&docs).unwrap();
    sink.commit(Default::default()).unwrap();
    sink.finish().unwrap();
    engine.sync_vectors().unwrap();

    let (mut counted, mut failures) = (0, Vec::new());
    for line in std::fs::read_to_string(data.join("queries.jsonl")).unwrap().lines() {
        let q: serde_json::Value = serde_json::from_str(line).unwrap();
        let (id, query) = (q["id"].as_str().unwrap(), q["text"].as_str().unwrap());
        let Some(rel) = relevant.get(id) else { continue };
        let codes: Vec<String> = analyzer
            .written_terms(query, Analysis::Auto)
            .into_iter()
            .filter(|t| sieve_text::is_product_code(t))
            .collect();
        // a code of the query carried by exactly one judged-relevant document, and by no other document
        let target = codes.iter().find_map(|code| {
            let carriers: Vec<&String> = doc_terms.iter().filter(|(_, t)| t.contains(code)).map(|(d, _)| d).collect();
            (carriers.len() == 1 && rel.contains(carriers[0])).then(|| carriers[0].clone())
        });
        let Some(target) = target else { continue };
        counted += 1;
        for (name, legs, rerank) in [
            ("bm25", Legs { bm25: true, dense: false }, false),
            ("dense", Legs { bm25: false, dense: true }, false),
            ("hybrid", Legs { bm25: true, dense: true }, false),
            ("hybrid+rerank", Legs { bm25: true, dense: true }, true),
        ] {
            let mut req = SearchRequest::new(query);
            req.legs = legs;
            req.k = 3;
            if rerank {
                req.rerank = Some(RerankRequest { window: 20, ..RerankRequest::default() });
            }
            let res = engine.search(&req).unwrap();
            let first = res.hits.first().map(|h| h.id.to_string());
            if first.as_deref() != Some(target.as_str()) {
                failures.push(format!("{name}: {query:?}: {target} expected first, found {first:?}"));
            }
        }
    }
    eprintln!("{counted} abt-buy dev queries have a code carried by exactly one judged-relevant document");
    assert!(counted >= 100, "only {counted} queries with such a code");
    assert!(failures.is_empty(), "{} of {} checks failed:\n{}", failures.len(), counted * 4, failures.join("\n"));
}
