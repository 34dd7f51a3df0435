//! One choice of a request on its way out of the engine: engine events become text
//! (incremental detokenization, stop strings held back), log-probabilities and a finish.

use crate::error::{cut_by_shutdown, engine_failed};
use crate::stop::StopMatcher;
use api::{
    ApiError, ChatLogprobs, ChatTokenLogprob, CompletionLogprobs, ErrorType, FinishReason,
    TopLogprob, Usage,
};
use engine::{Event, RequestStream, TokenEvent};
use std::collections::VecDeque;
use std::sync::Arc;
use tokenizer::{Detokenizer, Tokenizer};
use tokio::sync::watch;

/// What a choice produced since the last call.
pub enum Piece {
    Text {
        text: String,
        tokens: Vec<TokenEvent>,
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
        }
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
                Some(Event::Token(t)) => {
                    self.completion_tokens += 1;
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
                        tokens: vec![t],
                    });
                    if hit {
                        // Dropping the stream cancels the request in the engine.
                        self.stream = None;
                        self.done = true;
                        self.queue.push_back(Piece::Finish(FinishReason::Stop));
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
                    self.queue.push_back(Piece::Finish(if hit {
                        FinishReason::Stop
                    } else {
                        finish_reason(reason)
                    }));
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
        self.queue.push_back(Piece::Error(e));
        self.done = true;
        self.stream = None;
    }

    pub fn token_text(&self, id: u32) -> (String, Vec<u8>) {
        let b = self
            .tokenizer
            .token_bytes(id)
            .map(|b| b.to_vec())
            .unwrap_or_default();
        (String::from_utf8_lossy(&b).into_owned(), b)
    }

    pub fn chat_logprobs(&self, tokens: &[TokenEvent]) -> Option<ChatLogprobs> {
        let content: Vec<ChatTokenLogprob> = tokens
            .iter()
            .filter_map(|t| {
                let lp = t.logprob?;
                let (token, bytes) = self.token_text(t.token);
                let top_logprobs = t
                    .top
                    .iter()
                    .map(|&(id, l)| {
                        let (token, bytes) = self.token_text(id);
                        TopLogprob {
                            token,
                            logprob: l,
                            bytes,
                        }
                    })
                    .collect();
                Some(ChatTokenLogprob {
                    token,
                    logprob: lp,
                    bytes,
                    top_logprobs,
                })
            })
            .collect();
        Some(ChatLogprobs { content })
    }

    /// Appends `tokens` to the legacy completions logprobs; `offset` is the text length so far.
    pub fn completion_logprobs(
        &self,
        tokens: &[TokenEvent],
        offset: &mut usize,
        into: &mut CompletionLogprobs,
    ) {
        for t in tokens {
            let Some(lp) = t.logprob else { continue };
            let (text, _) = self.token_text(t.token);
            into.text_offset.push(*offset);
            *offset += text.len();
            into.tokens.push(text);
            into.token_logprobs.push(lp);
            into.top_logprobs.push(
                t.top
                    .iter()
                    .map(|&(id, l)| (self.token_text(id).0, l))
                    .collect(),
            );
        }
    }
}

/// Usage over all choices: each distinct prompt counts once, as OpenAI reports it.
pub fn usage(runs: &[ChoiceRun], n: usize) -> Usage {
    let prompt: usize = runs.iter().step_by(n.max(1)).map(|r| r.prompt_tokens).sum();
    let cached: usize = runs.iter().step_by(n.max(1)).map(|r| r.cached_tokens).sum();
    let completion: usize = runs.iter().map(|r| r.completion_tokens).sum();
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        prompt_tokens_details: Some(api::PromptTokensDetails {
            cached_tokens: cached,
        }),
    }
}

/// Everything a choice produces, for non-streaming responses.
pub struct Collected {
    pub text: String,
    pub tokens: Vec<TokenEvent>,
    pub finish: FinishReason,
}

pub async fn collect(run: &mut ChoiceRun) -> Result<Collected, ApiError> {
    let mut c = Collected {
        text: String::new(),
        tokens: Vec::new(),
        finish: FinishReason::Length,
    };
    while let Some(p) = run.next().await {
        match p {
            Piece::Text { text, tokens } => {
                c.text.push_str(&text);
                c.tokens.extend(tokens);
            }
            Piece::Finish(r) => c.finish = r,
            Piece::Error(e) => return Err(e),
        }
    }
    Ok(c)
}
