//! A single sequence, start to finish, on a private KV cache: the CLI's `generate` and the
//! fidelity tests use it; the server's engine drives `Model::forward` itself.

use crate::sampling::{log_softmax_top, Sampler, TokenLogprobs};
use crate::{KvCache, Model, Result, SeqInput, WantLogits};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

pub struct Generation {
    pub tokens: Vec<TokenLogprobs>,
    pub finish: FinishReason,
}

pub struct GenerateOptions<'a> {
    pub max_tokens: usize,
    pub top_logprobs: usize,
    /// Tokens that end generation (not included in the output).
    pub stop_tokens: &'a [u32],
    /// Prompt tokens per forward call while prefilling.
    pub prefill_chunk: usize,
}

/// Per-step callback: return false to stop early.
pub type OnToken<'a> = dyn FnMut(&TokenLogprobs) -> bool + 'a;

impl Model {
    /// A KV cache with one contiguous block table for `tokens` positions.
    pub fn private_cache(&self, tokens: usize) -> (KvCache, Vec<u32>) {
        let kv = KvCache::new(&self.config, tokens.max(1), 16);
        let table = (0..kv.n_blocks as u32).collect();
        (kv, table)
    }

    pub fn generate(
        &self,
        prompt: &[u32],
        sampler: &mut Sampler,
        opts: &GenerateOptions,
        on_token: &mut OnToken,
    ) -> Result<Generation> {
        let total = prompt.len() + opts.max_tokens;
        let (mut kv, table) = self.private_cache(total);
        let chunk = opts.prefill_chunk.max(1);
        let mut last = None;
        let mut pos = 0;
        for piece in prompt.chunks(chunk) {
            let want = if pos + piece.len() == prompt.len() {
                WantLogits::Last
            } else {
                WantLogits::None
            };
            let out = self.forward(
                &mut kv,
                &[SeqInput {
                    tokens: piece,
                    start_pos: pos,
                    block_table: &table,
                    logits: want,
                }],
            )?;
            pos += piece.len();
            if want == WantLogits::Last {
                last = out.last_for(0).map(|l| l.to_vec());
            }
        }
        let mut tokens = Vec::new();
        let mut logits = match last {
            Some(l) => l,
            None => {
                return Ok(Generation {
                    tokens,
                    finish: FinishReason::Length,
                })
            }
        };
        let finish = loop {
            if tokens.len() >= opts.max_tokens {
                break FinishReason::Length;
            }
            let (lse, top) = log_softmax_top(&logits, opts.top_logprobs);
            // The chosen token's log-probability is the model's own, before any processor.
            let raw = sampler.has_processors().then(|| logits.clone());
            let next = sampler.sample(&mut logits);
            sampler.accept(next);
            let raw_logit = raw.as_ref().unwrap_or(&logits)[next as usize];
            if opts.stop_tokens.contains(&next) {
                break FinishReason::Stop;
            }
            let tl = TokenLogprobs {
                token: next,
                logprob: (raw_logit as f64 - lse) as f32,
                top,
            };
            let go_on = on_token(&tl);
            tokens.push(tl);
            if !go_on {
                break FinishReason::Stop;
            }
            if tokens.len() >= opts.max_tokens {
                break FinishReason::Length;
            }
            let out = self.forward(
                &mut kv,
                &[SeqInput {
                    tokens: &[next],
                    start_pos: pos,
                    block_table: &table,
                    logits: WantLogits::Last,
                }],
            )?;
            pos += 1;
            logits = out.last_for(0).map(|l| l.to_vec()).unwrap_or_default();
        };
        Ok(Generation { tokens, finish })
    }
}
