//! The tokenizer's own endpoints: vLLM's `POST /tokenize` and `POST /detokenize`, and
//! llama.cpp server's `POST /apply-template` (messages → the rendered prompt).

use crate::error::ApiError;
use crate::request::{field, wrong, Message};
use crate::ToolFields;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// What to tokenize: a text, or a conversation rendered by the chat template.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenizeInput {
    Prompt(String),
    Chat {
        messages: Vec<Message>,
        tools: ToolFields,
        add_generation_prompt: bool,
    },
}

/// `POST /tokenize`: `{"prompt": "..."}` or `{"messages": [...]}` (with `tools`,
/// `add_generation_prompt`), `add_special_tokens`, `return_token_strs`.
#[derive(Clone, Debug, PartialEq, ToSchema)]
pub struct TokenizeRequest {
    pub model: String,
    #[schema(value_type = Object)]
    pub input: TokenizeInput,
    /// Default: true for a prompt (the BOS the model expects), false for messages (the
    /// template writes its own).
    pub add_special_tokens: bool,
    pub return_token_strs: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct TokenizeResponse {
    pub count: usize,
    pub max_model_len: usize,
    pub tokens: Vec<u32>,
    /// Each token's piece as the vocabulary spells it, when asked.
    pub token_strs: Option<Vec<String>>,
}

/// `POST /detokenize`: `{"tokens": [...]}`.
#[derive(Clone, Debug, PartialEq, ToSchema)]
pub struct DetokenizeRequest {
    pub model: String,
    pub tokens: Vec<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct PromptResponse {
    pub prompt: String,
}

fn object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))
}

fn model(o: &Map<String, Value>) -> Result<String, ApiError> {
    match field(o, "model") {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(wrong("model", "a string", v)),
    }
}

fn flag(o: &Map<String, Value>, k: &str, default: bool) -> Result<bool, ApiError> {
    match field(o, k) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(wrong(k, "a boolean", v)),
    }
}

/// A conversation's messages and tools, as chat reads them.
fn chat(o: &Map<String, Value>) -> Result<(Vec<Message>, ToolFields), ApiError> {
    crate::unsupported::refuse_template_fields(o)?;
    let msgs = match field(o, "messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid(
                "messages",
                "'messages' must not be empty",
            ))
        }
        Some(v) => return Err(wrong("messages", "an array", v)),
        None => return Err(ApiError::invalid("messages", "'messages' is required")),
    };
    Ok((crate::messages::parse(msgs)?, crate::tools::parse(o)?))
}

impl TokenizeRequest {
    pub fn from_json(body: &Value) -> Result<Self, ApiError> {
        let o = object(body)?;
        let input = match (field(o, "prompt"), field(o, "messages")) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "messages",
                    "send either 'prompt' or 'messages', not both",
                ))
            }
            (Some(Value::String(p)), None) => TokenizeInput::Prompt(p.clone()),
            (Some(v), None) => return Err(wrong("prompt", "a string", v)),
            (None, Some(_)) => {
                let (messages, tools) = chat(o)?;
                TokenizeInput::Chat {
                    messages,
                    tools,
                    add_generation_prompt: flag(o, "add_generation_prompt", true)?,
                }
            }
            (None, None) => {
                return Err(ApiError::invalid(
                    "prompt",
                    "'prompt' (a string) or 'messages' is required",
                ))
            }
        };
        let chat = matches!(input, TokenizeInput::Chat { .. });
        Ok(Self {
            model: model(o)?,
            add_special_tokens: flag(o, "add_special_tokens", !chat)?,
            return_token_strs: flag(o, "return_token_strs", false)?,
            input,
        })
    }
}

impl DetokenizeRequest {
    pub fn from_json(body: &Value) -> Result<Self, ApiError> {
        let o = object(body)?;
        let bad = || ApiError::invalid("tokens", "'tokens' must be an array of token ids");
        let tokens = match field(o, "tokens") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|t| {
                    t.as_u64()
                        .filter(|&t| t <= u32::MAX as u64)
                        .map(|t| t as u32)
                        .ok_or_else(bad)
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(bad()),
            None => return Err(ApiError::invalid("tokens", "'tokens' is required")),
        };
        Ok(Self {
            model: model(o)?,
            tokens,
        })
    }
}

/// `POST /apply-template`: the messages (and tools) only.
pub fn apply_template_input(body: &Value) -> Result<(Vec<Message>, ToolFields), ApiError> {
    chat(object(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokenize_requests_read_like_vllm() {
        let r = TokenizeRequest::from_json(&json!({"prompt": "hi"})).unwrap();
        assert_eq!(r.input, TokenizeInput::Prompt("hi".into()));
        assert!(r.add_special_tokens && !r.return_token_strs);
        let r = TokenizeRequest::from_json(
            &json!({"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": false}),
        )
        .unwrap();
        assert!(!r.add_special_tokens);
        assert!(matches!(
            r.input,
            TokenizeInput::Chat {
                add_generation_prompt: false,
                ..
            }
        ));
        for (body, param) in [
            (json!({}), "prompt"),
            (json!({"prompt": 3}), "prompt"),
            (json!({"prompt": "a", "messages": []}), "messages"),
            (json!({"messages": []}), "messages"),
            (
                json!({"prompt": "a", "return_token_strs": "yes"}),
                "return_token_strs",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "chat_template": "{{x}}"}),
                "chat_template",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "continue_final_message": true}),
                "continue_final_message",
            ),
        ] {
            let e = TokenizeRequest::from_json(&body).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
        assert_eq!(
            DetokenizeRequest::from_json(&json!({"tokens": [1, 2]}))
                .unwrap()
                .tokens,
            vec![1, 2]
        );
        for body in [json!({}), json!({"tokens": [-1]}), json!({"tokens": "1"})] {
            assert_eq!(
                DetokenizeRequest::from_json(&body)
                    .unwrap_err()
                    .param
                    .as_deref(),
                Some("tokens")
            );
        }
    }
}
