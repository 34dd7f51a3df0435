//! A chat request's `messages`: roles, content as a string or text parts, an
//! assistant's `tool_calls` and the `tool` messages that answer them.

use crate::error::ApiError;
use crate::request::{field, wrong, Message, Role};
use serde_json::Value;

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

/// Reads every message; a `tool` message must answer a call an earlier one made.
pub(crate) fn parse(msgs: &[Value]) -> Result<Vec<Message>, ApiError> {
    let mut messages = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let at = format!("messages[{i}]");
        let mo = m.as_object().ok_or_else(|| wrong(&at, "an object", m))?;
        let role = match mo.get("role") {
            Some(Value::String(r)) if matches!(r.as_str(), "system" | "developer") => Role::System,
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
    Ok(messages)
}
