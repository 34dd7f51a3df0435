//! Running one or more choices through the engine and turning engine events into text,
//! shared by chat and completions.

use crate::error::submit_error;
use crate::state::Loaded;
use crate::stop::StopMatcher;
use api::{
    ApiError, ChatLogprobs, ChatTokenLogprob, CompletionLogprobs, SamplingFields, TopLogprob, Usage,
};
use engine::{Event, FinishReason, GenerationRequest, RequestStream, TokenEvent};
use model::SamplingParams;
use std::collections::VecDeque;
use std::sync::Arc;
use tokenizer::{Detokenizer, Tokenizer};

/// What a choice produced since the last call.
pub enum Piece {
    Text {
        text: String,
        tokens: Vec<TokenEvent>,
    },
    Finish(&'static str),
    Error(String),
}

pub struct ChoiceRun {
    pub index: usize,
    stream: Option<RequestStream>,
    tokenizer: Arc<Tokenizer>,
    detok: Detokenizer,
    stop: StopMatcher,
    queue: VecDeque<Piece>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub cached_tokens: usize,
    done: bool,
}

fn reason_str(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

impl ChoiceRun {
    /// The next piece, or `None` after the finish.
    pub async fn next(&mut self) -> Option<Piece> {
        loop {
            if let Some(p) = self.queue.pop_front() {
                return Some(p);
            }
            if self.done {
                return None;
            }
            let ev = match self.stream.as_mut() {
                Some(s) => s.recv().await,
                None => None,
            };
            match ev {
                Some(Event::Token(t)) => {
                    self.completion_tokens += 1;
                    let piece = match self.detok.push(&self.tokenizer, t.token) {
                        Ok(p) => p,
                        Err(e) => {
                            self.fail(e.to_string());
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
                        self.queue.push_back(Piece::Finish("stop"));
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
                        "stop"
                    } else {
                        reason_str(reason)
                    }));
                    self.done = true;
                    self.stream = None;
                }
                Some(Event::Error(e)) => self.fail(e),
                None => self.fail("the engine stopped before the request finished".into()),
            }
        }
    }

    fn fail(&mut self, msg: String) {
        self.queue.push_back(Piece::Error(msg));
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

/// Sampling settings of one request; `n` choices become `n` engine requests.
pub struct GenSpec<'a> {
    pub fields: &'a SamplingFields,
    pub logprobs: Option<usize>,
}

/// Validates every prompt first (so a bad one is a 400 before anything runs), then
/// submits `n` choices per prompt. A refusal cancels what was already submitted.
pub fn start(
    loaded: &Loaded,
    prompts: &[Vec<u32>],
    spec: &GenSpec,
) -> Result<Vec<ChoiceRun>, ApiError> {
    let f = spec.fields;
    let ctx = loaded.engine.context_length();
    let mut reqs = Vec::new();
    for p in prompts {
        if p.is_empty() {
            return Err(ApiError::invalid("prompt", "the prompt is empty"));
        }
        if p.len() >= ctx && f.max_tokens.is_none() {
            return Err(ApiError::invalid(
                "prompt",
                format!(
                    "the prompt has {} tokens but the context length is {ctx}",
                    p.len()
                ),
            )
            .with_code("context_length_exceeded"));
        }
        let max_tokens = f.max_tokens.unwrap_or(ctx.saturating_sub(p.len()));
        for i in 0..f.n {
            let req = GenerationRequest {
                prompt: p.clone(),
                sampling: SamplingParams {
                    temperature: f.temperature,
                    top_k: f.top_k,
                    top_p: f.top_p,
                    min_p: f.min_p,
                    repetition_penalty: f.repetition_penalty,
                    frequency_penalty: f.frequency_penalty,
                    presence_penalty: f.presence_penalty,
                    // Each of n choices gets its own stream of randomness, reproducibly.
                    seed: f.seed.map(|s| s.wrapping_add(i as u64)),
                },
                max_tokens,
                stop_tokens: if f.ignore_eos {
                    Vec::new()
                } else {
                    loaded.tokenizer.eog_tokens().to_vec()
                },
                logprobs: spec.logprobs,
                priority: f.priority,
            };
            loaded.engine.validate(&req).map_err(submit_error)?;
            reqs.push(req);
        }
    }
    let mut runs = Vec::with_capacity(reqs.len());
    for (index, req) in reqs.into_iter().enumerate() {
        let prompt_tokens = req.prompt.len();
        let stream = loaded.engine.submit(req).map_err(submit_error)?;
        runs.push(ChoiceRun {
            index,
            stream: Some(stream),
            tokenizer: loaded.tokenizer.clone(),
            detok: Detokenizer::new(),
            stop: StopMatcher::new(f.stop.clone()),
            queue: VecDeque::new(),
            prompt_tokens,
            completion_tokens: 0,
            cached_tokens: 0,
            done: false,
        });
    }
    Ok(runs)
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
    pub finish: &'static str,
}

pub async fn collect(run: &mut ChoiceRun) -> Result<Collected, ApiError> {
    let mut c = Collected {
        text: String::new(),
        tokens: Vec::new(),
        finish: "length",
    };
    while let Some(p) = run.next().await {
        match p {
            Piece::Text { text, tokens } => {
                c.text.push_str(&text);
                c.tokens.extend(tokens);
            }
            Piece::Finish(r) => c.finish = r,
            Piece::Error(e) => return Err(ApiError::new(500, api::ErrorType::Server, e)),
        }
    }
    Ok(c)
}
