pub mod batches;
pub mod chat;
pub mod completions;
pub mod files;
pub mod health;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod tokenize;

use crate::error::HttpError;
use crate::state::{AppState, Loaded};
use api::{ApiError, ErrorType};
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};

/// The error answers of the generation endpoints, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Only its derived description is used.
pub enum GenerationErrors {
    /// Invalid request
    #[response(status = 400)]
    Invalid(api::ErrorBody),
    /// Missing or wrong API key
    #[response(status = 401)]
    Unauthorized(api::ErrorBody),
    /// Unknown model
    #[response(status = 404)]
    UnknownModel(api::ErrorBody),
    /// The body did not arrive in time
    #[response(status = 408)]
    BodyTimeout(api::ErrorBody),
    /// Body too large
    #[response(status = 413)]
    TooLarge(api::ErrorBody),
    /// Unsupported Content-Encoding
    #[response(status = 415)]
    Encoding(api::ErrorBody),
    /// Overloaded; retry after Retry-After
    #[response(status = 429)]
    Overloaded(api::ErrorBody),
    /// A step failed
    #[response(status = 500)]
    StepFailed(api::ErrorBody),
    /// Loading, shutting down, or the engine failed
    #[response(status = 503)]
    Unavailable(api::ErrorBody),
}

pub async fn not_found(uri: Uri) -> Response {
    HttpError(
        ApiError::new(
            404,
            ErrorType::NotFound,
            format!("no route for {}", uri.path()),
        )
        .with_code("not_found"),
    )
    .into_response()
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    HttpError(
        ApiError::new(
            405,
            ErrorType::InvalidRequest,
            format!("{method} is not allowed on {}", uri.path()),
        )
        .with_code("method_not_allowed"),
    )
    .into_response()
}

pub(crate) fn ready(st: &AppState) -> Result<&Loaded, ApiError> {
    let l = st.loaded().ok_or_else(crate::error::not_ready)?;
    if let Some(e) = l.engine.failure() {
        return Err(crate::error::engine_failed(&e));
    }
    Ok(l)
}

/// An empty `model` or the served id is fine; anything else is 404, as OpenAI does.
pub(crate) fn check_model(st: &AppState, model: &str) -> Result<(), ApiError> {
    if model.is_empty() || model == st.config.model_id {
        return Ok(());
    }
    Err(ApiError::new(
        404,
        ErrorType::NotFound,
        format!(
            "the model '{model}' does not exist; this server serves '{}'",
            st.config.model_id
        ),
    )
    .with_code("model_not_found"))
}
