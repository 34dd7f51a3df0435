//! What a generation's log carries to its listeners: the cacheable events, the live
//! run's prefix-cache counts (never stored: a replay reports its whole prompt as
//! cached), and an error that ends the response.

use api::ApiError;

#[derive(Clone, Debug)]
pub enum Item {
    Event(cache::Event),
    /// Prompt tokens of `choice` that the engine's KV prefix cache already held.
    PrefixCached {
        choice: usize,
        tokens: usize,
    },
    Error(ApiError),
}

/// Prompt and completion tokens per choice, as the finish events report them.
#[derive(Default)]
pub struct Tally {
    prompt: Vec<usize>,
    completion: Vec<usize>,
    cached: Vec<usize>,
    finished: usize,
}

fn at(v: &mut Vec<usize>, i: usize) -> &mut usize {
    if v.len() <= i {
        v.resize(i + 1, 0);
    }
    &mut v[i]
}

impl Tally {
    pub fn finished(&mut self, choice: usize, prompt: usize, completion: usize) {
        self.finished += 1;
        *at(&mut self.prompt, choice) = prompt;
        *at(&mut self.completion, choice) = completion;
    }

    pub fn finished_choices(&self) -> usize {
        self.finished
    }

    pub fn prefix_cached(&mut self, choice: usize, tokens: usize) {
        *at(&mut self.cached, choice) = tokens;
    }

    /// Usage over all choices (`n` per prompt, prompt-major): each distinct prompt counts
    /// once, as OpenAI reports it. `whole_prompt_cached`: the answer came from the
    /// response cache or another request's generation, so no prompt token was computed.
    pub fn usage(&self, n: usize, whole_prompt_cached: bool) -> api::Usage {
        let n = n.max(1);
        let prompt: usize = self.prompt.iter().step_by(n).sum();
        let cached: usize = if whole_prompt_cached {
            prompt
        } else {
            self.cached.iter().step_by(n).sum()
        };
        let completion: usize = self.completion.iter().sum();
        api::Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: Some(api::PromptTokensDetails {
                cached_tokens: cached,
            }),
        }
    }
}
