//! The tokenizer over HTTP: `/tokenize` and `/detokenize` in vLLM's shapes, and
//! `/apply-template` as llama.cpp's server has it. The same rendering and encoding the
//! generation endpoints use, on the blocking pool (a long conversation must not stall
//! the async workers).

use crate::error::HttpError;
use crate::service::render_chat;
use crate::state::AppState;
use api::{
    ApiError, DetokenizeRequest, ErrorType, PromptResponse, TokenizeInput, TokenizeRequest,
    TokenizeResponse,
};
use axum::extract::{Request, State};
use axum::Json;
use std::sync::Arc;

async fn body(st: &AppState, req: Request) -> Result<serde_json::Value, HttpError> {
    let (_, body) = req.into_parts();
    Ok(crate::body::read_json(body, st.config.max_body_bytes).await?)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(500, ErrorType::Server, format!("tokenizing failed: {e}")))?
}

fn server(e: tokenizer::Error) -> ApiError {
    ApiError::new(500, ErrorType::Server, e.to_string())
}

/// Token ids of a text or of a rendered conversation.
#[utoipa::path(post, path = "/tokenize", tag = "tokenizer",
    request_body(content = Object, description = "`prompt` (a string) or `messages` (with `tools`, `add_generation_prompt`); `add_special_tokens`, `return_token_strs`"),
    responses((status = 200, body = TokenizeResponse), super::GenerationErrors),
    security((), ("bearer" = [])))]
pub async fn tokenize(
    State(st): State<Arc<AppState>>,
    req: Request,
) -> Result<Json<TokenizeResponse>, HttpError> {
    let r = TokenizeRequest::from_json(&body(&st, req).await?)?;
    crate::routes::check_model(&st, &r.model)?;
    let loaded = crate::routes::ready(&st)?;
    let (tok, template) = (loaded.tokenizer.clone(), loaded.template.clone());
    let max_model_len = loaded.engine.context_length();
    let out = blocking(move || {
        let text = match &r.input {
            TokenizeInput::Prompt(p) => p.clone(),
            TokenizeInput::Chat {
                messages,
                tools,
                add_generation_prompt,
            } => render_chat(template.as_deref(), messages, tools, *add_generation_prompt)?,
        };
        // Special tokens in the text are parsed, as the generation endpoints parse them.
        let tokens = tok
            .encode(&text, r.add_special_tokens, true)
            .map_err(server)?;
        let token_strs = r.return_token_strs.then(|| {
            tokens
                .iter()
                .map(|&t| tok.token_text(t).unwrap_or_default().to_string())
                .collect()
        });
        Ok(TokenizeResponse {
            count: tokens.len(),
            max_model_len,
            tokens,
            token_strs,
        })
    })
    .await?;
    Ok(Json(out))
}

/// The text of token ids.
#[utoipa::path(post, path = "/detokenize", tag = "tokenizer",
    request_body(content = Object, description = "`tokens`: an array of token ids"),
    responses((status = 200, body = PromptResponse), super::GenerationErrors),
    security((), ("bearer" = [])))]
pub async fn detokenize(
    State(st): State<Arc<AppState>>,
    req: Request,
) -> Result<Json<PromptResponse>, HttpError> {
    let r = DetokenizeRequest::from_json(&body(&st, req).await?)?;
    crate::routes::check_model(&st, &r.model)?;
    let tok = crate::routes::ready(&st)?.tokenizer.clone();
    let n = tok.vocab_size();
    if let Some((i, t)) = r.tokens.iter().enumerate().find(|(_, &t)| t as usize >= n) {
        return Err(ApiError::invalid(
            "tokens",
            format!("tokens[{i}] is {t}, but the vocabulary has {n} tokens"),
        )
        .into());
    }
    let prompt = blocking(move || tok.decode(&r.tokens).map_err(server)).await?;
    Ok(Json(PromptResponse { prompt }))
}

/// The prompt the chat template renders for these messages (and tools), generation
/// prompt included.
#[utoipa::path(post, path = "/apply-template", tag = "tokenizer",
    request_body(content = Object, description = "`messages` (and `tools`), as chat takes them"),
    responses((status = 200, body = PromptResponse), super::GenerationErrors),
    security((), ("bearer" = [])))]
pub async fn apply_template(
    State(st): State<Arc<AppState>>,
    req: Request,
) -> Result<Json<PromptResponse>, HttpError> {
    let (messages, tools) = api::apply_template_input(&body(&st, req).await?)?;
    let template = crate::routes::ready(&st)?.template.clone();
    let prompt =
        blocking(move || render_chat(template.as_deref(), &messages, &tools, true)).await?;
    Ok(Json(PromptResponse { prompt }))
}
