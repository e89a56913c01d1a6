//! `sieve demo`: the main job at this stage. Indexes the product catalog and the Chinese news set from the
//! shared datasets (resuming or skipping what is already indexed) and runs example searches with filters.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use sieve_core::Filter;
use sieve_ingest::{IngestOptions, Input};
use sieve_text::{Bm25Query, IndexSettings, TextError, TextIndex};

use crate::engine::{MetricArg, VectorArgs};
use crate::ingest::{default_report_path, ingest_all, open_for_ingest, Plan};
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
}

const SETS: [(&str, &str); 2] = [("products", "abt-buy-products"), ("news", "lcsts-p3-zh-news")];

const EXAMPLES: &[(&str, &str, &[&str])] = &[
    ("products", "Sony turntable PS-LX350H", &[]),
    ("products", "linksys ethernet switch", &["price<100"]),
    ("products", "photoshop", &["brand=adobe", "category=software"]),
    ("products", "canon print cartridge 7737A001", &["source=abt.com"]),
    ("news", "雅虎宣布剥离阿里巴巴股份", &[]),
    ("news", "智能手机 市场", &[]),
];

pub fn run(args: DemoArgs) -> Result<()> {
    for (name, set) in SETS {
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
        let vectors = VectorArgs {
            embedder: None,
            device: "auto".into(),
            hnsw_m: 16,
            ef_construction: 200,
            metric: MetricArg::Cosine,
        };
        let index = open_for_ingest(&dir, IndexSettings::default(), &vectors)?;
        let inputs = [Input::File(corpus)];
        let plan = Plan {
            inputs: &inputs,
            options: IngestOptions::default(),
            report: default_report_path(&dir),
            threads: None,
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
        let index = TextIndex::open(&args.indexes.join(name))?;
        let mut query = Bm25Query::new(*text, 5);
        query.filters = filters.iter().map(|f| f.parse::<Filter>()).collect::<Result<_, _>>()?;
        let res = index.search(&query)?;
        let total: u64 = res.timings.iter().map(|t| t.micros).sum();
        println!(
            "\n[{name}] {text:?} {} — {}{} matches, {:.2} ms",
            filters.join(" "),
            if res.pruned { "at least " } else { "" },
            res.matched,
            total as f64 / 1000.0
        );
        print_hits(&res.hits, false);
    }
    Ok(())
}
