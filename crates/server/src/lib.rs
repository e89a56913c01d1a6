//! `sieve-server`: Sieve's HTTP API (axum on tokio).
//!
//! Routes: `/v1/search` (hybrid search with facets, sort, pagination, rerank and explanations), `/v1/rerank`
//! (also `/rerank`, `/v2/rerank`; the Cohere, Jina, vLLM and TEI shapes), `/v1/embeddings` (OpenAI shape),
//! `/v1/documents` and `/v1/tasks` (writes as persisted, resumable tasks), `/health`, `/ready`, `/v1/info`,
//! `/metrics` (Prometheus) and `/openapi.json`.
//!
//! Key design decisions: models run on their own worker threads (`sieve-pipeline`), shared by every index
//! and route, with bounded queues: a full queue answers 429 with `Retry-After` at once; handlers run the
//! engine off the async threads and cancel queued model work when the client disconnects. Every error is
//! one `{code, message}` body, mapped from the domain errors in one place ([`error`]). A write is durable
//! (its body on disk) before it is acknowledged, so a shutdown or crash never loses it silently.

//!
//! Modules in dependency order (each uses only those before it): [`config`], [`error`], [`convert`] (wire ↔
//! engine), [`metrics`], [`tasks`], [`state`], `extract`, `routes`, `openapi`, `conn` (the accept loop: header timeout, connection limit), [`app`]
//! (router, middleware, serve). The wire types are the `sieve-api` crate, re-exported as [`api`].

pub mod app;
pub mod config;
mod conn;
pub mod convert;
pub mod error;
mod extract;
pub mod metrics;
mod openapi;
mod routes;
pub mod state;
pub mod tasks;

pub use app::{router, router_with, same_key, serve, serve_with};
pub use config::{ConfigError, IndexConfig, ServerConfig};
pub use error::{ApiError, ErrorCode};
pub use extract::{blocking, ModelTime};
pub use openapi::document as openapi_document;
pub use routes::{run_rerank, run_search, submit_upsert, RerankRun};
pub use sieve_api as api;
pub use state::{open_index, AppState, IndexHandle, Models, SharedState};
