//! `POST /v1/feed`: a news feed for a topic or a reader's profile, fresh, each story once, sources diverse,
//! paged by an opaque cursor.

use serde::{Deserialize, Serialize};
use sieve_core::{ScoreBreakdown, StageTiming};
use utoipa::ToSchema;

use crate::search::SearchMode;

/// The largest page.
pub const MAX_FEED_LIMIT: usize = 100;

/// `POST /v1/feed`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedBody {
    /// Index to read (default: the server's first).
    pub index: Option<String>,
    /// The topic. May be left out when `profile` is given.
    pub query: Option<String>,
    /// A reader's interests instead of (or besides) a topic.
    pub profile: Option<FeedProfile>,
    /// Only articles published at or after this time (RFC 3339 or `YYYY-MM-DD`).
    pub since: Option<String>,
    /// Only articles published before this time.
    pub until: Option<String>,
    /// Filters as in `/v1/search` (`source=新浪`, `lang=zh`).
    #[serde(default)]
    pub filters: Vec<String>,
    /// Items per page (default 20).
    #[schema(minimum = 1, maximum = 100)]
    #[serde(default, deserialize_with = "crate::int::opt_count")]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page; send the same request with it.
    pub cursor: Option<String>,
    /// At most this many items of one source per page.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "crate::int::opt_count")]
    pub max_per_source: Option<usize>,
    /// MMR's trade-off: 0 is pure relevance × freshness, 1 pure novelty (default 0.3).
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub diversity: Option<f64>,
    /// Freshness on `published_at` (default: gauss, scale `1d`, origin now).
    pub decay: Option<FeedDecay>,
    /// Collapse near-duplicate articles into one item with its cluster (default true).
    pub collapse: Option<bool>,
    /// Attach relevance, freshness, MMR penalty and the source cap's effect to each item.
    #[serde(default)]
    pub explain: bool,
    /// Recall legs, as in `/v1/search`.
    #[serde(default)]
    pub mode: SearchMode,
    /// Rerank the top candidates of a topic (default: on when a reranker is loaded).
    pub rerank: Option<bool>,
    /// Query language for analysis (e.g. `zh`, `en`).
    pub lang: Option<String>,
}

/// A reader's interests.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedProfile {
    /// Ids of articles the reader liked: the feed follows their centroid and leaves them out.
    #[serde(default)]
    pub liked: Vec<String>,
    /// Words the reader follows.
    #[serde(default)]
    pub keywords: Vec<String>,
}

/// Elasticsearch's decay function on `published_at`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedDecay {
    /// `gauss` (default), `exp`, `linear`, or `none` for no freshness.
    pub shape: Option<DecayShapeName>,
    /// Where ages count from: RFC 3339, or `now` (default). The cursor keeps it for later pages.
    pub origin: Option<String>,
    /// Age past `offset` at which the factor is `decay`: `12h`, `1d`, `90m`, or seconds (default `1d`).
    pub scale: Option<Span>,
    /// Age within which the factor stays 1 (default 0).
    pub offset: Option<Span>,
    /// The factor at `offset + scale`, strictly between 0 and 1 (default 0.5).
    pub decay: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecayShapeName {
    Gauss,
    Exp,
    Linear,
    None,
}

/// A time span: seconds, or a number with a unit (`ms`, `s`, `m`, `h`, `d`, `w`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Span {
    Seconds(f64),
    Text(String),
}

/// A story: the item and its near-duplicates.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FeedCluster {
    /// The id of the member stored first; the same on every page.
    pub id: String,
    pub size: usize,
    /// Every member's id, the item's first.
    pub members: Vec<String>,
    /// The members' sources (as indexed, lowercased), most frequent first.
    pub sources: Vec<String>,
}

/// Why an item is where it is.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FeedExplain {
    /// 0..1: the reranker's probability, or the fused score normalised over the candidates.
    pub relevance: f64,
    /// `rerank` or `fused`.
    pub relevance_from: String,
    /// The decay factor of the item's age (`score = relevance × freshness`).
    pub freshness: f64,
    /// Seconds between publication and the origin.
    pub age_secs: Option<i64>,
    /// What MMR took off for similarity to the items above it on the page (`diversity × max similarity`).
    pub mmr_penalty: f64,
    /// It is here because the per-source cap held back an item of higher value (its source was full).
    pub promoted_by_cap: bool,
    /// The first stage's and the reranker's evidence.
    pub scores: ScoreBreakdown,
}

/// One item of a page.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FeedItem {
    pub id: String,
    /// Its place in the whole feed, from 1.
    pub rank: usize,
    /// `relevance × freshness`.
    pub score: f64,
    #[schema(value_type = Object)]
    pub document: Option<serde_json::Value>,
    pub cluster: FeedCluster,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<FeedExplain>,
}

/// `POST /v1/feed` answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FeedResult {
    pub index: String,
    pub items: Vec<FeedItem>,
    /// Send it back, with the same request, for the next page; absent at the feed's end.
    pub next_cursor: Option<String>,
    /// The origin ages were measured from (pinned for every page).
    pub origin: String,
    /// Candidates ranked for this page, and the stories they formed.
    pub candidates: usize,
    pub clusters: usize,
    /// Stories the per-source cap kept off this page (their items' ids); later pages show them.
    pub held_back: Vec<String>,
    pub degraded: bool,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub timings: Vec<StageTiming>,
    pub reranked: bool,
}
