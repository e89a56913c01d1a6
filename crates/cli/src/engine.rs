//! Opening an index as a search [`Engine`] with the models the command line names.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use sieve_models::hub::{self, Source};
use sieve_models::{DeviceSpec, Embedder, Reranker, RerankerConfig};
use sieve_pipeline::{
    EmbedderHandle, Engine, EngineOptions, HnswParams, LruScoreCache, Metric, RedisScoreCache, RerankerHandle,
    ScoreCache, VectorSettings, WorkerOptions, EMBED_BATCH_TOKENS, RERANK_BATCH_TOKENS,
};

/// Models and serving settings of a search engine.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Embedding model for the dense leg: a cache name (`minilm`) or a model directory. Default: the model the
    /// index was built with.
    #[arg(long)]
    pub embedder: Option<String>,
    /// Cross-encoder for reranking: a Qwen3-Reranker model directory or cache name.
    #[arg(long)]
    pub reranker: Option<String>,
    /// Where the models run: auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Rerank score cache: `lru` (in process) or `redis://HOST:PORT` (shared).
    #[arg(long, default_value = "lru")]
    pub rerank_cache: String,
    /// Per-request time budget of the reranker, in ms; past it the response is the fused order, degraded.
    #[arg(long, default_value_t = 10_000)]
    pub rerank_timeout_ms: u64,
    /// HNSW candidate list size at search time (default: the index's, 64).
    #[arg(long)]
    pub ef: Option<usize>,
    /// Scan exactly instead of walking the graph at or below this many candidate vectors (default: the
    /// index's; 2000 for a new index).
    #[arg(long)]
    pub exact_below: Option<usize>,
}

/// Construction settings of a new dense side, as flags of `sieve ingest`.
#[derive(Debug, Clone, Args)]
pub struct VectorArgs {
    /// Embed documents with this model (a cache name such as `minilm`, or a model directory) and index the
    /// vectors for dense recall. An index that already has embeddings keeps using its own model by default.
    #[arg(long)]
    pub embedder: Option<String>,
    /// Where the embedder runs: auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// HNSW links per node (layer 0 keeps twice as many) of a new dense side. Default: 16.
    #[arg(long)]
    pub hnsw_m: Option<usize>,
    /// HNSW candidate list size while building a new dense side. Default: 200.
    #[arg(long)]
    pub ef_construction: Option<usize>,
    /// Similarity of a new dense side: cosine (vectors normalised) or dot (vectors must already be unit
    /// length). Default: cosine.
    #[arg(long, value_enum)]
    pub metric: Option<MetricArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricArg {
    Cosine,
    Dot,
}

impl EngineArgs {
    /// The command line's defaults, with these models.
    pub fn new(embedder: Option<String>, reranker: Option<String>, device: &str) -> EngineArgs {
        EngineArgs {
            embedder,
            reranker,
            device: device.to_owned(),
            rerank_cache: "lru".into(),
            rerank_timeout_ms: 10_000,
            ef: None,
            exact_below: None,
        }
    }
}

impl VectorArgs {
    /// No graph flags (a new dense side gets HNSW M 16, ef_construction 200, cosine), with this embedder.
    pub fn new(embedder: Option<String>, device: &str) -> VectorArgs {
        VectorArgs { embedder, device: device.to_owned(), hnsw_m: None, ef_construction: None, metric: None }
    }

    /// The graph settings of a new dense side: the flags given, defaults for the rest.
    pub fn hnsw(&self) -> HnswParams {
        let d = HnswParams::default();
        HnswParams {
            metric: self.metric.map_or(d.metric, MetricArg::metric),
            m: self.hnsw_m.unwrap_or(d.m),
            ef_construction: self.ef_construction.unwrap_or(d.ef_construction),
            ..d
        }
    }

    /// Graph flags only shape a new dense side: given for an index whose dense side exists (`existing`) they
    /// must agree with it, and without an embedder they have nothing to shape. Either way a flag that would be
    /// ignored is an error.
    pub fn check_graph_flags(&self, index: &Path, existing: Option<&HnswParams>) -> Result<()> {
        let given = [
            ("--hnsw-m", self.hnsw_m.map(|v| v.to_string()), existing.map(|e| e.m.to_string())),
            (
                "--ef-construction",
                self.ef_construction.map(|v| v.to_string()),
                existing.map(|e| e.ef_construction.to_string()),
            ),
            (
                "--metric",
                self.metric.map(|m| m.metric().name().to_owned()),
                existing.map(|e| e.metric.name().to_owned()),
            ),
        ];
        for (flag, asked, has) in given {
            let Some(asked) = asked else { continue };
            match has {
                Some(has) if has != asked => bail!(
                    "{flag} {asked}: index {} has a dense side built with {flag} {has}, and a graph keeps the \
                     settings it was built with (ingest into a new index to change them)",
                    index.display()
                ),
                Some(_) => {}
                None if self.embedder.is_none() => bail!(
                    "{flag} {asked} shapes the vector graph, but index {} has none and no --embedder is given",
                    index.display()
                ),
                None => {}
            }
        }
        Ok(())
    }
}

impl MetricArg {
    fn metric(self) -> Metric {
        match self {
            MetricArg::Cosine => Metric::Cosine,
            MetricArg::Dot => Metric::Dot,
        }
    }
}

fn device(spec: &str) -> Result<DeviceSpec> {
    spec.parse::<DeviceSpec>().with_context(|| format!("--device {spec}"))
}

/// Loads an embedding model by cache name or directory; `minilm` is fetched into the cache on first use.
pub fn load_embedder(name: &str, device_spec: &str) -> Result<Box<dyn Embedder>> {
    let cache = hub::cache_dir();
    let mut dir = hub::resolve(name, &cache);
    if !dir.exists() && dir.file_name().is_some_and(|n| n == hub::MINILM) {
        eprintln!("fetching {} into {} ...", hub::MINILM, cache.display());
        dir = hub::ensure(&Source::MiniLm, &cache)?;
    }
    sieve_models::load_embedder(&dir, device(device_spec)?)
        .with_context(|| format!("loading embedding model {name} from {}", dir.display()))
}

pub fn load_reranker(name: &str, device_spec: &str) -> Result<Box<dyn Reranker>> {
    let dir = hub::resolve(name, &hub::cache_dir());
    let model = sieve_models::load_reranker(&dir, device(device_spec)?, RerankerConfig::default())
        .with_context(|| format!("loading reranker {name} from {}", dir.display()))?;
    Ok(Box::new(model))
}

/// The rerank score cache `spec` names (`lru`, with `lru_capacity` entries, or `redis://HOST:PORT`).
pub fn score_cache(spec: &str, lru_capacity: usize) -> Result<Arc<dyn ScoreCache>> {
    if spec == "lru" {
        return Ok(Arc::new(LruScoreCache::new(lru_capacity)));
    }
    if spec.starts_with("redis://") {
        return Ok(Arc::new(RedisScoreCache::new(spec, Duration::from_millis(200), 7 * 24 * 3600)));
    }
    bail!("--rerank-cache: expected `lru` or `redis://HOST:PORT`, found {spec:?}")
}

/// An embedder named on the command line must be the one the index's vectors come from: another model's
/// vectors live in another space, for queries (search) and documents (ingest) alike.
pub fn check_embedder(dir: &Path, existing: Option<&VectorSettings>, asked: Option<&str>) -> Result<()> {
    if let (Some(have), Some(asked)) = (existing, asked) {
        if have.model != asked {
            bail!(
                "index {} stores embeddings of {:?}; --embedder {asked:?} would mix two vector spaces (re-ingest into a new index to change models)",
                dir.display(),
                have.model
            );
        }
    }
    Ok(())
}

/// Opens the index in `dir` as an engine. The embedder is the one named, else the index's own (when it has
/// embeddings and `dense` is wanted); one named that the index was not embedded with is refused, since its
/// vectors would live in another space.
pub fn open_engine(dir: &Path, args: &EngineArgs, dense: bool, rerank: bool) -> Result<Engine> {
    let settings = VectorSettings::load(dir)?;
    check_embedder(dir, settings.as_ref(), args.embedder.as_deref())?;
    let embedder = match (&settings, dense) {
        (Some(s), true) => Some(EmbedderHandle::spawn(
            &s.model,
            load_embedder(&s.model, &args.device)?,
            WorkerOptions::new(EMBED_BATCH_TOKENS),
        )),
        _ => None,
    };
    let reranker = match (&args.reranker, rerank) {
        (Some(name), true) => Some(RerankerHandle::spawn(
            name,
            load_reranker(name, &args.device)?,
            WorkerOptions::new(RERANK_BATCH_TOKENS),
        )),
        _ => None,
    };
    let options = EngineOptions {
        embedder,
        reranker,
        cache: score_cache(&args.rerank_cache, 200_000)?,
        rerank_timeout: Duration::from_millis(args.rerank_timeout_ms),
        ef_search: args.ef,
        exact_below: args.exact_below,
        ..EngineOptions::default()
    };
    Engine::open(dir, options).with_context(|| format!("opening index {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(embedder: Option<&str>, m: Option<usize>, ef: Option<usize>, metric: Option<MetricArg>) -> VectorArgs {
        let mut a = VectorArgs::new(embedder.map(str::to_owned), "cpu");
        (a.hnsw_m, a.ef_construction, a.metric) = (m, ef, metric);
        a
    }

    #[test]
    fn graph_flags_shape_a_new_dense_side_and_must_agree_with_an_existing_one() {
        let idx = Path::new("idx");
        let built = HnswParams { m: 32, ..HnswParams::default() };
        // no flags: always fine, defaults for a new side
        assert!(args(None, None, None, None).check_graph_flags(idx, None).is_ok());
        assert_eq!(args(Some("minilm"), None, None, None).hnsw(), HnswParams::default());
        // a new side takes them
        let a = args(Some("minilm"), Some(48), Some(100), Some(MetricArg::Dot));
        assert!(a.check_graph_flags(idx, None).is_ok());
        assert_eq!((a.hnsw().m, a.hnsw().ef_construction, a.hnsw().metric), (48, 100, Metric::Dot));
        // an existing side: the same values pass, others are refused by name
        assert!(args(None, Some(32), Some(200), Some(MetricArg::Cosine)).check_graph_flags(idx, Some(&built)).is_ok());
        let err = args(None, Some(16), None, None).check_graph_flags(idx, Some(&built)).unwrap_err().to_string();
        assert!(err.contains("--hnsw-m 16: index idx has a dense side built with --hnsw-m 32"), "{err}");
        let err = args(Some("minilm"), None, None, Some(MetricArg::Dot))
            .check_graph_flags(idx, Some(&built))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--metric dot: index idx has a dense side built with --metric cosine"), "{err}");
        // no side and no embedder: nothing to shape
        let err = args(None, None, Some(400), None).check_graph_flags(idx, None).unwrap_err().to_string();
        assert!(
            err.contains("--ef-construction 400 shapes the vector graph") && err.contains("no --embedder"),
            "{err}"
        );
    }
}
