//! `sieve-api`: the wire contract of Sieve's HTTP API, and nothing else.
//!
//! Every JSON body the server reads or writes is a type here: the search body and result ([`search`]), the
//! rerank and embeddings dialects ([`rerank`], [`embeddings`]), the task view and the document routes'
//! parameters ([`tasks`]), health, readiness and info ([`system`]), and the one error body with its codes
//! ([`error`]). Their `utoipa` schemas make up `/openapi.json`.
//!
//! Key design decision: this crate depends on `sieve-core`, serde and utoipa only, never on an engine crate
//! (tantivy, hnsw_rs, candle, the pipeline). Conversions from engine types live on the server side, so the
//! JSON changes only when someone changes this crate, and the web UI can render from these types without
//! pulling an index or a model along.

pub mod embeddings;
pub mod error;
pub mod feed;
pub mod int;
pub mod rerank;
pub mod search;
pub mod suggest;
pub mod system;
pub mod tasks;

pub use embeddings::*;
pub use error::{ErrorBody, ErrorCode};
pub use feed::*;
pub use rerank::*;
pub use search::*;
pub use suggest::*;
pub use system::*;
pub use tasks::*;
