use crate::{Error, Result};
use gguf::GgufFile;

#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions are multiplied by `1 / factor`.
    Linear {
        factor: f64,
    },
}

/// Hyperparameters of a llama-family model, read from `{arch}.*` metadata.
#[derive(Clone, Debug)]
pub struct Config {
    pub arch: String,
    pub n_layers: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub rope_base: f64,
    pub rope_scaling: RopeScaling,
    pub rms_eps: f32,
    pub vocab_size: usize,
    pub context_length: usize,
}

/// Architectures whose tensors and math are the llama graph.
const LLAMA_FAMILY: &[&str] = &["llama", "mistral", "granite", "smollm"];

impl Config {
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        let arch = f.get_str("general.architecture")?.to_string();
        if !LLAMA_FAMILY.contains(&arch.as_str()) {
            return Err(Error::UnsupportedArch(arch));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let u = |k: &str| -> Result<usize> { Ok(f.get_u64(&key(k))? as usize) };
        let n_embd = u("embedding_length")?;
        let n_heads = u("attention.head_count")?;
        let n_kv_heads = f
            .get(&key("attention.head_count_kv"))
            .and_then(|v| v.as_u64())
            .map_or(n_heads, |v| v as usize);
        if n_heads == 0
            || n_kv_heads == 0
            || !n_heads.is_multiple_of(n_kv_heads)
            || !n_embd.is_multiple_of(n_heads)
        {
            return Err(Error::Config(format!(
                "{n_heads} heads, {n_kv_heads} KV heads, width {n_embd} do not divide"
            )));
        }
        let head_dim = f
            .get(&key("attention.key_length"))
            .and_then(|v| v.as_u64())
            .map_or(n_embd / n_heads, |v| v as usize);
        let n_rot = f
            .get(&key("rope.dimension_count"))
            .and_then(|v| v.as_u64())
            .map_or(head_dim, |v| v as usize);
        if n_rot > head_dim || !n_rot.is_multiple_of(2) {
            return Err(Error::Config(format!(
                "rope dimension {n_rot} with head size {head_dim}"
            )));
        }
        let rope_scaling = match f.get(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
            None | Some("none") => RopeScaling::None,
            Some("linear") => {
                let factor = f.get_f64(&key("rope.scaling.factor"))?;
                if factor <= 0.0 {
                    RopeScaling::None
                } else {
                    RopeScaling::Linear { factor }
                }
            }
            Some(other) => {
                return Err(Error::Config(format!(
                    "rope scaling {other:?} is not supported (none, linear)"
                )))
            }
        };
        let vocab_size = match f.get(&key("vocab_size")).and_then(|v| v.as_u64()) {
            Some(v) => v as usize,
            None => f.get_array("tokenizer.ggml.tokens")?.len(),
        };
        Ok(Self {
            n_layers: u("block_count")?,
            n_embd,
            n_ff: u("feed_forward_length")?,
            n_heads,
            n_kv_heads,
            head_dim,
            n_rot,
            rope_base: f
                .get(&key("rope.freq_base"))
                .and_then(|v| v.as_f64())
                .unwrap_or(10000.0),
            rope_scaling,
            rms_eps: f
                .get(&key("attention.layer_norm_rms_epsilon"))
                .and_then(|v| v.as_f64())
                .unwrap_or(1e-5) as f32,
            vocab_size,
            context_length: u("context_length").unwrap_or(2048),
            arch,
        })
    }

    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// KV-cache bytes per token (f32 K and V over all layers).
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.n_layers * self.kv_dim() * 4
    }
}
