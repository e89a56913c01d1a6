//! `sieve ingest`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use sieve_core::{Limits, SortBy};
use sieve_ingest::{
    ingest_source, Format, IngestOptions, Input, OnError, Progress, RejectReport, RowReader, SourceSummary,
};
use sieve_pipeline::{
    DenseSide, EmbedderHandle, Engine, EngineOptions, OpenOptions, SyncReport, VectorSettings, WorkerOptions,
    EMBED_BATCH_TOKENS,
};
use sieve_text::{
    Bm25Params, FieldBoosts, HtmlSettings, IndexSettings, TextError, TextIndex, Tolerance, WriterOptions,
};

use crate::engine::{check_embedder, load_embedder, VectorArgs};
use crate::progress::{ProgressMode, Reporter};

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Index directory (created if it does not exist).
    #[arg(long, short = 'i')]
    pub index: PathBuf,
    /// Input files (.jsonl/.ndjson/.json or .csv, optionally .gz); `-` reads stdin.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Input format, when the file name does not tell (stdin defaults to jsonl).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Documents per commit. A commit is the unit of durability: a killed ingest keeps every committed batch.
    #[arg(long, default_value_t = 2000)]
    pub batch_size: usize,
    /// What to do with a bad row: `skip` writes it to the reject report and goes on; `fail` stops there.
    #[arg(long, value_enum, default_value_t = OnErrorArg::Skip)]
    pub on_error: OnErrorArg,
    /// Where rejected rows go (JSON lines: source, line, code, reason, raw row). Default:
    /// INDEX/rejected/<unix time>.jsonl
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Largest accepted document, in bytes.
    #[arg(long, default_value_t = Limits::default().max_document_bytes)]
    pub max_doc_bytes: usize,
    /// Rename an input field before validation, FROM=TO (repeatable), e.g. `--rename _id=id --rename text=body`.
    #[arg(long = "rename", value_parser = parse_rename)]
    pub renames: Vec<(String, String)>,
    /// Re-read files already fully ingested (upserts make this idempotent).
    #[arg(long)]
    pub force: bool,
    /// Progress display.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Indexing threads (default: cores, at most 4).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Settings of a new index (an existing index keeps the ones it was created with).
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Embeddings for dense recall.
    #[command(flatten)]
    pub vectors: VectorArgs,
}

/// BM25 settings of a new index, as flags. An existing index keeps the settings it was created with: a flag
/// given for one must agree with them (it is refused, not ignored, when it does not).
#[derive(Debug, Default, Args)]
pub struct SettingsArgs {
    /// BM25 k1: term-frequency saturation. Default 0.9.
    #[arg(long)]
    pub k1: Option<f32>,
    /// BM25 b: length normalisation, 0..=1. Default 0.4.
    #[arg(long)]
    pub b: Option<f32>,
    /// Weight of the title field in BM25F. Default 2.
    #[arg(long)]
    pub title_boost: Option<f32>,
    /// Weight of the body field in BM25F. Default 1.
    #[arg(long)]
    pub body_boost: Option<f32>,
    /// The shortest word corrected by one typo (0: no typo tolerance). Default 5; searches may override.
    #[arg(long)]
    pub typo_one: Option<usize>,
    /// The shortest word corrected by two typos. Default 9.
    #[arg(long)]
    pub typo_two: Option<usize>,
    /// Match the word being typed and product codes as prefixes: true or false. Default true.
    #[arg(long)]
    pub prefix: Option<bool>,
    /// The order of a blank query's documents when a search names none: price:asc, price:desc,
    /// published_at:asc or published_at:desc. Default: by id.
    #[arg(long, value_parser = crate::search::parse_sort)]
    pub default_sort: Option<SortBy>,
    /// Turn titles and bodies that contain HTML into text (a real HTML parser: scripts and styles dropped,
    /// entities decoded, blocks ending lines): true or false. Sets a new index's default (true); given for an
    /// existing index, applies to this ingest only.
    #[arg(long)]
    pub html_clean: Option<bool>,
    /// Keep the raw HTML of cleaned fields as `title_html` / `body_html`: true or false. Default false; like
    /// --html-clean, a new index's default or this ingest's choice.
    #[arg(long)]
    pub keep_raw_html: Option<bool>,
}

impl SettingsArgs {
    /// The markup handling these flags ask of this ingest, over `have` (the index's); `None` when none is given.
    pub fn html_over(&self, have: HtmlSettings) -> Option<HtmlSettings> {
        (self.html_clean.is_some() || self.keep_raw_html.is_some()).then(|| HtmlSettings {
            clean: self.html_clean.unwrap_or(have.clean),
            keep_raw: self.keep_raw_html.unwrap_or(have.keep_raw),
        })
    }
}

impl SettingsArgs {
    /// The settings of a new index: the flags given, defaults for the rest.
    pub fn resolve(&self) -> Result<IndexSettings> {
        let (bm25, boosts) = (Bm25Params::default(), FieldBoosts::default());
        let (title, body) = (self.title_boost.unwrap_or(boosts.title), self.body_boost.unwrap_or(boosts.body));
        for (name, w) in [("--title-boost", title), ("--body-boost", body)] {
            if !(w.is_finite() && w >= 0.0) {
                bail!("{name}: expected a finite number >= 0, found {w}");
            }
        }
        let t = Tolerance::default();
        let (one, two) = (self.typo_one.unwrap_or(t.one_typo), self.typo_two.unwrap_or(t.two_typos));
        if one > 0 && two < one {
            bail!("--typo-two {two}: expected at least --typo-one ({one})");
        }
        Ok(IndexSettings {
            bm25: Bm25Params { k1: self.k1.unwrap_or(bm25.k1), b: self.b.unwrap_or(bm25.b) }.validate()?,
            boosts: FieldBoosts { title, body },
            tolerance: Tolerance {
                typos: one > 0,
                one_typo: if one > 0 { one } else { t.one_typo },
                two_typos: two,
                prefix: self.prefix.unwrap_or(t.prefix),
            },
            default_sort: self.default_sort,
            html: HtmlSettings {
                clean: self.html_clean.unwrap_or(true),
                keep_raw: self.keep_raw_html.unwrap_or(false),
            },
        })
    }

    /// Flags given for the existing index in `index` (created with `have`) must agree with it.
    pub fn check_existing(&self, index: &Path, have: &IndexSettings) -> Result<()> {
        let given = [
            ("--k1", self.k1, have.bm25.k1),
            ("--b", self.b, have.bm25.b),
            ("--title-boost", self.title_boost, have.boosts.title),
            ("--body-boost", self.body_boost, have.boosts.body),
        ];
        let tolerance = [
            ("--typo-one", self.typo_one, if have.tolerance.typos { have.tolerance.one_typo } else { 0 }),
            ("--typo-two", self.typo_two, have.tolerance.two_typos),
        ];
        let given = given.map(|(f, a, h)| (f, a.map(|v| v.to_string()), h.to_string()));
        let tolerance = tolerance.map(|(f, a, h)| (f, a.map(|v| v.to_string()), h.to_string()));
        let sort = |s: Option<SortBy>| s.map_or_else(|| "id".to_owned(), |s| s.to_string());
        let prefix = [
            ("--prefix", self.prefix.map(|v| v.to_string()), have.tolerance.prefix.to_string()),
            ("--default-sort", self.default_sort.map(|s| s.to_string()), sort(have.default_sort)),
        ];
        for (flag, asked, has) in given.into_iter().chain(tolerance).chain(prefix) {
            if let Some(asked) = asked.filter(|a| *a != has) {
                bail!(
                    "{flag} {asked}: index {} was created with {flag} {has}, and an index keeps the settings it was \
                     created with (ingest into a new index to change them; k1 and b can also be set per search)",
                    index.display()
                );
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    Jsonl,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnErrorArg {
    Skip,
    Fail,
}

fn parse_rename(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => Ok((from.to_owned(), to.to_owned())),
        _ => Err(format!("expected FROM=TO, found {s:?}")),
    }
}

/// Resolved options of one ingest.
pub struct Plan<'a> {
    pub inputs: &'a [Input],
    pub options: IngestOptions,
    pub report: PathBuf,
    /// The folder of earlier runs' reports, when each run writes its own (the default): a resumed run does
    /// not report again the rows the killed run reported past its last commit.
    pub report_history: Option<PathBuf>,
    pub threads: Option<usize>,
    /// Markup handling for this ingest (`None`: the index's setting).
    pub html: Option<HtmlSettings>,
}

/// Totals of one ingest run.
#[derive(Debug, Default)]
pub struct Totals {
    pub docs: u64,
    pub rejected: u64,
    pub seconds: f64,
    pub sources: Vec<SourceSummary>,
    /// What bringing the vector graph up to date did (indexes with embeddings).
    pub vectors: Option<SyncReport>,
}

/// Opens (or creates, with `settings`) the index in `dir` for ingesting; with an embedder named (or one the
/// index already uses), documents are embedded and their vectors indexed. Settings given for an existing index
/// must agree with the ones it was created with.
pub fn open_for_ingest(dir: &Path, settings: &SettingsArgs, vectors: &VectorArgs) -> Result<Engine> {
    match TextIndex::open(dir) {
        Ok(existing) => settings.check_existing(dir, &existing.settings())?,
        Err(TextError::NotAnIndex { .. }) => {}
        Err(e) => return Err(e).with_context(|| format!("opening index {}", dir.display())),
    }
    let existing = VectorSettings::load(dir)?;
    vectors.check_graph_flags(dir, existing.as_ref().map(|s| &s.hnsw))?;
    check_embedder(dir, existing.as_ref(), vectors.embedder.as_deref())?;
    let model = vectors.embedder.clone().or_else(|| existing.as_ref().map(|s| s.model.clone()));
    let embedder = model
        .as_deref()
        .map(|m| {
            load_embedder(m, &vectors.device)
                .map(|e| EmbedderHandle::spawn(m, e, WorkerOptions::new(EMBED_BATCH_TOKENS)))
        })
        .transpose()?;
    let options = OpenOptions {
        engine: EngineOptions { embedder, ..EngineOptions::default() },
        create: Some(settings.resolve()?),
        dense_side: DenseSide::Ensure(vectors.hnsw()),
    };
    Engine::open(dir, options).with_context(|| format!("opening index {}", dir.display()))
}

/// Ingests every input into the engine's index, in order, then brings the vector graph up to date.
pub fn ingest_all(engine: &Engine, plan: &Plan<'_>, progress: &mut dyn Progress) -> Result<Totals> {
    let mut options = WriterOptions::default();
    if let Some(t) = plan.threads {
        options.threads = t.max(1);
        options.memory_bytes = 64 * 1024 * 1024 * options.threads;
    }
    let mut sink = engine.sink(options).context("opening the index for writing")?;
    if let Some(html) = plan.html {
        sink.set_html(html);
    }
    let mut report = RejectReport::new(&plan.report);
    if let Some(dir) = plan.report_history.as_ref() {
        report = report.with_history(dir);
    }
    let started = Instant::now();
    let mut totals = Totals::default();
    for input in plan.inputs {
        let summary = ingest_source(&mut sink, input, &plan.options, &mut report, progress)
            .with_context(|| format!("ingesting {}", input.name()))?;
        totals.docs += summary.docs;
        totals.rejected += summary.rejected;
        totals.sources.push(summary);
    }
    sink.finish().context("finishing index merges")?;
    let sync = engine.sync_vectors().context("bringing the vector graph up to date")?;
    if engine.settings().is_some() {
        totals.vectors = Some(sync);
    }
    totals.seconds = started.elapsed().as_secs_f64();
    Ok(totals)
}

pub fn inputs_from(args: &[String]) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for a in args {
        if a == "-" {
            if out.contains(&Input::Stdin) {
                bail!("stdin (`-`) given twice");
            }
            out.push(Input::Stdin);
        } else {
            let path = PathBuf::from(a);
            if !path.exists() {
                bail!("input file {a} does not exist");
            }
            if path.is_dir() {
                bail!("input {a} is a directory; expected a .jsonl or .csv file");
            }
            out.push(Input::File(path));
        }
    }
    Ok(out)
}

pub fn default_report_path(index: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    default_report_dir(index).join(format!("{secs}.jsonl"))
}

/// Where the default reports go, one per run.
pub fn default_report_dir(index: &Path) -> PathBuf {
    index.join("rejected")
}

pub fn run(args: IngestArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1, found 0");
    }
    let inputs = inputs_from(&args.inputs)?;
    args.settings.resolve()?; // refuse bad settings before reading anything
    let format = args.format.map(|f| match f {
        FormatArg::Jsonl => Format::Jsonl,
        FormatArg::Csv => Format::Csv,
    });
    let limits = Limits { max_document_bytes: args.max_doc_bytes, ..Limits::default() };
    // Files that cannot be read as documents at all (empty, unknown format, a CSV header without `id` or with a
    // column twice, a JSON array) are refused before the index is created or opened for writing.
    for input in inputs.iter().filter(|i| matches!(i, Input::File(_))) {
        let mut reader = RowReader::open_renamed(input, format, limits, None, &args.renames)?;
        reader.next_row()?;
    }
    let engine = open_for_ingest(&args.index, &args.settings, &args.vectors)?;
    let plan = Plan {
        inputs: &inputs,
        options: IngestOptions {
            batch_size: args.batch_size,
            on_error: match args.on_error {
                OnErrorArg::Skip => OnError::Skip,
                OnErrorArg::Fail => OnError::Fail,
            },
            limits,
            format,
            force: args.force,
            renames: args.renames.clone(),
        },
        report: args.report.clone().unwrap_or_else(|| default_report_path(&args.index)),
        report_history: args.report.is_none().then(|| default_report_dir(&args.index)),
        threads: args.threads,
        html: args.settings.html_over(engine.text().settings().html),
    };
    let mut reporter = Reporter::new(args.progress);
    let result = ingest_all(&engine, &plan, &mut reporter);
    reporter.finish();
    let totals = result?;
    for s in &totals.sources {
        if s.up_to_date {
            continue;
        }
        let resumed = s.resumed_after_line.map_or(String::new(), |l| format!(" (resumed after line {l})"));
        eprintln!("{}: {} docs ingested, {} rejected{resumed}", s.source, s.docs, s.rejected);
    }
    eprintln!(
        "ingested {} docs in {:.1}s ({:.0} docs/s); index {} now holds {} docs",
        totals.docs,
        totals.seconds,
        totals.docs as f64 / totals.seconds.max(1e-9),
        args.index.display(),
        engine.text().num_docs()
    );
    if let (Some(v), Some(s)) = (&totals.vectors, engine.settings()) {
        eprintln!(
            "vectors: {} live ({}, {} dimensions, HNSW M={} ef_construction={}); {} added to the graph this run",
            v.live, s.model, s.dim, s.hnsw.m, s.hnsw.ef_construction, v.inserted
        );
    }
    if totals.rejected > 0 {
        eprintln!("{} rows rejected; each is in {} with its line and reason", totals.rejected, plan.report.display());
    }
    Ok(())
}
