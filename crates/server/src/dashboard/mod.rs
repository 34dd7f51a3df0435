//! `GET /dashboard`: one self-contained page (compiled in, no CDN) with live charts of the
//! essentials, fed by `GET /dashboard/data` (the last five minutes, kept in memory).
//! Both follow the API's key rules; a browser passes the key as `?api_key=`.

mod recent;

pub use recent::Recent;

use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::Json;
use std::sync::Arc;
use std::time::Duration;

const PAGE: &str = include_str!("page.html");

pub async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE))
}

pub async fn data(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    let (points, errors) = st.recent.snapshot();
    Json(serde_json::json!({
        "model": st.config.model_id,
        "points": points,
        "errors": errors,
    }))
}

/// Samples the registry once a second for as long as the server runs.
pub fn spawn_sampler(st: Arc<AppState>) {
    let Some(handle) = st.metrics.clone() else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let text = handle.render();
            st.recent.sample(&text);
        }
    });
}
