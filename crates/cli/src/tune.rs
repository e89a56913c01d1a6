//! `sieve tune`: fits an index's fusion settings (method, RRF k, the legs' weights, candidates per leg) on a
//! labelled query set by k-fold cross-validation, and stores them in the index (`search.json`), so that later
//! searches that name no fusion use them.
//!
//! Each query's legs are recalled once, 200 deep; every candidate setting then fuses those lists (the fusion
//! stage is a pure function), so the whole grid costs one recall per query. The choice is made and judged by
//! `sieve_eval::tune::cross_validate`: the estimate is what the procedure scores on queries it did not see.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use sieve_eval::metrics::ndcg_at_k;
use sieve_eval::tune::{cross_validate, folds};
use sieve_eval::Dataset;
use sieve_pipeline::stages::fuse::{fuse, fuse_adapted};
use sieve_pipeline::stages::recall::Recall;
use sieve_pipeline::{Fusion, Mode, SearchRequest, SearchSettings, TuneRecord};

use crate::engine::{open_engine, EngineArgs};

/// Candidates each leg recalls for the grid; a setting with fewer cuts the lists.
const RECALL_DEPTH: usize = 200;
const RECALL_KS: [usize; 3] = [100, 50, 200];
const RRF_KS: [f32; 5] = [10.0, 20.0, 40.0, 60.0, 100.0];
const DENSE_WEIGHTS: [f32; 6] = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0];
const LINEAR_BM25: [f32; 7] = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
/// How strongly the weights follow each query's BM25 evidence (`sieve_pipeline::fusion::adapt_weights`).
const ADAPT: [f32; 3] = [0.0, 0.5, 1.0];

#[derive(Debug, Args)]
pub struct TuneArgs {
    /// Index directory (with embeddings: BM25-only indexes have nothing to fuse).
    #[arg(long, short = 'i')]
    pub index: PathBuf,
    /// Labelled queries: a dataset folder (`queries.jsonl` + `qrels.tsv`, or BEIR's layout).
    #[arg(long = "dataset", short = 'd')]
    pub dataset: PathBuf,
    /// Folds of the cross-validation.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Report only; leave the index's settings as they are.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// One point of the grid: fusion, candidates per leg, adaptation strength.
type Setting = (Fusion, usize, f32);

/// The grid, the default setting first (ties go to it), fixed weights before adapted ones.
fn grid() -> Vec<Setting> {
    let mut out = vec![(Fusion::default(), sieve_pipeline::DEFAULT_RECALL_K, 0.0)];
    for adapt in ADAPT {
        for recall_k in RECALL_KS {
            for k in RRF_KS {
                for dense_weight in DENSE_WEIGHTS {
                    out.push((Fusion::Rrf { k, bm25_weight: 1.0, dense_weight }, recall_k, adapt));
                }
            }
            for b in LINEAR_BM25 {
                out.push((Fusion::Linear { bm25_weight: b, dense_weight: 1.0 - b }, recall_k, adapt));
            }
        }
    }
    out
}

fn describe((fusion, recall_k, adapt): &Setting) -> String {
    let adapt = if *adapt > 0.0 { format!(" adapt={adapt}") } else { String::new() };
    match fusion {
        Fusion::Rrf { k, bm25_weight, dense_weight } => {
            format!("rrf k={k} bm25:dense={bm25_weight}:{dense_weight} recall_k={recall_k}{adapt}")
        }
        Fusion::Linear { bm25_weight, dense_weight } => {
            format!("linear bm25:dense={bm25_weight:.1}:{dense_weight:.1} recall_k={recall_k}{adapt}")
        }
    }
}

/// `recall` with each leg cut to its first `k` hits.
fn cut(recall: &Recall, k: usize) -> Recall {
    let mut r = recall.clone();
    if let Some(b) = r.bm25.as_mut() {
        b.hits.truncate(k);
    }
    if let Some(d) = r.dense.as_mut() {
        d.hits.truncate(k);
    }
    r
}

pub fn run(args: TuneArgs) -> Result<()> {
    if args.folds < 2 {
        bail!("--folds {}: expected at least 2", args.folds);
    }
    let data = Dataset::open(&args.dataset).with_context(|| format!("reading {}", args.dataset.display()))?;
    let queries = data.judged_queries();
    if queries.len() < args.folds {
        bail!("{}: {} judged queries, fewer than --folds {}", args.dataset.display(), queries.len(), args.folds);
    }
    let engine = open_engine(&args.index, &args.engine, true, false)?;
    if !engine.dense_ready() {
        bail!(
            "index {} has no embeddings (or its model is not available): with one leg there is no fusion to tune",
            args.index.display()
        );
    }
    eprintln!("recalling {} queries, {RECALL_DEPTH} candidates per leg …", queries.len());
    let mut recalls = Vec::with_capacity(queries.len());
    for q in &queries {
        let mut req = SearchRequest::in_mode(q.text.clone(), Mode::Hybrid);
        req.recall_k = Some(RECALL_DEPTH);
        req.with_documents = false;
        recalls.push(engine.recall(&req).with_context(|| format!("query {}", q.id))?);
    }
    let judged: Vec<_> = queries.iter().map(|q| data.qrels.get(&q.id).cloned().unwrap_or_default()).collect();
    let ndcg = |ids: Vec<String>, q: usize| {
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        ndcg_at_k(&refs, &judged[q], 10)
    };
    let settings = grid();
    let mut scores = vec![vec![0.0; queries.len()]; settings.len()];
    for (s, (fusion, recall_k, adapt)) in settings.iter().enumerate() {
        for (q, recall) in recalls.iter().enumerate() {
            let ranking = fuse_adapted(cut(recall, *recall_k), *fusion, *adapt);
            let ids = ranking.candidates.iter().take(10).map(|c| c.id.to_string()).collect();
            scores[s][q] = ndcg(ids, q);
        }
    }
    // each leg alone, from the same lists, through the same fuse stage (so with exact codes first, as a
    // one-leg search has them)
    let leg = |keep_bm25: bool| -> f64 {
        let mut sum = 0.0;
        for (q, r) in recalls.iter().enumerate() {
            let mut r = cut(r, 10);
            if keep_bm25 {
                r.dense = None;
            } else {
                r.bm25 = None;
            }
            let ids = fuse(r, Fusion::default()).candidates.iter().take(10).map(|c| c.id.to_string()).collect();
            sum += ndcg(ids, q);
        }
        sum / queries.len() as f64
    };
    let (bm25, dense) = (leg(true), leg(false));

    let keys: Vec<&str> = queries.iter().map(|q| q.id.as_str()).collect();
    let fold_of = folds(&keys, args.folds);
    let cv = cross_validate(&scores, &fold_of, args.folds);
    let mean = |s: usize| scores[s].iter().sum::<f64>() / queries.len() as f64;
    let default = mean(0);

    println!(
        "{} ({} judged queries, {} settings, {}-fold cross-validation), nDCG@10:",
        data.name,
        queries.len(),
        settings.len(),
        args.folds
    );
    println!("| | nDCG@10 |");
    println!("|---|---|");
    println!("| BM25 leg alone | {bm25:.4} |");
    println!("| dense leg alone | {dense:.4} |");
    println!("| hybrid, default ({}) | {default:.4} |", describe(&settings[0]));
    println!("| hybrid, tuned: cross-validated estimate | {:.4} |", cv.estimate);
    println!("| hybrid, tuned: in sample (optimistic) | {:.4} |", cv.in_sample);
    println!("chosen on every query: {}", describe(&settings[cv.chosen]));
    let per_fold: Vec<String> = cv.chosen_per_fold.iter().map(|&s| describe(&settings[s])).collect();
    println!("chosen per fold: {}", per_fold.join("; "));

    let (fusion, recall_k, adapt) = settings[cv.chosen];
    let mut stored = SearchSettings::load(&args.index)?;
    stored.fusion = fusion;
    stored.recall_k = recall_k;
    stored.adapt = adapt;
    stored.tuned = Some(TuneRecord {
        dataset: args.dataset.display().to_string(),
        queries: queries.len(),
        folds: args.folds,
        metric: "ndcg@10".into(),
        cross_validated: cv.estimate,
        in_sample: cv.in_sample,
        default,
        at: time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    });
    if args.dry_run {
        println!("--dry-run: index settings left as they are");
    } else {
        stored.save(&args.index)?;
        println!("stored in {}", args.index.join("search.json").display());
    }
    Ok(())
}
