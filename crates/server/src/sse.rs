//! Server-sent events: the chunk format an endpoint speaks, the SSE response of a live
//! stream (keep-alive comments while it waits), and the body of a replayed one.

use crate::choice::ChoiceCtx;
use api::{FinishReason, Usage};
use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cache::TokenRecord;
use futures::stream::Stream;
use std::convert::Infallible;

/// The JSON data of one SSE event.
pub type Chunk = String;

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
    ) -> Option<Chunk>;
    fn finish(&self, choice: &ChoiceCtx, state: &mut Self::State, reason: FinishReason) -> Chunk;
    fn usage(&self, usage: Usage) -> Chunk;
}

pub fn json_data<T: serde::Serialize>(v: &T) -> Chunk {
    serde_json::to_string(v).unwrap_or_default()
}

/// A whole stream that is known in advance (a replay) as one body: the same events a
/// live stream sends, in one write instead of one per event — a hundred wake-ups fewer
/// for the client.
pub fn sse_body(chunks: Vec<Chunk>) -> Response {
    let mut body = String::with_capacity(chunks.iter().map(|c| c.len() + 8).sum());
    for c in chunks {
        // JSON from serde_json has no raw newline, so one `data:` line per event.
        body.push_str("data: ");
        body.push_str(&c);
        body.push_str("\n\n");
    }
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
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
