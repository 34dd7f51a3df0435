//! `--reasoning-parser`: models that think in `<think>...</think>` before they answer get
//! the thinking back as `reasoning_content` and only the answer as `content`, streamed
//! as it arrives (held back only while the text could still be the start of a tag).

/// How a model's thinking is marked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReasoningParser {
    /// DeepSeek-R1 and its distills: the template opens `<think>` in the prompt, so the
    /// reply starts inside the thinking (writing the tag again is allowed); without a
    /// `</think>` everything is thinking.
    DeepSeekR1,
    /// Qwen3, GLM-4.5+/AutoGLM: the reply opens `<think>` itself; a reply that does not
    /// start with it has no thinking.
    Qwen3,
}

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

impl ReasoningParser {
    /// vLLM's names for the same parsers (`glm45` reads like `qwen3`).
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "deepseek_r1" => Some(Self::DeepSeekR1),
            "qwen3" | "glm45" => Some(Self::Qwen3),
            _ => None,
        }
    }

    pub fn starts_thinking(self) -> bool {
        self == Self::DeepSeekR1
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not yet known whether (or, for R1, that) the opening tag is there.
    Start,
    Thinking,
    /// After `</think>`, before the answer's first non-space character.
    Between,
    Answer,
}

/// One choice's split, fed its text as it arrives.
pub struct Splitter {
    parser: ReasoningParser,
    state: State,
    held: String,
}

/// What a piece of text turned out to be.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub reasoning: String,
    pub content: String,
}

fn partial(s: &str, tag: &str) -> usize {
    (1..tag.len().min(s.len() + 1))
        .rev()
        .find(|&k| s.is_char_boundary(s.len() - k) && tag.starts_with(&s[s.len() - k..]))
        .unwrap_or(0)
}

impl Splitter {
    pub fn new(parser: ReasoningParser) -> Self {
        Self {
            parser,
            state: State::Start,
            held: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> Split {
        let mut out = Split::default();
        self.held.push_str(text);
        loop {
            match self.state {
                State::Start => {
                    let t = self.held.trim_start();
                    if let Some(rest) = t.strip_prefix(OPEN) {
                        self.held = rest.to_string();
                        self.state = State::Thinking;
                    } else if OPEN.starts_with(t) {
                        return out; // maybe the tag, not complete yet
                    } else {
                        self.state = if self.parser.starts_thinking() {
                            State::Thinking
                        } else {
                            State::Answer
                        };
                    }
                }
                State::Thinking => {
                    if let Some(i) = self.held.find(CLOSE) {
                        out.reasoning.push_str(&self.held[..i]);
                        self.held.drain(..i + CLOSE.len());
                        self.state = State::Between;
                    } else {
                        let keep = partial(&self.held, CLOSE);
                        let n = self.held.len() - keep;
                        out.reasoning.push_str(&self.held[..n]);
                        self.held.drain(..n);
                        return out;
                    }
                }
                State::Between => {
                    let t = self.held.trim_start();
                    if t.is_empty() {
                        self.held.clear();
                        return out;
                    }
                    self.held = t.to_string();
                    self.state = State::Answer;
                }
                State::Answer => {
                    out.content.push_str(&self.held);
                    self.held.clear();
                    return out;
                }
            }
        }
    }

    /// The end of the reply: what was held back goes where it was headed.
    pub fn finish(&mut self) -> Split {
        let held = std::mem::take(&mut self.held);
        match self.state {
            State::Thinking => Split {
                reasoning: held,
                content: String::new(),
            },
            State::Start if self.parser.starts_thinking() => Split {
                reasoning: held,
                content: String::new(),
            },
            _ => Split {
                reasoning: String::new(),
                content: held,
            },
        }
    }
}

/// The whole reply at once.
pub fn split_all(parser: ReasoningParser, text: &str) -> Split {
    let mut s = Splitter::new(parser);
    let mut a = s.push(text);
    let b = s.finish();
    a.reasoning.push_str(&b.reasoning);
    a.content.push_str(&b.content);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(p: ReasoningParser, text: &str, step: usize) -> (String, String) {
        let mut s = Splitter::new(p);
        let (mut r, mut c) = (String::new(), String::new());
        let chars: Vec<char> = text.chars().collect();
        for chunk in chars.chunks(step) {
            let o = s.push(&chunk.iter().collect::<String>());
            r.push_str(&o.reasoning);
            c.push_str(&o.content);
        }
        let o = s.finish();
        r.push_str(&o.reasoning);
        c.push_str(&o.content);
        (r, c)
    }

    #[test]
    fn thinking_and_answer_split_the_same_however_the_text_arrives() {
        use ReasoningParser::*;
        for (p, text, want) in [
            (Qwen3, "<think>\nhmm, 2+2</think>\n\n4", ("\nhmm, 2+2", "4")),
            (
                Qwen3,
                "4, no thinking <think>",
                ("", "4, no thinking <think>"),
            ),
            (Qwen3, "<thi", ("", "<thi")),
            (DeepSeekR1, "hmm</think>4 </think>", ("hmm", "4 </think>")),
            (DeepSeekR1, "<think>hmm</think>4", ("hmm", "4")),
            (
                DeepSeekR1,
                "still thinking </thin",
                ("still thinking </thin", ""),
            ),
            (
                Qwen3,
                "<think>a <b> </thin k</think>ok",
                ("a <b> </thin k", "ok"),
            ),
        ] {
            for step in [1, 2, 3, 100] {
                let (r, c) = streamed(p, text, step);
                assert_eq!((r.as_str(), c.as_str()), want, "{p:?} {text:?} step {step}");
            }
            let s = split_all(p, text);
            assert_eq!((s.reasoning.as_str(), s.content.as_str()), want);
        }
    }
}
