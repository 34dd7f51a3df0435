//! The whole input file is checked before any line runs: a batch either runs every line
//! or fails with the list of what is wrong, never half.

use crate::types::{BatchError, Endpoint};
use serde_json::Value;
use std::collections::HashSet;

/// What an input file may hold.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_lines: usize,
    pub max_bytes: u64,
    /// The id the server serves: every line's `model` must name it.
    pub model_id: String,
}

impl Default for Limits {
    /// OpenAI's limits: 50 000 requests, 200 MB.
    fn default() -> Self {
        Self {
            max_lines: 50_000,
            max_bytes: 200 << 20,
            model_id: String::new(),
        }
    }
}

/// One request of the file.
#[derive(Clone, Debug, PartialEq)]
pub struct InputLine {
    /// 0-based index among the file's requests (blank lines are not requests).
    pub index: u64,
    /// 1-based line of the file, for messages.
    pub line: u64,
    pub custom_id: String,
    pub body: Value,
}

#[derive(Clone, Debug)]
pub struct Validated {
    pub lines: Vec<InputLine>,
}

/// Errors are listed up to this many; a file with more is still refused whole.
const MAX_LISTED: usize = 1000;

fn err(code: &str, line: Option<u64>, param: Option<&str>, message: String) -> BatchError {
    BatchError {
        code: code.to_string(),
        message,
        param: param.map(str::to_string),
        line,
    }
}

/// Checks one line's request object; `Ok((custom_id, body))`.
fn check_line(
    v: &Value,
    n: u64,
    endpoint: Endpoint,
    limits: &Limits,
) -> Result<(String, Value), BatchError> {
    let obj = v.as_object().ok_or_else(|| {
        err(
            "invalid_json_line",
            Some(n),
            None,
            "the line is not a JSON object".into(),
        )
    })?;
    let custom_id = match obj.get("custom_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(err(
                "missing_required_parameter",
                Some(n),
                Some("custom_id"),
                "custom_id must be a non-empty string".into(),
            ))
        }
    };
    match obj.get("method") {
        Some(Value::String(m)) if m == "POST" => {}
        _ => {
            return Err(err(
                "invalid_method",
                Some(n),
                Some("method"),
                "method must be \"POST\"".into(),
            ))
        }
    }
    match obj.get("url").and_then(|u| u.as_str()) {
        Some(u) if u == endpoint.path() => {}
        other => {
            return Err(err(
                "mismatched_url",
                Some(n),
                Some("url"),
                format!(
                    "url {} does not match the batch's endpoint {}",
                    other.map_or("(missing)".to_string(), |u| format!("{u:?}")),
                    endpoint.path()
                ),
            ))
        }
    }
    let body = match obj.get("body") {
        Some(b @ Value::Object(_)) => b.clone(),
        _ => {
            return Err(err(
                "missing_required_parameter",
                Some(n),
                Some("body"),
                "body must be a JSON object (the request)".into(),
            ))
        }
    };
    if body.get("stream").and_then(|s| s.as_bool()) == Some(true) {
        return Err(err(
            "invalid_request",
            Some(n),
            Some("body.stream"),
            "streaming is not available in a batch; drop \"stream\": true".into(),
        ));
    }
    let parsed = match endpoint {
        Endpoint::Chat => api::ChatRequest::from_json(&body).map(|_| ()),
        Endpoint::Completions => api::CompletionRequest::from_json(&body).map(|_| ()),
    };
    if let Err(e) = parsed {
        let param = e.param.as_ref().map(|p| format!("body.{p}"));
        return Err(err("invalid_request", Some(n), param.as_deref(), e.message));
    }
    if !limits.model_id.is_empty() {
        let model = body.get("model").and_then(|m| m.as_str()).unwrap_or("");
        if model != limits.model_id {
            return Err(err(
                "model_not_found",
                Some(n),
                Some("body.model"),
                format!(
                    "model {model:?} is not served here; this server serves {:?}",
                    limits.model_id
                ),
            ));
        }
    }
    Ok((custom_id, body))
}

/// Validates an input file for `endpoint`.
pub fn validate(
    bytes: &[u8],
    endpoint: Endpoint,
    limits: &Limits,
) -> Result<Validated, Vec<BatchError>> {
    if bytes.len() as u64 > limits.max_bytes {
        return Err(vec![err(
            "file_too_large",
            None,
            None,
            format!(
                "the input file has {} bytes; the limit is {}",
                bytes.len(),
                limits.max_bytes
            ),
        )]);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        vec![err(
            "invalid_json_line",
            None,
            None,
            format!("the input file is not UTF-8: {e}"),
        )]
    })?;
    let mut errors = Vec::new();
    let mut lines = Vec::new();
    let mut seen = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i as u64 + 1;
        if raw.trim().is_empty() {
            continue;
        }
        if lines.len() + errors.len() >= limits.max_lines {
            errors.push(err(
                "too_many_lines",
                Some(n),
                None,
                format!("a batch holds at most {} requests", limits.max_lines),
            ));
            break;
        }
        let v: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                errors.push(err(
                    "invalid_json_line",
                    Some(n),
                    None,
                    format!("not valid JSON: {e}"),
                ));
                continue;
            }
        };
        match check_line(&v, n, endpoint, limits) {
            Ok((custom_id, body)) => {
                if !seen.insert(custom_id.clone()) {
                    errors.push(err(
                        "duplicate_custom_id",
                        Some(n),
                        Some("custom_id"),
                        format!("custom_id {custom_id:?} appears more than once"),
                    ));
                    continue;
                }
                lines.push(InputLine {
                    index: lines.len() as u64,
                    line: n,
                    custom_id,
                    body,
                });
            }
            Err(e) => errors.push(e),
        }
    }
    if lines.is_empty() && errors.is_empty() {
        errors.push(err(
            "empty_file",
            None,
            None,
            "the input file holds no requests".into(),
        ));
    }
    if errors.is_empty() {
        Ok(Validated { lines })
    } else {
        errors.truncate(MAX_LISTED);
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, url: &str, body: Value) -> String {
        serde_json::json!({"custom_id": id, "method": "POST", "url": url, "body": body}).to_string()
    }

    fn limits() -> Limits {
        Limits {
            model_id: "m".into(),
            ..Limits::default()
        }
    }

    #[test]
    fn a_good_file_gives_its_requests_in_order() {
        let body =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let f = format!(
            "{}\n\n{}\n",
            line("a", "/v1/chat/completions", body.clone()),
            line("b", "/v1/chat/completions", body)
        );
        let v = validate(f.as_bytes(), Endpoint::Chat, &limits()).unwrap();
        assert_eq!(v.lines.len(), 2);
        assert_eq!((v.lines[1].index, v.lines[1].line), (1, 3));
        assert_eq!(v.lines[1].custom_id, "b");
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number_and_nothing_runs() {
        let ok = serde_json::json!({"model": "m", "prompt": "x"});
        let f = [
            line("a", "/v1/completions", ok.clone()),
            "{not json".to_string(),
            line("a", "/v1/completions", ok.clone()),
            line("c", "/v1/chat/completions", ok.clone()),
            line("d", "/v1/completions", serde_json::json!({"model": "m", "prompt": "x", "stream": true})),
            line("e", "/v1/completions", serde_json::json!({"model": "m", "prompt": "x", "temperature": "hot"})),
            line("f", "/v1/completions", serde_json::json!({"model": "other", "prompt": "x"})),
            serde_json::json!({"custom_id": "g", "method": "GET", "url": "/v1/completions", "body": ok}).to_string(),
        ]
        .join("\n");
        let e = validate(f.as_bytes(), Endpoint::Completions, &limits()).unwrap_err();
        let got: Vec<(Option<u64>, &str)> = e.iter().map(|e| (e.line, e.code.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Some(2), "invalid_json_line"),
                (Some(3), "duplicate_custom_id"),
                (Some(4), "mismatched_url"),
                (Some(5), "invalid_request"),
                (Some(6), "invalid_request"),
                (Some(7), "model_not_found"),
                (Some(8), "invalid_method"),
            ]
        );
        assert_eq!(e[4].param.as_deref(), Some("body.temperature"));
    }

    #[test]
    fn limits_and_empty_files_are_refused() {
        assert_eq!(
            validate(b"\n\n", Endpoint::Chat, &limits()).unwrap_err()[0].code,
            "empty_file"
        );
        let small = Limits {
            max_bytes: 3,
            ..limits()
        };
        assert_eq!(
            validate(b"{}\n{}", Endpoint::Chat, &small).unwrap_err()[0].code,
            "file_too_large"
        );
    }
}
