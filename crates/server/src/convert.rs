//! Between the wire contract ([`sieve_api`]) and the engine: a search body becomes a [`SearchRequest`] (which
//! the pipeline then validates, the one place its limits live), and the engine's answers and reports become
//! wire types. The JSON therefore changes only when `sieve-api` does, whatever the engine's types do.

use std::time::Duration;

use sieve_api::{DenseInfo, DenseStrategy, ModelInfo, SearchBody, SearchMode, SearchResult};
use sieve_core::{Filter, Lang};
use sieve_pipeline::{
    DenseReport, Fusion, FusionMethod, Mode, PipelineError, RerankRequest, SearchRequest, SearchResponse,
    SearchStrategy,
};

use crate::error::{ApiError, ErrorCode};

/// The body's name for an engine request field, for error messages (`k` is `limit` on the wire).
pub fn wire_field(engine_field: &'static str) -> &'static str {
    match engine_field {
        "k" => "limit",
        "rerank.window" => "window",
        "rerank.max_length" => "max_length",
        "legs" => "mode",
        other => other,
    }
}

pub fn mode(mode: SearchMode) -> Mode {
    match mode {
        SearchMode::Bm25 => Mode::Bm25,
        SearchMode::Dense => Mode::Dense,
        SearchMode::Hybrid => Mode::Hybrid,
    }
}

/// The engine request a search body asks for. Shapes the body cannot express as engine values (a filter or
/// sort that does not parse) are refused here; every limit is checked by [`SearchRequest::validate`].
/// `rerank_by_default`: whether a body that does not say reranks (it does when a reranker is loaded).
pub fn search_request(body: &SearchBody, rerank_by_default: bool) -> Result<SearchRequest, ApiError> {
    let mut req = SearchRequest::new(body.query.clone());
    req.legs = mode(body.mode).legs();
    req.k = body.limit.unwrap_or(req.k);
    req.offset = body.offset.unwrap_or(0);
    req.recall_k = body.recall_k;
    req.facet_size = body.facet_size.unwrap_or(req.facet_size);
    req.facets = body.facets.clone();
    req.filters = parse_filters(&body.filters)?;
    req.sort = body
        .sort
        .as_deref()
        .map(|s| {
            s.parse().map_err(|e: sieve_core::SortError| {
                ApiError::invalid("sort", sieve_core::SORT_EXPECTED, format!("{:?}", e.found))
            })
        })
        .transpose()?;
    req.lang = parse_lang(body.lang.as_deref())?;
    req.ef = body.ef;
    if let Some(f) = &body.fusion {
        let method = match f.method {
            sieve_api::FusionMethod::Rrf => FusionMethod::Rrf,
            sieve_api::FusionMethod::Linear => FusionMethod::Linear,
        };
        // any number >= 0 is taken (JSON Schema's `minimum: 0`, no maximum); the engine's f32 gets values it
        // can hold: k capped, the weights scaled down together when the larger is past the cap
        for (field, v) in
            [("fusion.k", f.k), ("fusion.bm25_weight", f.bm25_weight), ("fusion.dense_weight", f.dense_weight)]
        {
            // checked in f64: an f32 would round -5e-324 to -0.0 and let it through
            if let Some(v) = v.filter(|v| *v < 0.0) {
                return Err(ApiError::invalid(field, "a number >= 0", v));
            }
        }
        let cap = sieve_api::MAX_FUSION_PARAM;
        let scale = f.bm25_weight.unwrap_or(0.0).max(f.dense_weight.unwrap_or(0.0));
        let scale = if scale > cap { cap / scale } else { 1.0 };
        req.fusion = Some(Fusion::new(
            method,
            f.k.map(|k| k.min(cap) as f32),
            f.bm25_weight.map(|w| (w * scale) as f32),
            f.dense_weight.map(|w| (w * scale) as f32),
        ));
    }
    req.explain = body.explain;
    req.typos = body.typos;
    req.prefix = body.prefix;
    req.with_documents = body.with_documents.unwrap_or(true);
    let bad_field = |e: PipelineError| match e {
        PipelineError::BadRequest { field, expected, found } => ApiError::invalid(wire_field(field), expected, found),
        e => e.into(),
    };
    if let Some(w) = body.window {
        // the schema's range holds whether or not this request reranks
        sieve_pipeline::check_window(w).map_err(bad_field)?;
    }
    if body.max_length == Some(0) {
        // as the window, checked whether or not this request reranks
        return Err(ApiError::invalid("max_length", "a number of tokens > 0", 0));
    }
    if let Some(ms) = body.rerank_timeout_ms.filter(|&ms| ms > sieve_api::MAX_RERANK_TIMEOUT_MS) {
        return Err(ApiError::invalid(
            "rerank_timeout_ms",
            &format!("0..={} (milliseconds)", sieve_api::MAX_RERANK_TIMEOUT_MS),
            ms,
        ));
    }
    if body.rerank.unwrap_or(rerank_by_default) {
        req.rerank = Some(RerankRequest {
            window: body.window.unwrap_or(RerankRequest::default().window),
            instruction: body.instruction.clone(),
            max_length: body.max_length,
            timeout: body.rerank_timeout_ms.map(Duration::from_millis),
        });
    }
    req.validate().map_err(bad_field)?;
    Ok(req)
}

/// The wire answer to a search of `index`.
pub fn search_result(index: &str, req: &SearchRequest, res: SearchResponse) -> SearchResult {
    SearchResult {
        index: index.to_owned(),
        hits: res.hits,
        total: res.total,
        offset: req.offset,
        limit: req.k,
        facets: res.facets,
        degraded: res.degraded,
        reasons: res.reasons,
        notes: res.notes,
        timings: res.timings,
        reranked: res.reranked,
        cache: res.cache,
        dense: res.dense.map(dense_info),
        corrections: res.bm25.as_ref().map(|b| b.expansions.iter().map(correction).collect()).unwrap_or_default(),
        bm25_matched: res.bm25.map(|b| b.matched),
    }
}

fn correction(e: &sieve_text::Expansion) -> sieve_api::Correction {
    sieve_api::Correction {
        word: e.word.clone(),
        kind: match e.kind {
            sieve_text::ExpansionKind::Typo => sieve_api::CorrectionKind::Typo,
            sieve_text::ExpansionKind::Prefix => sieve_api::CorrectionKind::Prefix,
        },
        terms: e.terms.clone(),
    }
}

pub fn dense_info(d: DenseReport) -> DenseInfo {
    let strategy = match d.strategy {
        SearchStrategy::Hnsw { ef } => DenseStrategy::Hnsw { ef },
        SearchStrategy::Exact { scanned } => DenseStrategy::Exact { scanned },
    };
    DenseInfo { strategy, candidates: d.candidates }
}

/// The wire copy of a model's description (`sieve-models` knows no wire contract, and `sieve-api` no model
/// crate, so the two are kept apart on purpose and meet here).
pub fn model_info(m: &sieve_models::ModelInfo) -> ModelInfo {
    ModelInfo {
        path: m.path.clone(),
        architecture: m.architecture.clone(),
        role: m.role.clone(),
        device: m.device.clone(),
        dtype: m.dtype.clone(),
        hidden_size: m.hidden_size,
        max_length: m.max_length,
        min_length: m.min_length,
        languages: m.languages.clone(),
        non_embedding_params: m.non_embedding_params,
        fallback: m.fallback.clone(),
    }
}

/// A body's `filters`, each parsed (a bad one is refused, named).
fn parse_filters(filters: &[String]) -> Result<Vec<Filter>, ApiError> {
    let invalid = |e: sieve_core::FilterError| ApiError::new(ErrorCode::InvalidRequest, format!("`filters`: {e}"));
    filters.iter().map(|f| f.parse::<Filter>().map_err(invalid)).collect()
}

/// A body's `lang`, parsed.
fn parse_lang(lang: Option<&str>) -> Result<Option<Lang>, ApiError> {
    let invalid = |e: sieve_core::DocumentError| ApiError::new(ErrorCode::InvalidRequest, format!("`lang`: {e}"));
    lang.map(|l| Lang::parse(l).map_err(invalid)).transpose()
}

/// The text index's suggest query for a suggest body (limits checked here: `limit` 1..=20).
pub fn suggest_query(body: &sieve_api::SuggestBody) -> Result<sieve_text::SuggestQuery, ApiError> {
    let limit = body.limit.unwrap_or(5);
    if limit == 0 || limit > sieve_api::MAX_SUGGESTIONS {
        return Err(ApiError::invalid("limit", "1..=20", limit));
    }
    let (filters, lang) = (parse_filters(&body.filters)?, parse_lang(body.lang.as_deref())?);
    Ok(sieve_text::SuggestQuery { text: body.query.clone(), lang, filters, limit })
}

/// The wire answer for the text index's suggestions.
pub fn suggest_result(
    index: &str,
    query: &str,
    s: sieve_text::Suggestions,
    took: std::time::Duration,
) -> sieve_api::SuggestResult {
    use sieve_api::CompletionKind;
    sieve_api::SuggestResult {
        index: index.to_owned(),
        query: query.to_owned(),
        completions: s
            .completions
            .into_iter()
            .map(|c| sieve_api::Completion {
                text: c.text,
                kind: match c.kind {
                    sieve_text::SuggestionKind::Word => CompletionKind::Word,
                    sieve_text::SuggestionKind::Code => CompletionKind::Code,
                    sieve_text::SuggestionKind::Brand => CompletionKind::Brand,
                },
                count: c.count,
            })
            .collect(),
        products: s
            .documents
            .into_iter()
            .map(|d| sieve_api::SuggestedProduct {
                id: d.id.to_string(),
                title: d.title,
                brand: d.brand,
                price: d.price,
            })
            .collect(),
        took_us: took.as_micros() as u64,
    }
}

/// The engine's feed request for a feed body (every limit checked by [`sieve_pipeline::FeedRequest::validate`]).
/// `rerank_by_default`: whether a body that does not say reranks (it does when a reranker is loaded).
pub fn feed_request(
    body: &sieve_api::FeedBody,
    rerank_by_default: bool,
) -> Result<sieve_pipeline::FeedRequest, ApiError> {
    use sieve_api::{DecayShapeName, Span};
    use sieve_feed::{Decay, DecayShape};
    let mut m = mode(body.mode);
    if m == Mode::Hybrid && body.rerank.unwrap_or(rerank_by_default) {
        m = Mode::HybridRerank;
    }
    let mut req = sieve_pipeline::FeedRequest::new(body.query.clone().unwrap_or_default(), m);
    if let Some(p) = &body.profile {
        req.liked = p
            .liked
            .iter()
            .map(|id| {
                sieve_core::DocId::parse(id, 512).map_err(|e| ApiError::invalid("profile.liked", "document ids", e))
            })
            .collect::<Result<_, _>>()?;
        req.keywords = p.keywords.clone();
    }
    let time = |field: &str, v: &Option<String>| {
        v.as_deref()
            .map(|t| {
                sieve_core::Timestamp::parse(t).ok_or_else(|| {
                    ApiError::invalid(field, "an RFC 3339 date-time or a date YYYY-MM-DD", format!("{t:?}"))
                })
            })
            .transpose()
    };
    req.since = time("since", &body.since)?;
    req.until = time("until", &body.until)?;
    req.filters = parse_filters(&body.filters)?;
    req.limit = body.limit.unwrap_or(req.limit);
    req.cursor = body.cursor.clone();
    req.max_per_source = body.max_per_source;
    req.diversity = body.diversity.unwrap_or(req.diversity);
    req.collapse = body.collapse.unwrap_or(true);
    req.explain = body.explain;
    req.lang = parse_lang(body.lang.as_deref())?;
    if let Some(d) = &body.decay {
        let span = |field: &str, s: &Option<Span>, default: f64| match s {
            None => Ok(default),
            Some(Span::Seconds(v)) => Ok(*v),
            Some(Span::Text(t)) => sieve_feed::parse_span(t).ok_or_else(|| {
                ApiError::invalid(field, "seconds, or a number with ms, s, m, h, d or w (`12h`)", format!("{t:?}"))
            }),
        };
        let default = sieve_pipeline::DEFAULT_DECAY;
        let shape = match d.shape.unwrap_or(DecayShapeName::Gauss) {
            DecayShapeName::Gauss => Some(DecayShape::Gauss),
            DecayShapeName::Exp => Some(DecayShape::Exp),
            DecayShapeName::Linear => Some(DecayShape::Linear),
            DecayShapeName::None => None,
        };
        req.decay = match shape {
            None => None,
            Some(shape) => Some(Decay {
                shape,
                scale: span("decay.scale", &d.scale, default.scale)?,
                offset: span("decay.offset", &d.offset, default.offset)?,
                decay: d.decay.unwrap_or(default.decay),
            }),
        };
        match d.origin.as_deref().map(str::trim) {
            None | Some("now") => {}
            Some(t) => {
                let at = sieve_core::Timestamp::parse(t).ok_or_else(|| {
                    ApiError::invalid("decay.origin", "`now`, an RFC 3339 date-time or a date", format!("{t:?}"))
                })?;
                req.origin = Some(at.unix_seconds());
            }
        }
    }
    req.validate().map_err(|e| match e {
        PipelineError::BadRequest { field, expected, found } => ApiError::invalid(field, expected, found),
        e => e.into(),
    })?;
    Ok(req)
}

/// The wire answer for a feed page of `index`.
pub fn feed_result(index: &str, res: sieve_pipeline::FeedResponse) -> sieve_api::FeedResult {
    let origin = sieve_core::Timestamp::from_unix_seconds(res.origin).map(|t| t.to_rfc3339()).unwrap_or_default();
    sieve_api::FeedResult {
        index: index.to_owned(),
        items: res
            .items
            .into_iter()
            .map(|h| sieve_api::FeedItem {
                id: h.id.as_str().to_owned(),
                rank: h.rank,
                score: h.score,
                document: h.document.map(|d| d.to_json()),
                cluster: sieve_api::FeedCluster {
                    id: h.cluster.id.as_str().to_owned(),
                    size: h.cluster.size,
                    members: h.cluster.members.iter().map(|m| m.as_str().to_owned()).collect(),
                    sources: h.cluster.sources,
                },
                explain: h.explain.map(|e| sieve_api::FeedExplain {
                    relevance: e.relevance,
                    relevance_from: e.relevance_from.to_owned(),
                    freshness: e.freshness,
                    age_secs: e.age_secs,
                    mmr_penalty: e.mmr_penalty,
                    promoted_by_cap: e.promoted_by_cap,
                    scores: e.scores,
                }),
            })
            .collect(),
        next_cursor: res.next_cursor,
        origin,
        candidates: res.candidates,
        clusters: res.clusters,
        held_back: res.held_back.iter().map(|id| id.as_str().to_owned()).collect(),
        degraded: !res.reasons.is_empty(),
        reasons: res.reasons,
        notes: res.notes,
        timings: res.timings,
        reranked: res.reranked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: serde_json::Value) -> SearchBody {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_body_becomes_the_engine_request_with_the_engine_defaults() {
        let req = search_request(&body(serde_json::json!({"query": "q", "mode": "bm25", "limit": 5})), true).unwrap();
        assert_eq!((req.k, req.recall_k, req.legs), (5, None, Mode::Bm25.legs()));
        assert_eq!(req.rerank, Some(RerankRequest::default()), "reranks by default when a reranker is loaded");
        let req = search_request(
            &body(
                serde_json::json!({"query": "q", "fusion": {"method": "linear", "bm25_weight": 0.8}, "rerank": false}),
            ),
            true,
        )
        .unwrap();
        assert_eq!(req.fusion, Some(Fusion::Linear { bm25_weight: 0.8, dense_weight: 0.5 }));
        assert!(req.rerank.is_none());
    }

    #[test]
    fn limits_are_the_pipelines_and_named_as_the_body_names_them() {
        let err = |v| search_request(&body(v), false).unwrap_err().message;
        assert_eq!(err(serde_json::json!({"query": "q", "limit": 0})), "`limit`: expected 1..=1000, found 0");
        assert_eq!(err(serde_json::json!({"query": "q", "ef": 0})), "`ef`: expected 1..=10000, found 0");
        assert_eq!(
            err(serde_json::json!({"query": "q", "rerank": true, "window": 1001})),
            "`window`: expected 1..=1000, found 1001"
        );
        assert!(err(serde_json::json!({"query": "q", "sort": "colour"})).starts_with("`sort`: expected `price:asc`"));
        // the schema's ranges hold whether the field is used or not
        assert_eq!(
            err(serde_json::json!({"query": "q", "rerank": false, "window": 0})),
            "`window`: expected 1..=1000, found 0"
        );
        // integral floats are whole numbers (JSON Schema's `integer`)
        let req = search_request(&body(serde_json::json!({"query": "q", "ef": 278.0, "limit": 5.0})), false).unwrap();
        assert_eq!((req.ef, req.k), (Some(278), 5));
    }

    #[test]
    fn engine_reports_become_wire_types() {
        let d = dense_info(DenseReport { strategy: SearchStrategy::Exact { scanned: 6 }, candidates: 6 });
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::json!({"strategy": {"kind": "exact", "scanned": 6}, "candidates": 6})
        );
    }
}
