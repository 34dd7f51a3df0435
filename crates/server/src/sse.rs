//! Streaming responses: every choice's pieces become SSE events in the endpoint's chunk
//! format, choices are interleaved as they produce, and the stream ends with the usage
//! chunk (when asked) and `data: [DONE]`.

use crate::generation::{usage, ChoiceRun, Piece};
use api::{ApiError, ErrorType, Usage};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use engine::TokenEvent;
use futures::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

/// How one endpoint spells its chunks. `State` is per-choice bookkeeping (the text
/// offset of legacy logprobs, for example).
pub trait ChunkFormat: Clone + Send + Sync + 'static {
    type State: Default + Send + 'static;
    /// The chunk sent before any text (chat announces the assistant role).
    fn opening(&self, run: &ChoiceRun) -> Option<SseEvent>;
    /// A chunk for new text; `None` when there is nothing to send yet.
    fn text(
        &self,
        run: &ChoiceRun,
        state: &mut Self::State,
        text: String,
        tokens: &[TokenEvent],
    ) -> Option<SseEvent>;
    fn finish(&self, run: &ChoiceRun, reason: &str) -> SseEvent;
    fn usage(&self, usage: Usage) -> SseEvent;
}

pub fn json_event<T: serde::Serialize>(v: &T) -> SseEvent {
    SseEvent::default().data(serde_json::to_string(v).unwrap_or_default())
}

fn choice_events<F: ChunkFormat>(
    run: ChoiceRun,
    fmt: F,
    finished: Arc<Mutex<Vec<ChoiceRun>>>,
) -> impl Stream<Item = SseEvent> + Send {
    let opening = fmt.opening(&run);
    let body = stream::unfold(Some((run, F::State::default())), move |state| {
        let (fmt, finished) = (fmt.clone(), finished.clone());
        async move {
            let (mut run, mut st) = state?;
            match run.next().await {
                Some(Piece::Text { text, tokens }) => {
                    let ev = fmt.text(&run, &mut st, text, &tokens);
                    Some((ev, Some((run, st))))
                }
                Some(Piece::Finish(reason)) => {
                    let ev = fmt.finish(&run, reason);
                    finished.lock().unwrap_or_else(|e| e.into_inner()).push(run);
                    Some((Some(ev), None))
                }
                Some(Piece::Error(e)) => Some((
                    Some(json_event(&ApiError::new(500, ErrorType::Server, e).body())),
                    None,
                )),
                None => None,
            }
        }
    })
    .filter_map(|e| async move { e });
    stream::iter(opening).chain(body)
}

pub fn sse_stream<F: ChunkFormat>(
    runs: Vec<ChoiceRun>,
    fmt: F,
    include_usage: bool,
    n: usize,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let finished = Arc::new(Mutex::new(Vec::new()));
    let merged = stream::select_all(
        runs.into_iter()
            .map(|r| choice_events(r, fmt.clone(), finished.clone()).boxed()),
    );
    let tail = stream::once(async move {
        let mut out = Vec::new();
        if include_usage {
            let mut runs = std::mem::take(&mut *finished.lock().unwrap_or_else(|e| e.into_inner()));
            runs.sort_by_key(|r| r.index);
            out.push(fmt.usage(usage(&runs, n)));
        }
        out.push(SseEvent::default().data("[DONE]"));
        stream::iter(out)
    })
    .flatten();
    merged.chain(tail).map(Ok)
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
