//! Constrained decoding: what an answer must match (a JSON schema, any JSON object, a
//! regex, one of fixed choices, or a Lark grammar) compiled by llguidance against our
//! vocabulary into a logits processor that masks every token the grammar cannot take
//! next. Compilation is the expensive part and runs where the caller puts it (the server
//! does it on its blocking pool, never on the engine thread); the per-step mask is
//! computed lazily by llguidance's Earley parser over a token trie.

mod processor;
mod vocab_env;

use llguidance::api::TopLevelGrammar;
use llguidance::ParserFactory;
use std::sync::Arc;
use tokenizer::Tokenizer;

/// Seconds to compute one step's token mask for one sequence, and the histogram's
/// bucket edges (10 µs to 0.1 s).
pub const MASK_SECONDS: &str = "autoglm_grammar_mask_seconds";
pub const MASK_BUCKETS: &[f64] = &[
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 1e-1,
];

/// What the output must match.
#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    /// Any JSON object.
    JsonObject,
    /// JSON valid under this schema.
    JsonSchema(serde_json::Value),
    Regex(String),
    /// Exactly one of these strings.
    Choice(Vec<String>),
    /// A grammar in llguidance's Lark dialect.
    Lark(String),
    /// `answer` after a `<think>...</think>` block that is left free: the constraint
    /// holds the answer, not the thinking. `starts_inside`: the prompt opened the block
    /// already (DeepSeek-R1), so the thinking is not optional.
    AfterThinking {
        starts_inside: bool,
        answer: Box<Spec>,
    },
}

/// The free thinking block, then the answer (another grammar, `@answer`). The block ends
/// at the first `</think>` (a lazy match); space before the answer is allowed, since
/// models put a blank line there.
fn after_thinking(starts_inside: bool) -> String {
    let block = if starts_inside {
        "\"<think>\"? think"
    } else {
        "(\"<think>\" think)?"
    };
    format!(
        "start: {block} SPACE? @answer\nthink[lazy]: /(.|\\n)*<\\/think>/\nSPACE: /[ \\t\\r\\n]+/\n"
    )
}

/// JSON on one line, separators as Python's `json.dumps` writes them. llguidance would
/// otherwise allow any whitespace between tokens, and a small model spends its tokens
/// there ("\n\n,\n"). A schema's own `x-guidance` options win.
pub fn one_line(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(o) = schema.as_object_mut() {
        o.entry("x-guidance").or_insert_with(|| {
            serde_json::json!({
                "whitespace_flexible": false,
                "item_separator": ", ",
                "key_separator": ": ",
            })
        });
    }
    schema
}

impl Spec {
    fn grammar(&self) -> TopLevelGrammar {
        match self {
            Spec::JsonObject => {
                TopLevelGrammar::from_json_schema(one_line(serde_json::json!({"type": "object"})))
            }
            Spec::JsonSchema(s) => TopLevelGrammar::from_json_schema(one_line(s.clone())),
            Spec::Regex(r) => TopLevelGrammar::from_regex(r),
            Spec::Choice(c) => {
                let alts: Vec<String> = c.iter().map(|s| regex_syntax::escape(s)).collect();
                TopLevelGrammar::from_regex(&format!("(?:{})", alts.join("|")))
            }
            Spec::Lark(g) => TopLevelGrammar::from_lark(g.clone()),
            Spec::AfterThinking {
                starts_inside,
                answer,
            } => {
                let mut inner = answer.grammar();
                if let Some(first) = inner.grammars.first_mut() {
                    first.name = Some("answer".into());
                }
                let mut top = TopLevelGrammar::from_lark(after_thinking(*starts_inside));
                top.grammars.extend(inner.grammars);
                top
            }
        }
    }
}

/// The model's grammar compiler: built once per vocabulary (the token trie and its
/// slices take a while), shared by every request.
pub struct Grammars {
    factory: ParserFactory,
    eos: u32,
}

impl Grammars {
    pub fn new(tok: Arc<Tokenizer>) -> Result<Self, String> {
        let eos = vocab_env::eos_of(&tok)?;
        let env = vocab_env::token_env(tok)?;
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        // Errors go back to the caller; nothing on stderr.
        factory.quiet();
        Ok(Self { factory, eos })
    }

    /// Compiles `spec`; an invalid or unsupported one is an error naming the problem.
    pub fn compile(&self, spec: &Spec) -> Result<Arc<Compiled>, String> {
        if let Spec::Choice(c) = spec {
            if c.is_empty() {
                return Err("the choice list is empty".into());
            }
        }
        let parser = self
            .factory
            .create_parser(spec.grammar())
            .map_err(|e| e.to_string())?;
        let matcher = llguidance::Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(e);
        }
        Ok(Arc::new(Compiled {
            matcher,
            eos: self.eos,
        }))
    }
}

/// A compiled constraint, ready to start any number of sequences.
pub struct Compiled {
    matcher: llguidance::Matcher,
    eos: u32,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compiled grammar")
    }
}

impl model::ProcessorFactory for Compiled {
    fn make(&self) -> Box<dyn model::LogitsProcessor> {
        Box::new(processor::Guided::new(self.matcher.deep_clone(), self.eos))
    }
}
