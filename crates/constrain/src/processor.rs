//! The constraint as a logits processor: every token the grammar cannot take next gets
//! −∞ before sampling (a forced token, when the grammar allows one continuation only,
//! is found without the full mask); each chosen token advances the parser; a rollback
//! rewinds it.

use llguidance::Matcher;

pub(crate) struct Guided {
    matcher: Matcher,
    eos: u32,
}

impl Guided {
    pub fn new(matcher: Matcher, eos: u32) -> Self {
        Self { matcher, eos }
    }
}

impl model::LogitsProcessor for Guided {
    fn process(&mut self, logits: &mut [f32]) {
        let t = std::time::Instant::now();
        // Where the grammar allows one continuation only, its token is known without
        // walking the vocabulary: keep that one.
        if let Some(&forced) = self.matcher.compute_ff_tokens().first() {
            if let Some(&l) = logits.get(forced as usize) {
                logits.fill(f32::NEG_INFINITY);
                logits[forced as usize] = l;
                metrics::histogram!(crate::MASK_SECONDS).record(t.elapsed().as_secs_f64());
                return;
            }
        }
        let mask = self.matcher.compute_mask_or_eos();
        metrics::histogram!(crate::MASK_SECONDS).record(t.elapsed().as_secs_f64());
        match mask {
            Ok(mask) => {
                let n = mask.len().min(logits.len());
                mask.iter_unset_entries(|i| {
                    if i < n {
                        logits[i] = f32::NEG_INFINITY;
                    }
                });
                // Rows past the grammar's vocabulary (padding) are never allowed.
                for l in &mut logits[n..] {
                    *l = f32::NEG_INFINITY;
                }
            }
            Err(e) => {
                // A parser that failed can only end the answer.
                tracing::warn!(error = %e, "the grammar failed; ending the answer");
                let keep = logits.get(self.eos as usize).copied();
                logits.fill(f32::NEG_INFINITY);
                if let (Some(l), Some(v)) = (logits.get_mut(self.eos as usize), keep) {
                    *l = v.max(0.0);
                }
            }
        }
    }

    fn accept(&mut self, token: u32) {
        if let Err(e) = self.matcher.consume_token(token) {
            tracing::warn!(error = %e, token, "the grammar refused a sampled token");
        }
    }

    fn rollback(&mut self, n: usize) {
        if let Err(e) = self.matcher.rollback(n) {
            tracing::warn!(error = %e, n, "rolling the grammar back failed");
        }
    }
}
