//! Fields of OpenAI's API (or vLLM's) that autoglm does not implement: refused by name,
//! never answered as if absent.

use crate::error::ApiError;
use serde_json::{Map, Value};

/// Fields of OpenAI's API (or vLLM's) whose contract autoglm does not implement yet:
/// a request that uses one is refused with a 400 naming it, never answered as if the
/// field were absent. A value that asks for nothing (`tools: []`, `best_of: 1`, ...) is
/// accepted.
pub const UNSUPPORTED_FIELDS: &[&str] = &[
    "functions",
    "function_call",
    "best_of",
    "suffix",
    "echo",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
    "reasoning_effort",
    "store",
    // vLLM's sampling extensions.
    "min_tokens",
    "stop_token_ids",
    "bad_words",
    "allowed_token_ids",
    "prompt_logprobs",
    "use_beam_search",
    "length_penalty",
    "include_stop_str_in_output",
    "truncate_prompt_tokens",
    "chat_template",
    "chat_template_kwargs",
    "continue_final_message",
    "add_generation_prompt",
];

/// Whether `v` for an unsupported field asks for nothing (so it may be accepted).
fn harmless(field: &str, v: &Value) -> bool {
    match (field, v) {
        (_, Value::Null) => true,
        ("tools" | "functions", Value::Array(a)) => a.is_empty(),
        ("tool_choice", Value::String(s)) => s == "none",
        ("parallel_tool_calls" | "echo", Value::Bool(false)) => true,
        ("best_of", v) => v.as_u64() == Some(1),
        ("suffix", Value::String(s)) => s.is_empty(),
        ("modalities", Value::Array(a)) => a.iter().all(|m| m.as_str() == Some("text")),
        ("stop_token_ids" | "bad_words", Value::Array(a)) => a.is_empty(),
        ("min_tokens", v) => v.as_u64() == Some(0),
        (
            "store" | "use_beam_search" | "include_stop_str_in_output" | "continue_final_message",
            Value::Bool(false),
        ) => true,
        // What autoglm always does.
        ("add_generation_prompt", Value::Bool(true)) => true,
        ("length_penalty", v) => v.as_f64() == Some(1.0),
        _ => false,
    }
}

/// Chat's tool fields, which a completions request cannot honour.
pub const CHAT_ONLY_FIELDS: &[&str] = &["tools", "tool_choice", "parallel_tool_calls"];

pub(crate) fn refuse_unsupported(o: &Map<String, Value>) -> Result<(), ApiError> {
    refuse(o, UNSUPPORTED_FIELDS, "is not supported by this server yet")
}

/// Template controls the tokenizer endpoints do not implement either.
const TEMPLATE_FIELDS: &[&str] = &[
    "chat_template",
    "chat_template_kwargs",
    "continue_final_message",
];

pub(crate) fn refuse_template_fields(o: &Map<String, Value>) -> Result<(), ApiError> {
    refuse(o, TEMPLATE_FIELDS, "is not supported by this server yet")
}

/// On /v1/completions: tools need a chat template to be offered to the model.
pub(crate) fn refuse_chat_only(o: &Map<String, Value>) -> Result<(), ApiError> {
    refuse(o, CHAT_ONLY_FIELDS, "works on /v1/chat/completions only")
}

fn refuse(o: &Map<String, Value>, fields: &[&str], why: &str) -> Result<(), ApiError> {
    for &f in fields {
        if let Some(v) = o.get(f) {
            if !harmless(f, v) {
                return Err(
                    ApiError::invalid(f, format!("'{f}' {why}; the request was not run"))
                        .with_code("unsupported_parameter"),
                );
            }
        }
    }
    Ok(())
}
