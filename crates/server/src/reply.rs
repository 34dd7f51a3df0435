//! A response read from a generation's log — the request's own live run, another
//! identical request's run it attached to, or a cache entry replayed. Streaming
//! requests get SSE chunks in the endpoint's format as the log grows (choices
//! interleaved as they produce), then the usage chunk when asked and `data: [DONE]`;
//! after an error event (the engine failed, the shutdown grace period ran out) nothing
//! follows. Non-streaming requests get the assembled JSON, or the error with its status.

use crate::choice::{ChoiceCtx, Collected};
use crate::flight_item::{Item, Tally};
use crate::sse::{json_data, sse_body, sse_response, Chunk, ChunkFormat};
use crate::state::{ActiveGuard, AppState};
use api::{ApiError, FinishReason, Usage};
use axum::http::HeaderValue;
use axum::response::sse::Event as SseEvent;
use axum::response::Response;
use cache::{Event, Reader};
use futures::stream;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use tokenizer::Tokenizer;

/// How an endpoint spells its whole (non-streaming) response, beside its chunks.
pub trait EndpointFormat: ChunkFormat {
    fn complete(&self, choices: Vec<(ChoiceCtx, Collected)>, usage: Usage) -> Response;
}

/// What the cache did for this request, for `X-Cache`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    HitL1,
    HitL2,
    Miss,
    Bypass,
    Coalesced,
}

impl CacheOutcome {
    pub fn header(self) -> &'static str {
        match self {
            Self::HitL1 => "hit-l1",
            Self::HitL2 => "hit-l2",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
            Self::Coalesced => "coalesced",
        }
    }

    /// Whether no prompt token was computed for this request.
    fn whole_prompt_cached(self) -> bool {
        matches!(self, Self::HitL1 | Self::HitL2 | Self::Coalesced)
    }
}

pub struct ReplyMeta {
    pub n: usize,
    /// Choices the request asked for (`n` × prompts): a log that ends with fewer
    /// finished is an error, never a short answer.
    pub choices: usize,
    pub stream: bool,
    pub include_usage: bool,
    pub outcome: CacheOutcome,
    /// Where the usage goes for the access line and the server span.
    pub tokens: Option<Arc<crate::trace::TokenCount>>,
}

fn ended_early() -> ApiError {
    ApiError::new(
        500,
        api::ErrorType::Server,
        "the generation ended before every choice finished",
    )
}

fn with_outcome(mut r: Response, o: CacheOutcome) -> Response {
    r.headers_mut()
        .insert("x-cache", HeaderValue::from_static(o.header()));
    r
}

pub async fn reply<F: EndpointFormat>(
    st: &AppState,
    tokenizer: Arc<Tokenizer>,
    reader: Reader<Item>,
    fmt: F,
    meta: ReplyMeta,
    guard: ActiveGuard,
) -> Result<Response, ApiError> {
    let outcome = meta.outcome;
    if meta.stream {
        let mut s = streaming(tokenizer, reader, fmt, meta, guard);
        if s.reader.is_closed() {
            // Everything is known already (a cache hit): render it in one go.
            let mut chunks = Vec::new();
            while let Some(c) = s.next().await {
                chunks.push(c);
            }
            return Ok(with_outcome(sse_body(chunks), outcome));
        }
        let events = stream::unfold(s, |mut s| async move {
            let c = s.next().await?;
            Some((Ok::<_, Infallible>(SseEvent::default().data(c)), s))
        });
        return Ok(with_outcome(
            sse_response(events, st.config.keep_alive),
            outcome,
        ));
    }
    let resp = collect(&tokenizer, reader, &fmt, &meta).await?;
    drop(guard);
    Ok(with_outcome(resp, outcome))
}

async fn collect<F: EndpointFormat>(
    tokenizer: &Tokenizer,
    mut reader: Reader<Item>,
    fmt: &F,
    meta: &ReplyMeta,
) -> Result<Response, ApiError> {
    let mut choices: BTreeMap<usize, Collected> = BTreeMap::new();
    let mut tally = Tally::default();
    fn slot(m: &mut BTreeMap<usize, Collected>, i: u32) -> &mut Collected {
        m.entry(i as usize).or_insert_with(|| Collected {
            text: String::new(),
            tokens: Vec::new(),
            finish: FinishReason::Length,
        })
    }
    while let Some(item) = reader.next().await {
        match item {
            Item::Event(Event::Text {
                choice,
                text,
                tokens,
            }) => {
                let c = slot(&mut choices, choice);
                c.text.push_str(&text);
                c.tokens.extend(tokens);
            }
            Item::Event(Event::Finish {
                choice,
                reason,
                prompt_tokens,
                completion_tokens,
            }) => {
                slot(&mut choices, choice).finish = reason;
                tally.finished(choice as usize, prompt_tokens, completion_tokens);
            }
            Item::PrefixCached { choice, tokens } => tally.prefix_cached(choice, tokens),
            Item::Error(e) => return Err(e),
        }
    }
    if tally.finished_choices() < meta.choices {
        return Err(ended_early());
    }
    let usage = tally.usage(meta.n, meta.outcome.whole_prompt_cached());
    if let Some(t) = &meta.tokens {
        t.set(usage.prompt_tokens, usage.completion_tokens);
    }
    let choices = choices
        .into_iter()
        .map(|(index, c)| (ChoiceCtx { index, tokenizer }, c))
        .collect();
    Ok(fmt.complete(choices, usage))
}

struct Streaming<F: ChunkFormat> {
    tokenizer: Arc<Tokenizer>,
    reader: Reader<Item>,
    fmt: F,
    states: BTreeMap<usize, F::State>,
    tally: Tally,
    meta: ReplyMeta,
    /// Held until the last event is produced: the shutdown drain waits for it.
    guard: Option<ActiveGuard>,
    tail: Vec<Chunk>,
    ended: bool,
}

impl<F: ChunkFormat> Streaming<F> {
    /// The next event to send, `None` at the end.
    async fn next(&mut self) -> Option<Chunk> {
        loop {
            if let Some(e) = self.tail.pop() {
                return Some(e);
            }
            if self.ended {
                return None;
            }
            let Some(item) = self.reader.next().await else {
                self.ended = true;
                self.guard = None;
                if self.tally.finished_choices() < self.meta.choices {
                    return Some(json_data(&ended_early().body()));
                }
                let mut tail = Vec::new();
                let usage = self
                    .tally
                    .usage(self.meta.n, self.meta.outcome.whole_prompt_cached());
                if let Some(t) = &self.meta.tokens {
                    t.set(usage.prompt_tokens, usage.completion_tokens);
                }
                if self.meta.include_usage {
                    tail.push(self.fmt.usage(usage));
                }
                tail.push("[DONE]".to_string());
                tail.reverse();
                self.tail = tail;
                self.guard = None;
                continue;
            };
            match item {
                Item::Event(Event::Text {
                    choice,
                    text,
                    tokens,
                }) => {
                    let index = choice as usize;
                    let ctx = ChoiceCtx {
                        index,
                        tokenizer: &self.tokenizer,
                    };
                    let st = self.states.entry(index).or_default();
                    if let Some(e) = self.fmt.text(&ctx, st, text, &tokens) {
                        return Some(e);
                    }
                }
                Item::Event(Event::Finish {
                    choice,
                    reason,
                    prompt_tokens,
                    completion_tokens,
                }) => {
                    let index = choice as usize;
                    self.tally.finished(index, prompt_tokens, completion_tokens);
                    let ctx = ChoiceCtx {
                        index,
                        tokenizer: &self.tokenizer,
                    };
                    let st = self.states.entry(index).or_default();
                    return Some(self.fmt.finish(&ctx, st, reason));
                }
                Item::PrefixCached { choice, tokens } => self.tally.prefix_cached(choice, tokens),
                Item::Error(e) => {
                    tracing::warn!(status = e.status, code = ?e.code, message = %e.message, "stream ended by an error");
                    self.ended = true;
                    self.guard = None;
                    return Some(json_data(&e.body()));
                }
            }
        }
    }
}

fn streaming<F: ChunkFormat>(
    tokenizer: Arc<Tokenizer>,
    reader: Reader<Item>,
    fmt: F,
    meta: ReplyMeta,
    guard: ActiveGuard,
) -> Streaming<F> {
    Streaming {
        tokenizer,
        reader,
        fmt,
        states: BTreeMap::new(),
        tally: Tally::default(),
        meta,
        guard: Some(guard),
        tail: Vec::new(),
        ended: false,
    }
}
