//! Requests, parsed from JSON by hand so that every wrong field gets a 400 naming it.
//! Unknown fields are ignored, as OpenAI-compatible servers do.

use crate::error::ApiError;
use serde_json::{Map, Value};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamOptions {
    pub include_usage: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StopSpec {
    None,
    Strings(Vec<String>),
}

/// Fields shared by chat and completions.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingFields {
    pub model: String,
    pub max_tokens: Option<usize>,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
    pub min_p: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub repetition_penalty: f32,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub n: usize,
    pub stream: bool,
    pub stream_options: StreamOptions,
    pub user: Option<String>,
    pub priority: i32,
    pub ignore_eos: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MessageContent {
    Text(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    pub fields: SamplingFields,
    pub messages: Vec<Message>,
    pub logprobs: bool,
    pub top_logprobs: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    Text(Vec<String>),
    Tokens(Vec<Vec<u32>>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct CompletionRequest {
    pub fields: SamplingFields,
    pub prompt: Prompt,
    /// Number of top alternatives per token, when asked.
    pub logprobs: Option<usize>,
    pub echo: bool,
}

pub const MAX_N: usize = 16;
pub const MAX_TOP_LOGPROBS: usize = 20;
pub const MAX_STOP: usize = 4;

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong(field: &str, want: &str, v: &Value) -> ApiError {
    ApiError::invalid(
        field,
        format!("'{field}' must be {want}, got {}", type_name(v)),
    )
}

/// Present and not null.
fn field<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    o.get(k).filter(|v| !v.is_null())
}

fn get_f32(
    o: &Map<String, Value>,
    k: &str,
    lo: f32,
    hi: f32,
    default: f32,
) -> Result<f32, ApiError> {
    match field(o, k) {
        None => Ok(default),
        Some(v) => {
            let x = v.as_f64().ok_or_else(|| wrong(k, "a number", v))? as f32;
            if !(lo..=hi).contains(&x) {
                return Err(ApiError::invalid(
                    k,
                    format!("'{k}' must be between {lo} and {hi}, got {x}"),
                ));
            }
            Ok(x)
        }
    }
}

fn get_uint(o: &Map<String, Value>, k: &str, lo: u64, hi: u64) -> Result<Option<u64>, ApiError> {
    match field(o, k) {
        None => Ok(None),
        Some(v) => {
            let x = v
                .as_u64()
                .ok_or_else(|| wrong(k, "a non-negative integer", v))?;
            if !(lo..=hi).contains(&x) {
                return Err(ApiError::invalid(
                    k,
                    format!("'{k}' must be between {lo} and {hi}, got {x}"),
                ));
            }
            Ok(Some(x))
        }
    }
}

fn get_bool(o: &Map<String, Value>, k: &str) -> Result<bool, ApiError> {
    match field(o, k) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(wrong(k, "a boolean", v)),
    }
}

fn object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object().ok_or_else(|| {
        ApiError::bad_request(format!(
            "the request body must be a JSON object, got {}",
            type_name(body)
        ))
    })
}

impl SamplingFields {
    fn parse(o: &Map<String, Value>) -> Result<Self, ApiError> {
        let model = match field(o, "model") {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => return Err(wrong("model", "a string", v)),
        };
        // max_completion_tokens is the newer name; either is accepted.
        let max_tokens = match get_uint(o, "max_completion_tokens", 1, u32::MAX as u64)? {
            Some(v) => Some(v as usize),
            None => get_uint(o, "max_tokens", 1, u32::MAX as u64)?.map(|v| v as usize),
        };
        let stop = match field(o, "stop") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => {
                if a.len() > MAX_STOP {
                    return Err(ApiError::invalid(
                        "stop",
                        format!("'stop' takes at most {MAX_STOP} sequences"),
                    ));
                }
                a.iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| wrong("stop", "a string or an array of strings", v))
                    })
                    .collect::<Result<_, _>>()?
            }
            Some(v) => return Err(wrong("stop", "a string or an array of strings", v)),
        };
        if stop.iter().any(|s: &String| s.is_empty()) {
            return Err(ApiError::invalid(
                "stop",
                "stop sequences must not be empty",
            ));
        }
        let stream_options = match field(o, "stream_options") {
            None => StreamOptions::default(),
            Some(Value::Object(so)) => StreamOptions {
                include_usage: get_bool(so, "include_usage").map_err(|_| {
                    ApiError::invalid(
                        "stream_options.include_usage",
                        "'stream_options.include_usage' must be a boolean",
                    )
                })?,
            },
            Some(v) => return Err(wrong("stream_options", "an object", v)),
        };
        let user = match field(o, "user") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => return Err(wrong("user", "a string", v)),
        };
        let priority = match field(o, "priority") {
            None => 0,
            Some(v) => v
                .as_i64()
                .filter(|p| i32::try_from(*p).is_ok())
                .ok_or_else(|| wrong("priority", "an integer", v))? as i32,
        };
        let seed = match field(o, "seed") {
            None => None,
            // Negative seeds are accepted (OpenAI allows any integer) and reinterpreted.
            Some(v) => Some(
                v.as_i64()
                    .map(|s| s as u64)
                    .or_else(|| v.as_u64())
                    .ok_or_else(|| wrong("seed", "an integer", v))?,
            ),
        };
        Ok(Self {
            model,
            max_tokens,
            temperature: get_f32(o, "temperature", 0.0, 2.0, 1.0)?,
            top_p: {
                let p = get_f32(o, "top_p", 0.0, 1.0, 1.0)?;
                if p == 0.0 {
                    return Err(ApiError::invalid("top_p", "'top_p' must be greater than 0"));
                }
                p
            },
            top_k: match field(o, "top_k") {
                None => 0,
                // vLLM and llama.cpp use -1 / 0 for "disabled".
                Some(v) if v.as_i64() == Some(-1) => 0,
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| wrong("top_k", "a non-negative integer or -1", v))?
                    as usize,
            },
            min_p: get_f32(o, "min_p", 0.0, 1.0, 0.0)?,
            frequency_penalty: get_f32(o, "frequency_penalty", -2.0, 2.0, 0.0)?,
            presence_penalty: get_f32(o, "presence_penalty", -2.0, 2.0, 0.0)?,
            repetition_penalty: get_f32(o, "repetition_penalty", 0.01, 10.0, 1.0)?,
            seed,
            stop,
            n: get_uint(o, "n", 1, MAX_N as u64)?.unwrap_or(1) as usize,
            stream: get_bool(o, "stream")?,
            stream_options,
            user,
            priority,
            ignore_eos: get_bool(o, "ignore_eos")?,
        })
    }
}

/// Text of a message's `content`: a string, or an array of parts whose text parts are
/// joined. Image parts are refused: the model reads text only.
fn content_text(v: Option<&Value>, at: &str) -> Result<String, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for (j, p) in parts.iter().enumerate() {
                let param = format!("{at}.content[{j}]");
                let kind = p.get("type").and_then(|t| t.as_str()).ok_or_else(|| {
                    ApiError::invalid(&param, format!("'{param}' needs a string 'type'"))
                })?;
                match kind {
                    "text" => out.push_str(p.get("text").and_then(|t| t.as_str()).ok_or_else(|| ApiError::invalid(&param, format!("'{param}' is a text part without a string 'text'")))?),
                    "image_url" | "input_image" | "image" => {
                        return Err(ApiError::invalid(&param, format!("'{param}' is an image, but this model is text-only and cannot read images")).with_code("unsupported_content"))
                    }
                    other => return Err(ApiError::invalid(&param, format!("'{param}' has unsupported part type '{other}'"))),
                }
            }
            Ok(out)
        }
        Some(v) => Err(wrong(
            &format!("{at}.content"),
            "a string or an array of content parts",
            v,
        )),
    }
}

impl ChatRequest {
    pub fn from_json(body: &Value) -> Result<Self, ApiError> {
        let o = object(body)?;
        let fields = SamplingFields::parse(o)?;
        let msgs = match field(o, "messages") {
            None => return Err(ApiError::invalid("messages", "'messages' is required")),
            Some(Value::Array(a)) => a,
            Some(v) => return Err(wrong("messages", "an array", v)),
        };
        if msgs.is_empty() {
            return Err(ApiError::invalid(
                "messages",
                "'messages' must not be empty",
            ));
        }
        let mut messages = Vec::with_capacity(msgs.len());
        for (i, m) in msgs.iter().enumerate() {
            let at = format!("messages[{i}]");
            let mo = m.as_object().ok_or_else(|| wrong(&at, "an object", m))?;
            let role = match mo.get("role") {
                Some(Value::String(r))
                    if ["system", "user", "assistant", "tool", "developer"]
                        .contains(&r.as_str()) =>
                {
                    if r == "developer" {
                        "system".to_string()
                    } else {
                        r.clone()
                    }
                }
                Some(Value::String(r)) => {
                    return Err(ApiError::invalid(
                        &format!("{at}.role"),
                        format!("unknown role '{r}'"),
                    ))
                }
                Some(v) => return Err(wrong(&format!("{at}.role"), "a string", v)),
                None => {
                    return Err(ApiError::invalid(
                        &format!("{at}.role"),
                        format!("'{at}.role' is required"),
                    ))
                }
            };
            messages.push(Message {
                role,
                content: content_text(mo.get("content"), &at)?,
            });
        }
        let logprobs = get_bool(o, "logprobs")?;
        let top_logprobs =
            get_uint(o, "top_logprobs", 0, MAX_TOP_LOGPROBS as u64)?.unwrap_or(0) as usize;
        if top_logprobs > 0 && !logprobs {
            return Err(ApiError::invalid(
                "top_logprobs",
                "'top_logprobs' requires 'logprobs': true",
            ));
        }
        Ok(Self {
            fields,
            messages,
            logprobs,
            top_logprobs,
        })
    }
}

impl CompletionRequest {
    pub fn from_json(body: &Value) -> Result<Self, ApiError> {
        let o = object(body)?;
        let fields = SamplingFields::parse(o)?;
        let bad = || {
            ApiError::invalid("prompt", "'prompt' must be a string, an array of strings, an array of token ids, or an array of token-id arrays")
        };
        let prompt = match field(o, "prompt") {
            None => return Err(ApiError::invalid("prompt", "'prompt' is required")),
            Some(Value::String(s)) => Prompt::Text(vec![s.clone()]),
            Some(Value::Array(a)) if a.is_empty() => {
                return Err(ApiError::invalid("prompt", "'prompt' must not be empty"))
            }
            Some(Value::Array(a)) => {
                if a.iter().all(|v| v.is_string()) {
                    Prompt::Text(
                        a.iter()
                            .map(|v| v.as_str().unwrap_or_default().to_string())
                            .collect(),
                    )
                } else if a.iter().all(|v| v.is_u64()) {
                    Prompt::Tokens(vec![a
                        .iter()
                        .map(|v| v.as_u64().unwrap_or_default() as u32)
                        .collect()])
                } else if a.iter().all(|v| {
                    v.as_array()
                        .is_some_and(|t| !t.is_empty() && t.iter().all(|x| x.is_u64()))
                }) {
                    Prompt::Tokens(
                        a.iter()
                            .map(|v| {
                                v.as_array()
                                    .map(|t| {
                                        t.iter()
                                            .map(|x| x.as_u64().unwrap_or_default() as u32)
                                            .collect()
                                    })
                                    .unwrap_or_default()
                            })
                            .collect(),
                    )
                } else {
                    return Err(bad());
                }
            }
            Some(_) => return Err(bad()),
        };
        let logprobs = get_uint(o, "logprobs", 0, MAX_TOP_LOGPROBS as u64)?.map(|v| v as usize);
        Ok(Self {
            fields,
            prompt,
            logprobs,
            echo: get_bool(o, "echo")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_parses_parts_and_defaults() {
        let r = ChatRequest::from_json(&json!({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"unknown":1})).unwrap();
        assert_eq!(r.messages[0].content, "ab");
        assert_eq!(r.fields.n, 1);
        assert_eq!(r.fields.temperature, 1.0);
    }

    #[test]
    fn wrong_fields_are_named() {
        let e = ChatRequest::from_json(
            &json!({"messages":[{"role":"user","content":"x"}],"temperature":"hot"}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = ChatRequest::from_json(&json!({"messages":[{"role":"user","content":"x"}],"n":0}))
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("n"));
        let e = ChatRequest::from_json(&json!({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]})).unwrap_err();
        assert!(e.message.contains("text-only"));
        assert_eq!(e.status, 400);
        let e = CompletionRequest::from_json(&json!({"prompt": [1, "a"]})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"));
        let e =
            CompletionRequest::from_json(&json!({"prompt": "x", "max_tokens": -3})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
    }

    #[test]
    fn prompts_of_every_shape() {
        assert_eq!(
            CompletionRequest::from_json(&json!({"prompt": "a"}))
                .unwrap()
                .prompt,
            Prompt::Text(vec!["a".into()])
        );
        assert_eq!(
            CompletionRequest::from_json(&json!({"prompt": ["a", "b"]}))
                .unwrap()
                .prompt,
            Prompt::Text(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            CompletionRequest::from_json(&json!({"prompt": [1, 2]}))
                .unwrap()
                .prompt,
            Prompt::Tokens(vec![vec![1, 2]])
        );
        assert_eq!(
            CompletionRequest::from_json(&json!({"prompt": [[1], [2, 3]]}))
                .unwrap()
                .prompt,
            Prompt::Tokens(vec![vec![1], vec![2, 3]])
        );
    }
}
