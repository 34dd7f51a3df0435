//! Tool calling as OpenAI spells it: `tools` (functions with JSON-Schema parameters),
//! `tool_choice`, `parallel_tool_calls`, assistant messages that carry `tool_calls`, and
//! `tool` messages answering them. Read by hand, like the rest of a request, so every
//! wrong field is a 400 that names it.

use crate::error::ApiError;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// A function the model may call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FunctionDef {
    /// `^[a-zA-Z0-9_-]{1,64}$`, unique within `tools`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema for the arguments object; absent means no arguments.
    #[schema(value_type = Object)]
    pub parameters: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `{"type": "function", "function": {...}}`, the only kind of tool there is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Tool {
    #[serde(rename = "type")]
    #[schema(value_type = String, pattern = "^function$")]
    pub kind: String,
    pub function: FunctionDef,
}

/// Whether and which tool the model must call.
#[derive(Clone, Debug, PartialEq, Eq, ToSchema)]
pub enum ToolChoice {
    /// Text only (the default without tools).
    None,
    /// Text or calls, as the model decides (the default with tools).
    Auto,
    /// At least one call.
    Required,
    /// Exactly this function.
    Function(String),
}

impl Serialize for ToolChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::None => s.serialize_str("none"),
            Self::Auto => s.serialize_str("auto"),
            Self::Required => s.serialize_str("required"),
            Self::Function(name) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("type", "function")?;
                m.serialize_entry("function", &json!({ "name": name }))?;
                m.end()
            }
        }
    }
}

/// A call as an assistant message carries it (and as a reply returns it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    #[schema(value_type = String, pattern = "^function$")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FunctionCall {
    pub name: String,
    /// The arguments object as JSON text.
    pub arguments: String,
}

impl ToolCall {
    pub fn function(id: String, name: String, arguments: String) -> Self {
        Self {
            id,
            kind: "function".into(),
            function: FunctionCall { name, arguments },
        }
    }
}

/// The tool fields of a chat request.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ToolFields {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    #[schema(value_type = Object)]
    pub tool_choice: ToolChoice,
    pub parallel_tool_calls: bool,
}

impl Default for ToolFields {
    fn default() -> Self {
        Self {
            tools: Vec::new(),
            tool_choice: ToolChoice::None,
            parallel_tool_calls: true,
        }
    }
}

impl ToolFields {
    /// Whether the model is offered tools at all.
    pub fn active(&self) -> bool {
        !self.tools.is_empty() && self.tool_choice != ToolChoice::None
    }
}

fn invalid(param: &str, msg: impl Into<String>) -> ApiError {
    ApiError::invalid(param, msg)
}

fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn parse_tool(i: usize, v: &Value) -> Result<Tool, ApiError> {
    let at = format!("tools[{i}]");
    let o = v
        .as_object()
        .ok_or_else(|| invalid(&at, format!("'{at}' must be an object")))?;
    match o.get("type").and_then(Value::as_str) {
        Some("function") => {}
        Some(t) => {
            return Err(invalid(
                &format!("{at}.type"),
                format!("'{at}.type' must be 'function', got '{t}'"),
            ))
        }
        None => {
            return Err(invalid(
                &format!("{at}.type"),
                format!("'{at}.type' is required ('function')"),
            ))
        }
    }
    let fp = format!("{at}.function");
    let f = o
        .get("function")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(&fp, format!("'{fp}' must be an object")))?;
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| valid_name(n))
        .ok_or_else(|| {
            invalid(
                &format!("{fp}.name"),
                format!("'{fp}.name' must be 1 to 64 letters, digits, '_' or '-'"),
            )
        })?;
    let description = match f.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(invalid(
                &format!("{fp}.description"),
                format!("'{fp}.description' must be a string"),
            ))
        }
    };
    let parameters = match f.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => {
            return Err(invalid(
                &format!("{fp}.parameters"),
                format!("'{fp}.parameters' must be a JSON Schema object"),
            ))
        }
    };
    let strict = match f.get("strict") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(invalid(
                &format!("{fp}.strict"),
                format!("'{fp}.strict' must be a boolean"),
            ))
        }
    };
    Ok(Tool {
        kind: "function".into(),
        function: FunctionDef {
            name: name.to_string(),
            description,
            parameters,
            strict,
        },
    })
}

fn parse_choice(v: Option<&Value>, tools: &[Tool]) -> Result<ToolChoice, ApiError> {
    let p = "tool_choice";
    let choice = match v {
        None | Some(Value::Null) if tools.is_empty() => ToolChoice::None,
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(invalid(
                    p,
                    format!("'tool_choice' must be 'none', 'auto', 'required' or a named function, got '{other}'"),
                ))
            }
        },
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|_| o.get("type").and_then(Value::as_str) == Some("function"))
                .ok_or_else(|| {
                    invalid(
                        p,
                        "a named 'tool_choice' is {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    )
                })?;
            if !tools.iter().any(|t| t.function.name == name) {
                return Err(invalid(
                    p,
                    format!("'tool_choice' names function '{name}', which is not in 'tools'"),
                ));
            }
            ToolChoice::Function(name.to_string())
        }
        Some(_) => {
            return Err(invalid(
                p,
                "'tool_choice' must be a string or an object",
            ))
        }
    };
    if tools.is_empty() && matches!(choice, ToolChoice::Required | ToolChoice::Function(_)) {
        return Err(invalid(
            p,
            "'tool_choice' asks for a call, but 'tools' is empty",
        ));
    }
    Ok(choice)
}

/// Reads `tools`, `tool_choice` and `parallel_tool_calls` from a chat request.
pub(crate) fn parse(o: &Map<String, Value>) -> Result<ToolFields, ApiError> {
    let tools = match o.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, t)| parse_tool(i, t))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(invalid("tools", "'tools' must be an array")),
    };
    for (i, t) in tools.iter().enumerate() {
        if tools[..i]
            .iter()
            .any(|u| u.function.name == t.function.name)
        {
            return Err(invalid(
                &format!("tools[{i}].function.name"),
                format!("function '{}' is defined twice", t.function.name),
            ));
        }
    }
    let tool_choice = parse_choice(o.get("tool_choice"), &tools)?;
    let parallel_tool_calls = match o.get("parallel_tool_calls") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(invalid(
                "parallel_tool_calls",
                "'parallel_tool_calls' must be a boolean",
            ))
        }
    };
    Ok(ToolFields {
        tools,
        tool_choice,
        parallel_tool_calls,
    })
}

/// An assistant message's `tool_calls`: each needs an id, a function name and arguments
/// that are a JSON object (as text, the way the API returned them).
pub(crate) fn parse_calls(at: &str, v: &Value) -> Result<Vec<ToolCall>, ApiError> {
    let p = format!("{at}.tool_calls");
    let a = v
        .as_array()
        .ok_or_else(|| invalid(&p, format!("'{p}' must be an array")))?;
    a.iter()
        .enumerate()
        .map(|(j, c)| {
            let cp = format!("{p}[{j}]");
            let s = |k: &str, o: Option<&Value>| {
                o.and_then(|o| o.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| invalid(&cp, format!("'{cp}' needs a string '{k}'")))
            };
            let id = s("id", Some(c))?;
            let f = c.get("function");
            let name = s("name", f)?;
            let arguments = s("arguments", f)?;
            match serde_json::from_str::<Value>(&arguments) {
                Ok(Value::Object(_)) => {}
                _ => {
                    return Err(invalid(
                        &format!("{cp}.function.arguments"),
                        format!("'{cp}.function.arguments' must be a JSON object as a string"),
                    ))
                }
            }
            Ok(ToolCall::function(id, name, arguments))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: Value) -> Result<ToolFields, ApiError> {
        parse(v.as_object().unwrap())
    }

    #[test]
    fn tools_and_choices_parse_and_round_trip() {
        let tools = json!([{"type":"function","function":{"name":"get_weather","description":"d",
            "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},
            {"type":"function","function":{"name":"noop"}}]);
        let f = fields(json!({"tools": tools})).unwrap();
        assert_eq!(f.tool_choice, ToolChoice::Auto);
        assert!(f.parallel_tool_calls && f.active());
        assert_eq!(f.tools[1].function.parameters["type"], "object");
        let f = fields(json!({"tools": tools, "tool_choice": {"type":"function","function":{"name":"noop"}}, "parallel_tool_calls": false})).unwrap();
        assert_eq!(f.tool_choice, ToolChoice::Function("noop".into()));
        let wire = serde_json::to_value(&f).unwrap();
        assert_eq!(wire["tool_choice"]["function"]["name"], "noop");
        assert_eq!(fields(wire).unwrap(), f);
        assert!(!fields(json!({"tools": tools, "tool_choice": "none"}))
            .unwrap()
            .active());
        assert_eq!(fields(json!({})).unwrap().tool_choice, ToolChoice::None);
    }

    #[test]
    fn bad_tools_are_named() {
        let t = |name: &str| json!({"type":"function","function":{"name": name}});
        for (body, param) in [
            (json!({"tools": {}}), "tools"),
            (json!({"tools": [{"type":"code"}]}), "tools[0].type"),
            (json!({"tools": [t("a b")]}), "tools[0].function.name"),
            (json!({"tools": [t("a"), t("a")]}), "tools[1].function.name"),
            (
                json!({"tools": [{"type":"function","function":{"name":"a","parameters":[]}}]}),
                "tools[0].function.parameters",
            ),
            (
                json!({"tools": [t("a")], "tool_choice": "always"}),
                "tool_choice",
            ),
            (
                json!({"tools": [t("a")], "tool_choice": {"type":"function","function":{"name":"b"}}}),
                "tool_choice",
            ),
            (json!({"tool_choice": "required"}), "tool_choice"),
            (
                json!({"tools": [t("a")], "parallel_tool_calls": "yes"}),
                "parallel_tool_calls",
            ),
        ] {
            let e = fields(body.clone()).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some(param)), "{body}");
        }
        let calls =
            json!([{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\": 1}"}}]);
        assert_eq!(
            parse_calls("m", &calls).unwrap()[0].function.arguments,
            "{\"a\": 1}"
        );
        let bad = json!([{"id":"c1","type":"function","function":{"name":"f","arguments":"[1]"}}]);
        assert_eq!(
            parse_calls("m", &bad).unwrap_err().param.as_deref(),
            Some("m.tool_calls[0].function.arguments")
        );
    }
}
