//! The route handlers. Each parses and checks its input (limits with 413, shapes with 422), runs the engine
//! or a model off the async threads, and answers in the API's shapes; every error goes through
//! [`crate::error::ApiError`].

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use sieve_api::*;
use sieve_core::DocId;
use sieve_models::EmbedOptions;
use sieve_pipeline::models::approx_tokens;
use sieve_pipeline::{EmbedJob, RerankJob, SearchRequest, MAX_DEPTH};

use crate::convert;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{blocking, unavailable_if_stopping, with_time, ApiJson, ApiPath, ApiQuery, ModelTime, RawBody};
use crate::state::SharedState;

/// Longest document id accepted in a path.
const MAX_ID_BYTES: usize = 512;

/// 413 when `text` is over `limit` characters. Queries and instructions are never cut, so the message
/// suggests nothing the request could add; documents say how to have them cut ([`fit`]).
fn check_chars(what: &str, text: &str, limit: usize) -> Result<(), ApiError> {
    check_chars_or(what, text, limit, "shorten it")
}

fn check_chars_or(what: &str, text: &str, limit: usize, remedy: &str) -> Result<(), ApiError> {
    let n = text.chars().count();
    if n > limit {
        return Err(ApiError::too_large(format!(
            "{what} is {n} characters, over the limit of {limit} (max_document_chars); {remedy}"
        )));
    }
    Ok(())
}

/// `text` cut to `limit` characters when `truncate` allows, else 413 beyond it.
fn fit(what: &str, text: &str, limit: usize, truncate: bool) -> Result<String, ApiError> {
    if truncate {
        return Ok(match text.char_indices().nth(limit) {
            Some((cut, _)) => text[..cut].to_owned(),
            None => text.to_owned(),
        });
    }
    check_chars_or(what, text, limit, "send `truncate: true` to cut it instead")?;
    Ok(text.to_owned())
}

/// Turns the API body into the engine's request: the server's own limits (characters of the query and the
/// instruction) here, every other check in the pipeline's one validation.
fn search_request(state: &SharedState, body: &SearchBody) -> Result<SearchRequest, ApiError> {
    let limit = state.config.max_document_chars;
    check_chars("the query", &body.query, limit)?;
    let req = convert::search_request(body, state.models.reranker.is_some())?;
    if let Some(i) = req.rerank.as_ref().and_then(|r| r.instruction.as_deref()) {
        check_chars("the instruction", i, limit)?;
    }
    Ok(req)
}

fn stage(timings: &[sieve_core::StageTiming], name: &str) -> Duration {
    timings.iter().filter(|t| t.stage == name).map(|t| Duration::from_micros(t.micros)).sum()
}

/// Hybrid search: BM25 and dense recall, fusion, reranking, facets on the final ranked set.
#[utoipa::path(post, path = "/v1/search", request_body = SearchBody, tag = "search",
    responses(
        (status = 200, description = "Ranked hits with every stage's scores", body = SearchResult),
        (status = 400, body = ErrorBody), (status = 404, description = "No such index", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "The embedder's queue is full", body = ErrorBody)))]
pub async fn search(
    State(state): State<SharedState>,
    ApiJson(body): ApiJson<SearchBody>,
) -> Result<Response, ApiError> {
    let result = run_search(&state, body).await?;
    let queue = stage(&result.timings, "embed_queue") + stage(&result.timings, "rerank_queue");
    let inference = (stage(&result.timings, "embed") + stage(&result.timings, "rerank")).saturating_sub(queue);
    Ok(with_time(StatusCode::OK, Json(result), ModelTime { queue, inference }))
}

/// One search as `/v1/search` runs it: the body checked and converted, the engine called off the async
/// threads (cancelled when the caller goes away), the metrics recorded. The web UI's pages call this too.
pub async fn run_search(state: &SharedState, body: SearchBody) -> Result<SearchResult, ApiError> {
    let index = state.index(body.index.as_deref())?.clone();
    let mut req = search_request(state, &body)?;
    let engine = index.engine.clone();
    let (req, res) = blocking(move |cancel| {
        req.cancel = Some(cancel);
        let res = engine.search(&req).map_err(ApiError::from)?;
        Ok((req, res))
    })
    .await?;
    for t in &res.timings {
        state.metrics.stage(&t.stage, t.micros as f64 / 1e6);
    }
    if res.degraded {
        state.metrics.degraded();
    }
    if let Some(c) = &res.cache {
        state.metrics.cache(c.hits, c.misses);
    }
    for h in &res.hits {
        if let Some(r) = &h.scores.rerank {
            state.metrics.rerank_score("search", r.score);
        }
    }
    Ok(convert::search_result(&index.name, &req, res))
}

/// Completions of what a search box holds (title words, product codes, brands) and the best-matching
/// products: one BM25 search over titles with prefixes and typos, fast enough for every keystroke.
#[utoipa::path(post, path = "/v1/suggest", request_body = SuggestBody, tag = "search",
    responses(
        (status = 200, description = "Completions, best first, and the best-matching products", body = SuggestResult),
        (status = 400, body = ErrorBody), (status = 404, description = "No such index", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn suggest(
    State(state): State<SharedState>,
    ApiJson(body): ApiJson<SuggestBody>,
) -> Result<Response, ApiError> {
    let index = state.index(body.index.as_deref())?.clone();
    check_chars("the query", &body.query, state.config.max_document_chars)?;
    let query = convert::suggest_query(&body)?;
    let engine = index.engine.clone();
    let (found, took) = blocking(move |_cancel| {
        let t = std::time::Instant::now();
        let found = engine.text().suggest(&query).map_err(ApiError::from)?;
        Ok((found, t.elapsed()))
    })
    .await?;
    state.metrics.stage("suggest", took.as_secs_f64());
    Ok(Json(convert::suggest_result(&index.name, &body.query, found, took)).into_response())
}

/// A news feed for a topic or a reader's profile: the search's recall, fusion and reranking, then freshness
/// (a decay on `published_at`), near-duplicate stories collapsed into clusters, MMR over the final score and a
/// per-source cap; pages follow a signed cursor over a snapshot, so none repeats or skips an item while
/// articles keep arriving.
#[utoipa::path(post, path = "/v1/feed", request_body = FeedBody, tag = "search",
    responses(
        (status = 200, description = "One page of the feed", body = FeedResult),
        (status = 400, description = "A malformed request, or a cursor that was altered or belongs to another request", body = ErrorBody),
        (status = 404, description = "No such index", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "The embedder's queue is full", body = ErrorBody)))]
pub async fn feed(State(state): State<SharedState>, ApiJson(body): ApiJson<FeedBody>) -> Result<Response, ApiError> {
    let index = state.index(body.index.as_deref())?.clone();
    let limit = state.config.max_document_chars;
    check_chars("the query", body.query.as_deref().unwrap_or(""), limit)?;
    for k in body.profile.iter().flat_map(|p| &p.keywords) {
        check_chars("a keyword", k, limit)?;
    }
    let mut req = convert::feed_request(&body, state.models.reranker.is_some())?;
    let engine = index.engine.clone();
    let res = blocking(move |cancel| {
        req.cancel = Some(cancel);
        engine.feed(&req).map_err(ApiError::from)
    })
    .await?;
    for t in &res.timings {
        state.metrics.stage(&t.stage, t.micros as f64 / 1e6);
    }
    if !res.reasons.is_empty() {
        state.metrics.degraded();
    }
    Ok(Json(convert::feed_result(&index.name, res)).into_response())
}

/// Reranks documents against a query with the cross-encoder (Cohere, Jina, vLLM and TEI request shapes).
#[utoipa::path(post, path = "/v1/rerank", request_body = RerankBody, tag = "models",
    responses(
        (status = 200, description = "Results sorted by relevance (a bare array for TEI-shaped requests that send `texts`)", body = RerankResult),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 424, body = ErrorBody),
        (status = 429, description = "The reranker's queue is full; see Retry-After", body = ErrorBody),
        (status = 501, description = "No reranker loaded", body = ErrorBody), (status = 504, body = ErrorBody)))]
pub async fn rerank(
    State(state): State<SharedState>,
    ApiJson(body): ApiJson<RerankBody>,
) -> Result<Response, ApiError> {
    let tei = body.texts.is_some() && body.documents.is_none();
    let RerankRun { texts, scores, cached, order, time, model } = run_rerank(&state, &body).await?;
    let keep_text = body.return_documents.or(body.return_text).unwrap_or(false);
    let raw = body.raw_scores.unwrap_or(false);
    if tei {
        let out: Vec<TeiRank> = order
            .iter()
            .map(|&i| TeiRank {
                index: i,
                score: if raw { scores[i].raw } else { scores[i].score },
                text: keep_text.then(|| texts[i].clone()),
            })
            .collect();
        return Ok(with_time(StatusCode::OK, Json(out), time));
    }
    let tokens: usize = scores.iter().map(|s| s.tokens).sum();
    let results = order
        .iter()
        .map(|&i| RerankResultItem {
            index: i,
            relevance_score: scores[i].score,
            raw_score: scores[i].raw,
            truncated: scores[i].truncated,
            cached: cached[i],
            document: keep_text.then(|| DocumentText { text: texts[i].clone() }),
        })
        .collect();
    let out = RerankResult {
        id: format!("rerank-{}", state.next_request_id()),
        model: body.model.clone().unwrap_or(model),
        results,
        usage: Usage { prompt_tokens: tokens, total_tokens: tokens },
        meta: RerankMeta { billed_units: BilledUnits { search_units: 1 } },
    };
    Ok(with_time(StatusCode::OK, Json(out), time))
}

/// A rerank as `/v1/rerank` runs it, in document order, with the order by score cut to `top_n`.
#[derive(Debug, Clone)]
pub struct RerankRun {
    /// The documents as sent.
    pub texts: Vec<String>,
    pub scores: Vec<sieve_models::RerankScore>,
    /// Whether each score came from the score cache.
    pub cached: Vec<bool>,
    /// Indexes into `texts`, best first, at most `top_n`.
    pub order: Vec<usize>,
    pub time: ModelTime,
    pub model: String,
}

/// One rerank as `/v1/rerank` runs it: the limits checked, the cache read and filled, the model called off
/// the async threads, the score metrics recorded. The web UI's playground calls this too.
pub async fn run_rerank(state: &SharedState, body: &RerankBody) -> Result<RerankRun, ApiError> {
    let limits = &state.config;
    let texts: Vec<&str> = match (&body.documents, &body.texts) {
        (Some(d), None) => d.iter().map(RerankDocument::text).collect(),
        (None, Some(t)) => t.iter().map(String::as_str).collect(),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("documents", "either `documents` or `texts`", "both"));
        }
        (None, None) => {
            return Err(ApiError::invalid("documents", "a list of strings or {text} objects (or `texts`)", "neither"));
        }
    };
    if texts.len() > limits.max_rerank_documents {
        return Err(ApiError::too_large(format!(
            "{} documents, over the limit of {} per rerank request (max_rerank_documents)",
            texts.len(),
            limits.max_rerank_documents
        )));
    }
    if let Some(d) = body.truncation_direction.as_deref() {
        if !d.eq_ignore_ascii_case("right") {
            return Err(ApiError::invalid(
                "truncation_direction",
                "`right` (the document's tail is cut; the prompt suffix is kept)",
                format!("{d:?}"),
            ));
        }
    }
    let truncate = body.truncate.unwrap_or(false);
    check_chars("the query", &body.query, limits.max_document_chars)?;
    if let Some(i) = &body.instruction {
        check_chars("the instruction", i, limits.max_document_chars)?;
    }
    let docs: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| fit(&format!("document {i}"), t, limits.max_document_chars, truncate))
        .collect::<Result<_, _>>()?;
    if body.max_tokens_per_doc == Some(0) {
        return Err(ApiError::invalid("max_tokens_per_doc", "a number of tokens > 0", 0));
    }
    let max_length = match (body.max_length, body.max_tokens_per_doc) {
        (Some(0), _) => return Err(ApiError::invalid("max_length", "a number of tokens > 0", 0)),
        (Some(n), _) => Some(n),
        // Cohere counts the document alone; the template and query come on top
        (None, Some(n)) => Some(n + approx_tokens(&body.query) + 64),
        (None, None) => None,
    };
    let Some(reranker) = state.models.reranker.clone() else {
        return Err(ApiError::new(
            ErrorCode::ModelNotLoaded,
            "no reranker is loaded; start the server with --reranker DIR",
        ));
    };
    let min_length = reranker.info().min_length;
    if let Some(m) = max_length.filter(|&m| m < min_length) {
        return Err(ApiError::invalid(
            "max_length",
            &format!("at least {min_length} tokens (the reranker's prompt template alone is {})", min_length - 1),
            m,
        ));
    }
    let model = reranker.name().to_owned();
    let n_docs = docs.len();
    let job = RerankJob { query: body.query.clone(), instruction: body.instruction.clone(), docs, max_length };
    let timeout = Duration::from_millis(limits.model_timeout_ms);
    let (scores, cached, timing) = if n_docs == 0 {
        (Vec::new(), Vec::new(), Default::default())
    } else {
        let (cache, lookup) = (state.cache.clone(), body.cache.unwrap_or(true));
        let out = blocking(move |cancel| {
            reranker
                .rerank_cached(cache.as_ref(), lookup, job, Some(timeout), Some(&cancel))
                .map_err(|(e, _)| ApiError::from(e))
        })
        .await?;
        if lookup {
            state.metrics.cache(out.report.hits, out.report.misses);
        }
        if let Some(e) = &out.report.error {
            tracing::warn!("rerank score cache: {e}");
        }
        (out.scores, out.cached, out.timing)
    };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].score.total_cmp(&scores[a].score));
    let top_n = match body.top_n {
        None | Some(0) => order.len(),
        Some(n) => n.min(order.len()),
    };
    order.truncate(top_n);
    for s in &scores {
        state.metrics.rerank_score("rerank", s.score);
    }
    let time = ModelTime { queue: timing.queued, inference: timing.compute };
    Ok(RerankRun { texts: texts.into_iter().map(str::to_owned).collect(), scores, cached, order, time, model })
}

/// Embeds texts (OpenAI shape, plus `input_type` for query instructions).
#[utoipa::path(post, path = "/v1/embeddings", request_body = EmbeddingsBody, tag = "models",
    responses(
        (status = 200, body = EmbeddingsResult),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 424, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 501, description = "No embedder loaded", body = ErrorBody), (status = 504, body = ErrorBody)))]
pub async fn embeddings(
    State(state): State<SharedState>,
    ApiJson(body): ApiJson<EmbeddingsBody>,
) -> Result<Response, ApiError> {
    let limits = &state.config;
    let inputs: Vec<String> = match body.input {
        EmbeddingInput::One(s) => vec![s],
        EmbeddingInput::Many(v) => v,
    };
    if inputs.is_empty() {
        return Err(ApiError::invalid("input", "a string or a non-empty list of strings", "an empty list"));
    }
    if inputs.len() > limits.max_embed_inputs {
        return Err(ApiError::too_large(format!(
            "{} inputs, over the limit of {} per embeddings request (max_embed_inputs)",
            inputs.len(),
            limits.max_embed_inputs
        )));
    }
    let truncate = body.truncate.unwrap_or(false);
    let texts: Vec<String> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| fit(&format!("input {i}"), t, limits.max_document_chars, truncate))
        .collect::<Result<_, _>>()?;
    if let Some(i) = &body.instruction {
        check_chars("the instruction", i, limits.max_document_chars)?;
    }
    let Some(embedder) = state.models.embedder.clone() else {
        return Err(ApiError::new(
            ErrorCode::ModelNotLoaded,
            "no embedding model is loaded; start the server with --embedder NAME",
        ));
    };
    let hidden = embedder.info().hidden_size;
    if let Some(d) = body.dimensions {
        if d == 0 || d > hidden {
            return Err(ApiError::invalid("dimensions", &format!("1..={hidden} (the model's size)"), d));
        }
    }
    let job = EmbedJob {
        texts,
        query: body.input_type == Some(InputType::Query),
        instruction: body.instruction.clone(),
        options: EmbedOptions { dimensions: body.dimensions, max_length: None },
    };
    let timeout = Duration::from_millis(limits.model_timeout_ms);
    let model = body.model.clone().unwrap_or_else(|| embedder.name().to_owned());
    let (out, timing) =
        blocking(move |cancel| embedder.embed(job, Some(timeout), Some(&cancel)).map_err(ApiError::from)).await?;
    let base64 = body.encoding_format == Some(EncodingFormat::Base64);
    let data = out
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingItem {
            object: "embedding".into(),
            embedding: if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                EmbeddingVector::Float(v)
            },
            index,
        })
        .collect();
    let tokens: usize = out.tokens.iter().sum();
    let result = EmbeddingsResult {
        object: "list".into(),
        data,
        model,
        usage: Usage { prompt_tokens: tokens, total_tokens: tokens },
    };
    Ok(with_time(StatusCode::OK, Json(result), ModelTime { queue: timing.queued, inference: timing.compute }))
}

async fn answer_task(state: &SharedState, task: Task, wait: bool) -> Response {
    let task = if wait {
        state.tasks.wait(task.id, Duration::from_secs(state.config.wait_timeout_secs)).await.unwrap_or(task)
    } else {
        task
    };
    let location = format!("/v1/tasks/{}", task.id);
    if let (true, false, Some(why)) = (wait, task.status.finished(), &task.blocked) {
        // the write is stored and will run; it cannot now, and a waiting client should know at once
        let message =
            format!("{why}; task {} is stored and runs once the lock is released (follow it at {location})", task.id);
        let mut r = ApiError::new(ErrorCode::Conflict, message).into_response();
        if let Ok(v) = header::HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return r;
    }
    let status = if task.status.finished() { StatusCode::OK } else { StatusCode::ACCEPTED };
    let mut r = (status, Json(task)).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn task_error(e: crate::tasks::TaskError) -> ApiError {
    match e {
        crate::tasks::TaskError::ShuttingDown => {
            ApiError { code: ErrorCode::Unavailable, message: e.to_string(), retry_after: Some(5) }
        }
        crate::tasks::TaskError::Io { .. } => ApiError::new(ErrorCode::Internal, e.to_string()),
    }
}

/// Adds or replaces documents: a JSON array (or one object), or NDJSON. Answers with the write's task.
#[utoipa::path(post, path = "/v1/documents", tag = "documents", params(DocumentParams),
    request_body(content = Vec<Object>, description = "Documents (`id` required; `title`, `body`, `brand`, `price`, `category`, `tags`, `source`, `lang`, `published_at`, `url`, and any other field). Also accepts `application/x-ndjson`.", content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted; see the task", body = Task),
        (status = 200, description = "Finished (with `wait=true`)", body = Task),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_documents(
    State(state): State<SharedState>,
    ApiQuery(params): ApiQuery<DocumentParams>,
    body: RawBody,
) -> Result<Response, ApiError> {
    unavailable_if_stopping(&state)?;
    let index = state.index(params.index.as_deref())?.clone();
    let ct = body.content_type.as_deref().unwrap_or("application/json");
    let base = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let (ndjson, rows): (Vec<u8>, u64) = match base.as_str() {
        "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines" | "application/ndjson" => {
            let text = std::str::from_utf8(&body.bytes).map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidJson,
                    format!("the NDJSON body is not UTF-8 after byte {}", e.valid_up_to()),
                )
            })?;
            let rows = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
            let mut bytes = body.bytes.to_vec();
            if !bytes.ends_with(b"\n") {
                bytes.push(b'\n');
            }
            (bytes, rows)
        }
        b if b == "application/json" || b.ends_with("+json") => {
            let value: serde_json::Value = crate::extract::parse_json(&body.bytes)?;
            let items = match value {
                serde_json::Value::Array(items) => items,
                serde_json::Value::Object(_) => vec![value],
                other => {
                    return Err(ApiError::invalid(
                        "body",
                        "a JSON array of documents or one document object",
                        json_kind(&other),
                    ))
                }
            };
            if let Some((i, item)) = items.iter().enumerate().find(|(_, v)| !v.is_object()) {
                // the schema says an array of document objects; NDJSON lines are rows (rejected one by one)
                return Err(ApiError::invalid(&format!("body[{i}]"), "a document object", json_kind(item)));
            }
            let mut bytes = Vec::with_capacity(body.bytes.len() + items.len());
            for item in &items {
                serde_json::to_writer(&mut bytes, item).expect("a JSON value serializes");
                bytes.push(b'\n');
            }
            (bytes, items.len() as u64)
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("expected Content-Type application/json or application/x-ndjson, found {ct:?}"),
            ))
        }
    };
    let task = submit_upsert(&state, &index.name, ndjson, rows, sieve_ingest::Format::Jsonl).await?;
    Ok(answer_task(&state, task, params.wait.unwrap_or(false)).await)
}

/// Stores an upsert of `rows` rows (JSON lines, or CSV with a header row) as a durable task on `index` and
/// hands it to the index's ingest thread, as `POST /v1/documents` does; the web UI's upload page calls this
/// too.
pub async fn submit_upsert(
    state: &SharedState,
    index: &str,
    body: Vec<u8>,
    rows: u64,
    format: sieve_ingest::Format,
) -> Result<Task, ApiError> {
    unavailable_if_stopping(state)?;
    let index = state.index(Some(index))?.clone();
    if rows == 0 {
        return Err(ApiError::invalid("body", "at least one document", "none"));
    }
    let tasks = state.tasks.clone();
    let name = index.name.clone();
    let task = tokio::task::spawn_blocking(move || tasks.create_upsert_as(&name, &body, rows, format))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(task_error)?;
    index.enqueue(task.id)?;
    Ok(task)
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn doc_id(raw: &str) -> Result<DocId, ApiError> {
    DocId::parse(raw, MAX_ID_BYTES).map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("document id: {e}")))
}

/// One stored document.
#[utoipa::path(get, path = "/v1/documents/{id}", tag = "documents",
    params(("id" = String, Path, description = "Document id"), DocumentParams),
    responses((status = 200, description = "The document as stored", body = Object),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_document(
    State(state): State<SharedState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<DocumentParams>,
) -> Result<Response, ApiError> {
    let index = state.index(params.index.as_deref())?.clone();
    let id = doc_id(&id)?;
    let engine = index.engine.clone();
    let name = index.name.clone();
    let doc = blocking(move |_| {
        engine.text().reload().map_err(ApiError::from)?;
        let mut found = engine.text().get_many(std::slice::from_ref(&id)).map_err(ApiError::from)?;
        found
            .pop()
            .flatten()
            .ok_or_else(|| ApiError::not_found(format!("no document {:?} in index {name:?}", id.as_str())))
    })
    .await?;
    Ok(Json(doc.to_json()).into_response())
}

/// Deletes a document. Answers with the write's task.
#[utoipa::path(delete, path = "/v1/documents/{id}", tag = "documents",
    params(("id" = String, Path, description = "Document id"), DocumentParams),
    responses((status = 202, body = Task), (status = 200, description = "Finished (with `wait=true`)", body = Task),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_document(
    State(state): State<SharedState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<DocumentParams>,
) -> Result<Response, ApiError> {
    unavailable_if_stopping(&state)?;
    let index = state.index(params.index.as_deref())?.clone();
    let id = doc_id(&id)?;
    let (engine, tasks, name) = (index.engine.clone(), state.tasks.clone(), index.name.clone());
    let task = blocking(move |_| {
        engine.text().reload().map_err(ApiError::from)?;
        let found = engine.text().get_many(std::slice::from_ref(&id)).map_err(ApiError::from)?;
        if found.first().is_none_or(Option::is_none) {
            return Err(ApiError::not_found(format!("no document {:?} in index {name:?}", id.as_str())));
        }
        tasks.create_delete(&name, &id).map_err(task_error)
    })
    .await?;
    index.enqueue(task.id)?;
    Ok(answer_task(&state, task, params.wait.unwrap_or(false)).await)
}

/// A write task: status, counts, per-row errors.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "documents",
    params(("id" = u64, Path, description = "Task id")),
    responses((status = 200, body = Task), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_task(State(state): State<SharedState>, ApiPath(id): ApiPath<String>) -> Result<Json<Task>, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::invalid("task id", "a positive integer", format!("{id:?}")))?;
    state.tasks.get(id).map(Json).ok_or_else(|| ApiError::not_found(format!("no task {id}")))
}

/// The most recent write tasks, newest first.
#[utoipa::path(get, path = "/v1/tasks", tag = "documents", params(TaskListParams),
    responses((status = 200, body = Vec<Task>), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_tasks(
    State(state): State<SharedState>,
    ApiQuery(params): ApiQuery<TaskListParams>,
) -> Result<Json<Vec<Task>>, ApiError> {
    let limit = params.limit.unwrap_or(20);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::invalid("limit", "1..=1000", limit));
    }
    Ok(Json(state.tasks.recent(limit)))
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Indexes open and models loaded (503 while shutting down or when something is missing).
#[utoipa::path(get, path = "/ready", tag = "system",
    responses((status = 200, body = Ready), (status = 503, body = Ready)))]
pub async fn ready(State(state): State<SharedState>) -> Response {
    let mut problems = Vec::new();
    if state.shutting_down() {
        problems.push("shutting down".to_owned());
    }
    if state.config.embedder.is_some() && state.models.embedder.is_none() {
        problems.push("the configured embedder is not loaded".into());
    }
    if state.config.reranker.is_some() && state.models.reranker.is_none() {
        problems.push("the configured reranker is not loaded".into());
    }
    let indexes: Vec<IndexReady> = state
        .indexes
        .values()
        .map(|h| IndexReady {
            name: h.name.clone(),
            documents: h.engine.text().num_docs(),
            vectors: h.engine.vector_count(),
            dense: h.engine.dense_ready(),
        })
        .collect();
    let body = Ready {
        ready: problems.is_empty(),
        indexes,
        embedder: state.models.embedder.is_some(),
        reranker: state.models.reranker.is_some(),
        problems,
    };
    let status = if body.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

/// Models (device, dtype), indexes and limits.
#[utoipa::path(get, path = "/v1/info", tag = "system", responses((status = 200, body = Info)))]
pub async fn info(State(state): State<SharedState>) -> Json<Info> {
    let c = &state.config;
    Json(Info {
        version: env!("CARGO_PKG_VERSION").into(),
        embedder: state.models.embedder.as_ref().map(|e| convert::model_info(e.info())),
        reranker: state.models.reranker.as_ref().map(|r| convert::model_info(r.info())),
        indexes: state
            .indexes
            .values()
            .map(|h| IndexInfo {
                name: h.name.clone(),
                path: h.path.display().to_string(),
                documents: h.engine.text().num_docs(),
                vectors: h.engine.vector_count(),
                embedding_model: h.engine.settings().map(|s| s.model.clone()),
            })
            .collect(),
        default_index: state.default_index.clone(),
        limits: Limits {
            max_body_bytes: c.max_body_bytes,
            max_rerank_documents: c.max_rerank_documents,
            max_embed_inputs: c.max_embed_inputs,
            max_document_chars: c.max_document_chars,
            max_queue: c.max_queue,
            max_depth: MAX_DEPTH,
        },
        rerank_cache: state.cache.describe(),
        auth: c.api_key.is_some(),
    })
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Text exposition format", body = String, content_type = "text/plain"),
        (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn metrics(State(state): State<SharedState>) -> Response {
    let docs: Vec<(String, f64)> = state
        .indexes
        .values()
        .map(|h| (crate::metrics::labels(&[("index", &h.name)]), h.engine.text().num_docs() as f64))
        .collect();
    let vectors: Vec<(String, f64)> = state
        .indexes
        .values()
        .map(|h| (crate::metrics::labels(&[("index", &h.name)]), h.engine.vector_count() as f64))
        .collect();
    let tasks: Vec<(String, f64)> = state
        .tasks
        .counts()
        .into_iter()
        .map(|(status, n)| (crate::metrics::labels(&[("status", status)]), n as f64))
        .collect();
    let text = state.metrics.render(&[
        ("sieve_index_documents", "Documents per index.", docs),
        ("sieve_index_vectors", "Live vectors per index.", vectors),
        ("sieve_tasks", "Write tasks by status.", tasks),
    ]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
