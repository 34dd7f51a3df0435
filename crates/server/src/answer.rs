//! A chat answer read as it arrives: thinking split off (`--reasoning-parser`), then tool
//! calls read out of the rest (when the request offered tools), what is left being the
//! content. Streamed chunks and the whole reply go through the same reader, so both say
//! the same thing; a cache replay is read afresh the same way.

use crate::reasoning::{ReasoningParser, Splitter};
use crate::tools::parse::{CallParser, ParsedCall, Piece};
use crate::tools::ToolSyntax;
use api::{FunctionDelta, ToolCall, ToolCallDelta};

/// How a request's answers are read.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnswerShape {
    pub reasoning: Option<ReasoningParser>,
    /// The call syntax, when the request offered tools the model may call.
    pub tools: Option<ToolSyntax>,
}

/// One choice's reader.
#[derive(Default)]
pub struct AnswerReader {
    split: Option<Splitter>,
    calls: Option<CallParser>,
    /// Ids given to the calls so far, by index.
    ids: Vec<String>,
    started: bool,
}

/// What a piece of text turned out to say.
#[derive(Default)]
pub struct Said {
    pub reasoning: String,
    pub content: String,
    pub calls: Vec<ToolCallDelta>,
}

fn call_id() -> String {
    format!("call_{}", crate::ids::new_id())
}

impl AnswerReader {
    fn start(&mut self, shape: AnswerShape) {
        if !self.started {
            self.started = true;
            self.split = shape.reasoning.map(Splitter::new);
            self.calls = shape.tools.map(CallParser::new);
        }
    }

    /// Reads `text`; `end`: nothing follows, so nothing is held back.
    pub fn read(&mut self, shape: AnswerShape, text: &str, end: bool) -> Said {
        self.start(shape);
        let mut said = Said::default();
        let answer = match &mut self.split {
            Some(s) => {
                let mut a = s.push(text);
                if end {
                    let b = s.finish();
                    a.reasoning.push_str(&b.reasoning);
                    a.content.push_str(&b.content);
                }
                said.reasoning = a.reasoning;
                a.content
            }
            None => text.to_string(),
        };
        let Some(p) = &mut self.calls else {
            said.content = answer;
            return said;
        };
        let mut pieces = p.push(&answer);
        if end {
            pieces.extend(p.finish());
        }
        for piece in pieces {
            match piece {
                Piece::Content(c) => said.content.push_str(&c),
                Piece::Call { index, name } => {
                    let id = call_id();
                    self.ids.push(id.clone());
                    said.calls.push(ToolCallDelta {
                        index,
                        id: Some(id),
                        kind: Some("function".into()),
                        function: FunctionDelta {
                            name: Some(name),
                            arguments: Some(String::new()),
                        },
                    });
                }
                Piece::Args { index, text } => match said.calls.last_mut() {
                    Some(d) if d.index == index => {
                        d.function
                            .arguments
                            .get_or_insert_with(String::new)
                            .push_str(&text);
                    }
                    _ => said.calls.push(ToolCallDelta {
                        index,
                        function: FunctionDelta {
                            name: None,
                            arguments: Some(text),
                        },
                        ..Default::default()
                    }),
                },
            }
        }
        said
    }

    /// Whether the answer made at least one whole call (its finish reason is then
    /// `tool_calls`).
    pub fn called(&self) -> bool {
        self.calls
            .as_ref()
            .is_some_and(|p| p.calls().iter().any(|c| c.complete))
    }

    /// The calls made, with the ids their stream announced.
    pub fn tool_calls(&self) -> Vec<ToolCall> {
        let calls: &[ParsedCall] = self.calls.as_ref().map(|p| p.calls()).unwrap_or_default();
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let id = self.ids.get(i).cloned().unwrap_or_else(call_id);
                ToolCall::function(id, c.name.clone(), c.arguments.clone())
            })
            .collect()
    }
}
