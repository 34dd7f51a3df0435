use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use std::sync::Arc;

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String),
              (status = 401, body = api::ErrorBody), (status = 404, description = "Metrics disabled", content_type = "text/plain", body = String)),
    security((), ("bearer" = [])))]
pub async fn render(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    if let Some(c) = &st.cache {
        c.refresh_gauges();
    }
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
