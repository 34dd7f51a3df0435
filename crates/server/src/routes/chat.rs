use super::{check_model, json_body, ready};
use crate::error::HttpError;
use crate::generation::{self, collect, ChoiceRun, GenSpec};
use crate::ids::{new_id, unix_now};
use crate::sse::{json_event, sse_response, sse_stream, ChunkFormat};
use crate::state::AppState;
use api::{
    ApiError, ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatDelta,
    ChatMessageOut, ChatRequest, ErrorType,
};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::TokenEvent;
use std::sync::Arc;
use tokenizer::ChatMessage;

pub async fn handle(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let req = ChatRequest::from_json(&json_body(body)?)?;
    check_model(&st, &req.fields.model)?;
    let loaded = ready(&st)?;
    let template = loaded.template.as_ref().ok_or_else(|| {
        ApiError::bad_request("this model has no chat template; use /v1/completions")
    })?;
    let msgs: Vec<ChatMessage> = req
        .messages
        .iter()
        .map(|m| ChatMessage {
            role: m.role.clone(),
            content: m.content.clone(),
        })
        .collect();
    let text = template
        .render(&msgs, true)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    // The template's own special tokens must be parsed; text inside messages is user
    // data, but llama.cpp and vLLM parse it the same way, and agents rely on it.
    let prompt = loaded
        .tokenizer
        .encode(&text, true, true)
        .map_err(|e| ApiError::new(500, ErrorType::Server, e.to_string()))?;
    let logprobs = if req.logprobs {
        Some(req.top_logprobs)
    } else {
        None
    };
    let runs = generation::start(
        loaded,
        &[prompt],
        &GenSpec {
            fields: &req.fields,
            logprobs,
        },
    )?;
    let id = format!("chatcmpl-{}", new_id());
    let model = st.config.model_id.clone();
    if req.fields.stream {
        let include_usage = req.fields.stream_options.include_usage;
        let n = req.fields.n;
        let s = sse_stream(
            runs,
            ChatFormat {
                id,
                model,
                created: unix_now(),
            },
            include_usage,
            n,
        );
        return Ok(sse_response(s, st.config.keep_alive));
    }
    let mut runs = runs;
    let mut choices = Vec::with_capacity(runs.len());
    let results = futures::future::join_all(runs.iter_mut().map(collect)).await;
    for (run, res) in runs.iter().zip(results) {
        let c = res?;
        choices.push(ChatChoice {
            index: run.index,
            message: ChatMessageOut {
                role: "assistant".into(),
                content: c.text,
            },
            logprobs: if req.logprobs {
                run.chat_logprobs(&c.tokens)
            } else {
                None
            },
            finish_reason: Some(c.finish.to_string()),
        });
    }
    let usage = generation::usage(&runs, req.fields.n);
    Ok(Json(ChatCompletion {
        id,
        object: "chat.completion".into(),
        created: unix_now(),
        model,
        choices,
        usage,
    })
    .into_response())
}

#[derive(Clone)]
struct ChatFormat {
    id: String,
    model: String,
    created: u64,
}

impl ChatFormat {
    fn chunk(&self, choice: ChatChunkChoice, usage: Option<api::Usage>) -> SseEvent {
        let choices = if usage.is_some() {
            Vec::new()
        } else {
            vec![choice]
        };
        json_event(&ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        })
    }

    fn choice(
        index: usize,
        delta: ChatDelta,
        logprobs: Option<api::ChatLogprobs>,
        finish_reason: Option<String>,
    ) -> ChatChunkChoice {
        ChatChunkChoice {
            index,
            delta,
            logprobs,
            finish_reason,
        }
    }
}

impl ChunkFormat for ChatFormat {
    type State = ();

    fn opening(&self, run: &ChoiceRun) -> Option<SseEvent> {
        Some(self.chunk(
            Self::choice(
                run.index,
                ChatDelta {
                    role: Some("assistant".into()),
                    content: Some(String::new()),
                },
                None,
                None,
            ),
            None,
        ))
    }

    fn text(
        &self,
        run: &ChoiceRun,
        _: &mut (),
        text: String,
        tokens: &[TokenEvent],
    ) -> Option<SseEvent> {
        let lp = if tokens.iter().any(|t| t.logprob.is_some()) {
            run.chat_logprobs(tokens)
        } else {
            None
        };
        if text.is_empty() && lp.is_none() {
            // Nothing to say yet (a held-back partial character or stop string).
            return None;
        }
        Some(self.chunk(
            Self::choice(
                run.index,
                ChatDelta {
                    role: None,
                    content: Some(text),
                },
                lp,
                None,
            ),
            None,
        ))
    }

    fn finish(&self, run: &ChoiceRun, reason: &str) -> SseEvent {
        self.chunk(
            Self::choice(
                run.index,
                ChatDelta::default(),
                None,
                Some(reason.to_string()),
            ),
            None,
        )
    }

    fn usage(&self, usage: api::Usage) -> SseEvent {
        self.chunk(
            Self::choice(0, ChatDelta::default(), None, None),
            Some(usage),
        )
    }
}
