use crate::error::HttpError;
use crate::state::AppState;
use crate::trace::{RequestIds, TokenCount, TraceContext};
use api::{ApiError, ErrorType};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tracing::Instrument;

/// The request's ids: `X-Request-Id` (taken or generated) and its trace context
/// (`crate::trace`, and the server span with `--otlp-traces-endpoint`), in the span of
/// every log line of the request, in the request's extensions for the handlers, and on
/// the response (errors and SSE included). One access line per request once its body is
/// done: status, route, latency, tokens, cache outcome.
pub async fn request_id(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(crate::ids::new_id);
    let mut trace = TraceContext::from_headers(req.headers());
    let path = req.uri().path().to_string();
    let route = route_label(&path);
    // The API's requests only: health checks, scrapes and the dashboard's polls would
    // bury them.
    let otel = st.tracing().filter(|_| path.starts_with("/v1/")).map(|t| {
        let ua = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        crate::otel::server_span::start(t, &mut trace, req.method().as_str(), &path, route, ua)
    });
    let span = tracing::info_span!("request", request_id = %id, trace_id = %trace.trace_id, span_id = %trace.span_id, method = %req.method(), path = %path);
    let tokens = Arc::new(TokenCount::default());
    req.extensions_mut().insert(RequestIds {
        request_id: id.clone(),
        trace: trace.clone(),
        span: otel.clone(),
        tokens: tokens.clone(),
    });
    async move {
        let start = std::time::Instant::now();
        let mut resp = next.run(req).await;
        let status = resp.status().as_u16();
        let cache = resp
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        metrics::counter!(crate::listener::HTTP_REQUESTS, "path" => route, "status" => status.to_string()).increment(1);
        // /health's 503 while loading or draining is its answer, not an error.
        if status >= 400 && path != "/health" {
            st.recent.error(status, &path, &id);
        }
        if let Some(cx) = &otel {
            crate::otel::server_span::record_response(cx, status, &id, &cache);
        }
        let h = resp.headers_mut();
        let mut put = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        };
        put("x-request-id", &id);
        put("x-trace-id", &trace.trace_id);
        put("traceparent", &trace.traceparent());
        if let Some(ts) = &trace.tracestate {
            put("tracestate", ts);
        }
        let done = crate::body_end::Done {
            log_span: tracing::Span::current(),
            otel,
            tokens,
            start,
            status,
            route,
            cache,
        };
        resp.map(|b| crate::body_end::with_end(b, done))
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
        "/dashboard" => "/dashboard",
        "/dashboard/data" => "/dashboard/data",
        p if p.starts_with("/v1/models/") => "/v1/models/{id}",
        _ => "other",
    }
}

/// SHA-256 of an API key: keys are compared by digest, so neither the comparison's time
/// nor its early exit depends on the key's length or contents.
pub(crate) fn digest(key: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key).into()
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is
/// case-insensitive (RFC 7235).
pub(crate) fn bearer(v: &str) -> Option<&str> {
    let (scheme, token) = v.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub async fn auth(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if st.key_digests.is_empty() {
        return next.run(req).await;
    }
    // A browser cannot send a bearer header when it opens a page: the dashboard takes
    // the key as `?api_key=` too.
    let from_query = req
        .uri()
        .path()
        .starts_with("/dashboard")
        .then(|| req.uri().query())
        .flatten()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("api_key=")))
        .map(str::to_string);
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_string)
        .or(from_query);
    let given = given.as_deref();
    match given {
        Some(k) => {
            use subtle::ConstantTimeEq;
            let d = digest(k.as_bytes());
            // Every key is compared, so the time does not say which one matched.
            let ok = st
                .key_digests
                .iter()
                .fold(subtle::Choice::from(0), |acc, key| acc | key.ct_eq(&d));
            if bool::from(ok) {
                next.run(req).await
            } else {
                HttpError(
                    ApiError::new(401, ErrorType::Authentication, "invalid API key")
                        .with_code("invalid_api_key"),
                )
                .into_response()
            }
        }
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

/// Once shutdown begins, new work gets 503 (also on kept-alive connections), and so does
/// the health check, so a load balancer takes this instance out while it drains.
pub async fn shutdown_gate(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let p = req.uri().path();
    if st.is_shutting_down() && (p.starts_with("/v1/") || p == "/health") {
        return HttpError(crate::error::submit_error(
            engine::SubmitError::ShuttingDown,
        ))
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc "), Some("abc"));
        assert_eq!(bearer("BEARER  abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearerabc"), None);
    }
}
