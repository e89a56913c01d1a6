//! What handlers share beyond the state: body, query and path extractors that answer in the one error shape,
//! running blocking engine work off the async threads (cancelled when the client leaves), and the model-time
//! record behind the timing headers.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use sieve_pipeline::CancelToken;

use crate::error::{ApiError, ErrorCode};
use crate::state::{AppState, SharedState};

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
    // the request's span (and its id) follows the work onto the blocking thread and into the model workers
    let span = tracing::Span::current();
    let out = tokio::task::spawn_blocking(move || span.in_scope(|| f(token))).await;
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

    /// A `Content-Length` over the limit is refused before a byte of the body is read; a body that does not
    /// arrive within `body_timeout_secs` gets 408.
    async fn from_request(req: Request, state: &SharedState) -> Result<Self, ApiError> {
        let limit = state.config.max_body_bytes;
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let declared =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        if let Some(len) = declared.filter(|&len| len > limit as u64) {
            return Err(ApiError::too_large(format!(
                "the request body is {len} bytes (Content-Length), over the limit of {limit} bytes (max_body_bytes)"
            )));
        }
        let secs = state.config.body_timeout_secs;
        let read = axum::body::to_bytes(req.into_body(), limit);
        let bytes = match tokio::time::timeout(Duration::from_secs(secs), read).await {
            Ok(read) => read.map_err(|_| {
                ApiError::too_large(format!("the request body is over the limit of {limit} bytes (max_body_bytes)"))
            })?,
            Err(_) => {
                return Err(ApiError::new(
                    ErrorCode::RequestTimeout,
                    format!("the request body did not arrive within {secs} s (body_timeout_secs)"),
                ))
            }
        };
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
