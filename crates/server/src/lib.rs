//! The OpenAI-compatible HTTP front (axum): one file per endpoint under `routes/`, one
//! generation service shared by chat and completions, the middleware, and an accept loop
//! that bounds what slow or idle clients can hold.

mod answer;
pub mod batch_lines;
mod body;
mod body_end;
mod cache_policy;
mod choice;
mod content_coding;
mod dashboard;
mod error;
mod flight_item;
mod generation;
mod ids;
mod listener;
mod middleware;
pub mod otel;
mod produce;
pub mod reasoning;
mod reply;
mod routes;
mod service;
mod sse;
mod state;
mod stop;
pub mod tools;
pub mod trace;

pub use cache_policy::CacheScope;
pub use listener::{serve, serve_on};
pub use otel::{Tracing, TracingConfig};

/// Seconds to compile an output constraint, and the histogram's bucket edges.
pub const GRAMMAR_COMPILE_SECONDS: &str = "autoglm_grammar_compile_seconds";
pub const GRAMMAR_COMPILE_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];
pub use routes::openapi::ApiDoc;
pub use state::{AppState, ConnLimits, Loaded, MetricNames, ServerConfig};

use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tower_http::compression::CompressionLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;

pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(routes::chat::handle))
        .route("/v1/completions", post(routes::completions::handle))
        .route("/v1/models", get(routes::models::list))
        .route(
            "/v1/files",
            post(routes::files::upload).get(routes::files::list),
        )
        .route(
            "/v1/files/{id}",
            get(routes::files::one).delete(routes::files::delete),
        )
        .route("/v1/files/{id}/content", get(routes::files::content))
        .route(
            "/v1/batches",
            post(routes::batches::create).get(routes::batches::list),
        )
        .route("/v1/batches/{id}", get(routes::batches::one))
        .route("/v1/batches/{id}/cancel", post(routes::batches::cancel))
        .route("/v1/models/{id}", get(routes::models::one))
        .route("/tokenize", post(routes::tokenize::tokenize))
        .route("/detokenize", post(routes::tokenize::detokenize))
        .route("/apply-template", post(routes::tokenize::apply_template))
        .route("/metrics", get(routes::metrics::render))
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/data", get(dashboard::data))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::auth,
        ));
    Router::new()
        .route("/health", get(routes::health::health))
        .route("/openapi.json", get(routes::openapi::document))
        .merge(api)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        // A body that stops arriving gets 408 instead of holding the request.
        .layer(RequestBodyTimeoutLayer::new(
            state.config.limits.body_read_timeout,
        ))
        .layer(axum::middleware::from_fn(
            content_coding::decode_request_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::shutdown_gate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::request_id,
        ))
        // The compression layer leaves text/event-stream alone, so SSE tokens are never
        // held back in a gzip buffer.
        .layer(CompressionLayer::new())
        .with_state(state)
}

pub(crate) async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Default grace period for draining on shutdown.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
