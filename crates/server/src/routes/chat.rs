use super::{check_model, json_body, ready};
use crate::error::HttpError;
use crate::generation::{self, collect, ChoiceRun, GenSpec, Piece};
use crate::ids::{new_id, unix_now};
use crate::state::AppState;
use api::{
    ApiError, ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatDelta,
    ChatMessageOut, ChatRequest, ErrorType,
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
        let s = chat_stream(runs, id, model, include_usage, n);
        return Ok(Sse::new(s)
            .keep_alive(
                KeepAlive::new()
                    .interval(st.config.keep_alive)
                    .text("keep-alive"),
            )
            .into_response());
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

fn chunk(id: &str, model: &str, created: u64, choice: ChatChunkChoice) -> SseEvent {
    let c = ChatCompletionChunk {
        id: id.to_string(),
        object: "chat.completion.chunk".into(),
        created,
        model: model.to_string(),
        choices: vec![choice],
        usage: None,
    };
    SseEvent::default().data(serde_json::to_string(&c).unwrap_or_default())
}

fn chat_stream(
    runs: Vec<ChoiceRun>,
    id: String,
    model: String,
    include_usage: bool,
    n: usize,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let created = unix_now();
    let finished = Arc::new(std::sync::Mutex::new(Vec::new()));
    let per_choice = runs.into_iter().map(|run| {
        let (id, model, finished) = (id.clone(), model.clone(), finished.clone());
        let first = chunk(
            &id,
            &model,
            created,
            ChatChunkChoice {
                index: run.index,
                delta: ChatDelta {
                    role: Some("assistant".into()),
                    content: Some(String::new()),
                },
                logprobs: None,
                finish_reason: None,
            },
        );
        stream::once(async move { first })
            .chain(
                stream::unfold(Some(run), move |state| {
                    let (id, model, finished) = (id.clone(), model.clone(), finished.clone());
                    async move {
                        let mut run = state?;
                        match run.next().await {
                            Some(Piece::Text { text, tokens }) => {
                                let lp = if tokens.iter().any(|t| t.logprob.is_some()) {
                                    run.chat_logprobs(&tokens)
                                } else {
                                    None
                                };
                                if text.is_empty() && lp.is_none() {
                                    // Nothing to say yet (a held-back partial character or stop string).
                                    return Some((None, Some(run)));
                                }
                                let ev = chunk(
                                    &id,
                                    &model,
                                    created,
                                    ChatChunkChoice {
                                        index: run.index,
                                        delta: ChatDelta {
                                            role: None,
                                            content: Some(text),
                                        },
                                        logprobs: lp,
                                        finish_reason: None,
                                    },
                                );
                                Some((Some(ev), Some(run)))
                            }
                            Some(Piece::Finish(r)) => {
                                let ev = chunk(
                                    &id,
                                    &model,
                                    created,
                                    ChatChunkChoice {
                                        index: run.index,
                                        delta: ChatDelta::default(),
                                        logprobs: None,
                                        finish_reason: Some(r.to_string()),
                                    },
                                );
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
                .filter_map(|e| async move { e }),
            )
            .boxed()
    });
    let merged = stream::select_all(per_choice);
    let tail = stream::once(async move {
        let mut out = Vec::new();
        if include_usage {
            let mut runs = std::mem::take(&mut *finished.lock().unwrap_or_else(|e| e.into_inner()));
            runs.sort_by_key(|r| r.index);
            let c = ChatCompletionChunk {
                id,
                object: "chat.completion.chunk".into(),
                created,
                model,
                choices: Vec::new(),
                usage: Some(generation::usage(&runs, n)),
            };
            out.push(SseEvent::default().data(serde_json::to_string(&c).unwrap_or_default()));
        }
        out.push(SseEvent::default().data("[DONE]"));
        stream::iter(out)
    })
    .flatten();
    merged.chain(tail).map(Ok)
}
