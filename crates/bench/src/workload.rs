//! What to send: prompts of each workload, deterministic for a seed.

use crate::config::WorkloadKind;
use crate::rng::Rng;
use crate::{Error, Result};
use serde_json::Value;

/// Common English words, each usually one token with its leading space, so a prompt of
/// `n` words is close to `n` tokens on BPE vocabularies.
const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "his",
    "her",
    "they",
    "we",
    "you",
    "this",
    "that",
    "which",
    "one",
    "all",
    "were",
    "when",
    "there",
    "can",
    "an",
    "your",
    "more",
    "time",
    "people",
    "water",
    "story",
    "day",
    "work",
    "life",
    "world",
    "house",
    "city",
    "water",
    "small",
    "large",
    "early",
    "young",
    "great",
    "place",
    "year",
    "light",
    "night",
    "river",
    "road",
    "school",
    "system",
    "number",
    "group",
    "problem",
    "fact",
    "hand",
    "part",
    "child",
    "eye",
    "woman",
    "man",
    "home",
    "state",
    "family",
    "country",
    "book",
    "question",
    "company",
    "point",
    "government",
    "area",
    "money",
    "story",
    "month",
    "right",
    "study",
    "word",
    "business",
    "issue",
    "side",
    "kind",
    "head",
    "service",
    "friend",
    "power",
    "hour",
    "game",
    "line",
    "end",
    "member",
    "law",
    "car",
    "name",
    "team",
    "minute",
    "idea",
    "body",
    "information",
    "back",
    "face",
    "others",
    "level",
    "office",
    "door",
    "health",
    "person",
    "art",
    "war",
    "history",
    "party",
    "result",
    "change",
    "morning",
    "reason",
    "research",
    "girl",
    "guy",
    "moment",
    "air",
    "teacher",
    "force",
    "education",
];

/// One request to send.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestSpec {
    /// Chat messages (role, content); completions flatten them into a prompt.
    pub messages: Vec<(String, String)>,
    pub max_tokens: usize,
}

impl RequestSpec {
    pub fn prompt_text(&self) -> String {
        if self.messages.len() == 1 && self.messages[0].0 == "user" {
            return self.messages[0].1.clone();
        }
        let mut s = String::new();
        for (role, content) in &self.messages {
            s.push_str(role);
            s.push_str(": ");
            s.push_str(content);
            s.push('\n');
        }
        s.push_str("assistant:");
        s
    }
}

pub struct Workload {
    kind: WorkloadKind,
    rng: Rng,
    input_len: usize,
    output_len: usize,
    prefixes: Vec<String>,
    history: Vec<RequestSpec>,
    file: Vec<RequestSpec>,
    next_file: usize,
}

fn words(rng: &mut Rng, n: usize) -> String {
    let mut s = String::with_capacity(n * 6);
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[rng.below(WORDS.len())]);
    }
    s
}

fn parse_line(line: &str, default_max: usize, n: usize) -> Result<RequestSpec> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| Error::Config(format!("line {n}: {e}")))?;
    let max_tokens = v
        .get("max_tokens")
        .and_then(|m| m.as_u64())
        .map_or(default_max, |m| m as usize);
    if let Some(p) = v.get("prompt").and_then(|p| p.as_str()) {
        return Ok(RequestSpec {
            messages: vec![("user".into(), p.to_string())],
            max_tokens,
        });
    }
    let msgs = v
        .get("messages")
        .and_then(|m| m.as_array())
        .ok_or_else(|| Error::Config(format!("line {n}: needs \"prompt\" or \"messages\"")))?;
    let messages = msgs
        .iter()
        .map(|m| {
            let role = m
                .get("role")
                .and_then(|r| r.as_str())
                .unwrap_or("user")
                .to_string();
            let content = m.get("content").and_then(|c| c.as_str()).ok_or_else(|| {
                Error::Config(format!("line {n}: message content must be a string"))
            })?;
            Ok((role, content.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RequestSpec {
        messages,
        max_tokens,
    })
}

impl Workload {
    pub fn new(kind: WorkloadKind, seed: u64, input_len: usize, output_len: usize) -> Result<Self> {
        let mut rng = Rng::new(seed);
        let prefixes = match &kind {
            WorkloadKind::SharedPrefix {
                prefix_count,
                prefix_len,
            } => (0..*prefix_count.max(&1))
                .map(|i| {
                    format!(
                        "You are assistant number {i}. {}",
                        words(&mut rng, *prefix_len)
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        let file = match &kind {
            WorkloadKind::File(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| Error::Config(format!("{}: {e}", p.display())))?;
                let items: Vec<RequestSpec> = text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                    .map(|(i, l)| parse_line(l, output_len, i + 1))
                    .collect::<Result<_>>()?;
                if items.is_empty() {
                    return Err(Error::Config(format!("{} has no requests", p.display())));
                }
                items
            }
            _ => Vec::new(),
        };
        Ok(Self {
            kind,
            rng,
            input_len,
            output_len,
            prefixes,
            history: Vec::new(),
            file,
            next_file: 0,
        })
    }

    fn random(&mut self) -> RequestSpec {
        RequestSpec {
            messages: vec![("user".into(), words(&mut self.rng, self.input_len))],
            max_tokens: self.output_len,
        }
    }

    /// The next independent request (every workload but agent).
    pub fn next(&mut self) -> RequestSpec {
        match self.kind.clone() {
            WorkloadKind::Random | WorkloadKind::Agent { .. } => self.random(),
            WorkloadKind::SharedPrefix { .. } => {
                let p = self.prefixes[self.rng.below(self.prefixes.len())].clone();
                let q = format!("Question: {}?", words(&mut self.rng, self.input_len.max(4)));
                RequestSpec {
                    messages: vec![("system".into(), p), ("user".into(), q)],
                    max_tokens: self.output_len,
                }
            }
            WorkloadKind::Repeated { fraction } => {
                if !self.history.is_empty() && self.rng.uniform() < fraction {
                    self.history[self.rng.below(self.history.len())].clone()
                } else {
                    let r = self.random();
                    self.history.push(r.clone());
                    r
                }
            }
            WorkloadKind::File(_) => {
                let r = self.file[self.next_file % self.file.len()].clone();
                self.next_file += 1;
                r
            }
        }
    }

    /// A new agent session: a system prompt and the user turns to send one by one.
    pub fn session(&mut self, turns: usize) -> (String, Vec<String>) {
        let system = format!(
            "You operate a phone for the user. Screen elements: {}",
            words(&mut self.rng, self.input_len)
        );
        let asks = (0..turns)
            .map(|t| format!("Step {t}: {}", words(&mut self.rng, 12)))
            .collect();
        (system, asks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_are_deterministic_and_shaped() {
        let mut a = Workload::new(WorkloadKind::Random, 7, 50, 10).unwrap();
        let mut b = Workload::new(WorkloadKind::Random, 7, 50, 10).unwrap();
        assert_eq!(a.next(), b.next());
        assert_eq!(a.next().messages[0].1.split(' ').count(), 50);
        let mut s = Workload::new(
            WorkloadKind::SharedPrefix {
                prefix_count: 2,
                prefix_len: 30,
            },
            1,
            8,
            4,
        )
        .unwrap();
        let systems: std::collections::HashSet<String> =
            (0..50).map(|_| s.next().messages[0].1.clone()).collect();
        assert_eq!(systems.len(), 2);
        let mut r = Workload::new(WorkloadKind::Repeated { fraction: 0.5 }, 3, 20, 4).unwrap();
        let all: Vec<RequestSpec> = (0..200).map(|_| r.next()).collect();
        let distinct: std::collections::HashSet<String> =
            all.iter().map(|x| x.messages[0].1.clone()).collect();
        assert!(
            distinct.len() > 60 && distinct.len() < 140,
            "{}",
            distinct.len()
        );
    }
}
