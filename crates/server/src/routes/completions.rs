use super::{check_model, json_body, ready};
use crate::error::HttpError;
use crate::generation::{self, collect, ChoiceRun, GenSpec};
use crate::ids::{new_id, unix_now};
use crate::sse::{json_event, sse_response, sse_stream, ChunkFormat};
use crate::state::AppState;
use api::{
    ApiError, Completion, CompletionChoice, CompletionLogprobs, CompletionRequest, ErrorType,
    Prompt,
};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::TokenEvent;
use std::sync::Arc;

pub async fn handle(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let req = CompletionRequest::from_json(&json_body(body)?)?;
    check_model(&st, &req.fields.model)?;
    let loaded = ready(&st)?;
    if req.echo {
        return Err(ApiError::invalid("echo", "'echo' is not supported").into());
    }
    let prompts: Vec<Vec<u32>> = match &req.prompt {
        Prompt::Text(texts) => texts
            .iter()
            .map(|t| loaded.tokenizer.encode(t, true, true))
            .collect::<Result<_, _>>()
            .map_err(|e| ApiError::new(500, ErrorType::Server, e.to_string()))?,
        Prompt::Tokens(t) => t.clone(),
    };
    let runs = generation::start(
        loaded,
        &prompts,
        &GenSpec {
            fields: &req.fields,
            logprobs: req.logprobs,
        },
    )?;
    let id = format!("cmpl-{}", new_id());
    let model = st.config.model_id.clone();
    if req.fields.stream {
        let fmt = CompletionFormat {
            id,
            model,
            created: unix_now(),
        };
        let s = sse_stream(
            runs,
            fmt,
            req.fields.stream_options.include_usage,
            req.fields.n,
        );
        return Ok(sse_response(s, st.config.keep_alive));
    }
    let mut runs = runs;
    let results = futures::future::join_all(runs.iter_mut().map(collect)).await;
    let mut choices = Vec::with_capacity(runs.len());
    for (run, res) in runs.iter().zip(results) {
        let c = res?;
        let logprobs = req.logprobs.map(|_| {
            let mut lp = CompletionLogprobs::default();
            let mut off = 0;
            run.completion_logprobs(&c.tokens, &mut off, &mut lp);
            lp
        });
        choices.push(CompletionChoice {
            index: run.index,
            text: c.text,
            logprobs,
            finish_reason: Some(c.finish.to_string()),
        });
    }
    let usage = generation::usage(&runs, req.fields.n);
    Ok(Json(Completion {
        id,
        object: "text_completion".into(),
        created: unix_now(),
        model,
        choices,
        usage: Some(usage),
    })
    .into_response())
}

#[derive(Clone)]
struct CompletionFormat {
    id: String,
    model: String,
    created: u64,
}

impl CompletionFormat {
    fn event(&self, choices: Vec<CompletionChoice>, usage: Option<api::Usage>) -> SseEvent {
        json_event(&Completion {
            id: self.id.clone(),
            object: "text_completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        })
    }
}

impl ChunkFormat for CompletionFormat {
    /// Text offset so far, for the legacy logprobs' `text_offset`.
    type State = usize;

    fn opening(&self, _: &ChoiceRun) -> Option<SseEvent> {
        None
    }

    fn text(
        &self,
        run: &ChoiceRun,
        offset: &mut usize,
        text: String,
        tokens: &[TokenEvent],
    ) -> Option<SseEvent> {
        let wants = tokens.iter().any(|t| t.logprob.is_some());
        if text.is_empty() && !wants {
            return None;
        }
        let logprobs = wants.then(|| {
            let mut lp = CompletionLogprobs::default();
            run.completion_logprobs(tokens, offset, &mut lp);
            lp
        });
        Some(self.event(
            vec![CompletionChoice {
                index: run.index,
                text,
                logprobs,
                finish_reason: None,
            }],
            None,
        ))
    }

    fn finish(&self, run: &ChoiceRun, reason: &str) -> SseEvent {
        self.event(
            vec![CompletionChoice {
                index: run.index,
                text: String::new(),
                logprobs: None,
                finish_reason: Some(reason.to_string()),
            }],
            None,
        )
    }

    fn usage(&self, usage: api::Usage) -> SseEvent {
        self.event(Vec::new(), Some(usage))
    }
}
