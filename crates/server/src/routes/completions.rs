use crate::choice::{ChoiceCtx, Collected};
use crate::error::HttpError;
use crate::ids::{new_id, unix_now};
use crate::reply::EndpointFormat;
use crate::service::{generate, GenerationInput, PromptSource};
use crate::sse::{json_data, Chunk, ChunkFormat};
use crate::state::AppState;
use api::{
    Completion, CompletionChoice, CompletionLogprobs, CompletionRequest, FinishReason, Prompt,
    Usage,
};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cache::TokenRecord;
use std::sync::Arc;

/// Creates a text completion (prompt as text, texts, token ids, or arrays of token ids).
#[utoipa::path(post, path = "/v1/completions", tag = "generation",
    request_body = CompletionRequest,
    responses(
        (status = 200, description = "The completion (JSON), or its chunks as server-sent events when `stream` is true", content(
            (Completion = "application/json"),
            (api::StreamEvent = "text/event-stream"))),
        super::GenerationErrors,
    ),
    security((), ("bearer" = [])))]
pub async fn handle(State(st): State<Arc<AppState>>, req: Request) -> Result<Response, HttpError> {
    let (parts, body) = req.into_parts();
    let body = crate::body::read_json(body, st.config.max_body_bytes).await?;
    let req = CompletionRequest::from_json(&body)?;
    let source = match req.prompt {
        Prompt::Text(t) => PromptSource::Texts(t),
        Prompt::Tokens(t) => PromptSource::Tokens(t),
    };
    let fmt = CompletionFormat {
        id: format!("cmpl-{}", new_id()),
        model: st.config.model_id.clone(),
        created: unix_now(),
        logprobs: req.logprobs.is_some(),
    };
    let input = GenerationInput {
        endpoint: "completions",
        source,
        fields: req.fields,
        logprobs: req.logprobs,
        tag: crate::trace::tag(&parts.extensions),
        ids: parts.extensions.get::<crate::trace::RequestIds>().cloned(),
        class: crate::batch_lines::class_of(&parts.extensions),
    };
    Ok(generate(&st, &parts.headers, input, fmt).await?)
}

#[derive(Clone)]
struct CompletionFormat {
    id: String,
    model: String,
    created: u64,
    logprobs: bool,
}

impl CompletionFormat {
    fn body(&self, choices: Vec<CompletionChoice>, usage: Option<Usage>) -> Completion {
        Completion {
            id: self.id.clone(),
            object: Default::default(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        }
    }
}

impl ChunkFormat for CompletionFormat {
    /// Text offset so far, for the legacy logprobs' `text_offset`.
    type State = usize;

    fn text(
        &self,
        run: &ChoiceCtx,
        offset: &mut usize,
        text: String,
        tokens: &[TokenRecord],
    ) -> Option<Chunk> {
        let wants = tokens.iter().any(|t| t.logprob.is_some());
        if text.is_empty() && !wants {
            return None;
        }
        let logprobs = wants.then(|| {
            let mut lp = CompletionLogprobs::default();
            run.completion_logprobs(tokens, offset, &mut lp);
            lp
        });
        Some(json_data(&self.body(
            vec![CompletionChoice {
                index: run.index,
                text,
                logprobs,
                finish_reason: None,
            }],
            None,
        )))
    }

    fn finish(&self, run: &ChoiceCtx, _: &mut usize, reason: FinishReason) -> Chunk {
        json_data(&self.body(
            vec![CompletionChoice {
                index: run.index,
                text: String::new(),
                logprobs: None,
                finish_reason: Some(reason),
            }],
            None,
        ))
    }

    fn usage(&self, usage: Usage) -> Chunk {
        json_data(&self.body(Vec::new(), Some(usage)))
    }
}

impl EndpointFormat for CompletionFormat {
    fn complete(&self, choices: Vec<(ChoiceCtx, Collected)>, usage: Usage) -> Response {
        let choices = choices
            .into_iter()
            .map(|(run, c)| {
                let logprobs = self.logprobs.then(|| {
                    let mut lp = CompletionLogprobs::default();
                    let mut off = 0;
                    run.completion_logprobs(&c.tokens, &mut off, &mut lp);
                    lp
                });
                CompletionChoice {
                    index: run.index,
                    text: c.text,
                    logprobs,
                    finish_reason: Some(c.finish),
                }
            })
            .collect();
        Json(self.body(choices, Some(usage))).into_response()
    }
}
