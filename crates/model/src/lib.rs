//! Decoder-only transformers (Llama, Mistral, Qwen 2/2.5/3, GLM-4, Phi-3, Gemma 2/3):
//! hyperparameters from GGUF metadata, weights repacked for the kernels, a forward pass
//! over a batch of sequences on a paged KV cache, and sampling.

pub mod arch;
mod config;
mod error;
mod forward;
pub mod generate;
pub mod heap;
mod kv_cache;
pub mod logits_processors;
pub mod paths;
mod sampling;
pub mod synth;
mod weights;

pub use arch::{Activation, Arch, Graph};
pub use config::{Config, SlidingWindow};
pub use error::{Error, Result};
pub use forward::{Logits, SeqInput, WantLogits};
pub use kv_cache::KvCache;
pub use logits_processors::{LogitsProcessor, ProcessorFactory};
pub use sampling::{
    argmax as sampling_argmax, log_softmax_top, Sampler, SamplingParams, TokenLogprobs,
};
pub use weights::Model;
