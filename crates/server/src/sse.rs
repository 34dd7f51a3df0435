//! Server-sent events: the chunk format an endpoint speaks, and the SSE response with
//! keep-alive comments.

use crate::choice::ChoiceCtx;
use api::{FinishReason, Usage};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cache::TokenRecord;
use futures::stream::Stream;
use std::convert::Infallible;

/// How one endpoint spells its chunks. `State` is per-choice bookkeeping (whether chat
/// announced the role yet, the text offset of legacy logprobs).
pub trait ChunkFormat: Clone + Send + Sync + 'static {
    type State: Default + Send + 'static;
    /// A chunk for new text; `None` when there is nothing to send yet.
    fn text(
        &self,
        choice: &ChoiceCtx,
        state: &mut Self::State,
        text: String,
        tokens: &[TokenRecord],
    ) -> Option<SseEvent>;
    fn finish(&self, choice: &ChoiceCtx, state: &mut Self::State, reason: FinishReason)
        -> SseEvent;
    fn usage(&self, usage: Usage) -> SseEvent;
}

pub fn json_event<T: serde::Serialize>(v: &T) -> SseEvent {
    SseEvent::default().data(serde_json::to_string(v).unwrap_or_default())
}

/// The SSE response, with keep-alive comments while a request waits for its first token.
pub fn sse_response(
    s: impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
    every: std::time::Duration,
) -> Response {
    Sse::new(s)
        .keep_alive(KeepAlive::new().interval(every).text("keep-alive"))
        .into_response()
}
