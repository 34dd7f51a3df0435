//! The OpenAI-compatible HTTP front (axum): one file per endpoint under `routes/`, the
//! generation plumbing shared by chat and completions, and the middleware.

mod error;
mod generation;
mod ids;
mod middleware;
mod routes;
mod sse;
mod state;
mod stop;

pub use state::{AppState, Loaded, ServerConfig};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower_http::compression::CompressionLayer;

pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(routes::chat::handle))
        .route("/v1/completions", post(routes::completions::handle))
        .route("/v1/models", get(routes::models::list))
        .route("/v1/models/{id}", get(routes::models::one))
        .route("/metrics", get(routes::metrics::render))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::auth,
        ));
    Router::new()
        .route("/health", get(routes::health::health))
        .merge(api)
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::shutdown_gate,
        ))
        .layer(axum::middleware::from_fn(middleware::request_id))
        // The compression layer leaves text/event-stream alone, so SSE tokens are never
        // held back in a gzip buffer.
        .layer(CompressionLayer::new())
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state)
}

/// Binds, serves until SIGINT/SIGTERM, then drains in-flight requests for up to
/// `config.shutdown_grace` before returning.
pub async fn serve(state: Arc<AppState>, addr: SocketAddr) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(%local, "listening");
    let listener = listener.tap_io(|tcp| {
        // axum 0.8 no longer sets it: without it SSE tokens wait on Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
    });
    let app = router(state.clone());
    let st = state.clone();
    let shutdown = async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal: refusing new requests, draining in-flight ones");
        st.begin_shutdown();
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown);
    let grace = state.config.shutdown_grace;
    let st = state.clone();
    tokio::select! {
        r = server => r,
        _ = async move {
            st.shutdown_started().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_s = grace.as_secs_f64(), "grace period over; exiting with requests still running");
            Ok(())
        }
    }
}

async fn wait_for_signal() {
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
