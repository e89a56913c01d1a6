//! The names of what a ranked set can be counted and ordered by: facet fields, their counts, and sort keys.
//! The counting and ordering themselves are the pipeline's present stage; these are the words the wire
//! contract, the CLI and the web UI share.

use serde::{Deserialize, Serialize};

/// A field facets can be counted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FacetField {
    Brand,
    /// Every level of the path counts: `electronics` and `electronics/audio`.
    Category,
    Source,
    Lang,
    Tags,
    /// Counted in price ranges.
    Price,
}

impl FacetField {
    pub const ALL: [FacetField; 6] = [
        FacetField::Brand,
        FacetField::Category,
        FacetField::Source,
        FacetField::Lang,
        FacetField::Tags,
        FacetField::Price,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FacetField::Brand => "brand",
            FacetField::Category => "category",
            FacetField::Source => "source",
            FacetField::Lang => "lang",
            FacetField::Tags => "tags",
            FacetField::Price => "price",
        }
    }
}

/// One value of a facet and how many ranked documents have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FacetCount {
    pub value: String,
    pub count: usize,
}

/// A field results can be ordered by instead of relevance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortField {
    Price,
    PublishedAt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    Asc,
    Desc,
}

/// Orders the ranked set by a field; documents without it go last, and ties keep their relevance order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortBy {
    pub field: SortField,
    pub order: SortOrder,
}

/// What a sort expression may be.
pub const SORT_EXPECTED: &str = "`price:asc`, `price:desc`, `published_at:asc` or `published_at:desc`";

/// A sort expression that is not one of [`SORT_EXPECTED`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {SORT_EXPECTED}, found {found:?}")]
pub struct SortError {
    pub found: String,
}

impl std::str::FromStr for SortBy {
    type Err = SortError;

    /// `price:asc`, `published_at:desc`; the order defaults to ascending (`price`).
    fn from_str(raw: &str) -> Result<SortBy, SortError> {
        let bad = || SortError { found: raw.to_owned() };
        let (field, order) = raw.split_once(':').unwrap_or((raw, "asc"));
        let field = match field.trim() {
            "price" => SortField::Price,
            "published_at" => SortField::PublishedAt,
            _ => return Err(bad()),
        };
        let order = match order.trim() {
            "asc" => SortOrder::Asc,
            "desc" => SortOrder::Desc,
            _ => return Err(bad()),
        };
        Ok(SortBy { field, order })
    }
}

impl std::fmt::Display for SortBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let field = match self.field {
            SortField::Price => "price",
            SortField::PublishedAt => "published_at",
        };
        let order = match self.order {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        };
        write!(f, "{field}:{order}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_expressions_parse_and_print_back() {
        for s in ["price:asc", "price:desc", "published_at:asc", "published_at:desc"] {
            assert_eq!(s.parse::<SortBy>().unwrap().to_string(), s);
        }
        assert_eq!("price".parse::<SortBy>().unwrap().order, SortOrder::Asc);
        let err = "colour:up".parse::<SortBy>().unwrap_err().to_string();
        assert_eq!(err, format!("expected {SORT_EXPECTED}, found \"colour:up\""));
    }
}
