use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use std::sync::Arc;

pub async fn render(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    match &st.metrics {
        Some(h) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        ),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics are not enabled\n".to_string(),
        ),
    }
}
