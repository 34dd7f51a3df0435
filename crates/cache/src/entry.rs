//! What the cache stores: a response as the events a live generation emits (text deltas
//! with their tokens and log-probabilities, each choice's finish and token counts), so a
//! hit is replayed through the same formatting as a live answer — as SSE chunks with the
//! same chunking, or assembled into one JSON body.
//!
//! On the wire (Redis) an entry is `MAGIC`, a format version, the SHA-256 of the body and
//! the body (JSON). Anything else — a foreign value, a truncated one, one from another
//! version — decodes to an error, which the cache treats as a miss.

use crate::{Error, Result};
use api::FinishReason;
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// One sampled token as the client may see it (ids: the cache key pins the model file,
/// so the tokenizer that spells them is the same on replay).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob: Option<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<(u32, f32)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub enum Event {
    /// New text of one choice; `tokens` are the tokens it came from (a delta may be
    /// empty text with a token, while a multi-byte character is incomplete).
    Text {
        choice: u32,
        text: String,
        tokens: Vec<TokenRecord>,
    },
    Finish {
        choice: u32,
        reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
}

/// A whole response: its events in the order they were produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When it was generated (Unix milliseconds): `max-age` and TTLs count from here.
    pub created_ms: u64,
    pub events: Vec<Event>,
}

const MAGIC: &[u8; 6] = b"AGLMRC";
/// Bumped whenever `Entry`'s meaning or encoding changes: older values become misses.
pub const FORMAT_VERSION: u16 = 1;
const HEADER: usize = MAGIC.len() + 2 + 32;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Entry {
    pub fn new(events: Vec<Event>) -> Self {
        Self {
            created_ms: now_ms(),
            events,
        }
    }

    /// Milliseconds since it was generated (0 if the clock went back).
    pub fn age_ms(&self) -> u64 {
        now_ms().saturating_sub(self.created_ms)
    }

    pub fn encode(&self) -> Vec<u8> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&sha2::Sha256::digest(&body));
        out.extend_from_slice(&body);
        out
    }

    pub fn decode(raw: &[u8]) -> Result<Self> {
        let bad = |why: &str| Error::Corrupt(why.to_string());
        if raw.len() < HEADER || &raw[..MAGIC.len()] != MAGIC {
            return Err(bad("not an autoglm cache entry"));
        }
        let version = u16::from_le_bytes([raw[6], raw[7]]);
        if version != FORMAT_VERSION {
            return Err(bad(&format!(
                "format version {version}, not {FORMAT_VERSION}"
            )));
        }
        let (sum, body) = raw[8..].split_at(32);
        if sha2::Sha256::digest(body).as_slice() != sum {
            return Err(bad("checksum mismatch (truncated or altered)"));
        }
        let e: Entry = serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
        e.check()?;
        Ok(e)
    }

    /// Every choice that appears must finish exactly once, after its text: a replay must
    /// never end a stream early.
    fn check(&self) -> Result<()> {
        let mut finished = std::collections::BTreeMap::new();
        for ev in &self.events {
            let (choice, fin) = match ev {
                Event::Text { choice, .. } => (*choice, false),
                Event::Finish { choice, .. } => (*choice, true),
            };
            let seen = finished.entry(choice).or_insert(false);
            if *seen {
                return Err(Error::Corrupt(format!(
                    "choice {choice} has events after its finish"
                )));
            }
            *seen = fin;
        }
        if finished.is_empty() || finished.values().any(|f| !f) {
            return Err(Error::Corrupt("a choice never finishes".into()));
        }
        Ok(())
    }

    /// Bytes it holds in memory, roughly: what the L1 weighs it by.
    pub fn weight(&self) -> usize {
        let mut w = std::mem::size_of::<Self>();
        for ev in &self.events {
            w += std::mem::size_of::<Event>();
            if let Event::Text { text, tokens, .. } = ev {
                w += text.len();
                for t in tokens {
                    w += std::mem::size_of::<TokenRecord>() + t.top.len() * 8;
                }
            }
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry::new(vec![
            Event::Text {
                choice: 0,
                text: "Hi".into(),
                tokens: vec![TokenRecord {
                    id: 7,
                    logprob: Some(-0.25),
                    top: vec![(7, -0.25), (9, -1.5)],
                }],
            },
            Event::Finish {
                choice: 0,
                reason: FinishReason::Length,
                prompt_tokens: 3,
                completion_tokens: 1,
            },
        ])
    }

    #[test]
    fn round_trips_exactly() {
        let e = sample();
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn foreign_truncated_altered_or_other_version_values_are_errors() {
        let raw = sample().encode();
        assert!(Entry::decode(b"hello").is_err());
        assert!(Entry::decode(b"").is_err());
        assert!(Entry::decode(&raw[..raw.len() - 1]).is_err());
        let mut flipped = raw.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(Entry::decode(&flipped).is_err());
        let mut other = raw.clone();
        other[6] = other[6].wrapping_add(1);
        assert!(Entry::decode(&other).is_err());
    }

    #[test]
    fn an_entry_whose_choice_never_finishes_is_refused() {
        let mut e = sample();
        e.events.pop();
        assert!(Entry::decode(&e.encode()).is_err());
        let mut twice = sample();
        twice.events.push(twice.events[1].clone());
        assert!(Entry::decode(&twice.encode()).is_err());
    }
}
