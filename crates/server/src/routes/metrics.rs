use crate::state::{AppState, MetricNames};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use std::sync::{Arc, OnceLock};

/// The process's own series (CPU seconds, RSS, open fds, threads), read at each scrape.
fn process() -> &'static metrics_process::Collector {
    static C: OnceLock<metrics_process::Collector> = OnceLock::new();
    C.get_or_init(|| {
        let c = metrics_process::Collector::default();
        c.describe();
        c
    })
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String),
              (status = 401, body = api::ErrorBody), (status = 404, description = "Metrics disabled", content_type = "text/plain", body = String)),
    security((), ("bearer" = [])))]
pub async fn render(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    if let Some(c) = &st.cache {
        c.refresh_gauges();
    }
    let Some(h) = &st.metrics else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics are not enabled\n".to_string(),
        );
    };
    process().collect();
    let text = h.render();
    let text = match st.config.metric_names {
        MetricNames::Autoglm => text,
        MetricNames::Vllm => engine::metrics_names::vllm_names(&text),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
}
