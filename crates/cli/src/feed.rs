//! `sieve feed`: one page of a news feed (what `POST /v1/feed` answers), for a topic or a reader's profile.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use sieve_api::{DecayShapeName, FeedBody, FeedDecay, FeedProfile, SearchMode, Span};
use sieve_pipeline::{Mode, VectorSettings};

use crate::engine::{open_engine, EngineArgs};
use crate::search::{parse_mode, pick_mode};

#[derive(Debug, Args)]
pub struct FeedArgs {
    /// Index directory.
    #[arg(long, short = 'i')]
    pub index: PathBuf,
    /// The topic (may be left out with --liked or --keyword).
    #[arg(default_value = "")]
    pub query: String,
    /// A document the reader liked (repeatable): the feed follows them and leaves them out.
    #[arg(long)]
    pub liked: Vec<String>,
    /// A word the reader follows (repeatable).
    #[arg(long = "keyword")]
    pub keywords: Vec<String>,
    /// Only articles published at or after this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    pub since: Option<String>,
    /// Only articles published before this time.
    #[arg(long)]
    pub until: Option<String>,
    /// A filter, as `sieve search` takes (repeatable).
    #[arg(long = "filter", short = 'f')]
    pub filters: Vec<String>,
    /// Items per page (1..=100).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// The previous page's `next cursor`, with the same other flags.
    #[arg(long)]
    pub cursor: Option<String>,
    /// At most this many items of one source per page.
    #[arg(long)]
    pub max_per_source: Option<usize>,
    /// MMR's trade-off: 0 is pure relevance × freshness, 1 pure novelty.
    #[arg(long, default_value_t = 0.3)]
    pub diversity: f64,
    /// Freshness curve: gauss, exp, linear or none.
    #[arg(long, default_value = "gauss", value_parser = parse_shape)]
    pub decay: DecayShapeName,
    /// Age past --decay-offset at which the factor is --decay-factor (`12h`, `1d`, seconds).
    #[arg(long, default_value = "1d")]
    pub decay_scale: String,
    /// Age within which the factor stays 1.
    #[arg(long, default_value = "0")]
    pub decay_offset: String,
    /// The factor at offset + scale (0 < f < 1).
    #[arg(long, default_value_t = 0.5)]
    pub decay_factor: f64,
    /// Where ages count from: `now` or a time (RFC 3339).
    #[arg(long, default_value = "now")]
    pub origin: String,
    /// Show near-duplicates as items of their own instead of one item per story.
    #[arg(long)]
    pub no_collapse: bool,
    /// Show relevance, freshness, the MMR penalty and the source cap per item.
    #[arg(long)]
    pub explain: bool,
    /// Print the `POST /v1/feed` answer as JSON.
    #[arg(long)]
    pub json: bool,
    /// bm25, dense, hybrid or hybrid+rerank (default as for `sieve search`).
    #[arg(long, value_parser = parse_mode)]
    pub mode: Option<Mode>,
    /// Query language for analysis.
    #[arg(long)]
    pub lang: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

fn parse_shape(s: &str) -> Result<DecayShapeName, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("expected gauss, exp, linear or none, found {s:?}"))
}

pub fn run(args: FeedArgs) -> Result<()> {
    let has_vectors = VectorSettings::load(&args.index)?.is_some();
    let mode = pick_mode(
        args.mode,
        &args.index,
        has_vectors,
        args.engine.reranker.as_deref(),
        args.engine.embedder.as_deref(),
    )?;
    let engine = open_engine(&args.index, &args.engine, mode.dense(), mode.reranks())?;
    let body = FeedBody {
        query: Some(args.query.clone()),
        profile: (!args.liked.is_empty() || !args.keywords.is_empty())
            .then(|| FeedProfile { liked: args.liked.clone(), keywords: args.keywords.clone() }),
        since: args.since.clone(),
        until: args.until.clone(),
        filters: args.filters.clone(),
        limit: Some(args.limit),
        cursor: args.cursor.clone(),
        max_per_source: args.max_per_source,
        diversity: Some(args.diversity),
        decay: Some(FeedDecay {
            shape: Some(args.decay),
            origin: Some(args.origin.clone()),
            scale: Some(Span::Text(args.decay_scale.clone())),
            offset: Some(Span::Text(args.decay_offset.clone())),
            decay: Some(args.decay_factor),
        }),
        collapse: Some(!args.no_collapse),
        explain: args.explain,
        mode: match mode {
            Mode::Bm25 => SearchMode::Bm25,
            Mode::Dense => SearchMode::Dense,
            Mode::Hybrid | Mode::HybridRerank => SearchMode::Hybrid,
        },
        rerank: Some(mode.reranks()),
        lang: args.lang.clone(),
        index: None,
    };
    let req = sieve_server::convert::feed_request(&body, false).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let res = engine.feed(&req)?;
    let name = args.index.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let res = sieve_server::convert::feed_result(&name, res);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&res)?);
        return Ok(());
    }
    for item in &res.items {
        let doc = item.document.as_ref();
        let text = |k: &str| doc.and_then(|d| d.get(k)).and_then(|v| v.as_str()).unwrap_or("").trim().to_owned();
        let title = Some(text("title")).filter(|t| !t.is_empty()).unwrap_or_else(|| text("body"));
        let title: String = title.chars().take(48).collect();
        let age = item
            .explain
            .as_ref()
            .and_then(|e| e.age_secs)
            .map_or(String::new(), |a| format!("{:.1}h", a as f64 / 3600.0));
        println!("{:>4}  {:.4}  {:<18} {:>7}  {title}", item.rank, item.score, item.id, age);
        let source = text("source");
        if item.cluster.size > 1 {
            let others: Vec<&str> = item.cluster.sources.iter().map(String::as_str).take(4).collect();
            println!("        {source} · +{} similar from {}", item.cluster.size - 1, others.join(", "));
        } else if !source.is_empty() {
            println!("        {source}");
        }
        if let Some(e) = &item.explain {
            println!(
                "        relevance {:.4} ({}) × freshness {:.4}; MMR penalty {:.4}{}",
                e.relevance,
                e.relevance_from,
                e.freshness,
                e.mmr_penalty,
                if e.promoted_by_cap { "; placed by the source cap" } else { "" }
            );
        }
    }
    if !res.held_back.is_empty() {
        let shown: Vec<&str> = res.held_back.iter().map(String::as_str).take(8).collect();
        let more = res.held_back.len().saturating_sub(shown.len());
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        println!("held back by the source cap for later pages: {}{more}", shown.join(", "));
    }
    for r in res.reasons.iter().chain(&res.notes) {
        eprintln!("note: {r}");
    }
    let total: u64 = res.timings.iter().filter(|t| t.stage == "total").map(|t| t.micros).sum();
    println!(
        "{} items of {} stories from {} candidates · origin {} · {:.1} ms",
        res.items.len(),
        res.clusters,
        res.candidates,
        res.origin,
        total as f64 / 1000.0
    );
    match &res.next_cursor {
        Some(c) => println!("next cursor: {c}"),
        None => println!("end of the feed"),
    }
    Ok(())
}
