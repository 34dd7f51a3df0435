//! `tojson` as transformers defines it for chat templates: Python's `json.dumps` with
//! `ensure_ascii=False` by default and the `indent`, `separators`, `sort_keys` and
//! `ensure_ascii` keyword arguments templates pass (GLM's pass `ensure_ascii=False`).
//! minijinja's own `tojson` escapes `<`, `>`, `&` and `'` for HTML and sorts nothing the
//! same way, so prompts with tools would differ from the ones the model was trained on.

use minijinja::value::{Kwargs, Value};
use minijinja::{Error, ErrorKind};
use serde_json::Value as Json;

struct Style {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

fn string(s: &str, ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ascii && !c.is_ascii()) => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn number(n: &serde_json::Number) -> String {
    match n.as_f64() {
        // Python writes a float with its fraction ("1.0"), an integer without.
        Some(f) if n.is_f64() && f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 => {
            format!("{f:.1}")
        }
        _ => n.to_string(),
    }
}

fn write(v: &Json, st: &Style, level: usize, out: &mut String) {
    let newline = |out: &mut String, level: usize| {
        if let Some(ind) = &st.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    };
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(&number(n)),
        Json::String(s) => string(s, st.ensure_ascii, out),
        Json::Array(a) if a.is_empty() => out.push_str("[]"),
        Json::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(&st.item_sep);
                }
                newline(out, level + 1);
                write(x, st, level + 1, out);
            }
            newline(out, level);
            out.push(']');
        }
        Json::Object(o) if o.is_empty() => out.push_str("{}"),
        Json::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            if st.sort_keys {
                keys.sort();
            }
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(&st.item_sep);
                }
                newline(out, level + 1);
                string(k, st.ensure_ascii, out);
                out.push_str(&st.key_sep);
                write(&o[k], st, level + 1, out);
            }
            newline(out, level);
            out.push('}');
        }
    }
}

/// The `tojson` filter.
pub fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let bad = |m: String| Error::new(ErrorKind::InvalidOperation, m);
    let json: Json = serde_json::to_value(value).map_err(|e| bad(format!("tojson: {e}")))?;
    let indent: Option<Value> = kwargs.get("indent")?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_i64() {
            Some(n) => Some(" ".repeat(n.max(0) as usize)),
            None => Some(v.as_str().unwrap_or_default().to_string()),
        },
    };
    let separators: Option<Value> = kwargs.get("separators")?;
    let (item_sep, key_sep) = match separators.filter(|v| !v.is_none()) {
        Some(v) => {
            let parts: Vec<String> = v
                .try_iter()?
                .map(|p| p.as_str().unwrap_or_default().to_string())
                .collect();
            match parts.as_slice() {
                [a, b] => (a.clone(), b.clone()),
                _ => return Err(bad("tojson: separators must be two strings".into())),
            }
        }
        // Python's defaults: ", " without indent, "," with it.
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let style = Style {
        indent,
        item_sep,
        key_sep,
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write(&json, &style, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumps(v: Json, indent: Option<&str>, ascii: bool) -> String {
        let st = Style {
            indent: indent.map(str::to_string),
            item_sep: if indent.is_some() { "," } else { ", " }.into(),
            key_sep: ": ".into(),
            sort_keys: false,
            ensure_ascii: ascii,
        };
        let mut out = String::new();
        write(&v, &st, 0, &mut out);
        out
    }

    #[test]
    fn writes_what_pythons_json_dumps_writes() {
        let v = serde_json::json!({"b": [1, 2.0, "x<y>&'z"], "a": {"é": null, "t": "\n\u{1}"}, "e": []});
        // json.dumps(v, ensure_ascii=False)
        assert_eq!(
            dumps(v.clone(), None, false),
            r#"{"b": [1, 2.0, "x<y>&'z"], "a": {"é": null, "t": "\n\u0001"}, "e": []}"#
        );
        // json.dumps(v, indent=2, ensure_ascii=True)
        assert_eq!(
            dumps(v, Some("  "), true),
            "{\n  \"b\": [\n    1,\n    2.0,\n    \"x<y>&'z\"\n  ],\n  \"a\": {\n    \"\\u00e9\": null,\n    \"t\": \"\\n\\u0001\"\n  },\n  \"e\": []\n}"
        );
        assert_eq!(
            dumps(serde_json::json!("😀"), None, true),
            r#""\ud83d\ude00""#
        );
    }
}
