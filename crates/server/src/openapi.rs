//! The OpenAPI document, generated from the request/response types and the handlers' annotations.

use axum::response::{IntoResponse, Response};
use axum::Json;
use sieve_api::*;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

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
        routes::search, routes::rerank, routes::embeddings, routes::add_documents, routes::get_document,
        routes::delete_document, routes::get_task, routes::list_tasks, routes::health, routes::ready, routes::info,
        routes::metrics, serve_document
    ),
    components(schemas(
        SearchBody, SearchResult, SearchMode, FusionBody, FusionMethod, RerankBody, RerankDocument, RerankResult,
        RerankResultItem, TeiRank, DocumentText, Usage, RerankMeta, BilledUnits, EmbeddingsBody, EmbeddingInput,
        InputType, EncodingFormat, EmbeddingsResult, EmbeddingItem, EmbeddingVector, Task, TaskKind, TaskStatus,
        RowFailure, ErrorBody, ErrorCode, Health, Ready, IndexReady, Info, IndexInfo, Limits, ModelInfo, DenseInfo,
        DenseStrategy, sieve_core::CacheReport
    )),
    modifiers(&BearerAuth),
    tags((name = "search"), (name = "models"), (name = "documents"), (name = "system"))
)]
struct ApiDoc;

/// The document served at `/openapi.json`, with `/rerank` and `/v2/rerank` as aliases of `/v1/rerank`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if let Some(item) = doc.paths.paths.get("/v1/rerank").cloned() {
        doc.paths.paths.insert("/rerank".into(), item.clone());
        doc.paths.paths.insert("/v2/rerank".into(), item);
    }
    doc
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "system", responses((status = 200, body = Object)))]
pub async fn serve_document() -> Response {
    Json(document()).into_response()
}
