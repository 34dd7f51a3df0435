//! `/openapi.json`: the API as autoglm implements it, generated from the `api` types and
//! the route annotations, so it cannot drift from the code.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "autoglm", description = "OpenAI-compatible inference for GGUF models on CPUs"),
    paths(
        super::chat::handle,
        super::completions::handle,
        super::models::list,
        super::models::one,
        super::tokenize::tokenize,
        super::tokenize::detokenize,
        super::tokenize::apply_template,
        super::health::health,
        super::metrics::render,
        document,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
