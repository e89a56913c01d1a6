//! The router and its middleware: bearer-key checks on write and admin routes, a tracing span and an
//! `x-request-id` per request, timing headers and metrics on every response, CORS, panic containment, and
//! graceful shutdown.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;

use crate::error::{ApiError, ErrorCode};
use crate::extract::ModelTime;
use crate::state::SharedState;
use crate::{openapi, routes};

// ---------------------------------------------------------------- middleware

fn protected(method: &Method, route: &str) -> bool {
    match route {
        "/v1/documents" | "/v1/documents/{id}" => method != Method::GET,
        "/v1/tasks" | "/v1/tasks/{id}" | "/metrics" => true,
        _ => false,
    }
}

/// Compares without an early exit, so a wrong key's timing says nothing about the right one (the web UI's key
/// cookie and form tokens use it too).
pub fn same_key(a: &[u8], b: &[u8]) -> bool {
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

/// The request id header, read and written.
pub const REQUEST_ID: &str = "x-request-id";

/// A client's own request id when it is one we can log and echo (1 to 128 visible ASCII characters), else
/// a new one.
fn request_id(state: &SharedState, req: &Request) -> String {
    let given = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::trim);
    match given {
        Some(id) if (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()) => id.to_owned(),
        _ => format!("{}-{}", state.instance(), state.next_request_id()),
    }
}

/// Auth, a tracing span with the request id, timing headers, request metrics and error counts, for every
/// route.
pub async fn observe(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let rid = request_id(&state, &req);
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let span = tracing::info_span!("request", id = %rid, method = %method, route = %route);
    let mut response = handle(state.clone(), req, next, &method, &route).instrument(span.clone()).await;
    let total = started.elapsed();
    let model = response.extensions().get::<ModelTime>().copied().unwrap_or_default();
    let h = response.headers_mut();
    h.insert("x-total-time", ms(total));
    h.insert("x-queue-time", ms(model.queue));
    h.insert("x-inference-time", ms(model.inference));
    if let Ok(v) = HeaderValue::from_str(&rid) {
        h.insert(REQUEST_ID, v);
    }
    let status = response.status();
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        state.metrics.error(code.as_str());
    } else if status.is_client_error() || status.is_server_error() {
        state.metrics.error(&status.as_u16().to_string());
    }
    state.metrics.request(&route, method.as_str(), status.as_u16(), total.as_secs_f64());
    tracing::debug!(parent: &span, status = status.as_u16(), ms = total.as_secs_f64() * 1000.0, "answered");
    response
}

/// The route behind the bearer-key check; a request dropped before its answer counts as abandoned.
async fn handle(state: SharedState, req: Request, next: Next, method: &Method, route: &str) -> Response {
    let mut abandon = AbandonGuard { state: Some(state.clone()) };
    let response = if let (Some(key), true) = (&state.config.api_key, protected(method, route)) {
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
    router_with(state, None)
}

/// The router over `state`, with other routes (the web UI's) beside the API's, behind the same middleware.
pub fn router_with(state: SharedState, ui: Option<Router<SharedState>>) -> Router {
    let mut app = ui
        .unwrap_or_default()
        .route("/v1/search", post(routes::search))
        .route("/v1/suggest", post(routes::suggest))
        .route("/v1/feed", post(routes::feed))
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
        .route("/openapi.json", get(openapi::serve_document))
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
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, header::HeaderName::from_static(REQUEST_ID)])
            .expose_headers([
                header::HeaderName::from_static("x-total-time"),
                header::HeaderName::from_static("x-queue-time"),
                header::HeaderName::from_static("x-inference-time"),
                header::HeaderName::from_static(REQUEST_ID),
                header::RETRY_AFTER,
            ]);
        app = app.layer(cors);
    }
    app.with_state(state)
}

/// Serves (through `conn.rs`'s accept loop) until `shutdown` resolves, then drains in-flight requests (at most `shutdown_grace_secs`) and
/// stops the ingest threads (their unfinished tasks resume at the next start).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: SharedState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, None, shutdown).await
}

/// [`serve`] with other routes (the web UI's) beside the API's.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: SharedState,
    ui: Option<Router<SharedState>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = Duration::from_secs(state.config.shutdown_grace_secs);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = router_with(state.clone(), ui);
    let st = state.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        st.begin_stopping();
        let _ = stop_tx.send(());
    };
    let server = crate::conn::run(listener, app, state.clone(), signal);
    let server = tokio::spawn(server);
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
