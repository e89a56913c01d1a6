//! The server's state, router and middleware: body and query extractors that answer in the one error shape,
//! bearer-key checks on write and admin routes, timing headers and metrics on every response, CORS, panic
//! containment, and graceful shutdown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use sieve_pipeline::{
    CancelToken, EmbedderHandle, Engine, EngineOptions, PipelineError, RerankerHandle, ScoreCache, VectorSettings,
};
use sieve_text::{IndexSettings, TextIndex};
use sieve_vector::HnswParams;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{IndexConfig, ServerConfig};
use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;
use crate::routes;
use crate::tasks::{spawn_ingest_thread, TaskStore};

/// One served index: its engine and the queue of its ingest thread.
pub struct IndexHandle {
    pub name: String,
    pub path: PathBuf,
    pub engine: Arc<Engine>,
    queue: Mutex<Option<mpsc::Sender<u64>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for IndexHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexHandle").field("name", &self.name).field("path", &self.path).finish()
    }
}

impl IndexHandle {
    /// Hands task `id` to the index's ingest thread.
    pub fn enqueue(&self, id: u64) -> Result<(), ApiError> {
        let q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        match q.as_ref().map(|tx| tx.send(id)) {
            Some(Ok(())) => Ok(()),
            _ => Err(ApiError::new(
                ErrorCode::Unavailable,
                "the server is shutting down; the task runs at the next start",
            )),
        }
    }
}

/// The models a server runs, loaded by the caller.
#[derive(Debug, Default, Clone)]
pub struct Models {
    pub embedder: Option<EmbedderHandle>,
    pub reranker: Option<RerankerHandle>,
}

/// Opens (or creates) one served index as an engine over the shared models and brings its vector graph up
/// to date. A new index gets a dense side when an embedder is loaded. An index keeps its embedding model: with
/// another one loaded, its dense leg is off (searches say so in `notes`) and a log line says why.
pub fn open_index(
    index: &IndexConfig,
    models: &Models,
    cache: Arc<dyn ScoreCache>,
    config: &ServerConfig,
) -> Result<Engine, PipelineError> {
    let created = !index.path.exists();
    let existing = if created { None } else { VectorSettings::load(&index.path)? };
    let text = TextIndex::open_or_create(&index.path, IndexSettings::default())?;
    let embedder = models.embedder.clone().filter(|e| existing.as_ref().is_none_or(|s| s.model == e.name()));
    if let (Some(s), Some(e)) = (&existing, &models.embedder) {
        if s.model != e.name() {
            tracing::warn!(
                "index {} holds {} embeddings but the server loads {}; its searches run BM25 only",
                index.name,
                s.model,
                e.name()
            );
        }
    }
    let options = EngineOptions {
        embedder,
        reranker: models.reranker.clone(),
        cache,
        rerank_timeout: Duration::from_millis(config.rerank_timeout_ms),
        embed_timeout: Duration::from_millis(config.embed_timeout_ms),
        vector_save: config.vector_save(),
        ..EngineOptions::default()
    };
    let mut engine = Engine::from_parts(Some(index.path.clone()), text, existing, options)?;
    if let (true, Some(e)) = (created, &models.embedder) {
        engine.ensure_vector_settings(e.name(), HnswParams::default())?;
    }
    engine.sync_vectors()?;
    Ok(engine)
}

/// Everything the handlers share.
pub struct AppState {
    pub config: ServerConfig,
    pub indexes: BTreeMap<String, Arc<IndexHandle>>,
    pub default_index: String,
    pub models: Models,
    /// The rerank score cache the engines share; `/v1/rerank` reads and fills it too.
    pub cache: Arc<dyn ScoreCache>,
    pub metrics: Metrics,
    pub tasks: Arc<TaskStore>,
    shutting_down: AtomicBool,
    request_ids: AtomicU64,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("indexes", &self.indexes).finish_non_exhaustive()
    }
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// Builds the state over engines already opened (in `config.indexes` order), resumes the tasks that an
    /// earlier run left unfinished, and starts one ingest thread per index.
    pub fn new(
        config: ServerConfig,
        engines: Vec<Engine>,
        models: Models,
        cache: Arc<dyn ScoreCache>,
    ) -> Result<AppState, crate::tasks::TaskError> {
        let named: Vec<(String, PathBuf)> = config.indexes.iter().map(|i| (i.name.clone(), i.path.clone())).collect();
        let (tasks, pending) = TaskStore::open(&named, config.max_finished_tasks)?;
        let tasks = Arc::new(tasks);
        let metrics = Metrics::new();
        if let Some(e) = &models.embedder {
            metrics.watch_worker("embedder", e.stats().clone());
        }
        if let Some(r) = &models.reranker {
            metrics.watch_worker("reranker", r.stats().clone());
        }
        let mut indexes = BTreeMap::new();
        for ((name, path), engine) in named.into_iter().zip(engines) {
            let engine = Arc::new(engine);
            let (tx, thread) = spawn_ingest_thread(&name, tasks.clone(), engine.clone(), &config);
            for id in pending.get(&name).into_iter().flatten() {
                let _ = tx.send(*id);
            }
            let handle = IndexHandle {
                name: name.clone(),
                path,
                engine,
                queue: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
            };
            indexes.insert(name, Arc::new(handle));
        }
        let default_index = config.indexes.first().map(|i| i.name.clone()).unwrap_or_default();
        Ok(AppState {
            config,
            indexes,
            default_index,
            models,
            cache,
            metrics,
            tasks,
            shutting_down: AtomicBool::new(false),
            request_ids: AtomicU64::new(1),
        })
    }

    /// The index a request names, or the default one.
    pub fn index(&self, name: Option<&str>) -> Result<&Arc<IndexHandle>, ApiError> {
        let name = name.unwrap_or(&self.default_index);
        self.indexes.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.indexes.keys().map(String::as_str).collect();
            ApiError::not_found(format!("no index named {name:?}; this server has {}", known.join(", ")))
        })
    }

    pub fn next_request_id(&self) -> u64 {
        self.request_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// From now on writes are refused and `/ready` says no.
    pub fn begin_stopping(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.tasks.begin_shutdown();
    }

    /// Stops accepting writes, lets each ingest thread finish its current task (at most `grace`), and leaves
    /// the rest recorded on disk for the next start.
    pub fn shutdown(&self, grace: Duration) {
        self.begin_stopping();
        let deadline = Instant::now() + grace;
        for h in self.indexes.values() {
            h.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        for h in self.indexes.values() {
            let Some(thread) = h.thread.lock().unwrap_or_else(|p| p.into_inner()).take() else { continue };
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                tracing::warn!(
                    "index {}: the running task did not finish in time; it resumes at the next start",
                    h.name
                );
            }
        }
    }
}

/// Time spent waiting for and inside models, set by handlers for the timing headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ModelTime {
    pub queue: Duration,
    pub inference: Duration,
}

/// Sets the token when dropped armed: the handler's future was dropped because the client went away.
#[derive(Debug)]
pub struct CancelOnDrop {
    token: CancelToken,
    armed: bool,
}

impl CancelOnDrop {
    pub fn new(token: CancelToken) -> CancelOnDrop {
        CancelOnDrop { token, armed: true }
    }
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.token.cancel();
        }
    }
}

/// Runs blocking work (engine and model calls) off the async threads, cancelling it if the client leaves.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce(CancelToken) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let token = CancelToken::new();
    let guard = CancelOnDrop::new(token.clone());
    let out = tokio::task::spawn_blocking(move || f(token)).await;
    guard.disarm();
    match out {
        Ok(r) => r,
        Err(e) => Err(ApiError::new(ErrorCode::Internal, format!("request handler failed: {e}"))),
    }
}

// ---------------------------------------------------------------- extractors

fn is_json(ct: &str) -> bool {
    let ct = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json"))
}

/// The raw body, at most `max_body_bytes` (413 naming the limit beyond it).
#[derive(Debug)]
pub struct RawBody {
    pub bytes: Bytes,
    pub content_type: Option<String>,
}

impl FromRequest<SharedState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &SharedState) -> Result<Self, ApiError> {
        let limit = state.config.max_body_bytes;
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| {
            ApiError::too_large(format!("the request body is over the limit of {limit} bytes (max_body_bytes)"))
        })?;
        Ok(RawBody { bytes, content_type })
    }
}

/// A JSON body: 415 for another content type, 400 for broken JSON, 422 for the wrong shape.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<SharedState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &SharedState) -> Result<Self, ApiError> {
        let body = RawBody::from_request(req, state).await?;
        if let Some(ct) = &body.content_type {
            if !is_json(ct) {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    format!("expected Content-Type: application/json, found {ct:?}"),
                ));
            }
        }
        parse_json(&body.bytes).map(ApiJson)
    }
}

/// Parses JSON, telling syntax errors (400) from shape errors (422).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiError::new(ErrorCode::InvalidRequest, format!("invalid request body: {e}"))
        }
        _ => ApiError::new(ErrorCode::InvalidJson, format!("the body is not valid JSON: {e}")),
    })
}

/// Query parameters, 422 when they do not parse.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send> axum::extract::FromRequestParts<SharedState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &SharedState) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("invalid query string: {}", e.body_text())))
    }
}

/// Path parameters, 422 in the JSON error shape when they do not decode (e.g. `%ff%fe`, not UTF-8), instead of
/// axum's plain-text 400.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send> axum::extract::FromRequestParts<SharedState> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, s: &SharedState) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, s)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("invalid path: {}", e.body_text())))
    }
}

// ---------------------------------------------------------------- middleware

fn protected(method: &Method, route: &str) -> bool {
    match route {
        "/v1/documents" | "/v1/documents/{id}" => method != Method::GET,
        "/v1/tasks" | "/v1/tasks/{id}" | "/metrics" => true,
        _ => false,
    }
}

/// Compares without an early exit, so a wrong key's timing says nothing about the right one.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn ms(d: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!("{:.3}", d.as_secs_f64() * 1000.0)).expect("a number is a header value")
}

/// Counts the request as abandoned when dropped armed: its handler's future was dropped because the client
/// went away before the answer.
struct AbandonGuard {
    state: Option<SharedState>,
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            state.metrics.abandoned();
        }
    }
}

/// Auth, timing headers, request metrics and error counts, for every route.
pub async fn observe(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let mut abandon = AbandonGuard { state: Some(state.clone()) };
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let mut response = if let (Some(key), true) = (&state.config.api_key, protected(&method, &route)) {
        let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        // the scheme name is case-insensitive (RFC 7235 §2.1): `bearer KEY` is as good as `Bearer KEY`
        let token = given
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, token)| token.trim_start());
        if same_key(token.as_bytes(), key.as_bytes()) {
            next.run(req).await
        } else {
            let mut r = ApiError::new(
                ErrorCode::Unauthorized,
                if given.is_empty() {
                    "this route needs `Authorization: Bearer <api key>`".to_owned()
                } else {
                    "the API key is not valid".to_owned()
                },
            )
            .into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
    } else {
        next.run(req).await
    };
    abandon.state = None;
    let total = started.elapsed();
    let model = response.extensions().get::<ModelTime>().copied().unwrap_or_default();
    let h = response.headers_mut();
    h.insert("x-total-time", ms(total));
    h.insert("x-queue-time", ms(model.queue));
    h.insert("x-inference-time", ms(model.inference));
    let status = response.status();
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        state.metrics.error(code.as_str());
    } else if status.is_client_error() || status.is_server_error() {
        state.metrics.error(&status.as_u16().to_string());
    }
    state.metrics.request(&route, method.as_str(), status.as_u16(), total.as_secs_f64());
    response
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("no route {} {}; see /openapi.json", req.method(), req.uri().path()))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on {}; see /openapi.json", req.method(), req.uri().path()),
    )
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown".into());
    tracing::error!("a request handler panicked: {what}");
    ApiError::new(ErrorCode::Internal, "the request failed inside the server (logged)").into_response()
}

/// The router over `state`.
pub fn router(state: SharedState) -> Router {
    let mut app = Router::new()
        .route("/v1/search", post(routes::search))
        .route("/v1/rerank", post(routes::rerank))
        .route("/v2/rerank", post(routes::rerank))
        .route("/rerank", post(routes::rerank))
        .route("/v1/embeddings", post(routes::embeddings))
        .route("/v1/documents", post(routes::add_documents))
        .route("/v1/documents/{id}", get(routes::get_document).delete(routes::delete_document))
        .route("/v1/tasks", get(routes::list_tasks))
        .route("/v1/tasks/{id}", get(routes::get_task))
        .route("/health", get(routes::health))
        .route("/ready", get(routes::ready))
        .route("/v1/info", get(routes::info))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response));
    let origins = &state.config.cors_origins;
    if !origins.is_empty() {
        let allow = if origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        };
        let cors = CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
            .expose_headers([
                header::HeaderName::from_static("x-total-time"),
                header::HeaderName::from_static("x-queue-time"),
                header::HeaderName::from_static("x-inference-time"),
                header::RETRY_AFTER,
            ]);
        app = app.layer(cors);
    }
    app.with_state(state)
}

/// Serves until `shutdown` resolves, then drains in-flight requests (at most `shutdown_grace_secs`) and
/// stops the ingest threads (their unfinished tasks resume at the next start).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: SharedState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = Duration::from_secs(state.config.shutdown_grace_secs);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(state.clone());
    let st = state.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        st.begin_stopping();
        let _ = stop_tx.send(());
    });
    let server = tokio::spawn(async move { server.await });
    // once the signal came, in-flight requests get `grace` to finish
    let drained = async {
        let _ = stop_rx.await;
        tokio::time::sleep(grace).await;
    };
    let result = tokio::select! {
        r = server => r.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string()))),
        _ = drained => {
            tracing::warn!("in-flight requests did not finish within {} s; stopping anyway", grace.as_secs());
            Ok(())
        }
    };
    let st = state.clone();
    tokio::task::spawn_blocking(move || st.shutdown(grace)).await.ok();
    result
}

/// `Retry-After` and 503 while shutting down.
pub fn unavailable_if_stopping(state: &AppState) -> Result<(), ApiError> {
    if state.shutting_down() {
        return Err(ApiError {
            code: ErrorCode::Unavailable,
            message: "the server is shutting down".into(),
            retry_after: Some(5),
        });
    }
    Ok(())
}

/// A response with status and the model time attached for the timing headers.
pub fn with_time(status: StatusCode, body: impl IntoResponse, time: ModelTime) -> Response {
    let mut r = (status, body).into_response();
    r.extensions_mut().insert(time);
    r
}
