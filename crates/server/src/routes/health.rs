use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

/// Liveness and readiness.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses(
        (status = 200, description = "The model is loaded and the engine runs", body = Object),
        (status = 503, description = "Loading, draining for shutdown, or the engine failed", body = Object),
    ))]
pub async fn health(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    let (code, body): (StatusCode, Value) = match st.loaded() {
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "loading"}),
        ),
        Some(l) => match l.engine.failure() {
            Some(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "engine_failed", "error": e}),
            ),
            // During the drain the shutdown gate answers before this handler runs.
            None if st.is_shutting_down() => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "shutting_down"}),
            ),
            None => {
                let s = l.engine.stats();
                (
                    StatusCode::OK,
                    json!({"status": "ok", "running": s.running, "waiting": s.waiting, "kv_blocks_used": s.kv_blocks_used, "kv_blocks_total": s.kv_blocks_total}),
                )
            }
        },
    };
    (code, Json(body))
}
