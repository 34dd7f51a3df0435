//! The one generation path of the server: chat and completions, streaming or not, go
//! validate → render → tokenize → submit → events → format through here, so whatever
//! wraps generation (a response cache, batch jobs, tracing) wraps it once.

use crate::error::submit_error;
use crate::generation::{collect, usage, ChoiceRun, Collected};
use crate::sse::{sse_response, sse_stream, ChunkFormat};
use crate::state::{ActiveGuard, AppState};
use api::{ApiError, ErrorType, Message, SamplingFields, Usage};
use axum::response::Response;
use engine::GenerationRequest;
use model::SamplingParams;
use std::sync::Arc;
use tokenizer::ChatMessage;

/// Where the prompt tokens come from.
pub enum PromptSource {
    /// Rendered with the model's chat template.
    Chat(Vec<Message>),
    Texts(Vec<String>),
    Tokens(Vec<Vec<u32>>),
}

pub struct GenerationInput {
    pub source: PromptSource,
    pub fields: SamplingFields,
    /// Top alternatives per token; `None` computes no log-probabilities.
    pub logprobs: Option<usize>,
}

/// Submitted choices (`n` per prompt, prompt-major) and what their response needs.
pub struct Generation {
    pub runs: Vec<ChoiceRun>,
    pub fields: SamplingFields,
    guard: ActiveGuard,
}

/// How an endpoint spells its whole (non-streaming) response, beside its chunks.
pub trait EndpointFormat: ChunkFormat {
    fn complete(&self, choices: Vec<(ChoiceRun, Collected)>, usage: Usage) -> Response;
}

/// Renders and tokenizes on the blocking pool: a long prompt must not stall the async
/// workers that serve every other connection.
async fn tokenize(st: &Arc<AppState>, source: PromptSource) -> Result<Vec<Vec<u32>>, ApiError> {
    let loaded = crate::routes::ready(st)?;
    let tokenizer = loaded.tokenizer.clone();
    let template = loaded.template.clone();
    let work = move || -> Result<Vec<Vec<u32>>, ApiError> {
        let server = |e: tokenizer::Error| ApiError::new(500, ErrorType::Server, e.to_string());
        match source {
            PromptSource::Tokens(t) => Ok(t),
            PromptSource::Texts(texts) => texts
                .iter()
                .map(|t| tokenizer.encode(t, true, true).map_err(server))
                .collect(),
            PromptSource::Chat(messages) => {
                let template = template.ok_or_else(|| {
                    ApiError::bad_request("this model has no chat template; use /v1/completions")
                })?;
                let msgs: Vec<ChatMessage> = messages
                    .into_iter()
                    .map(|m| ChatMessage {
                        role: m.role.as_str().to_string(),
                        content: m.content,
                    })
                    .collect();
                let text = template
                    .render(&msgs, true)
                    .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
                // The template's own special tokens must be parsed; text inside messages
                // is user data, but llama.cpp and vLLM parse it the same way, and agents
                // rely on it.
                Ok(vec![tokenizer.encode(&text, true, true).map_err(server)?])
            }
        }
    };
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(500, ErrorType::Server, format!("tokenizing failed: {e}")))?
}

fn engine_requests(
    st: &AppState,
    prompts: &[Vec<u32>],
    f: &SamplingFields,
    logprobs: Option<usize>,
) -> Result<Vec<GenerationRequest>, ApiError> {
    let loaded = crate::routes::ready(st)?;
    let ctx = loaded.engine.context_length();
    let total = prompts.len() * f.n;
    let most = loaded.engine.max_submission();
    if total > most {
        // It could never be queued whole, however long the client waited: not a 429.
        return Err(ApiError::invalid(
            "n",
            format!("this request asks for {total} choices (n = {} × {} prompts), more than the server can ever queue at once ({most}, --max-waiting)", f.n, prompts.len()),
        ));
    }
    let mut reqs = Vec::with_capacity(total);
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
                    logit_bias: f.logit_bias.clone(),
                },
                max_tokens,
                stop_tokens: if f.ignore_eos {
                    Vec::new()
                } else {
                    loaded.tokenizer.eog_tokens().to_vec()
                },
                logprobs,
                priority: f.priority,
            };
            loaded.engine.validate(&req).map_err(submit_error)?;
            reqs.push(req);
        }
    }
    Ok(reqs)
}

/// Validates, tokenizes and submits every choice; all are queued or none is.
pub async fn generate(st: &Arc<AppState>, input: GenerationInput) -> Result<Generation, ApiError> {
    crate::routes::check_model(st, &input.fields.model)?;
    let guard = st.begin_request();
    let prompts = tokenize(st, input.source).await?;
    let reqs = engine_requests(st, &prompts, &input.fields, input.logprobs)?;
    let loaded = crate::routes::ready(st)?;
    let lens: Vec<usize> = reqs.iter().map(|r| r.prompt.len()).collect();
    let streams = loaded.engine.submit_all(reqs).map_err(submit_error)?;
    let runs = streams
        .into_iter()
        .zip(lens)
        .enumerate()
        .map(|(index, (stream, prompt_tokens))| {
            ChoiceRun::new(
                index,
                stream,
                loaded.tokenizer.clone(),
                input.fields.stop.clone(),
                prompt_tokens,
                st.cut_signal(),
            )
        })
        .collect();
    Ok(Generation {
        runs,
        fields: input.fields,
        guard,
    })
}

impl Generation {
    /// The response: SSE chunks when the request streams, one JSON body otherwise.
    pub async fn respond<F: EndpointFormat>(
        self,
        st: &AppState,
        fmt: F,
    ) -> Result<Response, ApiError> {
        let n = self.fields.n;
        if self.fields.stream {
            let s = sse_stream(
                self.runs,
                fmt,
                self.fields.stream_options.include_usage,
                n,
                self.guard,
            );
            return Ok(sse_response(s, st.config.keep_alive));
        }
        let mut runs = self.runs;
        let results = futures::future::join_all(runs.iter_mut().map(collect)).await;
        let mut collected = Vec::with_capacity(runs.len());
        for r in results {
            collected.push(r?);
        }
        let usage = usage(&runs, n);
        let resp = fmt.complete(runs.into_iter().zip(collected).collect(), usage);
        drop(self.guard);
        Ok(resp)
    }
}
