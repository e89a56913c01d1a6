//! `sieve eval`: build an index from a dataset's corpus with the real ingest path, run every judged query,
//! report quality (nDCG@10, MRR@10, Recall@10/100) and speed (indexing docs/s, query latency percentiles).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use sieve_eval::{markdown_table, summarize, Dataset, Layout, QueryRun, Report};
use sieve_ingest::{IngestOptions, Input};
use sieve_text::{Bm25Query, IndexSettings, TextIndex};

use crate::ingest::{ingest_all, Plan, SettingsArgs};
use crate::progress::{ProgressMode, Reporter};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Dataset folders (the `shared/data` layout or BEIR's); repeatable.
    #[arg(long = "dataset", short = 'd', required = true)]
    pub datasets: Vec<PathBuf>,
    /// Where to write `<dataset>.json` and `report.md`.
    #[arg(long, default_value = "data/reports/eval")]
    pub out: PathBuf,
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Indexing threads. One keeps documents in file order, so score ties (and so the metrics) are the same
    /// on every run, and makes indexing speed comparable with single-threaded peers.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Run each query this many times and keep the median latency (the first run warms caches).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// How many hits each query retrieves (Recall@100 needs 100; speed comparisons with peers use 10).
    #[arg(long, default_value_t = 100)]
    pub depth: usize,
    /// Keep the built indexes under this directory instead of a temporary one.
    #[arg(long)]
    pub keep_index: Option<PathBuf>,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let settings = args.settings.resolve()?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut reports = Vec::new();
    for dir in &args.datasets {
        let report = eval_one(dir, settings, &args).with_context(|| format!("evaluating {}", dir.display()))?;
        let path = args.out.join(format!("{}.json", report.dataset));
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        let stages: Vec<String> = report.stage_ms_mean.iter().map(|(s, ms)| format!("{s} {ms:.3}")).collect();
        eprintln!(
            "{}: nDCG@10 {:.4}, MRR@10 {:.4}, R@100 {:.4}, p50 {:.3} ms (mean ms per stage: {})",
            report.dataset,
            report.ndcg_at_10,
            report.mrr_at_10,
            report.recall_at_100,
            report.latency_ms_p50,
            stages.join(", ")
        );
        reports.push(report);
    }
    let table = markdown_table(&reports);
    let md = args.out.join("report.md");
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    println!("{table}");
    eprintln!("wrote {} and one JSON file per dataset", md.display());
    Ok(())
}

fn eval_one(dir: &std::path::Path, settings: IndexSettings, args: &EvalArgs) -> Result<Report> {
    let dataset = Dataset::open(dir)?;
    let tmp;
    let index_dir = match &args.keep_index {
        Some(root) => root.join(&dataset.name),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().join("index")
        }
    };
    if index_dir.exists() && args.keep_index.is_some() {
        std::fs::remove_dir_all(&index_dir).with_context(|| format!("clearing {}", index_dir.display()))?;
    }
    let index = TextIndex::create(&index_dir, settings)?;
    let renames = match dataset.layout {
        Layout::Beir => vec![("_id".to_owned(), "id".to_owned()), ("text".to_owned(), "body".to_owned())],
        Layout::Sieve => Vec::new(),
    };
    let inputs = [Input::File(dataset.corpus_path())];
    let plan = Plan {
        inputs: &inputs,
        options: IngestOptions { batch_size: 10_000, renames, ..IngestOptions::default() },
        report: index_dir.join("rejected.jsonl"),
        threads: Some(args.threads),
    };
    let totals = ingest_all(&index, &plan, &mut Reporter::new(ProgressMode::None))?;
    let queries = dataset.judged_queries();
    let mut runs = Vec::with_capacity(queries.len());
    for q in queries {
        let mut query = Bm25Query::new(q.text.clone(), args.depth.max(1));
        query.with_documents = false;
        let mut latencies = Vec::with_capacity(args.repeat.max(1));
        let mut ranked = Vec::new();
        let mut stages = Vec::new();
        for _ in 0..args.repeat.max(1) {
            let t = Instant::now();
            let res = index.search(&query)?;
            latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            ranked = res.hits.into_iter().map(|h| h.id.to_string()).collect();
            stages = res.timings.into_iter().map(|s| (s.stage, s.micros as f64 / 1000.0)).collect();
        }
        latencies.sort_by(f64::total_cmp);
        runs.push(QueryRun { query: q, ranked, latency_ms: latencies[latencies.len() / 2], stages });
    }
    let mut report = summarize(
        &dataset,
        "sieve bm25",
        index.num_docs(),
        &runs,
        serde_json::json!({
            "k1": settings.bm25.k1, "b": settings.bm25.b,
            "title_boost": settings.boosts.title, "body_boost": settings.boosts.body,
            "rejected_rows": totals.rejected, "depth": args.depth, "index_threads": args.threads,
        }),
    );
    report.index_docs_per_s = Some(totals.docs as f64 / totals.seconds.max(1e-9));
    Ok(report)
}
