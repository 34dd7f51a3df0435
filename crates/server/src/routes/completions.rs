use super::{check_model, json_body, ready};
use crate::error::HttpError;
use crate::generation::{self, collect, ChoiceRun, GenSpec, Piece};
use crate::ids::{new_id, unix_now};
use crate::state::AppState;
use api::{
    ApiError, Completion, CompletionChoice, CompletionLogprobs, CompletionRequest, ErrorType,
    Prompt,
};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
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
        let s = completion_stream(
            runs,
            id,
            model,
            req.fields.stream_options.include_usage,
            req.fields.n,
        );
        return Ok(Sse::new(s)
            .keep_alive(
                KeepAlive::new()
                    .interval(st.config.keep_alive)
                    .text("keep-alive"),
            )
            .into_response());
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

fn event(c: &Completion) -> SseEvent {
    SseEvent::default().data(serde_json::to_string(c).unwrap_or_default())
}

fn completion_stream(
    runs: Vec<ChoiceRun>,
    id: String,
    model: String,
    include_usage: bool,
    n: usize,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let created = unix_now();
    let finished = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mk = move |id: &str, model: &str, choice: CompletionChoice| Completion {
        id: id.to_string(),
        object: "text_completion".into(),
        created,
        model: model.to_string(),
        choices: vec![choice],
        usage: None,
    };
    let per_choice = runs.into_iter().map(|run| {
        let (id, model, finished) = (id.clone(), model.clone(), finished.clone());
        stream::unfold(Some((run, 0usize)), move |state| {
            let (id, model, finished) = (id.clone(), model.clone(), finished.clone());
            async move {
                let (mut run, mut offset) = state?;
                match run.next().await {
                    Some(Piece::Text { text, tokens }) => {
                        let wants = tokens.iter().any(|t| t.logprob.is_some());
                        if text.is_empty() && !wants {
                            return Some((None, Some((run, offset))));
                        }
                        let logprobs = wants.then(|| {
                            let mut lp = CompletionLogprobs::default();
                            run.completion_logprobs(&tokens, &mut offset, &mut lp);
                            lp
                        });
                        let ev = event(&mk(
                            &id,
                            &model,
                            CompletionChoice {
                                index: run.index,
                                text,
                                logprobs,
                                finish_reason: None,
                            },
                        ));
                        Some((Some(ev), Some((run, offset))))
                    }
                    Some(Piece::Finish(r)) => {
                        let ev = event(&mk(
                            &id,
                            &model,
                            CompletionChoice {
                                index: run.index,
                                text: String::new(),
                                logprobs: None,
                                finish_reason: Some(r.to_string()),
                            },
                        ));
                        finished.lock().unwrap_or_else(|e| e.into_inner()).push(run);
                        Some((Some(ev), None))
                    }
                    Some(Piece::Error(e)) => {
                        let body = ApiError::new(500, ErrorType::Server, e).body();
                        Some((
                            Some(
                                SseEvent::default()
                                    .data(serde_json::to_string(&body).unwrap_or_default()),
                            ),
                            None,
                        ))
                    }
                    None => None,
                }
            }
        })
        .filter_map(|e| async move { e })
        .boxed()
    });
    let merged = stream::select_all(per_choice);
    let tail = stream::once(async move {
        let mut out = Vec::new();
        if include_usage {
            let mut runs = std::mem::take(&mut *finished.lock().unwrap_or_else(|e| e.into_inner()));
            runs.sort_by_key(|r| r.index);
            let c = Completion {
                id,
                object: "text_completion".into(),
                created,
                model,
                choices: Vec::new(),
                usage: Some(generation::usage(&runs, n)),
            };
            out.push(event(&c));
        }
        out.push(SseEvent::default().data("[DONE]"));
        stream::iter(out)
    })
    .flatten();
    merged.chain(tail).map(Ok)
}
