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

pub(crate) fn wrong(field: &str, want: &str, v: &Value) -> ApiError {
    ApiError::invalid(
        field,
        format!("'{field}' must be {want}, got {}", type_name(v)),
    )
}

/// Present and not null.
pub(crate) fn field<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
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
        let messages = crate::messages::parse(msgs)?;
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
#[path = "request_tests.rs"]
mod tests;
