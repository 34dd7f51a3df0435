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
    let mut text = h.render();
    text.push_str(&pool_series(&st));
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

pub(crate) const POOL_SECONDS: &str = "autoglm_thread_pool_seconds_total";

/// The compute threads' time by state, from the pool's own clocks. Written here rather
/// than through the `metrics` facade: its counters are integers, and these are seconds.
/// The spin share (spin / all) says how much of the pool's time goes to waiting between
/// parallel regions; a rising parked share, that the engine is idle.
fn pool_series(st: &AppState) -> String {
    let t = st
        .loaded()
        .and_then(|l| l.engine.pool_times())
        .unwrap_or_default();
    let model = st
        .config
        .model_id
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    let mut out = format!(
        "# HELP {POOL_SECONDS} Time the model's compute threads spent, summed over threads, by state: busy (running kernels), spin (waiting briefly for the next parallel region or for the others to finish one), parked (idle).\n# TYPE {POOL_SECONDS} counter\n"
    );
    for (state, d) in [("busy", t.busy), ("spin", t.spin), ("parked", t.parked)] {
        out.push_str(&format!(
            "{POOL_SECONDS}{{model_name=\"{model}\",state=\"{state}\"}} {}\n",
            d.as_secs_f64()
        ));
    }
    out
}
