//! One error body (`{code, message}`) and the one place where every domain error becomes an HTTP status.
//! The mapping matches on every variant, so a new error in a library crate fails to compile here until it is
//! given a status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
pub use sieve_api::{ErrorBody, ErrorCode};
use sieve_models::ModelError;
use sieve_pipeline::{PipelineError, WorkerError};
use sieve_text::TextError;
use sieve_vector::VectorError;

/// The HTTP status of an [`ErrorCode`] (the code says which; this makes it axum's type).
pub trait HttpStatus {
    fn status(self) -> StatusCode;
}

impl HttpStatus for ErrorCode {
    fn status(self) -> StatusCode {
        StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// An error on its way to becoming a response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds, for `Retry-After` on 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), retry_after: None }
    }

    /// A field with the wrong value: says what was expected and what was found.
    pub fn invalid(field: &str, expected: &str, found: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::InvalidRequest, format!("`{field}`: expected {expected}, found {found}"))
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, what)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::PayloadTooLarge, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let body = ErrorBody { code: self.code, message: self.message };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // the code travels as a header too, so the metrics layer can count errors by code
        response.extensions_mut().insert(self.code);
        response
    }
}

impl From<WorkerError> for ApiError {
    fn from(e: WorkerError) -> ApiError {
        let message = e.to_string();
        match e {
            WorkerError::Timeout { .. } => ApiError::new(ErrorCode::Timeout, message),
            WorkerError::Failed { .. } => ApiError::new(ErrorCode::ModelError, message),
            WorkerError::Stopped { .. } => ApiError::new(ErrorCode::Unavailable, message),
            WorkerError::Overloaded { .. } => ApiError { code: ErrorCode::Overloaded, message, retry_after: Some(1) },
            // the client is gone; nobody reads this
            WorkerError::Cancelled { .. } => ApiError::new(ErrorCode::Unavailable, message),
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> ApiError {
        let message = e.to_string();
        match e {
            ModelError::InvalidInput { .. } => ApiError::new(ErrorCode::InvalidRequest, message),
            ModelError::Tokenizer { .. } | ModelError::Device { .. } | ModelError::Compute(_) => {
                ApiError::new(ErrorCode::ModelError, message)
            }
            ModelError::NoModel { .. }
            | ModelError::MissingFile { .. }
            | ModelError::Io { .. }
            | ModelError::InvalidConfig { .. }
            | ModelError::UnsupportedArchitecture { .. }
            | ModelError::CorruptWeights { .. }
            | ModelError::MissingTensor { .. }
            | ModelError::TensorShape { .. }
            | ModelError::Fetch { .. } => ApiError::new(ErrorCode::Internal, message),
        }
    }
}

impl From<TextError> for ApiError {
    fn from(e: TextError) -> ApiError {
        let message = e.to_string();
        match e {
            TextError::Params(_) => ApiError::new(ErrorCode::InvalidRequest, message),
            TextError::Locked { .. } => ApiError::new(ErrorCode::Conflict, message),
            TextError::NotAnIndex { .. }
            | TextError::IncompatibleIndex { .. }
            | TextError::AlreadyAnIndex { .. }
            | TextError::ForeignFolder { .. }
            | TextError::Manifest { .. }
            | TextError::Io { .. }
            | TextError::Engine { .. }
            | TextError::CorruptDocument { .. } => ApiError::new(ErrorCode::Internal, message),
        }
    }
}

impl From<VectorError> for ApiError {
    fn from(e: VectorError) -> ApiError {
        let message = e.to_string();
        match e {
            VectorError::QueryDimension { .. } | VectorError::BadQuery { .. } | VectorError::Param { .. } => {
                ApiError::new(ErrorCode::InvalidRequest, message)
            }
            VectorError::Dimension { .. }
            | VectorError::BadVector { .. }
            | VectorError::Io { .. }
            | VectorError::Corrupt { .. } => ApiError::new(ErrorCode::Internal, message),
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> ApiError {
        match e {
            PipelineError::Text(e) => e.into(),
            PipelineError::Vector(e) => e.into(),
            PipelineError::Model(e) => e.into(),
            PipelineError::Worker(e) => e.into(),
            PipelineError::BadRequest { field, expected, found } => ApiError::invalid(field, expected, found),
            e @ PipelineError::DenseUnavailable { .. } => ApiError::new(ErrorCode::DenseUnavailable, e.to_string()),
            e @ PipelineError::Mismatch { .. } => ApiError::new(ErrorCode::Conflict, e.to_string()),
            e @ (PipelineError::Config { .. } | PipelineError::Io { .. }) => {
                ApiError::new(ErrorCode::Internal, e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_name_and_a_4xx_or_5xx_status() {
        let all = [
            ErrorCode::InvalidJson,
            ErrorCode::InvalidRequest,
            ErrorCode::DenseUnavailable,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::Unauthorized,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::PayloadTooLarge,
            ErrorCode::RequestTimeout,
            ErrorCode::Conflict,
            ErrorCode::Overloaded,
            ErrorCode::ModelNotLoaded,
            ErrorCode::ModelError,
            ErrorCode::Timeout,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ];
        let names: std::collections::BTreeSet<&str> = all.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), all.len());
        for c in all {
            assert!(c.status().is_client_error() || c.status().is_server_error(), "{c:?}");
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }

    #[test]
    fn client_mistakes_are_4xx_and_overload_says_when_to_retry() {
        let e: ApiError = PipelineError::BadRequest { field: "k", expected: "1..=1000", found: "0".into() }.into();
        assert_eq!(e.code.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.message, "`k`: expected 1..=1000, found 0");
        let e: ApiError =
            PipelineError::Worker(WorkerError::Overloaded { worker: "reranker".into(), queued: 9, limit: 8 }).into();
        assert_eq!((e.code, e.retry_after), (ErrorCode::Overloaded, Some(1)));
        let e: ApiError = WorkerError::Timeout { worker: "reranker".into(), millis: 5 }.into();
        assert_eq!(e.code.status(), StatusCode::GATEWAY_TIMEOUT);
        // conflicts with the index's state (no HTTP input reaches these: they come from other processes/settings)
        let e: ApiError = PipelineError::Text(TextError::Locked { path: "/i".into() }).into();
        assert_eq!(e.code.status(), StatusCode::CONFLICT);
        let e: ApiError =
            PipelineError::Mismatch { what: "embedding dimensions".into(), index: "384".into(), given: "1024".into() }
                .into();
        assert_eq!((e.code, e.message.contains("384")), (ErrorCode::Conflict, true));
        let e: ApiError = PipelineError::Io { path: "/i".into(), message: "disk full".into() }.into();
        assert_eq!(e.code.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
