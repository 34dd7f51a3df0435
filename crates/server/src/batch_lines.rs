//! A batch's lines run through the very handlers of `/v1/chat/completions` and
//! `/v1/completions`, so each line's body is what the same request returns over HTTP; a
//! request extension (never settable by a client) puts them in the batch priority class.

use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Extensions, Method, Request};
use axum::response::IntoResponse;
use batch::{Endpoint, LineExecutor, Outcome};
use serde_json::Value;
use std::sync::Arc;

/// Marks a request as a batch job's line.
#[derive(Clone, Copy, Debug)]
pub struct BatchLine;

pub(crate) fn class_of(ext: &Extensions) -> engine::PriorityClass {
    if ext.get::<BatchLine>().is_some() {
        engine::PriorityClass::Batch
    } else {
        engine::PriorityClass::Interactive
    }
}

/// Runs batch lines on a server's state (the `serve` process's, or `run-batch`'s).
pub struct ServerLines(pub Arc<AppState>);

#[async_trait::async_trait]
impl LineExecutor for ServerLines {
    async fn execute(&self, endpoint: Endpoint, body: Value, request_id: String) -> Outcome {
        let st = self.0.clone();
        if st.loaded().is_none() || st.is_shutting_down() {
            return Outcome::Retry;
        }
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(endpoint.path())
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-request-id", request_id.as_str())
            .body(Body::from(body.to_string()))
            .expect("a request built from a valid method, path and headers");
        req.extensions_mut().insert(BatchLine);
        let resp = match endpoint {
            Endpoint::Chat => crate::routes::chat::handle(State(st), req).await,
            Endpoint::Completions => crate::routes::completions::handle(State(st), req).await,
        }
        .into_response();
        let status = resp.status().as_u16();
        let bytes = match axum::body::to_bytes(resp.into_body(), usize::MAX).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "reading a batch line's answer failed; retrying");
                return Outcome::Retry;
            }
        };
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        // Queue full, loading or draining: the line waits for capacity instead of failing.
        // An engine that has failed is not coming back without a restart, after which the
        // batch resumes.
        let engine_failed = body["error"]["code"] == "engine_failed";
        if status == 429 || (status == 503 && !engine_failed) {
            return Outcome::Retry;
        }
        if engine_failed {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            return Outcome::Retry;
        }
        Outcome::Answer { status, body }
    }
}
