//! Tool calling: how the model's chat template spells a call (detected once from its
//! source), how the request's tools and history reach the prompt, the grammar that
//! holds the model to that spelling, and the parser that reads calls back out of the
//! text, whole or as it streams.

pub mod grammar;
pub mod parse;
pub mod prompt;

/// The spelling of tool calls a model was trained on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolSyntax {
    /// Hermes and Qwen: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`,
    /// once per call; the template lists the tools itself.
    Hermes,
    /// Llama 3.1 and later: the whole reply is `{"name": ..., "parameters": {...}}`, one
    /// call per turn; the template lists the tools itself.
    Llama3,
    /// Templates that know no tools (SmolLM2, Phi, Gemma…): the tools are described in a
    /// system instruction and a reply calls them as
    /// `<tool_call>[{"name": ..., "arguments": {...}}, ...]</tool_call>`, the format
    /// SmolLM2's model card documents.
    Json,
}

impl ToolSyntax {
    /// Reads the template's source. GLM's XML-argument format (`<arg_key>`) is not one
    /// we parse, so such templates get the instructed JSON format.
    pub fn detect(template: &str) -> Self {
        let has = |s: &str| template.contains(s);
        if has("<tool_call>") && !has("<arg_key>") && has("tools") {
            Self::Hermes
        } else if has("<|start_header_id|>") && has("tools") && has("\"parameters\"") {
            Self::Llama3
        } else {
            Self::Json
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Hermes => "hermes",
            Self::Llama3 => "llama3_json",
            Self::Json => "json_instructed",
        }
    }

    /// Whether the chat template renders `tools`, `tool_calls` and `tool` messages.
    pub fn template_renders_tools(self) -> bool {
        self != Self::Json
    }

    /// The text that opens the calls. Llama 3 has none: a reply that starts with `{`
    /// is a call.
    pub fn trigger(self) -> Option<&'static str> {
        match self {
            Self::Hermes | Self::Json => Some("<tool_call>"),
            Self::Llama3 => None,
        }
    }

    /// The key of a call's arguments object.
    pub fn args_key(self) -> &'static str {
        match self {
            Self::Llama3 => "parameters",
            Self::Hermes | Self::Json => "arguments",
        }
    }

    /// Whether one reply may hold several calls (Llama 3's templates refuse that).
    pub fn parallel(self) -> bool {
        self != Self::Llama3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(name: &str) -> Option<String> {
        let p = format!(
            "{}/../../bench/llama.cpp/src/models/templates/{name}.jinja",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(p).ok()
    }

    #[test]
    fn the_syntax_is_read_from_the_template() {
        assert_eq!(
            ToolSyntax::detect("{% for m in messages %}{{ m.content }}{% endfor %}"),
            ToolSyntax::Json
        );
        assert_eq!(
            ToolSyntax::detect("{% if tools %}<tools>{% endif %}<tool_call>"),
            ToolSyntax::Hermes
        );
        // The real templates, where llama.cpp's sources have been fetched (bench/).
        for (name, want) in [
            ("Qwen-Qwen2.5-7B-Instruct", ToolSyntax::Hermes),
            ("Qwen-Qwen3-0.6B", ToolSyntax::Hermes),
            (
                "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
                ToolSyntax::Hermes,
            ),
            ("meta-llama-Llama-3.1-8B-Instruct", ToolSyntax::Llama3),
            ("meta-llama-Llama-3.2-3B-Instruct", ToolSyntax::Llama3),
            ("GLM-4.6", ToolSyntax::Json),
            ("google-gemma-2-2b-it", ToolSyntax::Json),
        ] {
            if let Some(t) = template(name) {
                assert_eq!(ToolSyntax::detect(&t), want, "{name}");
            }
        }
    }
}
