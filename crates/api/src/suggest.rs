//! `POST /v1/suggest`: completions of what a search box holds, for every keystroke.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The most completions (and products) one suggest request returns, each.
pub const MAX_SUGGESTIONS: usize = 20;

/// `POST /v1/suggest`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuggestBody {
    /// What the search box holds: its last word is completed while it is being typed (no space after it);
    /// after a space, the word that titles put next is suggested.
    pub query: String,
    /// Index to draw from (default: the server's first).
    pub index: Option<String>,
    /// Completions, and products, to return (default 5 each).
    #[schema(minimum = 1, maximum = 20)]
    #[serde(default, deserialize_with = "crate::int::opt_count")]
    pub limit: Option<usize>,
    /// Filters the suggested products must pass, as in `/v1/search`.
    #[serde(default)]
    pub filters: Vec<String>,
    /// Query language for analysis (e.g. `zh`, `en`).
    pub lang: Option<String>,
}

/// Where a completion comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompletionKind {
    /// A title word completing the word being typed, or the word titles put after the query.
    Word,
    /// A product code from a title, as the title writes it.
    Code,
    /// A brand name that begins with the query.
    Brand,
}

/// One completion of the query.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
pub struct Completion {
    /// The whole query, completed.
    pub text: String,
    pub kind: CompletionKind,
    /// Documents that carry it: among the best-matching products read for words and codes, in the whole
    /// index for brands.
    pub count: u64,
}

/// A product offered beside the completions.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
pub struct SuggestedProduct {
    pub id: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
}

/// `POST /v1/suggest` answer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
pub struct SuggestResult {
    pub index: String,
    pub query: String,
    /// Best first: title words and codes by the scores of the products that carry them, then brands.
    pub completions: Vec<Completion>,
    /// The best-matching products, best first.
    pub products: Vec<SuggestedProduct>,
    /// Time spent in the engine, in microseconds.
    pub took_us: u64,
}
