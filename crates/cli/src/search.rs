//! `sieve search`, `sieve delete`, `sieve stats`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use sieve_core::{DocId, FacetField, Filter, Hit, Lang, SortBy};
use sieve_pipeline::{
    Bm25Params, Engine, Fusion, FusionMethod, Mode, SearchRequest, SearchResponse, VectorSettings, WriterOptions,
};
use sieve_text::TextIndex;

use crate::engine::{open_engine, EngineArgs};

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Index directory.
    #[arg(long, short = 'i')]
    pub index: PathBuf,
    /// The query text.
    pub query: String,
    /// Number of hits.
    #[arg(long, short = 'k', default_value_t = 10)]
    pub k: usize,
    /// A filter (repeatable; all must hold): brand=Sony, brand=Sony|Bose, source!=x, category=electronics,
    /// tags=sale, lang=zh, price<200, price=10..200, published_at>=2024-01-01.
    #[arg(long = "filter", short = 'f', value_parser = parse_filter)]
    pub filters: Vec<Filter>,
    /// Language of the query (`ja`/`ko` switch Han text to bigrams; default: script detection).
    #[arg(long)]
    pub lang: Option<String>,
    /// Override the index's BM25 k1.
    #[arg(long)]
    pub k1: Option<f32>,
    /// Override the index's BM25 b.
    #[arg(long)]
    pub b: Option<f32>,
    /// Print JSON (hits with documents, scores, timings) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Show each hit's per-field BM25 parts and the stage timings.
    #[arg(long)]
    pub explain: bool,
    /// Score every posting instead of pruning what cannot reach the top k (same hits; exact match count).
    #[arg(long)]
    pub exhaustive: bool,
    /// Order every matching document by a field instead of relevance: price:asc, price:desc,
    /// published_at:asc or published_at:desc. With an empty query (""), lists every document that passes the
    /// filters in that order.
    #[arg(long, value_parser = parse_sort)]
    pub sort: Option<SortBy>,
    /// Hits to skip before the first one shown (pagination; at most 999).
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Count the values of a field over the results (repeatable): brand, category, source, lang, tags, price.
    #[arg(long = "facet", value_parser = parse_facet)]
    pub facets: Vec<FacetField>,
    /// Correct words that match nothing (true/false; default: the index's setting, on).
    #[arg(long)]
    pub typos: Option<bool>,
    /// Match the word being typed and product codes as prefixes (true/false; default: the index's, on).
    #[arg(long)]
    pub prefix: Option<bool>,
    /// bm25, dense, hybrid or hybrid+rerank. Default: with --reranker, hybrid+rerank (BM25 recall reranked
    /// when the index has no embeddings); without, hybrid when the index has embeddings, else bm25.
    #[arg(long, value_parser = parse_mode)]
    pub mode: Option<Mode>,
    /// Candidates each leg recalls before fusion. Default: the index's setting (`sieve tune`), else 100.
    #[arg(long)]
    pub recall_k: Option<usize>,
    /// Fusion of the two legs: rrf (reciprocal rank, k = --rrf-k) or linear (min-max normalised scores).
    /// Default: the index's setting (`sieve tune`), else rrf, k 60, 1 : 1.
    #[arg(long, value_parser = parse_fusion)]
    pub fusion: Option<FusionMethod>,
    /// RRF's k (default 60).
    #[arg(long)]
    pub rrf_k: Option<f32>,
    /// Weight of the BM25 leg in fusion (default: 1 for rrf, 0.5 for linear).
    #[arg(long)]
    pub bm25_weight: Option<f32>,
    /// Weight of the dense leg in fusion (default: 1 for rrf, 0.5 for linear).
    #[arg(long)]
    pub dense_weight: Option<f32>,
    /// Fused candidates the reranker rescores.
    #[arg(long, default_value_t = 50)]
    pub window: usize,
    /// The reranker's task instruction.
    #[arg(long)]
    pub instruction: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `--mode`: bm25, dense, hybrid or hybrid+rerank (the engine's names).
pub fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse::<Mode>().map_err(|_| format!("expected one of {}, found {s:?}", Mode::NAMES.join(", ")))
}

fn parse_fusion(s: &str) -> Result<FusionMethod, String> {
    s.parse::<FusionMethod>().map_err(|_| format!("expected one of {}, found {s:?}", FusionMethod::NAMES.join(", ")))
}

pub(crate) fn parse_sort(s: &str) -> Result<SortBy, String> {
    s.parse::<SortBy>().map_err(|e| e.to_string())
}

fn parse_facet(s: &str) -> Result<FacetField, String> {
    let names: Vec<&str> = FacetField::ALL.iter().map(|f| f.name()).collect();
    FacetField::ALL
        .into_iter()
        .find(|f| f.name() == s)
        .ok_or_else(|| format!("expected one of {}, found {s:?}", names.join(", ")))
}

fn parse_filter(s: &str) -> Result<Filter, String> {
    s.parse::<Filter>().map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Index directory.
    #[arg(long, short = 'i')]
    pub index: PathBuf,
    /// Ids to delete.
    pub ids: Vec<String>,
    /// A file with one id per line to delete.
    #[arg(long)]
    pub ids_file: Option<PathBuf>,
}

pub fn open(index: &Path) -> Result<TextIndex> {
    TextIndex::open(index).with_context(|| format!("opening index {}", index.display()))
}

pub fn run(args: SearchArgs) -> Result<()> {
    let has_vectors = VectorSettings::load(&args.index)?.is_some();
    let mode = pick_mode(
        args.mode,
        &args.index,
        has_vectors,
        args.engine.reranker.as_deref(),
        args.engine.embedder.as_deref(),
    )?;
    if args.instruction.is_some() && mode != Mode::HybridRerank {
        bail!(
            "--instruction is the reranker's task instruction, only used by --mode hybrid+rerank (with \
             --reranker); found --mode {}",
            mode.name()
        );
    }
    if mode.reranks() && args.engine.reranker.is_none() {
        bail!("--mode hybrid+rerank needs --reranker MODEL (a Qwen3-Reranker directory or cache name)");
    }
    let bm25_flags = args.k1.is_some() || args.b.is_some() || args.exhaustive;
    if !mode.legs().bm25 && (bm25_flags || args.typos.is_some() || args.prefix.is_some()) {
        bail!("--k1, --b, --exhaustive, --typos and --prefix shape the BM25 leg, which --mode dense does not run");
    }
    let engine = open_engine(&args.index, &args.engine, mode.dense(), mode.reranks())?;
    let req = request(&args, mode, &engine)?;
    let res = engine.search(&req)?;
    if args.json {
        print_json(&args, mode, &req, res)
    } else {
        print_table(&args, mode, &res);
        Ok(())
    }
}

/// The engine request the flags ask for (checked by the engine's one validation).
fn request(args: &SearchArgs, mode: Mode, engine: &Engine) -> Result<SearchRequest> {
    let mut req = SearchRequest::in_mode(args.query.clone(), mode);
    req.bm25_params = bm25_params(args, engine.text())?;
    req.exhaustive = args.exhaustive;
    req.typos = args.typos;
    req.prefix = args.prefix;
    req.k = args.k;
    req.offset = args.offset;
    req.sort = args.sort;
    req.facets = args.facets.clone();
    req.filters = args.filters.clone();
    req.lang = args.lang.as_deref().map(Lang::parse).transpose()?;
    req.recall_k = if mode == Mode::Bm25 { Some(args.k) } else { args.recall_k };
    if args.fusion.is_some() || args.rrf_k.is_some() || args.bm25_weight.is_some() || args.dense_weight.is_some() {
        let method = args.fusion.unwrap_or(FusionMethod::Rrf);
        req.fusion = Some(Fusion::new(method, args.rrf_k, args.bm25_weight, args.dense_weight));
    }
    if let Some(rr) = req.rerank.as_mut() {
        rr.window = args.window;
        rr.instruction = args.instruction.clone();
    }
    req.explain = args.explain;
    req.validate()?;
    Ok(req)
}

/// `--json`: in bm25 mode the BM25 leg's own view (its query terms, match count and stages), as a BM25-only
/// deployment reads it; in the other modes the answer as `/v1/search` gives it (`sieve_api::SearchResult`).
fn print_json(args: &SearchArgs, mode: Mode, req: &SearchRequest, res: SearchResponse) -> Result<()> {
    let out = match (&res.bm25, mode) {
        (Some(bm25), Mode::Bm25) if !req.browses() => {
            // the leg's stages, its `fetch` (ids) plus the engine's fetch of the documents
            let documents: u64 = res.timings.iter().filter(|t| t.stage == "documents").map(|t| t.micros).sum();
            let mut timings = bm25.stages.clone();
            if let Some(fetch) = timings.iter_mut().find(|t| t.stage == "fetch") {
                fetch.micros += documents;
            }
            serde_json::json!({
                "query": args.query,
                "terms": bm25.terms,
                "matched": bm25.matched,
                "matched_is_lower_bound": bm25.pruned,
                "corrections": bm25.expansions,
                "hits": res.hits,
                "timings": timings,
            })
        }
        _ => {
            let index = args.index.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let response = sieve_server::convert::search_result(&index, req, res);
            serde_json::json!({ "query": args.query, "mode": mode.name(), "response": response })
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn print_table(args: &SearchArgs, mode: Mode, res: &SearchResponse) {
    print_hits(&res.hits, args.explain);
    let total = res.timings.iter().find(|t| t.stage == "total").map_or(0, |t| t.micros);
    let browsed = args.sort.is_some() || args.query.trim().is_empty();
    match (&res.bm25, mode) {
        _ if browsed => println!(
            "{}–{} of {} documents{}, {:.2} ms",
            (args.offset + 1).min(args.offset + res.hits.len()),
            args.offset + res.hits.len(),
            res.total,
            args.sort.map_or(String::new(), |s| format!(", sorted by {s}")),
            total as f64 / 1000.0
        ),
        (Some(bm25), Mode::Bm25) => {
            let at_least = if bm25.pruned { "at least " } else { "" };
            println!(
                "{} of {at_least}{} matching documents, {:.2} ms",
                res.hits.len(),
                bm25.matched,
                total as f64 / 1000.0
            );
        }
        _ => println!("{} hits ({}), {:.2} ms", res.hits.len(), mode.name(), total as f64 / 1000.0),
    }
    if let Some(bm25) = &res.bm25 {
        for e in &bm25.expansions {
            let how = match e.kind {
                sieve_text::ExpansionKind::Typo => "showing results for",
                sieve_text::ExpansionKind::Prefix => "also matching",
            };
            println!("{}: {how} {}", e.word, e.terms.join(", "));
        }
    }
    for (field, counts) in res.facets.iter().flatten() {
        let values: Vec<String> = counts.iter().map(|c| format!("{} ({})", c.value, c.count)).collect();
        println!("{field}: {}", values.join(", "));
    }
    if res.degraded {
        println!("degraded: {}", res.reasons.join("; "));
    }
    for note in &res.notes {
        println!("note: {note}");
    }
    if !args.explain {
        return;
    }
    if let Some(bm25) = &res.bm25 {
        println!("query terms: {}", bm25.terms.join(" "));
    }
    for t in &res.timings {
        println!("  {:>9}: {:>8.3} ms", t.stage, t.micros as f64 / 1000.0);
    }
    if let Some(d) = &res.dense {
        println!("  dense leg: {:?} over {} candidates", d.strategy, d.candidates);
    }
    if let Some(c) = &res.cache {
        println!(
            "  rerank cache {}: {} hits, {} misses{}",
            c.backend,
            c.hits,
            c.misses,
            c.error.as_ref().map_or(String::new(), |e| format!(" ({e})"))
        );
    }
}

/// The mode a search runs in: the one asked for, else hybrid+rerank when a reranker is named (on an index
/// without embeddings that is BM25 recall reranked: the engine notes that the dense leg did not run), else
/// hybrid when the index has embeddings, else bm25. A model named beside a search that would not use it (a
/// reranker in a mode that does not rerank, an embedder for an index without embeddings or in bm25 mode) is an
/// error rather than a flag quietly ignored.
pub(crate) fn pick_mode(
    asked: Option<Mode>,
    index: &Path,
    has_vectors: bool,
    reranker: Option<&str>,
    embedder: Option<&str>,
) -> Result<Mode> {
    if let Some(name) = embedder {
        if !has_vectors {
            bail!(
                "--embedder {name}: index {} has no embeddings to search (ingest the documents into a new \
                 index with `--embedder {name}` to search them densely)",
                index.display()
            );
        }
        if asked == Some(Mode::Bm25) {
            bail!("--embedder {name} is only used by the modes with a dense leg, found --mode bm25");
        }
    }
    match (asked, reranker) {
        (Some(mode), Some(name)) if mode != Mode::HybridRerank => bail!(
            "--reranker {name} is only used by --mode hybrid+rerank, found --mode {}; \
             drop --reranker, or the --mode to rerank",
            mode.name()
        ),
        (Some(mode), _) => Ok(mode),
        (None, Some(_)) => Ok(Mode::HybridRerank),
        (None, None) if has_vectors => Ok(Mode::Hybrid),
        (None, None) => Ok(Mode::Bm25),
    }
}

/// `--k1` / `--b` over the index's BM25 parameters, when either is given.
fn bm25_params(args: &SearchArgs, index: &TextIndex) -> Result<Option<Bm25Params>> {
    if args.k1.is_none() && args.b.is_none() {
        return Ok(None);
    }
    let base = index.settings().bm25;
    Ok(Some(Bm25Params { k1: args.k1.unwrap_or(base.k1), b: args.b.unwrap_or(base.b) }.validate()?))
}

pub fn print_hits(hits: &[Hit], explain: bool) {
    for hit in hits {
        let doc = hit.document.as_ref();
        let title = doc.map(|d| d.text()).unwrap_or_default();
        let title: String = title.lines().next().unwrap_or("").chars().take(80).collect();
        let mut facts = Vec::new();
        if let Some(d) = doc {
            if let Some(b) = &d.brand {
                facts.push(format!("brand={b}"));
            }
            if let Some(p) = d.price {
                facts.push(format!("price={p}"));
            }
            if let Some(s) = &d.source {
                facts.push(format!("source={s}"));
            }
        }
        println!("{:>3}. {:>8.3}  {:<18} {}  {}", hit.rank, hit.score, hit.id.as_str(), title, facts.join(" "));
        if explain {
            if let Some(bm25) = &hit.scores.bm25 {
                let parts: Vec<String> = bm25.fields.iter().map(|(f, s)| format!("{f}={s:.3}")).collect();
                println!("       bm25 rank {} = {}", bm25.rank, parts.join(" + "));
            }
            if let Some(d) = &hit.scores.dense {
                println!("       dense rank {}: cosine {:.4}", d.rank, d.similarity);
            }
            if let Some(f) = &hit.scores.fused {
                println!("       fused ({}) rank {}: {:.5}", f.method, f.rank, f.score);
            }
            if let Some(r) = &hit.scores.rerank {
                let cached = if r.cached { ", cached" } else { "" };
                println!("       rerank rank {}: p = {:.4} (logit difference {:.3}{cached})", r.rank, r.score, r.raw);
            }
        }
    }
}

pub fn delete(args: DeleteArgs) -> Result<()> {
    let mut ids = args.ids.clone();
    if let Some(file) = &args.ids_file {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        ids.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned));
    }
    if ids.is_empty() {
        bail!("no ids given; expected ids as arguments or --ids-file FILE");
    }
    let index = open(&args.index)?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for raw in &ids {
        let id = DocId::parse(raw, usize::MAX)?;
        if index.get(id.as_str())?.is_some() {
            found.push(id);
        } else {
            missing.push(raw.clone());
        }
    }
    let mut writer = index.writer(WriterOptions { threads: 1, memory_bytes: 32 << 20 })?;
    for id in &found {
        writer.delete(id);
    }
    writer.commit(None)?;
    writer.finish()?;
    index.reload()?;
    println!("deleted {} documents; index now holds {}", found.len(), index.num_docs());
    if !missing.is_empty() {
        println!("not found ({}): {}", missing.len(), missing.join(", "));
    }
    Ok(())
}

pub fn stats(index_dir: &Path) -> Result<()> {
    let index = open(index_dir)?;
    let settings = index.settings();
    println!("index: {}", index_dir.display());
    println!("documents: {}", index.num_docs());
    println!(
        "bm25: k1={} b={}; boosts: title={} body={}",
        settings.bm25.k1, settings.bm25.b, settings.boosts.title, settings.boosts.body
    );
    match VectorSettings::load(index_dir)? {
        None => println!("vectors: none (BM25 only)"),
        Some(v) => {
            let cut = v.dimensions.map(|d| format!(", cut to {d}")).unwrap_or_default();
            let h = v.hnsw;
            println!(
                "vectors: {} ({} dimensions{cut}), {} similarity; HNSW M={} ef_construction={} ef_search={}, \
                 exact scan at or below {} candidates",
                v.model,
                v.dim,
                h.metric.name(),
                h.m,
                h.ef_construction,
                h.ef_search,
                h.exact_below
            );
            let commit = index.generation()?;
            match VectorSettings::saved_graph(index_dir)? {
                None => println!("graph: not saved yet (the next open builds it from the stored vectors)"),
                Some(g) if g.generation == commit => {
                    println!("graph: {} points saved at commit {} (up to date)", g.points, g.generation)
                }
                Some(g) => println!(
                    "graph: {} points saved at commit {}, behind the last commit {commit} (the next open catches \
                     it up from the stored vectors)",
                    g.points, g.generation
                ),
            }
        }
    }
    let search = sieve_pipeline::SearchSettings::load(index_dir)?;
    let fusion = match search.fusion {
        Fusion::Rrf { k, bm25_weight, dense_weight } => format!("rrf k={k} bm25:dense={bm25_weight}:{dense_weight}"),
        Fusion::Linear { bm25_weight, dense_weight } => format!("linear bm25:dense={bm25_weight}:{dense_weight}"),
    };
    let tuned = search.tuned.as_ref().map_or_else(
        || " (defaults)".to_owned(),
        |t| {
            format!(
                " (tuned on {}, {} queries: {} {:.4} cross-validated, {:.4} in sample, {:.4} with the defaults)",
                t.dataset, t.queries, t.metric, t.cross_validated, t.in_sample, t.default
            )
        },
    );
    println!(
        "search settings: {fusion}{}, recall_k={}, dense threshold {} for sorted searches{tuned}",
        if search.adapt > 0.0 {
            format!(" (weights adapted per query, strength {})", search.adapt)
        } else {
            String::new()
        },
        search.recall_k,
        search.dense_threshold
    );
    println!(
        "html: {}",
        match (settings.html.clean, settings.html.keep_raw) {
            (false, _) => "left as it is",
            (true, false) => "titles and bodies with markup become text",
            (true, true) => "titles and bodies with markup become text, the raw field kept as title_html/body_html",
        }
    );
    if let Some(sort) = settings.default_sort {
        println!("default order of an empty query: {sort}");
    }
    for s in index.checkpoint()?.sources {
        println!(
            "source {}: {} docs, {} rejected, through line {}{}",
            s.source,
            s.docs,
            s.rejected,
            s.line,
            if s.complete { " (complete)" } else { " (interrupted; the next ingest resumes here)" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_reranker_picks_reranking_and_conflicts_with_modes_that_do_not_rerank() {
        let pick = |asked, has_vectors, reranker| pick_mode(asked, Path::new("idx"), has_vectors, reranker, None);
        // defaults
        assert_eq!(pick(None, true, None).unwrap(), Mode::Hybrid);
        assert_eq!(pick(None, false, None).unwrap(), Mode::Bm25);
        assert_eq!(pick(None, true, Some("r")).unwrap(), Mode::HybridRerank);
        // no embeddings: the reranker still reranks (BM25 recall), it is not dropped
        assert_eq!(pick(None, false, Some("r")).unwrap(), Mode::HybridRerank);
        // an explicit mode wins when it agrees with the flags
        assert_eq!(pick(Some(Mode::Dense), true, None).unwrap(), Mode::Dense);
        assert_eq!(pick(Some(Mode::HybridRerank), false, Some("r")).unwrap(), Mode::HybridRerank);
        for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
            let err = pick(Some(mode), true, Some("qwen")).unwrap_err().to_string();
            assert!(err.contains("--reranker qwen is only used by --mode hybrid+rerank"), "{err}");
            assert!(err.contains(&format!("found --mode {}", mode.name())), "{err}");
        }
    }

    #[test]
    fn a_named_embedder_needs_embeddings_and_a_dense_leg() {
        let pick = |asked, has_vectors| pick_mode(asked, Path::new("idx"), has_vectors, None, Some("minilm"));
        assert_eq!(pick(None, true).unwrap(), Mode::Hybrid);
        assert_eq!(pick(Some(Mode::Dense), true).unwrap(), Mode::Dense);
        let err = pick(None, false).unwrap_err().to_string();
        assert!(err.contains("index idx has no embeddings") && err.contains("`--embedder minilm`"), "{err}");
        let err = pick(Some(Mode::Bm25), true).unwrap_err().to_string();
        assert!(err.contains("found --mode bm25"), "{err}");
    }
}

#[derive(Debug, Args)]
pub struct SuggestArgs {
    /// Index directory.
    #[arg(long, short = 'i')]
    pub index: PathBuf,
    /// What the search box holds (a trailing space means the last word is finished).
    pub query: String,
    /// Completions, and products, to show.
    #[arg(long, short = 'k', default_value_t = 5)]
    pub limit: usize,
    /// A filter the products must pass (repeatable), as in `sieve search`.
    #[arg(long = "filter", short = 'f', value_parser = parse_filter)]
    pub filters: Vec<Filter>,
    /// Print the JSON `POST /v1/suggest` answers.
    #[arg(long)]
    pub json: bool,
}

/// `sieve suggest`: the text index's suggestions, as a list or as `/v1/suggest`'s JSON.
pub fn suggest(args: SuggestArgs) -> Result<()> {
    if args.limit == 0 || args.limit > sieve_api::MAX_SUGGESTIONS {
        bail!("--limit {}: expected 1..={}", args.limit, sieve_api::MAX_SUGGESTIONS);
    }
    let text = sieve_text::TextIndex::open(&args.index)?;
    let q = sieve_text::SuggestQuery {
        text: args.query.clone(),
        lang: None,
        filters: args.filters.clone(),
        limit: args.limit,
    };
    let t = std::time::Instant::now();
    let found = text.suggest(&q)?;
    let took = t.elapsed();
    let name = args.index.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let res = sieve_server::convert::suggest_result(&name, &args.query, found, took);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&res)?);
        return Ok(());
    }
    for c in &res.completions {
        let kind = serde_json::to_value(c.kind)?;
        println!("  {:<40} {:<6} {}", c.text, kind.as_str().unwrap_or(""), c.count);
    }
    for p in &res.products {
        let price = p.price.map_or(String::new(), |p| format!("  {p}"));
        println!("  → {:<18} {}{price}", p.id, p.title);
    }
    println!("{:.2} ms", took.as_secs_f64() * 1000.0);
    Ok(())
}
