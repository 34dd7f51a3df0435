//! The grammar that holds a reply to the model's call syntax: for `required` and a
//! named function the reply is calls from its first token; for `auto` it is free text
//! unless it writes the opening tag, from which point the calls are held to the tools'
//! schemas (a lazy match on the tag, as llama.cpp's lazy grammars do).

use super::ToolSyntax;
use api::{ToolChoice, ToolFields};
use serde_json::{json, Value};

/// One call to `name` with arguments under `parameters`, keys in the order the parser
/// streams best (name first).
fn call_schema(syntax: ToolSyntax, name: &str, parameters: &Value) -> Value {
    let key = syntax.args_key();
    let mut parameters = parameters.clone();
    // Arguments the function does not declare cannot be passed to it: where the schema
    // leaves `additionalProperties` open, it is closed (as OpenAI's strict mode requires
    // it to be), or a small model keeps inventing keys until max_tokens.
    if let Some(o) = parameters.as_object_mut() {
        if o.contains_key("properties") {
            o.entry("additionalProperties").or_insert(json!(false));
        }
    }
    constrain::one_line(json!({
        "type": "object",
        "properties": {"name": {"const": name}, key: parameters},
        "required": ["name", key],
        "additionalProperties": false,
    }))
}

/// The Lark grammar for the request's tools, `None` when no call is possible.
pub fn lark(syntax: ToolSyntax, f: &ToolFields) -> Option<String> {
    if !f.active() {
        return None;
    }
    let named = match &f.tool_choice {
        ToolChoice::Function(n) => Some(n.as_str()),
        _ => None,
    };
    let mut g = String::new();
    let mut alts = Vec::new();
    for (i, t) in f.tools.iter().enumerate() {
        if named.is_some_and(|n| n != t.function.name) {
            continue;
        }
        let schema = call_schema(syntax, &t.function.name, &t.function.parameters);
        g.push_str(&format!("call_{i}: %json {schema}\n"));
        alts.push(format!("call_{i}"));
    }
    g.push_str(&format!("call: {}\n", alts.join(" | ")));
    // A named function is called once; otherwise as often as parallel calls allow.
    let many = f.parallel_tool_calls && syntax.parallel() && named.is_none();
    let (calls, after_tag) = match syntax {
        ToolSyntax::Hermes => {
            let more = if many {
                " (\"\\n<tool_call>\\n\" call \"\\n</tool_call>\")*"
            } else {
                ""
            };
            (
                format!("\"<tool_call>\\n\" call \"\\n</tool_call>\"{more}"),
                format!("\"\\n\" call \"\\n</tool_call>\"{more}"),
            )
        }
        ToolSyntax::Json => {
            let more = if many { " (\", \" call)*" } else { "" };
            (
                format!("\"<tool_call>[\" call{more} \"]</tool_call>\""),
                format!("\"[\" call{more} \"]</tool_call>\""),
            )
        }
        ToolSyntax::Llama3 => ("call".to_string(), String::new()),
    };
    let start = match (&f.tool_choice, syntax.trigger()) {
        (ToolChoice::Auto, Some(tag)) => {
            // Text that never writes the tag, or text up to the first tag and calls.
            g.push_str(&format!(
                "TEXT: /(.|\\n)*/ & ~/(.|\\n)*{tag}(.|\\n)*/\nopened[lazy]: /(.|\\n)*{tag}/\n"
            ));
            format!("TEXT | opened {after_tag}")
        }
        (ToolChoice::Auto, None) => {
            // Llama 3: a reply that starts with `{` is a call, any other is text.
            g.push_str("TEXT: /[^{ \\t\\r\\n](.|\\n)*/\n");
            format!("TEXT? | {calls}")
        }
        _ => calls,
    };
    Some(format!("start: {start}\n{g}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(choice: ToolChoice, parallel: bool) -> ToolFields {
        let tool = |name: &str| {
            serde_json::from_value(json!({"type": "function", "function": {"name": name,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}))
            .unwrap()
        };
        ToolFields {
            tools: vec![tool("get_weather"), tool("get_time")],
            tool_choice: choice,
            parallel_tool_calls: parallel,
        }
    }

    /// Whether the grammar lets every token of `text` through, over the default model's
    /// real vocabulary.
    fn lets_through(
        g: &constrain::Grammars,
        tok: &tokenizer::Tokenizer,
        lark: &str,
        text: &str,
    ) -> bool {
        use model::ProcessorFactory;
        let mut p = g
            .compile(&constrain::Spec::Lark(lark.to_string()))
            .unwrap_or_else(|e| panic!("{e}\n{lark}"))
            .make();
        for t in tok.encode(text, false, false).unwrap() {
            let mut logits = vec![0.0f32; tok.vocab_size()];
            p.process(&mut logits);
            if !logits[t as usize].is_finite() {
                return false;
            }
            p.accept(t);
        }
        true
    }

    #[test]
    fn every_syntax_compiles_and_holds_the_calls_it_parses() {
        let path = model::paths::test_model_path(&|k| std::env::var_os(k));
        let tok = std::sync::Arc::new(
            tokenizer::Tokenizer::from_gguf(&gguf::GgufFile::open(path).unwrap()).unwrap(),
        );
        let g = constrain::Grammars::new(tok.clone()).unwrap();
        let w = r#"{"name": "get_weather", "arguments": {"city": "Paris"}}"#;
        let t = r#"{"name": "get_time", "arguments": {"city": "Rome"}}"#;
        let extra = r#"{"name": "get_time", "arguments": {"city": "Rome", "tz": "x"}}"#;
        let hermes = |c: &str| format!("<tool_call>\n{c}\n</tool_call>");
        let cases: Vec<(ToolSyntax, ToolChoice, bool, String, bool)> = vec![
            (
                ToolSyntax::Hermes,
                ToolChoice::Required,
                true,
                hermes(w),
                true,
            ),
            (
                ToolSyntax::Hermes,
                ToolChoice::Required,
                true,
                format!("{}\n{}", hermes(w), hermes(t)),
                true,
            ),
            (
                ToolSyntax::Hermes,
                ToolChoice::Required,
                false,
                format!("{}\n{}", hermes(w), hermes(t)),
                false,
            ),
            (
                ToolSyntax::Hermes,
                ToolChoice::Required,
                true,
                "Sure.".into(),
                false,
            ),
            (
                ToolSyntax::Hermes,
                ToolChoice::Required,
                true,
                hermes(extra),
                false,
            ),
            (
                ToolSyntax::Hermes,
                ToolChoice::Auto,
                true,
                "Paris is sunny, I think.".into(),
                true,
            ),
            (
                ToolSyntax::Hermes,
                ToolChoice::Auto,
                true,
                format!("Let me look.\n{}", hermes(w)),
                true,
            ),
            (
                ToolSyntax::Hermes,
                ToolChoice::Auto,
                true,
                "Let me look.\n<tool_call>\n{\"name\": \"nope\"".into(),
                false,
            ),
            (
                ToolSyntax::Hermes,
                ToolChoice::Function("get_time".into()),
                true,
                hermes(w),
                false,
            ),
            (
                ToolSyntax::Hermes,
                ToolChoice::Function("get_time".into()),
                true,
                hermes(t),
                true,
            ),
            (
                ToolSyntax::Llama3,
                ToolChoice::Required,
                true,
                r#"{"name": "get_time", "parameters": {"city": "Rome"}}"#.into(),
                true,
            ),
            (
                ToolSyntax::Llama3,
                ToolChoice::Required,
                true,
                t.into(),
                false,
            ),
            (
                ToolSyntax::Llama3,
                ToolChoice::Auto,
                true,
                "It is sunny.".into(),
                true,
            ),
            (
                ToolSyntax::Llama3,
                ToolChoice::Auto,
                true,
                r#"{"name": "get_time", "parameters": {"city": 3}}"#.into(),
                false,
            ),
            (
                ToolSyntax::Json,
                ToolChoice::Required,
                true,
                format!("<tool_call>[{w}, {t}]</tool_call>"),
                true,
            ),
            (
                ToolSyntax::Json,
                ToolChoice::Auto,
                true,
                format!("Checking. <tool_call>[{t}]</tool_call>"),
                true,
            ),
            (
                ToolSyntax::Json,
                ToolChoice::Auto,
                true,
                "No call needed.".into(),
                true,
            ),
        ];
        for (syntax, choice, parallel, text, want) in cases {
            let f = fields(choice.clone(), parallel);
            let lark = lark(syntax, &f).unwrap();
            assert_eq!(
                lets_through(&g, &tok, &lark, &text),
                want,
                "{syntax:?} {choice:?} parallel={parallel}: {text:?}"
            );
        }
    }

    #[test]
    fn grammars_follow_the_choice() {
        assert_eq!(
            lark(ToolSyntax::Hermes, &fields(ToolChoice::None, true)),
            None
        );
        let g = lark(
            ToolSyntax::Hermes,
            &fields(ToolChoice::Function("get_time".into()), true),
        )
        .unwrap();
        assert!(g.contains("call: call_1\n") && !g.contains("call_0"), "{g}");
        assert!(!g.contains(")*"), "a named call is one call: {g}");
        let g = lark(ToolSyntax::Json, &fields(ToolChoice::Auto, true)).unwrap();
        assert!(
            g.starts_with("start: TEXT | opened \"[\" call (\", \" call)*"),
            "{g}"
        );
        let g = lark(ToolSyntax::Llama3, &fields(ToolChoice::Required, true)).unwrap();
        assert!(g.starts_with("start: call\n"), "{g}");
        assert!(g.contains("\"parameters\""), "{g}");
    }
}
