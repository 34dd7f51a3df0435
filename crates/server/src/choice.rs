//! What formatting needs to know about one choice: its index, and the tokenizer that
//! spells its tokens for log-probabilities. The same for a live answer, a follower of a
//! running generation and a cache hit, so all three are formatted by the same code.

use api::{ChatLogprobs, ChatTokenLogprob, CompletionLogprobs, FinishReason, TopLogprob};
use cache::TokenRecord;
use tokenizer::Tokenizer;

pub struct ChoiceCtx<'a> {
    pub index: usize,
    pub tokenizer: &'a Tokenizer,
}

/// Everything a choice produced, for non-streaming responses.
pub struct Collected {
    pub text: String,
    pub tokens: Vec<TokenRecord>,
    pub finish: FinishReason,
}

impl ChoiceCtx<'_> {
    pub fn token_text(&self, id: u32) -> (String, Vec<u8>) {
        let b = self
            .tokenizer
            .token_bytes(id)
            .map(|b| b.to_vec())
            .unwrap_or_default();
        (String::from_utf8_lossy(&b).into_owned(), b)
    }

    pub fn chat_logprobs(&self, tokens: &[TokenRecord]) -> Option<ChatLogprobs> {
        let content: Vec<ChatTokenLogprob> = tokens
            .iter()
            .filter_map(|t| {
                let lp = t.logprob?;
                let (token, bytes) = self.token_text(t.id);
                let top_logprobs = t
                    .top
                    .iter()
                    .map(|&(id, l)| {
                        let (token, bytes) = self.token_text(id);
                        TopLogprob {
                            token,
                            logprob: l,
                            bytes,
                        }
                    })
                    .collect();
                Some(ChatTokenLogprob {
                    token,
                    logprob: lp,
                    bytes,
                    top_logprobs,
                })
            })
            .collect();
        Some(ChatLogprobs { content })
    }

    /// Appends `tokens` to the legacy completions logprobs; `offset` is the text length so far.
    pub fn completion_logprobs(
        &self,
        tokens: &[TokenRecord],
        offset: &mut usize,
        into: &mut CompletionLogprobs,
    ) {
        for t in tokens {
            let Some(lp) = t.logprob else { continue };
            let (text, _) = self.token_text(t.id);
            into.text_offset.push(*offset);
            *offset += text.len();
            into.tokens.push(text);
            into.token_logprobs.push(lp);
            into.top_logprobs.push(
                t.top
                    .iter()
                    .map(|&(id, l)| (self.token_text(id).0, l))
                    .collect(),
            );
        }
    }
}
