//! The OpenAPI document, generated from the request/response types and the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::*;
use crate::error::{ErrorBody, ErrorCode};
use crate::routes;
use crate::tasks::{RowFailure, Task, TaskKind, TaskStatus};

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
        routes::metrics, routes::openapi
    ),
    components(schemas(
        SearchBody, SearchResult, SearchMode, FusionBody, FusionMethod, RerankBody, RerankDocument, RerankResult,
        RerankResultItem, TeiRank, DocumentText, Usage, RerankMeta, BilledUnits, EmbeddingsBody, EmbeddingInput,
        InputType, EncodingFormat, EmbeddingsResult, EmbeddingItem, EmbeddingVector, Task, TaskKind, TaskStatus,
        RowFailure, ErrorBody, ErrorCode, Health, Ready, IndexReady, Info, IndexInfo, Limits
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
