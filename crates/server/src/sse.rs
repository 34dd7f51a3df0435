//! Streaming responses: every choice's pieces become SSE events in the endpoint's chunk
//! format, choices are interleaved as they produce, and the stream ends with the usage
//! chunk (when asked) and `data: [DONE]` — or, when a choice fails (the engine failed,
//! the shutdown grace period ran out), with an OpenAI-shaped error event and nothing
//! after it.

use crate::generation::{usage, ChoiceRun, Piece};
use crate::state::ActiveGuard;
use api::{FinishReason, Usage};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use engine::TokenEvent;
use futures::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

/// How one endpoint spells its chunks. `State` is per-choice bookkeeping (whether chat
/// announced the role yet, the text offset of legacy logprobs).
pub trait ChunkFormat: Clone + Send + Sync + 'static {
    type State: Default + Send + 'static;
    /// A chunk for new text; `None` when there is nothing to send yet.
    fn text(
        &self,
        run: &ChoiceRun,
        state: &mut Self::State,
        text: String,
        tokens: &[TokenEvent],
    ) -> Option<SseEvent>;
    fn finish(&self, run: &ChoiceRun, state: &mut Self::State, reason: FinishReason) -> SseEvent;
    fn usage(&self, usage: Usage) -> SseEvent;
}

pub fn json_event<T: serde::Serialize>(v: &T) -> SseEvent {
    SseEvent::default().data(serde_json::to_string(v).unwrap_or_default())
}

enum Out {
    Chunk(SseEvent),
    /// Ends the whole response.
    Error(SseEvent),
}

fn choice_events<F: ChunkFormat>(
    run: ChoiceRun,
    fmt: F,
    finished: Arc<Mutex<Vec<ChoiceRun>>>,
) -> impl Stream<Item = Out> + Send {
    stream::unfold(Some((run, F::State::default())), move |state| {
        let (fmt, finished) = (fmt.clone(), finished.clone());
        async move {
            let (mut run, mut st) = state?;
            match run.next().await {
                Some(Piece::Text { text, tokens }) => {
                    let ev = fmt.text(&run, &mut st, text, &tokens).map(Out::Chunk);
                    Some((ev, Some((run, st))))
                }
                Some(Piece::Finish(reason)) => {
                    let ev = fmt.finish(&run, &mut st, reason);
                    finished.lock().unwrap_or_else(|e| e.into_inner()).push(run);
                    Some((Some(Out::Chunk(ev)), None))
                }
                Some(Piece::Error(e)) => {
                    tracing::warn!(status = e.status, code = ?e.code, message = %e.message, "stream ended by an error");
                    Some((Some(Out::Error(json_event(&e.body()))), None))
                }
                None => None,
            }
        }
    })
    .filter_map(|e| async move { e })
}

pub fn sse_stream<F: ChunkFormat>(
    runs: Vec<ChoiceRun>,
    fmt: F,
    include_usage: bool,
    n: usize,
    guard: ActiveGuard,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let finished = Arc::new(Mutex::new(Vec::new()));
    let merged = stream::select_all(
        runs.into_iter()
            .map(|r| choice_events(r, fmt.clone(), finished.clone()).boxed()),
    );
    // After an error event nothing follows; otherwise the usage chunk and [DONE]. The
    // request counts as in flight (the guard) until its last event is produced.
    enum Phase<M> {
        Body(M, ActiveGuard),
        Tail(std::vec::IntoIter<SseEvent>),
    }
    stream::unfold(Some(Phase::Body(merged, guard)), move |phase| {
        let (fmt, finished) = (fmt.clone(), finished.clone());
        async move {
            match phase? {
                Phase::Body(mut merged, guard) => match merged.next().await {
                    Some(Out::Chunk(e)) => Some((e, Some(Phase::Body(merged, guard)))),
                    Some(Out::Error(e)) => Some((e, None)),
                    None => {
                        let mut out = Vec::new();
                        if include_usage {
                            let mut runs = std::mem::take(
                                &mut *finished.lock().unwrap_or_else(|e| e.into_inner()),
                            );
                            runs.sort_by_key(|r| r.index);
                            out.push(fmt.usage(usage(&runs, n)));
                        }
                        out.push(SseEvent::default().data("[DONE]"));
                        drop(guard);
                        let mut it = out.into_iter();
                        let first = it.next()?;
                        Some((first, Some(Phase::Tail(it))))
                    }
                },
                Phase::Tail(mut it) => {
                    let e = it.next()?;
                    Some((e, Some(Phase::Tail(it))))
                }
            }
        }
    })
    .map(Ok)
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
