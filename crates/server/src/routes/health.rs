use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use std::sync::Arc;

/// 200 once the model is loaded, 503 before and while shutting down.
pub async fn health(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    match st.loaded() {
        Some(l) if !st.is_shutting_down() => {
            let s = l.engine.stats();
            (
                StatusCode::OK,
                Json(
                    json!({"status": "ok", "running": s.running, "waiting": s.waiting, "kv_blocks_used": s.kv_blocks_used, "kv_blocks_total": s.kv_blocks_total}),
                ),
            )
        }
        Some(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting_down"})),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading"})),
        ),
    }
}
