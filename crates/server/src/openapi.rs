//! The OpenAPI document, generated from the request/response types and the handlers' annotations.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sieve_api::*;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;
use crate::state::{AppState, SharedState};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Sieve", description = "Two-stage semantic search: BM25 + dense recall, fusion, cross-encoder reranking."),
    paths(
        routes::search, routes::suggest, routes::feed, routes::rerank, routes::embeddings, routes::add_documents, routes::get_document,
        routes::delete_document, routes::get_task, routes::list_tasks, routes::health, routes::ready, routes::info,
        routes::metrics, serve_document
    ),
    components(schemas(
        SearchBody, SearchResult, SearchMode, FusionBody, FusionMethod, RerankBody, RerankDocument, RerankResult,
        RerankResultItem, TeiRank, DocumentText, Usage, RerankMeta, BilledUnits, EmbeddingsBody, EmbeddingInput,
        InputType, EncodingFormat, EmbeddingsResult, EmbeddingItem, EmbeddingVector, Task, TaskKind, TaskStatus,
        RowFailure, ErrorBody, ErrorCode, Health, Ready, IndexReady, Info, IndexInfo, Limits, ModelInfo, DenseInfo,
        DenseStrategy, Correction, CorrectionKind, sieve_core::CacheReport, SuggestBody, SuggestResult, Completion,
        CompletionKind, SuggestedProduct, FeedBody, FeedProfile, FeedDecay, DecayShapeName, Span, FeedResult, FeedItem,
        FeedCluster, FeedExplain
    )),
    modifiers(&BearerAuth),
    tags((name = "search"), (name = "models"), (name = "documents"), (name = "system"))
)]
struct ApiDoc;

/// The document with `/rerank` and `/v2/rerank` as aliases of `/v1/rerank`, and the constraints the server
/// checks that the derive cannot express: a non-empty documents body, the id pattern, `documents` or `texts`
/// (one of them) in a rerank body, a non-empty embeddings input list.
pub fn document() -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    if let Some(item) = doc.paths.paths.get("/v1/rerank").cloned() {
        doc.paths.paths.insert("/rerank".into(), item.clone());
        doc.paths.paths.insert("/v2/rerank".into(), item);
    }
    let mut doc = serde_json::to_value(doc).expect("the OpenAPI document serializes");
    let body = "/requestBody/content/application~1json/schema";
    if let Some(schema) = doc.pointer_mut(&format!("/paths/~1v1~1documents/post{body}")) {
        // a non-empty array of documents, or one document
        let array = json!({"type": "array", "items": {"type": "object"}, "minItems": 1});
        *schema = json!({"oneOf": [array, {"type": "object"}]});
    }
    for path in ["/paths/~1v1~1documents~1{id}/get", "/paths/~1v1~1documents~1{id}/delete"] {
        let params = doc.pointer_mut(&format!("{path}/parameters")).and_then(Value::as_array_mut);
        for p in params.into_iter().flatten().filter(|p| p["name"] == "id" && p["in"] == "path") {
            p["schema"]["minLength"] = json!(1);
            p["schema"]["pattern"] = json!(sieve_core::id_pattern());
        }
    }
    if let Some(schema) = doc.pointer_mut("/components/schemas/RerankBody") {
        // a list in one of the two, the other absent or null
        schema["oneOf"] = json!([
            {"required": ["documents"], "properties": {"documents": {"type": "array"}, "texts": {"type": "null"}}},
            {"required": ["texts"], "properties": {"texts": {"type": "array"}, "documents": {"type": "null"}}}
        ]);
    }
    let rerank_ok = "/responses/200/content/application~1json/schema";
    for path in ["/v1/rerank", "/rerank", "/v2/rerank"] {
        let at = format!("/paths/{}/post{rerank_ok}", path.replace('/', "~1"));
        if let Some(schema) = doc.pointer_mut(&at) {
            *schema = json!({"oneOf": [
                {"$ref": "#/components/schemas/RerankResult"},
                {"type": "array", "items": {"$ref": "#/components/schemas/TeiRank"}}
            ]});
        }
    }
    if let Some(props) = doc.pointer_mut("/components/schemas/SearchBody/properties") {
        props["filters"]["items"]["pattern"] = json!(sieve_core::filter_pattern());
        props["sort"]["pattern"] = json!(sieve_core::SORT_PATTERN);
        props["lang"]["pattern"] = json!(sieve_core::LANG_PATTERN);
        let facets: Vec<&str> = sieve_core::FacetField::ALL.iter().map(|f| f.name()).collect();
        props["facets"]["items"]["enum"] = json!(facets);
    }
    if let Some(props) = doc.pointer_mut("/components/schemas/SuggestBody/properties") {
        props["filters"]["items"]["pattern"] = json!(sieve_core::filter_pattern());
        props["lang"]["pattern"] = json!(sieve_core::LANG_PATTERN);
    }
    if let Some(props) = doc.pointer_mut("/components/schemas/FeedBody/properties") {
        props["filters"]["items"]["pattern"] = json!(sieve_core::filter_pattern());
        props["lang"]["pattern"] = json!(sieve_core::LANG_PATTERN);
        props["since"]["pattern"] = json!(sieve_core::time_pattern());
        props["until"]["pattern"] = json!(sieve_core::time_pattern());
    }
    if let Some(p) = doc.pointer_mut("/components/schemas/FeedProfile/properties/liked/items") {
        p["pattern"] = json!(sieve_core::id_pattern());
    }
    if let Some(props) = doc.pointer_mut("/components/schemas/FeedDecay/properties") {
        props["origin"]["pattern"] = json!(format!("^\\s*now\\s*$|{}", sieve_core::time_pattern()));
        let span = |number: Value, pattern: &str| json!({"oneOf": [number, {"type": "string", "pattern": pattern}, {"type": "null"}]});
        props["scale"] = span(json!({"type": "number", "exclusiveMinimum": 0}), sieve_core::POSITIVE_SPAN_PATTERN);
        props["offset"] = span(json!({"type": "number", "minimum": 0}), sieve_core::SPAN_PATTERN);
        props["decay"]["exclusiveMinimum"] = json!(0);
        props["decay"]["exclusiveMaximum"] = json!(1);
    }
    // counts arrive through `sieve_api::int`, which takes integral floats only while they are exact
    for body in ["SearchBody", "SuggestBody", "FusionBody", "RerankBody", "EmbeddingsBody", "FeedBody"] {
        let props = doc.pointer_mut(&format!("/components/schemas/{body}/properties")).and_then(Value::as_object_mut);
        for p in props.into_iter().flat_map(|p| p.values_mut()) {
            let integer = p["type"] == "integer" || p["type"].as_array().is_some_and(|t| t.contains(&json!("integer")));
            if integer && p.get("maximum").is_none() {
                p["maximum"] = json!(sieve_api::int::MAX_COUNT);
            }
        }
    }
    if let Some(p) = doc.pointer_mut("/components/schemas/RerankBody/properties/truncation_direction") {
        p["pattern"] = json!("^[Rr][Ii][Gg][Hh][Tt]$");
    }
    if let Some(list) = doc
        .pointer_mut("/components/schemas/EmbeddingInput/oneOf")
        .and_then(Value::as_array_mut)
        .and_then(|v| v.iter_mut().find(|s| s["type"] == "array"))
    {
        list["minItems"] = json!(1);
    }
    doc
}

/// The document as this server is configured: its per-request limits as `maxItems`, the embedder's size as
/// the largest `dimensions`, and the bearer scheme
/// required only when it has an API key (without one, every route is open and the document says so).
pub fn served(state: &AppState) -> serde_json::Value {
    let config = &state.config;
    let mut doc = document();
    if let Some(reranker) = &state.models.reranker {
        if let Some(p) = doc.pointer_mut("/components/schemas/RerankBody/properties/max_length") {
            p["minimum"] = json!(reranker.info().min_length);
        }
    }
    if state.models.embedder.is_none() {
        // without an embedder only BM25 can run (a dense mode would be refused)
        if let Some(modes) = doc.pointer_mut("/components/schemas/SearchMode") {
            modes["enum"] = json!(["bm25"]);
        }
    }
    if let Some(embedder) = &state.models.embedder {
        if let Some(p) = doc.pointer_mut("/components/schemas/EmbeddingsBody/properties/dimensions") {
            p["maximum"] = json!(embedder.info().hidden_size);
        }
    }
    let schemas = "/components/schemas";
    for (schema, field, max) in
        [("RerankBody", "documents", config.max_rerank_documents), ("RerankBody", "texts", config.max_rerank_documents)]
    {
        if let Some(p) = doc.pointer_mut(&format!("{schemas}/{schema}/properties/{field}")) {
            p["maxItems"] = json!(max);
        }
    }
    if let Some(list) = doc
        .pointer_mut(&format!("{schemas}/EmbeddingInput/oneOf"))
        .and_then(Value::as_array_mut)
        .and_then(|v| v.iter_mut().find(|s| s["type"] == "array"))
    {
        list["maxItems"] = json!(config.max_embed_inputs);
    }
    if config.api_key.is_none() {
        if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
            for op in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|item| item.values_mut()) {
                if let Some(op) = op.as_object_mut() {
                    op.remove("security");
                    if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                        responses.remove("401");
                    }
                }
            }
        }
        if let Some(schemes) = doc.pointer_mut("/components").and_then(Value::as_object_mut) {
            schemes.remove("securitySchemes");
        }
    }
    doc
}

/// This API's OpenAPI document, as this server is configured (limits, whether it takes an API key).
#[utoipa::path(get, path = "/openapi.json", tag = "system", responses((status = 200, body = Object)))]
pub async fn serve_document(State(state): State<SharedState>) -> Response {
    Json(served(&state)).into_response()
}
