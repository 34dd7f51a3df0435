pub mod chat;
pub mod completions;
pub mod health;
pub mod metrics;
pub mod models;

use crate::error::HttpError;
use crate::state::{AppState, Loaded};
use api::{ApiError, ErrorType};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

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

/// The body as JSON, with 413 for oversized bodies and 400 for malformed JSON.
pub(crate) fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status().as_u16() == 413 {
            ApiError::new(413, ErrorType::InvalidRequest, "request body too large")
                .with_code("body_too_large")
        } else {
            ApiError::bad_request(format!("could not read the request body: {e}"))
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!("invalid JSON in request body: {e}"))
            .with_code("invalid_json")
    })
}

pub(crate) fn ready(st: &AppState) -> Result<&Loaded, ApiError> {
    st.loaded().ok_or_else(crate::error::not_ready)
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
