//! The news feed's ranking math, as pure functions over plain numbers (no index, no model), so that each
//! formula can be checked against its source:
//!
//! - [`decay`]: Elasticsearch's `function_score` decay functions (gauss, exp, linear) on a document's age;
//! - [`diversify`]: maximal marginal relevance over the final feed score, with a per-source cap;
//! - [`signature`]: MinHash signatures of articles (gaoya) for near-duplicate stories;
//! - [`cursor`]: opaque page cursors signed with HMAC-SHA256, refused with a reason when altered.
//!
//! The feed itself (issue 22: `POST /v1/feed`, near-duplicate clusters, stable cursors) builds on these; it
//! runs the pipeline's recall, fuse and rerank stages and then this crate's ranking.

pub mod cursor;
pub mod decay;
pub mod diversify;
pub mod signature;

pub use cursor::CursorError;
pub use decay::{Decay, DecayError, DecayShape};
pub use diversify::{diversify, Picked};
