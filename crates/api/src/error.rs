//! The one error body, `{"code", "message"}`, and the stable codes, each answered with one HTTP status.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A stable, machine-readable error code; each has one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON (400).
    InvalidJson,
    /// The body is JSON but a field is missing, of the wrong type, or out of range (422).
    InvalidRequest,
    /// A dense-only search on an index without embeddings or without an embedder (422).
    DenseUnavailable,
    /// `Content-Type` is not `application/json` (or NDJSON where accepted) (415).
    UnsupportedMediaType,
    /// The route needs `Authorization: Bearer <key>` and it is missing or wrong (401).
    Unauthorized,
    /// No such route, index, document or task (404).
    NotFound,
    /// The route exists but not with this method (405).
    MethodNotAllowed,
    /// The body, the number of inputs, or one input is over a configured limit (413).
    PayloadTooLarge,
    /// The client did not send the request body within `body_timeout_secs` (408).
    RequestTimeout,
    /// The request conflicts with the index's state (e.g. embedding dimensions differ; writer locked) (409).
    Conflict,
    /// A model's queue is full; retry after `Retry-After` seconds (429).
    Overloaded,
    /// The route needs a model the server was started without (501).
    ModelNotLoaded,
    /// The model failed on this input (424).
    ModelError,
    /// The model did not answer within the request's time budget (504).
    Timeout,
    /// The server is shutting down or not ready (503).
    Unavailable,
    /// Something failed on the server's side (500).
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code is always answered with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson => 400,
            ErrorCode::InvalidRequest | ErrorCode::DenseUnavailable => 422,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::Conflict => 409,
            ErrorCode::Overloaded => 429,
            ErrorCode::ModelNotLoaded => 501,
            ErrorCode::ModelError => 424,
            ErrorCode::Timeout => 504,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::DenseUnavailable => "dense_unavailable",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::ModelNotLoaded => "model_not_loaded",
            ErrorCode::ModelError => "model_error",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}
