//! The producing side of a generation: its choices' pieces, merged as they come, go
//! into the flight's log for every listener; a complete, error-free answer is stored in
//! the response cache before the log closes (so with write-through, no listener sees
//! the end of its answer before the entry is in Redis). Runs on its own task: it goes on
//! while anyone listens and stops — cancelling the engine requests — when nobody does.

use crate::flight_item::Item;
use crate::generation::{ChoiceRun, Piece};
use cache::{Entry, Event, Key, Lane, Producer, ResponseCache};
use futures::stream::{self, Stream, StreamExt};
use std::sync::Arc;
use std::time::Duration;

fn run_items(run: ChoiceRun) -> impl Stream<Item = Item> + Send {
    stream::unfold(Some(run), |run| async move {
        let mut run = run?;
        let choice = run.index as u32;
        let items = match run.next().await? {
            Piece::Text { text, tokens } => {
                return Some((
                    vec![Item::Event(Event::Text {
                        choice,
                        text,
                        tokens,
                    })],
                    Some(run),
                ))
            }
            Piece::Finish(reason) => vec![
                Item::PrefixCached {
                    choice: run.index,
                    tokens: run.cached_tokens,
                },
                Item::Event(Event::Finish {
                    choice,
                    reason,
                    prompt_tokens: run.prompt_tokens,
                    completion_tokens: run.completion_tokens,
                }),
            ],
            Piece::Error(e) => vec![Item::Error(e)],
        };
        Some((items, None))
    })
    .flat_map(stream::iter)
}

/// Where a finished answer goes, and how long to go on without listeners.
pub struct Keep {
    pub cache: Arc<ResponseCache>,
    pub key: Key,
    pub lane: Lane,
}

pub async fn produce(
    runs: Vec<ChoiceRun>,
    producer: Producer<Item>,
    store: Option<Keep>,
    linger: Option<Duration>,
) {
    let choices = runs.len();
    let (mut finished, mut most_generated) = (0, 0);
    let mut merged = stream::select_all(runs.into_iter().map(|r| run_items(r).boxed()));
    let mut events = Vec::new();
    // When the last listener left, for a generation that lingers for a retry.
    let mut deserted: Option<tokio::time::Instant> = None;
    loop {
        if deserted.is_some() && producer.listeners() > 0 {
            deserted = None;
        }
        let give_up_at = deserted.zip(linger).map(|(d, l)| d + l);
        tokio::select! {
            item = merged.next() => match item {
                None => break,
                Some(Item::Error(e)) => {
                    producer.push(Item::Error(e));
                    return;
                }
                Some(item) => {
                    if let Item::Event(Event::Finish { reason, completion_tokens, .. }) = &item {
                        finished += 1;
                        most_generated = most_generated.max(*completion_tokens);
                        count_finished(finished_reason(*reason), 1);
                        if finished == choices {
                            metrics::histogram!(engine::metrics_names::REQUEST_MAX_GENERATION_TOKENS)
                                .record(most_generated as f64);
                        }
                    }
                    if let (Item::Event(e), Some(_)) = (&item, &store) {
                        events.push(e.clone());
                    }
                    producer.push(item);
                }
            },
            _ = producer.abandoned(), if deserted.is_none() => {
                if linger.is_some() {
                    deserted = Some(tokio::time::Instant::now());
                } else if producer.give_up() {
                    // Dropping the runs cancels their engine requests.
                    count_finished("abort", choices - finished);
                    return;
                }
            }
            _ = tokio::time::sleep_until(give_up_at.unwrap_or_else(tokio::time::Instant::now)), if give_up_at.is_some() => {
                if producer.give_up() {
                    count_finished("abort", choices - finished);
                    return;
                }
                deserted = None;
            }
        }
    }
    drop(merged);
    if let Some(k) = store {
        k.cache
            .store(k.key, Arc::new(Entry::new(events)), k.lane)
            .await;
    }
}

/// vLLM's `finished_reason` label values.
pub(crate) fn finished_reason(r: api::FinishReason) -> &'static str {
    match r {
        api::FinishReason::Stop => "stop",
        api::FinishReason::Length => "length",
        api::FinishReason::ToolCalls => "tool_calls",
        api::FinishReason::ContentFilter => "content_filter",
    }
}

/// Choices the engine worked on, by how they ended (cache hits and joined flights reuse
/// another's work and are not counted again; a choice that failed is an HTTP 5xx).
fn count_finished(reason: &'static str, n: usize) {
    if n > 0 {
        metrics::counter!(engine::metrics_names::REQUEST_SUCCESS, "finished_reason" => reason)
            .increment(n as u64);
    }
}
