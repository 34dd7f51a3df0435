use crate::answer::{AnswerReader, AnswerShape, Said};
use crate::choice::{ChoiceCtx, Collected};
use crate::error::HttpError;
use crate::ids::{new_id, unix_now};
use crate::reply::EndpointFormat;
use crate::service::{generate, GenerationInput, PromptSource};
use crate::sse::{json_data, Chunk, ChunkFormat};
use crate::state::AppState;
use crate::tools::ToolSyntax;
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
    let tools = req
        .tools
        .active()
        .then(|| crate::routes::ready(&st).ok()?.template.as_ref())
        .flatten()
        .map(|t| ToolSyntax::detect(t.source()));
    let fmt = ChatFormat {
        id: format!("chatcmpl-{}", new_id()),
        model: st.config.model_id.clone(),
        created: unix_now(),
        logprobs: req.logprobs,
        shape: AnswerShape {
            reasoning: st.config.reasoning_parser,
            tools,
        },
    };
    let input = GenerationInput {
        endpoint: "chat",
        source: PromptSource::Chat {
            messages: req.messages,
            tools: req.tools,
        },
        fields: req.fields,
        logprobs,
        tag: crate::trace::tag(&parts.extensions),
        ids: parts.extensions.get::<crate::trace::RequestIds>().cloned(),
        class: crate::batch_lines::class_of(&parts.extensions),
    };
    Ok(generate(&st, &parts.headers, input, fmt).await?)
}

#[derive(Clone)]
struct ChatFormat {
    id: String,
    model: String,
    created: u64,
    logprobs: bool,
    shape: AnswerShape,
}

/// Per choice: whether the role was announced, and the reader of its answer.
#[derive(Default)]
struct ChoiceState {
    announced: bool,
    reader: AnswerReader,
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

    fn delta(st: &mut ChoiceState, said: Said) -> ChatDelta {
        let some = |s: String| (!s.is_empty()).then_some(s);
        ChatDelta {
            role: Self::role(&mut st.announced),
            content: some(said.content),
            reasoning_content: some(said.reasoning),
            tool_calls: said.calls,
        }
    }
}

impl ChunkFormat for ChatFormat {
    type State = ChoiceState;

    fn text(
        &self,
        run: &ChoiceCtx,
        st: &mut ChoiceState,
        text: String,
        tokens: &[TokenRecord],
    ) -> Option<Chunk> {
        let lp = if tokens.iter().any(|t| t.logprob.is_some()) {
            run.chat_logprobs(tokens)
        } else {
            None
        };
        let said = st.reader.read(self.shape, &text, false);
        if said.content.is_empty()
            && said.reasoning.is_empty()
            && said.calls.is_empty()
            && lp.is_none()
        {
            // Nothing to say yet (a held-back partial character, stop string or tag).
            return None;
        }
        Some(self.chunk(
            vec![ChatChunkChoice {
                index: run.index,
                delta: Self::delta(st, said),
                logprobs: lp,
                finish_reason: None,
            }],
            None,
        ))
    }

    fn finish(&self, run: &ChoiceCtx, st: &mut ChoiceState, reason: FinishReason) -> Chunk {
        let said = st.reader.read(self.shape, "", true);
        let announce = !st.announced;
        let mut delta = Self::delta(st, said);
        if announce && delta.content.is_none() {
            delta.content = Some(String::new());
        }
        let reason = match reason {
            FinishReason::Stop if st.reader.called() => FinishReason::ToolCalls,
            r => r,
        };
        self.chunk(
            vec![ChatChunkChoice {
                index: run.index,
                delta,
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
            .map(|(run, c)| {
                let mut reader = AnswerReader::default();
                let said = reader.read(self.shape, &c.text, true);
                let tool_calls = reader.tool_calls();
                // `null` beside calls or thinking when there is no answer text.
                let others = !tool_calls.is_empty() || !said.reasoning.is_empty();
                let content = if others && said.content.trim().is_empty() {
                    None
                } else {
                    Some(said.content)
                };
                let finish = match c.finish {
                    FinishReason::Stop if reader.called() => FinishReason::ToolCalls,
                    r => r,
                };
                ChatChoice {
                    index: run.index,
                    message: ChatMessageOut {
                        role: Role::Assistant,
                        content,
                        refusal: None,
                        tool_calls,
                        reasoning_content: (!said.reasoning.is_empty()).then_some(said.reasoning),
                    },
                    logprobs: if self.logprobs {
                        run.chat_logprobs(&c.tokens)
                    } else {
                        None
                    },
                    finish_reason: finish,
                }
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
