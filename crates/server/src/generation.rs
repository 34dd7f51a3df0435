//! One choice of a request on its way out of the engine: engine events become text
//! (incremental detokenization, stop strings held back), token records and a finish.

use crate::error::{cut_by_shutdown, engine_failed};
use crate::stop::StopMatcher;
use api::{ApiError, ErrorType, FinishReason};
use cache::TokenRecord;
use engine::{Event, RequestStream};
use std::collections::VecDeque;
use std::sync::Arc;
use tokenizer::{Detokenizer, Tokenizer};
use tokio::sync::watch;

use crate::otel::genai::{ChoiceReport, GenerationTrace};

/// What a choice produced since the last call.
pub enum Piece {
    Text {
        text: String,
        tokens: Vec<TokenRecord>,
    },
    Finish(FinishReason),
    Error(ApiError),
}

pub struct ChoiceRun {
    pub index: usize,
    stream: Option<RequestStream>,
    tokenizer: Arc<Tokenizer>,
    detok: Detokenizer,
    stop: StopMatcher,
    queue: VecDeque<Piece>,
    /// Turns true when the shutdown grace period is over.
    cut: watch::Receiver<bool>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub cached_tokens: usize,
    done: bool,
    /// The generation span this choice reports to when it is dropped, however it ended.
    trace: Option<Arc<GenerationTrace>>,
    report: ChoiceReport,
}

fn finish_reason(r: engine::FinishReason) -> FinishReason {
    match r {
        engine::FinishReason::Stop => FinishReason::Stop,
        engine::FinishReason::Length => FinishReason::Length,
    }
}

impl ChoiceRun {
    pub fn new(
        index: usize,
        stream: RequestStream,
        tokenizer: Arc<Tokenizer>,
        stops: Vec<String>,
        prompt_tokens: usize,
        cut: watch::Receiver<bool>,
    ) -> Self {
        Self {
            index,
            stream: Some(stream),
            tokenizer,
            detok: Detokenizer::new(),
            stop: StopMatcher::new(stops),
            queue: VecDeque::new(),
            cut,
            prompt_tokens,
            completion_tokens: 0,
            cached_tokens: 0,
            done: false,
            trace: None,
            report: ChoiceReport::default(),
        }
    }

    pub fn traced(mut self, trace: Option<Arc<GenerationTrace>>) -> Self {
        self.trace = trace;
        self
    }

    /// The next engine event, or `Err` when the shutdown cut the request first.
    async fn recv(&mut self) -> Result<Option<Event>, ()> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        let cut = &mut self.cut;
        let cut = async move {
            if cut.wait_for(|c| *c).await.is_err() {
                // The server state is gone: nothing will cut this request.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            ev = stream.recv() => Ok(ev),
            _ = cut => Err(()),
        }
    }

    /// The next piece, or `None` after the finish.
    pub async fn next(&mut self) -> Option<Piece> {
        loop {
            if let Some(p) = self.queue.pop_front() {
                return Some(p);
            }
            if self.done {
                return None;
            }
            let Ok(ev) = self.recv().await else {
                self.fail(cut_by_shutdown());
                continue;
            };
            match ev {
                Some(Event::Scheduled { at }) => self.report.scheduled = Some(at),
                Some(Event::Preempted { at }) => self.report.preempted.push(at),
                Some(Event::Token(t)) => {
                    self.completion_tokens += 1;
                    if self.trace.is_some() {
                        let now = std::time::Instant::now();
                        self.report.first_token.get_or_insert(now);
                        self.report.last_token = Some(now);
                    }
                    let piece = match self.detok.push(&self.tokenizer, t.token) {
                        Ok(p) => p,
                        Err(e) => {
                            self.fail(ApiError::new(500, ErrorType::Server, e.to_string()));
                            continue;
                        }
                    };
                    let (text, hit) = self.stop.push(&piece);
                    self.queue.push_back(Piece::Text {
                        text,
                        tokens: vec![TokenRecord {
                            id: t.token,
                            logprob: t.logprob,
                            top: t.top,
                        }],
                    });
                    if hit {
                        // Dropping the stream cancels the request in the engine.
                        self.stream = None;
                        self.done = true;
                        self.queue.push_back(Piece::Finish(FinishReason::Stop));
                        self.report.finish = Some("stop");
                    }
                }
                Some(Event::Finished {
                    reason,
                    prompt_tokens,
                    completion_tokens,
                    cached_tokens,
                }) => {
                    self.prompt_tokens = prompt_tokens;
                    self.completion_tokens = completion_tokens;
                    self.cached_tokens = cached_tokens;
                    let tail = self.detok.finish();
                    let (mut text, hit) = self.stop.push(&tail);
                    if !hit {
                        text.push_str(&self.stop.finish());
                    }
                    if !text.is_empty() {
                        self.queue.push_back(Piece::Text {
                            text,
                            tokens: Vec::new(),
                        });
                    }
                    let reason = if hit {
                        FinishReason::Stop
                    } else {
                        finish_reason(reason)
                    };
                    self.report.finish = Some(crate::produce::finished_reason(reason));
                    self.queue.push_back(Piece::Finish(reason));
                    self.done = true;
                    self.stream = None;
                }
                Some(Event::Error {
                    message,
                    engine_failed: true,
                }) => self.fail(engine_failed(&message)),
                Some(Event::Error { message, .. }) => {
                    self.fail(ApiError::new(500, ErrorType::Server, message))
                }
                None => self.fail(engine_failed(
                    "the engine stopped before the request finished",
                )),
            }
        }
    }

    fn fail(&mut self, e: ApiError) {
        self.report.error = Some(e.message.clone());
        self.queue.push_back(Piece::Error(e));
        self.done = true;
        self.stream = None;
    }
}

impl Drop for ChoiceRun {
    fn drop(&mut self) {
        if let Some(t) = self.trace.take() {
            let mut r = std::mem::take(&mut self.report);
            r.prompt_tokens = self.prompt_tokens;
            r.completion_tokens = self.completion_tokens;
            r.cached_tokens = self.cached_tokens;
            t.report(self.index, r);
        }
    }
}
