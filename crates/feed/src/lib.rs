//! The news feed's ranking math, as pure functions over plain numbers (no index, no model), so that each
//! formula can be checked against its source:
//!
//! - [`decay`]: Elasticsearch's `function_score` decay functions (gauss, exp, linear) on a document's age;
//! - [`diversify`]: maximal marginal relevance over the final feed score, with a per-source cap;
//! - [`cluster`]: near-duplicate pairs (MinHash, confirmed embeddings) through LSH, and their components;
//! - [`rank`]: relevance × freshness, clusters, then diversification: one page of the feed;
//! - [`signature`]: MinHash signatures of articles (gaoya) for near-duplicate stories;
//! - [`cursor`]: opaque page cursors signed with HMAC-SHA256, refused with a reason when altered.
//!
//! The feed itself (`Engine::feed` in `sieve-pipeline`, `POST /v1/feed`, `sieve feed`) runs the pipeline's
//! recall, fuse and rerank stages, reads each candidate's facts from the index, and ranks them with [`rank`].

pub mod cluster;
pub mod cursor;
pub mod decay;
pub mod diversify;
pub mod rank;
pub mod signature;

pub use cluster::Thresholds;
pub use cursor::CursorError;
pub use decay::{parse_span, Decay, DecayError, DecayShape};
pub use diversify::{diversify, Picked};
pub use rank::{rank, FeedCandidate, FeedItem, FeedPage, FeedParams};
