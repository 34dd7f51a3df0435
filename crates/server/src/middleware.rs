use crate::error::HttpError;
use crate::state::AppState;
use api::{ApiError, ErrorType};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tracing::Instrument;

/// The request's id, from `X-Request-Id` or generated: in the span of every log line of
/// the request and in the response.
pub async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(crate::ids::new_id);
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    async move {
        let start = std::time::Instant::now();
        let path = req.uri().path().to_string();
        let mut resp = next.run(req).await;
        let status = resp.status().as_u16();
        tracing::info!(status, ms = start.elapsed().as_secs_f64() * 1e3, "response");
        metrics::counter!("autoglm_http_requests_total", "path" => route_label(&path), "status" => status.to_string()).increment(1);
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        resp
    }
    .instrument(span)
    .await
}

/// Bounded label values: unknown paths share one label.
fn route_label(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/completions" => "/v1/completions",
        "/v1/models" => "/v1/models",
        "/health" => "/health",
        "/metrics" => "/metrics",
        p if p.starts_with("/v1/models/") => "/v1/models/{id}",
        _ => "other",
    }
}

pub async fn auth(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if st.config.api_keys.is_empty() {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(k)
            if st
                .config
                .api_keys
                .iter()
                .any(|key| constant_time_eq(key.as_bytes(), k.as_bytes())) =>
        {
            next.run(req).await
        }
        Some(_) => HttpError(
            ApiError::new(401, ErrorType::Authentication, "invalid API key")
                .with_code("invalid_api_key"),
        )
        .into_response(),
        None => HttpError(
            ApiError::new(
                401,
                ErrorType::Authentication,
                "missing API key: send 'Authorization: Bearer <key>'",
            )
            .with_code("invalid_api_key"),
        )
        .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Once shutdown begins, new work on kept-alive connections gets 503.
pub async fn shutdown_gate(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if st.is_shutting_down() && req.uri().path().starts_with("/v1/") {
        return HttpError(crate::error::submit_error(
            engine::SubmitError::ShuttingDown,
        ))
        .into_response();
    }
    next.run(req).await
}
