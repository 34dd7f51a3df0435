use model::SamplingParams;

/// One generation, already tokenized.
#[derive(Clone, Debug)]
pub struct GenerationRequest {
    pub prompt: Vec<u32>,
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    /// Tokens that end generation (EOS/EOT); empty with ignore_eos.
    pub stop_tokens: Vec<u32>,
    /// Top alternatives per step; `None` computes no log-probabilities at all.
    pub logprobs: Option<usize>,
    /// Lower runs first (as in vLLM); FCFS within a priority. Only orders requests of
    /// the same class.
    pub priority: i32,
    /// Interactive requests always go before batch ones, whatever their priorities.
    pub class: PriorityClass,
    /// Who asked, for the engine thread's log lines about this request.
    pub tag: Option<std::sync::Arc<RequestTag>>,
    /// A constraint on the output (a compiled grammar), run last in the sampler's chain.
    pub constraint: Option<std::sync::Arc<dyn model::ProcessorFactory>>,
}

/// Whose work a request is. Every interactive request is served before any batch one:
/// batch requests run in the capacity interactive ones leave, are admitted only while no
/// interactive request waits, and are the first preempted when one needs room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PriorityClass {
    #[default]
    Interactive,
    Batch,
}

impl PriorityClass {
    pub fn label(self) -> &'static str {
        match self {
            Self::Interactive => "interactive",
            Self::Batch => "batch",
        }
    }
}

/// The ids of the HTTP request a generation serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestTag {
    pub request_id: String,
    pub trace_id: String,
    /// The request's trace is recorded: its stream also gets `Scheduled` and
    /// `Preempted` events, for the trace's span events.
    pub traced: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TokenEvent {
    pub token: u32,
    /// Present when the request asked for log-probabilities.
    pub logprob: Option<f32>,
    pub top: Vec<(u32, f32)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token.
    Stop,
    /// `max_tokens` or the context length.
    Length,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The request's first step was planned (its queue time ended). Only for a traced
    /// request.
    Scheduled {
        at: std::time::Instant,
    },
    /// Its KV blocks were taken back; it waits and recomputes. Only for a traced request.
    Preempted {
        at: std::time::Instant,
    },
    Token(TokenEvent),
    Finished {
        reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
        cached_tokens: usize,
    },
    /// The request failed. `engine_failed`: the engine itself is down (every request
    /// fails until it is restarted); otherwise only this request's step failed.
    Error {
        message: String,
        engine_failed: bool,
    },
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SubmitError {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("prompt ({prompt} tokens) + max_tokens ({max_tokens}) needs {needed} tokens but the context length is {limit}")]
    TooLong {
        prompt: usize,
        max_tokens: usize,
        needed: usize,
        limit: usize,
    },
    #[error("the request needs {needed} KV tokens but the whole cache holds {capacity}")]
    ExceedsCache { needed: usize, capacity: usize },
    #[error("token id {0} is outside the vocabulary")]
    BadToken(u32),
    #[error("the waiting queue is full ({0} requests)")]
    QueueFull(usize),
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("the engine has failed: {0}")]
    EngineFailed(String),
    #[error("logit_bias names token id {0}, outside the vocabulary")]
    BadBiasToken(u32),
}
