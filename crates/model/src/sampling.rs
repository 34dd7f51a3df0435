//! Token selection: a chain of logits processors (bias, penalties, later grammar masks),
//! then temperature, top-k, top-p, min-p with seeded randomness; and log-probabilities of
//! the model's own distribution.

use crate::logits_processors::{LogitBias, LogitsProcessor, Penalties};

#[derive(Clone, Debug)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1 disables.
    pub top_p: f32,
    /// 0 disables.
    pub min_p: f32,
    /// Multiplicative, over prompt and output tokens (llama.cpp/vLLM style); 1 disables.
    pub repetition_penalty: f32,
    /// Additive, per occurrence in the output (OpenAI style).
    pub frequency_penalty: f32,
    /// Additive, once per distinct output token (OpenAI style).
    pub presence_penalty: f32,
    pub seed: Option<u64>,
    /// OpenAI's `logit_bias`: (token id, amount added to its logit).
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: None,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }
}

/// xoshiro256**, seeded through splitmix64: small, fast, reproducible across platforms.
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Self([next(), next(), next(), next()])
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    cand: Vec<(u32, f32)>,
    processors: Vec<Box<dyn LogitsProcessor>>,
}

/// The chosen token's log-probability and the `k` most likely alternatives, all under
/// the model's unmodified distribution.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprobs {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// `(log Z, top-k (id, logprob))` of `logits`, computed in f64.
pub fn log_softmax_top(logits: &[f32], k: usize) -> (f64, Vec<(u32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let lse = max + z.ln();
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if top.len() < k || l > top[top.len() - 1].1 {
                let at = top.partition_point(|&(_, v)| v >= l);
                top.insert(at, (i as u32, l));
                top.truncate(k);
            }
        }
    }
    (
        lse,
        top.into_iter()
            .map(|(i, l)| (i, (l as f64 - lse) as f32))
            .collect(),
    )
}

impl Sampler {
    /// A sampler for a sequence that starts with `prompt` (the repetition penalty covers
    /// it): `logit_bias` runs first, then the penalties, as in llama.cpp's chain.
    pub fn new(params: SamplingParams, prompt: &[u32]) -> Self {
        let mut processors: Vec<Box<dyn LogitsProcessor>> = Vec::new();
        if !params.logit_bias.is_empty() {
            processors.push(Box::new(LogitBias::new(params.logit_bias.clone())));
        }
        if let Some(p) = Penalties::new(
            params.repetition_penalty,
            params.frequency_penalty,
            params.presence_penalty,
            prompt,
        ) {
            processors.push(Box::new(p));
        }
        let seed = params.seed.unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t ^ (std::process::id() as u64) << 32
        });
        Self {
            params,
            rng: Rng::new(seed),
            cand: Vec::new(),
            processors,
        }
    }

    /// Appends a processor to the chain (after bias and penalties).
    pub fn push_processor(&mut self, p: Box<dyn LogitsProcessor>) {
        self.processors.push(p);
    }

    /// Whether any processor may change the logits before sampling.
    pub fn has_processors(&self) -> bool {
        !self.processors.is_empty()
    }

    /// Tells the chain that `token` was chosen.
    pub fn accept(&mut self, token: u32) {
        for p in &mut self.processors {
            p.accept(token);
        }
    }

    /// Forgets the last `n` accepted tokens in every processor.
    pub fn rollback(&mut self, n: usize) {
        for p in &mut self.processors {
            p.rollback(n);
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token after running the processor chain over `logits` (in place).
    /// Call [`Sampler::accept`] with the token once it is kept.
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        for p in &mut self.processors {
            p.process(logits);
        }
        let logits = &*logits;
        let p = &self.params;
        if p.temperature <= 0.0 || p.top_k == 1 {
            return argmax(logits);
        }
        let cand = &mut self.cand;
        cand.clear();
        // Tokens more than 30 nats (at this temperature) below the best carry less than
        // e^-30 of its probability each, under 1e-8 in total for any vocabulary in use:
        // dropping them before sorting turns a full-vocabulary sort into a short one.
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let floor = max - 30.0 * p.temperature;
        cand.extend(
            logits
                .iter()
                .enumerate()
                .filter(|&(_, &l)| l >= floor)
                .map(|(i, &l)| (i as u32, l)),
        );
        let by_logit_desc =
            |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.select_nth_unstable_by(p.top_k - 1, by_logit_desc);
            cand.truncate(p.top_k);
        }
        cand.sort_unstable_by(by_logit_desc);
        let max = cand[0].1 as f64;
        let t = p.temperature as f64;
        let mut probs: Vec<f64> = cand
            .iter()
            .map(|&(_, l)| ((l as f64 - max) / t).exp())
            .collect();
        let z: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|v| *v /= z);
        let mut keep = probs.len();
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, &pr) in probs.iter().enumerate() {
                acc += pr;
                if acc >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p as f64;
            keep = keep.min(probs.iter().take_while(|&&pr| pr >= floor).count().max(1));
        }
        let total: f64 = probs[..keep].iter().sum();
        let mut u = self.rng.next_f64() * total;
        for (i, &pr) in probs[..keep].iter().enumerate() {
            u -= pr;
            if u < 0.0 {
                return cand[i].0;
            }
        }
        cand[keep - 1].0
    }
}

/// Index of the largest logit; the lowest index wins ties, so greedy is deterministic.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        (0..100).map(|i| ((i * 37 % 100) as f32) / 10.0).collect()
    }

    #[test]
    fn same_seed_same_tokens_different_seed_differs() {
        let l = logits();
        let run = |seed| {
            let mut s = Sampler::new(
                SamplingParams {
                    temperature: 1.5,
                    seed: Some(seed),
                    ..Default::default()
                },
                &[],
            );
            (0..50)
                .map(|_| s.sample(&mut l.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_k_one_and_zero_temperature_are_argmax() {
        let l = logits();
        let best = argmax(&l);
        let mut s = Sampler::new(
            SamplingParams {
                temperature: 0.0,
                ..Default::default()
            },
            &[],
        );
        assert_eq!(s.sample(&mut l.clone()), best);
        let mut s = Sampler::new(
            SamplingParams {
                top_k: 1,
                seed: Some(1),
                ..Default::default()
            },
            &[],
        );
        assert_eq!(s.sample(&mut l.clone()), best);
    }

    #[test]
    fn top_k_limits_choices() {
        let l = logits();
        let mut top3: Vec<u32> = (0..100u32).collect();
        top3.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]));
        top3.truncate(3);
        let mut s = Sampler::new(
            SamplingParams {
                temperature: 5.0,
                top_k: 3,
                seed: Some(3),
                ..Default::default()
            },
            &[],
        );
        for _ in 0..200 {
            assert!(top3.contains(&s.sample(&mut l.clone())));
        }
    }

    #[test]
    fn min_p_and_top_p_cut_the_tail() {
        let mut l = vec![-10.0f32; 50];
        l[4] = 5.0;
        l[9] = 4.9;
        let mut s = Sampler::new(
            SamplingParams {
                temperature: 1.0,
                min_p: 0.5,
                seed: Some(5),
                ..Default::default()
            },
            &[],
        );
        for _ in 0..100 {
            assert!([4, 9].contains(&s.sample(&mut l.clone())));
        }
        let mut s = Sampler::new(
            SamplingParams {
                temperature: 1.0,
                top_p: 0.1,
                seed: Some(5),
                ..Default::default()
            },
            &[],
        );
        for _ in 0..100 {
            assert_eq!(s.sample(&mut l.clone()), 4);
        }
    }

    #[test]
    fn penalties_move_the_argmax() {
        let mut l = vec![0.0f32; 10];
        l[2] = 2.0;
        l[3] = 1.5;
        let greedy = |p: SamplingParams, prompt: &[u32]| {
            Sampler::new(
                SamplingParams {
                    temperature: 0.0,
                    ..p
                },
                prompt,
            )
        };
        let mut s = greedy(
            SamplingParams {
                presence_penalty: 1.0,
                ..Default::default()
            },
            &[],
        );
        s.accept(2);
        assert_eq!(s.sample(&mut l.clone()), 3);
        let mut s = greedy(
            SamplingParams {
                repetition_penalty: 2.0,
                ..Default::default()
            },
            &[2],
        );
        assert_eq!(s.sample(&mut l.clone()), 3);
        let mut s = greedy(
            SamplingParams {
                frequency_penalty: 0.3,
                ..Default::default()
            },
            &[],
        );
        s.accept(2);
        assert_eq!(s.sample(&mut l.clone()), 2);
        s.accept(2);
        assert_eq!(s.sample(&mut l.clone()), 3);
        s.rollback(1);
        assert_eq!(s.sample(&mut l.clone()), 2, "rolled back to one occurrence");
        let mut s = greedy(
            SamplingParams {
                logit_bias: vec![(7, 5.0)],
                ..Default::default()
            },
            &[],
        );
        assert_eq!(s.sample(&mut l.clone()), 7);
    }

    #[test]
    fn logprobs_are_normalized_and_sorted() {
        let l = logits();
        let (lse, top) = log_softmax_top(&l, 5);
        let total: f64 = l.iter().map(|&x| (x as f64 - lse).exp()).sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert_eq!(top.len(), 5);
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
        assert_eq!(top[0].0, argmax(&l));
    }
}
