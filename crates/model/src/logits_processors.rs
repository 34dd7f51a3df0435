//! Per-sequence logits processors: each adjusts the next token's logits in place, learns
//! of every accepted token, and can forget the last few (a rejected speculative draft, a
//! grammar backtrack). The sampler runs its chain before choosing; log-probabilities are
//! taken before the chain, from the model's own distribution.

use std::collections::HashMap;

pub trait LogitsProcessor: Send {
    /// Adjusts the logits of the next token.
    fn process(&mut self, logits: &mut [f32]);
    /// `token` was chosen and is now part of the output.
    fn accept(&mut self, token: u32);
    /// Forgets the last `n` accepted tokens (at most as many as were accepted).
    fn rollback(&mut self, n: usize);
}

/// Makes a fresh processor for each sequence that needs one (each of a request's `n`
/// choices keeps its own state), e.g. a compiled grammar.
pub trait ProcessorFactory: Send + Sync + std::fmt::Debug {
    fn make(&self) -> Box<dyn LogitsProcessor>;
}

/// OpenAI's `logit_bias`: a fixed amount added to chosen tokens' logits every step.
pub struct LogitBias {
    bias: Vec<(u32, f32)>,
}

impl LogitBias {
    pub fn new(bias: Vec<(u32, f32)>) -> Self {
        Self { bias }
    }
}

impl LogitsProcessor for LogitBias {
    fn process(&mut self, logits: &mut [f32]) {
        for &(t, b) in &self.bias {
            if let Some(l) = logits.get_mut(t as usize) {
                *l += b;
            }
        }
    }
    fn accept(&mut self, _: u32) {}
    fn rollback(&mut self, _: usize) {}
}

/// Repetition (multiplicative, over prompt and output, once per distinct token),
/// frequency and presence penalties (additive, over the output). Counts are kept up to
/// date token by token instead of being rebuilt from the whole history every step.
pub struct Penalties {
    repetition: f32,
    frequency: f32,
    presence: f32,
    /// Occurrences in prompt + output, for the repetition penalty.
    seen: HashMap<u32, u32>,
    /// Occurrences in the output.
    output_counts: HashMap<u32, u32>,
    output: Vec<u32>,
}

impl Penalties {
    /// `None` when every penalty is neutral.
    pub fn new(repetition: f32, frequency: f32, presence: f32, prompt: &[u32]) -> Option<Self> {
        if repetition == 1.0 && frequency == 0.0 && presence == 0.0 {
            return None;
        }
        let mut seen = HashMap::new();
        if repetition != 1.0 {
            for &t in prompt {
                *seen.entry(t).or_insert(0) += 1;
            }
        }
        Some(Self {
            repetition,
            frequency,
            presence,
            seen,
            output_counts: HashMap::new(),
            output: Vec::new(),
        })
    }
}

fn decrement(m: &mut HashMap<u32, u32>, t: u32) {
    if let Some(c) = m.get_mut(&t) {
        *c -= 1;
        if *c == 0 {
            m.remove(&t);
        }
    }
}

impl LogitsProcessor for Penalties {
    fn process(&mut self, logits: &mut [f32]) {
        if self.repetition != 1.0 {
            for &t in self.seen.keys() {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / self.repetition
                    } else {
                        *l * self.repetition
                    };
                }
            }
        }
        if self.frequency != 0.0 || self.presence != 0.0 {
            for (&t, &n) in &self.output_counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= self.frequency * n as f32 + self.presence;
                }
            }
        }
    }

    fn accept(&mut self, token: u32) {
        if self.repetition != 1.0 {
            *self.seen.entry(token).or_insert(0) += 1;
        }
        *self.output_counts.entry(token).or_insert(0) += 1;
        self.output.push(token);
    }

    fn rollback(&mut self, n: usize) {
        for _ in 0..n.min(self.output.len()) {
            let Some(t) = self.output.pop() else { break };
            decrement(&mut self.output_counts, t);
            if self.repetition != 1.0 {
                decrement(&mut self.seen, t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalties_track_accepts_and_rollbacks() {
        let mut p = Penalties::new(1.0, 0.5, 1.0, &[]).unwrap();
        let base = vec![0.0f32; 4];
        let run = |p: &mut Penalties| {
            let mut l = base.clone();
            p.process(&mut l);
            l
        };
        p.accept(1);
        p.accept(1);
        p.accept(2);
        assert_eq!(run(&mut p), vec![0.0, -2.0, -1.5, 0.0]);
        p.rollback(2);
        assert_eq!(run(&mut p), vec![0.0, -1.5, 0.0, 0.0]);
        p.rollback(5);
        assert_eq!(run(&mut p), base);
    }

    #[test]
    fn repetition_covers_the_prompt_once_per_token() {
        let mut p = Penalties::new(2.0, 0.0, 0.0, &[0, 0, 1]).unwrap();
        let mut l = vec![4.0f32, -4.0, 4.0];
        p.process(&mut l);
        assert_eq!(l, vec![2.0, -8.0, 4.0]);
        p.accept(2);
        p.rollback(1);
        let mut l = vec![4.0f32, -4.0, 4.0];
        p.process(&mut l);
        assert_eq!(
            l,
            vec![2.0, -8.0, 4.0],
            "a rolled-back token is no longer seen"
        );
        assert!(Penalties::new(1.0, 0.0, 0.0, &[1]).is_none());
    }

    #[test]
    fn logit_bias_adds_and_ignores_out_of_range_ids() {
        let mut b = LogitBias::new(vec![(1, -100.0), (9, 5.0)]);
        let mut l = vec![1.0f32, 2.0];
        b.process(&mut l);
        assert_eq!(l, vec![1.0, -98.0]);
    }
}
