//! Requests. Parsing is by hand (`from_json`) so that every wrong field gets a 400
//! naming it, and serde's `Deserialize` goes through the same parser, so a client, a
//! batch file and the server all read a request the same way. `Serialize` writes
//! OpenAI's wire shape. Unknown fields are ignored, as OpenAI-compatible servers do;
//! known fields whose contract autoglm does not implement are refused (see
//! [`crate::UNSUPPORTED_FIELDS`]).

use crate::error::ApiError;
use crate::unsupported::{refuse_chat_only, refuse_unsupported};
use crate::{ToolCall, ToolFields};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Fields shared by chat and completions.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct SamplingFields {
    #[serde(default)]
    pub model: String,
    /// Absent: the rest of the context. `max_completion_tokens` is accepted as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_tokens: Option<usize>,
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: f32,
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub top_p: f32,
    /// 0 (or -1 on input) disables.
    pub top_k: usize,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub min_p: f32,
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub frequency_penalty: f32,
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub presence_penalty: f32,
    #[schema(minimum = 0.01, maximum = 10.0)]
    pub repetition_penalty: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Up to 4 strings (a single string is accepted too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 4)]
    pub stop: Vec<String>,
    #[schema(minimum = 1, maximum = 16)]
    pub n: usize,
    pub stream: bool,
    #[serde(default, skip_serializing_if = "is_default_stream_options")]
    pub stream_options: StreamOptions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Lower runs first.
    pub priority: i32,
    pub ignore_eos: bool,
    /// Token id (as a string) to a bias in [-100, 100] added to its logit.
    #[serde(
        default,
        serialize_with = "serialize_logit_bias",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schema(value_type = Option<std::collections::HashMap<String, f32>>)]
    pub logit_bias: Vec<(u32, f32)>,
    /// Response cache: `true` caches even a sampled request without a seed, `false`
    /// neither reads nor writes; absent, only deterministic requests (temperature 0 or a
    /// `seed`) are cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    /// Partitions the response cache (and nothing else): requests with different salts
    /// never share an entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub cache_salt: Option<String>,
    /// What the output must match (`response_format`, `structured_outputs` or the
    /// `guided_*` fields on input), enforced while decoding.
    #[serde(
        default,
        rename = "structured_outputs",
        skip_serializing_if = "Option::is_none"
    )]
    pub structured: Option<crate::Structured>,
}

fn is_default_stream_options(s: &StreamOptions) -> bool {
    *s == StreamOptions::default()
}

fn serialize_logit_bias<S: serde::Serializer>(v: &[(u32, f32)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(v.len()))?;
    for (t, b) in v {
        m.serialize_entry(&t.to_string(), b)?;
    }
    m.end()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `developer` on input is read as `system`.
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }
}

/// A text part of a message's content (image parts are refused: text-only models).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TextPart {
    #[schema(value_type = String, pattern = "^text$")]
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
}

/// A message's content as sent: a string or an array of text parts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<TextPart>),
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Message {
    pub role: Role,
    /// Text parts are joined; `null` only on an assistant message.
    #[schema(value_type = MessageContent)]
    pub content: String,
    /// The calls an assistant message made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ChatRequest {
    #[serde(flatten)]
    pub fields: SamplingFields,
    #[schema(min_items = 1)]
    pub messages: Vec<Message>,
    #[serde(flatten)]
    pub tools: ToolFields,
    pub logprobs: bool,
    #[schema(minimum = 0, maximum = 20)]
    pub top_logprobs: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Prompt {
    Text(Vec<String>),
    Tokens(Vec<Vec<u32>>),
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct CompletionRequest {
    #[serde(flatten)]
    pub fields: SamplingFields,
    pub prompt: Prompt,
    /// Number of top alternatives per token, when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 20)]
    pub logprobs: Option<usize>,
}

macro_rules! deserialize_via_from_json {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = Value::deserialize(d)?;
                Self::from_json(&v).map_err(|e| serde::de::Error::custom(e.message))
            }
        }
    };
}
deserialize_via_from_json!(ChatRequest);
deserialize_via_from_json!(CompletionRequest);

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

fn parse_logit_bias(o: &Map<String, Value>) -> Result<Vec<(u32, f32)>, ApiError> {
    let Some(v) = field(o, "logit_bias") else {
        return Ok(Vec::new());
    };
    let m = v
        .as_object()
        .ok_or_else(|| wrong("logit_bias", "an object of token ids to numbers", v))?;
    if m.len() > 1024 {
        return Err(ApiError::invalid(
            "logit_bias",
            "'logit_bias' takes at most 1024 tokens",
        ));
    }
    let mut out = Vec::with_capacity(m.len());
    for (k, b) in m {
        let t: u32 = k.parse().map_err(|_| {
            ApiError::invalid(
                "logit_bias",
                format!("'logit_bias' keys must be token ids, got '{k}'"),
            )
        })?;
        let x = b
            .as_f64()
            .filter(|x| (-100.0..=100.0).contains(x))
            .ok_or_else(|| {
                ApiError::invalid(
                    "logit_bias",
                    format!("'logit_bias' values must be numbers in [-100, 100], got {b}"),
                )
            })?;
        out.push((t, x as f32));
    }
    out.sort_by_key(|p| p.0);
    // "1" and "01" name the same token: one bias per token.
    if let Some(w) = out.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(ApiError::invalid(
            "logit_bias",
            format!("'logit_bias' names token {} twice", w[0].0),
        ));
    }
    Ok(out)
}

impl SamplingFields {
    fn parse(o: &Map<String, Value>) -> Result<Self, ApiError> {
        refuse_unsupported(o)?;
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
        let cache = match field(o, "cache") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(v) => return Err(wrong("cache", "a boolean", v)),
        };
        let cache_salt = match field(o, "cache_salt") {
            None => None,
            Some(Value::String(s)) if s.len() <= 256 => Some(s.clone()),
            Some(Value::String(_)) => {
                return Err(ApiError::invalid(
                    "cache_salt",
                    "'cache_salt' is at most 256 bytes",
                ))
            }
            Some(v) => return Err(wrong("cache_salt", "a string", v)),
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
            logit_bias: parse_logit_bias(o)?,
            cache,
            cache_salt,
            structured: crate::structured::parse(o)?,
        })
    }
}

/// Text of a message's `content`: a string, or an array of parts whose text parts are
/// joined. Image parts are refused: the model reads text only. Only an assistant
/// message may leave it out (OpenAI allows that beside tool calls).
fn content_text(v: Option<&Value>, at: &str, role: Role) -> Result<String, ApiError> {
    match v {
        None | Some(Value::Null) if role == Role::Assistant => Ok(String::new()),
        None | Some(Value::Null) => Err(ApiError::invalid(
            &format!("{at}.content"),
            format!("'{at}.content' is required on a {} message", role.as_str()),
        )),
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
                Some(Value::String(r)) if matches!(r.as_str(), "system" | "developer") => {
                    Role::System
                }
                Some(Value::String(r)) if r == "user" => Role::User,
                Some(Value::String(r)) if r == "assistant" => Role::Assistant,
                Some(Value::String(r)) if r == "tool" => Role::Tool,
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
            if mo.get("function_call").is_some_and(|v| !v.is_null()) {
                return Err(ApiError::invalid(
                    &format!("{at}.function_call"),
                    format!("'{at}.function_call' is the deprecated form; send 'tool_calls'"),
                )
                .with_code("unsupported_parameter"));
            }
            let tool_calls = match field(mo, "tool_calls") {
                None => Vec::new(),
                Some(v) if role == Role::Assistant => crate::tools::parse_calls(&at, v)?,
                Some(_) => {
                    return Err(ApiError::invalid(
                        &format!("{at}.tool_calls"),
                        format!("'{at}.tool_calls' is only for assistant messages"),
                    ))
                }
            };
            let tool_call_id = match (role, field(mo, "tool_call_id")) {
                (Role::Tool, Some(Value::String(id))) => {
                    // A tool message answers a call made earlier in the conversation.
                    let asked = messages
                        .iter()
                        .any(|m: &Message| m.tool_calls.iter().any(|c| &c.id == id));
                    if !asked {
                        return Err(ApiError::invalid(
                            &format!("{at}.tool_call_id"),
                            format!("'{at}.tool_call_id' is '{id}', but no earlier assistant message made a call with that id"),
                        ));
                    }
                    Some(id.clone())
                }
                (Role::Tool, _) => {
                    return Err(ApiError::invalid(
                        &format!("{at}.tool_call_id"),
                        format!("'{at}.tool_call_id' (a string) is required on a tool message"),
                    ))
                }
                _ => None,
            };
            messages.push(Message {
                role,
                content: content_text(mo.get("content"), &at, role)?,
                tool_calls,
                tool_call_id,
            });
        }
        let tools = crate::tools::parse(o)?;
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
            tools,
            logprobs,
            top_logprobs,
        })
    }
}

/// A token id: a non-negative integer that fits in 32 bits (larger ones are not wrapped).
fn is_token_id(v: &Value) -> bool {
    v.as_u64().is_some_and(|t| t <= u32::MAX as u64)
}

fn token_id(v: &Value) -> u32 {
    v.as_u64().unwrap_or_default() as u32
}

impl CompletionRequest {
    pub fn from_json(body: &Value) -> Result<Self, ApiError> {
        let o = object(body)?;
        refuse_chat_only(o)?;
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
                } else if a.iter().all(is_token_id) {
                    Prompt::Tokens(vec![a.iter().map(token_id).collect()])
                } else if a.iter().all(|v| {
                    v.as_array()
                        .is_some_and(|t| !t.is_empty() && t.iter().all(is_token_id))
                }) {
                    Prompt::Tokens(
                        a.iter()
                            .map(|v| {
                                v.as_array()
                                    .map(|t| t.iter().map(token_id).collect())
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
    fn requests_round_trip_through_serde() {
        let chat = json!({"model":"m","messages":[{"role":"developer","content":"s"},{"role":"user","content":[{"type":"text","text":"hi"}]},{"role":"assistant","content":null}],
            "max_tokens":5,"temperature":0.5,"stop":"x","seed":-3,"logit_bias":{"12":-100,"7":2.5},"stream":true,"stream_options":{"include_usage":true},"logprobs":true,"top_logprobs":2,"priority":-1});
        let r = ChatRequest::from_json(&chat).unwrap();
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(r.fields.logit_bias, vec![(7, 2.5), (12, -100.0)]);
        let wire = serde_json::to_value(&r).unwrap();
        assert_eq!(wire["logit_bias"]["12"], json!(-100.0));
        assert_eq!(
            wire["messages"][2],
            json!({"role":"assistant","content":""})
        );
        assert_eq!(ChatRequest::from_json(&wire).unwrap(), r);
        assert_eq!(serde_json::from_value::<ChatRequest>(wire).unwrap(), r);
        let c = CompletionRequest::from_json(&json!({"prompt":[[1,2],[3]],"n":2,"logprobs":3}))
            .unwrap();
        let wire = serde_json::to_value(&c).unwrap();
        assert_eq!(wire["prompt"], json!([[1, 2], [3]]));
        assert_eq!(
            serde_json::from_value::<CompletionRequest>(wire).unwrap(),
            c
        );
        // Deserialize is the validating parser: a wrong field fails the same way.
        let e = serde_json::from_value::<ChatRequest>(json!({"messages": []})).unwrap_err();
        assert!(e.to_string().contains("must not be empty"), "{e}");
    }

    #[test]
    fn output_constraints_are_read_from_every_spelling_and_one_at_a_time() {
        use crate::Structured as S;
        let base = || json!({"messages":[{"role":"user","content":"x"}]});
        let schema = json!({"type":"object","properties":{"a":{"type":"integer"}}});
        for (k, v, want) in [
            (
                "response_format",
                json!({"type":"json_object"}),
                Some(S::JsonObject),
            ),
            ("response_format", json!({"type":"text"}), None),
            (
                "response_format",
                json!({"type":"json_schema","json_schema":{"name":"x","schema":schema,"strict":true}}),
                Some(S::JsonSchema(schema.clone())),
            ),
            (
                "structured_outputs",
                json!({"json": schema}),
                Some(S::JsonSchema(schema.clone())),
            ),
            (
                "structured_outputs",
                json!({"json": schema.to_string()}),
                Some(S::JsonSchema(schema.clone())),
            ),
            (
                "structured_outputs",
                json!({"regex": "[0-9]+"}),
                Some(S::Regex("[0-9]+".into())),
            ),
            (
                "structured_outputs",
                json!({"choice": ["a", "b"]}),
                Some(S::Choice(vec!["a".into(), "b".into()])),
            ),
            (
                "structured_outputs",
                json!({"grammar": "start: \"x\""}),
                Some(S::Grammar("start: \"x\"".into())),
            ),
            (
                "structured_outputs",
                json!({"json_object": true}),
                Some(S::JsonObject),
            ),
            (
                "guided_choice",
                json!(["yes", "no"]),
                Some(S::Choice(vec!["yes".into(), "no".into()])),
            ),
        ] {
            let mut b = base();
            b[k] = v;
            let r = ChatRequest::from_json(&b).unwrap_or_else(|e| panic!("{k}: {e:?}"));
            assert_eq!(r.fields.structured, want, "{k}");
            // The wire shape reads back the same.
            let back = ChatRequest::from_json(&serde_json::to_value(&r).unwrap()).unwrap();
            assert_eq!(back.fields.structured, want, "{k}");
        }
        for (extra, param) in [
            (
                json!({"response_format": {"type": "xml"}}),
                "response_format.type",
            ),
            (
                json!({"response_format": {"type": "json_schema"}}),
                "response_format.json_schema",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"schema": 3}}}),
                "response_format.json_schema.schema",
            ),
            (
                json!({"structured_outputs": {"regex": ""}}),
                "structured_outputs.regex",
            ),
            (
                json!({"structured_outputs": {"choice": []}}),
                "structured_outputs.choice",
            ),
            (
                json!({"structured_outputs": {"structural_tag": "x"}}),
                "structured_outputs.structural_tag",
            ),
            (
                json!({"structured_outputs": {"regex": "a", "choice": ["a"]}}),
                "structured_outputs",
            ),
            (
                json!({"response_format": {"type": "json_object"}, "guided_regex": "a"}),
                "guided_regex",
            ),
        ] {
            let mut b = base();
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            let e = ChatRequest::from_json(&b).unwrap_err();
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some(param)),
                "{extra}"
            );
        }
    }

    #[test]
    fn unimplemented_contracts_are_refused_by_name() {
        let base = || json!({"messages":[{"role":"user","content":"x"}]});
        for (k, v) in [
            ("functions", json!([{"name":"f"}])),
            ("best_of", json!(2)),
            ("suffix", json!("tail")),
            ("echo", json!(true)),
            ("min_tokens", json!(5)),
            ("stop_token_ids", json!([2])),
            ("reasoning_effort", json!("high")),
            ("store", json!(true)),
            ("chat_template", json!("{{ x }}")),
        ] {
            let mut b = base();
            b[k] = v;
            let e = ChatRequest::from_json(&b).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some(k)), "{k}");
            assert_eq!(e.code.as_deref(), Some("unsupported_parameter"));
        }
        for (k, v) in [
            ("tools", json!([])),
            ("tool_choice", json!("none")),
            ("response_format", json!({"type":"text"})),
            ("best_of", json!(1)),
            ("suffix", json!("")),
            ("echo", json!(false)),
            ("min_tokens", json!(0)),
            ("stop_token_ids", json!([])),
            ("store", json!(false)),
            ("add_generation_prompt", json!(true)),
            ("truly_unknown", json!({"x": 1})),
        ] {
            let mut b = base();
            b[k] = v;
            assert!(ChatRequest::from_json(&b).is_ok(), "{k}");
        }
        let e = ChatRequest::from_json(&json!({"messages":[{"role":"user","content":null}]}))
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
        let e = ChatRequest::from_json(
            &json!({"messages":[{"role":"user","content":"x"}],"logit_bias":{"a":1}}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("logit_bias"));
        let e = ChatRequest::from_json(
            &json!({"messages":[{"role":"user","content":"x"}],"logit_bias":{"1":101}}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("logit_bias"));
    }

    #[test]
    fn tools_are_for_chat_only() {
        let tools = json!([{"type":"function","function":{"name":"f"}}]);
        let e = CompletionRequest::from_json(&json!({"prompt": "x", "tools": tools})).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("tools")));
        assert!(e.message.contains("/v1/chat/completions"), "{}", e.message);
        let r = ChatRequest::from_json(
            &json!({"messages":[{"role":"user","content":"x"}], "tools": tools}),
        )
        .unwrap();
        assert!(r.tools.active());
        // A tool message must answer a call made earlier.
        let e = ChatRequest::from_json(&json!({"messages":[{"role":"user","content":"x"},
            {"role":"tool","tool_call_id":"nope","content":"1"}]}))
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[1].tool_call_id"));
        let ok = ChatRequest::from_json(&json!({"messages":[{"role":"user","content":"x"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"c","content":"1"}]}))
        .unwrap();
        assert_eq!(ok.messages[1].tool_calls[0].id, "c");
        let wire = serde_json::to_value(&ok).unwrap();
        assert_eq!(ChatRequest::from_json(&wire).unwrap(), ok);
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
