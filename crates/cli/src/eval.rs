//! `sieve eval`: build an index from a dataset's corpus with the real ingest path (embedding it when a mode
//! needs vectors), run every judged query in each requested mode side by side, and report quality (nDCG@10,
//! MRR@10, Recall@10/100) and speed (indexing docs/s, query latency percentiles, mean time per stage) as a
//! Markdown table, JSON and a PNG chart.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use sieve_eval::{markdown_table, summarize, Dataset, Layout, QueryRun, Report};
use sieve_ingest::{IngestOptions, Input};
use sieve_pipeline::{Engine, Mode, SearchRequest};

use crate::engine::{open_engine, EngineArgs, VectorArgs};
use crate::ingest::{ingest_all, open_for_ingest, Plan, SettingsArgs};
use crate::progress::{ProgressMode, Reporter};
use crate::search::parse_mode;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Dataset folders (the `shared/data` layout or BEIR's); repeatable.
    #[arg(long = "dataset", short = 'd', required_unless_present = "replot")]
    pub datasets: Vec<PathBuf>,
    /// Redraw `report.md` and `report.png` in --out from the `<dataset>.json` files already there; runs nothing.
    #[arg(long)]
    pub replot: bool,
    /// Where to write `<dataset>.json`, `report.md` and `report.png`.
    #[arg(long, default_value = "data/reports/eval")]
    pub out: PathBuf,
    /// Modes to run side by side (comma-separated): bm25, dense, hybrid, hybrid+rerank.
    #[arg(long, value_delimiter = ',', default_value = "bm25", value_parser = parse_mode)]
    pub modes: Vec<Mode>,
    /// Embedding model for the dense modes.
    #[arg(long, default_value = "minilm")]
    pub embedder: String,
    /// Cross-encoder for hybrid+rerank.
    #[arg(long)]
    pub reranker: Option<String>,
    /// Shown next to the reranker's results (e.g. "random weights").
    #[arg(long)]
    pub reranker_note: Option<String>,
    /// Candidates the reranker rescored per query.
    #[arg(long, default_value_t = 50)]
    pub window: usize,
    /// Where models run: auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Indexing threads. One makes indexing speed comparable with single-threaded peers (the metrics do not
    /// depend on it: equal scores rank by id).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Full passes over all the queries; each query's latency is its median over the passes, and each pass's
    /// wall time is reported (`pass_seconds`) for throughput.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// How many hits each query retrieves (Recall@100 needs 100; speed comparisons with peers use 10).
    #[arg(long, default_value_t = 100)]
    pub depth: usize,
    /// Candidates each leg recalls before fusion (default: --depth).
    #[arg(long)]
    pub recall_k: Option<usize>,
    /// Keep the built indexes under this directory (and reuse them when their corpus is already in).
    #[arg(long)]
    pub keep_index: Option<PathBuf>,
    /// Evaluate only the first N judged queries of each dataset.
    #[arg(long)]
    pub max_queries: Option<usize>,
    /// Rewrite the queries as shoppers type them (`sieve_eval::variants`): `typo` (an edit in each word of 5+
    /// letters, never in codes) or `prefix` (the last word cut to 3-4 characters). Reports name the variant.
    #[arg(long, default_value = "clean")]
    pub queries: sieve_eval::variants::Variant,
}

pub fn run(args: EvalArgs) -> Result<()> {
    args.settings.resolve()?; // refuse bad settings before any work
    if args.modes.contains(&Mode::HybridRerank) && args.reranker.is_none() {
        bail!("mode hybrid+rerank needs --reranker MODEL (a Qwen3-Reranker directory or cache name)");
    }
    if let (Some(name), false) = (&args.reranker, args.modes.contains(&Mode::HybridRerank)) {
        let asked: Vec<&str> = args.modes.iter().map(|m| m.name()).collect();
        bail!(
            "--reranker {name} is only used by mode hybrid+rerank, found --modes {}; add it (e.g. --modes {},hybrid+rerank)",
            asked.join(","),
            asked.join(",")
        );
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    if args.replot {
        return replot(&args.out);
    }
    let mut reports = Vec::new();
    for dir in &args.datasets {
        let per_mode = eval_one(dir, &args).with_context(|| format!("evaluating {}", dir.display()))?;
        let Some(first) = per_mode.first() else { continue };
        let path = args.out.join(format!("{}.json", first.dataset));
        std::fs::write(&path, serde_json::to_vec_pretty(&per_mode)?)
            .with_context(|| format!("writing {}", path.display()))?;
        for report in &per_mode {
            let stages: Vec<String> = report.stage_ms_mean.iter().map(|(s, ms)| format!("{s} {ms:.3}")).collect();
            eprintln!(
                "{} [{}]: nDCG@10 {:.4}, MRR@10 {:.4}, R@100 {:.4}, p50 {:.3} ms (mean ms per stage: {})",
                report.dataset,
                report.system,
                report.ndcg_at_10,
                report.mrr_at_10,
                report.recall_at_100,
                report.latency_ms_p50,
                stages.join(", ")
            );
        }
        reports.extend(per_mode);
    }
    let table = markdown_table(&reports);
    let md = args.out.join("report.md");
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    println!("{table}");
    let png = args.out.join("report.png");
    sieve_eval::chart::write_png(&reports, &png).with_context(|| format!("drawing {}", png.display()))?;
    eprintln!("wrote {}, {} and one JSON file per dataset", md.display(), png.display());
    Ok(())
}

fn replot(out: &std::path::Path) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .with_context(|| format!("reading {}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut reports: Vec<Report> = Vec::new();
    for f in &files {
        let raw = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let per_mode: Vec<Report> = serde_json::from_slice(&raw)
            .with_context(|| format!("{}: expected the JSON array of reports `sieve eval` writes", f.display()))?;
        reports.extend(per_mode);
    }
    if reports.is_empty() {
        bail!("no reports (*.json from `sieve eval`) in {}", out.display());
    }
    std::fs::write(out.join("report.md"), markdown_table(&reports))?;
    sieve_eval::chart::write_png(&reports, &out.join("report.png"))?;
    eprintln!(
        "redrew {} and {} from {} files",
        out.join("report.md").display(),
        out.join("report.png").display(),
        files.len()
    );
    Ok(())
}

fn eval_one(dir: &std::path::Path, args: &EvalArgs) -> Result<Vec<Report>> {
    let mut dataset = Dataset::open(dir)?;
    let tmp;
    let index_dir = match &args.keep_index {
        Some(root) => root.join(&dataset.name),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().join("index")
        }
    };
    if args.queries != sieve_eval::variants::Variant::Clean {
        for q in &mut dataset.queries {
            q.text = args.queries.apply(&q.id, &q.text);
        }
        dataset.name = format!("{} ({} queries)", dataset.name, args.queries.name());
    }
    let needs_dense = args.modes.iter().any(|m| m.dense());
    let vectors = VectorArgs::new(needs_dense.then(|| args.embedder.clone()), &args.device);
    let engine = open_for_ingest(&index_dir, &args.settings, &vectors)?;
    // what the index was built with (a kept index keeps its own; flags that disagree were refused)
    let settings = engine.text().settings();
    let renames = match dataset.layout {
        Layout::Beir => vec![("_id".to_owned(), "id".to_owned()), ("text".to_owned(), "body".to_owned())],
        Layout::Sieve => Vec::new(),
    };
    let inputs = [Input::File(dataset.corpus_path())];
    let plan = Plan {
        inputs: &inputs,
        options: IngestOptions { batch_size: 2_000, renames, ..IngestOptions::default() },
        report: index_dir.join("rejected.jsonl"),
        report_history: None,
        threads: Some(args.threads),
        html: None,
    };
    let totals = ingest_all(&engine, &plan, &mut Reporter::new(ProgressMode::Log))?;
    let fresh_docs = totals.docs;
    let index_seconds = totals.seconds;
    drop(engine);
    // The search engine: the same index, with the reranker when a mode needs it.
    // An evaluation waits for the reranker however slow it is: a degraded query would be an error here.
    let mut engine_args =
        EngineArgs::new(needs_dense.then(|| args.embedder.clone()), args.reranker.clone(), &args.device);
    engine_args.rerank_timeout_ms = 600_000;
    let engine = open_engine(&index_dir, &engine_args, needs_dense, args.modes.contains(&Mode::HybridRerank))?;
    let mut queries = dataset.judged_queries();
    if let Some(n) = args.max_queries {
        queries.truncate(n);
    }
    let mut reports = Vec::new();
    for &mode in &args.modes {
        // A repeated rerank would be answered from the score cache: the reranker runs once per query, so its
        // latency is the model's.
        let repeat = if mode == Mode::HybridRerank { 1 } else { args.repeat.max(1) };
        // Full passes over all the queries (not one query repeated back to back, which would keep its postings
        // in cache): a query's latency is its median over the passes.
        let mut latencies = vec![Vec::with_capacity(repeat); queries.len()];
        let mut answers = vec![(Vec::new(), Vec::new()); queries.len()];
        let mut pass_seconds = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            let pass = Instant::now();
            for (i, q) in queries.iter().enumerate() {
                let t = Instant::now();
                answers[i] = run_query(&engine, mode, &q.text, args)?;
                latencies[i].push(t.elapsed().as_secs_f64() * 1000.0);
            }
            pass_seconds.push(pass.elapsed().as_secs_f64());
        }
        let runs: Vec<QueryRun> = queries
            .iter()
            .zip(answers)
            .zip(&mut latencies)
            .map(|((q, (ranked, stages)), l)| {
                l.sort_by(f64::total_cmp);
                QueryRun { query: q, ranked, latency_ms: l[l.len() / 2], stages }
            })
            .collect();
        let system = match (mode, &args.reranker_note) {
            (Mode::HybridRerank, Some(note)) => format!("sieve {} ({note})", mode.name()),
            _ => format!("sieve {}", mode.name()),
        };
        let mut report = summarize(
            &dataset,
            &system,
            engine.text().num_docs(),
            &runs,
            serde_json::json!({
                "mode": mode.name(),
                "k1": settings.bm25.k1, "b": settings.bm25.b,
                "title_boost": settings.boosts.title, "body_boost": settings.boosts.body,
                "embedder": mode.dense().then(|| args.embedder.clone()),
                "reranker": (mode == Mode::HybridRerank).then(|| args.reranker.clone()),
                "reranker_note": (mode == Mode::HybridRerank).then(|| args.reranker_note.clone()),
                "window": (mode == Mode::HybridRerank).then_some(args.window),
                "fusion": mode.dense().then(|| serde_json::to_value(engine.search_settings().fusion).unwrap_or_default()),
                "rejected_rows": totals.rejected, "depth": args.depth, "recall_k": args.recall_k.unwrap_or(args.depth), "index_threads": args.threads, "repeat": repeat,
                "ann": mode.dense().then(|| engine.settings().map(|s| serde_json::to_value(s.hnsw).unwrap_or_default())),
            }),
        );
        report.pass_seconds = pass_seconds;
        if fresh_docs > 0 {
            report.index_docs_per_s = Some(fresh_docs as f64 / index_seconds.max(1e-9));
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Per-stage timings in ms.
type Stages = Vec<(String, f64)>;

/// One query in one mode, through the engine like every search: the ranked ids and the per-stage timings
/// (in bm25 mode the BM25 leg's own stages: analyze, stats, bm25).
fn run_query(engine: &Engine, mode: Mode, text: &str, args: &EvalArgs) -> Result<(Vec<String>, Stages)> {
    let mut req = SearchRequest::in_mode(text, mode);
    req.k = args.depth.clamp(1, sieve_pipeline::MAX_DEPTH);
    req.recall_k = Some(match mode {
        Mode::Bm25 => req.k,
        _ => args.recall_k.unwrap_or(req.k).clamp(req.k, sieve_pipeline::MAX_DEPTH),
    });
    req.with_documents = false;
    if let Some(rr) = req.rerank.as_mut() {
        rr.window = args.window;
    }
    let res = engine.search(&req)?;
    if res.degraded {
        bail!("query {text:?} in mode {}: degraded ({})", mode.name(), res.reasons.join("; "));
    }
    let timings = match (&res.bm25, mode) {
        (Some(bm25), Mode::Bm25) => bm25.stages.clone(),
        _ => res.timings.into_iter().filter(|t| t.stage != "total").collect(),
    };
    let stages = timings.into_iter().map(|s| (s.stage, s.micros as f64 / 1000.0)).collect();
    Ok((res.hits.into_iter().map(|h| h.id.to_string()).collect(), stages))
}
