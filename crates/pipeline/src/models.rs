//! The models on their worker threads, shareable: one embedder and one reranker serve every index of a
//! server and its `/v1/embeddings` and `/v1/rerank` routes, batching across all of them.

use std::sync::Arc;
use std::time::Duration;

use sieve_models::{EmbedInput, EmbedOptions, Embedder, Embeddings, ModelInfo, RerankInput, RerankScore, Reranker};

use crate::cache::{CacheKey, CacheReport, CachedScore, ScoreCache};
use crate::worker::{CallTiming, CancelToken, Worker, WorkerError, WorkerOptions, WorkerStats};

/// Default batch budget of the embedder worker, in (approximate) tokens.
pub const EMBED_BATCH_TOKENS: usize = 8_192;
/// Default batch budget of the reranker worker: several queries' windows share one model call.
pub const RERANK_BATCH_TOKENS: usize = 16_384;

/// Rough token count of a text for batch budgets (the tokenizer runs on the model thread, not here).
pub fn approx_tokens(text: &str) -> usize {
    text.len() / 4 + 1
}

/// One embedding call.
#[derive(Debug, Clone, Default)]
pub struct EmbedJob {
    pub texts: Vec<String>,
    /// Queries get the model's instruction; documents do not.
    pub query: bool,
    pub instruction: Option<String>,
    pub options: EmbedOptions,
}

/// One query and the documents to score against it.
#[derive(Debug, Clone, Default)]
pub struct RerankJob {
    pub query: String,
    pub instruction: Option<String>,
    pub docs: Vec<String>,
    pub max_length: Option<usize>,
}

/// What [`RerankerHandle::rerank_cached`] returns: every document's score in order, which of them came from
/// the cache, the model call's timing (zero when every score was cached) and the cache's report.
#[derive(Debug, Clone)]
pub struct CachedRerank {
    pub scores: Vec<RerankScore>,
    pub cached: Vec<bool>,
    pub timing: CallTiming,
    pub report: CacheReport,
}

/// A model on its worker thread, with the name it was loaded by and its description. Cheap to clone.
pub struct ModelHandle<J, R> {
    name: String,
    info: ModelInfo,
    worker: Arc<Worker<J, R>>,
}

impl<J, R> Clone for ModelHandle<J, R> {
    fn clone(&self) -> Self {
        ModelHandle { name: self.name.clone(), info: self.info.clone(), worker: self.worker.clone() }
    }
}

impl<J, R> std::fmt::Debug for ModelHandle<J, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelHandle").field("name", &self.name).field("role", &self.info.role).finish()
    }
}

impl<J: Send + 'static, R: Send + 'static> ModelHandle<J, R> {
    /// The name the model was loaded by (a cache name such as `minilm`, or a directory); the reranker's keys
    /// its cached scores.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn stats(&self) -> &Arc<WorkerStats> {
        self.worker.stats()
    }
}

/// An embedding model on its worker thread.
pub type EmbedderHandle = ModelHandle<EmbedJob, Embeddings>;

/// A reranker on its worker thread.
pub type RerankerHandle = ModelHandle<RerankJob, Vec<RerankScore>>;

impl EmbedderHandle {
    /// Moves `model` onto its own thread. Jobs with the same options share one model call.
    pub fn spawn(name: &str, model: Box<dyn Embedder>, options: WorkerOptions) -> EmbedderHandle {
        let info = model.info().clone();
        let model: Arc<dyn Embedder> = Arc::from(model);
        let worker = Worker::spawn("embedder", options, move |jobs: Vec<EmbedJob>| {
            let mut out: Vec<Option<Result<Embeddings, String>>> = (0..jobs.len()).map(|_| None).collect();
            // group jobs whose options agree into one call
            let mut groups: Vec<(EmbedOptions, Vec<usize>)> = Vec::new();
            for (i, j) in jobs.iter().enumerate() {
                let same =
                    |o: &EmbedOptions| o.dimensions == j.options.dimensions && o.max_length == j.options.max_length;
                match groups.iter_mut().find(|(o, _)| same(o)) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((j.options, vec![i])),
                }
            }
            for (opts, members) in groups {
                let inputs: Vec<EmbedInput<'_>> = members
                    .iter()
                    .flat_map(|&i| {
                        let j = &jobs[i];
                        j.texts.iter().map(move |t| {
                            if j.query {
                                EmbedInput::Query { text: t, instruction: j.instruction.as_deref() }
                            } else {
                                EmbedInput::Document(t)
                            }
                        })
                    })
                    .collect();
                match model.embed(&inputs, &opts) {
                    Ok(e) => {
                        let (mut v, mut t, mut c) =
                            (e.vectors.into_iter(), e.tokens.into_iter(), e.truncated.into_iter());
                        for &i in &members {
                            let n = jobs[i].texts.len();
                            out[i] = Some(Ok(Embeddings {
                                vectors: v.by_ref().take(n).collect(),
                                tokens: t.by_ref().take(n).collect(),
                                truncated: c.by_ref().take(n).collect(),
                            }));
                        }
                    }
                    Err(e) => members.iter().for_each(|&i| out[i] = Some(Err(e.to_string()))),
                }
            }
            out.into_iter().map(|r| r.unwrap_or_else(|| Err("not run".into()))).collect()
        });
        ModelHandle { name: name.to_owned(), info, worker: Arc::new(worker) }
    }

    /// Embeds `job.texts`; also says how long the job queued and how long the model call took.
    pub fn embed(
        &self,
        job: EmbedJob,
        timeout: Option<Duration>,
        cancel: Option<&CancelToken>,
    ) -> Result<(Embeddings, CallTiming), WorkerError> {
        let cost = job.texts.iter().map(|t| approx_tokens(t)).sum();
        self.worker.call_with(job, cost, timeout, cancel)
    }
}

impl RerankerHandle {
    /// Moves `model` onto its own thread; the queries waiting when it is free are scored in one call.
    pub fn spawn(name: &str, model: Box<dyn Reranker>, options: WorkerOptions) -> RerankerHandle {
        let info = model.info().clone();
        let model: Arc<dyn Reranker> = Arc::from(model);
        let worker = Worker::spawn("reranker", options, move |jobs: Vec<RerankJob>| {
            let docs: Vec<Vec<&str>> = jobs.iter().map(|j| j.docs.iter().map(String::as_str).collect()).collect();
            let inputs: Vec<RerankInput<'_>> = jobs
                .iter()
                .zip(&docs)
                .map(|(j, d)| RerankInput {
                    query: &j.query,
                    documents: d,
                    instruction: j.instruction.as_deref(),
                    max_length: j.max_length,
                    share_prefix: true,
                })
                .collect();
            match model.rerank(&inputs) {
                Ok(scores) => scores.into_iter().map(Ok).collect(),
                // one bad request must not fail the others batched with it: retry them one by one
                Err(_) if inputs.len() > 1 => inputs
                    .iter()
                    .map(|i| model.rerank(std::slice::from_ref(i)).map(|mut s| s.remove(0)).map_err(|e| e.to_string()))
                    .collect(),
                Err(e) => vec![Err(e.to_string())],
            }
        });
        ModelHandle { name: name.to_owned(), info, worker: Arc::new(worker) }
    }

    /// Scores `job.docs` against `job.query`, in document order; also says how long the job queued and how
    /// long the model call took.
    pub fn rerank(
        &self,
        job: RerankJob,
        timeout: Option<Duration>,
        cancel: Option<&CancelToken>,
    ) -> Result<(Vec<RerankScore>, CallTiming), WorkerError> {
        let query = approx_tokens(&job.query) + 24;
        let cost = job.docs.iter().map(|d| approx_tokens(d) + query).sum();
        let n = job.docs.len();
        let (scores, timing) = self.worker.call_with(job, cost, timeout, cancel)?;
        if scores.len() != n {
            return Err(WorkerError::Failed {
                worker: "reranker".into(),
                message: format!("returned {} scores for {n} documents", scores.len()),
            });
        }
        Ok((scores, timing))
    }

    /// [`rerank`](Self::rerank) through a score cache: the pairs `cache` holds (keyed by
    /// [`CacheKey::rerank`]) are not scored again, the model scores the rest, and their scores are stored.
    /// Without `lookup` every pair is scored and stored (a caller that wants fresh scores). A cache that fails
    /// counts as all misses and is named in the report; it never fails the call. On a model error the report
    /// of the lookup comes back with it.
    pub fn rerank_cached(
        &self,
        cache: &dyn ScoreCache,
        lookup: bool,
        job: RerankJob,
        timeout: Option<Duration>,
        cancel: Option<&CancelToken>,
    ) -> Result<CachedRerank, (WorkerError, CacheReport)> {
        let n = job.docs.len();
        let keys: Vec<CacheKey> = job
            .docs
            .iter()
            .map(|d| CacheKey::rerank(self.name(), job.max_length, job.instruction.as_deref(), &job.query, d))
            .collect();
        let mut report = CacheReport { backend: cache.describe(), hits: 0, misses: n, error: None, queued_micros: 0 };
        let found = match if lookup { cache.get_many(&keys) } else { Ok(vec![None; n]) } {
            Ok(found) if found.len() == n => found,
            Ok(found) => {
                report.error = Some(format!("the cache answered {} entries for {n} keys", found.len()));
                vec![None; n]
            }
            Err(e) => {
                report.error = Some(e.to_string());
                vec![None; n]
            }
        };
        let miss: Vec<usize> = (0..n).filter(|&i| found[i].is_none()).collect();
        report.hits = n - miss.len();
        report.misses = miss.len();
        let cached: Vec<bool> = found.iter().map(Option::is_some).collect();
        let mut scores: Vec<RerankScore> = found
            .into_iter()
            .map(|c| c.map_or(RerankScore { score: 0.0, raw: 0.0, tokens: 0, truncated: false }, Into::into))
            .collect();
        let mut timing = CallTiming::default();
        if !miss.is_empty() {
            let RerankJob { query, instruction, mut docs, max_length } = job;
            let docs: Vec<String> = miss.iter().map(|&i| std::mem::take(&mut docs[i])).collect();
            let (fresh, t) = self
                .rerank(RerankJob { query, instruction, docs, max_length }, timeout, cancel)
                .map_err(|e| (e, report.clone()))?;
            timing = t;
            report.queued_micros = t.queued.as_micros() as u64;
            let mut store = Vec::with_capacity(miss.len());
            for (&i, s) in miss.iter().zip(fresh) {
                scores[i] = s;
                store.push((keys[i].clone(), CachedScore::from(&s)));
            }
            if let Err(e) = cache.put_many(&store) {
                report.error.get_or_insert(e.to_string());
            }
        }
        Ok(CachedRerank { scores, cached, timing, report })
    }
}
