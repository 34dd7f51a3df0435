//! Architectures: what each one's graph changes in the llama decoder layer, read from its
//! metadata exactly as llama.cpp's model file for that architecture reads it.
//!
//! The forward pass (`forward.rs`) and the weight loader (`weights.rs`) are shared; an
//! architecture is a [`Graph`] (which optional pieces its layers have and how rope,
//! attention and the output are computed) plus whatever hyperparameters only it has. To
//! add one: a module here with a `configure` function, a line in [`Arch::from_name`] and
//! in [`configure`], and its llama.cpp goldens (see `crates/model/tests/archs.rs`).

mod gemma;
mod glm4;
mod llama;
mod phi3;
mod qwen;

use crate::config::Meta;
use crate::{Config, Error, Result};
use kernels::ops::RopeStyle;

/// The `general.architecture` values the engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Glm4,
    Phi3,
    Gemma2,
    Gemma3,
}

/// Every supported `general.architecture`, for messages and docs.
pub const SUPPORTED: &[&str] = &[
    "llama", "mistral", "qwen2", "qwen3", "glm4", "phi3", "gemma2", "gemma3",
];

impl Arch {
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            // Mistral's and Mixtral-free Mistral-family GGUFs are written as llama.
            "llama" | "mistral" => Self::Llama,
            "qwen2" => Self::Qwen2,
            "qwen3" => Self::Qwen3,
            "glm4" => Self::Glm4,
            "phi3" => Self::Phi3,
            "gemma2" => Self::Gemma2,
            "gemma3" => Self::Gemma3,
            other => return Err(Error::UnsupportedArch(other.to_string())),
        })
    }
}

/// The feed-forward activation applied to the gate before it multiplies the up
/// projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// GELU in its tanh form (Gemma).
    GeluTanh,
}

/// Which per-pair rope frequency factors the file may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeFactors {
    /// `rope_freqs.weight` (Llama 3.1's long-context factors), optional.
    Freqs,
    /// `rope_factors_long.weight` / `rope_factors_short.weight` (Phi-3's LongRoPE),
    /// optional; long ones apply when the served context exceeds the original one.
    LongShort,
}

/// How an architecture's layers differ from llama's.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub rope_style: RopeStyle,
    /// Per-head RMSNorm of Q and K before rope (`attn_q_norm`, `attn_k_norm`).
    pub qk_norm: bool,
    /// RMSNorm of the attention and FFN outputs before each residual add
    /// (`post_attention_norm`, `post_ffw_norm`).
    pub post_norms: bool,
    pub activation: Activation,
    /// Multiplies the token embeddings (Gemma: sqrt(n_embd)).
    pub embd_scale: Option<f32>,
    /// Final logits become `cap * tanh(logit / cap)`.
    pub final_softcap: Option<f32>,
    pub rope_factors: RopeFactors,
}

impl Graph {
    /// Llama's layer: pre-norms, SiLU-gated FFN, rope on interleaved pairs.
    pub fn llama() -> Self {
        Self {
            rope_style: RopeStyle::Pairs,
            qk_norm: false,
            post_norms: false,
            activation: Activation::Silu,
            embd_scale: None,
            final_softcap: None,
            rope_factors: RopeFactors::Freqs,
        }
    }
}

/// Fills in what `c.arch` changes (its graph and its own hyperparameters).
pub(crate) fn configure(m: &Meta, c: &mut Config) -> Result<()> {
    match c.arch {
        Arch::Llama => llama::configure(m, c),
        Arch::Qwen2 => qwen::configure_qwen2(m, c),
        Arch::Qwen3 => qwen::configure_qwen3(m, c),
        Arch::Glm4 => glm4::configure(m, c),
        Arch::Phi3 => phi3::configure(m, c),
        Arch::Gemma2 => gemma::configure_gemma2(m, c),
        Arch::Gemma3 => gemma::configure_gemma3(m, c),
    }
}
