//! What an answer must match: OpenAI's `response_format` (`json_object`, `json_schema`),
//! vLLM's `structured_outputs` (`json`, `regex`, `choice`, `grammar`, `json_object`) and
//! its older `guided_json` / `guided_regex` / `guided_choice` / `guided_grammar`. At most
//! one may be given; each is enforced token by token, never merely requested.

use crate::error::ApiError;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq, utoipa::ToSchema)]
pub enum Structured {
    /// Any JSON object.
    JsonObject,
    /// JSON valid under this JSON Schema.
    #[schema(value_type = Object)]
    JsonSchema(Value),
    Regex(String),
    /// Exactly one of these strings.
    Choice(Vec<String>),
    /// A Lark grammar (llguidance's dialect).
    Grammar(String),
}

/// Written in vLLM's `structured_outputs` shape, which this server reads back the same.
impl Serialize for Structured {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match self {
            Self::JsonObject => m.serialize_entry("json_object", &true)?,
            Self::JsonSchema(v) => m.serialize_entry("json", v)?,
            Self::Regex(r) => m.serialize_entry("regex", r)?,
            Self::Choice(c) => m.serialize_entry("choice", c)?,
            Self::Grammar(g) => m.serialize_entry("grammar", g)?,
        }
        m.end()
    }
}

fn text(param: &str, v: &Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(ApiError::invalid(
            param,
            format!("'{param}' must be a non-empty string"),
        )),
    }
}

/// A schema given as an object, or as a string holding one (vLLM accepts both).
fn schema(param: &str, v: &Value) -> Result<Value, ApiError> {
    let v = match v {
        Value::String(s) => serde_json::from_str(s)
            .map_err(|e| ApiError::invalid(param, format!("'{param}' is not valid JSON: {e}")))?,
        v => v.clone(),
    };
    match v {
        Value::Object(_) | Value::Bool(_) => Ok(v),
        _ => Err(ApiError::invalid(
            param,
            format!("'{param}' must be a JSON Schema (an object)"),
        )),
    }
}

fn choice(param: &str, v: &Value) -> Result<Vec<String>, ApiError> {
    let a = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
        ApiError::invalid(
            param,
            format!("'{param}' must be a non-empty array of strings"),
        )
    })?;
    a.iter()
        .map(|c| {
            c.as_str().map(str::to_string).ok_or_else(|| {
                ApiError::invalid(param, format!("'{param}' must be an array of strings"))
            })
        })
        .collect()
}

fn response_format(v: &Value) -> Result<Option<Structured>, ApiError> {
    let o = v.as_object().ok_or_else(|| {
        ApiError::invalid("response_format", "'response_format' must be an object")
    })?;
    match o.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Structured::JsonObject)),
        Some("json_schema") => {
            let js = o
                .get("json_schema")
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "response_format.json_schema",
                        "'response_format.json_schema' must be an object with a 'schema'",
                    )
                })?;
            if !js.get("name").is_none_or(Value::is_string) {
                return Err(ApiError::invalid(
                    "response_format.json_schema.name",
                    "'response_format.json_schema.name' must be a string",
                ));
            }
            if !js
                .get("strict")
                .is_none_or(|s| s.is_boolean() || s.is_null())
            {
                return Err(ApiError::invalid(
                    "response_format.json_schema.strict",
                    "'response_format.json_schema.strict' must be a boolean",
                ));
            }
            // OpenAI allows leaving the schema out: then any JSON object will do.
            match js.get("schema") {
                None | Some(Value::Null) => Ok(Some(Structured::JsonObject)),
                Some(s) => Ok(Some(Structured::JsonSchema(schema(
                    "response_format.json_schema.schema",
                    s,
                )?))),
            }
        }
        Some(other) => Err(ApiError::invalid(
            "response_format.type",
            format!(
                "'response_format.type' must be text, json_object or json_schema, got '{other}'"
            ),
        )),
        None => Err(ApiError::invalid(
            "response_format.type",
            "'response_format' needs a string 'type'",
        )),
    }
}

fn structured_outputs(v: &Value) -> Result<Option<Structured>, ApiError> {
    let o = v.as_object().ok_or_else(|| {
        ApiError::invalid(
            "structured_outputs",
            "'structured_outputs' must be an object",
        )
    })?;
    let mut found = Vec::new();
    for (k, v) in o {
        let p = format!("structured_outputs.{k}");
        if v.is_null() {
            continue;
        }
        found.push(match k.as_str() {
            "json" => Structured::JsonSchema(schema(&p, v)?),
            "regex" => Structured::Regex(text(&p, v)?),
            "choice" => Structured::Choice(choice(&p, v)?),
            "grammar" => Structured::Grammar(text(&p, v)?),
            "json_object" => match v {
                Value::Bool(true) => Structured::JsonObject,
                Value::Bool(false) => continue,
                _ => return Err(ApiError::invalid(&p, format!("'{p}' must be a boolean"))),
            },
            other => {
                return Err(ApiError::invalid(
                    &p,
                    format!("'structured_outputs.{other}' is not supported by this server (json, regex, choice, grammar and json_object are)"),
                ))
            }
        });
    }
    if found.len() > 1 {
        return Err(ApiError::invalid(
            "structured_outputs",
            "'structured_outputs' takes one of json, regex, choice, grammar or json_object",
        ));
    }
    Ok(found.pop())
}

/// The request's constraint, if it asks for one.
pub(crate) fn parse(o: &Map<String, Value>) -> Result<Option<Structured>, ApiError> {
    let mut given: Vec<(&str, Structured)> = Vec::new();
    let field = |k: &str| o.get(k).filter(|v| !v.is_null());
    if let Some(v) = field("response_format") {
        if let Some(s) = response_format(v)? {
            given.push(("response_format", s));
        }
    }
    if let Some(v) = field("structured_outputs") {
        if let Some(s) = structured_outputs(v)? {
            given.push(("structured_outputs", s));
        }
    }
    for (k, make) in [
        (
            "guided_json",
            (|p: &str, v: &Value| Ok(Structured::JsonSchema(schema(p, v)?)))
                as fn(&str, &Value) -> Result<Structured, ApiError>,
        ),
        ("guided_regex", |p, v| Ok(Structured::Regex(text(p, v)?))),
        ("guided_choice", |p, v| {
            Ok(Structured::Choice(choice(p, v)?))
        }),
        ("guided_grammar", |p, v| {
            Ok(Structured::Grammar(text(p, v)?))
        }),
    ] {
        if let Some(v) = field(k) {
            given.push((k, make(k, v)?));
        }
    }
    if given.len() > 1 {
        let names: Vec<&str> = given.iter().map(|g| g.0).collect();
        return Err(ApiError::invalid(
            given[1].0,
            format!(
                "only one output constraint may be given, got {}",
                names.join(" and ")
            ),
        ));
    }
    Ok(given.pop().map(|g| g.1))
}
