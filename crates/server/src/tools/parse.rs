//! Reads tool calls out of a reply as its text arrives, in pieces a stream can send at
//! once: content before the calls (held back only while it could still be the start of
//! the opening tag), then per call its name as soon as it is complete and its arguments
//! in fragments. The whole reply is read by the same code fed in one piece, so a stream
//! and a non-streamed reply always agree.

use super::ToolSyntax;

/// What the reply said since the last push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Content(String),
    /// A call began: its index among the reply's calls, and the function's name.
    Call {
        index: usize,
        name: String,
    },
    /// More of the arguments (JSON text) of call `index`.
    Args {
        index: usize,
        text: String,
    },
}

/// A call the reply made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedCall {
    pub name: String,
    /// The arguments object exactly as written.
    pub arguments: String,
    /// Whether the call's JSON was closed (a reply cut by `max_tokens` may end inside one).
    pub complete: bool,
}

enum Mode {
    /// Before any call: text, which may still turn into the opening tag.
    Text,
    /// Llama 3: nothing but whitespace yet; a `{` makes it a call.
    Undecided,
    Calls,
}

/// Where the scan of the call region is.
#[derive(Default)]
struct Scan {
    /// Byte offset in `calls` up to which characters were scanned.
    at: usize,
    /// Start of the object being read, when inside one.
    obj: Option<usize>,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Start of the current call's arguments, once its name is known.
    args: Option<usize>,
    /// How much of the current arguments was sent.
    sent: usize,
    /// End of the arguments seen so far that is safe to send (never the outer `}`).
    safe: usize,
    /// The arguments object closed (anything after it is the call's own syntax).
    args_closed: bool,
}

pub struct CallParser {
    syntax: ToolSyntax,
    mode: Mode,
    /// Text not yet decided (a possible start of the opening tag).
    held: String,
    /// The call region, from just after the opening tag.
    calls: String,
    scan: Scan,
    parsed: Vec<ParsedCall>,
}

/// `{"name": "<name>", "<key>": ` at the start of an object: the call's name and where
/// its arguments begin. Keys in another order are read when the object closes.
fn head(obj: &str, key: &str) -> Option<(String, usize)> {
    let rest = obj.strip_prefix('{')?.trim_start();
    let rest = rest.strip_prefix("\"name\"")?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let body = rest.strip_prefix('"')?;
    let mut esc = false;
    let end = body.char_indices().find_map(|(i, c)| {
        if esc {
            esc = false;
            None
        } else if c == '\\' {
            esc = true;
            None
        } else {
            (c == '"').then_some(i)
        }
    })?;
    let name: String = serde_json::from_str(&format!("\"{}\"", &body[..end])).ok()?;
    let after = body[end + 1..].trim_start().strip_prefix(',')?.trim_start();
    let after = after.strip_prefix(&format!("\"{key}\""))?.trim_start();
    let after = after.strip_prefix(':')?.trim_start();
    // Only once the value's first character is in: the whitespace before it is not part
    // of the arguments.
    (!after.is_empty()).then(|| (name, obj.len() - after.len()))
}

/// The longest end of `s` that is a proper start of `tag`.
fn partial_tag(s: &str, tag: &str) -> usize {
    (1..tag.len().min(s.len() + 1))
        .rev()
        .find(|&k| s.is_char_boundary(s.len() - k) && tag.starts_with(&s[s.len() - k..]))
        .unwrap_or(0)
}

impl CallParser {
    pub fn new(syntax: ToolSyntax) -> Self {
        let mode = match syntax.trigger() {
            Some(_) => Mode::Text,
            None => Mode::Undecided,
        };
        Self {
            syntax,
            mode,
            held: String::new(),
            calls: String::new(),
            scan: Scan::default(),
            parsed: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        let mut out = Vec::new();
        match self.mode {
            Mode::Text => {
                let tag = self.syntax.trigger().unwrap_or_default();
                self.held.push_str(text);
                if let Some(i) = self.held.find(tag) {
                    let before = self.held[..i].to_string();
                    let after = self.held[i + tag.len()..].to_string();
                    self.held.clear();
                    if !before.is_empty() {
                        out.push(Piece::Content(before));
                    }
                    self.mode = Mode::Calls;
                    self.feed_calls(&after, &mut out);
                } else {
                    let keep = partial_tag(&self.held, tag);
                    let send = self.held[..self.held.len() - keep].to_string();
                    self.held.drain(..send.len());
                    if !send.is_empty() {
                        out.push(Piece::Content(send));
                    }
                }
            }
            Mode::Undecided => {
                self.held.push_str(text);
                let t = self.held.trim_start();
                if t.starts_with('{') {
                    let all = std::mem::take(&mut self.held);
                    self.mode = Mode::Calls;
                    self.feed_calls(&all, &mut out);
                } else if !t.is_empty() {
                    self.mode = Mode::Text;
                    // Llama 3 has no tag: whatever is not a call is content.
                    out.push(Piece::Content(std::mem::take(&mut self.held)));
                    self.syntax_text_only();
                }
            }
            Mode::Calls => self.feed_calls(text, &mut out),
        }
        out
    }

    /// After a Llama 3 reply turned out to be text, nothing more can open a call.
    fn syntax_text_only(&mut self) {
        self.mode = Mode::Calls;
        self.scan.at = usize::MAX;
    }

    /// The end of the reply: whatever was held back.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        if !self.held.is_empty() {
            out.push(Piece::Content(std::mem::take(&mut self.held)));
        }
        if let (Some(start), Some(args)) = (self.scan.obj, self.scan.args) {
            // Cut inside a call (max_tokens): what was written is all there is.
            let text = self.calls[args.max(start)..].trim_end().to_string();
            let index = self.parsed.len();
            if text.len() > self.scan.sent {
                out.push(Piece::Args {
                    index,
                    text: text[self.scan.sent..].to_string(),
                });
            }
            if let Some(name) = head(&self.calls[start..], self.syntax.args_key()).map(|h| h.0) {
                self.parsed.push(ParsedCall {
                    name,
                    arguments: text,
                    complete: false,
                });
            }
            self.scan.obj = None;
        } else {
            // Cut before a call's name was complete: the text so far stays visible, from
            // the opening tag when no call came before it.
            let obj = self.scan.obj.take();
            let in_calls = matches!(self.mode, Mode::Calls) && self.scan.at != usize::MAX;
            if in_calls && self.parsed.is_empty() {
                let tag = self.syntax.trigger().unwrap_or_default();
                out.push(Piece::Content(format!("{tag}{}", self.calls)));
            } else if let Some(start) = obj {
                out.push(Piece::Content(self.calls[start..].to_string()));
            }
        }
        out
    }

    /// The calls read so far.
    pub fn calls(&self) -> &[ParsedCall] {
        &self.parsed
    }

    fn feed_calls(&mut self, text: &str, out: &mut Vec<Piece>) {
        if self.scan.at == usize::MAX {
            out.push(Piece::Content(text.to_string()));
            return;
        }
        self.calls.push_str(text);
        let key = self.syntax.args_key();
        let mut i = self.scan.at;
        while i < self.calls.len() {
            let c = self.calls.as_bytes()[i];
            let s = &mut self.scan;
            if s.obj.is_none() {
                if c == b'{' {
                    s.obj = Some(i);
                    s.depth = 1;
                    s.args = None;
                    s.sent = 0;
                    s.args_closed = false;
                }
                i += 1;
                continue;
            }
            if s.in_string {
                if s.escaped {
                    s.escaped = false;
                } else if c == b'\\' {
                    s.escaped = true;
                } else if c == b'"' {
                    s.in_string = false;
                }
            } else {
                match c {
                    b'"' => s.in_string = true,
                    b'{' | b'[' => s.depth += 1,
                    b'}' | b']' => s.depth -= 1,
                    _ => {}
                }
            }
            i += 1;
            if s.args.is_some() && !s.args_closed {
                // Inside the arguments, or just closed them: safe to send. The outer
                // object's own `}` (depth 0) never is.
                if s.depth >= 2 {
                    s.safe = i;
                } else if s.depth == 1 && matches!(c, b'}' | b']') {
                    s.safe = i;
                    s.args_closed = true;
                }
            }
            if s.depth == 0 {
                let start = s.obj.take().unwrap_or_default();
                self.close_call(start, i, out);
                continue;
            }
            let start = self.scan.obj.unwrap_or_default();
            // A name is at most 64 characters: past that, the head is not coming.
            if self.scan.args.is_none() && i - start <= 160 {
                if let Some((name, off)) = head(&self.calls[start..i], key) {
                    // Only once the name's closing quote and the key are in.
                    let index = self.parsed.len();
                    out.push(Piece::Call { index, name });
                    self.scan.args = Some(start + off);
                    self.scan.safe = start + off;
                }
            }
        }
        self.scan.at = i;
        if let Some(args) = self.scan.args {
            let s = &mut self.scan;
            let end = s.safe.max(args);
            if end > args + s.sent {
                let index = self.parsed.len();
                out.push(Piece::Args {
                    index,
                    text: self.calls[args + s.sent..end].to_string(),
                });
                s.sent = end - args;
            }
        }
    }

    /// An object closed at `end`: a call if it has a name and an arguments object.
    fn close_call(&mut self, start: usize, end: usize, out: &mut Vec<Piece>) {
        let obj = &self.calls[start..end];
        let index = self.parsed.len();
        let parsed: Option<(String, String)> = serde_json::from_str::<serde_json::Value>(obj)
            .ok()
            .and_then(|v| {
                let name = v.get("name")?.as_str()?.to_string();
                let args = v
                    .get(self.syntax.args_key())
                    .or_else(|| v.get("arguments"))?;
                args.is_object().then(|| (name, args.to_string()))
            });
        let Some((name, compact)) = parsed else {
            // Not a call (or not one we can read): the text stays visible.
            out.push(Piece::Content(obj.to_string()));
            self.scan.args = None;
            return;
        };
        // The arguments as written when their start was found, else re-serialized.
        let arguments = match self.scan.args {
            Some(a) => {
                let written = self.calls[a..end - 1].trim_end().to_string();
                let sent = self.scan.sent;
                if written.len() > sent {
                    out.push(Piece::Args {
                        index,
                        text: written[sent..].to_string(),
                    });
                }
                written
            }
            None => {
                out.push(Piece::Call {
                    index,
                    name: name.clone(),
                });
                out.push(Piece::Args {
                    index,
                    text: compact.clone(),
                });
                compact
            }
        };
        self.parsed.push(ParsedCall {
            name,
            arguments,
            complete: true,
        });
        self.scan.args = None;
        self.scan.sent = 0;
    }
}

/// The whole reply at once: its content and its calls.
#[cfg(test)]
fn parse_all(syntax: ToolSyntax, text: &str) -> (String, Vec<ParsedCall>) {
    let mut p = CallParser::new(syntax);
    let mut content = String::new();
    for piece in p.push(text).into_iter().chain(p.finish()) {
        if let Piece::Content(c) = piece {
            content.push_str(&c);
        }
    }
    (content, p.parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` in pieces of `step` bytes and reassembles what the stream said.
    fn streamed(syntax: ToolSyntax, text: &str, step: usize) -> (String, Vec<(String, String)>) {
        let mut p = CallParser::new(syntax);
        let mut content = String::new();
        let mut calls: Vec<(String, String)> = Vec::new();
        let chars: Vec<char> = text.chars().collect();
        let mut pieces = Vec::new();
        for chunk in chars.chunks(step) {
            pieces.extend(p.push(&chunk.iter().collect::<String>()));
        }
        pieces.extend(p.finish());
        for piece in pieces {
            match piece {
                Piece::Content(c) => content.push_str(&c),
                Piece::Call { index, name } => {
                    assert_eq!(index, calls.len());
                    calls.push((name, String::new()));
                }
                Piece::Args { index, text } => calls[index].1.push_str(&text),
            }
        }
        (content, calls)
    }

    #[test]
    fn hermes_calls_stream_in_pieces_that_add_up() {
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris {x}\", \"days\": [1, 2]}}\n</tool_call>\n<tool_call>\n{\"name\": \"noop\", \"arguments\": {}}\n</tool_call>";
        for step in [1, 2, 3, 7, 1000] {
            let (content, calls) = streamed(ToolSyntax::Hermes, text, step);
            assert_eq!(content, "Let me check.\n", "step {step}");
            assert_eq!(
                calls,
                vec![
                    (
                        "get_weather".to_string(),
                        "{\"city\": \"Paris {x}\", \"days\": [1, 2]}".to_string()
                    ),
                    ("noop".to_string(), "{}".to_string())
                ],
                "step {step}"
            );
        }
        let (content, calls) = parse_all(ToolSyntax::Hermes, text);
        assert_eq!(content, "Let me check.\n");
        assert!(calls.iter().all(|c| c.complete));
    }

    #[test]
    fn instructed_json_arrays_and_llama3_objects() {
        let text = "<tool_call>[{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"name\": \"b\", \"arguments\": {\"y\": \"]\"}}]</tool_call>";
        for step in [1, 4, 1000] {
            let (content, calls) = streamed(ToolSyntax::Json, text, step);
            assert_eq!(content, "");
            assert_eq!(
                calls,
                vec![
                    ("a".into(), "{\"x\": 1}".into()),
                    ("b".into(), "{\"y\": \"]\"}".into())
                ]
            );
        }
        let text = " {\"name\": \"f\", \"parameters\": {\"q\": \"a\\\"b\"}}";
        for step in [1, 5, 1000] {
            let (content, calls) = streamed(ToolSyntax::Llama3, text, step);
            assert_eq!(content, "");
            assert_eq!(calls, vec![("f".into(), "{\"q\": \"a\\\"b\"}".into())]);
        }
        let (content, calls) = streamed(ToolSyntax::Llama3, "The answer is {x}.", 2);
        assert_eq!((content.as_str(), calls.len()), ("The answer is {x}.", 0));
    }

    #[test]
    fn text_that_only_looks_like_a_tag_is_content_and_a_cut_call_is_incomplete() {
        let (content, calls) = streamed(ToolSyntax::Hermes, "a <tool_ca b <tool", 1);
        assert_eq!((content.as_str(), calls.len()), ("a <tool_ca b <tool", 0));
        let (content, calls) = parse_all(
            ToolSyntax::Hermes,
            "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": \"unfini",
        );
        assert_eq!(content, "");
        assert_eq!(
            calls,
            vec![ParsedCall {
                name: "f".into(),
                arguments: "{\"a\": \"unfini".into(),
                complete: false
            }]
        );
        let (content, calls) = parse_all(ToolSyntax::Json, "<tool_call>[");
        assert_eq!((content.as_str(), calls.len()), ("<tool_call>[", 0));
        let (content, calls) = parse_all(ToolSyntax::Json, "<tool_call>[{\"name\": \"get_w");
        assert_eq!(
            (content.as_str(), calls.len()),
            ("<tool_call>[{\"name\": \"get_w", 0)
        );
        // Keys in another order are read when the object closes.
        let (_, calls) = parse_all(
            ToolSyntax::Hermes,
            "<tool_call>{\"arguments\": {\"a\": 1}, \"name\": \"f\"}</tool_call>",
        );
        assert_eq!(calls[0].arguments, "{\"a\":1}");
        assert_eq!(calls[0].name, "f");
    }
}
