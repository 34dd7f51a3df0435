use crate::choice::{ChoiceCtx, Collected};
use crate::error::HttpError;
use crate::ids::{new_id, unix_now};
use crate::reply::EndpointFormat;
use crate::service::{generate, GenerationInput, PromptSource};
use crate::sse::{json_data, Chunk, ChunkFormat};
use crate::state::AppState;
use api::{
    ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatDelta, ChatMessageOut,
    ChatRequest, FinishReason, Role, Usage,
};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cache::TokenRecord;
use std::sync::Arc;

/// Creates a chat completion.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "generation",
    request_body = ChatRequest,
    responses(
        (status = 200, description = "The completion (JSON), or its chunks as server-sent events when `stream` is true", content(
            (ChatCompletion = "application/json"),
            (api::StreamEvent = "text/event-stream"))),
        super::GenerationErrors,
    ),
    security((), ("bearer" = [])))]
pub async fn handle(State(st): State<Arc<AppState>>, req: Request) -> Result<Response, HttpError> {
    let (parts, body) = req.into_parts();
    let body = crate::body::read_json(body, st.config.max_body_bytes).await?;
    let req = ChatRequest::from_json(&body)?;
    let logprobs = req.logprobs.then_some(req.top_logprobs);
    let fmt = ChatFormat {
        id: format!("chatcmpl-{}", new_id()),
        model: st.config.model_id.clone(),
        created: unix_now(),
        logprobs: req.logprobs,
    };
    let input = GenerationInput {
        endpoint: "chat",
        source: PromptSource::Chat(req.messages),
        fields: req.fields,
        logprobs,
        tag: crate::trace::tag(&parts.extensions),
        ids: parts.extensions.get::<crate::trace::RequestIds>().cloned(),
    };
    Ok(generate(&st, &parts.headers, input, fmt).await?)
}

#[derive(Clone)]
struct ChatFormat {
    id: String,
    model: String,
    created: u64,
    logprobs: bool,
}

impl ChatFormat {
    fn chunk(&self, choices: Vec<ChatChunkChoice>, usage: Option<Usage>) -> Chunk {
        json_data(&ChatCompletionChunk {
            id: self.id.clone(),
            object: Default::default(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        })
    }

    /// The role is announced with a choice's first content, as vLLM does: clients that
    /// time the first chunk must not see one before prefill has finished.
    fn role(announced: &mut bool) -> Option<Role> {
        (!std::mem::replace(announced, true)).then_some(Role::Assistant)
    }
}

impl ChunkFormat for ChatFormat {
    /// Whether the role was sent yet.
    type State = bool;

    fn text(
        &self,
        run: &ChoiceCtx,
        announced: &mut bool,
        text: String,
        tokens: &[TokenRecord],
    ) -> Option<Chunk> {
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
            vec![ChatChunkChoice {
                index: run.index,
                delta: ChatDelta {
                    role: Self::role(announced),
                    content: Some(text),
                },
                logprobs: lp,
                finish_reason: None,
            }],
            None,
        ))
    }

    fn finish(&self, run: &ChoiceCtx, announced: &mut bool, reason: FinishReason) -> Chunk {
        let role = Self::role(announced);
        self.chunk(
            vec![ChatChunkChoice {
                index: run.index,
                delta: ChatDelta {
                    content: role.map(|_| String::new()),
                    role,
                },
                logprobs: None,
                finish_reason: Some(reason),
            }],
            None,
        )
    }

    fn usage(&self, usage: Usage) -> Chunk {
        self.chunk(Vec::new(), Some(usage))
    }
}

impl EndpointFormat for ChatFormat {
    fn complete(&self, choices: Vec<(ChoiceCtx, Collected)>, usage: Usage) -> Response {
        let choices = choices
            .into_iter()
            .map(|(run, c)| ChatChoice {
                index: run.index,
                message: ChatMessageOut {
                    role: Role::Assistant,
                    content: c.text,
                    refusal: None,
                },
                logprobs: if self.logprobs {
                    run.chat_logprobs(&c.tokens)
                } else {
                    None
                },
                finish_reason: c.finish,
            })
            .collect();
        Json(ChatCompletion {
            id: self.id.clone(),
            object: Default::default(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        })
        .into_response()
    }
}
